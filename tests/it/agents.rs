//! `GET /api/v2/workspaceagents/{id}`: what an agent looks like before it connects.

use serde_json::{Value, json};

use crate::harness::{Options, TestServer, agent_id};

const FULL: &str = r##"
name = "dev"
owner = "alice"

[[resources]]
name = "vm"
type = "aws_instance"
instance_id = "i-0abc"

  [[resources.agents]]
  name = "main"
  os = "linux"
  arch = "arm64"
  directory = "/home/coder"
  env = { EDITOR = "vim", PAGER = "less" }
  connection_timeout_seconds = 300
  troubleshooting_url = "https://wiki.example.internal/help"
  display_apps = ["web_terminal", "ssh_helper"]
  subsystems = ["envbox"]

    [[resources.agents.apps]]
    slug = "code-server"
    display_name = "code-server"
    url = "http://localhost:13337"
    icon = "/icon/code.svg"
    subdomain = true
    share = "authenticated"
    order = 1
    healthcheck = { url = "http://localhost:13337/healthz", interval = 5, threshold = 6 }

    [[resources.agents.apps]]
    slug = "8080"
    url = "http://localhost:8080"
    subdomain = true
    order = 1

    [[resources.agents.apps]]
    slug = "shell"
    display_name = "Shell"
    command = "bash"
    order = 0
    open_in = "tab"
    hidden = true
    group = "tools"
    tooltip = "A shell"

    [[resources.agents.scripts]]
    display_name = "Install tools"
    icon = "/icon/terminal.svg"
    script = "#!/bin/sh\necho hi"
    run_on_start = true
    start_blocks_login = true
    timeout_seconds = 300
    log_path = "/tmp/install.log"

    [[resources.agents.scripts]]
    display_name = "Backup"
    script = "backup.sh"
    cron = "0 0 * * * *"
    run_on_stop = true

    [[resources.agents.children]]
    name = "devcontainer"

  [[resources.agents]]
  name = "cloud"
  auth = "aws-instance-identity"
"##;

const MINIMAL: &str = r#"
name = "mini"
owner = "alice"

[[resources]]
name = "box"
type = "t"

  [[resources.agents]]
  name = "main"
"#;

/// A server with member `alice`, her token, and the applied manifest.
fn setup(manifest: &str) -> (TestServer, String, Value) {
    let server = TestServer::start();
    server.create_user("alice", "member");
    let token = server.token("alice");
    let applied = server.apply(manifest);
    (server, token, applied)
}

