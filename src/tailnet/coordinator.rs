//! The tailnet coordinator, in memory, for one node (CONNECTIVITY.md §1.7;
//! the semantics of coderd's `tailnet.core`): peers by UUID with their latest
//! node, tunnels by (source, destination), and the updates each peer is owed.
//!
//! A peer joins with [`Coordinator::join`] and gets a [`Peer`] handle and a
//! bounded receiver of [`CoordinateResponse`]s. Its requests go through
//! [`Peer::handle`], authorised by the peer's [`Auth`]:
//! - `update_self` stores its node and sends it to every tunnel peer;
//! - `add_tunnel` sends each side the other's node, if known;
//! - `remove_tunnel` sends DISCONNECTED both ways;
//! - `ready_for_handshake` (from a destination) reaches the source as a
//!   READY_FOR_HANDSHAKE update, or answers a `ready for handshake error`
//!   warning when the two share no tunnel;
//! - `disconnect` leaves gracefully: tunnel peers get DISCONNECTED.
//!
//! Dropping the handle without `disconnect` (the stream broke) sends LOST to
//! the tunnel peers. A second join with the same id overwrites the first,
//! which gets the error `peer ID overwritten by new connection` and its
//! receiver ends. A peer that does not take its updates (512 queued) is
//! removed as DISCONNECTED ("failed update"), never waited for: the lock is
//! never held across an await. Each peer remembers the node it last sent to
//! every other peer, so unchanged nodes are not sent again, and a LOST or
//! DISCONNECTED is only sent about a peer it was told of.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;
use uuid::Uuid;

use crate::rpc::proto::tailnet::coordinate_response::PeerUpdate;
use crate::rpc::proto::tailnet::{CoordinateRequest, CoordinateResponse, Node, PeerUpdateKind};

/// Updates queued for a peer before it counts as too slow (coderd: 512).
pub const RESPONSE_BUFFER: usize = 512;

/// The error a peer receives when a newer connection takes its id.
pub const CLOSE_ERR_OVERWRITTEN: &str = "peer ID overwritten by new connection";

/// The prefix of a `ready_for_handshake` refusal (a warning to agents).
pub const READY_FOR_HANDSHAKE_ERROR: &str = "ready for handshake error";

/// Tailscale's and Coder's service prefixes: an agent's tailnet address is
/// its UUID with the first 6 bytes replaced by one of them.
const TAILSCALE_PREFIX: [u8; 6] = [0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0];
const CODER_PREFIX: [u8; 6] = [0xfd, 0x60, 0x62, 0x7a, 0xa4, 0x2b];
/// The single address every agent used before per-agent addresses.
const LEGACY_AGENT_IP: std::net::Ipv6Addr = std::net::Ipv6Addr::new(
    0xfd7a, 0x115c, 0xa1e0, 0x49d6, 0xb259, 0xb7ac, 0xb1b2, 0x48f4,
);

/// The agent's address under a service prefix.
pub fn agent_address(prefix: &[u8; 6], id: Uuid) -> std::net::Ipv6Addr {
    let mut bytes = *id.as_bytes();
    bytes[..6].copy_from_slice(prefix);
    std::net::Ipv6Addr::from(bytes)
}

/// The agent's address under Tailscale's service prefix: the one coderd
/// (and appliance's peer) dials.
pub fn agent_tailscale_address(id: Uuid) -> std::net::Ipv6Addr {
    agent_address(&TAILSCALE_PREFIX, id)
}

/// A random address under Tailscale's service prefix (coderd's
/// `TailscaleServicePrefix.RandomPrefix()` for its own node).
pub fn random_tailscale_address() -> std::net::Ipv6Addr {
    agent_address(&TAILSCALE_PREFIX, Uuid::new_v4())
}

/// Decides whether one peer may open a tunnel to an agent (`/tailnet`: the
/// agent's workspace is one the user may `ssh` into). Called without the
/// coordinator's lock held.
pub type TunnelAuthorizer = Arc<dyn Fn(Uuid) -> bool + Send + Sync>;

