//! Spacecraft profiles: everything that differs between downlinks, as data.
//!
//! A profile names the CADU geometry (ASM, length, PN), the Reed-Solomon code (E, interleave,
//! virtual fill, basis), the frame protocol (TM or AOS, insert zone, OCF, FECF, fill VCID),
//! synchronizer tolerances and packet limits. Built-in profiles are TOML files compiled into the
//! crate (`decoder/profiles/*.toml`); operators load their own with [`Profile::from_toml_str`].
//! Parsing rejects unknown keys; [`Profile::validate`] then reports every problem at once.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Problem};
use crate::frame::{FrameKind, FrameLayout};
use crate::rs::{Basis, RsParams};
use crate::sync::SyncParams;

const BUILTIN: &[(&str, &str)] = &[
    ("eos", include_str!("../profiles/eos.toml")),
    ("jpss", include_str!("../profiles/jpss.toml")),
    ("jpss2", include_str!("../profiles/jpss2.toml")),
    ("metop", include_str!("../profiles/metop.toml")),
    ("meteor-lrpt", include_str!("../profiles/meteor-lrpt.toml")),
    (
        "meteor-m2-lrpt-72k",
        include_str!("../profiles/meteor-m2-lrpt-72k.toml"),
    ),
    (
        "meteor-lrpt-72k",
        include_str!("../profiles/meteor-lrpt-72k.toml"),
    ),
    (
        "meteor-lrpt-80k",
        include_str!("../profiles/meteor-lrpt-80k.toml"),
    ),
];

/// A spacecraft that flies this profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spacecraft {
    /// Spacecraft id as carried in the frame header.
    pub scid: u16,
    /// Human name.
    pub name: String,
}

/// CADU geometry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaduSpec {
    /// Bytes from the first ASM byte to the next ASM.
    pub length: usize,
    /// Attached sync marker, hex (8 to 16 hex digits).
    #[serde(default = "default_asm")]
    pub asm: String,
    /// CCSDS pseudo-randomization applied to the frame.
    #[serde(default = "yes")]
    pub pn: bool,
}

/// Reed-Solomon basis as written in profiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum BasisSpec {
    /// CCSDS dual basis (Berlekamp).
    Dual,
    /// Conventional basis (Meteor-M LRPT).
    Conventional,
}

/// Reed-Solomon code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RsSpec {
    /// Correctable symbols per codeword: 16 for (255,223), 8 for (255,239).
    pub e: u8,
    /// Interleave depth 1..=8.
    pub interleave: u8,
    /// Leading virtual-fill symbols per codeword (shortened code).
    #[serde(default)]
    pub virtual_fill: u8,
    /// Symbol basis.
    pub basis: BasisSpec,
}

/// Transfer frame format.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameSpec {
    /// `tm` or `aos`.
    pub kind: FrameKind,
    /// AOS insert zone length in bytes.
    #[serde(default)]
    pub insert_zone: usize,
    /// AOS frame header error control present.
    #[serde(default)]
    pub header_error_control: bool,
    /// AOS operational control field present (TM reads its header flag).
    #[serde(default)]
    pub ocf: bool,
    /// Frame error control field (CRC-16) present.
    #[serde(default)]
    pub fecf: bool,
    /// VCID of fill (idle) frames, typically 63 for AOS, 7 for TM.
    #[serde(default)]
    pub fill_vcid: Option<u8>,
    /// Virtual channels the spacecraft sends; a frame on any other VCID is rejected
    /// (`unknown_vcid`). Empty = any. The fill VCID is always accepted.
    #[serde(default)]
    pub vcids: Vec<u8>,
}

/// Synchronizer tolerances.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncSpec {
    /// Max ASM bit errors accepted while searching.
    pub search_tolerance: u8,
    /// Max ASM bit errors when confirming a candidate.
    pub check_tolerance: u8,
    /// Max ASM bit errors at the expected position while locked.
    pub lock_tolerance: u8,
    /// Confirmations needed before lock.
    pub check_frames: u8,
    /// Frames coasted without an ASM before declaring loss of sync.
    pub flywheel_frames: u8,
    /// Bit slips (±) checked at the expected position.
    pub max_slip_bits: u8,
    /// Accept the inverted ASM and invert the frame.
    pub allow_inverted: bool,
}

