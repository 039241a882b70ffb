# Downlink — quick start:  make run   (the daemon on the embedded default: archive in ./var/downlink,
#                                       UDP input 127.0.0.1:5000 (jpss, bits), HTTP 127.0.0.1:8080)
#                          make test  (everything CI runs: fmt, clippy, unit + e2e + fuzz-corpus tests)
SHELL := /bin/bash
CARGO ?= cargo
DATA ?= ../shared/data
APT_PKGS := build-essential pkg-config systemd libgdal-dev gdal-bin python3-gdal python3-numpy libsqlite3-dev
# Only for `make test`: the web map's browser test and the STAC validators' venv; PostgreSQL +
# PostGIS for the pgstac catalog tests (scripts/pgstac/pgstac-cluster.sh).
TEST_APT_PKGS := chromium python3-venv curl qgis python3-qgis python3-gdal postgresql-15 postgresql-15-postgis-3

# Garage, the S3-compatible object store of the archive.store tests (tests/common/garage.rs):
# built once from crates.io (about 20 minutes on 2 cores) and cached in ~/.cargo/bin.
GARAGE ?= $(HOME)/.cargo/bin/garage
GARAGE_VERSION := 2.5.0

.PHONY: run demo-replay unit-file test deps test-deps web build release fmt lint unit fuzz-corpus fuzz bench bench-data clean landmask

deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@command -v $(CARGO) >/dev/null || { echo "cargo (Rust >= 1.89) is required: https://rustup.rs" >&2; exit 1; }
	@command -v npm >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; }

test-deps: deps $(GARAGE)
	@missing=""; for p in $(TEST_APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(GARAGE):
	$(CARGO) install garage --version $(GARAGE_VERSION) --locked

# The web map's JavaScript dependencies (MapLibre GL JS; the offline basemap: world-atlas and
# topojson-client; playwright-core for its test), exactly as web/package-lock.json pins them. The
# daemon embeds MapLibre and the basemap at build time (daemon/build.rs).
web: web/node_modules/.installed
web/node_modules/.installed: web/package.json web/package-lock.json | deps
	cd web && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# Land/sea mask for geolocation QA: NOAA GLOBE 30" ocean flag as shipped in the PyPI package
# global-land-mask 1.0.0 (MIT), checked by hash, turned into one 1-bit GeoTIFF (~1.1 MB).
LANDMASK ?= build/landmask.tif
GLM_NPZ_SHA256 := ef089657594dcdd5bff443b96a24e6fa094fa65fd08c6cd1d7c8368ed6bcbeeb
landmask: $(LANDMASK)
$(LANDMASK): scripts/make_landmask.py | deps
	@mkdir -p build/glm $(dir $@)
	python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: global-land-mask==1.0.0 -d build/glm
	/usr/bin/python3 -c 'import glob, zipfile; zipfile.ZipFile(sorted(glob.glob("build/glm/global_land_mask-1.0.0-*.whl"))[0]).extract("global_land_mask/globe_combined_mask_compressed.npz", "build/glm")'
	echo "$(GLM_NPZ_SHA256)  build/glm/global_land_mask/globe_combined_mask_compressed.npz" | sha256sum -c --quiet
	/usr/bin/python3 scripts/make_landmask.py --npz build/glm/global_land_mask/globe_combined_mask_compressed.npz -o $@

build: deps web
	$(CARGO) build --release --bin downlink

release: build

run: build
	./target/release/downlink serve

# Feed the running daemon a real capture (in another terminal), then look at the pass:
#   make demo-replay && curl -s 127.0.0.1:8080/api/v1/passes
demo-replay: build
	./target/release/downlink replay $(DATA)/cadu/npp.20241206T173815.dat --to udp://127.0.0.1:5000 --rate 50Mbit

fmt:
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml -- --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --manifest-path fuzz/Cargo.toml --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --workspace --exclude downlink-bench

unit:
	$(CARGO) test --workspace

fuzz-corpus:
	$(CARGO) build --manifest-path fuzz/Cargo.toml --bins
	$(CARGO) test --manifest-path fuzz/Cargo.toml

test: test-deps landmask web fmt lint unit fuzz-corpus unit-file

# The hardened unit must keep its exposure score at or below 1.5.
unit-file:
	systemd-analyze security --offline=yes --threshold=15 systemd/downlink.service >/dev/null
	systemd-analyze security --offline=yes systemd/downlink.service | tail -1

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
