//! `GET /api/v2/workspaceagents/{workspaceagent}` (Coder: `workspaceAgent`,
//! returns `codersdk.WorkspaceAgent`).

use std::collections::HashMap;

use time::OffsetDateTime;
use uuid::Uuid;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::filters::{session_token, with_app};
use super::session::{parse_uuid_param, read_inline, readable_agent, user_for_key_cached};
use crate::agent_status;
use crate::app::App;
use crate::routes::error::{ApiError, json_bytes, respond};
use crate::sdk;
use crate::store::{self, agents::AgentRow};

pub fn routes(app: &App) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "v2" / "workspaceagents" / String)
        .and(warp::get())
        .and(session_token())
        .and(with_app(app))
        .then(|id: String, token: Option<String>, app: App| async move {
            respond(get_agent(app, token, id).await)
        })
        .boxed()
}

/// Everything the response is built from, read in one go.
pub(super) struct AgentData {
    pub agent: AgentRow,
    apps: Vec<store::agents::AppRow>,
    statuses: Vec<store::agents::AppStatusRow>,
    scripts: Vec<store::agents::ScriptRow>,
    sources: Vec<store::agents::LogSourceRow>,
}

async fn get_agent(app: App, token: Option<String>, raw_id: String) -> Result<Response, ApiError> {
    let now = OffsetDateTime::now_utc();
    // Read the version before the data: a view stored under it is at least
    // as new as the version says, never older.
    let version = app.store.version()?;
    if let Ok(id) = parse_uuid_param(&raw_id)
        && let Some(view) = app.agent_views.get(id, version, now)
    {
        let user = user_for_key_cached(&app, token.as_deref(), version, now)?;
        if !crate::auth::may_read(user.role, user.id, view.owner_id) {
            return Err(ApiError::not_found(
                "Agent doesn't exist with that id, or you do not have access to it.",
            ));
        }
        return Ok(json_bytes(StatusCode::OK, view.body));
    }
    // One short read on this thread: authenticate, authorise, load.
    let data = read_inline(&app.store, move |conn| {
        let agent = readable_agent(conn, token.as_deref(), &raw_id, now)?;
        Ok(agent_data(conn, agent)?)
    })?;
    let (id, owner_id) = (data.agent.id, data.agent.owner_id);
    let valid_until = agent_status::changes_after(
        &timestamps(&data.agent),
        now,
        app.config.agent.inactive_disconnect_timeout,
    );
    let body = workspace_agent(data, now, &app);
    let mut bytes = serde_json::to_vec(&body)
        .map_err(|e| ApiError::internal("Internal error reading workspace agent.", &e))?;
    bytes.push(b'\n');
    let bytes = bytes::Bytes::from(bytes);
    app.agent_views.put(
        id,
        crate::app::view_cache::View {
            version,
            owner_id,
            body: bytes.clone(),
            valid_until,
        },
    );
    Ok(json_bytes(StatusCode::OK, bytes))
}

/// What hangs off `agent`, read on `conn` (one transaction with the agent).
pub(super) fn agent_data(conn: &store::Connection, agent: AgentRow) -> store::Result<AgentData> {
    let id = agent.id;
    Ok(AgentData {
        apps: store::agents::apps(conn, id)?,
        statuses: store::agents::app_statuses(conn, id)?,
        scripts: store::agents::scripts(conn, id)?,
        sources: store::agents::log_sources(conn, id)?,
        agent,
    })
}

pub(super) fn timestamps(agent: &AgentRow) -> agent_status::Timestamps {
    agent_status::Timestamps {
        created_at: agent.created_at,
        first_connected_at: agent.first_connected_at,
        last_connected_at: agent.last_connected_at,
        disconnected_at: agent.disconnected_at,
        connection_timeout_seconds: agent.connection_timeout_seconds,
    }
}

/// A subdomain app's host label, as Coder builds it.
fn subdomain_name(slug: &str, display_name: &str, agent: &AgentRow) -> String {
    let slug = if slug.is_empty() { display_name } else { slug };
    let port_like = {
        let digits = slug.strip_suffix('s').unwrap_or(slug);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    };
    if port_like {
        format!(
            "{slug}--{}--{}--{}",
            agent.name, agent.workspace_name, agent.owner_name
        )
    } else {
        format!("{slug}--{}--{}", agent.workspace_name, agent.owner_name)
    }
}

fn json_strings(raw: &str) -> Vec<String> {
    serde_json::from_str(raw).unwrap_or_default()
}

