//! The outcome event: one resolved prediction or trade, the single input format of the validation
//! backtest and of post-deploy monitoring. Documented for producers in `docs/events.md`.
//!
//! Two encodings: JSON lines (one object per line) and CSV with a header row naming the columns
//! (in any order). Parsing is strict about what it needs — a bad timestamp, a missing column, a
//! signal of 2, a NaN return are errors naming the field — and ignores JSON fields it does not know,
//! so producers can add their own.

use std::borrow::Cow;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// A direction: predicted (signal) or realised (outcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    /// −1: down / sell.
    Short,
    /// 0: no trade (as a signal) or no move (as an outcome).
    Flat,
    /// 1: up / buy.
    Long,
}

impl Signal {
    /// From −1, 0 or 1.
    pub fn from_i64(value: i64) -> Option<Signal> {
        match value {
            -1 => Some(Signal::Short),
            0 => Some(Signal::Flat),
            1 => Some(Signal::Long),
            _ => None,
        }
    }

    /// As −1, 0 or 1.
    pub fn as_i64(self) -> i64 {
        match self {
            Signal::Short => -1,
            Signal::Flat => 0,
            Signal::Long => 1,
        }
    }
}

impl Serialize for Signal {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(self.as_i64())
    }
}

/// One outcome event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Producer's id, for de-duplication.
    pub id: Option<String>,
    /// When the outcome was known.
    pub ts: Timestamp,
    /// Strategy (`intraday`, `swing`, …).
    pub strategy: String,
    /// The instrument traded (recorded; metrics do not group by it).
    pub symbol: String,
    /// Predicted direction; 0 = no trade.
    pub signal: Signal,
    /// Realised direction.
    pub outcome: Signal,
    /// Realised return of the trade, as a fraction.
    #[serde(rename = "return")]
    pub ret: f64,
    /// The release that made the prediction, when the producer knows it.
    pub release_id: Option<String>,
    /// Numeric fields the producer adds (`"metrics": {"slippage_bps": 1.4}`), for metrics of
    /// kind `field_mean` and `field_rate`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<(String, f64)>,
}

/// The longest name of a producer's numeric field.
pub const MAX_FIELD_NAME: usize = 64;

/// Whether `name` may name a producer's numeric field: 1 to 64 lowercase letters, digits, `_`.
pub fn check_field_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_FIELD_NAME
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!("`{}`: a field name is 1 to 64 lowercase letters, digits or `_`", truncate(name)))
    }
}

/// An event borrowing from its line: the fast path for scoring millions of lines.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRef<'a> {
    /// See [`Event::id`].
    pub id: Option<Cow<'a, str>>,
    /// See [`Event::ts`].
    pub ts: Timestamp,
    /// See [`Event::strategy`].
    pub strategy: Cow<'a, str>,
    /// See [`Event::symbol`].
    pub symbol: Cow<'a, str>,
    /// See [`Event::signal`].
    pub signal: Signal,
    /// See [`Event::outcome`].
    pub outcome: Signal,
    /// See [`Event::ret`].
    pub ret: f64,
    /// See [`Event::release_id`].
    pub release_id: Option<Cow<'a, str>>,
    /// See [`Event::metrics`] (empty, without allocating, when the event has none).
    pub metrics: Vec<(Cow<'a, str>, f64)>,
}

impl EventRef<'_> {
    /// An owned copy.
    pub fn to_owned(&self) -> Event {
        Event {
            id: self.id.as_ref().map(|s| s.to_string()),
            ts: self.ts,
            strategy: self.strategy.to_string(),
            symbol: self.symbol.to_string(),
            signal: self.signal,
            outcome: self.outcome,
            ret: self.ret,
            release_id: self.release_id.as_ref().map(|s| s.to_string()),
            metrics: self.metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }
}

/// What is wrong with one event (the caller adds the file and line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct EventError {
    /// The field concerned, when one is.
    pub field: Option<&'static str>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            Some(field) => write!(f, "`{field}`: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

