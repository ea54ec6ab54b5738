//! One module per subcommand, each with a `run` that resolves its flags and calls the library.

pub mod approve;
pub mod audit;
pub mod demo;
pub mod deploy;
pub mod gc;
pub mod init;
pub mod manifest;
pub mod monitor;
pub mod score;
pub mod serve;
pub mod status;
pub mod validate;
pub mod verify;

use std::process::ExitCode;

/// Print a value as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    use std::io::Write;
    // writeln!, not println!: a reader that stops early (`| grep -q`, `| head`) is a broken pipe to
    // report quietly, not a panic.
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string_pretty(value)?)?;
    out.flush()?;
    Ok(())
}

/// Exit 0.
pub fn ok() -> anyhow::Result<ExitCode> {
    Ok(ExitCode::SUCCESS)
}
