//! `downlink replay`: stream a recorded capture to a station (or to the Downlink daemon) over
//! UDP or TCP at a paced bit rate, optionally impairing the bit stream on the way.
//!
//! This is IO code for the `downlink` binary, not part of the sans-IO decoder: it owns a socket,
//! a file and the monotonic clock. Everything that decides *what* is sent is pure and tested
//! separately: [`parse_rate`], [`parse_target`], the [`Impairer`] and the pacing arithmetic.
//!
//! The streams it replays are CCSDS TM channel streams (CCSDS 131.0-B, *TM Synchronization and
//! Channel Coding*: attached sync markers, pseudo-randomization, Reed-Solomon). The impairments
//! model what a real demodulator hands a frame synchronizer: random bit errors (BER), bit slips
//! of the bit synchronizer (the ASM reappears one bit earlier/later, forcing re-acquisition) and
//! the 180° phase ambiguity of (O)QPSK/BPSK demodulation (every bit inverted, so the receiver
//! must find the inverted ASM). This module implements no section of the Blue Book itself.
//!
//! # Wire format
//! The output is one continuous byte stream (the impaired file, `COUNT` times back to back
//! with `--loop`). Over UDP it is cut into datagrams of exactly `--datagram-size` bytes (only the
//! very last one may be shorter); datagrams carry no header and may straddle loop boundaries.
//! Over TCP the same stream is written in `--datagram-size` chunks with the same pacing.
//!
//! # Rates
//! See [`parse_rate`]: SI (decimal) prefixes; `bit`/`bps`/`b/s` (or no unit) are bits,
//! `B`/`B/s`/`Bps` are bytes. Pacing is a token bucket on the monotonic clock: datagram *i* is
//! released at `start + bytes_before_i × 8 / rate`, but a datagram may leave up to
//! [`EARLY`] before its slot (a token bucket with a burst of that much data), so the sender
//! sends small bursts and sleeps between them instead of busy-waiting: it never runs ahead of
//! the schedule by more than [`EARLY`], and the long-run rate is exact. (An earlier version
//! busy-spun for the last 100 µs before each slot, which took a whole core from ~80 Mbit/s up
//! and starved a daemon on the same 2-core machine.) If it falls behind (scheduler
//! hiccup, slow disk) it catches up by at most [`MAX_LAG`] of data in a burst, then re-anchors,
//! so a pause never turns into a long line-rate burst. After the last datagram it waits for the
//! end of that datagram's slot, so the achieved rate never exceeds the requested one.
//!
//! # Impairments (see [`Impairer`])
//! Applied in this order, bit-exactly and independently of how the input is chunked:
//! 1. `--invert-after N`: every bit of stream byte `N` (0-based, counted over the whole stream
//!    including loops) and later is inverted.
//! 2. `--slip-every N`: at stream byte offsets `N, 2N, 3N, …` a one-bit slip happens; slips
//!    alternate, starting with a **deletion** (the first bit of that byte is dropped), then an
//!    **insertion** (a copy of the previous bit is inserted before that byte, as a bit
//!    synchronizer that samples one bit twice would), then deletion again, … so the output is
//!    never more than one bit shorter than the input and never longer.
//! 3. `--ber P`: every output bit (including inserted ones) is flipped independently with
//!    probability `P`, drawn with a geometric skip sampler from a seeded xorshift64* PRNG.
//!
//! A trailing partial byte (after an odd number of slips) is padded with zero bits, so the
//! output has exactly as many bytes as the input.
//!
//! # Soft symbols (`--encode conv`)
//! With `--encode conv` the file is taken as a hard-bit stream after Viterbi (CADUs, MSB first)
//! and sent as what a QPSK demodulator hands the Viterbi decoder: convolutionally encoded
//! (CCSDS 131.0-B §3, k = 7, r = 1/2), mapped to int8 `(I, Q)` soft symbols, with Gaussian noise
//! at `--ebn0`, a constellation rotation (`--rotate`), an I/Q swap (`--swap-iq`) and one slip of
//! `--slip-symbols` symbols in mid-stream: the `soft-i8` input format. See [`soft`] for the exact
//! definition (Eb/N0 is per information bit: `Ec/N0 = Eb/N0 − 3.01 dB` per channel bit). The
//! bit impairments above do not combine with it. `--rate` is the rate of the bytes sent (16
//! soft bytes per input byte).
//!
//! # Output to a file
//! `--output FILE` writes the stream (impaired or encoded) to a file instead of a socket, as fast
//! as it is made (no pacing), in `--datagram-size` writes.
//!
//! # Limitations
//! `--loop` without a count runs until the process is killed; there is no signal handling, so
//! an interrupted run prints no summary. UDP datagrams refused by the peer (ICMP port
//! unreachable, i.e. nothing listening) are counted in the summary and not retried.
// In the `downlink` binary this module is private; keep the public API names anyway.

