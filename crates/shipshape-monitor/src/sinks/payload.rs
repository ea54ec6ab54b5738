//! What each kind of HTTP sink receives for one notification: the notification object itself
//! (generic webhooks), a Slack Block Kit message, a Microsoft Teams Adaptive Card, a PagerDuty
//! Events API v2 event, or Alertmanager's v2 alert list.

use serde_json::{Value, json};

use super::Notification;
use crate::alert::NotifyReason;
use crate::judge::Severity;

fn number(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.4}"))
}

/// The title line: what happened, to which metric.
fn title(n: &Notification) -> String {
    let severity = match n.severity {
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    };
    match n.reason {
        NotifyReason::Resolved => format!("RESOLVED: {} ({})", n.metric, n.release_id),
        NotifyReason::AutoRollbackFailed => format!("AUTO-ROLLBACK FAILED: {}", n.release_id),
        _ => format!("{} {severity}: {} ({})", n.reason_word(), n.metric, n.release_id),
    }
}

/// Facts shown as fields: release, environment, mode, strategy, value vs baseline, window.
fn facts(n: &Notification) -> Vec<(&'static str, String)> {
    vec![
        ("Release", n.release_id.clone()),
        ("Environment", n.environment.clone()),
        ("Mode", format!("{:?}", n.mode).to_lowercase()),
        ("Strategy", n.strategy.clone()),
        (
            "Value",
            format!(
                "{} vs baseline {} (threshold {}, {} samples)",
                number(n.value),
                number(n.baseline),
                n.threshold,
                n.samples
            ),
        ),
        ("Window", format!("{} .. {}", n.window_from, n.window_to)),
    ]
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped (they start links and mentions).
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A Slack incoming-webhook message: `text` (the notification's fallback), a header, the summary and
/// the facts as fields, and the alert's id in the context line.
pub fn slack(n: &Notification) -> Value {
    let fields: Vec<Value> = facts(n)
        .into_iter()
        .map(|(k, v)| json!({ "type": "mrkdwn", "text": format!("*{k}*\n{}", slack_escape(&v)) }))
        .collect();
    json!({
        "text": slack_escape(&format!("{}: {}", title(n), n.summary)),
        "blocks": [
            { "type": "header", "text": { "type": "plain_text", "text": title(n).chars().take(150).collect::<String>() } },
            { "type": "section", "text": { "type": "mrkdwn", "text": slack_escape(&n.summary) } },
            { "type": "section", "fields": fields },
            { "type": "context", "elements": [ { "type": "mrkdwn", "text": slack_escape(&format!("shipshape alert {} · started {} · {}", n.alert_id, n.started_at, n.at)) } ] },
        ],
    })
}

/// A Microsoft Teams incoming-webhook (Workflows) message holding one Adaptive Card.
pub fn teams(n: &Notification) -> Value {
    let color = match (n.reason, n.severity) {
        (NotifyReason::Resolved, _) => "Good",
        (_, Severity::Critical) => "Attention",
        _ => "Warning",
    };
    let facts: Vec<Value> = facts(n).into_iter().map(|(k, v)| json!({ "title": k, "value": v })).collect();
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    { "type": "TextBlock", "size": "Large", "weight": "Bolder", "color": color, "text": title(n), "wrap": true },
                    { "type": "TextBlock", "text": n.summary, "wrap": true },
                    { "type": "FactSet", "facts": facts },
                    { "type": "TextBlock", "isSubtle": true, "size": "Small", "text": format!("shipshape alert {} · {}", n.alert_id, n.at), "wrap": true },
                ],
            },
        }],
    })
}

/// The dedup key of an alert episode: one PagerDuty incident per episode, triggered once (repeats
/// and escalations update it) and resolved by the resolution.
pub fn dedup_key(n: &Notification) -> String {
    format!("shipshape/{}/{}/alert-{}", n.environment, n.release_id, n.alert_id)
}

/// A PagerDuty Events API v2 event: `resolve` for a resolution, `trigger` otherwise.
pub fn pagerduty(n: &Notification, routing_key: &str) -> Value {
    if n.reason == NotifyReason::Resolved {
        return json!({ "routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key(n) });
    }
    let severity = match (n.reason, n.severity) {
        (NotifyReason::AutoRollbackFailed, _) | (_, Severity::Critical) => "critical",
        _ => "warning",
    };
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key(n),
        "payload": {
            "summary": format!("{}: {}", title(n), n.summary).chars().take(1024).collect::<String>(),
            "source": format!("shipshape/{}", n.environment),
            "severity": severity,
            "timestamp": n.at,
            "component": n.strategy,
            "group": n.release_id,
            "class": n.metric,
            "custom_details": n,
        },
    })
}

/// Alertmanager's v2 alert object.
pub fn alertmanager(n: &Notification) -> Value {
    json!([{
        "labels": {
            "alertname": format!("shipshape_{}", n.metric),
            "release_id": n.release_id,
            "environment": n.environment,
            "mode": n.mode,
            "strategy": n.strategy,
            "metric": n.metric,
            "severity": n.severity,
        },
        "annotations": {
            "summary": n.summary,
            "value": n.value.map(|v| format!("{v:.4}")).unwrap_or_default(),
            "baseline": n.baseline.map(|v| format!("{v:.4}")).unwrap_or_default(),
            "threshold": format!("{}", n.threshold),
            "samples": n.samples.to_string(),
            "window": format!("{} .. {}", n.window_from, n.window_to),
        },
        "startsAt": n.started_at,
        "endsAt": n.ends_at,
        "generatorURL": format!("shipshape://alerts/{}", n.alert_id),
    }])
}