/// What a peer may ask (coderd's `CoordinateeAuth` implementations).
#[derive(Clone)]
pub enum Auth {
    /// An agent over `/me/rpc` (`AgentCoordinateeAuth`): no tunnels; its node's
    /// addresses and allowed IPs are its own /128s.
    Agent(Uuid),
    /// A client of one agent over `/{id}/coordinate` (`ClientCoordinateeAuth`):
    /// tunnels to that agent only.
    Client { agent: Uuid },
    /// A user's client over `/tailnet` (`ClientUserCoordinateeAuth`): tunnels
    /// to agents the authorizer allows.
    User(TunnelAuthorizer),
    /// appliance's own tailnet peer (`peer::AgentDialer`, coderd's
    /// `ServerTailnet`): tunnels to any agent, a client's rules otherwise.
    Server,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Agent(id) => write!(f, "Agent({id})"),
            Auth::Client { agent } => write!(f, "Client {{ agent: {agent} }}"),
            Auth::User(_) => write!(f, "User"),
            Auth::Server => write!(f, "Server"),
        }
    }
}

fn uuid_of(bytes: &[u8], what: &str) -> Result<Uuid, String> {
    Uuid::from_slice(bytes).map_err(|_| {
        format!(
            "unable to convert bytes to UUID: {what} is {} bytes",
            bytes.len()
        )
    })
}

/// A `/128` prefix, as Go's `netip.ParsePrefix` reads it, and its address.
fn parse_prefix_128(s: &str) -> Result<std::net::IpAddr, String> {
    let (addr, bits) = s
        .split_once('/')
        .ok_or_else(|| format!("parse node address: netip.ParsePrefix({s:?}): no '/'"))?;
    let addr: std::net::IpAddr = addr
        .parse()
        .map_err(|_| format!("parse node address: netip.ParsePrefix({s:?}): bad address"))?;
    let bits: u32 = bits
        .parse()
        .map_err(|_| format!("parse node address: netip.ParsePrefix({s:?}): bad bits"))?;
    if bits != 128 || !addr.is_ipv6() {
        return Err(format!("invalid address bits, expected 128, got {bits}"));
    }
    Ok(addr)
}

impl Auth {
    /// coderd's `Authorize` for one request (the error becomes
    /// `authorization: <it>`).
    fn authorize(&self, req: &CoordinateRequest) -> Result<(), String> {
        match self {
            Auth::Agent(id) => {
                if req.add_tunnel.is_some() {
                    return Err("agents cannot open tunnels".to_owned());
                }
                if let Some(node) = req.update_self.as_ref().and_then(|u| u.node.as_ref()) {
                    let own = |list: &[String], what: &str| -> Result<(), String> {
                        for p in list {
                            let addr = parse_prefix_128(p).map_err(|e| format!("{what}: {e}"))?;
                            let ok = addr == agent_address(&TAILSCALE_PREFIX, *id)
                                || addr == agent_address(&CODER_PREFIX, *id)
                                || addr == LEGACY_AGENT_IP;
                            if !ok {
                                return Err(format!("{what}: invalid node address, got {addr}"));
                            }
                        }
                        Ok(())
                    };
                    own(&node.addresses, "Addresses")?;
                    own(&node.allowed_ips, "AllowedIps")?;
                }
                Ok(())
            }
            Auth::Client { agent } => {
                if let Some(t) = &req.add_tunnel {
                    let dst = uuid_of(&t.id, "add tunnel id")?;
                    if dst != *agent {
                        return Err(format!("invalid agent id, expected {agent}, got {dst}"));
                    }
                }
                client_node_requests(req)
            }
            Auth::User(allowed) => {
                if let Some(t) = &req.add_tunnel {
                    let dst = uuid_of(&t.id, "add tunnel id")?;
                    if !allowed(dst) {
                        return Err(
                            "workspace agent not found or you do not have permission".to_owned()
                        );
                    }
                }
                client_node_requests(req)
            }
            Auth::Server => client_node_requests(req),
        }
    }
}

