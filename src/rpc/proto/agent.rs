//! `coder.agent.v2`: the messages of the Agent service (CONNECTIVITY.md §1.4,
//! field numbers from §1.8). Nested messages and enums live in a module named
//! after their parent, as prost-build would place them
//! (`workspace_app::Healthcheck`, `lifecycle::State`).
//!
//! Left out, because the design gives no field numbers for them:
//! - `Stats.metrics` (field 12): the type of a metric's `value` and the
//!   values of its `type` enum are not given, so the field is skipped on
//!   decode like any unknown field;
//! - PushResourcesMonitoringUsage's request (`datapoints`);
//! - CreateSubAgent's request and response, DeleteSubAgent's request and
//!   response, ListSubAgents' request;
//! - ReportBoundaryLogs' request;
//! - PushContextState's request (the server answers Unimplemented anyway).
//!
//! Enums whose zero value the design does not name get an `Unspecified = 0`
//! variant: proto3 gives every enum a zero, and it is what an unset field
//! reads as.

use std::collections::BTreeMap;

use prost_types::{Duration, Timestamp};

use super::tailnet::DerpMap;

/// GetManifest's request: no fields.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetManifestRequest {}

/// What the agent needs to start: who it is, its workspace, scripts, apps,
/// metadata to collect, devcontainers, secrets and the DERP map.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Manifest {
    /// 16-byte UUID.
    #[prost(bytes = "vec", tag = "1")]
    pub agent_id: Vec<u8>,
    #[prost(uint32, tag = "2")]
    pub git_auth_configs: u32,
    #[prost(btree_map = "string, string", tag = "3")]
    pub environment_variables: BTreeMap<String, String>,
    #[prost(string, tag = "4")]
    pub directory: String,
    #[prost(string, tag = "5")]
    pub vs_code_port_proxy_uri: String,
    #[prost(string, tag = "6")]
    pub motd_path: String,
    #[prost(bool, tag = "7")]
    pub disable_direct_connections: bool,
    #[prost(bool, tag = "8")]
    pub derp_force_websockets: bool,
    #[prost(message, optional, tag = "9")]
    pub derp_map: Option<DerpMap>,
    #[prost(message, repeated, tag = "10")]
    pub scripts: Vec<WorkspaceAgentScript>,
    #[prost(message, repeated, tag = "11")]
    pub apps: Vec<WorkspaceApp>,
    #[prost(message, repeated, tag = "12")]
    pub metadata: Vec<workspace_agent_metadata::Description>,
    #[prost(string, tag = "13")]
    pub owner_username: String,
    /// 16-byte UUID.
    #[prost(bytes = "vec", tag = "14")]
    pub workspace_id: Vec<u8>,
    #[prost(string, tag = "15")]
    pub agent_name: String,
    #[prost(string, tag = "16")]
    pub workspace_name: String,
    #[prost(message, repeated, tag = "17")]
    pub devcontainers: Vec<WorkspaceAgentDevcontainer>,
    /// 16-byte UUID, set only for a sub-agent (API 2.5).
    #[prost(bytes = "vec", optional, tag = "18")]
    pub parent_id: Option<Vec<u8>>,
    #[prost(message, repeated, tag = "19")]
    pub secrets: Vec<WorkspaceSecret>,
}

/// A script the agent runs; its output is logged under `log_source_id`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WorkspaceAgentScript {
    /// 16-byte UUID.
    #[prost(bytes = "vec", tag = "1")]
    pub log_source_id: Vec<u8>,
    #[prost(string, tag = "2")]
    pub log_path: String,
    #[prost(string, tag = "3")]
    pub script: String,
    #[prost(string, tag = "4")]
    pub cron: String,
    #[prost(bool, tag = "5")]
    pub run_on_start: bool,
    #[prost(bool, tag = "6")]
    pub run_on_stop: bool,
    #[prost(bool, tag = "7")]
    pub start_blocks_login: bool,
    #[prost(message, optional, tag = "8")]
    pub timeout: Option<Duration>,
    #[prost(string, tag = "9")]
    pub display_name: String,
    /// 16-byte UUID.
    #[prost(bytes = "vec", tag = "10")]
    pub id: Vec<u8>,
}

