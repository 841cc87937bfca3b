//! The test harness: runs the real `appliance` binary in a temporary directory.
//!
//! [`Sandbox`] is a temp dir with a database path and an (empty unless given)
//! config file; its [`Sandbox::cli`] runs admin commands against that database.
//! [`TestServer`] runs `serve --listen 127.0.0.1:0` in a sandbox, learns the
//! port from the "listening on http://ADDR" log line, and talks HTTP to it.
//!
//! Every child process gets an environment without inherited `APPLIANCE_*` and
//! `RUST_LOG` variables, runs in the sandbox directory, and is bounded in time:
//! a hung child fails the test instead of hanging the suite. Nothing sleeps.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_appliance");

/// How long the server may take to print its "listening on" line.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a stopping server may take after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long any admin command may run.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// A command for the binary with a clean environment: no inherited
/// `APPLIANCE_*` or `RUST_LOG`.
pub fn command(cwd: &Path) -> Command {
    command_for(Command::new(BIN), cwd)
}

/// `cmd` with the clean environment of [`command`].
fn command_for(mut cmd: Command, cwd: &Path) -> Command {
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("APPLIANCE_") || k == "RUST_LOG" {
            cmd.env_remove(&key);
        }
    }
    cmd.current_dir(cwd).stdin(Stdio::null());
    cmd
}

fn signal(pid: u32, sig: &str) {
    // The process may already be gone; that is fine.
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Runs `cmd` to completion, failing the test if it takes longer than `timeout`.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> CliOutput {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the appliance binary");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(timeout) {
        Ok(result) => result.expect("wait for the appliance binary"),
        Err(_) => {
            signal(pid, "-KILL");
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
    };
    CliOutput {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// What an admin command did.
#[derive(Debug)]
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.status.success(),
            "expected success, got {}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts a non-zero exit and returns stderr.
    #[track_caller]
    pub fn assert_failure(&self) -> &str {
        assert!(
            !self.status.success(),
            "expected failure, got {}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        &self.stderr
    }

    /// Asserts a non-zero exit with exactly one line on stderr, `error: ...`,
    /// and nothing on stdout; returns the line without the prefix.
    #[track_caller]
    pub fn assert_one_line_error(&self) -> &str {
        let stderr = self.assert_failure();
        assert_eq!(self.status.code(), Some(1), "exit code; stderr:\n{stderr}");
        assert_eq!(self.stdout, "", "nothing on stdout when failing");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line of error, got:\n{stderr}");
        lines[0]
            .strip_prefix("error: ")
            .unwrap_or_else(|| panic!("error line starts with `error: `: {stderr}"))
    }

    /// Stdout parsed as one JSON document (asserting success first).
    #[track_caller]
    pub fn json(&self) -> Value {
        self.assert_success();
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// A temporary directory with a database path and a config file.
#[derive(Clone)]
pub struct Sandbox {
    dir: Arc<tempfile::TempDir>,
    pub db: PathBuf,
    pub config: PathBuf,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox::with_config("")
    }

    /// A sandbox whose config file (passed to every child as
    /// `APPLIANCE_CONFIG`, so that no system-wide file is read) holds `toml`.
    pub fn with_config(toml: &str) -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("appliance-it-")
            .tempdir()
            .expect("create a temp dir");
        let db = dir.path().join("appliance.db");
        let config = dir.path().join("appliance.toml");
        std::fs::write(&config, toml).expect("write the config file");
        Sandbox {
            dir: Arc::new(dir),
            db,
            config,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file into the sandbox and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, contents).expect("write a sandbox file");
        path
    }

    /// A command for the binary running in this sandbox, with its config
    /// file and nothing else set.
    pub fn command(&self) -> Command {
        self.command_prefixed(&[])
    }

    /// [`Sandbox::command`] run through `prefix` (e.g. `sh -c 'ulimit ...'`),
    /// which gets the binary's path and arguments after its own.
    pub fn command_prefixed(&self, prefix: &[&str]) -> Command {
        let cmd = match prefix.split_first() {
            None => Command::new(BIN),
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(BIN);
                cmd
            }
        };
        let mut cmd = command_for(cmd, self.path());
        cmd.env("APPLIANCE_CONFIG", &self.config);
        cmd
    }

    /// Runs `appliance --db <db> ARGS`.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        self.cli_env(args, &[])
    }

    /// Runs `appliance --db <db> ARGS` with extra environment variables.
    pub fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> CliOutput {
        let mut cmd = self.command();
        cmd.arg("--db").arg(&self.db).args(args);
        cmd.envs(env.iter().copied());
        run_bounded(cmd, CLI_TIMEOUT)
    }

    /// Runs `appliance --db <db> ARGS`, failing the test if it takes longer
    /// than `timeout`.
    pub fn cli_within(&self, timeout: Duration, args: &[&str]) -> CliOutput {
        let mut cmd = self.command();
        cmd.arg("--db").arg(&self.db).args(args);
        run_bounded(cmd, timeout)
    }

    /// Runs `appliance ARGS` (no `--db`) with extra environment variables.
    pub fn cli_raw<S: AsRef<OsStr>>(&self, args: &[S], env: &[(&str, &str)]) -> CliOutput {
        let mut cmd = self.command();
        cmd.args(args).envs(env.iter().copied());
        run_bounded(cmd, CLI_TIMEOUT)
    }

    /// `user create NAME --role ROLE --output json`, asserting success.
    pub fn create_user(&self, name: &str, role: &str) -> Value {
        self.cli(&["user", "create", name, "--role", role, "--output", "json"])
            .json()
    }

    /// A fresh API key for `user`.
    pub fn token(&self, user: &str) -> String {
        let out = self.cli(&["token", "create", "--user", user, "--output", "json"]);
        out.json()["token"]
            .as_str()
            .expect("token is a string")
            .to_string()
    }

    /// Writes a TOML manifest to a fresh file and applies it, asserting success.
    pub fn apply(&self, manifest: &str) -> Value {
        let out = self.apply_raw("manifest.toml", manifest);
        out.json()
    }

    /// Writes `manifest` to `file_name` and runs `workspace apply FILE --output json`.
    pub fn apply_raw(&self, file_name: &str, manifest: &str) -> CliOutput {
        let path = self.write(file_name, manifest);
        let path = path.to_str().expect("utf-8 temp path");
        self.cli(&["workspace", "apply", path, "--output", "json"])
    }
}

/// The agent with `name` in an apply result.
#[track_caller]
pub fn agent<'a>(applied: &'a Value, name: &str) -> &'a Value {
    applied["agents"]
        .as_array()
        .expect("agents array")
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("no agent {name} in {applied:#}"))
}

