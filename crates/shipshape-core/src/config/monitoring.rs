//! `[monitoring]`: windows, thresholds, cadence, baselines, sinks and auto-rollback.

use serde::{Deserialize, Serialize};

use crate::config::{AtLeastOne, Fraction, PositiveDuration, PositiveFloat, PositiveInt, Slug};
use crate::infra::clock::Duration;

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
    /// What to watch: `[[monitoring.metrics]]`. Empty: the story's three metrics, from the
    /// deprecated per-metric keys of `[monitoring.heightened]` / `[monitoring.normal]` (or their
    /// defaults) — see [`MonitoringConfig::metrics`].
    pub metrics: Vec<MetricConfig>,
    /// The dead-man's switch: `[monitoring.silence]`.
    pub silence: SilenceConfig,
    /// `window` (the story's rule: a rolling window, a threshold, `consecutive_breaches` in a row)
    /// or `sequential` (a mixture SPRT over everything since the deploy, whose false-alarm
    /// probability holds however often it is evaluated).
    pub detector: Detector,
    /// Sequential detector: the probability that a release no worse than half its threshold ever
    /// alerts on a metric.
    pub false_alarm_probability: Fraction,
    /// Sequential detector: variance inflation for trades correlated within a time block (1:
    /// independent trades; 2: a block's trades carry half the information of independent ones).
    /// Absent: estimated, for hit-ratio and precision metrics, from the dispersion of the last 24
    /// hours' one-minute blocks (at least 1); 1 for the other kinds.
    pub design_effect: Option<AtLeastOne>,
}

/// Which detector judges the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// The story's rule: window, threshold, `consecutive_breaches` breaching evaluations in a row.
    #[default]
    Window,
    /// The mixture sequential probability ratio test (always valid).
    Sequential,
}

/// `[monitoring.silence]`: a deployed release that receives no events for `after` inside a trading
/// session fires an `events_received` alert — the engine stopped reporting, or stopped trading.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SilenceConfig {
    /// How long without an event inside a session fires (absent: the switch is off).
    pub after: Option<PositiveDuration>,
    /// When the engine trades; empty: all the time.
    pub sessions: Vec<Session>,
}

/// One trading session, e.g. NSE: `{ days = "mon-fri", from = "09:15", to = "15:30", utc_offset = "+05:30" }`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Session {
    /// Days it runs: `mon-fri`, `mon,wed,fri`, `sat-sun`, `all`.
    pub days: String,
    /// Opening time, `HH:MM` local.
    pub from: String,
    /// Closing time, `HH:MM` local (after `from`).
    pub to: String,
    /// The session's UTC offset, e.g. `+05:30` (default `+00:00`).
    #[serde(default)]
    pub utc_offset: Option<String>,
}

impl Session {
    /// Checked: (weekdays 0 = Monday … 6 = Sunday, from and to in minutes of the day, offset in seconds).
    pub fn parse(&self) -> std::result::Result<([bool; 7], u32, u32, i32), String> {
        const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        let day = |name: &str| {
            NAMES
                .iter()
                .position(|n| *n == name.trim().to_ascii_lowercase())
                .ok_or_else(|| format!("days: `{name}` is not a day (mon, tue, wed, thu, fri, sat, sun)"))
        };
        let mut days = [false; 7];
        if self.days.trim() == "all" {
            days = [true; 7];
        } else {
            for part in self.days.split(',') {
                match part.split_once('-') {
                    Some((a, b)) => {
                        let (a, b) = (day(a)?, day(b)?);
                        let mut d = a;
                        loop {
                            days[d] = true;
                            if d == b {
                                break;
                            }
                            d = (d + 1) % 7;
                        }
                    }
                    None => days[day(part)?] = true,
                }
            }
        }
        let minutes = |key: &str, text: &str| -> std::result::Result<u32, String> {
            let (h, m) = text.split_once(':').ok_or_else(|| format!("{key}: `{text}` is not HH:MM"))?;
            match (h.parse::<u32>(), m.parse::<u32>()) {
                (Ok(hours), Ok(minutes)) if hours < 24 && minutes < 60 && m.len() == 2 => Ok(hours * 60 + minutes),
                _ => Err(format!("{key}: `{text}` is not HH:MM")),
            }
        };
        let (from, to) = (minutes("from", &self.from)?, minutes("to", &self.to)?);
        if to <= from {
            return Err(format!("to ({}) must be after from ({}) on the same day", self.to, self.from));
        }
        let offset = match self.utc_offset.as_deref() {
            None => 0,
            Some(text) => {
                let (sign, rest) = match text.as_bytes().first() {
                    Some(b'+') => (1, &text[1..]),
                    Some(b'-') => (-1, &text[1..]),
                    _ => return Err(format!("utc_offset: `{text}` is not +HH:MM or -HH:MM")),
                };
                let (h, m) =
                    rest.split_once(':').ok_or_else(|| format!("utc_offset: `{text}` is not +HH:MM or -HH:MM"))?;
                match (h.parse::<i32>(), m.parse::<i32>()) {
                    (Ok(h), Ok(m)) if h <= 14 && m < 60 => sign * (h * 3600 + m * 60),
                    _ => return Err(format!("utc_offset: `{text}` is not +HH:MM or -HH:MM")),
                }
            }
        };
        Ok((days, from, to, offset))
    }

