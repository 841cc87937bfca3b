//! The peer end to end, in-process: appliance's coordinator and relay, the
//! dialer, and an agent made of the same pieces a real one has (a node in
//! the coordinator, a relay connection, a WireGuard tunnel, a TCP stack with
//! a listener on port 4). The Go harness (tests/interop/go/reach) does the
//! same against Coder's real agent.

// Tests panic on purpose: an unwrap that fails is a failing test.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::derp_client::{self, Inbound};
use super::netstack::Stack;
use super::tunnel::Tunnel;
use super::*;
use crate::derp::{Relay, ServerKey};
use crate::rpc::proto::tailnet::coordinate_request::ReadyForHandshake;

const REGION: i32 = 999;

struct World {
    relay: Arc<Relay>,
    coordinator: Coordinator,
    shutdown: CancellationToken,
    dialer: AgentDialer,
}

fn world() -> World {
    let relay = Arc::new(Relay::new(ServerKey::generate()));
    let coordinator = Coordinator::default();
    let shutdown = CancellationToken::new();
    let dialer = AgentDialer::new(
        Keys::generate(),
        Some(REGION),
        coordinator.clone(),
        relay.clone(),
        shutdown.clone(),
    );
    World {
        relay,
        coordinator,
        shutdown,
        dialer,
    }
}

/// An agent as the server sees one: on the coordinator and the relay, with
/// an echo service on port 4. Dropping it leaves (LOST).
struct FakeAgent {
    id: Uuid,
    _peer: Arc<Peer>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn fake_agent(w: &World, id: Uuid) -> FakeAgent {
    let secret: [u8; 32] = rand::random();
    let wg_secret = boringtun::x25519::StaticSecret::from(secret);
    let public = boringtun::x25519::PublicKey::from(&wg_secret).to_bytes();
    let addr = coordinator::agent_tailscale_address(id);
    let stack = Stack::new(addr);
    let tunnel: Arc<Mutex<Option<Arc<Tunnel>>>> = Arc::default();

    let (near, far) = tokio::io::duplex(64 << 10);
    let relay = w.relay.clone();
    let shutdown = w.shutdown.clone();
    let mut tasks = vec![tokio::spawn(async move {
        let _ = relay.serve(far, &shutdown).await;
    })];
    let (in_tx, mut in_rx) = mpsc::unbounded_channel();
    let derp = derp_client::connect(near, &crypto_box::SecretKey::from(secret), move |m| {
        let _ = in_tx.send(m);
    })
    .await
    .unwrap();

    let (peer, mut updates) = w.coordinator.join(id, Auth::Agent(id));
    peer.handle(&CoordinateRequest {
        update_self: Some(UpdateSelf {
            node: Some(Node {
                id: 7,
                key: [b"np".as_slice(), &public].concat(),
                disco: format!("discokey:{}", crate::derp::hex(&[9u8; 32])),
                preferred_derp: REGION,
                addresses: vec![format!("{addr}/128")],
                allowed_ips: vec![format!("{addr}/128")],
                ..Node::default()
            }),
        }),
        ..CoordinateRequest::default()
    })
    .unwrap();

    // The server's node arrives: a tunnel to it, then READY_FOR_HANDSHAKE.
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Uuid>();
    {
        let tunnel = tunnel.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(u) = updates.recv().await {
                for pu in u.peer_updates {
                    if pu.kind == PeerUpdateKind::Node as i32 {
                        let node = pu.node.unwrap();
                        let t = Tunnel::new(
                            id,
                            key_of_node(&node).unwrap(),
                            addrs_of_node(&node),
                            &wg_secret,
                            1,
                        );
                        t.set_ready(&mut |_| {});
                        *tunnel.lock().unwrap() = Some(Arc::new(t));
                        let _ = ready_tx.send(Uuid::from_slice(&pu.id).unwrap());
                    }
                }
            }
        }));
    }
    let out = {
        let derp = derp.clone();
        move |key: crate::derp::Key| {
            let derp = derp.clone();
            move |p: &[u8]| {
                let _ = derp.try_send(derp_client::send_packet_frame(&key, p));
            }
        }
    };
    {
        let tunnel = tunnel.clone();
        let stack = stack.clone();
        let out = out.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(m) = in_rx.recv().await {
                let Inbound::Packet { src, body } = m else {
                    continue;
                };
                let t = tunnel.lock().unwrap().clone();
                if let Some(t) = t.filter(|t| t.key == src) {
                    t.recv(&body, &mut out(src), &mut |ip| stack.deliver(ip));
                }
            }
        }));
    }
    {
        let tunnel = tunnel.clone();
        let shutdown = w.shutdown.clone();
        tasks.push(tokio::spawn(stack.clone().run(shutdown, move |p| {
            let t = tunnel.lock().unwrap().clone();
            if let Some(t) = t {
                t.send_ip(p, &mut out(t.key));
            }
        })));
    }
    // Echo every connection on port 4 (four listeners: concurrent dials).
    for _ in 0..4 {
        let stack = stack.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let mut conn = stack.accept(AGENT_HTTP_PORT).await;
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 << 10];
                    loop {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => {
                                let _ = conn.shutdown().await;
                                return;
                            }
                            Ok(n) => {
                                if conn.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        }));
    }
    // READY_FOR_HANDSHAKE back to whoever sent us their node.
    let agent_peer = Arc::new(peer);
    {
        let agent_peer = agent_peer.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(src) = ready_rx.recv().await {
                let _ = agent_peer.handle(&CoordinateRequest {
                    ready_for_handshake: vec![ReadyForHandshake {
                        id: src.as_bytes().to_vec(),
                    }],
                    ..CoordinateRequest::default()
                });
            }
        }));
    }
    FakeAgent {
        id,
        _peer: agent_peer,
        tasks,
    }
}

