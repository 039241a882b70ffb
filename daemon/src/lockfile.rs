//! Advisory lock files (`flock`), held while the returned file stays open: the merge lock of a
//! passes directory (exclusive for a merge, shared for the products of a merged pass) and the
//! archive's migration lock.

use std::fs::File;
use std::path::Path;

use rustix::fs::{flock, FlockOperation};

use crate::error::{Context as _, Result};

/// Opens (creating) the lock file `path`.
fn open(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// Takes `path` exclusively without waiting: `None` while another holder has it.
pub fn try_exclusive(path: &Path) -> Result<Option<File>> {
    let f = open(path)?;
    match flock(&f, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(f)),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(None),
        Err(e) => {
            Err(std::io::Error::from(e)).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// Takes `path` exclusively (`shared`: shared), waiting for other holders.
pub fn wait(path: &Path, shared: bool) -> Result<File> {
    let f = open(path)?;
    let op = if shared {
        FlockOperation::LockShared
    } else {
        FlockOperation::LockExclusive
    };
    flock(&f, op)
        .map_err(std::io::Error::from)
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(f)
}
