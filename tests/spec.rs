//! Response bodies checked against Coder's strict swagger
//! (`tests/spec/coder-agents.strict.swagger.json`) by `tests/spec/validate.py`.
//!
//! Runs the real binary on loopback with a fresh database, applies manifests
//! through the CLI, and validates what `GET /api/v2/workspaceagents/{id}`
//! returns (success and error bodies). Needs python3 with the modules in
//! `tests/spec/requirements.txt`; without them these tests fail, they do not
//! skip.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_appliance");

/// A running `appliance serve` on a temporary database; SIGTERM on drop.
struct Server {
    child: Child,
    base: String,
    db: PathBuf,
    dir: tempfile::TempDir,
    log: Arc<Mutex<String>>,
    http: ureq::Agent,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("appliance.db");
        let mut child = Command::new(BIN)
            .arg("serve")
            .arg("--db")
            .arg(&db)
            .args(["--listen", "127.0.0.1:0"])
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning appliance serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        {
            let log = log.clone();
            // Keeps draining stderr after the address is found, so the server
            // never blocks on a full pipe.
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(addr) = listen_addr(&line) {
                        let _ = tx.send(addr);
                    }
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "appliance serve did not log `listening on http://ADDR` within 30 s; stderr:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        Server {
            child,
            base: format!("http://{addr}"),
            db,
            dir,
            log,
            http,
        }
    }

    /// Runs an admin command on this server's database; returns stdout.
    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(BIN)
            .args(args)
            .arg("--db")
            .arg(&self.db)
            .env("NO_COLOR", "1")
            .output()
            .expect("running appliance");
        assert!(
            out.status.success(),
            "appliance {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    fn admin_token(&self) -> String {
        let key = self.cli(&["token", "create", "--user", "admin"]);
        let key = key.trim().to_string();
        assert!(
            !key.is_empty() && !key.contains(char::is_whitespace),
            "unexpected token output: {key:?}"
        );
        key
    }

    /// Writes `manifest` to a file and applies it; returns the JSON output.
    fn apply(&self, file_name: &str, manifest: &str) -> Value {
        let path = self.dir.path().join(file_name);
        std::fs::write(&path, manifest).expect("writing manifest");
        let out = self.cli(&[
            "workspace",
            "apply",
            path.to_str().expect("utf-8 path"),
            "--output",
            "json",
        ]);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("apply output is not JSON ({e}): {out}"))
    }

    /// GET `path` with an optional session token; returns (status, body).
    fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.header("Coder-Session-Token", token);
        }
        let mut resp = req
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}\nserver stderr:\n{}", self.log()));
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().expect("reading body");
        (status, body)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in a `listening on http://ADDR` log line, if this is one.
fn listen_addr(line: &str) -> Option<String> {
    let rest = &line[line.find("listening on http://")? + "listening on http://".len()..];
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    (!addr.is_empty()).then_some(addr)
}

fn validator_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/spec/validate.py")
}

/// Runs validate.py on `body`; returns (exit code, stdout). Panics when the
/// validator itself cannot run (no python3, missing modules, usage error):
/// that must fail the test, never skip it.
fn run_validator(definition: &str, body: &str) -> (i32, String) {
    let mut child = Command::new("python3")
        .arg(validator_script())
        .arg(definition)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}); install it, then: pip install -r tests/spec/requirements.txt")
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("writing to validate.py");
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("reading validate.py stdout");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("reading validate.py stderr");
    let status = child.wait().expect("waiting for validate.py");
    let code = status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "validate.py could not validate (exit code {code}); it needs: pip install -r tests/spec/requirements.txt\nstdout: {stdout}\nstderr: {stderr}"
    );
    (code, stdout)
}

/// Asserts `body` is a valid `definition`.
fn assert_valid(definition: &str, what: &str, body: &str) {
    let (code, out) = run_validator(definition, body);
    assert_eq!(
        code, 0,
        "{what} is not a valid {definition}:\n{out}\nbody: {body}"
    );
}

fn agent_id(applied: &Value, name: &str) -> Uuid {
    let agent = applied["agents"]
        .as_array()
        .expect("agents array")
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("no agent {name} in {applied}"));
    Uuid::parse_str(agent["id"].as_str().expect("agent id")).expect("agent id is a uuid")
}

const RICH: &str = r##"
name = "rich"
owner = "admin"

