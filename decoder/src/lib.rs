//! # decoder — Downlink's sans-IO CCSDS link layer
//!
//! Push a demodulator's bytes in, poll [`Event`]s out, read [`Stats`]. No IO, threads, clocks or
//! async runtime inside (the quinn-proto pattern): the daemon and the command line own those.
//!
//! ```no_run
//! use decoder::{Decoder, DecoderOptions, Event, InputFormat, Profile};
//! let profile = Profile::builtin("jpss")?;
//! let mut dec = Decoder::new(&profile, InputFormat::Bits, DecoderOptions::default())?;
//! dec.push(&[0u8; 4096]);
//! dec.finish();
//! while let Some(ev) = dec.poll() {
//!     if let Event::Packet { packet, .. } = ev { let _ = packet.header.apid; }
//! }
//! let stats = dec.stats();
//! assert_eq!(stats.cadus, stats.frames.good + stats.frames.rejected.total());
//! # Ok::<(), decoder::Error>(())
//! ```
//!
//! | module | standard |
//! |---|---|
//! | [`sync`] | CCSDS 131.0-B-4 §9 frame synchronization |
//! | [`pn`] | CCSDS 131.0-B-4 §10 pseudo-randomizer |
//! | [`rs`] | CCSDS 131.0-B-4 §4 Reed-Solomon, Annex F dual basis |
//! | [`frame`] | CCSDS 132.0-B-3 (TM), 732.0-B-4 (AOS) |
//! | [`vc`] | VC frame counters (132.0 §4.1.2.5, 732.0 §4.1.2.4) |
//! | [`packet`] | CCSDS 133.0-B-2 space packets; M_PDU (732.0 §4.1.4) |
#![deny(clippy::indexing_slicing)]
#![cfg_attr(test, allow(clippy::indexing_slicing))]

pub mod decoder;
pub mod error;
pub mod frame;
pub mod packet;
pub mod pn;
pub mod profile;
pub mod rs;
pub mod stats;
pub mod sync;
pub mod vc;

pub use crate::decoder::{
    Decoder, DecoderOptions, Event, Frame, FrameSync, InputFormat, RejectReason,
};
pub use crate::error::Error;
pub use crate::profile::Profile;
pub use crate::stats::Stats;
