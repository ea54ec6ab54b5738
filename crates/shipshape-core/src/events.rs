//! Reading outcome-event files (JSON lines or CSV) and scoring them into per-strategy statistics.
//!
//! Files are read in 4 MiB blocks cut at line ends and parsed on one worker per core; each worker
//! keeps its own statistics, merged at the end (the statistics are exactly mergeable, so the result
//! does not depend on how the file was split). Every error names the file and line: a line that is
//! not UTF-8, longer than the limit, or not a valid event. With `skip_bad`, such lines are counted
//! and the first few reported instead.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use jiff::Timestamp;
use serde::Serialize;
use shipshape_metrics::Stats;
use shipshape_metrics::event::{CsvHeader, EventRef, parse_json_line};

use crate::error::{Error, IoContext, Result};

/// Longest line accepted (1 MiB): anything longer is not an event.
pub const MAX_LINE: usize = 1024 * 1024;
const BLOCK: usize = 4 * 1024 * 1024;
/// How many skipped lines a report lists (all are counted).
pub const REPORTED_SKIPS: usize = 10;

/// The encoding of an events file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON object per line.
    JsonLines,
    /// CSV with a header row.
    Csv,
}

impl Format {
    /// By extension: `.csv` is CSV, anything else JSON lines.
    pub fn of(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("csv") => Format::Csv,
            _ => Format::JsonLines,
        }
    }
}

/// How to read.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// Count and report bad lines instead of failing on the first.
    pub skip_bad: bool,
}

/// What scoring a file produced.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Scored {
    /// Statistics per strategy.
    pub by_strategy: BTreeMap<String, Stats>,
    /// Good events read.
    pub events: u64,
    /// Bad lines skipped (only with `skip_bad`).
    pub skipped: u64,
    /// The first few skipped lines, as `file:line: reason`.
    pub skipped_examples: Vec<String>,
    /// Earliest event time.
    pub first_ts: Option<Timestamp>,
    /// Latest event time.
    pub last_ts: Option<Timestamp>,
}

impl Scored {
    /// Statistics over every strategy.
    pub fn total(&self) -> Stats {
        self.by_strategy.values().copied().sum()
    }
}

#[derive(Default)]
struct Partial {
    by_strategy: HashMap<String, Stats>,
    events: u64,
    first_ts: Option<Timestamp>,
    last_ts: Option<Timestamp>,
}

impl Partial {
    fn add(&mut self, event: &EventRef<'_>) {
        match self.by_strategy.get_mut(event.strategy.as_ref()) {
            Some(stats) => stats.add(event.signal, event.outcome, event.ret),
            None => {
                let mut stats = Stats::default();
                stats.add(event.signal, event.outcome, event.ret);
                self.by_strategy.insert(event.strategy.to_string(), stats);
            }
        }
        self.events += 1;
        self.first_ts = Some(self.first_ts.map_or(event.ts, |t| t.min(event.ts)));
        self.last_ts = Some(self.last_ts.map_or(event.ts, |t| t.max(event.ts)));
    }

    fn merge(&mut self, other: Partial) {
        for (strategy, stats) in other.by_strategy {
            self.by_strategy.entry(strategy).or_default().merge(&stats);
        }
        self.events += other.events;
        self.first_ts = match (self.first_ts, other.first_ts) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_ts = match (self.last_ts, other.last_ts) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// A bad line found in a block: (line within the block, 0-based; reason).
type BadLine = (usize, String);

struct BlockResult {
    newlines: usize,
    bad: Vec<BadLine>,
    bad_count: u64,
}

/// Parse one line into an event, or say why not.
fn parse_line<'a>(line: &'a [u8], header: Option<&CsvHeader>) -> std::result::Result<Option<EventRef<'a>>, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let text =
        std::str::from_utf8(line).map_err(|e| format!("not valid UTF-8 (byte {} of the line)", e.valid_up_to() + 1))?;
    let event = match header {
        Some(header) => header.parse_row(text),
        None => parse_json_line(text),
    };
    event.map(Some).map_err(|e| e.to_string())
}