[[resources]]
name = "box"
type = "docker_container"

  [[resources.agents]]
  name = "main"
  os = "linux"
  arch = "arm64"
  directory = "/home/coder"
  env = { EDITOR = "vim", LANG = "C.UTF-8" }
  connection_timeout_seconds = 300
  troubleshooting_url = "https://wiki.example.internal/workspaces"
  motd_file = "/etc/motd"
  display_apps = ["vscode", "vscode_insiders", "web_terminal", "ssh_helper", "port_forwarding_helper"]
  subsystems = ["envbox"]
  api_key_scope = "no_user_data"
  order = 1

    [[resources.agents.apps]]
    slug = "code-server"
    display_name = "code-server"
    url = "http://localhost:13337/?folder=/home/coder"
    icon = "/icon/code.svg"
    subdomain = true
    share = "authenticated"
    healthcheck = { url = "http://localhost:13337/healthz", interval = 5, threshold = 6 }

    [[resources.agents.apps]]
    slug = "docs"
    display_name = "Team docs"
    url = "https://docs.example.internal"
    external = true
    open_in = "tab"
    group = "Links"
    tooltip = "Read the docs"

    [[resources.agents.apps]]
    slug = "htop"
    display_name = "htop"
    command = "htop"
    hidden = true
    order = 3

    [[resources.agents.apps]]
    slug = "8080"
    display_name = "Port 8080"
    url = "http://localhost:8080"
    subdomain = true
    share = "public"

    [[resources.agents.scripts]]
    display_name = "Install tools"
    icon = "/icon/terminal.svg"
    script = "#!/bin/sh\nset -e\n./setup.sh"
    run_on_start = true
    start_blocks_login = true
    timeout_seconds = 300
    log_path = "/tmp/setup.log"

    [[resources.agents.scripts]]
    display_name = "Backup"
    script = "backup.sh"
    cron = "0 */5 * * * *"
    run_on_stop = true

    [[resources.agents.children]]
    name = "devcontainer"
    directory = "/workspaces/project"
    env = { CONTAINER = "1" }
    display_apps = []

      [[resources.agents.children.apps]]
      slug = "preview"
      display_name = "Preview"
      url = "http://localhost:3000"
      subdomain = true
      share = "owner"

      [[resources.agents.children.scripts]]
      display_name = "Post-create"
      script = "npm ci"
      run_on_start = true
"##;

const MINIMAL: &str = r#"
name = "tiny"
owner = "admin"

[[resources]]
name = "vm"
type = "null_resource"

  [[resources.agents]]
  name = "solo"
"#;

/// Seeds app statuses through the library's store functions (many at once,
/// with chosen times; `PATCH /me/app-status` has its own tests in
/// `tests/it/app_status.rs`), so `codersdk.WorkspaceAppStatus` is checked too.
fn seed_app_statuses(db: &Path, agent: Uuid) -> usize {
    use appliance::store::{self, Store};
    let store = Store::open(db, &store::Options::default()).expect("opening the store");
    store
        .write(|tx| {
            let row = store::agents::live_agent(tx, agent)?.expect("the agent is live");
            let apps = store::agents::apps(tx, agent)?;
            let states = ["working", "idle", "complete", "failure"];
            let mut n = 0;
            for (i, app) in apps.iter().enumerate() {
                let uri = (i % 2 == 0).then_some("https://github.com/org/repo/pull/123");
                let at = OffsetDateTime::now_utc() - time::Duration::seconds(i as i64);
                store::agents::insert_app_status(
                    tx,
                    &row,
                    app.id,
                    states[i % states.len()],
                    "Running the test suite",
                    uri,
                    at,
                    100,
                )?;
                n += 1;
            }
            Ok(n)
        })
        .expect("seeding app statuses")
}