/// The agent as `GET /workspaceagents/{id}` answers it (the dashboard's
/// agent page shows the same).
pub(super) fn workspace_agent(
    data: AgentData,
    now: OffsetDateTime,
    app: &App,
) -> sdk::WorkspaceAgent {
    let AgentData {
        agent,
        apps,
        statuses,
        scripts,
        sources,
    } = data;
    let (status, disconnected_at) = agent_status::status(
        &timestamps(&agent),
        now,
        app.config.agent.inactive_disconnect_timeout,
    );
    let health = match agent_status::health(status, &agent.lifecycle_state) {
        Ok(()) => sdk::WorkspaceAgentHealth {
            healthy: true,
            reason: None,
        },
        Err(reason) => sdk::WorkspaceAgentHealth {
            healthy: false,
            reason: Some(reason),
        },
    };
    let mut statuses_by_app: HashMap<Uuid, Vec<sdk::WorkspaceAppStatus>> = HashMap::new();
    for s in statuses {
        statuses_by_app
            .entry(s.app_id)
            .or_default()
            .push(sdk::WorkspaceAppStatus {
                id: s.id,
                created_at: s.created_at,
                workspace_id: s.workspace_id,
                agent_id: s.agent_id,
                app_id: s.app_id,
                state: s.state,
                message: s.message,
                uri: s.uri.unwrap_or_default(),
                icon: String::new(),
                needs_user_attention: false,
            });
    }
    let apps = apps
        .into_iter()
        .map(|a| sdk::WorkspaceApp {
            id: a.id,
            subdomain_name: if a.subdomain {
                subdomain_name(&a.slug, &a.display_name, &agent)
            } else {
                String::new()
            },
            url: a.url,
            external: a.external,
            slug: a.slug,
            display_name: a.display_name,
            command: a.command,
            icon: a.icon,
            subdomain: a.subdomain,
            sharing_level: a.sharing_level,
            healthcheck: sdk::Healthcheck {
                url: a.healthcheck_url,
                interval: a.healthcheck_interval,
                threshold: a.healthcheck_threshold,
            },
            health: a.health,
            group: a.group,
            hidden: a.hidden,
            open_in: a.open_in,
            tooltip: a.tooltip,
            statuses: statuses_by_app.remove(&a.id).unwrap_or_default(),
        })
        .collect();
    let blocking = scripts
        .iter()
        .any(|s| s.run_on_start && s.start_blocks_login);
    let scripts = scripts
        .into_iter()
        .map(|s| sdk::WorkspaceAgentScript {
            id: s.id,
            log_source_id: s.log_source_id,
            log_path: s.log_path,
            script: s.script,
            cron: s.cron,
            run_on_start: s.run_on_start,
            run_on_stop: s.run_on_stop,
            start_blocks_login: s.start_blocks_login,
            timeout: s.timeout_seconds.saturating_mul(1_000_000_000),
            display_name: s.display_name,
            exit_code: s.last_run.as_ref().map(|r| r.exit_code),
            status: s.last_run.map(|r| r.status),
        })
        .collect();
    let log_sources = sources
        .into_iter()
        .map(|s| sdk::WorkspaceAgentLogSource {
            workspace_agent_id: s.agent_id,
            id: s.id,
            created_at: s.created_at,
            display_name: s.display_name,
            icon: s.icon,
        })
        .collect();
    let troubleshooting_url = if agent.troubleshooting_url.is_empty() {
        app.config.agent.fallback_troubleshooting_url.clone()
    } else {
        agent.troubleshooting_url.clone()
    };
    sdk::WorkspaceAgent {
        id: agent.id,
        parent_id: agent.parent_id,
        created_at: agent.created_at,
        updated_at: agent.updated_at,
        first_connected_at: agent.first_connected_at,
        last_connected_at: agent.last_connected_at,
        disconnected_at,
        started_at: agent.started_at,
        ready_at: agent.ready_at,
        status: status.as_str(),
        lifecycle_state: agent.lifecycle_state,
        name: agent.name,
        resource_id: agent.resource_id,
        instance_id: agent.auth_instance_id,
        architecture: agent.architecture,
        environment_variables: agent
            .environment_variables
            .as_deref()
            .and_then(|raw| serde_json::from_str(raw).ok()),
        operating_system: agent.operating_system,
        logs_length: agent.logs_length,
        logs_overflowed: agent.logs_overflowed,
        directory: agent.directory,
        expanded_directory: agent.expanded_directory,
        version: agent.version,
        api_version: agent.api_version,
        apps,
        connection_timeout_seconds: agent.connection_timeout_seconds,
        troubleshooting_url,
        subsystems: json_strings(&agent.subsystems),
        health,
        display_apps: json_strings(&agent.display_apps),
        log_sources,
        scripts,
        startup_script_behavior: if blocking { "blocking" } else { "non-blocking" },
    }
}