/// An app the agent serves and health-checks.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WorkspaceApp {
    /// 16-byte UUID.
    #[prost(bytes = "vec", tag = "1")]
    pub id: Vec<u8>,
    #[prost(string, tag = "2")]
    pub url: String,
    #[prost(bool, tag = "3")]
    pub external: bool,
    #[prost(string, tag = "4")]
    pub slug: String,
    #[prost(string, tag = "5")]
    pub display_name: String,
    #[prost(string, tag = "6")]
    pub command: String,
    #[prost(string, tag = "7")]
    pub icon: String,
    #[prost(bool, tag = "8")]
    pub subdomain: bool,
    #[prost(string, tag = "9")]
    pub subdomain_name: String,
    #[prost(enumeration = "workspace_app::SharingLevel", tag = "10")]
    pub sharing_level: i32,
    #[prost(message, optional, tag = "11")]
    pub healthcheck: Option<workspace_app::Healthcheck>,
    #[prost(enumeration = "AppHealth", tag = "12")]
    pub health: i32,
    #[prost(bool, tag = "13")]
    pub hidden: bool,
}

/// `WorkspaceApp`'s nested message and enum.
pub mod workspace_app {
    use prost_types::Duration;

    /// How the agent checks an app's health.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Healthcheck {
        /// Type inferred (string).
        #[prost(string, tag = "1")]
        pub url: String,
        #[prost(message, optional, tag = "2")]
        pub interval: Option<Duration>,
        #[prost(int32, tag = "3")]
        pub threshold: i32,
    }

    /// Who may open the app.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum SharingLevel {
        Unspecified = 0,
        Owner = 1,
        Authenticated = 2,
        Public = 3,
        Organization = 4,
    }
}

/// An app's health: `WorkspaceApp.health` and
/// `BatchUpdateAppHealthRequest`'s updates (the design gives both the same
/// values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum AppHealth {
    Unspecified = 0,
    Disabled = 1,
    Initializing = 2,
    Healthy = 3,
    Unhealthy = 4,
}

/// A metadata item: what to collect (`description`) and its last value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WorkspaceAgentMetadata {
    #[prost(message, optional, tag = "1")]
    pub result: Option<workspace_agent_metadata::Result>,
    #[prost(message, optional, tag = "2")]
    pub description: Option<workspace_agent_metadata::Description>,
}

/// `WorkspaceAgentMetadata`'s nested messages.
pub mod workspace_agent_metadata {
    use prost_types::{Duration, Timestamp};

    /// One collected value.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Result {
        #[prost(message, optional, tag = "1")]
        pub collected_at: Option<Timestamp>,
        #[prost(int64, tag = "2")]
        pub age: i64,
        /// Type inferred (string).
        #[prost(string, tag = "3")]
        pub value: String,
        /// Type inferred (string).
        #[prost(string, tag = "4")]
        pub error: String,
    }

    /// What to collect, and how often (the manifest's `metadata`).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Description {
        /// Type inferred (string), as for `key` and `script`.
        #[prost(string, tag = "1")]
        pub display_name: String,
        #[prost(string, tag = "2")]
        pub key: String,
        #[prost(string, tag = "3")]
        pub script: String,
        #[prost(message, optional, tag = "4")]
        pub interval: Option<Duration>,
        #[prost(message, optional, tag = "5")]
        pub timeout: Option<Duration>,
    }
}

