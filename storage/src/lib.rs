//! # storage — Downlink's archive
//!
//! Today: durable, atomic file publication ([`AtomicFile`]), used for every file Downlink writes
//! (decoded frames, per-APID packet files). The georeferenced archive (COG, catalog) builds on it.
//!
//! Durability follows the fjall pattern: write to a temporary file in the destination directory,
//! `fsync` it, `rename` it over the final name, then `fsync` the directory. A failed write or
//! fsync *poisons* the writer: every later call fails instead of pretending, and the final name
//! is never created.

pub mod catalog;
pub mod landmask;
pub mod products;
pub mod tiles;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Errors of the storage crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An IO operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// An earlier failure poisoned this writer.
    #[error("writer for {path} is poisoned by an earlier failure")]
    Poisoned {
        /// Final path of the poisoned writer.
        path: PathBuf,
    },
}

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
        let temp_path = final_path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
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