use std::fmt;
use std::fs::File;
use std::io::{self, IsTerminal, Read, Seek, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::error::Error;

use indicatif::{ProgressBar, ProgressStyle};

pub mod soft;

use soft::{Rotation, SoftEncoder, SoftParams, SoftStats};

/// How far ahead of its slot a datagram may be sent (the pacer's burst allowance).
pub const EARLY: Duration = Duration::from_micros(500);
/// Largest backlog the pacer catches up on in one burst after falling behind.
pub const MAX_LAG: Duration = Duration::from_millis(2);
/// File read size (one reused buffer).
const READ_CHUNK: usize = 256 * 1024;
/// Largest UDP payload over IPv4 / IPv6.
const MAX_UDP_V4: usize = 65_507;
const MAX_UDP_V6: usize = 65_527;
/// Largest TCP write chunk accepted for `--datagram-size`.
const MAX_TCP_CHUNK: usize = 16 * 1024 * 1024;

/// Arguments of `downlink replay`.
#[derive(clap::Args, Debug, Clone)]
pub struct ReplayArgs {
    /// Capture to replay (raw bytes, sent as they are).
    pub file: PathBuf,
    /// Destination: udp://IP:PORT or tcp://IP:PORT (IPv6 as `udp://[::1]:PORT`; `localhost` is
    /// 127.0.0.1; no DNS).
    #[arg(long, required_unless_present = "output")]
    pub to: Option<String>,
    /// Write the stream to this file instead of sending it (as fast as it is made).
    #[arg(long, value_name = "FILE", conflicts_with = "to")]
    pub output: Option<PathBuf>,
    /// Paced rate: 400Mbit, 1.5Gbit, 10kbit, 100000 (bit/s), 50MB/s (bytes). SI prefixes.
    #[arg(long, default_value = "100Mbit")]
    pub rate: String,
    /// UDP payload size in bytes (TCP: write size). Only the last datagram may be shorter.
    #[arg(long, default_value_t = 1024)]
    pub datagram_size: usize,
    /// Replay the file COUNT times as one continuous stream; without COUNT (or 0) until
    /// interrupted. Put FILE before --loop, or write --loop=COUNT.
    #[arg(long, num_args = 0..=1, default_missing_value = "0", value_name = "COUNT")]
    pub r#loop: Option<u64>,
    /// Flip every output bit independently with this probability (0..=1).
    #[arg(long, value_name = "P")]
    pub ber: Option<f64>,
    /// One-bit slip every N stream bytes, alternating deletion and insertion.
    #[arg(long, value_name = "BYTES")]
    pub slip_every: Option<u64>,
    /// Invert every bit from this stream byte offset on (180° phase ambiguity).
    #[arg(long, value_name = "BYTES")]
    pub invert_after: Option<u64>,
    /// Seed of the bit-error and noise generator (same seed, same errors).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Send soft symbols instead of bits: `conv` = the CCSDS k=7 r=1/2 convolutional code on
    /// QPSK, int8 (I, Q) pairs, positive = 1 (the `soft-i8` input format).
    #[arg(long, value_enum, value_name = "CODE")]
    pub encode: Option<Encode>,
    /// With --encode: Gaussian noise at this Eb/N0 (dB, per information bit).
    #[arg(
        long,
        value_name = "DB",
        requires = "encode",
        allow_negative_numbers = true
    )]
    pub ebn0: Option<f64>,
    /// With --encode: turn the constellation by 0, 90, 180 or 270 degrees (phase ambiguity).
    #[arg(long, value_name = "DEGREES", requires = "encode")]
    pub rotate: Option<u16>,
    /// With --encode: exchange I and Q (after --rotate).
    #[arg(long, requires = "encode")]
    pub swap_iq: bool,
    /// With --encode: drop this many QPSK symbols once, in the middle of the file.
    #[arg(long, value_name = "N", requires = "encode")]
    pub slip_symbols: Option<u64>,
    /// With --encode: soft value of a noiseless channel bit (1..=127).
    #[arg(long, value_name = "A", requires = "encode", default_value_t = soft::DEFAULT_AMPLITUDE)]
    pub amplitude: u8,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Inner code of `--encode`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encode {
    /// CCSDS 131.0-B §3 convolutional code, k = 7, r = 1/2, QPSK int8 soft symbols.
    Conv,
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

// ---------------------------------------------------------------------------------------------
// Rate and target parsing (pure)
// ---------------------------------------------------------------------------------------------

/// Parses a rate into bits per second.
///
/// Grammar: `NUMBER [SPACE] [PREFIX] [UNIT]`, where NUMBER is a positive decimal (fraction and
/// exponent allowed: `1.5`, `1e6`), PREFIX is one of `k K M m G g T t` (SI, powers of 1000;
/// `m` means mega, not milli), and UNIT is
/// - bits: none, `bit`, `bits`, `bit/s`, `bits/s`, `bps`, `b`, `b/s` (any case), or
/// - bytes (× 8): `B`, `B/s`, `Bps`, `byte/s`, `bytes/s` (capital `B` is bytes).
///
/// Examples: `400Mbit` = 400 000 000, `1.5Gbit`, `10kbit`, `100000`, `50MB/s` = 400 000 000.
/// The result is rounded to whole bit/s and must be at least 1 and fit in a `u64`; zero,
/// negative, NaN/inf, unknown units and trailing garbage are errors.
pub fn parse_rate(s: &str) -> Result<u64, Error> {
    let err = |reason| Error::Rate {
        input: s.to_owned(),
        reason,
    };
    let t = s.trim();
    // The numeric part: digits, '.', and an exponent ('e' followed by a digit or sign).
    let bytes = t.as_bytes();
    let mut end = 0;
    while let Some(&c) = bytes.get(end) {
        let is_exp = (c == b'e' || c == b'E')
            && end > 0
            && bytes
                .get(end + 1)
                .is_some_and(|&n| n.is_ascii_digit() || n == b'+' || n == b'-');
        if c.is_ascii_digit() || c == b'.' {
            end += 1;
        } else if is_exp {
            end += 2;
        } else {
            break;
        }
    }
    let (num, rest) = t.split_at_checked(end).ok_or_else(|| err("not a number"))?;
    if num.is_empty() {
        return Err(err("expected a number, e.g. 400Mbit"));
    }
    let value: f64 = num.parse().map_err(|_| err("not a number"))?;
    let rest = rest.trim_start();
    let (scale, unit) = match rest.chars().next() {
        Some('k' | 'K') => (1e3, rest.get(1..).unwrap_or("")),
        Some('M' | 'm') => (1e6, rest.get(1..).unwrap_or("")),
        Some('G' | 'g') => (1e9, rest.get(1..).unwrap_or("")),
        Some('T' | 't') => (1e12, rest.get(1..).unwrap_or("")),
        _ => (1.0, rest),
    };
    let bits_per_unit = match unit {
        "B" | "B/s" | "Bps" => 8.0,
        u if u.eq_ignore_ascii_case("byte/s") || u.eq_ignore_ascii_case("bytes/s") => 8.0,
        "" => 1.0,
        u if ["bit", "bits", "bit/s", "bits/s", "bps", "b", "b/s"]
            .iter()
            .any(|k| u.eq_ignore_ascii_case(k)) =>
        {
            1.0
        }
        _ => return Err(err("unknown unit (use bit, kbit, Mbit, Gbit or B/s, MB/s)")),
    };
    let bps = (value * scale * bits_per_unit).round();
    if !bps.is_finite() || bps >= u64::MAX as f64 {
        return Err(err("too large"));
    }
    if bps < 1.0 {
        return Err(err("must be at least 1 bit/s"));
    }
    Ok(bps as u64)
}

/// Where to send the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Datagrams to this address.
    Udp(SocketAddr),
    /// A TCP connection to this address.
    Tcp(SocketAddr),
}

impl Target {
    /// The destination address.
    pub fn addr(&self) -> SocketAddr {
        match *self {
            Target::Udp(a) | Target::Tcp(a) => a,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Udp(a) => write!(f, "udp://{a}"),
            Target::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// Parses `udp://IP:PORT` or `tcp://IP:PORT` (scheme case-insensitive; IPv6 in brackets;
/// `localhost` means 127.0.0.1; host names are not resolved). Port 0 and unspecified addresses
/// (`0.0.0.0`, `::`) are rejected, as is a multicast address for TCP.
pub fn parse_target(s: &str) -> Result<Target, Error> {
    let err = |reason| Error::Target {
        input: s.to_owned(),
        reason,
    };
    let t = s.trim();
    let (scheme, rest) = t
        .split_once("://")
        .ok_or_else(|| err("expected udp://IP:PORT or tcp://IP:PORT"))?;
    let udp = if scheme.eq_ignore_ascii_case("udp") {
        true
    } else if scheme.eq_ignore_ascii_case("tcp") {
        false
    } else {
        return Err(err("scheme must be udp:// or tcp://"));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let addr: SocketAddr = match rest.parse() {
        Ok(a) => a,
        Err(_) => {
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| err("expected IP:PORT"))?;
            if !host.eq_ignore_ascii_case("localhost") {
                return Err(err("expected a numeric IP address and a port (no DNS)"));
            }
            let port: u16 = port.parse().map_err(|_| err("bad port"))?;
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
        }
    };
    if addr.port() == 0 {
        return Err(err("port 0"));
    }
    if addr.ip().is_unspecified() {
        return Err(err("unspecified address"));
    }
    if udp {
        Ok(Target::Udp(addr))
    } else if addr.ip().is_multicast() {
        Err(err("multicast address with tcp://"))
    } else {
        Ok(Target::Tcp(addr))
    }
}

// ---------------------------------------------------------------------------------------------
// Impairments (pure, deterministic)
// ---------------------------------------------------------------------------------------------

/// Counters of what the [`Impairer`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImpairStats {
    /// Output bits flipped by `--ber`.
    pub bits_flipped: u64,
    /// Bits inserted by slips.
    pub slips_inserted: u64,
    /// Bits deleted by slips.
    pub slips_deleted: u64,
    /// Input bytes inverted by `--invert-after`.
    pub inverted_bytes: u64,
}

impl ImpairStats {
    /// True when nothing was changed.
    pub fn is_clean(&self) -> bool {
        *self == Self::default()
    }
}

impl fmt::Display for ImpairStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clean() {
            return f.write_str("none");
        }
        write!(
            f,
            "{} bits flipped, {} slips ({} deleted, {} inserted), {} bytes inverted",
            self.bits_flipped,
            self.slips_deleted + self.slips_inserted,
            self.slips_deleted,
            self.slips_inserted,
            self.inverted_bytes
        )
    }
}

/// xorshift64* (Vigna): small, fast, plenty for bit-error positions.
#[derive(Debug, Clone)]
struct XorShift64Star(u64);

