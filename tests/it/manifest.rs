//! `workspace apply`: what it records and prints, and how it refuses bad manifests.

use std::collections::BTreeSet;

use serde_json::Value;
use uuid::Uuid;

use crate::harness::{Sandbox, agent};

/// A sandbox with the member `alice`.
fn sandbox() -> Sandbox {
    let sb = Sandbox::new();
    sb.create_user("alice", "member");
    sb
}

const TWO_ROOTS_AND_A_CHILD: &str = r#"
name = "dev"
owner = "alice"

[[resources]]
name = "vm"
type = "aws_instance"
instance_id = "i-0123456789abcdef0"

  [[resources.agents]]
  name = "main"
  auth = "token"

    [[resources.agents.children]]
    name = "devcontainer"

  [[resources.agents]]
  name = "cloud"
  auth = "aws-instance-identity"
"#;

fn sorted_keys(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("object: {v}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

fn agent_ids(applied: &Value) -> BTreeSet<String> {
    applied["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .map(|a| a["id"].as_str().expect("id").to_string())
        .collect()
}

#[test]
fn apply_json_describes_workspace_build_and_agents() {
    let sb = sandbox();
    let v = sb.apply(TWO_ROOTS_AND_A_CHILD);
    assert_eq!(sorted_keys(&v), ["agents", "build", "workspace"]);
    assert_eq!(sorted_keys(&v["workspace"]), ["id", "name", "owner"]);
    assert_eq!(v["workspace"]["name"], "dev");
    assert_eq!(v["workspace"]["owner"], "alice");
    Uuid::parse_str(v["workspace"]["id"].as_str().expect("id")).expect("workspace id");
    assert_eq!(sorted_keys(&v["build"]), ["id", "number"]);
    assert_eq!(v["build"]["number"], 1);
    Uuid::parse_str(v["build"]["id"].as_str().expect("id")).expect("build id");

    let agents = v["agents"].as_array().expect("agents");
    assert_eq!(agents.len(), 3);
    let main = agent(&v, "main");
    assert_eq!(
        sorted_keys(main),
        ["auth", "id", "name", "parent_id", "start", "token"]
    );
    assert_eq!(main["auth"], "token");
    assert_eq!(sorted_keys(&main["start"]), ["cloud_init", "shell"]);
    assert_eq!(main["parent_id"], Value::Null);
    let token = main["token"].as_str().expect("token");
    let parsed = Uuid::parse_str(token).expect("agent token is a UUID");
    assert_eq!(parsed.get_version_num(), 4, "UUIDv4");
    assert_eq!(token, parsed.hyphenated().to_string(), "canonical spelling");

    let cloud = agent(&v, "cloud");
    assert_eq!(
        sorted_keys(cloud),
        ["auth", "id", "name", "parent_id", "start"],
        "no token for instance identity"
    );
    assert_eq!(cloud["auth"], "aws-instance-identity");
    assert_eq!(cloud["parent_id"], Value::Null);

    let child = agent(&v, "devcontainer");
    assert_eq!(
        child["parent_id"], main["id"],
        "a sub-agent's parent is its root"
    );
    assert_eq!(child["auth"], "token", "token auth by default");
    assert!(child["token"].is_string());
    assert_ne!(child["token"], main["token"]);
    assert_eq!(agent_ids(&v).len(), 3, "distinct ids");
}

#[test]
fn apply_text_output_shows_build_agents_and_tokens_once() {
    let sb = sandbox();
    let path = sb.write("m.toml", TWO_ROOTS_AND_A_CHILD);
    let out = sb.cli(&["workspace", "apply", path.to_str().expect("utf-8")]);
    out.assert_success();
    let first = out.stdout.lines().next().expect("a line");
    assert_eq!(first, "workspace alice/dev build #1 (3 agents)");
    assert_eq!(
        out.stdout.matches("token (shown once): ").count(),
        2,
        "one token line per token agent:\n{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("auth=aws-instance-identity"),
        "{}",
        out.stdout
    );
}

#[test]
fn reapplying_records_build_two_with_new_agents_and_tokens() {
    let sb = sandbox();
    let first = sb.apply(TWO_ROOTS_AND_A_CHILD);
    let second = sb.apply(TWO_ROOTS_AND_A_CHILD);
    assert_eq!(second["build"]["number"], 2);
    assert_eq!(
        second["workspace"]["id"], first["workspace"]["id"],
        "same workspace"
    );
    assert_ne!(second["build"]["id"], first["build"]["id"]);
    assert!(
        agent_ids(&first).is_disjoint(&agent_ids(&second)),
        "every build has new agent ids"
    );
    assert_ne!(
        agent(&first, "main")["token"],
        agent(&second, "main")["token"]
    );
    assert_eq!(
        agent(&second, "devcontainer")["parent_id"],
        agent(&second, "main")["id"],
        "the child points at the new root"
    );
    let third = sb.apply(TWO_ROOTS_AND_A_CHILD);
    assert_eq!(third["build"]["number"], 3);
}

#[test]
fn json_manifests_are_accepted() {
    let sb = sandbox();
    let manifest = r#"{
  "name": "json-ws",
  "owner": "alice",
  "resources": [
    {"name": "box", "type": "docker_container",
     "agents": [{"name": "main", "env": {"A": "1"},
                 "apps": [{"slug": "web", "url": "http://localhost:8080"}],
                 "children": [{"name": "kid"}]}]}
  ]
}
"#;
    let v = sb.apply_raw("ws.json", manifest).json();
    assert_eq!(v["workspace"]["name"], "json-ws");
    assert_eq!(v["build"]["number"], 1);
    assert_eq!(agent(&v, "kid")["parent_id"], agent(&v, "main")["id"]);
    assert!(agent(&v, "main")["token"].is_string());
}

#[test]
fn the_example_manifests_apply() {
    let sb = Sandbox::new();
    sb.create_user("admin", "admin");
    let root = env!("CARGO_MANIFEST_DIR");
    for example in ["single-agent.toml", "aws-multi-agent.toml"] {
        let path = format!("{root}/config/examples/{example}");
        let out = sb.cli(&["workspace", "apply", &path, "--output", "json"]);
        let v = out.json();
        assert_eq!(v["build"]["number"], 1, "{example}");
        assert_eq!(v["workspace"]["owner"], "admin", "{example}");
    }
}

/// Applies `manifest` from `bad.toml` and returns (path, stderr), asserting failure.
fn refused(sb: &Sandbox, manifest: &str) -> (String, String) {
    let out = sb.apply_raw("bad.toml", manifest);
    let stderr = out.assert_failure().to_string();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(out.stdout, "", "nothing applied, nothing printed");
    let path = sb
        .path()
        .join("bad.toml")
        .to_str()
        .expect("utf-8")
        .to_string();
    (path, stderr)
}

/// Asserts stderr has a line `FILE:LINE: KEY: ...` containing every `words`.
#[track_caller]
fn assert_problem(stderr: &str, file: &str, line: usize, key: &str, words: &[&str]) {
    let prefix = format!("{file}:{line}: {key}: ");
    let found = stderr
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{stderr}"));
    for w in words {
        assert!(found.contains(w), "{w:?} in {found:?}");
    }
}

/// Asserts nothing was recorded.
#[track_caller]
fn assert_no_workspaces(sb: &Sandbox) {
    let list = sb.cli(&["workspace", "list", "--output", "json"]).json();
    assert_eq!(list, Value::Array(vec![]), "nothing was recorded");
}

#[test]
fn duplicate_agent_names_are_refused_with_file_line_and_key() {
    let sb = sandbox();
    let (file, stderr) = refused(
        &sb,
        r#"name = "dev"
owner = "alice"

[[resources]]
name = "a"
type = "t"

  [[resources.agents]]
  name = "main"

[[resources]]
name = "b"
type = "t"

  [[resources.agents]]
  name = "main"
"#,
    );
    assert!(stderr.contains("invalid manifest"), "{stderr}");
    assert_problem(
        &stderr,
        &file,
        16,
        "resources[1].agents[0].name",
        &["\"main\"", "resources[0].agents[0]", "unique"],
    );
    assert_no_workspaces(&sb);
}

#[test]
fn a_sub_agent_may_not_reuse_a_root_agents_name() {
    let sb = sandbox();
    let (file, stderr) = refused(
        &sb,
        r#"name = "dev"
owner = "alice"

[[resources]]
name = "a"
type = "t"

  [[resources.agents]]
  name = "main"

    [[resources.agents.children]]
    name = "main"
"#,
    );
    assert_problem(
        &stderr,
        &file,
        12,
        "resources[0].agents[0].children[0].name",
        &["\"main\"", "unique"],
    );
}

#[test]
fn bad_auth_value_lists_the_allowed_ones() {
    let sb = sandbox();
    let (file, stderr) = refused(
        &sb,
        r#"name = "dev"
owner = "alice"

[[resources]]
name = "a"
type = "t"

  [[resources.agents]]
  name = "main"
  auth = "password"
"#,
    );
    assert_problem(
        &stderr,
        &file,
        10,
        "resources[0].agents[0].auth",
        &[
            "\"password\"",
            "\"token\"",
            "\"aws-instance-identity\"",
            "\"azure-instance-identity\"",
            "\"google-instance-identity\"",
        ],
    );
    assert_no_workspaces(&sb);
}

#[test]
fn instance_identity_without_instance_id_is_refused() {
    let sb = sandbox();
    let (file, stderr) = refused(
        &sb,
        r#"name = "dev"
owner = "alice"

[[resources]]
name = "a"
type = "google_compute_instance"

  [[resources.agents]]
  name = "main"
  auth = "google-instance-identity"
"#,
    );
    assert_problem(
        &stderr,
        &file,
        10,
        "resources[0].agents[0].auth",
        &["instance_id", "\"token\""],
    );
}

#[test]
fn a_sub_agent_cannot_use_instance_identity() {
    // Upstream's instance-identity lookup only considers root agents
    // (`parent_id IS NULL`), and apply mints no token for such an agent: a
    // sub-agent with instance-identity auth could never sign in.
    let sb = sandbox();
    let (file, stderr) = refused(
        &sb,
        r#"name = "dev"
owner = "alice"

[[resources]]
name = "vm"
type = "aws_instance"
instance_id = "i-0abc"

  [[resources.agents]]
  name = "main"
  auth = "aws-instance-identity"

    [[resources.agents.children]]
    name = "kid"
    auth = "aws-instance-identity"
"#,
    );
    assert_problem(
        &stderr,
        &file,
        15,
        "resources[0].agents[0].children[0].auth",
        &["\"token\""],
    );
    assert_no_workspaces(&sb);
}

#[test]
fn bad_app_slug_is_refused() {
    let sb = sandbox();
    let (file, stderr) = refused(
        &sb,
        r#"name = "dev"
owner = "alice"

[[resources]]
name = "a"
type = "t"

  [[resources.agents]]
  name = "main"

    [[resources.agents.apps]]
    slug = "Code_Server"
    url = "http://localhost:8080"
"#,
    );
    assert_problem(
        &stderr,
        &file,
        12,
        "resources[0].agents[0].apps[0].slug",
        &[
            "\"Code_Server\"",
            "lowercase letters, digits and single hyphens",
        ],
    );
}

#[test]
fn duplicate_app_slug_is_refused() {
    let sb = sandbox();
    let (file, stderr) = refused(
        &sb,
        r#"name = "dev"
owner = "alice"

[[resources]]
name = "a"
type = "t"

  [[resources.agents]]
  name = "main"

    [[resources.agents.apps]]
    slug = "web"
    url = "http://localhost:8080"

    [[resources.agents.apps]]
    slug = "web"
    url = "http://localhost:9090"
"#,
    );
    assert_problem(
        &stderr,
        &file,
        16,
        "resources[0].agents[0].apps[1].slug",
        &["\"web\"", "already used"],
    );
}

#[test]
fn the_same_slug_on_two_agents_is_fine() {
    let sb = sandbox();
    let v = sb.apply(
        r#"name = "dev"
owner = "alice"

[[resources]]
name = "a"
type = "t"

  [[resources.agents]]
  name = "one"
  apps = [{ slug = "web", url = "http://localhost:1" }]

  [[resources.agents]]
  name = "two"
  apps = [{ slug = "web", url = "http://localhost:2" }]
"#,
    );
    assert_eq!(v["agents"].as_array().expect("agents").len(), 2);
}

#[test]
fn bad_display_apps_entry_lists_the_allowed_ones() {
    let sb = sandbox();
    let (file, stderr) = refused(
        &sb,
        r#"name = "dev"
owner = "alice"

[[resources]]
name = "a"
type = "t"

  [[resources.agents]]
  name = "main"
  display_apps = ["vscode", "emacs"]
"#,
    );
    assert_problem(
        &stderr,
        &file,
        10,
        "resources[0].agents[0].display_apps",
        &[
            "\"emacs\"",
            "\"vscode\"",
            "\"vscode_insiders\"",
            "\"web_terminal\"",
            "\"ssh_helper\"",
            "\"port_forwarding_helper\"",
        ],
    );
}

#[test]
fn unknown_key_is_refused_with_its_line() {
    let sb = sandbox();
    let (file, stderr) = refused(&sb, "name = \"dev\"\nowner = \"alice\"\ncolour = \"red\"\n");
    let line = stderr
        .lines()
        .find(|l| l.starts_with(&format!("{file}:3: ")))
        .unwrap_or_else(|| panic!("{file}:3: in\n{stderr}"));
    assert!(line.contains("`colour`"), "{line}");
    assert!(
        line.contains("`resources`"),
        "lists what is allowed: {line}"
    );
}

#[test]
fn unknown_key_in_a_nested_table_is_refused_with_its_line() {
    let sb = sandbox();
    let (file, stderr) = refused(
        &sb,
        r#"name = "dev"
owner = "alice"

[[resources]]
name = "a"
type = "t"

  [[resources.agents]]
  name = "main"
  startup_script = "echo hi"
"#,
    );
    let line = stderr
        .lines()
        .find(|l| l.starts_with(&format!("{file}:10: ")))
        .unwrap_or_else(|| panic!("{file}:10: in\n{stderr}"));
    assert!(line.contains("`startup_script`"), "{line}");
    assert!(line.contains("`scripts`"), "lists what is allowed: {line}");
}

#[test]
fn toml_syntax_error_is_refused_with_its_line() {
    let sb = sandbox();
    let (file, stderr) = refused(&sb, "name = \"dev\"\nowner = \"alice\"\nname = \"again\"\n");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with(&format!("{file}:3: "))),
        "{stderr}"
    );
    let (file, stderr) = refused(&sb, "name = \"dev\"\n\nowner = alice\n");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with(&format!("{file}:3: "))),
        "{stderr}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let sb = sandbox();
    let (file, stderr) = refused(
        &sb,
        r#"name = "not valid"
owner = "alice"

[[resources]]
name = "a"
type = "t"

  [[resources.agents]]
  name = "main"
  os = "plan9"
  connection_timeout_seconds = -1

    [[resources.agents.scripts]]
    display_name = "setup"
    script = ""
"#,
    );
    assert_problem(&stderr, &file, 1, "name", &["\"not valid\""]);
    assert_problem(
        &stderr,
        &file,
        10,
        "resources[0].agents[0].os",
        &["\"plan9\"", "\"linux\""],
    );
    assert_problem(
        &stderr,
        &file,
        11,
        "resources[0].agents[0].connection_timeout_seconds",
        &["604800"],
    );
    assert_problem(
        &stderr,
        &file,
        15,
        "resources[0].agents[0].scripts[0].script",
        &["required"],
    );
}

