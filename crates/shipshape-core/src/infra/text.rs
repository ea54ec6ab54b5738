//! Text from users and producers, made safe to print on a terminal.
//!
//! Notes, deployers, tickets, names, strategy and symbol names and paths come from people and
//! programs shipshape does not control (a dashboard note, an event's strategy). Printed raw, an ESC
//! sequence clears the screen or retitles the window, a CR or LF forges lines of output, and a
//! bidirectional override reorders what is read. [`Printable`] shows every such character as an
//! escape instead (`\e`, `\r`, `\n`, `\u{202e}`); everything else is printed as it is. JSON output
//! is never passed through it: there the string stays exact, and JSON escapes it itself.

use std::fmt;

/// A string displayed with its control and bidirectional-override characters escaped.
#[derive(Debug, Clone, Copy)]
pub struct Printable<'a>(pub &'a str);

/// Whether `c` must not reach a terminal as it is.
pub fn unsafe_on_a_terminal(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.chars().any(unsafe_on_a_terminal) {
            return f.pad(self.0);
        }
        let mut escaped = String::with_capacity(self.0.len() + 8);
        for c in self.0.chars() {
            match c {
                '\n' => escaped.push_str("\\n"),
                '\r' => escaped.push_str("\\r"),
                '\t' => escaped.push_str("\\t"),
                '\u{1b}' => escaped.push_str("\\e"),
                c if unsafe_on_a_terminal(c) => escaped.push_str(&format!("\\u{{{:x}}}", c as u32)),
                c => escaped.push(c),
            }
        }
        f.pad(&escaped)
    }
}

/// `text`, displayed safely (see [`Printable`]).
pub fn printable(text: &str) -> Printable<'_> {
    Printable(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_bidi_characters_are_escaped_and_the_rest_kept() {
        let note = "rolled back\u{1b}[2J\u{7}\rFAKE: deploy ok\nnext\tcol \u{202e}txt.exe ü ₹";
        let shown = printable(note).to_string();
        assert_eq!(shown, "rolled back\\e[2J\\u{7}\\rFAKE: deploy ok\\nnext\\tcol \\u{202e}txt.exe ü ₹");
        assert!(!shown.chars().any(|c| c.is_control()));
        assert_eq!(printable("plain text, 5 %").to_string(), "plain text, 5 %");
        assert_eq!(format!("[{:<6}]", printable("ab")), "[ab    ]");
    }
}
