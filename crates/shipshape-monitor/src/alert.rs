//! The alert state machine, pure: an evaluation goes in, transitions and notifications come out.
//!
//! ```text
//! insufficient_data ──breach──▶ pending(1) ──breach × (N−1)──▶ firing ──healthy──▶ resolved
//!        ▲                         │healthy                      │  ▲                 │breach
//!        └─────────────────────────┴─▶ inactive ◀────────────────┘  └── repeat every ──┘→ pending(1)
//! ```
//!
//! A breach fires only after `consecutive_breaches` breaching evaluations in a row (the story's
//! "require 3 consecutive alerts"). While firing, the alert is notified again every `repeat_every`
//! (2 h heightened, 6 h normal) and at once when it escalates to critical; it resolves, with one
//! notification, on the first healthy evaluation. Insufficient data never resolves a firing alert:
//! silence is not health.

use serde::{Deserialize, Serialize};

use crate::judge::{Severity, Verdict};

/// Seconds since the epoch (the machine is clock-free: callers pass time in).
pub type Seconds = i64;

/// An alert's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    /// No breach.
    Inactive,
    /// Not enough samples.
    InsufficientData,
    /// Breaching, not yet for long enough.
    Pending {
        /// Consecutive breaching evaluations so far.
        breaches: u32,
        /// Since when.
        #[serde(with = "crate::time_json")]
        since: Seconds,
    },
    /// A sustained, significant breach: notifications go out, and repeat.
    Firing {
        /// How bad.
        severity: Severity,
        /// Since when.
        #[serde(with = "crate::time_json")]
        since: Seconds,
        /// When last notified.
        #[serde(with = "crate::time_json")]
        last_notified: Seconds,
    },
    /// Resolved after firing.
    Resolved {
        /// The evaluation time of the change.
        #[serde(with = "crate::time_json")]
        at: Seconds,
    },
}

/// What the state machine asks the driver to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// Record a transition.
    Transition {
        /// The state before the evaluation.
        from: State,
        /// The state after it.
        to: State,
    },
    /// Send a notification.
    Notify {
        /// Why a notification is due: first firing, repeat, escalation or recovery.
        reason: NotifyReason,
        /// How bad.
        severity: Severity,
    },
}

/// Why a notification is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyReason {
    /// It started firing.
    Firing,
    /// It is still firing (repeat interval elapsed).
    Repeat,
    /// It got worse.
    Escalated,
    /// It stopped.
    Resolved,
    /// An automatic rollback was tried and failed (not an alert: the rollback itself).
    AutoRollbackFailed,
}

/// The parameters of the active mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cadence {
    /// Breaching evaluations in a row before firing.
    pub consecutive_breaches: u32,
    /// Re-notify a firing alert this often (seconds).
    pub repeat_every: Seconds,
}

fn fire(from: State, severity: Severity, now: Seconds) -> (State, Vec<Effect>) {
    let to = State::Firing { severity, since: now, last_notified: now };
    (to, vec![Effect::Transition { from, to }, Effect::Notify { reason: NotifyReason::Firing, severity }])
}

/// Advance `state` by one evaluation at `now`.
pub fn step(state: State, verdict: &Verdict, now: Seconds, cadence: &Cadence) -> (State, Vec<Effect>) {
    let needed = cadence.consecutive_breaches.max(1);
    let next = match (state, verdict) {
        (State::Firing { severity, since, last_notified }, Verdict::Breach { severity: now_severity, .. }) => {
            let severity_now = severity.max(*now_severity);
            let mut effects = Vec::new();
            let mut last = last_notified;
            if severity_now > severity {
                effects.push(Effect::Notify { reason: NotifyReason::Escalated, severity: severity_now });
                last = now;
            } else if now - last_notified >= cadence.repeat_every {
                effects.push(Effect::Notify { reason: NotifyReason::Repeat, severity: severity_now });
                last = now;
            }
            let to = State::Firing { severity: severity_now, since, last_notified: last };
            if to != state {
                effects.insert(0, Effect::Transition { from: state, to });
            }
            return (to, effects);
        }
        (State::Firing { severity, .. }, Verdict::Healthy { .. }) => {
            let to = State::Resolved { at: now };
            return (
                to,
                vec![
                    Effect::Transition { from: state, to },
                    Effect::Notify { reason: NotifyReason::Resolved, severity },
                ],
            );
        }
        // Silence is not health: a firing alert stays firing without data.
        (State::Firing { .. }, Verdict::InsufficientData { .. }) => state,
        (State::Pending { breaches, since }, Verdict::Breach { severity, .. }) => {
            if breaches + 1 >= needed {
                return fire(state, *severity, now);
            }
            State::Pending { breaches: breaches + 1, since }
        }
        (_, Verdict::Breach { severity, .. }) => {
            if needed == 1 {
                return fire(state, *severity, now);
            }
            State::Pending { breaches: 1, since: now }
        }
        (State::Resolved { .. }, Verdict::Healthy { .. }) => state,
        (_, Verdict::Healthy { .. }) => State::Inactive,
        (_, Verdict::InsufficientData { .. }) => State::InsufficientData,
    };
    let effects = if next == state { Vec::new() } else { vec![Effect::Transition { from: state, to: next }] };
    (next, effects)
}

impl State {
    /// The state's name, as the database and the API write it.
    pub fn name(&self) -> &'static str {
        match self {
            State::Inactive => "inactive",
            State::InsufficientData => "insufficient_data",
            State::Pending { .. } => "pending",
            State::Firing { .. } => "firing",
            State::Resolved { .. } => "resolved",
        }
    }

    /// Whether an alert episode is open (pending or firing).
    pub fn is_open(&self) -> bool {
        matches!(self, State::Pending { .. } | State::Firing { .. })
    }
}

