//! Response bodies checked against Coder's strict swagger
//! (`tests/spec/coder-agents.strict.swagger.json`, OpenAPI 2).
//!
//! Runs the real binary on loopback with a fresh database, applies manifests
//! through the CLI, and validates what `GET /api/v2/workspaceagents/{id}`
//! returns (success and error bodies) in-process with the `boon` JSON Schema
//! validator: each `x-nullable: true` becomes a union with `null`, the
//! swagger is one draft-4 document, and a body must match
//! `#/definitions/NAME` with `format: date-time` (RFC 3339) and
//! `format: uuid` checked. Needs only the Rust toolchain.

// Tests panic on purpose: an unwrap that fails is a failing test.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
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

const SPEC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/spec/coder-agents.strict.swagger.json"
);
/// The swagger's name for the validator; its `$ref`s (`#/definitions/...`)
/// resolve inside it.
const SPEC_URI: &str = "urn:spec";

/// Why a body is not a valid definition: boon's whole error tree, and its
/// leaves one by one.
#[derive(Debug)]
struct Invalid {
    report: String,
    violations: Vec<Violation>,
}

/// One leaf of the error tree: what is wrong, and where in the body.
#[derive(Debug)]
struct Violation {
    /// JSON pointer to the offending value ("" is the whole body).
    at: String,
    /// The schema keyword that failed: "required", "enum", "type", ...
    keyword: &'static str,
    /// For "required": the properties that are missing.
    missing: Vec<String>,
}

/// Validates `body` against `definitions/{definition}` of the swagger.
/// Panics when the validator itself cannot run (unreadable spec, unknown
/// definition, a `$ref` outside the spec): that fails the test, never skips it.
fn validate(definition: &str, body: &str) -> Result<(), Invalid> {
    let text = std::fs::read_to_string(SPEC).unwrap_or_else(|e| panic!("reading {SPEC}: {e}"));
    let mut spec: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{SPEC} is not JSON: {e}"));
    let definitions = spec["definitions"].as_object().expect("spec definitions");
    if !definitions.contains_key(definition) {
        let close: Vec<&str> = definitions
            .keys()
            .filter(|d| d.to_lowercase().contains(&definition.to_lowercase()))
            .map(String::as_str)
            .collect();
        panic!("no definition named {definition:?} in {SPEC} (close: {close:?})");
    }
    nullable_to_union(&mut spec);

    let body: Value = match serde_json::from_str(body) {
        Ok(body) => body,
        Err(e) => {
            return Err(Invalid {
                report: format!("the response is not JSON: {e}"),
                violations: vec![Violation {
                    at: String::new(),
                    keyword: "json",
                    missing: Vec::new(),
                }],
            });
        }
    };

    let mut compiler = boon::Compiler::new();
    compiler.set_default_draft(boon::Draft::V4);
    compiler.use_loader(Box::new(NoLoading));
    // Format assertions are on for draft 4 (unknown formats, like the
    // swagger's `float64`, are not checked). These two replace boon's own
    // checks (which allow a leap second) with the rules the former python
    // validator applied, a little stricter: see
    // validator_checks_date_times_and_uuids.
    compiler.register_format(boon::Format {
        name: "date-time",
        func: date_time_format,
    });
    compiler.register_format(boon::Format {
        name: "uuid",
        func: uuid_format,
    });
    compiler
        .add_resource(SPEC_URI, spec)
        .unwrap_or_else(|e| panic!("adding {SPEC}: {e:#}"));
    let mut schemas = boon::Schemas::new();
    let index = compiler
        .compile(
            &format!("{SPEC_URI}#/definitions/{definition}"),
            &mut schemas,
        )
        .unwrap_or_else(|e| panic!("compiling {definition} from {SPEC}: {e:#}"));
    schemas.validate(&body, index).map_err(|error| {
        let mut violations = Vec::new();
        leaves(&error, &mut violations);
        Invalid {
            report: format!("{error}"),
            violations,
        }
    })
}

