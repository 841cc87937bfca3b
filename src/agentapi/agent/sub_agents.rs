//! Sub-agents: `workspace_agents` rows whose `parent_id` is the calling
//! agent (devcontainer agents, CONNECTIVITY.md §1.4 and §4).
//!
//! - ListSubAgents answers this agent's live children, each with its name
//!   and id. `auth_token` is left empty: appliance keeps only token digests
//!   (coderd stores the token itself and sends it back).
//! - CreateSubAgent makes a child row with a fresh token (returned once, in
//!   the response, as the UUID's 16 bytes as coderd sends it) and the id the agent chose, if any. Apps are not made for
//!   sub-agents: each requested app is answered with an app creation error.
//! - DeleteSubAgent removes a child of this agent only.

use uuid::Uuid;

use super::store_error;
use crate::agentapi::Session;
use crate::auth;
use crate::rpc::drpc::RpcError;
use crate::rpc::proto::agent::{ListSubAgentsResponse, SubAgent};
use crate::store::agent_rpc::{self, NewSubAgent, SubAgentRow};
use crate::store::{self, StoreError};

/// Live sub-agents one agent may have.
pub const MAX_SUB_AGENTS: usize = 64;

pub async fn list(session: &Session) -> Result<ListSubAgentsResponse, RpcError> {
    let parent = session.agent.id;
    let agents = session
        .app
        .store
        .read_async(move |c| agent_rpc::sub_agents(c, parent))
        .await
        .map_err(|e| store_error("list sub agents", e))?;
    Ok(ListSubAgentsResponse {
        agents: agents
            .into_iter()
            .map(|a| SubAgent {
                name: a.name,
                id: a.id.as_bytes().to_vec(),
                auth_token: Vec::new(),
            })
            .collect(),
    })
}

/// A sub-agent just made, with its token (shown once; only its digest is
/// stored).
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    pub agent: SubAgentRow,
    pub auth_token: String,
}

/// Creates a sub-agent of the session's agent with a fresh token. The name
/// follows coderd's agent name rule and must be free in the build.
pub async fn create(
    session: &Session,
    id: Option<Uuid>,
    name: &str,
    directory: &str,
    architecture: &str,
    operating_system: &str,
) -> Result<Created, RpcError> {
    if !crate::manifest::valid_agent_name(name) {
        return Err(RpcError::message(format!(
            "agent name {name:?} does not match regex"
        )));
    }
    if session.agent.parent_id.is_some() {
        return Err(RpcError::message("a sub-agent cannot create sub-agents"));
    }
    let parent = session.agent.id;
    let token = auth::new_agent_token();
    let (name, directory, architecture, os) = (
        name.to_string(),
        directory.to_string(),
        architecture.to_string(),
        operating_system.to_string(),
    );
    let hash = token.hash;
    let id = session
        .app
        .store
        .write_async(move |tx| {
            let now = store::now();
            let id = agent_rpc::insert_sub_agent(
                tx,
                parent,
                &NewSubAgent {
                    id,
                    name: &name,
                    directory: &directory,
                    architecture: &architecture,
                    operating_system: &os,
                },
                now,
                MAX_SUB_AGENTS,
            )?;
            store::agents::insert_agent_token(tx, id, &hash, now, auth::MAX_LIVE_AGENT_TOKENS)?;
            Ok((id, name))
        })
        .await
        .map_err(|e| match e {
            StoreError::Conflict(why) => RpcError::message(format!("insert sub agent: {why}")),
            e => store_error("insert sub agent", e),
        })?;
    Ok(Created {
        agent: SubAgentRow {
            id: id.0,
            name: id.1,
        },
        auth_token: token.token,
    })
}

/// Deletes a sub-agent of the session's agent; any other id (another
/// agent's child, the agent itself, an unknown id) is refused and nothing
/// changes.
pub async fn delete(session: &Session, id: Uuid) -> Result<(), RpcError> {
    let parent = session.agent.id;
    let deleted = session
        .app
        .store
        .write_async(move |tx| agent_rpc::delete_sub_agent(tx, parent, id, store::now()))
        .await
        .map_err(|e| store_error("delete sub agent", e))?;
    if deleted {
        Ok(())
    } else {
        Err(RpcError::message(format!(
            "sub agent {id} not found: not a child of this agent"
        )))
    }
}

/// CreateSubAgent: the request decoded, the child made, its apps refused.
pub async fn create_rpc(
    session: &Session,
    req: crate::rpc::proto::agent::CreateSubAgentRequest,
) -> Result<crate::rpc::proto::agent::CreateSubAgentResponse, RpcError> {
    use crate::rpc::proto::agent::create_sub_agent_response::AppCreationError;
    let id = match &req.id {
        Some(bytes) => Some(Uuid::from_slice(bytes).map_err(|_| {
            RpcError::message(format!(
                "parse agent id: invalid UUID (got {} bytes)",
                bytes.len()
            ))
        })?),
        None => None,
    };
    let created = create(
        session,
        id,
        &req.name,
        &req.directory,
        &req.architecture,
        &req.operating_system,
    )
    .await?;
    let app_creation_errors = (0..req.apps.len())
        .map(|i| AppCreationError {
            index: i32::try_from(i).unwrap_or(i32::MAX),
            field: None,
            error: "apps are not supported for sub-agents by this server".to_owned(),
        })
        .collect();
    // Coder sends the token as the UUID's 16 bytes (`uuid.FromBytes` on the
    // agent's side), not its text.
    let token = Uuid::parse_str(&created.auth_token)
        .map_err(|e| RpcError::message(format!("sub agent token: {e}")))?;
    Ok(crate::rpc::proto::agent::CreateSubAgentResponse {
        agent: Some(SubAgent {
            name: created.agent.name,
            id: created.agent.id.as_bytes().to_vec(),
            auth_token: token.as_bytes().to_vec(),
        }),
        app_creation_errors,
    })
}

/// DeleteSubAgent: the id decoded and the child removed.
pub async fn delete_rpc(
    session: &Session,
    req: crate::rpc::proto::agent::DeleteSubAgentRequest,
) -> Result<(), RpcError> {
    let id = Uuid::from_slice(&req.id).map_err(|_| {
        RpcError::message(format!(
            "parse agent id: invalid UUID (got {} bytes)",
            req.id.len()
        ))
    })?;
    delete(session, id).await
}