    /// When the session holding unix second `at` opened (`None`: `at` is outside this session).
    pub fn opened_before(&self, at: i64) -> Option<i64> {
        let (days, from, to, offset) = self.parse().ok()?;
        let local = at + i64::from(offset);
        let day = local.div_euclid(86_400);
        let minute = (local.rem_euclid(86_400) / 60) as u32;
        // 1970-01-01 was a Thursday (3 with Monday = 0).
        let weekday = (day + 3).rem_euclid(7) as usize;
        (days[weekday] && minute >= from && minute < to)
            .then(|| day * 86_400 + i64::from(from) * 60 - i64::from(offset))
    }
}

/// Which way is better for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Higher is better: a fall is a regression (hit ratio, precision, Sharpe, mean return).
    #[default]
    Higher,
    /// Lower is better: a rise is a regression (slippage, latency).
    Lower,
}

/// How a metric's change from its baseline is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropStyle {
    /// As a share of the baseline (0.05 = 5 % worse).
    Relative,
    /// In the metric's own units (a Sharpe ratio 0.15 lower).
    Absolute,
}

/// One mode's window and threshold for a metric.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricMode {
    /// The rolling window.
    pub window: PositiveDuration,
    /// How much worse than the baseline is a breach (relative or absolute, per `drop`).
    pub threshold: PositiveFloat,
}

/// One `[[monitoring.metrics]]` entry: what to compute, from which strategies' events, and when
/// it is a regression.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricConfig {
    /// The metric's name in alerts, charts and `/metrics` (lowercase, digits, `-`, `_`).
    pub name: Slug,
    /// The strategies whose events it is computed from, pooled: names or globs (`*`, `?`),
    /// e.g. `["momentum"]`, `["mean_*"]`, `["*"]`.
    pub strategies: Vec<String>,
    /// `hit_ratio`, `precision`, `sharpe`, `mean_return`, `win_loss`, `field_mean` or `field_rate`.
    pub kind: shipshape_metrics::MetricKind,
    /// For `field_mean` and `field_rate`: the producer's numeric field (`"metrics": {"<field>": …}`).
    #[serde(default)]
    pub field: Option<String>,
    /// `higher` (default) or `lower` is better.
    #[serde(default)]
    pub direction: Direction,
    /// `relative` or `absolute`; default relative for hit ratio and precision, absolute otherwise.
    #[serde(default)]
    pub drop: Option<DropStyle>,
    /// Fewer samples than this is insufficient data (default `[monitoring] min_samples`).
    #[serde(default)]
    pub min_samples: Option<PositiveInt>,
    /// Critical at this many times the threshold (default `[monitoring] critical_multiple`).
    #[serde(default)]
    pub critical_multiple: Option<AtLeastOne>,
    /// During the heightened period.
    pub heightened: MetricMode,
    /// Afterwards.
    pub normal: MetricMode,
}

impl MetricConfig {
    /// How its drop is measured.
    pub fn drop_style(&self) -> DropStyle {
        self.drop.unwrap_or(match self.kind {
            shipshape_metrics::MetricKind::HitRatio | shipshape_metrics::MetricKind::Precision => DropStyle::Relative,
            _ => DropStyle::Absolute,
        })
    }

    /// Whether `strategy` is one of its strategies.
    pub fn watches(&self, strategy: &str) -> bool {
        self.strategies.iter().any(|pattern| wildcard_match(pattern, strategy))
    }
}

/// `*` (any run) and `?` (any one byte) matching of the whole name, without allocating (it runs
/// for every ingested event). A pattern without wildcards is plain equality.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    if !p.iter().any(|b| *b == b'*' || *b == b'?') {
        return p == t;
    }
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