impl XorShift64Star {
    fn new(seed: u64) -> Self {
        // splitmix64 scrambles the seed so that 0 and small seeds are fine.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in (0, 1].
    fn unit_open0(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Applies `--invert-after`, `--slip-every` and `--ber` to a byte stream (MSB-first bits).
///
/// Deterministic for a given configuration and seed, and independent of chunking: feeding a
/// file in 1-byte or 64 KiB pieces gives the same output. Call [`Impairer::finish`] once at
/// the end of the stream to flush a partial byte (zero-padded). See the module docs for the
/// exact semantics.
#[derive(Debug, Clone)]
pub struct Impairer {
    /// ln(1 - p) for the geometric sampler; `None` = no bit errors.
    ln_keep: Option<f64>,
    slip_every: Option<u64>,
    invert_after: Option<u64>,
    rng: XorShift64Star,
    /// Input bytes consumed.
    in_pos: u64,
    /// Input byte offset of the next slip (`u64::MAX` = never).
    next_slip: u64,
    next_slip_deletes: bool,
    /// Last input bit (after inversion), copied by an insertion.
    last_bit: u8,
    /// Pending output bits, right-aligned; fewer than 8 between calls.
    acc: u32,
    acc_bits: u32,
    /// Output bytes emitted so far.
    out_bytes: u64,
    /// Output bit index of the next bit error (`u64::MAX` = never).
    next_flip: u64,
    stats: ImpairStats,
}

impl Impairer {
    /// `ber`: flip probability per bit (`None`, NaN or ≤ 0: none; ≥ 1: every bit).
    /// `slip_every`: bytes between slips (`None` or 0: none). `invert_after`: first inverted
    /// byte offset (`None`: none). `seed`: PRNG seed for the bit errors.
    pub fn new(
        ber: Option<f64>,
        slip_every: Option<u64>,
        invert_after: Option<u64>,
        seed: u64,
    ) -> Self {
        let ln_keep = match ber {
            Some(p) if p > 0.0 => Some(if p >= 1.0 {
                f64::NEG_INFINITY
            } else {
                (-p).ln_1p()
            }),
            _ => None,
        };
        let slip_every = slip_every.filter(|&n| n > 0);
        let mut s = Self {
            ln_keep,
            slip_every,
            invert_after,
            rng: XorShift64Star::new(seed),
            in_pos: 0,
            next_slip: slip_every.unwrap_or(u64::MAX),
            next_slip_deletes: true,
            last_bit: 0,
            acc: 0,
            acc_bits: 0,
            out_bytes: 0,
            next_flip: u64::MAX,
            stats: ImpairStats::default(),
        };
        s.next_flip = s.gap();
        s
    }

    /// True when this impairer changes nothing (output = input).
    pub fn is_identity(&self) -> bool {
        self.ln_keep.is_none() && self.slip_every.is_none() && self.invert_after.is_none()
    }

    /// Counters so far.
    pub fn stats(&self) -> ImpairStats {
        self.stats
    }

    /// Number of error-free bits before the next bit error: geometric with parameter p.
    fn gap(&mut self) -> u64 {
        match self.ln_keep {
            None => u64::MAX,
            // P(gap >= k) = P(U <= (1-p)^k) = (1-p)^k. `as` saturates (inf -> MAX, NaN -> 0).
            Some(ln_keep) => (self.rng.unit_open0().ln() / ln_keep) as u64,
        }
    }

    fn mask_at(&self, pos: u64) -> u8 {
        match self.invert_after {
            Some(t) if pos >= t => 0xFF,
            _ => 0,
        }
    }

    /// Appends `n` (≤ 9) bits, right-aligned in `v`, to the output.
    fn push_bits(&mut self, v: u32, n: u32, out: &mut Vec<u8>) {
        self.acc = (self.acc << n) | (v & ((1u32 << n) - 1));
        self.acc_bits += n;
        while self.acc_bits >= 8 {
            self.acc_bits -= 8;
            out.push((self.acc >> self.acc_bits) as u8);
            self.acc &= (1u32 << self.acc_bits) - 1;
        }
    }

    /// Appends whole bytes (already known to need `mask` XORed in) to the output.
    fn push_bytes(&mut self, seg: &[u8], mask: u8, out: &mut Vec<u8>) {
        let k = self.acc_bits;
        if k == 0 {
            if mask == 0 {
                out.extend_from_slice(seg);
            } else {
                out.extend(seg.iter().map(|&b| b ^ mask));
            }
        } else {
            // k pending bits, then each byte's top 8-k bits; its low k bits stay pending.
            let mut acc = self.acc;
            let low = (1u32 << k) - 1;
            out.extend(seg.iter().map(|&b| {
                let v = u32::from(b ^ mask);
                let o = (acc << (8 - k)) | (v >> k);
                acc = v & low;
                o as u8
            }));
            self.acc = acc;
        }
    }

    /// Flips the scheduled error bits that fall into output bytes `out[start..]`, whose first
    /// byte is global output byte `first_byte`, but only below global bit `limit_bit`.
    fn apply_flips(&mut self, out: &mut [u8], start: usize, first_byte: u64, limit_bit: u64) {
        let Some(new) = out.get_mut(start..) else {
            return;
        };
        let end_bit = first_byte
            .saturating_add(new.len() as u64)
            .saturating_mul(8)
            .min(limit_bit);
        while self.next_flip < end_bit {
            let rel = (self.next_flip / 8).saturating_sub(first_byte);
            if let Some(b) = usize::try_from(rel).ok().and_then(|i| new.get_mut(i)) {
                *b ^= 0x80 >> (self.next_flip % 8);
                self.stats.bits_flipped += 1;
            }
            let g = self.gap();
            self.next_flip = self.next_flip.saturating_add(1).saturating_add(g);
        }
    }

    /// Impairs `input` (the next bytes of the stream) and appends the result to `out`.
    /// Appends whole bytes only; up to 7 bits stay pending until later input or `finish`.
    pub fn apply(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if self.is_identity() {
            out.extend_from_slice(input);
            self.in_pos += input.len() as u64;
            self.out_bytes += input.len() as u64;
            return;
        }
        let start = out.len();
        let first_byte = self.out_bytes;
        let mut rest = input;
        while !rest.is_empty() {
            // Bytes until the next event (slip or start of inversion).
            let mut seg = (rest.len() as u64).min(self.next_slip.saturating_sub(self.in_pos));
            if let Some(t) = self.invert_after {
                if self.in_pos < t {
                    seg = seg.min(t - self.in_pos);
                }
            }
            let mask = self.mask_at(self.in_pos);
            if seg == 0 {
                // A slip at this byte (in_pos == next_slip).
                let Some((&b, tail)) = rest.split_first() else {
                    break;
                };
                let v = b ^ mask;
                if self.next_slip_deletes {
                    self.push_bits(u32::from(v), 7, out);
                    self.stats.slips_deleted += 1;
                } else {
                    self.push_bits(u32::from(self.last_bit), 1, out);
                    self.push_bits(u32::from(v), 8, out);
                    self.stats.slips_inserted += 1;
                }
                self.next_slip_deletes = !self.next_slip_deletes;
                self.next_slip = self
                    .next_slip
                    .saturating_add(self.slip_every.unwrap_or(u64::MAX));
                self.last_bit = v & 1;
                self.in_pos += 1;
                if mask != 0 {
                    self.stats.inverted_bytes += 1;
                }
                rest = tail;
            } else {
                let n = usize::try_from(seg).unwrap_or(rest.len());
                let Some((now, tail)) = rest.split_at_checked(n) else {
                    break;
                };
                self.push_bytes(now, mask, out);
                if let Some(&b) = now.last() {
                    self.last_bit = (b ^ mask) & 1;
                }
                self.in_pos += n as u64;
                if mask != 0 {
                    self.stats.inverted_bytes += n as u64;
                }
                rest = tail;
            }
        }
        self.apply_flips(out, start, first_byte, u64::MAX);
        self.out_bytes += (out.len() - start) as u64;
    }

    /// Ends the stream: appends the pending partial byte, if any, padded with zero bits (the
    /// padding gets no bit errors). The impairer may be reused afterwards as a new stream
    /// continuing at the same offsets.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.acc_bits == 0 {
            return;
        }
        let valid = self.out_bytes * 8 + u64::from(self.acc_bits);
        let start = out.len();
        let first_byte = self.out_bytes;
        self.push_bits(0, 8 - self.acc_bits, out);
        self.apply_flips(out, start, first_byte, valid);
        self.out_bytes += (out.len() - start) as u64;
    }
}

// ---------------------------------------------------------------------------------------------
// Pacing (pure arithmetic; the clock is read by the caller)
// ---------------------------------------------------------------------------------------------

/// Token-bucket pacer in nanoseconds since an arbitrary start.
#[derive(Debug, Clone)]
struct Pacer {
    ns_per_byte: f64,
    /// Earliest time the next send may start.
    next_ns: f64,
    max_lag_ns: f64,
}

impl Pacer {
    fn new(bits_per_s: u64, max_lag: Duration) -> Self {
        Self {
            ns_per_byte: 8e9 / bits_per_s.max(1) as f64,
            next_ns: 0.0,
            max_lag_ns: max_lag.as_nanos() as f64,
        }
    }

    /// Nanoseconds to wait at `now_ns` before the next send (0: go).
    fn wait_ns(&self, now_ns: u64) -> u64 {
        let d = self.next_ns - now_ns as f64;
        if d > 0.0 {
            d.ceil() as u64
        } else {
            0
        }
    }

