//! `appliance token list` and `appliance token revoke`: what a listing shows
//! (never a secret), revoking by id or by the whole key, idempotently, and a
//! running server refusing a revoked key at once.

use serde_json::Value;

use crate::harness::{Sandbox, TestServer, agent_id};

const MANIFEST: &str = r#"
name = "dev"
owner = "alice"

[[resources]]
name = "box"
type = "t"

  [[resources.agents]]
  name = "main"
"#;

fn key_id(key: &str) -> &str {
    key.split_once('-').expect("<id>-<secret>").0
}

fn secret(key: &str) -> &str {
    key.split_once('-').expect("<id>-<secret>").1
}

fn create(sb: &Sandbox, user: &str, name: &str) -> String {
    let out = sb.cli(&[
        "token", "create", "--user", user, "--name", name, "--output", "json",
    ]);
    out.json()["token"].as_str().expect("token").to_string()
}

fn listed(sb: &Sandbox, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["token", "list", "--output", "json"];
    all.extend_from_slice(args);
    sb.cli(&all).json().as_array().expect("array").clone()
}

#[test]
fn token_list_shows_every_key_without_its_secret() {
    let sb = Sandbox::new();
    sb.create_user("alice", "member");
    sb.create_user("bob", "admin");
    let laptop = create(&sb, "alice", "laptop");
    let ci = create(&sb, "bob", "ci");

    let all = listed(&sb, &[]);
    assert_eq!(all.len(), 2, "{all:?}");
    let ids: Vec<&str> = all.iter().map(|k| k["id"].as_str().expect("id")).collect();
    assert_eq!(ids, [key_id(&laptop), key_id(&ci)], "by user, then age");
    let first = all[0].as_object().expect("object");
    let mut keys: Vec<&str> = first.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "created_at",
            "expires_at",
            "id",
            "name",
            "revoked_at",
            "status",
            "username"
        ]
    );
    assert_eq!(first["username"], "alice");
    assert_eq!(first["name"], "laptop");
    assert_eq!(first["status"], "active");
    assert!(first["revoked_at"].is_null());
    assert!(first["created_at"].as_str().expect("time").ends_with('Z'));

    let alices = listed(&sb, &["--user", "alice"]);
    assert_eq!(alices.len(), 1);
    assert_eq!(alices[0]["id"], key_id(&laptop));

    let text = sb.cli(&["token", "list"]);
    text.assert_success();
    for word in [
        "ID", "USER", "NAME", "CREATED", "EXPIRES", "STATUS", "laptop", "ci",
    ] {
        assert!(text.stdout.contains(word), "{word}:\n{}", text.stdout);
    }
    for key in [&laptop, &ci] {
        assert!(text.stdout.contains(key_id(key)));
        assert!(
            !text.stdout.contains(secret(key)),
            "no secret:\n{}",
            text.stdout
        );
    }

    let err = sb
        .cli(&["token", "list", "--user", "ghost"])
        .assert_one_line_error()
        .to_string();
    assert!(err.contains("appliance user create ghost"), "{err}");
    let none = Sandbox::new();
    none.create_user("carol", "member");
    let empty = none.cli(&["token", "list"]);
    empty.assert_success();
    assert!(empty.stdout.contains("no API keys"), "{}", empty.stdout);
}

#[test]
fn token_revoke_takes_the_id_or_the_whole_key_and_is_idempotent() {
    let sb = Sandbox::new();
    sb.create_user("alice", "member");
    let a = create(&sb, "alice", "a");
    let b = create(&sb, "alice", "b");

    let out = sb.cli(&["token", "revoke", key_id(&a)]);
    out.assert_success();
    assert!(
        out.stdout.contains("revoked") && out.stdout.contains(key_id(&a)),
        "{}",
        out.stdout
    );
    let again = sb.cli(&["token", "revoke", key_id(&a)]);
    again.assert_success();
    assert!(again.stdout.contains("already revoked"), "{}", again.stdout);

    // The whole key works too; its secret is never printed back.
    let v = sb.cli(&["token", "revoke", &b, "--output", "json"]).json();
    assert_eq!(v["id"], key_id(&b));
    assert_eq!(v["username"], "alice");
    assert_eq!(v["already_revoked"], false);
    assert!(v["revoked_at"].is_string(), "{v}");
    assert!(!v.to_string().contains(secret(&b)), "{v}");

    let all = listed(&sb, &[]);
    assert!(
        all.iter()
            .all(|k| k["status"] == "revoked" && k["revoked_at"].is_string()),
        "{all:?}"
    );

    let err = sb
        .cli(&["token", "revoke", "ZZZZZZZZZZ"])
        .assert_one_line_error()
        .to_string();
    assert!(
        err.contains("ZZZZZZZZZZ") && err.contains("appliance token list"),
        "{err}"
    );
    let err = sb
        .cli(&["token", "revoke", "not a key"])
        .assert_one_line_error()
        .to_string();
    assert!(err.contains("<id>-<secret>"), "{err}");
}

#[test]
fn a_running_server_refuses_a_revoked_key_at_once() {
    let server = TestServer::start();
    server.create_user("alice", "member");
    let key = server.token("alice");
    let other = server.token("alice");
    let path = format!(
        "/api/v2/workspaceagents/{}",
        agent_id(&server.apply(MANIFEST), "main")
    );
    // Twice: the second answer comes from the server's key cache.
    server.get(&path, Some(&key)).ok_json();
    server.get(&path, Some(&key)).ok_json();

    server
        .cli(&["token", "revoke", key_id(&key)])
        .assert_success();
    let body = server.get(&path, Some(&key)).assert_error(
        401,
        "API key or external proxy authentication required, but none provided",
    );
    assert_eq!(body["detail"], "The API key has been revoked.");
    server.get(&path, Some(&other)).ok_json();
}
