//! shipshape's release engine (map refined below).

pub mod config;
pub mod deploy;
pub mod error;
pub mod events;
pub mod infra;
pub mod layout;
pub mod model;
pub mod pipeline;
pub mod registry;
pub mod scaffold;
pub mod trust;

pub use error::{Error, ErrorKind, Result};