/// What every client must keep to: /128 addresses, no ready_for_handshake.
fn client_node_requests(req: &CoordinateRequest) -> Result<(), String> {
    if let Some(node) = req.update_self.as_ref().and_then(|u| u.node.as_ref()) {
        for a in &node.addresses {
            parse_prefix_128(a)?;
        }
    }
    if !req.ready_for_handshake.is_empty() {
        return Err("clients may not send ready_for_handshake".to_owned());
    }
    Ok(())
}

struct PeerState {
    /// Which connection holds the id (a newer join replaces it).
    conn: u64,
    node: Option<Node>,
    tx: mpsc::Sender<CoordinateResponse>,
    /// The node last sent to this peer about each other peer.
    sent: HashMap<Uuid, Node>,
}

#[derive(Default)]
struct Core {
    peers: HashMap<Uuid, PeerState>,
    by_src: HashMap<Uuid, HashSet<Uuid>>,
    by_dst: HashMap<Uuid, HashSet<Uuid>>,
    next_conn: u64,
}

/// A failed update: the peer's queue is full.
struct WouldBlock;

impl Core {
    fn tunnel_peers(&self, id: Uuid) -> Vec<Uuid> {
        let mut set: HashSet<Uuid> = HashSet::new();
        if let Some(d) = self.by_src.get(&id) {
            set.extend(d);
        }
        if let Some(s) = self.by_dst.get(&id) {
            set.extend(s);
        }
        set.into_iter().collect()
    }

    fn tunnel_exists(&self, a: Uuid, b: Uuid) -> bool {
        self.by_src.get(&a).is_some_and(|d| d.contains(&b))
            || self.by_src.get(&b).is_some_and(|d| d.contains(&a))
    }

    fn add_tunnel_pair(&mut self, src: Uuid, dst: Uuid) {
        self.by_src.entry(src).or_default().insert(dst);
        self.by_dst.entry(dst).or_default().insert(src);
    }

    fn remove_tunnel_pair(&mut self, src: Uuid, dst: Uuid) {
        if let Some(d) = self.by_src.get_mut(&src) {
            d.remove(&dst);
            if d.is_empty() {
                self.by_src.remove(&src);
            }
        }
        if let Some(s) = self.by_dst.get_mut(&dst) {
            s.remove(&src);
            if s.is_empty() {
                self.by_dst.remove(&dst);
            }
        }
    }

    /// Queues one update about `about` for `to`, remembering what was sent;
    /// nothing when there is nothing new to say.
    fn update_mapping(
        &mut self,
        to: Uuid,
        about: Uuid,
        node: Option<&Node>,
        kind: PeerUpdateKind,
        reason: &str,
    ) -> Result<(), WouldBlock> {
        let Some(p) = self.peers.get_mut(&to) else {
            return Ok(());
        };
        let known = p.sent.contains_key(&about);
        match (known, kind, node) {
            (false, PeerUpdateKind::Lost | PeerUpdateKind::Disconnected, _) => return Ok(()),
            (true, PeerUpdateKind::Lost | PeerUpdateKind::Disconnected, _) => {
                p.sent.remove(&about);
            }
            (_, PeerUpdateKind::Node, Some(n)) => {
                if p.sent.get(&about) == Some(n) {
                    return Ok(());
                }
                p.sent.insert(about, n.clone());
            }
            _ => {}
        }
        let update = PeerUpdate {
            id: about.as_bytes().to_vec(),
            node: node.cloned(),
            kind: kind as i32,
            reason: reason.to_owned(),
        };
        p.tx.try_send(CoordinateResponse {
            peer_updates: vec![update],
            error: String::new(),
        })
        .map_err(|_| WouldBlock)
    }

    /// Sends `node` (or its absence, with `kind`) to every tunnel peer of `id`;
    /// a peer whose queue is full is removed.
    fn update_tunnel_peers(
        &mut self,
        id: Uuid,
        node: Option<&Node>,
        kind: PeerUpdateKind,
        reason: &str,
    ) {
        for other in self.tunnel_peers(id) {
            if self.update_mapping(other, id, node, kind, reason).is_err() {
                self.remove_peer(other, PeerUpdateKind::Disconnected, "failed update", "");
            }
        }
    }

