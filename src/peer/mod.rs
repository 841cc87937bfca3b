//! appliance as a tailnet peer (INTEROP.md §4): how the server reaches an
//! agent's own services — port 4, the agent's HTTP API (listening ports,
//! containers); port 2, the reconnecting PTY (the web terminal) — the way
//! coderd's `ServerTailnet` does, so a real `coder agent` needs nothing
//! from us but what it already does for `coder ssh`.
//!
//! - Keys: an X25519 node key (also the WireGuard static key and the DERP
//!   identity) and a non-zero disco key (Go's magicsock skips a peer with a
//!   zero one), both kept in the database.
//! - Coordination: a coordinatee of appliance's own coordinator
//!   ([`Auth::Server`]) with a node on the embedded relay's region, its own
//!   random /128 under Tailscale's service prefix, and no endpoints; a
//!   tunnel is added per agent dialed.
//! - Relay: attached to appliance's own relay in-process (`derp_client`).
//!   Relay-only: no UDP, no STUN; disco packets are dropped (the agent then
//!   keeps using DERP).
//! - WireGuard: one `tunnel::Tunnel` per agent, set up on demand, shared by
//!   concurrent dials, torn down after [`IDLE_TIMEOUT`] without traffic or
//!   connections, rebuilt when the agent's node key changes.
//! - TCP: one userspace stack (`netstack`) for all agents.
//!
//! [`AgentDialer::dial`] is the only way in; nothing outside this module
//! knows WireGuard.

mod derp_client;
mod netstack;
mod tunnel;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::Ipv6Addr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, OnceCell, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use self::netstack::PeerStream;
use self::tunnel::Tunnel;
use crate::derp::{Key, Relay};
use crate::rpc::proto::tailnet::coordinate_request::{Tunnel as TunnelReq, UpdateSelf};
use crate::rpc::proto::tailnet::{CoordinateRequest, CoordinateResponse, Node, PeerUpdateKind};
use crate::tailnet::coordinator::{self, Auth, Coordinator, Peer};

/// The agent's HTTP API (`/api/v0/...`).
pub const AGENT_HTTP_PORT: u16 = 4;
/// The agent's reconnecting-PTY service.
pub const AGENT_PTY_PORT: u16 = 2;

/// The names the peer's keys are stored under in `server_keys`.
pub const NODE_KEY_NAME: &str = "tailnet-node";
pub const DISCO_KEY_NAME: &str = "tailnet-disco";

/// A tunnel with no connection and no packet for this long is torn down.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How long a dial waits for the agent's node after adding the tunnel.
const NODE_WAIT: Duration = Duration::from_secs(5);
/// How long a dial waits for the TCP handshake (WireGuard's included).
const CONNECT_WAIT: Duration = Duration::from_secs(20);
/// WireGuard's timers are driven at this pace.
const TICK: Duration = Duration::from_millis(250);

/// Why a dial failed.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("agent {0} has not sent its node to the coordinator")]
    NoNode(Uuid),
    #[error("no WireGuard handshake with the agent within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("connect to port {port}: {why}")]
    Connect { port: u16, why: String },
    #[error("the server is shutting down")]
    Shutdown,
    #[error("attach to the embedded relay: {0}")]
    Relay(String),
    #[error(
        "the embedded DERP relay is off (derp.embedded_relay = false), so the server has no way to reach agents"
    )]
    NoRelay,
}

/// The peer's two keys (32-byte X25519 private keys).
pub struct Keys {
    pub node: [u8; 32],
    pub disco: [u8; 32],
}

impl Keys {
    pub fn generate() -> Keys {
        Keys {
            node: rand::random(),
            disco: rand::random(),
        }
    }
}

/// Dials TCP ports on agents through WireGuard over the embedded relay.
pub struct AgentDialer {
    keys: Keys,
    /// The embedded relay's region; `None` when it is off.
    region: Option<i32>,
    coordinator: Coordinator,
    relay: Arc<Relay>,
    shutdown: CancellationToken,
    running: OnceCell<Arc<Running>>,
    idle_timeout: Duration,
}

/// What exists once the first dial started the peer.
struct Running {
    idle_timeout: Duration,
    peer: Peer,
    derp: mpsc::Sender<Bytes>,
    stack: Arc<netstack::Stack>,
    secret: boringtun::x25519::StaticSecret,
    state: Mutex<Tables>,
    /// Woken when a node arrives from the coordinator.
    nodes_changed: Notify,
}

