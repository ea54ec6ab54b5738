//! `shipshape.toml`: loading, strict checking, and the defaults `init` writes.
//!
//! The file is parsed strictly: unknown keys, wrong types and out-of-range values are errors that
//! name the file, line, column and dotted key (`shipshape.toml:31:28: monitoring.heightened.intraday_hit_ratio_drop: …`).
//! Range checks live in the value types ([`Fraction`], [`PositiveDuration`], …) so they fail inside
//! deserialization, where the parser still knows the position. Glob entries keep their spans so a
//! glob that matches nothing can later be reported at its line.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use toml::Spanned;

use crate::error::{Error, Result, line_column};
use crate::infra::clock::Duration;
use crate::infra::paths::check_relative;

/// The config file's name.
pub const CONFIG_FILE: &str = "shipshape.toml";

/// The commented config `shipshape init` writes; its values are the defaults (a test checks that).
pub const CONFIG_TEMPLATE: &str = include_str!("../templates/shipshape.toml");

/// A loaded, checked `shipshape.toml`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its text, for positions in later errors (globs that match nothing).
    pub text: String,
    /// `[release]`.
    pub release: ReleaseConfig,
    /// `[artifacts.<kind>]`, in file order.
    pub artifacts: Vec<ArtifactKind>,
    /// `[monitoring]`.
    pub monitoring: MonitoringConfig,
    /// `[backtest]`: the dry-run backtest `validate` runs.
    pub backtest: Option<BacktestConfig>,
    /// `[validate]`.
    pub validate: ValidateConfig,
    /// `[[checklist]]`: the promotion checklist (or `[validate] checklist_file`).
    pub checklist: Vec<ChecklistItem>,
    /// `[approvals]`.
    pub approvals: ApprovalsConfig,
    /// `[deploy]`, when the workspace deploys somewhere.
    pub deploy: Option<DeployConfig>,
}

/// How files reach production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeployMode {
    /// Files at their paths in the target, each renamed over atomically.
    Copy,
    /// Each release materialised once under `.shipshape/releases/<id>/`, `current` switched by rename.
    Symlink,
}

impl DeployMode {
    /// The name `shipshape.toml` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            DeployMode::Copy => "copy",
            DeployMode::Symlink => "symlink",
        }
    }
}

/// A post-deploy check: a command that must exit 0 after the switch, or the deploy is rolled back.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostDeployCheck {
    /// What it checks.
    pub name: String,
    /// Run with `sh -c` in the workspace; `SHIPSHAPE_TARGET` and `SHIPSHAPE_RELEASE_ID` are set.
    pub command: String,
    /// Time limit (default 5 minutes).
    #[serde(default)]
    pub timeout: Option<PositiveDuration>,
}

/// `[deploy]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployConfig {
    /// The directory production reads (absolute, or relative to the workspace).
    pub target: String,
    /// `copy` (default) or `symlink`.
    #[serde(default = "default_mode")]
    pub mode: DeployMode,
    /// Commands run after the switch; any failure rolls the deploy back.
    #[serde(default)]
    pub post_deploy_checks: Vec<PostDeployCheck>,
}

fn default_mode() -> DeployMode {
    DeployMode::Copy
}

/// `[approvals]`: where the approval policy and the signers live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalsConfig {
    /// The policy file, relative to the workspace.
    pub policy: String,
    /// The OpenSSH allowed_signers file, relative to the workspace.
    pub allowed_signers: String,
    /// A directory of armored OpenPGP public keys (`*.asc`), relative to the workspace.
    pub pgp_keys: String,
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        ApprovalsConfig {
            policy: "release/policy.yaml".into(),
            allowed_signers: "release/allowed_signers".into(),
            pgp_keys: "release/pgp_keys".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    release: ReleaseConfig,
    artifacts: Kinds,
    #[serde(default)]
    monitoring: MonitoringConfig,
    #[serde(default)]
    backtest: Option<BacktestConfig>,
    #[serde(default)]
    validate: ValidateConfig,
    #[serde(default)]
    checklist: Vec<ChecklistItem>,
    #[serde(default)]
    approvals: ApprovalsConfig,
    #[serde(default)]
    deploy: Option<DeployConfig>,
}

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

fn line_of(text: &str, needle: &str) -> (usize, usize) {
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

/// `[release]`: how manifests are made.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReleaseConfig {
    /// The environment manifests are made for; each has its own sequence and hash chain.
    pub environment: Slug,
    /// How long a manifest stays deployable.
    pub manifest_expiry: PositiveDuration,
    /// Recorded as deployer when `--deployer` is not given; empty means the `USER` environment variable.
    pub deployer: String,
}

