//! The daemon's configuration file: parsed, then validated, with every problem reported at once.
//!
//! `downlink serve --config FILE` and `downlink validate --config FILE` both call
//! [`Config::load`] and then [`Config::check_host`], so a file that validates is a file the
//! daemon will start with (the systemd unit runs `downlink validate` as `ExecStartPre`).
//! Loading happens in stages:
//!
//! 1. **TOML → table.** Only syntax stops here: [`ConfigError::Syntax`], whose message names
//!    the line and the column.
//! 2. **Shape.** Every key of every table is checked against the schema (`TOP_KEYS`,
//!    `INPUT_KEYS`, …): each unknown key (with a "did you mean" hint) and each value of the
//!    wrong type (a string where a list belongs, `[input]` for `[[input]]`) is a problem,
//!    and is removed so that the next stage sees only keys it understands.
//! 3. **Values → [`Config`].** Every value is checked and resolved (addresses, durations,
//!    sizes, CIDRs, webhook URLs, spacecraft profiles).
//!
//! Stages 2 and 3 collect *every* problem into one [`ConfigError::Invalid`], each [`Problem`]
//! naming its field path (`input[1].listen`, array indices counted from 0) and the value that
//! was given. [`Config::check_host`] then checks this machine (archive writable, addresses
//! bindable) and reports its problems the same way.
//!
//! Conventions, which `config/example.toml` (the shipped `systemd/downlink.toml`) repeats for
//! operators:
//! - Durations are strings with a unit: `"500ms"`, `"10s"`, `"2m"`, `"1h 30m"`.
//! - Sizes are an integer number of bytes or a string with a unit: `"64KiB"`, `"8MiB"`,
//!   `"4 MB"` (KiB/MiB/GiB/TiB are powers of 1024, kB/MB/GB/TB powers of 1000); see
//!   [`parse_size`].
//! - Relative paths (`archive.path`, profile files) are resolved against the directory that
//!   holds the configuration file, never against the daemon's working directory.
//! - A key that has no effect for the input's transport (`reconnect` on a UDP input,
//!   `max_datagram` on a TCP input, `allow` on an outgoing connection) is a problem, not
//!   silently ignored.
//!
//! [`Config::load`] reads profile files (to check them) but opens no sockets and reads no
//! clock; [`Config::check_host`] creates the archive directory and binds each address for a
//! moment. Webhook URLs are never shown whole in a message: see [`redact`].

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use decoder::{InputFormat, Profile};
use ipnet::IpNet;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use url::Url;

// ---------------------------------------------------------------------------------------------
// Defaults and limits (one place; the doc comments and `config/example.toml` repeat them)
// ---------------------------------------------------------------------------------------------

/// Default `archive.fsync_interval`.
pub const DEFAULT_FSYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Default `archive.fsync_bytes` (4 MiB).
pub const DEFAULT_FSYNC_BYTES: u64 = 4 * MIB;
/// Default `archive.keep_raw_cadus`.
pub const DEFAULT_KEEP_RAW_CADUS: bool = true;
/// Default `http.listen`.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8080";
/// Default `http.max_concurrency`.
pub const DEFAULT_HTTP_MAX_CONCURRENCY: usize = 64;
/// Default `http.max_connections`.
pub const DEFAULT_HTTP_MAX_CONNECTIONS: usize = 512;
/// Default `http.header_timeout`.
pub const DEFAULT_HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `http.idle_timeout`.
pub const DEFAULT_HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `http.max_requests_per_connection`.
pub const DEFAULT_HTTP_MAX_REQUESTS_PER_CONNECTION: u64 = 1000;
/// Default `pass.los_timeout`.
pub const DEFAULT_LOS_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `pass.min_frames`.
pub const DEFAULT_MIN_FRAMES: u64 = 10;
/// Default `input[].rcvbuf` (8 MiB).
pub const DEFAULT_RCVBUF: usize = 8 * MIB as usize;
/// Smallest accepted `input[].rcvbuf` (64 KiB).
pub const MIN_RCVBUF: usize = 64 * KIB as usize;
/// Default `input[].max_datagram`.
pub const DEFAULT_MAX_DATAGRAM: usize = 65535;
/// Default `input[].queue_datagrams`.
pub const DEFAULT_QUEUE_DEPTH: usize = 4096;
/// Smallest accepted queue depth.
pub const MIN_QUEUE_DEPTH: usize = 16;
/// Default `input[].reconnect`.
pub const DEFAULT_RECONNECT: Duration = Duration::from_secs(1);
/// Default `webhook[].timeout`.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
const MAX_QUEUE_DEPTH: u64 = 1 << 20;
const MAX_RCVBUF: u64 = GIB;
const MAX_FSYNC_BYTES: u64 = GIB;
const MAX_HTTP_CONCURRENCY: u64 = 10_000;
const MAX_HTTP_CONNECTIONS: u64 = 100_000;
const MAX_HTTP_REQUESTS_PER_CONNECTION: u64 = 1_000_000;
const MAX_MIN_FRAMES: u64 = 1_000_000_000;
const MAX_INPUT_NAME: usize = 32;
/// Default `station.name`.
pub const DEFAULT_STATION_NAME: &str = "local";

// ---------------------------------------------------------------------------------------------
// The resolved configuration
// ---------------------------------------------------------------------------------------------

/// The daemon's whole configuration, validated, with every value resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `[archive]`: where and how pass records are written.
    pub archive: ArchiveConfig,
    /// `[http]`: the status/metrics/API endpoint.
    pub http: HttpConfig,
    /// `[pass]`: how a pass (one satellite overflight) is delimited and judged.
    pub pass: PassConfig,
    /// `[[input]]`: the data sources; names are unique. None makes an API node (HTTP only).
    pub input: Vec<InputConfig>,
    /// `[[webhook]]`: HTTP notifications, optional.
    pub webhook: Vec<WebhookConfig>,
    /// `[imaging]`: georeferenced products at LOS for imaging instruments.
    pub imaging: ImagingConfig,
    /// `[[alerts]]`: vegetation-loss change alerts per catalog collection, optional.
    pub alerts: Vec<AlertsConfig>,
    /// `[station]`: which ground station this daemon is (tagged on every pass it records).
    pub station: StationConfig,
    /// `[catalog]`: where the STAC catalog lives (default: SQLite in the archive).
    pub catalog: CatalogConfig,
}

/// `[station]`: the identity and location of this ground station. Every pass record and STAC
/// item carries them, so passes of one satellite received by several stations can be told
/// apart and merged.
#[derive(Clone, Debug, PartialEq)]
pub struct StationConfig {
    /// `name` (default `"local"`, 1–32 of `a-z 0-9 _ -`): the station's name.
    pub name: String,
    /// `lat` (degrees north, -90..=90) and `lon` (degrees east, -180..=180) of the antenna;
    /// both or neither.
    pub location: Option<(f64, f64)>,
    /// `alt_m` (metres above the WGS-84 ellipsoid, -500..=10000; needs `lat`/`lon`).
    pub alt_m: Option<f64>,
}

impl Default for StationConfig {
    fn default() -> Self {
        Self {
            name: DEFAULT_STATION_NAME.to_owned(),
            location: None,
            alt_m: None,
        }
    }
}

/// `[catalog]`: the STAC catalog's store. Read at start.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CatalogConfig {
    /// `url` (default absent: `ARCHIVE/catalog.sqlite`): a PostgreSQL database with pgstac
    /// installed, `postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (or
    /// `postgresql://USER@/DATABASE?host=/run/postgresql` for a Unix socket).
    pub url: Option<DatabaseUrl>,
    /// `password_file` (default none): a file whose content (one line) is the database
    /// password. Without it the password is `PGPASSWORD` from the environment, or the URL's.
    pub password_file: Option<PathBuf>,
}

/// A database URL; its `Debug` and `Display` never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL as written, password included: only for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The parts of `scheme://[user[:password]@][host][:port]/database[?k=v&…]`.
struct UrlParts<'a> {
    scheme: &'a str,
    user: &'a str,
    password: Option<&'a str>,
    host: &'a str,
    database: &'a str,
    query: &'a str,
}

fn url_parts(text: &str) -> Option<UrlParts<'_>> {
    let (scheme, rest) = text.split_once("://")?;
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (userinfo, hostpath) = main.rsplit_once('@').unwrap_or(("", main));
    let (user, password) = match userinfo.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (userinfo, None),
    };
    let (host, database) = hostpath.split_once('/').unwrap_or((hostpath, ""));
    Some(UrlParts {
        scheme,
        user,
        password,
        host,
        database,
        query,
    })
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match url_parts(&self.0) {
            Some(p) if p.password.is_some() => {
                write!(f, "{}://{}:***@{}/{}", p.scheme, p.user, p.host, p.database)?;
                if !p.query.is_empty() {
                    write!(f, "?{}", p.query)?;
                }
                Ok(())
            }
            Some(_) => f.write_str(&self.0),
            None => f.write_str("<not a URL>"),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

impl CatalogConfig {
    /// The password to connect with: `password_file`'s first line, else `PGPASSWORD`, else
    /// none (the URL's, if it has one). The error names the file, never its content.
    pub fn password(&self) -> Result<Option<String>, String> {
        if let Some(p) = &self.password_file {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
            if line.is_empty() {
                return Err(format!("{} is empty", p.display()));
            }
            return Ok(Some(line.to_owned()));
        }
        Ok(std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty()))
    }
}

/// `[[alerts]]`: change alerts over one catalog collection (see `storage::change`).
#[derive(Clone, Debug, PartialEq)]
pub struct AlertsConfig {
    /// `collection` (required): the source collection id; alerts go to `alerts-<collection>`.
    pub collection: String,
    /// `mask` (default none): mask polygons (GeoJSON or any OGR vector file); loss is only
    /// reported inside them. Relative paths are resolved against the configuration's directory.
    pub mask: Option<PathBuf>,
    /// `drop` (default 0.3, 0 < drop ≤ 2): loss where NDVI − baseline ≤ −drop.
    pub drop: f64,
    /// `mmu_ha` (default 0.5, ≥ 0): minimum mapping unit, hectares (equal-area).
    pub mmu_ha: f64,
    /// `baseline_looks` (default 3, 1..=16): valid looks in the per-pixel baseline.
    pub baseline_looks: usize,
    /// `baseline_percentile` (default 50 = median, 0..=100).
    pub baseline_percentile: f64,
    /// `cloud_test` (default true): the brightness/whiteness cloud and dark shadow test.
    pub cloud_test: bool,
    /// `red` (default: the band whose `eo:common_name` is `red`): `ASSET` or `ASSET:BAND`.
    pub red: Option<String>,
    /// `nir` (default: the band whose `eo:common_name` is `nir`): `ASSET` or `ASSET:BAND`.
    pub nir: Option<String>,
}

/// `[imaging]`: scene products made at LOS for inputs whose profile has an imaging instrument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImagingConfig {
    /// `enabled` (default `true`): make products at LOS.
    pub enabled: bool,
    /// `tle` (default `[]`): TLE files (Celestrak 2- or 3-line) read at start and on reload,
    /// beside the sets imported into the archive with `downlink tle import` or the API.
    pub tle: Vec<PathBuf>,
    /// `landmask` (default none): land/sea mask GeoTIFF for geolocation QA; none = no QA.
    pub landmask: Option<PathBuf>,
}

/// `[archive]`: where and how pass records are written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveConfig {
    /// `path` (required): directory that holds the archive; created if missing. A relative
    /// path is resolved against the configuration file's directory.
    pub path: PathBuf,
    /// `fsync_interval` (default `"1s"`, 1ms..=10m): longest time written data may sit
    /// unsynced; bounds what a power cut can lose.
    pub fsync_interval: Duration,
    /// `fsync_bytes` (default `"4MiB"`, 1 B..=1 GiB): unsynced bytes that trigger an early
    /// fsync, whichever of the two limits comes first.
    pub fsync_bytes: u64,
    /// `keep_raw_cadus` (default `true`): archive the CADUs as received (before PN and
    /// Reed-Solomon), so a pass can be re-decoded later; false keeps the good frames after RS
    /// instead (`frames.raw`). Only `bits`, `cadu`, `soft-i8` and `hard` inputs have CADUs.
    pub keep_raw_cadus: bool,
    /// `store` (default `"file://"` + `path`: the local archive) and `[archive.s3]`: where the
    /// bytes the archive keeps (raw passes, products) are kept for good. Read at start.
    pub store: ArchiveStore,
}

/// `archive.store`: where closed passes and their products are uploaded. `archive.path` stays
/// the local spool: a pass is received there (crash-safe) and uploaded after LOS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArchiveStore {
    /// `file://` naming `archive.path` (the default): the local archive is the store, nothing
    /// is uploaded.
    Local,
    /// `file:///DIR` naming another directory (a mounted network share): each closed pass is
    /// copied there.
    Directory(PathBuf),
    /// `s3://BUCKET[/PREFIX]`: an S3-compatible object store, reached as `[archive.s3]` says.
    S3(S3Store),
}

impl ArchiveStore {
    /// The store as configured (`file:///…`, `s3://bucket/prefix`), for logs and the API.
    pub fn url(&self, archive: &Path) -> String {
        match self {
            Self::Local => format!("file://{}", archive.display()),
            Self::Directory(d) => format!("file://{}", d.display()),
            Self::S3(s) if s.prefix.is_empty() => format!("s3://{}", s.bucket),
            Self::S3(s) => format!("s3://{}/{}", s.bucket, s.prefix),
        }
    }
}

/// An S3-compatible store: `archive.store = "s3://BUCKET[/PREFIX]"` and `[archive.s3]`.
/// Requests are path-style (`ENDPOINT/BUCKET/KEY`), which every S3-compatible server takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Store {
    /// The bucket (must exist).
    pub bucket: String,
    /// Key prefix, without leading or trailing `/` (empty: the bucket's root).
    pub prefix: String,
    /// `endpoint` (default absent: AWS S3 of `region`): `http(s)://HOST[:PORT]` of the server.
    pub endpoint: Option<String>,
    /// `region` (default `"us-east-1"`): the region requests are signed for (Garage: its
    /// `s3_region`, often `"garage"`).
    pub region: String,
    /// `allow_http` (default `false`): allow an `http://` endpoint (unencrypted; loopback or a
    /// trusted network only).
    pub allow_http: bool,
    /// `credentials_file` (default absent: `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` from
    /// the environment): an AWS shared-credentials file (`aws_access_key_id = …`,
    /// `aws_secret_access_key = …`, in `[default]` or before any section). Keys never go in
    /// this configuration file.
    pub credentials_file: Option<PathBuf>,
}

/// S3 credentials, read at start; `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    /// Access key id.
    pub key_id: String,
    /// Secret access key.
    pub secret: String,
    /// Session token (temporary credentials), if any.
    pub token: Option<String>,
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "S3Credentials({}, ***)", self.key_id)
    }
}

/// Default `archive.s3.region`.
pub const DEFAULT_S3_REGION: &str = "us-east-1";

impl S3Store {
    /// The credentials to sign with: `credentials_file`, else `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`) from the environment. An error names
    /// the file or the variables, never a secret.
    pub fn credentials(&self) -> Result<S3Credentials, String> {
        if let Some(p) = &self.credentials_file {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            return parse_credentials_file(&text).map_err(|e| format!("{}: {e}", p.display()));
        }
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(key_id), Some(secret)) => Ok(S3Credentials {
                key_id,
                secret,
                token: var("AWS_SESSION_TOKEN"),
            }),
            _ => Err(
                "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the \
                      daemon's environment (systemd: EnvironmentFile=), or name a \
                      credentials_file"
                    .into(),
            ),
        }
    }
}

/// `aws_access_key_id`, `aws_secret_access_key` (and `aws_session_token`) of the `[default]`
/// profile, or of the lines before any section, of an AWS shared-credentials file.
fn parse_credentials_file(text: &str) -> Result<S3Credentials, String> {
    let (mut key_id, mut secret, mut token) = (None, None, None);
    let mut in_default = true;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_default = section.trim() == "default";
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if !in_default {
            continue;
        }
        let v = v.trim().to_owned();
        match k.trim() {
            "aws_access_key_id" => key_id = Some(v),
            "aws_secret_access_key" => secret = Some(v),
            "aws_session_token" => token = Some(v),
            _ => {}
        }
    }
    match (key_id, secret) {
        (Some(key_id), Some(secret)) if !key_id.is_empty() && !secret.is_empty() => {
            Ok(S3Credentials {
                key_id,
                secret,
                token: token.filter(|t| !t.is_empty()),
            })
        }
        _ => Err("has no aws_access_key_id and aws_secret_access_key (in [default] or before any section)".into()),
    }
}

/// `[http]`: the status, metrics (`/metrics`) and API endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// `listen` (default `"127.0.0.1:8080"`): IP address and TCP port to serve on.
    pub listen: SocketAddr,
    /// `max_concurrency` (default `64`, 1..=10000): requests handled at once (until their
    /// response starts); a request beyond it is answered `503` with `Retry-After` at once.
    pub max_concurrency: usize,
    /// `max_connections` (default `512`, 1..=100000): connections open at once. At the cap a
    /// new connection replaces the oldest one that has no request in progress, or is closed at
    /// once if every one has. Lowered at start (with a warning) when it does not fit under the
    /// open-file limit with 256 descriptors kept for the archive.
    pub max_connections: usize,
    /// `header_timeout` (default `"10s"`, 100ms..=10m): time a client has to send a complete
    /// request head, from the connection opening or the end of the previous response (so it
    /// also ends idle keep-alive connections).
    pub header_timeout: Duration,
    /// `idle_timeout` (default `"60s"`, 100ms..=1h): a connection that moves no bytes for this
    /// long while no request is being handled is closed (a client that stopped reading a
    /// response); a request body that stalls this long fails.
    pub idle_timeout: Duration,
    /// `max_requests_per_connection` (default `1000`, 1..=1000000): the connection is closed
    /// after this many requests (the last response says `Connection: close`).
    pub max_requests_per_connection: u64,
    /// `tile_cache` (default `"64MiB"`, 0..=16GiB): memory for recently served map tiles;
    /// 0 turns the cache off. Read at start.
    pub tile_cache: u64,
    /// `cors_origins` (default absent: no CORS headers): browser origins allowed to call the
    /// API from another site, each `"https://host[:port]"` (scheme and host, no path), or
    /// `["*"]` for any origin. Answers CORS preflight (`OPTIONS`) requests for them.
    pub cors_origins: Vec<String>,
    /// `enabled` (default `true`): `false` makes a station with no HTTP listener at all (it
    /// receives, archives, makes products and uploads them; API nodes on the same store and
    /// catalog serve them). Needs at least one `[[input]]`; no other `[http]` key may be set.
    /// Read at start.
    pub enabled: bool,
}

/// `[pass]`: how a pass is delimited and judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassConfig {
    /// `los_timeout` (default `"10s"`, 1ms..=1h): an input that has produced no frame for this
    /// long has lost signal; its pass ends and its record is written.
    pub los_timeout: Duration,
    /// `min_frames` (default `10`, 0..=1000000000): passes with fewer good frames are still
    /// recorded but flagged as suspect; 0 flags none.
    pub min_frames: u64,
}

