//! Workspaces and their builds.
//!
//! Invariant kept here: only agents of a workspace's latest build are live
//! (`deleted = 0`). Every build (apply, stop, delete) soft-deletes the agents
//! of all earlier builds in the same transaction that records it.

use rusqlite::{Connection, params};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Result, StoreError, from_micros, get_uuid, optional, to_micros};
use crate::manifest;

#[derive(Debug, Clone, PartialEq)]
pub struct WorkspaceRow {
    pub id: Uuid,
    pub name: String,
    pub owner_id: Uuid,
    pub owner_name: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BuildRow {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub number: i64,
    pub transition: String,
    pub initiator_id: Uuid,
    pub created_at: OffsetDateTime,
    /// `running`, `succeeded` or `failed`.
    pub job_status: String,
    pub job_error: Option<String>,
    /// The build that gave a prebuilt workspace to its user.
    pub prebuild_claim: bool,
}

/// An agent recorded by a build.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAgent {
    pub id: Uuid,
    pub name: String,
    pub parent_id: Option<Uuid>,
    pub auth: manifest::AgentAuth,
    pub resource_name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AppliedBuild {
    pub workspace: WorkspaceRow,
    pub build: BuildRow,
    pub agents: Vec<NewAgent>,
}

/// A workspace with a summary of its latest build, for listings.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkspaceSummary {
    pub workspace: WorkspaceRow,
    pub latest_build: Option<BuildRow>,
    pub live_agents: i64,
}

const WORKSPACE_COLUMNS: &str =
    "w.id, w.name, w.owner_id, u.username, w.created_at, w.updated_at, w.deleted";

fn workspace_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<WorkspaceRow> {
    Ok(WorkspaceRow {
        id: get_uuid(r, 0)?,
        name: r.get(1)?,
        owner_id: get_uuid(r, 2)?,
        owner_name: r.get(3)?,
        created_at: from_micros(r.get(4)?),
        updated_at: from_micros(r.get(5)?),
        deleted: r.get(6)?,
    })
}

const BUILD_COLUMNS: &str = "b.id, b.workspace_id, b.build_number, b.transition, b.initiator_id,
    b.created_at, b.job_status, b.job_error, b.prebuild_claim";

fn build_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BuildRow> {
    Ok(BuildRow {
        id: get_uuid(r, 0)?,
        workspace_id: get_uuid(r, 1)?,
        number: r.get(2)?,
        transition: r.get(3)?,
        initiator_id: get_uuid(r, 4)?,
        created_at: from_micros(r.get(5)?),
        job_status: r.get(6)?,
        job_error: r.get(7)?,
        prebuild_claim: r.get(8)?,
    })
}

/// The live workspace `name` of `owner_id`.
pub fn live_workspace(
    conn: &Connection,
    owner_id: Uuid,
    name: &str,
) -> Result<Option<WorkspaceRow>> {
    optional(
        conn.prepare_cached(&format!(
            "SELECT {WORKSPACE_COLUMNS} FROM workspaces w JOIN users u ON u.id = w.owner_id
             WHERE w.owner_id = ?1 AND w.name = ?2 AND w.deleted = 0"
        ))?
        .query_row(params![owner_id.to_string(), name], workspace_row),
    )
}

