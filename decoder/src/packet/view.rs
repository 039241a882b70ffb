//! The space packet primary header (CCSDS 133.0-B-2 section 4.1.3) and a zero-copy, checked
//! view of one space packet.

use super::{IDLE_APID, PRIMARY_HEADER_LEN};
use crate::error::Error;
use bytes::Bytes;

/// Packet sequence flags (CCSDS 133.0-B-2, Packet Sequence Control field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SequenceFlags {
    /// `00`: continuation segment of user data.
    Continuation,
    /// `01`: first segment.
    First,
    /// `10`: last segment.
    Last,
    /// `11`: unsegmented user data.
    Unsegmented,
}

impl SequenceFlags {
    /// From the 2-bit field value (higher bits are ignored).
    pub fn from_bits(bits: u8) -> Self {
        match bits & 0b11 {
            0 => Self::Continuation,
            1 => Self::First,
            2 => Self::Last,
            _ => Self::Unsegmented,
        }
    }

    /// The 2-bit field value.
    pub fn bits(self) -> u8 {
        match self {
            Self::Continuation => 0,
            Self::First => 1,
            Self::Last => 2,
            Self::Unsegmented => 3,
        }
    }
}

/// The decoded 6-byte packet primary header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrimaryHeader {
    /// Packet version number (3 bits; 0 for CCSDS version-1 packets).
    pub version: u8,
    /// Packet type bit: true for telecommand, false for telemetry.
    pub telecommand: bool,
    /// Secondary header flag.
    pub secondary_header: bool,
    /// Application process identifier (11 bits).
    pub apid: u16,
    /// Sequence flags.
    pub sequence_flags: SequenceFlags,
    /// Packet sequence count or packet name (14 bits).
    pub sequence_count: u16,
    /// Packet data length field: data field length minus one.
    pub data_length_field: u16,
}

impl PrimaryHeader {
    /// Decodes a header from exactly six bytes.
    pub fn from_bytes(b: &[u8; PRIMARY_HEADER_LEN]) -> Self {
        let [b0, b1, b2, b3, b4, b5] = *b;
        let id = u16::from_be_bytes([b0, b1]);
        let seq = u16::from_be_bytes([b2, b3]);
        Self {
            version: b0 >> 5,
            telecommand: id & 0x1000 != 0,
            secondary_header: id & 0x0800 != 0,
            apid: id & 0x07FF,
            sequence_flags: SequenceFlags::from_bits(b2 >> 6),
            sequence_count: seq & 0x3FFF,
            data_length_field: u16::from_be_bytes([b4, b5]),
        }
    }

    /// Parses the primary header at the start of `buf`; `None` if `buf` is shorter than 6 bytes.
    pub fn parse(buf: &[u8]) -> Option<Self> {
        buf.first_chunk::<PRIMARY_HEADER_LEN>()
            .map(Self::from_bytes)
    }

    /// Encodes the header (fields wider than their bit width are truncated).
    pub fn to_bytes(&self) -> [u8; PRIMARY_HEADER_LEN] {
        let id = (u16::from(self.version & 0x7) << 13)
            | (u16::from(self.telecommand) << 12)
            | (u16::from(self.secondary_header) << 11)
            | (self.apid & 0x07FF);
        let seq = (u16::from(self.sequence_flags.bits()) << 14) | (self.sequence_count & 0x3FFF);
        let [a, b] = id.to_be_bytes();
        let [c, d] = seq.to_be_bytes();
        let [e, f] = self.data_length_field.to_be_bytes();
        [a, b, c, d, e, f]
    }

    /// Total packet length: 6 + data length field + 1 (7 ..= 65542).
    pub fn total_len(&self) -> usize {
        PRIMARY_HEADER_LEN + usize::from(self.data_length_field) + 1
    }

    /// True for idle packets (APID `0x7FF`).
    pub fn is_idle(&self) -> bool {
        self.apid == IDLE_APID
    }
}

/// Checked view of one whole space packet (smoltcp style): [`SpacePacket::new_checked`]
/// validates the length once, after which all accessors are infallible.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpacePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> SpacePacket<T> {
    /// Wraps `buf`, which must hold exactly one packet (6 + data length field + 1 bytes).
    /// The version number is not checked; see [`SpacePacket::version`].
    pub fn new_checked(buf: T) -> Result<Self, Error> {
        let bytes = buf.as_ref();
        let header = PrimaryHeader::parse(bytes).ok_or(Error::PacketTooShort {
            need: PRIMARY_HEADER_LEN,
            got: bytes.len(),
        })?;
        if header.total_len() != bytes.len() {
            return Err(Error::PacketLengthMismatch {
                header_says: header.total_len(),
                got: bytes.len(),
            });
        }
        Ok(Self { buffer: buf })
    }

    fn header_bytes(&self) -> [u8; PRIMARY_HEADER_LEN] {
        // Length validated in new_checked; the fallback is unreachable.
        self.buffer
            .as_ref()
            .first_chunk::<PRIMARY_HEADER_LEN>()
            .copied()
            .unwrap_or_default()
    }

    /// The decoded primary header.
    pub fn header(&self) -> PrimaryHeader {
        PrimaryHeader::from_bytes(&self.header_bytes())
    }

    /// Packet version number (0 for CCSDS packets).
    pub fn version(&self) -> u8 {
        self.header().version
    }

    /// Packet type bit set (telecommand).
    pub fn is_telecommand(&self) -> bool {
        self.header().telecommand
    }

    /// Secondary header flag.
    pub fn has_secondary_header(&self) -> bool {
        self.header().secondary_header
    }

    /// Application process identifier.
    pub fn apid(&self) -> u16 {
        self.header().apid
    }

    /// Sequence flags.
    pub fn sequence_flags(&self) -> SequenceFlags {
        self.header().sequence_flags
    }

    /// 14-bit sequence count.
    pub fn sequence_count(&self) -> u16 {
        self.header().sequence_count
    }

    /// Raw packet data length field (data field length − 1).
    pub fn data_length_field(&self) -> u16 {
        self.header().data_length_field
    }

    /// Total packet length (equals the buffer length).
    pub fn total_len(&self) -> usize {
        self.header().total_len()
    }

    /// True for idle packets (APID `0x7FF`).
    pub fn is_idle(&self) -> bool {
        self.apid() == IDLE_APID
    }

    /// The packet data field (secondary header, if any, and user data): all bytes after the
    /// primary header.
    pub fn data(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(PRIMARY_HEADER_LEN..)
            .unwrap_or_default()
    }

    /// The whole packet.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Returns the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

/// One reassembled packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Its primary header.
    pub header: PrimaryHeader,
    /// The whole packet, including the primary header.
    pub data: Bytes,
}

impl Packet {
    /// APID.
    pub fn apid(&self) -> u16 {
        self.header.apid
    }

    /// The packet data field (after the primary header).
    pub fn data_field(&self) -> &[u8] {
        self.data.get(PRIMARY_HEADER_LEN..).unwrap_or_default()
    }
}