/// The id of the agent with `name` in an apply result.
#[track_caller]
pub fn agent_id(applied: &Value, name: &str) -> String {
    agent(applied, name)["id"]
        .as_str()
        .expect("agent id")
        .to_string()
}

// ---------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------

#[derive(Default)]
struct LogState {
    lines: Vec<String>,
    eof: bool,
}

/// The server's stderr, collected line by line by a background thread.
#[derive(Default)]
struct Log {
    state: Mutex<LogState>,
    changed: Condvar,
}

impl Log {
    fn collect(self: Arc<Self>, stderr: impl Read + Send + 'static) {
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                        self.state.lock().expect("log lock").lines.push(line);
                        self.changed.notify_all();
                    }
                }
            }
            self.state.lock().expect("log lock").eof = true;
            self.changed.notify_all();
        });
    }

    fn lines(&self) -> Vec<String> {
        self.state.lock().expect("log lock").lines.clone()
    }

    /// Waits until a line matches `pred` (returning it), stderr closes, or
    /// `timeout` passes (both `None`).
    fn wait_for(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock().expect("log lock");
        loop {
            if let Some(line) = state.lines.iter().find(|l| pred(l)) {
                return Some(line.clone());
            }
            let now = Instant::now();
            if state.eof || now >= deadline {
                return None;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .expect("log lock")
                .0;
        }
    }

    /// Waits until stderr closes; false if `timeout` passed first.
    fn wait_eof(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock().expect("log lock");
        while !state.eof {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .expect("log lock")
                .0;
        }
        true
    }
}

