/work/main/bench/fec-peer/target/release/deps/fec_peer-589440477060c026.d: src/main.rs

/work/main/bench/fec-peer/target/release/deps/fec_peer-589440477060c026: src/main.rs

src/main.rs:
