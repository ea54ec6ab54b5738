//! Failpoints: in debug builds only, `SHIPSHAPE_FAILPOINT=<name>` aborts the process at that step
//! (as `kill -9` would), so tests can prove recovery from every step. Release builds compile every
//! check to `false`.
//!
//! The names are built here and nowhere else, so a test lists them with [`crash_points`] instead of
//! repeating strings that a rename would silently stop matching.

use crate::config::DeployMode;
use crate::model::journal::Phase;

/// The environment variable that names the failpoint.
pub const VARIABLE: &str = "SHIPSHAPE_FAILPOINT";

/// After the journal file was created, before its plan record was written (a full disk here leaves
/// an empty journal).
pub const JOURNAL_CREATED: &str = "journal-created";

/// After the journal's plan record was written.
pub const AFTER_PLAN: &str = "after-plan";

/// After the registry recorded the new release (past the commit point).
pub const AFTER_REGISTRY: &str = "after-registry";

/// Not a crash: skip the free-space check, so that a test reaches a real ENOSPC while writing.
pub const SKIP_SPACE_CHECK: &str = "skip-space-check";

/// After the journal recorded `phase`.
pub fn after(phase: Phase) -> String {
    format!("after-{}", phase.as_str())
}

/// After the `n`th file (1-based) was staged.
pub fn staging(n: usize) -> String {
    format!("staging:{n}")
}

/// After the `n`th file (1-based) was renamed into place (copy mode).
pub fn switching(n: usize) -> String {
    format!("switching:{n}")
}

/// Every crash point a transaction passes, in order, when it writes `files` files in `mode` —
/// whether each lies before the commit point is [`is_before_commit`].
pub fn crash_points(mode: DeployMode, files: usize) -> Vec<String> {
    let mut points = vec![JOURNAL_CREATED.to_string(), AFTER_PLAN.to_string(), after(Phase::Verified)];
    points.extend((1..=files).map(staging));
    points.push(after(Phase::Staged));
    points.push(after(Phase::Switching));
    if mode == DeployMode::Copy {
        points.extend((1..=files).map(switching));
    }
    points.extend([after(Phase::Switched), after(Phase::Checked), after(Phase::Committed)]);
    points.push(AFTER_REGISTRY.to_string());
    points
}

/// Whether a crash at `point` comes before the commit point (recovery then restores the old release).
pub fn is_before_commit(point: &str) -> bool {
    point != after(Phase::Committed) && point != AFTER_REGISTRY
}

/// Whether `SHIPSHAPE_FAILPOINT` names `name` (debug builds only; always false in release builds).
pub fn is_set(name: &str) -> bool {
    cfg!(debug_assertions) && std::env::var(VARIABLE).is_ok_and(|v| v == name)
}

/// Abort here if `SHIPSHAPE_FAILPOINT` names this step (debug builds only).
pub fn hit(name: &str) {
    if is_set(name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_points_follow_the_phases_and_only_the_last_two_are_past_the_commit_point() {
        let copy = crash_points(DeployMode::Copy, 2);
        assert_eq!(
            copy,
            [
                "journal-created",
                "after-plan",
                "after-verified",
                "staging:1",
                "staging:2",
                "after-staged",
                "after-switching",
                "switching:1",
                "switching:2",
                "after-switched",
                "after-checked",
                "after-committed",
                "after-registry"
            ]
        );
        assert_eq!(copy.iter().filter(|p| !is_before_commit(p)).count(), 2);
        assert!(!crash_points(DeployMode::Symlink, 2).iter().any(|p| p.starts_with("switching:")));
    }
}