/// A devcontainer the agent should bring up.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WorkspaceAgentDevcontainer {
    /// 16-byte UUID.
    #[prost(bytes = "vec", tag = "1")]
    pub id: Vec<u8>,
    /// Type inferred (string), as for `config_path` and `name`.
    #[prost(string, tag = "2")]
    pub workspace_folder: String,
    #[prost(string, tag = "3")]
    pub config_path: String,
    #[prost(string, tag = "4")]
    pub name: String,
    /// 16-byte UUID of the sub-agent, when it has one.
    #[prost(bytes = "vec", optional, tag = "5")]
    pub subagent_id: Option<Vec<u8>>,
}

/// A secret the agent exposes as an environment variable or a file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WorkspaceSecret {
    /// Type inferred (string), as for `file_path`.
    #[prost(string, tag = "1")]
    pub env_name: String,
    #[prost(string, tag = "2")]
    pub file_path: String,
    #[prost(bytes = "vec", tag = "3")]
    pub value: Vec<u8>,
}

/// GetServiceBanner's request: no fields.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetServiceBannerRequest {}

/// GetServiceBanner's response (not called by current agents).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ServiceBanner {
    /// Types inferred: `enabled` bool, `message` and `background_color`
    /// strings.
    #[prost(bool, tag = "1")]
    pub enabled: bool,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(string, tag = "3")]
    pub background_color: String,
}

/// The agent's network statistics for one reporting interval.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Stats {
    #[prost(btree_map = "string, int64", tag = "1")]
    pub connections_by_proto: BTreeMap<String, i64>,
    #[prost(int64, tag = "2")]
    pub connection_count: i64,
    #[prost(double, tag = "3")]
    pub connection_median_latency_ms: f64,
    #[prost(int64, tag = "4")]
    pub rx_packets: i64,
    #[prost(int64, tag = "5")]
    pub rx_bytes: i64,
    #[prost(int64, tag = "6")]
    pub tx_packets: i64,
    #[prost(int64, tag = "7")]
    pub tx_bytes: i64,
    /// Deprecated (fields 8-11, in the design's order: vscode, jetbrains,
    /// reconnecting_pty, ssh); `session_counts` replaces them.
    #[prost(int64, tag = "8")]
    pub session_count_vscode: i64,
    #[prost(int64, tag = "9")]
    pub session_count_jetbrains: i64,
    #[prost(int64, tag = "10")]
    pub session_count_reconnecting_pty: i64,
    #[prost(int64, tag = "11")]
    pub session_count_ssh: i64,
    // Field 12 (metrics) is left out: see the module doc.
    /// Sessions by kind (API 2.11).
    #[prost(btree_map = "string, int64", tag = "13")]
    pub session_counts: BTreeMap<String, i64>,
}

/// UpdateStats' request. The agent's first call carries no stats: it only
/// asks for the interval.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdateStatsRequest {
    #[prost(message, optional, tag = "1")]
    pub stats: Option<Stats>,
}

/// UpdateStats' response: how often to report.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdateStatsResponse {
    #[prost(message, optional, tag = "1")]
    pub report_interval: Option<Duration>,
}

/// The agent's lifecycle state and when it changed (UpdateLifecycle's
/// response echoes it).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Lifecycle {
    #[prost(enumeration = "lifecycle::State", tag = "1")]
    pub state: i32,
    /// Type inferred (Timestamp).
    #[prost(message, optional, tag = "2")]
    pub changed_at: Option<Timestamp>,
}

/// `Lifecycle`'s enum.
pub mod lifecycle {
    /// The agent's lifecycle state.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum State {
        Unspecified = 0,
        Created = 1,
        Starting = 2,
        StartTimeout = 3,
        StartError = 4,
        Ready = 5,
        ShuttingDown = 6,
        ShutdownTimeout = 7,
        ShutdownError = 8,
        Off = 9,
    }
}

/// UpdateLifecycle's request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdateLifecycleRequest {
    #[prost(message, optional, tag = "1")]
    pub lifecycle: Option<Lifecycle>,
}

/// BatchUpdateAppHealths' request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BatchUpdateAppHealthRequest {
    #[prost(message, repeated, tag = "1")]
    pub updates: Vec<batch_update_app_health_request::HealthUpdate>,
}