#[derive(Default)]
struct Tables {
    /// Agents' latest nodes, as the coordinator sent them: key, addresses.
    nodes: HashMap<Uuid, (Key, Vec<Ipv6Addr>)>,
    tunnels: HashMap<Uuid, Arc<Tunnel>>,
    by_key: HashMap<Key, Arc<Tunnel>>,
    by_addr: HashMap<Ipv6Addr, Arc<Tunnel>>,
    next_index: u32,
}

impl Tables {
    fn insert(&mut self, t: Arc<Tunnel>) {
        self.remove(t.agent);
        self.by_key.insert(t.key, t.clone());
        for a in &t.addrs {
            self.by_addr.insert(*a, t.clone());
        }
        self.tunnels.insert(t.agent, t);
    }

    fn remove(&mut self, agent: Uuid) -> Option<Arc<Tunnel>> {
        let t = self.tunnels.remove(&agent)?;
        self.by_key.remove(&t.key);
        for a in &t.addrs {
            self.by_addr.remove(a);
        }
        Some(t)
    }
}

impl AgentDialer {
    /// A dialer; nothing runs until the first dial. `region` is the
    /// embedded relay's region id, `None` when the relay is off (every dial
    /// then fails with [`DialError::NoRelay`]).
    pub fn new(
        keys: Keys,
        region: Option<i32>,
        coordinator: Coordinator,
        relay: Arc<Relay>,
        shutdown: CancellationToken,
    ) -> AgentDialer {
        AgentDialer {
            keys,
            region,
            coordinator,
            relay,
            shutdown,
            running: OnceCell::new(),
            idle_timeout: IDLE_TIMEOUT,
        }
    }

    /// Tests: tear tunnels down sooner.
    #[cfg(test)]
    pub fn with_idle_timeout(mut self, idle: Duration) -> AgentDialer {
        self.idle_timeout = idle;
        self
    }

    /// How many tunnels are up (for `/metrics`).
    pub fn tunnels(&self) -> usize {
        self.running.get().map_or(0, |r| r.lock().tunnels.len())
    }

    /// Opens a TCP connection to `port` on the agent's tailnet address
    /// (`fd7a:115c:a1e0:` + the last 10 bytes of its id).
    pub async fn dial(&self, agent: Uuid, port: u16) -> Result<PeerStream, DialError> {
        if self.shutdown.is_cancelled() {
            return Err(DialError::Shutdown);
        }
        if self.region.is_none() {
            return Err(DialError::NoRelay);
        }
        let run = self.running.get_or_try_init(|| self.start()).await?.clone();
        let tunnel = run.tunnel(agent).await?;
        let addr = coordinator::agent_tailscale_address(agent);
        match tokio::time::timeout(CONNECT_WAIT, run.stack.connect(addr, port)).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(why)) => Err(DialError::Connect { port, why }),
            Err(_) if !tunnel.has_session() => Err(DialError::HandshakeTimeout(CONNECT_WAIT)),
            Err(_) => Err(DialError::Connect {
                port,
                why: format!("no answer within {CONNECT_WAIT:?}"),
            }),
        }
    }

    async fn start(&self) -> Result<Arc<Running>, DialError> {
        let region = self.region.ok_or(DialError::NoRelay)?;
        let secret = boringtun::x25519::StaticSecret::from(self.keys.node);
        let public = boringtun::x25519::PublicKey::from(&secret).to_bytes();
        let disco_public = boringtun::x25519::PublicKey::from(
            &boringtun::x25519::StaticSecret::from(self.keys.disco),
        )
        .to_bytes();
        let addr = coordinator::random_tailscale_address();
        let stack = netstack::Stack::new(addr);

        // The relay: its far end served like any client's connection.
        let (near, far) = tokio::io::duplex(256 << 10);
        {
            let relay = self.relay.clone();
            let shutdown = self.shutdown.clone();
            tokio::spawn(async move {
                if let Err(e) = relay.serve(far, &shutdown).await {
                    tracing::warn!(error = %e, "tailnet peer: the relay ended our connection");
                }
            });
        }
        let (inbound_tx, mut inbound_rx) = mpsc::unbounded_channel();
        let derp = derp_client::connect(
            near,
            &crypto_box::SecretKey::from(self.keys.node),
            move |m| {
                let _ = inbound_tx.send(m);
            },
        )
        .await
        .map_err(DialError::Relay)?;

        let id = Uuid::new_v4();
        let (peer, mut updates) = self.coordinator.join(id, Auth::Server);
        let node = Node {
            id: i64::from_le_bytes(rand::random()).abs(),
            as_of: Some(prost_types::Timestamp {
                seconds: time::OffsetDateTime::now_utc().unix_timestamp(),
                nanos: 0,
            }),
            key: [b"np".as_slice(), &public].concat(),
            disco: format!("discokey:{}", crate::derp::hex(&disco_public)),
            preferred_derp: region,
            addresses: vec![format!("{addr}/128")],
            allowed_ips: vec![format!("{addr}/128")],
            ..Node::default()
        };
        peer.handle(&CoordinateRequest {
            update_self: Some(UpdateSelf { node: Some(node) }),
            ..CoordinateRequest::default()
        })
        .map_err(|e| DialError::Relay(e.0))?;

        let run = Arc::new(Running {
            idle_timeout: self.idle_timeout,
            peer,
            derp,
            stack: stack.clone(),
            secret,
            state: Mutex::default(),
            nodes_changed: Notify::new(),
        });
        tracing::info!(peer = %id, address = %addr, "tailnet peer started (relay-only, region {region})");

        // The stack's packets go to the tunnel of their destination.
        {
            let run = run.clone();
            let shutdown = self.shutdown.clone();
            tokio::spawn(stack.run(shutdown, move |packet| run.send_ip(packet)));
        }
        // The relay's packets go to the tunnel of their source key.
        {
            let run = run.clone();
            tokio::spawn(async move {
                while let Some(m) = inbound_rx.recv().await {
                    match m {
                        derp_client::Inbound::Packet { src, body } => run.recv(&src, &body),
                        derp_client::Inbound::PeerGone => {}
                    }
                }
            });
        }
        // The coordinator's updates.
        {
            let run = run.clone();
            let shutdown = self.shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        u = updates.recv() => match u {
                            Some(u) => run.coordinator_update(u),
                            None => return,
                        },
                        _ = shutdown.cancelled() => return,
                    }
                }
            });
        }
        // WireGuard's timers and idle teardown.
        {
            let run = run.clone();
            let shutdown = self.shutdown.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(TICK);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => run.tick(),
                        _ = shutdown.cancelled() => {
                            let _ = run.peer.handle(&CoordinateRequest {
                                disconnect: Some(Default::default()),
                                ..CoordinateRequest::default()
                            });
                            return;
                        }
                    }
                }
            });
        }
        Ok(run)
    }
}

