//! shipshape beyond one machine.
//!
//! - [`remote`]: the remote store (an S3-compatible bucket or a shared directory, through
//!   `object_store`): `publish` uploads a release's objects and signed records by hash, `fetch`
//!   downloads and checks them against the signed manifest.
//! - [`registry`]: environments, desired-release pointers (compare-and-swap), hosts, history and
//!   release status, over PostgreSQL or an embedded SQLite file.
//! - [`agent`]: the pull agent on each host: desired release → fetch → verify against the host's
//!   own trust root → apply with the deploy engine → report.
//! - [`promote`]: pointer moves with their policy: promotion after a soak, environment rollback to
//!   the last known good release.
//! - [`overview`]: every environment's desired release and every host's observed state, for
//!   status, the dashboard and `/metrics`.
//! - [`error`]: the fleet's error type and its exit-code kinds.
//!
//! The single-machine mode needs none of this: without `[fleet]` in `shipshape.toml` nothing here
//! runs.

pub mod agent;
pub mod error;
pub mod overview;
pub mod promote;
pub mod registry;
pub mod remote;