impl MonitoringConfig {
    /// What to watch: the `[[monitoring.metrics]]` entries, or — when there are none — the story's
    /// three (intraday hit ratio, swing precision, intraday Sharpe) from the deprecated per-metric
    /// keys of `[monitoring.heightened]` and `[monitoring.normal]`, or their defaults.
    pub fn metrics(&self) -> Vec<MetricConfig> {
        if !self.metrics.is_empty() {
            return self.metrics.clone();
        }
        let (h, n) = (&self.heightened, &self.normal);
        let (hd, nd) = (ModePolicy::heightened_defaults(), ModePolicy::normal_defaults());
        let mode = |window: &Option<PositiveDuration>, dw: &PositiveDuration, threshold: f64| MetricMode {
            window: window.unwrap_or(*dw),
            threshold: PositiveFloat(threshold),
        };
        // `drop` is left to the kind's default (relative for the two ratios, absolute for Sharpe),
        // as a config would write them.
        let story = |name: &str, strategy: &str, kind, _drop: DropStyle| MetricConfig {
            name: Slug(name.into()),
            strategies: vec![strategy.into()],
            kind,
            field: None,
            direction: Direction::Higher,
            drop: None,
            min_samples: None,
            critical_multiple: None,
            heightened: mode(&None, &hd.0, 0.0),
            normal: mode(&None, &nd.0, 0.0),
        };
        use shipshape_metrics::MetricKind;
        let mut hit = story("intraday_hit_ratio", "intraday", MetricKind::HitRatio, DropStyle::Relative);
        hit.heightened = mode(&h.intraday_hit_ratio_window, &hd.0, h.intraday_hit_ratio_drop.map_or(hd.2, |f| f.0));
        hit.normal = mode(&n.intraday_hit_ratio_window, &nd.0, n.intraday_hit_ratio_drop.map_or(nd.2, |f| f.0));
        let mut precision = story("swing_precision", "swing", MetricKind::Precision, DropStyle::Relative);
        precision.heightened = mode(&h.swing_precision_window, &hd.1, h.swing_precision_drop.map_or(hd.3, |f| f.0));
        precision.normal = mode(&n.swing_precision_window, &nd.1, n.swing_precision_drop.map_or(nd.3, |f| f.0));
        let mut sharpe = story("intraday_sharpe", "intraday", MetricKind::Sharpe, DropStyle::Absolute);
        sharpe.heightened = mode(&h.intraday_hit_ratio_window, &hd.0, h.intraday_sharpe_drop.map_or(hd.4, |f| f.0));
        sharpe.normal = mode(&n.intraday_hit_ratio_window, &nd.0, n.intraday_sharpe_drop.map_or(nd.4, |f| f.0));
        vec![hit, precision, sharpe]
    }

    /// The deprecated per-metric keys this config sets, dotted (empty for a current config).
    pub fn deprecated_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        for (mode, policy) in [("heightened", &self.heightened), ("normal", &self.normal)] {
            for (key, set) in [
                ("intraday_hit_ratio_window", policy.intraday_hit_ratio_window.is_some()),
                ("swing_precision_window", policy.swing_precision_window.is_some()),
                ("intraday_hit_ratio_drop", policy.intraday_hit_ratio_drop.is_some()),
                ("swing_precision_drop", policy.swing_precision_drop.is_some()),
                ("intraday_sharpe_drop", policy.intraday_sharpe_drop.is_some()),
            ] {
                if set {
                    keys.push(format!("monitoring.{mode}.{key}"));
                }
            }
        }
        keys
    }

    /// `[[monitoring.metrics]]` entries equivalent to this config's metrics, as TOML (what a
    /// config with the deprecated keys should say instead).
    pub fn metrics_toml(&self) -> String {
        let mut out = String::new();
        for m in self.metrics() {
            let drop = match m.drop {
                Some(DropStyle::Relative) => "drop = \"relative\"\n",
                Some(DropStyle::Absolute) => "drop = \"absolute\"\n",
                None => "",
            };
            out.push_str(&format!(
                "[[monitoring.metrics]]\nname = \"{}\"\nstrategies = [{}]\nkind = \"{}\"\n{}{drop}heightened = {{ window = \"{}\", threshold = {} }}\nnormal = {{ window = \"{}\", threshold = {} }}\n\n",
                m.name.0,
                m.strategies.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", "),
                m.kind.name(),
                m.field.as_ref().map(|f| format!("field = \"{f}\"\n")).unwrap_or_default(),
                m.heightened.window.0,
                m.heightened.threshold.0,
                m.normal.window.0,
                m.normal.threshold.0,
            ));
        }
        out
    }
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
    /// A rollback that fails (lock held, full disk, a refused check) is tried again, with backoff
    /// (1, 2, 4 … minutes, at most 15, at the evaluations that follow), for this long after the
    /// first attempt; every failure is notified to every sink.
    pub retry_for: PositiveDuration,
}

