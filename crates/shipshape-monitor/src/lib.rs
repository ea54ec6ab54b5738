//! Post-deploy monitoring: outcome events in, rolling-window metrics judged against the release's
//! baseline, alerts through a state machine, notifications out, and an optional auto-rollback.
//!
//! # Modules, bottom to top
//!
//! Pure (no I/O, no clock):
//! - [`window`]: rolling windows over time buckets of statistics, O(log n) per event and per query.
//! - [`judge`]: is a metric's value a breach of its baseline under the active policy — larger than
//!   the threshold *and* statistically significant for its sample size — and how severe.
//! - [`alert`]: the alert state machine (inactive → pending → firing → resolved, plus
//!   insufficient-data): evaluations in, transitions and notifications out.
//! - [`policy`]: the monitored metrics, built from `[monitoring]` in `shipshape.toml`.
//! - [`evaluate`]: the mode (heightened/normal) at a time, the window (never before the deploy), the
//!   metric over it and the verdict.
//!
//! Storage and drivers:
//! - [`error`]: the monitor's error type — the engine's errors, or the database's.
//! - [`db`]: the SQLite database (`data/monitoring/monitor.db`) and all of its SQL — [`db::events`]
//!   (idempotent ingestion, time buckets, windows), [`db::alerts`] (the state machine's memory, alert
//!   episodes, transitions, evaluations, one pass's writes in one transaction, auto-rollback claims),
//!   [`db::outbox`] (notifications until delivered).
//! - [`sinks`]: notification payloads and delivery with retries.
//! - [`monitor`]: [`monitor::Monitor`] orchestrates — reading event files, one evaluation pass,
//!   auto-rollback through `shipshape_core::deploy::rollback` — with no SQL of its own.
//! - [`replay`]: the monitor over history in an in-memory database.

pub mod alert;
pub mod calibrate;
pub mod canary;
pub mod db;
pub mod error;
pub mod evaluate;
pub mod judge;
pub mod monitor;
pub mod policy;
pub mod replay;
pub mod rollout;
pub mod silence;
pub mod sinks;
pub mod time_json;
pub mod window;