/// `[[input]]`: one data source (a modem or front-end feeding bytes) and how to decode it.
#[derive(Clone, Debug, PartialEq)]
pub struct InputConfig {
    /// `name` (required): 1 to 32 characters from `a-z 0-9 _ -`, unique among inputs; used in
    /// metric labels, logs and archive paths.
    pub name: String,
    /// `listen` (required): where the bytes come from, see [`Listen`].
    pub listen: Listen,
    /// `format` (required): `bits`, `cadu`, `frames`, `packets`, or channel symbols before the
    /// inner code, `soft-i8` / `hard` (the profile must declare an `[inner]` code).
    pub format: InputFormat,
    /// `profile` (required): the spacecraft profile, loaded and validated: a built-in name
    /// (`jpss`), or the path of a profile file when the value contains `/` or ends in `.toml`
    /// (relative to the configuration file's directory).
    pub profile: Profile,
    /// Where [`InputConfig::profile`] came from.
    pub profile_source: ProfileSource,
    /// `allow` (default `[]` = any peer): CIDRs (or bare addresses) of peers whose datagrams or
    /// connections are accepted, IPv4 and IPv6. Not allowed on `tcp-connect://` inputs.
    pub allow: Vec<IpNet>,
    /// `rcvbuf` (default `"8MiB"`, 64 KiB..=1 GiB): socket receive buffer (`SO_RCVBUF`) to ask
    /// for; the kernel may grant less (see `net.core.rmem_max`), which the daemon logs.
    pub rcvbuf: usize,
    /// `max_datagram` (default `65535`, 1..=65535): largest datagram accepted on a UDP (or
    /// systemd datagram) socket; longer ones are counted as truncated and dropped. Not allowed
    /// on `tcp://` and `tcp-connect://` inputs.
    pub max_datagram: usize,
    /// `queue_datagrams` (default `4096`, 16..=1048576): depth of the bounded queue from the
    /// socket to the decoder (datagrams, or stream reads for TCP); when full, reads are dropped
    /// and counted.
    pub queue_datagrams: usize,
    /// `reconnect` (default `"1s"`, 10ms..=10m): wait between connection attempts of a
    /// `tcp-connect://` input. Only allowed on `tcp-connect://` inputs.
    pub reconnect: Duration,
    /// `pass_date` (default `"clock"`): how the products of a pass on this input are dated.
    /// Meteor-M MSU-MR packets carry Moscow time of day and no date: `"clock"` places that
    /// time nearest the daemon's clock at AOS (live reception); `"YYYY-MM-DD"` gives the UTC
    /// date of the first image line, for an input fed the replay of a recorded pass
    /// (`downlink replay`). Only allowed on inputs whose profile has an imaging instrument.
    pub pass_date: Option<chrono::NaiveDate>,
}

impl InputConfig {
    /// Whether `allow` admits this peer: an empty list admits everyone. IPv4-mapped IPv6
    /// addresses (`::ffff:a.b.c.d`, what a dual-stack socket reports) match IPv4 CIDRs.
    pub fn allows(&self, peer: IpAddr) -> bool {
        if self.allow.is_empty() {
            return true;
        }
        let canonical = peer.to_canonical();
        self.allow
            .iter()
            .any(|net| net.contains(&canonical) || net.contains(&peer))
    }
}

/// Where an input's spacecraft profile came from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProfileSource {
    /// A built-in profile, by name (`decoder::Profile::builtin_names()`).
    Builtin(String),
    /// A profile file, path resolved against the configuration file's directory.
    File(PathBuf),
}

impl fmt::Display for ProfileSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Builtin(name) => write!(f, "built-in profile {name:?}"),
            Self::File(path) => write!(f, "profile file {:?}", path.display().to_string()),
        }
    }
}

/// `[[webhook]]`: an HTTP POST (JSON body) sent on pass events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfig {
    /// `url` (required): `http://` or `https://` URL to POST to, without userinfo (see
    /// [`check_webhook_url`]); logged only through [`redact`].
    pub url: Url,
    /// `events` (default: all of `["aos", "los", "pass_record"]`): which events to send; at
    /// least one, no repeats.
    pub events: Vec<WebhookEvent>,
    /// `timeout` (default `"5s"`, 100ms..=5m): time allowed for one delivery attempt.
    pub timeout: Duration,
    /// `ca_file` (optional): a PEM file of CA certificates trusted for this webhook's `https://`
    /// receiver besides the system's CA store (an agency's own CA). Relative to the config
    /// file's directory. [`Config::check_host`] checks that it holds a certificate; the daemon
    /// reads it when the webhook is set up (at start and at every reload).
    pub ca_file: Option<PathBuf>,
}

/// An event a webhook can subscribe to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WebhookEvent {
    /// `aos`: acquisition of signal, a pass started on an input.
    Aos,
    /// `los`: loss of signal, a pass ended.
    Los,
    /// `pass_record`: a pass record was written to the archive.
    PassRecord,
    /// `alert`: a change-alert run published alerts (`[[alerts]]`).
    Alert,
}

impl WebhookEvent {
    /// Every event, in documentation order.
    pub const ALL: [WebhookEvent; 4] = [Self::Aos, Self::Los, Self::PassRecord, Self::Alert];

    /// The name used in the configuration and in webhook bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aos => "aos",
            Self::Los => "los",
            Self::PassRecord => "pass_record",
            Self::Alert => "alert",
        }
    }
}

impl fmt::Display for WebhookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WebhookEvent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| {
                format!("must be one of \"aos\", \"los\", \"pass_record\", \"alert\", got {s:?}")
            })
    }
}

/// Where an input's bytes come from (`input[].listen`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Listen {
    /// `udp://HOST:PORT`: bind a UDP socket; HOST is an IP address (`0.0.0.0`, `[::]`, …).
    Udp(SocketAddr),
    /// `tcp://HOST:PORT`: listen for TCP connections (the modem connects to us); HOST is an IP
    /// address.
    Tcp(SocketAddr),
    /// `tcp-connect://HOST:PORT`: connect to a TCP server (the modem listens) and reconnect
    /// when the connection drops; HOST may be a DNS name, resolved at each attempt. Holds
    /// `HOST:PORT` as written (IPv6 in brackets).
    TcpConnect(String),
    /// `systemd://NAME`: a socket passed by systemd socket activation, matched by its
    /// `FileDescriptorName=NAME` in the `.socket` unit.
    Systemd(String),
}

const LISTEN_FORMS: &str =
    "must be udp://HOST:PORT, tcp://HOST:PORT, tcp-connect://HOST:PORT or systemd://NAME";

impl FromStr for Listen {
    /// The complete problem message (`must be …, got "…"` plus a hint).
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |hint: &str| {
            if hint.is_empty() {
                format!("{LISTEN_FORMS}, got {s:?}")
            } else {
                format!("{LISTEN_FORMS}, got {s:?} ({hint})")
            }
        };
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(fail(""));
        };
        let bind_addr = |rest: &str| {
            rest.parse::<SocketAddr>().map_err(|_| {
                fail(&format!(
                    "{scheme}:// needs an IP address and a port, e.g. {scheme}://0.0.0.0:5000 \
                     or {scheme}://[::]:5000"
                ))
            })
        };
        match scheme {
            "udp" => bind_addr(rest).map(Self::Udp),
            "tcp" => bind_addr(rest).map(Self::Tcp),
            "tcp-connect" => check_host_port(rest)
                .map(|()| Self::TcpConnect(rest.to_owned()))
                .map_err(|hint| fail(&hint)),
            "systemd" => check_fd_name(rest)
                .map(|()| Self::Systemd(rest.to_owned()))
                .map_err(|hint| fail(&hint)),
            _ => Err(fail(&format!("unknown scheme {scheme:?}"))),
        }
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Udp(a) => write!(f, "udp://{a}"),
            Self::Tcp(a) => write!(f, "tcp://{a}"),
            Self::TcpConnect(hp) => write!(f, "tcp-connect://{hp}"),
            Self::Systemd(name) => write!(f, "systemd://{name}"),
        }
    }
}

/// `HOST:PORT` for an outgoing connection: a DNS name, an IPv4 address or a bracketed IPv6
/// address, and a port 1..=65535.
fn check_host_port(s: &str) -> Result<(), String> {
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err("tcp-connect:// needs HOST:PORT".into());
    };
    if !matches!(port.parse::<u16>(), Ok(p) if p > 0) {
        return Err(format!("port must be 1..=65535, got {port:?}"));
    }
    if let Some(inner) = host.strip_prefix('[') {
        let ok = inner
            .strip_suffix(']')
            .is_some_and(|v6| v6.parse::<Ipv6Addr>().is_ok());
        return if ok {
            Ok(())
        } else {
            Err(format!("{host:?} is not a bracketed IPv6 address"))
        };
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(format!(
            "{host:?} is not a host name or IP address (IPv6 goes in brackets)"
        ));
    }
    Ok(())
}

/// systemd's rule for `FileDescriptorName=`: 1 to 255 printable ASCII characters, no `:`.
fn check_fd_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        return Err(
            "NAME is the socket unit's FileDescriptorName=: 1 to 255 printable ASCII \
             characters, no ':' or spaces"
                .into(),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// One configuration problem, named by its field path (`input[1].listen`; indices from 0).
/// The same type the decoder uses for profile problems, so both print alike.
pub use decoder::error::Problem;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", .path.display())]
    Read {
        /// The configuration file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The TOML parser rejected the text: bad syntax, an unknown key or a value of the wrong
    /// type. The message names the key, line and column.
    #[error("{}: {message}", .path.display())]
    Syntax {
        /// The configuration file (or the name given to [`Config::from_toml_str`]).
        path: PathBuf,
        /// The TOML parser's message.
        message: String,
    },
    /// The file parsed but has problems; all of them are listed, one per line.
    #[error("{}: {}", .path.display(), list_problems(.problems))]
    Invalid {
        /// The configuration file (or the name given to [`Config::from_toml_str`]).
        path: PathBuf,
        /// Every problem found, in schema order (section by section, input by input, key by
        /// key as documented), then the checks across inputs (unique names, clashing
        /// addresses), then the webhooks.
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The problems of an [`ConfigError::Invalid`] error; empty for the other kinds.
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

fn list_problems(problems: &[Problem]) -> String {
    let mut out = match problems.len() {
        1 => "1 problem:".to_owned(),
        n => format!("{n} problems:"),
    };
    for p in problems {
        out.push_str("\n  - ");
        // Messages quoting another file's errors may span lines; keep them under their bullet.
        out.push_str(&p.to_string().replace('\n', "\n    "));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

impl Config {
    /// Parses and validates configuration text. `source` names the text in errors and is the
    /// base for relative paths (its parent directory); pass the file's path.
    pub fn from_toml_str(text: &str, source: &Path) -> Result<Config, ConfigError> {
        let mut root: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: source.to_owned(),
                    message: syntax_message(&e),
                })?;
        let mut pr = Problems::default();
        check_shape(&mut pr, &mut root);
        // Every key left has a known name and the right type, so this cannot fail; if it
        // does anyway, say so rather than lose the problems found so far.
        let raw = match toml::Value::Table(root).try_into::<RawConfig>() {
            Ok(raw) => raw,
            Err(e) => {
                pr.push("", format!("cannot be read: {}", e.to_string().trim_end()));
                RawConfig::default()
            }
        };
        raw.resolve(source, pr)
    }

    /// Reads, parses and validates a configuration file. This is exactly what both
    /// `downlink serve` and `downlink validate` run.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text, path)
    }

    /// The configuration `make run` uses when no file is given: the archive in `archive_dir`,
    /// one UDP input `local` on `127.0.0.1:5000` taking `bits` with the `jpss` profile, every
    /// other value at its default. It goes through the same validation as a file, so it fails
    /// only for an unusable `archive_dir` (an empty path).
    pub fn embedded_default(archive_dir: &Path) -> Result<Config, ConfigError> {
        let raw = RawConfig {
            archive: Some(RawArchive {
                path: Some(archive_dir.to_owned()),
                ..RawArchive::default()
            }),
            input: vec![RawInput {
                name: Some("local".into()),
                listen: Some("udp://127.0.0.1:5000".into()),
                format: Some("bits".into()),
                profile: Some("jpss".into()),
                ..RawInput::default()
            }],
            ..RawConfig::default()
        };
        raw.resolve(Path::new("<embedded default>"), Problems::default())
    }

    /// The fully commented example configuration (shipped as `systemd/downlink.toml`); it
    /// documents every key with its default and is itself valid.
    pub fn example_toml() -> &'static str {
        include_str!("../../systemd/downlink.toml")
    }
}

// ---------------------------------------------------------------------------------------------
// Stage 3: this machine (what `validate` and `serve` both check before anything runs)
// ---------------------------------------------------------------------------------------------

impl Config {
    /// Checks what the file alone cannot tell, on this machine, exactly as `serve` needs it:
    ///
    /// - `archive.path` is created if missing, and a probe file is created and removed in it
    ///   and in its `passes/` directory (an archive under a regular file, on `/proc` or on a
    ///   read-only mount is a problem);
    /// - `http.listen` and every `udp://` and `tcp://` input are bound for a moment and
    ///   released: an address that is not one of this machine's, or a port that needs
    ///   privileges, is a problem. A port already in use is only a note, since `validate` also
    ///   runs (as `ExecStartPre`, or before a reload) while a daemon holds it;
    /// - `systemd://` sockets can only be checked by `serve` (a note says so).
    ///
    /// Returns the notes, or every problem at once as [`ConfigError::Invalid`] for `source`
    /// (the configuration file). `downlink validate` and `downlink serve` both call this right
    /// after [`Config::load`], so a file that validates is a file the daemon starts with.
    pub fn check_host(&self, source: &Path) -> Result<Vec<Problem>, ConfigError> {
        let mut pr = Problems::default();
        let mut notes = Problems::default();
        check_archive_writable(&mut pr, &self.archive.path);
        check_bind(&mut pr, &mut notes, "http.listen", "tcp", self.http.listen);
        for (i, input) in self.input.iter().enumerate() {
            let at = format!("input[{i}].listen");
            match &input.listen {
                Listen::Udp(addr) => check_bind(&mut pr, &mut notes, &at, "udp", *addr),
                Listen::Tcp(addr) => check_bind(&mut pr, &mut notes, &at, "tcp", *addr),
                Listen::TcpConnect(_) => {}
                Listen::Systemd(name) => notes.push(
                    at,
                    format!(
                        "is checked when serve starts: systemd must pass it a socket with \
                         FileDescriptorName={name}"
                    ),
                ),
            }
        }
        if let ArchiveStore::S3(s3) = &self.archive.store {
            if let Err(msg) = s3.credentials() {
                let at = if s3.credentials_file.is_some() {
                    "archive.s3.credentials_file"
                } else {
                    "archive.store"
                };
                pr.push(at, msg);
            }
        }
        if let ArchiveStore::Directory(dir) = &self.archive.store {
            let mut store_pr = Problems::default();
            check_archive_writable(&mut store_pr, dir);
            for p in store_pr.0 {
                pr.push("archive.store", p.message);
            }
        }
        if self.catalog.url.is_some() {
            if let Err(msg) = self.catalog.password() {
                pr.push("catalog.password_file", msg);
            }
        }
        for (i, hook) in self.webhook.iter().enumerate() {
            if let Err(msg) = check_webhook_url(&hook.url) {
                pr.push(format!("webhook[{i}].url"), msg);
            }
            if let Some(Err(msg)) = hook.ca_file.as_deref().map(read_ca_file) {
                pr.push(format!("webhook[{i}].ca_file"), msg);
            }
        }
        if pr.0.is_empty() {
            Ok(notes.0)
        } else {
            Err(ConfigError::Invalid {
                path: source.to_owned(),
                problems: pr.0,
            })
        }
    }
}

/// Creates `dir` (and `dir/passes`, where passes go) and a probe file in each.
fn check_archive_writable(pr: &mut Problems, dir: &Path) {
    let probe = |d: &Path| -> Result<(), String> {
        std::fs::create_dir_all(d)
            .map_err(|e| format!("cannot create directory {:?}: {e}", d.display().to_string()))?;
        let file = d.join(format!(".downlink-probe-{}", std::process::id()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&file)
            .and_then(|mut f| io::Write::write_all(&mut f, b"probe"));
        let removed = std::fs::remove_file(&file);
        written.map_err(|e| {
            format!(
                "directory {:?} is not writable: {e}",
                d.display().to_string()
            )
        })?;
        removed.map_err(|e| {
            format!(
                "cannot remove probe file {:?}: {e}",
                file.display().to_string()
            )
        })
    };
    if let Err(msg) = probe(dir).and_then(|()| probe(&dir.join("passes"))) {
        pr.push("archive.path", msg);
    }
}

/// Binds `addr` for a moment the way `serve` will (`proto` is `tcp` or `udp`).
fn check_bind(pr: &mut Problems, notes: &mut Problems, at: &str, proto: &str, addr: SocketAddr) {
    let bound = if proto == "udp" {
        std::net::UdpSocket::bind(addr).map(drop)
    } else {
        std::net::TcpListener::bind(addr).map(drop)
    };
    let Err(e) = bound else { return };
    let shown = format!("{proto}://{addr}");
    match e.kind() {
        io::ErrorKind::AddrInUse => notes.push(
            at,
            format!(
                "{shown} is in use now (by a running daemon?); serve needs it free when it starts"
            ),
        ),
        io::ErrorKind::AddrNotAvailable => pr.push(
            at,
            format!(
                "{shown} cannot be bound: {} is not an address of this machine",
                addr.ip()
            ),
        ),
        io::ErrorKind::PermissionDenied => pr.push(
            at,
            format!(
                "{shown} cannot be bound: {e} (ports below 1024 need root or \
                 CAP_NET_BIND_SERVICE)"
            ),
        ),
        _ => pr.push(at, format!("{shown} cannot be bound: {e}")),
    }
}

/// An error and its causes on one line, `outer: cause: root cause`, each said once: a cause
/// whose text the message before it already contains (a `thiserror` message that embeds its
/// `{source}`) is not repeated. How the command line prints errors.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Stage 1: raw tables, as written (unknown keys denied; values still unchecked)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    archive: Option<RawArchive>,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    pass: RawPass,
    #[serde(default)]
    input: Vec<RawInput>,
    #[serde(default)]
    webhook: Vec<RawWebhook>,
    #[serde(default)]
    imaging: RawImaging,
    #[serde(default)]
    alerts: Vec<RawAlerts>,
    #[serde(default)]
    station: RawStation,
    #[serde(default)]
    catalog: RawCatalog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStation {
    name: Option<String>,
    lat: Option<f64>,
    lon: Option<f64>,
    alt_m: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    url: Option<String>,
    password_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    collection: Option<String>,
    mask: Option<PathBuf>,
    drop: Option<f64>,
    mmu_ha: Option<f64>,
    baseline_looks: Option<i64>,
    baseline_percentile: Option<f64>,
    cloud_test: Option<bool>,
    red: Option<String>,
    nir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImaging {
    enabled: Option<bool>,
    tle: Option<Vec<PathBuf>>,
    landmask: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArchive {
    path: Option<PathBuf>,
    fsync_interval: Option<Scalar>,
    fsync_bytes: Option<Scalar>,
    keep_raw_cadus: Option<bool>,
    store: Option<String>,
    s3: Option<RawS3>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawS3 {
    endpoint: Option<String>,
    region: Option<String>,
    allow_http: Option<bool>,
    credentials_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<String>,
    max_concurrency: Option<i64>,
    max_connections: Option<i64>,
    header_timeout: Option<Scalar>,
    idle_timeout: Option<Scalar>,
    max_requests_per_connection: Option<i64>,
    tile_cache: Option<Scalar>,
    cors_origins: Option<Vec<String>>,
    enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPass {
    los_timeout: Option<Scalar>,
    min_frames: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    name: Option<String>,
    listen: Option<String>,
    format: Option<String>,
    profile: Option<String>,
    allow: Option<Vec<String>>,
    rcvbuf: Option<Scalar>,
    max_datagram: Option<i64>,
    queue_datagrams: Option<i64>,
    /// Removed (it never had an effect): reported as a problem, so validate says so.
    queue_frames: Option<i64>,
    reconnect: Option<Scalar>,
    pass_date: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: Option<String>,
    events: Option<Vec<String>>,
    timeout: Option<Scalar>,
    ca_file: Option<PathBuf>,
}

/// A value that may be written as an integer or a string (sizes; durations, so that a bare
/// number is reported as a missing unit rather than a type error).
#[derive(Clone, Debug)]
enum Scalar {
    Int(i64),
    Str(String),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(v) => write!(f, "{v}"),
            Self::Str(s) => write!(f, "{s:?}"),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                i64::try_from(v)
                    .map(Scalar::Int)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------------
// Stage 1½: the shape of the file (known keys, value types), every problem at once
// ---------------------------------------------------------------------------------------------

/// What a key's value must be, as TOML sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Str,
    Int,
    Bool,
    /// A string with a unit; a bare integer gets past here and is refused, with a hint, by
    /// [`Problems::duration`].
    Duration,
    /// An integer number of bytes or a string with a unit.
    Size,
    StrList,
    Table,
    TableList,
    /// A number (integer or float).
    Float,
}

impl Kind {
    fn accepts(self, v: &toml::Value) -> bool {
        use toml::Value as V;
        match self {
            Kind::Str => matches!(v, V::String(_)),
            Kind::Int => matches!(v, V::Integer(_)),
            Kind::Bool => matches!(v, V::Boolean(_)),
            Kind::Duration | Kind::Size => matches!(v, V::String(_) | V::Integer(_)),
            Kind::StrList => matches!(v, V::Array(_)),
            Kind::Table => matches!(v, V::Table(_)),
            Kind::TableList => matches!(v, V::Array(_)),
            Kind::Float => matches!(v, V::Float(_) | V::Integer(_)),
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Kind::Str => "a string",
            Kind::Int => "an integer",
            Kind::Bool => "true or false",
            Kind::Duration => "a duration string like \"10s\"",
            Kind::Size => "a size: an integer number of bytes or a string like \"64KiB\"",
            Kind::StrList => "a list of strings, e.g. [\"a\", \"b\"]",
            Kind::Table => "a table",
            Kind::TableList => "a list of tables",
            Kind::Float => "a number",
        }
    }
}

/// The schema: every key of every table, in documentation order. `RawConfig` and friends
/// read the same keys; a unit test keeps the two in step.
/// Keys still recognised only to say they were removed (the example must not show them).
#[cfg(test)]
const REMOVED_KEYS: &[(&str, &str)] = &[("input", "queue_frames")];
const TOP_KEYS: &[(&str, Kind)] = &[
    ("archive", Kind::Table),
    ("http", Kind::Table),
    ("pass", Kind::Table),
    ("imaging", Kind::Table),
    ("input", Kind::TableList),
    ("webhook", Kind::TableList),
    ("alerts", Kind::TableList),
    ("station", Kind::Table),
    ("catalog", Kind::Table),
];
const CATALOG_KEYS: &[(&str, Kind)] = &[("url", Kind::Str), ("password_file", Kind::Str)];
const ARCHIVE_KEYS: &[(&str, Kind)] = &[
    ("path", Kind::Str),
    ("fsync_interval", Kind::Duration),
    ("fsync_bytes", Kind::Size),
    ("keep_raw_cadus", Kind::Bool),
    ("store", Kind::Str),
    ("s3", Kind::Table),
];
const ARCHIVE_S3_KEYS: &[(&str, Kind)] = &[
    ("endpoint", Kind::Str),
    ("region", Kind::Str),
    ("allow_http", Kind::Bool),
    ("credentials_file", Kind::Str),
];
const HTTP_KEYS: &[(&str, Kind)] = &[
    ("listen", Kind::Str),
    ("max_concurrency", Kind::Int),
    ("tile_cache", Kind::Size),
    ("max_connections", Kind::Int),
    ("header_timeout", Kind::Duration),
    ("idle_timeout", Kind::Duration),
    ("max_requests_per_connection", Kind::Int),
    ("cors_origins", Kind::StrList),
    ("enabled", Kind::Bool),
];
const PASS_KEYS: &[(&str, Kind)] = &[("los_timeout", Kind::Duration), ("min_frames", Kind::Int)];
const IMAGING_KEYS: &[(&str, Kind)] = &[
    ("enabled", Kind::Bool),
    ("tle", Kind::StrList),
    ("landmask", Kind::Str),
];
const INPUT_KEYS: &[(&str, Kind)] = &[
    ("name", Kind::Str),
    ("listen", Kind::Str),
    ("format", Kind::Str),
    ("profile", Kind::Str),
    ("allow", Kind::StrList),
    ("rcvbuf", Kind::Size),
    ("max_datagram", Kind::Int),
    ("queue_datagrams", Kind::Int),
    ("queue_frames", Kind::Int),
    ("reconnect", Kind::Duration),
    ("pass_date", Kind::Str),
];
const WEBHOOK_KEYS: &[(&str, Kind)] = &[
    ("url", Kind::Str),
    ("events", Kind::StrList),
    ("timeout", Kind::Duration),
    ("ca_file", Kind::Str),
];

const STATION_KEYS: &[(&str, Kind)] = &[
    ("name", Kind::Str),
    ("lat", Kind::Float),
    ("lon", Kind::Float),
    ("alt_m", Kind::Float),
];

const ALERTS_KEYS: &[(&str, Kind)] = &[
    ("collection", Kind::Str),
    ("mask", Kind::Str),
    ("drop", Kind::Float),
    ("mmu_ha", Kind::Float),
    ("baseline_looks", Kind::Int),
    ("baseline_percentile", Kind::Float),
    ("cloud_test", Kind::Bool),
    ("red", Kind::Str),
    ("nir", Kind::Str),
];

/// The keys of a section (`""` for the top level).
fn section_keys(section: &str) -> &'static [(&'static str, Kind)] {
    match section {
        "archive" => ARCHIVE_KEYS,
        "http" => HTTP_KEYS,
        "pass" => PASS_KEYS,
        "imaging" => IMAGING_KEYS,
        "input" => INPUT_KEYS,
        "webhook" => WEBHOOK_KEYS,
        "alerts" => ALERTS_KEYS,
        "station" => STATION_KEYS,
        "catalog" => CATALOG_KEYS,
        "s3" => ARCHIVE_S3_KEYS,
        _ => TOP_KEYS,
    }
}

/// A value as an operator would name it in a message.
fn describe(v: &toml::Value) -> String {
    use toml::Value as V;
    match v {
        V::String(s) => format!("the string {s:?}"),
        V::Integer(i) => format!("the integer {i}"),
        V::Float(f) => format!("the number {f}"),
        V::Boolean(b) => format!("{b}"),
        V::Datetime(d) => format!("the date-time {d}"),
        V::Array(a) if a.is_empty() => "an empty list".to_owned(),
        V::Array(_) => "a list".to_owned(),
        V::Table(_) => "a table".to_owned(),
    }
}

/// Levenshtein distance, for "did you mean" hints on short key names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row.first().copied().unwrap_or(0);
        if let Some(first) = row.first_mut() {
            *first = i + 1;
        }
        for (j, cb) in b.iter().enumerate() {
            let above = row.get(j + 1).copied().unwrap_or(0);
            let left = row.get(j).copied().unwrap_or(0);
            let best = (diag + usize::from(ca != *cb)).min(above + 1).min(left + 1);
            diag = above;
            if let Some(cell) = row.get_mut(j + 1) {
                *cell = best;
            }
        }
    }
    row.last().copied().unwrap_or(0)
}

/// A key name that says it holds a secret (access keys, passwords, tokens).
fn looks_like_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "secret",
        "password",
        "access_key",
        "key_id",
        "token",
        "credential",
    ]
    .iter()
    .any(|s| k.contains(s))
}

