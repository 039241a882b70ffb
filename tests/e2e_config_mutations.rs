//! End-to-end: `downlink validate` rejects every configuration that `downlink serve` refuses,
//! and accepts every one it starts with. 200 deterministic mutations of a configuration that
//! uses every section (dropped keys, wrong types, bad and good values, unknown keys, an
//! unwritable archive, addresses that are not this machine's, webhook URLs with userinfo or
//! https, clashing names and ports, broken TOML) each go through `validate` and through
//! `serve`; a serve that answers `/api/v1/status` has started and is killed. Only loopback
//! addresses are bound; the non-local ones (TEST-NET 192.0.2.1, 198.51.100.7, 2001:db8::1)
//! are only ever given to bind(), which refuses them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CASES: u64 = 200;
const THREADS: u64 = 4;

/// A configuration as sections of `key = value` lines (values are TOML text).
#[derive(Clone, Debug)]
struct Section {
    header: String,
    keys: Vec<(String, String)>,
}

fn section(header: &str, keys: &[(&str, String)]) -> Section {
    Section {
        header: header.to_owned(),
        keys: keys
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    }
}

fn q(s: &str) -> String {
    format!("{s:?}")
}

fn base(dir: &Path) -> Vec<Section> {
    let archive = dir.join("archive").display().to_string();
    vec![
        section(
            "[archive]",
            &[
                ("path", q(&archive)),
                ("fsync_interval", q("1s")),
                ("fsync_bytes", q("4MiB")),
                ("keep_raw_cadus", "true".into()),
            ],
        ),
        section(
            "[http]",
            &[
                ("listen", q("127.0.0.1:0")),
                ("max_concurrency", "64".into()),
                ("tile_cache", q("1MiB")),
            ],
        ),
        section(
            "[pass]",
            &[("los_timeout", q("10s")), ("min_frames", "10".into())],
        ),
        section(
            "[imaging]",
            &[("enabled", "true".into()), ("tle", "[]".into())],
        ),
        section(
            "[[input]]",
            &[
                ("name", q("xband")),
                ("listen", q("udp://127.0.0.1:0")),
                ("format", q("bits")),
                ("profile", q("jpss")),
                ("allow", "[\"127.0.0.0/8\", \"::1\"]".into()),
                ("rcvbuf", q("1MiB")),
                ("max_datagram", "65535".into()),
                ("queue_datagrams", "4096".into()),
            ],
        ),
        section(
            "[[input]]",
            &[
                ("name", q("sband")),
                ("listen", q("tcp://127.0.0.1:0")),
                ("format", q("cadu")),
                ("profile", q("eos")),
                ("rcvbuf", "65536".into()),
            ],
        ),
        section(
            "[[webhook]]",
            &[
                ("url", q("http://127.0.0.1:9/hooks/downlink?token=s3cret")),
                ("events", "[\"los\"]".into()),
                ("timeout", q("1s")),
            ],
        ),
    ]
}

fn render(secs: &[Section]) -> String {
    let mut out = String::new();
    for s in secs {
        out.push_str(&format!("\n{}\n", s.header));
        for (k, v) in &s.keys {
            out.push_str(&format!("{k} = {v}\n"));
        }
    }
    out
}

/// Values of the wrong type (some may happen to fit a key, which is fine: the outcome is
/// compared, not predicted).
const WRONG_TYPES: &[&str] = &[
    "7",
    "\"seven\"",
    "true",
    "[1, 2]",
    "{ a = 1 }",
    "1.5",
    "2024-01-01T00:00:00Z",
    "[]",
];