impl Default for ReleaseConfig {
    fn default() -> Self {
        ReleaseConfig {
            environment: Slug("production".into()),
            manifest_expiry: PositiveDuration(Duration::hours(7 * 24)),
            deployer: String::new(),
        }
    }
}

/// One artifact kind: the files it covers.
#[derive(Debug, Clone)]
pub struct ArtifactKind {
    /// The kind's name (`configs`, `models`, …).
    pub name: String,
    /// Globs of files to include, relative to the workspace, with their positions in the file.
    pub include: Vec<Spanned<String>>,
    /// Globs of files to leave out.
    pub exclude: Vec<Spanned<String>>,
    /// Where each file's version is written: a path pattern in which `{path}` stands for the
    /// artifact's path (e.g. `{path}.version`); the first line of that file is the version.
    pub version_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKind {
    include: Vec<Spanned<String>>,
    #[serde(default)]
    exclude: Vec<Spanned<String>>,
    #[serde(default)]
    version_file: Option<Spanned<String>>,
}

/// The artifact kinds in file order (a map whose order matters: it is the manifest's order).
#[derive(Debug)]
struct Kinds(Vec<(String, RawKind)>);

impl<'de> Deserialize<'de> for Kinds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct KindsVisitor;
        impl<'de> Visitor<'de> for KindsVisitor {
            type Value = Kinds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of artifact kinds, e.g. [artifacts.configs]")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Kinds, A::Error> {
                let mut kinds = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    if let Err(reason) = check_slug(&name) {
                        return Err(de::Error::custom(format!("artifact kind `{name}`: {reason}")));
                    }
                    let kind: RawKind = map.next_value()?;
                    kinds.push((name, kind));
                }
                Ok(Kinds(kinds))
            }
        }
        deserializer.deserialize_map(KindsVisitor)
    }
}

/// `[monitoring]`: the post-deploy watch. Defaults are the story's.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitoringConfig {
    /// How long heightened monitoring lasts after a deploy.
    pub heightened_hours: PositiveInt,
    /// How often metrics are evaluated.
    pub eval_interval: PositiveDuration,
    /// How many consecutive breaching evaluations fire an alert.
    pub consecutive_breaches: PositiveInt,
    /// Fewer samples than this in a window is `insufficient_data`, not healthy.
    pub min_samples: PositiveInt,
    /// One-sided confidence a drop must be significant at (0.95).
    pub significance: Fraction,
    /// `false` turns the significance test off (any drop past the threshold counts).
    pub significance_test: bool,
    /// A breach is critical when its drop is at least this many times the threshold.
    pub critical_multiple: AtLeastOne,
    /// Where each metric's baseline comes from: the release's validation backtest, or the trailing
    /// `baseline_window` of events before its deploy.
    pub baseline: BaselineSource,
    /// The trailing window for `baseline = "trailing"`.
    pub baseline_window: PositiveDuration,
    /// Events timestamped further than this in the future are refused (clock skew).
    pub max_clock_skew: PositiveDuration,
    /// The policy during the heightened period.
    pub heightened: ModePolicy,
    /// The policy afterwards.
    pub normal: ModePolicy,
    /// Roll back automatically after repeated critical alerts.
    pub auto_rollback: AutoRollbackConfig,
    /// Where alerts are sent.
    pub sinks: Vec<SinkConfig>,
}

/// Where a metric's baseline comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BaselineSource {
    /// The release's validation backtest (`validation.yaml` in its audit bundle).
    Validation,
    /// The events of the `baseline_window` before the release's deploy.
    Trailing,
}

/// `[monitoring.auto_rollback]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoRollbackConfig {
    /// Off by default.
    pub enabled: bool,
    /// This many critical firings…
    pub critical_firings: PositiveInt,
    /// …within this long roll the active release back, once.
    pub within: PositiveDuration,
}

impl Default for AutoRollbackConfig {
    fn default() -> Self {
        AutoRollbackConfig {
            enabled: false,
            critical_firings: PositiveInt(3),
            within: PositiveDuration(Duration::hours(1)),
        }
    }
}