fn unknown_key_message(section: &str, key: &str) -> String {
    if section == "s3" && looks_like_secret(key) {
        return "is not a key: credentials never go in the configuration file; set \
                AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the daemon's environment \
                (systemd: EnvironmentFile=) or name an AWS credentials file with \
                `credentials_file`"
            .to_owned();
    }
    let keys = section_keys(section);
    let names: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
    let nearest = names
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .min()
        .filter(|(d, k)| *d <= 2.max(k.len() / 4));
    let hint = match nearest {
        Some((_, k)) => format!(" (did you mean `{k}`?)"),
        None => String::new(),
    };
    let place = match section {
        "" => "the top level takes [archive], [http], [pass], [imaging], [[input]], \
               [[webhook]] and [[alerts]]"
            .to_owned(),
        "input" | "webhook" | "alerts" => format!("[[{section}]] takes {}", names.join(", ")),
        "s3" => format!("[archive.s3] takes {}", names.join(", ")),
        _ => format!("[{section}] takes {}", names.join(", ")),
    };
    format!("is not a known key{hint}; {place}")
}

/// Checks every key of `table` (at `prefix`, e.g. `input[1]`) against `section`'s schema.
/// Unknown keys and values of the wrong type are reported and removed, so what is left
/// deserializes, and the later checks see only keys they understand.
fn check_table(pr: &mut Problems, table: &mut toml::Table, section: &str, prefix: &str) {
    let keys = section_keys(section);
    let at = |k: &str| {
        if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}.{k}")
        }
    };
    let mut remove = Vec::new();
    for (key, value) in table.iter_mut() {
        let Some(&(_, kind)) = keys.iter().find(|(k, _)| k == key) else {
            pr.push_shape(at(key), unknown_key_message(section, key));
            remove.push(key.clone());
            continue;
        };
        if !kind.accepts(value) {
            let mut message = format!("must be {}, got {}", kind.expected(), describe(value));
            if kind == Kind::TableList && value.is_table() {
                message.push_str(&format!(
                    " (write [[{key}]], with double brackets: one table per {key})"
                ));
            }
            pr.push_shape(at(key), message);
            remove.push(key.clone());
            continue;
        }
        match (kind, value) {
            (Kind::StrList, toml::Value::Array(items)) => {
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    if !item.is_str() {
                        pr.push_shape(
                            format!("{}[{i}]", at(key)),
                            format!("must be a string, got {}", describe(item)),
                        );
                        ok = false;
                    }
                }
                if !ok {
                    pr.1.insert(at(key));
                    remove.push(key.clone());
                }
            }
            (Kind::Table, toml::Value::Table(inner)) => check_table(pr, inner, key, &at(key)),
            (Kind::TableList, toml::Value::Array(items)) => {
                let mut ok = true;
                for (i, item) in items.iter_mut().enumerate() {
                    let path = format!("{}[{i}]", at(key));
                    match item {
                        toml::Value::Table(inner) => check_table(pr, inner, key, &path),
                        other => {
                            pr.push_shape(
                                path,
                                format!("must be a table ([[{key}]]), got {}", describe(other)),
                            );
                            ok = false;
                        }
                    }
                }
                if !ok {
                    pr.1.insert(at(key));
                    remove.push(key.clone());
                }
            }
            _ => {}
        }
    }
    for key in remove {
        table.remove(&key);
    }
}

/// Stage 1½: the whole file's shape, all problems at once.
fn check_shape(pr: &mut Problems, root: &mut toml::Table) {
    check_table(pr, root, "", "");
}

// ---------------------------------------------------------------------------------------------
// Stage 2: check and resolve, collecting every problem
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Problems(Vec<Problem>, std::collections::HashSet<String>);

impl Problems {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        // A key removed for its shape (unknown, wrong type) is not reported again as missing.
        if self.1.contains(&path) {
            return;
        }
        self.0.push(Problem {
            path,
            message: message.into(),
        });
    }

    /// A problem with the file's shape; later problems at the same path are not reported.
    fn push_shape(&mut self, path: String, message: String) {
        self.push(path.clone(), message);
        self.1.insert(path);
    }

    /// An integer in `min..=max`, or the default when absent.
    fn int(&mut self, path: &str, raw: Option<i64>, default: u64, min: u64, max: u64) -> u64 {
        let Some(v) = raw else { return default };
        match u64::try_from(v) {
            Ok(u) if (min..=max).contains(&u) => u,
            _ => {
                self.push(path, format!("must be {min}..={max}, got {v}"));
                default
            }
        }
    }

    /// A byte size in `min..=max`, or the default when absent.
    fn size(&mut self, path: &str, raw: Option<&Scalar>, default: u64, min: u64, max: u64) -> u64 {
        let Some(raw) = raw else { return default };
        let parsed = match raw {
            Scalar::Int(v) => u64::try_from(*v).map_err(|_| "a size cannot be negative".into()),
            Scalar::Str(s) => parse_size(s),
        };
        match parsed {
            Ok(v) if (min..=max).contains(&v) => v,
            Ok(v) => {
                self.push(
                    path,
                    format!(
                        "must be between {} and {}, got {raw} ({v} bytes)",
                        format_size(min),
                        format_size(max)
                    ),
                );
                default
            }
            Err(why) => {
                self.push(
                    path,
                    format!("must be a size like 65536, \"64KiB\" or \"4 MB\", got {raw} ({why})"),
                );
                default
            }
        }
    }

    /// A duration in `min..=max`, or the default when absent.
    fn duration(
        &mut self,
        path: &str,
        raw: Option<&Scalar>,
        default: Duration,
        min: Duration,
        max: Duration,
    ) -> Duration {
        let Some(raw) = raw else { return default };
        let parsed = match raw {
            Scalar::Int(_) => Err("a number needs a unit, and quotes".to_owned()),
            Scalar::Str(s) => humantime::parse_duration(s.trim()).map_err(|e| e.to_string()),
        };
        match parsed {
            Ok(d) if (min..=max).contains(&d) => d,
            Ok(_) => {
                self.push(
                    path,
                    format!(
                        "must be between {} and {}, got {raw}",
                        humantime::format_duration(min),
                        humantime::format_duration(max)
                    ),
                );
                default
            }
            Err(why) => {
                self.push(
                    path,
                    format!(
                        "must be a duration like \"500ms\", \"10s\" or \"2m\", got {raw} ({why})"
                    ),
                );
                default
            }
        }
    }
}

fn usize_of(v: u64) -> usize {
    // Every limit above is far below 2^32, so this never saturates on a supported target.
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// `base.join(p)` for relative `p` (an empty base leaves it relative to the working directory).
/// `./` components are dropped so messages show the path an operator would write.
fn resolve_path(base: &Path, p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_owned()
    } else {
        base.join(p)
    };
    joined
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

impl RawConfig {
    /// `pr` holds the problems already found in the file's shape (unknown keys, wrong types).
    fn resolve(self, source: &Path, mut pr: Problems) -> Result<Config, ConfigError> {
        let base = source.parent().unwrap_or(Path::new(""));

        let archive = resolve_archive(&mut pr, self.archive.unwrap_or_default(), base);
        let http = resolve_http(&mut pr, &self.http);
        let pass = resolve_pass(&mut pr, &self.pass);

        let mut inputs = Vec::with_capacity(self.input.len());
        for (i, raw) in self.input.iter().enumerate() {
            inputs.push(resolve_input(&mut pr, i, raw, base));
        }
        check_input_names(&mut pr, &self.input);
        check_http_disabled(&mut pr, &self.http, self.input.len());
        check_conflicts(&mut pr, &inputs, http.as_ref().filter(|h| h.enabled));

        let mut webhooks = Vec::with_capacity(self.webhook.len());
        for (i, raw) in self.webhook.iter().enumerate() {
            webhooks.push(resolve_webhook(&mut pr, i, raw, base));
        }

        let imaging = resolve_imaging(&mut pr, &self.imaging, base);
        let alerts = resolve_alerts(&mut pr, &self.alerts, base);
        let station = resolve_station(&mut pr, &self.station);
        let catalog = resolve_catalog(&mut pr, &self.catalog, base);

        let assembled = (|| {
            Some(Config {
                imaging,
                archive: archive?,
                http: http?,
                pass,
                input: inputs.into_iter().collect::<Option<Vec<_>>>()?,
                webhook: webhooks.into_iter().collect::<Option<Vec<_>>>()?,
                alerts,
                station,
                catalog,
            })
        })();
        match assembled {
            Some(config) if pr.0.is_empty() => Ok(config),
            _ => {
                if pr.0.is_empty() {
                    // Every `None` above comes with a problem; this guards against a missed one.
                    pr.push("", "is invalid");
                }
                Err(ConfigError::Invalid {
                    path: source.to_owned(),
                    problems: pr.0,
                })
            }
        }
    }
}

fn resolve_archive(pr: &mut Problems, raw: RawArchive, base: &Path) -> Option<ArchiveConfig> {
    let path = match raw.path {
        None => {
            pr.push(
                "archive.path",
                "is required: the directory that holds the archive, e.g. \"/var/lib/downlink\"",
            );
            None
        }
        Some(p) if p.as_os_str().is_empty() => {
            pr.push("archive.path", "must not be empty");
            None
        }
        Some(p) => Some(resolve_path(base, &p)),
    };
    let fsync_interval = pr.duration(
        "archive.fsync_interval",
        raw.fsync_interval.as_ref(),
        DEFAULT_FSYNC_INTERVAL,
        Duration::from_millis(1),
        Duration::from_secs(600),
    );
    let fsync_bytes = pr.size(
        "archive.fsync_bytes",
        raw.fsync_bytes.as_ref(),
        DEFAULT_FSYNC_BYTES,
        1,
        MAX_FSYNC_BYTES,
    );
    let store = resolve_store(
        pr,
        raw.store.as_deref(),
        raw.s3.as_ref(),
        path.as_deref(),
        base,
    );
    Some(ArchiveConfig {
        path: path?,
        fsync_interval,
        fsync_bytes,
        keep_raw_cadus: raw.keep_raw_cadus.unwrap_or(DEFAULT_KEEP_RAW_CADUS),
        store,
    })
}

/// `archive.store` and `[archive.s3]`; `path` is `archive.path`, resolved (if valid).
fn resolve_store(
    pr: &mut Problems,
    store: Option<&str>,
    s3: Option<&RawS3>,
    path: Option<&Path>,
    base: &Path,
) -> ArchiveStore {
    let resolved = match store.map(str::trim) {
        None => ArchiveStore::Local,
        Some(text) => match text.split_once("://") {
            Some(("file", dir)) => {
                let dir = Path::new(dir);
                if !dir.is_absolute() {
                    pr.push(
                        "archive.store",
                        format!("must name an absolute directory (file:///DIR), got {text:?}"),
                    );
                    ArchiveStore::Local
                } else if path.is_none_or(|p| resolve_path(base, dir) == p) {
                    ArchiveStore::Local
                } else if path.is_some_and(|p| resolve_path(base, dir).starts_with(p)) {
                    pr.push(
                        "archive.store",
                        format!("must not be inside archive.path, got {text:?}"),
                    );
                    ArchiveStore::Local
                } else {
                    ArchiveStore::Directory(resolve_path(base, dir))
                }
            }
            Some(("s3", rest)) => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                let prefix = prefix.trim_matches('/');
                if bucket.contains('@') || bucket.contains(':') {
                    pr.push(
                        "archive.store",
                        "must not hold credentials or a port (s3://BUCKET/PREFIX; the \
                         server goes in archive.s3.endpoint, credentials in the environment \
                         or archive.s3.credentials_file)",
                    );
                } else if let Err(why) = check_bucket(bucket) {
                    pr.push("archive.store", format!("{why}, got {text:?}"));
                } else if let Some(bad) = prefix
                    .split('/')
                    .filter(|_| !prefix.is_empty())
                    .find(|c| c.is_empty() || *c == "." || *c == "..")
                {
                    pr.push(
                        "archive.store",
                        format!("has an empty, `.` or `..` prefix component {bad:?}, got {text:?}"),
                    );
                }
                ArchiveStore::S3(resolve_s3(pr, bucket, prefix, s3, base))
            }
            _ => {
                pr.push(
                    "archive.store",
                    format!(
                        "must be \"file:///DIR\" (the local archive, the default) or \
                         \"s3://BUCKET[/PREFIX]\", got {text:?}"
                    ),
                );
                ArchiveStore::Local
            }
        },
    };
    if s3.is_some() && !matches!(resolved, ArchiveStore::S3(_)) {
        pr.push(
            "archive.s3",
            "has no effect unless archive.store is \"s3://BUCKET[/PREFIX]\"",
        );
    }
    resolved
}

