//! Wire types: Coder's `codersdk` / `agentsdk` JSON, field for field.
//!
//! Only these types are serialised onto the wire, and their field names,
//! omissions and nulls follow what coderd really sends (see
//! `../shared/spec/coder-agents.go-fields.json`): a field Go marks `omitempty` is skipped when
//! empty here too; the others are always present. Store rows never derive
//! `Serialize`, so changing the database cannot silently change the API.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// RFC 3339 in UTC with as many fractional digits as needed, like Go's
/// `time.Time` JSON encoding.
pub mod rfc3339 {
    use serde::Serializer;
    use time::{OffsetDateTime, UtcOffset, format_description::well_known::Rfc3339};

    /// Go's zero `time.Time`, as `encoding/json` writes it.
    pub const GO_ZERO: &str = "0001-01-01T00:00:00Z";

    pub fn format(t: &OffsetDateTime) -> String {
        t.to_offset(UtcOffset::UTC)
            .format(&Rfc3339)
            .unwrap_or_else(|_| GO_ZERO.to_string())
    }

    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
    }

    pub mod option {
        use super::*;
        pub fn serialize<S: Serializer>(
            t: &Option<OffsetDateTime>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&format(t)),
                None => s.serialize_none(),
            }
        }
    }

    /// A Go `time.Time` without `omitempty` that may be unset: `None` is
    /// sent as Go's zero time, never `null`.
    pub mod or_zero {
        use super::*;
        pub fn serialize<S: Serializer>(
            t: &Option<OffsetDateTime>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&format(t)),
                None => s.serialize_str(GO_ZERO),
            }
        }
    }
}

/// `codersdk.Response`: every error body, and some success bodies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validations: Vec<ValidationError>,
}

/// `codersdk.ValidationError`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationError {
    pub field: String,
    pub detail: String,
}

/// `codersdk.WorkspaceAgent`.
#[derive(Debug, Clone, Serialize)]
pub struct WorkspaceAgent {
    pub id: Uuid,
    /// `uuid.NullUUID`, which Go marshals as a UUID string or `null`.
    pub parent_id: Option<Uuid>,
    #[serde(with = "rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub first_connected_at: Option<OffsetDateTime>,
    #[serde(with = "rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub last_connected_at: Option<OffsetDateTime>,
    #[serde(with = "rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub disconnected_at: Option<OffsetDateTime>,
    #[serde(with = "rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<OffsetDateTime>,
    pub status: &'static str,
    pub lifecycle_state: String,
    pub name: String,
    pub resource_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    pub architecture: String,
    /// `null` when the agent has no environment, as Go's nil map.
    pub environment_variables: Option<serde_json::Map<String, serde_json::Value>>,
    pub operating_system: String,
    pub logs_length: i64,
    pub logs_overflowed: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub directory: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub expanded_directory: String,
    pub version: String,
    pub api_version: String,
    pub apps: Vec<WorkspaceApp>,
    pub connection_timeout_seconds: i64,
    pub troubleshooting_url: String,
    pub subsystems: Vec<String>,
    pub health: WorkspaceAgentHealth,
    pub display_apps: Vec<String>,
    pub log_sources: Vec<WorkspaceAgentLogSource>,
    pub scripts: Vec<WorkspaceAgentScript>,
    pub startup_script_behavior: &'static str,
}

/// `codersdk.WorkspaceAgentHealth`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkspaceAgentHealth {
    pub healthy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

/// `codersdk.WorkspaceApp`.
#[derive(Debug, Clone, Serialize)]
pub struct WorkspaceApp {
    pub id: Uuid,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub url: String,
    pub external: bool,
    pub slug: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub command: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub icon: String,
    pub subdomain: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subdomain_name: String,
    pub sharing_level: String,
    /// Go's `omitempty` never omits a struct, so this is always sent.
    pub healthcheck: Healthcheck,
    pub health: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    pub hidden: bool,
    pub open_in: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tooltip: String,
    pub statuses: Vec<WorkspaceAppStatus>,
}

/// `codersdk.Healthcheck`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Healthcheck {
    pub url: String,
    pub interval: i64,
    pub threshold: i64,
}

/// `codersdk.WorkspaceAppStatus`.
#[derive(Debug, Clone, Serialize)]
pub struct WorkspaceAppStatus {
    pub id: Uuid,
    #[serde(with = "rfc3339")]
    pub created_at: OffsetDateTime,
    pub workspace_id: Uuid,
    pub agent_id: Uuid,
    pub app_id: Uuid,
    pub state: String,
    pub message: String,
    pub uri: String,
    pub icon: String,
    pub needs_user_attention: bool,
}