fn score_block(block: &[u8], header: Option<&CsvHeader>, partial: &mut Partial, keep_bad: bool) -> BlockResult {
    let mut result = BlockResult { newlines: 0, bad: Vec::new(), bad_count: 0 };
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', block).chain(std::iter::once(block.len())) {
        if end == block.len() && start == block.len() {
            break;
        }
        match parse_line(&block[start..end], header) {
            Ok(Some(event)) => partial.add(&event),
            Ok(None) => {}
            Err(reason) => {
                result.bad_count += 1;
                if result.bad.len() < REPORTED_SKIPS {
                    result.bad.push((result.newlines, reason));
                }
                if !keep_bad {
                    // Strict mode: the first bad line of this block is all we need.
                    result.newlines += memchr::memchr_iter(b'\n', &block[end.min(block.len())..]).count();
                    return result;
                }
            }
        }
        if end < block.len() {
            result.newlines += 1;
        }
        start = end + 1;
    }
    result
}

/// Score an events file. Errors name `display_path` and the line.
pub fn score_file(path: &Path, display_path: &Path, options: ReadOptions) -> Result<Scored> {
    let mut opened = File::open(path).at(display_path, "opening")?;
    let mut format = Format::of(path);
    // A JSON array of events (`json.dumps(records)`, `df.to_json(orient="records")`) is scored as
    // the JSON lines it holds, one element per line; it is read whole, so it is bounded.
    let mut head = [0u8; 4096];
    let peeked = read_full(&mut opened, &mut head).at(display_path, "reading")?;
    let mut file: Box<dyn Read> = if shipshape_metrics::event::is_json_array(&head[..peeked]) {
        let lines = shipshape_metrics::event::read_json_array(&head[..peeked], &mut opened)
            .at(display_path, "reading")?
            .map_err(|e| Error::parse(display_path, 1, 1, e.to_string()))?;
        format = Format::JsonLines;
        Box::new(std::io::Cursor::new(lines.into_bytes()))
    } else {
        Box::new(std::io::Cursor::new(head[..peeked].to_vec()).chain(opened))
    };
    // A CSV file's header is its first line; the bytes read past it are carried to the blocks.
    let (header, mut carry, first_line) = match format {
        Format::Csv => {
            let (header, carry) = read_csv_header(&mut file, display_path)?;
            (Some(header), carry, 2)
        }
        Format::JsonLines => (None, Vec::new(), 1usize),
    };
    let header = header.as_ref();
    let workers = crate::infra::hash::cores();
    let (sender, receiver) = std::sync::mpsc::sync_channel::<(usize, Vec<u8>)>(workers * 2);
    let receiver = Mutex::new(receiver);
    let results: Mutex<BTreeMap<usize, BlockResult>> = Mutex::new(BTreeMap::new());
    let merged = Mutex::new(Partial::default());
    // Strict mode: once block k has a bad line, blocks after k need not be parsed.
    let first_bad_block = AtomicUsize::new(usize::MAX);
    let keep_bad = options.skip_bad;
    let read_outcome: Result<(usize, usize)> = std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let mut partial = Partial::default();
                loop {
                    let message = match receiver.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => break,
                    };
                    let Ok((index, block)) = message else { break };
                    if index > first_bad_block.load(Ordering::Relaxed) {
                        continue;
                    }
                    let result = score_block(&block, header, &mut partial, keep_bad);
                    if !keep_bad && result.bad_count > 0 {
                        first_bad_block.fetch_min(index, Ordering::Relaxed);
                    }
                    if let Ok(mut results) = results.lock() {
                        results.insert(index, result);
                    }
                }
                if let Ok(mut merged) = merged.lock() {
                    merged.merge(partial);
                }
            });
        }
        // The reader: this thread.
        let outcome = (|| {
            let mut index = 0usize;
            let mut lines_before_carry = 0usize; // newlines in blocks already sent, for the long-line error
            loop {
                let mut block = std::mem::take(&mut carry);
                let filled = block.len();
                block.resize(filled + BLOCK, 0);
                let n = read_full(&mut file, &mut block[filled..]).at(display_path, "reading")?;
                block.truncate(filled + n);
                if n == 0 {
                    if !block.is_empty() {
                        sender.send((index, block)).ok();
                        index += 1;
                    }
                    return Ok((index, lines_before_carry));
                }
                match memchr::memrchr(b'\n', &block) {
                    Some(position) => {
                        carry = block.split_off(position + 1);
                        lines_before_carry += memchr::memchr_iter(b'\n', &block).count();
                        sender.send((index, block)).ok();
                        index += 1;
                    }
                    None => carry = block,
                }
                if carry.len() > MAX_LINE {
                    let reason = format!("line is longer than {} MiB: not an event", MAX_LINE / (1024 * 1024));
                    if !keep_bad {
                        return Err(Error::parse(display_path, first_line + lines_before_carry, 1, reason));
                    }
                    // Skip the rest of the line without holding it, and record it as one bad line.
                    carry = skip_to_next_line(&mut file).at(display_path, "reading")?;
                    let result = BlockResult { newlines: 1, bad: vec![(0, reason)], bad_count: 1 };
                    if let Ok(mut results) = results.lock() {
                        results.insert(index, result);
                    }
                    index += 1;
                    lines_before_carry += 1;
                }
            }
        })();
        drop(sender);
        outcome
    });
    read_outcome?;
    let results = results.into_inner().unwrap_or_default();
    let partial = merged.into_inner().unwrap_or_default();
    // Turn block-relative line numbers into file line numbers.
    let mut line_base = first_line;
    let mut scored = Scored::default();
    let mut bad = BadLines::new(options.skip_bad);
    for result in results.values() {
        // A block keeps the first few of its bad lines; the rest are only counted.
        let kept = result.bad.len() as u64;
        for (offset, reason) in &result.bad {
            bad.record(display_path, line_base + offset, reason)?;
        }
        bad.skipped += result.bad_count.saturating_sub(kept);
        line_base += result.newlines;
    }
    scored.skipped = bad.skipped;
    scored.skipped_examples = bad.examples;
    if partial.events == 0 {
        let message =
            if scored.skipped > 0 { "no valid events (every line was skipped)" } else { "no events in the file" };
        return Err(Error::invalid(display_path, message));
    }
    scored.by_strategy = partial.by_strategy.into_iter().collect();
    scored.events = partial.events;
    scored.first_ts = partial.first_ts;
    scored.last_ts = partial.last_ts;
    Ok(scored)
}

