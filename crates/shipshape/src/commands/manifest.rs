//! `shipshape manifest`.

use std::process::ExitCode;

use serde_json::json;
use shipshape_core::model::ids::ReleaseType;
use shipshape_core::pipeline::manifest::{self, ManifestRequest};

use crate::cli::{ManifestArgs, ReleaseTypeArg};
use crate::context::Context;

/// Make a manifest from the newest (or the given) audit bundle.
pub fn run(context: &Context, args: &ManifestArgs) -> anyhow::Result<ExitCode> {
    let workspace = context.workspace()?;
    let now = context.now();
    let request = ManifestRequest {
        release_type: match args.release_type {
            ReleaseTypeArg::Major => ReleaseType::Major,
            ReleaseTypeArg::Minor => ReleaseType::Minor,
            ReleaseTypeArg::Hotfix => ReleaseType::Hotfix,
        },
        bundle: args.bundle.as_ref().map(|b| context.start_dir.join(b)),
        deployer: args.deployer.clone(),
        environment: args.environment.clone(),
        build_id: args.build_id.clone(),
        tickets: args.tickets.clone(),
        allow_unvalidated: args.allow_unvalidated,
        allow_identical: args.allow_identical,
    };
    let progress = context.progress();
    let outcome = manifest::create(&workspace, &request, now, progress.as_ref())?;
    for warning in &outcome.warnings {
        context.warn(warning);
    }
    for digest in &outcome.repaired_objects {
        context.warn(format!("store object {digest} was corrupt and has been rewritten from the workspace"));
    }
    let loaded = &outcome.loaded;
    if let (Some(key), Some(role)) = (&args.sign, &args.sign_role) {
        let request = shipshape_core::pipeline::approve::ApproveRequest {
            role: role.clone(),
            key: Some(context.start_dir.join(key)),
            gpg: None,
            signature: None,
            name: args.deployer.clone(),
            email: None,
        };
        let check = shipshape_core::pipeline::approve::approve(&workspace, loaded, &request, now)?;
        context.note(format!(
            "approved as {} by {} <{}>",
            check.role,
            shipshape_core::infra::text::printable(&check.name),
            shipshape_core::infra::text::printable(&check.email)
        ));
    }
    if loaded.manifest.validation.overridden {
        context.warn(format!(
            "validation was {} and --allow-unvalidated overrode it; the manifest records this",
            loaded.manifest.validation.status
        ));
    }
    let m = &loaded.manifest;
    let path = workspace.display(&loaded.path).into_owned();
    if args.json {
        super::print_json(&json!({
            "manifest": path,
            "manifest_sha256": loaded.digest,
            "release_id": m.release_id,
            "release_type": m.release_type,
            "sequence": m.sequence,
            "environment": m.deployment.environment,
            "artifacts": m.artifacts.len(),
            "new_objects": outcome.new_objects,
            "reused_objects": outcome.reused_objects,
            "previous_release_id": m.rollback_plan.previous_release_id,
            "expires": m.expires,
        }))?;
    } else {
        context.note(format!(
            "{} ({}, sequence {} in {}): {} artifacts, {} new store objects, {} already stored; expires {}",
            m.release_id,
            m.release_type,
            m.sequence,
            m.deployment.environment,
            m.artifacts.len(),
            outcome.new_objects,
            outcome.reused_objects,
            m.expires
        ));
        println!("{path}");
    }
    super::ok()
}
