//! The daemon library's one error type: serve start-up, replay, the pass plot, the catalog
//! backend, archive items, change-alert runs, the pass merge and product jobs. Binaries
//! (`main` and its subcommands) wrap it in `anyhow` for the command line; the library does not.

use std::io;
use std::path::PathBuf;

/// Every way a daemon library call can fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- shared
    /// The archive (catalog, ids, durable writes) refused or failed.
    #[error(transparent)]
    Archive(#[from] archive::Error),
    /// Raster work (products, imports, change detection) failed.
    #[error(transparent)]
    Raster(#[from] raster::Error),
    /// An OS error; a [`Error::Step`] around it says what was being done.
    #[error(transparent)]
    Os(#[from] io::Error),
    /// JSON (de)serialisation.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// The decoder refused a profile or input format.
    #[error(transparent)]
    Decoder(#[from] decoder::Error),
    /// A step of a longer job failed; `step` says which.
    #[error("{step}: {source}")]
    Step {
        /// What was being done.
        step: String,
        /// What failed in it.
        #[source]
        source: Box<Error>,
    },
    /// The `[catalog]` section cannot be used (URL, password file, database version).
    #[error("{0}")]
    CatalogConfig(String),
    /// An archive item or product set is not what its listing says.
    #[error("{0}")]
    Item(String),
    /// A change-alert run's inputs are not usable (bands, datetimes, scenes).
    #[error("{0}")]
    AlertsInput(String),
    /// Copies of a pass cannot be merged.
    #[error("{0}")]
    Merge(String),
    /// A product job cannot run on this pass.
    #[error("{0}")]
    ProductJob(String),
    /// `downlink archive migrate` cannot start (store, archive, lock).
    #[error("{0}")]
    Migrate(String),

    // ---- serve startup
    /// A socket could not be bound.
    #[error("input {input}: cannot bind {addr}: {source}")]
    Bind {
        /// Input name.
        input: String,
        /// Address.
        addr: String,
        /// OS error.
        source: std::io::Error,
    },
    /// Archive directory problems.
    #[error("archive {path}: {source}")]
    ArchiveDir {
        /// Path.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// HTTP listener.
    #[error("http {addr}: {source}")]
    Http {
        /// Address.
        addr: String,
        /// OS error.
        source: std::io::Error,
    },
    /// A reload that needs a restart.
    #[error("{0}")]
    NeedsRestart(String),

    // ---- replay
    /// `--rate` could not be parsed or is out of range.
    #[error("invalid rate {input:?}: {reason}")]
    Rate {
        /// The text given.
        input: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// `--to` could not be parsed.
    #[error("invalid target {input:?}: {reason}")]
    Target {
        /// The text given.
        input: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// Any other argument out of range.
    #[error("invalid argument: {0}")]
    Argument(String),
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    // ---- the pass plot
    /// A plotters backend or font error.
    #[error("drawing the pass plot: {0}")]
    PlotDraw(String),
    /// PNG encoding of the plot failed.
    #[error("encoding the pass plot: {0}")]
    PlotEncode(#[from] image::ImageError),
}

impl Error {
    /// The innermost error under any [`Error::Step`] wrappers.
    pub fn root(&self) -> &Error {
        let mut e = self;
        while let Error::Step { source, .. } = e {
            e = source;
        }
        e
    }
}

/// The daemon library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Says which step failed, as [`Error::Step`] (the typed counterpart of `anyhow::Context`).
pub trait Context<T> {
    /// Wraps an error with a fixed step name.
    fn context(self, step: &str) -> Result<T>;
    /// Wraps an error with a step name built only on failure.
    fn with_context(self, step: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, step: &str) -> Result<T> {
        self.map_err(|e| Error::Step {
            step: step.to_owned(),
            source: Box::new(e.into()),
        })
    }

    fn with_context(self, step: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::Step {
            step: step(),
            source: Box::new(e.into()),
        })
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, step: &str) -> Result<T> {
        self.ok_or_else(|| Error::Item(step.to_owned()))
    }

    fn with_context(self, step: impl FnOnce() -> String) -> Result<T> {
        self.ok_or_else(|| Error::Item(step()))
    }
}
