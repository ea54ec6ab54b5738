//! Recovery: finish or undo every transaction a crash left unfinished. Before the commit point the
//! target is brought back to exactly the old release, after it forward to exactly the new one —
//! idempotently, so a crash during recovery is recovered by the next run. Every mutating command
//! runs this first, under the locks.

use std::fmt;
use std::fs;
use std::path::PathBuf;

use crate::deploy::journal::{self, Journal};
use crate::deploy::target::Target;
use crate::deploy::{converge, finish};
use crate::error::{Error, IoContext, Result};
use crate::infra::clock::Time;
use crate::layout::Workspace;
use crate::model::ids::ReleaseId;
use crate::model::journal::{Ending, Kind, Plan, ReleaseFiles};
use crate::model::registry::{Action, HistoryEntry};
use crate::registry;

/// Which way recovery moved an interrupted transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// To the new release: it had passed its commit point.
    Forward,
    /// Back to the old release.
    Back,
    /// Nothing to do: the journal never recorded its plan (a crash or a full disk right after it
    /// was created), so the transaction changed nothing. The journal is retired.
    Discarded,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Direction::Forward => "forward",
            Direction::Back => "back",
            Direction::Discarded => "discarded",
        })
    }
}

/// What recovery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The transaction.
    pub txid: String,
    /// Which way.
    pub direction: Direction,
    /// The release the target now holds.
    pub release: Option<ReleaseId>,
}

/// The journals not yet retired to `done/`, oldest first.
fn open_journals(workspace: &Workspace) -> Result<Vec<PathBuf>> {
    let dir = workspace.journal_dir();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).at(&dir, "listing"),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    paths.sort();
    Ok(paths)
}

/// An unfinished transaction, as the next recovery will find it (read without the locks, so a
/// transaction running right now is listed too).
#[derive(Debug, Clone)]
pub struct Pending {
    /// Its journal.
    pub journal: PathBuf,
    /// What it set out to do.
    pub plan: Plan,
    /// Whether it passed its commit point: recovery completes it (else undoes it).
    pub committed: bool,
}

impl Pending {
    /// The release the target holds once recovery has run (`None`: nothing).
    pub fn lands_on(&self) -> Option<&ReleaseFiles> {
        if self.committed { Some(&self.plan.to) } else { self.plan.from.as_ref() }
    }

    /// One line for people: what was interrupted and what recovery will do.
    pub fn describe(&self) -> String {
        let from = self.plan.from.as_ref().map_or_else(|| "nothing".to_string(), |f| f.release_id.to_string());
        let what = format!("{} {from} -> {} ({})", self.plan.kind, self.plan.to.release_id, self.plan.txid);
        if self.committed {
            format!(
                "{what} passed its commit point: production serves {}; `shipshape recover` completes it",
                self.plan.to.release_id
            )
        } else {
            format!("{what} did not reach its commit point: `shipshape recover` restores {from}")
        }
    }
}

/// The unfinished transactions in the journal, oldest first (a journal that never recorded its
/// plan, or already has its outcome, is not one: recovery only tidies it away).
pub fn pending(workspace: &Workspace) -> Result<Vec<Pending>> {
    let mut out = Vec::new();
    for path in open_journals(workspace)? {
        if let Some(read) = journal::read(&path)?
            && read.outcome.is_none()
        {
            let committed = read.committed();
            out.push(Pending { journal: path, plan: read.plan, committed });
        }
    }
    Ok(out)
}

/// Finish or undo every unfinished transaction in the journal. The caller holds the locks of
/// `target`; each transaction is replayed against the target its plan recorded, which is `target`
/// unless `[deploy] target` was changed with a transaction open — then that one's target too.
pub fn recover(workspace: &Workspace, target: &Target, now: Time) -> Result<Vec<Recovered>> {
    let mut done = Vec::new();
    for path in open_journals(workspace)? {
        let Some(read) = journal::read(&path)? else {
            journal::retire(&path)?;
            let txid = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            done.push(Recovered { txid, direction: Direction::Discarded, release: None });
            continue;
        };
        if read.outcome.is_some() {
            journal::retire(&path)?;
            continue;
        }
        let plan = &read.plan;
        let plan_target = if plan.target == target.root && plan.mode == target.mode {
            target.clone()
        } else {
            Target::at(plan.target.clone(), plan.mode)
        };
        let mut journal = Journal::open(&path)?;
        if read.committed() {
            converge(workspace, &plan_target, Some(&plan.to), plan)?;
            // What the deploy would have recorded right after its commit point. Best effort: the
            // registry's active release, written next, raises the accepted sequence on its own
            // (trust::anti_rollback), so an unreadable manifest must not leave the workspace stuck.
            if plan.kind == Kind::Deploy
                && let Ok(loaded) = crate::pipeline::manifest::load(&plan.to.manifest.under(&workspace.root))
            {
                match crate::trust::anti_rollback::record(workspace, &loaded, now) {
                    Ok(()) | Err(Error::Check(_)) => {}
                    Err(other) => return Err(other),
                }
            }
            finish(workspace, plan, now)?;
            journal.outcome(Ending::RecoveredForward, None, now)?;
            done.push(Recovered {
                txid: plan.txid.clone(),
                direction: Direction::Forward,
                release: Some(plan.to.release_id.clone()),
            });
        } else {
            converge(workspace, &plan_target, plan.from.as_ref(), plan)?;
            registry::record(
                workspace,
                HistoryEntry {
                    at: now,
                    action: Action::Recovered,
                    release_id: plan.from.as_ref().map_or_else(|| plan.to.release_id.clone(), |f| f.release_id.clone()),
                    previous_release_id: Some(plan.to.release_id.clone()),
                    by: "shipshape recover".into(),
                    reason: Some(format!("an interrupted {} of {} was undone", plan.kind, plan.to.release_id)),
                    transaction: plan.txid.clone(),
                },
            )?;
            journal.outcome(Ending::RecoveredBack, None, now)?;
            done.push(Recovered {
                txid: plan.txid.clone(),
                direction: Direction::Back,
                release: plan.from.as_ref().map(|f| f.release_id.clone()),
            });
        }
    }
    Ok(done)
}