    /// Records a send of `bytes` started at `now_ns` (≥ the deadline).
    fn sent(&mut self, now_ns: u64, bytes: usize) {
        let now = now_ns as f64;
        if now - self.next_ns > self.max_lag_ns {
            self.next_ns = now - self.max_lag_ns;
        }
        self.next_ns += bytes as f64 * self.ns_per_byte;
    }
}

/// Waits on the real clock until `pacer` allows a send.
fn wait_until_ready(pacer: &Pacer, start: Instant) -> u64 {
    loop {
        let now = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let w = pacer.wait_ns(now);
        if w == 0 {
            return now;
        }
        let early = EARLY.as_nanos() as u64;
        if w <= early {
            return now;
        }
        std::thread::sleep(Duration::from_nanos(w - early / 2));
    }
}

// ---------------------------------------------------------------------------------------------
// IO
// ---------------------------------------------------------------------------------------------

/// Result of a replay.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplaySummary {
    /// Where it went (`None`: to [`ReplaySummary::output`]).
    pub target: Option<Target>,
    /// The file written with `--output`.
    pub output: Option<PathBuf>,
    /// Bytes sent (after impairment).
    pub bytes: u64,
    /// Datagrams sent (TCP: writes).
    pub datagrams: u64,
    /// UDP datagrams refused by the peer (nothing listening); not counted in `bytes`.
    pub refused: u64,
    /// Seconds from the first send to the end of the last datagram's slot.
    pub seconds: f64,
    /// Achieved rate: `bytes × 8 / seconds / 1e6`.
    pub mbit_per_s: f64,
    /// Impairments applied.
    pub impair: ImpairStats,
    /// What `--encode conv` made.
    pub soft: Option<SoftStats>,
}

impl fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (to, unit) = match (&self.target, &self.output) {
            (Some(t @ Target::Udp(_)), _) => (t.to_string(), "datagrams"),
            (Some(t @ Target::Tcp(_)), _) => (t.to_string(), "writes"),
            (None, Some(p)) => (p.display().to_string(), "writes"),
            (None, None) => (String::from("nowhere"), "writes"),
        };
        write!(
            f,
            "replay to {to}: {} bytes in {} {unit}, {:.3} s, {:.1} Mbit/s; impairments: {}",
            self.bytes, self.datagrams, self.seconds, self.mbit_per_s, self.impair
        )?;
        if let Some(s) = &self.soft {
            write!(f, "; {s}")?;
        }
        if self.refused > 0 {
            write!(
                f,
                "; {} datagrams refused (nothing listening?)",
                self.refused
            )?;
        }
        Ok(())
    }
}

enum Sink {
    Udp(UdpSocket),
    Tcp(TcpStream),
    File(io::BufWriter<File>, String),
}

impl Sink {
    fn create(path: &std::path::Path) -> Result<Self, Error> {
        let shown = path.display().to_string();
        let f = File::create(path).map_err(io_err(format!("creating {shown}")))?;
        Ok(Sink::File(io::BufWriter::with_capacity(1 << 20, f), shown))
    }

    fn connect(target: Target) -> Result<Self, Error> {
        match target {
            Target::Udp(addr) => {
                let local: SocketAddr = if addr.is_ipv4() {
                    (Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let s = UdpSocket::bind(local).map_err(io_err("binding a UDP socket"))?;
                s.connect(addr)
                    .map_err(io_err(format!("connecting to udp://{addr}")))?;
                Ok(Sink::Udp(s))
            }
            Target::Tcp(addr) => {
                let s = TcpStream::connect(addr)
                    .map_err(io_err(format!("connecting to tcp://{addr}")))?;
                // Paced chunks should leave now, not wait for Nagle.
                s.set_nodelay(true).map_err(io_err("setting TCP_NODELAY"))?;
                Ok(Sink::Tcp(s))
            }
        }
    }

    /// Sends one datagram / chunk. `Ok(false)`: refused by the peer (UDP only).
    fn send(&mut self, d: &[u8]) -> Result<bool, Error> {
        match self {
            Sink::Udp(s) => loop {
                match s.send(d) {
                    Ok(_) => return Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Ok(false),
                    Err(e) => return Err(io_err("sending a datagram")(e)),
                }
            },
            Sink::Tcp(s) => s
                .write_all(d)
                .map(|()| true)
                .map_err(io_err("writing to the TCP connection")),
            Sink::File(f, shown) => f
                .write_all(d)
                .map(|()| true)
                .map_err(io_err(format!("writing {shown}"))),
        }
    }

    fn close(self) -> Result<(), Error> {
        match self {
            Sink::Tcp(mut s) => {
                s.flush().map_err(io_err("flushing the TCP connection"))?;
                // Half-close so the receiver sees end-of-stream after all data.
                s.shutdown(std::net::Shutdown::Write)
                    .map_err(io_err("closing the TCP connection"))?;
            }
            Sink::File(f, shown) => {
                let f = f
                    .into_inner()
                    .map_err(|e| io_err(format!("writing {shown}"))(e.into_error()))?;
                f.sync_all().map_err(io_err(format!("syncing {shown}")))?;
            }
            Sink::Udp(_) => {}
        }
        Ok(())
    }
}

/// Validated configuration.
struct Plan {
    /// `None`: to the `--output` file.
    target: Option<Target>,
    bits_per_s: u64,
    datagram_size: usize,
    /// `None`: forever.
    passes: Option<u64>,
}

fn plan(args: &ReplayArgs) -> Result<Plan, Error> {
    let bits_per_s = parse_rate(&args.rate)?;
    let target = match (&args.to, &args.output) {
        (Some(to), None) => Some(parse_target(to)?),
        (None, Some(_)) => None,
        _ => {
            return Err(Error::Argument(
                "give exactly one of --to and --output".into(),
            ))
        }
    };
    let (max, dest) = match target {
        Some(t @ Target::Udp(_)) if t.addr().is_ipv4() => (MAX_UDP_V4, t.to_string()),
        Some(t @ Target::Udp(_)) => (MAX_UDP_V6, t.to_string()),
        Some(t @ Target::Tcp(_)) => (MAX_TCP_CHUNK, t.to_string()),
        None => (MAX_TCP_CHUNK, "a file".into()),
    };
    if args.datagram_size == 0 || args.datagram_size > max {
        return Err(Error::Argument(format!(
            "--datagram-size {} must be 1..={max} for {dest}",
            args.datagram_size
        )));
    }
    check_encode_args(args)?;
    if let Some(p) = args.ber {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::Argument(format!(
                "--ber {p} must be a probability in 0..=1"
            )));
        }
    }
    if args.slip_every == Some(0) {
        return Err(Error::Argument("--slip-every must be at least 1".into()));
    }
    let passes = match args.r#loop {
        None => Some(1),
        Some(0) => None,
        Some(n) => Some(n),
    };
    Ok(Plan {
        target,
        bits_per_s,
        datagram_size: args.datagram_size,
        passes,
    })
}

/// The `--encode` options: only with `--encode`, in range, and not mixed with the bit
/// impairments.
fn check_encode_args(args: &ReplayArgs) -> Result<(), Error> {
    let arg = |m: String| Err(Error::Argument(m));
    if args.encode.is_none() {
        let given = [
            ("--ebn0", args.ebn0.is_some()),
            ("--rotate", args.rotate.is_some()),
            ("--swap-iq", args.swap_iq),
            ("--slip-symbols", args.slip_symbols.is_some()),
            ("--amplitude", args.amplitude != soft::DEFAULT_AMPLITUDE),
        ];
        if let Some((name, _)) = given.iter().find(|(_, on)| *on) {
            return arg(format!("{name} needs --encode conv"));
        }
        return Ok(());
    }
    let bit_impairments = [
        ("--ber", args.ber.is_some()),
        ("--slip-every", args.slip_every.is_some()),
        ("--invert-after", args.invert_after.is_some()),
    ];
    if let Some((name, _)) = bit_impairments.iter().find(|(_, on)| *on) {
        return arg(format!(
            "{name} impairs bits and does not combine with --encode (use --ebn0, --rotate, --swap-iq, --slip-symbols)"
        ));
    }
    if let Some(db) = args.ebn0 {
        if !(-10.0..=60.0).contains(&db) {
            return arg(format!("--ebn0 {db} must be -10..=60 dB"));
        }
    }
    if let Some(d) = args.rotate {
        if Rotation::from_degrees(d).is_none() {
            return arg(format!("--rotate {d} must be 0, 90, 180 or 270"));
        }
    }
    if args.slip_symbols == Some(0) {
        return arg("--slip-symbols must be at least 1".into());
    }
    if !(1..=127).contains(&args.amplitude) {
        return arg(format!("--amplitude {} must be 1..=127", args.amplitude));
    }
    Ok(())
}

/// What is done to the file's bytes before they are sent.
enum Transform {
    Bits(Impairer),
    Soft(SoftEncoder),
}