fn field_error(field: &'static str, message: impl Into<String>) -> EventError {
    EventError { field: Some(field), message: message.into() }
}

#[derive(Deserialize)]
struct JsonEvent<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    ts: Cow<'a, str>,
    #[serde(borrow)]
    strategy: Cow<'a, str>,
    #[serde(borrow)]
    symbol: Cow<'a, str>,
    signal: RawSignal,
    outcome: RawSignal,
    #[serde(rename = "return")]
    ret: f64,
    #[serde(borrow, default)]
    release_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    metrics: Option<std::collections::BTreeMap<Cow<'a, str>, f64>>,
}

/// Check a producer's numeric fields: names, finite values.
fn check_metrics<'a>(
    fields: impl IntoIterator<Item = (Cow<'a, str>, f64)>,
) -> Result<Vec<(Cow<'a, str>, f64)>, EventError> {
    let mut out = Vec::new();
    for (name, value) in fields {
        check_field_name(&name).map_err(|m| field_error("metrics", m))?;
        if !value.is_finite() {
            return Err(field_error("metrics", format!("`{name}`: {value} is not a finite number")));
        }
        out.push((name, value));
    }
    Ok(out)
}

fn parse_ts(text: &str) -> Result<Timestamp, EventError> {
    text.parse::<Timestamp>().map_err(|_| {
        field_error(
            "ts",
            format!(
                "`{}` is not an RFC 3339 timestamp with an offset (e.g. 2025-10-13T09:15:00+05:30)",
                truncate(text)
            ),
        )
    })
}

/// The largest per-trade return accepted, as a fraction (±1000 = ±100,000 %): anything beyond is
/// a unit mistake (a price, basis points, a percentage × 100), and would overflow the fixed-point
/// sums the windows keep.
pub const MAX_ABS_RETURN: f64 = 1000.0;

fn check_return(value: f64) -> Result<f64, EventError> {
    if !value.is_finite() {
        return Err(field_error("return", format!("{value} is not a finite number")));
    }
    if value.abs() > MAX_ABS_RETURN {
        return Err(field_error(
            "return",
            format!(
                "{value} is out of range: a return is a fraction of the position (0.004 = 0.4 %), at most ±{MAX_ABS_RETURN}; was a price, basis points or a percentage sent?"
            ),
        ));
    }
    Ok(value)
}

fn check_name(field: &'static str, value: &str) -> Result<(), EventError> {
    if value.trim().is_empty() {
        return Err(field_error(field, "must not be empty"));
    }
    if value.len() > 256 || value.chars().any(char::is_control) {
        return Err(field_error(field, "must be at most 256 printable characters"));
    }
    Ok(())
}

fn truncate(text: &str) -> String {
    if text.len() <= 60 { text.to_string() } else { format!("{}…", text.chars().take(60).collect::<String>()) }
}

/// A signal or outcome as producers write it: `-1`/`0`/`1`, the same as an integral float (`1.0`,
/// what pandas writes for an integer column with a missing value), or a word — `BUY`/`LONG`/`UP`,
/// `SELL`/`SHORT`/`DOWN`, `FLAT`/`HOLD`/`NONE` — in any case, or a number in a string.
/// What it could not read is kept as the reason, so the error names the field.
struct RawSignal(Result<Signal, String>);

