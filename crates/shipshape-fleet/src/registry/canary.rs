//! An environment's canary in the registry: the candidate, its steps and current share, and a
//! generation that only grows (an ended canary keeps its row at 0 %), moved like the pointer —
//! in a transaction, recorded in the history, agents notified.

use serde::Serialize;

use super::{CHANNEL, Pointer, Registry, Target, Value, Who};
use crate::error::Result;

/// An environment's canary: a candidate trading `percent` of capital on every host beside the
/// desired (stable) release. `percent` 0: none under way (the row stays so generations only grow).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CanaryPointer {
    /// The environment.
    pub environment: String,
    /// The candidate (empty when none).
    pub release_id: String,
    /// Its manifest's hash (what agents fetch and check).
    pub manifest_sha256: String,
    /// Its sequence.
    pub sequence: u64,
    /// Its chain.
    pub chain: String,
    /// The steps, in percent (`10,25,50,100`).
    pub steps: String,
    /// The candidate's share now (0: no canary).
    pub percent: u32,
    /// Changes so far.
    pub generation: u64,
    /// Who changed it last.
    pub moved_by: String,
    /// When (unix seconds).
    pub moved_at: i64,
    /// Why.
    pub note: String,
}

const CANARY_COLUMNS: &str =
    "environment, release_id, manifest_sha256, sequence, chain, steps, percent, generation, moved_by, moved_at, note";

fn canary_row(row: &[Value]) -> CanaryPointer {
    CanaryPointer {
        environment: row[0].text(),
        release_id: row[1].text(),
        manifest_sha256: row[2].text(),
        sequence: row[3].int() as u64,
        chain: row[4].text(),
        steps: row[5].text(),
        percent: row[6].int() as u32,
        generation: row[7].int() as u64,
        moved_by: row[8].text(),
        moved_at: row[9].int(),
        note: row[10].text(),
    }
}

impl CanaryPointer {
    /// The candidate as a pointer target.
    pub fn target(&self) -> Target {
        Target {
            release_id: self.release_id.clone(),
            manifest_sha256: self.manifest_sha256.clone(),
            sequence: self.sequence,
            chain: self.chain.clone(),
        }
    }
}

impl Registry {
    /// The environment's canary, when one is under way (percent above 0).
    pub fn canary(&mut self, environment: &str) -> Result<Option<CanaryPointer>> {
        Ok(self.canary_any(environment)?.filter(|c| c.percent > 0))
    }

    /// The environment's canary row, also an ended one (percent 0).
    pub fn canary_any(&mut self, environment: &str) -> Result<Option<CanaryPointer>> {
        let rows = self
            .sql
            .query(&format!("SELECT {CANARY_COLUMNS} FROM canaries WHERE environment = $1"), &[environment.into()])?;
        Ok(rows.first().map(|r| canary_row(r)))
    }

    /// Start, step or end (`percent` 0) the environment's canary of `candidate` (with its `steps`),
    /// recorded in the history as `kind` (`canary_start`, `canary_step`, `canary_abort`), agents
    /// notified at commit. Returns the new generation.
    pub fn set_canary(
        &mut self,
        environment: &str,
        candidate: &Target,
        steps: &str,
        percent: u32,
        kind: &str,
        who: &Who<'_>,
    ) -> Result<u64> {
        self.in_transaction(|r| r.set_canary_in(environment, candidate, steps, percent, kind, who))
    }

    fn set_canary_in(
        &mut self,
        environment: &str,
        candidate: &Target,
        steps: &str,
        percent: u32,
        kind: &str,
        who: &Who<'_>,
    ) -> Result<u64> {
        let generation = self.canary_any(environment)?.map_or(0, |c| c.generation) + 1;
        let values: Vec<Value> = vec![
            environment.into(),
            (&candidate.release_id).into(),
            (&candidate.manifest_sha256).into(),
            candidate.sequence.into(),
            (&candidate.chain).into(),
            steps.into(),
            u64::from(percent).into(),
            generation.into(),
            who.by.into(),
            who.at.into(),
            who.note.into(),
        ];
        self.sql.execute(
            &format!(
                "INSERT INTO canaries ({CANARY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 ON CONFLICT (environment) DO UPDATE SET release_id = $2, manifest_sha256 = $3, sequence = $4,
                   chain = $5, steps = $6, percent = $7, generation = $8, moved_by = $9, moved_at = $10, note = $11"
            ),
            &values,
        )?;
        let note = format!("{percent} %: {}", who.note);
        self.record(environment, "", kind, &candidate.release_id, "", generation, who.by, &note, who.at)?;
        self.sql.notify(CHANNEL)?;
        Ok(generation)
    }

    /// Promote the canary: the pointer moves to the candidate (compare-and-swap on `expected`,
    /// action `canary`) and the canary ends, in one transaction.
    pub fn finish_canary(
        &mut self,
        environment: &str,
        expected: u64,
        candidate: &Target,
        steps: &str,
        who: &Who<'_>,
    ) -> Result<Pointer> {
        self.in_transaction(|r| {
            let pointer = r.move_pointer_in(environment, expected, candidate, "canary", who)?;
            r.set_canary_in(environment, candidate, steps, 0, "canary_promote", who)?;
            Ok(pointer)
        })
    }
}