    fn remove_peer(&mut self, id: Uuid, kind: PeerUpdateKind, reason: &str, close_err: &str) {
        if !self.peers.contains_key(&id) {
            return;
        }
        self.update_tunnel_peers(id, None, kind, reason);
        for dst in self.by_src.get(&id).cloned().unwrap_or_default() {
            self.remove_tunnel_pair(id, dst);
        }
        if let Some(p) = self.peers.remove(&id)
            && !close_err.is_empty()
        {
            let _ = p.tx.try_send(CoordinateResponse {
                peer_updates: Vec::new(),
                error: close_err.to_owned(),
            });
        }
        // Dropping the sender ends the peer's receiver.
    }
}

/// The coordinator: cheap to clone, shared by every Coordinate stream.
#[derive(Clone, Default)]
pub struct Coordinator {
    core: Arc<Mutex<Core>>,
}

/// A joined peer. Dropping it without [`Peer::disconnect`] is a lost peer.
pub struct Peer {
    id: Uuid,
    conn: u64,
    auth: Auth,
    core: Arc<Mutex<Core>>,
}

impl Coordinator {
    fn lock(&self) -> MutexGuard<'_, Core> {
        lock(&self.core)
    }

    /// Joins peer `id`: overwrites an earlier connection with the same id,
    /// and sends the new peer the nodes of its tunnel peers (tunnels outlive
    /// a reconnecting source's connection only while it is replaced).
    pub fn join(&self, id: Uuid, auth: Auth) -> (Peer, mpsc::Receiver<CoordinateResponse>) {
        let (tx, rx) = mpsc::channel(RESPONSE_BUFFER);
        let mut core = self.lock();
        core.next_conn += 1;
        let conn = core.next_conn;
        if let Some(old) = core.peers.remove(&id) {
            let _ = old.tx.try_send(CoordinateResponse {
                peer_updates: Vec::new(),
                error: CLOSE_ERR_OVERWRITTEN.to_owned(),
            });
        }
        core.peers.insert(
            id,
            PeerState {
                conn,
                node: None,
                tx,
                sent: HashMap::new(),
            },
        );
        let others: Vec<(Uuid, Node)> = core
            .tunnel_peers(id)
            .into_iter()
            .filter_map(|o| Some((o, core.peers.get(&o)?.node.clone()?)))
            .collect();
        let mut failed = false;
        for (other, node) in others {
            if core
                .update_mapping(id, other, Some(&node), PeerUpdateKind::Node, "init")
                .is_err()
            {
                failed = true;
            }
        }
        if failed {
            core.remove_peer(id, PeerUpdateKind::Disconnected, "failed update", "");
        }
        drop(core);
        (
            Peer {
                id,
                conn,
                auth,
                core: self.core.clone(),
            },
            rx,
        )
    }

    /// The node a peer last published, if it is connected.
    #[cfg(test)]
    pub fn node(&self, id: Uuid) -> Option<Node> {
        self.lock().peers.get(&id)?.node.clone()
    }

    /// How many peers are connected.
    pub fn peer_count(&self) -> usize {
        self.lock().peers.len()
    }
}

fn lock(core: &Mutex<Core>) -> MutexGuard<'_, Core> {
    // Every update leaves the maps consistent; a panic elsewhere cannot tear them.
    core.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why a request ended the peer's stream: sent to it as the response's
