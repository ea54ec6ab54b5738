//! One module per subcommand, each with a `run` that resolves its flags and calls the library.

pub mod approve;
pub mod audit;
pub mod calibrate;
pub mod canary;
pub mod demo;
pub mod deploy;
pub mod fleet;
pub mod gc;
pub mod init;
pub mod manifest;
pub mod monitor;
pub mod operator;
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

/// `shipshape completions SHELL`: clap's script, with the approval policy's roles offered after
/// `--role` and `--sign-role` (read when completing, by `completions --list-roles`).
pub fn completions(context: &crate::context::Context, args: &crate::cli::CompletionsArgs) -> anyhow::Result<ExitCode> {
    use clap_complete::Shell;
    use std::io::Write;
    if args.list_roles {
        // Quiet outside a workspace or with a broken policy: a completion must never print errors.
        let roles = context
            .workspace()
            .ok()
            .and_then(|ws| shipshape_core::model::policy::Policy::load(&ws.root.join(&ws.config.approvals.policy)).ok())
            .map(|(policy, _)| policy.roles.into_keys().collect::<Vec<_>>())
            .unwrap_or_default();
        let mut out = std::io::stdout().lock();
        for role in roles {
            writeln!(out, "{role}")?;
        }
        return ok();
    }
    let Some(shell) = args.shell else { return ok() };
    let mut command = <crate::cli::Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "shipshape", &mut script);
    let mut script = String::from_utf8(script)?;
    const LIST: &str = "shipshape completions --list-roles 2>/dev/null";
    for option in ["--role", "--sign-role"] {
        script = match shell {
            Shell::Bash => script.replace(
                &format!("                {option})\n                    COMPREPLY=($(compgen -f \"${{cur}}\"))"),
                &format!("                {option})\n                    COMPREPLY=($(compgen -W \"$({LIST})\" -- \"${{cur}}\"))"),
            ),
            Shell::Fish => script
                .lines()
                .map(|line| {
                    if line.contains(&format!(" -l {} ", &option[2..])) && line.ends_with(" -r") {
                        format!("{line} -f -a \"({LIST})\"")
                    } else {
                        line.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
                + "\n",
            Shell::Zsh => {
                script.replace(":ROLE:_default'", &format!(":ROLE:{{_values role $({LIST}) || _message role}}'"))
            }
            _ => script,
        };
    }
    let mut out = std::io::stdout().lock();
    // A reader that stops early (`| head`) is a broken pipe to end quietly on, not a panic.
    match out.write_all(script.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ok(),
        other => Ok(other.map(|()| ExitCode::SUCCESS)?),
    }
}
