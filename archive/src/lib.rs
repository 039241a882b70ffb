//! # archive — what Downlink keeps, and how it keeps it
//!
//! - durable, atomic file publication ([`AtomicFile`], [`write_atomic`], [`StagingDir`]), used
//!   for every file Downlink writes;
//! - the raw pass archive and its crash recovery ([`pass`]), the pass record ([`record`]) and the
//!   paged index of pass records ([`pass_index`]);
//! - the TLE store ([`tle`]);
//! - the STAC catalog contract and its embedded SQLite backend ([`catalog`]).
//!
//! Nothing here calls GDAL: raster work (products, import, tiles, change detection) is the
//! `raster` crate's.
//!
//! Durability follows the fjall pattern: write to a temporary file in the destination directory,
//! `fsync` it, `rename` it over the final name, then `fsync` the directory. A failed write or
//! fsync *poisons* the writer: every later call fails instead of pretending, and the final name
//! is never created. Temporary names are unique per call ([`unique_suffix`]: process id and a
//! counter), so two writers of one name never share a temporary file.
//!
//! A set of files that must appear together (a pass's products) is built in a [`StagingDir`]
//! (`DST.tmp-PID-N`, a sibling of `DST`) and published whole by one directory rename; what a
//! crash leaves behind is removed with [`remove_stale_staging`] at the next start.

pub mod cadu_refs;
pub mod catalog;
mod error;
pub mod pass;
pub mod pass_index;
pub mod pass_store;
pub mod record;
pub mod tle;

pub use error::{Error, Result};

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// A file that appears under its final name only once completely written and synced.
#[derive(Debug)]
pub struct AtomicFile {
    final_path: PathBuf,
    temp_path: PathBuf,
    file: Option<io::BufWriter<File>>,
    poisoned: bool,
    committed: bool,
}

impl AtomicFile {
    /// Starts writing `path` (its directory must exist).
    pub fn create(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::with_buffer(path, 1 << 20)
    }

    /// Like [`AtomicFile::create`] with a write buffer of `capacity` bytes.
    pub fn with_buffer(path: impl AsRef<Path>, capacity: usize) -> Result<Self, Error> {
        let final_path = path.as_ref().to_owned();
        let name = final_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp_path = final_path.with_file_name(format!(".{name}.tmp-{}", unique_suffix()));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp_path)
            .map_err(io_err("create", &temp_path))?;
        Ok(Self {
            final_path,
            temp_path,
            file: Some(io::BufWriter::with_capacity(capacity, file)),
            poisoned: false,
            committed: false,
        })
    }

    /// Final path.
    pub fn path(&self) -> &Path {
        &self.final_path
    }

    /// Appends bytes.
    pub fn write_all(&mut self, data: &[u8]) -> Result<(), Error> {
        let Some(f) = self.file.as_mut().filter(|_| !self.poisoned) else {
            return Err(Error::Poisoned {
                path: self.final_path.clone(),
            });
        };
        f.write_all(data).map_err(|e| {
            self.poisoned = true;
            io_err("write", &self.temp_path)(e)
        })
    }

    /// Flushes, fsyncs, renames into place and fsyncs the directory.
    pub fn commit(mut self) -> Result<PathBuf, Error> {
        let Some(buf) = self.file.take().filter(|_| !self.poisoned) else {
            return Err(Error::Poisoned {
                path: self.final_path.clone(),
            });
        };
        let file = buf
            .into_inner()
            .map_err(|e| io_err("flush", &self.temp_path)(e.into_error()))?;
        file.sync_all().map_err(io_err("fsync", &self.temp_path))?;
        drop(file);
        fs::rename(&self.temp_path, &self.final_path)
            .map_err(io_err("rename", &self.final_path))?;
        self.committed = true;
        sync_dir(&self.final_path)?;
        Ok(self.final_path.clone())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            // Never committed (dropped, poisoned, or a failed commit): remove the temporary file;
            // the final name was never touched.
            let _ = fs::remove_file(&self.temp_path);
        }
    }
}

/// Fsyncs the directory containing `path`, making a rename in it durable.
pub fn sync_dir(path: &Path) -> Result<(), Error> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

