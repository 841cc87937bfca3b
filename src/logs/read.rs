//! Reading an agent's logs in bounded pages, and encoding them as Coder's
//! `[]codersdk.WorkspaceAgentLog` (JSON) or as text lines.
//!
//! A read of any size holds one page at a time: at most [`PAGE`]'s rows, and
//! never many more output bytes than it allows. Every page is read and
//! encoded on the blocking pool ([`Store::read_async`]): the executor only
//! moves the encoded bytes. The id of the last row read is where the next
//! page starts (keyset pagination), so a page costs one indexed range scan
//! whatever its position.

use std::sync::Arc;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::store::agents::LogSourceRow;
use crate::store::logs::{self, Limit, LogRow, Page};
use crate::store::{self, Store, StoreError};

/// One page: a `GET …/logs` body chunk or a follow frame. 1,000 lines, or
/// fewer once their output reaches 128 KiB. Encoded, a page is at most
/// about 130 KiB of JSON for 1,000 empty lines, about 250 KiB for 1,000
/// lines of 128 bytes, and under 1 MiB even for lines made of characters
/// JSON escapes as `\u00XX`.
pub const PAGE: Limit = Limit {
    rows: 1000,
    bytes: 128 * 1024,
};

/// One page, encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    /// The id of the page's last line; `None` for an empty page.
    pub last: Option<i64>,
    /// More lines follow (see [`Page::full`]).
    pub full: bool,
}

impl Encoded {
    fn of(page: &Page, bytes: Vec<u8>) -> Encoded {
        Encoded {
            bytes,
            last: page.rows.last().map(|r| r.id),
            full: page.full,
        }
    }
}

/// The page after `after` as one JSON array (a follow frame), read and
/// encoded off the executor.
pub async fn frame(store: &Store, agent_id: Uuid, after: i64) -> Result<Encoded, StoreError> {
    store
        .read_async(move |c| {
            let page = logs::range(c, agent_id, after, None, PAGE)?;
            Ok(Encoded::of(&page, json_array(&page.rows)))
        })
        .await
}

/// Appends `rows` to `out` as JSON objects separated by commas (no
/// brackets), exactly as `serde_json` writes them inside an array. Lines of
/// one batch share their timestamp, formatted once.
fn json_objects(rows: &[LogRow], out: &mut Vec<u8>) {
    let mut stamp = String::new();
    let mut last: Option<OffsetDateTime> = None;
    for (i, r) in rows.iter().enumerate() {
        if last != Some(r.created_at) {
            stamp = crate::sdk::rfc3339::format(&r.created_at);
            last = Some(r.created_at);
        }
        if i > 0 {
            out.push(b',');
        }
        let log = crate::sdk::WorkspaceAgentLog {
            id: r.id,
            created_at: &stamp,
            output: &r.output,
            level: &r.level,
            source_id: r.source_id,
        };
        // Serialising borrowed strings and integers into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &log);
    }
}

/// `rows` as one JSON array (a follow frame).
pub fn json_array(rows: &[LogRow]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.iter().map(|r| r.output.len() + 160).sum::<usize>() + 2);
    out.push(b'[');
    json_objects(rows, &mut out);
    out.push(b']');
    out
}

/// How a read is rendered.
pub enum Format {
    /// `[]codersdk.WorkspaceAgentLog` and a newline.
    Json,
    /// One line per log: `<time> [<level>] [agent.<name>|<source>] <output>`.
    Text { agent_name: String },
}

/// A format with what it needs (the agent's log sources, for text).
struct Render {
    format: Format,
    sources: Vec<LogSourceRow>,
}

impl Render {
    /// A page as a body chunk: the concatenation of every chunk is the whole
    /// body, byte for byte what one `serde_json` array (or one string of
    /// lines) would be. `first`: the page opens the body.
    fn chunk(&self, page: &Page, first: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            page.rows
                .iter()
                .map(|r| r.output.len() + 160)
                .sum::<usize>()
                + 3,
        );
        match &self.format {
            Format::Json => {
                if first {
                    out.push(b'[');
                } else if !page.rows.is_empty() {
                    out.push(b',');
                }
                json_objects(&page.rows, &mut out);
                if !page.full {
                    out.extend_from_slice(b"]\n");
                }
            }
            Format::Text { agent_name } => {
                for row in &page.rows {
                    text_line(row, agent_name, &self.sources, &mut out);
                }
            }
        }
        out
    }
}