/// Bad values for a key, by name.
fn bad_values(key: &str) -> &'static [&'static str] {
    match key {
        "fsync_interval" => &["\"11m\"", "\"0s\"", "\"soon\"", "5"],
        "fsync_bytes" => &["0", "\"2GiB\"", "\"8 M\"", "-1"],
        "max_concurrency" => &["0", "10001", "-5"],
        "tile_cache" => &["\"17GiB\"", "\"lots\""],
        "los_timeout" => &["\"0s\"", "\"2h\"", "10", "\"ten\""],
        "min_frames" => &["-1", "1000000001"],
        "name" => &["\"X Band\"", "\"\"", "\"a.b\""],
        "format" => &["\"bitz\"", "\"\""],
        "profile" => &["\"voyager\"", "\"/nonexistent/p.toml\"", "\"missing.toml\""],
        "allow" => &["[\"10.0.0.0/33\"]", "[\"eth0\"]", "[\"10.1.2.3/8\"]"],
        "rcvbuf" => &["\"1KiB\"", "\"2GiB\"", "65535"],
        "max_datagram" => &["0", "70000"],
        "queue_datagrams" => &["1", "2000000"],
        "events" => &["[\"eclipse\"]", "[\"aos\", \"aos\"]", "[]"],
        "timeout" => &["\"1ms\"", "\"6m\""],
        "url" => &[
            "\"ftp://127.0.0.1/x\"",
            "\"http:///x\"",
            "\"http://127.0.0.1:0/x\"",
            "\"http://user:pw@127.0.0.1:9/x\"",
            "\"https://token@127.0.0.1:9/x\"",
            "\"not a url\"",
        ],
        "tle" => &["[\"\"]"],
        "listen" => &[
            "\"udp:/x\"",
            "\"http://127.0.0.1:1\"",
            "\"udp://localhost:1\"",
        ],
        "path" => &["\"\""],
        _ => &["\"?\""],
    }
}

/// Valid alternatives for a key.
fn good_values(key: &str) -> &'static [&'static str] {
    match key {
        "fsync_interval" => &["\"100ms\"", "\"10m\""],
        "fsync_bytes" => &["1", "\"1 MB\""],
        "keep_raw_cadus" | "enabled" => &["false"],
        "max_concurrency" => &["1", "10000"],
        "tile_cache" => &["0", "\"16GiB\""],
        "los_timeout" => &["\"1ms\"", "\"1h\"", "\"1m 30s\""],
        "min_frames" => &["0", "1000000000"],
        "format" => &["\"frames\"", "\"packets\"", "\"cadu\""],
        "profile" => &["\"metop\"", "\"jpss2\"", "\"meteor-lrpt\""],
        "allow" => &["[]", "[\"0.0.0.0/0\", \"::/0\"]"],
        "rcvbuf" => &["\"64KiB\"", "\"8MiB\""],
        "queue_datagrams" => &["16", "1048576"],
        "events" => &["[\"aos\", \"los\", \"pass_record\"]"],
        "timeout" => &["\"100ms\"", "\"5m\""],
        "url" => &[
            "\"https://127.0.0.1:9/hooks/AbCdEf0123456789xyz\"",
            "\"http://[::1]:9/\"",
            "\"HTTP://localhost:9/x#frag\"",
        ],
        "path" => &["\"archive-relative\""],
        _ => &[],
    }
}

/// Applies one mutation; returns its description.
/// A port number that clash mutations put on two sockets at once: such a config is refused
/// before anything is bound, so the number is never bound (every other address is port 0).
const CLASH_PORT: u16 = 47_999;