/// Read a CSV file's header line: the header, and the bytes read after it.
fn read_csv_header(file: &mut dyn Read, display_path: &Path) -> Result<(CsvHeader, Vec<u8>)> {
    let mut carry = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buffer).at(display_path, "reading")?;
        carry.extend_from_slice(&buffer[..n]);
        if let Some(position) = memchr::memchr(b'\n', &carry) {
            let line = carry[..position].to_vec();
            carry.drain(..=position);
            let text = std::str::from_utf8(line.strip_suffix(b"\r").unwrap_or(&line))
                .map_err(|_| Error::parse(display_path, 1, 1, "the header is not valid UTF-8"))?;
            let header = CsvHeader::parse(text).map_err(|e| Error::parse(display_path, 1, 1, e.to_string()))?;
            return Ok((header, carry));
        }
        if n == 0 || carry.len() > MAX_LINE {
            let message = if carry.iter().all(u8::is_ascii_whitespace) {
                "empty file: no header and no events"
            } else {
                "no complete header line"
            };
            return Err(Error::parse(display_path, 1, 1, message));
        }
    }
}

/// Read and drop bytes up to and including the next newline; return what followed it in the
/// last buffer read.
fn skip_to_next_line(file: &mut dyn Read) -> std::io::Result<Vec<u8>> {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = read_full(file, &mut buffer)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        if let Some(position) = memchr::memchr(b'\n', &buffer[..n]) {
            return Ok(buffer[position + 1..n].to_vec());
        }
    }
}

