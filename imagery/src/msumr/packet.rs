//! Parsing of MSU-MR image packets (CCSDS user data field) with checked accessors.
//!
//! Layout: see the [module docs](super). Sources: meteor.robonuka.ru "for experts"
//! notes and O. Spiropoulos' "Image Source Packet Details".

use crate::Error;

/// Number of 8x8 MCUs in one image packet.
pub const MCU_PER_PACKET: usize = 14;
/// Number of MCUs across one MSU-MR line (1568 / 8).
pub const MCUS_PER_LINE: usize = 196;
/// Image packets per channel per MCU row (196 / 14).
pub const PACKETS_PER_ROW: usize = MCUS_PER_LINE / MCU_PER_PACKET;
/// Image lines covered by one MCU row.
pub const LINES_PER_ROW: usize = 8;
/// Width of an MSU-MR LRPT line in pixels.
pub const IMAGE_WIDTH: usize = MCUS_PER_LINE * 8;
/// Width of the strip decoded from one packet (14 x 8 pixels).
pub const STRIP_WIDTH: usize = MCU_PER_PACKET * 8;

/// Secondary header (time code) length.
const TIME_LEN: usize = 8;
/// MCU id (1) + scan header (2) + segment header (3).
const IMAGE_HEADER_LEN: usize = 6;
/// CCSDS primary header length.
const PRIMARY_HEADER_LEN: usize = 6;

/// True for the MSU-MR image APIDs 64..=69 (channels 1..6).
pub fn is_image_apid(apid: u16) -> bool {
    (64..=69).contains(&apid)
}

/// Big-endian value of up to 4 bytes (missing slice reads as 0).
fn be(bytes: Option<&[u8]>) -> u32 {
    bytes
        .unwrap_or(&[])
        .iter()
        .fold(0u32, |acc, &b| (acc << 8) | u32::from(b))
}

/// Packet time code (secondary header). `ms_of_day` is Moscow time (UTC+3) without a date;
/// conversion to UTC needs the pass date and is done by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MsuTime {
    /// Day field (0 on Meteor-M N2).
    pub day: u16,
    /// Milliseconds since Moscow midnight.
    pub ms_of_day: u32,
    /// Microseconds (0 on Meteor-M N2).
    pub us: u16,
}

impl MsuTime {
    /// Parse the 8-byte time code at the start of the packet data field.
    pub fn parse(data: &[u8]) -> Result<Self, Error> {
        let b = data.get(..TIME_LEN).ok_or(Error::TooShort {
            what: "MSU-MR time code",
            len: data.len(),
            need: TIME_LEN,
        })?;
        Ok(Self {
            day: be(b.get(0..2)) as u16,
            ms_of_day: be(b.get(2..6)),
            us: be(b.get(6..8)) as u16,
        })
    }
}

/// A parsed MSU-MR image packet borrowing the packet data field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImagePacket<'a> {
    time: MsuTime,
    mcu_id: u8,
    quant_table_id: u8,
    huffman_ids: u8,
    quality_marker: u16,
    quality: u8,
    entropy: &'a [u8],
}

impl<'a> ImagePacket<'a> {
    /// Parse the packet data field (secondary header included, primary header excluded).
    /// Validates the MCU id (0..=182, multiple of 14) and the quality factor (1..=100).
    pub fn parse(data: &'a [u8]) -> Result<Self, Error> {
        let need = TIME_LEN + IMAGE_HEADER_LEN;
        let too_short = Error::TooShort {
            what: "MSU-MR image packet header",
            len: data.len(),
            need,
        };
        let time = MsuTime::parse(data)?;
        let hdr = data.get(TIME_LEN..need).ok_or(too_short.clone())?;
        let entropy = data.get(need..).ok_or(too_short)?;
        let mut it = hdr.iter().copied();
        let mcu_id = it.next().unwrap_or(0);
        let quant_table_id = it.next().unwrap_or(0);
        let huffman_ids = it.next().unwrap_or(0);
        let qm_hi = it.next().unwrap_or(0);
        let qm_lo = it.next().unwrap_or(0);
        let quality = it.next().unwrap_or(0);
        if usize::from(mcu_id) % MCU_PER_PACKET != 0
            || usize::from(mcu_id) > MCUS_PER_LINE - MCU_PER_PACKET
        {
            return Err(Error::InvalidMcuId(mcu_id));
        }
        if quality == 0 || quality > 100 {
            return Err(Error::InvalidQuality(quality));
        }
        Ok(Self {
            time,
            mcu_id,
            quant_table_id,
            huffman_ids,
            quality_marker: u16::from_be_bytes([qm_hi, qm_lo]),
            quality,
            entropy,
        })
    }

