//! Wire details where appliance must answer as coderd does: 405 with `Allow`,
//! JSON strings with lone UTF-16 surrogates, and `/metrics` route labels
//! taken from the matched route only.

use std::collections::BTreeMap;

use crate::harness::{Auth, Resp, TestServer};
use crate::logs_support::{Fixture, LOG_SOURCE, logs, send};

/// Every route template appliance serves (a sample path) and the methods it
/// answers.
fn routes(agent: &str) -> Vec<(String, &'static str)> {
    let w = "/api/v2/workspaceagents";
    vec![
        ("/healthz".into(), "GET, HEAD"),
        ("/metrics".into(), "GET"),
        (format!("{w}/{agent}"), "GET"),
        (format!("{w}/{agent}/logs"), "GET"),
        (format!("{w}/{agent}/startup-logs"), "GET"),
        (format!("{w}/aws-instance-identity"), "POST"),
        (format!("{w}/azure-instance-identity"), "POST"),
        (format!("{w}/google-instance-identity"), "POST"),
        (format!("{w}/me/log-source"), "POST"),
        (format!("{w}/me/logs"), "PATCH"),
        (format!("{w}/me/app-status"), "PATCH"),
        (format!("{w}/me/external-auth"), "GET"),
        (format!("{w}/me/gitauth"), "GET"),
        (format!("{w}/me/gitsshkey"), "GET"),
        (format!("{w}/me/reinit"), "GET"),
        (format!("{w}/{agent}/listening-ports"), "GET"),
        (format!("{w}/{agent}/containers"), "GET"),
        (format!("{w}/{agent}/containers/watch"), "GET"),
        (format!("{w}/{agent}/containers/devcontainers/d1"), "DELETE"),
        (
            format!("{w}/{agent}/containers/devcontainers/d1/recreate"),
            "POST",
        ),
        (format!("{w}/{agent}/pty"), "GET"),
        (
            "/api/v2/applications/reconnecting-pty-signed-token".into(),
            "POST",
        ),
        ("/external-auth/github".into(), "GET"),
        ("/external-auth/github/callback".into(), "GET"),
        ("/bin/coder-linux-amd64".into(), "GET, HEAD"),
        // The dashboard (tests/it/web.rs).
        ("/".into(), "GET"),
        ("/login".into(), "GET, POST"),
        ("/login/link".into(), "GET, POST"),
        ("/logout".into(), "POST"),
        ("/workspaces".into(), "GET"),
        ("/workspaces/admin/dev".into(), "GET"),
        (format!("/agents/{agent}"), "GET"),
        ("/external-auth".into(), "GET"),
        ("/external-auth/github/unlink".into(), "POST"),
        ("/gitsshkey".into(), "GET"),
        ("/admin/users".into(), "GET, POST"),
        ("/admin/keys".into(), "GET, POST"),
        ("/admin/keys/0123456789/revoke".into(), "POST"),
        ("/static/app.css".into(), "GET"),
    ]
}

#[test]
fn the_sign_in_routes_answer_other_methods_with_405_and_allow_post() {
    let server = TestServer::start();
    let token = server.token("admin");
    for cloud in ["aws", "azure", "google"] {
        let path = format!("/api/v2/workspaceagents/{cloud}-instance-identity");
        for method in ["GET", "PUT", "PATCH", "DELETE"] {
            for auth in [Auth::None, Auth::Header(&token)] {
                let resp = server.request(method, &path, auth);
                resp.assert_error(405, "Method not allowed.");
                assert_eq!(resp.header("allow"), Some("POST"), "{method} {path}");
            }
        }
    }
}