#[test]
fn missing_name_and_owner_are_required() {
    let sb = sandbox();
    let (file, stderr) = refused(&sb, "[[resources]]\nname = \"a\"\ntype = \"t\"\n");
    for key in ["name", "owner"] {
        assert!(
            stderr
                .lines()
                .any(|l| l == format!("{file}: {key}: is required")),
            "{key} in\n{stderr}"
        );
    }
}

#[test]
fn json_manifest_problems_name_the_file_and_key() {
    let sb = sandbox();
    let out = sb.apply_raw(
        "bad.json",
        r#"{"name": "dev", "owner": "alice",
 "resources": [{"name": "a", "type": "t", "agents": [{"name": "main", "auth": "nope"}]}]}
"#,
    );
    let stderr = out.assert_failure();
    let file = sb.path().join("bad.json");
    let prefix = format!("{}", file.display());
    let line = stderr
        .lines()
        .find(|l| l.starts_with(&prefix) && l.contains("resources[0].agents[0].auth: "))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("\"nope\""), "{line}");

    let out = sb.apply_raw(
        "syntax.json",
        "{\"name\": \"dev\",\n \"owner\": \"alice\",\n \"extra\": 1}\n",
    );
    let stderr = out.assert_failure();
    let prefix = format!("{}:3: ", sb.path().join("syntax.json").display());
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with(&prefix) && l.contains("`extra`")),
        "{stderr}"
    );
}

const OWNED_BY_NOBODY: &str = "name = \"dev\"\nowner = \"nobody\"\n";

#[test]
fn unknown_owner_says_how_to_create_the_user() {
    let sb = sandbox();
    let (_, stderr) = refused(&sb, OWNED_BY_NOBODY);
    assert!(stderr.contains("\"nobody\""), "{stderr}");
    assert!(stderr.contains("appliance user create nobody"), "{stderr}");
    assert_no_workspaces(&sb);
}

#[test]
fn unknown_owner_error_names_the_manifest_file_line_and_key() {
    // Like every other manifest problem: FILE:LINE: owner: ...
    let sb = sandbox();
    let (file, stderr) = refused(&sb, OWNED_BY_NOBODY);
    assert_problem(
        &stderr,
        &file,
        2,
        "owner",
        &["\"nobody\"", "appliance user create nobody"],
    );
}

#[test]
fn missing_manifest_file_is_an_error_naming_it() {
    let sb = sandbox();
    let missing = sb.path().join("nope.toml");
    let missing = missing.to_str().expect("utf-8");
    let out = sb.cli(&["workspace", "apply", missing]);
    let line = out.assert_one_line_error();
    assert!(line.contains(missing), "{line}");
}