/// A read of `after < id < before` for one agent, as body chunks. Only rows
/// committed before [`Reader::open`] are read, so a read ends even while the
/// agent writes.
pub struct Reader {
    store: Store,
    agent_id: Uuid,
    render: Arc<Render>,
    /// The last id read.
    after: i64,
    /// The exclusive upper bound: the caller's `before`, or the agent's last
    /// id at open plus one.
    before: i64,
    /// The first chunk, read by `open`.
    first: Option<Vec<u8>>,
    /// Whether the last page was read (the JSON array is closed).
    finished: bool,
}

impl Reader {
    /// Reads the upper bound, the sources (for text) and the first page in
    /// one transaction, so that a failure is still an error response.
    pub async fn open(
        store: Store,
        agent_id: Uuid,
        after: i64,
        before: Option<i64>,
        format: Format,
    ) -> Result<Reader, StoreError> {
        let (render, page, bound) = store
            .read_async(move |c| {
                let sources = match format {
                    Format::Text { .. } => store::agents::log_sources(c, agent_id)?,
                    Format::Json => Vec::new(),
                };
                let render = Render { format, sources };
                let page = logs::range(c, agent_id, after, before, PAGE)?;
                // More than a page: later pages stop at what this snapshot
                // holds (read in the same transaction).
                let bound = match page.full {
                    true => logs::last_id(c, agent_id)?.unwrap_or(0).saturating_add(1),
                    false => i64::MAX,
                };
                let bound = before.unwrap_or(i64::MAX).min(bound);
                let page = Encoded::of(&page, render.chunk(&page, true));
                Ok((render, page, bound))
            })
            .await?;
        Ok(Reader {
            store,
            agent_id,
            render: Arc::new(render),
            after: page.last.unwrap_or(after),
            before: bound,
            finished: !page.full,
            first: Some(page.bytes),
        })
    }

    /// Whether the first chunk is the whole body (the read fitted in a page).
    pub fn is_complete(&self) -> bool {
        self.finished
    }

    /// The next chunk of the body; `None` after the last one.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(first) = self.first.take() {
            return Ok(Some(first));
        }
        if self.finished {
            return Ok(None);
        }
        let (agent_id, after, before) = (self.agent_id, self.after, self.before);
        let render = self.render.clone();
        let page = self
            .store
            .read_async(move |c| {
                let page = logs::range(c, agent_id, after, Some(before), PAGE)?;
                Ok(Encoded::of(&page, render.chunk(&page, false)))
            })
            .await?;
        self.after = page.last.unwrap_or(self.after);
        self.finished = !page.full;
        Ok(Some(page.bytes))
    }
}