fn mutate(secs: &mut Vec<Section>, rng: &mut Rng, dir: &Path) -> String {
    let pick = |rng: &mut Rng, n: usize| rng.below(n as u64) as usize;
    // (section index, key index) of a random key, never http.listen: a missing listen means
    // the default 127.0.0.1:8080, which another process on this machine may hold.
    let random_key = |rng: &mut Rng, secs: &Vec<Section>| -> Option<(usize, usize)> {
        for _ in 0..20 {
            if secs.is_empty() {
                return None;
            }
            let s = pick(rng, secs.len());
            if secs[s].keys.is_empty() {
                continue;
            }
            let k = pick(rng, secs[s].keys.len());
            if secs[s].header == "[http]" && secs[s].keys[k].0 == "listen" {
                continue;
            }
            return Some((s, k));
        }
        None
    };
    match rng.below(12) {
        0 => {
            let Some((s, k)) = random_key(rng, secs) else {
                return "nothing".into();
            };
            let (key, _) = secs[s].keys.remove(k);
            format!("drop {} {key}", secs[s].header)
        }
        1 => {
            let Some((s, k)) = random_key(rng, secs) else {
                return "nothing".into();
            };
            let v = WRONG_TYPES[pick(rng, WRONG_TYPES.len())];
            secs[s].keys[k].1 = v.to_owned();
            format!("type {} {} = {v}", secs[s].header, secs[s].keys[k].0)
        }
        2 | 3 => {
            let Some((s, k)) = random_key(rng, secs) else {
                return "nothing".into();
            };
            let vals = bad_values(&secs[s].keys[k].0);
            let v = vals[pick(rng, vals.len())];
            secs[s].keys[k].1 = v.to_owned();
            format!("bad {} {} = {v}", secs[s].header, secs[s].keys[k].0)
        }
        4..=6 => {
            let Some((s, k)) = random_key(rng, secs) else {
                return "nothing".into();
            };
            let vals = good_values(&secs[s].keys[k].0);
            if vals.is_empty() {
                return "nothing".into();
            }
            let v = vals[pick(rng, vals.len())];
            secs[s].keys[k].1 = v.to_owned();
            format!("good {} {} = {v}", secs[s].header, secs[s].keys[k].0)
        }
        7 => {
            if secs.is_empty() {
                return "nothing".into();
            }
            let s = pick(rng, secs.len());
            let key = match secs[s].keys.first() {
                Some((k, _)) if rng.below(2) == 0 => format!("{k}s"),
                _ => "colour".to_owned(),
            };
            secs[s].keys.push((key.clone(), "1".into()));
            format!("unknown {} {key}", secs[s].header)
        }
        8 => {
            let file = dir.join("a-file");
            std::fs::write(&file, b"not a directory").unwrap();
            let choices = [
                file.join("archive").display().to_string(),
                "/proc/downlink-archive".to_owned(),
                "/sys/downlink-archive".to_owned(),
                file.display().to_string(),
            ];
            let p = &choices[pick(rng, choices.len())];
            set(secs, "[archive]", "path", &q(p));
            format!("archive path {p}")
        }
        9 => {
            let choices = [
                ("[http]", "listen", "192.0.2.1:0".to_owned()),
                ("[http]", "listen", "[2001:db8::1]:0".to_owned()),
                ("[http]", "listen", "[::1]:0".to_owned()),
                ("[[input]]", "listen", "udp://192.0.2.1:0".to_owned()),
                ("[[input]]", "listen", "udp://[::1]:0".to_owned()),
                ("[[input]]", "listen", "udp://0.0.0.0:0".to_owned()),
                ("[[input]]", "listen", "tcp://198.51.100.7:0".to_owned()),
                (
                    "[[input]]",
                    "listen",
                    format!("tcp://127.0.0.1:{CLASH_PORT}"),
                ),
                (
                    "[[input]]",
                    "listen",
                    "tcp-connect://127.0.0.1:9".to_owned(),
                ),
            ];
            let (h, k, v) = &choices[pick(rng, choices.len())];
            set(secs, h, k, &q(v));
            if v.ends_with(&format!(":{CLASH_PORT}")) {
                // The input on the HTTP port: the two clash.
                set(
                    secs,
                    "[http]",
                    "listen",
                    &q(&format!("127.0.0.1:{CLASH_PORT}")),
                );
            }
            format!("address {h} {k} = {v}")
        }
        10 => {
            let what = rng.below(5);
            match what {
                0 => {
                    // Two inputs with one name.
                    let mut c = 0;
                    for s in secs.iter_mut().filter(|s| s.header == "[[input]]") {
                        for kv in s.keys.iter_mut().filter(|kv| kv.0 == "name") {
                            kv.1 = q("same");
                            c += 1;
                        }
                    }
                    format!("duplicate name x{c}")
                }
                1 => {
                    if let Some(s) = secs.iter_mut().find(|s| s.header == "[[input]]") {
                        s.header = "[input]".into();
                    }
                    "single brackets".into()
                }
                2 => {
                    let n = secs.len();
                    secs.retain(|s| s.header != "[[input]]");
                    format!("no inputs ({} removed)", n - secs.len())
                }
                3 => {
                    secs.push(section(
                        "[[input]]",
                        &[
                            ("name", q("lband")),
                            ("listen", q("tcp-connect://127.0.0.1:9")),
                            ("format", q("cadu")),
                            ("profile", q("metop")),
                            ("reconnect", q("250ms")),
                        ],
                    ));
                    "tcp-connect input".into()
                }
                _ => {
                    secs.retain(|s| s.header != "[[webhook]]");
                    "no webhook".into()
                }
            }
        }
        _ => {
            // Broken TOML somewhere.
            let s = pick(rng, secs.len().max(1)).min(secs.len().saturating_sub(1));
            if let Some(sec) = secs.get_mut(s) {
                sec.keys.push(("broken".into(), "\"unterminated".into()));
            }
            "syntax".into()
        }
    }
}