impl Transform {
    fn new(args: &ReplayArgs, file_len: u64) -> Self {
        match args.encode {
            None => Transform::Bits(Impairer::new(
                args.ber,
                args.slip_every,
                args.invert_after,
                args.seed,
            )),
            Some(Encode::Conv) => Transform::Soft(SoftEncoder::new(SoftParams {
                ebn0_db: args.ebn0,
                amplitude: args.amplitude,
                rotate: args
                    .rotate
                    .and_then(Rotation::from_degrees)
                    .unwrap_or_default(),
                swap_iq: args.swap_iq,
                // One symbol per input bit: the middle of the first pass.
                slip: args
                    .slip_symbols
                    .map(|n| (file_len.saturating_mul(8) / 2, n)),
                seed: args.seed,
            })),
        }
    }

    fn apply(&mut self, input: &[u8], out: &mut Vec<u8>) {
        match self {
            Transform::Bits(i) => i.apply(input, out),
            Transform::Soft(e) => e.apply(input, out),
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if let Transform::Bits(i) = self {
            i.finish(out);
        }
    }

    fn stats(&self) -> (ImpairStats, Option<SoftStats>) {
        match self {
            Transform::Bits(i) => (i.stats(), None),
            Transform::Soft(e) => (ImpairStats::default(), Some(e.stats())),
        }
    }
}

/// Reads until `buf` is full or end of file; returns the byte count.
pub(crate) fn read_full(f: &mut (impl Read + ?Sized), buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while let Some(rest) = buf.get_mut(n..) {
        if rest.is_empty() {
            break;
        }
        match f.read(rest) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

struct Sender {
    sink: Sink,
    pacer: Pacer,
    start: Option<Instant>,
    bytes: u64,
    datagrams: u64,
    refused: u64,
}

impl Sender {
    fn send(&mut self, d: &[u8]) -> Result<(), Error> {
        let start = *self.start.get_or_insert_with(Instant::now);
        if !matches!(self.sink, Sink::File(..)) {
            let now = wait_until_ready(&self.pacer, start);
            self.pacer.sent(now, d.len());
        }
        if self.sink.send(d)? {
            self.bytes += d.len() as u64;
            self.datagrams += 1;
        } else {
            self.refused += 1;
        }
        Ok(())
    }

    /// Sends every whole datagram in `buf` and keeps the remainder (at the front).
    fn send_whole(&mut self, buf: &mut Vec<u8>, size: usize) -> Result<(), Error> {
        let mut chunks = buf.chunks_exact(size);
        for d in &mut chunks {
            self.send(d)?;
        }
        let keep = chunks.remainder().len();
        let sent = buf.len() - keep;
        buf.drain(..sent);
        Ok(())
    }
}

/// Replays `args.file` to `args.to` as described in the module docs and returns the summary.
/// Shows a progress bar on stderr when it is a terminal and `--quiet` is not given; prints
/// nothing else (see [`run_and_report`]).
pub fn run(args: &ReplayArgs) -> Result<ReplaySummary, Error> {
    let plan = plan(args)?;
    let path = args.file.display().to_string();
    let mut file = File::open(&args.file).map_err(io_err(format!("opening {path}")))?;
    let file_len = file
        .metadata()
        .map_err(io_err(format!("reading metadata of {path}")))?
        .len();
    if file_len == 0 && plan.passes.is_none() {
        return Err(Error::Argument(format!(
            "{path} is empty: nothing to --loop"
        )));
    }

    let bar = if !args.quiet && io::stderr().is_terminal() {
        let b = match plan.passes {
            Some(n) => ProgressBar::new(file_len.saturating_mul(n)),
            None => ProgressBar::new_spinner(),
        };
        let tpl = match plan.passes {
            Some(_) => "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            None => "{spinner} {bytes} {binary_bytes_per_sec} {elapsed}",
        };
        b.set_style(
            ProgressStyle::with_template(tpl).unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };

    let mut imp = Transform::new(args, file_len);
    let sink = match (plan.target, &args.output) {
        (Some(t), _) => Sink::connect(t)?,
        (None, Some(p)) => Sink::create(p)?,
        (None, None) => return Err(Error::Argument("no destination".into())),
    };
    let mut sender = Sender {
        sink,
        pacer: Pacer::new(plan.bits_per_s, MAX_LAG),
        start: None,
        bytes: 0,
        datagrams: 0,
        refused: 0,
    };
    let mut inbuf = vec![0u8; READ_CHUNK];
    let mut outbuf: Vec<u8> = Vec::with_capacity(READ_CHUNK * 16 + plan.datagram_size + 1);

    let mut pass = 0u64;
    while plan.passes.is_none_or(|n| pass < n) {
        file.rewind().map_err(io_err(format!("rewinding {path}")))?;
        loop {
            let n = read_full(&mut file, &mut inbuf).map_err(io_err(format!("reading {path}")))?;
            let Some(chunk) = inbuf.get(..n).filter(|c| !c.is_empty()) else {
                break;
            };
            imp.apply(chunk, &mut outbuf);
            sender.send_whole(&mut outbuf, plan.datagram_size)?;
            if let Some(b) = &bar {
                b.inc(n as u64);
            }
        }
        pass += 1;
    }
    imp.finish(&mut outbuf);
    sender.send_whole(&mut outbuf, plan.datagram_size)?;
    if !outbuf.is_empty() {
        sender.send(&outbuf)?;
    }
    // Wait out the last datagram's slot so that the achieved rate is honest.
    let seconds = match sender.start {
        Some(start) if args.output.is_some() => start.elapsed().as_secs_f64(),
        Some(start) => {
            // Exactly, not EARLY: the reported rate must never exceed the requested one.
            loop {
                let now = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                match sender.pacer.wait_ns(now) {
                    0 => break,
                    w => std::thread::sleep(Duration::from_nanos(w)),
                }
            }
            start.elapsed().as_secs_f64()
        }
        None => 0.0,
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let Sender {
        sink,
        bytes,
        datagrams,
        refused,
        ..
    } = sender;
    sink.close()?;
    let mbit_per_s = if seconds > 0.0 {
        bytes as f64 * 8.0 / seconds / 1e6
    } else {
        0.0
    };
    let (impair, soft) = imp.stats();
    Ok(ReplaySummary {
        target: plan.target,
        output: args.output.clone(),
        bytes,
        datagrams,
        refused,
        seconds,
        mbit_per_s,
        impair,
        soft,
    })
}

/// [`run`], then the one-line summary on stdout (what `downlink replay` does).
pub fn run_and_report(args: &ReplayArgs) -> Result<ReplaySummary, Error> {
    let summary = run(args)?;
    writeln!(io::stdout().lock(), "{summary}").map_err(io_err("writing the summary"))?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicU32, Ordering};

    const AQUA: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/cadu/aqua.20241206T175646.dat"
    );
    const ASM: u32 = 0x1ACF_FC1D;

    fn aqua() -> Vec<u8> {
        std::fs::read(AQUA).unwrap()
    }

    fn impair_all(imp: &mut Impairer, data: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for c in data.chunks(chunk) {
            imp.apply(c, &mut out);
        }
        imp.finish(&mut out);
        out
    }

    /// Bit offsets (MSB-first) where the 32-bit `pattern` starts.
    fn find_pattern(data: &[u8], pattern: u32) -> Vec<u64> {
        let mut w = 0u32;
        let mut hits = Vec::new();
        for (i, &b) in data.iter().enumerate() {
            for k in (0..8).rev() {
                w = (w << 1) | u32::from((b >> k) & 1);
                let bit = i as u64 * 8 + (7 - k) as u64;
                if bit >= 31 && w == pattern {
                    hits.push(bit - 31);
                }
            }
        }
        hits
    }

    fn args(file: &std::path::Path, to: String, rate: &str, size: usize) -> ReplayArgs {
        ReplayArgs {
            file: file.to_path_buf(),
            to: Some(to),
            output: None,
            encode: None,
            ebn0: None,
            rotate: None,
            swap_iq: false,
            slip_symbols: None,
            amplitude: soft::DEFAULT_AMPLITUDE,
            rate: rate.into(),
            datagram_size: size,
            r#loop: None,
            ber: None,
            slip_every: None,
            invert_after: None,
            seed: 1,
            quiet: true,
        }
    }

    // ----- parse_rate -----

    #[test]
    fn rate_units() {
        let ok = [
            ("400Mbit", 400_000_000),
            ("1Gbit", 1_000_000_000),
            ("10kbit", 10_000),
            ("1.5Gbit", 1_500_000_000),
            ("100000", 100_000),
            ("50MB/s", 400_000_000),
            ("1KB/s", 8_000),
            ("2.5Mbps", 2_500_000),
            ("400mbit", 400_000_000),
            (" 400 Mbit/s ", 400_000_000),
            ("1e6", 1_000_000),
            ("1.2e3kbit", 1_200_000),
            ("3Gb/s", 3_000_000_000),
            ("1Tbit", 1_000_000_000_000),
            ("125MBps", 1_000_000_000),
            ("8 bytes/s", 64),
            ("1 bit", 1),
        ];
        for (s, want) in ok {
            assert_eq!(parse_rate(s).unwrap(), want, "{s}");
        }
    }

    #[test]
    fn rate_errors() {
        for s in [
            "",
            "0",
            "0Mbit",
            "-5Mbit",
            "abc",
            "Mbit",
            "10Xbit",
            "nan",
            "inf",
            "1e30Gbit",
            "0.0000001",
            "10 Mbit/s/s",
            "1..5Mbit",
            "5 M bit",
            "1e",
            "10Mbit extra",
        ] {
            let e = parse_rate(s).unwrap_err();
            assert!(matches!(e, Error::Rate { .. }), "{s}: {e}");
        }
    }

    // ----- parse_target -----

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("udp://127.0.0.1:5000").unwrap(),
            Target::Udp("127.0.0.1:5000".parse().unwrap())
        );
        assert_eq!(
            parse_target("tcp://[::1]:7000").unwrap(),
            Target::Tcp("[::1]:7000".parse().unwrap())
        );
        assert_eq!(
            parse_target("UDP://localhost:9/").unwrap(),
            Target::Udp("127.0.0.1:9".parse().unwrap())
        );
        assert_eq!(
            parse_target("udp://239.1.2.3:5000").unwrap(),
            Target::Udp("239.1.2.3:5000".parse().unwrap())
        );
        let t = parse_target("tcp://10.0.0.2:1234").unwrap();
        assert_eq!(t.to_string(), "tcp://10.0.0.2:1234");
        assert_eq!(t.addr().port(), 1234);
        for s in [
            "127.0.0.1:5000",
            "http://127.0.0.1:5000",
            "udp://127.0.0.1",
            "udp://127.0.0.1:0",
            "udp://0.0.0.0:5000",
            "tcp://[::]:5000",
            "tcp://239.1.2.3:5000",
            "udp://example.com:5000",
            "udp://127.0.0.1:99999",
            "udp://::1:5000",
            "",
        ] {
            let e = parse_target(s).unwrap_err();
            assert!(matches!(e, Error::Target { .. }), "{s}: {e}");
        }
    }

    #[test]
    fn cli_parsing() {
        #[derive(Parser, Debug)]
        struct Cli {
            #[command(flatten)]
            a: ReplayArgs,
        }
        let p = |v: &[&str]| Cli::try_parse_from(v).map(|c| c.a);
        let a = p(&["x", "f.dat", "--to", "udp://127.0.0.1:1"]).unwrap();
        assert_eq!(a.r#loop, None);
        assert_eq!(a.rate, "100Mbit");
        assert_eq!(a.datagram_size, 1024);
        assert_eq!(a.seed, 1);
        assert!(!a.quiet);
        let a = p(&["x", "f.dat", "--to", "udp://127.0.0.1:1", "--loop"]).unwrap();
        assert_eq!(a.r#loop, Some(0));
        let a = p(&[
            "x", "f.dat", "--to", "t", "--loop", "3", "-q", "--ber", "1e-5",
        ])
        .unwrap();
        assert_eq!(a.r#loop, Some(3));
        assert!(a.quiet);
        assert_eq!(a.ber, Some(1e-5));
        let a = p(&[
            "x",
            "--loop=2",
            "f.dat",
            "--to",
            "t",
            "--slip-every",
            "10",
            "--invert-after",
            "5",
            "--datagram-size",
            "1400",
            "--seed",
            "9",
            "--rate",
            "1Gbit",
        ])
        .unwrap();
        assert_eq!(a.r#loop, Some(2));
        assert_eq!(a.file, PathBuf::from("f.dat"));
        assert_eq!(
            (a.slip_every, a.invert_after, a.datagram_size, a.seed),
            (Some(10), Some(5), 1400, 9)
        );
        assert!(p(&["x", "f.dat"]).is_err(), "--to is required");
    }

    // ----- Impairer -----

    #[test]
    fn identity_when_nothing_requested() {
        let data = aqua();
        let mut imp = Impairer::new(None, None, None, 1);
        assert!(imp.is_identity());
        assert_eq!(impair_all(&mut imp, &data, 4096), data);
        assert!(imp.stats().is_clean());
        // ber 0 and slip 0 mean "off" too.
        let mut imp = Impairer::new(Some(0.0), Some(0), None, 1);
        assert_eq!(impair_all(&mut imp, &data, 777), data);
    }

    #[test]
    fn chunk_size_independence() {
        let data = aqua();
        let make = || Impairer::new(Some(1e-3), Some(1000), Some(300_001), 42);
        let mut reference = make();
        let whole = impair_all(&mut reference, &data, data.len());
        assert_eq!(whole.len(), data.len());
        for chunk in [1, 3, 7, 1000, 1001, 65_536] {
            let mut imp = make();
            let out = impair_all(&mut imp, &data, chunk);
            assert!(out == whole, "chunk size {chunk} changes the output");
            assert_eq!(imp.stats(), reference.stats(), "chunk size {chunk}");
        }
        // Irregular chunking too.
        let mut imp = make();
        let mut out = Vec::new();
        let mut rest = &data[..];
        let mut k = 1usize;
        while !rest.is_empty() {
            let n = k.min(rest.len());
            imp.apply(&rest[..n], &mut out);
            rest = &rest[n..];
            k = (k * 7 + 3) % 5000 + 1;
        }
        imp.finish(&mut out);
        assert!(out == whole);
        let s = reference.stats();
        assert_eq!(
            s.slips_deleted + s.slips_inserted,
            (data.len() as u64 - 1) / 1000
        );
        assert_eq!(s.inverted_bytes, data.len() as u64 - 300_001);
        assert!(s.bits_flipped > 0);
    }

    #[test]
    fn invert_after_exact() {
        let data = aqua();
        for n in [0usize, 1, 4095, 500_000, data.len() - 1] {
            let mut imp = Impairer::new(None, None, Some(n as u64), 1);
            let out = impair_all(&mut imp, &data, 4096);
            assert_eq!(out.len(), data.len());
            assert!(out[..n] == data[..n], "n={n}");
            assert!(
                out[n..].iter().zip(&data[n..]).all(|(o, d)| *o == !*d),
                "n={n}"
            );
            assert_eq!(imp.stats().inverted_bytes, (data.len() - n) as u64);
        }
        let mut imp = Impairer::new(None, None, Some(data.len() as u64 + 5), 1);
        assert!(impair_all(&mut imp, &data, 4096) == data);
        assert_eq!(imp.stats().inverted_bytes, 0);
    }

    #[test]
    fn inverted_asm_on_real_capture() {
        // Aqua: ASM at bit shift 1. After the inversion point every ASM appears inverted.
        let data = aqua();
        let orig = find_pattern(&data, ASM);
        assert!(orig.len() >= 1000, "{} ASMs in the capture", orig.len());
        let cut = 400_000u64;
        let mut imp = Impairer::new(None, None, Some(cut), 1);
        let out = impair_all(&mut imp, &data, 10_000);
        let upright = find_pattern(&out, ASM);
        let inverted = find_pattern(&out, !ASM);
        let before: Vec<u64> = orig
            .iter()
            .copied()
            .filter(|&p| p + 32 <= cut * 8)
            .collect();
        let after: Vec<u64> = orig.iter().copied().filter(|&p| p >= cut * 8).collect();
        assert_eq!(upright, before);
        assert_eq!(inverted, after);
    }

    #[test]
    fn ber_statistics() {
        // ~10 Mbit of zeros: every 1 in the output is a flip.
        let zeros = vec![0u8; 1_250_000];
        let bits = zeros.len() as f64 * 8.0;
        for p in [1e-5, 1e-3, 0.05] {
            let mut imp = Impairer::new(Some(p), None, None, 7);
            let out = impair_all(&mut imp, &zeros, 65_536);
            let ones: u64 = out.iter().map(|b| u64::from(b.count_ones())).sum();
            assert_eq!(ones, imp.stats().bits_flipped);
            let mean = bits * p;
            let sd = (bits * p * (1.0 - p)).sqrt();
            assert!(
                (ones as f64 - mean).abs() < 5.0 * sd,
                "p={p}: {ones} flips, expected {mean} ± {sd}"
            );
            if p >= 1e-3 {
                // Bit positions within a byte are uniform.
                for k in 0..8 {
                    let at_k: u64 = out.iter().map(|b| u64::from((b >> k) & 1)).sum();
                    let m = mean / 8.0;
                    assert!(
                        (at_k as f64 - m).abs() < 5.0 * m.sqrt() + 1.0,
                        "p={p} bit {k}: {at_k}"
                    );
                }
                // Adjacent flips occur as often as independence predicts (≈ p per bit).
                let mut pairs = 0u64;
                let mut prev = 0u8;
                for &b in &out {
                    let run = (u16::from(prev) << 8) | u16::from(b);
                    pairs += u64::from((run & (run >> 1) & 0xFF).count_ones());
                    prev = b;
                }
                let expect = bits * p * p;
                assert!(
                    (pairs as f64 - expect).abs() < 5.0 * expect.sqrt() + 3.0,
                    "p={p}: {pairs} adjacent pairs, expected {expect}"
                );
            }
        }
    }

    #[test]
    fn ber_edges_and_seeds() {
        let data = aqua();
        let data = &data[..100_000];
        let run = |p: f64, seed: u64| {
            let mut imp = Impairer::new(Some(p), None, None, seed);
            let out = impair_all(&mut imp, data, 4096);
            (out, imp.stats().bits_flipped)
        };
        let (all, n) = run(1.0, 3);
        assert!(all.iter().zip(data).all(|(o, d)| *o == !*d));
        assert_eq!(n, data.len() as u64 * 8);
        assert_eq!(run(1e-3, 5), run(1e-3, 5), "same seed, same errors");
        assert_ne!(
            run(1e-3, 5).0,
            run(1e-3, 6).0,
            "different seed, different errors"
        );
        assert_ne!(run(1e-3, 0).0, data, "seed 0 works");
        // A tiny probability over 800 kbit flips (almost surely) nothing, without NaN tricks.
        let (out, n) = run(1e-300, 1);
        assert_eq!(n, 0);
        assert!(out == data);
    }

    #[test]
    fn slips_by_hand() {
        // Slips at offsets 2 (delete the first bit of 0xAA) and 4 (insert a copy of the last
        // bit of 0x55, a 1, before 0x0F):
        // 11111111 00000000 [1]0101010 01010101 (+1) 00001111
        let data = [0xFF, 0x00, 0xAA, 0x55, 0x0F];
        let mut imp = Impairer::new(None, Some(2), None, 1);
        let out = impair_all(&mut imp, &data, 1);
        assert_eq!(out, [0xFF, 0x00, 0x54, 0xAB, 0x0F]);
        let s = imp.stats();
        assert_eq!((s.slips_deleted, s.slips_inserted), (1, 1));
        // One deletion only: 7 bits left over, zero-padded.
        let mut imp = Impairer::new(None, Some(2), None, 1);
        assert_eq!(
            impair_all(&mut imp, &data[..4], 3),
            [0xFF, 0x00, 0x54, 0xAA]
        );
        // With inversion from offset 3: 0x55 -> 0xAA, inserted bit = its LSB (0), 0x0F -> 0xF0.
        // 11111111 00000000 0101010 10101010 0 11110000
        let mut imp = Impairer::new(None, Some(2), Some(3), 1);
        assert_eq!(
            impair_all(&mut imp, &data, 2),
            [0xFF, 0x00, 0x55, 0x54, 0xF0]
        );
    }

    #[test]
    fn slip_count_and_length() {
        let data = aqua();
        for (every, len) in [
            (1u64, 10usize),
            (3, 10),
            (1000, data.len()),
            (4096, 8192),
            (7, 7),
        ] {
            for chunk in [1usize, 4096] {
                let mut imp = Impairer::new(None, Some(every), None, 1);
                let out = impair_all(&mut imp, &data[..len], chunk);
                let slips = (len as u64 - 1) / every;
                let s = imp.stats();
                assert_eq!(
                    s.slips_deleted + s.slips_inserted,
                    slips,
                    "every {every} len {len}"
                );
                assert_eq!(s.slips_deleted, slips.div_ceil(2));
                assert_eq!(s.slips_inserted, slips / 2);
                assert!(out.len().abs_diff(len) <= 1, "{} vs {len}", out.len());
                assert_eq!(out.len(), len);
            }
        }
    }

    #[test]
    fn slips_move_the_asm_on_real_capture() {
        // The ASM (bit shift 1 in this capture) moves one bit earlier after each deletion and
        // back after each insertion; ASMs straddling a slip point are destroyed.
        let data = aqua();
        let every = 100_000u64;
        let orig = find_pattern(&data, ASM);
        let mut imp = Impairer::new(None, Some(every), None, 1);
        let out = impair_all(&mut imp, &data, 65_536);
        let expected: Vec<u64> = orig
            .iter()
            .filter_map(|&p| {
                let first = p / (every * 8);
                let last = (p + 31) / (every * 8);
                // A slip point inside the ASM (not at its first bit) breaks it.
                if first != last || (p % (every * 8) == 0 && p > 0) {
                    return None;
                }
                let slips = first; // slips at or before this ASM's start
                Some(p - slips % 2) // odd count: one bit deleted net
            })
            .collect();
        let got = find_pattern(&out, ASM);
        assert!(got.len() >= 1000);
        assert_eq!(got, expected);
        // Shifts alternate between 1 (original) and 0 (after a deletion).
        assert!(got.iter().any(|p| p % 8 == 0) && got.iter().any(|p| p % 8 == 1));
    }

    // ----- pacing arithmetic -----

    #[test]
    fn pacer_schedule_and_lag_clamp() {
        // 8 Mbit/s = 1 byte per µs.
        let mut p = Pacer::new(8_000_000, Duration::from_millis(2));
        assert_eq!(p.wait_ns(0), 0);
        p.sent(0, 1000);
        assert_eq!(p.wait_ns(0), 1_000_000);
        assert_eq!(p.wait_ns(400_000), 600_000);
        assert_eq!(p.wait_ns(1_000_000), 0);
        p.sent(1_000_000, 1000);
        // 1.5 ms late: within the lag budget, so the backlog is sent back to back.
        p.sent(3_500_000, 1000);
        assert_eq!(p.wait_ns(3_500_000), 0);
        // 50 ms late: catch up at most 2 ms worth (2 datagrams), then pace again.
        let now = 53_000_000;
        p.sent(now, 1000);
        assert_eq!(p.wait_ns(now), 0);
        p.sent(now, 1000);
        assert_eq!(p.wait_ns(now), 0);
        p.sent(now, 1000);
        assert_eq!(p.wait_ns(now), 1_000_000);
    }

    // ----- loopback IO -----

    static TMP_SEQ: AtomicU32 = AtomicU32::new(0);

    /// A temporary file removed on drop.
    struct TempFile(PathBuf);
    impl TempFile {
        fn new(content: &[u8]) -> Self {
            let n = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
            let p =
                std::env::temp_dir().join(format!("replay-test-{}-{n}.bin", std::process::id()));
            std::fs::write(&p, content).unwrap();
            Self(p)
        }
    }
    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// Receives datagrams until `expect` bytes arrived or 2 s of silence.
    fn udp_receiver(expect: usize) -> (SocketAddr, std::thread::JoinHandle<Vec<Vec<u8>>>) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let addr = sock.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut total = 0;
            let mut buf = vec![0u8; 65_536];
            while total < expect {
                match sock.recv(&mut buf) {
                    Ok(n) => {
                        total += n;
                        got.push(buf[..n].to_vec());
                    }
                    Err(_) => break,
                }
            }
            got
        });
        (addr, h)
    }

    #[test]
    fn udp_loopback_byte_exact() {
        let data = aqua();
        let f = TempFile::new(&data);
        // UDP may drop on a loaded machine even on loopback (the receiver thread may not be
        // scheduled in time); that is not the tool's fault, so allow a retry. Any attempt
        // without loss must be byte-exact.
        let mut exact = false;
        for _attempt in 0..3 {
            let (addr, h) = udp_receiver(data.len());
            let a = args(&f.0, format!("udp://{addr}"), "200Mbit", 1000);
            let s = run(&a).unwrap();
            let got = h.join().unwrap();
            assert_eq!(s.bytes, data.len() as u64);
            assert_eq!(s.datagrams, 1049);
            assert_eq!(s.refused, 0);
            assert!(s.impair.is_clean());
            assert!(s.mbit_per_s <= 200.0 * 1.05, "{s}");
            let total: usize = got.iter().map(Vec::len).sum();
            if total < data.len() {
                continue;
            }
            assert_eq!(got.len(), 1049);
            assert!(got[..1048].iter().all(|d| d.len() == 1000));
            assert_eq!(got[1048].len(), 576);
            assert!(got.concat() == data, "reassembled stream differs");
            exact = true;
            break;
        }
        assert!(exact, "lost datagrams in 3 attempts");
    }

    #[test]
    fn udp_rate_is_paced() {
        // 3 × 1 MiB at 50 Mbit/s ≈ 0.5 s. The pacer never runs ahead of the schedule, so the
        // upper bound is tight; the lower bound is loose for a busy shared machine.
        let data = aqua();
        let f = TempFile::new(&data);
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap(); // never read; drops are fine
        let mut a = args(
            &f.0,
            format!("udp://{}", sink.local_addr().unwrap()),
            "50Mbit",
            1316,
        );
        a.r#loop = Some(3);
        let s = run(&a).unwrap();
        assert_eq!(s.bytes, 3 * data.len() as u64);
        assert_eq!(s.datagrams, (3 * data.len() as u64).div_ceil(1316));
        assert!(s.mbit_per_s <= 50.0 * 1.01, "too fast: {s}");
        assert!(s.mbit_per_s >= 50.0 * 0.6, "far too slow: {s}");
        assert!(
            s.seconds >= 3.0 * data.len() as f64 * 8.0 / 50e6 * 0.99,
            "{s}"
        );
    }

    #[test]
    fn tcp_loopback_with_impairments() {
        let data = aqua();
        let f = TempFile::new(&data);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let mut v = Vec::new();
            c.read_to_end(&mut v).unwrap();
            v
        });
        let mut a = args(&f.0, format!("tcp://{addr}"), "400Mbit", 4096);
        a.r#loop = Some(2);
        a.ber = Some(1e-4);
        a.slip_every = Some(50_001);
        a.invert_after = Some(1_500_000);
        a.seed = 7;
        let s = run(&a).unwrap();
        let got = h.join().unwrap();

        let mut twice = data.clone();
        twice.extend_from_slice(&data);
        let mut imp = Impairer::new(Some(1e-4), Some(50_001), Some(1_500_000), 7);
        let want = impair_all(&mut imp, &twice, twice.len());
        assert_eq!(got.len(), want.len());
        assert!(
            got == want,
            "received stream differs from the offline impairment"
        );
        assert_eq!(s.impair, imp.stats());
        assert_eq!(s.bytes, twice.len() as u64);
        assert_eq!(s.datagrams, (twice.len() as u64).div_ceil(4096));
        assert!(s.impair.bits_flipped > 0 && s.impair.slips_deleted > 0);
        assert_eq!(s.impair.inverted_bytes, twice.len() as u64 - 1_500_000);
        assert!(s.mbit_per_s <= 400.0 * 1.05, "{s}");
        let line = s.to_string();
        assert!(
            line.starts_with(&format!(
                "replay to tcp://{addr}: 2097152 bytes in 512 writes"
            )),
            "{line}"
        );
        assert!(line.contains("bits flipped"), "{line}");
    }

