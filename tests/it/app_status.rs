//! `PATCH /api/v2/workspaceagents/me/app-status`: upstream's
//! TestWorkspaceAgentAppStatus (success, unknown app, unknown state, too long)
//! plus sanitising and ordering.

use serde_json::{Value, json};

use crate::harness::TestServer;
use crate::logs_support::{agent_and_token, send};

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
    display_name = "Claude Code"
    url = "http://localhost:3000"

    [[resources.agents.apps]]
    slug = "shell"
    command = "bash"

  [[resources.agents]]
  name = "other"

    [[resources.agents.apps]]
    slug = "elsewhere"
    command = "bash"
"#;

const PATH: &str = "/api/v2/workspaceagents/me/app-status";

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
    fn patch(&self, body: &Value) -> crate::harness::Resp {
        send(
            &self.server,
            "PATCH",
            PATH,
            Some(&self.token),
            body.to_string().as_bytes(),
        )
    }

    fn statuses(&self, slug: &str) -> Vec<Value> {
        let agent = self.server.get_agent(&self.agent, &self.key).ok_json();
        let app = agent["apps"]
            .as_array()
            .expect("apps")
            .iter()
            .find(|a| a["slug"] == slug)
            .unwrap_or_else(|| panic!("no app {slug}"))
            .clone();
        app["statuses"].as_array().expect("statuses").clone()
    }
}

#[test]
fn a_status_is_stored_and_shown_on_the_agent() {
    let fx = setup();
    let resp = fx.patch(&json!({
        "app_slug": "claude",
        "state": "working",
        "message": "Running the tests",
        "uri": "https://ci.example.internal/run/7",
        "icon": "/icon/ignored.svg",
        "needs_user_attention": true,
    }));
    assert_eq!(resp.status, 200, "{}", resp.body);
    let body: Value = serde_json::from_str(&resp.body).expect("json");
    assert!(body["message"].is_string(), "{body}");

    let statuses = fx.statuses("claude");
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    let s = &statuses[0];
    assert_eq!(s["state"], "working");
    assert_eq!(s["message"], "Running the tests");
    assert_eq!(s["uri"], "https://ci.example.internal/run/7");
    assert_eq!(s["agent_id"], fx.agent.as_str());
    assert!(
        s["app_id"].is_string() && s["workspace_id"].is_string(),
        "{s}"
    );
    assert!(fx.statuses("shell").is_empty());
}

#[test]
fn every_report_is_kept_newest_first_and_state_is_case_insensitive() {
    let fx = setup();
    for (state, message) in [("WORKING", "one"), ("Idle", "two"), ("complete", "three")] {
        let resp = fx.patch(&json!({"app_slug": "claude", "state": state, "message": message}));
        assert_eq!(resp.status, 200, "{state}: {}", resp.body);
    }
    let statuses = fx.statuses("claude");
    let got: Vec<(&str, &str)> = statuses
        .iter()
        .map(|s| (s["state"].as_str().unwrap(), s["message"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [("complete", "three"), ("idle", "two"), ("working", "one")]
    );
    // No uri given: none stored.
    assert!(
        statuses[0]
            .get("uri")
            .is_none_or(|u| u.is_null() || u == ""),
        "{}",
        statuses[0]
    );
}

#[test]
fn an_unknown_app_is_refused() {
    let fx = setup();
    // Also another agent's app: slugs are looked up on the calling agent only.
    for slug in ["nope", "elsewhere"] {
        let err = fx
            .patch(&json!({"app_slug": slug, "state": "idle", "message": "x"}))
            .assert_error(400, "Failed to get workspace app.");
        assert_eq!(err["detail"], format!("No app found with slug \"{slug}\""));
    }
}

#[test]
fn an_unknown_or_missing_state_is_refused() {
    let fx = setup();
    let err = fx
        .patch(&json!({"app_slug": "claude", "state": "done", "message": "x"}))
        .assert_error(400, "Failed to parse request.");
    assert_eq!(err["detail"], "Invalid state: done");
    let err = fx
        .patch(&json!({"app_slug": "claude", "message": "x"}))
        .assert_error(400, "Failed to parse request.");
    assert_eq!(err["detail"], "Invalid state: ");
    assert!(fx.statuses("claude").is_empty());
}

#[test]
fn a_message_over_160_bytes_is_refused_and_160_is_fine() {
    let fx = setup();
    let err = fx
        .patch(&json!({"app_slug": "claude", "state": "idle", "message": "a".repeat(161)}))
        .assert_error(400, "Message is too long.");
    assert_eq!(err["detail"], "Message must be less than 160 characters.");
    assert_eq!(err["validations"][0]["field"], "message");
    // Bytes, not characters: 81 two-byte characters are 162 bytes.
    fx.patch(&json!({"app_slug": "claude", "state": "idle", "message": "é".repeat(81)}))
        .assert_error(400, "Message is too long.");
    let resp =
        fx.patch(&json!({"app_slug": "claude", "state": "idle", "message": "a".repeat(160)}));
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(fx.statuses("claude").len(), 1);
}

#[test]
fn messages_are_sanitised_before_storage() {
    let fx = setup();
    let resp = fx.patch(&json!({
        "app_slug": "claude",
        "state": "failure",
        "message": "<b>Build</b>\n\n failed:\t\u{1b}[31mexit 1\u{1b}[0m<script>alert(1)</script>",
    }));
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(fx.statuses("claude")[0]["message"], "Build failed: exit 1");
}

#[test]
fn credentials_and_bodies_are_checked() {
    let fx = setup();
    let body = json!({"app_slug": "claude", "state": "idle", "message": "x"}).to_string();
    let resp = send(&fx.server, "PATCH", PATH, None, body.as_bytes());
    assert_eq!(resp.status, 401, "{}", resp.body);
    // A user's API key is not an agent token.
    let resp = send(&fx.server, "PATCH", PATH, Some(&fx.key), body.as_bytes());
    assert_eq!(resp.status, 401, "{}", resp.body);
    let resp = send(&fx.server, "PATCH", PATH, Some(&fx.token), b"{not json");
    assert_eq!(resp.status, 400, "{}", resp.body);
    let resp = send(&fx.server, "PATCH", PATH, Some(&fx.token), b"[1,2]");
    assert_eq!(resp.status, 400, "{}", resp.body);
}