/// `error`, then the stream ends (coderd closes the peer with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl Peer {
    /// One request, as coderd's `core.handleRequest` handles it. An error
    /// ends the peer (the caller drops it: its tunnel peers see it LOST) and
    /// is the text to send it.
    pub fn handle(&self, req: &CoordinateRequest) -> Result<(), Refused> {
        // The authorizer may read the database: never under the lock.
        self.auth
            .authorize(req)
            .map_err(|e| Refused(format!("authorization: {e}")))?;
        let mut core = lock(&self.core);
        if core.peers.get(&self.id).map(|p| p.conn) != Some(self.conn) {
            // Overwritten or removed: nothing to do, the stream is ending.
            return Ok(());
        }
        if let Some(update) = &req.update_self {
            let node = update.node.clone().unwrap_or_default();
            if let Some(p) = core.peers.get_mut(&self.id) {
                p.node = Some(node.clone());
            }
            core.update_tunnel_peers(self.id, Some(&node), PeerUpdateKind::Node, "node update");
        }
        if let Some(t) = &req.add_tunnel {
            let dst = uuid_of(&t.id, "add tunnel id").map_err(Refused)?;
            core.add_tunnel_pair(self.id, dst);
            let dst_node = core.peers.get(&dst).and_then(|p| p.node.clone());
            let src_node = core.peers.get(&self.id).and_then(|p| p.node.clone());
            if let Some(n) = dst_node
                && core
                    .update_mapping(self.id, dst, Some(&n), PeerUpdateKind::Node, "add tunnel")
                    .is_err()
            {
                core.remove_peer(self.id, PeerUpdateKind::Disconnected, "failed update", "");
                return Ok(());
            }
            if core.peers.contains_key(&dst)
                && let Some(n) = src_node
                && core
                    .update_mapping(dst, self.id, Some(&n), PeerUpdateKind::Node, "add tunnel")
                    .is_err()
            {
                core.remove_peer(dst, PeerUpdateKind::Disconnected, "failed update", "");
            }
        }
        if let Some(t) = &req.remove_tunnel {
            let dst = uuid_of(&t.id, "remove tunnel id").map_err(Refused)?;
            if core
                .update_mapping(
                    self.id,
                    dst,
                    None,
                    PeerUpdateKind::Disconnected,
                    "remove tunnel",
                )
                .is_err()
            {
                core.remove_peer(self.id, PeerUpdateKind::Disconnected, "failed update", "");
                return Ok(());
            }
            if core
                .update_mapping(
                    dst,
                    self.id,
                    None,
                    PeerUpdateKind::Disconnected,
                    "remove tunnel",
                )
                .is_err()
            {
                core.remove_peer(dst, PeerUpdateKind::Disconnected, "failed update", "");
            }
            core.remove_tunnel_pair(self.id, dst);
        }
        if req.disconnect.is_some() {
            core.remove_peer(
                self.id,
                PeerUpdateKind::Disconnected,
                "graceful disconnect",
                "",
            );
            return Ok(());
        }
        for rfh in &req.ready_for_handshake {
            let dst = uuid_of(&rfh.id, "ready for handshake id").map_err(Refused)?;
            if !core.tunnel_exists(self.id, dst) {
                let warned = core.peers.get(&self.id).map(|p| {
                    p.tx.try_send(CoordinateResponse {
                        peer_updates: Vec::new(),
                        error: format!(
                            "{READY_FOR_HANDSHAKE_ERROR}: you do not share a tunnel with \"{dst}\""
                        ),
                    })
                });
                if matches!(warned, Some(Err(_))) {
                    return Err(Refused("handle ack: would block".to_owned()));
                }
                continue;
            }
            if let Some(p) = core.peers.get(&dst) {
                let sent = p.tx.try_send(CoordinateResponse {
                    peer_updates: vec![PeerUpdate {
                        id: self.id.as_bytes().to_vec(),
                        node: None,
                        kind: PeerUpdateKind::ReadyForHandshake as i32,
                        reason: String::new(),
                    }],
                    error: String::new(),
                });
                if sent.is_err() {
                    return Err(Refused("handle ack: would block".to_owned()));
                }
            }
        }
        Ok(())
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let mut core = lock(&self.core);
        if core.peers.get(&self.id).map(|p| p.conn) == Some(self.conn) {
            core.remove_peer(self.id, PeerUpdateKind::Lost, "lost", "");
        }
    }
}

#[cfg(test)]
mod tests;