/// Live workspaces named `name`, of any owner (for commands given no `--owner`).
pub fn live_workspaces_named(conn: &Connection, name: &str) -> Result<Vec<WorkspaceRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {WORKSPACE_COLUMNS} FROM workspaces w JOIN users u ON u.id = w.owner_id
         WHERE w.name = ?1 AND w.deleted = 0 ORDER BY u.username"
    ))?;
    let rows = stmt.query_map([name], workspace_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn latest_build(conn: &Connection, workspace_id: Uuid) -> Result<Option<BuildRow>> {
    optional(
        conn.prepare_cached(&format!(
            "SELECT {BUILD_COLUMNS} FROM workspace_builds b
             WHERE b.workspace_id = ?1 ORDER BY b.build_number DESC LIMIT 1"
        ))?
        .query_row([workspace_id.to_string()], build_row),
    )
}

/// The external-auth provider ids the workspace's latest build declares.
pub fn declared_external_auth(conn: &Connection, workspace_id: Uuid) -> Result<Vec<String>> {
    let text: Option<String> = optional(
        conn.prepare_cached(
            "SELECT external_auth_providers FROM workspace_builds
             WHERE workspace_id = ?1 ORDER BY build_number DESC LIMIT 1",
        )?
        .query_row([workspace_id.to_string()], |r| r.get(0)),
    )?;
    match text {
        None => Ok(Vec::new()),
        Some(t) => serde_json::from_str(&t).map_err(|e| StoreError::Other(e.to_string())),
    }
}

/// Build #1 of the workspace.
pub fn first_build(conn: &Connection, workspace_id: Uuid) -> Result<Option<BuildRow>> {
    optional(
        conn.prepare_cached(&format!(
            "SELECT {BUILD_COLUMNS} FROM workspace_builds b
             WHERE b.workspace_id = ?1 ORDER BY b.build_number ASC LIMIT 1"
        ))?
        .query_row([workspace_id.to_string()], build_row),
    )
}

/// What `GET /me/reinit` decides on: the workspace's current owner, its
/// first build and its latest build.
pub fn claim_state(conn: &Connection, workspace_id: Uuid) -> Result<(Uuid, BuildRow, BuildRow)> {
    let owner = conn
        .prepare_cached("SELECT owner_id FROM workspaces WHERE id = ?1")?
        .query_row([workspace_id.to_string()], |r| get_uuid(r, 0));
    let owner = optional(owner)?.ok_or(StoreError::NotFound)?;
    let first = first_build(conn, workspace_id)?.ok_or(StoreError::NotFound)?;
    let latest = latest_build(conn, workspace_id)?.ok_or(StoreError::NotFound)?;
    Ok((owner, first, latest))
}

/// Gives a prebuilt workspace (owned by `prebuilds_user`) to `owner_id`: the
/// owner changes and a claim build is recorded, `failed` with `error` when
/// given. The claim build takes over the running build's resources, so the
/// agents keep their ids and tokens (as upstream's claim reuses the running
/// agents' tokens) and learn of the claim from `GET /me/reinit`.
pub fn claim(
    conn: &Connection,
    workspace_id: Uuid,
    prebuilds_user: Uuid,
    owner_id: Uuid,
    error: Option<&str>,
    now: OffsetDateTime,
) -> Result<BuildRow> {
    let ws = workspace_by_id(conn, workspace_id)?;
    if ws.owner_id != prebuilds_user || ws.deleted {
        return Err(StoreError::Conflict(format!(
            "workspace \"{}\" is not a prebuilt workspace waiting to be claimed",
            ws.name
        )));
    }
    if live_workspace(conn, owner_id, &ws.name)?.is_some() {
        return Err(StoreError::Conflict(format!(
            "the new owner already has a workspace named \"{}\"",
            ws.name
        )));
    }
    let previous = latest_build(conn, workspace_id)?.ok_or(StoreError::NotFound)?;
    conn.execute(
        "UPDATE workspaces SET owner_id = ?2, updated_at = ?3 WHERE id = ?1",
        params![
            workspace_id.to_string(),
            owner_id.to_string(),
            to_micros(now)
        ],
    )?;
    let id = Uuid::new_v4();
    conn.execute(
        "INSERT INTO workspace_builds (id, workspace_id, build_number, transition, initiator_id,
             created_at, job_status, job_error, prebuild_claim)
         VALUES (?1, ?2, ?3, 'start', ?4, ?5, ?6, ?7, 1)",
        params![
            id.to_string(),
            workspace_id.to_string(),
            previous.number + 1,
            owner_id.to_string(),
            to_micros(now),
            if error.is_some() {
                "failed"
            } else {
                "succeeded"
            },
            error
        ],
    )?;
    conn.execute(
        "UPDATE workspace_resources SET build_id = ?2 WHERE build_id = ?1",
        params![previous.id.to_string(), id.to_string()],
    )?;
    latest_build(conn, workspace_id)?.ok_or(StoreError::NotFound)
}