/// S3 bucket naming rules: 3 to 63 of `a-z 0-9 . -`, starting and ending with a letter or digit.
fn check_bucket(bucket: &str) -> Result<(), String> {
    let ok_chars = bucket
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !(3..=63).contains(&bucket.len())
        || !ok_chars
        || !ends_ok(bucket.chars().next())
        || !ends_ok(bucket.chars().last())
    {
        return Err(
            "names no valid bucket (3 to 63 of a-z, 0-9, '.' and '-', starting and \
                    ending with a letter or digit)"
                .into(),
        );
    }
    Ok(())
}

fn resolve_s3(
    pr: &mut Problems,
    bucket: &str,
    prefix: &str,
    raw: Option<&RawS3>,
    base: &Path,
) -> S3Store {
    let empty = RawS3::default();
    let raw = raw.unwrap_or(&empty);
    let allow_http = raw.allow_http.unwrap_or(false);
    let endpoint = raw.endpoint.as_deref().and_then(|text| {
        let problem = match Url::parse(text) {
            Err(e) => Some(format!("is not a URL ({e})")),
            Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                Some("must be an http:// or https:// URL".to_owned())
            }
            Ok(u) if !u.username().is_empty() || u.password().is_some() => Some(
                "must not hold credentials: set them in the environment or credentials_file"
                    .to_owned(),
            ),
            Ok(u) if u.host_str().is_none_or(str::is_empty) => Some("names no host".to_owned()),
            Ok(u) if u.path() != "/" || u.query().is_some() => Some(
                "must be only http(s)://HOST[:PORT] (the bucket goes in archive.store)".to_owned(),
            ),
            Ok(u) if u.scheme() == "http" && !allow_http => Some(
                "is unencrypted http://: set archive.s3.allow_http = true to allow it".to_owned(),
            ),
            Ok(_) => None,
        };
        match problem {
            Some(p) => {
                // Never echo a URL that may hold a secret.
                let shown =
                    Url::parse(text).map_or_else(|_| "<not a URL>".to_owned(), |u| redact(&u));
                pr.push("archive.s3.endpoint", format!("{p}, got {shown}"));
                None
            }
            None => Some(text.trim_end_matches('/').to_owned()),
        }
    });
    if allow_http
        && raw
            .endpoint
            .as_deref()
            .is_none_or(|e| !e.starts_with("http://"))
    {
        pr.push(
            "archive.s3.allow_http",
            "has no effect without an http:// archive.s3.endpoint",
        );
    }
    let region = match raw.region.as_deref() {
        None => DEFAULT_S3_REGION.to_owned(),
        Some(r)
            if !r.is_empty()
                && r.len() <= 64
                && r.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            r.to_owned()
        }
        Some(r) => {
            pr.push(
                "archive.s3.region",
                format!("must be 1 to 64 of a-z, 0-9, '-' and '_', got {r:?}"),
            );
            DEFAULT_S3_REGION.to_owned()
        }
    };
    S3Store {
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
        endpoint,
        region,
        allow_http,
        credentials_file: raw
            .credentials_file
            .as_deref()
            .map(|p| resolve_path(base, p)),
    }
}

fn resolve_catalog(pr: &mut Problems, raw: &RawCatalog, base: &Path) -> CatalogConfig {
    let url = raw.url.as_deref().and_then(|text| {
        let shown = DatabaseUrl(text.to_owned());
        let problem = match url_parts(text) {
            None => Some("is not a URL".to_owned()),
            Some(u) if !matches!(u.scheme, "postgresql" | "postgres") => Some(format!(
                "must be a postgresql:// URL (a PostgreSQL database with pgstac), got scheme {:?}",
                u.scheme
            )),
            Some(u) if u.database.is_empty() => {
                Some("names no database (postgresql://user@host/DATABASE)".to_owned())
            }
            Some(u) if u.user.is_empty() => {
                Some("names no user (postgresql://USER@host/database)".to_owned())
            }
            Some(u)
                if u.host.is_empty() && !u.query.split('&').any(|kv| kv.starts_with("host=")) =>
            {
                Some("names no host (HOST, or ?host=/socket/directory)".to_owned())
            }
            Some(_) => None,
        };
        match problem {
            Some(p) => {
                pr.push("catalog.url", format!("{p}, got {shown}"));
                None
            }
            None => Some(shown),
        }
    });
    let password_file = raw.password_file.as_deref().map(|p| resolve_path(base, p));
    if password_file.is_some() && url.is_none() && raw.url.is_none() {
        pr.push(
            "catalog.password_file",
            "has no effect without catalog.url (the SQLite catalog has no password)",
        );
    }
    CatalogConfig { url, password_file }
}

fn resolve_alerts(pr: &mut Problems, raw: &[RawAlerts], base: &Path) -> Vec<AlertsConfig> {
    let mut out: Vec<AlertsConfig> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let at = |f: &str| format!("alerts[{i}].{f}");
        let collection = match r.collection.as_deref() {
            None => {
                pr.push(
                    at("collection"),
                    "is required: the catalog collection to watch",
                );
                String::new()
            }
            Some(c) => {
                if let Err(e) = check_archive_id(c) {
                    pr.push(at("collection"), format!("{e}, got {c:?}"));
                }
                if out.iter().any(|a| a.collection == c) {
                    pr.push(at("collection"), format!("repeats {c:?}"));
                }
                c.to_owned()
            }
        };
        let num = |pr: &mut Problems,
                   f: &str,
                   v: Option<f64>,
                   d: f64,
                   ok: fn(f64) -> bool,
                   range: &str| {
            let v = v.unwrap_or(d);
            if !ok(v) {
                pr.push(at(f), format!("must be {range}, got {v}"));
            }
            v
        };
        let drop = num(
            pr,
            "drop",
            r.drop,
            0.3,
            |v| v > 0.0 && v <= 2.0,
            "in (0, 2]",
        );
        let mmu_ha = num(
            pr,
            "mmu_ha",
            r.mmu_ha,
            0.5,
            |v| v >= 0.0 && v.is_finite(),
            "≥ 0",
        );
        let baseline_percentile = num(
            pr,
            "baseline_percentile",
            r.baseline_percentile,
            50.0,
            |v| (0.0..=100.0).contains(&v),
            "0..=100",
        );
        let baseline_looks = pr.int(&at("baseline_looks"), r.baseline_looks, 3, 1, 16) as usize;
        let mut band = |f: &str, v: &Option<String>| -> Option<String> {
            let v = v.clone()?;
            let ok = match v.split_once(':') {
                Some((a, b)) => !a.is_empty() && b.parse::<usize>().is_ok_and(|n| n >= 1),
                None => !v.is_empty(),
            };
            if !ok {
                pr.push(
                    at(f),
                    format!("must be ASSET or ASSET:BAND (BAND from 1), got {v:?}"),
                );
            }
            Some(v)
        };
        let red = band("red", &r.red);
        let nir = band("nir", &r.nir);
        let mask = match &r.mask {
            Some(p) if p.as_os_str().is_empty() => {
                pr.push(at("mask"), "must not be empty (leave it out for no mask)");
                None
            }
            Some(p) => Some(resolve_path(base, p)),
            None => None,
        };
        out.push(AlertsConfig {
            collection,
            mask,
            drop,
            mmu_ha,
            baseline_looks,
            baseline_percentile,
            cloud_test: r.cloud_test.unwrap_or(true),
            red,
            nir,
        });
    }
    out
}

fn resolve_imaging(pr: &mut Problems, raw: &RawImaging, base: &Path) -> ImagingConfig {
    let mut tle = Vec::new();
    for (i, p) in raw.tle.iter().flatten().enumerate() {
        if p.as_os_str().is_empty() {
            pr.push(format!("imaging.tle[{i}]"), "must not be empty");
        } else {
            tle.push(resolve_path(base, p));
        }
    }
    let landmask = match &raw.landmask {
        Some(p) if p.as_os_str().is_empty() => None,
        Some(p) => Some(resolve_path(base, p)),
        None => None,
    };
    ImagingConfig {
        enabled: raw.enabled.unwrap_or(true),
        tle,
        landmask,
    }
}

fn resolve_http(pr: &mut Problems, raw: &RawHttp) -> Option<HttpConfig> {
    let text = raw.listen.as_deref().unwrap_or(DEFAULT_HTTP_LISTEN);
    let listen = match text.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            pr.push(
                "http.listen",
                format!(
                    "must be IP:PORT, e.g. \"127.0.0.1:8080\" or \"[::1]:8080\" (no scheme, no \
                     host name), got {text:?}"
                ),
            );
            None
        }
    };
    let max_concurrency = pr.int(
        "http.max_concurrency",
        raw.max_concurrency,
        DEFAULT_HTTP_MAX_CONCURRENCY as u64,
        1,
        MAX_HTTP_CONCURRENCY,
    );
    let max_connections = pr.int(
        "http.max_connections",
        raw.max_connections,
        DEFAULT_HTTP_MAX_CONNECTIONS as u64,
        1,
        MAX_HTTP_CONNECTIONS,
    );
    let header_timeout = pr.duration(
        "http.header_timeout",
        raw.header_timeout.as_ref(),
        DEFAULT_HTTP_HEADER_TIMEOUT,
        Duration::from_millis(100),
        Duration::from_secs(600),
    );
    let idle_timeout = pr.duration(
        "http.idle_timeout",
        raw.idle_timeout.as_ref(),
        DEFAULT_HTTP_IDLE_TIMEOUT,
        Duration::from_millis(100),
        Duration::from_secs(3600),
    );
    let max_requests_per_connection = pr.int(
        "http.max_requests_per_connection",
        raw.max_requests_per_connection,
        DEFAULT_HTTP_MAX_REQUESTS_PER_CONNECTION,
        1,
        MAX_HTTP_REQUESTS_PER_CONNECTION,
    );
    let tile_cache = pr.size(
        "http.tile_cache",
        raw.tile_cache.as_ref(),
        64 << 20,
        0,
        16 << 30,
    );
    let cors_origins = resolve_cors_origins(pr, raw.cors_origins.as_deref());
    Some(HttpConfig {
        listen: listen?,
        max_concurrency: usize_of(max_concurrency),
        max_connections: usize_of(max_connections),
        header_timeout,
        idle_timeout,
        max_requests_per_connection,
        tile_cache,
        cors_origins,
        enabled: raw.enabled.unwrap_or(true),
    })
}

/// `http.enabled = false`: the other `[http]` keys would have no effect, and a daemon with
/// neither inputs nor HTTP would do nothing.
fn check_http_disabled(pr: &mut Problems, raw: &RawHttp, inputs: usize) {
    if raw.enabled != Some(false) {
        return;
    }
    if inputs == 0 {
        pr.push(
            "http.enabled",
            "is false and there is no [[input]]: the daemon would neither receive nor serve",
        );
    }
    let set = [
        ("listen", raw.listen.is_some()),
        ("max_concurrency", raw.max_concurrency.is_some()),
        ("max_connections", raw.max_connections.is_some()),
        ("header_timeout", raw.header_timeout.is_some()),
        ("idle_timeout", raw.idle_timeout.is_some()),
        (
            "max_requests_per_connection",
            raw.max_requests_per_connection.is_some(),
        ),
        ("tile_cache", raw.tile_cache.is_some()),
        ("cors_origins", raw.cors_origins.is_some()),
    ];
    for (key, _) in set.iter().filter(|(_, is_set)| *is_set) {
        pr.push(
            format!("http.{key}"),
            "has no effect with http.enabled = false (no HTTP listener)",
        );
    }
}

/// `http.cors_origins`: `["*"]`, or origins `scheme://host[:port]` (http or https, no path,
/// query, fragment or userinfo), each once.
fn resolve_cors_origins(pr: &mut Problems, raw: Option<&[String]>) -> Vec<String> {
    let Some(list) = raw else {
        return Vec::new();
    };
    if list.is_empty() {
        pr.push(
            "http.cors_origins",
            "must not be empty: leave the key out for no CORS headers, or give [\"*\"] or origins",
        );
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, o) in list.iter().enumerate() {
        let field = format!("http.cors_origins[{i}]");
        if o == "*" {
            if list.len() > 1 {
                pr.push(field, "\"*\" allows every origin: give it alone");
            }
            out.push(o.clone());
            continue;
        }
        let ok = url::Url::parse(o).ok().filter(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some_and(|h| !h.is_empty())
                && u.username().is_empty()
                && u.password().is_none()
                && u.query().is_none()
                && u.fragment().is_none()
                && u.path() == "/"
                && !o.ends_with('/')
        });
        match ok {
            // The origin as browsers send it (lowercase host, default port dropped).
            Some(u) => {
                let origin = u.origin().ascii_serialization();
                if out.contains(&origin) {
                    pr.push(field, format!("{o:?} is given twice"));
                } else {
                    out.push(origin);
                }
            }
            None => pr.push(
                field,
                format!(
                    "must be \"*\" or an origin like \"https://maps.example.org\" or \"http://localhost:8081\" \
                     (scheme and host, no path), got {o:?}"
                ),
            ),
        }
    }
    out
}

fn resolve_pass(pr: &mut Problems, raw: &RawPass) -> PassConfig {
    PassConfig {
        los_timeout: pr.duration(
            "pass.los_timeout",
            raw.los_timeout.as_ref(),
            DEFAULT_LOS_TIMEOUT,
            Duration::from_millis(1),
            Duration::from_secs(3600),
        ),
        min_frames: pr.int(
            "pass.min_frames",
            raw.min_frames,
            DEFAULT_MIN_FRAMES,
            0,
            MAX_MIN_FRAMES,
        ),
    }
}

fn resolve_station(pr: &mut Problems, raw: &RawStation) -> StationConfig {
    let name = match raw.name.as_deref() {
        None => DEFAULT_STATION_NAME.to_owned(),
        Some(n) if valid_input_name(n) => n.to_owned(),
        Some(n) => {
            pr.push(
                "station.name",
                format!(
                    "must be 1..={MAX_INPUT_NAME} characters of a-z, 0-9, '_' and '-', got {n:?}"
                ),
            );
            DEFAULT_STATION_NAME.to_owned()
        }
    };
    let mut range = |f: &str, v: Option<f64>, lo: f64, hi: f64| -> Option<f64> {
        let v = v?;
        if !(lo..=hi).contains(&v) {
            pr.push(
                format!("station.{f}"),
                format!("must be {lo}..={hi}, got {v}"),
            );
            return None;
        }
        Some(v)
    };
    let lat = range("lat", raw.lat, -90.0, 90.0);
    let lon = range("lon", raw.lon, -180.0, 180.0);
    let alt_m = range("alt_m", raw.alt_m, -500.0, 10_000.0);
    let location = match (raw.lat, raw.lon) {
        (Some(_), None) => {
            pr.push("station.lon", "is required when station.lat is set");
            None
        }
        (None, Some(_)) => {
            pr.push("station.lat", "is required when station.lon is set");
            None
        }
        _ => lat.zip(lon),
    };
    if raw.alt_m.is_some() && raw.lat.is_none() && raw.lon.is_none() {
        pr.push(
            "station.alt_m",
            "needs station.lat and station.lon (an altitude without a place)",
        );
    }
    StationConfig {
        name,
        location,
        alt_m,
    }
}

fn valid_input_name(name: &str) -> bool {
    (1..=MAX_INPUT_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn resolve_input(pr: &mut Problems, i: usize, raw: &RawInput, base: &Path) -> Option<InputConfig> {
    let at = |field: &str| format!("input[{i}].{field}");

    let name = match raw.name.as_deref() {
        None => {
            pr.push(at("name"), "is required");
            None
        }
        Some(n) if !valid_input_name(n) => {
            pr.push(
                at("name"),
                format!(
                    "must be 1 to {MAX_INPUT_NAME} characters from a-z, 0-9, '_' and '-' (it \
                     becomes a metric label), got {n:?}"
                ),
            );
            None
        }
        Some(n) => Some(n.to_owned()),
    };

    let listen = match raw.listen.as_deref() {
        None => {
            pr.push(at("listen"), format!("is required; it {LISTEN_FORMS}"));
            None
        }
        Some(text) => match text.parse::<Listen>() {
            Ok(l) => Some(l),
            Err(msg) => {
                pr.push(at("listen"), msg);
                None
            }
        },
    };

    let format = match raw.format.as_deref() {
        None => {
            pr.push(
                at("format"),
                "is required: bits, cadu, frames, packets, soft-i8 or hard",
            );
            None
        }
        Some(text) => match text.parse::<InputFormat>() {
            Ok(f) => Some(f),
            Err(_) => {
                pr.push(
                    at("format"),
                    format!("must be bits, cadu, frames, packets, soft-i8 or hard, got {text:?}"),
                );
                None
            }
        },
    };

    let profile = match raw.profile.as_deref() {
        None => {
            pr.push(
                at("profile"),
                format!(
                    "is required: a built-in profile ({}) or the path of a .toml profile file",
                    builtin_list()
                ),
            );
            None
        }
        Some(text) => load_profile(pr, &at("profile"), text, base),
    };
    if let (Some(f), Some(p)) = (format, profile.as_ref()) {
        if f.is_channel_symbols() && p.0.inner.is_none() {
            pr.push(
                at("format"),
                format!(
                    "{:?} needs a profile with an [inner] code section; profile {:?} has none (e.g. meteor-lrpt-72k)",
                    f.label(),
                    p.0.name
                ),
            );
        }
    }

    // Keys that would have no effect for this transport are problems, reported instead of any
    // problem with their value. (With a broken `listen`, they cannot be judged.)
    let scheme = listen
        .as_ref()
        .map(|l| l.to_string())
        .and_then(|s| s.split_once("://").map(|(scheme, _)| scheme.to_owned()))
        .unwrap_or_default();
    let is_connect = matches!(listen, Some(Listen::TcpConnect(_)));
    let is_stream = matches!(listen, Some(Listen::Tcp(_) | Listen::TcpConnect(_)));
    let is_known = listen.is_some();

    let mut allow = Vec::new();
    if is_connect && raw.allow.as_ref().is_some_and(|a| !a.is_empty()) {
        pr.push(
            at("allow"),
            "does not apply to tcp-connect:// inputs (the daemon chooses the peer); remove it",
        );
    } else {
        for (j, text) in raw.allow.iter().flatten().enumerate() {
            match parse_cidr(text) {
                Ok(net) => allow.push(net),
                Err(msg) => pr.push(format!("input[{i}].allow[{j}]"), msg),
            }
        }
    }

    let rcvbuf = pr.size(
        &at("rcvbuf"),
        raw.rcvbuf.as_ref(),
        DEFAULT_RCVBUF as u64,
        MIN_RCVBUF as u64,
        MAX_RCVBUF,
    );
    let max_datagram = if is_stream && raw.max_datagram.is_some() {
        pr.push(
            at("max_datagram"),
            format!("only applies to datagram sockets; this input is {scheme}://"),
        );
        DEFAULT_MAX_DATAGRAM as u64
    } else {
        pr.int(
            &at("max_datagram"),
            raw.max_datagram,
            DEFAULT_MAX_DATAGRAM as u64,
            1,
            65535,
        )
    };
    let queue_datagrams = pr.int(
        &at("queue_datagrams"),
        raw.queue_datagrams,
        DEFAULT_QUEUE_DEPTH as u64,
        MIN_QUEUE_DEPTH as u64,
        MAX_QUEUE_DEPTH,
    );
    if raw.queue_frames.is_some() {
        pr.push(
            at("queue_frames"),
            "was removed: there is no queue between the decoder and the archive (frames are written by the decoder thread); delete this key",
        );
    }
    let reconnect = if is_known && !is_connect && raw.reconnect.is_some() {
        pr.push(
            at("reconnect"),
            format!("only applies to tcp-connect:// inputs; this one is {scheme}://"),
        );
        DEFAULT_RECONNECT
    } else {
        pr.duration(
            &at("reconnect"),
            raw.reconnect.as_ref(),
            DEFAULT_RECONNECT,
            Duration::from_millis(10),
            Duration::from_secs(600),
        )
    };

    let imaging = profile.as_ref().map(|(p, _)| p.imaging.is_some());
    let pass_date = match raw.pass_date.as_deref().map(str::trim) {
        None | Some("clock") => None,
        Some(_) if imaging == Some(false) => {
            pr.push(
                at("pass_date"),
                "only applies to inputs whose profile has an imaging instrument (e.g. meteor-lrpt)",
            );
            None
        }
        Some(text) => match imagery::time::parse_date(text) {
            Some(d) => Some(d),
            None => {
                pr.push(
                    at("pass_date"),
                    format!("must be \"clock\" or a UTC date YYYY-MM-DD, got {text:?}"),
                );
                None
            }
        },
    };

    let (profile, profile_source) = profile?;
    Some(InputConfig {
        name: name?,
        listen: listen?,
        format: format?,
        profile,
        profile_source,
        allow,
        rcvbuf: usize_of(rcvbuf),
        max_datagram: usize_of(max_datagram),
        queue_datagrams: usize_of(queue_datagrams),
        reconnect,
        pass_date,
    })
}

fn builtin_list() -> String {
    Profile::builtin_names().collect::<Vec<_>>().join(", ")
}

/// A profile value that names a file rather than a built-in profile.
fn is_profile_path(text: &str) -> bool {
    text.contains('/') || text.contains('\\') || text.ends_with(".toml")
}

fn load_profile(
    pr: &mut Problems,
    path: &str,
    text: &str,
    base: &Path,
) -> Option<(Profile, ProfileSource)> {
    if !is_profile_path(text) {
        return match Profile::builtin(text) {
            Ok(p) => Some((p, ProfileSource::Builtin(text.to_owned()))),
            Err(_) => {
                pr.push(
                    path,
                    format!(
                        "must be a built-in profile ({}) or the path of a .toml profile file, \
                         got {text:?}",
                        builtin_list()
                    ),
                );
                None
            }
        };
    }
    let file = resolve_path(base, Path::new(text));
    let shown = file.display().to_string();
    let body = match std::fs::read_to_string(&file) {
        Ok(b) => b,
        Err(e) => {
            let given = if Path::new(text) == file {
                String::new()
            } else {
                format!(" (given as {text:?})")
            };
            pr.push(
                path,
                format!("cannot read profile file {shown:?}{given}: {e}"),
            );
            return None;
        }
    };
    match Profile::from_toml_str(&body, &shown) {
        Ok(p) => Some((p, ProfileSource::File(file))),
        Err(decoder::Error::InvalidProfile { name, problems }) => {
            for p in problems {
                pr.push(
                    path,
                    format!("profile file {shown:?} (profile {name:?}) is invalid: {p}"),
                );
            }
            None
        }
        Err(e) => {
            pr.push(path, format!("cannot load profile file {shown:?}: {e}"));
            None
        }
    }
}

/// A CIDR (`10.0.0.0/8`, `2001:db8::/32`) or a bare address (one host).
fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let t = text.trim();
    if let Ok(addr) = t.parse::<IpAddr>() {
        return Ok(IpNet::from(addr));
    }
    match t.parse::<IpNet>() {
        Ok(net) if net.trunc() == net => Ok(net),
        Ok(net) => Err(format!(
            "has host bits set, got {text:?}; the network is {}",
            net.trunc()
        )),
        Err(_) => Err(format!(
            "must be a CIDR like \"10.0.0.0/8\" or \"2001:db8::/32\", or an IP address, got \
             {text:?}"
        )),
    }
}

fn check_input_names(pr: &mut Problems, inputs: &[RawInput]) {
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, raw) in inputs.iter().enumerate() {
        let Some(name) = raw.name.as_deref() else {
            continue;
        };
        if let Some(&j) = first.get(name) {
            pr.push(
                format!("input[{i}].name"),
                format!("must be unique, got {name:?}, already used by input[{j}]"),
            );
        } else {
            first.insert(name, i);
        }
    }
}

