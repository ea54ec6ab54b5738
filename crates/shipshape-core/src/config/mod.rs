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

mod canary;
mod checklist;
mod deploy;
mod fleet;
mod monitoring;
mod retention;
mod values;

pub use canary::{CanaryConfig, check_steps};
pub use checklist::{BacktestConfig, ChecklistItem, ValidateConfig, check_checklist, load_checklist};
pub use deploy::{ApprovalsConfig, DeployConfig, DeployMode, PostDeployCheck};
pub use fleet::{EnvironmentConfig, FleetConfig, S3Config};
pub use monitoring::{
    AutoRollbackConfig, BaselineSource, Detector, Direction, DropStyle, HttpSink, MetricConfig, MetricMode, ModePolicy,
    MonitoringConfig, PagerDutySink, Session, SilenceConfig, SinkConfig, redacted_url, wildcard_match,
};
pub use retention::RetentionConfig;
pub use values::{AtLeastOne, Fraction, PositiveDuration, PositiveFloat, PositiveInt, Slug};

use checklist::line_of;
use values::check_slug;

/// The config file's name.
pub const CONFIG_FILE: &str = "shipshape.toml";

/// The commented config `shipshape init` writes; its values are the defaults (a test checks that).
pub const CONFIG_TEMPLATE: &str = include_str!("../../templates/shipshape.toml");

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
    /// `[retention]`: what `gc` (and each deploy) keeps.
    pub retention: RetentionConfig,
    /// `[fleet]`: several hosts, a remote store and a registry (absent: one machine).
    pub fleet: Option<FleetConfig>,
    /// `[canary]`: how canaries are judged and stepped.
    pub canary: CanaryConfig,
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
    #[serde(default)]
    retention: RetentionConfig,
    #[serde(default)]
    fleet: Option<FleetConfig>,
    #[serde(default)]
    canary: CanaryConfig,
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

impl Config {
    /// Read and check the config at `path`.
    pub fn load(path: &Path) -> Result<Config> {
        let text = crate::infra::atomic::read_text(path)?;
        Self::parse(path, text)
    }

