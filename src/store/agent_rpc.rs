//! What an agent's `/me/rpc` calls write (`agentapi::agent`): its startup
//! report, its lifecycle state with coderd's `started_at`/`ready_at` rules,
//! its apps' health, and its sub-agents (rows of `workspace_agents` whose
//! `parent_id` is the agent). Every function takes the agent's id and touches
//! only that agent's rows (or its children's).

use rusqlite::{Connection, params};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Result, StoreError, get_uuid, to_micros};

/// Stores UpdateStartup's report: the agent's version, expanded directory,
/// subsystems (stored as a JSON array of strings) and the API version of the
/// connection that sent it. `NotFound` if the agent is gone.
pub fn update_startup(
    conn: &Connection,
    agent_id: Uuid,
    version: &str,
    expanded_directory: &str,
    subsystems: &[&str],
    api_version: &str,
    now: OffsetDateTime,
) -> Result<()> {
    let subsystems =
        serde_json::to_string(subsystems).map_err(|e| StoreError::Other(e.to_string()))?;
    let n = conn
        .prepare_cached(
            "UPDATE workspace_agents SET version = ?2, expanded_directory = ?3, subsystems = ?4,
                 api_version = ?5, updated_at = ?6
             WHERE id = ?1 AND deleted = 0",
        )?
        .execute(params![
            agent_id.to_string(),
            version,
            expanded_directory,
            subsystems,
            api_version,
            to_micros(now)
        ])?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Stores a lifecycle state (one of the column's values) reported as changed
/// at `changed_at`, with coderd's rules (coder/coder:coderd/agentapi/lifecycle.go):
/// `starting` sets `started_at` and clears `ready_at`; `ready`,
/// `start_timeout` and `start_error` set `ready_at`, and `started_at` if it
/// is still empty; other states leave both. `NotFound` if the agent is gone.
pub fn update_lifecycle(
    conn: &Connection,
    agent_id: Uuid,
    state: &str,
    changed_at: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<()> {
    let n = conn
        .prepare_cached(
            "UPDATE workspace_agents SET lifecycle_state = ?2,
                 started_at = CASE
                     WHEN ?2 = 'starting' THEN ?3
                     WHEN ?2 IN ('ready', 'start_timeout', 'start_error') THEN coalesce(started_at, ?3)
                     ELSE started_at END,
                 ready_at = CASE
                     WHEN ?2 = 'starting' THEN NULL
                     WHEN ?2 IN ('ready', 'start_timeout', 'start_error') THEN ?3
                     ELSE ready_at END,
                 updated_at = ?4
             WHERE id = ?1 AND deleted = 0",
        )?
        .execute(params![
            agent_id.to_string(),
            state,
            to_micros(changed_at),
            to_micros(now)
        ])?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Sets the health (one of the column's values) of apps of the agent; an id
/// that is not one of the agent's apps is left alone. Returns how many rows
/// changed.
pub fn set_app_healths(
    conn: &Connection,
    agent_id: Uuid,
    updates: &[(Uuid, &str)],
) -> Result<usize> {
    let mut stmt = conn.prepare_cached(
        "UPDATE workspace_apps SET health = ?3 WHERE id = ?1 AND agent_id = ?2 AND health <> ?3",
    )?;
    let mut changed = 0;
    for (id, health) in updates {
        changed += stmt.execute(params![id.to_string(), agent_id.to_string(), health])?;
    }
    Ok(changed)
}

/// A live sub-agent.
#[derive(Debug, Clone, PartialEq)]
pub struct SubAgentRow {
    pub id: Uuid,
    pub name: String,
}

/// The agent's live sub-agents, oldest first.
pub fn sub_agents(conn: &Connection, parent_id: Uuid) -> Result<Vec<SubAgentRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name FROM workspace_agents WHERE parent_id = ?1 AND deleted = 0
         ORDER BY created_at, id",
    )?;
    let rows = stmt.query_map([parent_id.to_string()], |r| {
        Ok(SubAgentRow {
            id: get_uuid(r, 0)?,
            name: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// What a new sub-agent is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSubAgent<'a> {
    /// The id the agent chose (2.8+), or a new one.
    pub id: Option<Uuid>,
    pub name: &'a str,
    pub directory: &'a str,
    pub architecture: &'a str,
    pub operating_system: &'a str,
}

/// Records a sub-agent of `parent_id` on the parent's resource (token
/// authentication, no instance id), refusing a name that a live agent of
/// the same build already has (`Conflict`, with coderd's trigger text) and
/// more than `max` live sub-agents of this parent (`Conflict`). `NotFound`
/// if the parent is gone.
pub fn insert_sub_agent(
    conn: &Connection,
    parent_id: Uuid,
    new: &NewSubAgent<'_>,
    now: OffsetDateTime,
    max: usize,
) -> Result<Uuid> {
    let parent = parent_id.to_string();
    let resource_id: String = super::one(
        conn.prepare_cached(
            "SELECT resource_id FROM workspace_agents WHERE id = ?1 AND deleted = 0",
        )?
        .query_row([&parent], |r| r.get(0)),
    )?;
    let (taken, children): (bool, i64) = conn
        .prepare_cached(
            "SELECT
                 EXISTS (SELECT 1 FROM workspace_agents a JOIN workspace_resources r ON r.id = a.resource_id
                         WHERE r.build_id = (SELECT build_id FROM workspace_resources WHERE id = ?1)
                           AND a.deleted = 0 AND a.name = ?2 COLLATE NOCASE),
                 (SELECT count(*) FROM workspace_agents WHERE parent_id = ?3 AND deleted = 0)",
        )?
        .query_row(params![&resource_id, new.name, &parent], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    if taken {
        return Err(StoreError::Conflict(format!(
            "workspace agent name \"{}\" already exists in this workspace build",
            new.name
        )));
    }
    if children >= max as i64 {
        return Err(StoreError::Conflict(format!(
            "an agent may have at most {max} sub-agents"
        )));
    }
    let id = new.id.unwrap_or_else(Uuid::new_v4);
    conn.prepare_cached(
        "INSERT INTO workspace_agents (id, resource_id, parent_id, name, auth, created_at, updated_at,
             architecture, operating_system, directory)
         VALUES (?1, ?2, ?3, ?4, 'token', ?5, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        id.to_string(),
        resource_id,
        parent,
        new.name,
        to_micros(now),
        new.architecture,
        new.operating_system,
        new.directory
    ])?;
    Ok(id)
}

/// Soft-deletes a live sub-agent of `parent_id` (as upstream: the row stays,
/// `deleted = 1`; its tokens no longer authenticate). Returns false when
/// `child_id` is not a live child of this parent, which deletes nothing.
pub fn delete_sub_agent(
    conn: &Connection,
    parent_id: Uuid,
    child_id: Uuid,
    now: OffsetDateTime,
) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE workspace_agents SET deleted = 1, updated_at = ?3
             WHERE id = ?1 AND parent_id = ?2 AND deleted = 0",
        )?
        .execute(params![
            child_id.to_string(),
            parent_id.to_string(),
            to_micros(now)
        ])?;
    Ok(n == 1)
}

/// One metadata item of an agent: its description and its last result.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataRow {
    pub key: String,
    pub display_name: String,
    pub script: String,
    pub interval_seconds: i64,
    pub timeout_seconds: i64,
    pub value: String,
    pub error: String,
    pub collected_at: Option<OffsetDateTime>,
}

/// The agent's metadata items, in the manifest's order.
pub fn metadata(conn: &Connection, agent_id: Uuid) -> Result<Vec<MetadataRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT key, display_name, script, interval_seconds, timeout_seconds, value, error,
                collected_at
         FROM workspace_agent_metadata WHERE agent_id = ?1 ORDER BY display_order, key",
    )?;
    let rows = stmt.query_map([agent_id.to_string()], |r| {
        Ok(MetadataRow {
            key: r.get(0)?,
            display_name: r.get(1)?,
            script: r.get(2)?,
            interval_seconds: r.get(3)?,
            timeout_seconds: r.get(4)?,
            value: r.get(5)?,
            error: r.get(6)?,
            collected_at: super::opt_from_micros(r.get(7)?),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A metadata result to store.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataResult {
    pub key: String,
    pub value: String,
    pub error: String,
    pub collected_at: OffsetDateTime,
}

/// Stores results under keys the agent declares; a result for any other key
/// is dropped. Returns how many were stored.
pub fn update_metadata(
    conn: &Connection,
    agent_id: Uuid,
    results: &[MetadataResult],
) -> Result<usize> {
    let mut stmt = conn.prepare_cached(
        "UPDATE workspace_agent_metadata SET value = ?3, error = ?4, collected_at = ?5
         WHERE agent_id = ?1 AND key = ?2",
    )?;
    let mut stored = 0;
    for r in results {
        stored += stmt.execute(params![
            agent_id.to_string(),
            r.key,
            r.value,
            r.error,
            to_micros(r.collected_at)
        ])?;
    }
    Ok(stored)
}
