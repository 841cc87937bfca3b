//! The coordinator's rules, message by message.

use tokio::sync::mpsc::Receiver;

use super::*;
use crate::rpc::proto::tailnet::coordinate_request::{
    Disconnect, ReadyForHandshake, Tunnel, UpdateSelf,
};

fn agent_node(id: Uuid, key: u8) -> Node {
    let ip = agent_address(&TAILSCALE_PREFIX, id);
    Node {
        id: i64::from(key),
        key: vec![key; 32],
        disco: format!("discokey:{key:02x}"),
        preferred_derp: 999,
        addresses: vec![format!("{ip}/128")],
        allowed_ips: vec![format!("{ip}/128")],
        ..Node::default()
    }
}

fn client_node(key: u8) -> Node {
    Node {
        id: i64::from(key),
        key: vec![key; 32],
        preferred_derp: 999,
        addresses: vec![format!("fd7a:115c:a1e0::{key}/128")],
        ..Node::default()
    }
}

fn update(node: Node) -> CoordinateRequest {
    CoordinateRequest {
        update_self: Some(UpdateSelf { node: Some(node) }),
        ..Default::default()
    }
}

fn tunnel(to: Uuid) -> CoordinateRequest {
    CoordinateRequest {
        add_tunnel: Some(Tunnel {
            id: to.as_bytes().to_vec(),
        }),
        ..Default::default()
    }
}

fn rfh(to: Uuid) -> CoordinateRequest {
    CoordinateRequest {
        ready_for_handshake: vec![ReadyForHandshake {
            id: to.as_bytes().to_vec(),
        }],
        ..Default::default()
    }
}

/// The single update in the next response.
fn next_update(rx: &mut Receiver<CoordinateResponse>) -> PeerUpdate {
    let resp = rx.try_recv().expect("a response is queued");
    assert_eq!(resp.error, "", "{resp:?}");
    assert_eq!(resp.peer_updates.len(), 1, "{resp:?}");
    resp.peer_updates.into_iter().next().unwrap()
}

fn assert_quiet(rx: &mut Receiver<CoordinateResponse>) {
    assert!(rx.try_recv().is_err(), "nothing more is queued");
}

#[test]
fn a_tunnel_exchanges_nodes_and_updates_follow() {
    let coord = Coordinator::default();
    let agent_id = Uuid::new_v4();
    let client_id = Uuid::new_v4();
    let (agent, mut agent_rx) = coord.join(agent_id, Auth::Agent(agent_id));
    agent.handle(&update(agent_node(agent_id, 1))).unwrap();
    assert_eq!(coord.node(agent_id), Some(agent_node(agent_id, 1)));
    assert_quiet(&mut agent_rx);

    let (client, mut client_rx) = coord.join(client_id, Auth::Client { agent: agent_id });
    client.handle(&update(client_node(2))).unwrap();
    client.handle(&tunnel(agent_id)).unwrap();
    let u = next_update(&mut client_rx);
    assert_eq!(u.id, agent_id.as_bytes().to_vec());
    assert_eq!(u.kind, PeerUpdateKind::Node as i32);
    assert_eq!(u.node, Some(agent_node(agent_id, 1)));
    assert_eq!(u.reason, "add tunnel");
    let u = next_update(&mut agent_rx);
    assert_eq!(u.id, client_id.as_bytes().to_vec());
    assert_eq!(u.node, Some(client_node(2)));

    // The agent answers with ready_for_handshake; the client learns it.
    agent.handle(&rfh(client_id)).unwrap();
    let u = next_update(&mut client_rx);
    assert_eq!(u.kind, PeerUpdateKind::ReadyForHandshake as i32);
    assert_eq!(u.id, agent_id.as_bytes().to_vec());
    assert_eq!(u.node, None);

    // A changed node reaches the tunnel peer; the same node again does not.
    agent.handle(&update(agent_node(agent_id, 3))).unwrap();
    assert_eq!(
        next_update(&mut client_rx).node,
        Some(agent_node(agent_id, 3))
    );
    agent.handle(&update(agent_node(agent_id, 3))).unwrap();
    assert_quiet(&mut client_rx);

    // The client goes away without a word: the agent sees it LOST.
    drop(client);
    let u = next_update(&mut agent_rx);
    assert_eq!(u.kind, PeerUpdateKind::Lost as i32);
    assert_eq!(u.id, client_id.as_bytes().to_vec());
    assert_eq!(coord.peer_count(), 1);
    drop(agent);
    assert_eq!(coord.peer_count(), 0);
}

