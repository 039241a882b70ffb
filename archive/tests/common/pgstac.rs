//! A throwaway PostgreSQL + PostGIS + pgstac cluster for the tests of one test binary
//! (scripts/pgstac/pgstac-cluster.sh, in target/pgstac-test/PID, stopped and removed by the
//! script's watchdog when the test process exits), and a fresh database per test cloned from
//! the migrated one.
//!
//! Without PostgreSQL 15 + PostGIS the pgstac tests are skipped with a message, except under
//! `CI=true`, where that is a failure.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

pub struct Cluster {
    pub dir: PathBuf,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn script() -> PathBuf {
    repo().join("scripts/pgstac/pgstac-cluster.sh")
}

fn start() -> Result<Cluster, String> {
    let dir = repo()
        .join("target/pgstac-test")
        .join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(script())
        .arg("start")
        .arg(&dir)
        .env("PGSTAC_OWNER_PID", std::process::id().to_string())
        .output()
        .map_err(|e| format!("running {}: {e}", script().display()))?;
    if !out.status.success() {
        // Nothing started, so no watchdog: stop whatever did start and remove the directory.
        let _ = Command::new(script()).arg("stop").arg(&dir).status();
        let _ = std::fs::remove_dir_all(&dir);
        return Err(format!(
            "pgstac-cluster.sh start failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(Cluster { dir })
}

/// The cluster of this test process, started on first use; `None` (with a message) when it
/// cannot be started and `CI` is not set.
pub fn cluster() -> Option<&'static Cluster> {
    match CLUSTER.get_or_init(start) {
        Ok(c) => Some(c),
        Err(e) if std::env::var_os("CI").is_some() => panic!("pgstac test cluster: {e}"),
        Err(e) => {
            eprintln!("SKIPPED (no pgstac test cluster; CI=true makes this a failure): {e}");
            None
        }
    }
}

impl Cluster {
    /// The URL of a new database with pgstac installed (a copy of the migrated one).
    pub fn fresh_database(&self) -> String {
        let name = format!("t{}", NEXT_DB.fetch_add(1, Ordering::Relaxed));
        let mut admin = postgres::Client::connect(
            &format!("host={} user=postgres dbname=postgres", self.dir.display()),
            postgres::NoTls,
        )
        .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE downlink"))
            .unwrap();
        self.url(&name)
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres@/{db}?host={}", self.dir.display())
    }

    /// Runs `psql -c sql` as the superuser on `db`.
    pub fn psql(&self, db: &str, sql: &str) {
        let st = Command::new("/usr/lib/postgresql/15/bin/psql")
            .args(["-q", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-h"])
            .arg(&self.dir)
            .args(["-d", db, "-c", sql])
            .status()
            .unwrap();
        assert!(st.success(), "psql {sql}");
    }
}
