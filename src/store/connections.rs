//! The connection columns of `workspace_agents` (`first_connected_at`,
//! `last_connected_at`, `disconnected_at`), written by the `/me/rpc`
//! connection monitor (CONNECTIVITY.md §1.6): on connect, once per tick for
//! every connected agent in one statement, and on disconnect.

use rusqlite::{Connection, params};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Result, to_micros};

/// An agent's session began: `first_connected_at` if unset, and
/// `last_connected_at`, are now. False when the agent is no longer live.
pub fn connected(conn: &Connection, agent_id: Uuid, now: OffsetDateTime) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE workspace_agents
             SET first_connected_at = coalesce(first_connected_at, ?2),
                 last_connected_at = ?2, updated_at = ?2
             WHERE id = ?1 AND deleted = 0",
        )?
        .execute(params![agent_id.to_string(), to_micros(now)])?;
    Ok(n > 0)
}

/// An agent's session ended: `disconnected_at` is now.
pub fn disconnected(conn: &Connection, agent_id: Uuid, now: OffsetDateTime) -> Result<()> {
    conn.prepare_cached(
        "UPDATE workspace_agents SET disconnected_at = ?2, updated_at = ?2 WHERE id = ?1",
    )?
    .execute(params![agent_id.to_string(), to_micros(now)])?;
    Ok(())
}

/// The periodic write for all connected agents at once: `last_connected_at`
/// is now for those still live. Returns the ids that are not live any more
/// (soft-deleted by a newer build, or their workspace deleted), whose
/// sessions the caller ends.
pub fn seen(conn: &Connection, agent_ids: &[Uuid], now: OffsetDateTime) -> Result<Vec<Uuid>> {
    if agent_ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids = serde_json::Value::from(
        agent_ids
            .iter()
            .map(|id| serde_json::Value::from(id.to_string()))
            .collect::<Vec<_>>(),
    )
    .to_string();
    conn.prepare_cached(
        "UPDATE workspace_agents SET last_connected_at = ?2, updated_at = ?2
         WHERE id IN (SELECT value FROM json_each(?1)) AND deleted = 0",
    )?
    .execute(params![ids, to_micros(now)])?;
    let mut stale = conn.prepare_cached(
        "SELECT j.value FROM json_each(?1) j
         WHERE NOT EXISTS (
             SELECT 1 FROM workspace_agents a
             JOIN workspace_resources r ON r.id = a.resource_id
             JOIN workspace_builds b ON b.id = r.build_id
             JOIN workspaces w ON w.id = b.workspace_id
             WHERE a.id = j.value AND a.deleted = 0 AND w.deleted = 0)",
    )?;
    let rows = stale.query_map([ids], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for row in rows {
        if let Ok(id) = Uuid::parse_str(&row?) {
            out.push(id);
        }
    }
    Ok(out)
}
