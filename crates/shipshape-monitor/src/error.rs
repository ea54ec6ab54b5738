//! The monitor's error type: an error of the release engine below it (a file, a manifest, a
//! rollback), or of its own database. SQLite's errors keep their cause; their kind is
//! [`ErrorKind::Database`], which the binary answers with its own exit code (75), distinct from an
//! I/O error on the user's files (74).

use std::path::{Path, PathBuf};

use shipshape_core::ErrorKind;

/// SQLite's error type, as [`Error::Database`] carries it.
pub use rusqlite::Error as SqliteError;

/// Result alias of the monitor.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every way the monitor can fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error of the release engine (reading the workspace, its files, a rollback).
    #[error(transparent)]
    Core(#[from] shipshape_core::Error),
    /// The monitoring database failed (one line: SQLite's message is part of it).
    #[error("{}: {action}: {cause}", path.display())]
    Database {
        /// The database file (`:memory:` for a replay).
        path: PathBuf,
        /// What the monitor was doing.
        action: &'static str,
        /// SQLite's error.
        cause: rusqlite::Error,
    },
}

impl Error {
    /// The class of this error, which decides the exit code and the HTTP status.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Core(error) => error.kind(),
            Error::Database { .. } => ErrorKind::Database,
        }
    }

    /// A wrong input as a whole (see [`shipshape_core::Error::invalid`]).
    pub fn invalid(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Core(shipshape_core::Error::invalid(path, message))
    }

    /// A wrong input at a line and column (see [`shipshape_core::Error::parse`]).
    pub fn parse(path: impl AsRef<Path>, line: usize, column: usize, message: impl Into<String>) -> Self {
        Error::Core(shipshape_core::Error::parse(path, line, column, message))
    }

    /// An operating-system error on a file.
    pub fn io(path: impl AsRef<Path>, action: &'static str, source: std::io::Error) -> Self {
        Error::Core(shipshape_core::Error::Io { path: path.as_ref().to_path_buf(), action, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_errors_are_their_own_kind_and_name_the_database() {
        let error = Error::Database {
            path: PathBuf::from("data/monitoring/monitor.db"),
            action: "recording an evaluation",
            cause: rusqlite::Error::InvalidQuery,
        };
        assert_eq!(error.kind(), ErrorKind::Database);
        assert!(error.to_string().starts_with("data/monitoring/monitor.db: recording an evaluation: "), "{error}");
        let core = Error::invalid("shipshape.toml", "bad");
        assert_eq!(core.kind(), ErrorKind::BadInput);
        assert_eq!(core.to_string(), "shipshape.toml: bad");
    }
}
