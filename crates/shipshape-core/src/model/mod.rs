//! The on-disk schemas, and nothing else: the types that files under `release/` and `data/` hold,
//! with their strict (de)serialisation. Behaviour lives in the modules that use them (as cargo keeps
//! its manifest types in `cargo-util-schemas`), so a schema never imports an operation.

pub mod anti_rollback;
pub mod approvals;
pub mod audit;
pub mod ids;
pub mod manifest;
pub mod policy;
pub mod registry;
pub mod validation;
