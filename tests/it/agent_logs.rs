//! `appliance agent logs`: real stdin piped into the real binary, shipping to
//! the real server (read back with `GET /api/v2/workspaceagents/{id}/logs`),
//! or to a fake server that fails on purpose and records every request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::harness::{self, CliOutput, Options, Sandbox, TestServer, agent};

/// The id `--source Startup` always gets (UUIDv5 of the name).
const STARTUP_SOURCE_ID: &str = "1991b269-7708-5803-8579-135a14515279";
/// Where lines go without `--source` (upstream's `ExternalLogSourceID`).
const EXTERNAL_SOURCE_ID: &str = "3b579bf4-1ed8-4b99-87a8-e9a1e3410410";
/// How long one `agent logs` run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

const MANIFEST: &str = "name = \"dev\"\nowner = \"alice\"\n[[resources]]\nname = \"b\"\ntype = \"t\"\n[[resources.agents]]\nname = \"main\"\n";

/// A server with one token agent, and an API key that can read its logs.
struct Setup {
    server: TestServer,
    api_key: String,
    agent_id: String,
    agent_token: String,
}

impl Setup {
    fn new(config: &str) -> Setup {
        let server = TestServer::start_with(Options {
            config: config.to_owned(),
            ..Options::default()
        });
        server.create_user("alice", "member");
        let api_key = server.token("alice");
        let applied = server.apply(MANIFEST);
        let main = agent(&applied, "main");
        Setup {
            agent_id: main["id"].as_str().expect("agent id").to_owned(),
            agent_token: main["token"].as_str().expect("agent token").to_owned(),
            api_key,
            server,
        }
    }

    fn url(&self) -> String {
        self.server.url("")
    }

    /// `agent logs --url <server> --token <agent token> ARGS` with `input` on stdin.
    fn ship(&self, args: &[&str], input: &[u8]) -> CliOutput {
        let mut full = vec!["--token", self.agent_token.as_str()];
        full.extend_from_slice(args);
        ship(&self.server, &self.url(), &full, input)
    }

    /// Every stored line of the agent, oldest first.
    fn logs(&self) -> Vec<Value> {
        let resp = self.server.get(
            &format!("/api/v2/workspaceagents/{}/logs", self.agent_id),
            Some(&self.api_key),
        );
        resp.ok_json().as_array().expect("logs array").clone()
    }

    fn outputs(&self) -> Vec<String> {
        outputs(&self.logs())
    }

    fn log_sources(&self) -> Vec<Value> {
        let a = self
            .server
            .get_agent(&self.agent_id, &self.api_key)
            .ok_json();
        a["log_sources"].as_array().expect("log_sources").clone()
    }

    /// Waits (at most 10 s) until `n` lines are stored.
    #[track_caller]
    fn wait_for_lines(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let logs = self.logs();
            if logs.len() >= n || Instant::now() > deadline {
                assert_eq!(logs.len(), n, "stored lines: {:?}", outputs(&logs));
                return logs;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn outputs(logs: &[Value]) -> Vec<String> {
    logs.iter()
        .map(|l| l["output"].as_str().expect("output").to_owned())
        .collect()
}

/// A command for `appliance agent logs --url URL ARGS`, in the sandbox,
/// without any inherited agent settings.
fn logs_command(sandbox: &Sandbox, url: &str, args: &[&str]) -> Command {
    let mut cmd = harness::command(sandbox.path());
    for var in ["CODER_AGENT_URL", "CODER_AGENT_TOKEN", "SSL_CERT_FILE"] {
        cmd.env_remove(var);
    }
    cmd.args(["agent", "logs", "--url", url]).args(args);
    cmd
}

/// Runs `agent logs` to completion with `input` (from a file) on stdin.
fn ship(sandbox: &Sandbox, url: &str, args: &[&str], input: &[u8]) -> CliOutput {
    let path = sandbox.path().join("stdin.bin");
    std::fs::write(&path, input).expect("write the input");
    let mut cmd = logs_command(sandbox, url, args);
    cmd.stdin(std::fs::File::open(&path).expect("open the input"));
    harness::run_bounded(cmd, RUN_TIMEOUT)
}

/// A running `agent logs` whose stdin the test writes.
struct Running {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
}

impl Running {
    fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn appliance agent logs");
        let stdin = child.stdin.take();
        Running {
            child: Some(child),
            stdin,
        }
    }

    fn write(&mut self, data: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(data).expect("write to agent logs");
        stdin.flush().expect("flush");
    }

    /// Writes `data` from another thread, counting the bytes written in
    /// `progress`; the handle says whether every write succeeded.
    fn write_in_background(
        &mut self,
        data: Vec<u8>,
        progress: Arc<AtomicUsize>,
    ) -> mpsc::Receiver<std::io::Result<()>> {
        let mut stdin = self.stdin.take().expect("stdin still open");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let result = (|| {
                for chunk in data.chunks(16 << 10) {
                    stdin.write_all(chunk)?;
                    progress.fetch_add(chunk.len(), Ordering::SeqCst);
                }
                stdin.flush()
            })();
            drop(stdin);
            let _ = tx.send(result);
        });
        rx
    }

