//! The story's three monitored metrics, built from `[monitoring]` in `shipshape.toml`.

use shipshape_core::config::MonitoringConfig;
use shipshape_metrics::MetricKind;

use crate::alert::Cadence;
use crate::evaluate::{MetricPolicy, ModeRules};
use crate::judge::{DropKind, Rule};

/// The monitored metrics: intraday hit ratio, swing precision, intraday Sharpe.
pub fn policies(config: &MonitoringConfig) -> Vec<MetricPolicy> {
    let significance = config.significance_test.then_some(config.significance.0);
    let rule = |kind, threshold: f64| Rule {
        kind,
        threshold,
        min_samples: u64::from(config.min_samples.0),
        significance,
        critical_multiple: config.critical_multiple.0,
    };
    let cadence = |mode: &shipshape_core::config::ModePolicy| Cadence {
        consecutive_breaches: config.consecutive_breaches.0,
        repeat_every: mode.notify_every.0.seconds(),
    };
    let (h, n) = (&config.heightened, &config.normal);
    vec![
        MetricPolicy {
            name: "intraday_hit_ratio".into(),
            strategy: "intraday".into(),
            kind: MetricKind::HitRatio,
            heightened: ModeRules {
                window: h.intraday_hit_ratio_window.0.seconds(),
                rule: rule(DropKind::Relative, h.intraday_hit_ratio_drop.0),
                cadence: cadence(h),
            },
            normal: ModeRules {
                window: n.intraday_hit_ratio_window.0.seconds(),
                rule: rule(DropKind::Relative, n.intraday_hit_ratio_drop.0),
                cadence: cadence(n),
            },
        },
        MetricPolicy {
            name: "swing_precision".into(),
            strategy: "swing".into(),
            kind: MetricKind::Precision,
            heightened: ModeRules {
                window: h.swing_precision_window.0.seconds(),
                rule: rule(DropKind::Relative, h.swing_precision_drop.0),
                cadence: cadence(h),
            },
            normal: ModeRules {
                window: n.swing_precision_window.0.seconds(),
                rule: rule(DropKind::Relative, n.swing_precision_drop.0),
                cadence: cadence(n),
            },
        },
        MetricPolicy {
            name: "intraday_sharpe".into(),
            strategy: "intraday".into(),
            kind: MetricKind::Sharpe,
            heightened: ModeRules {
                window: h.intraday_hit_ratio_window.0.seconds(),
                rule: rule(DropKind::Absolute, h.intraday_sharpe_drop.0),
                cadence: cadence(h),
            },
            normal: ModeRules {
                window: n.intraday_hit_ratio_window.0.seconds(),
                rule: rule(DropKind::Absolute, n.intraday_sharpe_drop.0),
                cadence: cadence(n),
            },
        },
    ]
}

/// How long raw events are kept (`[retention] raw_events`; by default the longest window any
/// policy reads, normal or heightened, or the trailing baseline window, whichever is longest: no
/// evaluation reads further back, and the aggregates stay for charts and replay).
pub fn raw_event_retention(
    config: &MonitoringConfig,
    retention: &shipshape_core::config::RetentionConfig,
) -> crate::alert::Seconds {
    if let Some(kept) = &retention.raw_events {
        return kept.0.seconds();
    }
    policies(config)
        .iter()
        .flat_map(|p| [p.heightened.window, p.normal.window])
        .chain([config.baseline_window.0.seconds()])
        .max()
        .unwrap_or(0)
}

/// The strategies the policies watch (others are stored and reported as unknown).
pub fn known_strategies(policies: &[MetricPolicy]) -> Vec<&str> {
    let mut names: Vec<&str> = policies.iter().map(|p| p.strategy.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_story_defaults() {
        let policies = policies(&MonitoringConfig::default());
        let hit = &policies[0];
        assert_eq!((hit.heightened.window, hit.normal.window), (6 * 3600, 24 * 3600));
        assert_eq!((hit.heightened.rule.threshold, hit.normal.rule.threshold), (0.05, 0.10));
        assert_eq!((hit.heightened.cadence.repeat_every, hit.normal.cadence.repeat_every), (7200, 21600));
        assert_eq!(hit.heightened.cadence.consecutive_breaches, 3);
        let swing = &policies[1];
        assert_eq!((swing.heightened.window, swing.normal.window), (24 * 3600, 90 * 86400));
        let sharpe = &policies[2];
        assert_eq!((sharpe.heightened.rule.threshold, sharpe.normal.rule.threshold), (0.15, 0.25));
        assert_eq!(sharpe.heightened.rule.kind, DropKind::Absolute);
        assert_eq!(known_strategies(&policies), ["intraday", "swing"]);
    }
}
