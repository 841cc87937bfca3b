//! Agents and what hangs off them: apps, app statuses, scripts, log sources,
//! tokens.

use rusqlite::{Connection, params};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    Result, StoreError, from_micros, get_opt_uuid, get_uuid, opt_from_micros, optional, to_micros,
};

/// A live agent with the workspace it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRow {
    pub id: Uuid,
    pub resource_id: Uuid,
    pub parent_id: Option<Uuid>,
    pub name: String,
    pub auth: String,
    pub auth_instance_id: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub first_connected_at: Option<OffsetDateTime>,
    pub last_connected_at: Option<OffsetDateTime>,
    pub disconnected_at: Option<OffsetDateTime>,
    pub started_at: Option<OffsetDateTime>,
    pub ready_at: Option<OffsetDateTime>,
    pub architecture: String,
    pub operating_system: String,
    pub directory: String,
    pub expanded_directory: String,
    pub version: String,
    pub api_version: String,
    /// The stored JSON object, if any.
    pub environment_variables: Option<String>,
    pub connection_timeout_seconds: i64,
    pub troubleshooting_url: String,
    pub motd_file: String,
    pub lifecycle_state: String,
    pub logs_length: i64,
    pub logs_overflowed: bool,
    /// JSON array of strings.
    pub subsystems: String,
    /// JSON array of strings.
    pub display_apps: String,
    pub display_order: i64,
    pub api_key_scope: String,
    pub workspace_id: Uuid,
    pub workspace_name: String,
    pub owner_id: Uuid,
    pub owner_name: String,
}

const AGENT_COLUMNS: &str = "a.id, a.resource_id, a.parent_id, a.name, a.auth, a.auth_instance_id,
    a.created_at, a.updated_at, a.first_connected_at, a.last_connected_at, a.disconnected_at,
    a.started_at, a.ready_at, a.architecture, a.operating_system, a.directory,
    a.expanded_directory, a.version, a.api_version, a.environment_variables,
    a.connection_timeout_seconds, a.troubleshooting_url, a.motd_file, a.lifecycle_state,
    a.logs_length, a.logs_overflowed, a.subsystems, a.display_apps, a.display_order,
    a.api_key_scope, w.id, w.name, w.owner_id, u.username";

/// Joins agent `a` to its workspace `w`; `a.deleted = 0 AND w.deleted = 0`
/// belong in every query that uses it.
const AGENT_JOINS: &str = "JOIN workspace_resources r ON r.id = a.resource_id
    JOIN workspace_builds b ON b.id = r.build_id
    JOIN workspaces w ON w.id = b.workspace_id
    JOIN users u ON u.id = w.owner_id";

fn agent_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AgentRow> {
    Ok(AgentRow {
        id: get_uuid(r, 0)?,
        resource_id: get_uuid(r, 1)?,
        parent_id: get_opt_uuid(r, 2)?,
        name: r.get(3)?,
        auth: r.get(4)?,
        auth_instance_id: r.get(5)?,
        created_at: from_micros(r.get(6)?),
        updated_at: from_micros(r.get(7)?),
        first_connected_at: opt_from_micros(r.get(8)?),
        last_connected_at: opt_from_micros(r.get(9)?),
        disconnected_at: opt_from_micros(r.get(10)?),
        started_at: opt_from_micros(r.get(11)?),
        ready_at: opt_from_micros(r.get(12)?),
        architecture: r.get(13)?,
        operating_system: r.get(14)?,
        directory: r.get(15)?,
        expanded_directory: r.get(16)?,
        version: r.get(17)?,
        api_version: r.get(18)?,
        environment_variables: r.get(19)?,
        connection_timeout_seconds: r.get(20)?,
        troubleshooting_url: r.get(21)?,
        motd_file: r.get(22)?,
        lifecycle_state: r.get(23)?,
        logs_length: r.get(24)?,
        logs_overflowed: r.get(25)?,
        subsystems: r.get(26)?,
        display_apps: r.get(27)?,
        display_order: r.get(28)?,
        api_key_scope: r.get(29)?,
        workspace_id: get_uuid(r, 30)?,
        workspace_name: r.get(31)?,
        owner_id: get_uuid(r, 32)?,
        owner_name: r.get(33)?,
    })
}

/// A live agent (not soft-deleted, workspace not deleted) by id.
pub fn live_agent(conn: &Connection, id: Uuid) -> Result<Option<AgentRow>> {
    optional(
        conn.prepare_cached(&format!(
            "SELECT {AGENT_COLUMNS} FROM workspace_agents a {AGENT_JOINS}
             WHERE a.id = ?1 AND a.deleted = 0 AND w.deleted = 0"
        ))?
        .query_row([id.to_string()], agent_row),
    )
}