/// `codersdk.WorkspaceAgentScript`.
#[derive(Debug, Clone, Serialize)]
pub struct WorkspaceAgentScript {
    pub id: Uuid,
    pub log_source_id: Uuid,
    pub log_path: String,
    pub script: String,
    pub cron: String,
    pub run_on_start: bool,
    pub run_on_stop: bool,
    pub start_blocks_login: bool,
    /// A Go `time.Duration`: integer nanoseconds.
    pub timeout: i64,
    pub display_name: String,
    /// The last run's exit code, once the agent reported one (ScriptCompleted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The last run's status: `ok`, `exit_failure`, `timed_out`, `pipes_left_open`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// `codersdk.WorkspaceAgentLog`, borrowing from the stored row; `created_at`
/// is already RFC 3339 (lines of one batch share it, so it is formatted once).
#[derive(Debug, Clone, Serialize)]
pub struct WorkspaceAgentLog<'a> {
    pub id: i64,
    pub created_at: &'a str,
    pub output: &'a str,
    pub level: &'a str,
    pub source_id: Uuid,
}

/// `codersdk.WorkspaceAgentLogSource`.
#[derive(Debug, Clone, Serialize)]
pub struct WorkspaceAgentLogSource {
    pub workspace_agent_id: Uuid,
    pub id: Uuid,
    #[serde(with = "rfc3339")]
    pub created_at: OffsetDateTime,
    pub display_name: String,
    pub icon: String,
}

/// `agentsdk.GitSSHKey`: `GET /api/v2/workspaceagents/me/gitsshkey`.
#[derive(Debug, Clone, Serialize)]
pub struct GitSshKey {
    pub public_key: String,
    pub private_key: String,
}

/// `agentsdk.AuthenticateResponse`: the instance-identity sign-in routes.
#[derive(Debug, Clone, Serialize)]
pub struct AuthenticateResponse {
    pub session_token: String,
}

/// `agentsdk.ReinitializationEvent`: the `data` of a `/me/reinit` event.
#[derive(Debug, Clone, Serialize)]
pub struct ReinitializationEvent {
    pub workspace_id: Uuid,
    pub reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<Uuid>,
}

/// `agentsdk.ExternalAuthResponse`: an agent's git token, or where its owner
/// links the provider (`url`, the rest empty).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExternalAuthResponse {
    pub access_token: String,
    /// Go's `map[string]interface{}`: `null` when the provider sent nothing.
    pub token_extra: Option<serde_json::Value>,
    pub url: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(with = "rfc3339::or_zero")]
    pub expires_at: Option<OffsetDateTime>,
    pub username: String,
    pub password: String,
}

/// `codersdk.BuildInfoResponse` (`GET /api/v2/buildinfo`).
#[derive(Debug, Clone, Serialize)]
pub struct BuildInfoResponse {
    pub external_url: String,
    pub version: String,
    pub dashboard_url: String,
    pub telemetry: bool,
    pub workspace_proxy: bool,
    pub agent_api_version: String,
    pub provisioner_api_version: String,
    pub upgrade_message: String,
    pub deployment_id: String,
}

