//! The journal of one transaction (`release/journal/<txid>.jsonl`): written append-only as the
//! transaction goes, read back by recovery. Its records are [`crate::model::journal::Record`].
//!
//! Only the plan, the `committed` phase and the outcome are fsynced before the command goes on:
//! recovery decides on those alone. The other phases are a record for people and reach the disk
//! with the next fsync. A torn last line (a crash mid-append) is ignored: its step did not happen.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::deploy::failpoint;
use crate::error::{Error, IoContext, Result};
use crate::infra::atomic::{create_dir_all_durable, sync_dir};
use crate::infra::clock::Time;
use crate::model::journal::{Ending, Phase, Plan, Record};

/// An open journal, appended to.
pub(crate) struct Journal {
    pub(crate) path: PathBuf,
    file: File,
    /// An append failed (a full disk): part of its line may be in the file, so the next record
    /// starts on a new line, leaving the torn one to be skipped on reading.
    torn: bool,
}

impl Journal {
    /// Create the journal of `plan` in `dir`, its plan record durable.
    pub(crate) fn create(dir: &Path, plan: &Plan, now: Time) -> Result<Journal> {
        create_dir_all_durable(dir)?;
        let path = dir.join(format!("{}.jsonl", plan.txid));
        let file = OpenOptions::new().append(true).create_new(true).open(&path).at(&path, "creating journal")?;
        failpoint::hit(failpoint::JOURNAL_CREATED);
        let mut journal = Journal { path, file, torn: false };
        if let Err(error) =
            journal.append(&Record::Plan { plan: Box::new(plan.clone()), at: now }, true).and_then(|()| sync_dir(dir))
        {
            // Nothing was changed before the plan was durable: the journal goes with the error
            // (should removing it fail too, recovery discards a planless journal).
            let _ = fs::remove_file(&journal.path);
            return Err(error);
        }
        Ok(journal)
    }

    /// Reopen an unfinished journal to append its outcome.
    pub(crate) fn open(path: &Path) -> Result<Journal> {
        let file = OpenOptions::new().append(true).open(path).at(path, "opening journal")?;
        Ok(Journal { path: path.to_path_buf(), file, torn: true })
    }

    /// Append a record; `durable` forces it to disk before returning.
    fn append(&mut self, record: &Record, durable: bool) -> Result<()> {
        let mut line = serde_json::to_vec(record).map_err(|e| Error::invalid(&self.path, e.to_string()))?;
        line.push(b'\n');
        if self.torn {
            line.insert(0, b'\n');
        }
        self.torn = true;
        self.file.write_all(&line).at(&self.path, "writing journal")?;
        if durable {
            self.file.sync_data().at(&self.path, "syncing journal")?;
        }
        self.torn = false;
        Ok(())
    }

    /// Record that `phase` was reached (durably for the commit point).
    pub(crate) fn phase(&mut self, phase: Phase, now: Time) -> Result<()> {
        self.append(&Record::Phase { phase, at: now }, phase == Phase::Committed)?;
        failpoint::hit(&failpoint::after(phase));
        Ok(())
    }

    /// Record how the transaction ended and retire the journal to `done/`.
    pub(crate) fn outcome(&mut self, outcome: Ending, reason: Option<String>, now: Time) -> Result<()> {
        self.append(&Record::Outcome { outcome, reason, at: now }, true)?;
        // The outcome is what ends the transaction; the move is housekeeping the next recovery
        // redoes if it fails here (see [`retire`]).
        let _ = retire(&self.path);
        Ok(())
    }
}

/// Move a finished journal to `journal/done/`, so that recovery, which every mutating command runs
/// first, reads only unfinished ones. The move need not be durable: a finished journal left behind
/// by a crash has its outcome, and the next recovery moves it.
pub(crate) fn retire(path: &Path) -> Result<()> {
    let Some((dir, name)) = path.parent().zip(path.file_name()) else { return Ok(()) };
    let done = dir.join("done");
    create_dir_all_durable(&done)?;
    fs::rename(path, done.join(name)).at(path, "moving the finished journal to done/")
}

/// What a journal says.
#[derive(Debug, Clone)]
pub(crate) struct JournalRead {
    pub(crate) plan: Plan,
    pub(crate) phases: Vec<Phase>,
    pub(crate) outcome: Option<Ending>,
}

impl JournalRead {
    /// Whether the transaction passed its commit point.
    pub(crate) fn committed(&self) -> bool {
        self.phases.contains(&Phase::Committed)
    }
}

/// Read a journal file; `None` when it never recorded its plan (empty, or torn in the plan record):
/// such a transaction changed nothing, since nothing is written before the plan is durable.
pub(crate) fn read(path: &Path) -> Result<Option<JournalRead>> {
    let file = File::open(path).at(path, "opening journal")?;
    read_from(path, BufReader::new(file))
}