/// One `[[monitoring.sinks]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    /// One line per notification on standard error (and in `serve`'s log).
    Log,
    /// One JSON object per line appended to `path` (relative to the workspace).
    Jsonl {
        /// The file.
        path: String,
    },
    /// A JSON `POST` of each notification to `url` (http://).
    Webhook {
        /// Where.
        url: String,
        /// Per request.
        #[serde(default = "default_sink_timeout")]
        timeout: PositiveDuration,
    },
    /// Prometheus Alertmanager's `POST /api/v2/alerts` at `url` (its base, e.g. http://127.0.0.1:9093).
    Alertmanager {
        /// Base URL.
        url: String,
        /// Per request.
        #[serde(default = "default_sink_timeout")]
        timeout: PositiveDuration,
    },
}

fn default_sink_timeout() -> PositiveDuration {
    PositiveDuration(Duration(jiff::SignedDuration::from_secs(5)))
}

impl SinkConfig {
    /// A short name for logs and the outbox: `log`, `jsonl:PATH`, `webhook:URL`, `alertmanager:URL`.
    pub fn name(&self) -> String {
        match self {
            SinkConfig::Log => "log".into(),
            SinkConfig::Jsonl { path } => format!("jsonl:{path}"),
            SinkConfig::Webhook { url, .. } => format!("webhook:{url}"),
            SinkConfig::Alertmanager { url, .. } => format!("alertmanager:{url}"),
        }
    }
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        MonitoringConfig {
            heightened_hours: PositiveInt(48),
            eval_interval: PositiveDuration(Duration(jiff::SignedDuration::from_mins(10))),
            consecutive_breaches: PositiveInt(3),
            min_samples: PositiveInt(30),
            significance: Fraction(0.95),
            significance_test: true,
            critical_multiple: AtLeastOne(2.0),
            baseline: BaselineSource::Validation,
            baseline_window: PositiveDuration(Duration::hours(7 * 24)),
            max_clock_skew: PositiveDuration(Duration(jiff::SignedDuration::from_mins(5))),
            heightened: ModePolicy::heightened(),
            normal: ModePolicy::normal(),
            auto_rollback: AutoRollbackConfig::default(),
            sinks: vec![SinkConfig::Log],
        }
    }
}

/// Windows, thresholds and notification cadence for one monitoring mode.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModePolicy {
    /// Rolling window for the intraday hit ratio.
    pub intraday_hit_ratio_window: PositiveDuration,
    /// Rolling window for swing precision.
    pub swing_precision_window: PositiveDuration,
    /// Relative drop of the intraday hit ratio that counts as a breach (0.05 = 5 %).
    pub intraday_hit_ratio_drop: Fraction,
    /// Relative drop of swing precision that counts as a breach.
    pub swing_precision_drop: Fraction,
    /// Absolute drop of the intraday Sharpe ratio that counts as a breach.
    pub intraday_sharpe_drop: PositiveFloat,
    /// How often a firing alert is notified again.
    pub notify_every: PositiveDuration,
}

impl ModePolicy {
    /// The story's heightened policy.
    pub fn heightened() -> Self {
        ModePolicy {
            intraday_hit_ratio_window: PositiveDuration(Duration::hours(6)),
            swing_precision_window: PositiveDuration(Duration::hours(24)),
            intraday_hit_ratio_drop: Fraction(0.05),
            swing_precision_drop: Fraction(0.05),
            intraday_sharpe_drop: PositiveFloat(0.15),
            notify_every: PositiveDuration(Duration::hours(2)),
        }
    }

    /// The story's normal policy.
    pub fn normal() -> Self {
        ModePolicy {
            intraday_hit_ratio_window: PositiveDuration(Duration::hours(24)),
            swing_precision_window: PositiveDuration(Duration::hours(90 * 24)),
            intraday_hit_ratio_drop: Fraction(0.10),
            swing_precision_drop: Fraction(0.10),
            intraday_sharpe_drop: PositiveFloat(0.25),
            notify_every: PositiveDuration(Duration::hours(6)),
        }
    }
}

impl Default for ModePolicy {
    fn default() -> Self {
        Self::normal()
    }
}

macro_rules! checked_value {
    ($(#[$doc:meta])* $name:ident($inner:ty), $check:expr, $expect:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
                let value = <$inner>::deserialize(deserializer)?;
                let check: fn(&$inner) -> bool = $check;
                if check(&value) {
                    Ok($name(value))
                } else {
                    Err(de::Error::custom(format!(concat!("{} is out of range: expected ", $expect), value)))
                }
            }
        }
    };
}