    /// Closes stdin and waits (bounded) for the exit.
    fn finish(mut self) -> CliOutput {
        drop(self.stdin.take());
        let child = self.child.take().expect("child");
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let output = match rx.recv_timeout(RUN_TIMEOUT) {
            Ok(result) => result.expect("wait for agent logs"),
            Err(_) => {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                panic!("agent logs did not finish within {RUN_TIMEOUT:?}");
            }
        };
        CliOutput {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The "in N batches" of the summary line.
#[track_caller]
fn batches(stderr: &str) -> usize {
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("agent logs: sent "))
        .unwrap_or_else(|| panic!("no summary line in:\n{stderr}"));
    let rest = summary.split(" in ").nth(1).expect("in N batches");
    rest.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no batch count in {summary:?}"))
}

#[track_caller]
fn created_at(log: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(log["created_at"].as_str().expect("created_at"), &Rfc3339)
        .expect("RFC 3339 created_at")
}

/// `n` lines of 100 bytes (with the newline), numbered so order is checked.
fn numbered_lines(n: usize) -> (Vec<String>, Vec<u8>) {
    let lines: Vec<String> = (0..n)
        .map(|i| format!("line {i:07} {}", "x".repeat(86)))
        .collect();
    let mut input = Vec::with_capacity(n * 100);
    for l in &lines {
        input.extend_from_slice(l.as_bytes());
        input.push(b'\n');
    }
    (lines, input)
}

// ---------------------------------------------------------------------------
// Against the real server
// ---------------------------------------------------------------------------

#[test]
fn lines_arrive_in_order_with_their_level_and_named_source() {
    let s = Setup::new("");
    let out = s.ship(
        &[
            "--source",
            "Startup",
            "--icon",
            "/icon/terminal.svg",
            "--level",
            "warn",
        ],
        b"first line\n\nthird\twith a tab\r\n  indented, no newline at the end",
    );
    out.assert_success();
    assert_eq!(out.stdout, "", "nothing on stdout");
    assert!(
        out.stderr
            .contains("sent 4 lines (59 bytes) in 1 batch to log source \"Startup\""),
        "{}",
        out.stderr
    );
    let logs = s.logs();
    assert_eq!(
        outputs(&logs),
        [
            "first line",
            "",
            "third\twith a tab",
            "  indented, no newline at the end"
        ]
    );
    for l in &logs {
        assert_eq!(l["level"], "warn", "{l}");
        assert_eq!(l["source_id"], STARTUP_SOURCE_ID, "{l}");
    }
    let sources = s.log_sources();
    assert_eq!(sources.len(), 1, "{sources:?}");
    assert_eq!(sources[0]["id"], STARTUP_SOURCE_ID);
    assert_eq!(sources[0]["display_name"], "Startup");
    assert_eq!(sources[0]["icon"], "/icon/terminal.svg");

    // Again with the same name (and the token from a file): the same source.
    let token_file = s
        .server
        .write("token", &format!("\n  {}  \n", s.agent_token));
    let out = ship(
        &s.server,
        &s.url(),
        &[
            "--token-file",
            token_file.to_str().expect("utf-8 path"),
            "--source",
            "Startup",
        ],
        b"second run\n",
    );
    out.assert_success();
    let logs = s.logs();
    assert_eq!(logs.len(), 5);
    assert_eq!(logs[4]["output"], "second run");
    assert_eq!(logs[4]["source_id"], STARTUP_SOURCE_ID);
    assert_eq!(logs[4]["level"], "info", "info by default");
    assert_eq!(s.log_sources().len(), 1, "the source is reused");

    // Without --source: the default External source.
    s.ship(&[], b"no source\n").assert_success();
    let logs = s.logs();
    assert_eq!(logs[5]["output"], "no source");
    assert_eq!(logs[5]["source_id"], EXTERNAL_SOURCE_ID);
    let sources = s.log_sources();
    assert!(
        sources.iter().any(|x| x["id"] == EXTERNAL_SOURCE_ID),
        "{sources:?}"
    );
}

#[test]
fn invalid_utf8_and_nul_arrive_as_the_replacement_mark() {
    let s = Setup::new("");
    s.ship(&[], b"caf\xe9 au lait\nnul\0byte\nplain \xe2\x9c\x93\n")
        .assert_success();
    assert_eq!(s.outputs(), ["caf❌ au lait", "nul❌byte", "plain ✓"]);
}

#[test]
fn a_large_input_arrives_complete_in_several_batches() {
    let s = Setup::new("[logs]\nmax_bytes_per_agent = 16777216\n");
    // 3 MiB of 100-byte lines: with 21 bytes counted per line, at least 4 batches.
    let (lines, input) = numbered_lines(3 * (1 << 20) / 100);
    let out = s.ship(&[], &input);
    out.assert_success();
    let logs = s.logs();
    assert_eq!(logs.len(), lines.len());
    assert!(outputs(&logs) == lines, "every line, once, in order");
    // More when reading is slow (a batch also leaves 1 s after its first line).
    let n = batches(&out.stderr);
    assert!(n >= 4, "batches: {n}\n{}", out.stderr);
    // The server stamps a batch's lines alike: no batch is over 1 MiB,
    // counting 21 bytes per line.
    let mut sizes: Vec<(OffsetDateTime, usize)> = Vec::new();
    for l in &logs {
        let (at, cost) = (
            created_at(l),
            l["output"].as_str().expect("output").len() + 21,
        );
        match sizes.last_mut() {
            Some((last, total)) if *last == at => *total += cost,
            _ => sizes.push((at, cost)),
        }
    }
    assert_eq!(sizes.len(), n, "one server timestamp per batch");
    for (at, total) in &sizes {
        assert!(*total <= 1 << 20, "batch at {at}: {total} bytes");
    }
}

#[test]
fn a_slow_writer_gets_a_batch_every_second() {
    let s = Setup::new("");
    let mut run = Running::spawn(logs_command(
        &s.server,
        &s.url(),
        &["--token", &s.agent_token],
    ));
    run.write(b"first\n");
    std::thread::sleep(Duration::from_millis(1500));
    // Sent after a second, although stdin is still open.
    assert_eq!(outputs(&s.wait_for_lines(1)), ["first"]);
    run.write(b"second\n");
    std::thread::sleep(Duration::from_millis(1500));
    let logs = s.wait_for_lines(2);
    let out = run.finish();
    out.assert_success();
    assert_eq!(batches(&out.stderr), 2, "{}", out.stderr);
    assert_eq!(outputs(&logs), ["first", "second"]);
    assert!(logs[1]["id"].as_i64() > logs[0]["id"].as_i64());
    let gap = created_at(&logs[1]) - created_at(&logs[0]);
    assert!(
        gap >= time::Duration::milliseconds(1000),
        "batches 1.5 s apart, got {gap}"
    );
}

#[test]
fn the_log_limit_stops_sending_but_stdin_is_read_to_its_end() {
    let s = Setup::new("[logs]\nmax_bytes_per_agent = 2048\n");
    let mut run = Running::spawn(logs_command(
        &s.server,
        &s.url(),
        &["--token", &s.agent_token, "--source", "Startup"],
    ));
    run.write(b"early 1\nearly 2\nearly 3\n");
    s.wait_for_lines(3);
    // Far over the limit: refused; the writer must still get rid of all of it.
    let (_, big) = numbered_lines(40_000);
    let written = Arc::new(AtomicUsize::new(0));
    let done = run.write_in_background(big.clone(), written.clone());
    let result = done
        .recv_timeout(RUN_TIMEOUT)
        .expect("the writer finished: stdin was read to its end");
    assert!(
        result.is_ok(),
        "every write succeeded (no EPIPE): {result:?}"
    );
    assert_eq!(written.load(Ordering::SeqCst), big.len());
    let out = run.finish();
    assert_eq!(out.status.code(), Some(3), "stderr:\n{}", out.stderr);
    let last = out.stderr.lines().last().expect("an error line");
    assert!(last.starts_with("error: "), "{}", out.stderr);
    assert!(last.contains("Logs limit exceeded"), "{last}");
    assert!(last.contains("logs.max_bytes_per_agent"), "{last}");
    assert!(
        out.stderr.contains("40000 lines were not sent"),
        "{}",
        out.stderr
    );
    assert_eq!(
        s.outputs(),
        ["early 1", "early 2", "early 3"],
        "what was stored stays, nothing more"
    );
}

#[test]
fn a_bad_token_is_refused_clearly() {
    let s = Setup::new("");
    let out = ship(
        &s.server,
        &s.url(),
        &["--token", "0123456789abcdef"],
        b"hello\n",
    );
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", out.stderr);
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: "), "{}", out.stderr);
    assert!(last.contains("401"), "{last}");
    assert!(last.contains("check the agent token"), "{last}");
    assert!(out.stderr.contains("1 line was not sent"), "{}", out.stderr);
    assert_eq!(s.logs().len(), 0);

    // With --source the registration is refused the same way.
    let out = ship(
        &s.server,
        &s.url(),
        &["--token", "0123456789abcdef", "--source", "Startup"],
        b"hello\n",
    );
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", out.stderr);
    assert!(out.stderr.contains("401"), "{}", out.stderr);

    // No token at all.
    let out = ship(&s.server, &s.url(), &[], b"hello\n");
    let err = out.assert_one_line_error();
    assert!(err.contains("no agent token"), "{err}");
}

#[test]
fn bad_flags_are_refused_before_reading() {
    let sb = Sandbox::new();
    let out = ship(
        &sb,
        "http://127.0.0.1:9",
        &["--token", "t", "--level", "loud"],
        b"x\n",
    );
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("trace, debug, info, warn, error"),
        "{}",
        out.stderr
    );
    let out = ship(
        &sb,
        "http://127.0.0.1:9",
        &["--token", "t", "--icon", "/i.svg"],
        b"",
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "--icon needs --source: {}",
        out.stderr
    );
    let out = ship(&sb, "ftp://x", &["--token", "t"], b"");
    assert!(
        out.assert_one_line_error()
            .contains("not an http:// or https:// URL")
    );
}

// ---------------------------------------------------------------------------
// Failures: nothing listening, a fake server that fails on purpose
// ---------------------------------------------------------------------------

#[test]
fn while_the_server_is_unreachable_the_writer_waits_then_it_gives_up() {
    let sb = Sandbox::new();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let mut run = Running::spawn(logs_command(
        &sb,
        &url,
        &["--token", "t0k3n", "--timeout", "3s"],
    ));
    let (_, input) = numbered_lines(80_000); // 8 MB
    let written = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let done = run.write_in_background(input.clone(), written.clone());
    std::thread::sleep(Duration::from_millis(1500));
    let held = written.load(Ordering::SeqCst);
    assert!(
        held < 2 << 20,
        "reading stops once 1 MiB is held: {held} bytes written"
    );
    let result = done.recv_timeout(RUN_TIMEOUT).expect("the writer finished");
    assert!(result.is_ok(), "no EPIPE after giving up: {result:?}");
    assert!(start.elapsed() >= Duration::from_millis(2500));
    let out = run.finish();
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", out.stderr);
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: gave up sending"), "{}", out.stderr);
    assert!(last.contains("--timeout 3s"), "{last}");
    assert!(out.stderr.contains("retrying in"), "{}", out.stderr);
    assert!(out.stderr.contains("sent 0 lines"), "{}", out.stderr);
}

/// A request as the fake server saw it.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    token: Option<String>,
    body: Value,
}

