//! What the tailnet needs from the database: a user's workspaces with their
//! latest build's state and live agents (`/tailnet`'s WorkspaceUpdates), and
//! whether a user may reach an agent (tunnel authorisation).

use rusqlite::Connection;
use uuid::Uuid;

use super::{Result, get_uuid};

/// A workspace of the owner, as its latest build leaves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedWorkspace {
    pub id: Uuid,
    pub name: String,
    /// `running`, `succeeded` or `failed`.
    pub job_status: String,
    /// `start`, `stop` or `delete`.
    pub transition: String,
    /// The latest build's live agents (id, name), sub-agents included.
    pub agents: Vec<(Uuid, String)>,
}

/// coderd's `GetWorkspacesAndAgentsByOwnerID`: the owner's workspaces that are
/// not deleted, each with its latest build and that build's live agents.
pub fn workspaces_and_agents_by_owner(
    conn: &Connection,
    owner_id: Uuid,
) -> Result<Vec<OwnedWorkspace>> {
    let mut stmt = conn.prepare_cached(
        "SELECT w.id, w.name, b.job_status, b.transition, a.id, a.name
         FROM workspaces w
         JOIN workspace_builds b ON b.workspace_id = w.id AND b.build_number =
             (SELECT max(build_number) FROM workspace_builds WHERE workspace_id = w.id)
         LEFT JOIN workspace_resources r ON r.build_id = b.id
         LEFT JOIN workspace_agents a ON a.resource_id = r.id AND a.deleted = 0
         WHERE w.owner_id = ?1 AND w.deleted = 0
         ORDER BY w.id, a.created_at, a.name",
    )?;
    let mut rows = stmt.query([owner_id.to_string()])?;
    let mut out: Vec<OwnedWorkspace> = Vec::new();
    while let Some(r) = rows.next()? {
        let id = get_uuid(r, 0)?;
        if out.last().map(|w| w.id) != Some(id) {
            out.push(OwnedWorkspace {
                id,
                name: r.get(1)?,
                job_status: r.get(2)?,
                transition: r.get(3)?,
                agents: Vec::new(),
            });
        }
        if let Some(agent) = r.get::<_, Option<String>>(4)?
            && let (Ok(agent_id), Some(w)) = (Uuid::parse_str(&agent), out.last_mut())
        {
            w.agents.push((agent_id, r.get(5)?));
        }
    }
    Ok(out)
}

/// The owner of a live agent's workspace, if the agent is live.
pub fn agent_owner(conn: &Connection, agent_id: Uuid) -> Result<Option<Uuid>> {
    let mut stmt = conn.prepare_cached(
        "SELECT w.owner_id FROM workspace_agents a
         JOIN workspace_resources r ON r.id = a.resource_id
         JOIN workspace_builds b ON b.id = r.build_id
         JOIN workspaces w ON w.id = b.workspace_id
         WHERE a.id = ?1 AND a.deleted = 0 AND w.deleted = 0",
    )?;
    let mut rows = stmt.query([agent_id.to_string()])?;
    match rows.next()? {
        Some(r) => Ok(Some(get_uuid(r, 0)?)),
        None => Ok(None),
    }
}
