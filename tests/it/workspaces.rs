//! `workspace list / show / stop / delete`.

use serde_json::Value;

use crate::harness::{Sandbox, agent_id};

fn manifest(owner: &str, name: &str) -> String {
    format!(
        r#"name = "{name}"
owner = "{owner}"

[[resources]]
name = "box"
type = "t"

  [[resources.agents]]
  name = "main"

    [[resources.agents.children]]
    name = "sub"
"#
    )
}

#[test]
fn list_shows_live_workspaces_with_their_latest_build() {
    let sb = Sandbox::new();
    sb.create_user("alice", "member");
    sb.create_user("bob", "member");
    let empty = sb.cli(&["workspace", "list", "--output", "json"]).json();
    assert_eq!(empty, Value::Array(vec![]));

    let a = sb.apply(&manifest("alice", "dev"));
    sb.apply(&manifest("alice", "dev"));
    let b = sb.apply(&manifest("bob", "ci"));
    sb.cli(&["workspace", "stop", "ci"]).assert_success();

    let json = sb.cli(&["workspace", "list", "--output", "json"]).json();
    let rows = json.as_array().expect("array");
    assert_eq!(rows.len(), 2, "{json:#}");
    assert_eq!(rows[0]["owner"], "alice");
    assert_eq!(rows[0]["name"], "dev");
    assert_eq!(rows[0]["id"], a["workspace"]["id"]);
    assert_eq!(rows[0]["latest_build"]["number"], 2);
    assert_eq!(rows[0]["latest_build"]["transition"], "start");
    assert_eq!(rows[0]["agents"], 2, "root and sub-agent of build 2 only");
    assert_eq!(rows[1]["owner"], "bob");
    assert_eq!(rows[1]["id"], b["workspace"]["id"]);
    assert_eq!(rows[1]["latest_build"]["number"], 2);
    assert_eq!(rows[1]["latest_build"]["transition"], "stop");
    assert_eq!(rows[1]["agents"], 0, "a stopped workspace has no agents");

    let text = sb.cli(&["workspace", "list"]);
    text.assert_success();
    let lines: Vec<Vec<&str>> = text
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 3, "{}", text.stdout);
    assert_eq!(lines[0], ["OWNER", "NAME", "BUILD", "STATE", "AGENTS"]);
    assert_eq!(lines[1], ["alice", "dev", "2", "start", "2"]);
    assert_eq!(lines[2], ["bob", "ci", "2", "stop", "0"]);
}

#[test]
fn show_prints_the_latest_build_and_its_agents() {
    let sb = Sandbox::new();
    sb.create_user("alice", "member");
    sb.apply(&manifest("alice", "dev"));
    let applied = sb.apply(&manifest("alice", "dev"));

    let json = sb
        .cli(&["workspace", "show", "dev", "--output", "json"])
        .json();
    assert_eq!(json["workspace"], applied["workspace"]);
    assert_eq!(json["build"]["id"], applied["build"]["id"]);
    assert_eq!(json["build"]["number"], 2);
    assert_eq!(json["build"]["transition"], "start");
    assert!(
        json["build"]["created_at"]
            .as_str()
            .expect("time")
            .ends_with('Z')
    );
    let agents = json["agents"].as_array().expect("agents");
    assert_eq!(agents.len(), 2, "{json:#}");
    let main = agent_id(&applied, "main");
    assert_eq!(agents[0]["id"], main.as_str(), "roots first");
    assert_eq!(agents[0]["parent_id"], Value::Null);
    assert_eq!(agents[0]["auth"], "token");
    assert_eq!(agents[0]["resource"], "box");
    assert_eq!(agents[1]["name"], "sub");
    assert_eq!(agents[1]["parent_id"], main.as_str());
    assert!(
        agents.iter().all(|a| a.get("token").is_none()),
        "tokens are shown once, at apply"
    );

    let with_owner = sb
        .cli(&[
            "workspace",
            "show",
            "dev",
            "--owner",
            "alice",
            "--output",
            "json",
        ])
        .json();
    assert_eq!(with_owner, json);

    let text = sb.cli(&["workspace", "show", "dev"]);
    text.assert_success();
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "workspace alice/dev ({})",
            applied["workspace"]["id"].as_str().expect("id")
        )
    );
    assert!(
        lines[1].starts_with("latest build #2 start at "),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains(&main), "{}", text.stdout);
}

#[test]
fn show_of_an_unknown_workspace_fails() {
    let sb = Sandbox::new();
    sb.create_user("alice", "member");
    let line = sb
        .cli(&["workspace", "show", "nope"])
        .assert_one_line_error()
        .to_string();
    assert!(line.contains("\"nope\""), "{line}");
    assert!(line.contains("appliance workspace list"), "{line}");
    let line = sb
        .cli(&["workspace", "show", "nope", "--owner", "alice"])
        .assert_one_line_error()
        .to_string();
    assert!(
        line.contains("\"alice\"") && line.contains("\"nope\""),
        "{line}"
    );
    let line = sb
        .cli(&["workspace", "show", "nope", "--owner", "ghost"])
        .assert_one_line_error()
        .to_string();
    assert!(line.contains("appliance user create ghost"), "{line}");
}

