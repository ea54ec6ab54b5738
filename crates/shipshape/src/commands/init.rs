//! `shipshape init [DIR]`.

use std::path::PathBuf;
use std::process::ExitCode;

use shipshape_core::scaffold::{self, Scaffolded};

use crate::cli::InitArgs;
use crate::context::Context;

/// Scaffold a workspace, proposing includes from the files already there, reporting each path as
/// created or kept, and printing the steps to a first deployed release.
pub fn run(context: &Context, args: &InitArgs) -> anyhow::Result<ExitCode> {
    // `.` and `a/./b` printed as the user would write them.
    let dir: PathBuf = context.start_dir.join(&args.dir).components().collect();
    let found = if dir.exists() { scaffold::propose(&dir) } else { scaffold::Found::default() };
    let outcome = scaffold::init(&dir)?;
    for item in &outcome {
        match item {
            Scaffolded::Created(path) => println!("created  {}", path.display()),
            Scaffolded::Kept(path) => println!("kept     {} (already exists; not overwritten)", path.display()),
        }
    }
    let config_created = outcome.iter().any(|s| matches!(s, Scaffolded::Created(p) if p.ends_with("shipshape.toml")));
    println!();
    if !config_created {
        println!("shipshape.toml was already there and is unchanged.");
    } else if found.kinds.is_empty() {
        println!(
            "No configs, models or notebooks were found: name what you release in shipshape.toml ([artifacts.*])."
        );
    } else {
        let summary: Vec<String> =
            found.kinds.iter().map(|(kind, globs, files)| format!("{files} {kind} ({})", globs.join(", "))).collect();
        println!("shipshape.toml includes what was found: {}.", summary.join("; "));
    }
    let cd = if dir == context.start_dir { String::new() } else { format!("cd {} && ", dir.display()) };
    println!("Next steps (docs/approvals.md and docs/deploy.md say more):");
    println!("  1. review the [artifacts.*] includes in shipshape.toml; set [deploy] target (uncomment it)");
    println!("  2. {cd}shipshape audit && shipshape validate && shipshape manifest --type minor");
    println!(
        "  3. each approver: ssh-keygen -t ed25519 -f KEY; add `EMAIL namespaces=\"ROLE@shipshape\" <KEY.pub>` to"
    );
    println!(
        "     release/allowed_signers (roles in release/policy.yaml), then: shipshape approve newest --role ROLE --key KEY"
    );
    println!("  4. shipshape verify && shipshape deploy --yes");
    println!("  5. shipshape status; commit what `git status` lists (release/.gitignore keeps the rest out)");
    super::ok()
}