/// Answers with `status(method, n)` where `n` counts earlier requests of
/// that method; records every request. Stops when dropped.
struct Fake {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Recorded>>>,
    stop: Arc<AtomicBool>,
}

impl Fake {
    fn start(status: fn(&str, usize) -> u16) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a fake server");
        let addr = listener.local_addr().expect("addr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log2, stop2) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let log = log2.clone();
                    std::thread::spawn(move || serve(stream, &log, status));
                }
            }
        });
        Fake { addr, log, stop }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.log.lock().expect("lock").clone()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// One request per connection (the answer says `Connection: close`).
fn serve(stream: TcpStream, log: &Mutex<Vec<Recorded>>, status: fn(&str, usize) -> u16) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts.next().unwrap_or("").to_owned();
    let (mut length, mut token) = (0usize, None);
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().unwrap_or(0),
                "coder-session-token" => token = Some(v.trim().to_owned()),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let code = {
        let mut log = log.lock().expect("lock");
        let n = log.iter().filter(|r| r.method == method).count();
        log.push(Recorded {
            method: method.clone(),
            path,
            token,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        });
        status(&method, n)
    };
    let text = match code {
        200 => "{\"message\":\"Stored.\"}",
        201 => "{}",
        _ => "{\"message\":\"Try later.\"}",
    };
    let reply = format!(
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let mut stream = stream;
    let _ = stream.write_all(reply.as_bytes());
}

