//! Log ingestion: cleaning lines the way Coder does, and the single writer
//! that commits batches from many requests together (group commit).
//!
//! Every `PATCH /me/logs` hands its batch to [`LogWriter`]. One thread takes
//! whatever batches are waiting, stores them all in one transaction, commits,
//! then answers each request and wakes followers. Requests never contend for
//! SQLite's lock, and under load one fsync-free commit covers many requests.
//! A request is answered only after the transaction holding its batch has
//! committed: an acknowledged batch is in the database file.

use uuid::Uuid;

use crate::logs::relay::Hub;
use crate::store::group::GroupWriter;
use crate::store::logs::{self, Inserted, NewLine};
use crate::store::{self, Store, StoreError};

/// Lines longer than this many characters are cut (upstream's VARCHAR(1024));
/// the cap still counts their full length.
pub const MAX_LINE_CHARS: usize = 1024;
pub const LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];
/// What replaces invalid UTF-8 and NUL bytes.
pub const REPLACEMENT: &str = "\u{274C}";

/// Turns request bytes into text, replacing each invalid UTF-8 sequence with
/// [`REPLACEMENT`] (upstream's sanitiser), so a body with a stray byte in a
/// log line still parses.
pub fn lossy_utf8(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    // A run of invalid bytes becomes one mark (Go's strings.ToValidUTF8).
    let mut in_invalid_run = false;
    for chunk in bytes.utf8_chunks() {
        if !chunk.valid().is_empty() {
            out.push_str(chunk.valid());
            in_invalid_run = false;
        }
        if !chunk.invalid().is_empty() && !in_invalid_run {
            out.push_str(REPLACEMENT);
            in_invalid_run = true;
        }
    }
    out
}

/// A level as stored: empty means `info`; anything else must be one of
/// [`LEVELS`] exactly.
pub fn parse_level(level: &str) -> Option<&'static str> {
    if level.is_empty() {
        return Some("info");
    }
    LEVELS.iter().copied().find(|l| *l == level)
}

/// Cleans one line: NULs become [`REPLACEMENT`]; the cap counts the cleaned
/// length in bytes; the stored text is cut at [`MAX_LINE_CHARS`] characters.
pub fn clean_line(level: &'static str, output: &str) -> NewLine {
    let cleaned = if output.contains('\0') {
        output.replace('\0', REPLACEMENT)
    } else {
        output.to_string()
    };
    let bytes = cleaned.len() as i64;
    let output = match cleaned.char_indices().nth(MAX_LINE_CHARS) {
        Some((cut, _)) => cleaned[..cut].to_string(),
        None => cleaned,
    };
    NewLine {
        level,
        output,
        bytes,
    }
}

/// What became of a submitted batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Stored { first: i64, last: i64 },
    OverCap { was_overflowed: bool },
}

struct Job {
    agent_id: Uuid,
    /// `None`: the agent's default `External` source.
    source_id: Option<Uuid>,
    lines: Vec<NewLine>,
}

/// The handle requests submit batches through.
#[derive(Clone)]
pub struct LogWriter {
    writer: GroupWriter<Job, Result<Outcome, String>>,
}

impl LogWriter {
    /// Starts the writer thread. `max_bytes` is the per-agent cap.
    pub fn start(store: Store, hub: Hub, max_bytes: i64) -> std::io::Result<LogWriter> {
        let step = move |tx: &store::Transaction<'_>, job: &Job, now| {
            let source = match job.source_id {
                Some(s) => s,
                None => {
                    logs::ensure_external_source(tx, job.agent_id, now)?;
                    logs::EXTERNAL_SOURCE_ID
                }
            };
            Ok(
                match logs::insert_batch(tx, job.agent_id, source, &job.lines, now, max_bytes) {
                    Ok(Inserted::Stored { first, last }) => Ok(Outcome::Stored { first, last }),
                    Ok(Inserted::OverCap { was_overflowed }) => {
                        Ok(Outcome::OverCap { was_overflowed })
                    }
                    // The agent vanished between authentication and now.
                    Err(StoreError::NotFound) => Err("the agent no longer exists".to_string()),
                    Err(e) => return Err(e),
                },
            )
        };
        let after_commit = move |job: &Job, outcome: &Result<Outcome, String>| {
            if let Ok(Outcome::Stored { last, .. }) = outcome {
                hub.publish_logs(job.agent_id, *last);
            }
        };
        Ok(LogWriter {
            writer: GroupWriter::start("log-writer", store, step, after_commit)?,
        })
    }

    /// Stores a batch; resolves once it is committed (or refused).
    pub async fn submit(
        &self,
        agent_id: Uuid,
        source_id: Option<Uuid>,
        lines: Vec<NewLine>,
    ) -> Result<Outcome, String> {
        self.writer
            .submit(Job {
                agent_id,
                source_id,
                lines,
            })
            .await
            .map_err(|e| format!("storing logs failed: {e}"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_and_nuls_become_the_cross_mark() {
        assert_eq!(lossy_utf8(b"ok \xff\xfe end"), "ok \u{274C} end");
        assert_eq!(lossy_utf8(b"\xff\xfe\xfd"), "\u{274C}");
        assert_eq!(lossy_utf8(b"a\xffb\xfec"), "a\u{274C}b\u{274C}c");
        assert_eq!(lossy_utf8("héllo".as_bytes()), "héllo");
        let line = clean_line("info", "a\0b");
        assert_eq!(line.output, "a\u{274C}b");
        assert_eq!(line.bytes, 5, "the cap counts the cleaned bytes");
    }

    #[test]
    fn long_lines_are_cut_by_characters_but_counted_in_full() {
        let long = "é".repeat(1500);
        let line = clean_line("warn", &long);
        assert_eq!(line.output.chars().count(), MAX_LINE_CHARS);
        assert_eq!(line.bytes, 3000);
        let exact = "x".repeat(MAX_LINE_CHARS);
        assert_eq!(clean_line("info", &exact).output, exact);
    }

    #[test]
    fn levels() {
        assert_eq!(parse_level(""), Some("info"));
        for l in LEVELS {
            assert_eq!(parse_level(l), Some(l));
        }
        assert_eq!(parse_level("INFO"), None);
        assert_eq!(parse_level("fatal"), None);
    }
}
