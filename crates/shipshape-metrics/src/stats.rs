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
    /// Trades with a positive return.
    #[serde(default)]
    pub wins: u64,
    /// Trades with a negative return.
    #[serde(default)]
    pub losses: u64,
    /// Σ return over winning trades (10⁻⁹).
    #[serde(default)]
    pub win_sum: i128,
    /// Σ return² over winning trades (10⁻¹⁸).
    #[serde(default)]
    pub win_sum_squares: i128,
    /// Σ |return| over losing trades (10⁻⁹).
    #[serde(default)]
    pub loss_sum: i128,
    /// Σ return² over losing trades (10⁻¹⁸).
    #[serde(default)]
    pub loss_sum_squares: i128,
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
        let square = fixed.saturating_mul(fixed);
        self.return_sum = self.return_sum.saturating_add(fixed);
        self.return_sum_squares = self.return_sum_squares.saturating_add(square);
        if fixed > 0 {
            self.wins += 1;
            self.win_sum = self.win_sum.saturating_add(fixed);
            self.win_sum_squares = self.win_sum_squares.saturating_add(square);
        } else if fixed < 0 {
            self.losses += 1;
            self.loss_sum = self.loss_sum.saturating_add(-fixed);
            self.loss_sum_squares = self.loss_sum_squares.saturating_add(square);
        }
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
        self.wins += other.wins;
        self.losses += other.losses;
        self.win_sum = self.win_sum.saturating_add(other.win_sum);
        self.win_sum_squares = self.win_sum_squares.saturating_add(other.win_sum_squares);
        self.loss_sum = self.loss_sum.saturating_add(other.loss_sum);
        self.loss_sum_squares = self.loss_sum_squares.saturating_add(other.loss_sum_squares);
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
        self.wins = self.wins.saturating_sub(other.wins);
        self.losses = self.losses.saturating_sub(other.losses);
        self.win_sum -= other.win_sum;
        self.win_sum_squares -= other.win_sum_squares;
        self.loss_sum -= other.loss_sum;
        self.loss_sum_squares -= other.loss_sum_squares;
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

/// Sufficient statistics of one producer field (`"metrics": {"slippage_bps": 1.4}`) over a set
/// of events: count, sum, sum of squares and how many were non-zero. Floating point (the fields
/// are the producer's own units), so merging is exact up to rounding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct FieldStats {
    /// Events carrying the field.
    pub n: u64,
    /// Σ value.
    pub sum: f64,
    /// Σ value².
    pub sum_squares: f64,
    /// Events where it was not zero.
    pub nonzero: u64,
}

impl FieldStats {
    /// Add one value.
    pub fn add(&mut self, value: f64) {
        self.n += 1;
        self.sum += value;
        self.sum_squares += value * value;
        self.nonzero += u64::from(value != 0.0);
    }

    /// Add another set's statistics.
    pub fn merge(&mut self, other: &FieldStats) {
        self.n += other.n;
        self.sum += other.sum;
        self.sum_squares += other.sum_squares;
        self.nonzero += other.nonzero;
    }

    /// Mean and sample variance (`None` with fewer than two values).
    pub fn moments(&self) -> Option<(f64, f64)> {
        if self.n < 2 {
            return None;
        }
        let n = self.n as f64;
        let mean = self.sum / n;
        let variance = ((self.sum_squares - n * mean * mean) / (n - 1.0)).max(0.0);
        Some((mean, variance))
    }
}

/// Mean and sample variance from a count, a sum and a sum of squares in fixed point.
fn moments(n: u64, sum: i128, squares: i128) -> Option<(f64, f64)> {
    if n < 2 {
        return None;
    }
    let count = n as i128;
    let mean = sum as f64 / RETURN_SCALE / n as f64;
    let numerator = count.saturating_mul(squares).saturating_sub(sum.saturating_mul(sum));
    let variance = numerator.max(0) as f64 / (RETURN_SCALE * RETURN_SCALE) / (count * (count - 1)) as f64;
    Some((mean, variance))
}

impl Stats {
    /// The win/loss ratio — mean winning return over mean losing |return| — and its standard
    /// error by the delta method: Var(W̄/L̄) ≈ (W̄/L̄)² (s²_W/(n_W W̄²) + s²_L/(n_L L̄²)). `None`
    /// with fewer than two wins or two losses.
    pub fn win_loss(&self) -> Option<(f64, f64)> {
        let (win_mean, win_var) = moments(self.wins, self.win_sum, self.win_sum_squares)?;
        let (loss_mean, loss_var) = moments(self.losses, self.loss_sum, self.loss_sum_squares)?;
        if win_mean <= 0.0 || loss_mean <= 0.0 {
            return None;
        }
        let ratio = win_mean / loss_mean;
        let relative = win_var / (self.wins as f64 * win_mean * win_mean)
            + loss_var / (self.losses as f64 * loss_mean * loss_mean);
        Some((ratio, ratio * relative.sqrt()))
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
            let wins: Vec<f64> = trades.iter().map(|e| to_fixed(e.2)).filter(|f| *f > 0).map(|f| f as f64 / RETURN_SCALE).collect();
            let losses: Vec<f64> = trades.iter().map(|e| to_fixed(e.2)).filter(|f| *f < 0).map(|f| -(f as f64) / RETURN_SCALE).collect();
            prop_assert_eq!((stats.wins as usize, stats.losses as usize), (wins.len(), losses.len()));
            if wins.len() >= 2 && losses.len() >= 2 {
                let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
                let (ratio, se) = stats.win_loss().unwrap();
                prop_assert!((ratio - mean(&wins) / mean(&losses)).abs() < 1e-6 * ratio.max(1.0), "{} vs {}", ratio, mean(&wins) / mean(&losses));
                prop_assert!(se.is_finite() && se >= 0.0);
            }
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
