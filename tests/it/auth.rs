//! Who may read an agent: session tokens, where they are looked for, and access.

use crate::harness::{Auth, Options, TestServer, agent_id};

const NO_CREDENTIALS: &str = "API key or external proxy authentication required, but none provided";
const NOT_FOUND: &str = "Agent doesn't exist with that id, or you do not have access to it.";

const MANIFEST: &str = r#"
name = "dev"
owner = "alice"

[[resources]]
name = "box"
type = "t"

  [[resources.agents]]
  name = "main"
"#;

/// A server where `alice` owns an agent; returns (server, alice's token, agent path).
fn setup() -> (TestServer, String, String) {
    let server = TestServer::start();
    server.create_user("alice", "member");
    let token = server.token("alice");
    let applied = server.apply(MANIFEST);
    let path = format!("/api/v2/workspaceagents/{}", agent_id(&applied, "main"));
    (server, token, path)
}

#[test]
fn every_token_location_is_accepted() {
    let (server, token, path) = setup();
    for auth in [
        Auth::Cookie(&token),
        Auth::Query(&token),
        Auth::Header(&token),
        Auth::Bearer(&token),
        Auth::AccessToken(&token),
    ] {
        let resp = server.get_with(&path, auth);
        let body = resp.ok_json();
        assert_eq!(body["name"], "main", "{auth:?}");
    }
}

#[test]
fn no_credential_is_401() {
    let (server, _, path) = setup();
    server
        .get_with(&path, Auth::None)
        .assert_error(401, NO_CREDENTIALS);
    server
        .get_with(&path, Auth::Header(""))
        .assert_error(401, NO_CREDENTIALS);
}

#[test]
fn unusable_keys_are_401_like_no_key() {
    let (server, token, path) = setup();
    let (id, secret) = token.split_once('-').expect("id-secret");
    let mut wrong_secret = secret.to_string();
    let last = wrong_secret.pop().expect("char");
    wrong_secret.push(if last == 'a' { 'b' } else { 'a' });
    let cases = [
        ("malformed", "not-a-key".to_string()),
        ("too short", format!("{id}-{}", &secret[1..])),
        ("unknown id", format!("ZZZZZZZZZZ-{secret}")),
        ("wrong secret", format!("{id}-{wrong_secret}")),
    ];
    for (what, bad) in &cases {
        for auth in [Auth::Header(bad), Auth::Bearer(bad), Auth::Cookie(bad)] {
            let resp = server.get_with(&path, auth);
            assert_eq!(resp.status, 401, "{what} via {auth:?}: {}", resp.body);
            resp.assert_error(401, NO_CREDENTIALS);
        }
    }
    // The real key still works.
    server.get(&path, Some(&token)).ok_json();
}

#[test]
fn an_expired_key_is_401() {
    let (server, _, path) = setup();
    let out = server.cli(&["token", "create", "--user", "alice", "--lifetime", "1s"]);
    out.assert_success();
    let short = out.stdout.trim_end().to_string();
    // Time is the subject here: let the one-second key expire.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    server
        .get(&path, Some(&short))
        .assert_error(401, NO_CREDENTIALS);
}

#[test]
fn a_non_uuid_id_is_400_once_authenticated() {
    let (server, token, _) = setup();
    let body = server
        .get("/api/v2/workspaceagents/not-a-uuid", Some(&token))
        .assert_error(400, "Invalid UUID \"not-a-uuid\".");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "the parse error is the detail: {body}"
    );
    // Authentication comes first.
    server
        .get("/api/v2/workspaceagents/not-a-uuid", None)
        .assert_error(401, NO_CREDENTIALS);
    server
        .get(
            "/api/v2/workspaceagents/not-a-uuid",
            Some("ZZZZZZZZZZ-0123456789012345678901"),
        )
        .assert_error(401, NO_CREDENTIALS);
}

#[test]
fn the_id_is_percent_decoded_before_it_is_parsed() {
    // Go's router matches on the decoded path (url.URL.Path; RawPath is only
    // set for non-canonical escapes), so upstream echoes the decoded value.
    let (server, token, _) = setup();
    server
        .get("/api/v2/workspaceagents/not%20a%20uuid", Some(&token))
        .assert_error(400, "Invalid UUID \"not a uuid\".");
}

#[test]
fn another_members_agent_is_404_but_an_admin_reads_it() {
    let (server, _, path) = setup();
    server.create_user("bob", "member");
    let bob = server.token("bob");
    server.get(&path, Some(&bob)).assert_error(404, NOT_FOUND);

    server.create_user("root", "admin");
    let admin = server.token("root");
    assert_eq!(server.get(&path, Some(&admin)).ok_json()["name"], "main");
    // The first admin, created by `serve` on the empty database, too.
    let first_admin = server.token("admin");
    assert_eq!(
        server.get(&path, Some(&first_admin)).ok_json()["name"],
        "main"
    );
}

#[test]
fn an_unknown_agent_is_404() {
    let (server, token, _) = setup();
    let unknown = uuid::Uuid::new_v4();
    server
        .get(&format!("/api/v2/workspaceagents/{unknown}"), Some(&token))
        .assert_error(404, NOT_FOUND);
    let admin = server.token("admin");
    server
        .get(&format!("/api/v2/workspaceagents/{unknown}"), Some(&admin))
        .assert_error(404, NOT_FOUND);
}