#[test]
fn the_same_name_under_two_owners_needs_owner() {
    let sb = Sandbox::new();
    sb.create_user("bob", "member");
    sb.create_user("alice", "member");
    let a = sb.apply(&manifest("alice", "dev"));
    let b = sb.apply(&manifest("bob", "dev"));
    assert_ne!(a["workspace"]["id"], b["workspace"]["id"]);
    assert_eq!(b["build"]["number"], 1, "builds count per workspace");

    for command in ["show", "stop", "delete"] {
        let out = sb.cli(&["workspace", command, "dev"]);
        let line = out.assert_one_line_error();
        assert!(line.contains("--owner"), "{command}: {line}");
        assert!(
            line.contains("alice, bob"),
            "{command} lists the owners: {line}"
        );
    }
    let shown = sb
        .cli(&[
            "workspace",
            "show",
            "dev",
            "--owner",
            "bob",
            "--output",
            "json",
        ])
        .json();
    assert_eq!(shown["workspace"]["id"], b["workspace"]["id"]);
    // Nothing was stopped or deleted by the refused commands.
    let list = sb.cli(&["workspace", "list", "--output", "json"]).json();
    assert_eq!(list.as_array().expect("list").len(), 2);
    assert!(
        list.as_array()
            .expect("list")
            .iter()
            .all(|w| w["latest_build"]["number"] == 1)
    );
}

#[test]
fn stop_records_a_stop_build_without_agents() {
    let sb = Sandbox::new();
    sb.create_user("alice", "member");
    let applied = sb.apply(&manifest("alice", "dev"));
    let out = sb.cli(&["workspace", "stop", "dev"]);
    out.assert_success();
    assert_eq!(
        out.stdout.trim_end(),
        "workspace alice/dev stopped (build #2)"
    );
    let shown = sb
        .cli(&["workspace", "show", "dev", "--output", "json"])
        .json();
    assert_eq!(shown["build"]["number"], 2);
    assert_eq!(shown["build"]["transition"], "stop");
    assert_eq!(shown["agents"], Value::Array(vec![]));

    let restarted = sb.apply(&manifest("alice", "dev"));
    assert_eq!(restarted["build"]["number"], 3);
    assert_eq!(restarted["workspace"]["id"], applied["workspace"]["id"]);

    let json = sb
        .cli(&[
            "workspace",
            "stop",
            "dev",
            "--owner",
            "alice",
            "--output",
            "json",
        ])
        .json();
    assert_eq!(json["workspace"], applied["workspace"]);
    assert_eq!(json["build"]["number"], 4);
}

#[test]
fn delete_removes_the_workspace_and_frees_its_name() {
    let sb = Sandbox::new();
    sb.create_user("alice", "member");
    let applied = sb.apply(&manifest("alice", "dev"));
    let json = sb
        .cli(&["workspace", "delete", "dev", "--output", "json"])
        .json();
    assert_eq!(json["workspace"], applied["workspace"]);
    assert_eq!(json["build"]["number"], 2);

    let list = sb.cli(&["workspace", "list", "--output", "json"]).json();
    assert_eq!(list, Value::Array(vec![]));
    sb.cli(&["workspace", "show", "dev"])
        .assert_one_line_error();
    sb.cli(&["workspace", "delete", "dev"])
        .assert_one_line_error();

    let fresh = sb.apply(&manifest("alice", "dev"));
    assert_ne!(fresh["workspace"]["id"], applied["workspace"]["id"]);
    assert_eq!(
        fresh["build"]["number"], 1,
        "a new workspace starts at build 1"
    );

    let text = sb.cli(&["workspace", "delete", "dev", "--owner", "alice"]);
    text.assert_success();
    assert_eq!(
        text.stdout.trim_end(),
        "workspace alice/dev deleted (build #2)"
    );
}

#[test]
fn workspace_names_are_unique_per_owner_regardless_of_case() {
    // Upstream: UNIQUE INDEX workspaces_owner_id_lower_idx ON workspaces
    // (owner_id, lower(name)); subdomain app hosts (<slug>--<workspace>--<owner>)
    // are case-insensitive too. Applying "Dev" next to "dev" must not make a
    // second live workspace (refusing, or building "dev" again, are both fine).
    let sb = Sandbox::new();
    sb.create_user("alice", "member");
    sb.apply(&manifest("alice", "dev"));
    let path = sb.write("upper.toml", &manifest("alice", "Dev"));
    let _ = sb.cli(&["workspace", "apply", path.to_str().expect("utf-8")]);
    let list = sb.cli(&["workspace", "list", "--output", "json"]).json();
    assert_eq!(list.as_array().expect("list").len(), 1, "{list:#}");
}
