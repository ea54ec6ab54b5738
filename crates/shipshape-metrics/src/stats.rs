//! Sufficient statistics of a set of outcome events.
//!
//! Every metric is a function of a few counts and sums, so a window's statistics are the sum of its
//! time buckets' and a rolling window costs O(1) per event: add the new bucket, subtract the one that
//! fell out. Returns are kept in fixed point (10⁻⁹ of a unit, squares in 10⁻¹⁸) in integers, which
//! makes `merge` and `subtract` exact — associative and invertible, with no floating-point drift —
//! however many times a window slides.

use serde::{Deserialize, Serialize};

use crate::event::{Event, Signal};

/// Fixed-point scale of returns: 1 = 10⁻⁹.
pub const RETURN_SCALE: f64 = 1e9;

/// Counts and sums over a set of events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Stats {
    /// Events with signal ≠ 0 (trades).
    pub trades: u64,
    /// Trades whose signal equals the outcome.
    pub hits: u64,
    /// Events with signal = 1.
    pub longs: u64,
    /// Events with signal = 1 and outcome = 1.
    pub long_wins: u64,
    /// Σ return over trades, in units of 10⁻⁹.
    pub return_sum: i128,
    /// Σ return² over trades, in units of 10⁻¹⁸.
    pub return_sum_squares: i128,
    /// Every event seen, trades or not.
    pub events: u64,
}

/// A return converted to fixed point (rounded to 10⁻⁹).
pub fn to_fixed(value: f64) -> i128 {
    (value * RETURN_SCALE).round() as i128
}

impl Stats {
    /// Statistics of one event.
    pub fn of(event: &Event) -> Stats {
        let mut stats = Stats::default();
        stats.add(event.signal, event.outcome, event.ret);
        stats
    }

    /// Add one event's contribution.
    pub fn add(&mut self, signal: Signal, outcome: Signal, ret: f64) {
        self.events += 1;
        if signal == Signal::Flat {
            return;
        }
        self.trades += 1;
        self.hits += u64::from(signal == outcome);
        if signal == Signal::Long {
            self.longs += 1;
            self.long_wins += u64::from(outcome == Signal::Long);
        }
        // Events are checked to |return| <= 1000 (event::MAX_ABS_RETURN), so these cannot overflow
        // for any realistic count; saturating keeps a caller that skipped the check from panicking.
        let fixed = to_fixed(ret);
        self.return_sum = self.return_sum.saturating_add(fixed);
        self.return_sum_squares = self.return_sum_squares.saturating_add(fixed.saturating_mul(fixed));
    }

    /// Add another set's statistics (the union of two disjoint sets).
    pub fn merge(&mut self, other: &Stats) {
        self.trades += other.trades;
        self.hits += other.hits;
        self.longs += other.longs;
        self.long_wins += other.long_wins;
        self.return_sum = self.return_sum.saturating_add(other.return_sum);
        self.return_sum_squares = self.return_sum_squares.saturating_add(other.return_sum_squares);
        self.events += other.events;
    }

    /// Remove a subset's statistics (a bucket leaving a rolling window). Saturates at zero counts
    /// if `other` was not a subset, rather than wrapping.
    pub fn subtract(&mut self, other: &Stats) {
        self.trades = self.trades.saturating_sub(other.trades);
        self.hits = self.hits.saturating_sub(other.hits);
        self.longs = self.longs.saturating_sub(other.longs);
        self.long_wins = self.long_wins.saturating_sub(other.long_wins);
        self.return_sum -= other.return_sum;
        self.return_sum_squares -= other.return_sum_squares;
        self.events = self.events.saturating_sub(other.events);
    }

    /// Mean return per trade (None without trades).
    pub fn mean_return(&self) -> Option<f64> {
        (self.trades > 0).then(|| self.return_sum as f64 / RETURN_SCALE / self.trades as f64)
    }

    /// Sample standard deviation of returns per trade (None with fewer than two trades).
    pub fn std_return(&self) -> Option<f64> {
        if self.trades < 2 {
            return None;
        }
        let n = self.trades as i128;
        // n·Σx² − (Σx)², exact in integers, then scaled: variance = that / (n(n−1)).
        let numerator = n * self.return_sum_squares - self.return_sum * self.return_sum;
        let variance = numerator.max(0) as f64 / (RETURN_SCALE * RETURN_SCALE) / (n * (n - 1)) as f64;
        Some(variance.sqrt())
    }
}

impl std::ops::Add for Stats {
    type Output = Stats;
    fn add(mut self, other: Stats) -> Stats {
        self.merge(&other);
        self
    }
}

impl std::iter::Sum for Stats {
    fn sum<I: Iterator<Item = Stats>>(iter: I) -> Stats {
        iter.fold(Stats::default(), |a, b| a + b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event_strategy() -> impl Strategy<Value = (Signal, Signal, f64)> {
        let signal = prop_oneof![Just(Signal::Short), Just(Signal::Flat), Just(Signal::Long)];
        (signal.clone(), signal, -0.2f64..0.2)
    }

    fn stats_of(events: &[(Signal, Signal, f64)]) -> Stats {
        let mut stats = Stats::default();
        for &(s, o, r) in events {
            stats.add(s, o, r);
        }
        stats
    }

    proptest! {
        /// Merging partial statistics equals computing over the union, exactly.
        #[test]
        fn merge_equals_union(events in prop::collection::vec(event_strategy(), 0..200), split in 0usize..200) {
            let split = split.min(events.len());
            let (a, b) = events.split_at(split);
            let mut merged = stats_of(a);
            merged.merge(&stats_of(b));
            prop_assert_eq!(merged, stats_of(&events));
        }

        /// Subtracting a prefix leaves exactly the suffix (a rolling window).
        #[test]
        fn subtract_inverts_merge(events in prop::collection::vec(event_strategy(), 0..200), split in 0usize..200) {
            let split = split.min(events.len());
            let mut window = stats_of(&events);
            window.subtract(&stats_of(&events[..split]));
            prop_assert_eq!(window, stats_of(&events[split..]));
        }

        /// Counts and moments agree with a naive computation.
        #[test]
        fn agrees_with_naive(events in prop::collection::vec(event_strategy(), 2..300)) {
            let stats = stats_of(&events);
            let trades: Vec<&(Signal, Signal, f64)> = events.iter().filter(|e| e.0 != Signal::Flat).collect();
            prop_assert_eq!(stats.trades as usize, trades.len());
            prop_assert_eq!(stats.hits as usize, trades.iter().filter(|e| e.0 == e.1).count());
            prop_assert_eq!(stats.longs as usize, events.iter().filter(|e| e.0 == Signal::Long).count());
            prop_assert_eq!(stats.long_wins as usize, events.iter().filter(|e| e.0 == Signal::Long && e.1 == Signal::Long).count());
            if trades.len() >= 2 {
                let n = trades.len() as f64;
                let mean = trades.iter().map(|e| e.2).sum::<f64>() / n;
                let var = trades.iter().map(|e| (e.2 - mean).powi(2)).sum::<f64>() / (n - 1.0);
                prop_assert!((stats.mean_return().unwrap() - mean).abs() < 1e-8);
                prop_assert!((stats.std_return().unwrap() - var.sqrt()).abs() < 1e-6, "{} vs {}", stats.std_return().unwrap(), var.sqrt());
            }
        }
    }

    #[test]
    fn flat_signals_count_as_events_not_trades() {
        let stats = stats_of(&[(Signal::Flat, Signal::Long, 0.5)]);
        assert_eq!((stats.events, stats.trades, stats.return_sum), (1, 0, 0));
        assert_eq!(stats.mean_return(), None);
    }
}