fn read_full(file: &mut dyn Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A path for messages: relative to `root` when inside it.
pub fn display_path(root: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(root).map(Path::to_path_buf).unwrap_or_else(|_| path.to_path_buf())
}

/// What to do with a line that is not an event — the one rule every reader of event files follows
/// (`score`, validation's backtest, `ingest`, `replay`): refuse the file at that line, or with
/// `skip_bad` count it and keep the first few as `file:line: reason` for the report.
#[derive(Debug, Clone, Default)]
pub struct BadLines {
    skip: bool,
    /// Lines skipped.
    pub skipped: u64,
    /// The first few skipped lines, as `file:line: reason`.
    pub examples: Vec<String>,
}

impl BadLines {
    /// Refuse (`skip` false) or skip and count (`skip` true) bad lines.
    pub fn new(skip: bool) -> BadLines {
        BadLines { skip, skipped: 0, examples: Vec::new() }
    }

    /// A bad line: `Err` naming the file and line when skipping is off, else counted.
    pub fn record(&mut self, display_path: &Path, line: usize, reason: &str) -> Result<()> {
        if !self.skip {
            return Err(Error::parse(display_path, line, 1, reason));
        }
        if self.examples.len() < REPORTED_SKIPS {
            self.examples.push(format!("{}:{line}: {reason}", display_path.display()));
        }
        self.skipped += 1;
        Ok(())
    }
}

/// Read one line of at most [`MAX_LINE`] bytes into `buffer` (newline included). `Ok(None)` at the
/// end; `Ok(Some(Err(reason)))` for a line too long to be an event, whose rest is read and dropped
/// so that the next call starts at the next line.
pub fn next_line(
    reader: &mut dyn BufRead,
    buffer: &mut Vec<u8>,
) -> std::io::Result<Option<std::result::Result<(), String>>> {
    buffer.clear();
    let n = std::io::Read::take(&mut *reader, MAX_LINE as u64 + 1).read_until(b'\n', buffer)?;
    if n == 0 {
        return Ok(None);
    }
    if buffer.len() > MAX_LINE && buffer.last() != Some(&b'\n') {
        let mut rest = Vec::new();
        loop {
            rest.clear();
            let n = std::io::Read::take(&mut *reader, 1 << 20).read_until(b'\n', &mut rest)?;
            if n == 0 || rest.last() == Some(&b'\n') {
                break;
            }
        }
        return Ok(Some(Err(format!("line is longer than {} MiB: not an event", MAX_LINE >> 20))));
    }
    Ok(Some(Ok(())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_are_refused_by_line_or_counted_with_the_first_ten_kept() {
        let path = Path::new("events.jsonl");
        let refused = BadLines::new(false).record(path, 7, "`signal`: 2 is not -1, 0 or 1").unwrap_err();
        assert_eq!(refused.to_string(), "events.jsonl:7:1: `signal`: 2 is not -1, 0 or 1");
        let mut skipped = BadLines::new(true);
        for line in 1..=12 {
            skipped.record(path, line, "bad").unwrap();
        }
        assert_eq!(skipped.skipped, 12);
        assert_eq!(skipped.examples.len(), 10);
        assert_eq!(skipped.examples[0], "events.jsonl:1: bad");
    }

    #[test]
    fn next_line_bounds_a_line_and_resumes_after_an_overlong_one() {
        let text = format!("{}\nshort\n", "x".repeat(MAX_LINE + 10));
        let mut reader = std::io::BufReader::new(text.as_bytes());
        let mut buffer = Vec::new();
        assert!(next_line(&mut reader, &mut buffer).unwrap().unwrap().unwrap_err().contains("longer than"));
        assert_eq!(next_line(&mut reader, &mut buffer).unwrap(), Some(Ok(())));
        assert_eq!(buffer, b"short\n");
        assert_eq!(next_line(&mut reader, &mut buffer).unwrap(), None);
    }
    use std::io::Write;

    fn line(i: usize, strategy: &str, signal: i64, outcome: i64, ret: f64) -> String {
        format!(
            "{{\"id\":\"e{i}\",\"ts\":\"2025-10-13T09:{:02}:00+05:30\",\"strategy\":\"{strategy}\",\"symbol\":\"TCS\",\"signal\":{signal},\"outcome\":{outcome},\"return\":{ret}}}\n",
            i % 60
        )
    }

    fn write(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
        let path = dir.join(name);
        File::create(&path).unwrap().write_all(content).unwrap();
        path
    }

    #[test]
    fn scores_across_blocks_exactly_as_one_pass() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        let mut expected: BTreeMap<String, Stats> = BTreeMap::new();
        for i in 0..120_000 {
            let strategy = if i % 3 == 0 { "swing" } else { "intraday" };
            let (signal, outcome, ret) =
                ((i % 3) as i64 - 1, ((i / 7) % 3) as i64 - 1, ((i % 11) as f64 - 5.0) / 1000.0);
            text.push_str(&line(i, strategy, signal, outcome, ret));
            let entry = expected.entry(strategy.to_string()).or_default();
            entry.add(
                shipshape_metrics::Signal::from_i64(signal).unwrap(),
                shipshape_metrics::Signal::from_i64(outcome).unwrap(),
                ret,
            );
        }
        assert!(text.len() > 2 * BLOCK, "the file spans several blocks");
        let path = write(dir.path(), "events.jsonl", text.as_bytes());
        let scored = score_file(&path, Path::new("events.jsonl"), ReadOptions::default()).unwrap();
        assert_eq!(scored.by_strategy, expected);
        assert_eq!(scored.events, 120_000);
    }

    #[test]
    fn bad_line_is_named_by_its_number_even_in_a_later_block() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for i in 0..100_000 {
            if i == 77_777 {
                text.push_str("{\"ts\":\"2025-10-13T09:15:00+05:30\",\"strategy\":\"x\",\"symbol\":\"y\",\"signal\":2,\"outcome\":1,\"return\":0.1}\n");
            } else {
                text.push_str(&line(i, "intraday", 1, 1, 0.01));
            }
        }
        let path = write(dir.path(), "events.jsonl", text.as_bytes());
        let err = score_file(&path, Path::new("events.jsonl"), ReadOptions::default()).unwrap_err().to_string();
        assert!(err.starts_with("events.jsonl:77778:1:"), "{err}");
        assert!(err.contains("`signal`: 2 is not -1, 0 or 1"), "{err}");
        let scored = score_file(&path, Path::new("events.jsonl"), ReadOptions { skip_bad: true }).unwrap();
        assert_eq!((scored.events, scored.skipped), (99_999, 1));
        assert_eq!(scored.skipped_examples[0], "events.jsonl:77778: `signal`: 2 is not -1, 0 or 1");
    }

    #[test]
    fn non_utf8_empty_and_huge_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = line(1, "intraday", 1, 1, 0.01).into_bytes();
        bytes.extend_from_slice(b"{\"ts\":\"\xff\xfe\"}\n");
        let path = write(dir.path(), "a.jsonl", &bytes);
        let err = score_file(&path, Path::new("a.jsonl"), ReadOptions::default()).unwrap_err().to_string();
        assert!(err.starts_with("a.jsonl:2:1:") && err.contains("UTF-8"), "{err}");

        let path = write(dir.path(), "empty.jsonl", b"\n\n");
        let err = score_file(&path, Path::new("empty.jsonl"), ReadOptions::default()).unwrap_err().to_string();
        assert!(err.contains("no events"), "{err}");

        let mut huge = line(1, "intraday", 1, 1, 0.01).into_bytes();
        huge.extend(std::iter::repeat_n(b'x', 10 * 1024 * 1024));
        huge.push(b'\n');
        let path = write(dir.path(), "huge.jsonl", &huge);
        let err = score_file(&path, Path::new("huge.jsonl"), ReadOptions::default()).unwrap_err().to_string();
        assert!(err.starts_with("huge.jsonl:2:1:") && err.contains("longer than 1 MiB"), "{err}");
        huge.extend_from_slice(line(3, "swing", 1, -1, -0.01).as_bytes());
        let path = write(dir.path(), "huge2.jsonl", &huge);
        let scored = score_file(&path, Path::new("huge2.jsonl"), ReadOptions { skip_bad: true }).unwrap();
        assert_eq!((scored.events, scored.skipped), (2, 1));
        assert!(
            scored.skipped_examples[0].starts_with("huge2.jsonl:2: line is longer"),
            "{:?}",
            scored.skipped_examples
        );
    }

    #[test]
    fn csv_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "e.csv",
            b"ts,strategy,symbol,signal,outcome,return\r\n2025-10-13T09:15:00Z,swing,TCS,1,1,0.02\r\n2025-10-13T09:16:00Z,swing,TCS,1,-1,-0.01\r\n",
        );
        let scored = score_file(&path, Path::new("e.csv"), ReadOptions::default()).unwrap();
        assert_eq!(scored.by_strategy["swing"].long_wins, 1);
        let path =
            write(dir.path(), "bad.csv", b"ts,strategy,symbol,signal,outcome\n2025-10-13T09:15:00Z,swing,TCS,1,1\n");
        let err = score_file(&path, Path::new("bad.csv"), ReadOptions::default()).unwrap_err().to_string();
        assert!(err.starts_with("bad.csv:1:1:") && err.contains("`return`: missing column"), "{err}");
        let path = write(dir.path(), "none.csv", b"");
        assert!(
            score_file(&path, Path::new("none.csv"), ReadOptions::default())
                .unwrap_err()
                .to_string()
                .contains("empty file")
        );
    }
}