checked_value!(
    /// A number strictly between 0 and 1 (a relative threshold).
    Fraction(f64), |v| v.is_finite() && *v > 0.0 && *v < 1.0, "a fraction between 0 and 1 (0.05 = 5 %)"
);
checked_value!(
    /// A finite number greater than 0.
    PositiveFloat(f64), |v| v.is_finite() && *v > 0.0, "a number greater than 0"
);
checked_value!(
    /// A finite number of at least 1.
    AtLeastOne(f64), |v| v.is_finite() && *v >= 1.0, "a number of at least 1"
);
checked_value!(
    /// A whole number greater than 0.
    PositiveInt(u32), |v| *v > 0, "a whole number greater than 0"
);
checked_value!(
    /// A duration greater than zero.
    PositiveDuration(Duration), |v| v.seconds() > 0, "a duration greater than zero"
);

/// A name of lowercase letters, digits, `-` and `_` (environments, artifact kinds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Slug(pub String);

fn check_slug(s: &str) -> std::result::Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok { Ok(()) } else { Err("use 1 to 64 lowercase letters, digits, `-` or `_`".into()) }
}

impl<'de> Deserialize<'de> for Slug {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        check_slug(&s).map_err(|reason| de::Error::custom(format!("`{s}`: {reason}")))?;
        Ok(Slug(s))
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Config {
    /// Read and check the config at `path`.
    pub fn load(path: &Path) -> Result<Config> {
        let text = crate::infra::atomic::read_text(path)?;
        Self::parse(path, text)
    }

    /// Check config `text` that was read from `path`.
    pub fn parse(path: &Path, text: String) -> Result<Config> {
        let raw: RawConfig = parse_toml(path, &text)?;
        let mut artifacts = Vec::with_capacity(raw.artifacts.0.len());
        for (name, kind) in raw.artifacts.0 {
            let key = |field: &str| format!("artifacts.{name}.{field}");
            if kind.include.is_empty() {
                return Err(Error::invalid(path, format!("{}: list at least one glob", key("include"))));
            }
            for glob in kind.include.iter().chain(&kind.exclude) {
                check_pattern(path, &text, glob, &key("include/exclude"))?;
            }
            if let Some(pattern) = &kind.version_file {
                check_pattern(path, &text, pattern, &key("version_file"))?;
                if !pattern.get_ref().contains("{path}") {
                    let (line, column) = line_column(&text, pattern.span().start);
                    return Err(Error::parse(
                        path,
                        line,
                        column,
                        format!(
                            "{}: the pattern must contain `{{path}}`, e.g. \"{{path}}.version\"",
                            key("version_file")
                        ),
                    ));
                }
            }
            artifacts.push(ArtifactKind {
                name,
                include: kind.include,
                exclude: kind.exclude,
                version_file: kind.version_file,
            });
        }
        if artifacts.is_empty() {
            return Err(Error::invalid(
                path,
                "[artifacts]: define at least one artifact kind, e.g. [artifacts.configs]",
            ));
        }
        if let Some(backtest) = &raw.backtest {
            match (&backtest.events, &backtest.command) {
                (Some(_), Some(_)) | (None, None) => {
                    let (line, column) = line_of(&text, "[backtest]");
                    return Err(Error::parse(
                        path,
                        line,
                        column,
                        "backtest: set exactly one of `events` (built-in) or `command` (external)",
                    ));
                }
                (Some(events), None) => check_pattern(path, &text, events, "backtest.events")?,
                (None, Some(_)) => {}
            }
        }
        if let Some(file) = &raw.validate.checklist_file {
            if let Err(rule) = check_relative(file) {
                let (line, column) = line_of(&text, file);
                return Err(Error::parse(
                    path,
                    line,
                    column,
                    format!("validate.checklist_file: unsafe path `{file}`: {rule}"),
                ));
            }
            if !raw.checklist.is_empty() {
                return Err(Error::invalid(
                    path,
                    "use either [[checklist]] items here or [validate] checklist_file, not both",
                ));
            }
        }
        check_checklist(path, &text, &raw.checklist, raw.backtest.as_ref())?;
        for (key, value) in
            [("approvals.policy", &raw.approvals.policy), ("approvals.allowed_signers", &raw.approvals.allowed_signers)]
        {
            if let Err(rule) = check_relative(value) {
                let (line, column) = line_of(&text, value);
                return Err(Error::parse(path, line, column, format!("{key}: unsafe path `{value}`: {rule}")));
            }
        }
        for (index, sink) in raw.monitoring.sinks.iter().enumerate() {
            let key = format!("monitoring.sinks[{index}]");
            let problem = match sink {
                SinkConfig::Log => None,
                SinkConfig::Jsonl { path: file } => {
                    check_relative(file).err().map(|rule| (file.as_str(), format!("unsafe path `{file}`: {rule}")))
                }
                SinkConfig::Webhook { url, .. } | SinkConfig::Alertmanager { url, .. } => {
                    crate::infra::http::Url::parse(url).err().map(|reason| (url.as_str(), format!("`{url}`: {reason}")))
                }
            };
            if let Some((needle, message)) = problem {
                let (line, column) = line_of(&text, needle);
                return Err(Error::parse(path, line, column, format!("{key}: {message}")));
            }
        }
        Ok(Config {
            path: path.to_path_buf(),
            text,
            release: raw.release,
            artifacts,
            monitoring: raw.monitoring,
            backtest: raw.backtest,
            validate: raw.validate,
            checklist: raw.checklist,
            approvals: raw.approvals,
            deploy: raw.deploy,
        })
    }

    /// The 1-based line and column of a span in this file.
    pub fn position(&self, span: std::ops::Range<usize>) -> (usize, usize) {
        line_column(&self.text, span.start)
    }
}

fn check_pattern(path: &Path, text: &str, pattern: &Spanned<String>, key: &str) -> Result<()> {
    let value = pattern.get_ref();
    let without_placeholder = value.replace("{path}", "p");
    if let Err(rule) = check_relative(&without_placeholder) {
        let (line, column) = line_column(text, pattern.span().start);
        return Err(Error::parse(path, line, column, format!("{key}: unsafe path `{value}`: {rule}")));
    }
    Ok(())
}

/// Parse TOML strictly, turning any error into one line with the file, position and dotted key.
pub fn parse_toml<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T> {
    let deserializer = toml::de::Deserializer::parse(text).map_err(|e| toml_error(path, text, &e, None))?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        toml_error(path, text, e.inner(), Some(key))
    })
}