    #[test]
    fn bad_arguments_are_errors() {
        let f = TempFile::new(b"abc");
        let to = "udp://127.0.0.1:9".to_string();
        let base = args(&f.0, to.clone(), "1Mbit", 100);
        let check = |a: ReplayArgs, what: &str| {
            let e = run(&a).unwrap_err();
            assert!(e.to_string().contains(what), "{e}");
        };
        let mut a = base.clone();
        a.file = PathBuf::from("/nonexistent/replay.bin");
        check(a, "opening");
        let mut a = base.clone();
        a.rate = "fast".into();
        check(a, "invalid rate");
        let mut a = base.clone();
        a.to = Some("udp://127.0.0.1".into());
        check(a, "invalid target");
        let mut a = base.clone();
        a.datagram_size = 0;
        check(a, "--datagram-size");
        let mut a = base.clone();
        a.datagram_size = 65_508;
        check(a, "--datagram-size");
        let mut a = base.clone();
        a.ber = Some(1.5);
        check(a, "--ber");
        let mut a = base.clone();
        a.ber = Some(f64::NAN);
        check(a, "--ber");
        let mut a = base.clone();
        a.slip_every = Some(0);
        check(a, "--slip-every");
        let empty = TempFile::new(b"");
        let mut a = base.clone();
        a.file = empty.0.clone();
        a.r#loop = Some(0);
        check(a, "empty");
    }

