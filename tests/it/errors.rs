//! Routing and the shape of every error body.

use crate::harness::{Auth, TestServer};

#[test]
fn healthz_needs_no_credential() {
    let server = TestServer::start();
    let resp = server.get("/healthz", None);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, "OK");
    let with_junk = server.get("/healthz", Some("junk"));
    assert_eq!(with_junk.status, 200, "a bad credential does not matter");
}

#[test]
fn unknown_routes_are_404_route_not_found() {
    let server = TestServer::start();
    let token = server.token("admin");
    // ("/" is the dashboard: tests/it/web.rs.)
    for path in ["/nope", "/api/v2", "/api/v2/definitely-not-a-route"] {
        for auth in [Auth::None, Auth::Header(&token)] {
            let resp = server.get_with(path, auth);
            resp.assert_error(404, "Route not found.");
            assert_eq!(resp.body, "{\"message\":\"Route not found.\"}\n", "{path}");
        }
    }
}

#[test]
fn a_known_path_with_another_method_is_405() {
    let server = TestServer::start();
    let token = server.token("admin");
    let id = uuid::Uuid::new_v4();
    let resp = server.request(
        "POST",
        &format!("/api/v2/workspaceagents/{id}"),
        Auth::Header(&token),
    );
    resp.assert_error(405, "Method not allowed.");
}

#[test]
fn every_error_body_is_a_coder_response_ending_in_a_newline() {
    // assert_error checks the status, the content type, the keys (message,
    // detail?, validations?) and the trailing newline.
    let server = TestServer::start();
    let token = server.token("admin");
    let agents = "/api/v2/workspaceagents";
    server
        .get(&format!("{agents}/{}", uuid::Uuid::new_v4()), None)
        .assert_error(
            401,
            "API key or external proxy authentication required, but none provided",
        );
    server
        .get(&format!("{agents}/x"), Some(&token))
        .assert_error(400, "Invalid UUID \"x\".");
    server
        .get(&format!("{agents}/{}", uuid::Uuid::new_v4()), Some(&token))
        .assert_error(
            404,
            "Agent doesn't exist with that id, or you do not have access to it.",
        );
    server
        .get("/nope", None)
        .assert_error(404, "Route not found.");
}