/// `BatchUpdateAppHealthRequest`'s nested message.
pub mod batch_update_app_health_request {
    /// One app's new health.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HealthUpdate {
        /// 16-byte UUID of the app.
        #[prost(bytes = "vec", tag = "1")]
        pub id: Vec<u8>,
        #[prost(enumeration = "super::AppHealth", tag = "2")]
        pub health: i32,
    }
}

/// BatchUpdateAppHealths' response: no fields.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BatchUpdateAppHealthResponse {}

/// What the agent reports once started (UpdateStartup's response echoes it).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Startup {
    /// Type inferred (string), as for `expanded_directory`.
    #[prost(string, tag = "1")]
    pub version: String,
    #[prost(string, tag = "2")]
    pub expanded_directory: String,
    #[prost(enumeration = "startup::Subsystem", repeated, tag = "3")]
    pub subsystems: Vec<i32>,
}

/// `Startup`'s enum.
pub mod startup {
    /// A subsystem the agent runs under.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum Subsystem {
        Unspecified = 0,
        Envbox = 1,
        Envbuilder = 2,
        Exectrace = 3,
    }
}

/// UpdateStartup's request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdateStartupRequest {
    #[prost(message, optional, tag = "1")]
    pub startup: Option<Startup>,
}

/// BatchUpdateMetadata's request. Its only field is number **2**.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BatchUpdateMetadataRequest {
    #[prost(message, repeated, tag = "2")]
    pub metadata: Vec<batch_update_metadata_request::Metadata>,
}

/// `BatchUpdateMetadataRequest`'s nested message.
pub mod batch_update_metadata_request {
    /// One metadata item's new value.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metadata {
        /// Type inferred (string).
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(message, optional, tag = "2")]
        pub result: Option<super::workspace_agent_metadata::Result>,
    }
}

/// BatchUpdateMetadata's response: no fields.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BatchUpdateMetadataResponse {}

/// One line of a script's or the agent's output.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Log {
    /// Type inferred (Timestamp).
    #[prost(message, optional, tag = "1")]
    pub created_at: Option<Timestamp>,
    /// Type inferred (string).
    #[prost(string, tag = "2")]
    pub output: String,
    #[prost(enumeration = "log::Level", tag = "3")]
    pub level: i32,
}

/// `Log`'s enum.
pub mod log {
    /// A log line's level. The design gives 1 TRACE … 5 ERROR; the three
    /// between follow the usual order.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum Level {
        Unspecified = 0,
        Trace = 1,
        Debug = 2,
        Info = 3,
        Warn = 4,
        Error = 5,
    }
}

/// BatchCreateLogs' request: lines of one log source. An empty
/// `log_source_id` means the "external" source.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BatchCreateLogsRequest {
    /// 16-byte UUID.
    #[prost(bytes = "vec", tag = "1")]
    pub log_source_id: Vec<u8>,
    #[prost(message, repeated, tag = "2")]
    pub logs: Vec<Log>,
}

/// BatchCreateLogs' response; `true` stops the agent's log sending.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BatchCreateLogsResponse {
    #[prost(bool, tag = "1")]
    pub log_limit_exceeded: bool,
}

/// GetAnnouncementBanners' request: no fields.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetAnnouncementBannersRequest {}

/// GetAnnouncementBanners' response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetAnnouncementBannersResponse {
    #[prost(message, repeated, tag = "1")]
    pub announcement_banners: Vec<BannerConfig>,
}

/// One announcement banner: the same three fields as [`ServiceBanner`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct BannerConfig {
    /// Types inferred, as for [`ServiceBanner`].
    #[prost(bool, tag = "1")]
    pub enabled: bool,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(string, tag = "3")]
    pub background_color: String,
}