/// Sets `key` in the first section with `header` (adding it if missing).
fn set(secs: &mut [Section], header: &str, key: &str, value: &str) {
    if let Some(s) = secs.iter_mut().find(|s| s.header == header) {
        match s.keys.iter_mut().find(|kv| kv.0 == key) {
            Some(kv) => kv.1 = value.to_owned(),
            None => s.keys.push((key.to_owned(), value.to_owned())),
        }
    }
}

fn status_answers(addr: std::net::SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /api/v1/status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

#[derive(Debug)]
enum Serve {
    Started,
    Refused(i32, String),
}

fn run_serve(config: &Path, dir: &Path) -> Serve {
    let log = dir.join("serve.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_downlink"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            return Serve::Refused(st.code().unwrap_or(-1), text);
        }
        // The daemon binds port 0 and logs the address it got.
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let addr = logged_field(&text, "downlink serving", "http").and_then(|a| a.parse().ok());
        if addr.is_some_and(status_answers) {
            child.kill().unwrap();
            child.wait().unwrap();
            return Serve::Started;
        }
        if t0.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            child.wait().unwrap();
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("serve neither started nor exited in 20 s:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Outcome {
    case: u64,
    what: Vec<String>,
    config: String,
    validate_ok: bool,
    validate_out: String,
    serve: Serve,
}

fn run_case(case: u64) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let mut secs = base(dir.path());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (case + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    // Case 0 is the base itself; then one to three mutations each.
    let n = if case == 0 { 0 } else { 1 + rng.below(3) };
    let what: Vec<String> = (0..n)
        .map(|_| mutate(&mut secs, &mut rng, dir.path()))
        .collect();
    let config = render(&secs);
    let path = dir.path().join("downlink.toml");
    std::fs::write(&path, &config).unwrap();
    let v = Command::new(env!("CARGO_BIN_EXE_downlink"))
        .args(["validate", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let validate_ok = v.status.success();
    assert!(
        validate_ok || v.status.code() == Some(2),
        "validate exit {:?}",
        v.status
    );
    let validate_out = format!(
        "{}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
    // A fresh archive for serve, so validate's directory creation does not help it.
    if validate_ok {
        let _ = std::fs::remove_dir_all(dir.path().join("archive"));
        let _ = std::fs::remove_dir_all(dir.path().join("archive-relative"));
    }
    let serve = run_serve(&path, dir.path());
    Outcome {
        case,
        what,
        config,
        validate_ok,
        validate_out,
        serve,
    }
}

#[test]
fn validate_rejects_exactly_what_serve_refuses_across_200_mutated_configs() {
    let t0 = Instant::now();
    let outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    (0..CASES)
                        .filter(|c| c % THREADS == t)
                        .map(run_case)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(outcomes.len() as u64, CASES);
    let mut disagreements = Vec::new();
    let (mut accepted, mut rejected) = (0, 0);
    for o in &outcomes {
        let serve_ok = matches!(o.serve, Serve::Started);
        if o.validate_ok {
            accepted += 1;
        } else {
            rejected += 1;
        }
        if o.validate_ok != serve_ok {
            disagreements.push(format!(
                "case {} {:?}: validate {}, serve {:?}\nvalidate said:\n{}\nconfig:{}",
                o.case,
                o.what,
                if o.validate_ok { "ok" } else { "rejected" },
                o.serve,
                o.validate_out,
                o.config
            ));
        }
        if let Serve::Refused(code, log) = &o.serve {
            assert_eq!(
                *code, 2,
                "case {}: serve exit code; it said:\n{log}",
                o.case
            );
            assert!(!log.contains("s3cret"), "case {}: {log}", o.case);
        }
        // Secrets never reach validate's output.
        assert!(
            !o.validate_out.contains("s3cret") && !o.validate_out.contains("pw@"),
            "case {}: {}",
            o.case,
            o.validate_out
        );
    }
    eprintln!(
        "{CASES} configs: {accepted} accepted by both, {rejected} rejected; {:?}",
        t0.elapsed()
    );
    assert!(
        disagreements.is_empty(),
        "{} disagreements:\n{}",
        disagreements.len(),
        disagreements.join("\n\n")
    );
    // Both outcomes well represented, or the test proves little.
    assert!(accepted >= 25, "only {accepted} accepted");
    assert!(rejected >= 80, "only {rejected} rejected");
}
