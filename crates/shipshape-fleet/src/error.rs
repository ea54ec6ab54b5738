//! The fleet's error type: an error of the release engine or the monitor below it, of the remote
//! store, of the registry, or a refusal (a policy that does not hold, a pointer another operator
//! moved first). Each maps to an [`ErrorKind`], which the binary turns into an exit code.

use shipshape_core::ErrorKind;

/// Result alias of the fleet.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every way a fleet operation can fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error of the release engine (a file, a manifest, a verification, a deploy).
    #[error(transparent)]
    Core(#[from] shipshape_core::Error),
    /// An error of the monitor (its database).
    #[error(transparent)]
    Monitor(#[from] shipshape_monitor::error::Error),
    /// The remote store failed or is unreachable.
    #[error("{store}: {action}: {message}")]
    Remote {
        /// The store, as configured (credentials are never part of it).
        store: String,
        /// What shipshape was doing.
        action: String,
        /// The store's message.
        message: String,
    },
    /// The registry failed or is unreachable.
    #[error("{registry}: {action}: {message}")]
    Registry {
        /// The registry, without its password.
        registry: String,
        /// What shipshape was doing.
        action: &'static str,
        /// The database's message.
        message: String,
    },
    /// What was fetched does not match what was signed, or a policy does not hold.
    #[error("{0}")]
    Refused(String),
    /// Someone else moved the pointer first (compare-and-swap lost): nothing was changed.
    #[error("{0}")]
    Conflict(String),
    /// Wrong input (a URL, a name, an option).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// The class of this error, which decides the exit code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Core(e) => e.kind(),
            Error::Monitor(e) => e.kind(),
            Error::Remote { .. } => ErrorKind::Io,
            Error::Registry { .. } => ErrorKind::Database,
            Error::Refused(_) => ErrorKind::CheckFailed,
            Error::Conflict(_) => ErrorKind::Locked,
            Error::Invalid(_) => ErrorKind::BadInput,
        }
    }
}
