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
//! - `tailnet_service`: `coder.tailnet.v2.Tailnet` for every kind of peer
//!   (agents here, clients through `client`): the DERP map stream, the
//!   coordinator stream, resume tokens, telemetry, workspace updates.
//! - `client`: a client's session on `/coordinate` and `/tailnet`.

pub mod agent;
pub mod client;
pub mod tailnet_service;

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
    /// The agent's logs overflowed (as read at connect, or as a batch of this
    /// session found): BatchCreateLogs answers `log_limit_exceeded` at once.
    pub logs_overflowed: Arc<std::sync::atomic::AtomicBool>,
}

impl Session {
    /// A session of `agent` at `version`.
    pub fn new(app: App, agent: AgentRow, version: Version) -> Session {
        let overflowed = agent.logs_overflowed;
        Session {
            app,
            agent: Arc::new(agent),
            version,
            logs_overflowed: Arc::new(overflowed.into()),
        }
    }
}

/// An agent is a tailnet peer under its own id, and may not open tunnels.
impl tailnet_service::TailnetPeer for Session {
    fn app(&self) -> &App {
        &self.app
    }
    fn version(&self) -> Version {
        self.version
    }
    fn peer_id(&self) -> uuid::Uuid {
        self.agent.id
    }
    fn coordinate_auth(&self) -> crate::tailnet::coordinator::Auth {
        crate::tailnet::coordinator::Auth::Agent(self.agent.id)
    }
    fn user(&self) -> Option<(uuid::Uuid, crate::auth::Role)> {
        None
    }
}

/// Both services' methods.
pub fn router() -> Router<Session> {
    tailnet_service::register(agent::register(Router::new()))
}
