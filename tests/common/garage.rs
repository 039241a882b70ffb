//! A throwaway single-node Garage (a real S3-compatible object store) on loopback, for the
//! tests of `archive.store = "s3://…"`. The `garage` binary is `$GARAGE`, else
//! `~/.cargo/bin/garage` (`make test-deps` installs it: `cargo install garage --version 2.5.0
//! --locked`). Under CI a missing binary fails the test; elsewhere the test is skipped, loudly.
//!
//! The node keeps its data in a temporary directory; it can be stopped and started again on
//! the same ports and data (the store going down and coming back). It is killed on drop.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running single-node Garage with one bucket and one key allowed on it.
pub struct Garage {
    pub bin: PathBuf,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// S3 API address, `127.0.0.1:PORT`.
    pub s3_addr: String,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
    pub region: String,
    child: Option<Child>,
}

/// The garage binary: `$GARAGE`, else `~/.cargo/bin/garage`.
pub fn garage_bin() -> PathBuf {
    std::env::var_os("GARAGE").map_or_else(
        || Path::new(&std::env::var_os("HOME").unwrap_or_default()).join(".cargo/bin/garage"),
        PathBuf::from,
    )
}

/// Three distinct ports for a node, drawn below the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`, 32768–60999 by default), so that no socket bound to port 0
/// by this or another test can take one of them. Garage binds its own ports from its config:
/// two nodes drawing the same port make the second fail to start, and [`Garage::start`] draws
/// again. Nothing is bound and released here.
fn draw_ports(attempt: u64) -> (u16, u16, u16) {
    let mut rng = super::Rng(seed(attempt));
    let mut draw = || 20_000 + rng.below(12_000) as u16;
    loop {
        let (a, b, c) = (draw(), draw(), draw());
        if a != b && b != c && a != c {
            return (a, b, c);
        }
    }
}

/// A seed that differs between processes, calls and `salt`s (never 0, which xorshift keeps).
fn seed(salt: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    ((u64::from(std::process::id()) << 32 | u64::from(nanos))
        ^ salt.wrapping_add(1).wrapping_mul(0x9e37_79b9))
        | 1
}