#[test]
fn every_405_names_the_allowed_methods() {
    let server = TestServer::start();
    let token = server.token("admin");
    let agent = uuid::Uuid::new_v4().to_string();
    for (path, allowed) in routes(&agent) {
        let allowed: Vec<&str> = allowed.split(", ").collect();
        for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
            let resp = server.request(method, &path, Auth::Header(&token));
            if allowed.contains(&method) {
                assert_ne!(resp.status, 405, "{method} {path}: {}", resp.body);
                continue;
            }
            assert_eq!(resp.status, 405, "{method} {path}: {}", resp.body);
            if method != "HEAD" {
                resp.assert_error(405, "Method not allowed.");
            }
            assert_eq!(
                resp.header("allow"),
                Some(allowed.join(", ").as_str()),
                "{method} {path}"
            );
        }
    }
    // A path that is no route stays a 404, whatever the method.
    for method in ["GET", "POST", "DELETE"] {
        server
            .request(
                method,
                "/api/v2/workspaceagents/me/nope",
                Auth::Header(&token),
            )
            .assert_error(404, "Route not found.");
    }
}

fn scrape(server: &TestServer) -> BTreeMap<String, f64> {
    let resp = server.get("/metrics", None);
    assert_eq!(resp.status, 200, "{}", resp.body);
    resp.body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

#[test]
fn metrics_label_a_request_with_the_route_it_matched() {
    let fx = Fixture::new();
    let before = scrape(&fx.server);
    // An encoded id still finds the agent; its label is the template, not the path.
    let paths = [
        format!("/api/v2/workspaceagents/%7B{}%7D", fx.agent),
        format!("/api/v2/workspaceagents/{}", fx.agent.replace('-', "")),
        format!("/api/v2/workspaceagents/urn:uuid:{}", fx.agent),
    ];
    for path in &paths {
        let resp = fx.server.get(path, Some(&fx.key));
        assert_eq!(resp.status, 200, "{path}: {}", resp.body);
    }
    let ok = fx.server.get("/external-auth/whatever-provider-id", None);
    assert_ne!(ok.status, 405);
    let after = scrape(&fx.server);
    let series = "appliance_http_requests_total{route=\"/api/v2/workspaceagents/{workspaceagent}\",status=\"200\"}";
    assert_eq!(
        after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0),
        3.0,
        "{after:#?}"
    );
    for key in after.keys() {
        assert!(
            !key.contains(&fx.agent) && !key.contains("%7B") && !key.contains("urn:uuid"),
            "a route label carries a path: {key}"
        );
        assert!(!key.contains("whatever-provider-id"), "{key}");
    }
    assert!(
        after
            .keys()
            .any(|k| k.contains("route=\"/external-auth/{externalauth}\"")),
        "{after:#?}"
    );
}

#[track_caller]
fn post_raw_source(fx: &Fixture, body: &str) -> Resp {
    send(
        &fx.server,
        "POST",
        LOG_SOURCE,
        Some(&fx.token),
        body.as_bytes(),
    )
}

#[test]
fn lone_surrogates_in_json_strings_become_replacement_characters_as_in_go() {
    let fx = Fixture::new();
    let id = uuid::Uuid::new_v4();
    // A lone high, a lone low, a valid pair, an escaped backslash before `u`.
    let body = format!(
        r#"{{"id":"{id}","display_name":"a\ud800b\udc00c\ud83d\ude00d\\ud800e\ud800\ud800","icon":""}}"#
    );
    let resp = post_raw_source(&fx, &body);
    assert_eq!(resp.status, 201, "{}", resp.body);
    assert_eq!(
        resp.json()["display_name"],
        "a\u{fffd}b\u{fffd}c\u{1f600}d\\ud800e\u{fffd}\u{fffd}"
    );
    let sources = fx.agent_json()["log_sources"].clone();
    assert_eq!(
        sources[0]["display_name"],
        "a\u{fffd}b\u{fffd}c\u{1f600}d\\ud800e\u{fffd}\u{fffd}"
    );

    // Every JSON body goes through the same decoder: log lines too.
    let resp = send(
        &fx.server,
        "PATCH",
        "/api/v2/workspaceagents/me/logs",
        Some(&fx.token),
        br#"{"logs":[{"output":"half \udbff of a pair","level":"info"}]}"#,
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    let rows = logs(&fx.server, &fx.agent, &fx.key, "");
    assert_eq!(rows[0]["output"], "half \u{fffd} of a pair");

    // Still refused: what Go refuses too.
    let resp = post_raw_source(&fx, &format!(r#"{{"id":"{id}","display_name":"\ud80"}}"#));
    resp.assert_error(400, "Request body must be valid JSON.");
}
