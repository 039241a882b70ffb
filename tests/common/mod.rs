//! Shared helpers of the end-to-end tests: the real `downlink` binary on loopback, real
//! captures from `../shared/data`. Each test file takes what it needs (`mod common;`).
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn data(rel: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(rel);
    assert!(p.exists(), "test data missing: {}", p.display());
    p
}

/// The `downlink serve` command for `config`.
pub fn serve_cmd(config: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_downlink"));
    c.args(["serve", "--config", config.to_str().unwrap()]);
    c
}

/// Spawns `cmd` with stdout discarded and stderr appended to `log`.
pub fn spawn_logged(cmd: &mut Command, log: &Path) -> Child {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    cmd.stdout(Stdio::null()).stderr(file).spawn().unwrap()
}

/// The first line of `text` that contains `marker`, from the token after `key=` to the next
/// space: the bound address the daemon logs (`downlink serving http=127.0.0.1:41234`).
pub fn logged_field(text: &str, marker: &str, key: &str) -> Option<String> {
    let line = text.lines().find(|l| l.contains(marker))?;
    let at = line.find(&format!("{key}="))? + key.len() + 1;
    Some(line[at..].split_whitespace().next()?.to_owned())
}

/// A daemon started by a test. Every address in its config is port 0: the daemon binds, then
/// logs and reports the ports it got, so no test ever guesses a free port. Its stderr goes to
/// `log`; the log is printed when the test fails (or always, with `DOWNLINK_TEST_LOG` set).
pub struct Daemon {
    pub child: Child,
    pub udp: u16,
    pub http: u16,
    pub archive: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    /// Where the current process's part of `log` starts.
    pub log_from: usize,
    pub _dir: tempfile::TempDir,
}

impl Daemon {
    pub fn start(profile: &str, extra_input: &str) -> Daemon {
        Self::start_on("udp", profile, extra_input)
    }

    pub fn start_on(scheme: &str, profile: &str, extra_input: &str) -> Daemon {
        Self::start_with(scheme, profile, extra_input)
    }

    /// `scheme` is udp, tcp, or a whole `listen` address (`tcp-connect://…`).
    pub fn start_with(scheme: &str, profile: &str, extra_input: &str) -> Daemon {
        Self::start_full(scheme, profile, "bits", extra_input, "")
    }

