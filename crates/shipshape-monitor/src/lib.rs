//! Post-deploy monitoring (work in progress, issue 6): the pure parts first.
//!
//! - [`judge`]: is a metric's value a breach of its baseline under the active policy — larger than
//!   the threshold *and* statistically significant for its sample size — and how severe.
//! - [`window`]: rolling windows over time buckets of statistics, O(log n) per event and per query.
//! - [`evaluate`]: the mode (heightened/normal) at a time, the window (never before the deploy), the
//!   metric over it and the verdict.
//! - [`alert`]: the alert state machine (inactive → pending → firing → resolved, plus
//!   insufficient-data) as pure code: evaluations in, transitions and notifications out, no I/O, no
//!   clock. Storage, ingestion, the scheduler and the sinks drive it from outside.

pub mod alert;
pub mod db;
pub mod evaluate;
pub mod judge;
pub mod monitor;
pub mod policy;
pub mod replay;
pub mod sinks;
pub mod window;
