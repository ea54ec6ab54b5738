//! The release pipeline before deploy, one module per step: [`audit`] → [`validate`] →
//! [`manifest`] → [`approve`], with [`verify`] the one function every reader of a manifest goes
//! through. Each step depends only on the steps before it; `approve` sits above `verify` (it
//! verifies the manifest before signing it).

pub mod approve;
pub mod audit;
pub mod diff;
pub mod manifest;
pub mod validate;
pub mod verify;