impl<'de> Deserialize<'de> for RawSignal {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RawSignal;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("-1, 0, 1 or BUY/SELL/LONG/SHORT/FLAT")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawSignal, E> {
                Ok(RawSignal(Signal::from_i64(v).ok_or_else(|| format!("{v} is not -1, 0 or 1"))))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawSignal, E> {
                Ok(RawSignal(
                    i64::try_from(v).ok().and_then(Signal::from_i64).ok_or_else(|| format!("{v} is not -1, 0 or 1")),
                ))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<RawSignal, E> {
                let whole = (v.fract() == 0.0 && v.abs() <= 1.0).then_some(v as i64);
                Ok(RawSignal(whole.and_then(Signal::from_i64).ok_or_else(|| format!("{v} is not -1, 0 or 1"))))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawSignal, E> {
                Ok(RawSignal(signal_word(v)))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<RawSignal, E> {
                Ok(RawSignal(Err("null is not a signal (a missing value: drop the row or fill it)".into())))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<RawSignal, E> {
                Ok(RawSignal(Err(format!("{v} is not -1, 0 or 1"))))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A signal written as a word or a number in text: `BUY`/`LONG`/`UP`, `SELL`/`SHORT`/`DOWN`,
/// `FLAT`/`HOLD`/`NONE` (any case), or `-1`, `0`, `1` (also as `1.0`).
pub fn signal_word(text: &str) -> Result<Signal, String> {
    let word = text.trim();
    match word.to_ascii_uppercase().as_str() {
        "1" | "1.0" | "+1" | "BUY" | "LONG" | "UP" => Ok(Signal::Long),
        "-1" | "-1.0" | "SELL" | "SHORT" | "DOWN" => Ok(Signal::Short),
        "0" | "0.0" | "-0.0" | "FLAT" | "HOLD" | "NONE" => Ok(Signal::Flat),
        _ => Err(format!("`{}` is not -1, 0, 1 or BUY/SELL/LONG/SHORT/FLAT", truncate(word))),
    }
}

/// The field whose value a JSON error at 1-based `column` of `line` is about, if one can be told:
/// the last `"key":` before it.
fn field_at(line: &str, column: usize) -> Option<&'static str> {
    let before = line.get(..column.saturating_sub(1).min(line.len()))?;
    let colon = before.rfind(':')?;
    let key = before[..colon].trim_end().strip_suffix('"')?;
    let name = &key[key.rfind('"')? + 1..];
    ["id", "ts", "strategy", "symbol", "signal", "outcome", "return", "release_id"]
        .into_iter()
        .find(|k| *k == name)
        // A value inside the `metrics` object (the last object opened before it, still open).
        .or_else(|| {
            let opened = before.rfind("\"metrics\"")?;
            (!before[opened..].contains('}')).then_some("metrics")
        })
}

/// The error for a value at 1-based `column` of `line` that is `NaN` or `Infinity` — which Python's
/// json writes and JSON does not have — naming `field`; `None` for any other value.
fn non_json_number(line: &str, field: &'static str, column: usize) -> Option<EventError> {
    let rest = line[column.saturating_sub(1).min(line.len())..].trim_start();
    ["NaN", "Infinity", "-Infinity"].iter().any(|w| rest.starts_with(w)).then(|| {
        field_error(
            field,
            "NaN or Infinity is not a number in JSON (pandas writes a missing value so): drop or fill the row",
        )
    })
}

/// Parse one JSON line.
pub fn parse_json_line(line: &str) -> Result<EventRef<'_>, EventError> {
    let raw: JsonEvent<'_> = serde_json::from_str(line).map_err(|e| {
        let message = e.to_string();
        // serde_json appends " at line 1 column N"; the caller reports the file's line.
        let message = message.rsplit_once(" at line ").map_or(message.as_str(), |(m, _)| m).to_string();
        match field_at(line, e.column()) {
            Some(field) => non_json_number(line, field, e.column()).unwrap_or_else(|| field_error(field, message)),
            None => EventError { field: None, message: format!("not a valid event: {message}") },
        }
    })?;
    check_name("strategy", &raw.strategy)?;
    check_name("symbol", &raw.symbol)?;
    Ok(EventRef {
        ts: parse_ts(&raw.ts)?,
        signal: raw.signal.0.map_err(|m| field_error("signal", m))?,
        outcome: raw.outcome.0.map_err(|m| field_error("outcome", m))?,
        ret: check_return(raw.ret)?,
        id: raw.id.filter(|s| !s.is_empty()),
        strategy: raw.strategy,
        symbol: raw.symbol,
        release_id: raw.release_id.filter(|s| !s.is_empty()),
        metrics: match raw.metrics {
            Some(fields) => check_metrics(fields)?,
            None => Vec::new(),
        },
    })
}

/// Whether `bytes` (an events file or body) is a JSON array (`json.dumps(list_of_dicts)`,
/// `df.to_json(orient="records")`) rather than JSON lines or CSV: its first non-blank byte is `[`.
pub fn is_json_array(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace() && **b != 0xEF && **b != 0xBB && **b != 0xBF) == Some(&b'[')
}

/// The largest JSON array of events read (it is held whole); JSON lines have no limit.
pub const MAX_JSON_ARRAY: u64 = 256 << 20;

/// Read a JSON array of events — `head`, the bytes already taken from `reader`, then the rest of
/// `reader` — as JSON lines ([`json_array_lines`]); at most [`MAX_JSON_ARRAY`] bytes. The outer
/// error is the reader's, the inner one what is wrong with the array.
pub fn read_json_array(head: &[u8], reader: &mut dyn std::io::Read) -> std::io::Result<Result<String, EventError>> {
    let mut bytes = head.to_vec();
    std::io::Read::read_to_end(&mut std::io::Read::take(reader, MAX_JSON_ARRAY + 1), &mut bytes)?;
    if bytes.len() as u64 > MAX_JSON_ARRAY {
        return Ok(Err(EventError {
            field: None,
            message: format!(
                "a JSON array larger than {} MiB: use JSON lines instead (one event per line)",
                MAX_JSON_ARRAY >> 20
            ),
        }));
    }
    Ok(match std::str::from_utf8(&bytes) {
        Ok(text) => json_array_lines(text),
        Err(_) => Err(EventError { field: None, message: "not UTF-8".into() }),
    })
}

/// A JSON array of event objects as JSON lines, one object per line, so it is read like any
/// events file; the line numbers of later errors are then the elements' numbers (1-based).
pub fn json_array_lines(text: &str) -> Result<String, EventError> {
    let text = text.trim_start_matches('\u{feff}');
    let values: Vec<serde_json::Value> = serde_json::from_str(text).map_err(|e| {
        // The error's line and column, as an offset, to name the field it is in.
        let line_start: usize = text.split_inclusive('\n').take(e.line().saturating_sub(1)).map(str::len).sum();
        let line = &text[line_start..];
        let line = &line[..line.find('\n').unwrap_or(line.len())];
        field_at(line, e.column())
            .and_then(|field| non_json_number(line, field, e.column()))
            .unwrap_or_else(|| EventError { field: None, message: format!("not a JSON array of events: {e}") })
    })?;
    let mut out = String::with_capacity(text.len());
    for (index, value) in values.iter().enumerate() {
        if !value.is_object() {
            return Err(EventError {
                field: None,
                message: format!(
                    "element {} of the JSON array is not an object (an event is {{\"ts\": …, …}})",
                    index + 1
                ),
            });
        }
        out.push_str(&value.to_string());
        out.push('\n');
    }
    Ok(out)
}

/// Column positions of a CSV header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvHeader {
    id: Option<usize>,
    ts: usize,
    strategy: usize,
    symbol: usize,
    signal: usize,
    outcome: usize,
    ret: usize,
    release_id: Option<usize>,
    /// `metrics.<name>` columns: (name, index).
    metrics: Vec<(String, usize)>,
    width: usize,
}

/// The columns an events file must have.
pub const REQUIRED_COLUMNS: [&str; 6] = ["ts", "strategy", "symbol", "signal", "outcome", "return"];

impl CsvHeader {
    /// Parse the header row.
    pub fn parse(line: &str) -> Result<CsvHeader, EventError> {
        let names = split_csv(line)?;
        // A column named twice is ambiguous (which `return` is the return?), as a duplicated JSON
        // key is: refused, naming it.
        for (index, name) in names.iter().enumerate() {
            let name = name.trim();
            if !name.is_empty() && names[..index].iter().any(|earlier| earlier.trim() == name) {
                return Err(EventError {
                    field: None,
                    message: format!("column `{name}` is named twice in the header"),
                });
            }
        }
        let find = |name: &str| names.iter().position(|n| n.trim() == name);
        let require = |name: &'static str| {
            find(name).ok_or_else(|| EventError {
                field: Some(name),
                message: format!("missing column (the header must name {})", REQUIRED_COLUMNS.join(", ")),
            })
        };
        let mut metrics = Vec::new();
        for (index, name) in names.iter().enumerate() {
            if let Some(field) = name.trim().strip_prefix("metrics.") {
                check_field_name(field).map_err(|m| EventError { field: Some("metrics"), message: m })?;
                metrics.push((field.to_string(), index));
            }
        }
        Ok(CsvHeader {
            metrics,
            id: find("id"),
            ts: require("ts")?,
            strategy: require("strategy")?,
            symbol: require("symbol")?,
            signal: require("signal")?,
            outcome: require("outcome")?,
            ret: require("return")?,
            release_id: find("release_id"),
            width: names.len(),
        })
    }