/// One script run: ScriptCompleted's payload.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Timing {
    /// 16-byte UUID.
    #[prost(bytes = "vec", tag = "1")]
    pub script_id: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    pub start: Option<Timestamp>,
    #[prost(message, optional, tag = "3")]
    pub end: Option<Timestamp>,
    #[prost(int32, tag = "4")]
    pub exit_code: i32,
    #[prost(enumeration = "timing::Stage", tag = "5")]
    pub stage: i32,
    #[prost(enumeration = "timing::Status", tag = "6")]
    pub status: i32,
}

/// `Timing`'s enums. Both have a named zero.
pub mod timing {
    /// When the script ran.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum Stage {
        Start = 0,
        Stop = 1,
        Cron = 2,
    }

    /// How the script ended.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum Status {
        Ok = 0,
        ExitFailure = 1,
        TimedOut = 2,
        PipesLeftOpen = 3,
    }
}

/// ScriptCompleted's request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WorkspaceAgentScriptCompletedRequest {
    #[prost(message, optional, tag = "1")]
    pub timing: Option<Timing>,
}

/// ScriptCompleted's response: no fields.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WorkspaceAgentScriptCompletedResponse {}

/// GetResourcesMonitoringConfiguration's request: no fields.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetResourcesMonitoringConfigurationRequest {}

/// GetResourcesMonitoringConfiguration's response. The interval drives a
/// ticker in the agent, so it must be positive.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetResourcesMonitoringConfigurationResponse {
    #[prost(message, optional, tag = "1")]
    pub config: Option<get_resources_monitoring_configuration_response::Config>,
    #[prost(message, optional, tag = "2")]
    pub memory: Option<get_resources_monitoring_configuration_response::Memory>,
    #[prost(message, repeated, tag = "3")]
    pub volumes: Vec<get_resources_monitoring_configuration_response::Volume>,
}

/// `GetResourcesMonitoringConfigurationResponse`'s nested messages.
pub mod get_resources_monitoring_configuration_response {
    /// How many datapoints to keep and how often to collect one.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Config {
        /// Type inferred (int32), as for `collection_interval_seconds`.
        #[prost(int32, tag = "1")]
        pub num_datapoints: i32,
        #[prost(int32, tag = "2")]
        pub collection_interval_seconds: i32,
    }

    /// Memory monitoring.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Memory {
        /// Type inferred (bool).
        #[prost(bool, tag = "1")]
        pub enabled: bool,
    }

    /// One monitored volume.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Volume {
        /// Types inferred: `enabled` bool, `path` string.
        #[prost(bool, tag = "1")]
        pub enabled: bool,
        #[prost(string, tag = "2")]
        pub path: String,
    }
}

/// PushResourcesMonitoringUsage's response: no fields. (Its request is left
/// out: see the module doc.)
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushResourcesMonitoringUsageResponse {}

/// A connection to or from the agent (SSH, an app, ...).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Connection {
    /// 16-byte UUID.
    #[prost(bytes = "vec", tag = "1")]
    pub id: Vec<u8>,
    #[prost(enumeration = "connection::Action", tag = "2")]
    pub action: i32,
    /// Deprecated.
    #[prost(enumeration = "connection::Type", tag = "3")]
    pub r#type: i32,
    #[prost(message, optional, tag = "4")]
    pub timestamp: Option<Timestamp>,
    #[prost(string, tag = "5")]
    pub ip: String,
    #[prost(int32, tag = "6")]
    pub status_code: i32,
    #[prost(string, optional, tag = "7")]
    pub reason: Option<String>,
    #[prost(string, tag = "8")]
    pub app_name: String,
}

/// `Connection`'s enums.
pub mod connection {
    /// Whether the connection opened or closed.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum Action {
        Unspecified = 0,
        Connect = 1,
        Disconnect = 2,
    }

    /// What kind of connection (deprecated).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum Type {
        Unspecified = 0,
        Ssh = 1,
        Vscode = 2,
        Jetbrains = 3,
        ReconnectingPty = 4,
    }
}

