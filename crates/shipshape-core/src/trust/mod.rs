//! What decides whether a manifest is trusted: the keys (`allowed_signers`, OpenPGP keys), the
//! approval policy, the pure judge of approvals against them, and the anti-rollback state.
//!
//! These read the on-disk schemas of [`crate::model`] and never the pipeline above them.

pub mod allowed_signers;
pub mod anti_rollback;
pub mod judge;
pub mod openpgp;