impl Default for SyncSpec {
    fn default() -> Self {
        let d = SyncParams::default();
        Self {
            search_tolerance: d.search_tolerance,
            check_tolerance: d.check_tolerance,
            lock_tolerance: d.lock_tolerance,
            check_frames: d.check_frames,
            flywheel_frames: d.flywheel_frames,
            max_slip_bits: d.max_slip_bits,
            allow_inverted: d.allow_inverted,
        }
    }
}

/// Packet extraction settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PacketSpec {
    /// Longest packet accepted (bytes, primary header included).
    pub max_len: usize,
    /// Virtual channels carrying space packets; empty = every VC except the fill VC.
    pub vcids: Vec<u8>,
}

impl Default for PacketSpec {
    fn default() -> Self {
        Self {
            max_len: 65542,
            vcids: Vec::new(),
        }
    }
}

/// A complete spacecraft downlink profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Short name (`eos`, `jpss` …).
    pub name: String,
    /// One-line description.
    #[serde(default)]
    pub description: String,
    /// Spacecraft ids accepted in frame headers; empty = any.
    #[serde(default)]
    pub spacecraft: Vec<Spacecraft>,
    /// CADU geometry.
    pub cadu: CaduSpec,
    /// Reed-Solomon code, if the link has one.
    #[serde(default)]
    pub rs: Option<RsSpec>,
    /// Transfer frame format.
    pub frame: FrameSpec,
    /// Synchronizer tolerances.
    #[serde(default)]
    pub sync: SyncSpec,
    /// Packet extraction.
    #[serde(default)]
    pub packets: PacketSpec,
    /// The imaging instrument whose packets become scene products, if the downlink carries one.
    #[serde(default)]
    pub imaging: Option<ImagingSpec>,
    /// The inner (channel) code in front of the CADUs, used with `soft-i8` and `hard` input.
    #[serde(default)]
    pub inner: Option<crate::soft::InnerSpec>,
}

/// An imaging instrument carried in the downlink's space packets.
///
/// The decoder itself ignores this section; the daemon and `downlink image` use it to turn
/// packets into georeferenced products.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagingSpec {
    /// Instrument model: `msu-mr` (Meteor-M MSU-MR in LRPT).
    pub instrument: String,
    /// Catalogue number (NORAD id) used to pick the spacecraft's TLE.
    pub norad_id: u32,
    /// Spacecraft name for product metadata.
    #[serde(default)]
    pub spacecraft: String,
    /// Image channels; an APID not listed here is not imagery.
    pub channels: Vec<ChannelSpec>,
    /// The channel used as red/visible in NDVI (`ndvi = [vis_apid, nir_apid]`).
    #[serde(default)]
    pub ndvi: Option<[u16; 2]>,
    /// Composite bands as `[red, green, blue]` APID preference lists: the first APID of each
    /// list present in the pass is used.
    #[serde(default)]
    pub composite: Vec<Vec<u16>>,
}

/// One spectral channel of an imaging instrument.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    /// APID carrying the channel.
    pub apid: u16,
    /// Channel name (`"1"`, `"4"` …) as the instrument documentation numbers it.
    pub name: String,
    /// Centre wavelength in micrometres.
    pub center_um: f64,
    /// Full width at half maximum in micrometres.
    pub fwhm_um: f64,
    /// STAC/EO common name (`red`, `nir08`, `swir16`, `lwir11` …) if one applies.
    #[serde(default)]
    pub common_name: Option<String>,
}

fn default_asm() -> String {
    "1ACFFC1D".to_owned()
}
fn yes() -> bool {
    true
}

/// Instruments `downlink image` knows how to decode.
pub const IMAGING_INSTRUMENTS: &[&str] = &["msu-mr"];

