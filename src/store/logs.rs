//! Agent logs: batched inserts under the per-agent cap, bounded range reads
//! by id, and retention.

use rusqlite::{Connection, params};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Result, StoreError, from_micros, get_uuid, to_micros};

/// Coder's default log source, created on first use by an agent that posts
/// logs without naming a source.
pub const EXTERNAL_SOURCE_ID: Uuid = uuid::uuid!("3b579bf4-1ed8-4b99-87a8-e9a1e3410410");
pub const EXTERNAL_SOURCE_NAME: &str = "External";
pub const EXTERNAL_SOURCE_ICON: &str = "/emojis/1f310.png";

/// What each stored line costs against the agent's cap on top of its output
/// bytes. A row is never free: on disk it takes about 150 bytes besides its
/// output (ids, timestamp, level, source, index entry), and in a read about
/// 125 bytes of JSON. Without this charge an agent could store millions of
/// empty lines under a cap that counts output bytes only. With it, an agent's
/// rows are at most `cap / LINE_COST` and everything it stores costs at most
/// about 2.5 times the cap on disk or in a full read.
pub const LINE_COST: i64 = 64;

/// One line ready to store: output already sanitised and truncated; `bytes`
/// is its output's length before truncation, which the cap counts (plus
/// [`LINE_COST`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NewLine {
    pub level: &'static str,
    pub output: String,
    pub bytes: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    pub id: i64,
    pub agent_id: Uuid,
    pub created_at: OffsetDateTime,
    pub output: String,
    pub level: String,
    pub source_id: Uuid,
}

/// What became of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Stored with ids `first..=last`.
    Stored { first: i64, last: i64 },
    /// Refused whole: it would cross the cap. `was_overflowed` tells whether
    /// the agent had already overflowed before this batch.
    OverCap { was_overflowed: bool },
}

/// Creates the agent's `External` source if it has none (idempotent).
pub fn ensure_external_source(
    conn: &Connection,
    agent_id: Uuid,
    now: OffsetDateTime,
) -> Result<()> {
    super::agents::insert_log_source(
        conn,
        agent_id,
        EXTERNAL_SOURCE_ID,
        EXTERNAL_SOURCE_NAME,
        EXTERNAL_SOURCE_ICON,
        now,
    )?;
    Ok(())
}

/// What a batch costs against the cap: its output bytes plus [`LINE_COST`]
/// per line. `logs_length` sums this over everything stored.
pub fn batch_cost(lines: &[NewLine]) -> i64 {
    lines
        .iter()
        .map(|l| l.bytes.saturating_add(LINE_COST))
        .fold(0i64, i64::saturating_add)
}

/// Stores a batch for one agent if its [`batch_cost`] fits under `max_bytes`
/// (all or nothing); otherwise marks the agent overflowed and stores nothing.
/// Every line gets the same `created_at` (the server's receive time, as
/// upstream).
pub fn insert_batch(
    conn: &Connection,
    agent_id: Uuid,
    source_id: Uuid,
    lines: &[NewLine],
    now: OffsetDateTime,
    max_bytes: i64,
) -> Result<Inserted> {
    let agent = agent_id.to_string();
    let (length, overflowed): (i64, bool) = conn
        .prepare_cached("SELECT logs_length, logs_overflowed FROM workspace_agents WHERE id = ?1")?
        .query_row([&agent], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
            e => e.into(),
        })?;
    let added = batch_cost(lines);
    if length.saturating_add(added) > max_bytes {
        if !overflowed {
            conn.prepare_cached("UPDATE workspace_agents SET logs_overflowed = 1 WHERE id = ?1")?
                .execute([&agent])?;
        }
        return Ok(Inserted::OverCap {
            was_overflowed: overflowed,
        });
    }
    let source = source_id.to_string();
    let at = to_micros(now);
    let mut insert = conn.prepare_cached(
        "INSERT INTO workspace_agent_logs (agent_id, created_at, output, level, log_source_id)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut first = None;
    let mut last = 0;
    for line in lines {
        insert.execute(params![&agent, at, line.output, line.level, &source])?;
        last = conn.last_insert_rowid();
        first.get_or_insert(last);
    }
    conn.prepare_cached(
        "UPDATE workspace_agents SET logs_length = logs_length + ?2 WHERE id = ?1",
    )?
    .execute(params![&agent, added])?;
    Ok(Inserted::Stored {
        first: first.unwrap_or(last),
        last,
    })
}