#[test]
fn an_applied_agent_reads_back_as_applied() {
    let (server, token, applied) = setup(FULL);
    let id = agent_id(&applied, "main");
    let resp = server.get_agent(&id, &token);
    let a = resp.ok_json();
    assert_eq!(a["id"], id.as_str());
    assert_eq!(a["name"], "main");
    assert_eq!(
        a["parent_id"],
        Value::Null,
        "a root agent has a null parent_id"
    );
    assert_eq!(a["status"], "connecting");
    assert_eq!(a["lifecycle_state"], "created");
    assert_eq!(
        a["health"],
        json!({"healthy": false, "reason": "agent has not yet connected"})
    );
    assert_eq!(a["operating_system"], "linux");
    assert_eq!(a["architecture"], "arm64");
    assert_eq!(a["directory"], "/home/coder");
    assert_eq!(
        a["environment_variables"],
        json!({"EDITOR": "vim", "PAGER": "less"})
    );
    assert_eq!(a["connection_timeout_seconds"], 300);
    assert_eq!(
        a["troubleshooting_url"],
        "https://wiki.example.internal/help"
    );
    assert_eq!(a["display_apps"], json!(["web_terminal", "ssh_helper"]));
    assert_eq!(a["subsystems"], json!(["envbox"]));
    assert!(
        a.get("instance_id").is_none(),
        "token agents have no instance id"
    );
    assert!(a.get("first_connected_at").is_none(), "never connected");
    assert!(a.get("disconnected_at").is_none());
    assert_eq!(a["logs_length"], 0);
    assert_eq!(a["logs_overflowed"], false);
    let created = a["created_at"].as_str().expect("created_at");
    assert!(created.ends_with('Z') && created.contains('T'), "{created}");
    uuid::Uuid::parse_str(a["resource_id"].as_str().expect("resource_id")).expect("uuid");

    // Apps: by order, then display name, then slug.
    let apps = a["apps"].as_array().expect("apps");
    let slugs: Vec<&str> = apps
        .iter()
        .map(|x| x["slug"].as_str().expect("slug"))
        .collect();
    assert_eq!(slugs, ["shell", "8080", "code-server"]);
    let shell = &apps[0];
    assert_eq!(shell["command"], "bash");
    assert_eq!(shell["display_name"], "Shell");
    assert_eq!(shell["open_in"], "tab");
    assert_eq!(shell["hidden"], true);
    assert_eq!(shell["group"], "tools");
    assert_eq!(shell["tooltip"], "A shell");
    assert_eq!(shell["sharing_level"], "owner", "owner by default");
    assert_eq!(shell["health"], "disabled");
    assert_eq!(shell["subdomain"], false);
    assert!(shell.get("subdomain_name").is_none());
    assert!(shell.get("url").is_none(), "empty url is omitted");
    assert_eq!(shell["statuses"], json!([]));
    let port = &apps[1];
    assert_eq!(
        port["subdomain_name"], "8080--main--dev--alice",
        "port-like slugs carry the agent name"
    );
    let code = &apps[2];
    assert_eq!(code["url"], "http://localhost:13337");
    assert_eq!(code["icon"], "/icon/code.svg");
    assert_eq!(code["subdomain"], true);
    assert_eq!(code["subdomain_name"], "code-server--dev--alice");
    assert_eq!(code["sharing_level"], "authenticated");
    assert_eq!(code["open_in"], "slim-window", "slim-window by default");
    assert_eq!(
        code["healthcheck"],
        json!({"url": "http://localhost:13337/healthz", "interval": 5, "threshold": 6})
    );
    assert_eq!(
        code["health"], "initializing",
        "apps with a health check start initializing"
    );

    // Scripts and their log sources.
    let scripts = a["scripts"].as_array().expect("scripts");
    assert_eq!(scripts.len(), 2);
    let install = scripts
        .iter()
        .find(|s| s["display_name"] == "Install tools")
        .expect("install script");
    assert_eq!(install["script"], "#!/bin/sh\necho hi");
    assert_eq!(install["timeout"], 300_000_000_000_i64, "nanoseconds");
    assert_eq!(install["run_on_start"], true);
    assert_eq!(install["start_blocks_login"], true);
    assert_eq!(install["run_on_stop"], false);
    assert_eq!(install["log_path"], "/tmp/install.log");
    assert_eq!(install["cron"], "");
    let backup = scripts
        .iter()
        .find(|s| s["display_name"] == "Backup")
        .expect("backup script");
    assert_eq!(backup["cron"], "0 0 * * * *");
    assert_eq!(backup["run_on_stop"], true);
    assert_eq!(backup["timeout"], 0);
    let sources = a["log_sources"].as_array().expect("log_sources");
    assert_eq!(sources.len(), 2, "one log source per script");
    for script in scripts {
        let source = sources
            .iter()
            .find(|s| s["id"] == script["log_source_id"])
            .unwrap_or_else(|| panic!("log source of {script}"));
        assert_eq!(source["display_name"], script["display_name"]);
        assert_eq!(source["workspace_agent_id"], id.as_str());
    }
    let install_source = sources
        .iter()
        .find(|s| s["id"] == install["log_source_id"])
        .expect("source");
    assert_eq!(install_source["icon"], "/icon/terminal.svg");
    assert_eq!(a["startup_script_behavior"], "blocking");
}