fn validate_imaging(im: &ImagingSpec, pr: &mut Vec<Problem>) {
    if !IMAGING_INSTRUMENTS.contains(&im.instrument.as_str()) {
        problem(
            pr,
            "imaging.instrument",
            format!(
                "must be one of {}, got {:?}",
                IMAGING_INSTRUMENTS.join(", "),
                im.instrument
            ),
        );
    }
    if im.channels.is_empty() {
        problem(
            pr,
            "imaging.channels",
            "must list at least one channel".into(),
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, c) in im.channels.iter().enumerate() {
        if c.apid > 0x7ff {
            problem(
                pr,
                &format!("imaging.channels[{i}].apid"),
                format!("must be 0..=2047, got {}", c.apid),
            );
        }
        if !seen.insert(c.apid) {
            problem(
                pr,
                &format!("imaging.channels[{i}].apid"),
                format!("is listed twice ({})", c.apid),
            );
        }
        if !(c.center_um > 0.0 && c.fwhm_um > 0.0) {
            problem(
                pr,
                &format!("imaging.channels[{i}]"),
                format!(
                    "center_um and fwhm_um must be positive, got {} and {}",
                    c.center_um, c.fwhm_um
                ),
            );
        }
    }
    let known = |a: &u16| im.channels.iter().any(|c| c.apid == *a);
    if let Some(n) = &im.ndvi {
        for a in n {
            if !known(a) {
                problem(
                    pr,
                    "imaging.ndvi",
                    format!("APID {a} is not one of imaging.channels"),
                );
            }
        }
    }
    if !im.composite.is_empty() && im.composite.len() != 3 {
        problem(
            pr,
            "imaging.composite",
            format!(
                "must list 3 bands (red, green, blue), got {}",
                im.composite.len()
            ),
        );
    }
    for (i, band) in im.composite.iter().enumerate() {
        if band.is_empty() {
            problem(
                pr,
                &format!("imaging.composite[{i}]"),
                "must list at least one APID".into(),
            );
        }
        for a in band {
            if !known(a) {
                problem(
                    pr,
                    &format!("imaging.composite[{i}]"),
                    format!("APID {a} is not one of imaging.channels"),
                );
            }
        }
    }
}

fn problem(problems: &mut Vec<Problem>, path: &str, message: String) {
    problems.push(Problem {
        path: path.to_owned(),
        message,
    });
}

impl Profile {
    /// Names of the built-in profiles.
    pub fn builtin_names() -> impl Iterator<Item = &'static str> {
        BUILTIN.iter().map(|(n, _)| *n)
    }

    /// The TOML text of a built-in profile, comments included.
    pub fn builtin_source(name: &str) -> Option<&'static str> {
        BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
    }

    /// A built-in profile by name.
    pub fn builtin(name: &str) -> Result<Profile, Error> {
        let (_, text) =
            BUILTIN
                .iter()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| Error::UnknownProfile {
                    name: name.to_owned(),
                    known: Self::builtin_names().collect::<Vec<_>>().join(", "),
                })?;
        Self::from_toml_str(text, name)
    }

    /// Parses and validates a profile; `source_name` names the text in messages.
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<Profile, Error> {
        let p: Profile = toml::from_str(text).map_err(|e| Error::ProfileSyntax {
            source_name: source_name.to_owned(),
            message: e.to_string(),
        })?;
        p.validate()?;
        Ok(p)
    }

    /// Checks the whole profile and reports every problem at once.
    pub fn validate(&self) -> Result<(), Error> {
        let mut pr = Vec::new();
        if self.name.trim().is_empty() {
            problem(&mut pr, "name", "must not be empty".into());
        }
        let asm = self.asm();
        if asm.is_none() {
            problem(
                &mut pr,
                "cadu.asm",
                format!(
                    "must be 2 to 16 hex digits (an even count), got {:?}",
                    self.cadu.asm
                ),
            );
        }
        let asm_len = self.asm_len();
        if self.cadu.length <= asm_len || self.cadu.length > 16384 {
            problem(
                &mut pr,
                "cadu.length",
                format!(
                    "must be more than the ASM and at most 16384, got {}",
                    self.cadu.length
                ),
            );
        }
        let frame_len = self.cadu.length.saturating_sub(asm_len);
        if let Some(rs) = &self.rs {
            if rs.e != 8 && rs.e != 16 {
                problem(&mut pr, "rs.e", format!("must be 8 or 16, got {}", rs.e));
            }
            if !(1..=8).contains(&rs.interleave) {
                problem(
                    &mut pr,
                    "rs.interleave",
                    format!("must be 1..=8, got {}", rs.interleave),
                );
            }
            if let Some(max_fill) = RsParams::max_virtual_fill(rs.e) {
                if rs.virtual_fill > max_fill {
                    problem(
                        &mut pr,
                        "rs.virtual_fill",
                        format!("must be at most {max_fill}, got {}", rs.virtual_fill),
                    );
                }
            }
            let block = usize::from(rs.interleave) * (255 - usize::from(rs.virtual_fill));
            if (1..=8).contains(&rs.interleave) && block != frame_len {
                problem(
                    &mut pr,
                    "cadu.length",
                    format!(
                        "must be the ASM plus interleave × (255 − virtual_fill) = {} bytes for this RS code, got {}",
                        block + asm_len,
                        self.cadu.length
                    ),
                );
            }
        }
        if self.frame.kind == FrameKind::Tm {
            if self.frame.insert_zone != 0 {
                problem(
                    &mut pr,
                    "frame.insert_zone",
                    format!(
                        "is AOS-only; TM frames have none, got {}",
                        self.frame.insert_zone
                    ),
                );
            }
            if self.frame.header_error_control {
                problem(
                    &mut pr,
                    "frame.header_error_control",
                    "is AOS-only; must be false for TM".into(),
                );
            }
            if self.frame.ocf {
                problem(
                    &mut pr,
                    "frame.ocf",
                    "is read from the TM header's OCF flag; must be false for TM".into(),
                );
            }
        }
        let layout = self.frame_layout();
        if layout.frame_len < layout.min_len() {
            problem(
                &mut pr,
                "frame",
                format!(
                    "frames of {} bytes cannot hold the header, insert zone and trailer ({} bytes)",
                    layout.frame_len,
                    layout.min_len()
                ),
            );
        }
        let vc_max = layout.kind.vcid_count();
        if let Some(v) = self.frame.fill_vcid {
            if usize::from(v) >= vc_max {
                problem(
                    &mut pr,
                    "frame.fill_vcid",
                    format!(
                        "must be below {vc_max} for {:?} frames, got {v}",
                        layout.kind
                    ),
                );
            }
        }
        for (i, v) in self.frame.vcids.iter().enumerate() {
            if usize::from(*v) >= vc_max {
                problem(
                    &mut pr,
                    &format!("frame.vcids[{i}]"),
                    format!("must be below {vc_max}, got {v}"),
                );
            }
        }
        for (i, v) in self.packets.vcids.iter().enumerate() {
            if usize::from(*v) >= vc_max {
                problem(
                    &mut pr,
                    &format!("packets.vcids[{i}]"),
                    format!("must be below {vc_max}, got {v}"),
                );
            }
        }
        let scid_max = if layout.kind == FrameKind::Aos {
            0xFF
        } else {
            0x3FF
        };
        for (i, s) in self.spacecraft.iter().enumerate() {
            if s.scid > scid_max {
                problem(
                    &mut pr,
                    &format!("spacecraft[{i}].scid"),
                    format!("must be at most {scid_max}, got {}", s.scid),
                );
            }
        }
        if !(7..=65542).contains(&self.packets.max_len) {
            problem(
                &mut pr,
                "packets.max_len",
                format!("must be 7..=65542, got {}", self.packets.max_len),
            );
        }
        let s = &self.sync;
        let asm_bits = asm_len * 8;
        for (name, v) in [
            ("sync.search_tolerance", s.search_tolerance),
            ("sync.check_tolerance", s.check_tolerance),
            ("sync.lock_tolerance", s.lock_tolerance),
        ] {
            if usize::from(v) * 4 > asm_bits {
                problem(
                    &mut pr,
                    name,
                    format!("must be at most a quarter of the ASM's {asm_bits} bits, got {v}"),
                );
            }
        }
        if s.check_frames == 0 {
            problem(
                &mut pr,
                "sync.check_frames",
                "must be at least 1, got 0".into(),
            );
        }
        if s.max_slip_bits > 2 {
            problem(
                &mut pr,
                "sync.max_slip_bits",
                format!("must be 0..=2, got {}", s.max_slip_bits),
            );
        }
        if let Some(im) = &self.imaging {
            validate_imaging(im, &mut pr);
        }
        if pr.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidProfile {
                name: self.name.clone(),
                problems: pr,
            })
        }
    }

    /// The ASM as (value, bit length), if the hex is valid.
    pub fn asm(&self) -> Option<(u64, u8)> {
        let hex = self.cadu.asm.trim();
        if hex.is_empty() || hex.len() > 16 || !hex.len().is_multiple_of(2) {
            return None;
        }
        let v = u64::from_str_radix(hex, 16).ok()?;
        Some((v, (hex.len() * 4) as u8))
    }

    /// Bytes of the ASM.
    pub fn asm_len(&self) -> usize {
        self.asm().map_or(4, |(_, bits)| usize::from(bits / 8))
    }

    /// Bytes after the ASM (frame incl. RS parity).
    pub fn coded_frame_len(&self) -> usize {
        self.cadu.length.saturating_sub(self.asm_len())
    }

    /// Reed-Solomon parameters, if the link is RS-coded.
    pub fn rs_params(&self) -> Option<RsParams> {
        self.rs.as_ref().map(|r| RsParams {
            e: r.e,
            interleave: r.interleave,
            virtual_fill: r.virtual_fill,
            basis: match r.basis {
                BasisSpec::Dual => Basis::Dual,
                BasisSpec::Conventional => Basis::Conventional,
            },
        })
    }

    /// Frame length once RS parity is removed.
    pub fn frame_len(&self) -> usize {
        let parity = self
            .rs
            .as_ref()
            .map_or(0, |r| usize::from(r.interleave) * 2 * usize::from(r.e));
        self.coded_frame_len().saturating_sub(parity)
    }

    /// Frame geometry.
    pub fn frame_layout(&self) -> FrameLayout {
        FrameLayout {
            kind: self.frame.kind,
            frame_len: self.frame_len(),
            header_error_control: self.frame.header_error_control,
            insert_zone_len: self.frame.insert_zone,
            ocf: self.frame.ocf,
            fecf: self.frame.fecf,
        }
    }

    /// Synchronizer parameters for this profile.
    pub fn sync_params(&self, byte_aligned: bool) -> SyncParams {
        let (asm, asm_bits) = self.asm().unwrap_or((0x1ACF_FC1D, 32));
        SyncParams {
            asm,
            asm_bits,
            frame_len: self.coded_frame_len(),
            search_tolerance: self.sync.search_tolerance,
            check_tolerance: self.sync.check_tolerance,
            lock_tolerance: self.sync.lock_tolerance,
            check_frames: self.sync.check_frames,
            flywheel_frames: self.sync.flywheel_frames,
            max_slip_bits: self.sync.max_slip_bits,
            allow_inverted: self.sync.allow_inverted,
            byte_aligned,
        }
    }

    /// Whether frames of `scid` belong to this profile.
    pub fn accepts_scid(&self, scid: u16) -> bool {
        self.spacecraft.is_empty() || self.spacecraft.iter().any(|s| s.scid == scid)
    }

    /// Whether frames on `vcid` belong to this link (`frame.vcids`, plus the fill VCID).
    pub fn accepts_vcid(&self, vcid: u8) -> bool {
        self.frame.vcids.is_empty()
            || self.frame.vcids.contains(&vcid)
            || self.frame.fill_vcid == Some(vcid)
    }

    /// Spacecraft name for `scid`, if listed.
    pub fn spacecraft_name(&self, scid: u16) -> Option<&str> {
        self.spacecraft
            .iter()
            .find(|s| s.scid == scid)
            .map(|s| s.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_parse_and_validate() {
        for name in Profile::builtin_names() {
            let p = Profile::builtin(name).unwrap();
            assert_eq!(p.name, name);
            assert!(p.rs_params().is_some());
        }
        let j2 = Profile::builtin("jpss2").unwrap();
        assert_eq!(j2.coded_frame_len(), 1275);
        assert_eq!(j2.frame_len(), 1275 - 160);
        let m = Profile::builtin("meteor-lrpt").unwrap();
        assert_eq!(m.rs_params().unwrap().basis, Basis::Conventional);
        assert_eq!(m.frame_len(), 892);
        let im = m.imaging.as_ref().unwrap();
        assert_eq!(im.instrument, "msu-mr");
        assert_eq!(im.norad_id, 40069);
        assert_eq!(im.channels.len(), 6);
        assert_eq!(im.ndvi, Some([64, 65]));
        assert!(Profile::builtin("jpss").unwrap().imaging.is_none());
        assert!(matches!(
            Profile::builtin("nope"),
            Err(Error::UnknownProfile { .. })
        ));
    }

    #[test]
    fn unknown_keys_are_errors() {
        let text =
            include_str!("../profiles/eos.toml").replace("pn = true", "pn = true\nbogus = 1");
        let err = Profile::from_toml_str(&text, "test").unwrap_err();
        assert!(matches!(err, Error::ProfileSyntax { .. }));
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    #[test]
    fn all_problems_reported_at_once() {
        let text = include_str!("../profiles/eos.toml")
            .replace("interleave = 4", "interleave = 9")
            .replace("e = 16", "e = 12")
            .replace("fill_vcid = 63", "fill_vcid = 64")
            .replace("asm = \"1ACFFC1D\"", "asm = \"XYZ\"");
        let err = Profile::from_toml_str(&text, "test").unwrap_err();
        let Error::InvalidProfile { problems, .. } = &err else {
            panic!("expected InvalidProfile, got {err}");
        };
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        for want in ["rs.e", "rs.interleave", "frame.fill_vcid", "cadu.asm"] {
            assert!(paths.contains(&want), "{want} missing from {paths:?}");
        }
        assert!(err.to_string().contains("must be 1..=8, got 9"), "{err}");
    }

    #[test]
    fn rs_geometry_must_match_cadu_length() {
        let text = include_str!("../profiles/eos.toml").replace("length = 1024", "length = 1000");
        let err = Profile::from_toml_str(&text, "test").unwrap_err();
        assert!(err.to_string().contains("cadu.length"), "{err}");
    }

    #[test]
    fn imaging_problems_reported_with_paths() {
        let text = include_str!("../profiles/meteor-lrpt.toml")
            .replace("instrument = \"msu-mr\"", "instrument = \"avhrr\"")
            .replace("ndvi = [64, 65]", "ndvi = [64, 99]")
            .replace(
                "composite = [[66, 68], [65], [64]]",
                "composite = [[66, 68], [65]]",
            )
            .replace("apid = 69", "apid = 68");
        let err = Profile::from_toml_str(&text, "test").unwrap_err();
        let Error::InvalidProfile { problems, .. } = &err else {
            panic!("expected InvalidProfile, got {err}");
        };
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "imaging.instrument",
            "imaging.ndvi",
            "imaging.composite",
            "imaging.channels[5].apid",
        ] {
            assert!(paths.contains(&want), "{want} missing from {paths:?}");
        }
        assert!(err.to_string().contains("APID 99 is not one of"), "{err}");
    }
}