impl NotifyReason {
    /// The reason's name, as notifications carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyReason::Firing => "firing",
            NotifyReason::Repeat => "repeat",
            NotifyReason::Escalated => "escalated",
            NotifyReason::Resolved => "resolved",
            NotifyReason::AutoRollbackFailed => "auto_rollback_failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CADENCE: Cadence = Cadence { consecutive_breaches: 3, repeat_every: 2 * 3600 };
    const BREACH: Verdict = Verdict::Breach { drop: 0.07, severity: Severity::Warning };
    const CRITICAL: Verdict = Verdict::Breach { drop: 0.2, severity: Severity::Critical };
    const HEALTHY: Verdict = Verdict::Healthy { drop: 0.0 };
    const NO_DATA: Verdict = Verdict::InsufficientData { samples: 3 };

    fn run(verdicts: &[Verdict], every: Seconds) -> (State, Vec<Effect>) {
        let mut state = State::Inactive;
        let mut all = Vec::new();
        for (i, verdict) in verdicts.iter().enumerate() {
            let (next, effects) = step(state, verdict, i as Seconds * every, &CADENCE);
            state = next;
            all.extend(effects);
        }
        (state, all)
    }

    fn notifications(effects: &[Effect]) -> Vec<NotifyReason> {
        effects
            .iter()
            .filter_map(|e| if let Effect::Notify { reason, .. } = e { Some(*reason) } else { None })
            .collect()
    }

    #[test]
    fn fires_only_after_three_consecutive_breaches() {
        let (state, effects) = run(&[BREACH, BREACH], 600);
        assert!(matches!(state, State::Pending { breaches: 2, .. }));
        assert!(notifications(&effects).is_empty());
        let (state, effects) = run(&[BREACH, BREACH, BREACH], 600);
        assert!(matches!(state, State::Firing { severity: Severity::Warning, since: 1200, .. }));
        assert_eq!(notifications(&effects), [NotifyReason::Firing]);
        // An interruption resets the count.
        let (state, _) = run(&[BREACH, BREACH, HEALTHY, BREACH, BREACH], 600);
        assert!(matches!(state, State::Pending { breaches: 2, .. }));
    }

    #[test]
    fn repeats_at_the_interval_escalates_at_once_and_resolves_once() {
        // Every 10 minutes for 5 hours: fires at 20 min, repeats at 2 h 20 and 4 h 20.
        let mut verdicts = vec![BREACH; 31];
        let (_, effects) = run(&verdicts, 600);
        assert_eq!(notifications(&effects), [NotifyReason::Firing, NotifyReason::Repeat, NotifyReason::Repeat]);
        verdicts.push(CRITICAL);
        verdicts.push(HEALTHY);
        verdicts.push(HEALTHY);
        let (state, effects) = run(&verdicts, 600);
        assert_eq!(
            notifications(&effects),
            [
                NotifyReason::Firing,
                NotifyReason::Repeat,
                NotifyReason::Repeat,
                NotifyReason::Escalated,
                NotifyReason::Resolved
            ]
        );
        assert!(matches!(state, State::Resolved { .. }));
    }

    #[test]
    fn silence_does_not_resolve_and_starts_insufficient() {
        let (state, _) = run(&[NO_DATA], 600);
        assert_eq!(state, State::InsufficientData);
        let (state, effects) = run(&[BREACH, BREACH, BREACH, NO_DATA, NO_DATA], 600);
        assert!(matches!(state, State::Firing { .. }));
        assert_eq!(notifications(&effects), [NotifyReason::Firing]);
    }

    fn verdict() -> impl Strategy<Value = Verdict> {
        prop_oneof![Just(BREACH), Just(CRITICAL), Just(HEALTHY), Just(NO_DATA)]
    }

    proptest! {
        /// Whatever the sequence: every Resolved notification follows a Firing one, firing needs
        /// three breaches in a row, and each transition's `from` is the state before it.
        #[test]
        fn invariants(verdicts in prop::collection::vec(verdict(), 0..80)) {
            let mut state = State::Inactive;
            let mut firing = false;
            let mut streak = 0;
            for (i, v) in verdicts.iter().enumerate() {
                streak = if matches!(v, Verdict::Breach { .. }) { streak + 1 } else if matches!(v, Verdict::InsufficientData { .. }) && firing { streak } else { 0 };
                let (next, effects) = step(state, v, i as Seconds * 600, &CADENCE);
                for effect in &effects {
                    match effect {
                        Effect::Transition { from, .. } => prop_assert_eq!(*from, state),
                        Effect::Notify { reason: NotifyReason::Firing, .. } => { prop_assert!(streak >= 3); firing = true; }
                        Effect::Notify { reason: NotifyReason::Resolved, .. } => { prop_assert!(firing); firing = false; }
                        Effect::Notify { .. } => prop_assert!(firing),
                    }
                }
                prop_assert_eq!(matches!(next, State::Firing { .. }), firing);
                state = next;
            }
        }
    }

    #[test]
    fn states_are_written_in_rfc3339_and_old_numeric_ones_still_read() {
        let state = State::Pending { breaches: 2, since: 1_760_346_000 };
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(json, r#"{"state":"pending","breaches":2,"since":"2025-10-13T09:00:00Z"}"#);
        assert_eq!(serde_json::from_str::<State>(&json).unwrap(), state);
        let old = r#"{"state":"pending","breaches":2,"since":1760346000}"#;
        assert_eq!(serde_json::from_str::<State>(old).unwrap(), state);
        assert!(serde_json::from_str::<State>(r#"{"state":"pending","breaches":2,"since":"soon"}"#).is_err());
    }
}