/// `tailcfg.DERPMap` as coderd writes it (`GET /api/v2/derp-map`, the
/// `derp_map` of `/connection`): Go field names of Coder's tailscale fork,
/// regions keyed by id, `omitempty` fields skipped when empty.
#[derive(Debug, Clone, Serialize)]
pub struct DerpMap {
    #[serde(rename = "HomeParams", skip_serializing_if = "Option::is_none")]
    pub home_params: Option<DerpHomeParams>,
    #[serde(rename = "Regions")]
    pub regions: std::collections::BTreeMap<i64, DerpRegion>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DerpHomeParams {
    #[serde(
        rename = "RegionScore",
        skip_serializing_if = "std::collections::BTreeMap::is_empty"
    )]
    pub region_score: std::collections::BTreeMap<i64, f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DerpRegion {
    #[serde(rename = "EmbeddedRelay")]
    pub embedded_relay: bool,
    #[serde(rename = "RegionID")]
    pub region_id: i64,
    #[serde(rename = "RegionCode")]
    pub region_code: String,
    #[serde(rename = "RegionName")]
    pub region_name: String,
    #[serde(rename = "Avoid", skip_serializing_if = "is_false")]
    pub avoid: bool,
    #[serde(rename = "Nodes")]
    pub nodes: Vec<DerpNode>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DerpNode {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "RegionID")]
    pub region_id: i64,
    #[serde(rename = "HostName")]
    pub host_name: String,
    #[serde(rename = "CertName", skip_serializing_if = "String::is_empty")]
    pub cert_name: String,
    #[serde(rename = "IPv4", skip_serializing_if = "String::is_empty")]
    pub ipv4: String,
    #[serde(rename = "IPv6", skip_serializing_if = "String::is_empty")]
    pub ipv6: String,
    #[serde(rename = "STUNPort", skip_serializing_if = "is_zero_i32")]
    pub stun_port: i32,
    #[serde(rename = "STUNOnly", skip_serializing_if = "is_false")]
    pub stun_only: bool,
    #[serde(rename = "DERPPort", skip_serializing_if = "is_zero_i32")]
    pub derp_port: i32,
    #[serde(rename = "InsecureForTests", skip_serializing_if = "is_false")]
    pub insecure_for_tests: bool,
    #[serde(rename = "ForceHTTP", skip_serializing_if = "is_false")]
    pub force_http: bool,
    #[serde(rename = "STUNTestIP", skip_serializing_if = "String::is_empty")]
    pub stun_test_ip: String,
    #[serde(rename = "CanPort80", skip_serializing_if = "is_false")]
    pub can_port_80: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}

impl From<&crate::rpc::proto::tailnet::DerpMap> for DerpMap {
    fn from(m: &crate::rpc::proto::tailnet::DerpMap) -> DerpMap {
        DerpMap {
            // coderd's JSON map has no HomeParams unless scores were set;
            // its protobuf one always has (see tailnet::derp_map::build).
            home_params: m
                .home_params
                .as_ref()
                .filter(|h| !h.region_score.is_empty())
                .map(|h| DerpHomeParams {
                    region_score: h.region_score.clone(),
                }),
            regions: m
                .regions
                .iter()
                .map(|(id, r)| {
                    let region = DerpRegion {
                        embedded_relay: r.embedded_relay,
                        region_id: r.region_id,
                        region_code: r.region_code.clone(),
                        region_name: r.region_name.clone(),
                        avoid: r.avoid,
                        nodes: r
                            .nodes
                            .iter()
                            .map(|n| DerpNode {
                                name: n.name.clone(),
                                region_id: n.region_id,
                                host_name: n.host_name.clone(),
                                cert_name: n.cert_name.clone(),
                                ipv4: n.ipv4.clone(),
                                ipv6: n.ipv6.clone(),
                                stun_port: n.stun_port,
                                stun_only: n.stun_only,
                                derp_port: n.derp_port,
                                insecure_for_tests: n.insecure_for_tests,
                                force_http: n.force_http,
                                stun_test_ip: n.stun_test_ip.clone(),
                                can_port_80: n.can_port_80,
                            })
                            .collect(),
                    };
                    (*id, region)
                })
                .collect(),
        }
    }
}

/// `workspacesdk.AgentConnectionInfo` (`GET /workspaceagents/{id}/connection`).
#[derive(Debug, Clone, Serialize)]
pub struct AgentConnectionInfo {
    pub derp_map: DerpMap,
    pub derp_force_websockets: bool,
    pub disable_direct_connections: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hostname_suffix: String,
}

/// `codersdk.WorkspaceAgentListeningPortsResponse`: what an agent answers on
/// `GET /api/v0/listening-ports`, and (filtered) `GET
/// /workspaceagents/{id}/listening-ports`. `ports` is always a list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceAgentListeningPortsResponse {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub ports: Vec<WorkspaceAgentListeningPort>,
}

/// `codersdk.WorkspaceAgentListeningPort`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkspaceAgentListeningPort {
    pub process_name: String,
    pub network: String,
    pub port: u16,
}

/// A JSON `null` list read as empty, as Go leaves a nil slice.
fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// `workspacesdk.AgentReconnectingPTYInit`: the first thing written on an
/// agent's reconnecting-PTY port, after its length (2 bytes, little-endian).
/// Go's field names: the struct has no JSON tags.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentReconnectingPtyInit {
    #[serde(rename = "ID")]
    pub id: Uuid,
    pub height: u16,
    pub width: u16,
    pub command: String,
    pub container: String,
    pub container_user: String,
    pub backend_type: String,
}

/// `codersdk.IssueReconnectingPTYSignedTokenResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct IssueReconnectingPtySignedTokenResponse {
    pub signed_token: String,
}