/// Rewrites `x-nullable: true` (Swagger 2.0) into plain JSON Schema, in place:
/// a `type` gains "null"; a schema without one (a bare `$ref`, whose siblings
/// draft 4 ignores) becomes `anyOf: [schema, {type: null}]`.
fn nullable_to_union(node: &mut Value) {
    match node {
        Value::Array(items) => items.iter_mut().for_each(nullable_to_union),
        Value::Object(map) => {
            map.values_mut().for_each(nullable_to_union);
            if map.remove("x-nullable") != Some(Value::Bool(true)) {
                return;
            }
            match map.get_mut("type") {
                Some(Value::String(kind)) => {
                    let kind = Value::String(std::mem::take(kind));
                    map.insert("type".into(), Value::Array(vec![kind, "null".into()]));
                }
                Some(Value::Array(kinds)) => {
                    if !kinds.iter().any(|k| k == "null") {
                        kinds.push("null".into());
                    }
                }
                _ => {
                    let inner = std::mem::take(map);
                    map.insert(
                        "anyOf".into(),
                        serde_json::json!([inner, { "type": "null" }]),
                    );
                }
            }
        }
        _ => {}
    }
}

/// Refuses every URL: the swagger is self-contained, and the tests never
/// read files or the network to validate.
struct NoLoading;

impl boon::UrlLoader for NoLoading {
    fn load(&self, url: &str) -> Result<Value, Box<dyn std::error::Error>> {
        Err(format!("{url}: only $refs inside {SPEC} are allowed").into())
    }
}

