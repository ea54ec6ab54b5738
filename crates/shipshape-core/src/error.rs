//! The library's one error type.
//!
//! Every variant is written for the person at the terminal: it names the file (and the line and key
//! where there is one) and says what is wrong, in one line. [`Error::kind`] sorts errors into the
//! classes the binary turns into distinct exit codes, so scripts can tell "your input is wrong" from
//! "a check failed" from "someone else holds the lock".

use std::io;
use std::path::{Path, PathBuf};

/// What class of failure an [`Error`] is; the binary maps each to its own exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The user's input is wrong: a malformed or unsafe file, path, flag or value.
    BadInput,
    /// A verification or gate did not hold (hash mismatch, tampering, broken chain).
    CheckFailed,
    /// Another process holds the workspace lock.
    Locked,
    /// The operating system refused something that is not the user's input (disk full, I/O error).
    Io,
    /// A database failed (busy past its timeout, corrupt, full): not the user's input, not a file.
    /// The release engine has no database; the monitor's errors (`shipshape_monitor::error`) use it.
    Database,
    /// A bug in shipshape: something it guarantees did not hold. Please report it.
    Internal,
    /// A deploy or rollback is unfinished: it passed its commit point (production serves the new
    /// release) but could not record it, or it was interrupted; `shipshape recover` finishes it.
    Unfinished,
}

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every way a shipshape operation can fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be parsed, or parsed but holds a wrong value, at a known place.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong, naming the key where there is one.
        message: String,
    },
    /// Input that is wrong as a whole, or where no line applies.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file or directory concerned.
        path: PathBuf,
        /// What is wrong and, where possible, what to do.
        message: String,
    },
    /// A path that would leave the workspace or target it must stay inside.
    #[error("{}: unsafe path `{path}`: {reason}", origin.display())]
    UnsafePath {
        /// Where the path came from (a config file, a manifest, the workspace).
        origin: PathBuf,
        /// The offending path as written.
        path: String,
        /// Which rule refused it.
        reason: String,
    },
    /// The user asked for something that cannot be done in this state (no manifest yet, …).
    #[error("{0}")]
    Usage(String),
    /// A check failed; the message lists what did not hold.
    #[error("{0}")]
    Check(String),
    /// The workspace lock is held by someone else.
    #[error("{} is held by {holder}; wait for it to finish or, if that process is gone, run the command again", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it (pid, host, command, since when), as recorded in the lock file.
        holder: String,
    },
    /// A deploy or rollback left its journal open: it passed its commit point but could not
    /// record it, or it was undone but could not say so. The message says which release production
    /// serves and that `shipshape recover` finishes the transaction.
    #[error("{0}")]
    Unfinished(String),
    /// A bug in shipshape (a worker thread panicked, an invariant did not hold).
    #[error("internal error (a bug in shipshape, please report it): {0}")]
    Internal(String),
    /// An operating-system error on a file.
    #[error("{}: {action}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What shipshape was doing ("reading", "creating", …).
        action: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The class of this error, which decides the exit code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Parse { .. } | Error::Invalid { .. } | Error::UnsafePath { .. } | Error::Usage(_) => {
                ErrorKind::BadInput
            }
            Error::Check(_) => ErrorKind::CheckFailed,
            Error::Locked { .. } => ErrorKind::Locked,
            Error::Internal(_) => ErrorKind::Internal,
            Error::Unfinished(_) => ErrorKind::Unfinished,
            Error::Io { source, .. } => match source.kind() {
                io::ErrorKind::NotFound
                | io::ErrorKind::PermissionDenied
                | io::ErrorKind::InvalidData
                | io::ErrorKind::IsADirectory
                | io::ErrorKind::NotADirectory => ErrorKind::BadInput,
                _ => ErrorKind::Io,
            },
        }
    }

    /// An [`Error::Invalid`] for `path`.
    pub fn invalid(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Invalid { path: path.as_ref().to_path_buf(), message: message.into() }
    }

    /// An [`Error::Parse`] for `path` at a 1-based line and column.
    pub fn parse(path: impl AsRef<Path>, line: usize, column: usize, message: impl Into<String>) -> Self {
        Error::Parse { path: path.as_ref().to_path_buf(), line, column, message: message.into() }
    }
}

/// Attach a path and an action to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl AsRef<Path>, action: &'static str) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl AsRef<Path>, action: &'static str) -> Result<T> {
        self.map_err(|source| Error::Io { path: path.as_ref().to_path_buf(), action, source })
    }
}

/// 1-based (line, column) of a byte offset in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_from_one() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        assert_eq!(line_column(text, text.find('=').unwrap_or(0)), (1, 3));
        assert_eq!(line_column(text, 10), (2, 4));
        assert_eq!(line_column(text, 999), (3, 1));
    }

    #[test]
    fn io_errors_on_user_files_are_bad_input() {
        let err: Result<()> = Err(io::Error::from(io::ErrorKind::NotFound)).at("x", "reading");
        assert_eq!(err.unwrap_err().kind(), ErrorKind::BadInput);
        let err: Result<()> = Err(io::Error::from(io::ErrorKind::StorageFull)).at("x", "writing");
        assert_eq!(err.unwrap_err().kind(), ErrorKind::Io);
    }
}