#[test]
fn transient_failures_are_retried_without_losing_or_repeating_lines() {
    // The first registration gets 502, the first batch 503; then all is well.
    let fake = Fake::start(|method, n| match (method, n) {
        ("POST", 0) => 502,
        ("POST", _) => 201,
        ("PATCH", 0) => 503,
        _ => 200,
    });
    let sb = Sandbox::new();
    let input = b"one\ntwo\nthree\n";
    let out = ship(
        &sb,
        &format!("http://{}", fake.addr),
        &[
            "--token",
            "agent-token",
            "--source",
            "Build",
            "--level",
            "debug",
        ],
        input,
    );
    out.assert_success();
    assert!(out.stderr.contains("retrying in"), "{}", out.stderr);
    assert!(out.stderr.contains("503"), "{}", out.stderr);
    assert!(
        out.stderr.contains("sent 3 lines (11 bytes) in 1 batch"),
        "{}",
        out.stderr
    );

    let reqs = fake.requests();
    let posts: Vec<_> = reqs.iter().filter(|r| r.method == "POST").collect();
    let patches: Vec<_> = reqs.iter().filter(|r| r.method == "PATCH").collect();
    assert_eq!(posts.len(), 2, "{reqs:#?}");
    assert_eq!(patches.len(), 2, "{reqs:#?}");
    for r in &reqs {
        assert_eq!(r.token.as_deref(), Some("agent-token"));
    }
    let source_id = "c861e037-cd55-5c68-b3f9-07c2d312b69b";
    assert_eq!(posts[1].path, "/api/v2/workspaceagents/me/log-source");
    assert_eq!(
        posts[1].body,
        serde_json::json!({"id": source_id, "display_name": "Build", "icon": ""})
    );
    // The same lines both times: the refused batch stayed queued and was
    // sent again; the accepted one holds each line once.
    for p in &patches {
        assert_eq!(p.path, "/api/v2/workspaceagents/me/logs");
        assert_eq!(p.body["log_source_id"], source_id);
        let logs = p.body["logs"].as_array().expect("logs");
        assert_eq!(outputs(logs), ["one", "two", "three"]);
        for l in logs {
            assert_eq!(l["level"], "debug");
            OffsetDateTime::parse(l["created_at"].as_str().expect("created_at"), &Rfc3339)
                .expect("RFC 3339 created_at");
        }
    }
}
