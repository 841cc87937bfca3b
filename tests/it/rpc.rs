//! `GET /api/v2/workspaceagents/me/rpc` against the real server, with the
//! client of `rpc_client.rs`: every Agent and Tailnet RPC once, with what
//! `GET /api/v2/workspaceagents/{id}` and `GET …/logs` show afterwards; the
//! API version (missing: 2.0; unsupported: 400; a method newer than the
//! connection: code 12); unknown methods and PushContextState (code 12, the
//! session survives); refusals before the upgrade; the connection status
//! (`connecting`, `connected`, `disconnected`); a new build ending the old
//! agent's session.

use std::collections::BTreeSet;
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use appliance::rpc::proto::methods::{self, agent as rpc_agent, tailnet as rpc_tailnet};
use appliance::rpc::proto::{agent, tailnet};
use prost::Message as _;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{Auth, Options, TestServer, agent, agent_id};
use crate::rpc_client::{CallError, ConnectError, RpcClient, now};

const MANIFEST: &str = r##"
name = "dev"
owner = "alice"

[[resources]]
name = "vm"
type = "t"

  [[resources.agents]]
  name = "main"
  os = "linux"
  arch = "amd64"
  directory = "/home/coder"

    [[resources.agents.apps]]
    slug = "code-server"
    display_name = "code-server"
    url = "http://localhost:13337"
    healthcheck = { url = "http://localhost:13337/healthz", interval = 5, threshold = 6 }

    [[resources.agents.scripts]]
    display_name = "Install tools"
    script = "#!/bin/sh\necho hi"
    run_on_start = true
"##;

/// How long anything the server does in the background may take.
const SETTLE: Duration = Duration::from_secs(15);

/// The timers that make status changes quick (`APPLIANCE_AGENT__…`).
fn quick_timers() -> Options {
    Options {
        env: vec![
            (
                "APPLIANCE_AGENT__INACTIVE_DISCONNECT_TIMEOUT".into(),
                "2s".into(),
            ),
            (
                "APPLIANCE_AGENT__CONNECTION_UPDATE_INTERVAL".into(),
                "1s".into(),
            ),
        ],
        ..Options::default()
    }
}

/// A server with member `alice` (and her API key) and the manifest applied.
struct Setup {
    server: TestServer,
    api_key: String,
    agent_id: String,
    agent_token: String,
}

impl Setup {
    fn new(options: Options) -> Setup {
        let server = TestServer::start_with(options);
        server.create_user("alice", "member");
        let api_key = server.token("alice");
        let applied = server.apply(MANIFEST);
        let agent_id = agent_id(&applied, "main");
        let agent_token = agent(&applied, "main")["token"]
            .as_str()
            .expect("agent token")
            .to_string();
        Setup {
            server,
            api_key,
            agent_id,
            agent_token,
        }
    }