#[test]
fn agents_of_earlier_builds_are_gone() {
    let (server, token, build1_path) = setup();
    let build2 = server.apply(MANIFEST);
    assert_eq!(build2["build"]["number"], 2);
    let build2_path = format!("/api/v2/workspaceagents/{}", agent_id(&build2, "main"));
    server
        .get(&build1_path, Some(&token))
        .assert_error(404, NOT_FOUND);
    server.get(&build2_path, Some(&token)).ok_json();
    let admin = server.token("admin");
    server
        .get(&build1_path, Some(&admin))
        .assert_error(404, NOT_FOUND);
}

#[test]
fn a_stopped_workspace_has_no_agents() {
    let (server, token, path) = setup();
    server.cli(&["workspace", "stop", "dev"]).assert_success();
    server.get(&path, Some(&token)).assert_error(404, NOT_FOUND);

    // Starting it again brings new agents; the old ones stay gone.
    let started = server.apply(MANIFEST);
    assert_eq!(started["build"]["number"], 3);
    let new_path = format!("/api/v2/workspaceagents/{}", agent_id(&started, "main"));
    server.get(&new_path, Some(&token)).ok_json();
    server.get(&path, Some(&token)).assert_error(404, NOT_FOUND);
}

#[test]
fn a_deleted_workspace_has_no_agents_and_its_name_can_be_reused() {
    let (server, token, path) = setup();
    server.cli(&["workspace", "delete", "dev"]).assert_success();
    server.get(&path, Some(&token)).assert_error(404, NOT_FOUND);
    let admin = server.token("admin");
    server.get(&path, Some(&admin)).assert_error(404, NOT_FOUND);

    let fresh = server.apply(MANIFEST);
    assert_eq!(fresh["build"]["number"], 1);
    let fresh_path = format!("/api/v2/workspaceagents/{}", agent_id(&fresh, "main"));
    assert_ne!(fresh_path, path);
    assert_eq!(
        server.get(&fresh_path, Some(&token)).ok_json()["status"],
        "connecting"
    );
    server.get(&path, Some(&token)).assert_error(404, NOT_FOUND);
}

#[test]
fn the_first_token_found_wins_in_coders_order() {
    // Cookie, then query, then Coder-Session-Token, then Authorization: an
    // unusable token found first is not rescued by a good one found later.
    let (server, token, path) = setup();
    let bad = "ZZZZZZZZZZ-0123456789012345678901";
    let cookie = |t: &str| format!("coder_session_token={t}");
    let bearer = |t: &str| format!("Bearer {t}");
    let bad_cookie = cookie(bad);
    let good_cookie = cookie(&token);
    let bad_bearer = bearer(bad);
    let good_bearer = bearer(&token);
    let cases: [(&[(&str, &str)], u16); 4] = [
        (
            &[("Cookie", &bad_cookie), ("Coder-Session-Token", &token)],
            401,
        ),
        (
            &[("Cookie", &good_cookie), ("Coder-Session-Token", bad)],
            200,
        ),
        (
            &[
                ("Coder-Session-Token", bad),
                ("Authorization", &good_bearer),
            ],
            401,
        ),
        (
            &[
                ("Coder-Session-Token", &token),
                ("Authorization", &bad_bearer),
            ],
            200,
        ),
    ];
    for (headers, status) in cases {
        let resp = server.get_with(&path, Auth::Headers(headers));
        assert_eq!(resp.status, status, "{headers:?}: {}", resp.body);
    }
    let query_first = server.get_with(
        &format!("{path}?coder_session_token={bad}"),
        Auth::Header(&token),
    );
    query_first.assert_error(401, NO_CREDENTIALS);
}

#[test]
fn tokens_in_the_query_string_are_not_logged() {
    // At `debug`, every request gets a line (at `info` only 5xx do).
    let server = TestServer::start_with(Options {
        env: vec![("APPLIANCE_LOG__FILTER".into(), "debug".into())],
        ..Options::default()
    });
    server.create_user("alice", "member");
    let token = server.token("alice");
    let applied = server.apply(MANIFEST);
    let path = format!("/api/v2/workspaceagents/{}", agent_id(&applied, "main"));
    server.get_with(&path, Auth::Query(&token)).ok_json();
    server.get_with(&path, Auth::AccessToken(&token)).ok_json();
    let secret = token.split_once('-').expect("id-secret").1;
    let log = server.log();
    assert!(
        log.iter().any(|l| l.contains("status=200")),
        "the requests were logged:\n{}",
        log.join("\n")
    );
    assert!(
        !log.iter().any(|l| l.contains(secret)),
        "the key's secret is in the log:\n{}",
        log.join("\n")
    );
}

#[test]
fn credentials_are_not_stored_in_the_clear() {
    let (server, token, _) = setup();
    let applied = server.apply(MANIFEST);
    let agent_token = applied["agents"][0]["token"]
        .as_str()
        .expect("agent token")
        .to_string();
    let secret = token.split_once('-').expect("id-secret").1.to_string();
    // Whatever is on disk now (database, WAL, shared memory), and after a
    // clean shutdown, holds neither the key's secret nor the agent token.
    let sandbox = server.sandbox().clone();
    let scan = |when: &str| {
        for entry in std::fs::read_dir(sandbox.path()).expect("read the sandbox") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                continue; // the manifests and config we wrote
            }
            let bytes = std::fs::read(&path).expect("read a file");
            for (what, needle) in [("API key secret", &secret), ("agent token", &agent_token)] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "{when}: the {what} is stored in the clear in {}",
                    path.display()
                );
            }
        }
    };
    scan("while serving");
    let (status, _) = server.stop();
    assert!(status.success());
    scan("after shutdown");
}