#[test]
fn a_tunnel_to_an_agent_not_yet_connected_delivers_its_node_when_it_comes() {
    let coord = Coordinator::default();
    let agent_id = Uuid::new_v4();
    let (client, mut client_rx) = coord.join(Uuid::new_v4(), Auth::Client { agent: agent_id });
    client.handle(&tunnel(agent_id)).unwrap();
    assert_quiet(&mut client_rx);
    let (agent, _agent_rx) = coord.join(agent_id, Auth::Agent(agent_id));
    agent.handle(&update(agent_node(agent_id, 1))).unwrap();
    assert_eq!(
        next_update(&mut client_rx).node,
        Some(agent_node(agent_id, 1))
    );
}

#[test]
fn graceful_disconnect_and_remove_tunnel_say_disconnected() {
    let coord = Coordinator::default();
    let agent_id = Uuid::new_v4();
    let (agent, mut agent_rx) = coord.join(agent_id, Auth::Agent(agent_id));
    agent.handle(&update(agent_node(agent_id, 1))).unwrap();
    let client_id = Uuid::new_v4();
    let (client, mut client_rx) = coord.join(client_id, Auth::Client { agent: agent_id });
    client.handle(&update(client_node(2))).unwrap();
    client.handle(&tunnel(agent_id)).unwrap();
    next_update(&mut client_rx);
    next_update(&mut agent_rx);

    client
        .handle(&CoordinateRequest {
            remove_tunnel: Some(Tunnel {
                id: agent_id.as_bytes().to_vec(),
            }),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        next_update(&mut client_rx).kind,
        PeerUpdateKind::Disconnected as i32
    );
    assert_eq!(
        next_update(&mut agent_rx).kind,
        PeerUpdateKind::Disconnected as i32
    );

    client.handle(&tunnel(agent_id)).unwrap();
    next_update(&mut client_rx);
    next_update(&mut agent_rx);
    client
        .handle(&CoordinateRequest {
            disconnect: Some(Disconnect {}),
            ..Default::default()
        })
        .unwrap();
    let u = next_update(&mut agent_rx);
    assert_eq!(u.kind, PeerUpdateKind::Disconnected as i32);
    assert_eq!(u.reason, "graceful disconnect");
    assert!(
        matches!(
            client_rx.try_recv(),
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected)
        ),
        "the disconnected peer's stream ends"
    );
    drop(client);
    assert_quiet(&mut agent_rx);
}

#[test]
fn a_second_connection_with_the_same_id_overwrites_the_first() {
    let coord = Coordinator::default();
    let id = Uuid::new_v4();
    let (first, mut first_rx) = coord.join(id, Auth::Agent(id));
    first.handle(&update(agent_node(id, 1))).unwrap();
    let (second, _second_rx) = coord.join(id, Auth::Agent(id));
    let resp = first_rx.try_recv().unwrap();
    assert_eq!(resp.error, CLOSE_ERR_OVERWRITTEN);
    assert!(first_rx.try_recv().is_err());
    // The old handle no longer acts, and dropping it does not remove the new.
    first.handle(&update(agent_node(id, 9))).unwrap();
    drop(first);
    assert_eq!(coord.peer_count(), 1);
    assert_eq!(
        coord.node(id),
        None,
        "the new connection has published nothing yet"
    );
    second.handle(&update(agent_node(id, 2))).unwrap();
    assert_eq!(coord.node(id), Some(agent_node(id, 2)));
}

