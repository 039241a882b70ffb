# Downlink — quick start:  make run   (decode the bundled sample captures; the daemon arrives with `serve`)
#                          make test  (everything CI runs: fmt, clippy, unit + e2e + fuzz-corpus tests)
SHELL := /bin/bash
CARGO ?= cargo
DATA ?= ../shared/data
APT_PKGS := build-essential pkg-config

.PHONY: run test deps build release fmt lint unit fuzz-corpus fuzz bench bench-data clean

deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@command -v $(CARGO) >/dev/null || { echo "cargo (Rust >= 1.87) is required: https://rustup.rs" >&2; exit 1; }

build: deps
	$(CARGO) build --release --bin downlink

release: build

run: build
	@for f in $(DATA)/cadu/npp.20241206T173815.dat; do \
	  echo "== downlink decode $$f --profile jpss"; \
	  ./target/release/downlink decode "$$f" --profile jpss; \
	done

fmt:
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml -- --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --manifest-path fuzz/Cargo.toml --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace

fuzz-corpus:
	$(CARGO) build --manifest-path fuzz/Cargo.toml --bins
	$(CARGO) test --manifest-path fuzz/Cargo.toml

test: deps fmt lint unit fuzz-corpus

# Coverage-guided fuzzing on stable (libFuzzer); FUZZ_SECS per target.
fuzz:
	scripts/fuzz-stable.sh $(or $(FUZZ_SECS),60)

bench-data:
	$(CARGO) run --release -p downlink-bench --bin bench_input -- target/bench 256

bench: bench-data
	$(CARGO) bench -p downlink-bench --bench decode
	scripts/bench-cli.sh target/bench

clean:
	$(CARGO) clean