    #[test]
    fn encode_conv_cli_and_errors() {
        #[derive(Parser, Debug)]
        struct Cli {
            #[command(flatten)]
            a: ReplayArgs,
        }
        let p = |v: &[&str]| Cli::try_parse_from(v).map(|c| c.a);
        let a = p(&[
            "x",
            "f.dat",
            "--output",
            "o.s",
            "--encode",
            "conv",
            "--ebn0",
            "-1.5",
            "--rotate",
            "90",
            "--swap-iq",
            "--slip-symbols",
            "3",
        ])
        .unwrap();
        assert_eq!(a.encode, Some(Encode::Conv));
        assert_eq!(a.ebn0, Some(-1.5));
        assert_eq!(
            (a.rotate, a.swap_iq, a.slip_symbols),
            (Some(90), true, Some(3))
        );
        assert_eq!(a.to, None);
        assert!(p(&["x", "f.dat", "--to", "udp://127.0.0.1:1", "--ebn0", "3"]).is_err());
        assert!(p(&["x", "f.dat", "--to", "udp://127.0.0.1:1", "--output", "o"]).is_err());

        let f = TempFile::new(b"abc");
        let mut base = args(&f.0, "udp://127.0.0.1:9".into(), "1Mbit", 100);
        base.encode = Some(Encode::Conv);
        let check = |a: ReplayArgs, what: &str| {
            let e = run(&a).unwrap_err();
            assert!(e.to_string().contains(what), "{e}");
        };
        let mut a = base.clone();
        a.rotate = Some(45);
        check(a, "--rotate 45");
        let mut a = base.clone();
        a.ebn0 = Some(f64::NAN);
        check(a, "--ebn0");
        let mut a = base.clone();
        a.slip_symbols = Some(0);
        check(a, "--slip-symbols");
        let mut a = base.clone();
        a.amplitude = 0;
        check(a, "--amplitude");
        let mut a = base.clone();
        a.ber = Some(0.1);
        check(a, "does not combine");
        let mut a = base.clone();
        a.encode = None;
        a.swap_iq = true;
        check(a, "--swap-iq needs --encode");
    }