/// Live workspaces with their latest build and live agent count.
pub fn list(conn: &Connection) -> Result<Vec<WorkspaceSummary>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {WORKSPACE_COLUMNS},
                (SELECT count(*) FROM workspace_agents a
                   JOIN workspace_resources r ON r.id = a.resource_id
                   JOIN workspace_builds b ON b.id = r.build_id
                  WHERE b.workspace_id = w.id AND a.deleted = 0)
         FROM workspaces w JOIN users u ON u.id = w.owner_id
         WHERE w.deleted = 0 ORDER BY u.username, w.name"
    ))?;
    let rows = stmt.query_map([], |r| Ok((workspace_row(r)?, r.get::<_, i64>(7)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (workspace, live_agents) = row?;
        let latest_build = latest_build(conn, workspace.id)?;
        out.push(WorkspaceSummary {
            workspace,
            latest_build,
            live_agents,
        });
    }
    Ok(out)
}

/// Records build N+1 of `workspace_id` and soft-deletes the agents of every
/// earlier build.
fn record_build(
    conn: &Connection,
    workspace_id: Uuid,
    transition: &str,
    initiator_id: Uuid,
    now: OffsetDateTime,
) -> Result<BuildRow> {
    let number: i64 = conn.query_row(
        "SELECT coalesce(max(build_number), 0) + 1 FROM workspace_builds WHERE workspace_id = ?1",
        [workspace_id.to_string()],
        |r| r.get(0),
    )?;
    let id = Uuid::new_v4();
    conn.execute(
        "INSERT INTO workspace_builds (id, workspace_id, build_number, transition, initiator_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            id.to_string(),
            workspace_id.to_string(),
            number,
            transition,
            initiator_id.to_string(),
            to_micros(now)
        ],
    )?;
    conn.execute(
        "UPDATE workspace_agents SET deleted = 1, updated_at = ?3
         WHERE deleted = 0 AND resource_id IN (
             SELECT r.id FROM workspace_resources r JOIN workspace_builds b ON b.id = r.build_id
             WHERE b.workspace_id = ?1 AND b.id <> ?2)",
        params![workspace_id.to_string(), id.to_string(), to_micros(now)],
    )?;
    conn.execute(
        "UPDATE workspaces SET updated_at = ?2 WHERE id = ?1",
        params![workspace_id.to_string(), to_micros(now)],
    )?;
    Ok(BuildRow {
        id,
        workspace_id,
        number,
        transition: transition.to_string(),
        initiator_id,
        created_at: now,
        job_status: "succeeded".into(),
        job_error: None,
        prebuild_claim: false,
    })
}

fn workspace_by_id(conn: &Connection, id: Uuid) -> Result<WorkspaceRow> {
    super::one(
        conn.prepare_cached(&format!(
            "SELECT {WORKSPACE_COLUMNS} FROM workspaces w JOIN users u ON u.id = w.owner_id WHERE w.id = ?1"
        ))?
        .query_row([id.to_string()], workspace_row),
    )
}

/// Creates the workspace (if `owner_id` has no live one of that name) and
/// records a `start` build holding everything the manifest declares.
/// `apply`, then a first token for every agent that signs in with one, in
/// the same transaction: `mint` makes a token and returns its digest and
/// what the caller keeps of it (the token itself, shown once).
pub fn apply_with_tokens<T>(
    conn: &Connection,
    ws: &manifest::Workspace,
    owner_id: Uuid,
    initiator_id: Uuid,
    now: OffsetDateTime,
    keep_tokens: usize,
    mut mint: impl FnMut() -> ([u8; 32], T),
) -> Result<(AppliedBuild, std::collections::BTreeMap<Uuid, T>)> {
    let applied = apply(conn, ws, owner_id, initiator_id, now)?;
    let mut tokens = std::collections::BTreeMap::new();
    for agent in applied
        .agents
        .iter()
        .filter(|a| a.auth == manifest::AgentAuth::Token)
    {
        let (hash, kept) = mint();
        super::agents::insert_agent_token(conn, agent.id, &hash, now, keep_tokens)?;
        tokens.insert(agent.id, kept);
    }
    Ok((applied, tokens))
}

pub fn apply(
    conn: &Connection,
    ws: &manifest::Workspace,
    owner_id: Uuid,
    initiator_id: Uuid,
    now: OffsetDateTime,
) -> Result<AppliedBuild> {
    let workspace_id = match live_workspace(conn, owner_id, &ws.name)? {
        Some(w) => w.id,
        None => {
            let id = Uuid::new_v4();
            conn.execute(
                "INSERT INTO workspaces (id, owner_id, name, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
                params![id.to_string(), owner_id.to_string(), ws.name, to_micros(now)],
            )?;
            id
        }
    };
    let build = record_build(conn, workspace_id, "start", initiator_id, now)?;
    if !ws.external_auth.is_empty() {
        let declared = serde_json::to_string(&ws.external_auth)
            .map_err(|e| StoreError::Other(e.to_string()))?;
        conn.execute(
            "UPDATE workspace_builds SET external_auth_providers = ?2 WHERE id = ?1",
            params![build.id.to_string(), declared],
        )?;
    }
    let mut agents = Vec::new();
    for resource in &ws.resources {
        let resource_id = Uuid::new_v4();
        conn.execute(
            "INSERT INTO workspace_resources (id, build_id, name, type, instance_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                resource_id.to_string(),
                build.id.to_string(),
                resource.name,
                resource.kind,
                resource.instance_id,
                to_micros(now)
            ],
        )?;
        for agent in &resource.agents {
            let id = insert_agent(conn, resource_id, resource, agent, None, now)?;
            agents.push(NewAgent {
                id,
                name: agent.name.clone(),
                parent_id: None,
                auth: agent.auth,
                resource_name: resource.name.clone(),
            });
            for child in &agent.children {
                let child_id = insert_agent(conn, resource_id, resource, child, Some(id), now)?;
                agents.push(NewAgent {
                    id: child_id,
                    name: child.name.clone(),
                    parent_id: Some(id),
                    auth: child.auth,
                    resource_name: resource.name.clone(),
                });
            }
        }
    }
    Ok(AppliedBuild {
        workspace: workspace_by_id(conn, workspace_id)?,
        build,
        agents,
    })
}