impl Garage {
    /// Starts a node and makes bucket `bucket` and a key with read, write and owner rights on
    /// it. `None` (skipped) when the binary is missing outside CI.
    pub fn start(bucket: &str) -> Option<Garage> {
        let bin = garage_bin();
        if !super::need(
            &bin,
            "cargo install garage --version 2.5.0 --locked (make test-deps)",
        ) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("garage.toml");
        // A secret of its own: a node never joins another test's node.
        let mut rng = super::Rng(seed(u64::MAX / 2));
        let secret: String = (0..4)
            .map(|_| format!("{:016x}", rng.below(u64::MAX)))
            .collect();
        let mut g = Garage {
            bin,
            dir,
            config,
            s3_addr: String::new(),
            bucket: bucket.to_owned(),
            key_id: String::new(),
            secret: String::new(),
            region: "garage".into(),
            child: None,
        };
        for attempt in 0.. {
            let (rpc, s3, admin) = draw_ports(attempt);
            g.write_config(rpc, s3, admin, &secret);
            if g.try_start() {
                break;
            }
            // A port was taken (the node exited): draw again, a few times.
            assert!(
                attempt < 5,
                "garage did not start:\n{}",
                super::tail(&g.dir.path().join("garage.log"), 30)
            );
        }
        let id = g.cli(&["node", "id", "-q"]);
        let id = id.trim().split('@').next().unwrap().to_owned();
        g.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &id]);
        g.cli(&["layout", "apply", "--version", "1"]);
        g.cli(&["bucket", "create", bucket]);
        let key = g.cli(&["key", "create", "downlink-test"]);
        let field = |name: &str| {
            key.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
                .unwrap_or_else(|| panic!("no {name} in `garage key create`:\n{key}"))
        };
        g.key_id = field("Key ID:");
        g.secret = field("Secret key:");
        g.cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            bucket,
            "--key",
            "downlink-test",
        ]);
        g.wait_s3();
        Some(g)
    }

    /// `http://127.0.0.1:PORT`, the S3 endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.s3_addr)
    }

    /// Runs a `garage` command against the node; its stdout (panics on failure).
    pub fn cli(&self, args: &[&str]) -> String {
        let t0 = Instant::now();
        loop {
            let out = Command::new(&self.bin)
                .arg("-c")
                .arg(&self.config)
                .args(args)
                .output()
                .unwrap();
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            // The node may still be starting (RPC not up): try again for a while.
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "garage {args:?} failed: {}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                super::tail(&self.dir.path().join("garage.log"), 30)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Stops the server (SIGKILL): the store is down; its data stays.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The node's config on these ports (a fresh node: metadata and data are removed).
    fn write_config(&mut self, rpc: u16, s3: u16, admin: u16, secret: &str) {
        let d = self.dir.path();
        let _ = std::fs::remove_dir_all(d.join("meta"));
        let _ = std::fs::remove_dir_all(d.join("data"));
        std::fs::write(
            &self.config,
            format!(
                r#"metadata_dir = "{d}/meta"
data_dir = "{d}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{s3}"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
"#,
                d = d.display()
            ),
        )
        .unwrap();
        self.s3_addr = format!("127.0.0.1:{s3}");
    }

    fn spawn_server(&mut self) {
        assert!(self.child.is_none(), "garage is running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("garage.log"))
            .unwrap();
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.config)
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Starts a fresh node: true once it answers `garage status` with all its listeners bound;
    /// false when a port of its config was taken (Garage logs it, and may keep running without
    /// that listener) or the node exited.
    fn try_start(&mut self) -> bool {
        self.spawn_server();
        let log = self.dir.path().join("garage.log");
        let port_taken =
            || std::fs::read_to_string(&log).is_ok_and(|t| t.contains("Address already in use"));
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(30) {
            let exited = self
                .child
                .as_mut()
                .is_some_and(|c| c.try_wait().unwrap().is_some());
            if exited || port_taken() {
                self.stop();
                let _ = std::fs::remove_file(&log);
                return false;
            }
            let ok = Command::new(&self.bin)
                .arg("-c")
                .arg(&self.config)
                .arg("status")
                .output()
                .is_ok_and(|o| o.status.success());
            // Every listener binds at start-up, before the RPC answers: a port taken has been
            // logged by now.
            if ok && !port_taken() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        panic!(
            "garage neither answered nor exited in 30 s:\n{}",
            super::tail(&self.dir.path().join("garage.log"), 30)
        );
    }

    /// Starts the server (again) on the same ports and data, and waits until it answers.
    pub fn resume(&mut self) {
        self.spawn_server();
        self.cli(&["status"]);
        if !self.key_id.is_empty() {
            self.wait_s3();
        }
    }

    /// Waits until the S3 port takes connections and the bucket answers.
    fn wait_s3(&self) {
        let t0 = Instant::now();
        loop {
            if TcpStream::connect(&self.s3_addr).is_ok() && self.get(".probe").is_some() {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "garage S3 API {} not answering",
                self.s3_addr
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A client of the bucket (the same object_store crate the daemon uses).
    pub fn client(&self) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&self.bucket)
            .with_region(&self.region)
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_access_key_id(&self.key_id)
            .with_secret_access_key(&self.secret)
            .with_retry(object_store::RetryConfig {
                max_retries: 0,
                ..Default::default()
            })
            .build()
            .unwrap()
    }

    /// Object `key`: `Some(Some(bytes))`, `Some(None)` when it is missing (404), `None` when
    /// the store does not answer.
    pub fn get(&self, key: &str) -> Option<Option<Vec<u8>>> {
        let client = self.client();
        let path = object_store::path::Path::from(key);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use object_store::ObjectStore;
            match client.get(&path).await {
                Ok(r) => Some(Some(r.bytes().await.ok()?.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Some(None),
                Err(_) => None,
            }
        })
    }

    /// Every key in the bucket under `prefix`, sorted.
    pub fn list(&self, prefix: &str) -> Vec<(String, u64)> {
        let client = self.client();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use futures::TryStreamExt;
            use object_store::ObjectStore;
            let p = object_store::path::Path::from(prefix);
            let mut v: Vec<(String, u64)> = client
                .list(Some(&p))
                .map_ok(|m| (m.location.to_string(), m.size))
                .try_collect()
                .await
                .unwrap();
            v.sort();
            v
        })
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- garage log ----\n{}\n---- end of garage log ----",
                super::tail(&self.dir.path().join("garage.log"), 60)
            );
        }
        self.stop();
    }
}
