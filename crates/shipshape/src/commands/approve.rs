//! `shipshape approve MANIFEST --role ROLE (--key PATH | --signature FILE) [--name] [--email]`.

use std::process::ExitCode;

use shipshape_core::pipeline::approve::{self, ApproveRequest};
use shipshape_core::pipeline::manifest;

use crate::cli::ApproveArgs;
use crate::context::Context;

/// Sign or import an approval; it is recorded only if it counts.
pub fn run(context: &Context, args: &ApproveArgs) -> anyhow::Result<ExitCode> {
    let workspace = context.workspace()?;
    let path = shipshape_core::pipeline::manifest::resolve_argument(&workspace, &context.start_dir, &args.manifest)?;
    let loaded = manifest::load(&path)?;
    let request = ApproveRequest {
        role: args.role.clone(),
        key: args.key.as_ref().map(|k| context.start_dir.join(k)),
        gpg: args.gpg.clone(),
        signature: args.signature.as_ref().map(|s| context.start_dir.join(s)),
        name: args.name.clone(),
        email: args.email.clone(),
    };
    let now = context.now();
    let check = approve::approve(&workspace, &loaded, &request, now)?;
    println!("{}", workspace.display(&shipshape_core::layout::approvals_path(&loaded.path)));
    context.note(format!(
        "approved {} as {} by {} <{}> ({})",
        loaded.manifest.release_id,
        check.role,
        shipshape_core::infra::text::printable(&check.name),
        shipshape_core::infra::text::printable(&check.email),
        check.key_fingerprint
    ));
    let report = shipshape_core::trust::judge::verify_approvals(&workspace, &loaded, now)?;
    for requirement in &report.requirements {
        context.note(format!(
            "  {} of {} approvals from {}{}",
            requirement.approvers.len(),
            requirement.needed,
            requirement.roles.join("/"),
            if requirement.met { " (met)" } else { "" }
        ));
    }
    if report.threshold_met {
        context.note(format!("the {} release's approval threshold is met", report.release_type));
    }
    super::ok()
}