/// The archive's rule for collection and item ids (`storage::catalog::layout::validate_id`, which
/// the daemon's tests hold this to): 1 to 128 ASCII letters, digits, `.`, `_` or `-`, not
/// starting with `.`. Repeated here so that the configuration needs no GDAL.
pub fn check_archive_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if id.len() > ARCHIVE_ID_MAX_LEN {
        return Err(format!("is longer than {ARCHIVE_ID_MAX_LEN} bytes"));
    }
    if let Some(ch) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "may hold only ASCII letters, digits, '.', '_' and '-' (found {ch:?})"
        ));
    }
    if id.starts_with('.') {
        return Err("must not start with '.'".into());
    }
    Ok(())
}

/// Longest collection or item id the archive takes.
pub const ARCHIVE_ID_MAX_LEN: usize = 128;

/// Two sockets of one protocol that cannot both be bound.
fn addrs_clash(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() != b.port() || a.port() == 0 {
        return false;
    }
    let (ia, ib) = (a.ip(), b.ip());
    // `[::]` is dual-stack on Linux by default and also takes the IPv4 port.
    let v6_any = |ip: IpAddr| ip.is_ipv6() && ip.is_unspecified();
    ia == ib
        || v6_any(ia)
        || v6_any(ib)
        || (ia.is_ipv4() == ib.is_ipv4() && (ia.is_unspecified() || ib.is_unspecified()))
}

fn check_conflicts(pr: &mut Problems, inputs: &[Option<InputConfig>], http: Option<&HttpConfig>) {
    let mut seen: Vec<(usize, &Listen)> = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let Some(input) = input else { continue };
        let l = &input.listen;
        if let (Listen::Tcp(a), Some(h)) = (l, http) {
            if addrs_clash(*a, h.listen) {
                pr.push(
                    format!("input[{i}].listen"),
                    format!("{l} clashes with http.listen ({})", h.listen),
                );
            }
        }
        for (j, other) in &seen {
            let clash = match (l, *other) {
                (Listen::Udp(a), Listen::Udp(b)) | (Listen::Tcp(a), Listen::Tcp(b)) => {
                    addrs_clash(*a, *b)
                }
                (Listen::Systemd(a), Listen::Systemd(b)) => a == b,
                _ => false,
            };
            if clash {
                pr.push(
                    format!("input[{i}].listen"),
                    format!("{l} clashes with input[{j}].listen ({other})"),
                );
            }
        }
        seen.push((i, l));
    }
}

/// The rules every webhook URL meets, checked by the configuration and again by delivery
/// (`serve::webhook`), so the two always agree: scheme `http` or `https`; a host; a port other
/// than 0; no user name or password (credentials in a URL end up in logs and process lists;
/// put a token in the path or query instead, which logs redact, see [`redact`]).
pub fn check_webhook_url(url: &Url) -> Result<(), String> {
    let shown = redact(url);
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("must be an http:// or https:// URL, got {shown:?}"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("has no host, got {shown:?}"));
    }
    if url.port() == Some(0) {
        return Err(format!("has port 0, got {shown:?}"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "must not carry a user name or password (userinfo), got {shown:?}; credentials in a \
             URL leak into logs: put a token in the path or query string instead"
        ));
    }
    Ok(())
}

/// Parses a webhook URL and applies [`check_webhook_url`]. Messages never show the URL's
/// secrets: a URL that does not parse is shown only up to its query, without userinfo.
pub fn parse_webhook_url(text: &str) -> Result<Url, String> {
    let trimmed = text.trim();
    let lower = trimmed.get(..8).unwrap_or(trimmed).to_ascii_lowercase();
    let after_scheme = if lower.starts_with("https://") {
        trimmed.get(8..)
    } else if lower.starts_with("http://") {
        trimmed.get(7..)
    } else {
        None
    };
    let Some(after_scheme) = after_scheme else {
        return Err(format!(
            "must be an http:// or https:// URL, got {:?}",
            redact_text(trimmed)
        ));
    };
    // The URL standard reads `http:///x` as host `x`; an operator meant something else.
    if after_scheme.is_empty() || after_scheme.starts_with(['/', '\\', '?', '#']) {
        return Err(format!("has no host, got {:?}", redact_text(trimmed)));
    }
    let url = Url::parse(trimmed)
        .map_err(|e| format!("is not a valid URL ({e}), got {:?}", redact_text(trimmed)))?;
    check_webhook_url(&url)?;
    Ok(url)
}

/// Marker that replaces a secret in a logged URL.
const REDACTED: &str = "REDACTED";

/// A path segment that looks like a secret token (`/hooks/T0123/8f3kQ9zLm2Xw7Yb1`): at least
/// 16 characters of `A-Z a-z 0-9 _ -` with both letters and digits, or anything of 32+.
fn looks_like_token(segment: &str) -> bool {
    let len = segment.chars().count();
    let tokenish = segment
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    (len >= 16
        && tokenish
        && segment.bytes().any(|b| b.is_ascii_digit())
        && segment.bytes().any(|b| b.is_ascii_alphabetic()))
        || len >= 32
}

/// A URL safe to log: userinfo, query and fragment replaced by `REDACTED`, and so is every
/// path segment that looks like a token (16+ characters of `A-Za-z0-9_-` mixing letters and
/// digits, or any 32+). Scheme, host, port and the other path segments stay, so an operator
/// can still tell which receiver is meant.
pub fn redact(url: &Url) -> String {
    let mut out = format!("{}:", url.scheme());
    if let Some(host) = url.host_str() {
        out.push_str("//");
        if !url.username().is_empty() || url.password().is_some() {
            out.push_str(REDACTED);
            out.push('@');
        }
        out.push_str(host);
        if let Some(port) = url.port() {
            out.push_str(&format!(":{port}"));
        }
    }
    match url.path_segments() {
        Some(segments) => {
            for seg in segments {
                out.push('/');
                out.push_str(if looks_like_token(seg) { REDACTED } else { seg });
            }
        }
        // cannot-be-a-base URLs (`mailto:…`): the whole rest may be a secret
        None if !url.path().is_empty() => out.push_str(REDACTED),
        None => {}
    }
    if url.query().is_some() {
        out.push('?');
        out.push_str(REDACTED);
    }
    if url.fragment().is_some() {
        out.push('#');
        out.push_str(REDACTED);
    }
    out
}

/// [`redact`] for text that is not a URL: userinfo, query and fragment cut, token-like
/// segments hidden.
/// toml's message without the source excerpt it quotes (`1 | url = "…`): the line may hold a
/// secret (a webhook token), and this message reaches logs and `/api/v1/status`. Line and
/// column stay.
fn syntax_message(e: &toml::de::Error) -> String {
    e.to_string()
        .lines()
        .filter(|l| {
            let t = l
                .trim_start()
                .trim_start_matches(|c: char| c.is_ascii_digit());
            !t.trim_start().starts_with('|')
        })
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_owned()
}

fn redact_text(text: &str) -> String {
    let (head, tail) = match text.find(['?', '#']) {
        Some(k) => (text.get(..k).unwrap_or_default(), Some(REDACTED)),
        None => (text, None),
    };
    let (scheme, rest) = match head.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, head),
    };
    let rest = match rest.split_once('/') {
        Some((auth, path)) => {
            let auth = match auth.rsplit_once('@') {
                Some((_, host)) => format!("{REDACTED}@{host}"),
                None => auth.to_owned(),
            };
            let path: Vec<&str> = path
                .split('/')
                .map(|seg| if looks_like_token(seg) { REDACTED } else { seg })
                .collect();
            format!("{auth}/{}", path.join("/"))
        }
        None => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{REDACTED}@{host}"),
            None => rest.to_owned(),
        },
    };
    let mut out = match scheme {
        Some(s) => format!("{s}://{rest}"),
        None => rest,
    };
    if let Some(t) = tail {
        out.push('?');
        out.push_str(t);
    }
    out
}

fn resolve_webhook(
    pr: &mut Problems,
    i: usize,
    raw: &RawWebhook,
    base: &Path,
) -> Option<WebhookConfig> {
    let at = |field: &str| format!("webhook[{i}].{field}");
    let url = match raw.url.as_deref() {
        None => {
            pr.push(
                at("url"),
                "is required: the http:// or https:// URL to POST to",
            );
            None
        }
        Some(u) => match parse_webhook_url(u) {
            Ok(url) => Some(url),
            Err(msg) => {
                pr.push(at("url"), msg);
                None
            }
        },
    };
    let events = match &raw.events {
        None => WebhookEvent::ALL.to_vec(),
        Some(list) => {
            if list.is_empty() {
                pr.push(
                    at("events"),
                    "must name at least one of \"aos\", \"los\", \"pass_record\", \"alert\" (or \
                     be left out for all), got []",
                );
            }
            let mut events = Vec::with_capacity(list.len());
            for (j, text) in list.iter().enumerate() {
                match text.parse::<WebhookEvent>() {
                    Ok(e) if events.contains(&e) => {
                        pr.push(
                            format!("webhook[{i}].events[{j}]"),
                            format!("repeats {text:?}"),
                        );
                    }
                    Ok(e) => events.push(e),
                    Err(msg) => pr.push(format!("webhook[{i}].events[{j}]"), msg),
                }
            }
            events
        }
    };
    let timeout = pr.duration(
        &at("timeout"),
        raw.timeout.as_ref(),
        DEFAULT_WEBHOOK_TIMEOUT,
        Duration::from_millis(100),
        Duration::from_secs(300),
    );
    let ca_file = raw.ca_file.as_ref().map(|p| resolve_path(base, p));
    if ca_file.is_some() && url.as_ref().is_some_and(|u| u.scheme() != "https") {
        pr.push(
            at("ca_file"),
            "applies only to an https:// url; this webhook's url is http://",
        );
    }
    Some(WebhookConfig {
        url: url?,
        events,
        timeout,
        ca_file,
    })
}

/// Reads a webhook's `ca_file`: its PEM text, or why it cannot be used.
pub fn read_ca_file(path: &Path) -> Result<Vec<u8>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot be read ({e}), got {:?}", path.display().to_string()))?;
    if !pem_has_certificate(&pem) {
        return Err(format!(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----), got {:?}",
            path.display().to_string()
        ));
    }
    Ok(pem)
}

/// Whether `pem` holds at least one PEM certificate block.
fn pem_has_certificate(pem: &[u8]) -> bool {
    let begin = b"-----BEGIN CERTIFICATE-----";
    let end = b"-----END CERTIFICATE-----";
    pem.windows(begin.len())
        .position(|w| w == begin)
        .is_some_and(|at| {
            pem.get(at..)
                .is_some_and(|rest| rest.windows(end.len()).any(|w| w == end))
        })
}

// ---------------------------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------------------------

const SIZE_UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("b", 1),
    ("kb", 1000),
    ("mb", 1000 * 1000),
    ("gb", 1000 * 1000 * 1000),
    ("tb", 1000 * 1000 * 1000 * 1000),
    ("kib", KIB),
    ("mib", MIB),
    ("gib", GIB),
    ("tib", 1024 * GIB),
];

/// Parses a byte size: a number of bytes (`"65536"`), or a number and a unit, with or without a
/// space: `"64KiB"`, `"8 MiB"`, `"1.5GiB"`, `"4 MB"`. KiB/MiB/GiB/TiB are powers of 1024,
/// kB/MB/GB/TB powers of 1000, B is bytes; units ignore case. The result must be a whole number
/// of bytes that fits in a `u64`. Bare `k`/`M`/`G` are refused as ambiguous.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at_checked(split).unwrap_or((t, ""));
    let unit = unit.trim().to_ascii_lowercase();
    let Some(&(_, multiplier)) = SIZE_UNITS.iter().find(|(u, _)| *u == unit) else {
        return Err(if matches!(unit.as_str(), "k" | "m" | "g" | "t") {
            format!("unit {unit:?} is ambiguous; write KiB/MiB/GiB (1024) or kB/MB/GB (1000)")
        } else {
            format!("unknown unit {unit:?}; use B, kB, MB, GB, TB, KiB, MiB, GiB or TiB")
        });
    };
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || (number.contains('.') && frac.is_empty()) || frac.contains('.') {
        return Err("expected a number".into());
    }
    if frac.len() > 18 {
        return Err("too many decimal places".into());
    }
    let too_large = || "too large".to_owned();
    let whole: u128 = whole.parse().map_err(|_| too_large())?;
    let frac_value: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| too_large())?
    };
    let scale = 10u128.pow(frac.len() as u32);
    let scaled = whole
        .checked_mul(scale)
        .and_then(|w| w.checked_add(frac_value))
        .and_then(|v| v.checked_mul(u128::from(multiplier)))
        .ok_or_else(too_large)?;
    if !scaled.is_multiple_of(scale) {
        return Err("not a whole number of bytes".into());
    }
    u64::try_from(scaled / scale).map_err(|_| too_large())
}