/// How much one read may return: at most `rows` rows, and no row after the
/// one whose output brought the total to `bytes` or more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub rows: usize,
    pub bytes: usize,
}

/// One bounded read.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub rows: Vec<LogRow>,
    /// A bound of the [`Limit`] stopped the read before the end of the
    /// range: more rows follow the last one. `false`: these are all the rows
    /// in the range.
    pub full: bool,
}

/// The agent's logs with `after < id < before`, ascending, within `limit`.
/// One row past the limit is looked at (not returned), so that
/// [`Page::full`] is exact.
pub fn range(
    conn: &Connection,
    agent_id: Uuid,
    after: i64,
    before: Option<i64>,
    limit: Limit,
) -> Result<Page> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, created_at, output, level, log_source_id FROM workspace_agent_logs
         WHERE agent_id = ?1 AND id > ?2 AND id < ?3 ORDER BY id LIMIT ?4",
    )?;
    let mut rows = stmt.query(params![
        agent_id.to_string(),
        after,
        before.unwrap_or(i64::MAX),
        i64::try_from(limit.rows.saturating_add(1)).unwrap_or(i64::MAX)
    ])?;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    // Lines of one batch share their source: parse each source id once.
    let mut last_source: Option<(String, Uuid)> = None;
    while let Some(r) = rows.next()? {
        if out.len() >= limit.rows || bytes >= limit.bytes {
            // A row beyond the limit: the range goes on.
            return Ok(Page {
                rows: out,
                full: true,
            });
        }
        let source_text = r.get_ref(4)?.as_str().map_err(rusqlite::Error::from)?;
        let source_id = match &last_source {
            Some((text, id)) if text == source_text => *id,
            _ => {
                let id = get_uuid(r, 4)?;
                last_source = Some((source_text.to_string(), id));
                id
            }
        };
        let output: String = r.get(2)?;
        bytes += output.len();
        out.push(LogRow {
            id: r.get(0)?,
            agent_id,
            created_at: from_micros(r.get(1)?),
            output,
            level: r.get(3)?,
            source_id,
        });
    }
    Ok(Page {
        rows: out,
        full: false,
    })
}

/// The agent's highest log id, if it has logs (one index probe).
pub fn last_id(conn: &Connection, agent_id: Uuid) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT max(id) FROM workspace_agent_logs WHERE agent_id = ?1")?
        .query_row([agent_id.to_string()], |r| r.get(0))?)
}

/// Deletes the logs of agents that stopped being live (a later build, a stop
/// or a delete replaced them) before `cutoff`, and resets their `logs_length`.
/// Soft-deleting an agent stamps its `updated_at`, so retention counts from
/// the moment the agent left the latest build.
/// Works in chunks of `chunk` agents; returns (agents, lines) purged.
pub fn purge_stale(
    conn: &Connection,
    cutoff: OffsetDateTime,
    chunk: usize,
) -> Result<(usize, usize)> {
    let mut stmt = conn.prepare_cached(
        "SELECT a.id FROM workspace_agents a
         WHERE a.deleted = 1 AND a.logs_length > 0 AND a.updated_at < ?1
         LIMIT ?2",
    )?;
    let ids: Vec<String> = stmt
        .query_map(params![to_micros(cutoff), chunk as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut lines = 0;
    for id in &ids {
        lines += conn
            .prepare_cached("DELETE FROM workspace_agent_logs WHERE agent_id = ?1")?
            .execute([id])?;
        conn.prepare_cached("UPDATE workspace_agents SET logs_length = 0 WHERE id = ?1")?
            .execute([id])?;
    }
    Ok((ids.len(), lines))
}

/// The live agent's latest-build membership and workspace, for followers: the
/// agent is still "current" while it is not soft-deleted.
pub fn agent_is_live(conn: &Connection, agent_id: Uuid) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*) FROM workspace_agents a
             JOIN workspace_resources r ON r.id = a.resource_id
             JOIN workspace_builds b ON b.id = r.build_id
             JOIN workspaces w ON w.id = b.workspace_id
             WHERE a.id = ?1 AND a.deleted = 0 AND w.deleted = 0",
        )?
        .query_row([agent_id.to_string()], |r| r.get::<_, i64>(0))?
        > 0)
}