    /// Parse one data row.
    pub fn parse_row<'a>(&self, line: &'a str) -> Result<EventRef<'a>, EventError> {
        let cells = split_csv(line)?;
        if cells.len() != self.width {
            return Err(EventError {
                field: None,
                message: format!("{} cells, but the header has {} columns", cells.len(), self.width),
            });
        }
        let signal = |field: &'static str, index: usize| signal_word(&cells[index]).map_err(|m| field_error(field, m));
        let ret: f64 = cells[self.ret]
            .trim()
            .parse()
            .map_err(|_| field_error("return", format!("`{}` is not a number", truncate(&cells[self.ret]))))?;
        let optional = |index: Option<usize>| index.map(|i| cells[i].clone()).filter(|s| !s.is_empty());
        check_name("strategy", &cells[self.strategy])?;
        check_name("symbol", &cells[self.symbol])?;
        let mut metrics = Vec::new();
        for (name, index) in &self.metrics {
            let cell = cells[*index].trim();
            if cell.is_empty() {
                continue; // pandas writes a missing value as an empty cell
            }
            let value: f64 = cell.parse().map_err(|_| {
                field_error("metrics", format!("`metrics.{name}`: `{}` is not a number", truncate(cell)))
            })?;
            metrics.push((Cow::Owned(name.clone()), value));
        }
        Ok(EventRef {
            metrics: check_metrics(metrics)?,
            id: optional(self.id),
            ts: parse_ts(cells[self.ts].trim())?,
            strategy: cells[self.strategy].clone(),
            symbol: cells[self.symbol].clone(),
            signal: signal("signal", self.signal)?,
            outcome: signal("outcome", self.outcome)?,
            ret: check_return(ret)?,
            release_id: optional(self.release_id),
        })
    }
}