/// ReportConnection's request. Its response is `google.protobuf.Empty`
/// ([`super::Empty`]).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReportConnectionRequest {
    #[prost(message, optional, tag = "1")]
    pub connection: Option<Connection>,
}

/// A sub-agent (a devcontainer's agent), as ListSubAgents lists it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SubAgent {
    /// Type inferred (string).
    #[prost(string, tag = "1")]
    pub name: String,
    /// 16-byte UUID.
    #[prost(bytes = "vec", tag = "2")]
    pub id: Vec<u8>,
    /// Type not given: `bytes`, which accepts whatever the peer sends (the
    /// wire type is the same as a string's).
    #[prost(bytes = "vec", tag = "3")]
    pub auth_token: Vec<u8>,
}

/// ListSubAgents' response. (Its request is left out: see the module doc.)
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListSubAgentsResponse {
    #[prost(message, repeated, tag = "1")]
    pub agents: Vec<SubAgent>,
}

/// ReportBoundaryLogs' response: no fields. (Its request is left out: see the
/// module doc.)
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReportBoundaryLogsResponse {}

/// UpdateAppStatus' request: a process in the workspace reports an app's
/// state through the agent.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdateAppStatusRequest {
    /// Type inferred (string), as for `message` and `uri`.
    #[prost(string, tag = "1")]
    pub slug: String,
    #[prost(enumeration = "update_app_status_request::AppStatusState", tag = "2")]
    pub state: i32,
    #[prost(string, tag = "3")]
    pub message: String,
    #[prost(string, tag = "4")]
    pub uri: String,
}

/// `UpdateAppStatusRequest`'s enum.
pub mod update_app_status_request {
    /// An app's reported state. Zero is `Working`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum AppStatusState {
        Working = 0,
        Idle = 1,
        Complete = 2,
        Failure = 3,
    }
}

/// UpdateAppStatus' response: no fields.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdateAppStatusResponse {}

/// PushContextState's response. (Its request is left out: see the module
/// doc; the server answers Unimplemented.)
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushContextStateResponse {
    /// Type inferred (bool).
    #[prost(bool, tag = "1")]
    pub accepted: bool,
}

/// CreateSubAgent's request (field numbers from Coder's `agent.proto` at
/// v2.35.1, checked by the Go harness). Of the apps only the slug is read:
/// appliance's sub-agents have no apps, and each app is answered with an
/// [`AppCreationError`](create_sub_agent_response::AppCreationError);
/// `display_apps` is not read.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateSubAgentRequest {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub directory: String,
    #[prost(string, tag = "3")]
    pub architecture: String,
    #[prost(string, tag = "4")]
    pub operating_system: String,
    #[prost(message, repeated, tag = "5")]
    pub apps: Vec<create_sub_agent_request::App>,
    /// A pre-created id (2.8+), 16 bytes.
    #[prost(bytes = "vec", optional, tag = "7")]
    pub id: Option<Vec<u8>>,
}

pub mod create_sub_agent_request {
    /// An app of the sub-agent: only its slug is read.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct App {
        #[prost(string, tag = "1")]
        pub slug: String,
    }
}

/// CreateSubAgent's response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateSubAgentResponse {
    #[prost(message, optional, tag = "1")]
    pub agent: Option<SubAgent>,
    #[prost(message, repeated, tag = "2")]
    pub app_creation_errors: Vec<create_sub_agent_response::AppCreationError>,
}

pub mod create_sub_agent_response {
    /// Why the app at `index` of the request was not created.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AppCreationError {
        #[prost(int32, tag = "1")]
        pub index: i32,
        #[prost(string, optional, tag = "2")]
        pub field: Option<String>,
        #[prost(string, tag = "3")]
        pub error: String,
    }
}

/// DeleteSubAgent's request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeleteSubAgentRequest {
    /// 16-byte UUID of the sub-agent.
    #[prost(bytes = "vec", tag = "1")]
    pub id: Vec<u8>,
}