    /// `sections` is TOML placed before the input table (e.g. an `[imaging]` table).
    pub fn start_full(
        scheme: &str,
        profile: &str,
        format: &str,
        extra_input: &str,
        sections: &str,
    ) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("archive");
        let listen = match scheme {
            "systemd" => "systemd://xband".to_owned(),
            // A whole address, e.g. tcp-connect://127.0.0.1:PORT of a server the test holds.
            s if s.contains("://") => s.to_owned(),
            _ => format!("{scheme}://127.0.0.1:0"),
        };
        let cfg = format!(
            r#"
[archive]
path = "{}"
fsync_interval = "100ms"
[http]
listen = "127.0.0.1:0"
[pass]
los_timeout = "700ms"
{sections}
[[input]]
name = "xband"
listen = "{listen}"
format = "{format}"
profile = "{profile}"
{extra_input}
"#,
            archive.display()
        );
        let path = dir.path().join("downlink.toml");
        std::fs::write(&path, cfg).unwrap();
        Self::launch(serve_cmd(&path), dir, archive)
    }

    /// A daemon whose one input is `systemd://xband`: the test plays the service manager. It
    /// binds a UDP socket on port 0 and starts the daemon with it as fd 3 (`LISTEN_FDS=1`,
    /// `LISTEN_FDNAMES=xband`, `LISTEN_PID` = the daemon's pid), as systemd does for a `.socket`
    /// unit with `FileDescriptorName=xband`.
    pub fn start_socket_activated(profile: &str) -> Daemon {
        use std::os::fd::AsRawFd;
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        let addr: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
        sock.bind(&addr.into()).unwrap();
        let port = sock.local_addr().unwrap().as_socket().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("archive");
        let cfg = format!(
            "[archive]\npath = \"{}\"\nfsync_interval = \"100ms\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [pass]\nlos_timeout = \"700ms\"\n[[input]]\nname = \"xband\"\n\
             listen = \"systemd://xband\"\nformat = \"bits\"\nprofile = \"{profile}\"\n",
            archive.display()
        );
        let path = dir.path().join("downlink.toml");
        std::fs::write(&path, cfg).unwrap();
        // The shell moves the socket to fd 3 and sets LISTEN_PID to its own pid, which `exec`
        // hands to the daemon. The socket is inheritable only until the daemon has started.
        let fd = sock.as_raw_fd();
        let close = if fd == 3 {
            String::new()
        } else {
            format!(" {fd}>&-")
        };
        sock.set_cloexec(false).unwrap();
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                "exec 3>&{fd}{close}; LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=xband exec \"$0\" \"$@\""
            ))
            .arg(env!("CARGO_BIN_EXE_downlink"))
            .args(["serve", "--config", path.to_str().unwrap()]);
        let d = Self::launch(cmd, dir, archive);
        drop(sock);
        assert_eq!(d.udp, port, "the daemon serves the socket it was given");
        d
    }

    /// Starts `cmd` (a `downlink serve` of a config in `dir`, as [`serve_cmd`] makes it, maybe
    /// wrapped) with its log in `dir/daemon.log`, and waits until it serves.
    pub fn launch(mut cmd: Command, dir: tempfile::TempDir, archive: PathBuf) -> Daemon {
        let log = dir.path().join("daemon.log");
        let child = spawn_logged(&mut cmd, &log);
        let mut d = Daemon {
            child,
            udp: 0,
            http: 0,
            archive,
            config: dir.path().join("downlink.toml"),
            log,
            log_from: 0,
            _dir: dir,
        };
        d.wait_up();
        d
    }

    /// The log of the daemon process now running (since its last start).
    pub fn log_text(&self) -> String {
        let all = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(&all[self.log_from.min(all.len())..]).into_owned()
    }

    /// Waits for a log line (of the current process) containing `marker`; panics with the log
    /// when the process exits first or `limit` passes.
    pub fn wait_log(&mut self, marker: &str, limit: Duration) -> String {
        let t0 = Instant::now();
        loop {
            let text = self.log_text();
            if let Some(l) = text.lines().find(|l| l.contains(marker)) {
                return l.to_owned();
            }
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("the daemon exited ({st}) before logging {marker:?}:\n{text}");
            }
            assert!(
                t0.elapsed() < limit,
                "no {marker:?} in the daemon's log after {limit:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the daemon serves: its log names the HTTP address it bound, its status
    /// answers, and `udp` is its first input's bound port (UDP or TCP).
    pub fn wait_up(&mut self) {
        let line = self.wait_log("downlink serving", Duration::from_secs(20));
        let http = logged_field(&line, "downlink serving", "http").unwrap();
        self.http = http.rsplit(':').next().unwrap().parse().unwrap();
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = self.get("/api/v1/status") {
                break s;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "daemon did not answer on {http}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        if let Some(a) = status["inputs"][0]["local_addr"].as_str() {
            self.udp = a.rsplit(':').next().unwrap().parse().unwrap();
        }
    }

    /// SIGKILL, then a fresh daemon on the same config and archive. Its ports are new when the
    /// config asks for port 0: `udp` and `http` follow.
    pub fn kill9_and_restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.respawn(serve_cmd(&self.config.clone()));
    }

    /// Starts `cmd` as this daemon's next process (the previous one has exited) and waits
    /// until it serves.
    pub fn respawn(&mut self, mut cmd: Command) {
        self.log_from = std::fs::metadata(&self.log).map_or(0, |m| m.len() as usize);
        self.child = spawn_logged(&mut cmd, &self.log);
        self.wait_up();
    }

    pub fn get_bytes(&self, path: &str) -> Option<Vec<u8>> {
        let mut s = TcpStream::connect(("127.0.0.1", self.http)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).ok()?;
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        raw.starts_with(b"HTTP/1.1 200")
            .then(|| raw[end + 4..].to_vec())
    }

    /// The body of a 200 answer to `GET path`, as text.
    pub fn get(&self, path: &str) -> Option<String> {
        self.get_bytes(path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// Sends `bytes` in random datagram sizes, paced so loopback never overflows.
    pub fn send(&self, chunks: &[Vec<u8>]) {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        for (i, c) in chunks.iter().enumerate() {
            s.send_to(c, ("127.0.0.1", self.udp)).unwrap();
            if i % 32 == 31 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    pub fn wait_passes(&self, n: usize) -> Vec<serde_json::Value> {
        let t0 = Instant::now();
        loop {
            let mut recs: Vec<serde_json::Value> = std::fs::read_dir(self.archive.join("passes"))
                .map(|rd| {
                    rd.flatten()
                        .filter_map(|e| std::fs::read(e.path().join("pass.json")).ok())
                        .map(|b| serde_json::from_slice(&b).unwrap())
                        .collect()
                })
                .unwrap_or_default();
            if recs.len() >= n {
                recs.sort_by(|a, b| a["aos"].as_str().cmp(&b["aos"].as_str()));
                return recs;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "only {} pass records",
                recs.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn stop(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "daemon ignored SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    /// A failing test must not leak a running daemon, and shows the daemon's log.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() || std::env::var_os("DOWNLINK_TEST_LOG").is_some() {
            let all = std::fs::read(&self.log).unwrap_or_default();
            let text = String::from_utf8_lossy(&all);
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(400)..];
            eprintln!(
                "---- daemon log ({}, last {} lines) ----\n{}\n---- end of daemon log ----",
                self.log.display(),
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

pub struct Rng(pub u64);
impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

pub fn random_datagrams(bytes: &[u8], seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let n = (1 + rng.below(1472) as usize).min(bytes.len() - at);
        out.push(bytes[at..at + n].to_vec());
        at += n;
    }
    out
}

pub fn decode_json(file: &Path, profile: &str) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_downlink"))
        .args([
            "decode",
            file.to_str().unwrap(),
            "--profile",
            profile,
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let m = v.as_object_mut().unwrap();
    m.remove("timing");
    m.remove("profile");
    v
}

/// The CADUs of an unaligned capture, realigned (what the raw archive must hold).
pub fn aligned_cadus(capture: &[u8]) -> Vec<u8> {
    let bits: Vec<u8> = capture
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    let asm: Vec<u8> = [0x1Au8, 0xCF, 0xFC, 0x1D]
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    let first = (0..bits.len() - 32)
        .find(|&i| bits[i..i + 32] == asm[..])
        .unwrap();
    let whole = (bits.len() - first) / 8192 * 8192;
    bits[first..first + whole]
        .chunks(8)
        .map(|c| c.iter().fold(0u8, |a, &b| (a << 1) | b))
        .collect()
}

/// The shared Meteor-M2 TLE moved to the pass the daemon will date: the daemon dates the
/// instrument's Moscow time of day (23:25:11 = 20:25:11 UTC) by its own clock, so a replayed
/// 2022 recording is a pass of the 20:25 UTC nearest now. The epoch moves by whole days D, and
/// the ascending node by the Earth's extra rotation over D days (D × 0.98564736629°, the GMST
/// rate minus one turn a day), so the ground track is the 2022 one: the pass lands where the
/// real one did (10°S 147°E), whatever the date the test runs.
pub fn meteor_tle_for_todays_pass() -> String {
    use chrono::{Datelike, Duration, NaiveDate, Utc};
    let now = Utc::now();
    let today = now.date_naive();
    let at = |d: NaiveDate| d.and_hms_opt(20, 25, 11).unwrap().and_utc();
    let day = [today - Duration::days(1), today, today + Duration::days(1)]
        .into_iter()
        .min_by_key(|d| (at(*d) - now).num_seconds().abs())
        .unwrap();
    let d = (day - NaiveDate::from_ymd_opt(2022, 12, 20).unwrap()).num_days();
    let text = std::fs::read_to_string(data("tle/meteor-m2_40069_2022-12-20.tle")).unwrap();
    let checksum = |b: &[u8]| -> u32 {
        b.iter()
            .map(|c| match c {
                b'0'..=b'9' => u32::from(c - b'0'),
                b'-' => 1,
                _ => 0,
            })
            .sum::<u32>()
            % 10
    };
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for l in &mut lines {
        let mut b = l.as_bytes()[..68].to_vec();
        if l.starts_with("1 ") {
            let epoch = format!("{:02}{:03}", day.year() % 100, day.ordinal());
            b[18..23].copy_from_slice(epoch.as_bytes());
        } else if l.starts_with("2 ") {
            let raan: f64 = l[17..25].trim().parse().unwrap();
            let moved = (raan + d as f64 * 0.985_647_366_29).rem_euclid(360.0);
            b[17..25].copy_from_slice(format!("{moved:8.4}").as_bytes());
        } else {
            continue;
        }
        let sum = checksum(&b);
        *l = format!("{}{sum}", String::from_utf8(b).unwrap());
    }
    lines.join("\n") + "\n"
}

pub fn landmask() -> PathBuf {
    let p = std::env::var_os("DOWNLINK_LANDMASK").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/landmask.tif"),
        PathBuf::from,
    );
    assert!(
        p.is_file(),
        "land mask {} missing: run `make landmask`",
        p.display()
    );
    p
}

/// A daemon decoding Meteor-M LRPT frames over UDP with a TLE moved to today's pass (the
/// returned directory holds the TLE file) and `extra` config lines for `[imaging]`.
pub fn meteor_daemon(extra: &str) -> (Daemon, tempfile::TempDir) {
    let tle_dir = tempfile::tempdir().unwrap();
    let tle = tle_dir.path().join("weather.txt");
    std::fs::write(&tle, meteor_tle_for_todays_pass()).unwrap();
    let sections = format!("[imaging]\ntle = [\"{}\"]\n{extra}", tle.display());
    let d = Daemon::start_full("udp", "meteor-lrpt", "frames", "", &sections);
    (d, tle_dir)
}

/// Sends the shared Meteor-M2 capture (its three files) in random datagram sizes.
pub fn send_meteor_pass(d: &Daemon, seed: u64) {
    let mut bytes = Vec::new();
    for s in ["30", "40", "50"] {
        bytes.extend(
            std::fs::read(data(&format!("vcdu/meteor-m2/2022_12_20_20_25_{s}.vcdu"))).unwrap(),
        );
    }
    d.send(&random_datagrams(&bytes, seed));
}

/// `downlink archive add` into the daemon's archive; what it prints.
pub fn archive_add(d: &Daemon, file: &str, collection: &str, when: &str) -> serde_json::Value {
    let add = Command::new(env!("CARGO_BIN_EXE_downlink"))
        .args(["archive", "add"])
        .arg(data(file))
        .args(["--collection", collection, "--datetime", when])
        .arg("--archive")
        .arg(&d.archive)
        .output()
        .unwrap();
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    serde_json::from_slice(&add.stdout).unwrap()
}

/// One HTTP/1.1 request on loopback: (status, head, body).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head[9..12].parse().unwrap();
    let mut body = raw[end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..nl]).unwrap().trim(), 16)
                .unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[nl + 2..nl + 2 + n]);
            rest = &rest[nl + 2 + n + 2..];
        }
        body = out;
    }
    (status, head, body)
}

pub fn json_of(port: u16, path: &str) -> serde_json::Value {
    let (st, head, body) = http(port, "GET", path, &[], b"");
    assert_eq!(
        st,
        200,
        "{path}: {head}\n{}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).unwrap()
}

/// Waits for the one pass sent to `d` to be closed, turned into products and catalogued; its id.
pub fn wait_catalogued(d: &Daemon) -> String {
    let rec = d.wait_passes(1).remove(0);
    let id = rec["id"].as_str().unwrap().to_owned();
    let t0 = Instant::now();
    loop {
        let st: serde_json::Value =
            serde_json::from_str(&d.get("/api/v1/status").unwrap()).unwrap();
        assert_eq!(st["products"]["failed"], 0, "{}", st["products"]);
        assert_eq!(st["products"]["catalog_failed"], 0, "{}", st["products"]);
        // 404 until the pass's collection exists.
        let (code, _, body) = http(
            d.http,
            "GET",
            "/stac/collections/meteor-m2-msu-mr/items",
            &[],
            b"",
        );
        if code == 200 {
            let items: serde_json::Value = serde_json::from_slice(&body).unwrap();
            if items["features"].as_array().is_some_and(|f| !f.is_empty()) {
                break;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "pass never catalogued"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    id
}

impl Daemon {
    /// The pass records on disk now (no waiting).
    pub fn passes_now(&self) -> Vec<serde_json::Value> {
        std::fs::read_dir(self.archive.join("passes"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| std::fs::read(e.path().join("pass.json")).ok())
                    .filter_map(|b| serde_json::from_slice(&b).ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The last `n` lines of a text file (empty if it cannot be read).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The config of a daemon with one `eos` UDP input named `xband` and HTTP with `http_extra`
/// lines in `[http]`, both on port 0, its archive at `archive`.
pub fn eos_udp_config(archive: &Path, http_extra: &str) -> String {
    format!(
        r#"
[archive]
path = "{}"
fsync_interval = "100ms"
[http]
listen = "127.0.0.1:0"
{http_extra}
[pass]
los_timeout = "700ms"
[[input]]
name = "xband"
listen = "udp://127.0.0.1:0"
format = "bits"
profile = "eos"
"#,
        archive.display()
    )
}

/// Where tests keep artifacts for people to look at (screenshots).
pub fn artifacts(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/test-artifacts")
        .join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A tool the test needs: present, or a failure under CI and a loud skip elsewhere.
pub fn need(tool: &Path, how: &str) -> bool {
    if tool.exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing: {how}",
        tool.display()
    );
    eprintln!("SKIPPED: {} is missing ({how})", tool.display());
    false
}

/// The web map's browser test can run: playwright-core installed in `web/` and Chromium present
/// (`CHROMIUM`, default `/usr/bin/chromium`); under CI a missing one fails, as [`need`] does.
pub fn browser_ready(web: &Path) -> bool {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    need(
        &web.join("node_modules/playwright-core"),
        "run `make web` (npm ci in web/)",
    ) && need(
        Path::new(&chromium),
        "apt-get install chromium (make test-deps)",
    )
}

/// Mean of an item's outline points: inside the swath, which is a convex-ish band.
pub fn centroid(item: &serde_json::Value) -> (f64, f64) {
    let ring = item["geometry"]["coordinates"][0].as_array().unwrap();
    let n = ring.len() as f64;
    let sum = ring.iter().fold((0.0, 0.0), |(x, y), p| {
        (x + p[0].as_f64().unwrap(), y + p[1].as_f64().unwrap())
    });
    (sum.0 / n, sum.1 / n)
}

/// A single-node Garage on loopback (the S3-compatible store of `archive.store` tests).
pub mod garage;