impl Default for AutoRollbackConfig {
    fn default() -> Self {
        AutoRollbackConfig {
            enabled: false,
            critical_firings: PositiveInt(3),
            within: PositiveDuration(Duration::hours(1)),
            retry_for: PositiveDuration(Duration::hours(1)),
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
    /// A JSON `POST` of each notification (the notification object itself) to an endpoint.
    Webhook(HttpSink),
    /// A Slack incoming webhook (Block Kit message).
    Slack(HttpSink),
    /// A Microsoft Teams incoming webhook (an Adaptive Card message).
    Teams(HttpSink),
    /// PagerDuty's Events API v2: `trigger` on firing, `resolve` on resolution, one dedup key per
    /// alert episode.
    Pagerduty(PagerDutySink),
    /// Prometheus Alertmanager's `POST /api/v2/alerts` at `url` (its base, e.g. http://127.0.0.1:9093).
    Alertmanager(HttpSink),
}

/// Where an HTTP(S) sink posts, and how. The URL is given once: in the file (`url`, for URLs that
/// are no secret), or — for webhook URLs that are secrets (Slack's, Teams') — in an environment
/// variable (`url_env`) or a file (`url_file`, its first line), read at delivery and never printed.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSink {
    /// The endpoint (`https://…`, or `http://…`).
    pub url: Option<String>,
    /// An environment variable holding the endpoint.
    pub url_env: Option<String>,
    /// A file holding the endpoint (relative to the workspace).
    pub url_file: Option<String>,
    /// Per request (connect, send, answer).
    #[serde(default = "default_sink_timeout")]
    pub timeout: PositiveDuration,
    /// CA certificate(s) (PEM) trusted for this endpoint instead of the system's bundle (an
    /// internal CA). Relative to the workspace.
    pub ca_file: Option<String>,
    /// The sink's name in logs and the outbox (default: its kind and where its URL comes from,
    /// never the URL's secret part).
    pub name: Option<String>,
}

/// `kind = "pagerduty"`: the integration's routing key from an environment variable or a file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutySink {
    /// An environment variable holding the routing (integration) key.
    pub routing_key_env: Option<String>,
    /// A file holding it (relative to the workspace; its first line).
    pub routing_key_file: Option<String>,
    /// The Events API endpoint.
    #[serde(default = "default_pagerduty_url")]
    pub url: String,
    /// Per request.
    #[serde(default = "default_sink_timeout")]
    pub timeout: PositiveDuration,
    /// CA certificate(s) (PEM) trusted instead of the system's bundle.
    pub ca_file: Option<String>,
    /// The sink's name in logs and the outbox (default `pagerduty:` and where the key comes from).
    pub name: Option<String>,
}

fn default_sink_timeout() -> PositiveDuration {
    PositiveDuration(Duration(jiff::SignedDuration::from_secs(5)))
}

fn default_pagerduty_url() -> String {
    "https://events.pagerduty.com/v2/enqueue".into()
}

/// Where a sink's secret (URL or key) comes from, as its default name says it.
fn source_name(literal: Option<&str>, env: Option<&str>, file: Option<&str>) -> String {
    match (literal, env, file) {
        (_, Some(var), _) => format!("env:{var}"),
        (_, _, Some(path)) => format!("file:{path}"),
        (Some(url), _, _) => redacted_url(url),
        _ => "unset".into(),
    }
}

/// `url` as logs may show it: plain `http://` URLs whole (as they always were: a relay or
/// Alertmanager on the network), `https://` ones as scheme and host only plus a short hash of the
/// whole, so two sinks on one host stay apart and a path's token is never printed.
pub fn redacted_url(url: &str) -> String {
    if url.starts_with("http://") {
        return url.to_string();
    }
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit_once('@').map_or(host, |(_, host)| host);
    let digest = crate::infra::hash::Digest::of(url.as_bytes()).hex();
    format!("https://{host}/…#{}", &digest[..8])
}

impl HttpSink {
    /// Exactly one of `url`, `url_env`, `url_file`; a literal URL must parse.
    pub fn problem(&self) -> Option<String> {
        let given = [self.url.is_some(), self.url_env.is_some(), self.url_file.is_some()];
        match given.iter().filter(|g| **g).count() {
            0 => Some("needs `url`, `url_env` or `url_file`".into()),
            1 => self.url.as_deref().and_then(|url| crate::infra::http::check_url(url).err()),
            _ => Some("give only one of `url`, `url_env`, `url_file`".into()),
        }
    }

