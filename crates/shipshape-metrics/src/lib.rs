//! Strategy metrics for shipshape: the one piece of arithmetic that judges a release before deploy
//! (the validation backtest) and after it (the monitor), so both use exactly the same numbers.
//!
//! - [`event`]: the outcome event (one resolved prediction or trade) and its JSON-lines and CSV forms.
//! - [`stats`]: additive sufficient statistics that can be merged and subtracted exactly.
//! - [`metric`]: hit ratio, precision and Sharpe with their sample counts and confidence intervals.
//!
//! Nothing here reads files or clocks; callers bring bytes and times.

pub mod event;
pub mod metric;
pub mod stats;

pub use event::{Event, EventError, Signal};
pub use metric::{MetricKind, MetricValue, SharpeUnit};
pub use stats::{FieldStats, Stats};