/// `64 KiB`, `8 MiB`, or plain bytes when not a whole number of a binary unit.
fn format_size(bytes: u64) -> String {
    for (unit, m) in [("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
        if bytes >= m && bytes.is_multiple_of(m) {
            return format!("{} {unit}", bytes / m);
        }
    }
    format!("{bytes} B")
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUE_CONFIG: &str = r#"
[archive]
path = "/var/lib/downlink"
[http]
listen = "127.0.0.1:8080"
[pass]
los_timeout = "10s"
[[input]]
name = "xband"
listen = "udp://0.0.0.0:5000"
format = "bits"
profile = "jpss"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, Path::new("/etc/downlink/downlink.toml"))
    }

    fn problems(text: &str) -> Vec<Problem> {
        match parse(text) {
            Err(ConfigError::Invalid { problems, .. }) => problems,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn syntax(text: &str) -> String {
        match parse(text) {
            Err(e @ ConfigError::Syntax { .. }) => e.to_string(),
            other => panic!("expected Syntax, got {other:?}"),
        }
    }

    /// The paths of the problems, for compact assertions.
    fn paths(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.path.as_str()).collect()
    }

    /// The minimal valid config with `extra` appended inside the `[[input]]` table.
    fn with_input_keys(extra: &str) -> String {
        format!("{ISSUE_CONFIG}{extra}\n")
    }

    #[test]
    fn issue_config_is_valid_with_documented_defaults() {
        let c = parse(ISSUE_CONFIG).unwrap();
        assert_eq!(
            c.archive,
            ArchiveConfig {
                path: PathBuf::from("/var/lib/downlink"),
                fsync_interval: Duration::from_secs(1),
                fsync_bytes: 4 * 1024 * 1024,
                keep_raw_cadus: true,
                store: ArchiveStore::Local,
            }
        );
        assert_eq!(
            c.http,
            HttpConfig {
                listen: "127.0.0.1:8080".parse().unwrap(),
                max_concurrency: 64,
                max_connections: 512,
                header_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(60),
                max_requests_per_connection: 1000,
                tile_cache: 64 << 20,
                cors_origins: Vec::new(),
                enabled: true,
            }
        );
        assert_eq!(
            c.pass,
            PassConfig {
                los_timeout: Duration::from_secs(10),
                min_frames: 10,
            }
        );
        assert_eq!(c.input.len(), 1);
        let i = &c.input[0];
        assert_eq!(i.name, "xband");
        assert_eq!(i.listen, Listen::Udp("0.0.0.0:5000".parse().unwrap()));
        assert_eq!(i.format, InputFormat::Bits);
        assert_eq!(i.profile, Profile::builtin("jpss").unwrap());
        assert_eq!(i.profile_source, ProfileSource::Builtin("jpss".into()));
        assert!(i.allow.is_empty());
        assert_eq!(i.rcvbuf, 8 * 1024 * 1024);
        assert_eq!(i.max_datagram, 65535);
        assert_eq!(i.queue_datagrams, 4096);
        assert_eq!(i.reconnect, Duration::from_secs(1));
        assert!(c.webhook.is_empty());
    }

    #[test]
    fn soft_symbol_formats_need_a_profile_with_an_inner_code() {
        let text = |format: &str, profile: &str| {
            format!(
                "[archive]\npath = \"/var/lib/downlink\"\n[[input]]\nname = \"lrpt\"\nlisten = \"udp://0.0.0.0:5000\"\nformat = \"{format}\"\nprofile = \"{profile}\"\n"
            )
        };
        let c = parse(&text("soft-i8", "meteor-lrpt-80k")).unwrap();
        assert_eq!(c.input[0].format, InputFormat::SoftI8);
        let c = parse(&text("hard", "meteor-lrpt-72k")).unwrap();
        assert_eq!(c.input[0].format, InputFormat::Hard);
        let err = parse(&text("soft-i8", "meteor-lrpt")).unwrap_err();
        assert_eq!(paths(err.problems()), ["input[0].format"]);
        assert!(err.to_string().contains("[inner]"), "{err}");
        let err = parse(&text("soft-f32", "meteor-lrpt-72k")).unwrap_err();
        assert!(err.to_string().contains("soft-i8 or hard"), "{err}");
    }

    #[test]
    fn http_and_pass_sections_are_optional() {
        let text = r#"
[archive]
path = "/var/lib/downlink"
[[input]]
name = "xband"
listen = "udp://0.0.0.0:5000"
format = "bits"
profile = "jpss"
"#;
        assert_eq!(parse(text).unwrap(), parse(ISSUE_CONFIG).unwrap());
    }

    #[test]
    fn http_connection_limits_are_read_and_checked() {
        let with = |keys: &str| {
            ISSUE_CONFIG.replace(
                "listen = \"127.0.0.1:8080\"\n",
                &format!("listen = \"127.0.0.1:8080\"\n{keys}"),
            )
        };
        let c = parse(&with(
            "max_connections = 2000\nheader_timeout = \"2s\"\nidle_timeout = \"5m\"\n\
             max_requests_per_connection = 1\n",
        ))
        .unwrap();
        assert_eq!(c.http.max_connections, 2000);
        assert_eq!(c.http.header_timeout, Duration::from_secs(2));
        assert_eq!(c.http.idle_timeout, Duration::from_secs(300));
        assert_eq!(c.http.max_requests_per_connection, 1);
        let pr = problems(&with(
            "max_connections = 0\nheader_timeout = \"10ms\"\nidle_timeout = 5\n\
             max_requests_per_connection = -1\n",
        ));
        assert_eq!(
            paths(&pr),
            [
                "http.max_connections",
                "http.header_timeout",
                "http.idle_timeout",
                "http.max_requests_per_connection"
            ]
        );
        for (p, value) in pr.iter().zip(["got 0", "\"10ms\"", "got 5", "got -1"]) {
            assert!(p.message.contains(value), "{p}");
        }
    }

    #[test]
    fn cors_origins_are_read_and_checked() {
        let with = |keys: &str| {
            ISSUE_CONFIG.replace(
                "listen = \"127.0.0.1:8080\"\n",
                &format!("listen = \"127.0.0.1:8080\"\n{keys}"),
            )
        };
        assert!(parse(ISSUE_CONFIG).unwrap().http.cors_origins.is_empty());
        let c = parse(&with("cors_origins = [\"*\"]\n")).unwrap();
        assert_eq!(c.http.cors_origins, ["*"]);
        let c = parse(&with(
            "cors_origins = [\"https://Maps.Example.org\", \"http://localhost:8081\"]\n",
        ))
        .unwrap();
        assert_eq!(
            c.http.cors_origins,
            ["https://maps.example.org", "http://localhost:8081"]
        );
        let pr = problems(&with(
            "cors_origins = [\"*\", \"https://a.org/\", \"ftp://a.org\", \"https://a.org/x\", \"a.org\"]\n",
        ));
        assert_eq!(
            paths(&pr),
            [
                "http.cors_origins[0]",
                "http.cors_origins[1]",
                "http.cors_origins[2]",
                "http.cors_origins[3]",
                "http.cors_origins[4]"
            ]
        );
        assert!(pr[1].message.contains("\"https://a.org/\""), "{}", pr[1]);
        assert_eq!(
            paths(&problems(&with("cors_origins = []\n"))),
            ["http.cors_origins"]
        );
        assert_eq!(
            paths(&problems(&with("cors_origins = \"*\"\n"))),
            ["http.cors_origins"]
        );
    }

    #[test]
    fn example_file_is_valid_and_its_values_are_the_defaults() {
        let example = parse(Config::example_toml()).unwrap();
        let minimal = parse(ISSUE_CONFIG).unwrap();
        // The example spells out every key of its first input and sections at the default:
        // if code and documentation disagree on a default, this fails.
        assert_eq!(example.archive, minimal.archive);
        assert_eq!(example.http, minimal.http);
        assert_eq!(example.pass, minimal.pass);
        assert_eq!(example.input, minimal.input);
        assert!(example.webhook.is_empty());
        assert_eq!(example.imaging, minimal.imaging);
    }

    /// Turns the example's commented-out settings (`#key = …`, `#[[table]]`: a `#` directly
    /// followed by code) into live ones; prose comments have a space after the `#`.
    fn uncomment(text: &str) -> String {
        text.lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '[') => {
                    rest
                }
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn example_commented_out_settings_are_valid_too() {
        let text = uncomment(Config::example_toml());
        assert_ne!(
            text,
            Config::example_toml(),
            "example has no commented settings"
        );
        let c = parse(&text).unwrap();
        assert!(c.input.len() >= 3, "{:?}", c.input.len());
        assert!(c
            .input
            .iter()
            .any(|i| matches!(i.listen, Listen::TcpConnect(_))));
        assert!(c
            .input
            .iter()
            .any(|i| matches!(i.listen, Listen::Systemd(_))));
        assert!(c.input.iter().any(|i| !i.allow.is_empty()));
        assert!(!c.webhook.is_empty());
        // A webhook with only a URL gets the documented defaults, as the example says.
        let minimal = parse(&format!(
            "{ISSUE_CONFIG}[[webhook]]\nurl = \"{}\"\n",
            c.webhook[0].url
        ))
        .unwrap();
        // `ca_file` has no default: the example names one, a minimal webhook has none.
        let mut example = c.webhook[0].clone();
        assert_eq!(
            example.ca_file.take().as_deref(),
            Some(Path::new("/etc/downlink/agency-ca.pem"))
        );
        assert_eq!(example, minimal.webhook[0]);
        assert_eq!(minimal.webhook[0].events, WebhookEvent::ALL.to_vec());
        assert_eq!(minimal.webhook[0].timeout, Duration::from_secs(5));
    }

    #[test]
    fn example_documents_every_key() {
        let example = uncomment(Config::example_toml());
        let mut checked = 0;
        for (section, _) in TOP_KEYS {
            assert!(
                example.contains(&format!("[{section}]"))
                    || example.contains(&format!("[[{section}]]")),
                "example.toml does not document [{section}]"
            );
            for (key, kind) in section_keys(section) {
                if *kind == Kind::Table {
                    // A sub-table (`[archive.s3]`): its header and each of its keys.
                    assert!(
                        example.contains(&format!("[{section}.{key}]")),
                        "example.toml does not document [{section}.{key}]"
                    );
                    for (sub, _) in section_keys(key) {
                        assert!(
                            example.contains(&format!("\n{sub} = ")),
                            "example.toml does not document {section}.{key}.{sub}"
                        );
                        checked += 1;
                    }
                    continue;
                }
                if REMOVED_KEYS.contains(&(*section, *key)) {
                    assert!(
                        !example.contains(&format!("\n{key} = ")),
                        "{key} was removed"
                    );
                    continue;
                }
                assert!(
                    example.contains(&format!("\n{key} = ")),
                    "example.toml does not document {section}.{key}"
                );
                checked += 1;
            }
        }
        assert!(checked >= 25, "only {checked} keys found");
        for name in Profile::builtin_names() {
            assert!(
                example.contains(name),
                "example.toml does not list profile {name}"
            );
        }
    }

    #[test]
    fn schema_and_raw_tables_agree() {
        // Every schema key is read by the raw tables: a value of the schema's type for each
        // key deserializes (deny_unknown_fields would refuse a key they do not read) ...
        let sample = |kind: Kind| -> &'static str {
            match kind {
                Kind::Str | Kind::Duration | Kind::Size => "\"x\"",
                Kind::Int => "1",
                Kind::Bool => "true",
                Kind::StrList => "[\"x\"]",
                Kind::Float => "0.5",
                Kind::Table | Kind::TableList => unreachable!(),
            }
        };
        let mut text = String::new();
        let mut sub_tables = Vec::new();
        for (section, kind) in TOP_KEYS {
            text.push_str(&match kind {
                Kind::TableList => format!("[[{section}]]\n"),
                _ => format!("[{section}]\n"),
            });
            for (key, kind) in section_keys(section) {
                if *kind == Kind::Table {
                    sub_tables.push((*section, *key));
                    continue;
                }
                text.push_str(&format!("{key} = {}\n", sample(*kind)));
            }
        }
        for (section, key) in &sub_tables {
            text.push_str(&format!("[{section}.{key}]\n"));
            for (sub, kind) in section_keys(key) {
                text.push_str(&format!("{sub} = {}\n", sample(*kind)));
            }
        }
        let table: toml::Table = text.parse().unwrap();
        toml::Value::Table(table)
            .try_into::<RawConfig>()
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        // ... and every key the raw tables read is in the schema: serde names them when it
        // refuses one.
        for (section, kind) in TOP_KEYS {
            let probe = match kind {
                Kind::TableList => format!("[[{section}]]\nzz_probe = 1\n"),
                _ => format!("[{section}]\nzz_probe = 1\n"),
            };
            let table: toml::Table = probe.parse().unwrap();
            let msg = toml::Value::Table(table)
                .try_into::<RawConfig>()
                .unwrap_err()
                .to_string();
            let list = msg
                .split("expected ")
                .nth(1)
                .unwrap()
                .lines()
                .next()
                .unwrap();
            let serde_keys: Vec<String> = list
                .trim_start_matches("one of ")
                .replace(" or ", ", ")
                .split(", ")
                .map(|k| k.trim().trim_matches('`').to_owned())
                .collect();
            let schema: Vec<String> = section_keys(section)
                .iter()
                .map(|(k, _)| (*k).to_owned())
                .collect();
            let mut a = serde_keys.clone();
            let mut b = schema.clone();
            a.sort();
            b.sort();
            assert_eq!(a, b, "[{section}]");
        }
        for (section, key) in sub_tables {
            let table: toml::Table = format!("[{section}.{key}]\nzz_probe = 1\n")
                .parse()
                .unwrap();
            let msg = toml::Value::Table(table)
                .try_into::<RawConfig>()
                .unwrap_err()
                .to_string();
            let list = msg
                .split("expected ")
                .nth(1)
                .unwrap()
                .lines()
                .next()
                .unwrap();
            let mut a: Vec<String> = list
                .trim_start_matches("one of ")
                .replace(" or ", ", ")
                .split(", ")
                .map(|k| k.trim().trim_matches('`').to_owned())
                .collect();
            let mut b: Vec<String> = section_keys(key)
                .iter()
                .map(|(k, _)| (*k).to_owned())
                .collect();
            a.sort();
            b.sort();
            assert_eq!(a, b, "[{section}.{key}]");
        }
    }

    #[test]
    fn unknown_top_level_key_is_a_problem_naming_the_key() {
        let text = format!("colour = \"blue\"\n{ISSUE_CONFIG}");
        let pr = problems(&text);
        assert_eq!(paths(&pr), ["colour"]);
        assert!(pr[0].message.starts_with("is not a known key"), "{}", pr[0]);
        assert!(pr[0].message.contains("[[input]]"), "{}", pr[0]);
    }

    #[test]
    fn unknown_key_in_input_is_a_problem_with_a_hint() {
        let pr = problems(&with_input_keys("rcv_buf = \"8MiB\""));
        assert_eq!(paths(&pr), ["input[0].rcv_buf"]);
        assert!(
            pr[0].message.contains("did you mean `rcvbuf`?"),
            "{}",
            pr[0]
        );
    }

    #[test]
    fn unknown_key_in_sections_is_a_problem() {
        for (section, path) in [
            ("[archive]\nfsync = 1\n", "archive.fsync"),
            ("[http]\nport = 1\n", "http.port"),
            ("[pass]\naos_timeout = \"1s\"\n", "pass.aos_timeout"),
            ("[imaging]\ntles = []\n", "imaging.tles"),
            (
                "[[webhook]]\nurl = \"http://x\"\nmethod = \"PUT\"\n",
                "webhook[0].method",
            ),
            ("[archive.sub]\nx = 1\n", "archive.sub"),
        ] {
            let pr = problems(section);
            assert!(paths(&pr).contains(&path), "{section}: {pr:?}");
        }
    }

    #[test]
    fn single_brackets_for_input_get_a_hint() {
        let text = ISSUE_CONFIG.replace("[[input]]", "[input]");
        let pr = problems(&text);
        let p = pr.iter().find(|p| p.path == "input").unwrap();
        assert!(p.message.contains("write [[input]]"), "{p}");
        assert!(p.message.contains("got a table"), "{p}");
    }

    #[test]
    fn wrong_type_is_a_problem_naming_the_key_and_value() {
        let pr = problems(&with_input_keys("allow = \"10.0.0.0/8\""));
        assert_eq!(paths(&pr), ["input[0].allow"]);
        assert_eq!(
            pr[0].to_string(),
            "`input[0].allow` must be a list of strings, e.g. [\"a\", \"b\"], got the string \
             \"10.0.0.0/8\""
        );
        let pr = problems(&with_input_keys("allow = [\"10.0.0.0/8\", 7]"));
        assert_eq!(paths(&pr), ["input[0].allow[1]"]);
        assert!(pr[0].message.contains("the integer 7"), "{}", pr[0]);
    }

    #[test]
    fn every_shape_problem_is_reported_at_once() {
        // Unknown keys and wrong types in several tables, plus value problems: one report.
        let text = r#"
colour = "blue"
[archive]
path = 7
keep_raw_cadus = "yes"
[http]
listen = 8080
port = 1
[pass]
min_frames = "ten"
los_timeout = "ten"
[imaging]
enabled = 1
tle = "a.tle"
[[input]]
name = "xband"
listen = "udp://0.0.0.0:5000"
format = "bits"
profile = "jpss"
max_datagram = "big"
rcv_buf = 1
[[input]]
name = "sband"
listen = "udp://0.0.0.0:5001"
format = ["bits"]
profile = "jpss"
rcvbuf = 1.5
[[webhook]]
url = "http://x"
events = "aos"
timeout = true
"#;
        let pr = problems(text);
        let mut got = paths(&pr);
        got.sort_unstable();
        let mut want = vec![
            "colour",
            "archive.path",
            "archive.keep_raw_cadus",
            "http.listen",
            "http.port",
            "pass.min_frames",
            "pass.los_timeout",
            "imaging.enabled",
            "imaging.tle",
            "input[0].max_datagram",
            "input[0].rcv_buf",
            "input[1].format",
            "input[1].rcvbuf",
            "webhook[0].events",
            "webhook[0].timeout",
        ];
        want.sort_unstable();
        assert_eq!(got, want, "{pr:#?}");
        let find = |path: &str| pr.iter().find(|p| p.path == path).unwrap().to_string();
        assert_eq!(
            find("archive.path"),
            "`archive.path` must be a string, got the integer 7"
        );
        assert!(find("input[1].rcvbuf").contains("the number 1.5"));
        assert!(find("pass.los_timeout").contains("\"ten\""));
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let msg = syntax("[archive]\npath = \"/x\"\n[[input]\n");
        assert!(msg.contains("line 3"), "{msg}");
        assert!(msg.contains("column"), "{msg}");
        let msg = syntax("[archive]\npath = \"/x\"\npath = \"/y\"\n");
        assert!(msg.contains("line 3"), "{msg}");
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("rcv_buf", "rcvbuf"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("los_timout", "los_timeout"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn many_problems_are_reported_at_once() {
        let text = r#"
[archive]
fsync_interval = "soon"
fsync_bytes = "lots"

[http]
listen = "http://localhost:8080"
max_concurrency = 0

[pass]
los_timeout = 10
min_frames = -1

[[input]]
name = "X Band"
listen = "udp:/x"
format = "bitz"
profile = "jpps"
allow = ["10.0.0.0/33", "192.168.1.0/24"]
rcvbuf = "16KiB"
max_datagram = 70000
queue_frames = 1
reconnect = "1s"

[[webhook]]
url = "ftp://example.net/"
events = ["aos", "eclipse", "aos"]
timeout = "0s"
"#;
        let err = parse(text).unwrap_err();
        let pr = err.problems().to_vec();
        let got = paths(&pr);
        let want = [
            "archive.path",
            "archive.fsync_interval",
            "archive.fsync_bytes",
            "http.listen",
            "http.max_concurrency",
            "pass.los_timeout",
            "pass.min_frames",
            "input[0].name",
            "input[0].listen",
            "input[0].format",
            "input[0].profile",
            "input[0].allow[0]",
            "input[0].rcvbuf",
            "input[0].max_datagram",
            "input[0].queue_frames",
            "webhook[0].url",
            "webhook[0].events[1]",
            "webhook[0].events[2]",
            "webhook[0].timeout",
        ];
        // In schema order. (`reconnect` on a UDP input cannot be judged when the listen value
        // is broken, so it is not reported.)
        assert_eq!(got, want);

        let listen = pr.iter().find(|p| p.path == "input[0].listen").unwrap();
        assert_eq!(
            listen.to_string(),
            "`input[0].listen` must be udp://HOST:PORT, tcp://HOST:PORT, \
             tcp-connect://HOST:PORT or systemd://NAME, got \"udp:/x\""
        );
        // Each message quotes the bad value.
        for (path, value) in [
            ("archive.fsync_interval", "\"soon\""),
            ("archive.fsync_bytes", "\"lots\""),
            ("http.max_concurrency", "got 0"),
            ("http.listen", "\"http://localhost:8080\""),
            ("pass.los_timeout", "got 10"),
            ("pass.min_frames", "got -1"),
            ("input[0].name", "\"X Band\""),
            ("input[0].format", "\"bitz\""),
            ("input[0].profile", "\"jpps\""),
            ("input[0].allow[0]", "\"10.0.0.0/33\""),
            ("input[0].rcvbuf", "\"16KiB\""),
            ("input[0].max_datagram", "got 70000"),
            ("input[0].queue_frames", "was removed"),
            ("webhook[0].url", "\"ftp://example.net/\""),
            ("webhook[0].events[1]", "\"eclipse\""),
            ("webhook[0].events[2]", "\"aos\""),
            ("webhook[0].timeout", "\"0s\""),
        ] {
            let p = pr.iter().find(|p| p.path == path).unwrap();
            assert!(p.message.contains(value), "{p}");
        }
        // Display: a header, then one bullet per problem.
        let shown = err.to_string();
        assert!(
            shown.starts_with("/etc/downlink/downlink.toml: 19 problems:\n  - `"),
            "{shown}"
        );
        assert_eq!(shown.lines().count(), 20, "{shown}");
    }

    #[test]
    fn zero_inputs_is_an_api_node() {
        let cfg = parse("[archive]\npath = \"/srv/dl\"\n").unwrap();
        assert!(cfg.input.is_empty());
        assert_eq!(cfg.http.listen.to_string(), DEFAULT_HTTP_LISTEN);
    }

    #[test]
    fn empty_file_reports_every_required_thing() {
        let pr = problems("");
        assert_eq!(paths(&pr), ["archive.path"]);
    }

    #[test]
    fn missing_input_fields_are_each_reported() {
        let pr = problems("[archive]\npath = \"/srv/dl\"\n[[input]]\n");
        assert_eq!(
            paths(&pr),
            [
                "input[0].name",
                "input[0].listen",
                "input[0].format",
                "input[0].profile"
            ]
        );
        assert!(pr.iter().all(|p| p.message.starts_with("is required")));
    }

    #[test]
    fn duplicate_input_names() {
        let text = format!(
            "{ISSUE_CONFIG}
[[input]]
name = \"sband\"
listen = \"udp://0.0.0.0:5001\"
format = \"cadu\"
profile = \"eos\"
[[input]]
name = \"xband\"
listen = \"udp://0.0.0.0:5002\"
format = \"cadu\"
profile = \"eos\"
"
        );
        let pr = problems(&text);
        assert_eq!(paths(&pr), ["input[2].name"]);
        assert_eq!(
            pr[0].message,
            "must be unique, got \"xband\", already used by input[0]"
        );
    }

    #[test]
    fn input_names_become_metric_labels() {
        assert!(valid_input_name("xband"));
        assert!(valid_input_name("s-band_2"));
        assert!(valid_input_name(&"a".repeat(32)));
        for bad in ["", "XBand", "x band", "x.band", "é", &"a".repeat(33)] {
            assert!(!valid_input_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn listen_forms() {
        assert_eq!(
            "udp://[::]:5000".parse::<Listen>().unwrap(),
            Listen::Udp("[::]:5000".parse().unwrap())
        );
        assert_eq!(
            "tcp://127.0.0.1:7000".parse::<Listen>().unwrap(),
            Listen::Tcp("127.0.0.1:7000".parse().unwrap())
        );
        for hp in [
            "demod.example.net:5001",
            "10.1.2.3:1",
            "[fe80::1]:5001",
            "modem:65535",
        ] {
            let text = format!("tcp-connect://{hp}");
            let l = text.parse::<Listen>().unwrap();
            assert_eq!(l, Listen::TcpConnect(hp.into()));
            assert_eq!(l.to_string(), text);
        }
        assert_eq!(
            "systemd://xband".parse::<Listen>().unwrap(),
            Listen::Systemd("xband".into())
        );
        for bad in [
            "udp:/x",
            "0.0.0.0:5000",
            "udp://localhost:5000",
            "udp://0.0.0.0",
            "udp://0.0.0.0:70000",
            "tcp://0.0.0.0:5000/path",
            "tcp-connect://host",
            "tcp-connect://host:0",
            "tcp-connect://:5000",
            "tcp-connect://fe80::1:5000",
            "tcp-connect://bad_host:5000",
            "tcp-connect://[nope]:5000",
            "systemd://",
            "systemd://a:b",
            "systemd://a b",
            "sctp://0.0.0.0:5000",
        ] {
            let msg = bad.parse::<Listen>().unwrap_err();
            assert!(msg.starts_with(LISTEN_FORMS), "{bad}: {msg}");
            assert!(msg.contains(&format!("{bad:?}")), "{bad}: {msg}");
        }
    }

    #[test]
    fn bad_cidr() {
        let text = with_input_keys(
            r#"allow = ["10.0.0.0/8", "2001:db8::/32", "192.168.1.7", "10.0.0.0/40", "fe80::/129", "eth0", "10.1.2.3/8"]"#,
        );
        let pr = problems(&text);
        assert_eq!(
            paths(&pr),
            [
                "input[0].allow[3]",
                "input[0].allow[4]",
                "input[0].allow[5]",
                "input[0].allow[6]"
            ]
        );
        assert!(pr[0].message.contains("\"10.0.0.0/40\""), "{}", pr[0]);
        assert!(pr[2].message.contains("\"eth0\""), "{}", pr[2]);
        assert!(pr[3].message.contains("10.0.0.0/8"), "{}", pr[3]);
    }

    #[test]
    fn allow_list_matches_ipv4_and_ipv6_peers() {
        let text = with_input_keys(r#"allow = ["10.0.0.0/8", "2001:db8::/32", "192.168.1.7"]"#);
        let c = parse(&text).unwrap();
        let input = &c.input[0];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(input.allows(ip("10.200.1.1")));
        assert!(input.allows(ip("192.168.1.7")));
        assert!(!input.allows(ip("192.168.1.8")));
        assert!(input.allows(ip("2001:db8::42")));
        assert!(!input.allows(ip("2001:db9::42")));
        // What a dual-stack socket reports for an IPv4 peer.
        assert!(input.allows(ip("::ffff:10.1.1.1")));
        assert!(!input.allows(ip("::ffff:11.1.1.1")));
        // Empty allow list: everyone.
        let open = parse(ISSUE_CONFIG).unwrap();
        assert!(open.input[0].allows(ip("203.0.113.9")));
    }

    #[test]
    fn bad_durations() {
        for (value, hint) in [
            ("\"10\"", "unit"),
            ("10", "unit"),
            ("\"ten seconds\"", "ten seconds"),
            ("\"-1s\"", "-1s"),
            ("\"0s\"", "between"),
            ("\"2h\"", "between"),
        ] {
            let text =
                ISSUE_CONFIG.replace("los_timeout = \"10s\"", &format!("los_timeout = {value}"));
            let pr = problems(&text);
            assert_eq!(paths(&pr), ["pass.los_timeout"], "{value}");
            assert!(pr[0].message.contains(hint), "{value}: {}", pr[0]);
            assert!(pr[0].message.contains(value), "{value}: {}", pr[0]);
        }
        let ok = ISSUE_CONFIG.replace("\"10s\"", "\"1m 30s\"");
        assert_eq!(
            parse(&ok).unwrap().pass.los_timeout,
            Duration::from_secs(90)
        );
        let ok = ISSUE_CONFIG.replace("\"10s\"", "\"500ms\"");
        assert_eq!(
            parse(&ok).unwrap().pass.los_timeout,
            Duration::from_millis(500)
        );
    }

    #[test]
    fn size_parsing() {
        let ok = [
            ("0", 0),
            ("65536", 65536),
            ("1B", 1),
            ("64KiB", 65536),
            ("64 KiB", 65536),
            ("8MiB", 8 << 20),
            ("8mib", 8 << 20),
            ("4 MB", 4_000_000),
            ("4mb", 4_000_000),
            ("1kB", 1000),
            ("2GiB", 2 << 30),
            ("1 TB", 1_000_000_000_000),
            ("1TiB", 1 << 40),
            ("1.5KiB", 1536),
            ("0.5 MiB", 512 * 1024),
            ("2.25 kB", 2250),
            (" 16 MiB ", 16 << 20),
            ("18446744073709551615", u64::MAX),
        ];
        for (text, want) in ok {
            assert_eq!(parse_size(text), Ok(want), "{text:?}");
        }
        let bad = [
            ("", "number"),
            ("MiB", "number"),
            ("8 M", "ambiguous"),
            ("8k", "ambiguous"),
            ("8 bits", "unknown unit"),
            ("8 MiBs", "unknown unit"),
            ("-1", "unknown unit"),
            ("1.", "number"),
            (".5KiB", "number"),
            ("1.2.3", "number"),
            ("0.1 KiB", "whole number"),
            ("1.5", "whole number"),
            ("18446744073709551616", "too large"),
            ("16777216 TiB", "too large"),
            ("99999999999999999999999999999999999999999", "too large"),
        ];
        for (text, why) in bad {
            let err = parse_size(text).unwrap_err();
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }

    #[test]
    fn sizes_in_the_config() {
        let c = parse(&with_input_keys("rcvbuf = 65536")).unwrap();
        assert_eq!(c.input[0].rcvbuf, 65536);
        let c = parse(&with_input_keys("rcvbuf = \"32 MiB\"")).unwrap();
        assert_eq!(c.input[0].rcvbuf, 32 << 20);
        let pr = problems(&with_input_keys("rcvbuf = 65535"));
        assert_eq!(
            pr[0].to_string(),
            "`input[0].rcvbuf` must be between 64 KiB and 1 GiB, got 65535 (65535 bytes)"
        );
        let pr = problems(&with_input_keys("rcvbuf = -5"));
        assert!(pr[0].message.contains("negative"), "{}", pr[0]);
        let text = ISSUE_CONFIG.replace(
            "path = \"/var/lib/downlink\"",
            "path = \"/var/lib/downlink\"\nfsync_bytes = \"1 MB\"",
        );
        assert_eq!(parse(&text).unwrap().archive.fsync_bytes, 1_000_000);
    }

    #[test]
    fn format_size_prefers_binary_units() {
        assert_eq!(format_size(64 * 1024), "64 KiB");
        assert_eq!(format_size(1 << 30), "1 GiB");
        assert_eq!(format_size(1500), "1500 B");
        assert_eq!(format_size(0), "0 B");
    }

    fn eos_profile_file(dir: &Path) -> PathBuf {
        let text = Profile::builtin_source("eos").unwrap();
        let path = dir.join("my-eos.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn profile_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = eos_profile_file(dir.path());
        let text = ISSUE_CONFIG.replace("\"jpss\"", &format!("{:?}", file.display().to_string()));
        let c = parse(&text).unwrap();
        assert_eq!(c.input[0].profile, Profile::builtin("eos").unwrap());
        assert_eq!(c.input[0].profile_source, ProfileSource::File(file));
    }

    #[test]
    fn relative_profile_path_is_resolved_against_the_config_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("profiles")).unwrap();
        let file = eos_profile_file(&dir.path().join("profiles"));
        let config_path = dir.path().join("downlink.toml");
        let text = ISSUE_CONFIG
            .replace("\"jpss\"", "\"profiles/my-eos.toml\"")
            .replace("\"/var/lib/downlink\"", "\"archive\"");
        std::fs::write(&config_path, text).unwrap();
        let c = Config::load(&config_path).unwrap();
        assert_eq!(c.input[0].profile_source, ProfileSource::File(file));
        assert_eq!(c.input[0].profile.name, "eos");
        assert_eq!(c.archive.path, dir.path().join("archive"));
    }

    #[test]
    fn missing_profile_file_is_a_problem_at_the_profile_path() {
        let pr = problems(&ISSUE_CONFIG.replace("\"jpss\"", "\"/nonexistent/dir/custom.toml\""));
        assert_eq!(paths(&pr), ["input[0].profile"]);
        assert_eq!(
            pr[0].message,
            "cannot read profile file \"/nonexistent/dir/custom.toml\": No such file or \
             directory (os error 2)"
        );

        // Relative paths are shown resolved against the config file's directory.
        let pr = problems(&ISSUE_CONFIG.replace("\"jpss\"", "\"./missing.toml\""));
        let want = "cannot read profile file \"/etc/downlink/missing.toml\" (given as \
                    \"./missing.toml\")";
        assert!(pr[0].message.starts_with(want), "{}", pr[0]);
    }

    #[test]
    fn invalid_profile_file_problems_are_config_problems() {
        let dir = tempfile::tempdir().unwrap();
        let good = Profile::builtin_source("eos").unwrap();
        let bad = good.replace("interleave = 4", "interleave = 9");
        assert_ne!(bad, good, "eos.toml no longer says interleave = 4");
        let bad_file = dir.path().join("bad.toml");
        std::fs::write(&bad_file, bad).unwrap();
        let garbled = dir.path().join("garbled.toml");
        std::fs::write(&garbled, format!("{good}\nwobble = 1\n")).unwrap();

        let text =
            ISSUE_CONFIG.replace("\"jpss\"", &format!("{:?}", bad_file.display().to_string()));
        let pr = problems(&text);
        assert!(!pr.is_empty());
        assert!(pr.iter().all(|p| p.path == "input[0].profile"), "{pr:?}");
        assert!(
            pr.iter()
                .any(|p| p.message.contains("`rs.interleave` must be 1..=8, got 9")),
            "{pr:?}"
        );

        let text =
            ISSUE_CONFIG.replace("\"jpss\"", &format!("{:?}", garbled.display().to_string()));
        let pr = problems(&text);
        assert_eq!(paths(&pr), ["input[0].profile"]);
        assert!(pr[0].message.contains("wobble"), "{}", pr[0]);
    }

    #[test]
    fn every_builtin_profile_is_accepted_by_name() {
        for name in Profile::builtin_names() {
            let text = ISSUE_CONFIG.replace("\"jpss\"", &format!("{name:?}"));
            let c = parse(&text).unwrap();
            assert_eq!(c.input[0].profile.name, name);
        }
    }

    #[test]
    fn pass_date_dates_replayed_passes_of_imaging_inputs_only() {
        let meteor = ISSUE_CONFIG.replace("\"jpss\"", "\"meteor-lrpt\"");
        let c = parse(&format!("{meteor}pass_date = \"2022-12-20\"\n")).unwrap();
        assert_eq!(
            c.input[0].pass_date,
            chrono::NaiveDate::from_ymd_opt(2022, 12, 20)
        );
        let c = parse(&format!("{meteor}pass_date = \"clock\"\n")).unwrap();
        assert_eq!(c.input[0].pass_date, None);
        assert_eq!(parse(&meteor).unwrap().input[0].pass_date, None);
        let pr = problems(&format!("{meteor}pass_date = \"20.12.2022\"\n"));
        assert_eq!(paths(&pr), ["input[0].pass_date"]);
        assert!(pr[0].message.contains("20.12.2022"), "{}", pr[0]);
        // No imaging instrument: the key would have no effect.
        let pr = problems(&with_input_keys("pass_date = \"2022-12-20\""));
        assert_eq!(paths(&pr), ["input[0].pass_date"]);
        assert!(pr[0].message.contains("imaging"), "{}", pr[0]);
    }

    #[test]
    fn transport_specific_keys_are_checked() {
        let pr = problems(&with_input_keys("reconnect = \"2s\""));
        assert_eq!(paths(&pr), ["input[0].reconnect"]);
        assert!(pr[0].message.contains("tcp-connect"), "{}", pr[0]);

        let tcp = ISSUE_CONFIG.replace("udp://0.0.0.0:5000", "tcp://0.0.0.0:5000");
        let pr = problems(&format!("{tcp}max_datagram = 1500\n"));
        assert_eq!(paths(&pr), ["input[0].max_datagram"]);

        let connect = ISSUE_CONFIG.replace("udp://0.0.0.0:5000", "tcp-connect://modem:5000");
        let pr = problems(&format!(
            "{connect}allow = [\"10.0.0.0/8\"]\nmax_datagram = 1500\n"
        ));
        assert_eq!(paths(&pr), ["input[0].allow", "input[0].max_datagram"]);

        let c = parse(&format!(
            "{connect}reconnect = \"250ms\"\nrcvbuf = \"1MiB\"\n"
        ))
        .unwrap();
        assert_eq!(c.input[0].reconnect, Duration::from_millis(250));
        assert_eq!(c.input[0].listen, Listen::TcpConnect("modem:5000".into()));

        let sd = ISSUE_CONFIG.replace("udp://0.0.0.0:5000", "systemd://xband");
        let c = parse(&format!("{sd}max_datagram = 9000\nallow = [\"::1\"]\n")).unwrap();
        assert_eq!(c.input[0].max_datagram, 9000);
    }

    #[test]
    fn clashing_listen_addresses() {
        let text = format!(
            "{ISSUE_CONFIG}
[[input]]
name = \"b\"
listen = \"udp://127.0.0.1:5000\"
format = \"cadu\"
profile = \"eos\"
[[input]]
name = \"c\"
listen = \"tcp://[::]:8080\"
format = \"cadu\"
profile = \"eos\"
[[input]]
name = \"d\"
listen = \"tcp://0.0.0.0:5000\"
format = \"cadu\"
profile = \"eos\"
[[input]]
name = \"e\"
listen = \"systemd://s\"
format = \"cadu\"
profile = \"eos\"
[[input]]
name = \"f\"
listen = \"systemd://s\"
format = \"cadu\"
profile = \"eos\"
[[input]]
name = \"g\"
listen = \"udp://127.0.0.1:0\"
format = \"cadu\"
profile = \"eos\"
[[input]]
name = \"h\"
listen = \"udp://127.0.0.1:0\"
format = \"cadu\"
profile = \"eos\"
"
        );
        let pr = problems(&text);
        // b clashes with the 0.0.0.0 UDP input, c with http (dual-stack [::]); d is TCP, so
        // not a clash with UDP 5000; f repeats e's systemd name; port 0 never clashes.
        assert_eq!(
            paths(&pr),
            ["input[1].listen", "input[2].listen", "input[5].listen"],
            "{pr:?}"
        );
        assert!(pr[0].message.contains("input[0].listen"), "{}", pr[0]);
        assert!(pr[1].message.contains("http.listen"), "{}", pr[1]);
    }

    #[test]
    fn addr_clash_rules() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(addrs_clash(a("1.2.3.4:5"), a("1.2.3.4:5")));
        assert!(addrs_clash(a("0.0.0.0:5"), a("1.2.3.4:5")));
        assert!(addrs_clash(a("[::]:5"), a("1.2.3.4:5")));
        assert!(!addrs_clash(a("1.2.3.4:5"), a("1.2.3.5:5")));
        assert!(!addrs_clash(a("1.2.3.4:5"), a("1.2.3.4:6")));
        assert!(!addrs_clash(a("0.0.0.0:5"), a("[::1]:5")));
        assert!(!addrs_clash(a("1.2.3.4:0"), a("1.2.3.4:0")));
    }

    #[test]
    fn webhooks() {
        let text = format!(
            "{ISSUE_CONFIG}
[[webhook]]
url = \"https://ops.example.net:8443/hooks/downlink?x=1\"
events = [\"los\", \"pass_record\"]
timeout = \"2s\"
[[webhook]]
url = \"http://[::1]/h\"
"
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.webhook.len(), 2);
        assert_eq!(
            c.webhook[0],
            WebhookConfig {
                url: Url::parse("https://ops.example.net:8443/hooks/downlink?x=1").unwrap(),
                events: vec![WebhookEvent::Los, WebhookEvent::PassRecord],
                timeout: Duration::from_secs(2),
                ca_file: None,
            }
        );
        assert_eq!(c.webhook[1].events, WebhookEvent::ALL.to_vec());

        let pr = problems(&format!("{ISSUE_CONFIG}[[webhook]]\nevents = []\n"));
        assert_eq!(paths(&pr), ["webhook[0].url", "webhook[0].events"]);
    }

    #[test]
    fn webhook_ca_file_is_relative_to_the_config_and_checked_on_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        std::fs::write(dir.path().join("ca.pem"), pem).unwrap();
        std::fs::write(dir.path().join("not.pem"), "hello").unwrap();
        let file = dir.path().join("downlink.toml");
        let archive = dir.path().join("archive");
        let hook = |url: &str, ca: &str| {
            ISSUE_CONFIG
                .replace("/var/lib/downlink", &archive.display().to_string())
                .replace("udp://0.0.0.0:5000", "udp://127.0.0.1:0")
                .replace("127.0.0.1:8080", "127.0.0.1:0")
                + &format!("[[webhook]]\nurl = \"{url}\"\nca_file = \"{ca}\"\n")
        };
        let c = Config::from_toml_str(&hook("https://127.0.0.1:8443/h", "ca.pem"), &file).unwrap();
        assert_eq!(
            c.webhook[0].ca_file.as_deref(),
            Some(dir.path().join("ca.pem").as_path())
        );
        c.check_host(&file).unwrap();
        assert_eq!(
            read_ca_file(&dir.path().join("ca.pem")).unwrap(),
            pem.as_bytes()
        );
        for (ca, why) in [
            ("missing.pem", "cannot be read"),
            ("not.pem", "holds no PEM certificate"),
        ] {
            let c = Config::from_toml_str(&hook("https://127.0.0.1:8443/h", ca), &file).unwrap();
            let Err(ConfigError::Invalid { problems, .. }) = c.check_host(&file) else {
                panic!("{ca} accepted");
            };
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].path, "webhook[0].ca_file");
            assert!(problems[0].message.contains(why), "{problems:?}");
        }
        let Err(ConfigError::Invalid { problems, .. }) =
            Config::from_toml_str(&hook("http://127.0.0.1:8080/h", "ca.pem"), &file)
        else {
            panic!("ca_file on http accepted");
        };
        assert_eq!(problems[0].path, "webhook[0].ca_file");
        assert!(problems[0]
            .message
            .contains("applies only to an https:// url"));
    }

    #[test]
    fn url_checks() {
        for ok in [
            "http://x",
            "HTTPS://Example.net/a",
            "https://host:1/p#f",
            "http://[::1]:8080/",
            "http://h/a b",
        ] {
            assert!(parse_webhook_url(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("ftp://x", "http:// or https://"),
            ("example.net", "http:// or https://"),
            ("http://", "no host"),
            ("http:///path", "no host"),
            ("http://host:port/", "not a valid URL"),
            ("http://host:0/", "port 0"),
            ("http://a b/", "not a valid URL"),
            ("https://[]/", "not a valid URL"),
            ("https://user:pw@host:1/p", "user name or password"),
            ("http://token@host/", "user name or password"),
        ] {
            let err = parse_webhook_url(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(!err.contains("pw@"), "{bad}: {err}");
        }
    }

    #[test]
    fn userinfo_and_https_webhooks_in_the_config() {
        let pr = problems(&format!(
            "{ISSUE_CONFIG}[[webhook]]\nurl = \"https://bob:hunter2@ops.example.net/h?k=v\"\n"
        ));
        assert_eq!(paths(&pr), ["webhook[0].url"]);
        assert!(!pr[0].message.contains("hunter2"), "{}", pr[0]);
        assert!(!pr[0].message.contains("k=v"), "{}", pr[0]);
        assert!(pr[0].message.contains("ops.example.net"), "{}", pr[0]);
        let c = parse(&format!(
            "{ISSUE_CONFIG}[[webhook]]\nurl = \"https://ops.example.net/h?k=v\"\n"
        ))
        .unwrap();
        assert_eq!(c.webhook[0].url.scheme(), "https");
    }

    #[test]
    fn redact_hides_secrets_and_keeps_the_receiver() {
        let r = |s: &str| redact(&Url::parse(s).unwrap());
        assert_eq!(
            r("http://h:81/a/b?token=s3cret#f"),
            "http://h:81/a/b?REDACTED#REDACTED"
        );
        assert_eq!(
            r("https://user:pw@h/x?k=v"),
            "https://REDACTED@h/x?REDACTED"
        );
        assert_eq!(r("https://tok@h/"), "https://REDACTED@h/");
        assert_eq!(r("http://h"), "http://h/");
        assert_eq!(r("http://[::1]:9000/p"), "http://[::1]:9000/p");
        // Slack-style path tokens; short or word-only segments stay.
        assert_eq!(
            r("https://hooks.example.com/services/T0001/B0002/XXXXxxxx1234YYYYzzzz"),
            "https://hooks.example.com/services/T0001/B0002/REDACTED"
        );
        assert_eq!(
            r("http://h/hooks/downlink-notifications/pass_record"),
            "http://h/hooks/downlink-notifications/pass_record"
        );
        assert_eq!(
            r("http://h/api/0123456789abcdef0123456789abcdef0123/x"),
            "http://h/api/REDACTED/x"
        );
        assert_eq!(
            r("http://h/v1/6b1f0e2a-77c1-4c55-9a0e-d1a2b3c4d5e6"),
            "http://h/v1/REDACTED"
        );
        assert!(looks_like_token("abcdefgh12345678"));
        assert!(!looks_like_token("abcdefgh1234567"));
        assert!(!looks_like_token("abcdefghijklmnopqrstu"));
        assert!(!looks_like_token("1234567890123456"));
        // Text that is not a URL loses the same parts.
        assert_eq!(
            redact_text("htp://u:p@h:x/a/AbCdEf0123456789xyz?t=1"),
            "htp://REDACTED@h:x/a/REDACTED?REDACTED"
        );
        assert_eq!(redact_text("u:p@h"), "REDACTED@h");
    }

    #[test]
    fn embedded_default_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::embedded_default(dir.path()).unwrap();
        assert_eq!(c.archive.path, dir.path());
        assert_eq!(c.input.len(), 1);
        assert_eq!(
            c.input[0].listen,
            Listen::Udp("127.0.0.1:5000".parse().unwrap())
        );
        assert_eq!(c.input[0].format, InputFormat::Bits);
        assert_eq!(c.input[0].profile.name, "jpss");
        assert_eq!(c.http, parse(ISSUE_CONFIG).unwrap().http);
        assert!(matches!(
            Config::embedded_default(Path::new("")),
            Err(ConfigError::Invalid { .. })
        ));
    }

    #[test]
    fn load_reports_unreadable_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        let err = Config::load(&missing).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("nope.toml"), "{err}");

        let path = dir.path().join("downlink.toml");
        std::fs::write(&path, "[archive\n").unwrap();
        let err = Config::load(&path).unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
        assert!(err.to_string().contains("line 1"), "{err}");
        // The quoted source line (it may hold a secret) is not repeated.
        let leaky = Config::from_toml_str(
            "[[webhook]]\nurl = \"https://h.example/x?token=s3cret\n",
            Path::new("t.toml"),
        )
        .unwrap_err();
        assert!(leaky.to_string().contains("line 2"), "{leaky}");
        assert!(!leaky.to_string().contains("s3cret"), "{leaky}");
    }

    #[test]
    fn error_chain_says_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        enum E {
            #[error("archive {path}: {source}")]
            Embeds { path: String, source: io::Error },
            #[error("cannot start")]
            Wraps(#[source] io::Error),
        }
        let os = || io::Error::from_raw_os_error(2);
        let text = os().to_string();
        let e = E::Embeds {
            path: "/x".into(),
            source: os(),
        };
        // anyhow's `{:#}` would say the OS error twice.
        assert_eq!(
            format!(
                "{:#}",
                anyhow::Error::from(E::Embeds {
                    path: "/x".into(),
                    source: os()
                })
            ),
            format!("archive /x: {text}: {text}")
        );
        assert_eq!(error_chain(&e), format!("archive /x: {text}"));
        assert_eq!(
            error_chain(&E::Wraps(os())),
            format!("cannot start: {text}")
        );
        let err = Config::load(Path::new("/nonexistent/downlink.toml")).unwrap_err();
        assert_eq!(
            error_chain(&err),
            format!("cannot read config file /nonexistent/downlink.toml: {text}")
        );
    }

    #[test]
    fn multi_line_problem_messages_stay_under_their_bullet() {
        let err = ConfigError::Invalid {
            path: PathBuf::from("f.toml"),
            problems: vec![Problem {
                path: "a".into(),
                message: "first\nsecond".into(),
            }],
        };
        assert_eq!(
            err.to_string(),
            "f.toml: 1 problem:\n  - `a` first\n    second"
        );
    }

    #[test]
    fn alerts_sections_parse_and_every_problem_is_reported() {
        let ok = parse(&format!(
            "{ISSUE_CONFIG}\n[[alerts]]\ncollection = \"s2\"\nmask = \"forest.geojson\"\ndrop = 0.25\n\
             mmu_ha = 1\n[[alerts]]\ncollection = \"meteor-m2-msu-mr\"\nred = \"ch1\"\nnir = \"ch2:1\"\n"
        ))
        .unwrap();
        assert_eq!(ok.alerts.len(), 2);
        let a = &ok.alerts[0];
        assert_eq!(
            a.mask.as_deref(),
            Some(Path::new("/etc/downlink/forest.geojson"))
        );
        assert_eq!((a.drop, a.mmu_ha, a.baseline_looks), (0.25, 1.0, 3));
        assert!(a.cloud_test && a.red.is_none());
        assert_eq!(ok.alerts[1].red.as_deref(), Some("ch1"));
        let p = problems(&format!(
            "{ISSUE_CONFIG}\n[[alerts]]\ndrop = 0\n[[alerts]]\ncollection = \"a b\"\nmmu_ha = -1\n\
             baseline_looks = 0\nbaseline_percentile = 101\nred = \"x:0\"\n\
             [[alerts]]\ncollection = \"s2\"\n[[alerts]]\ncollection = \"s2\"\nwhat = 1\n"
        ));
        assert_eq!(
            paths(&p),
            [
                "alerts[3].what",
                "alerts[0].collection",
                "alerts[0].drop",
                "alerts[1].collection",
                "alerts[1].mmu_ha",
                "alerts[1].baseline_percentile",
                "alerts[1].baseline_looks",
                "alerts[1].red",
                "alerts[3].collection",
            ],
            "{p:?}"
        );
        assert!(p.iter().any(|x| x.message.contains("got -1")));
    }

    #[test]
    fn station_is_parsed_and_each_bad_value_named() {
        let c = parse(ISSUE_CONFIG).unwrap();
        assert_eq!(c.station, StationConfig::default());
        let c = parse(&format!(
            "{ISSUE_CONFIG}\n[station]\nname = \"madison-2\"\nlat = 43.07\nlon = -89.4\nalt_m = 270\n"
        ))
        .unwrap();
        assert_eq!(c.station.name, "madison-2");
        assert_eq!(c.station.location, Some((43.07, -89.4)));
        assert_eq!(c.station.alt_m, Some(270.0));
        let p = problems(&format!(
            "{ISSUE_CONFIG}\n[station]\nname = \"Bad Name\"\nlat = 91.0\nalt_m = 20000\n"
        ));
        let paths: Vec<&str> = p.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "station.name",
                "station.lat",
                "station.alt_m",
                "station.lon"
            ],
            "{p:?}"
        );
        assert!(p[0].message.contains("\"Bad Name\""));
        assert!(p[1].message.contains("got 91"));
        let p = problems(&format!("{ISSUE_CONFIG}\n[station]\nalt_m = 5.0\n"));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].path, "station.alt_m");
    }

    #[test]
    fn catalog_url_is_checked_and_its_password_never_shown() {
        let c = parse(ISSUE_CONFIG).unwrap();
        assert_eq!(c.catalog, CatalogConfig::default());
        let c = parse(&format!(
            "{ISSUE_CONFIG}[catalog]\nurl = \"postgresql://dl:s3cret@db.example:5433/stac\"\n"
        ))
        .unwrap();
        let url = c.catalog.url.clone().unwrap();
        assert_eq!(url.expose(), "postgresql://dl:s3cret@db.example:5433/stac");
        assert_eq!(url.to_string(), "postgresql://dl:***@db.example:5433/stac");
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(parse(&format!(
            "{ISSUE_CONFIG}[catalog]\nurl = \"postgresql://dl@/stac?host=/run/postgresql\"\n"
        ))
        .is_ok());
        for (url, want) in [
            ("mysql://u:pw@h/db", "got scheme \"mysql\""),
            ("postgresql://u:pw@h/", "names no database"),
            ("postgresql://h/db", "names no user"),
            ("postgresql://u:pw@/db", "names no host"),
            ("db.example", "is not a URL"),
        ] {
            let p = problems(&format!("{ISSUE_CONFIG}[catalog]\nurl = \"{url}\"\n"));
            assert_eq!(p.len(), 1, "{url}: {p:?}");
            assert_eq!(p[0].path, "catalog.url");
            assert!(p[0].message.contains(want), "{url}: {}", p[0].message);
            assert!(!p[0].message.contains("pw@"), "{}", p[0].message);
        }
        let p = problems(&format!(
            "{ISSUE_CONFIG}[catalog]\npassword_file = \"pw\"\nuser = \"x\"\n"
        ));
        assert!(p.iter().any(|x| x.path == "catalog.password_file"), "{p:?}");
        assert!(p.iter().any(|x| x.path == "catalog.user"), "{p:?}");
    }

    #[test]
    fn catalog_password_file_wins_and_is_checked_on_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pgpassword");
        std::fs::write(&pw, "hunter2\n").unwrap();
        let cfg = CatalogConfig {
            url: Some(DatabaseUrl("postgresql://u@h/db".into())),
            password_file: Some(pw.clone()),
        };
        assert_eq!(cfg.password().unwrap().as_deref(), Some("hunter2"));
        std::fs::write(&pw, "").unwrap();
        assert!(cfg.password().unwrap_err().contains("is empty"));
        let missing = CatalogConfig {
            password_file: Some(dir.path().join("nope")),
            ..cfg
        };
        let e = missing.password().unwrap_err();
        assert!(e.contains("cannot read") && !e.contains("hunter2"), "{e}");
    }

    fn with_archive(extra: &str) -> String {
        ISSUE_CONFIG.replace(
            "path = \"/var/lib/downlink\"\n",
            &format!("path = \"/var/lib/downlink\"\n{extra}\n"),
        )
    }

    #[test]
    fn archive_store_defaults_to_the_local_archive() {
        assert_eq!(
            parse(ISSUE_CONFIG).unwrap().archive.store,
            ArchiveStore::Local
        );
        let same = parse(&with_archive("store = \"file:///var/lib/downlink\"")).unwrap();
        assert_eq!(same.archive.store, ArchiveStore::Local);
        let other = parse(&with_archive("store = \"file:///mnt/share/downlink\"")).unwrap();
        assert_eq!(
            other.archive.store,
            ArchiveStore::Directory(PathBuf::from("/mnt/share/downlink"))
        );
    }

    #[test]
    fn archive_store_s3_is_parsed() {
        let c = parse(&with_archive(
            "store = \"s3://downlink-archive/station-1/\"\n[archive.s3]\nendpoint = \"http://127.0.0.1:3900\"\nregion = \"garage\"\nallow_http = true\ncredentials_file = \"s3.ini\"",
        ))
        .unwrap();
        let ArchiveStore::S3(s3) = &c.archive.store else {
            panic!("{:?}", c.archive.store)
        };
        assert_eq!(s3.bucket, "downlink-archive");
        assert_eq!(s3.prefix, "station-1");
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        assert_eq!(s3.region, "garage");
        assert!(s3.allow_http);
        assert_eq!(
            s3.credentials_file.as_deref(),
            Some(Path::new("/etc/downlink/s3.ini"))
        );
        assert_eq!(
            c.archive.store.url(&c.archive.path),
            "s3://downlink-archive/station-1"
        );
        // No [archive.s3] at all: AWS S3 with the default region.
        let c = parse(&with_archive("store = \"s3://bucket\"")).unwrap();
        let ArchiveStore::S3(s3) = &c.archive.store else {
            panic!()
        };
        assert_eq!(
            (s3.prefix.as_str(), s3.region.as_str()),
            ("", DEFAULT_S3_REGION)
        );
        assert_eq!(s3.endpoint, None);
    }

    #[test]
    fn archive_store_problems_name_the_field_and_never_a_secret() {
        let cases: &[(&str, &str, &str)] = &[
            ("store = \"ftp://x\"", "archive.store", "must be"),
            ("store = \"file://relative\"", "archive.store", "absolute"),
            (
                "store = \"file:///var/lib/downlink/mirror\"",
                "archive.store",
                "inside archive.path",
            ),
            ("store = \"s3://Bad_Bucket\"", "archive.store", "valid bucket"),
            ("store = \"s3://AKIA:hunter2@bucket\"", "archive.store", "credentials"),
            ("store = \"s3://bucket/a//b\"", "archive.store", "prefix"),
            (
                "store = \"s3://bucket\"\n[archive.s3]\nendpoint = \"http://127.0.0.1:3900\"",
                "archive.s3.endpoint",
                "allow_http",
            ),
            (
                "store = \"s3://bucket\"\n[archive.s3]\nendpoint = \"https://u:hunter2@h\"",
                "archive.s3.endpoint",
                "credentials",
            ),
            (
                "store = \"s3://bucket\"\n[archive.s3]\nendpoint = \"https://h/bucket\"",
                "archive.s3.endpoint",
                "HOST",
            ),
            (
                "store = \"s3://bucket\"\n[archive.s3]\nendpoint = \"https://h\"\nallow_http = true",
                "archive.s3.allow_http",
                "no effect",
            ),
            (
                "store = \"s3://bucket\"\n[archive.s3]\nregion = \"eu west\"",
                "archive.s3.region",
                "must be",
            ),
            (
                "[archive.s3]\nregion = \"garage\"",
                "archive.s3",
                "no effect",
            ),
            (
                "store = \"s3://bucket\"\n[archive.s3]\nsecret_access_key = \"hunter2\"",
                "archive.s3.secret_access_key",
                "credentials never go in the configuration",
            ),
            (
                "store = \"s3://bucket\"\n[archive.s3]\naws_access_key_id = \"AKIA\"",
                "archive.s3.aws_access_key_id",
                "credentials never go in the configuration",
            ),
            (
                "store = \"s3://bucket\"\n[archive.s3]\nbucket = \"x\"",
                "archive.s3.bucket",
                "[archive.s3] takes endpoint",
            ),
        ];
        for (extra, path, says) in cases {
            let pr = problems(&with_archive(extra));
            let p = pr
                .iter()
                .find(|p| p.path == *path)
                .unwrap_or_else(|| panic!("{extra}: no problem at {path}: {pr:?}"));
            assert!(p.message.contains(says), "{extra}: {}", p.message);
            assert!(!p.message.contains("hunter2"), "{extra}: {}", p.message);
        }
    }

    #[test]
    fn s3_credentials_come_from_a_file_or_the_environment_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("creds");
        std::fs::write(
            &file,
            "[other]\naws_access_key_id = NOPE\n[default]\naws_access_key_id = GK123\naws_secret_access_key = hunter2\n",
        )
        .unwrap();
        let store = S3Store {
            bucket: "b".into(),
            prefix: String::new(),
            endpoint: None,
            region: DEFAULT_S3_REGION.into(),
            allow_http: false,
            credentials_file: Some(file.clone()),
        };
        let c = store.credentials().unwrap();
        assert_eq!((c.key_id.as_str(), c.secret.as_str()), ("GK123", "hunter2"));
        assert!(!format!("{c:?}").contains("hunter2"));
        std::fs::write(&file, "aws_access_key_id = GK123\n").unwrap();
        let e = store.credentials().unwrap_err();
        assert!(
            e.contains("aws_secret_access_key") && e.contains("creds"),
            "{e}"
        );
        // check_host names the field when the credentials are missing.
        let cfg = format!(
            "[archive]\npath = \"{}\"\nstore = \"s3://bucket\"\n[archive.s3]\ncredentials_file = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
            dir.path().join("a").display(),
            dir.path().join("missing").display()
        );
        let c = parse(&cfg).unwrap();
        match c.check_host(Path::new("x.toml")) {
            Err(ConfigError::Invalid { problems, .. }) => {
                assert!(
                    problems
                        .iter()
                        .any(|p| p.path == "archive.s3.credentials_file"
                            && p.message.contains("cannot read")),
                    "{problems:?}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}

#[cfg(test)]
mod http_enabled_tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, Path::new("/etc/downlink/downlink.toml"))
    }

    const INPUT: &str = "[[input]]\nname = \"xband\"\nlisten = \"udp://0.0.0.0:5000\"\n\
                         format = \"bits\"\nprofile = \"jpss\"\n";

    #[test]
    fn a_missing_http_table_is_the_default_listener() {
        let c = parse(&format!("[archive]\npath = \"/a\"\n{INPUT}")).unwrap();
        assert!(c.http.enabled);
        assert_eq!(c.http.listen.to_string(), DEFAULT_HTTP_LISTEN);
    }

    #[test]
    fn a_station_without_http() {
        let c = parse(&format!(
            "[archive]\npath = \"/a\"\n[http]\nenabled = false\n{INPUT}"
        ))
        .unwrap();
        assert!(!c.http.enabled);
    }

    #[test]
    fn disabled_http_refuses_its_other_keys_and_needs_an_input() {
        let Err(ConfigError::Invalid { problems, .. }) = parse(
            "[archive]\npath = \"/a\"\n[http]\nenabled = false\nlisten = \"127.0.0.1:1\"\n\
             tile_cache = \"1MiB\"\n",
        ) else {
            panic!("accepted");
        };
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        let all = text.join("\n");
        assert!(all.contains("http.enabled"), "{all}");
        assert!(all.contains("no [[input]]"), "{all}");
        assert!(
            all.contains("http.listen") && all.contains("has no effect"),
            "{all}"
        );
        assert!(all.contains("http.tile_cache"), "{all}");
        assert_eq!(problems.len(), 3, "{all}");
    }
}