fn key_of_node(node: &Node) -> Option<Key> {
    let raw = node.key.strip_prefix(b"np")?;
    raw.try_into().ok()
}

fn addrs_of_node(node: &Node) -> Vec<Ipv6Addr> {
    node.addresses
        .iter()
        .chain(&node.allowed_ips)
        .filter_map(|p| p.strip_suffix("/128")?.parse().ok())
        .collect()
}

impl Running {
    fn lock(&self) -> MutexGuard<'_, Tables> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A datagram for `key` through the relay (dropped if the queue is full).
    fn relay_to(&self, key: &Key) -> impl FnMut(&[u8]) + '_ {
        let key = *key;
        move |p: &[u8]| {
            let _ = self.derp.try_send(derp_client::send_packet_frame(&key, p));
        }
    }

    /// The tunnel to `agent`: an existing one, or one made now once the
    /// coordinator has given us the agent's node.
    async fn tunnel(&self, agent: Uuid) -> Result<Arc<Tunnel>, DialError> {
        if let Some(t) = self.lock().tunnels.get(&agent) {
            return Ok(t.clone());
        }
        self.request(CoordinateRequest {
            add_tunnel: Some(TunnelReq {
                id: agent.as_bytes().to_vec(),
            }),
            ..CoordinateRequest::default()
        });
        let wait = async {
            loop {
                let notified = self.nodes_changed.notified();
                {
                    let mut tables = self.lock();
                    if let Some(t) = tables.tunnels.get(&agent) {
                        return t.clone();
                    }
                    if let Some((key, addrs)) = tables.nodes.get(&agent).cloned() {
                        tables.next_index = tables.next_index.wrapping_add(1);
                        let t = Arc::new(Tunnel::new(
                            agent,
                            key,
                            addrs,
                            &self.secret,
                            tables.next_index,
                        ));
                        tables.insert(t.clone());
                        return t;
                    }
                }
                notified.await;
            }
        };
        match tokio::time::timeout(NODE_WAIT, wait).await {
            Ok(t) => Ok(t),
            Err(_) => {
                self.request(CoordinateRequest {
                    remove_tunnel: Some(TunnelReq {
                        id: agent.as_bytes().to_vec(),
                    }),
                    ..CoordinateRequest::default()
                });
                Err(DialError::NoNode(agent))
            }
        }
    }

    fn request(&self, req: CoordinateRequest) {
        if let Err(e) = self.peer.handle(&req) {
            tracing::warn!(error = %e.0, "tailnet peer: the coordinator refused a request");
        }
    }

    fn coordinator_update(&self, resp: CoordinateResponse) {
        if !resp.error.is_empty() {
            tracing::warn!(error = %resp.error, "tailnet peer: coordinator error");
        }
        for u in resp.peer_updates {
            let Ok(agent) = Uuid::from_slice(&u.id) else {
                continue;
            };
            match PeerUpdateKind::try_from(u.kind).unwrap_or(PeerUpdateKind::Unspecified) {
                PeerUpdateKind::Node => {
                    let Some(node) = u.node.as_ref() else {
                        continue;
                    };
                    let Some(key) = key_of_node(node) else {
                        continue;
                    };
                    let addrs = addrs_of_node(node);
                    let mut tables = self.lock();
                    let stale = tables.tunnels.get(&agent).is_some_and(|t| t.key != key);
                    if stale {
                        // A new node key (the agent restarted): a new tunnel.
                        if let Some(old) = tables.remove(agent) {
                            drop(tables);
                            for a in &old.addrs {
                                self.stack.abort_to(*a);
                            }
                            tables = self.lock();
                        }
                        tables.next_index = tables.next_index.wrapping_add(1);
                        let t = Arc::new(Tunnel::new(
                            agent,
                            key,
                            addrs.clone(),
                            &self.secret,
                            tables.next_index,
                        ));
                        tables.insert(t);
                    }
                    tables.nodes.insert(agent, (key, addrs));
                    drop(tables);
                    self.nodes_changed.notify_waiters();
                }
                PeerUpdateKind::ReadyForHandshake => {
                    let t = self.lock().tunnels.get(&agent).cloned();
                    if let Some(t) = t {
                        t.set_ready(&mut self.relay_to(&t.key));
                    }
                }
                PeerUpdateKind::Disconnected | PeerUpdateKind::Lost => {
                    let old = {
                        let mut tables = self.lock();
                        tables.nodes.remove(&agent);
                        tables.remove(agent)
                    };
                    if let Some(old) = old {
                        tracing::debug!(%agent, reason = %u.reason, "tailnet peer: agent left; tunnel closed");
                        for a in &old.addrs {
                            self.stack.abort_to(*a);
                        }
                    }
                }
                PeerUpdateKind::Unspecified => {}
            }
        }
    }

    /// An IP packet from the stack: to the tunnel of its destination.
    fn send_ip(&self, packet: Vec<u8>) {
        let Some(dst) = packet
            .get(24..40)
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
        else {
            return;
        };
        let t = self.lock().by_addr.get(&Ipv6Addr::from(dst)).cloned();
        if let Some(t) = t {
            t.send_ip(packet, &mut self.relay_to(&t.key));
        }
    }

    /// A packet from the relay: disco is dropped (relay-only), WireGuard
    /// goes to the tunnel of its source key.
    fn recv(&self, src: &Key, body: &[u8]) {
        if crate::derp::frame::looks_like_disco(body) {
            return;
        }
        let t = self.lock().by_key.get(src).cloned();
        if let Some(t) = t {
            let stack = &self.stack;
            t.recv(body, &mut self.relay_to(src), &mut |ip| stack.deliver(ip));
        }
    }

    fn tick(&self) {
        let tunnels: Vec<Arc<Tunnel>> = self.lock().tunnels.values().cloned().collect();
        for t in tunnels {
            // Expired: no handshake for WireGuard's reject-after time. With
            // a connection still open (an idle terminal) the tunnel stays:
            // the next packet starts a new handshake.
            let expired = t.tick(&mut self.relay_to(&t.key)).is_err();
            let unused = t.addrs.iter().all(|a| self.stack.connections_to(*a) == 0);
            let idle = t.idle_for() >= self.idle_timeout;
            let dead = expired && unused;
            if dead || (idle && unused) {
                let mut tables = self.lock();
                if tables
                    .tunnels
                    .get(&t.agent)
                    .is_some_and(|cur| Arc::ptr_eq(cur, &t))
                {
                    tables.remove(t.agent);
                    drop(tables);
                    tracing::debug!(agent = %t.agent, dead, idle, "tailnet peer: tunnel torn down");
                    self.request(CoordinateRequest {
                        remove_tunnel: Some(TunnelReq {
                            id: t.agent.as_bytes().to_vec(),
                        }),
                        ..CoordinateRequest::default()
                    });
                    for a in &t.addrs {
                        self.stack.abort_to(*a);
                    }
                }
            }
        }
    }
}
