//! End-to-end: the HTTP server cannot starve the archive. The real `downlink serve` on loopback
//! under an open-file limit, flooded with idle TCP connections while a real capture arrives
//! over UDP; stalled request heads and bodies time out; refusals and shed requests are counted.
//! Only 127.0.0.1 is ever used.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::*;

/// Idle connections the flood opens (the issue's failure took 20,000 against a 1024-fd limit).
const FLOOD: usize = 10_000;
/// What the flood may add to the daemon's resident memory (documented in README, `[http]`).
const RSS_BOUND_KIB: u64 = 64 * 1024;

/// A daemon on an `eos` UDP input with `http_extra` lines in `[http]`, its open-file limit set
/// to `nofile` (soft and hard) when given; stderr goes to `daemon.log` in its directory.
fn start(http_extra: &str, nofile: Option<u32>) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let config = dir.path().join("downlink.toml");
    std::fs::write(&config, eos_udp_config(&archive, http_extra)).unwrap();
    let bin = env!("CARGO_BIN_EXE_downlink");
    let mut cmd = match nofile {
        Some(n) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                .arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.args(["serve", "--config", config.to_str().unwrap()]);
    Daemon::launch(cmd, dir, archive)
}

fn log_of(d: &Daemon) -> String {
    d.log_text()
}

fn status_http(d: &Daemon) -> serde_json::Value {
    let st: serde_json::Value = serde_json::from_str(&d.get("/api/v1/status").unwrap()).unwrap();
    st["http"].clone()
}

/// Resident memory of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A `python3` child holding `n` idle connections to `port` (its own open-file limit raised
/// to the hard limit): returns once all are connected; they close when the child is killed.
fn flood(port: u16, n: usize) -> std::process::Child {
    let script = r#"
import resource, socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if hard != resource.RLIM_INFINITY and hard < n + 64:
    print(f"error: open-file hard limit {hard} is below {n + 64}", flush=True)
    sys.exit(2)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
socks = []
for i in range(n):
    s = socket.socket()
    s.settimeout(20)
    s.connect(("127.0.0.1", port))
    socks.append(s)
    # At most ~2000 connections a second: faster than the daemon accepts, the kernel's accept
    # queue overflows and each dropped SYN costs this serial client a 1 s retransmit.
    if i % 20 == 19:
        time.sleep(0.01)
print(f"open {len(socks)}", flush=True)
sys.stdin.read()
"#;
    let mut child = Command::new("python3")
        .args(["-c", script, &port.to_string(), &n.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 is needed to hold the idle connections");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), format!("open {n}"), "flood: {line}");
    child
}

/// Connects and sends `bytes`; the stream, with a 10 s read timeout.
fn send_raw(port: u16, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    s
}

/// Reads until the server closes (or resets) the connection: what it sent, and when.
fn read_until_closed(s: &mut TcpStream) -> (String, Instant) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("connection not closed by the server: {e}"),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), Instant::now())
}