    fn source(&self) -> String {
        source_name(self.url.as_deref(), self.url_env.as_deref(), self.url_file.as_deref())
    }
}

impl PagerDutySink {
    /// Exactly one of `routing_key_env`, `routing_key_file`; the URL must parse.
    pub fn problem(&self) -> Option<String> {
        match (&self.routing_key_env, &self.routing_key_file) {
            (None, None) => {
                Some("needs `routing_key_env` or `routing_key_file` (the key is a secret: never in this file)".into())
            }
            (Some(_), Some(_)) => Some("give only one of `routing_key_env`, `routing_key_file`".into()),
            _ => crate::infra::http::check_url(&self.url).err(),
        }
    }
}

impl SinkConfig {
    /// A short name for logs and the outbox: `log`, `jsonl:PATH`, `KIND:SOURCE` (e.g.
    /// `slack:env:SLACK_WEBHOOK_URL`, `webhook:http://relay:8080/hook`), or the sink's `name`.
    pub fn name(&self) -> String {
        match self {
            SinkConfig::Log => "log".into(),
            SinkConfig::Jsonl { path } => format!("jsonl:{path}"),
            SinkConfig::Webhook(s) => s.name.clone().unwrap_or_else(|| format!("webhook:{}", s.source())),
            SinkConfig::Slack(s) => s.name.clone().unwrap_or_else(|| format!("slack:{}", s.source())),
            SinkConfig::Teams(s) => s.name.clone().unwrap_or_else(|| format!("teams:{}", s.source())),
            SinkConfig::Alertmanager(s) => s.name.clone().unwrap_or_else(|| format!("alertmanager:{}", s.source())),
            SinkConfig::Pagerduty(s) => s.name.clone().unwrap_or_else(|| {
                format!("pagerduty:{}", source_name(None, s.routing_key_env.as_deref(), s.routing_key_file.as_deref()))
            }),
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
            metrics: Vec::new(),
            silence: SilenceConfig::default(),
            detector: Detector::Window,
            false_alarm_probability: Fraction(0.2),
            design_effect: None,
        }
    }
}

/// One monitoring mode's notification cadence — and, deprecated in favour of
/// `[[monitoring.metrics]]`, the story's per-metric windows and thresholds.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModePolicy {
    /// Deprecated: rolling window for the intraday hit ratio (and Sharpe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intraday_hit_ratio_window: Option<PositiveDuration>,
    /// Deprecated: rolling window for swing precision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swing_precision_window: Option<PositiveDuration>,
    /// Deprecated: relative drop of the intraday hit ratio that counts as a breach (0.05 = 5 %).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intraday_hit_ratio_drop: Option<Fraction>,
    /// Deprecated: relative drop of swing precision that counts as a breach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swing_precision_drop: Option<Fraction>,
    /// Deprecated: absolute drop of the intraday Sharpe ratio that counts as a breach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intraday_sharpe_drop: Option<PositiveFloat>,
    /// How often a firing alert is notified again.
    pub notify_every: PositiveDuration,
}

/// The story's per-metric defaults of one mode: (hit-ratio window, precision window, hit-ratio
/// drop, precision drop, Sharpe drop).
type StoryDefaults = (PositiveDuration, PositiveDuration, f64, f64, f64);

impl ModePolicy {
    /// The story's heightened cadence.
    pub fn heightened() -> Self {
        ModePolicy::cadence(2)
    }

    /// The story's normal cadence.
    pub fn normal() -> Self {
        ModePolicy::cadence(6)
    }

    fn cadence(hours: i64) -> Self {
        ModePolicy {
            intraday_hit_ratio_window: None,
            swing_precision_window: None,
            intraday_hit_ratio_drop: None,
            swing_precision_drop: None,
            intraday_sharpe_drop: None,
            notify_every: PositiveDuration(Duration::hours(hours)),
        }
    }

    fn heightened_defaults() -> StoryDefaults {
        (PositiveDuration(Duration::hours(6)), PositiveDuration(Duration::hours(24)), 0.05, 0.05, 0.15)
    }

    fn normal_defaults() -> StoryDefaults {
        (PositiveDuration(Duration::hours(24)), PositiveDuration(Duration::hours(90 * 24)), 0.10, 0.10, 0.25)
    }
}

impl Default for ModePolicy {
    fn default() -> Self {
        Self::normal()
    }
}