    /// Time code of the packet (shared by all packets of one MCU row).
    pub fn time(&self) -> MsuTime {
        self.time
    }
    /// Index of the first MCU of this packet within the line (0, 14, ..., 182).
    pub fn mcu_id(&self) -> u8 {
        self.mcu_id
    }
    /// Packet slot within the row (mcu_id / 14, 0..=13).
    pub fn slot(&self) -> usize {
        usize::from(self.mcu_id) / MCU_PER_PACKET
    }
    /// First pixel column covered by this packet (mcu_id * 8).
    pub fn column(&self) -> usize {
        usize::from(self.mcu_id) * 8
    }
    /// Quantization table id from the scan header (always 0 observed).
    pub fn quant_table_id(&self) -> u8 {
        self.quant_table_id
    }
    /// DC Huffman table id (high nibble of the second scan-header byte).
    pub fn dc_table_id(&self) -> u8 {
        self.huffman_ids >> 4
    }
    /// AC Huffman table id (low nibble of the second scan-header byte).
    pub fn ac_table_id(&self) -> u8 {
        self.huffman_ids & 0x0F
    }
    /// 16-bit quality marker of the segment header (0xFFF0 observed).
    pub fn quality_marker(&self) -> u16 {
        self.quality_marker
    }
    /// JPEG quality factor Q (1..=100).
    pub fn quality(&self) -> u8 {
        self.quality
    }
    /// Entropy-coded data of the 14 MCUs.
    pub fn entropy_data(&self) -> &'a [u8] {
        self.entropy
    }
}

/// A CCSDS space packet split into the fields the assembler needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpacePacketRef<'a> {
    /// Application process id (11 bits).
    pub apid: u16,
    /// Sequence flags (2 bits; unreliable on Meteor BIS-MW).
    pub seq_flags: u8,
    /// Sequence count (14 bits; shared across the APIDs of the VC on Meteor).
    pub seq_count: u16,
    /// Data field (secondary header + user data).
    pub data: &'a [u8],
}

/// Split one complete CCSDS space packet (6-byte primary header + data field).
/// The buffer must hold exactly `length field + 1` data bytes (trailing bytes are rejected).
pub fn parse_space_packet(packet: &[u8]) -> Result<SpacePacketRef<'_>, Error> {
    let hdr = packet.get(..PRIMARY_HEADER_LEN).ok_or(Error::TooShort {
        what: "CCSDS primary header",
        len: packet.len(),
        need: PRIMARY_HEADER_LEN,
    })?;
    let w = |i: usize| -> u16 {
        let hi = hdr.get(i).copied().unwrap_or(0);
        let lo = hdr.get(i + 1).copied().unwrap_or(0);
        u16::from_be_bytes([hi, lo])
    };
    let id = w(0);
    let seq = w(2);
    let declared = usize::from(w(4)) + 1;
    let data = packet.get(PRIMARY_HEADER_LEN..).unwrap_or(&[]);
    if data.len() != declared {
        return Err(Error::LengthMismatch {
            declared,
            available: data.len(),
        });
    }
    Ok(SpacePacketRef {
        apid: id & 0x07FF,
        seq_flags: (seq >> 14) as u8,
        seq_count: seq & 0x3FFF,
        data,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    // First APID 64 packet of the 2022-12-20 20:25:30 sample (header + first entropy bytes).
    const FIRST: [u8; 16] = [
        0x00, 0x00, 0x05, 0x06, 0x80, 0xe8, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xf0, 0x5d, 0xfc,
        0x35,
    ];

    #[test]
    fn parses_first_sample_packet() {
        let p = ImagePacket::parse(&FIRST).unwrap();
        assert_eq!(
            p.time(),
            MsuTime {
                day: 0,
                ms_of_day: 0x050680e8,
                us: 0
            }
        );
        assert_eq!(p.time().ms_of_day, 84_312_296); // 23:25:12.296 MSK = 20:25:12.296 UTC
        assert_eq!(p.mcu_id(), 0);
        assert_eq!(p.quality_marker(), 0xfff0);
        assert_eq!(p.quality(), 93);
        assert_eq!(p.entropy_data(), &[0xfc, 0x35]);
    }

    #[test]
    fn rejects_bad_headers() {
        assert!(matches!(
            ImagePacket::parse(&FIRST[..13]),
            Err(Error::TooShort { .. })
        ));
        let mut bad = FIRST;
        bad[8] = 15;
        assert_eq!(ImagePacket::parse(&bad), Err(Error::InvalidMcuId(15)));
        bad[8] = 196;
        assert_eq!(ImagePacket::parse(&bad), Err(Error::InvalidMcuId(196)));
        bad[8] = 182;
        bad[13] = 0;
        assert_eq!(ImagePacket::parse(&bad), Err(Error::InvalidQuality(0)));
        bad[13] = 101;
        assert_eq!(ImagePacket::parse(&bad), Err(Error::InvalidQuality(101)));
    }

    #[test]
    fn space_packet_split() {
        let mut pkt = vec![0x08, 0x40, 0x75, 0x33, 0x00, 0x0f];
        pkt.extend_from_slice(&FIRST);
        let sp = parse_space_packet(&pkt).unwrap();
        assert_eq!(sp.apid, 64);
        assert_eq!(sp.seq_flags, 1);
        assert_eq!(sp.seq_count, 0x3533);
        assert_eq!(sp.data.len(), 16);
        pkt.push(0);
        assert!(matches!(
            parse_space_packet(&pkt),
            Err(Error::LengthMismatch { .. })
        ));
    }
}
