//! `shipshape operator add|remove|list`: the named operators of `serve`.

use std::process::ExitCode;

use shipshape_web::operators::{self, Role};

use crate::cli::{OperatorAction, OperatorArgs};
use crate::context::Context;

/// `shipshape operator …`.
pub fn run(context: &Context, args: &OperatorArgs) -> anyhow::Result<ExitCode> {
    let path = match &args.file {
        Some(path) => context.start_dir.join(path),
        None => operators::default_path(&context.workspace()?.root),
    };
    match &args.action {
        OperatorAction::Add { name, role } => {
            let role = Role::parse(role)
                .ok_or_else(|| shipshape_core::Error::Usage(format!("--role `{role}`: viewer, engine or operator")))?;
            let token = operators::add(&path, name, role, &context.now().instant().to_string())?;
            if args.json {
                super::print_json(&serde_json::json!({ "name": name, "role": role, "token": token }))?;
            } else {
                eprintln!("added {name} ({}) to {}; their token, shown this once:", role.as_str(), path.display());
                println!("{token}");
            }
        }
        OperatorAction::Remove { name } => {
            if !operators::remove(&path, name)? {
                return Err(shipshape_core::Error::Usage(format!("no operator `{name}` in {}", path.display())).into());
            }
            if args.json {
                super::print_json(&serde_json::json!({ "removed": name }))?;
            } else {
                println!("removed {name}: their token no longer works (a running serve sees it at once)");
            }
        }
        OperatorAction::List => {
            let file = operators::load(&path)?;
            if args.json {
                let list: Vec<_> = file
                    .operators
                    .iter()
                    .map(|o| serde_json::json!({ "name": o.name, "role": o.role, "id": o.id, "added": o.added }))
                    .collect();
                super::print_json(&list)?;
            } else if file.operators.is_empty() {
                println!("no operators in {} (add one: shipshape operator add NAME)", path.display());
            } else {
                for o in &file.operators {
                    println!("{:<24} {:<9} ss1.{}.…  added {}", o.name, o.role.as_str(), o.id, o.added);
                }
            }
        }
    }
    super::ok()
}