/// Writes a whole file atomically.
pub fn write_atomic(path: impl AsRef<Path>, data: &[u8]) -> Result<PathBuf, Error> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(data)?;
    f.commit()
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// `PID-N`: a suffix for temporary names, unique among the calls of this process (and, by the
/// process id, among live processes).
pub fn unique_suffix() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Fsyncs one file (data and metadata), e.g. one a library such as GDAL wrote and closed.
pub fn sync_file(path: &Path) -> Result<(), Error> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err("fsync", path))
}

/// Fsyncs every file under `dir` (recursively), then every directory, `dir` last.
pub fn sync_tree(dir: &Path) -> Result<(), Error> {
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io_err("stat", &path))?;
        if kind.is_dir() {
            sync_tree(&path)?;
        } else if kind.is_file() {
            sync_file(&path)?;
        }
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

/// `dir/NAME.TAG-PID-N` for `dst = dir/NAME`.
fn sibling(dst: &Path, tag: &str) -> PathBuf {
    let name = dst
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dst.with_file_name(format!("{name}.{tag}-{}", unique_suffix()))
}

/// A directory whose files appear under their final directory name all at once: built under
/// `DST.tmp-PID-N` next to `DST`, then [`StagingDir::publish`]ed — every file and directory
/// fsynced, one rename onto `DST` (a previous `DST` is moved aside to `DST.old-PID-N` first and
/// removed after), the parent fsynced. A reader sees no `DST`, the old one, or the whole new one.
/// Dropped unpublished (an error, a panic), the staging directory is removed; after a crash
/// [`remove_stale_staging`] removes it at the next start.
#[derive(Debug)]
pub struct StagingDir {
    dst: PathBuf,
    path: PathBuf,
    published: bool,
}

impl StagingDir {
    /// Creates the staging directory for `dst` (`dst`'s parent must exist).
    pub fn create(dst: impl AsRef<Path>) -> Result<Self, Error> {
        let dst = dst.as_ref().to_owned();
        let path = sibling(&dst, "tmp");
        fs::create_dir(&path).map_err(io_err("create directory", &path))?;
        Ok(Self {
            dst,
            path,
            published: false,
        })
    }

    /// Where to write the files.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fsyncs everything staged and renames it onto the final name; returns the final path.
    pub fn publish(mut self) -> Result<PathBuf, Error> {
        sync_tree(&self.path)?;
        let old = match fs::symlink_metadata(&self.dst) {
            Ok(_) => {
                let old = sibling(&self.dst, "old");
                fs::rename(&self.dst, &old).map_err(io_err("move aside", &self.dst))?;
                Some(old)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("stat", &self.dst)(e)),
        };
        if let Err(e) = fs::rename(&self.path, &self.dst) {
            if let Some(old) = &old {
                let _ = fs::rename(old, &self.dst);
            }
            return Err(io_err("rename", &self.dst)(e));
        }
        self.published = true;
        sync_dir(&self.dst)?;
        if let Some(old) = old {
            // Best effort: a leftover is removed by `remove_stale_staging` at the next start.
            let _ = fs::remove_dir_all(&old);
        }
        Ok(self.dst.clone())
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        if !self.published {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Removes what interrupted [`StagingDir`]s of `dst` left next to it (`DST.tmp-*`, `DST.old-*`);
/// returns how many. Call it only while no `StagingDir` of `dst` is alive (at start).
pub fn remove_stale_staging(dst: &Path) -> Result<usize, Error> {
    let (Some(dir), Some(name)) = (dst.parent(), dst.file_name()) else {
        return Ok(0);
    };
    let name = name.to_string_lossy();
    let (tmp, old) = (format!("{name}.tmp-"), format!("{name}.old-"));
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err("list", dir)(e)),
    };
    let mut removed = 0;
    for entry in rd {
        let entry = entry.map_err(io_err("list", dir))?;
        let n = entry.file_name().to_string_lossy().into_owned();
        if !(n.starts_with(&tmp) || n.starts_with(&old)) {
            continue;
        }
        let path = entry.path();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        }
        .map_err(io_err("remove", &path))?;
        removed += 1;
    }
    if removed > 0 {
        sync_dir(dst)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_publishes_and_drop_discards() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        let mut f = AtomicFile::create(&p).unwrap();
        f.write_all(b"hello ").unwrap();
        f.write_all(b"world").unwrap();
        assert!(!p.exists(), "final name must not exist before commit");
        f.commit().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"hello world");