    /// Check config `text` that was read from `path`.
    pub fn parse(path: &Path, text: String) -> Result<Config> {
        let raw: RawConfig = parse_toml(path, &text)?;
        check_steps(&raw.canary.steps).map_err(|e| Error::invalid(path, format!("canary.steps: {e}")))?;
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
                SinkConfig::Webhook(http)
                | SinkConfig::Slack(http)
                | SinkConfig::Teams(http)
                | SinkConfig::Alertmanager(http) => http.problem().map(|reason| {
                    let needle = http.url.as_deref().or(http.url_env.as_deref()).or(http.url_file.as_deref());
                    (needle.unwrap_or("[[monitoring.sinks]]"), reason)
                }),
                SinkConfig::Pagerduty(pd) => pd.problem().map(|reason| {
                    let needle = pd.routing_key_env.as_deref().or(pd.routing_key_file.as_deref());
                    (needle.unwrap_or("pagerduty"), reason)
                }),
            };
            if let Some((needle, message)) = problem {
                let (line, column) = line_of(&text, needle);
                return Err(Error::parse(path, line, column, format!("{key}: {message}")));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (index, metric) in raw.monitoring.metrics.iter().enumerate() {
            let key = format!("monitoring.metrics[{index}] ({})", metric.name.0);
            let (line, column) = line_of(&text, &format!("\"{}\"", metric.name.0));
            if !names.insert(metric.name.0.clone()) {
                return Err(Error::parse(path, line, column, format!("{key}: a second metric with this name")));
            }
            if metric.kind == shipshape_metrics::MetricKind::Silence {
                return Err(Error::parse(
                    path,
                    line,
                    column,
                    format!(
                        "{key}.kind: `silence` is the dead-man's switch: set [monitoring.silence] after = \"30m\" instead"
                    ),
                ));
            }
            match (metric.kind.is_field(), &metric.field) {
                (true, None) => {
                    return Err(Error::parse(
                        path,
                        line,
                        column,
                        format!(
                            "{key}.field: a {} metric names the producer's field, e.g. field = \"slippage_bps\"",
                            metric.kind
                        ),
                    ));
                }
                (true, Some(field)) => {
                    if let Err(reason) = shipshape_metrics::event::check_field_name(field) {
                        return Err(Error::parse(path, line, column, format!("{key}.field: {reason}")));
                    }
                }
                (false, Some(_)) => {
                    return Err(Error::parse(
                        path,
                        line,
                        column,
                        format!("{key}.field: only field_mean and field_rate metrics read a field"),
                    ));
                }
                (false, None) => {}
            }
            if metric.strategies.is_empty() || metric.strategies.iter().any(|s| s.trim().is_empty()) {
                return Err(Error::parse(
                    path,
                    line,
                    column,
                    format!("{key}.strategies: name at least one strategy, or a glob such as \"*\""),
                ));
            }
            if metric.drop_style() == DropStyle::Relative
                && metric.kind != shipshape_metrics::MetricKind::HitRatio
                && metric.kind != shipshape_metrics::MetricKind::Precision
                && metric.heightened.threshold.0.max(metric.normal.threshold.0) >= 1.0
                && metric.direction == Direction::Higher
            {
                return Err(Error::parse(
                    path,
                    line,
                    column,
                    format!(
                        "{key}: a relative drop of 1 or more can never happen to a positive metric; use drop = \"absolute\" or a threshold below 1"
                    ),
                ));
            }
        }
        for (index, session) in raw.monitoring.silence.sessions.iter().enumerate() {
            if let Err(reason) = session.parse() {
                let (line, column) = line_of(&text, "sessions");
                return Err(Error::parse(path, line, column, format!("monitoring.silence.sessions[{index}].{reason}")));
            }
        }
        if !raw.monitoring.metrics.is_empty()
            && let Some(key) = raw.monitoring.deprecated_keys().first()
        {
            let field = key.rsplit('.').next().unwrap_or(key);
            let (line, column) = line_of(&text, field);
            return Err(Error::parse(
                path,
                line,
                column,
                format!(
                    "{key}: with [[monitoring.metrics]], each metric sets its own windows and thresholds; remove this key"
                ),
            ));
        }
        if let Some(problem) = raw.fleet.as_ref().and_then(|f| f.problems().into_iter().next()) {
            let field = problem.split(':').next().unwrap_or("fleet").rsplit('.').next().unwrap_or("fleet");
            let field = field.split('[').next().unwrap_or(field);
            let (line, column) = line_of(&text, field);
            return Err(Error::parse(path, line, column, problem));
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
            retention: raw.retention,
            fleet: raw.fleet,
            canary: raw.canary,
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

/// For serde's "unknown field `x`, expected one of `a`, `b`", the expected name closest to `x`
/// (a typo: at most a third of its letters differ).
fn did_you_mean(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, rest) = rest.split_once('`')?;
    let expected = rest.split_once("expected ")?.1;
    let candidates = expected.split('`').skip(1).step_by(2);
    let distance = |a: &str, b: &str| {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut previous = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let current = row[j + 1];
                row[j + 1] = (previous + usize::from(ca != *cb)).min(row[j] + 1).min(current + 1);
                previous = current;
            }
        }
        row[b.len()]
    };
    candidates
        .map(|c| (distance(unknown, c), c))
        .filter(|(d, c)| *d <= (c.chars().count() / 3).max(1))
        .min()
        .map(|(_, c)| c.to_string())
}

