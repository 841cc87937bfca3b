//! Prebuilt workspaces and `GET /api/v2/workspaceagents/me/reinit`:
//! upstream's TestReinit (unclaimed prebuild woken by a claim, a claimed
//! prebuild reconnecting, claimed in the past, failed claim, regular
//! workspace) with the claim made by the CLI in another process.

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::harness::TestServer;
use crate::logs_support::agent_and_token;

const PREBUILD: &str = r#"
name = "pool-1"

[[resources]]
name = "vm"
type = "null_resource"

  [[resources.agents]]
  name = "main"
"#;

const REGULAR: &str = r#"
name = "dev"
owner = "alice"

[[resources]]
name = "vm"
type = "null_resource"

  [[resources.agents]]
  name = "main"
"#;

const PATH: &str = "/api/v2/workspaceagents/me/reinit";

/// A server, user alice, and a prebuilt workspace; returns the agent token.
fn prebuilt() -> (TestServer, String, String) {
    let server = TestServer::start();
    let alice = server.create_user("alice", "member");
    let path = server.sandbox().write("pool.toml", PREBUILD);
    let out = server.cli(&[
        "workspace",
        "apply",
        path.to_str().expect("utf-8"),
        "--prebuild",
        "--output",
        "json",
    ]);
    let applied = out.json();
    assert_eq!(applied["workspace"]["owner"], "prebuilds", "{applied}");
    let (_, token) = agent_and_token(&applied, "main");
    let alice_id = alice["id"].as_str().expect("alice's id").to_string();
    (server, token, alice_id)
}

fn claim(server: &TestServer, fail: bool) -> Value {
    let mut args = vec![
        "workspace",
        "claim",
        "pool-1",
        "--owner",
        "alice",
        "--output",
        "json",
    ];
    if fail {
        args.push("--fail");
    }
    server.cli(&args).json()
}

/// What the SSE reader saw: the response head, then each event as
/// (type, data).
enum Seen {
    Head(u16, Vec<(String, String)>),
    Event(String, Option<Value>),
}

/// Opens `GET /me/reinit?QUERY` and reports what arrives on a channel, from a
/// thread (the body never ends on its own).
fn open(server: &TestServer, token: &str, query: &str) -> mpsc::Receiver<Seen> {
    let url = server.url(&format!("{PATH}{query}"));
    let token = token.to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .build()
            .into();
        let Ok(resp) = agent.get(&url).header("Coder-Session-Token", &token).call() else {
            return;
        };
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    v.to_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        let status = resp.status().as_u16();
        if tx.send(Seen::Head(status, headers)).is_err() {
            return;
        }
        let mut lines = BufReader::new(resp.into_body().into_reader()).lines();
        let mut event: Option<String> = None;
        let mut data: Option<Value> = None;
        while let Some(Ok(line)) = lines.next() {
            if let Some(e) = line.strip_prefix("event: ") {
                event = Some(e.to_string());
            } else if let Some(d) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str(d).unwrap_or(Value::String(d.to_string())));
            } else if line.is_empty() {
                let e = event.take().unwrap_or_default();
                if tx.send(Seen::Event(e, data.take())).is_err() {
                    return;
                }
            } else if status == 200 {
                let _ = tx.send(Seen::Event(format!("unexpected line {line:?}"), None));
            }
        }
    });
    rx
}

/// The head of a streaming answer (which arrives with its first event).
fn head(rx: &mpsc::Receiver<Seen>, within: Duration) -> (u16, Vec<(String, String)>) {
    match rx.recv_timeout(within) {
        Ok(Seen::Head(status, headers)) => (status, headers),
        Ok(Seen::Event(e, _)) => panic!("an event {e} before the head"),
        Err(e) => panic!("no answer within {within:?}: {e}"),
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn next_event(rx: &mpsc::Receiver<Seen>, within: Duration) -> (String, Option<Value>) {
    match rx.recv_timeout(within) {
        Ok(Seen::Event(e, d)) => (e, d),
        Ok(Seen::Head(..)) => panic!("a second head"),
        Err(e) => panic!("no event within {within:?}: {e}"),
    }
}

#[test]
fn a_waiting_prebuild_agent_learns_of_a_claim_made_by_the_cli() {
    let (server, token, alice) = prebuilt();
    let rx = open(&server, &token, "?wait=true");
    // Nothing is written before the first event: no head yet.
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "the stream answered before there was an event"
    );
    let claimed = claim(&server, false);
    assert_eq!(claimed["build"]["status"], "succeeded", "{claimed}");
    let (status, headers) = head(&rx, Duration::from_secs(5));
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("text/event-stream"));
    assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
    assert_eq!(header(&headers, "x-accel-buffering"), Some("no"));
    let (event, data) = next_event(&rx, Duration::from_secs(5));
    assert_eq!(event, "data");
    let data = data.expect("event data");
    assert_eq!(data["reason"], "prebuild_claimed");
    assert_eq!(data["owner_id"], alice.as_str());
    assert_eq!(data["workspace_id"], claimed["workspace"]["id"]);
}

