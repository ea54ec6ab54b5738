//! shipshape's release engine.
//!
//! Everything here is plain library code: no command-line parsing, no HTTP. The binary and the
//! web server are thin shells that resolve their arguments into calls on these modules.
//!
//! - [`config`]: `shipshape.toml`, strictly checked.
//! - [`workspace`]: finding the workspace and its `release/` layout.
//! - [`paths`]: relative paths that cannot leave their root.
//! - [`hash`], [`store`]: SHA-256 and the content-addressed object store.
//! - [`audit`], [`manifest`], [`verify`]: the release pipeline's first steps.
//! - [`atomic`], [`lock`], [`clock`], [`git`], [`yaml`]: the plumbing they share.

pub mod allowed_signers;
pub mod analytics;
pub mod anti_rollback;
pub mod approvals;
pub mod atomic;
pub mod audit;
pub mod clock;
pub mod command;
pub mod config;
pub mod deploy;
pub mod error;
pub mod events;
pub mod git;
pub mod hash;
pub mod http;
pub mod lock;
pub mod manifest;
pub mod openpgp;
pub mod paths;
pub mod policy;
pub mod registry;
pub mod scaffold;
pub mod store;
pub mod validate;
pub mod verify;
pub mod workspace;
pub mod yaml;

pub use error::{Error, ErrorKind, Result};
