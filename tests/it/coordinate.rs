//! `GET /workspaceagents/{id}/coordinate` and `GET /tailnet`: who may
//! coordinate, with which version and resume token (BEHAVIOUR.md §1.16, §1.2).

use crate::harness::{Options, TestServer, agent_id};
use crate::logs_support::MANIFEST;

const NO_KEY: &str = "API key or external proxy authentication required, but none provided";

fn server() -> (TestServer, String, String) {
    let server = TestServer::start_with(Options::default());
    server.create_user("alice", "member");
    let key = server.token("alice");
    let applied = server.apply(MANIFEST);
    (server, key, agent_id(&applied, "main"))
}

#[test]
fn coordinate_refusals_come_in_coders_order() {
    let (server, key, agent) = server();
    server.create_user("bob", "member");
    let bob = server.token("bob");
    let path = format!("/api/v2/workspaceagents/{agent}/coordinate");
    server.get(&path, None).assert_error(401, NO_KEY);
    server.get(&path, Some(&bob)).assert_error(
        404,
        "Agent doesn't exist with that id, or you do not have access to it.",
    );
    server
        .get(
            "/api/v2/workspaceagents/nope/coordinate?version=2.3",
            Some(&key),
        )
        .assert_error(400, "Invalid UUID \"nope\".");
    // No version means 1.0, which is no longer served.
    let body = server
        .get(&path, Some(&key))
        .assert_error(400, "Unknown or unsupported API version");
    assert_eq!(
        body["validations"][0],
        serde_json::json!({"field": "version", "detail": "version 1.0 is no longer supported"})
    );
    let body = server
        .get(&format!("{path}?version=2.12"), Some(&key))
        .assert_error(400, "Unknown or unsupported API version");
    assert_eq!(
        body["validations"][0]["detail"],
        "server is at version 2.11, behind requested minor version 2.12"
    );
    let body = server
        .get(
            &format!("{path}?version=2.3&resume_token=forged.token"),
            Some(&key),
        )
        .assert_error(401, "Invalid resume token");
    assert_eq!(
        body["validations"][0],
        serde_json::json!({"field": "resume_token", "detail": "Invalid resume token"})
    );
    server
        .get(&format!("{path}?version=2.3"), Some(&key))
        .assert_error(400, "Failed to accept websocket.");
    // An admin may coordinate with anyone's agent.
    let admin = server.token("admin");
    server
        .get(&format!("{path}?version=2.3"), Some(&admin))
        .assert_error(400, "Failed to accept websocket.");
}

#[test]
fn tailnet_refusals() {
    let (server, key, _agent) = server();
    server
        .get("/api/v2/tailnet", None)
        .assert_error(401, NO_KEY);
    // No version means 2.0 here.
    server
        .get("/api/v2/tailnet", Some(&key))
        .assert_error(400, "Failed to accept websocket.");
    let body = server
        .get("/api/v2/tailnet?version=3.0", Some(&key))
        .assert_error(400, "Unknown or unsupported API version");
    assert_eq!(body["validations"][0]["field"], "version");
    server
        .get("/api/v2/tailnet?resume_token=x", Some(&key))
        .assert_error(401, "Invalid resume token");
}
