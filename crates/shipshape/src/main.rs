//! The `shipshape` binary: parse flags, resolve them into calls on `shipshape-core`, map errors to
//! documented exit codes. Nothing here knows how a release works; that is the library's job.

// Doc comments in cli.rs are the --help text people read, written for a terminal, not rustdoc.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags, rustdoc::bare_urls)]
// A binary has no public API: `missing_docs` (on for the library crates) would only force filler
// comments here. Comments are written where they help.
#![allow(missing_docs)]

/// `println!` that never panics: when standard output is closed (a reader such as `head` or
/// `grep -q` stopped early) the line is dropped and the command carries on to its end — a deploy
/// whose plan could not be printed is still finished or refused properly, never cut in half. And
/// nothing it prints can drive the terminal: text output quotes notes, names, paths and command
/// output people and programs wrote, so every control or bidi-override character in it (but the
/// line breaks and tabs of the text itself) is shown escaped ([`terminal_text`]). JSON output does
/// not go through here.
macro_rules! println {
    () => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout());
    }};
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), "{}", $crate::terminal_text(&format!($($arg)*)));
    }};
}

/// `eprintln!` likewise: a closed standard error never stops a command, and no text drives the
/// terminal.
macro_rules! eprintln {
    () => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr());
    }};
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "{}", $crate::terminal_text(&format!($($arg)*)));
    }};
}

/// `text` with every character that could drive a terminal escaped, keeping its line breaks and
/// tabs: the last line of defence behind the escaping of each quoted field.
pub fn terminal_text(text: &str) -> std::borrow::Cow<'_, str> {
    use shipshape_core::infra::text::{printable, unsafe_on_a_terminal};
    let unsafe_char = |c: char| c != '\n' && c != '\t' && unsafe_on_a_terminal(c);
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.push_str(&printable(c.encode_utf8(&mut [0; 4])).to_string());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

