//! One module per subcommand, each with a `run` that resolves its flags and calls the library.

pub mod audit;
pub mod demo;
pub mod init;
pub mod manifest;
pub mod verify;

use std::process::ExitCode;

use shipshape_core::clock::Time;
use shipshape_core::lock::WorkspaceLock;
use shipshape_core::workspace::Workspace;

/// Take the workspace lock for a mutating command.
pub fn lock(workspace: &Workspace, command: &str, now: Time) -> anyhow::Result<WorkspaceLock> {
    Ok(WorkspaceLock::acquire(&workspace.lock_path(), command, now)?)
}

/// Print a value as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Exit 0.
pub fn ok() -> anyhow::Result<ExitCode> {
    Ok(ExitCode::SUCCESS)
}
