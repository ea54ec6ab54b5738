//! `[canary]`: how a canary is judged and stepped (docs/canary.md). Every key has a default;
//! `shipshape canary start` flags override the step defaults for one canary.

use serde::{Deserialize, Serialize};

use crate::config::{Fraction, PositiveDuration, PositiveFloat};
use crate::infra::clock::Duration;

/// `[canary]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CanaryConfig {
    /// The candidate's capital shares in percent, step by step, ending at 100 (`--steps`).
    pub steps: Vec<u32>,
    /// The least time a step lasts: at least one full trading session (`--step-after`).
    pub step_after: PositiveDuration,
    /// The least candidate trades in a step before it may advance (`--min-trades`).
    pub min_trades: u64,
    /// The comparison's block: trades within a block are correlated, blocks much less.
    pub block: PositiveDuration,
    /// Confidence of the anytime-valid confidence sequence (0.95: α = 0.05).
    pub confidence: Fraction,
    /// The number of blocks the confidence sequence is tightest at.
    pub tightest_at: PositiveFloat,
    /// Abort when the candidate is worse than the stable by more than this, for ratios (hit
    /// ratio, precision; 0.02 = 2 points) …
    pub harm_margin_ratio: PositiveFloat,
    /// … and for return metrics (Sharpe, mean return, win/loss), in their unit.
    pub harm_margin_return: PositiveFloat,
    /// Step up only when the candidate is shown no worse than this, for ratios …
    pub noninferiority_margin_ratio: PositiveFloat,
    /// … and for return metrics.
    pub noninferiority_margin_return: PositiveFloat,
    /// For a producer's field metrics (`field_mean`, `field_rate`): harm when worse by more than
    /// this share of the stable release's value (0.1 = 10 %; `direction = "lower"` respected) …
    pub harm_margin_field: PositiveFloat,
    /// … and non-inferior when no worse than this share.
    pub noninferiority_margin_field: PositiveFloat,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        CanaryConfig {
            steps: vec![10, 25, 50, 100],
            step_after: PositiveDuration(Duration::hours(4)),
            min_trades: 200,
            block: PositiveDuration(Duration::hours(1)),
            confidence: Fraction(0.95),
            tightest_at: PositiveFloat(24.0),
            harm_margin_ratio: PositiveFloat(0.02),
            harm_margin_return: PositiveFloat(0.05),
            noninferiority_margin_ratio: PositiveFloat(0.02),
            noninferiority_margin_return: PositiveFloat(0.05),
            harm_margin_field: PositiveFloat(0.1),
            noninferiority_margin_field: PositiveFloat(0.1),
        }
    }
}

/// Check steps: increasing percentages from 1 to 100, the last 100, at least one below it.
pub fn check_steps(steps: &[u32]) -> std::result::Result<(), String> {
    if steps.is_empty() || steps.iter().any(|s| *s == 0 || *s > 100) {
        return Err("each step is a percentage from 1 to 100".into());
    }
    if steps.windows(2).any(|w| w[0] >= w[1]) {
        return Err("steps must increase".into());
    }
    if steps.last() != Some(&100) {
        return Err("the last step must be 100 (the candidate becomes the stable release)".into());
    }
    if steps.len() < 2 {
        return Err("give at least one step below 100".into());
    }
    Ok(())
}
