//! A terminal progress bar for long hashing and copying (indicatif), behind the library's
//! `Progress` trait so the library never draws anything itself.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shipshape_core::infra::hash::Progress;

/// A bar on stderr.
pub struct Bar(ProgressBar);

impl Bar {
    /// A hidden bar, shown when work starts.
    pub fn new() -> Bar {
        Bar(ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()))
    }
}

impl Progress for Bar {
    fn start(&self, label: &str, total_bytes: u64) {
        self.0.reset();
        self.0.set_length(total_bytes);
        self.0.set_position(0);
        let style =
            ProgressStyle::with_template("{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        self.0.set_style(style);
        self.0.set_message(label.to_string());
    }

    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}