#[test]
fn a_claimed_prebuild_agent_reconnecting_gets_the_event_at_once() {
    let (server, token, alice) = prebuilt();
    let claimed = claim(&server, false);
    // The claim keeps the running agents: the same token still works.
    let rx = open(&server, &token, "?wait=true");
    let (status, _) = head(&rx, Duration::from_secs(5));
    assert_eq!(status, 200);
    let (event, data) = next_event(&rx, Duration::from_secs(5));
    assert_eq!(event, "data");
    let data = data.expect("event data");
    assert_eq!(data["owner_id"], alice.as_str());
    assert_eq!(data["workspace_id"], claimed["workspace"]["id"]);
    // The agent now works for alice: her git SSH key, not the prebuilds user's.
    let key = server
        .get("/api/v2/workspaceagents/me/gitsshkey", Some(&token))
        .ok_json();
    let printed = server.cli(&["user", "gitsshkey", "alice"]);
    assert_eq!(
        key["public_key"].as_str().unwrap().trim_end(),
        printed.stdout.trim_end()
    );
    // And the workspace is listed as hers.
    let list = server
        .cli(&["workspace", "list", "--output", "json"])
        .json();
    assert_eq!(list[0]["owner"], "alice", "{list}");
}

#[test]
fn a_failed_claim_is_a_permanent_409() {
    let (server, token, _) = prebuilt();
    let claimed = claim(&server, true);
    assert_eq!(claimed["build"]["status"], "failed", "{claimed}");
    let err = server
        .get(&format!("{PATH}?wait=true"), Some(&token))
        .assert_error(409, "Claim build failed permanently.");
    assert!(
        err["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{err}"
    );
}

#[test]
fn a_claim_handled_by_an_earlier_build_is_a_409() {
    let (server, token, _) = prebuilt();
    claim(&server, false);
    // alice rebuilds her workspace: the claim is in the past. The rebuild
    // replaced the agents (the old token died with them): ask as the new one.
    let applied = server
        .apply(&PREBUILD.replace("name = \"pool-1\"", "name = \"pool-1\"\nowner = \"alice\""));
    let (_, new_token) = agent_and_token(&applied, "main");
    assert_ne!(new_token, token);
    let err = server
        .get(&format!("{PATH}?wait=true"), Some(&new_token))
        .assert_error(
            409,
            "Workspace is not a prebuilt workspace waiting to be claimed.",
        );
    assert_eq!(
        err["detail"],
        "The prebuild claim for this workspace has already been handled by an earlier build."
    );
}

#[test]
fn a_regular_workspace_is_a_409_with_wait() {
    let server = TestServer::start();
    server.create_user("alice", "member");
    let applied = server.apply(REGULAR);
    let (_, token) = agent_and_token(&applied, "main");
    for wait in ["true", "1", "T"] {
        let err = server
            .get(&format!("{PATH}?wait={wait}"), Some(&token))
            .assert_error(
                409,
                "Workspace is not a prebuilt workspace waiting to be claimed.",
            );
        assert_eq!(
            err["detail"],
            "This endpoint is only for agents running in prebuilt workspaces."
        );
    }
    // Without wait (older agents) there is never a 409: it waits.
    let rx = open(&server, &token, "?wait=false");
    assert!(rx.recv_timeout(Duration::from_millis(500)).is_err());
}

#[test]
fn claims_are_checked_by_the_cli() {
    let (server, _, _) = prebuilt();
    let out = server.cli(&["workspace", "claim", "pool-1", "--owner", "nobody"]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("unknown user"), "{}", out.stderr);
    claim(&server, false);
    let out = server.cli(&["workspace", "claim", "pool-1", "--owner", "alice"]);
    assert!(!out.status.success(), "a second claim");
    assert!(
        out.stderr.contains("no prebuilt workspace"),
        "{}",
        out.stderr
    );
    // A prebuild manifest may not name an owner other than the prebuilds user.
    let path = server.sandbox().write("owned.toml", REGULAR);
    let out = server.cli(&["workspace", "apply", path.to_str().unwrap(), "--prebuild"]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("workspace claim"), "{}", out.stderr);
    // The prebuilds user is not a user people can name.
    let out = server.cli(&["token", "create", "--user", "prebuilds"]);
    assert!(!out.status.success());
    let users = server.cli(&["user", "list", "--output", "json"]).json();
    assert!(
        users
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["username"] != "prebuilds"),
        "{users}"
    );
}

#[test]
fn credentials_are_required() {
    let server = TestServer::start();
    let resp = server.get(PATH, None);
    assert_eq!(resp.status, 401, "{}", resp.body);
}