fn insert_agent(
    conn: &Connection,
    resource_id: Uuid,
    resource: &manifest::Resource,
    agent: &manifest::Agent,
    parent_id: Option<Uuid>,
    now: OffsetDateTime,
) -> Result<Uuid> {
    let id = Uuid::new_v4();
    // Instance-identity agents carry their instance id; so do sub-agents, which
    // run on the same instance (sign-in skips them: only roots are chosen).
    let instance_id = if agent.auth.is_instance_identity() || parent_id.is_some() {
        resource.instance_id.clone()
    } else {
        None
    };
    let env = if agent.env.is_empty() {
        None
    } else {
        Some(serde_json::to_string(&agent.env).map_err(|e| StoreError::Other(e.to_string()))?)
    };
    let json =
        |v: &Vec<String>| serde_json::to_string(v).map_err(|e| StoreError::Other(e.to_string()));
    conn.prepare_cached(
        "INSERT INTO workspace_agents (
             id, resource_id, parent_id, name, auth, auth_instance_id, created_at, updated_at,
             architecture, operating_system, directory, environment_variables,
             connection_timeout_seconds, troubleshooting_url, motd_file, subsystems, display_apps,
             display_order, api_key_scope)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
    )?
    .execute(params![
        id.to_string(),
        resource_id.to_string(),
        parent_id.map(|p| p.to_string()),
        agent.name,
        agent.auth.as_str(),
        instance_id,
        to_micros(now),
        agent.architecture,
        agent.operating_system,
        agent.directory,
        env,
        agent.connection_timeout_seconds,
        agent.troubleshooting_url,
        agent.motd_file,
        json(&agent.subsystems)?,
        json(&agent.display_apps)?,
        agent.order,
        agent.api_key_scope,
    ])?;
    for app in &agent.apps {
        let (hc_url, hc_interval, hc_threshold) = match &app.healthcheck {
            Some(h) => (h.url.as_str(), h.interval, h.threshold),
            None => ("", 0, 0),
        };
        // As upstream: an app with a health check starts "initializing".
        let health = if app.healthcheck.is_some() {
            "initializing"
        } else {
            "disabled"
        };
        conn.prepare_cached(
            "INSERT INTO workspace_apps (
                 id, agent_id, slug, display_name, icon, command, url, external, subdomain,
                 sharing_level, healthcheck_url, healthcheck_interval, healthcheck_threshold, health,
                 hidden, open_in, display_group, tooltip, display_order, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)",
        )?
        .execute(params![
            Uuid::new_v4().to_string(),
            id.to_string(),
            app.slug,
            app.display_name,
            app.icon,
            app.command,
            app.url,
            app.external,
            app.subdomain,
            app.share,
            hc_url,
            hc_interval,
            hc_threshold,
            health,
            app.hidden,
            app.open_in,
            app.group,
            app.tooltip,
            app.order,
            to_micros(now),
        ])?;
    }
    for (order, m) in agent.metadata.iter().enumerate() {
        conn.prepare_cached(
            "INSERT INTO workspace_agent_metadata (
                 agent_id, key, display_name, script, interval_seconds, timeout_seconds, display_order)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            id.to_string(),
            m.key,
            m.display_name,
            m.script,
            m.interval,
            m.timeout,
            order as i64,
        ])?;
    }
    for script in &agent.scripts {
        // Each script logs under a source of its own, named after it (as upstream).
        let source_id = Uuid::new_v4();
        super::agents::insert_log_source(
            conn,
            id,
            source_id,
            &script.display_name,
            &script.icon,
            now,
        )?;
        conn.prepare_cached(
            "INSERT INTO workspace_agent_scripts (
                 id, agent_id, log_source_id, display_name, log_path, script, cron, run_on_start,
                 run_on_stop, start_blocks_login, timeout_seconds, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?
        .execute(params![
            Uuid::new_v4().to_string(),
            id.to_string(),
            source_id.to_string(),
            script.display_name,
            script.log_path,
            script.script,
            script.cron,
            script.run_on_start,
            script.run_on_stop,
            script.start_blocks_login,
            script.timeout_seconds,
            to_micros(now),
        ])?;
    }
    Ok(id)
}

