//! Rolling windows over time buckets of sufficient statistics.
//!
//! Events are added to fixed-width time buckets (a minute, say) of [`Stats`]; the buckets sit in a
//! Fenwick tree, so adding an event — also a late one, into a bucket long past — and asking for any
//! window `[from, to)` each cost O(log n) in the number of buckets, never a rescan of raw events.
//! This works because statistics merge and subtract exactly (integer sums): a window is the
//! difference of two prefix sums.
//!
//! A series starts at an origin (the deploy of the release it judges): windows never reach before it,
//! so a release is never judged on its predecessor's events.

use shipshape_metrics::Stats;

use crate::alert::Seconds;

/// Time-bucketed statistics from `origin`, in buckets of `width` seconds.
#[derive(Debug, Clone)]
pub struct Series {
    origin: Seconds,
    width: Seconds,
    tree: Vec<Stats>, // Fenwick tree, 1-based
}

impl Series {
    /// An empty series from `origin` in buckets of `width` seconds (at least 1).
    pub fn new(origin: Seconds, width: Seconds) -> Series {
        Series { origin, width: width.max(1), tree: vec![Stats::default()] }
    }

    /// Where the series starts.
    pub fn origin(&self) -> Seconds {
        self.origin
    }

    fn bucket(&self, at: Seconds) -> Option<usize> {
        (at >= self.origin).then(|| ((at - self.origin) / self.width) as usize)
    }

    /// Add statistics observed at `at`; `false` (and nothing added) before the origin.
    pub fn add(&mut self, at: Seconds, stats: &Stats) -> bool {
        let Some(bucket) = self.bucket(at) else { return false };
        let mut index = bucket + 1;
        if self.tree.len() <= index {
            self.grow(index + 1);
        }
        while index < self.tree.len() {
            self.tree[index].merge(stats);
            index += index & index.wrapping_neg();
        }
        true
    }

    /// Grow to at least `len` slots, keeping the Fenwick invariants (each new slot holds the sum of
    /// its range, computed from the prefix sums already stored).
    fn grow(&mut self, len: usize) {
        let target = len.next_power_of_two().max(2);
        let old = self.tree.len();
        self.tree.resize(target, Stats::default());
        for index in old..target {
            // Slot `index` covers (index - lowbit, index]: prefix(index - 1) - prefix(index - lowbit).
            let low = index & index.wrapping_neg();
            let mut sum = self.prefix_raw(index - 1);
            sum.subtract(&self.prefix_raw(index - low));
            self.tree[index] = sum;
        }
    }

    fn prefix_raw(&self, mut index: usize) -> Stats {
        let mut sum = Stats::default();
        index = index.min(self.tree.len() - 1);
        while index > 0 {
            sum.merge(&self.tree[index]);
            index -= index & index.wrapping_neg();
        }
        sum
    }

    /// Statistics of the buckets starting in `[from, to)` (clamped to the origin).
    pub fn window(&self, from: Seconds, to: Seconds) -> Stats {
        let from = from.max(self.origin);
        if to <= from {
            return Stats::default();
        }
        let first = ((from - self.origin) / self.width) as usize;
        let end = ((to - self.origin + self.width - 1) / self.width) as usize;
        let mut total = self.prefix_raw(end);
        total.subtract(&self.prefix_raw(first));
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use shipshape_metrics::Signal;

    fn one(signal: Signal, outcome: Signal, ret: f64) -> Stats {
        let mut stats = Stats::default();
        stats.add(signal, outcome, ret);
        stats
    }

    #[test]
    fn windows_never_reach_before_the_origin() {
        let mut series = Series::new(1000, 60);
        assert!(!series.add(999, &one(Signal::Long, Signal::Long, 0.01)));
        assert!(series.add(1000, &one(Signal::Long, Signal::Long, 0.01)));
        assert_eq!(series.window(0, 2000).trades, 1);
        assert_eq!(series.window(0, 1000).trades, 0);
    }

    #[test]
    fn late_events_land_in_their_bucket() {
        let mut series = Series::new(0, 60);
        series.add(10_000, &one(Signal::Long, Signal::Long, 0.01));
        series.add(30, &one(Signal::Long, Signal::Short, -0.01)); // late, early bucket
        assert_eq!(series.window(0, 60).hits, 0);
        assert_eq!(series.window(0, 60).trades, 1);
        assert_eq!(series.window(60, 20_000).hits, 1);
    }

    proptest! {
        /// Any window equals the naive sum of the events whose bucket starts inside it.
        #[test]
        fn windows_equal_naive_sums(
            events in prop::collection::vec((0i64..50_000, 0u8..3, 0u8..3, -100i64..100), 0..300),
            queries in prop::collection::vec((0i64..60_000, 0i64..60_000), 1..20),
        ) {
            let signal = |v: u8| [Signal::Short, Signal::Flat, Signal::Long][v as usize];
            let mut series = Series::new(0, 60);
            for &(at, s, o, r) in &events {
                series.add(at, &one(signal(s), signal(o), r as f64 / 1000.0));
            }
            for &(a, b) in &queries {
                let (from, to) = (a.min(b), a.max(b));
                let first = from / 60;
                let end = (to + 59) / 60;
                let naive: Stats = events
                    .iter()
                    .filter(|(at, ..)| at / 60 >= first && at / 60 < end)
                    .map(|&(_, s, o, r)| one(signal(s), signal(o), r as f64 / 1000.0))
                    .sum();
                prop_assert_eq!(series.window(from, to), naive);
            }
        }
    }
}
