//! What one agent can make the server keep: field lengths and counts of log
//! sources and app statuses, so that `GET /workspaceagents/{id}` stays small.

use serde_json::{Value, json};

use crate::harness::TestServer;
use crate::logs_support::{agent_and_token, post_source, send};

const MANIFEST: &str = r#"
name = "dev"
owner = "alice"

[[resources]]
name = "vm"
type = "null_resource"

  [[resources.agents]]
  name = "main"

    [[resources.agents.apps]]
    slug = "claude"
    url = "http://localhost:3000"

    [[resources.agents.apps]]
    slug = "shell"
    command = "bash"
"#;

const APP_STATUS: &str = "/api/v2/workspaceagents/me/app-status";

struct Fx {
    server: TestServer,
    key: String,
    agent: String,
    token: String,
}

fn setup() -> Fx {
    let server = TestServer::start();
    server.create_user("alice", "member");
    let key = server.token("alice");
    let applied = server.apply(MANIFEST);
    let (agent, token) = agent_and_token(&applied, "main");
    Fx {
        server,
        key,
        agent,
        token,
    }
}

impl Fx {
    fn agent_json(&self) -> Value {
        self.server.get_agent(&self.agent, &self.key).ok_json()
    }

    fn patch_status(&self, body: &Value) -> crate::harness::Resp {
        send(
            &self.server,
            "PATCH",
            APP_STATUS,
            Some(&self.token),
            body.to_string().as_bytes(),
        )
    }
}

#[track_caller]
fn assert_validation(body: &Value, field: &str) {
    let fields: Vec<&str> = body["validations"]
        .as_array()
        .unwrap_or_else(|| panic!("validations in {body}"))
        .iter()
        .map(|v| v["field"].as_str().expect("field"))
        .collect();
    assert_eq!(fields, [field], "{body}");
}

#[test]
fn a_log_source_icon_over_2048_bytes_is_refused() {
    let fx = setup();
    let id = uuid::Uuid::new_v4().to_string();
    let body = post_source(
        &fx.server,
        &fx.token,
        &json!({"id": id, "display_name": "big", "icon": "x".repeat(100_000)}),
    )
    .assert_error(400, "Icon is too long.");
    assert_validation(&body, "icon");
    let body = post_source(
        &fx.server,
        &fx.token,
        &json!({"id": id, "display_name": "big", "icon": "x".repeat(2049)}),
    )
    .assert_error(400, "Icon is too long.");
    assert_validation(&body, "icon");
    assert!(
        fx.agent_json()["log_sources"]
            .as_array()
            .expect("sources")
            .is_empty()
    );
    let resp = post_source(
        &fx.server,
        &fx.token,
        &json!({"id": id, "display_name": "fits", "icon": "x".repeat(2048)}),
    );
    assert_eq!(resp.status, 201, "{}", resp.body);
    // Display names are still cut at 127 characters, as upstream.
    let long = uuid::Uuid::new_v4().to_string();
    let resp = post_source(
        &fx.server,
        &fx.token,
        &json!({"id": long, "display_name": "é".repeat(300), "icon": ""}),
    );
    assert_eq!(resp.status, 201, "{}", resp.body);
    assert_eq!(resp.json()["display_name"], "é".repeat(127));
}

#[test]
fn an_agent_has_at_most_64_log_sources_and_reposting_one_still_works() {
    let fx = setup();
    let ids: Vec<String> = (0..64).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    for (i, id) in ids.iter().enumerate() {
        let resp = post_source(
            &fx.server,
            &fx.token,
            &json!({"id": id, "display_name": format!("s{i}"), "icon": "/icon/x.svg"}),
        );
        assert_eq!(resp.status, 201, "source {i}: {}", resp.body);
    }
    let body = post_source(
        &fx.server,
        &fx.token,
        &json!({"id": uuid::Uuid::new_v4(), "display_name": "one too many", "icon": ""}),
    )
    .assert_error(400, "Too many log sources.");
    assert_validation(&body, "id");
    // Registering a known source again is idempotent, full or not.
    let resp = post_source(
        &fx.server,
        &fx.token,
        &json!({"id": ids[3], "display_name": "s3", "icon": "/icon/x.svg"}),
    );
    assert_eq!(resp.status, 201, "{}", resp.body);
    let sources = fx.agent_json()["log_sources"]
        .as_array()
        .expect("sources")
        .len();
    assert_eq!(sources, 64);
}

#[test]
fn an_app_status_uri_over_2048_bytes_is_refused() {
    let fx = setup();
    for uri in ["x".repeat(100_000), "x".repeat(2049)] {
        let body = fx
            .patch_status(
                &json!({"app_slug": "claude", "state": "working", "message": "m", "uri": uri}),
            )
            .assert_error(400, "URI is too long.");
        assert_validation(&body, "uri");
    }
    let resp = fx.patch_status(
        &json!({"app_slug": "claude", "state": "working", "message": "m", "uri": "x".repeat(2048)}),
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
}

#[test]
fn an_agent_keeps_its_newest_100_app_statuses() {
    let fx = setup();
    // Spread over two apps: the bound is per agent.
    for i in 0..105 {
        let slug = if i % 2 == 0 { "claude" } else { "shell" };
        let resp = fx.patch_status(
            &json!({"app_slug": slug, "state": "working", "message": format!("report {i}")}),
        );
        assert_eq!(resp.status, 200, "report {i}: {}", resp.body);
    }
    let agent = fx.agent_json();
    let mut kept: Vec<(String, String)> = Vec::new();
    for app in agent["apps"].as_array().expect("apps") {
        for s in app["statuses"].as_array().expect("statuses") {
            kept.push((
                s["created_at"].as_str().expect("created_at").to_string(),
                s["message"].as_str().expect("message").to_string(),
            ));
        }
    }
    assert_eq!(kept.len(), 100, "{kept:?}");
    let mut messages: Vec<&str> = kept.iter().map(|(_, m)| m.as_str()).collect();
    messages.sort_by_key(|m| m["report ".len()..].parse::<u32>().expect("number"));
    let expected: Vec<String> = (5..105).map(|i| format!("report {i}")).collect();
    assert_eq!(messages, expected, "the five oldest were dropped");
}

#[test]
fn a_manifest_is_held_to_coders_column_lengths() {
    let server = TestServer::start();
    server.create_user("alice", "member");
    let manifest = MANIFEST.replace(
        "slug = \"shell\"",
        &format!("slug = \"shell\"\n    icon = \"/{}\"", "i".repeat(256)),
    );
    let out = server.apply_raw("long.toml", &manifest);
    let stderr = out.assert_failure();
    assert!(
        stderr.contains(
            "resources[0].agents[0].apps[1].icon: is 257 characters long; at most 256 are allowed"
        ),
        "{stderr}"
    );
    let fits = MANIFEST.replace(
        "slug = \"shell\"",
        &format!("slug = \"shell\"\n    icon = \"/{}\"", "i".repeat(255)),
    );
    server.apply(&fits);
}
