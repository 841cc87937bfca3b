//! The coordinator end to end: an agent on `/me/rpc` and clients on
//! `/{id}/coordinate` and `/tailnet`, each over its own WebSocket, yamux
//! session and DRPC Coordinate stream (CONNECTIVITY.md §1.7).

use std::net::Ipv6Addr;
use std::time::Duration;

use appliance::rpc::proto::methods::tailnet as rpc_tailnet;
use appliance::rpc::proto::tailnet::coordinate_request::{ReadyForHandshake, Tunnel, UpdateSelf};
use appliance::rpc::proto::tailnet::coordinate_response::PeerUpdate;
use appliance::rpc::proto::tailnet::{
    CoordinateRequest, CoordinateResponse, Node, PeerUpdateKind, RefreshResumeTokenRequest,
    RefreshResumeTokenResponse, WorkspaceUpdate, WorkspaceUpdatesRequest,
};
use uuid::Uuid;

use crate::harness::{TestServer, agent, agent_id};
use crate::logs_support::MANIFEST;
use crate::rpc_client::{Incoming, Outgoing, RpcClient};

const WAIT: Duration = Duration::from_secs(10);

struct Setup {
    server: TestServer,
    alice: String,
    agent_id: Uuid,
    agent_token: String,
}

fn setup() -> Setup {
    let server = TestServer::start();
    server.create_user("alice", "member");
    let alice = server.token("alice");
    let applied = server.apply(MANIFEST);
    let agent_id = Uuid::parse_str(&agent_id(&applied, "main")).unwrap();
    let agent_token = agent(&applied, "main")["token"]
        .as_str()
        .unwrap()
        .to_owned();
    Setup {
        server,
        alice,
        agent_id,
        agent_token,
    }
}

impl Setup {
    fn ws(&self, path: &str) -> String {
        format!("ws://{}{path}", self.server.addr)
    }
}

fn agent_node(id: Uuid) -> Node {
    let mut bytes = *id.as_bytes();
    bytes[..6].copy_from_slice(&[0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0]);
    let ip = Ipv6Addr::from(bytes);
    Node {
        id: 1,
        key: vec![1; 32],
        disco: "discokey:01".into(),
        preferred_derp: 999,
        addresses: vec![format!("{ip}/128")],
        allowed_ips: vec![format!("{ip}/128")],
        ..Node::default()
    }
}

fn client_node() -> Node {
    Node {
        id: 2,
        key: vec![2; 32],
        disco: "discokey:02".into(),
        preferred_derp: 999,
        addresses: vec!["fd7a:115c:a1e0:4000::2/128".into()],
        ..Node::default()
    }
}

fn update_self(node: Node) -> CoordinateRequest {
    CoordinateRequest {
        update_self: Some(UpdateSelf { node: Some(node) }),
        ..Default::default()
    }
}

async fn next_update(incoming: &mut Incoming) -> PeerUpdate {
    let resp: CoordinateResponse = tokio::time::timeout(WAIT, incoming.next())
        .await
        .expect("a coordinator response in time")
        .expect("the stream is open")
        .expect("a response");
    assert_eq!(resp.error, "", "{resp:?}");
    assert_eq!(resp.peer_updates.len(), 1, "{resp:?}");
    resp.peer_updates.into_iter().next().unwrap()
}

