//! `[validate]`: the promotion checklist (`release/checklist.yaml`) and the dry-run backtest.
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::config::{Fraction, PositiveDuration, PositiveFloat, parse_toml};
use crate::error::{Error, Result, line_column};
use crate::infra::clock::Duration;
use crate::infra::paths::check_relative;

/// `[backtest]`: either score an events file of the candidate's predictions (`events`) or run an
/// external command that prints `{"metrics": {"<name>": <number>, ...}}` (`command`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BacktestConfig {
    /// Events file (JSON lines or CSV) relative to the workspace.
    #[serde(default)]
    pub events: Option<Spanned<String>>,
    /// External backtest command, run with `sh -c` in the workspace.
    #[serde(default)]
    pub command: Option<String>,
    /// Time limit for the external command.
    #[serde(default = "default_backtest_timeout")]
    pub timeout: PositiveDuration,
    /// Two-sided confidence of the reported intervals.
    #[serde(default = "default_confidence")]
    pub confidence: Fraction,
    /// Annualise Sharpe by √periods (e.g. 252); absent means per trade.
    #[serde(default)]
    pub sharpe_periods: Option<PositiveFloat>,
    /// Skip malformed event lines (counted and reported) instead of failing.
    #[serde(default)]
    pub skip_bad: bool,
}

fn default_backtest_timeout() -> PositiveDuration {
    PositiveDuration(Duration(jiff::SignedDuration::from_mins(10)))
}

fn default_confidence() -> Fraction {
    Fraction(0.95)
}

/// `[validate]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateConfig {
    /// A TOML file holding the `[[checklist]]` items instead of this file.
    #[serde(default)]
    pub checklist_file: Option<String>,
}

/// One promotion-checklist item.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ChecklistItem {
    /// A command that must exit 0 within its timeout.
    Command {
        /// What the item checks, for people.
        name: String,
        /// Run with `sh -c` in the workspace.
        command: String,
        /// Time limit (default 5 minutes).
        #[serde(default)]
        timeout: Option<PositiveDuration>,
    },
    /// A file that must exist (and, optionally, not be empty).
    File {
        /// What the item checks.
        name: String,
        /// Path relative to the workspace.
        path: String,
        /// Also require at least one byte.
        #[serde(default)]
        non_empty: bool,
    },
    /// A backtest metric compared with `min` and/or `max`.
    Gate {
        /// What the item checks.
        name: String,
        /// Metric name: `hit_ratio`, `precision`, `sharpe`, or one prefixed by a strategy
        /// (`intraday_hit_ratio`); with an external backtest, any name it reports.
        metric: String,
        /// Lowest acceptable value.
        #[serde(default)]
        min: Option<f64>,
        /// Highest acceptable value.
        #[serde(default)]
        max: Option<f64>,
    },
}

impl ChecklistItem {
    /// The item's name.
    pub fn name(&self) -> &str {
        match self {
            ChecklistItem::Command { name, .. }
            | ChecklistItem::File { name, .. }
            | ChecklistItem::Gate { name, .. } => name,
        }
    }

    /// `command`, `file` or `gate`.
    pub fn kind(&self) -> &'static str {
        match self {
            ChecklistItem::Command { .. } => "command",
            ChecklistItem::File { .. } => "file",
            ChecklistItem::Gate { .. } => "gate",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChecklistFile {
    checklist: Vec<ChecklistItem>,
}

/// Read a checklist file (`[[checklist]]` items) strictly, and check its items.
pub fn load_checklist(path: &Path, backtest: Option<&BacktestConfig>) -> Result<Vec<ChecklistItem>> {
    let text = crate::infra::atomic::read_text(path)?;
    let file: ChecklistFile = parse_toml(path, &text)?;
    check_checklist(path, &text, &file.checklist, backtest)?;
    Ok(file.checklist)
}

pub(crate) fn line_of(text: &str, needle: &str) -> (usize, usize) {
    text.find(needle).map_or((1, 1), |offset| line_column(text, offset))
}

/// Check checklist items beyond their syntax: gates name a metric the backtest can produce and
/// have a bound, paths are safe, names are unique.
pub fn check_checklist(
    path: &Path,
    text: &str,
    items: &[ChecklistItem],
    backtest: Option<&BacktestConfig>,
) -> Result<()> {
    let mut names = std::collections::HashSet::new();
    for (index, item) in items.iter().enumerate() {
        let key = format!("checklist[{index}] ({:?})", item.name());
        if item.name().trim().is_empty() {
            return Err(Error::invalid(path, format!("checklist[{index}]: `name` must not be empty")));
        }
        if !names.insert(item.name().to_string()) {
            let (line, column) = line_of(text, &format!("\"{}\"", item.name()));
            return Err(Error::parse(
                path,
                line,
                column,
                format!("{key}: two checklist items are named {:?}", item.name()),
            ));
        }
        match item {
            ChecklistItem::Command { command, .. } if command.trim().is_empty() => {
                return Err(Error::invalid(path, format!("{key}: `command` must not be empty")));
            }
            ChecklistItem::File { path: file, .. } => {
                if let Err(rule) = check_relative(file) {
                    let (line, column) = line_of(text, file);
                    return Err(Error::parse(path, line, column, format!("{key}: unsafe path `{file}`: {rule}")));
                }
            }
            ChecklistItem::Gate { metric, min, max, .. } => {
                let (line, column) = line_of(text, &format!("\"{metric}\""));
                if min.is_none() && max.is_none() {
                    return Err(Error::parse(path, line, column, format!("{key}: a gate needs `min`, `max` or both")));
                }
                if [min, max].into_iter().flatten().any(|v| !v.is_finite()) {
                    return Err(Error::parse(
                        path,
                        line,
                        column,
                        format!("{key}: `min` and `max` must be finite numbers"),
                    ));
                }
                match backtest {
                    None => {
                        return Err(Error::parse(
                            path,
                            line,
                            column,
                            format!(
                                "{key}: a gate needs a [backtest] section (events = \"...\" or command = \"...\") in shipshape.toml"
                            ),
                        ));
                    }
                    Some(backtest)
                        if backtest.events.is_some() && shipshape_metrics::MetricKind::split_name(metric).is_none() =>
                    {
                        return Err(Error::parse(
                            path,
                            line,
                            column,
                            format!(
                                "{key}: unknown metric `{metric}`: the built-in backtest reports hit_ratio, precision and sharpe, \
                                 each alone or prefixed by a strategy (e.g. intraday_hit_ratio)"
                            ),
                        ));
                    }
                    Some(_) => {}
                }
            }
            ChecklistItem::Command { .. } => {}
        }
    }
    Ok(())
}
