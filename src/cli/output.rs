//! Prints a command's result: plain text for people, or one JSON document
//! (`--output json`) for scripts.

use std::io::Write;

use super::Output;

pub(super) struct Printer {
    pub(super) format: Output,
}

impl Printer {
    pub(super) fn new(format: Output) -> Printer {
        Printer { format }
    }

    pub(super) fn json(&self, value: &serde_json::Value) {
        let mut stdout = std::io::stdout().lock();
        let _ = serde_json::to_writer_pretty(&mut stdout, value);
        let _ = writeln!(stdout);
    }

    pub(super) fn text(&self, text: &str) {
        let mut stdout = std::io::stdout().lock();
        let _ = write!(stdout, "{text}");
        if !text.ends_with('\n') {
            let _ = writeln!(stdout);
        }
    }

    pub(super) fn emit(&self, value: &serde_json::Value, text: impl FnOnce() -> String) {
        match self.format {
            Output::Json => self.json(value),
            Output::Text => self.text(&text()),
        }
    }
}