macro_rules! eprint {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

mod cli;
mod commands;
mod context;
mod progress;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;
use shipshape_core::ErrorKind;
use shipshape_core::infra::text::printable;

use crate::cli::{Cli, Command};
use crate::context::Context;

/// Exit code for a failed check.
pub const EXIT_CHECK_FAILED: u8 = 1;
/// Exit code for bad input.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code when the workspace lock is held.
pub const EXIT_LOCKED: u8 = 3;
/// Exit code when a deploy failed its post-deploy checks and was rolled back.
pub const EXIT_ROLLED_BACK: u8 = 4;
/// Exit code when a deploy or rollback is unfinished: it passed its commit point (production serves
/// the new release) but could not record it, or `status` found an interrupted one; `shipshape
/// recover` finishes it.
pub const EXIT_UNFINISHED: u8 = 5;
/// Exit code when alerts of the active release are firing (`status`, `evaluate --fail-on firing`).
pub const EXIT_ALERTS_FIRING: u8 = 6;
/// Exit code for a bug in shipshape (sysexits' EX_SOFTWARE).
pub const EXIT_INTERNAL: u8 = 70;
/// Exit code for operating-system errors (sysexits' EX_IOERR).
pub const EXIT_IO: u8 = 74;
/// Exit code for database failures (sysexits' EX_TEMPFAIL: often worth retrying).
pub const EXIT_DATABASE: u8 = 75;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => report(&error),
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let context = Context::new(cli.directory.clone(), cli.quiet)?;
    match cli.command {
        Command::Init(args) => commands::init::run(&context, &args),
        Command::Audit(args) => commands::audit::run(&context, &args),
        Command::Validate(args) => commands::validate::run(&context, &args),
        Command::Score(args) => commands::score::run(&context, &args),
        Command::Manifest(args) => commands::manifest::run(&context, &args),
        Command::Approve(args) => commands::approve::run(&context, &args),
        Command::Verify(args) => commands::verify::run(&context, &args),
        Command::Deploy(args) => commands::deploy::deploy(&context, &args),
        Command::Rollback(args) if args.env.is_some() => commands::fleet::rollback(&context, &args),
        Command::Rollback(args) => commands::deploy::rollback(&context, &args),
        Command::Recover => commands::deploy::recover(&context),
        Command::Gc(args) => commands::gc::run(&context, &args),
        Command::Calibrate(args) => commands::calibrate::run(&context, &args),
        Command::Publish(args) => commands::fleet::publish(&context, &args),
        Command::Promote(args) => commands::fleet::promote(&context, &args),
        Command::Agent(args) => commands::fleet::agent(&context, &args),
        Command::Operator(args) => commands::operator::run(&context, &args),
        Command::Canary(args) => commands::canary::run(&context, &args),
        Command::Fetch(args) => commands::fleet::fetch(&context, &args),
        Command::Status(args) if args.env.is_some() => commands::fleet::status(&context, &args),
        Command::Status(args) => commands::status::status(&context, &args),
        Command::Diff(args) => commands::status::diff(&context, &args),
        Command::History(args) => commands::status::history(&context, &args),
        Command::Ingest(args) => commands::monitor::ingest(&context, &args),
        Command::Evaluate(args) => commands::monitor::evaluate(&context, &args),
        Command::Alerts(args) => commands::monitor::alerts(&context, &args),
        Command::Replay(args) => commands::monitor::replay(&context, &args),
        Command::Completions(args) => commands::completions(&context, &args),
        Command::Man(args) => {
            let command = named_command(args.command.as_deref())?;
            clap_mangen::Man::new(command).render(&mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Help(args) => {
            let mut command = named_command(args.command.as_deref())?;
            let help = command.render_long_help();
            let _ = writeln!(std::io::stdout(), "{help}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Analytics(args) => commands::status::analytics(&context, &args),
        Command::Serve(args) => commands::serve::run(&context, &args),
        Command::Demo(args) => commands::demo::run(&context, &args),
    }
}

/// shipshape's command line, or that of the command `name` (named `shipshape-NAME`, as its manual
/// page is); an unknown name is bad input that lists the commands.
fn named_command(name: Option<&str>) -> anyhow::Result<clap::Command> {
    let root = <Cli as clap::CommandFactory>::command();
    let Some(name) = name else { return Ok(root) };
    let names: Vec<String> = root.get_subcommands().map(|c| c.get_name().to_string()).collect();
    match root.find_subcommand(name) {
        Some(command) => {
            // clap names are `&'static str` here (no `string` feature); the process prints and exits.
            let page: &'static str = Box::leak(format!("shipshape-{}", command.get_name()).into_boxed_str());
            Ok(command.clone().name(page).bin_name(format!("shipshape {}", command.get_name())))
        }
        None => {
            Err(shipshape_core::Error::Usage(format!("no command `{name}`: the commands are {}", names.join(", ")))
                .into())
        }
    }
}

/// Print an error on one line (plus its causes) and choose the exit code from its kind.
fn report(error: &anyhow::Error) -> ExitCode {
    if let Some(io_error) = error.downcast_ref::<io::Error>()
        && io_error.kind() == io::ErrorKind::BrokenPipe
    {
        return ExitCode::SUCCESS;
    }
    let mut stderr = io::stderr().lock();
    // Messages quote user text (paths, names, notes): no control character reaches the terminal,
    // but the lines a message is made of stay lines.
    let safe = |text: String| text.split('\n').map(|line| printable(line).to_string()).collect::<Vec<_>>().join("\n");
    let _ = writeln!(stderr, "error: {}", safe(error.to_string()));
    for cause in error.chain().skip(1) {
        let _ = writeln!(stderr, "  caused by: {}", safe(cause.to_string()));
    }
    let kind = error
        .downcast_ref::<shipshape_core::Error>()
        .map(|e| e.kind())
        .or_else(|| error.downcast_ref::<shipshape_monitor::error::Error>().map(|e| e.kind()))
        .or_else(|| error.downcast_ref::<shipshape_fleet::error::Error>().map(|e| e.kind()));
    let code = match kind {
        Some(ErrorKind::CheckFailed) => EXIT_CHECK_FAILED,
        Some(ErrorKind::Locked) => EXIT_LOCKED,
        Some(ErrorKind::Io) => EXIT_IO,
        Some(ErrorKind::Database) => EXIT_DATABASE,
        Some(ErrorKind::Internal) => EXIT_INTERNAL,
        Some(ErrorKind::Unfinished) => EXIT_UNFINISHED,
        Some(ErrorKind::BadInput) | None => EXIT_BAD_INPUT,
        Some(_) => EXIT_BAD_INPUT,
    };
    ExitCode::from(code)
}
