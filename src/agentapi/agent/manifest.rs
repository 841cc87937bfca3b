//! GetManifest: the agent's manifest from the store (CONNECTIVITY.md §1.5
//! item 2): ids as 16 bytes, names, the owner, directory, environment,
//! apps with their health checks, scripts with their log sources, metadata
//! descriptions, the motd file, and `parent_id` for a sub-agent only.
//!
//! The DERP map and the connection settings (`disable_direct_connections`,
//! `derp_force_websockets`) are the deployment's (`[derp]`, `App::derp_map`).
//!
//! Not filled yet:
//! - `vs_code_port_proxy_uri` and apps' `subdomain_name`: empty (no wildcard
//!   access URL is configured).
//! - `devcontainers` and `secrets`: empty.

use std::collections::BTreeMap;

use super::{seconds, store_error};
use crate::agentapi::Session;
use crate::app::App;
use crate::rpc::drpc::RpcError;
use crate::rpc::proto::agent::workspace_agent_metadata::Description;
use crate::rpc::proto::agent::workspace_app::{Healthcheck, SharingLevel};
use crate::rpc::proto::agent::{AppHealth, Manifest, WorkspaceAgentScript, WorkspaceApp};
use crate::rpc::proto::tailnet::DerpMap;
use crate::store::{self, StoreError};

/// The DERP map sent in the manifest: the deployment's, as now.
pub fn derp_map(app: &App) -> DerpMap {
    app.derp_map.borrow().as_ref().clone()
}

/// An app's health column as the proto enum.
pub fn health_of(column: &str) -> AppHealth {
    match column {
        "disabled" => AppHealth::Disabled,
        "initializing" => AppHealth::Initializing,
        "healthy" => AppHealth::Healthy,
        "unhealthy" => AppHealth::Unhealthy,
        _ => AppHealth::Unspecified,
    }
}

fn sharing_level_of(column: &str) -> SharingLevel {
    match column {
        "owner" => SharingLevel::Owner,
        "authenticated" => SharingLevel::Authenticated,
        "public" => SharingLevel::Public,
        "organization" => SharingLevel::Organization,
        _ => SharingLevel::Unspecified,
    }
}

pub async fn get_manifest(session: &Session) -> Result<Manifest, RpcError> {
    let agent_id = session.agent.id;
    let (agent, apps, scripts, metadata, external_auth) = session
        .app
        .store
        .read_async(move |c| {
            let agent = store::agents::live_agent(c, agent_id)?.ok_or(StoreError::NotFound)?;
            let apps = store::agents::apps(c, agent_id)?;
            let scripts = store::agents::scripts(c, agent_id)?;
            let metadata = store::agent_rpc::metadata(c, agent_id)?;
            let external_auth = store::workspaces::declared_external_auth(c, agent.workspace_id)?;
            Ok((agent, apps, scripts, metadata, external_auth))
        })
        .await
        .map_err(|e| store_error("get workspace agent", e))?;
    let environment_variables: BTreeMap<String, String> = match &agent.environment_variables {
        Some(json) => serde_json::from_str(json).map_err(|e| {
            RpcError::message(format!(
                "unmarshal workspace agent environment variables: {e}"
            ))
        })?,
        None => BTreeMap::new(),
    };
    let apps = apps
        .into_iter()
        .map(|a| WorkspaceApp {
            id: a.id.as_bytes().to_vec(),
            url: a.url,
            external: a.external,
            slug: a.slug,
            display_name: a.display_name,
            command: a.command,
            icon: a.icon,
            subdomain: a.subdomain,
            subdomain_name: String::new(),
            sharing_level: sharing_level_of(&a.sharing_level) as i32,
            healthcheck: Some(Healthcheck {
                url: a.healthcheck_url,
                interval: Some(seconds(a.healthcheck_interval)),
                threshold: i32::try_from(a.healthcheck_threshold).unwrap_or(i32::MAX),
            }),
            health: health_of(&a.health) as i32,
            hidden: a.hidden,
        })
        .collect();
    let scripts = scripts
        .into_iter()
        .map(|s| WorkspaceAgentScript {
            log_source_id: s.log_source_id.as_bytes().to_vec(),
            log_path: s.log_path,
            script: s.script,
            cron: s.cron,
            run_on_start: s.run_on_start,
            run_on_stop: s.run_on_stop,
            start_blocks_login: s.start_blocks_login,
            timeout: Some(seconds(s.timeout_seconds)),
            display_name: s.display_name,
            id: s.id.as_bytes().to_vec(),
        })
        .collect();
    let metadata = metadata
        .into_iter()
        .map(|m| Description {
            display_name: m.display_name,
            key: m.key,
            script: m.script,
            interval: Some(seconds(m.interval_seconds)),
            timeout: Some(seconds(m.timeout_seconds)),
        })
        .collect();
    Ok(Manifest {
        agent_id: agent.id.as_bytes().to_vec(),
        git_auth_configs: u32::try_from(external_auth.len()).unwrap_or(u32::MAX),
        environment_variables,
        directory: agent.directory,
        vs_code_port_proxy_uri: String::new(),
        motd_path: agent.motd_file,
        disable_direct_connections: session.app.config.derp.disable_direct_connections,
        derp_force_websockets: session.app.config.derp.force_websockets,
        derp_map: Some(derp_map(&session.app)),
        scripts,
        apps,
        metadata,
        owner_username: agent.owner_name,
        workspace_id: agent.workspace_id.as_bytes().to_vec(),
        agent_name: agent.name,
        workspace_name: agent.workspace_name,
        devcontainers: Vec::new(),
        parent_id: agent.parent_id.map(|p| p.as_bytes().to_vec()),
        secrets: Vec::new(),
    })
}