#[test]
fn ready_for_handshake_without_a_tunnel_is_a_warning() {
    let coord = Coordinator::default();
    let id = Uuid::new_v4();
    let stranger = Uuid::new_v4();
    let (agent, mut rx) = coord.join(id, Auth::Agent(id));
    agent.handle(&rfh(stranger)).unwrap();
    let resp = rx.try_recv().unwrap();
    assert_eq!(
        resp.error,
        format!("ready for handshake error: you do not share a tunnel with \"{stranger}\"")
    );
}

#[test]
fn agents_may_not_open_tunnels_or_claim_other_addresses() {
    let coord = Coordinator::default();
    let id = Uuid::new_v4();
    let (agent, _rx) = coord.join(id, Auth::Agent(id));
    assert_eq!(
        agent.handle(&tunnel(Uuid::new_v4())).unwrap_err().0,
        "authorization: agents cannot open tunnels"
    );
    let other = Uuid::new_v4();
    let mut node = agent_node(id, 1);
    node.addresses = vec![format!("{}/128", agent_address(&TAILSCALE_PREFIX, other))];
    let err = agent.handle(&update(node)).unwrap_err().0;
    assert_eq!(
        err,
        format!(
            "authorization: Addresses: invalid node address, got {}",
            agent_address(&TAILSCALE_PREFIX, other)
        )
    );
    let mut node = agent_node(id, 1);
    node.allowed_ips = vec!["fd7a:115c:a1e0::/48".to_owned()];
    assert_eq!(
        agent.handle(&update(node)).unwrap_err().0,
        "authorization: AllowedIps: invalid address bits, expected 128, got 48"
    );
    // Coder's own prefix and the legacy address are the agent's too.
    let mut node = agent_node(id, 1);
    node.addresses = vec![
        format!("{}/128", agent_address(&CODER_PREFIX, id)),
        "fd7a:115c:a1e0:49d6:b259:b7ac:b1b2:48f4/128".to_owned(),
    ];
    agent.handle(&update(node)).unwrap();
    assert_eq!(coord.node(id).unwrap().addresses.len(), 2);
}

#[test]
fn clients_tunnel_only_where_they_may() {
    let coord = Coordinator::default();
    let agent = Uuid::new_v4();
    let other = Uuid::new_v4();
    let (client, _rx) = coord.join(Uuid::new_v4(), Auth::Client { agent });
    assert_eq!(
        client.handle(&tunnel(other)).unwrap_err().0,
        format!("authorization: invalid agent id, expected {agent}, got {other}")
    );
    assert_eq!(
        client.handle(&rfh(agent)).unwrap_err().0,
        "authorization: clients may not send ready_for_handshake"
    );
    let mut node = client_node(1);
    node.addresses = vec!["fd7a:115c:a1e0::1/64".to_owned()];
    assert!(client.handle(&update(node)).is_err());
    let bad = CoordinateRequest {
        add_tunnel: Some(Tunnel { id: vec![1, 2, 3] }),
        ..Default::default()
    };
    assert!(client.handle(&bad).unwrap_err().0.contains("3 bytes"));

    let allowed = agent;
    let (user, mut user_rx) = coord.join(
        Uuid::new_v4(),
        Auth::User(Arc::new(move |id| id == allowed)),
    );
    user.handle(&tunnel(agent)).unwrap();
    assert_quiet(&mut user_rx);
    assert_eq!(
        user.handle(&tunnel(other)).unwrap_err().0,
        "authorization: workspace agent not found or you do not have permission"
    );
}

#[test]
fn a_peer_that_does_not_take_its_updates_is_removed_not_waited_for() {
    let coord = Coordinator::default();
    let agent_id = Uuid::new_v4();
    let (agent, _agent_rx) = coord.join(agent_id, Auth::Agent(agent_id));
    let (client, _client_rx) = coord.join(Uuid::new_v4(), Auth::Client { agent: agent_id });
    client.handle(&tunnel(agent_id)).unwrap();
    for i in 0..=RESPONSE_BUFFER {
        let mut node = agent_node(agent_id, 1);
        node.id = i as i64 + 10;
        agent.handle(&update(node)).unwrap();
    }
    assert_eq!(coord.peer_count(), 1, "the slow client is gone");
}