async fn coordinate(client: &RpcClient) -> (Outgoing, Incoming) {
    client.coordinate().await.expect("Coordinate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_and_the_agent_learn_each_others_nodes_through_the_coordinator() {
    let s = setup();
    let agent_client = RpcClient::connect(
        &format!("http://{}", s.server.addr),
        &s.agent_token,
        "2.10",
        Some("agent"),
    )
    .await
    .unwrap();
    let (agent_tx, mut agent_rx) = coordinate(&agent_client).await;
    agent_tx
        .send(&update_self(agent_node(s.agent_id)))
        .await
        .unwrap();

    let url = s.ws(&format!(
        "/api/v2/workspaceagents/{}/coordinate?version=2.3",
        s.agent_id
    ));
    let user = RpcClient::connect_url(&url, &s.alice).await.unwrap();
    let (user_tx, mut user_rx) = coordinate(&user).await;
    user_tx.send(&update_self(client_node())).await.unwrap();
    user_tx
        .send(&CoordinateRequest {
            add_tunnel: Some(Tunnel {
                id: s.agent_id.as_bytes().to_vec(),
            }),
            ..Default::default()
        })
        .await
        .unwrap();

    let u = next_update(&mut user_rx).await;
    assert_eq!(u.id, s.agent_id.as_bytes().to_vec());
    assert_eq!(u.kind, PeerUpdateKind::Node as i32);
    assert_eq!(u.node, Some(agent_node(s.agent_id)));
    let u = next_update(&mut agent_rx).await;
    assert_eq!(u.kind, PeerUpdateKind::Node as i32);
    assert_eq!(u.node, Some(client_node()));
    let client_peer = u.id.clone();

    // The agent's controller answers with ready_for_handshake.
    agent_tx
        .send(&CoordinateRequest {
            ready_for_handshake: vec![ReadyForHandshake {
                id: client_peer.clone(),
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    let u = next_update(&mut user_rx).await;
    assert_eq!(u.kind, PeerUpdateKind::ReadyForHandshake as i32);

    // A resume token names the same peer id on the next connection.
    let token: RefreshResumeTokenResponse = user
        .call(
            rpc_tailnet::REFRESH_RESUME_TOKEN,
            &RefreshResumeTokenRequest {},
        )
        .await
        .unwrap();
    assert!(token.refresh_in.is_some() && token.expires_at.is_some());

    // The client goes away: the agent sees it LOST.
    drop((user_tx, user_rx));
    drop(user);
    let u = next_update(&mut agent_rx).await;
    assert_eq!(u.kind, PeerUpdateKind::Lost as i32);
    assert_eq!(u.id, client_peer);

    let again = RpcClient::connect_url(&format!("{url}&resume_token={}", token.token), &s.alice)
        .await
        .unwrap();
    let (again_tx, _again_rx) = coordinate(&again).await;
    again_tx.send(&update_self(client_node())).await.unwrap();
    again_tx
        .send(&CoordinateRequest {
            add_tunnel: Some(Tunnel {
                id: s.agent_id.as_bytes().to_vec(),
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let u = next_update(&mut agent_rx).await;
    assert_eq!(u.id, client_peer, "the resumed client keeps its peer id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_one_agent_may_not_tunnel_elsewhere_and_agents_may_not_tunnel() {
    let s = setup();
    let url = s.ws(&format!(
        "/api/v2/workspaceagents/{}/coordinate?version=2.3",
        s.agent_id
    ));
    let user = RpcClient::connect_url(&url, &s.alice).await.unwrap();
    let (tx, mut rx) = coordinate(&user).await;
    let other = Uuid::new_v4();
    tx.send(&CoordinateRequest {
        add_tunnel: Some(Tunnel {
            id: other.as_bytes().to_vec(),
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let resp: CoordinateResponse = tokio::time::timeout(WAIT, rx.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        resp.error,
        format!(
            "authorization: invalid agent id, expected {}, got {other}",
            s.agent_id
        )
    );
    assert!(
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .is_none(),
        "the refused stream ends"
    );

    let agent_client = RpcClient::connect(
        &format!("http://{}", s.server.addr),
        &s.agent_token,
        "2.10",
        None,
    )
    .await
    .unwrap();
    let (tx, mut rx) = coordinate(&agent_client).await;
    tx.send(&CoordinateRequest {
        add_tunnel: Some(Tunnel {
            id: other.as_bytes().to_vec(),
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let resp: CoordinateResponse = tokio::time::timeout(WAIT, rx.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(resp.error, "authorization: agents cannot open tunnels");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tailnet_sends_the_users_workspaces_then_changes() {
    let s = setup();
    // Alice's id, from the CLI.
    let users = s.server.cli(&["user", "list", "--output", "json"]).json();
    let alice_id = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "alice")
        .map(|u| Uuid::parse_str(u["id"].as_str().unwrap()).unwrap())
        .unwrap();
    let tailnet = RpcClient::connect_url(&s.ws("/api/v2/tailnet?version=2.3"), &s.alice)
        .await
        .unwrap();
    let mut updates = tailnet
        .server_stream(
            rpc_tailnet::WORKSPACE_UPDATES,
            prost::Message::encode_to_vec(&WorkspaceUpdatesRequest {
                workspace_owner_id: alice_id.as_bytes().to_vec(),
            }),
        )
        .await
        .unwrap();
    let first: WorkspaceUpdate = tokio::time::timeout(WAIT, updates.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.upserted_workspaces.len(), 1);
    assert_eq!(first.upserted_workspaces[0].status, 3, "running");
    assert!(
        first
            .upserted_agents
            .iter()
            .any(|a| a.id == s.agent_id.as_bytes().to_vec()),
        "{first:?}"
    );

    // A new build replaces the agent.
    s.server.apply(MANIFEST);
    let next: WorkspaceUpdate = tokio::time::timeout(WAIT, updates.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        next.deleted_agents
            .iter()
            .any(|a| a.id == s.agent_id.as_bytes().to_vec()),
        "{next:?}"
    );
    assert_eq!(next.upserted_agents.len(), next.deleted_agents.len());

    // Someone else's workspaces are not alice's to watch.
    let mut refused = tailnet
        .server_stream(
            rpc_tailnet::WORKSPACE_UPDATES,
            prost::Message::encode_to_vec(&WorkspaceUpdatesRequest {
                workspace_owner_id: Uuid::new_v4().as_bytes().to_vec(),
            }),
        )
        .await
        .unwrap();
    let err = tokio::time::timeout(WAIT, refused.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(err.message.contains("not authorized"), "{err:?}");

    // A user's client may tunnel to its own agent; not to a stranger's.
    let (tx, mut rx) = coordinate(&tailnet).await;
    tx.send(&CoordinateRequest {
        add_tunnel: Some(Tunnel {
            id: Uuid::new_v4().as_bytes().to_vec(),
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let resp: CoordinateResponse = tokio::time::timeout(WAIT, rx.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        resp.error,
        "authorization: workspace agent not found or you do not have permission"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_token_outlives_a_restart() {
    let s = setup();
    let url = format!(
        "/api/v2/workspaceagents/{}/coordinate?version=2.3",
        s.agent_id
    );
    let user = RpcClient::connect_url(&s.ws(&url), &s.alice).await.unwrap();
    let token: RefreshResumeTokenResponse = user
        .call(
            rpc_tailnet::REFRESH_RESUME_TOKEN,
            &RefreshResumeTokenRequest {},
        )
        .await
        .unwrap();
    drop(user);
    let sandbox = s.server.sandbox().clone();
    let (status, _) = s.server.stop();
    assert!(status.success());
    let again = TestServer::start_in(sandbox, &[]);
    let resumed = format!("ws://{}{url}&resume_token={}", again.addr, token.token);
    RpcClient::connect_url(&resumed, &s.alice)
        .await
        .expect("the token is still valid after a restart");
    let forged = format!("ws://{}{url}&resume_token={}x", again.addr, token.token);
    assert!(RpcClient::connect_url(&forged, &s.alice).await.is_err());
}