#[derive(Debug, Clone, PartialEq)]
pub struct AppRow {
    pub id: Uuid,
    pub slug: String,
    pub display_name: String,
    pub icon: String,
    pub command: String,
    pub url: String,
    pub external: bool,
    pub subdomain: bool,
    pub sharing_level: String,
    pub healthcheck_url: String,
    pub healthcheck_interval: i64,
    pub healthcheck_threshold: i64,
    pub health: String,
    pub hidden: bool,
    pub open_in: String,
    pub group: String,
    pub tooltip: String,
    pub display_order: i64,
}

/// The agent's apps, ordered as Coder orders them: display order, then display
/// name, then slug.
pub fn apps(conn: &Connection, agent_id: Uuid) -> Result<Vec<AppRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, slug, display_name, icon, command, url, external, subdomain, sharing_level,
                healthcheck_url, healthcheck_interval, healthcheck_threshold, health, hidden,
                open_in, display_group, tooltip, display_order
         FROM workspace_apps WHERE agent_id = ?1
         ORDER BY display_order, display_name, slug",
    )?;
    let rows = stmt.query_map([agent_id.to_string()], |r| {
        Ok(AppRow {
            id: get_uuid(r, 0)?,
            slug: r.get(1)?,
            display_name: r.get(2)?,
            icon: r.get(3)?,
            command: r.get(4)?,
            url: r.get(5)?,
            external: r.get(6)?,
            subdomain: r.get(7)?,
            sharing_level: r.get(8)?,
            healthcheck_url: r.get(9)?,
            healthcheck_interval: r.get(10)?,
            healthcheck_threshold: r.get(11)?,
            health: r.get(12)?,
            hidden: r.get(13)?,
            open_in: r.get(14)?,
            group: r.get(15)?,
            tooltip: r.get(16)?,
            display_order: r.get(17)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[derive(Debug, Clone, PartialEq)]
pub struct AppStatusRow {
    pub id: Uuid,
    pub created_at: OffsetDateTime,
    pub workspace_id: Uuid,
    pub agent_id: Uuid,
    pub app_id: Uuid,
    pub state: String,
    pub message: String,
    pub uri: Option<String>,
}

/// Every status of every app of the agent, newest first.
pub fn app_statuses(conn: &Connection, agent_id: Uuid) -> Result<Vec<AppStatusRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, created_at, workspace_id, agent_id, app_id, state, message, uri
         FROM workspace_app_statuses WHERE agent_id = ?1
         ORDER BY created_at DESC, id DESC",
    )?;
    let rows = stmt.query_map([agent_id.to_string()], |r| {
        Ok(AppStatusRow {
            id: get_uuid(r, 0)?,
            created_at: from_micros(r.get(1)?),
            workspace_id: get_uuid(r, 2)?,
            agent_id: get_uuid(r, 3)?,
            app_id: get_uuid(r, 4)?,
            state: r.get(5)?,
            message: r.get(6)?,
            uri: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Records one status of an app and drops the agent's oldest statuses beyond
/// the newest `keep` (upstream keeps every report; an agent could then grow
/// its own `GET /workspaceagents/{id}` without bound).
#[allow(clippy::too_many_arguments)]
pub fn insert_app_status(
    conn: &Connection,
    agent: &AgentRow,
    app_id: Uuid,
    state: &str,
    message: &str,
    uri: Option<&str>,
    now: OffsetDateTime,
    keep: usize,
) -> Result<AppStatusRow> {
    if keep == 0 {
        return Err(StoreError::Other(
            "an agent must keep at least one app status".into(),
        ));
    }
    let id = Uuid::new_v4();
    conn.prepare_cached(
        "INSERT INTO workspace_app_statuses (id, created_at, workspace_id, agent_id, app_id, state, message, uri)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        id.to_string(),
        to_micros(now),
        agent.workspace_id.to_string(),
        agent.id.to_string(),
        app_id.to_string(),
        state,
        message,
        uri
    ])?;
    // Through the agent's apps: statuses are indexed by app, not by agent.
    // The order is the one `app_statuses` shows, so what stays is its head.
    conn.prepare_cached(
        "DELETE FROM workspace_app_statuses WHERE id IN (
             SELECT s.id FROM workspace_app_statuses s
             WHERE s.app_id IN (SELECT a.id FROM workspace_apps a WHERE a.agent_id = ?1)
             ORDER BY s.created_at DESC, s.id DESC LIMIT -1 OFFSET ?2)",
    )?
    .execute(params![agent.id.to_string(), keep as i64])?;
    Ok(AppStatusRow {
        id,
        created_at: now,
        workspace_id: agent.workspace_id,
        agent_id: agent.id,
        app_id,
        state: state.to_string(),
        message: message.to_string(),
        uri: uri.map(str::to_string),
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScriptRow {
    pub id: Uuid,
    pub log_source_id: Uuid,
    pub display_name: String,
    pub log_path: String,
    pub script: String,
    pub cron: String,
    pub run_on_start: bool,
    pub run_on_stop: bool,
    pub start_blocks_login: bool,
    pub timeout_seconds: i64,
    /// The run that started last, once the agent reported one.
    pub last_run: Option<ScriptRunResult>,
}

/// What GET agent shows of a script's last run.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptRunResult {
    pub exit_code: i32,
    /// `ok`, `exit_failure`, `timed_out` or `pipes_left_open`.
    pub status: String,
}

/// One reported script run (ScriptCompleted).
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptRun<'a> {
    pub started_at: OffsetDateTime,
    pub ended_at: OffsetDateTime,
    pub exit_code: i32,
    /// `start`, `stop` or `cron`.
    pub stage: &'a str,
    /// `ok`, `exit_failure`, `timed_out` or `pipes_left_open`.
    pub status: &'a str,
}

/// Records a run of one of this agent's scripts; a run that started before
/// the one already kept is ignored (reports can arrive out of order). A
/// script that is not this agent's is [`StoreError::NotFound`].
pub fn record_script_run(
    conn: &Connection,
    agent_id: Uuid,
    script_id: Uuid,
    run: &ScriptRun<'_>,
) -> Result<()> {
    let changed = conn
        .prepare_cached(
            "UPDATE workspace_agent_scripts
             SET last_started_at = ?3, last_ended_at = ?4, last_exit_code = ?5,
                 last_stage = ?6, last_status = ?7
             WHERE id = ?1 AND agent_id = ?2
               AND (last_started_at IS NULL OR last_started_at <= ?3)",
        )?
        .execute(params![
            script_id.to_string(),
            agent_id.to_string(),
            to_micros(run.started_at),
            to_micros(run.ended_at),
            run.exit_code,
            run.stage,
            run.status,
        ])?;
    if changed == 0 {
        let exists: bool = conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM workspace_agent_scripts WHERE id = ?1 AND agent_id = ?2)",
            )?
            .query_row([script_id.to_string(), agent_id.to_string()], |r| r.get(0))?;
        if !exists {
            return Err(StoreError::NotFound);
        }
    }
    Ok(())
}

/// The agent's scripts, ordered by id (as upstream).
pub fn scripts(conn: &Connection, agent_id: Uuid) -> Result<Vec<ScriptRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, log_source_id, display_name, log_path, script, cron, run_on_start,
                run_on_stop, start_blocks_login, timeout_seconds, last_exit_code, last_status
         FROM workspace_agent_scripts WHERE agent_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([agent_id.to_string()], |r| {
        Ok(ScriptRow {
            id: get_uuid(r, 0)?,
            log_source_id: get_uuid(r, 1)?,
            display_name: r.get(2)?,
            log_path: r.get(3)?,
            script: r.get(4)?,
            cron: r.get(5)?,
            run_on_start: r.get(6)?,
            run_on_stop: r.get(7)?,
            start_blocks_login: r.get(8)?,
            timeout_seconds: r.get(9)?,
            last_run: match (
                r.get::<_, Option<i32>>(10)?,
                r.get::<_, Option<String>>(11)?,
            ) {
                (Some(exit_code), Some(status)) => Some(ScriptRunResult { exit_code, status }),
                _ => None,
            },
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogSourceRow {
    pub agent_id: Uuid,
    pub id: Uuid,
    pub created_at: OffsetDateTime,
    pub display_name: String,
    pub icon: String,
}

pub fn log_sources(conn: &Connection, agent_id: Uuid) -> Result<Vec<LogSourceRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT workspace_agent_id, id, created_at, display_name, icon
         FROM workspace_agent_log_sources WHERE workspace_agent_id = ?1 ORDER BY created_at, id",
    )?;
    let rows = stmt.query_map([agent_id.to_string()], |r| {
        Ok(LogSourceRow {
            agent_id: get_uuid(r, 0)?,
            id: get_uuid(r, 1)?,
            created_at: from_micros(r.get(2)?),
            display_name: r.get(3)?,
            icon: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Stores the hash of a new agent token and revokes the agent's oldest tokens
/// beyond `keep` live ones.
pub fn insert_agent_token(
    conn: &Connection,
    agent_id: Uuid,
    token_hash: &[u8],
    now: OffsetDateTime,
    keep: usize,
) -> Result<()> {
    if keep == 0 {
        return Err(StoreError::Other(
            "an agent must keep at least one token".into(),
        ));
    }
    conn.prepare_cached(
        "INSERT INTO workspace_agent_tokens (token_hash, agent_id, created_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![token_hash, agent_id.to_string(), to_micros(now)])?;
    conn.prepare_cached(
        "DELETE FROM workspace_agent_tokens WHERE agent_id = ?1 AND token_hash NOT IN (
             SELECT token_hash FROM workspace_agent_tokens WHERE agent_id = ?1
             ORDER BY created_at DESC, token_hash DESC LIMIT ?2)",
    )?
    .execute(params![agent_id.to_string(), keep as i64])?;
    Ok(())
}

/// The live agent a token belongs to.
pub fn agent_by_token_hash(conn: &Connection, token_hash: &[u8]) -> Result<Option<AgentRow>> {
    optional(
        conn.prepare_cached(&format!(
            "SELECT {AGENT_COLUMNS} FROM workspace_agent_tokens t
             JOIN workspace_agents a ON a.id = t.agent_id {AGENT_JOINS}
             WHERE t.token_hash = ?1 AND a.deleted = 0 AND w.deleted = 0"
        ))?
        .query_row([token_hash], agent_row),
    )
}

/// How many tokens the agent holds (for tests and `workspace show`).
pub fn token_count(conn: &Connection, agent_id: Uuid) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT count(*) FROM workspace_agent_tokens WHERE agent_id = ?1",
        [agent_id.to_string()],
        |r| r.get(0),
    )?)
}

/// A root agent that may sign in with an instance id.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceCandidate {
    pub agent_id: Uuid,
    pub name: String,
    pub build_id: Uuid,
    pub workspace_id: Uuid,
    pub created_at: OffsetDateTime,
    /// Whether the agent's build is its workspace's latest.
    pub on_latest_build: bool,
}

/// Live root agents of live workspaces on the instance, newest first (Coder's
/// `GetWorkspaceBuildAgentsByInstanceID`). Sub-agents never sign in this way.
pub fn instance_candidates(conn: &Connection, instance_id: &str) -> Result<Vec<InstanceCandidate>> {
    let mut stmt = conn.prepare_cached(
        "SELECT a.id, a.name, b.id, w.id, a.created_at,
                b.build_number = (SELECT max(b2.build_number) FROM workspace_builds b2 WHERE b2.workspace_id = w.id)
         FROM workspace_agents a
         JOIN workspace_resources r ON r.id = a.resource_id
         JOIN workspace_builds b ON b.id = r.build_id
         JOIN workspaces w ON w.id = b.workspace_id
         WHERE a.auth_instance_id = ?1 AND a.deleted = 0 AND a.parent_id IS NULL AND w.deleted = 0
         ORDER BY a.created_at DESC, a.id",
    )?;
    let rows = stmt.query_map([instance_id], |r| {
        Ok(InstanceCandidate {
            agent_id: get_uuid(r, 0)?,
            name: r.get(1)?,
            build_id: get_uuid(r, 2)?,
            workspace_id: get_uuid(r, 3)?,
            created_at: from_micros(r.get(4)?),
            on_latest_build: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// What [`add_log_source`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSourceAdded {
    Inserted,
    /// The agent already had a source with this id; it was left as it was.
    Existed,
    /// The agent already has `max` sources and this id is not one of them.
    Full,
}

/// Registers a log source an agent announces, unless the agent already has
/// `max` of them (upstream has no bound: each source is a row in the agent's
/// `GET /workspaceagents/{id}`). Idempotent on (agent, id), full or not.
pub fn add_log_source(
    conn: &Connection,
    agent_id: Uuid,
    id: Uuid,
    display_name: &str,
    icon: &str,
    now: OffsetDateTime,
    max: usize,
) -> Result<LogSourceAdded> {
    let (count, exists): (i64, bool) = conn
        .prepare_cached(
            "SELECT count(*), coalesce(max(id = ?2), 0) FROM workspace_agent_log_sources
             WHERE workspace_agent_id = ?1",
        )?
        .query_row(params![agent_id.to_string(), id.to_string()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    if exists {
        return Ok(LogSourceAdded::Existed);
    }
    if count >= max as i64 {
        return Ok(LogSourceAdded::Full);
    }
    insert_log_source(conn, agent_id, id, display_name, icon, now)?;
    Ok(LogSourceAdded::Inserted)
}

/// Registers a log source; idempotent on (agent, id). Returns whether a row
/// was inserted (false: it already existed and was left as it was).
pub fn insert_log_source(
    conn: &Connection,
    agent_id: Uuid,
    id: Uuid,
    display_name: &str,
    icon: &str,
    now: OffsetDateTime,
) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "INSERT INTO workspace_agent_log_sources (workspace_agent_id, id, created_at, display_name, icon)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (workspace_agent_id, id) DO NOTHING",
        )?
        .execute(params![
            agent_id.to_string(),
            id.to_string(),
            to_micros(now),
            display_name,
            icon
        ])?;
    Ok(n == 1)
}
