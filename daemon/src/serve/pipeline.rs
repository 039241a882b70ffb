//! The decoder thread of one input: decoder, pass state (AOS/LOS) and the pass archive.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use decoder::{Decoder, DecoderOptions, Event};

use super::archive::{pass_id, PassArchive};
use super::plot::Timeline;
use super::Shared;
use crate::config::{ArchiveConfig, InputConfig, PassConfig};

struct Pass {
    id: String,
    aos: SystemTime,
    aos_instant: Instant,
    timeline: Timeline,
    last_frame: Instant,
    last_frame_time: SystemTime,
    archive: Option<PassArchive>,
    scid: Option<u16>,
    drops_at_aos: std::collections::BTreeMap<&'static str, u64>,
    io_errors: u64,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn new_decoder(input: &InputConfig, archive: &ArchiveConfig) -> Option<Decoder> {
    let opts = DecoderOptions {
        raw_cadus: archive.keep_raw_cadus,
        frames: true,
        fill_frames: false,
        packets: true,
    };
    match Decoder::new(&input.profile, input.format, opts) {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::error!(input = %input.name, error = %e, "cannot build decoder");
            None
        }
    }
}

/// Runs until the queue closes or shutdown; closes the pass in progress on exit.
pub fn run(
    input: &InputConfig,
    pass_cfg: &PassConfig,
    archive_cfg: &ArchiveConfig,
    rx: &Receiver<Bytes>,
    shared: &Shared,
    idx: usize,
) {
    let Some(mut dec) = new_decoder(input, archive_cfg) else {
        return;
    };
    let mut pass: Option<Pass> = None;
    let mut idle_since = Instant::now();
    let mut last_status = Instant::now();
    loop {
        shared.beat(2 * idx + 1);
        let got = rx.recv_timeout(Duration::from_millis(50));
        match got {
            Ok(d) => {
                dec.push(&d);
                // Take what is already queued before polling, within a bound.
                for _ in 0..256 {
                    match rx.try_recv() {
                        Ok(more) => dec.push(&more),
                        Err(_) => break,
                    }
                }
                drain(&mut dec, &mut pass, input, archive_cfg, shared, idx);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if let Some(p) = &mut pass {
            if let Some(a) = &mut p.archive {
                if let Err(e) = a.maybe_sync() {
                    p.io_errors += 1;
                    tracing::error!(input = %input.name, pass = %p.id, error = %e, "archive fsync failed: data may be lost");
                }
            }
        }
        let los = pass
            .as_ref()
            .is_some_and(|p| p.last_frame.elapsed() >= pass_cfg.los_timeout);
        if los {
            close(&mut dec, &mut pass, input, archive_cfg, shared, idx);
            if let Some(d) = new_decoder(input, archive_cfg) {
                dec = d;
            }
            idle_since = Instant::now();
        } else if pass.is_none()
            && idle_since.elapsed() >= pass_cfg.los_timeout.max(Duration::from_secs(1))
        {
            // Noise without lock: start over so memory and counters do not grow between passes.
            if dec.stats().bytes_in > 0 {
                if let Some(d) = new_decoder(input, archive_cfg) {
                    dec = d;
                }
            }
            idle_since = Instant::now();
        }
        if last_status.elapsed() >= Duration::from_millis(200) {
            let stats = pass.as_ref().map(|_| dec.stats());
            shared.with_input(idx, |s| s.current = stats);
            last_status = Instant::now();
        }
        if shared.stopping() {
            break;
        }
    }
    // Shutdown: the ingest thread stops within its receive timeout and drops the sender; take
    // everything it queued until then, then close the pass.
    while let Ok(d) = rx.recv_timeout(Duration::from_millis(500)) {
        dec.push(&d);
    }
    drain(&mut dec, &mut pass, input, archive_cfg, shared, idx);
    close(&mut dec, &mut pass, input, archive_cfg, shared, idx);
}

fn open_pass(
    input: &InputConfig,
    archive_cfg: &ArchiveConfig,
    shared: &Shared,
    idx: usize,
) -> Pass {
    let aos = SystemTime::now();
    let archive = match PassArchive::create(
        &archive_cfg.path,
        aos,
        &input.name,
        archive_cfg.keep_raw_cadus,
        archive_cfg.fsync_interval,
        archive_cfg.fsync_bytes,
    ) {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::error!(input = %input.name, error = %e, "cannot create pass archive: pass will not be archived");
            None
        }
    };
    let id = archive
        .as_ref()
        .map_or_else(|| pass_id(aos, &input.name), PassArchive::id);
    tracing::info!(input = %input.name, pass = %id, "AOS");
    shared.webhooks.notify(
        crate::config::WebhookEvent::Aos,
        serde_json::json!({
            "id": id,
            "input": input.name,
            "profile": input.profile.name,
            "aos": humantime::format_rfc3339_millis(aos).to_string(),
        }),
    );
    let drops_at_aos = shared.with_input(idx, |s| {
        s.pass = Some(id.clone());
        s.sync_state = "locked";
        s.drops.clone()
    });
    Pass {
        id,
        aos,
        aos_instant: Instant::now(),
        timeline: Timeline::default(),
        last_frame: Instant::now(),
        last_frame_time: aos,
        archive,
        scid: None,
        drops_at_aos: drops_at_aos.unwrap_or_default(),
        io_errors: 0,
    }
}

fn drain(
    dec: &mut Decoder,
    pass: &mut Option<Pass>,
    input: &InputConfig,
    archive_cfg: &ArchiveConfig,
    shared: &Shared,
    idx: usize,
) {
    // One clock read per batch of events, not per frame.
    let now = Instant::now();
    while let Some(ev) = dec.poll() {
        let opens = matches!(
            ev,
            Event::Locked { .. } | Event::Frame(_) | Event::Packet { .. } | Event::RawCadu { .. }
        );
        if opens && pass.is_none() {
            *pass = Some(open_pass(input, archive_cfg, shared, idx));
        }
        let Some(p) = pass.as_mut() else { continue };
        let sec = p
            .timeline
            .at(now.saturating_duration_since(p.aos_instant).as_secs());
        match &ev {
            Event::Frame(f) => {
                sec.good += 1;
                sec.locked = true;
                sec.corrected += f.rs.map_or(0, |o| {
                    o.codewords()
                        .iter()
                        .filter(|c| matches!(c, decoder::rs::CodewordOutcome::Corrected { .. }))
                        .count() as u32
                });
            }
            Event::Locked { .. } | Event::RawCadu { .. } => sec.locked = true,
            Event::Rejected { .. } => sec.rejected += 1,
            _ => {}
        }
        let res = match &ev {
            Event::RawCadu { data, .. } => p.archive.as_mut().map(|a| a.cadu(data)),
            Event::Frame(f) => {
                p.last_frame = now;
                p.scid.get_or_insert(f.header.scid);
                p.archive.as_mut().map(|a| a.frame(f.header.vcid, &f.data))
            }
            Event::Packet { packet, .. } => p
                .archive
                .as_mut()
                .map(|a| a.packet(packet.header.apid, &packet.data)),
            Event::Locked { .. } => {
                shared.with_input(idx, |s| s.sync_state = "locked");
                None
            }
            Event::LockLost { .. } => {
                shared.with_input(idx, |s| s.sync_state = "searching");
                None
            }
            _ => None,
        };
        if let Some(Err(e)) = res {
            p.io_errors += 1;
            if p.io_errors == 1 {
                tracing::error!(input = %input.name, pass = %p.id, error = %e, "archive write failed: data lost");
            }
        }
    }
    if let Some(p) = pass {
        if p.last_frame == now {
            p.last_frame_time = SystemTime::now();
        }
        let t = unix_ms(p.last_frame_time);
        shared.with_input(idx, |s| s.last_frame_unix_ms = Some(t));
    }
}

fn close(
    dec: &mut Decoder,
    pass: &mut Option<Pass>,
    input: &InputConfig,
    archive_cfg: &ArchiveConfig,
    shared: &Shared,
    idx: usize,
) {
    if pass.is_none() {
        return;
    }
    dec.finish();
    drain(dec, pass, input, archive_cfg, shared, idx);
    let Some(p) = pass.take() else { return };
    let stats = dec.stats();
    let drops_now = shared
        .with_input(idx, |s| s.drops.clone())
        .unwrap_or_default();
    let drops: std::collections::BTreeMap<&str, u64> = drops_now
        .iter()
        .map(|(k, v)| {
            (
                *k,
                v.saturating_sub(p.drops_at_aos.get(k).copied().unwrap_or(0)),
            )
        })
        .collect();
    let los = p.last_frame_time;
    let spacecraft = p.scid.map(|s| {
        input
            .profile
            .spacecraft_name(s)
            .map_or_else(|| format!("SCID {s}"), str::to_owned)
    });
    let record = serde_json::json!({
        "id": p.id,
        "input": input.name,
        "profile": input.profile.name,
        "spacecraft": spacecraft,
        "scid": p.scid,
        "aos": humantime::format_rfc3339_millis(p.aos).to_string(),
        "los": humantime::format_rfc3339_millis(los).to_string(),
        "duration_s": los.duration_since(p.aos).map_or(0.0, |d| d.as_secs_f64()),
        "counters": stats,
        "drops": drops,
        "archive_io_errors": p.io_errors,
        "plot": "plot.png",
    });
    shared.webhooks.notify(
        crate::config::WebhookEvent::Los,
        serde_json::json!({
            "id": record["id"], "input": record["input"], "spacecraft": record["spacecraft"],
            "aos": record["aos"], "los": record["los"],
            "frames_good": stats.frames.good, "packets": stats.packets.total,
        }),
    );
    let path = match p.archive {
        Some(a) => match a.close(&record, p.timeline.png(900, 300).ok().as_deref()) {
            Ok(path) => Some(path),
            Err(e) => {
                tracing::error!(input = %input.name, pass = %p.id, error = %e, "cannot write pass record");
                None
            }
        },
        None => None,
    };
    if let Some(record_path) = &path {
        shared
            .webhooks
            .notify(crate::config::WebhookEvent::PassRecord, record.clone());
        if input.profile.imaging.is_some() {
            if let Some(dir) = record_path.parent() {
                shared.products.submit(super::products::Job {
                    pass_id: p.id.clone(),
                    dir: dir.to_owned(),
                    profile: input.profile.clone(),
                    aos: p.aos,
                });
            }
        }
    }
    tracing::info!(
        input = %input.name,
        pass = %p.id,
        frames = stats.frames.good,
        rejected = stats.frames.rejected.total(),
        packets = stats.packets.total,
        record = ?path,
        "LOS"
    );
    shared.with_input(idx, |s| {
        s.pass = None;
        s.sync_state = "searching";
        s.passes += 1;
        s.current = None;
        s.totals.frames_good += stats.frames.good;
        s.totals.frames_rejected += stats.frames.rejected.total();
        s.totals.rs_corrected += stats.rs.corrected;
        s.totals.rs_uncorrectable += stats.rs.uncorrectable;
        s.totals.packets += stats.packets.total;
    });
}