#[test]
fn a_minimal_agent_gets_the_defaults() {
    let (server, token, applied) = setup(MINIMAL);
    let a = server
        .get_agent(&agent_id(&applied, "main"), &token)
        .ok_json();
    assert_eq!(
        a["environment_variables"],
        Value::Null,
        "no env is null, not {{}}"
    );
    assert_eq!(a["subsystems"], json!([]));
    assert_eq!(
        a["display_apps"],
        json!([
            "vscode",
            "vscode_insiders",
            "web_terminal",
            "ssh_helper",
            "port_forwarding_helper"
        ])
    );
    let url = a["troubleshooting_url"]
        .as_str()
        .expect("troubleshooting_url");
    assert!(url.starts_with("https://"), "a non-empty default: {url:?}");
    assert_eq!(a["connection_timeout_seconds"], 120);
    assert_eq!(a["operating_system"], "linux");
    assert_eq!(a["architecture"], "amd64");
    assert!(a.get("directory").is_none(), "empty directory is omitted");
    assert_eq!(a["apps"], json!([]));
    assert_eq!(a["scripts"], json!([]));
    assert_eq!(a["log_sources"], json!([]));
    assert_eq!(a["startup_script_behavior"], "non-blocking");
}

#[test]
fn the_fallback_troubleshooting_url_comes_from_the_configuration() {
    let server = TestServer::start_with(Options {
        config: "[agent]\nfallback_troubleshooting_url = \"https://help.example.com/agents\"\n"
            .into(),
        ..Options::default()
    });
    server.create_user("alice", "member");
    let token = server.token("alice");
    let applied = server.apply(MINIMAL);
    let a = server
        .get_agent(&agent_id(&applied, "main"), &token)
        .ok_json();
    assert_eq!(a["troubleshooting_url"], "https://help.example.com/agents");

    let from_env = TestServer::start_with(Options {
        env: vec![(
            "APPLIANCE_AGENT__FALLBACK_TROUBLESHOOTING_URL".into(),
            "https://env.example.com/help".into(),
        )],
        ..Options::default()
    });
    from_env.create_user("alice", "member");
    let token = from_env.token("alice");
    let applied = from_env.apply(MINIMAL);
    let a = from_env
        .get_agent(&agent_id(&applied, "main"), &token)
        .ok_json();
    assert_eq!(a["troubleshooting_url"], "https://env.example.com/help");
}

#[test]
fn a_sub_agent_names_its_parent() {
    let (server, token, applied) = setup(FULL);
    let parent = agent_id(&applied, "main");
    let a = server
        .get_agent(&agent_id(&applied, "devcontainer"), &token)
        .ok_json();
    assert_eq!(a["name"], "devcontainer");
    assert_eq!(a["parent_id"], parent.as_str());
    assert_eq!(a["status"], "connecting");
    assert_eq!(a["apps"], json!([]), "the parent's apps are not inherited");
}

#[test]
fn an_instance_identity_agent_shows_its_instance_id() {
    let (server, token, applied) = setup(FULL);
    let a = server
        .get_agent(&agent_id(&applied, "cloud"), &token)
        .ok_json();
    assert_eq!(a["instance_id"], "i-0abc");
    assert_eq!(a["parent_id"], Value::Null);
}

#[test]
fn an_agent_that_never_connects_times_out() {
    let (server, token, applied) = setup(
        r#"
name = "slow"
owner = "alice"

[[resources]]
name = "box"
type = "t"

  [[resources.agents]]
  name = "main"
  connection_timeout_seconds = 1
"#,
    );
    let id = agent_id(&applied, "main");
    let before = server.get_agent(&id, &token).ok_json();
    assert_eq!(before["status"], "connecting");
    assert_eq!(before["connection_timeout_seconds"], 1);
    // Time is the subject here: wait past the one-second timeout.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let after = server.get_agent(&id, &token).ok_json();
    assert_eq!(after["status"], "timeout");
    assert_eq!(
        after["health"],
        json!({"healthy": false, "reason": "agent is taking too long to connect"})
    );
}

#[test]
fn the_id_may_be_spelled_in_upper_case() {
    // As Go's uuid.Parse: the id is a UUID, not a string.
    let (server, token, applied) = setup(MINIMAL);
    let id = agent_id(&applied, "main");
    let a = server.get_agent(&id.to_uppercase(), &token).ok_json();
    assert_eq!(a["id"], id.as_str(), "answered with the canonical spelling");
}
