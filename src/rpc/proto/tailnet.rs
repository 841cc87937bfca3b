//! `coder.tailnet.v2`: the messages of the Tailnet service (CONNECTIVITY.md
//! §1.7, the DERP map's field numbers from §1.8). Nested messages live in a
//! module named after their parent, as prost-build would place them
//! (`derp_map::Region`, `derp_map::region::Node`).
//!
//! `CoordinateRequest`'s wrappers (`UpdateSelf`, `Tunnel`,
//! `ReadyForHandshake`) each hold one field whose number the design does not
//! state; it is taken to be 1, the only number a one-field message
//! conventionally uses.
//!
//! Left out, because the design gives no field numbers for them:
//! - PostTelemetry's request (`events`);
//!
//! No oneof: the design describes none, and `CoordinateRequest`'s fields are
//! separate optional fields (one of them repeated).

use std::collections::BTreeMap;

use prost_types::Timestamp;

/// StreamDERPMaps' request: no fields.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamDerpMapsRequest {}

/// The DERP relays a peer may use, by region id (Tailscale's `tailcfg.DERPMap`).
/// StreamDERPMaps sends one whenever it changes; the manifest carries one too.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DerpMap {
    #[prost(message, optional, tag = "1")]
    pub home_params: Option<derp_map::HomeParams>,
    #[prost(btree_map = "int64, message", tag = "2")]
    pub regions: BTreeMap<i64, derp_map::Region>,
}

/// `DerpMap`'s nested messages.
pub mod derp_map {
    use std::collections::BTreeMap;

    /// Weights for choosing a home region.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HomeParams {
        #[prost(btree_map = "int64, double", tag = "1")]
        pub region_score: BTreeMap<i64, f64>,
    }

    /// One DERP region and its nodes.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Region {
        /// Type inferred: int64, as the `regions` map's key (`embedded_relay`
        /// and `avoid` bools, `region_code` and `region_name` strings, also
        /// inferred).
        #[prost(int64, tag = "1")]
        pub region_id: i64,
        #[prost(bool, tag = "2")]
        pub embedded_relay: bool,
        #[prost(string, tag = "3")]
        pub region_code: String,
        #[prost(string, tag = "4")]
        pub region_name: String,
        #[prost(bool, tag = "5")]
        pub avoid: bool,
        #[prost(message, repeated, tag = "6")]
        pub nodes: Vec<region::Node>,
    }

    /// `Region`'s nested message.
    pub mod region {
        /// One DERP (and STUN) server. Types other than the ports' are
        /// inferred: `region_id` int64 as in `Region`, names and addresses
        /// strings, flags bools.
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Node {
            #[prost(string, tag = "1")]
            pub name: String,
            #[prost(int64, tag = "2")]
            pub region_id: i64,
            #[prost(string, tag = "3")]
            pub host_name: String,
            #[prost(string, tag = "4")]
            pub cert_name: String,
            #[prost(string, tag = "5")]
            pub ipv4: String,
            #[prost(string, tag = "6")]
            pub ipv6: String,
            #[prost(int32, tag = "7")]
            pub stun_port: i32,
            #[prost(bool, tag = "8")]
            pub stun_only: bool,
            #[prost(int32, tag = "9")]
            pub derp_port: i32,
            #[prost(bool, tag = "10")]
            pub insecure_for_tests: bool,
            #[prost(bool, tag = "11")]
            pub force_http: bool,
            #[prost(string, tag = "12")]
            pub stun_test_ip: String,
            #[prost(bool, tag = "13")]
            pub can_port_80: bool,
        }
    }
}

/// A peer's tailnet node: its keys, DERP home and addresses (§1.7's table).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Node {
    #[prost(int64, tag = "1")]
    pub id: i64,
    #[prost(message, optional, tag = "2")]
    pub as_of: Option<Timestamp>,
    #[prost(bytes = "vec", tag = "3")]
    pub key: Vec<u8>,
    #[prost(string, tag = "4")]
    pub disco: String,
    #[prost(int32, tag = "5")]
    pub preferred_derp: i32,
    #[prost(btree_map = "string, double", tag = "6")]
    pub derp_latency: BTreeMap<String, f64>,
    #[prost(btree_map = "int32, string", tag = "7")]
    pub derp_forced_websocket: BTreeMap<i32, String>,
    #[prost(string, repeated, tag = "8")]
    pub addresses: Vec<String>,
    #[prost(string, repeated, tag = "9")]
    pub allowed_ips: Vec<String>,
    #[prost(string, repeated, tag = "10")]
    pub endpoints: Vec<String>,
}

/// What a peer sends the coordinator on Coordinate (a bidirectional stream).
/// There is no subscribe message: `add_tunnel` and `remove_tunnel` are the
/// closest.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CoordinateRequest {
    /// Publish my node.
    #[prost(message, optional, tag = "1")]
    pub update_self: Option<coordinate_request::UpdateSelf>,
    /// Graceful leave.
    #[prost(message, optional, tag = "2")]
    pub disconnect: Option<coordinate_request::Disconnect>,
    /// Agents may not send it (`AgentCoordinateeAuth`).
    #[prost(message, optional, tag = "3")]
    pub add_tunnel: Option<coordinate_request::Tunnel>,
    #[prost(message, optional, tag = "4")]
    pub remove_tunnel: Option<coordinate_request::Tunnel>,
    /// Sent from a destination back to a source.
    #[prost(message, repeated, tag = "5")]
    pub ready_for_handshake: Vec<coordinate_request::ReadyForHandshake>,
}