fn toml_error(path: &Path, text: &str, error: &toml::de::Error, key: Option<String>) -> Error {
    let mut message = error.message().trim().replace('\n', " ");
    if let Some(suggestion) = did_you_mean(&message) {
        message = format!("{message}; did you mean `{suggestion}`?");
    }
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
    fn an_unknown_key_close_to_a_known_one_gets_a_suggestion() {
        let err = parse(&format!("{MINIMAL}[release]\nmanifest_expiryy = \"7d\"\n")).unwrap_err().to_string();
        assert!(err.contains("did you mean `manifest_expiry`?"), "{err}");
        let err = parse(&format!("{MINIMAL}[monitoring]\nheightend_hours = 48\n")).unwrap_err().to_string();
        assert!(err.contains("did you mean `heightened_hours`?"), "{err}");
        let err = parse(&format!("{MINIMAL}[release]\ncompletely_else = 1\n")).unwrap_err().to_string();
        assert!(err.contains("unknown field") && !err.contains("did you mean"), "{err}");
    }

    #[test]
    fn template_parses_to_the_defaults() {
        let config = parse(CONFIG_TEMPLATE).unwrap();
        let names: Vec<_> = config.artifacts.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["configs", "models", "notebooks"]);
        assert_eq!(config.monitoring.heightened, ModePolicy::heightened());
        assert_eq!(config.monitoring.normal, ModePolicy::normal());
        // The template's metrics are the story's three, exactly what a config without the list reads.
        assert_eq!(config.monitoring.metrics(), MonitoringConfig::default().metrics());
        assert!(config.monitoring.deprecated_keys().is_empty());
        assert_eq!(config.monitoring.heightened_hours.0, 48);
        assert_eq!(config.monitoring.consecutive_breaches.0, 3);
        assert_eq!(config.monitoring.eval_interval.0.seconds(), 600);
        assert_eq!(config.release.environment.0, "production");
        assert_eq!(config.release.manifest_expiry.0, Duration::hours(168));
        assert_eq!(config.retention, RetentionConfig::default());
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
        let mut text = CONFIG_TEMPLATE.replace(
            "heightened = { window = \"6h\", threshold = 0.05 }",
            "heightened = { window = \"6h\", threshold = -0.05 }",
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("monitoring.metrics[0].heightened.threshold"), "{err}");
        assert!(err.contains("greater than 0"), "{err}");
        text = CONFIG_TEMPLATE.replace(
            "heightened = { window = \"6h\", threshold = 0.05 }",
            "heightened = { window = \"0m\", threshold = 0.05 }",
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("monitoring.metrics[0].heightened.window"), "{err}");
        text = CONFIG_TEMPLATE.replace("kind = \"hit_ratio\"", "kind = \"hit_rate\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("monitoring.metrics[0].kind") && err.contains("hit_ratio"), "{err}");
    }

    #[test]
    fn metrics_are_checked_and_old_keys_still_read() {
        let metric = |name: &str, strategies: &str| {
            format!(
                "[[monitoring.metrics]]\nname = \"{name}\"\nstrategies = {strategies}\nkind = \"hit_ratio\"\nheightened = {{ window = \"1h\", threshold = 0.05 }}\nnormal = {{ window = \"1d\", threshold = 0.1 }}\n"
            )
        };
        let text = format!(
            "{MINIMAL}{}{}",
            metric("momentum_hits", "[\"momentum\", \"mean_*\"]"),
            metric("momentum_hits", "[\"x\"]")
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("a second metric with this name"), "{err}");
        let err = parse(&format!("{MINIMAL}{}", metric("m", "[]"))).unwrap_err().to_string();
        assert!(err.contains("monitoring.metrics[0] (m).strategies: name at least one strategy"), "{err}");
        let config = parse(&format!("{MINIMAL}{}", metric("m", "[\"mean_*\"]"))).unwrap();
        let metrics = config.monitoring.metrics();
        assert_eq!(metrics.len(), 1, "the list replaces the story's metrics");
        assert!(metrics[0].watches("mean_reversion") && !metrics[0].watches("momentum"));
        // With the list, the story's per-metric keys are refused; without it they are still read.
        let mixed = format!(
            "{MINIMAL}[monitoring.heightened]\nnotify_every = \"2h\"\nintraday_hit_ratio_drop = 0.07\n{}",
            metric("m", "[\"a\"]")
        );
        let err = parse(&mixed).unwrap_err().to_string();
        assert!(err.contains("monitoring.heightened.intraday_hit_ratio_drop: with [[monitoring.metrics]]"), "{err}");
        let old = parse(&format!(
            "{MINIMAL}[monitoring.heightened]\nnotify_every = \"2h\"\nintraday_hit_ratio_drop = 0.07\n"
        ))
        .unwrap();
        assert_eq!(old.monitoring.deprecated_keys(), ["monitoring.heightened.intraday_hit_ratio_drop"]);
        assert_eq!(old.monitoring.metrics()[0].heightened.threshold.0, 0.07);
        // The replacement printed for an old config parses to the same metrics.
        let replaced = parse(&format!("{MINIMAL}{}", old.monitoring.metrics_toml())).unwrap();
        assert_eq!(replaced.monitoring.metrics(), old.monitoring.metrics());
    }

    #[test]
    fn wildcards_match_whole_names() {
        for (pattern, text, expected) in [
            ("*", "anything", true),
            ("mean_*", "mean_reversion", true),
            ("mean_*", "momentum", false),
            ("m?m*", "momentum", true),
            ("intraday", "intraday", true),
            ("intraday", "intraday2", false),
            ("*day", "intraday", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
        ] {
            assert_eq!(wildcard_match(pattern, text), expected, "{pattern} vs {text}");
        }
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
