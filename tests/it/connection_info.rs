//! `GET /workspaceagents/{id}/connection`, `GET /workspaceagents/connection`
//! and `GET /derp-map`: the DERP map and connection settings from `[derp]`.

use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};
use tungstenite::Message;
use tungstenite::client::IntoClientRequest;

use crate::harness::{Options, TestServer, agent_id};
use crate::logs_support::MANIFEST;

fn server_with(config: &str) -> (TestServer, String, String) {
    let server = TestServer::start_with(Options {
        config: config.to_owned(),
        ..Options::default()
    });
    server.create_user("alice", "member");
    let key = server.token("alice");
    let applied = server.apply(MANIFEST);
    let agent = agent_id(&applied, "main");
    (server, key, agent)
}

fn embedded(server: &TestServer) -> Value {
    let port: i64 = server.addr.port().into();
    json!({"EmbeddedRelay": true, "RegionID": 999, "RegionCode": "coder",
        "RegionName": "Coder Embedded Relay",
        "Nodes": [{"Name": "999b", "RegionID": 999, "HostName": "127.0.0.1",
            "STUNPort": -1, "DERPPort": port, "ForceHTTP": true}]})
}

#[test]
fn connection_info_is_the_embedded_relay_and_the_deployment_settings() {
    let (server, key, agent) = server_with("");
    let body = server
        .get(
            &format!("/api/v2/workspaceagents/{agent}/connection"),
            Some(&key),
        )
        .ok_json();
    assert_eq!(
        body,
        json!({"derp_map": {"Regions": {"999": embedded(&server)}},
            "derp_force_websockets": false, "disable_direct_connections": false,
            "hostname_suffix": "coder"})
    );
    let generic = server
        .get("/api/v2/workspaceagents/connection", Some(&key))
        .ok_json();
    assert_eq!(generic, body, "the sibling route answers the same");
}

#[test]
fn connection_info_follows_the_derp_settings() {
    let (server, key, agent) = server_with(
        "[derp]\nstun_addresses = [\"stun.lan:3478\"]\nforce_websockets = true\nhostname_suffix = \"ws\"\n",
    );
    let body = server
        .get(
            &format!("/api/v2/workspaceagents/{agent}/connection"),
            Some(&key),
        )
        .ok_json();
    assert_eq!(body["derp_force_websockets"], true);
    assert_eq!(body["hostname_suffix"], "ws");
    let nodes = &body["derp_map"]["Regions"]["999"]["Nodes"];
    assert_eq!(
        nodes[1],
        json!({"Name": "999stun0", "RegionID": 999, "HostName": "stun.lan",
            "STUNPort": 3478, "STUNOnly": true})
    );

    let (server, key, agent) = server_with(
        "[derp]\nstun_addresses = [\"stun.lan:3478\"]\ndisable_direct_connections = true\n",
    );
    let body = server
        .get(
            &format!("/api/v2/workspaceagents/{agent}/connection"),
            Some(&key),
        )
        .ok_json();
    assert_eq!(body["disable_direct_connections"], true);
    assert_eq!(
        body["derp_map"]["Regions"]["999"],
        embedded(&server),
        "no STUN node when direct connections are disabled"
    );
}

#[test]
fn the_operators_relays_come_from_derp_map_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("derp.json");
    std::fs::write(
        &file,
        r#"{"Regions": {"7": {"RegionID": 7, "RegionCode": "attic", "RegionName": "Attic",
            "Nodes": [{"Name": "7a", "RegionID": 7, "HostName": "derp.attic.lan", "DERPPort": 443}]}}}"#,
    )
    .unwrap();
    let (server, key, agent) = server_with(&format!(
        "[derp]\nmap_file = {:?}\n",
        file.to_str().unwrap()
    ));
    let body = server
        .get(
            &format!("/api/v2/workspaceagents/{agent}/connection"),
            Some(&key),
        )
        .ok_json();
    assert_eq!(
        body["derp_map"]["Regions"]["7"],
        json!({"EmbeddedRelay": false, "RegionID": 7, "RegionCode": "attic", "RegionName": "Attic",
            "Nodes": [{"Name": "7a", "RegionID": 7, "HostName": "derp.attic.lan", "DERPPort": 443}]})
    );
    assert_eq!(body["derp_map"]["Regions"]["999"], embedded(&server));
}

#[test]
fn a_bad_derp_map_file_stops_the_server_with_the_reason() {
    let sandbox = crate::harness::Sandbox::with_config("[derp]\nmap_file = \"missing.json\"\n");
    let out = sandbox.cli_within(
        Duration::from_secs(20),
        &["serve", "--listen", "127.0.0.1:0"],
    );
    let err = out.assert_failure();
    assert!(err.contains("derp.map_file"), "{err}");
}

#[test]
fn connection_info_refusals_are_coders() {
    let (server, key, agent) = server_with("");
    server.create_user("bob", "member");
    let bob = server.token("bob");
    let path = format!("/api/v2/workspaceagents/{agent}/connection");
    server.get(&path, None).assert_error(
        401,
        "API key or external proxy authentication required, but none provided",
    );
    server.get(&path, Some(&bob)).assert_error(
        404,
        "Agent doesn't exist with that id, or you do not have access to it.",
    );
    server
        .get("/api/v2/workspaceagents/not-a-uuid/connection", Some(&key))
        .assert_error(400, "Invalid UUID \"not-a-uuid\".");
    server
        .get("/api/v2/workspaceagents/connection", None)
        .assert_error(
            401,
            "API key or external proxy authentication required, but none provided",
        );
}

#[test]
fn derp_map_is_a_websocket_of_the_map_without_auth() {
    let (server, _key, _agent) = server_with("");
    let refused = server.get("/api/v2/derp-map", None);
    refused.assert_error(400, "Failed to accept websocket.");

    let url = format!("ws://{}/api/v2/derp-map", server.addr);
    let req = url.as_str().into_client_request().unwrap();
    let stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (mut ws, resp) = tungstenite::client(req, stream).unwrap();
    assert_eq!(resp.status(), 101);
    let Message::Binary(first) = ws.read().unwrap() else {
        panic!("the map comes as a binary message")
    };
    assert_eq!(first.last(), Some(&b'\n'), "JSON and a newline");
    let map: Value = serde_json::from_slice(&first).unwrap();
    assert_eq!(map, json!({"Regions": {"999": embedded(&server)}}));
}

#[test]
fn check_config_shows_the_derp_map_and_refuses_a_bad_one() {
    let sandbox = crate::harness::Sandbox::with_config(
        "access_url = \"https://coder.home.lan\"\n[derp]\nstun_addresses = [\"stun.lan:3478\"]\n",
    );
    let text = sandbox.cli(&["check-config"]);
    let text = text.assert_success();
    assert!(
        text.stdout
            .contains("# region 999 \"coder\" (Coder Embedded Relay)")
            && text
                .stdout
                .contains("#   999b relay https://coder.home.lan:443")
            && text.stdout.contains("#   999stun0 STUN stun.lan:3478"),
        "{}",
        text.stdout
    );
    let json = sandbox.cli(&["check-config", "--output", "json"]).json();
    assert_eq!(
        json["derp_map"]["Regions"]["999"]["Nodes"][0]["DERPPort"],
        443
    );

    let bad = crate::harness::Sandbox::with_config("[derp]\nmap_file = \"nope.json\"\n");
    let err = bad.cli(&["check-config"]);
    let err = err.assert_failure();
    assert!(err.contains("derp.map_file"), "{err}");
}
