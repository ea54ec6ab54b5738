//! The monitored metrics, built from `[[monitoring.metrics]]` in `shipshape.toml` (or, for a
//! config without that list, the story's three from the deprecated per-metric keys: see
//! [`MonitoringConfig::metrics`]).

use shipshape_core::config::{Direction, DropStyle, MonitoringConfig};

use crate::alert::Cadence;
use crate::evaluate::{MetricPolicy, ModeRules};
use crate::judge::{DropKind, Rule};

/// The monitored metrics, in the config's order.
pub fn policies(config: &MonitoringConfig) -> Vec<MetricPolicy> {
    let significance = config.significance_test.then_some(config.significance.0);
    let sequential =
        (config.detector == shipshape_core::config::Detector::Sequential).then_some(crate::judge::Sequential {
            alpha: config.false_alarm_probability.0,
            design_effect: config.design_effect.map_or(1.0, |d| d.0),
            estimate: config.design_effect.is_none(),
        });
    let cadence = |mode: &shipshape_core::config::ModePolicy| Cadence {
        // The sequential test already accounts for repeated looks: one breach fires.
        consecutive_breaches: if sequential.is_some() { 1 } else { config.consecutive_breaches.0 },
        repeat_every: mode.notify_every.0.seconds(),
    };
    config
        .metrics()
        .into_iter()
        .map(|m| {
            let rule = |threshold: f64| Rule {
                kind: match m.drop_style() {
                    DropStyle::Relative => DropKind::Relative,
                    DropStyle::Absolute => DropKind::Absolute,
                },
                threshold,
                min_samples: u64::from(m.min_samples.as_ref().map_or(config.min_samples.0, |n| n.0)),
                significance,
                critical_multiple: m.critical_multiple.as_ref().map_or(config.critical_multiple.0, |c| c.0),
                lower_is_better: m.direction == Direction::Lower,
                sequential,
            };
            MetricPolicy {
                name: m.name.0.clone(),
                strategy: m.strategies.join(","),
                strategies: m.strategies.clone(),
                field: m.field.clone(),
                kind: m.kind,
                heightened: ModeRules {
                    window: m.heightened.window.0.seconds(),
                    rule: rule(m.heightened.threshold.0),
                    cadence: cadence(&config.heightened),
                },
                normal: ModeRules {
                    window: m.normal.window.0.seconds(),
                    rule: rule(m.normal.threshold.0),
                    cadence: cadence(&config.normal),
                },
            }
        })
        .collect()
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

/// The strategy patterns the policies watch (names or globs; events of other strategies are
/// stored and reported as unknown).
pub fn known_strategies(policies: &[MetricPolicy]) -> Vec<&str> {
    let mut names: Vec<&str> = policies.iter().flat_map(|p| p.strategies.iter().map(String::as_str)).collect();
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
