//! What a connected agent's RPCs do: the server side of the two DRPC
//! services an agent calls over `GET /api/v2/workspaceagents/me/rpc`
//! (CONNECTIVITY.md §1.4–§1.7), on the store, the log writer and the rest of
//! [`App`]. The transport (WebSocket, yamux, one DRPC connection per stream)
//! is `routes::rpc`'s; the codec is `rpc::drpc`'s; this module knows neither
//! HTTP nor bytes on the wire, only decoded requests and the agent they come
//! from.
//!
//! - `agent`: `coder.agent.v2.Agent` (manifest, startup, lifecycle, logs,
//!   metadata, app health, stats, banners, scripts, app status, sub-agents,
//!   connection reports).
//! - `tailnet`: `coder.tailnet.v2.Tailnet` as an agent uses it (its node
//!   updates kept for the coordinator, the DERP map stream, resume tokens,
//!   telemetry).

pub mod agent;
pub mod tailnet;

use std::sync::Arc;

use crate::app::App;
use crate::rpc::drpc::Router;
use crate::rpc::proto::methods::Version;
use crate::store::agents::AgentRow;

/// One agent's `/me/rpc` connection, as every method sees it (cloned per call).
#[derive(Clone)]
pub struct Session {
    pub app: App,
    /// The agent the token belongs to, as it was read when the connection
    /// was accepted (id, workspace, owner; its other columns may be stale).
    pub agent: Arc<AgentRow>,
    /// The `version` query parameter (2.0 when missing).
    pub version: Version,
}

/// Both services' methods.
pub fn router() -> Router<Session> {
    tailnet::register(agent::register(Router::new()))
}
