//! Plumbing with no knowledge of releases: crash-safe writes, hashing, locks, time, child
//! processes, git, confined paths, strict YAML with its parse cache, the object store and a small
//! HTTP client. Everything above builds on these; nothing here imports a module outside `infra`
//! except [`crate::error`].
//!
//! Inside, dependencies run one way: `atomic` ← `hash` ← `yaml` ← `store`; `clock`, `command`,
//! `git`, `paths` and `http` stand alone.

pub mod atomic;
pub mod clock;
pub mod command;
pub mod git;
pub mod hash;
pub mod http;
pub mod lock;
pub mod paths;
pub mod store;
pub mod text;
pub mod user;
pub mod yaml;
