//! The archive's one error type: durable file writes, the catalog (SQLite and pgstac),
//! archive ids, search geometry and the TLE store.

use std::io;
use std::path::PathBuf;

use crate::catalog::layout::MAX_ID_LEN;

/// Every way an archive call can fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- files (lib.rs, tle.rs, the SQLite directory)
    /// An IO operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An earlier failure poisoned this writer.
    #[error("writer for {path} is poisoned by an earlier failure")]
    Poisoned {
        /// Final path of the poisoned writer.
        path: PathBuf,
    },

    // ---- catalog backends (catalog/{sqlite,pgstac,store}.rs)
    /// SQLite failed.
    #[error("sqlite: {context}: {source}")]
    Sqlite {
        /// What was being done.
        context: &'static str,
        /// The error.
        #[source]
        source: rusqlite::Error,
    },
    /// PostgreSQL failed (the pgstac backend).
    #[error("postgresql: {context}: {source}")]
    Postgres {
        /// What was being done.
        context: &'static str,
        /// The error.
        #[source]
        source: postgres::Error,
    },
    /// The pgstac database is not usable as it is (version, permissions).
    #[error("pgstac: {0}")]
    Pgstac(String),
    /// JSON (de)serialisation of stored documents.
    #[error("json: {context}: {source}")]
    Json {
        /// What was being done.
        context: &'static str,
        /// The error.
        #[source]
        source: serde_json::Error,
    },
    /// A stored or submitted document is not usable.
    #[error("invalid item {id:?}: {reason}")]
    InvalidItem {
        /// The item id.
        id: String,
        /// Why.
        reason: String,
    },
    /// The item names a collection that does not exist.
    #[error("no such collection {0:?}")]
    NoSuchCollection(String),
    /// Bad search parameters.
    #[error("invalid search parameter {param}: {reason}")]
    InvalidParams {
        /// Parameter name.
        param: &'static str,
        /// Why.
        reason: String,
    },
    /// The pagination token could not be decoded.
    #[error("invalid pagination token")]
    InvalidToken,
    /// An insert found the item id taken.
    #[error("item {id:?} already exists in collection {collection:?}")]
    ItemExists {
        /// Collection id.
        collection: String,
        /// Item id.
        id: String,
    },
    /// A catalog lock was poisoned by a panicking thread.
    #[error("catalog lock poisoned")]
    LockPoisoned,
    /// The database file the catalog had open is no longer at its path (its directory was
    /// deleted or moved): reads and writes are refused until the directory returns.
    #[error("catalog database {path} is gone ({reason}): refused until its directory returns")]
    Gone {
        /// The database path.
        path: String,
        /// What was found instead.
        reason: String,
    },

    // ---- archive ids (catalog/layout.rs)
    /// Empty id.
    #[error("{what} id is empty")]
    IdEmpty {
        /// "collection" or "item".
        what: &'static str,
    },
    /// Longer than [`MAX_ID_LEN`].
    #[error("{what} id is {len} bytes long (max {MAX_ID_LEN})")]
    IdTooLong {
        /// "collection" or "item".
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// A character outside `[A-Za-z0-9._-]`.
    #[error("{what} id {id:?} contains {ch:?} (allowed: A-Z a-z 0-9 . _ -)")]
    IdBadChar {
        /// "collection" or "item".
        what: &'static str,
        /// The id.
        id: String,
        /// The first offending character.
        ch: char,
    },
    /// `.`/`..` or a leading dot.
    #[error("{what} id {id:?} must not start with '.'")]
    IdLeadingDot {
        /// "collection" or "item".
        what: &'static str,
        /// The id.
        id: String,
    },

    // ---- search geometry (catalog/geom.rs)
    /// Not a GeoJSON geometry object we understand.
    #[error("unsupported or malformed GeoJSON geometry: {0}")]
    Geometry(String),

    // ---- TLE store (tle.rs)
    /// Bad element sets in an import; nothing stored.
    #[error("{}", .0.join("; "))]
    TleInvalid(Vec<String>),
}

impl Error {
    /// Whether this is the catalog database being unreachable (connection refused, lost,
    /// timed out), not a refusal of the request: worth retrying later.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Postgres { source, .. } => source.as_db_error().is_none(),
            _ => false,
        }
    }

    /// Whether the caller's request was at fault (bad parameters, token, geometry or id),
    /// as opposed to the archive failing.
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            Error::InvalidParams { .. }
                | Error::InvalidToken
                | Error::Geometry(_)
                | Error::IdEmpty { .. }
                | Error::IdTooLong { .. }
                | Error::IdBadChar { .. }
                | Error::IdLeadingDot { .. }
        )
    }

    /// Whether this is an archive id refused by the id rules.
    pub fn is_bad_id(&self) -> bool {
        matches!(
            self,
            Error::IdEmpty { .. }
                | Error::IdTooLong { .. }
                | Error::IdBadChar { .. }
                | Error::IdLeadingDot { .. }
        )
    }
}

/// The archive's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