async fn echo_round_trip(stream: &mut PeerStream, data: &[u8]) -> Vec<u8> {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let send = async {
        wr.write_all(data).await.unwrap();
    };
    let recv = async {
        let mut got = vec![0u8; data.len()];
        rd.read_exact(&mut got).await.unwrap();
        got
    };
    let ((), got) = tokio::join!(send, recv);
    got
}

#[tokio::test]
async fn dials_an_agent_through_wireguard_over_the_relay() {
    let w = world();
    let agent = fake_agent(&w, Uuid::new_v4()).await;
    let mut a = tokio::time::timeout(
        Duration::from_secs(15),
        w.dialer.dial(agent.id, AGENT_HTTP_PORT),
    )
    .await
    .expect("dial within 15 s")
    .expect("dial");
    assert_eq!(
        echo_round_trip(&mut a, b"hello agent").await,
        b"hello agent"
    );
    // A second connection shares the tunnel; 1 MiB crosses it intact.
    let mut b = w
        .dialer
        .dial(agent.id, AGENT_HTTP_PORT)
        .await
        .expect("second dial");
    assert_eq!(w.dialer.tunnels(), 1);
    let big: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    assert_eq!(echo_round_trip(&mut b, &big).await, big);
    assert_eq!(echo_round_trip(&mut a, b"still here").await, b"still here");
    // Nobody listens on port 2: refused, not hung.
    let refused = w.dialer.dial(agent.id, AGENT_PTY_PORT).await;
    assert!(
        matches!(refused, Err(DialError::Connect { port: 2, .. })),
        "{refused:?}"
    );
    assert!(w.relay.stats().packets_relayed > 100);
    w.shutdown.cancel();
}

#[tokio::test]
async fn an_agent_without_a_node_is_refused_and_a_gone_agent_closes_its_tunnel() {
    let w = world();
    let missing = w.dialer.dial(Uuid::new_v4(), AGENT_HTTP_PORT).await;
    assert!(matches!(missing, Err(DialError::NoNode(_))), "{missing:?}");
    assert_eq!(w.dialer.tunnels(), 0);

    let agent = fake_agent(&w, Uuid::new_v4()).await;
    let mut s = w
        .dialer
        .dial(agent.id, AGENT_HTTP_PORT)
        .await
        .expect("dial");
    assert_eq!(echo_round_trip(&mut s, b"x").await, b"x");
    assert_eq!(w.dialer.tunnels(), 1);
    let id = agent.id;
    drop(agent); // LOST: the tunnel goes, its connections end.
    tokio::time::timeout(Duration::from_secs(5), async {
        while w.dialer.tunnels() != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("tunnel closed within 5 s");
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("not hung");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");

    // The same agent id comes back with a new key: a new tunnel works.
    let again = fake_agent(&w, id).await;
    let mut s = w
        .dialer
        .dial(again.id, AGENT_HTTP_PORT)
        .await
        .expect("dial after restart");
    assert_eq!(echo_round_trip(&mut s, b"again").await, b"again");
    w.shutdown.cancel();
}

#[tokio::test]
async fn concurrent_dials_share_one_tunnel_and_an_idle_one_is_torn_down() {
    let mut w = world();
    w.dialer = AgentDialer::new(
        Keys::generate(),
        Some(REGION),
        w.coordinator.clone(),
        w.relay.clone(),
        w.shutdown.clone(),
    )
    .with_idle_timeout(Duration::from_secs(1));
    let agent = fake_agent(&w, Uuid::new_v4()).await;
    let (a, b) = tokio::join!(
        w.dialer.dial(agent.id, AGENT_HTTP_PORT),
        w.dialer.dial(agent.id, AGENT_HTTP_PORT)
    );
    let (mut a, mut b) = (a.expect("first"), b.expect("second"));
    assert_eq!(w.dialer.tunnels(), 1, "one tunnel for both");
    assert_eq!(echo_round_trip(&mut a, b"a").await, b"a");
    assert_eq!(echo_round_trip(&mut b, b"b").await, b"b");
    // Open connections keep an idle tunnel up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(w.dialer.tunnels(), 1, "in use: kept");
    assert_eq!(echo_round_trip(&mut a, b"still").await, b"still");
    drop((a, b));
    tokio::time::timeout(Duration::from_secs(10), async {
        while w.dialer.tunnels() != 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the unused tunnel is torn down");
    // And made again on the next dial.
    let mut c = w
        .dialer
        .dial(agent.id, AGENT_HTTP_PORT)
        .await
        .expect("dial again");
    assert_eq!(echo_round_trip(&mut c, b"c").await, b"c");
    w.shutdown.cancel();
}

#[tokio::test]
async fn without_the_embedded_relay_every_dial_says_why() {
    let w = world();
    let off = AgentDialer::new(
        Keys::generate(),
        None,
        w.coordinator.clone(),
        w.relay.clone(),
        w.shutdown.clone(),
    );
    let err = off.dial(Uuid::new_v4(), AGENT_HTTP_PORT).await.unwrap_err();
    assert!(matches!(err, DialError::NoRelay));
    assert!(
        err.to_string().contains("derp.embedded_relay = false"),
        "{err}"
    );
}

#[tokio::test]
async fn a_shut_down_dialer_refuses() {
    let w = world();
    w.shutdown.cancel();
    assert!(matches!(
        w.dialer.dial(Uuid::new_v4(), AGENT_HTTP_PORT).await,
        Err(DialError::Shutdown)
    ));
}