/// `format: date-time`, RFC 3339 as the validator always checked it:
/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)` (`T` and `Z` in either
/// case), a real calendar day of a year other than 0, no leap second.
fn date_time_format(value: &Value) -> Result<(), Box<dyn std::error::Error>> {
    let Value::String(s) = value else {
        return Ok(());
    };
    if is_rfc3339(s.to_ascii_uppercase().as_bytes()) {
        Ok(())
    } else {
        Err("want an RFC 3339 date-time, YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM)".into())
    }
}

fn is_rfc3339(b: &[u8]) -> bool {
    let number = |at: usize, len: usize| -> Option<u32> {
        b.get(at..at + len)?.iter().try_fold(0, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        number(0, 4),
        number(5, 2),
        number(8, 2),
        number(11, 2),
        number(14, 2),
        number(17, 2),
    ) else {
        return false;
    };
    if !(at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':')) {
        return false;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    if year == 0 || !(1..=days).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return false;
    }
    let mut rest = &b[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let digits = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return false;
        }
        rest = &fraction[digits..];
    }
    match rest {
        [b'Z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            let two = |a: u8, b: u8| {
                (a.is_ascii_digit() && b.is_ascii_digit())
                    .then(|| u32::from(a - b'0') * 10 + u32::from(b - b'0'))
            };
            matches!((two(*h1, *h2), two(*m1, *m2)), (Some(h), Some(m)) if h <= 23 && m <= 59)
        }
        _ => false,
    }
}

/// `format: uuid`: 8-4-4-4-12 hex digits, either case.
fn uuid_format(value: &Value) -> Result<(), Box<dyn std::error::Error>> {
    let Value::String(s) = value else {
        return Ok(());
    };
    let canonical = s.len() == 36
        && s.bytes().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        });
    if canonical {
        Ok(())
    } else {
        Err("want 8-4-4-4-12 hex digits".into())
    }
}

/// The leaves of boon's error tree (for `anyOf`, every branch's reasons).
fn leaves(error: &boon::ValidationError, out: &mut Vec<Violation>) {
    if !error.causes.is_empty() {
        for cause in &error.causes {
            leaves(cause, out);
        }
        return;
    }
    use boon::ErrorKind as K;
    let (keyword, missing) = match &error.kind {
        K::Required { want } => ("required", want.iter().map(|p| p.to_string()).collect()),
        K::Enum { .. } => ("enum", Vec::new()),
        K::Const { .. } => ("const", Vec::new()),
        K::Type { .. } => ("type", Vec::new()),
        K::Format { .. } => ("format", Vec::new()),
        K::AdditionalProperties { .. } => ("additionalProperties", Vec::new()),
        K::FalseSchema => ("false", Vec::new()),
        _ => ("other", Vec::new()),
    };
    out.push(Violation {
        at: error.instance_location.to_string(),
        keyword,
        missing,
    });
}

/// Asserts `body` is a valid `definition`.
fn assert_valid(definition: &str, what: &str, body: &str) {
    if let Err(invalid) = validate(definition, body) {
        panic!(
            "{what} is not a valid {definition}:\n{}\nbody: {body}",
            invalid.report
        );
    }
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

/// The routes that reach an agent refuse with `codersdk.Response` bodies
/// up to the dial (an agent that never connected stops them there).
#[test]
fn agent_reaching_refusals_are_valid_responses() {
    let server = Server::start();
    let token = server.admin_token();
    let applied = server.apply("minimal.toml", MINIMAL);
    let solo = agent_id(&applied, "solo");
    let unknown = "7d9c6e48-7f53-4c47-9e0f-2d2e1a3c6b51";
    for rest in ["listening-ports", "containers", "containers/watch"] {
        for (what, id, token, want) in [
            ("no token", solo.to_string(), None, 401),
            (
                "an unknown agent",
                unknown.to_string(),
                Some(token.as_str()),
                404,
            ),
            (
                "an agent never connected",
                solo.to_string(),
                Some(token.as_str()),
                400,
            ),
        ] {
            let path = format!("/api/v2/workspaceagents/{id}/{rest}");
            let (status, body) = server.get(&path, token);
            assert_eq!(status, want, "GET {path} with {what}: {body}");
            assert_valid("codersdk.Response", &format!("{rest}: {what}"), &body);
        }
    }
    let (status, body) = server.get(
        &format!("/api/v2/workspaceagents/{solo}/containers?label=nokey"),
        Some(&token),
    );
    assert_eq!(status, 400, "{body}");
    assert_valid("codersdk.Response", "a bad label", &body);
    let (status, body) = server.get(
        &format!("/api/v2/workspaceagents/{solo}/pty?reconnect=x"),
        None,
    );
    assert_eq!(status, 404, "{body}");
    assert_valid("codersdk.Response", "the terminal without a key", &body);
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
    let invalid = validate("codersdk.WorkspaceAgent", &broken.to_string())
        .expect_err("the broken agent passed validation");
    let out = &invalid.report;
    assert!(
        invalid
            .violations
            .iter()
            .any(|v| v.at.is_empty() && v.keyword == "required" && v.missing == ["name"]),
        "missing name not reported:\n{out}\n{:#?}",
        invalid.violations
    );
    assert!(
        invalid
            .violations
            .iter()
            .any(|v| v.at == "/status" && v.keyword == "enum"),
        "bad status not reported:\n{out}\n{:#?}",
        invalid.violations
    );
}

/// Format checks (no server needed): what the validator accepts and refuses
/// as `date-time` and `uuid`, each through a real definition.
#[test]
fn validator_checks_date_times_and_uuids() {
    let log_source = |created_at: &str, id: &str| {
        serde_json::json!({
            "created_at": created_at,
            "display_name": "Install tools",
            "icon": "",
            "id": id,
            "workspace_agent_id": "7d9c6e48-7f53-4c47-9e0f-2d2e1a3c6b51",
        })
        .to_string()
    };
    let uuid = "7d9c6e48-7f53-4c47-9e0f-2d2e1a3c6b51";
    let time = "2024-01-01T00:00:00Z";
    let check = |pointer: &str, value: &str, body: String, want_valid: bool| match validate(
        "codersdk.WorkspaceAgentLogSource",
        &body,
    ) {
        Ok(()) => assert!(want_valid, "{pointer} = {value:?} passed"),
        Err(invalid) => {
            assert!(
                !want_valid,
                "{pointer} = {value:?} failed:\n{}",
                invalid.report
            );
            assert!(
                invalid
                    .violations
                    .iter()
                    .all(|v| v.at == pointer && v.keyword == "format"),
                "{pointer} = {value:?}: {:#?}",
                invalid.violations
            );
        }
    };
    for (date_time, want_valid) in [
        ("2024-01-01T00:00:00Z", true),
        ("2024-01-01t00:00:00z", true),
        ("2024-01-01T00:00:00.123456789Z", true),
        ("2024-01-01T00:00:00+05:30", true),
        ("2024-01-01T00:00:00-23:59", true),
        ("2024-02-29T23:59:59Z", true),
        ("2000-02-29T00:00:00Z", true),
        ("2024-01-01T00:00:00+24:00", false),
        ("2024-01-01T00:00:00+23:60", false),
        ("2024-01-01T00:00:00+0530", false),
        ("2023-02-29T00:00:00Z", false),
        ("1900-02-29T00:00:00Z", false),
        ("2024-04-31T00:00:00Z", false),
        ("2024-01-00T00:00:00Z", false),
        ("2024-13-01T00:00:00Z", false),
        ("0000-01-01T00:00:00Z", false),
        ("2024-01-01T24:00:00Z", false),
        ("2024-01-01T23:60:00Z", false),
        ("2016-12-31T23:59:60Z", false),
        ("2024-01-01 00:00:00Z", false),
        ("2024-01-01T00:00:00", false),
        ("2024-01-01T00:00Z", false),
        ("2024-01-01T00:00:00.Z", false),
        ("2024-1-01T00:00:00Z", false),
        ("\u{ff12}024-01-01T00:00:00Z", false),
        ("", false),
        // Stricter than the python validator was (its regex `$` let a final
        // newline through).
        ("2024-01-01T00:00:00Z\n", false),
    ] {
        check(
            "/created_at",
            date_time,
            log_source(date_time, uuid),
            want_valid,
        );
    }
    for (id, want_valid) in [
        ("7d9c6e48-7f53-4c47-9e0f-2d2e1a3c6b51", true),
        ("7D9C6E48-7F53-4C47-9E0F-2D2E1A3C6B51", true),
        ("00000000-0000-0000-0000-000000000000", true),
        ("7d9c6e487f534c479e0f2d2e1a3c6b51", false),
        ("{7d9c6e48-7f53-4c47-9e0f-2d2e1a3c6b51}", false),
        ("urn:uuid:7d9c6e48-7f53-4c47-9e0f-2d2e1a3c6b51", false),
        ("7d9c6e48-7f53-4c47-9e0f-2d2e1a3c6b5", false),
        ("7d9c6e48-7f53-4c47-9e0f-2d2e1a3c6g51", false),
        ("7d9c6e4-87f53-4c47-9e0f-2d2e1a3c6b51", false),
        ("not-a-uuid", false),
        ("", false),
        // Stricter than the python validator was (Python's UUID() drops
        // every hyphen, so a 37th character `-` passed).
        ("7d9c6e48-7f53-4c47-9e0f-2d2e1a3c6b51-", false),
    ] {
        check("/id", id, log_source(time, id), want_valid);
    }
}

/// The contract: every operation the swagger documents (the "Agents" section
/// of Coder's API, 23 operations) is routed. Each is asked with its method,
/// a random UUID for every path parameter, no credentials and an empty JSON
/// body; it must be answered by its own handler, never by the router's
/// `Route not found.` 404 or a 405.
#[test]
fn every_documented_operation_is_routed() {
    let spec: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/spec/coder-agents.strict.swagger.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let base = spec["basePath"].as_str().unwrap();
    let s = Server::start();
    let mut asked = 0;
    let mut unrouted = Vec::new();
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            asked += 1;
            let concrete: String = path
                .split('/')
                .map(|seg| {
                    if seg.starts_with('{') {
                        Uuid::new_v4().to_string()
                    } else {
                        seg.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let url = format!("{}{base}{concrete}", s.base);
            let method = method.to_uppercase();
            let resp = match method.as_str() {
                "GET" => s.http.get(&url).call(),
                "DELETE" => s.http.delete(&url).call(),
                "POST" => s.http.post(&url).send("{}"),
                "PATCH" => s.http.patch(&url).send("{}"),
                "PUT" => s.http.put(&url).send("{}"),
                other => panic!("unexpected method {other} in the swagger"),
            };
            let mut resp = resp.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
            let status = resp.status().as_u16();
            let body = resp.body_mut().read_to_string().unwrap_or_default();
            if status == 405 || (status == 404 && body.contains("Route not found.")) {
                unrouted.push(format!("{method} {base}{path}: {status} {body}"));
            }
        }
    }
    // The check itself can tell: a path no route serves is seen as such.
    let mut resp = s
        .http
        .get(format!(
            "{}{base}/workspaceagents/{}/no-such-operation",
            s.base,
            Uuid::new_v4()
        ))
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert!(
        resp.body_mut()
            .read_to_string()
            .unwrap()
            .contains("Route not found.")
    );
    assert_eq!(asked, 23, "the swagger documents 23 operations");
    assert!(unrouted.is_empty(), "not routed:\n{}", unrouted.join("\n"));
}
