//! `shipshape init [DIR]`.

use std::process::ExitCode;

use shipshape_core::scaffold::{self, Scaffolded};

use crate::cli::InitArgs;
use crate::context::Context;

/// Scaffold a workspace, reporting each path as created or kept.
pub fn run(context: &Context, args: &InitArgs) -> anyhow::Result<ExitCode> {
    let dir = context.start_dir.join(&args.dir);
    let outcome = scaffold::init(&dir)?;
    for item in &outcome {
        match item {
            Scaffolded::Created(path) => println!("created  {}", path.display()),
            Scaffolded::Kept(path) => println!("kept     {} (already exists; not overwritten)", path.display()),
        }
    }
    context.note(format!(
        "next: edit {}/shipshape.toml so each [artifacts.*] include glob matches your files, then run `shipshape audit`",
        dir.display()
    ));
    super::ok()
}
