//! shipshape's release engine: everything between a workspace on disk and a target directory
//! production reads. Plain library code — no command-line parsing, no HTTP; the binary, the
//! dashboard and the monitor are thin drivers of the functions here.
//!
//! # Modules, bottom to top
//!
//! Each module imports only modules listed above it (and no two modules import each other):
//!
//! - [`error`]: the one error type, its [`ErrorKind`]s (bad input, failed check, lock held, I/O,
//!   database, internal bug), each mapped by the binary to its own exit code.
//! - [`infra`]: plumbing with no knowledge of releases — crash-safe writes ([`infra::atomic`]),
//!   SHA-256 ([`infra::hash`]), locks, the injectable clock, child commands, git, confined paths,
//!   strict YAML and its parse cache, the content-addressed object store, the current user, a small
//!   HTTP client.
//! - [`config`]: `shipshape.toml`, strictly checked; [`scaffold`]: what `shipshape init` writes.
//! - [`layout`]: the [`layout::Workspace`] and the one owner of every path under `release/` and
//!   `data/`.
//! - [`model`]: the on-disk schemas only — ids, manifest, audit bundle, validation record, approvals
//!   file, policy, registry records, journal records and target state, anti-rollback state.
//! - [`events`]: reading outcome-event files (JSON lines, CSV) in parallel blocks.
//! - [`registry`]: the active release, the history, and the analytics computed from it.
//! - [`trust`]: what decides trust — `allowed_signers`, OpenPGP keys, the pure judge of approvals,
//!   the anti-rollback state.
//! - [`pipeline`]: the steps before deploy — audit → validate → manifest → verify → approve
//!   (verify reads the registry: what was deployed raises the anti-rollback floor).
//! - [`deploy`]: the transaction engine — target, plan, journal, copy and symlink modes, recovery,
//!   rollback, failpoints — with the two whole flows [`deploy::deploy()`] and [`deploy::rollback()`].
//!
//! # Files and their owners
//!
//! | file | written by | schema |
//! |---|---|---|
//! | `shipshape.toml` | the user (`init` writes a start) | [`config`] |
//! | `release/audit_<ts>/bundle.yaml` | [`pipeline::audit`] | [`model::audit`] |
//! | `release/audit_<ts>/validation.yaml` | [`pipeline::validate`] | [`model::validation`] |
//! | `release/manifests/<id>.yaml` | [`pipeline::manifest`] | [`model::manifest`] |
//! | `release/manifests/<id>.approvals.yaml` | [`pipeline::approve`] | [`model::approvals`] |
//! | `release/policy.yaml`, `release/allowed_signers` | the team (reviewed commits) | [`model::policy`], [`trust::allowed_signers`] |
//! | `release/store/` | [`infra::store`] (parse cache: [`infra::yaml`]) | content-addressed |
//! | `release/journal/` | [`deploy::journal`] | [`model::journal`] |
//! | `release/state/anti_rollback.yaml` | [`trust::anti_rollback`] | [`model::anti_rollback`] |
//! | `data/monitoring/releases/` | [`registry`] | [`model::registry`] |
//! | `<target>/.shipshape/` | [`deploy::target`], [`deploy::state`] | [`model::journal`] |

pub mod canary;
pub mod config;
pub mod deploy;
pub mod error;
pub mod events;
pub mod infra;
pub mod layout;
pub mod model;
pub mod pipeline;
pub mod registry;
pub mod scaffold;
pub mod trust;

pub use error::{Error, ErrorKind, Result};