/// `CoordinateRequest`'s nested messages; each field number is inferred (1).
pub mod coordinate_request {
    /// `update_self`: my node.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct UpdateSelf {
        #[prost(message, optional, tag = "1")]
        pub node: Option<super::Node>,
    }

    /// `disconnect`: no fields.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Disconnect {}

    /// `add_tunnel` and `remove_tunnel`: the other peer.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Tunnel {
        /// 16-byte UUID of the peer.
        #[prost(bytes = "vec", tag = "1")]
        pub id: Vec<u8>,
    }

    /// `ready_for_handshake`: the source peer.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ReadyForHandshake {
        /// 16-byte UUID of the peer.
        #[prost(bytes = "vec", tag = "1")]
        pub id: Vec<u8>,
    }
}

/// What the coordinator sends a peer on Coordinate: peer updates, or an
/// error (a peer overwritten by a newer connection, a refused request). An
/// error that starts with `ready for handshake error` is only a warning to
/// an agent.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CoordinateResponse {
    #[prost(message, repeated, tag = "1")]
    pub peer_updates: Vec<coordinate_response::PeerUpdate>,
    #[prost(string, tag = "2")]
    pub error: String,
}

/// `CoordinateResponse`'s nested message (field numbers checked against
/// Coder's `tailnet.proto` by the Go harness).
pub mod coordinate_response {
    /// Another peer's node, or why it went away.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PeerUpdate {
        /// 16-byte UUID of the peer.
        #[prost(bytes = "vec", tag = "1")]
        pub id: Vec<u8>,
        #[prost(message, optional, tag = "2")]
        pub node: Option<super::Node>,
        /// A [`super::PeerUpdateKind`].
        #[prost(enumeration = "super::PeerUpdateKind", tag = "3")]
        pub kind: i32,
        #[prost(string, tag = "4")]
        pub reason: String,
    }
}

/// A peer update's kind (§1.7), for when `PeerUpdate` is added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum PeerUpdateKind {
    Unspecified = 0,
    /// The peer's node, new or changed.
    Node = 1,
    /// Graceful, tunnel removed, or a failed update.
    Disconnected = 2,
    /// The peer's stream broke.
    Lost = 3,
    ReadyForHandshake = 4,
}

/// PostTelemetry's response: no fields. (Its request is left out: see the
/// module doc.)
#[derive(Clone, PartialEq, prost::Message)]
pub struct PostTelemetryResponse {}

/// RefreshResumeToken's request: no fields.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RefreshResumeTokenRequest {}

/// RefreshResumeToken's response: an opaque token to send back as
/// `resume_token`, when to refresh it, and when it expires.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RefreshResumeTokenResponse {
    #[prost(string, tag = "1")]
    pub token: String,
    #[prost(message, optional, tag = "2")]
    pub refresh_in: Option<prost_types::Duration>,
    #[prost(message, optional, tag = "3")]
    pub expires_at: Option<Timestamp>,
}

/// WorkspaceUpdates' request (`/tailnet`): whose workspaces.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WorkspaceUpdatesRequest {
    /// 16-byte UUID.
    #[prost(bytes = "vec", tag = "1")]
    pub workspace_owner_id: Vec<u8>,
}

/// One WorkspaceUpdates message: what changed since the previous one (the
/// first holds everything).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WorkspaceUpdate {
    #[prost(message, repeated, tag = "1")]
    pub upserted_workspaces: Vec<Workspace>,
    #[prost(message, repeated, tag = "2")]
    pub upserted_agents: Vec<Agent>,
    #[prost(message, repeated, tag = "3")]
    pub deleted_workspaces: Vec<Workspace>,
    #[prost(message, repeated, tag = "4")]
    pub deleted_agents: Vec<Agent>,
}

/// A workspace in a [`WorkspaceUpdate`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct Workspace {
    #[prost(bytes = "vec", tag = "1")]
    pub id: Vec<u8>,
    #[prost(string, tag = "2")]
    pub name: String,
    /// A [`WorkspaceStatus`].
    #[prost(enumeration = "WorkspaceStatus", tag = "3")]
    pub status: i32,
}

/// `Workspace.Status`: the workspace's state as its latest build leaves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum WorkspaceStatus {
    Unknown = 0,
    Pending = 1,
    Starting = 2,
    Running = 3,
    Stopping = 4,
    Stopped = 5,
    Failed = 6,
    Canceling = 7,
    Canceled = 8,
    Deleting = 9,
    Deleted = 10,
}

/// An agent in a [`WorkspaceUpdate`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct Agent {
    #[prost(bytes = "vec", tag = "1")]
    pub id: Vec<u8>,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(bytes = "vec", tag = "3")]
    pub workspace_id: Vec<u8>,
}
