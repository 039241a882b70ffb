/work/main/bench/fec-peer/target/release/fec-peer: /work/main/bench/fec-peer/src/main.rs