fn toml_error(path: &Path, text: &str, error: &toml::de::Error, key: Option<String>) -> Error {
    let message = error.message().trim().replace('\n', " ");
    let message = match key.filter(|k| !k.is_empty() && k != ".") {
        Some(key) => format!("{key}: {message}"),
        None => message,
    };
    match error.span() {
        Some(span) => {
            let (line, column) = line_column(text, span.start);
            Error::parse(path, line, column, message)
        }
        None => Error::invalid(path, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(Path::new("shipshape.toml"), text.to_string())
    }

    const MINIMAL: &str = "[artifacts.configs]\ninclude = [\"a.yaml\"]\n";

    #[test]
    fn template_parses_to_the_defaults() {
        let config = parse(CONFIG_TEMPLATE).unwrap();
        let names: Vec<_> = config.artifacts.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["configs", "models", "notebooks"]);
        assert_eq!(config.monitoring.heightened, ModePolicy::heightened());
        assert_eq!(config.monitoring.normal, ModePolicy::normal());
        assert_eq!(config.monitoring.heightened_hours.0, 48);
        assert_eq!(config.monitoring.consecutive_breaches.0, 3);
        assert_eq!(config.monitoring.eval_interval.0.seconds(), 600);
        assert_eq!(config.release.environment.0, "production");
        assert_eq!(config.release.manifest_expiry.0, Duration::hours(168));
    }

    #[test]
    fn minimal_config_takes_defaults() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.monitoring.normal, ModePolicy::normal());
        assert_eq!(config.artifacts[0].include[0].get_ref(), "a.yaml");
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let err = parse(&format!("{MINIMAL}colour = \"blue\"\n")).unwrap_err().to_string();
        assert!(err.starts_with("shipshape.toml:3:1:"), "{err}");
        assert!(err.contains("colour"), "{err}");
        let err = parse("[artifacts.configs]\ninclude = [\"a\"]\nincludes = [\"b\"]\n").unwrap_err().to_string();
        assert!(err.starts_with("shipshape.toml:3:"), "{err}");
        assert!(err.contains("includes"), "{err}");
    }

    #[test]
    fn wrong_type_names_key() {
        let err = parse(&format!("{MINIMAL}[monitoring]\nheightened_hours = \"two days\"\n")).unwrap_err().to_string();
        assert!(err.starts_with("shipshape.toml:4:"), "{err}");
        assert!(err.contains("monitoring.heightened_hours"), "{err}");
    }

    #[test]
    fn out_of_range_policy_values_name_the_key() {
        let mut text = CONFIG_TEMPLATE.replace("intraday_hit_ratio_drop = 0.05", "intraday_hit_ratio_drop = 1.5");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("monitoring.heightened.intraday_hit_ratio_drop"), "{err}");
        assert!(err.contains("between 0 and 1"), "{err}");
        text = CONFIG_TEMPLATE.replace("intraday_hit_ratio_window = \"6h\"", "intraday_hit_ratio_window = \"0m\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("monitoring.heightened.intraday_hit_ratio_window"), "{err}");
        text = CONFIG_TEMPLATE.replace("intraday_hit_ratio_window = \"6h\"", "intraday_hit_ratio_window = \"-6h\"");
        assert!(parse(&text).unwrap_err().to_string().contains("not a duration"));
    }

    #[test]
    fn syntax_error_has_position() {
        let err = parse("[artifacts.configs\ninclude = 1").unwrap_err().to_string();
        assert!(err.starts_with("shipshape.toml:1:"), "{err}");
    }

    #[test]
    fn unsafe_globs_are_refused_at_their_line() {
        for glob in ["../outside/*", "/etc/*", "a/../../b"] {
            let err = parse(&format!("[artifacts.configs]\ninclude = [\n  \"ok\",\n  \"{glob}\",\n]\n")).unwrap_err();
            let text = err.to_string();
            assert!(text.starts_with("shipshape.toml:4:3:"), "{text}");
            assert!(text.contains("unsafe path"), "{text}");
        }
    }

    const BACKTEST: &str = "[backtest]\nevents = \"events.jsonl\"\n";

    #[test]
    fn checklist_items_parse() {
        let text = format!(
            "{MINIMAL}{BACKTEST}[[checklist]]\nname = \"tests\"\nkind = \"command\"\ncommand = \"make test\"\ntimeout = \"2m\"\n\
             [[checklist]]\nname = \"report\"\nkind = \"file\"\npath = \"r.ipynb\"\nnon_empty = true\n\
             [[checklist]]\nname = \"hit\"\nkind = \"gate\"\nmetric = \"intraday_hit_ratio\"\nmin = 0.5\n"
        );
        let config = parse(&text).unwrap();
        let kinds: Vec<_> = config.checklist.iter().map(|i| i.kind()).collect();
        assert_eq!(kinds, ["command", "file", "gate"]);
    }

    #[test]
    fn checklist_rejections() {
        let cases = [
            (
                format!("{MINIMAL}[[checklist]]\nname = \"x\"\nkind = \"shell\"\ncommand = \"true\"\n"),
                "unknown variant `shell`",
            ),
            (
                format!(
                    "{MINIMAL}{BACKTEST}[[checklist]]\nname = \"x\"\nkind = \"gate\"\nmetric = \"intraday_sortino\"\nmin = 1\n"
                ),
                "unknown metric `intraday_sortino`",
            ),
            (
                format!("{MINIMAL}{BACKTEST}[[checklist]]\nname = \"x\"\nkind = \"gate\"\nmetric = \"sharpe\"\n"),
                "needs `min`, `max`",
            ),
            (
                format!("{MINIMAL}[[checklist]]\nname = \"x\"\nkind = \"gate\"\nmetric = \"sharpe\"\nmin = 0\n"),
                "needs a [backtest]",
            ),
            (format!("{MINIMAL}[[checklist]]\nname = \"x\"\nkind = \"file\"\npath = \"../etc\"\n"), "unsafe path"),
            (
                format!("{MINIMAL}[[checklist]]\nname = \"x\"\nkind = \"command\"\ncommand = \"true\"\ncolour = 1\n"),
                "colour",
            ),
            (format!("{MINIMAL}[backtest]\nevents = \"a\"\ncommand = \"b\"\n"), "exactly one of"),
        ];
        for (text, expected) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "{expected}: {err}");
            assert!(err.starts_with("shipshape.toml"), "{err}");
        }
    }

    #[test]
    fn bad_kind_name_and_empty_include() {
        assert!(parse("[artifacts.Configs]\ninclude = [\"a\"]\n").unwrap_err().to_string().contains("artifact kind"));
        assert!(parse("[artifacts.configs]\ninclude = []\n").unwrap_err().to_string().contains("at least one glob"));
        assert!(parse("[release]\nenvironment = \"prod\"\n").unwrap_err().to_string().contains("artifacts"));
    }
}
