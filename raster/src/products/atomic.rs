//! Write-to-temporary-then-rename helper shared by all writers: the writer (our PNG encoder,
//! GDAL) writes and closes a uniquely named hidden file; [`TempOutput::commit`] fsyncs it,
//! renames it onto the final name and fsyncs the directory, as the pass archive does.

use crate::Error;
use std::path::{Path, PathBuf};

use super::Result;

/// A hidden temporary path next to the destination. Dropped without
/// [`TempOutput::commit`], it deletes the temporary file (and a GDAL
/// `.aux.xml` sidecar, if one appeared).
pub(crate) struct TempOutput {
    tmp: PathBuf,
    dst: PathBuf,
    committed: bool,
}

impl TempOutput {
    /// `dir/.NAME.tmp-PID-N.EXT` for `dst = dir/NAME.EXT`.
    pub(crate) fn new(dst: &Path) -> Result<Self> {
        let file_name = dst
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::BadPath(dst.to_path_buf()))?;
        let (stem, ext) = match file_name.rsplit_once('.') {
            Some((s, e)) if !s.is_empty() => (s, format!(".{e}")),
            _ => (file_name, String::new()),
        };
        let tmp_name = format!(".{stem}.tmp-{}{ext}", crate::unique_suffix());
        let tmp = dst.with_file_name(tmp_name);
        Ok(Self {
            tmp,
            dst: dst.to_path_buf(),
            committed: false,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.tmp
    }

    /// Fsyncs the (closed) temporary file, renames it onto the destination (atomic replace) and
    /// fsyncs the directory.
    pub(crate) fn commit(mut self) -> Result<()> {
        crate::sync_file(&self.tmp).map_err(durable("syncing", &self.tmp))?;
        std::fs::rename(&self.tmp, &self.dst).map_err(|source| Error::Io {
            context: "renaming temporary output onto",
            path: self.dst.clone(),
            source,
        })?;
        self.committed = true;
        let aux = aux_path(&self.tmp);
        if aux.exists() {
            crate::sync_file(&aux).map_err(durable("syncing", &aux))?;
            std::fs::rename(&aux, aux_path(&self.dst)).map_err(|source| Error::Io {
                context: "renaming GDAL sidecar",
                path: aux,
                source,
            })?;
        }
        crate::sync_dir(&self.dst).map_err(durable("syncing the directory of", &self.dst))
    }
}

impl Drop for TempOutput {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: the file may never have been created.
            let _ = std::fs::remove_file(&self.tmp);
            let _ = std::fs::remove_file(aux_path(&self.tmp));
        }
    }
}

/// A storage durability error as a product error about `path`.
fn durable(context: &'static str, path: &Path) -> impl FnOnce(archive::Error) -> Error {
    let path = path.to_path_buf();
    move |e| Error::Io {
        context,
        path,
        source: std::io::Error::other(e),
    }
}

fn aux_path(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".aux.xml");
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_name_is_hidden_sibling_with_same_extension() {
        let t = TempOutput::new(Path::new("/x/y/warped.tif")).unwrap();
        let name = t.path().file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(".warped.tmp-"), "{name}");
        assert!(name.ends_with(".tif"), "{name}");
        assert_eq!(t.path().parent(), Some(Path::new("/x/y")));
    }

    #[test]
    fn uncommitted_temp_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let dst = dir.path().join("a.png");
        let tmp_path;
        {
            let t = TempOutput::new(&dst).unwrap();
            std::fs::write(t.path(), b"partial").unwrap();
            tmp_path = t.path().to_path_buf();
        }
        assert!(!tmp_path.exists());
        assert!(!dst.exists());
    }
}
