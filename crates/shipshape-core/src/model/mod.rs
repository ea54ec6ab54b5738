//! The on-disk schemas, and nothing else: the types that files under `release/` and `data/` (and
//! the target's `.shipshape/`) hold, with their strict (de)serialisation. Behaviour lives in the
//! modules that use them (as cargo keeps its manifest types in `cargo-util-schemas`), so a schema
//! never imports an operation, and the operations above share one definition of each file.
//!
//! Inside, `ids` is the root; `manifest`, `audit`, `validation`, `approvals`, `policy`, `journal`,
//! `registry` and `anti_rollback` build on it (and `validation` on `audit`'s tool record).

pub mod anti_rollback;
pub mod approvals;
pub mod audit;
pub mod ids;
pub mod journal;
pub mod manifest;
pub mod policy;
pub mod registry;
pub mod validation;