/// The address in a "listening on http://ADDR" line, in text or JSON logs.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.split("listening on http://").nth(1)?;
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    addr.parse().ok()
}

/// Extra settings for a server.
#[derive(Default)]
pub struct Options {
    /// Contents of the config file.
    pub config: String,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
}

/// How a request carries its session token.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    None,
    Cookie(&'a str),
    Query(&'a str),
    Header(&'a str),
    Bearer(&'a str),
    /// Query parameter `access_token` (Coder's last resort).
    AccessToken(&'a str),
    /// Arbitrary request headers, e.g. two credentials at once.
    Headers(&'a [(&'a str, &'a str)]),
}

/// An HTTP response, body read.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(|s| s.as_str())
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}):\n{}", self.body))
    }

    /// Asserts a JSON success body with coderd's content type, and returns it.
    #[track_caller]
    pub fn ok_json(&self) -> Value {
        assert_eq!(self.status, 200, "status; body: {}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        assert!(self.body.ends_with('\n'), "body ends with a newline");
        self.json()
    }

    /// Asserts a `codersdk.Response` error: the status, the content type, a
    /// body of only `message`, `detail?` and `validations?` that ends with a
    /// newline, and the exact message. Returns the body.
    #[track_caller]
    pub fn assert_error(&self, status: u16, message: &str) -> Value {
        assert_eq!(self.status, status, "status; body: {}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/json; charset=utf-8"),
            "content type of {}",
            self.body
        );
        assert!(
            self.body.ends_with('\n'),
            "error body ends with a newline: {:?}",
            self.body
        );
        let body = self.json();
        let obj = body.as_object().expect("error body is an object");
        for (key, value) in obj {
            match key.as_str() {
                "message" | "detail" => {
                    assert!(value.is_string(), "{key} is a string: {body}")
                }
                "validations" => {
                    for v in value.as_array().expect("validations is an array") {
                        let v = v.as_object().expect("validation is an object");
                        assert!(v["field"].is_string() && v["detail"].is_string());
                        assert_eq!(v.len(), 2, "validation has field and detail only");
                    }
                }
                other => panic!("unexpected key {other:?} in error body {body}"),
            }
        }
        assert_eq!(body["message"], message, "message of {body}");
        body
    }
}

/// The real binary serving HTTP on an ephemeral port.
pub struct TestServer {
    sandbox: Sandbox,
    child: Option<Child>,
    log: Arc<Log>,
    pub addr: SocketAddr,
    http: ureq::Agent,
}

impl Deref for TestServer {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sandbox
    }
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::start_in(Sandbox::new(), &[])
    }

    pub fn start_with(options: Options) -> TestServer {
        let env: Vec<(&str, &str)> = options
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        TestServer::start_in(Sandbox::with_config(&options.config), &env)
    }

    /// Starts a server on an existing sandbox (e.g. to restart on its database).
    pub fn start_in(sandbox: Sandbox, env: &[(&str, &str)]) -> TestServer {
        TestServer::start_prefixed(sandbox, env, &[])
    }

    /// [`TestServer::start_in`] with the server run through `prefix` (see
    /// [`Sandbox::command_prefixed`]); the prefix must `exec` the binary, so
    /// that signals reach the server.
    pub fn start_prefixed(sandbox: Sandbox, env: &[(&str, &str)], prefix: &[&str]) -> TestServer {
        let mut cmd = sandbox.command_prefixed(prefix);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--db"])
            .arg(&sandbox.db)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn appliance serve");
        let log = Arc::new(Log::default());
        log.clone()
            .collect(child.stderr.take().expect("piped stderr"));
        let line = log.wait_for(START_TIMEOUT, |l| listening_addr(l).is_some());
        let Some(line) = line else {
            let exited = log.wait_eof(Duration::ZERO);
            signal(child.id(), "-KILL");
            let status = child.wait().expect("wait for the server");
            log.wait_eof(STOP_TIMEOUT);
            let what = if exited {
                "exited before reporting its address".to_string()
            } else {
                format!("did not report its address within {START_TIMEOUT:?}")
            };
            panic!(
                "the server {what} ({status}); log:\n{}",
                log.lines().join("\n")
            );
        };
        let addr = listening_addr(&line).expect("address");
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(10)))
            .build();
        TestServer {
            sandbox,
            child: Some(child),
            log,
            addr,
            http: config.into(),
        }
    }

    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lines()
    }

    /// Sends SIGTERM and waits (at most 5 s, then kills) for the exit.
    pub fn stop(self) -> (ExitStatus, Vec<String>) {
        self.stop_with("-TERM")
    }

    /// Sends `signal` (e.g. `-INT`) and waits (at most 5 s, then kills) for the exit.
    pub fn stop_with(mut self, signal: &str) -> (ExitStatus, Vec<String>) {
        let status = self.shutdown(signal).expect("server was running");
        (status, self.log())
    }

    /// `sig`, then wait for stderr to close (bounded), then SIGKILL if needed.
    fn shutdown(&mut self, sig: &str) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        signal(child.id(), sig);
        if !self.log.wait_eof(STOP_TIMEOUT) {
            let _ = child.kill();
            eprintln!("the server did not stop within {STOP_TIMEOUT:?} of SIGTERM; killed it");
        }
        child.wait().ok()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `GET path`, with the token (if any) in the `Coder-Session-Token` header.
    pub fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.get_with(path, token.map_or(Auth::None, Auth::Header))
    }

    pub fn get_with(&self, path: &str, auth: Auth<'_>) -> Resp {
        self.request("GET", path, auth)
    }

    pub fn request(&self, method: &str, path: &str, auth: Auth<'_>) -> Resp {
        let mut url = self.url(path);
        let query = match auth {
            Auth::Query(t) => Some(("coder_session_token", t)),
            Auth::AccessToken(t) => Some(("access_token", t)),
            _ => None,
        };
        if let Some((key, value)) = query {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&format!("{key}={value}"));
        }
        let method: ureq::http::Method = method.parse().expect("method");
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        match auth {
            Auth::None | Auth::Query(_) | Auth::AccessToken(_) => {}
            Auth::Cookie(t) => req = req.header("Cookie", format!("coder_session_token={t}")),
            Auth::Header(t) => req = req.header("Coder-Session-Token", t),
            Auth::Bearer(t) => req = req.header("Authorization", format!("Bearer {t}")),
            Auth::Headers(headers) => {
                for (name, value) in headers {
                    req = req.header(*name, *value);
                }
            }
        }
        let req = req.body(()).expect("request");
        let mut resp = self.http.run(req).unwrap_or_else(|e| panic!("{url}: {e}"));
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
        let body = resp
            .body_mut()
            .read_to_string()
            .unwrap_or_else(|e| panic!("{url}: reading the body: {e}"));
        Resp {
            status: resp.status().as_u16(),
            headers,
            body,
        }
    }

    /// `GET /api/v2/workspaceagents/{id}` with the token in the header.
    pub fn get_agent(&self, id: &str, token: &str) -> Resp {
        self.get(&format!("/api/v2/workspaceagents/{id}"), Some(token))
    }

    /// Sends `sig` (e.g. `-HUP`) to the running server.
    pub fn signal(&self, sig: &str) {
        let child = self.child.as_ref().expect("the server is running");
        signal(child.id(), sig);
    }

    /// Waits (at most `timeout`) for a log line for which `pred` holds, and
    /// returns it; `None` if the server stopped logging or time ran out.
    pub fn wait_for_log(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        self.log.wait_for(timeout, pred)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown("-TERM");
        if std::thread::panicking() {
            eprintln!("----- server log ({}) -----", self.addr);
            for line in self.log.lines() {
                eprintln!("{line}");
            }
            eprintln!("----- end of server log -----");
        }
    }
}