        let q = dir.path().join("b.bin");
        {
            let mut g = AtomicFile::create(&q).unwrap();
            g.write_all(b"partial").unwrap();
        }
        assert!(!q.exists());
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(
            leftovers.len(),
            1,
            "temp file must be removed: {leftovers:?}"
        );
    }

    #[test]
    fn temp_names_are_unique_per_call() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("same.bin");
        let a = AtomicFile::create(&p).unwrap();
        let b = AtomicFile::create(&p).unwrap();
        assert_ne!(a.temp_path, b.temp_path);
        b.commit().unwrap();
        drop(a);
        assert!(
            p.exists(),
            "the committed writer's file must survive the other's drop"
        );
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn staging_dir_publishes_whole_and_replaces() {
        let root = tempfile::tempdir().unwrap();
        let dst = root.path().join("products");
        let s = StagingDir::create(&dst).unwrap();
        fs::write(s.path().join("a.tif"), b"a").unwrap();
        fs::create_dir(s.path().join("sub")).unwrap();
        fs::write(s.path().join("sub/b"), b"b").unwrap();
        assert!(!dst.exists(), "nothing visible before publish");
        assert_eq!(s.publish().unwrap(), dst);
        assert_eq!(fs::read(dst.join("sub/b")).unwrap(), b"b");
        assert_eq!(names(root.path()), ["products"]);

        // A second publish replaces the whole set: no file of the old one survives.
        let s = StagingDir::create(&dst).unwrap();
        fs::write(s.path().join("c.tif"), b"c").unwrap();
        s.publish().unwrap();
        assert_eq!(names(&dst), ["c.tif"]);
        assert_eq!(names(root.path()), ["products"]);
    }

    #[test]
    fn unpublished_staging_is_removed_and_stale_ones_are_cleaned() {
        let root = tempfile::tempdir().unwrap();
        let dst = root.path().join("products");
        {
            let s = StagingDir::create(&dst).unwrap();
            fs::write(s.path().join("half.tif"), b"x").unwrap();
        }
        assert!(names(root.path()).is_empty());
        // What a crash leaves: a staging dir, a moved-aside old set; unrelated names stay.
        fs::create_dir(root.path().join("products.tmp-1-0")).unwrap();
        fs::write(root.path().join("products.tmp-1-0/x"), b"x").unwrap();
        fs::create_dir(root.path().join("products.old-1-1")).unwrap();
        fs::write(root.path().join("products.json"), b"{}").unwrap();
        fs::create_dir(&dst).unwrap();
        assert_eq!(remove_stale_staging(&dst).unwrap(), 2);
        assert_eq!(names(root.path()), ["products", "products.json"]);
        assert_eq!(remove_stale_staging(&dst).unwrap(), 0);
        assert_eq!(
            remove_stale_staging(&root.path().join("none/products")).unwrap(),
            0
        );
    }

    #[test]
    fn missing_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = AtomicFile::create(dir.path().join("nope/x.bin")).unwrap_err();
        assert!(err.to_string().contains("create"), "{err}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn write_failure_poisons() {
        // /dev/full accepts opens and fails every write with ENOSPC.
        let mut f = AtomicFile {
            final_path: PathBuf::from("/nonexistent/never"),
            // Never the real /dev/full: Drop removes the temp path of an uncommitted file.
            temp_path: PathBuf::from("/nonexistent/tmp"),
            file: Some(io::BufWriter::with_capacity(
                0,
                OpenOptions::new().write(true).open("/dev/full").unwrap(),
            )),
            poisoned: false,
            committed: false,
        };
        assert!(f.write_all(&[0u8; 4096]).is_err());
        assert!(matches!(f.write_all(b"x"), Err(Error::Poisoned { .. })));
        assert!(matches!(f.commit(), Err(Error::Poisoned { .. })));
    }

    #[test]
    fn failed_commit_removes_its_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("taken");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("x"), b"occupied").unwrap();
        let mut f = AtomicFile::create(&target).unwrap();
        f.write_all(b"data").unwrap();
        let err = f.commit().unwrap_err();
        assert!(err.to_string().contains("rename"), "{err}");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("taken")]);
    }
}
