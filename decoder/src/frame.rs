//! Transfer frame primary headers, read only after Reed-Solomon.
//!
//! - TM Space Data Link Protocol, CCSDS 132.0-B-3 §4.1.2 (primary header), §4.1.3 (secondary
//!   header), §4.1.5 (OCF), §4.1.6 (FECF).
//! - AOS Space Data Link Protocol, CCSDS 732.0-B-4 §4.1.2 (primary header), §4.1.3 (insert
//!   zone), §4.1.5 (OCF), §4.1.6 (FECF); M_PDU header §4.1.4.2.
//!
//! [`FrameLayout`] is derived once from a profile; [`FrameHeader::parse`] checks the length once and
//! every range it hands out is in bounds of a frame of that layout.

use crate::error::Error;
use std::ops::Range;

/// Which CCSDS data link protocol a frame follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum FrameKind {
    /// TM (CCSDS 132.0), transfer frame version number 0 (binary 00).
    Tm,
    /// AOS (CCSDS 732.0), transfer frame version number 1 (binary 01, "version 2").
    Aos,
}

impl FrameKind {
    /// The 2-bit transfer frame version number this kind carries on the wire.
    pub fn version_number(self) -> u8 {
        match self {
            FrameKind::Tm => 0,
            FrameKind::Aos => 1,
        }
    }

    /// Number of VCIDs the header can express.
    pub fn vcid_count(self) -> usize {
        match self {
            FrameKind::Tm => 8,
            FrameKind::Aos => 64,
        }
    }
}

/// Fixed geometry of the frames of one link, derived from the profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLayout {
    /// Protocol.
    pub kind: FrameKind,
    /// Frame length in bytes after Reed-Solomon parity is removed.
    pub frame_len: usize,
    /// AOS only: the optional 2-byte frame header error control field is present.
    pub header_error_control: bool,
    /// AOS: managed insert zone length after the primary header. TM: ignored.
    pub insert_zone_len: usize,
    /// AOS: an operational control field (4 bytes) precedes the FECF. TM: taken from the header flag.
    pub ocf: bool,
    /// A 2-byte frame error control field (CRC-16/IBM-3740) ends the frame.
    pub fecf: bool,
}

impl FrameLayout {
    /// Fixed header length (primary header + AOS HEC; TM secondary header excluded).
    fn primary_len(&self) -> usize {
        match self.kind {
            FrameKind::Tm => 6,
            FrameKind::Aos => 6 + if self.header_error_control { 2 } else { 0 },
        }
    }

    fn trailer_len(&self, ocf: bool) -> usize {
        (if ocf { 4 } else { 0 }) + if self.fecf { 2 } else { 0 }
    }

    /// Smallest frame this layout can describe (header, insert zone, trailer, one data byte,
    /// plus the 2-byte M_PDU header for AOS).
    pub fn min_len(&self) -> usize {
        let (mpdu, iz) = match self.kind {
            FrameKind::Aos => (2, self.insert_zone_len),
            FrameKind::Tm => (0, 0),
        };
        self.primary_len() + iz + self.trailer_len(true) + mpdu + 1
    }

    /// The bytes at the start of a frame that [`FrameHeader::parse`] reads (of the rest it
    /// needs only the length): the primary header and, TM, the secondary header's identifier;
    /// AOS, the insert zone and the M_PDU header.
    pub fn head_len(&self) -> usize {
        match self.kind {
            FrameKind::Tm => self.primary_len() + 1,
            FrameKind::Aos => self.primary_len() + self.insert_zone_len + 2,
        }
    }
}

/// A parsed primary header together with the byte ranges of the frame's parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Protocol.
    pub kind: FrameKind,
    /// Spacecraft id (10 bits TM, 8 bits AOS).
    pub scid: u16,
    /// Virtual channel id (3 bits TM, 6 bits AOS).
    pub vcid: u8,
    /// Virtual channel frame count (8 bits TM; 24 bits AOS, extended to 28 by the cycle count
    /// when the usage flag is set).
    pub vc_count: u32,
    /// Modulus of `vc_count` (256, 2^24 or 2^28).
    pub vc_count_modulus: u32,
    /// TM master channel frame count.
    pub mc_count: Option<u8>,
    /// AOS replay flag.
    pub replay: bool,
    /// TM: first header pointer from the data field status. AOS: read from the M_PDU header.
    pub first_header_pointer: u16,
    /// The data field carries space packets (false when the TM synchronization flag says it
    /// holds octet-synchronous VCA data instead).
    pub packet_data: bool,
    /// Insert zone bytes (AOS).
    pub insert_zone: Range<usize>,
    /// Packet zone (after the M_PDU header for AOS; the TM data field).
    pub packet_zone: Range<usize>,
    /// Operational control field, when present.
    pub ocf: Option<Range<usize>>,
    /// Covered bytes and position of the FECF, when present.
    pub fecf: Option<(Range<usize>, usize)>,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    Some(u16::from_be_bytes([*s.first()?, *s.get(1)?]))
}