/// One log as a text line, as upstream's `format=text` writes it: the time to
/// the second, the level, the agent and, when known, the source's name.
fn text_line(row: &LogRow, agent_name: &str, sources: &[LogSourceRow], out: &mut Vec<u8>) {
    use std::io::Write;
    let when = row
        .created_at
        .replace_nanosecond(0)
        .map(|t| crate::sdk::rfc3339::format(&t))
        .unwrap_or_default();
    // Writing into a Vec cannot fail.
    let _ = match sources.iter().find(|s| s.id == row.source_id) {
        Some(s) => writeln!(
            out,
            "{when} [{}] [agent.{agent_name}|{}] {}",
            row.level, s.display_name, row.output
        ),
        None => writeln!(
            out,
            "{when} [{}] [agent.{agent_name}] {}",
            row.level, row.output
        ),
    };
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::store::logs::NewLine;
    use crate::store::{Options, users, workspaces};

    const T0: OffsetDateTime = datetime!(2026-03-01 12:00:00.123456 UTC);

    /// A store with one agent and its `External` source.
    fn agent_store() -> (tempfile::TempDir, Store, Uuid) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("t.db"), &Options::default()).expect("open");
        store.migrate().expect("migrate");
        let ws = crate::manifest::parse(
            "t.toml",
            "name = \"dev\"\nowner = \"alice\"\n[[resources]]\nname = \"vm\"\ntype = \"t\"\n  [[resources.agents]]\n  name = \"main\"\n",
        )
        .expect("manifest");
        let agent = store
            .write(|tx| {
                let alice = users::insert_user(tx, "alice", "", users::Role::Member, T0)?;
                let applied = workspaces::apply(tx, &ws, alice.id, alice.id, T0)?;
                let agent = applied.agents[0].id;
                logs::ensure_external_source(tx, agent, T0)?;
                Ok(agent)
            })
            .expect("seed");
        (dir, store, agent)
    }

    fn insert(store: &Store, agent: Uuid, outputs: &[String], at: OffsetDateTime) {
        let lines: Vec<NewLine> = outputs
            .iter()
            .map(|o| NewLine {
                level: "warn",
                output: o.clone(),
                bytes: o.len() as i64,
            })
            .collect();
        store
            .write(|tx| {
                logs::insert_batch(tx, agent, logs::EXTERNAL_SOURCE_ID, &lines, at, i64::MAX)
            })
            .expect("insert");
    }

    /// What the handler built in memory before reads were paged: one
    /// `serde_json` array of every row, and a newline.
    fn whole_json(rows: &[LogRow]) -> Vec<u8> {
        let stamps: Vec<String> = rows
            .iter()
            .map(|r| crate::sdk::rfc3339::format(&r.created_at))
            .collect();
        let body: Vec<crate::sdk::WorkspaceAgentLog<'_>> = rows
            .iter()
            .zip(&stamps)
            .map(|(r, s)| crate::sdk::WorkspaceAgentLog {
                id: r.id,
                created_at: s,
                output: &r.output,
                level: &r.level,
                source_id: r.source_id,
            })
            .collect();
        let mut out = serde_json::to_vec(&body).expect("json");
        out.push(b'\n');
        out
    }

    const ALL: Limit = Limit {
        rows: usize::MAX,
        bytes: usize::MAX,
    };

    async fn read_all(reader: &mut Reader) -> (Vec<u8>, usize) {
        let mut body = Vec::new();
        let mut chunks = 0;
        while let Some(chunk) = reader.next_chunk().await.expect("chunk") {
            body.extend_from_slice(&chunk);
            chunks += 1;
        }
        (body, chunks)
    }

    #[tokio::test]
    async fn paged_reads_are_byte_for_byte_the_whole_array_and_stop_at_the_snapshot() {
        let (_dir, store, agent) = agent_store();
        // Escapes, multibyte text, empty lines, three batch times; 2,500
        // lines: three pages.
        let outputs: Vec<String> = (0..2500)
            .map(|i| match i % 4 {
                0 => format!("line {i} \"quoted\" \\ back\tslash \u{1}"),
                1 => String::new(),
                2 => format!("ünïcode ✓ {i}"),
                _ => "x".repeat(i % 300),
            })
            .collect();
        insert(&store, agent, &outputs[..1200], T0);
        insert(
            &store,
            agent,
            &outputs[1200..2000],
            T0 + time::Duration::seconds(1),
        );
        insert(
            &store,
            agent,
            &outputs[2000..],
            T0 + time::Duration::seconds(2),
        );
        let rows = store
            .read(|c| logs::range(c, agent, 0, None, ALL))
            .expect("all")
            .rows;
        assert_eq!(rows.len(), 2500);

        let mut reader = Reader::open(store.clone(), agent, 0, None, Format::Json)
            .await
            .expect("open");
        assert!(!reader.is_complete());
        // Written after the read began: not part of it.
        insert(&store, agent, &["late".to_string()], T0);
        let (body, chunks) = read_all(&mut reader).await;
        assert_eq!(chunks, 3);
        assert_eq!(body, whole_json(&rows));

        // `after` and `before` bound it as before.
        let (after, before) = (rows[99].id, rows[2400].id);
        let mut reader = Reader::open(store.clone(), agent, after, Some(before), Format::Json)
            .await
            .expect("open");
        let (body, _) = read_all(&mut reader).await;
        assert_eq!(body, whole_json(&rows[100..2400]));

        // Exactly a page's worth: complete in one chunk.
        let mut reader = Reader::open(store.clone(), agent, 0, Some(rows[1000].id), Format::Json)
            .await
            .expect("open");
        assert!(reader.is_complete());
        let (body, chunks) = read_all(&mut reader).await;
        assert_eq!((body, chunks), (whole_json(&rows[..1000]), 1));
        // One more line: a second chunk.
        let mut reader = Reader::open(store.clone(), agent, 0, Some(rows[1001].id), Format::Json)
            .await
            .expect("open");
        let (body, chunks) = read_all(&mut reader).await;
        assert_eq!((body, chunks), (whole_json(&rows[..1001]), 2));

        // Nothing: `[]` and a newline, complete at once.
        let last = rows[2499].id + 1;
        let mut reader = Reader::open(store.clone(), agent, last, None, Format::Json)
            .await
            .expect("open");
        assert!(reader.is_complete());
        assert_eq!(read_all(&mut reader).await, (b"[]\n".to_vec(), 1));

        // Text: the lines upstream prints, one page at a time.
        let mut reader = Reader::open(
            store.clone(),
            agent,
            0,
            Some(last),
            Format::Text {
                agent_name: "main".into(),
            },
        )
        .await
        .expect("open");
        let (body, chunks) = read_all(&mut reader).await;
        assert_eq!(chunks, 3);
        let body = String::from_utf8(body).expect("utf-8");
        let expected: String = rows
            .iter()
            .map(|r| {
                let when = if r.created_at < T0 + time::Duration::seconds(1) {
                    "2026-03-01T12:00:00Z"
                } else if r.created_at < T0 + time::Duration::seconds(2) {
                    "2026-03-01T12:00:01Z"
                } else {
                    "2026-03-01T12:00:02Z"
                };
                format!("{when} [warn] [agent.main|External] {}\n", r.output)
            })
            .collect();
        assert_eq!(body, expected);
    }

    #[tokio::test]
    async fn a_page_stops_at_its_row_or_byte_bound() {
        let (_dir, store, agent) = agent_store();
        // 300 lines of 1000 bytes: 128 KiB is reached at the 132nd.
        let big: Vec<String> = (0..300).map(|i| format!("{i:01000}")).collect();
        insert(&store, agent, &big, T0);
        let first = super::frame(&store, agent, 0).await.expect("frame");
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&first.bytes).expect("json");
        assert_eq!(rows.len(), 132);
        assert!(first.full);
        let frame2 = super::frame(&store, agent, first.last.expect("last"))
            .await
            .expect("frame");
        let rows2: Vec<serde_json::Value> = serde_json::from_slice(&frame2.bytes).expect("json");
        assert_eq!(rows2.len(), 132);
        let frame3 = super::frame(&store, agent, frame2.last.expect("last"))
            .await
            .expect("frame");
        let rows3: Vec<serde_json::Value> = serde_json::from_slice(&frame3.bytes).expect("json");
        assert_eq!(rows3.len(), 36);
        assert!(!frame3.full, "the last page says so");
        let end = super::frame(&store, agent, frame3.last.expect("last"))
            .await
            .expect("frame");
        assert_eq!(
            (end.bytes, end.last, end.full),
            (b"[]".to_vec(), None, false)
        );

        // 1,001 short lines: a page of 1,000 (more follow), then one.
        let small: Vec<String> = (0..1001).map(|i| i.to_string()).collect();
        insert(&store, agent, &small, T0);
        let page = super::frame(&store, agent, frame3.last.expect("last"))
            .await
            .expect("frame");
        assert!(page.full, "a line follows");
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&page.bytes).expect("json");
        assert_eq!(rows.len(), 1000);
        let page = super::frame(&store, agent, page.last.expect("last"))
            .await
            .expect("frame");
        assert!(!page.full, "nothing follows");
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&page.bytes).expect("json");
        assert_eq!(rows.len(), 1);
    }

    #[test]
    fn each_line_costs_its_bytes_plus_the_line_cost() {
        let line = |bytes: i64| NewLine {
            level: "info",
            output: String::new(),
            bytes,
        };
        assert_eq!(logs::batch_cost(&[]), 0);
        assert_eq!(logs::batch_cost(&[line(0)]), logs::LINE_COST);
        assert_eq!(
            logs::batch_cost(&[line(10), line(0), line(1500)]),
            1510 + 3 * logs::LINE_COST
        );
    }
}
