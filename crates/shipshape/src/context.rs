//! What every command needs: where it was started, the clock, whether to be quiet.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use shipshape_core::infra::clock::{Clock, Time, clock_from_env};
use shipshape_core::infra::hash::{NoProgress, Progress};
use shipshape_core::layout::Workspace;

use crate::progress::Bar;

/// Resolved global settings.
pub struct Context {
    /// Where to search for `shipshape.toml` from.
    pub start_dir: PathBuf,
    /// No progress bars or notes.
    pub quiet: bool,
    clock: Arc<dyn Clock>,
}

impl Context {
    /// Resolve `-C`, `--quiet` and `SHIPSHAPE_NOW`.
    pub fn new(directory: Option<PathBuf>, quiet: bool) -> anyhow::Result<Context> {
        let current = std::env::current_dir().context("reading the current directory")?;
        let start_dir = match directory {
            Some(dir) if dir.is_absolute() => dir,
            Some(dir) => current.join(dir),
            None => current,
        };
        let clock = clock_from_env().map_err(|e| shipshape_core::Error::Usage(format!("SHIPSHAPE_NOW: {e}")))?;
        Ok(Context { start_dir, quiet, clock: Arc::from(clock) })
    }

    /// The same settings, started in `dir` (the demo runs its steps through this).
    pub fn at(&self, dir: PathBuf) -> Context {
        Context { start_dir: dir, quiet: self.quiet, clock: Arc::clone(&self.clock) }
    }

    /// The same settings with the clock pinned at `time` (the demo's simulated hours).
    pub fn pinned(&self, time: Time) -> Context {
        let clock: Arc<dyn Clock> = Arc::new(shipshape_core::infra::clock::FixedClock(time));
        Context { start_dir: self.start_dir.clone(), quiet: self.quiet, clock }
    }

    /// The same settings with another clock.
    pub fn with_clock(&self, clock: Arc<dyn Clock>) -> Context {
        Context { start_dir: self.start_dir.clone(), quiet: self.quiet, clock }
    }

    /// The clock itself (for long-running commands).
    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock)
    }

    /// The time the command runs at: `SHIPSHAPE_NOW` when set, else the system clock.
    pub fn now(&self) -> Time {
        self.clock.now()
    }

    /// The workspace holding `start_dir`. A config that still names the story's metrics with the
    /// deprecated per-metric keys is read as before, with a note (once per process) giving the
    /// `[[monitoring.metrics]]` entries to write instead.
    pub fn workspace(&self) -> anyhow::Result<Workspace> {
        let workspace = Workspace::discover(&self.start_dir)?;
        let deprecated = workspace.config.monitoring.deprecated_keys();
        static NOTED: std::sync::Once = std::sync::Once::new();
        if !deprecated.is_empty() {
            NOTED.call_once(|| {
                self.note(format!(
                    "note: {}: {} {} deprecated; they are read as before. Replace them with these entries (and keep only notify_every in [monitoring.heightened] and [monitoring.normal]):\n\n{}",
                    workspace.config.path.display(),
                    deprecated.join(", "),
                    if deprecated.len() == 1 { "is" } else { "are" },
                    workspace.config.monitoring.metrics_toml().trim_end()
                ))
            });
        }
        Ok(workspace)
    }

    /// A progress display on stderr when it is a terminal and not `--quiet`.
    pub fn progress(&self) -> Box<dyn Progress> {
        if !self.quiet && std::io::stderr().is_terminal() { Box::new(Bar::new()) } else { Box::new(NoProgress) }
    }

    /// A note for the person at the terminal (stderr), unless `--quiet`.
    pub fn note(&self, message: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", message.as_ref());
        }
    }

    /// A warning (stderr), always shown.
    pub fn warn(&self, message: impl AsRef<str>) {
        eprintln!("warning: {}", message.as_ref());
    }
}