impl FrameHeader {
    /// Parses the header of `frame` (RS parity already stripped) under `layout`.
    pub fn parse(layout: &FrameLayout, frame: &[u8]) -> Result<Self, Error> {
        Self::parse_head(layout, frame, frame.len())
    }

    /// Parses the header of a frame of `len` bytes from its first bytes, `head` (at least
    /// [`FrameLayout::head_len`] of them, or the whole frame): the same header as
    /// [`FrameHeader::parse`] of the whole frame, whose ranges index into it.
    pub fn parse_head(layout: &FrameLayout, head: &[u8], len: usize) -> Result<Self, Error> {
        let frame = head.get(..len).unwrap_or(head);
        let too_short = || Error::FrameTooShort {
            need: layout.min_len(),
            got: len,
        };
        if len < layout.min_len() {
            return Err(too_short());
        }
        let w0 = be16(frame, 0).ok_or_else(too_short)?;
        let version = (w0 >> 14) as u8;
        let expected = layout.kind.version_number();
        if version != expected {
            return Err(Error::FrameVersion {
                found: version,
                expected,
            });
        }
        let end = len;
        match layout.kind {
            FrameKind::Tm => {
                let scid = (w0 >> 4) & 0x3FF;
                let vcid = ((w0 >> 1) & 0x7) as u8;
                let ocf_flag = w0 & 1 == 1;
                let mc = *frame.get(2).ok_or_else(too_short)?;
                let vc = *frame.get(3).ok_or_else(too_short)?;
                let status = be16(frame, 4).ok_or_else(too_short)?;
                let secondary = status & 0x8000 != 0;
                let fhp = status & 0x07FF;
                let mut start = 6;
                if secondary {
                    let id = *frame.get(6).ok_or_else(too_short)?;
                    start += usize::from(id & 0x3F) + 1;
                }
                let trailer = layout.trailer_len(ocf_flag);
                if start + trailer + 1 > end {
                    return Err(Error::FrameTooShort {
                        need: start + trailer + 1,
                        got: end,
                    });
                }
                let data_end = end - trailer;
                Ok(FrameHeader {
                    kind: FrameKind::Tm,
                    scid,
                    vcid,
                    vc_count: u32::from(vc),
                    vc_count_modulus: 256,
                    mc_count: Some(mc),
                    replay: false,
                    first_header_pointer: fhp,
                    packet_data: status & 0x4000 == 0,
                    insert_zone: 6..6,
                    packet_zone: start..data_end,
                    ocf: ocf_flag.then_some(data_end..data_end + 4),
                    fecf: layout.fecf.then_some((0..end - 2, end - 2)),
                })
            }
            FrameKind::Aos => {
                let scid = (w0 >> 6) & 0xFF;
                let vcid = (w0 & 0x3F) as u8;
                let c = frame.get(2..5).ok_or_else(too_short)?;
                let mut count = c.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
                let signalling = *frame.get(5).ok_or_else(too_short)?;
                let replay = signalling & 0x80 != 0;
                let mut modulus = 1 << 24;
                if signalling & 0x40 != 0 {
                    count |= u32::from(signalling & 0x0F) << 24;
                    modulus = 1 << 28;
                }
                let iz_start = layout.primary_len();
                let iz_end = iz_start + layout.insert_zone_len;
                let trailer = layout.trailer_len(layout.ocf);
                let data_end = end - trailer;
                let fhp = be16(frame, iz_end).ok_or_else(too_short)? & 0x07FF;
                Ok(FrameHeader {
                    kind: FrameKind::Aos,
                    scid,
                    vcid,
                    vc_count: count,
                    vc_count_modulus: modulus,
                    mc_count: None,
                    replay,
                    first_header_pointer: fhp,
                    packet_data: true,
                    insert_zone: iz_start..iz_end,
                    packet_zone: iz_end + 2..data_end,
                    ocf: layout.ocf.then_some(data_end..data_end + 4),
                    fecf: layout.fecf.then_some((0..end - 2, end - 2)),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aos_layout() -> FrameLayout {
        FrameLayout {
            kind: FrameKind::Aos,
            frame_len: 892,
            header_error_control: false,
            insert_zone_len: 2,
            ocf: false,
            fecf: false,
        }
    }

    #[test]
    fn meteor_vcdu_header() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/data/vcdu/meteor-m2/2022_12_20_20_25_30.vcdu"
        );
        let data = std::fs::read(path).unwrap();
        let frame = &data[..892];
        let h = FrameHeader::parse(&aos_layout(), frame).unwrap();
        assert_eq!(h.scid, 0);
        assert_eq!(h.vcid, 5);
        assert_eq!(h.vc_count, 0x269045);
        assert_eq!(h.vc_count_modulus, 1 << 24);
        assert_eq!(h.insert_zone, 6..8);
        assert_eq!(h.first_header_pointer, 0x070);
        assert_eq!(h.packet_zone, 10..892);
        assert_eq!(h.ocf, None);
    }

    #[test]
    fn tm_header_fields_and_trailer() {
        let layout = FrameLayout {
            kind: FrameKind::Tm,
            frame_len: 64,
            header_error_control: false,
            insert_zone_len: 0,
            ocf: false,
            fecf: true,
        };
        let mut f = vec![0u8; 64];
        // version 00, SCID 0x2AB, VCID 5, OCF flag 1
        let w0: u16 = (0x2AB << 4) | (5 << 1) | 1;
        f[..2].copy_from_slice(&w0.to_be_bytes());
        f[2] = 17;
        f[3] = 200;
        // secondary header present, FHP 0x123; secondary header id says 3+1 bytes
        f[4..6].copy_from_slice(&(0x8000u16 | 0x123).to_be_bytes());
        f[6] = 3;
        let h = FrameHeader::parse(&layout, &f).unwrap();
        assert_eq!(
            (h.scid, h.vcid, h.mc_count, h.vc_count),
            (0x2AB, 5, Some(17), 200)
        );
        assert_eq!(h.first_header_pointer, 0x123);
        assert_eq!(h.packet_zone, 10..58);
        assert_eq!(h.ocf, Some(58..62));
        assert_eq!(h.fecf, Some((0..62, 62)));
        assert_eq!(layout.head_len(), 7);
        assert_eq!(
            FrameHeader::parse_head(&layout, &f[..layout.head_len()], 64),
            Ok(h)
        );
    }

    /// The header parsed from a frame's first `head_len` bytes and its length is the one
    /// parsed from the whole frame: real Meteor frames, and AOS layouts with a header error
    /// control field and a longer insert zone (errors included).
    #[test]
    fn the_head_and_the_length_parse_as_the_whole_frame() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/data/vcdu/meteor-m2/2022_12_20_20_25_30.vcdu"
        );
        let data = std::fs::read(path).unwrap();
        let mut layouts = vec![aos_layout()];
        for (hec, iz) in [(true, 2), (false, 0), (true, 40)] {
            layouts.push(FrameLayout {
                header_error_control: hec,
                insert_zone_len: iz,
                ..aos_layout()
            });
        }
        for l in layouts {
            for frame in data.chunks_exact(892).take(200) {
                let head = &frame[..l.head_len()];
                assert_eq!(
                    FrameHeader::parse_head(&l, head, frame.len()),
                    FrameHeader::parse(&l, frame),
                    "{l:?}"
                );
            }
            for n in [0, 5, l.min_len() - 1] {
                assert!(matches!(
                    FrameHeader::parse_head(&l, &data[..l.head_len()], n),
                    Err(Error::FrameTooShort { .. })
                ));
            }
        }
    }

    #[test]
    fn wrong_version_and_short_frames_are_errors_not_panics() {
        let l = aos_layout();
        let mut f = vec![0u8; 892];
        assert_eq!(
            FrameHeader::parse(&l, &f),
            Err(Error::FrameVersion {
                found: 0,
                expected: 1
            })
        );
        f[0] = 0x40;
        for n in 0..l.min_len() {
            assert!(matches!(
                FrameHeader::parse(&l, &f[..n]),
                Err(Error::FrameTooShort { .. })
            ));
        }
        // TM with a secondary header that claims more than the frame holds.
        let tm = FrameLayout {
            kind: FrameKind::Tm,
            frame_len: 12,
            ..l
        };
        let mut t = vec![0u8; 12];
        t[4] = 0x80;
        t[6] = 0x3F;
        assert!(matches!(
            FrameHeader::parse(&tm, &t),
            Err(Error::FrameTooShort { .. })
        ));
    }

    #[test]
    fn aos_cycle_count_extends_counter() {
        let mut f = vec![0u8; 892];
        f[0] = 0x40;
        f[2..5].copy_from_slice(&[0xFF, 0xFF, 0xFE]);
        f[5] = 0x40 | 0x3;
        let h = FrameHeader::parse(&aos_layout(), &f).unwrap();
        assert_eq!(h.vc_count, 0x3FF_FFFE);
        assert_eq!(h.vc_count_modulus, 1 << 28);
    }
}