#[test]
fn agent_bodies_are_valid_workspace_agents() {
    let server = Server::start();
    let token = server.admin_token();
    let rich = server.apply("rich.toml", RICH);
    let minimal = server.apply("minimal.toml", MINIMAL);
    let main = agent_id(&rich, "main");
    let child = agent_id(&rich, "devcontainer");
    let solo = agent_id(&minimal, "solo");
    assert!(seed_app_statuses(&server.db, main) >= 4);

    let mut bodies = Vec::new();
    for (what, id) in [
        ("root agent", main),
        ("sub-agent", child),
        ("minimal agent", solo),
    ] {
        let (status, body) = server.get(&format!("/api/v2/workspaceagents/{id}"), Some(&token));
        assert_eq!(status, 200, "GET {what}: {body}");
        assert_valid("codersdk.WorkspaceAgent", what, &body);
        let json: Value = serde_json::from_str(&body).expect("agent body is JSON");
        bodies.push(json);
    }
    let [main_body, child_body, solo_body] = &bodies[..] else {
        unreachable!()
    };

    // The bodies really carry what the schema was meant to see.
    assert_eq!(main_body["parent_id"], Value::Null);
    assert_eq!(main_body["subsystems"], serde_json::json!(["envbox"]));
    assert_eq!(main_body["environment_variables"]["EDITOR"], "vim");
    let apps = main_body["apps"].as_array().expect("apps");
    assert_eq!(apps.len(), 4, "{main_body}");
    assert!(
        apps.iter()
            .any(|a| a["subdomain"] == true && a["subdomain_name"].is_string()),
        "no subdomain app with subdomain_name: {main_body}"
    );
    assert!(
        apps.iter()
            .any(|a| a["healthcheck"]["url"] == "http://localhost:13337/healthz"),
        "no healthcheck app: {main_body}"
    );
    assert!(
        apps.iter()
            .any(|a| !a["statuses"].as_array().expect("statuses").is_empty()),
        "the seeded app statuses are not in the body: {main_body}"
    );
    assert_eq!(main_body["scripts"].as_array().map(Vec::len), Some(2));
    assert_eq!(main_body["display_apps"].as_array().map(Vec::len), Some(5));
    assert_eq!(child_body["parent_id"], main.to_string());
    assert_eq!(child_body["display_apps"], serde_json::json!([]));
    assert_eq!(solo_body["environment_variables"], Value::Null);
    assert_eq!(solo_body["apps"], serde_json::json!([]));
    assert_eq!(solo_body["scripts"], serde_json::json!([]));
    assert_eq!(solo_body["subsystems"], serde_json::json!([]));
}

#[test]
fn error_bodies_are_valid_responses() {
    let server = Server::start();
    let token = server.admin_token();
    let unknown = "/api/v2/workspaceagents/7d9c6e48-7f53-4c47-9e0f-2d2e1a3c6b51";
    let cases: [(&str, &str, Option<&str>, u16); 4] = [
        ("no token", unknown, None, 401),
        (
            "a token that does not exist",
            unknown,
            Some("abcdefghij-0123456789abcdefghijkl"),
            401,
        ),
        (
            "an id that is not a uuid",
            "/api/v2/workspaceagents/not-a-uuid",
            Some(&token),
            400,
        ),
        ("an unknown agent", unknown, Some(&token), 404),
    ];
    for (what, path, token, want) in cases {
        let (status, body) = server.get(path, token);
        assert_eq!(status, want, "GET {path} with {what}: {body}");
        assert_valid(
            "codersdk.Response",
            &format!("the {want} body ({what})"),
            &body,
        );
    }
}

#[test]
fn git_ssh_keys_are_valid_and_refusals_are_responses() {
    let server = Server::start();
    let applied = server.apply("minimal.toml", MINIMAL);
    let token = applied["agents"][0]["token"]
        .as_str()
        .expect("a token agent")
        .to_string();
    let (status, body) = server.get("/api/v2/workspaceagents/me/gitsshkey", Some(&token));
    assert_eq!(status, 200, "{body}");
    assert_valid("agentsdk.GitSSHKey", "the git SSH key", &body);
    let (status, body) = server.get("/api/v2/workspaceagents/me/reinit?wait=true", Some(&token));
    assert_eq!(status, 409, "{body}");
    assert_valid("codersdk.Response", "the reinit 409", &body);
}

/// Negative control: the validator must be able to fail.
#[test]
fn validator_rejects_a_broken_agent() {
    let server = Server::start();
    let token = server.admin_token();
    let applied = server.apply("minimal.toml", MINIMAL);
    let id = agent_id(&applied, "solo");
    let (status, body) = server.get(&format!("/api/v2/workspaceagents/{id}"), Some(&token));
    assert_eq!(status, 200, "{body}");
    assert_valid("codersdk.WorkspaceAgent", "the untouched agent", &body);

    let mut broken: Value = serde_json::from_str(&body).expect("JSON");
    let object = broken.as_object_mut().expect("an object");
    assert!(object.remove("name").is_some(), "no name in {body}");
    object.insert("status".into(), Value::from("online"));
    let (code, out) = run_validator("codersdk.WorkspaceAgent", &broken.to_string());
    assert_eq!(code, 1, "the broken agent passed validation:\n{out}");
    assert!(
        out.contains("'name' is a required property"),
        "missing name not reported:\n{out}"
    );
    assert!(
        out.contains("$.status") && out.contains("'online'"),
        "bad status not reported:\n{out}"
    );
}
