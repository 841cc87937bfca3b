//! A client's Tailnet session (`/workspaceagents/{id}/coordinate` for one
//! agent, `/tailnet` for a user's agents): who it is, for the shared Tailnet
//! service (`tailnet_service`).

use uuid::Uuid;

use super::tailnet_service::{self, TailnetPeer};
use crate::app::App;
use crate::auth::Role;
use crate::rpc::drpc::Router;
use crate::rpc::proto::methods::Version;
use crate::tailnet::coordinator::Auth;

/// One client connection.
#[derive(Clone)]
pub struct ClientSession {
    pub app: App,
    pub version: Version,
    /// Random, or the one a valid resume token names.
    pub peer_id: Uuid,
    /// `Client { agent }` on `/coordinate`, `User(..)` on `/tailnet`.
    pub auth: Auth,
    /// The signed-in user (WorkspaceUpdates is answered on `/tailnet` only).
    pub user: Option<(Uuid, Role)>,
}

impl TailnetPeer for ClientSession {
    fn app(&self) -> &App {
        &self.app
    }
    fn version(&self) -> Version {
        self.version
    }
    fn peer_id(&self) -> Uuid {
        self.peer_id
    }
    fn coordinate_auth(&self) -> Auth {
        self.auth.clone()
    }
    fn user(&self) -> Option<(Uuid, Role)> {
        self.user
    }
}

/// The Tailnet service for clients.
pub fn router() -> Router<ClientSession> {
    tailnet_service::register(Router::new())
}
