//! Benchmark inputs and the peer driver for Downlink's decoder benchmarks.
//!
//! - [`cadu_stream`]: realigns a real capture and builds CADU streams with an exact number of
//!   byte errors per Reed–Solomon codeword (CCSDS 131.0-B-4 §4, §9, §10).
//! - [`ccsds_peer`]: drives the `ccsds` crate (0.1.0-beta.25) over such a stream from memory,
//!   on the calling thread only.
//! - [`downlink_decode_bytes`]: the same input through Downlink's decoder.
//! - [`merge_pair`]: two station copies of a synthetic X-band pass, for the merge benchmarks.
#![deny(clippy::indexing_slicing)]
#![cfg_attr(test, allow(clippy::indexing_slicing))]

pub mod cadu_stream;
pub mod ccsds_peer;
pub mod merge_pair;
pub mod soft_chain;

pub use cadu_stream::{extract_aligned_cadus, make_cadu_stream};
pub use ccsds_peer::{
    ccsds_decode_bytes, ccsds_decode_bytes_with, PeerConfig, PeerCounts, Threading,
};

use decoder::{Decoder, DecoderOptions, InputFormat, Profile, Stats};

/// Runs `input` through Downlink's decoder (profile `eos`) in 1 MiB pushes, polling every event
/// (frames and packets are produced and dropped), and returns the counters.
pub fn downlink_decode_bytes(input: &[u8], format: InputFormat, options: DecoderOptions) -> Stats {
    let Ok(profile) = Profile::builtin("eos") else {
        return Stats::default();
    };
    let Ok(mut d) = Decoder::new(&profile, format, options) else {
        return Stats::default();
    };
    for chunk in input.chunks(1 << 20) {
        d.push(chunk);
        while let Some(e) = d.poll() {
            std::hint::black_box(&e);
        }
    }
    d.finish();
    while let Some(e) = d.poll() {
        std::hint::black_box(&e);
    }
    d.stats()
}

/// The aligned Aqua CADUs every benchmark input is built from.
pub fn aqua_base(shared_data: &std::path::Path) -> std::io::Result<Vec<u8>> {
    let raw = std::fs::read(shared_data.join("cadu/aqua.20241206T175646.dat"))?;
    extract_aligned_cadus(&raw)
        .map(|(b, _)| b)
        .ok_or_else(|| std::io::Error::other("no CADUs in the Aqua capture"))
}