/// Records a `stop` build: no resources, so every agent goes away.
pub fn stop(
    conn: &Connection,
    workspace_id: Uuid,
    initiator_id: Uuid,
    now: OffsetDateTime,
) -> Result<BuildRow> {
    record_build(conn, workspace_id, "stop", initiator_id, now)
}

/// Records a `delete` build and soft-deletes the workspace and all its agents.
pub fn delete(
    conn: &Connection,
    workspace_id: Uuid,
    initiator_id: Uuid,
    now: OffsetDateTime,
) -> Result<BuildRow> {
    let build = record_build(conn, workspace_id, "delete", initiator_id, now)?;
    conn.execute(
        "UPDATE workspaces SET deleted = 1, updated_at = ?2 WHERE id = ?1",
        params![workspace_id.to_string(), to_micros(now)],
    )?;
    Ok(build)
}

/// The agents recorded by a build, roots before their children.
pub fn build_agents(conn: &Connection, build_id: Uuid) -> Result<Vec<NewAgent>> {
    let mut stmt = conn.prepare(
        "SELECT a.id, a.name, a.parent_id, a.auth, r.name FROM workspace_agents a
         JOIN workspace_resources r ON r.id = a.resource_id
         WHERE r.build_id = ?1 ORDER BY a.parent_id IS NOT NULL, a.created_at, a.name",
    )?;
    let rows = stmt.query_map([build_id.to_string()], |r| {
        let auth: String = r.get(3)?;
        Ok(NewAgent {
            id: get_uuid(r, 0)?,
            name: r.get(1)?,
            parent_id: super::get_opt_uuid(r, 2)?,
            auth: manifest::AgentAuth::parse(&auth).unwrap_or(manifest::AgentAuth::Token),
            resource_name: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// ----- the dashboard's views -----

/// What the dashboard shows of a live agent in lists: enough to derive its
/// status (`agent_status`) and to name it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentBrief {
    pub id: Uuid,
    pub name: String,
    pub parent_id: Option<Uuid>,
    pub resource_id: Uuid,
    pub created_at: OffsetDateTime,
    pub first_connected_at: Option<OffsetDateTime>,
    pub last_connected_at: Option<OffsetDateTime>,
    pub disconnected_at: Option<OffsetDateTime>,
    pub connection_timeout_seconds: i64,
    pub lifecycle_state: String,
    pub version: String,
    pub operating_system: String,
    pub architecture: String,
}

/// A live workspace, its latest build and its live agents.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkspaceOverview {
    pub workspace: WorkspaceRow,
    pub latest_build: Option<BuildRow>,
    /// Display order, then name.
    pub agents: Vec<AgentBrief>,
}

/// Which workspaces [`overview`] reads.
#[derive(Debug, Clone, Copy)]
pub enum Which {
    /// Every live workspace (an admin's view).
    All,
    /// The live workspaces of one owner.
    OwnedBy(Uuid),
    /// One workspace, if live.
    One(Uuid),
}

/// Live workspaces (by owner name, then name), each with its latest build
/// and its live agents: two queries however many there are, for the
/// dashboard's workspace list.
pub fn overview(conn: &Connection, which: Which) -> Result<Vec<WorkspaceOverview>> {
    let (owner, one) = match which {
        Which::All => (None, None),
        Which::OwnedBy(owner) => (Some(owner.to_string()), None),
        Which::One(id) => (None, Some(id.to_string())),
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {WORKSPACE_COLUMNS}, {BUILD_COLUMNS}
         FROM workspaces w JOIN users u ON u.id = w.owner_id
         LEFT JOIN workspace_builds b ON b.workspace_id = w.id AND b.build_number =
             (SELECT max(b2.build_number) FROM workspace_builds b2 WHERE b2.workspace_id = w.id)
         WHERE w.deleted = 0 AND (?1 IS NULL OR w.owner_id = ?1) AND (?2 IS NULL OR w.id = ?2)
         ORDER BY u.username, w.name"
    ))?;
    let rows = stmt.query_map(params![owner, one], |r| {
        let workspace = workspace_row(r)?;
        let has_build = r.get::<_, Option<String>>(7)?.is_some();
        let build = if has_build {
            Some(BuildRow {
                id: get_uuid(r, 7)?,
                workspace_id: get_uuid(r, 8)?,
                number: r.get(9)?,
                transition: r.get(10)?,
                initiator_id: get_uuid(r, 11)?,
                created_at: from_micros(r.get(12)?),
                job_status: r.get(13)?,
                job_error: r.get(14)?,
                prebuild_claim: r.get(15)?,
            })
        } else {
            None
        };
        Ok(WorkspaceOverview {
            workspace,
            latest_build: build,
            agents: Vec::new(),
        })
    })?;
    let mut out: Vec<WorkspaceOverview> = rows.collect::<rusqlite::Result<_>>()?;
    let index: std::collections::HashMap<Uuid, usize> = out
        .iter()
        .enumerate()
        .map(|(i, o)| (o.workspace.id, i))
        .collect();
    // Live agents are those of each workspace's latest build (`deleted = 0`).
    let mut stmt = conn.prepare_cached(
        "SELECT b.workspace_id, a.id, a.name, a.parent_id, a.resource_id, a.created_at,
                a.first_connected_at, a.last_connected_at, a.disconnected_at,
                a.connection_timeout_seconds, a.lifecycle_state, a.version,
                a.operating_system, a.architecture, a.display_order
         FROM workspaces w
         JOIN workspace_builds b ON b.workspace_id = w.id
         JOIN workspace_resources r ON r.build_id = b.id
         JOIN workspace_agents a ON a.resource_id = r.id
         WHERE w.deleted = 0 AND a.deleted = 0
           AND (?1 IS NULL OR w.owner_id = ?1) AND (?2 IS NULL OR w.id = ?2)",
    )?;
    // Sorted per workspace below, not here: an ORDER BY over every agent
    // made SQLite sort them all in a temporary B-tree, a third of the
    // query's time for an admin's 1,000 agents.
    let agents = stmt.query_map(params![owner, one], |r| {
        Ok((
            get_uuid(r, 0)?,
            AgentBrief {
                id: get_uuid(r, 1)?,
                name: r.get(2)?,
                parent_id: super::get_opt_uuid(r, 3)?,
                resource_id: get_uuid(r, 4)?,
                created_at: from_micros(r.get(5)?),
                first_connected_at: super::opt_from_micros(r.get(6)?),
                last_connected_at: super::opt_from_micros(r.get(7)?),
                disconnected_at: super::opt_from_micros(r.get(8)?),
                connection_timeout_seconds: r.get(9)?,
                lifecycle_state: r.get(10)?,
                version: r.get(11)?,
                operating_system: r.get(12)?,
                architecture: r.get(13)?,
            },
            r.get::<_, i64>(14)?,
        ))
    })?;
    let mut grouped: Vec<Vec<(i64, AgentBrief)>> = out.iter().map(|_| Vec::new()).collect();
    for row in agents {
        let (workspace_id, agent, order) = row?;
        if let Some(&i) = index.get(&workspace_id) {
            grouped[i].push((order, agent));
        }
    }
    // Each workspace's agents by display order, then name.
    for (o, mut agents) in out.iter_mut().zip(grouped) {
        agents.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
        o.agents = agents.into_iter().map(|(_, a)| a).collect();
    }
    Ok(out)
}

/// The workspace's builds, newest first, at most `limit`.
pub fn builds(conn: &Connection, workspace_id: Uuid, limit: usize) -> Result<Vec<BuildRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {BUILD_COLUMNS} FROM workspace_builds b
         WHERE b.workspace_id = ?1 ORDER BY b.build_number DESC LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![workspace_id.to_string(), limit as i64], build_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A resource a build recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceRow {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    pub instance_id: Option<String>,
}

/// The resources of a build, in the order the manifest declared them.
pub fn resources(conn: &Connection, build_id: Uuid) -> Result<Vec<ResourceRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, type, instance_id FROM workspace_resources
         WHERE build_id = ?1 ORDER BY created_at, rowid",
    )?;
    let rows = stmt.query_map([build_id.to_string()], |r| {
        Ok(ResourceRow {
            id: get_uuid(r, 0)?,
            name: r.get(1)?,
            kind: r.get(2)?,
            instance_id: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