/// Split one CSV line (RFC 4180 quoting, no embedded newlines).
pub fn split_csv(line: &str) -> Result<Vec<Cow<'_, str>>, EventError> {
    let mut cells = Vec::with_capacity(8);
    let bytes = line.as_bytes();
    let mut start = 0;
    while start <= bytes.len() {
        if bytes.get(start) == Some(&b'"') {
            let mut value = String::new();
            let mut i = start + 1;
            loop {
                match bytes.get(i) {
                    None => return Err(EventError { field: None, message: "unterminated quoted cell".into() }),
                    Some(b'"') if bytes.get(i + 1) == Some(&b'"') => {
                        value.push('"');
                        i += 2;
                    }
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(_) => {
                        let next = line[i..].find(['"']).map_or(bytes.len(), |p| i + p);
                        value.push_str(&line[i..next]);
                        i = next;
                    }
                }
            }
            cells.push(Cow::Owned(value));
            match bytes.get(i) {
                None => break,
                Some(b',') => start = i + 1,
                Some(_) => return Err(EventError { field: None, message: "text after a closing quote".into() }),
            }
        } else {
            let end = line[start..].find(',').map_or(bytes.len(), |p| start + p);
            cells.push(Cow::Borrowed(&line[start..end]));
            if end == bytes.len() {
                break;
            }
            start = end + 1;
        }
    }
    Ok(cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_header_naming_a_column_twice_is_refused() {
        let error = CsvHeader::parse("ts,strategy,symbol,signal,outcome,return,return").unwrap_err();
        assert_eq!(error.to_string(), "column `return` is named twice in the header");
        assert!(CsvHeader::parse("ts,strategy,symbol,signal,outcome,return,note,").is_ok());
    }

    const GOOD: &str = r#"{"id":"e1","ts":"2025-10-13T09:15:00+05:30","strategy":"intraday","symbol":"TCS","signal":1,"outcome":-1,"return":-0.0042}"#;

    #[test]
    fn json_line_parses() {
        let event = parse_json_line(GOOD).unwrap();
        assert_eq!(event.ts, "2025-10-13T03:45:00Z".parse::<Timestamp>().unwrap());
        assert_eq!((event.signal, event.outcome, event.ret), (Signal::Long, Signal::Short, -0.0042));
        assert_eq!(event.id.as_deref(), Some("e1"));
        assert_eq!(event.release_id, None);
    }

    #[test]
    fn json_line_rejections_name_the_field() {
        let cases = [
            (GOOD.replace("+05:30", ""), "`ts`"),
            (GOOD.replace("\"signal\":1", "\"signal\":2"), "`signal`: 2 is not -1, 0 or 1"),
            (GOOD.replace("-0.0042", "NaN"), "`return`: NaN or Infinity"),
            (GOOD.replace("\"symbol\":\"TCS\",", ""), "missing field `symbol`"),
            (GOOD.replace("\"intraday\"", "\"\""), "`strategy`: must not be empty"),
            ("[1,2]".to_string(), "not a valid event"),
        ];
        for (line, expected) in cases {
            let err = parse_json_line(&line).unwrap_err().to_string();
            assert!(err.contains(expected), "{line}: {err}");
        }
        let huge = GOOD.replace("-0.0042", "1e400");
        assert!(parse_json_line(&huge).is_err());
        // Found by fuzzing: a finite but absurd return overflowed the fixed-point sum of squares.
        for absurd in ["1e30", "-18446744073709551616", "1000.5"] {
            let err = parse_json_line(&GOOD.replace("-0.0042", absurd)).unwrap_err().to_string();
            assert!(err.contains("`return`") && err.contains("out of range"), "{absurd}: {err}");
        }
        assert!(parse_json_line(&GOOD.replace("-0.0042", "-1000")).is_ok(), "the bound itself is accepted");
    }

    #[test]
    fn stats_of_extreme_returns_saturate_instead_of_panicking() {
        let mut stats = crate::stats::Stats::default();
        stats.add(Signal::Long, Signal::Long, 1e30);
        stats.add(Signal::Long, Signal::Long, 1e30);
        assert_eq!(stats.return_sum_squares, i128::MAX);
    }

    /// What pandas and Python's json write: integral floats, words, NaN — read, or refused naming
    /// the field.
    #[test]
    fn events_as_pandas_writes_them() {
        for (signal, expected) in [("1.0", Signal::Long), ("-1.0", Signal::Short), ("0.0", Signal::Flat)] {
            let line = GOOD.replace("\"signal\":1", &format!("\"signal\":{signal}"));
            assert_eq!(parse_json_line(&line).unwrap().signal, expected, "{signal}");
        }
        for (word, expected) in [
            ("BUY", Signal::Long),
            ("sell", Signal::Short),
            ("Long", Signal::Long),
            ("FLAT", Signal::Flat),
            ("-1", Signal::Short),
        ] {
            let line = GOOD.replace("\"outcome\":-1", &format!("\"outcome\":\"{word}\""));
            assert_eq!(parse_json_line(&line).unwrap().outcome, expected, "{word}");
        }
        let cases = [
            (GOOD.replace("\"signal\":1", "\"signal\":1.5"), "`signal`: 1.5 is not -1, 0 or 1"),
            (GOOD.replace("\"signal\":1", "\"signal\":\"maybe\""), "`signal`: `maybe` is not -1, 0, 1 or BUY/SELL"),
            (GOOD.replace("\"signal\":1", "\"signal\":null"), "`signal`: null is not a signal"),
            (GOOD.replace("-0.0042", "NaN"), "`return`: NaN or Infinity is not a number in JSON"),
            (GOOD.replace("-0.0042", "\"x\""), "`return`: invalid type: string"),
            (GOOD.replace("\"TCS\"", "7"), "`symbol`: invalid type: integer"),
        ];
        for (line, expected) in cases {
            let err = parse_json_line(&line).unwrap_err().to_string();
            assert!(err.contains(expected), "{line}: {err}");
        }
        let header = CsvHeader::parse("ts,strategy,symbol,signal,outcome,return").unwrap();
        let row = header.parse_row("2025-10-13T09:15:00Z,swing,TCS,1.0,SELL,0.01").unwrap();
        assert_eq!((row.signal, row.outcome), (Signal::Long, Signal::Short));
    }

    #[test]
    fn a_json_array_of_events_becomes_json_lines() {
        let array = format!("  [{GOOD}, {}]", GOOD.replace("e1", "e2"));
        assert!(is_json_array(array.as_bytes()));
        assert!(!is_json_array(GOOD.as_bytes()) && !is_json_array(b"ts,strategy\n"));
        let lines = json_array_lines(&array).unwrap();
        assert_eq!(lines.lines().count(), 2);
        for line in lines.lines() {
            assert!(parse_json_line(line).is_ok(), "{line}");
        }
        let err = json_array_lines("[1, 2]").unwrap_err().to_string();
        assert!(err.contains("element 1 of the JSON array is not an object"), "{err}");
        assert!(json_array_lines("[{").unwrap_err().to_string().contains("not a JSON array of events"));
    }

    #[test]
    fn unknown_json_fields_are_ignored() {
        let line = GOOD.replace("}", r#","confidence":0.7,"venue":"NSE"}"#);
        assert!(parse_json_line(&line).is_ok());
    }

    #[test]
    fn csv_with_columns_in_any_order_and_quotes() {
        let header = CsvHeader::parse("symbol,ts,strategy,signal,outcome,return,release_id").unwrap();
        let row = header.parse_row("\"TCS, Ltd\",2025-10-13T09:15:00Z,swing,-1,-1,0.01,").unwrap();
        assert_eq!(row.symbol, "TCS, Ltd");
        assert_eq!((row.signal, row.outcome), (Signal::Short, Signal::Short));
        assert_eq!(row.release_id, None);
        assert!(
            header.parse_row("TCS,2025-10-13T09:15:00Z,swing,1,1,inf,").unwrap_err().to_string().contains("finite")
        );
        assert!(header.parse_row("TCS,2025-10-13T09:15:00Z,swing,1,1").unwrap_err().to_string().contains("cells"));
    }

    #[test]
    fn csv_missing_column_is_named() {
        let err = CsvHeader::parse("ts,strategy,symbol,signal,outcome").unwrap_err();
        assert_eq!(err.field, Some("return"));
    }

    #[test]
    fn csv_splitting() {
        assert_eq!(split_csv("a,,\"b\"\"c\",d").unwrap(), vec!["a", "", "b\"c", "d"]);
        assert_eq!(split_csv("").unwrap(), vec![""]);
        assert!(split_csv("\"open").is_err());
        assert!(split_csv("\"a\"b,c").is_err());
    }
}