    #[test]
    fn encode_conv_to_a_file() {
        // A real capture, as the e2e tests use it: 16 soft bytes per input byte, one slip of
        // 5 symbols (10 bytes) in the middle, deterministic for a seed.
        let data = aqua();
        let data = &data[..64 * 1024];
        let f = TempFile::new(data);
        let out = TempFile::new(b"");
        let mut a = args(&f.0, String::new(), "1Mbit", 4096);
        a.to = None;
        a.output = Some(out.0.clone());
        a.encode = Some(Encode::Conv);
        a.ebn0 = Some(3.0);
        a.rotate = Some(180);
        a.slip_symbols = Some(5);
        let s = run(&a).unwrap();
        let soft = s.soft.unwrap();
        let written = std::fs::read(&out.0).unwrap();
        assert_eq!(written.len(), data.len() * 16 - 10);
        assert_eq!(s.bytes, written.len() as u64);
        assert_eq!(soft.symbols_slipped, 5);
        assert_eq!(soft.bits_in, data.len() as u64 * 8);
        // Uncoded BER at Eb/N0 = 3 dB over the non-erased channel bits: 0.076 (see soft.rs).
        assert!((soft.channel_ber() - 0.076).abs() < 0.004, "{soft}");
        assert!(s.to_string().contains("symbols slipped"), "{s}");
        // Same seed, same file; the stream equals the in-memory encoder's.
        let mut e = SoftEncoder::new(SoftParams {
            ebn0_db: Some(3.0),
            rotate: Rotation::R180,
            slip: Some((data.len() as u64 * 4, 5)),
            ..SoftParams::default()
        });
        let mut want = Vec::new();
        e.apply(data, &mut want);
        assert!(want == written);
    }

    #[test]
    fn empty_file_sends_nothing() {
        let f = TempFile::new(b"");
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = args(
            &f.0,
            format!("udp://{}", sink.local_addr().unwrap()),
            "1Mbit",
            100,
        );
        let s = run(&a).unwrap();
        assert_eq!((s.bytes, s.datagrams, s.seconds), (0, 0, 0.0));
    }
}
