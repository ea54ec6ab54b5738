//! Running a user's shell command (checklist items, external backtests) with a timeout.
//!
//! The command runs under `sh -c` in its own process group, so that on timeout the whole group —
//! the shell and anything it started — is killed, not just the shell. Output is captured: stdout in
//! full up to a cap (an external backtest prints its JSON there), and the last lines of stdout and
//! stderr together as a tail to show the person why a check failed.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{IoContext, Result};

/// At most this much stdout is kept.
pub const STDOUT_CAP: usize = 16 * 1024 * 1024;
/// The tail keeps this many bytes of combined output.
pub const TAIL_BYTES: usize = 2048;

/// How a command ended.
#[derive(Debug, Clone)]
pub struct CommandOutcome {
    /// Exit code (None when killed by a signal, including our timeout).
    pub exit_code: Option<i32>,
    /// True when it ran past its timeout and was killed.
    pub timed_out: bool,
    /// How long it ran.
    pub duration: Duration,
    /// stdout, up to [`STDOUT_CAP`].
    pub stdout: Vec<u8>,
    /// The last [`TAIL_BYTES`] of stdout and stderr, interleaved as they arrived.
    pub tail: String,
}

impl CommandOutcome {
    /// Exit 0 within the timeout.
    pub fn succeeded(&self) -> bool {
        !self.timed_out && self.exit_code == Some(0)
    }

    /// One line saying how it ended.
    pub fn describe(&self) -> String {
        if self.timed_out {
            format!("timed out after {:.1}s and was killed", self.duration.as_secs_f64())
        } else {
            match self.exit_code {
                Some(0) => "exit 0".to_string(),
                Some(127) => "exit 127: command not found".to_string(),
                Some(code) => format!("exit {code}"),
                None => "killed by a signal".to_string(),
            }
        }
    }
}

fn push_tail(tail: &Mutex<Vec<u8>>, bytes: &[u8]) {
    if let Ok(mut tail) = tail.lock() {
        tail.extend_from_slice(bytes);
        if tail.len() > TAIL_BYTES * 2 {
            let cut = tail.len() - TAIL_BYTES;
            tail.drain(..cut);
        }
    }
}

/// Run `command` with `sh -c` in `dir`, killing its process group after `timeout`.
pub fn run_shell(command: &str, dir: &Path, timeout: Duration) -> Result<CommandOutcome> {
    let start = Instant::now();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .at(dir, "starting `sh -c`")?;
    let tail = Arc::new(Mutex::new(Vec::new()));
    let mut stdout_pipe = child.stdout.take();
    let mut stderr_pipe = child.stderr.take();
    let stdout_tail = Arc::clone(&tail);
    let stdout_reader = std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buffer = [0u8; 8192];
        while let Some(pipe) = stdout_pipe.as_mut() {
            match pipe.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if kept.len() < STDOUT_CAP {
                        kept.extend_from_slice(&buffer[..n.min(STDOUT_CAP - kept.len())]);
                    }
                    push_tail(&stdout_tail, &buffer[..n]);
                }
            }
        }
        kept
    });
    let stderr_tail = Arc::clone(&tail);
    let stderr_reader = std::thread::spawn(move || {
        let mut buffer = [0u8; 8192];
        while let Some(pipe) = stderr_pipe.as_mut() {
            match pipe.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => push_tail(&stderr_tail, &buffer[..n]),
            }
        }
    });
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().at(dir, "waiting for the command")? {
            break status;
        }
        if start.elapsed() >= timeout {
            timed_out = true;
            // The whole process group: the shell and everything it started.
            let _ = Command::new("kill")
                .args(["-KILL", "--"])
                .arg(format!("-{}", child.id()))
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            break child.wait().at(dir, "waiting for the command")?;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let duration = start.elapsed();
    // Grandchildren may hold the pipes open after a timeout; they were killed with the group.
    let stdout = stdout_reader.join().unwrap_or_default();
    let _ = stderr_reader.join();
    let tail_bytes = tail.lock().map(|t| t.clone()).unwrap_or_default();
    let start_at = tail_bytes.len().saturating_sub(TAIL_BYTES);
    let tail = String::from_utf8_lossy(&tail_bytes[start_at..]).trim().to_string();
    Ok(CommandOutcome { exit_code: status.code(), timed_out, duration, stdout, tail })
}

/// Quote a word for a POSIX shell, only where needed.
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"_./-=:@+".contains(&b)) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        let outcome = run_shell("echo out; echo err >&2; exit 3", dir.path(), Duration::from_secs(5)).unwrap();
        assert_eq!(outcome.exit_code, Some(3));
        assert_eq!(outcome.stdout, b"out\n");
        assert!(outcome.tail.contains("out") && outcome.tail.contains("err"));
        assert!(!outcome.succeeded());
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let outcome = run_shell("sleep 30 & sleep 30; echo never", dir.path(), Duration::from_millis(300)).unwrap();
        assert!(outcome.timed_out);
        assert!(outcome.duration < Duration::from_secs(5), "{:?}", outcome.duration);
        assert!(outcome.describe().contains("timed out"));
    }

    #[test]
    fn missing_command_is_127() {
        let dir = tempfile::tempdir().unwrap();
        let outcome = run_shell("definitely-not-a-command-xyz", dir.path(), Duration::from_secs(5)).unwrap();
        assert_eq!(outcome.exit_code, Some(127));
        assert!(outcome.describe().contains("not found"));
    }
}