fn read_from(path: &Path, reader: impl BufRead) -> Result<Option<JournalRead>> {
    let (mut plan, mut phases, mut outcome) = (None, Vec::new(), None);
    for line in reader.split(b'\n') {
        let line = line.at(path, "reading journal")?;
        if line.trim_ascii().is_empty() {
            continue;
        }
        // A torn line (a crash or a full disk mid-append; it may end inside a UTF-8 sequence) is
        // ignored: its step did not happen.
        let Ok(record) = serde_json::from_slice::<Record>(&line) else { continue };
        match record {
            Record::Plan { plan: p, .. } => plan = Some(*p),
            Record::Phase { phase, .. } => phases.push(phase),
            Record::Outcome { outcome: o, .. } => outcome = Some(o),
        }
    }
    Ok(plan.map(|plan| JournalRead { plan, phases, outcome }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::DeployMode;
    use crate::deploy::plan::tests::files;
    use crate::model::journal::Kind;

    fn plan() -> Plan {
        Plan {
            txid: "tx_1".into(),
            kind: Kind::Deploy,
            mode: DeployMode::Copy,
            target: PathBuf::from("/srv/t"),
            from: None,
            to: files("release_20251012_190000", &[("a.yaml", 1)]),
            changes: Vec::new(),
            unchanged: 1,
            by: "jane".into(),
            reason: None,
            environment: "production".into(),
            heightened_hours: 48,
        }
    }

    fn line(record: &Record) -> String {
        serde_json::to_string(record).unwrap() + "\n"
    }

    fn at() -> Time {
        "2025-10-12T19:00:00+05:30".parse().unwrap()
    }

    #[test]
    fn phases_and_outcome_are_read_back_in_order() {
        let text = [
            line(&Record::Plan { plan: Box::new(plan()), at: at() }),
            line(&Record::Phase { phase: Phase::Verified, at: at() }),
            line(&Record::Phase { phase: Phase::Committed, at: at() }),
            line(&Record::Outcome { outcome: Ending::Committed, reason: None, at: at() }),
        ]
        .concat();
        let read = read_from(Path::new("j"), text.as_bytes()).unwrap().unwrap();
        assert_eq!(read.phases, [Phase::Verified, Phase::Committed]);
        assert!(read.committed());
        assert_eq!(read.outcome, Some(Ending::Committed));
        assert_eq!(read.plan.to.release_id.as_str(), "release_20251012_190000");
    }

    #[test]
    fn a_torn_last_record_did_not_happen_whatever_its_type() {
        let head = line(&Record::Plan { plan: Box::new(plan()), at: at() });
        for torn in [
            line(&Record::Phase { phase: Phase::Committed, at: at() }),
            line(&Record::Outcome { outcome: Ending::Failed, reason: Some("x".into()), at: at() }),
            line(&Record::Outcome { outcome: Ending::Failed, reason: Some("déjà vu ✓".into()), at: at() }),
        ] {
            // Every cut, including ones inside a multi-byte character.
            for cut in 1..torn.len() - 1 {
                let text = [head.as_bytes(), &torn.as_bytes()[..cut]].concat();
                let read = read_from(Path::new("j"), text.as_slice()).unwrap().unwrap();
                assert!(read.phases.is_empty() && read.outcome.is_none(), "{cut}");
                assert!(!read.committed());
            }
        }
    }

    /// A record whose append failed part-way (a full disk) leaves a torn line; the records written
    /// after it start on their own line, so they are read, and the torn one is not.
    #[test]
    fn a_record_after_a_failed_append_starts_on_its_own_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::create(dir.path(), &plan(), at()).unwrap();
        // What a failed write leaves: part of a committed record, no newline.
        let committed = line(&Record::Phase { phase: Phase::Committed, at: at() });
        journal.file.write_all(&committed.as_bytes()[..committed.len() / 2]).unwrap();
        journal.torn = true;
        journal.phase(Phase::Verified, at()).unwrap();
        let read = super::read(&journal.path).unwrap().unwrap();
        assert_eq!(read.phases, [Phase::Verified]);
        assert!(!read.committed());
    }

    #[test]
    fn an_empty_or_planless_journal_has_nothing_to_recover() {
        let plan = line(&Record::Plan { plan: Box::new(plan()), at: at() });
        let torn_plan = &plan[..plan.len() / 2];
        for text in ["", "\n\n", torn_plan] {
            assert!(read_from(Path::new("release/journal/tx_9.jsonl"), text.as_bytes()).unwrap().is_none(), "{text}");
        }
    }

    #[test]
    fn written_journals_read_back_and_retire_to_done() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::create(dir.path(), &plan(), at()).unwrap();
        journal.phase(Phase::Verified, at()).unwrap();
        let read = super::read(&journal.path).unwrap().unwrap();
        assert_eq!((read.phases.as_slice(), read.outcome), ([Phase::Verified].as_slice(), None));
        journal.outcome(Ending::RolledBack, Some("check".into()), at()).unwrap();
        assert!(!dir.path().join("tx_1.jsonl").exists());
        let done = super::read(&dir.path().join("done/tx_1.jsonl")).unwrap().unwrap();
        assert_eq!(done.outcome, Some(Ending::RolledBack));
    }
}
