#![doc = include_str!("../README.md")]
#![deny(clippy::indexing_slicing)]
#![cfg_attr(test, allow(clippy::indexing_slicing))]

pub mod conv;
pub mod decoder;
pub mod error;
pub mod frame;
pub mod merge;
pub mod packet;
pub mod pn;
pub mod profile;
pub mod rs;
pub mod soft;
pub mod stats;
pub mod sync;
pub mod vc;

pub use crate::decoder::{
    DecodedCadu, Decoder, DecoderOptions, Event, Frame, FrameSync, InputFormat, RecordCheck,
    RejectReason,
};
pub use crate::error::Error;
pub use crate::profile::Profile;
pub use crate::soft::{InnerCounters, InnerSpec, PhaseCase};
pub use crate::stats::Stats;