    fn base(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    async fn connect(&self, version: &str) -> RpcClient {
        RpcClient::connect(&self.base(), &self.agent_token, version, Some("agent"))
            .await
            .unwrap_or_else(|e| panic!("dial /me/rpc?version={version}: {e}"))
    }

    fn agent_json(&self) -> Value {
        self.server
            .get_agent(&self.agent_id, &self.api_key)
            .ok_json()
    }
}

/// Polls `f` every 100 ms until it gives `Some`, for at most `limit`.
async fn eventually<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(SETTLE, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {SETTLE:?}"))
}

/// A round trip that needs no handler: an unknown method, answered with
/// code 12 while the session lives.
async fn round_trip(client: &RpcClient) {
    let err = within("a round trip", client.unary("/appliance.test/Ping", b""))
        .await
        .unwrap_err();
    assert!(err.is_unimplemented(), "{err}");
}

fn uuid_of(bytes: &[u8]) -> Uuid {
    Uuid::from_slice(bytes).unwrap_or_else(|_| panic!("a 16-byte id: {bytes:?}"))
}

/// The agent's tailnet address: its id with the first 6 bytes replaced by
/// Tailscale's service prefix `fd7a:115c:a1e0::/48` (CONNECTIVITY.md §1.7).
fn tailnet_address(agent_id: &str) -> String {
    let mut bytes = *Uuid::parse_str(agent_id).expect("uuid").as_bytes();
    bytes[..6].copy_from_slice(&[0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0]);
    format!("{}/128", Ipv6Addr::from(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_agent_and_tailnet_rpc_once() {
    let fx = Setup::new(Options::default());
    let client = fx
        .connect(methods::CURRENT_VERSION.to_string().as_str())
        .await;
    let mut called = BTreeSet::new();

    // GetManifest
    let manifest = within("GetManifest", client.get_manifest()).await.unwrap();
    called.insert(rpc_agent::GET_MANIFEST);
    assert_eq!(uuid_of(&manifest.agent_id).to_string(), fx.agent_id);
    assert_eq!(manifest.workspace_id.len(), 16);
    assert_eq!(manifest.agent_name, "main");
    assert_eq!(manifest.workspace_name, "dev");
    assert_eq!(manifest.owner_username, "alice");
    assert_eq!(manifest.directory, "/home/coder");
    assert_eq!(manifest.parent_id, None, "a root agent has no parent");
    assert!(
        manifest.derp_map.is_some(),
        "the manifest carries a DERP map"
    );
    let app = manifest
        .apps
        .iter()
        .find(|a| a.slug == "code-server")
        .expect("the app in the manifest");
    let app_id = uuid_of(&app.id);
    assert_eq!(app.url, "http://localhost:13337");
    assert_eq!(manifest.scripts.len(), 1, "{:?}", manifest.scripts);
    let script = &manifest.scripts[0];
    let script_id = uuid_of(&script.id);
    let script_source = uuid_of(&script.log_source_id);
    assert!(script.run_on_start);

    // GetServiceBanner, GetAnnouncementBanners
    within("GetServiceBanner", client.get_service_banner())
        .await
        .unwrap();
    called.insert(rpc_agent::GET_SERVICE_BANNER);
    let banners = within("GetAnnouncementBanners", client.get_announcement_banners())
        .await
        .unwrap();
    called.insert(rpc_agent::GET_ANNOUNCEMENT_BANNERS);
    assert!(banners.announcement_banners.iter().all(|b| !b.enabled));

    // GetResourcesMonitoringConfiguration: a positive interval (it drives
    // a ticker in the agent).
    let monitoring = within(
        "GetResourcesMonitoringConfiguration",
        client.get_resources_monitoring_configuration(),
    )
    .await
    .unwrap();
    called.insert(rpc_agent::GET_RESOURCES_MONITORING_CONFIGURATION);
    let config = monitoring.config.expect("a monitoring config");
    assert!(config.collection_interval_seconds > 0, "{config:?}");
    assert!(config.num_datapoints > 0, "{config:?}");

    // UpdateStartup echoes; UpdateLifecycle echoes.
    let startup = within(
        "UpdateStartup",
        client.update_startup(
            "v2.18.0",
            "/home/coder",
            &[agent::startup::Subsystem::Envbox],
        ),
    )
    .await
    .unwrap();
    called.insert(rpc_agent::UPDATE_STARTUP);
    assert_eq!(startup.version, "v2.18.0");
    assert_eq!(startup.expanded_directory, "/home/coder");
    for state in [
        agent::lifecycle::State::Starting,
        agent::lifecycle::State::Ready,
    ] {
        let lifecycle = within("UpdateLifecycle", client.update_lifecycle(state))
            .await
            .unwrap();
        assert_eq!(lifecycle.state, state as i32);
    }
    called.insert(rpc_agent::UPDATE_LIFECYCLE);

    // UpdateStats: the first call asks for the interval only (30 s by
    // default), later ones carry stats.
    let first = within("UpdateStats", client.update_stats(None))
        .await
        .unwrap();
    assert_eq!(
        first.report_interval,
        Some(prost_types::Duration {
            seconds: 30,
            nanos: 0
        })
    );
    let stats = agent::Stats {
        connection_count: 2,
        rx_bytes: 1000,
        tx_bytes: 2000,
        session_counts: [("ssh".to_string(), 1)].into(),
        ..Default::default()
    };
    within("UpdateStats", client.update_stats(Some(stats)))
        .await
        .unwrap();
    called.insert(rpc_agent::UPDATE_STATS);

    // BatchUpdateAppHealths
    within(
        "BatchUpdateAppHealths",
        client.batch_update_app_healths(&[(app_id, agent::AppHealth::Healthy)]),
    )
    .await
    .unwrap();
    called.insert(rpc_agent::BATCH_UPDATE_APP_HEALTHS);

    // BatchCreateLogs: the script's source and the external one.
    let info = agent::log::Level::Info;
    let logs = within(
        "BatchCreateLogs",
        client.batch_create_logs(
            Some(script_source),
            &[("installing", info), ("done", agent::log::Level::Warn)],
        ),
    )
    .await
    .unwrap();
    assert!(!logs.log_limit_exceeded);
    within(
        "BatchCreateLogs",
        client.batch_create_logs(None, &[("from outside", info)]),
    )
    .await
    .unwrap();
    called.insert(rpc_agent::BATCH_CREATE_LOGS);

    // BatchUpdateMetadata (no metadata declared: nothing to update, no error)
    within(
        "BatchUpdateMetadata",
        client.batch_update_metadata(&[("load", "0.5")]),
    )
    .await
    .unwrap();
    called.insert(rpc_agent::BATCH_UPDATE_METADATA);

    // ScriptCompleted
    let timing = agent::WorkspaceAgentScriptCompletedRequest {
        timing: Some(agent::Timing {
            script_id: script_id.as_bytes().to_vec(),
            start: Some(now()),
            end: Some(now()),
            exit_code: 0,
            stage: agent::timing::Stage::Start as i32,
            status: agent::timing::Status::Ok as i32,
        }),
    };
    let _: agent::WorkspaceAgentScriptCompletedResponse = within(
        "ScriptCompleted",
        client.call(rpc_agent::SCRIPT_COMPLETED, &timing),
    )
    .await
    .unwrap();
    called.insert(rpc_agent::SCRIPT_COMPLETED);

    // PushResourcesMonitoringUsage (an empty request: no datapoints)
    within(
        "PushResourcesMonitoringUsage",
        client.unary(rpc_agent::PUSH_RESOURCES_MONITORING_USAGE, b""),
    )
    .await
    .unwrap();
    called.insert(rpc_agent::PUSH_RESOURCES_MONITORING_USAGE);

    // ReportConnection
    let report = agent::ReportConnectionRequest {
        connection: Some(agent::Connection {
            id: Uuid::new_v4().as_bytes().to_vec(),
            action: agent::connection::Action::Connect as i32,
            r#type: agent::connection::Type::Ssh as i32,
            timestamp: Some(now()),
            ip: "127.0.0.1".into(),
            status_code: 0,
            reason: None,
            app_name: String::new(),
        }),
    };
    let () = within(
        "ReportConnection",
        client.call(rpc_agent::REPORT_CONNECTION, &report),
    )
    .await
    .unwrap();
    called.insert(rpc_agent::REPORT_CONNECTION);

    // Sub-agents: none yet; create and delete with empty requests are
    // answered (an error or not), never by breaking the session.
    let subs: agent::ListSubAgentsResponse = within(
        "ListSubAgents",
        client.call(rpc_agent::LIST_SUB_AGENTS, &()),
    )
    .await
    .unwrap();
    called.insert(rpc_agent::LIST_SUB_AGENTS);
    assert!(subs.agents.is_empty(), "{subs:?}");
    for rpc in [rpc_agent::CREATE_SUB_AGENT, rpc_agent::DELETE_SUB_AGENT] {
        let answer = within(rpc, client.unary(rpc, b"")).await;
        if let Err(e) = &answer {
            assert_ne!(e.code, CallError::TRANSPORT, "{rpc}: {e}");
        }
        called.insert(rpc);
    }

    // ReportBoundaryLogs (an empty request)
    within(
        "ReportBoundaryLogs",
        client.unary(rpc_agent::REPORT_BOUNDARY_LOGS, b""),
    )
    .await
    .unwrap();
    called.insert(rpc_agent::REPORT_BOUNDARY_LOGS);

    // UpdateAppStatus
    let status = agent::UpdateAppStatusRequest {
        slug: "code-server".into(),
        state: agent::update_app_status_request::AppStatusState::Working as i32,
        message: "compiling".into(),
        uri: String::new(),
    };
    let _: agent::UpdateAppStatusResponse = within(
        "UpdateAppStatus",
        client.call(rpc_agent::UPDATE_APP_STATUS, &status),
    )
    .await
    .unwrap();
    called.insert(rpc_agent::UPDATE_APP_STATUS);

    // PushContextState: Unimplemented, which stops the agent's loop cleanly.
    let err = within(
        "PushContextState",
        client.unary(rpc_agent::PUSH_CONTEXT_STATE, b""),
    )
    .await
    .unwrap_err();
    assert!(err.is_unimplemented(), "{err}");
    called.insert(rpc_agent::PUSH_CONTEXT_STATE);

    // Tailnet StreamDERPMaps: a map at once, the stream stays open.
    let mut derp = within("StreamDERPMaps", client.stream_derp_maps())
        .await
        .unwrap();
    let _map: tailnet::DerpMap = within("the first DERP map", derp.next())
        .await
        .expect("a DERP map")
        .unwrap();
    assert!(
        derp.recv_within(Duration::from_millis(500)).await.is_err(),
        "the DERP map stream stays open"
    );
    called.insert(rpc_tailnet::STREAM_DERP_MAPS);

    // Tailnet Coordinate: the agent publishes its node; the stream stays
    // open and sends no error.
    let (coordinate_out, mut coordinate_in) =
        within("Coordinate", client.coordinate()).await.unwrap();
    let node = tailnet::Node {
        id: 42,
        as_of: Some(now()),
        key: vec![7; 32],
        disco: format!("discokey:{}", "ab".repeat(32)),
        preferred_derp: 999,
        addresses: vec![tailnet_address(&fx.agent_id)],
        allowed_ips: vec![tailnet_address(&fx.agent_id)],
        ..Default::default()
    };
    coordinate_out
        .send(&tailnet::CoordinateRequest {
            update_self: Some(tailnet::coordinate_request::UpdateSelf { node: Some(node) }),
            ..Default::default()
        })
        .await
        .unwrap();
    match coordinate_in.recv_within(Duration::from_secs(1)).await {
        Err(()) => {}
        Ok(Some(Ok(m))) => {
            let response = tailnet::CoordinateResponse::decode(m).expect("a response");
            assert_eq!(response.error, "", "no error for the agent's own node");
        }
        Ok(other) => panic!("Coordinate ended: {other:?}"),
    }
    called.insert(rpc_tailnet::COORDINATE);

    // PostTelemetry, RefreshResumeToken (empty requests)
    for rpc in [
        rpc_tailnet::POST_TELEMETRY,
        rpc_tailnet::REFRESH_RESUME_TOKEN,
    ] {
        within(rpc, client.unary(rpc, b"")).await.unwrap();
        called.insert(rpc);
    }
    // WorkspaceUpdates (a user's call; an agent gets an answer, whatever
    // it is, and the session survives).
    let mut updates = within(
        "WorkspaceUpdates",
        client.server_stream(rpc_tailnet::WORKSPACE_UPDATES, b""),
    )
    .await
    .unwrap();
    if let Ok(Some(Err(e))) = updates.recv_within(Duration::from_secs(1)).await {
        assert_ne!(e.code, CallError::TRANSPORT, "{e}");
    }
    drop(updates);
    called.insert(rpc_tailnet::WORKSPACE_UPDATES);

    let every: BTreeSet<&str> = methods::METHODS.iter().map(|m| m.name).collect();
    assert_eq!(called, every, "every method of both services was called");

    // The session is still up, and the streams are still open.
    within("GetManifest again", client.get_manifest())
        .await
        .unwrap();
    assert!(!client.is_closed());

    // What the REST API shows.
    let a = fx.agent_json();
    assert_eq!(a["status"], "connected", "{a:#}");
    assert_eq!(a["lifecycle_state"], "ready");
    assert_eq!(a["version"], "v2.18.0");
    assert_eq!(a["api_version"], "2.11");
    assert_eq!(a["expanded_directory"], "/home/coder");
    assert_eq!(a["subsystems"], json!(["envbox"]));
    // ScriptCompleted's run, as coderd shows the last script timing.
    let script = &a["scripts"][0];
    assert_eq!(script["id"], script_id.to_string(), "{a:#}");
    assert_eq!(script["exit_code"], 0, "{script:#}");
    assert_eq!(script["status"], "ok", "{script:#}");
    for field in [
        "first_connected_at",
        "last_connected_at",
        "started_at",
        "ready_at",
    ] {
        assert!(a[field].is_string(), "{field} is set: {a:#}");
    }
    let app = a["apps"]
        .as_array()
        .expect("apps")
        .iter()
        .find(|x| x["slug"] == "code-server")
        .expect("the app");
    assert_eq!(app["id"], app_id.to_string());
    assert_eq!(app["health"], "healthy");
    let statuses = app["statuses"].as_array().expect("statuses");
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert_eq!(statuses[0]["message"], "compiling");
    assert_eq!(statuses[0]["state"], "working");

    let logs = fx
        .server
        .get(
            &format!("/api/v2/workspaceagents/{}/logs", fx.agent_id),
            Some(&fx.api_key),
        )
        .ok_json();
    let lines: Vec<(String, String, String)> = logs
        .as_array()
        .expect("log lines")
        .iter()
        .map(|l| {
            (
                l["output"].as_str().expect("output").to_string(),
                l["level"].as_str().expect("level").to_string(),
                l["source_id"].as_str().expect("source_id").to_string(),
            )
        })
        .collect();
    let script_source = script_source.to_string();
    assert_eq!(
        lines[..2],
        [
            ("installing".into(), "info".into(), script_source.clone()),
            ("done".into(), "warn".into(), script_source),
        ],
        "{lines:?}"
    );
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[2].0, "from outside");
    assert_ne!(lines[2].2, lines[0].2, "the external source is another");
    assert!(a["logs_length"].as_u64().expect("logs_length") > 0, "{a:#}");

    drop(coordinate_out);
    drop(coordinate_in);
    drop(derp);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_version_means_2_0() {
    let fx = Setup::new(Options::default());
    let client = fx.connect("").await;
    within("GetManifest", client.get_manifest()).await.unwrap();
    // GetAnnouncementBanners came with 2.1.
    let err = within("GetAnnouncementBanners", client.get_announcement_banners())
        .await
        .unwrap_err();
    assert!(err.is_unimplemented(), "{err}");
    within(
        "UpdateStartup",
        client.update_startup("v2.7.1", "/home/coder", &[]),
    )
    .await
    .unwrap();
    let a = fx.agent_json();
    assert_eq!(a["api_version"], "2.0", "{a:#}");
    assert_eq!(a["version"], "v2.7.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_newer_than_the_connection_is_unimplemented() {
    let fx = Setup::new(Options::default());
    let client = fx.connect("2.3").await;
    // 2.4
    let err = within(
        "GetResourcesMonitoringConfiguration",
        client.get_resources_monitoring_configuration(),
    )
    .await
    .unwrap_err();
    assert!(err.is_unimplemented(), "{err}");
    // 2.8
    let err = within(
        "UpdateAppStatus",
        client.unary(rpc_agent::UPDATE_APP_STATUS, b""),
    )
    .await
    .unwrap_err();
    assert!(err.is_unimplemented(), "{err}");
    // 2.1 is in 2.3.
    within("GetAnnouncementBanners", client.get_announcement_banners())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_versions_are_refused_before_the_upgrade() {
    let fx = Setup::new(Options::default());
    for version in ["3.0", "2.99", "abc", "1.0"] {
        let refused = RpcClient::connect(&fx.base(), &fx.agent_token, version, Some("agent")).await;
        let Err(ConnectError::Refused { status, body }) = refused else {
            panic!("version={version} was not refused");
        };
        assert_eq!(status, 400, "version={version}: {body}");
        let body: Value = serde_json::from_str(&body).expect("a JSON body");
        assert_eq!(
            body["message"], "Unknown or unsupported API version",
            "{body}"
        );
        let validations = body["validations"].as_array().expect("validations");
        assert_eq!(validations.len(), 1, "{body}");
        assert_eq!(validations[0]["field"], "version");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_without_a_valid_token_or_a_websocket() {
    let fx = Setup::new(Options::default());
    for token in ["", "not-a-token", &fx.api_key] {
        let refused = RpcClient::connect(&fx.base(), token, "2.10", Some("agent")).await;
        match refused {
            Err(ConnectError::Refused { status, .. }) => {
                assert_eq!(status, 401, "token {token:?}")
            }
            Err(e) => panic!("token {token:?}: {e}"),
            Ok(_) => panic!("token {token:?} was accepted"),
        }
    }
    // A plain GET (no upgrade) with a good token.
    let resp = fx.server.request(
        "GET",
        "/api/v2/workspaceagents/me/rpc?version=2.10",
        Auth::Header(&fx.agent_token),
    );
    resp.assert_error(400, "Failed to accept websocket.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_methods_are_unimplemented_and_the_session_goes_on() {
    let fx = Setup::new(Options::default());
    let client = fx.connect("2.10").await;
    for rpc in [
        "/coder.agent.v2.Agent/NoSuchMethod",
        "/coder.agent.v3.Agent/GetManifest",
        "nonsense",
    ] {
        let err = within(rpc, client.unary(rpc, b"\x01\x02"))
            .await
            .unwrap_err();
        assert!(err.is_unimplemented(), "{rpc}: {err}");
    }
    within("GetManifest", client.get_manifest()).await.unwrap();
    assert!(!client.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_goes_connecting_connected_disconnected() {
    let fx = Setup::new(quick_timers());
    let a = fx.agent_json();
    assert_eq!(a["status"], "connecting", "{a:#}");
    let client = fx.connect("2.10").await;
    let a = eventually(SETTLE, "connected", || {
        let a = fx.agent_json();
        (a["status"] == "connected").then_some(a)
    })
    .await;
    assert!(a["first_connected_at"].is_string(), "{a:#}");
    assert!(a["last_connected_at"].is_string(), "{a:#}");
    assert!(a.get("disconnected_at").is_none_or(Value::is_null), "{a:#}");
    // Still connected after a few monitor ticks (1 s) and more than the
    // inactivity timeout (2 s): the session answers pings.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(fx.agent_json()["status"], "connected");
    round_trip(&client).await;

    // The agent vanishes (no close frame, no go-away).
    drop(client);
    let a = eventually(SETTLE, "disconnected", || {
        let a = fx.agent_json();
        (a["status"] == "disconnected").then_some(a)
    })
    .await;
    assert!(a["disconnected_at"].is_string(), "{a:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_build_ends_the_old_agents_session() {
    let fx = Setup::new(quick_timers());
    let client = fx.connect("2.10").await;
    round_trip(&client).await;
    let applied = fx.server.apply(MANIFEST);
    let new_id = agent_id(&applied, "main");
    assert_ne!(new_id, fx.agent_id, "a new build has a new agent");
    within("the old session's end", client.closed()).await;
    assert!(client.is_closed());
    let err = within(
        "a call after the end",
        client.unary("/appliance.test/Ping", b""),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, CallError::TRANSPORT, "{err}");
}

/// A manifest larger than two yamux windows (a 700 KiB start script): the
/// server's answer stalls after about 512 KiB, as in
/// `rpc_client_tests::large_responses_come_through`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_over_512_kib_comes_through() {
    let server = TestServer::start();
    server.create_user("alice", "member");
    let script = "x".repeat(700 << 10);
    let manifest = format!(
        "name = \"big\"\nowner = \"alice\"\n[[resources]]\nname = \"vm\"\ntype = \"t\"\n  [[resources.agents]]\n  name = \"main\"\n    [[resources.agents.scripts]]\n    display_name = \"Big\"\n    script = \"{script}\"\n    run_on_start = true\n"
    );
    let applied = server.apply(&manifest);
    let token = agent(&applied, "main")["token"]
        .as_str()
        .expect("agent token")
        .to_string();
    let client = RpcClient::connect(&format!("http://{}", server.addr), &token, "2.10", None)
        .await
        .unwrap();
    let got = within("a 700 KiB manifest", client.get_manifest())
        .await
        .unwrap();
    assert_eq!(got.scripts[0].script.len(), 700 << 10);
}