#[test]
fn ten_thousand_idle_connections_do_not_keep_a_pass_from_being_archived() {
    // A small open-file limit, as on a host with a default ulimit: the default cap of 512 is
    // lowered to fit with the archive's reserve.
    let mut d = start("", Some(700));
    let pid = d.child.id();
    let before = status_http(&d);
    assert!(
        before["max_connections"].as_u64().unwrap() < 512,
        "{before}"
    );
    assert_eq!(before["max_connections_configured"], 512, "{before}");
    assert_eq!(before["fd_limit"], 700, "{before}");
    assert!(
        before["warning"].as_str().unwrap().contains("lowered"),
        "{before}"
    );
    assert!(log_of(&d).contains("http.max_connections lowered from 512"));
    let cap = before["max_connections"].as_u64().unwrap();
    let rss0 = rss_kib(pid);

    let t_flood = Instant::now();
    let mut holder = flood(d.http, FLOOD);
    eprintln!(
        "flood: {FLOOD} connections open after {:?}",
        t_flood.elapsed()
    );
    // While 10,000 connections are held, a fresh one is answered at once.
    let t0 = Instant::now();
    let st = d.get("/api/v1/status").expect("status under the flood");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    let st: serde_json::Value = serde_json::from_str(&st).unwrap();
    assert_eq!(st["health"]["state"], "ok", "{}", st["health"]);

    // A real pass arrives and closes (LOS) while the connections are held.
    let path = data("cadu/aqua.20241206T175646.dat");
    let bytes = std::fs::read(&path).unwrap();
    d.send(&random_datagrams(&bytes, 51));
    let t_pass = Instant::now();
    let rec = d.wait_passes(1).remove(0);
    eprintln!("flood: pass archived {:?} after sending", t_pass.elapsed());
    assert_eq!(rec["counters"], decode_json(&path, "eos"), "pass counters");
    let list = d.get("/api/v1/passes").unwrap();
    assert!(list.contains(rec["id"].as_str().unwrap()), "{list}");

    let h = status_http(&d);
    let rss1 = rss_kib(pid);
    eprintln!("flood: RSS {rss0} KiB -> {rss1} KiB; http {h}");
    let open = h["connections_open"].as_u64().unwrap();
    // The cap, plus evicted connections still closing (at most 16).
    assert!(open <= cap + 16, "{h}");
    let accepted = h["connections_accepted"].as_u64().unwrap();
    assert!(accepted >= FLOOD as u64, "{h}");
    // Idle connections were closed to make room, oldest first; none needed refusing.
    assert!(h["evicted"].as_u64().unwrap() >= FLOOD as u64 - cap, "{h}");
    assert_eq!(h["refused"]["emfile"], 0, "{h}");
    assert!(
        rss1.saturating_sub(rss0) < RSS_BOUND_KIB,
        "RSS {rss0} KiB -> {rss1} KiB under {FLOOD} idle connections"
    );

    // ~9,500 evictions, logged at most once per 10 s with the count.
    let log = log_of(&d);
    let lines = log
        .lines()
        .filter(|l| l.contains("idle connections closed to make room"))
        .count();
    let most = 1 + t_flood.elapsed().as_secs() / 10;
    assert!(
        (1..=most).contains(&(lines as u64)),
        "{lines} lines:\n{log}"
    );

    let metrics = d.get("/metrics").unwrap();
    for line in [
        format!("downlink_http_connections_max {cap}"),
        "downlink_http_connections_refused_total{reason=\"emfile\"} 0".to_owned(),
        "downlink_degraded{component=\"http\"} 0".to_owned(),
    ] {
        assert!(metrics.contains(&line), "{line} missing:\n{metrics}");
    }
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(d.stop().success());
}

#[test]
fn stalled_heads_and_bodies_time_out_and_a_full_server_refuses_and_counts() {
    let d = start(
        "header_timeout = \"1s\"\nidle_timeout = \"2s\"\nmax_connections = 2\nmax_requests_per_connection = 2",
        None,
    );
    // A partial request head that stalls is closed after header_timeout.
    let mut s = send_raw(
        d.http,
        b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n",
    );
    let t0 = Instant::now();
    let (_, closed) = read_until_closed(&mut s);
    let took = closed - t0;
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(5),
        "partial head closed after {took:?}"
    );
    assert_eq!(status_http(&d)["timed_out"]["header"], 1);

    // Two requests in progress (bodies announced, not sent) fill the cap: a third connection
    // is closed at once, without a byte, and counted.
    let post = b"POST /stac/search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{";
    let mut a = send_raw(d.http, post);
    let mut b = send_raw(d.http, post);
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        let mut c = TcpStream::connect(("127.0.0.1", d.http)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let t0 = Instant::now();
        let (got, closed) = read_until_closed(&mut c);
        assert!(got.is_empty(), "{got}");
        assert!(
            closed - t0 < Duration::from_millis(500),
            "{:?}",
            closed - t0
        );
    }
    // The stalled bodies fail after idle_timeout and both are answered.
    for s in [&mut a, &mut b] {
        let (got, _) = read_until_closed(s);
        assert!(got.starts_with("HTTP/1.1 4"), "{got}");
    }
    let h = status_http(&d);
    assert_eq!(h["refused"]["cap"], 5, "{h}");
    assert_eq!(h["timed_out"]["body"], 2, "{h}");

    // Idle connections at the cap make room for a new one: the oldest is closed.
    let mut idle1 = TcpStream::connect(("127.0.0.1", d.http)).unwrap();
    idle1
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let idle2 = TcpStream::connect(("127.0.0.1", d.http)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let t0 = Instant::now();
    let h = status_http(&d);
    assert!(
        t0.elapsed() < Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
    assert!(h["evicted"].as_u64().unwrap() >= 1, "{h}");
    let (got, closed) = read_until_closed(&mut idle1);
    // Closed by the eviction, well before its header_timeout (1 s after it opened).
    assert!(got.is_empty() && closed - t0 < Duration::from_millis(600));
    drop(idle2);

    // A keep-alive connection with no next request ends after header_timeout, counted apart
    // from stalled heads.
    let mut ka = send_raw(
        d.http,
        b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    );
    let t0 = Instant::now();
    let (got, closed) = read_until_closed(&mut ka);
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(
        closed - t0 >= Duration::from_millis(800),
        "{:?}",
        closed - t0
    );
    let h = status_http(&d);
    assert_eq!(h["timed_out"]["keep_alive"], 1, "{h}");
    assert_eq!(h["timed_out"]["header"], 1, "{h}");

    // max_requests_per_connection = 2: the second response closes the connection.
    let three = "GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".repeat(3);
    let mut k = send_raw(d.http, three.as_bytes());
    let (got, _) = read_until_closed(&mut k);
    assert_eq!(got.matches("HTTP/1.1 200").count(), 2, "{got}");
    assert!(
        got.to_ascii_lowercase().contains("connection: close"),
        "{got}"
    );

    let metrics = d.get("/metrics").unwrap();
    for name in [
        "downlink_http_connections_open ",
        "downlink_http_connections_refused_total{reason=\"cap\"} ",
        "downlink_http_timeouts_total{kind=\"header\"} ",
        "downlink_http_timeouts_total{kind=\"body\"} 2",
        "downlink_http_connections_evicted_total ",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
    // Refusals are logged, rate-limited: one line for the five, not one per connection.
    let lines = log_of(&d)
        .lines()
        .filter(|l| l.contains("new connections are closed at once"))
        .count();
    assert_eq!(lines, 1, "{}", log_of(&d));
}

#[test]
fn requests_beyond_max_concurrency_get_503_with_retry_after() {
    let d = start("max_concurrency = 1\nidle_timeout = \"2s\"", None);
    // One request in progress (its body never comes) holds the only slot.
    let mut slow = send_raw(
        d.http,
        b"POST /stac/search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{",
    );
    std::thread::sleep(Duration::from_millis(300));
    let (code, head, _) = http(d.http, "GET", "/api/v1/status", &[], b"");
    assert_eq!(code, 503, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    let (got, _) = read_until_closed(&mut slow);
    assert!(got.starts_with("HTTP/1.1 4"), "{got}");
    let h = status_http(&d);
    assert_eq!(h["requests_shed"], 1, "{h}");
    let metrics = d.get("/metrics").unwrap();
    assert!(
        metrics.contains("downlink_http_requests_shed_total 1"),
        "{metrics}"
    );
}

#[test]
fn shutdown_lets_a_request_in_progress_finish_and_waits_at_most_the_grace_for_a_stalled_one() {
    let mut d = start("idle_timeout = \"1h\"", None);
    let head = b"POST /stac/search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{";
    let mut finishing = send_raw(d.http, head);
    let _stalled = send_raw(d.http, head);
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let pid = d.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Stopping: the request in progress still gets its answer.
    finishing.write_all(b"}").unwrap();
    let (got, _) = read_until_closed(&mut finishing);
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    // The stalled one is closed after the 5 s grace, and the daemon exits.
    let status = loop {
        if let Some(st) = d.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "daemon did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = t0.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        took >= Duration::from_millis(4500) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert!(
        log_of(&d).contains("requests still in progress after 5s; closing them"),
        "{}",
        log_of(&d)
    );
}
