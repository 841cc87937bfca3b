//! `appliance agent auth`: the agent side of sign-in, against fake cloud
//! metadata services and a fake coderd on loopback (both recording every
//! request), and once end to end against the real server with a real AWS
//! identity document.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{self, CliOutput, Sandbox, TestServer};

// ---------------------------------------------------------------------------
// A tiny HTTP/1.1 server that records requests and answers from a script
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    query: String,
    /// Names lower-cased.
    headers: Vec<(String, String)>,
    body: String,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Reply {
    fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type", "text/plain".into())],
            body: body.into(),
        }
    }

    fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type", "application/json; charset=utf-8".into())],
            body: format!("{body}\n"),
        }
    }

    fn with_header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}

type Handler = dyn Fn(&Recorded, usize) -> Reply + Send + Sync;

/// Serves on 127.0.0.1 until dropped; `handler` gets each request and its
/// index (0-based) among all requests so far.
struct Fake {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Recorded>>>,
    stop: Arc<AtomicBool>,
}

impl Fake {
    fn start(handler: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a fake server");
        let addr = listener.local_addr().expect("local addr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (log2, stop2) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (log, handler) = (log2.clone(), handler.clone());
                std::thread::spawn(move || serve_connection(stream, &log, &*handler));
            }
        });
        Fake { addr, log, stop }
    }

    /// Answers each request with the next reply; the last one repeats.
    fn scripted(replies: Vec<Reply>) -> Fake {
        Fake::start(move |_, n| replies[n.min(replies.len() - 1)].clone())
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.log.lock().expect("log lock").clone()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve_connection(stream: TcpStream, log: &Mutex<Vec<Recorded>>, handler: &Handler) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut writer = stream;
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return; // the wake-up connection, or a client that gave up
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            if reader.read_line(&mut size).unwrap_or(0) == 0 {
                return;
            }
            let n =
                usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16).unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            if reader.read_exact(&mut chunk).is_err() {
                return;
            }
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        if reader.read_exact(&mut body).is_err() {
            return;
        }
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.clone(), String::new()),
    };
    let recorded = Recorded {
        method,
        path,
        query,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let n = {
        let mut log = log.lock().expect("log lock");
        log.push(recorded.clone());
        log.len() - 1
    };
    let reply = handler(&recorded, n);
    let mut out = format!("HTTP/1.1 {} X\r\n", reply.status);
    for (k, v) in &reply.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        reply.body.len()
    ));
    out.push_str(&reply.body);
    let _ = writer.write_all(out.as_bytes());
    let _ = writer.flush();
}

// ---------------------------------------------------------------------------
// Fake metadata services
// ---------------------------------------------------------------------------

const IMDS_TOKEN: &str = "AQAEAFake-imds-session-token==";
/// Pretty-printed like IMDS, no trailing newline: must arrive byte for byte.
const AWS_DOCUMENT: &str = "{\n  \"instanceId\" : \"i-0fake\",\n  \"region\" : \"us-east-1\"\n}";
/// Wrapped like IMDS wraps it; forwarded verbatim.
const AWS_SIGNATURE: &str = "c2lnbmF0dXJlIGxpbmUgb25l\nc2lnbmF0dXJlIGxpbmUgdHdv";
const AZURE_SIGNATURE: &str = "MIIKfakePKCS7==";
const GCP_JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln";

/// IMDSv2: a session token for a PUT with the TTL header, the identity
/// document and signature for GETs carrying that token; 401/404 otherwise.
fn fake_aws(document: &str, signature: &str) -> Fake {
    let (document, signature) = (document.to_string(), signature.to_string());
    Fake::start(move |r, _| {
        let token_ok = r.header("x-aws-ec2-metadata-token") == Some(IMDS_TOKEN);
        match (r.method.as_str(), r.path.as_str()) {
            ("PUT", "/latest/api/token") => {
                if r.header("x-aws-ec2-metadata-token-ttl-seconds").is_some() {
                    Reply::text(200, IMDS_TOKEN)
                } else {
                    Reply::text(400, "missing TTL")
                }
            }
            ("GET", "/latest/dynamic/instance-identity/signature") if token_ok => {
                Reply::text(200, &signature)
            }
            ("GET", "/latest/dynamic/instance-identity/document") if token_ok => {
                Reply::text(200, &document)
            }
            ("GET", _) if !token_ok => Reply::text(401, ""),
            _ => Reply::text(404, "not found"),
        }
    })
}

fn fake_azure() -> Fake {
    Fake::start(|r, _| {
        if r.method == "GET"
            && r.path == "/metadata/attested/document"
            && r.header("metadata") == Some("true")
        {
            Reply::json(
                200,
                json!({"encoding": "pkcs7", "signature": AZURE_SIGNATURE}),
            )
        } else {
            Reply::json(400, json!({"error": "bad request"}))
        }
    })
}

fn fake_gcp() -> Fake {
    Fake::start(|r, _| {
        if r.method == "GET"
            && r.path
                .starts_with("/computeMetadata/v1/instance/service-accounts/")
            && r.path.ends_with("/identity")
            && r.header("metadata-flavor") == Some("Google")
        {
            Reply::text(200, GCP_JWT).with_header("Metadata-Flavor", "Google")
        } else {
            Reply::text(403, "Missing Metadata-Flavor:Google header.")
        }
    })
}

/// A coderd that signs everyone in.
fn fake_coderd_ok(token: &str) -> Fake {
    Fake::scripted(vec![Reply::json(200, json!({"session_token": token}))])
}

// ---------------------------------------------------------------------------
// Running the command
// ---------------------------------------------------------------------------

/// `appliance agent auth ARGS` in `dir`, with nothing inherited that could
/// change its behaviour (Coder agent settings, proxies, CA bundle, GCE host).
fn agent_auth_in(
    dir: &Path,
    config: Option<&Path>,
    args: &[&str],
    env: &[(&str, &str)],
) -> CliOutput {
    let mut cmd: Command = harness::command(dir);
    for key in [
        "CODER_AGENT_URL",
        "CODER_AGENT_AUTH",
        "CODER_AGENT_NAME",
        "CODER_AGENT_TOKEN",
        "GCE_METADATA_HOST",
        "SSL_CERT_FILE",
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        cmd.env_remove(key);
    }
    if let Some(config) = config {
        cmd.env("APPLIANCE_CONFIG", config);
    }
    cmd.args(["agent", "auth"])
        .args(args)
        .envs(env.iter().copied());
    harness::run_bounded(cmd, Duration::from_secs(30))
}

fn agent_auth(sb: &Sandbox, args: &[&str]) -> CliOutput {
    agent_auth_in(sb.path(), Some(&sb.config), args, &[])
}

/// The one sign-in request the fake coderd saw.
#[track_caller]
fn only_post(coderd: &Fake, path: &str) -> Recorded {
    let reqs = coderd.requests();
    assert_eq!(reqs.len(), 1, "one request to the server: {reqs:#?}");
    let r = reqs.into_iter().next().expect("one request");
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, path);
    assert!(
        r.header("content-type")
            .is_some_and(|v| v.starts_with("application/json")),
        "JSON body: {r:?}"
    );
    assert_eq!(
        r.header("coder-session-token"),
        None,
        "no session token sent"
    );
    r
}

fn is_uuid_v4(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 36
        && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
        && b.iter()
            .enumerate()
            .all(|(i, c)| [8, 13, 18, 23].contains(&i) || c.is_ascii_hexdigit())
        && b[14] == b'4'
}

// ---------------------------------------------------------------------------
// Per cloud: the metadata requests and the body the server receives
// ---------------------------------------------------------------------------

#[test]
fn aws_uses_imdsv2_and_posts_signature_and_document_verbatim() {
    let sb = Sandbox::new();
    for name in [None, Some("dev")] {
        let imds = fake_aws(AWS_DOCUMENT, AWS_SIGNATURE);
        let coderd = fake_coderd_ok("tok-aws");
        let (url, meta) = (coderd.url(), imds.url());
        let mut args = vec![
            "--url",
            &url,
            "--auth",
            "aws-instance-identity",
            "--aws-metadata-url",
            &meta,
        ];
        if let Some(n) = name {
            args.extend(["--agent-name", n]);
        }
        let out = agent_auth(&sb, &args);
        out.assert_success();
        assert_eq!(out.stdout, "tok-aws\n", "the token alone on stdout");

        let reqs = imds.requests();
        let seen: Vec<(&str, &str)> = reqs
            .iter()
            .map(|r| (r.method.as_str(), r.path.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                ("PUT", "/latest/api/token"),
                ("GET", "/latest/dynamic/instance-identity/signature"),
                ("GET", "/latest/dynamic/instance-identity/document"),
            ]
        );
        assert_eq!(
            reqs[0].header("X-aws-ec2-metadata-token-ttl-seconds"),
            Some("21600")
        );
        for r in &reqs[1..] {
            assert_eq!(r.header("X-aws-ec2-metadata-token"), Some(IMDS_TOKEN));
        }

        let post = only_post(&coderd, "/api/v2/workspaceagents/aws-instance-identity");
        let mut want = json!({"signature": AWS_SIGNATURE, "document": AWS_DOCUMENT});
        if let Some(n) = name {
            want["agent_name"] = json!(n);
        }
        assert_eq!(post.json(), want, "agent_name only when given");
    }
}

#[test]
fn azure_forwards_the_attested_document() {
    let sb = Sandbox::new();
    for name in [None, Some("main")] {
        let imds = fake_azure();
        let coderd = fake_coderd_ok("tok-azure");
        let (url, meta) = (coderd.url(), imds.url());
        let mut args = vec![
            "--url",
            &url,
            "--auth",
            "azure-instance-identity",
            "--azure-metadata-url",
            &meta,
        ];
        if let Some(n) = name {
            args.extend(["--agent-name", n]);
        }
        let out = agent_auth(&sb, &args);
        out.assert_success();
        assert_eq!(out.stdout, "tok-azure\n");

        let reqs = imds.requests();
        assert_eq!(reqs.len(), 1, "{reqs:#?}");
        assert_eq!(reqs[0].method, "GET");
        assert_eq!(reqs[0].path, "/metadata/attested/document");
        assert_eq!(reqs[0].query, "api-version=2020-09-01");
        assert_eq!(reqs[0].header("Metadata"), Some("true"));

        let post = only_post(&coderd, "/api/v2/workspaceagents/azure-instance-identity");
        let mut want = json!({"signature": AZURE_SIGNATURE, "encoding": "pkcs7"});
        if let Some(n) = name {
            want["agent_name"] = json!(n);
        }
        assert_eq!(post.json(), want, "agent_name only when given");
    }
}

#[test]
fn google_asks_for_a_full_token_with_audience_coder() {
    let sb = Sandbox::new();
    for (name, account) in [
        (None, None),
        (Some("main"), Some("sa@p.iam.gserviceaccount.com")),
    ] {
        let imds = fake_gcp();
        let coderd = fake_coderd_ok("tok-gcp");
        let (url, meta) = (coderd.url(), imds.url());
        let mut args = vec![
            "--url",
            &url,
            "--auth",
            "google-instance-identity",
            "--gcp-metadata-url",
            &meta,
        ];
        if let Some(n) = name {
            args.extend(["--agent-name", n]);
        }
        if let Some(a) = account {
            args.extend(["--gcp-service-account", a]);
        }
        let out = agent_auth(&sb, &args);
        out.assert_success();
        assert_eq!(out.stdout, "tok-gcp\n");

        let reqs = imds.requests();
        assert_eq!(reqs.len(), 1, "{reqs:#?}");
        assert_eq!(reqs[0].method, "GET");
        assert_eq!(
            reqs[0].path,
            format!(
                "/computeMetadata/v1/instance/service-accounts/{}/identity",
                account.unwrap_or("default")
            )
        );
        assert_eq!(reqs[0].query, "audience=coder&format=full");
        assert_eq!(reqs[0].header("Metadata-Flavor"), Some("Google"));

        let post = only_post(&coderd, "/api/v2/workspaceagents/google-instance-identity");
        let mut want = json!({"json_web_token": GCP_JWT});
        if let Some(n) = name {
            want["agent_name"] = json!(n);
        }
        assert_eq!(post.json(), want, "agent_name only when given");
    }
}

#[test]
fn settings_come_from_coder_agent_environment_variables() {
    let sb = Sandbox::new();
    let imds = fake_gcp();
    let coderd = fake_coderd_ok("tok-env");
    let (url, meta) = (coderd.url(), imds.url());
    let out = agent_auth_in(
        sb.path(),
        Some(&sb.config),
        &[],
        &[
            ("CODER_AGENT_URL", &url),
            ("CODER_AGENT_AUTH", "google-instance-identity"),
            ("CODER_AGENT_NAME", "dev"),
            ("APPLIANCE_AGENT_GCP_METADATA_URL", &meta),
        ],
    );
    out.assert_success();
    assert_eq!(out.stdout, "tok-env\n");
    let post = only_post(&coderd, "/api/v2/workspaceagents/google-instance-identity");
    assert_eq!(post.json()["agent_name"], "dev");

    // Like Coder's agent, GCE_METADATA_HOST (host:port) moves the metadata server.
    let coderd = fake_coderd_ok("tok-gce-host");
    let url = coderd.url();
    let host = imds.addr.to_string();
    let out = agent_auth_in(
        sb.path(),
        Some(&sb.config),
        &["--url", &url, "--auth", "google-instance-identity"],
        &[("GCE_METADATA_HOST", &host)],
    );
    out.assert_success();
    assert_eq!(out.stdout, "tok-gce-host\n");
    assert_eq!(imds.requests().len(), 2);
}

#[test]
fn a_blank_agent_name_is_not_sent() {
    let sb = Sandbox::new();
    let imds = fake_azure();
    let coderd = fake_coderd_ok("t");
    let (url, meta) = (coderd.url(), imds.url());
    let out = agent_auth_in(
        sb.path(),
        Some(&sb.config),
        &[
            "--url",
            &url,
            "--auth",
            "azure-instance-identity",
            "--azure-metadata-url",
            &meta,
        ],
        &[("CODER_AGENT_NAME", "  ")],
    );
    out.assert_success();
    let body = only_post(&coderd, "/api/v2/workspaceagents/azure-instance-identity").json();
    assert!(body.get("agent_name").is_none(), "{body}");
}

// ---------------------------------------------------------------------------
// Output: stdout or --token-file
// ---------------------------------------------------------------------------

#[test]
fn token_file_gets_the_token_with_mode_0600() {
    let sb = Sandbox::new();
    let imds = fake_aws(AWS_DOCUMENT, AWS_SIGNATURE);
    let coderd = fake_coderd_ok("tok-file");
    let (url, meta) = (coderd.url(), imds.url());
    let path = sb.path().join("token");
    // An existing, world-readable file is replaced, not reused.
    std::fs::write(&path, "old").expect("write");
    let file = path.to_str().expect("utf-8 path");
    let out = agent_auth(
        &sb,
        &[
            "--url",
            &url,
            "--auth",
            "aws-instance-identity",
            "--aws-metadata-url",
            &meta,
            "--token-file",
            file,
        ],
    );
    out.assert_success();
    assert_eq!(out.stdout, "", "nothing on stdout with --token-file");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "tok-file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(sb.path())
        .expect("read dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary files left: {leftovers:?}"
    );
}

#[test]
fn auth_token_checks_and_echoes_the_given_token() {
    let sb = Sandbox::new();
    let coderd = fake_coderd_ok("unused");
    let url = coderd.url();
    let token = "9d1c2f6c-1111-4222-8333-444455556666";
    let out = agent_auth(&sb, &["--url", &url, "--token", token]);
    out.assert_success();
    assert_eq!(out.stdout, format!("{token}\n"));

    let out = agent_auth_in(
        sb.path(),
        Some(&sb.config),
        &[],
        &[
            ("CODER_AGENT_URL", &url),
            ("CODER_AGENT_AUTH", "token"),
            ("CODER_AGENT_TOKEN", token),
        ],
    );
    out.assert_success();
    assert_eq!(out.stdout, format!("{token}\n"));
    assert!(coderd.requests().is_empty(), "no request for --auth token");

    let err = agent_auth(&sb, &["--url", &url, "--auth", "token"])
        .assert_one_line_error()
        .to_string();
    assert!(err.contains("CODER_AGENT_TOKEN"), "{err}");

    let out = agent_auth(&sb, &["--auth", "token", "--token", token]);
    let err = out.assert_failure();
    assert!(err.contains("--url"), "names the missing flag: {err}");
}

#[test]
fn works_without_a_config_file_or_database_and_creates_neither() {
    let dir = tempfile::Builder::new()
        .prefix("appliance-agent-")
        .tempdir()
        .expect("temp dir");
    let imds = fake_azure();
    let coderd = fake_coderd_ok("tok-bare");
    let (url, meta) = (coderd.url(), imds.url());
    let out = agent_auth_in(
        dir.path(),
        None,
        &[
            "--url",
            &url,
            "--auth",
            "azure-instance-identity",
            "--azure-metadata-url",
            &meta,
        ],
        &[],
    );
    out.assert_success();
    assert_eq!(out.stdout, "tok-bare\n");
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert!(files.is_empty(), "created nothing: {files:?}");
}

// ---------------------------------------------------------------------------
// Refusals and retries
// ---------------------------------------------------------------------------

fn run_aws_against(sb: &Sandbox, imds: &Fake, coderd: &Fake, extra: &[&str]) -> CliOutput {
    let (url, meta) = (coderd.url(), imds.url());
    let mut args = vec![
        "--url",
        url.as_str(),
        "--auth",
        "aws-instance-identity",
        "--aws-metadata-url",
        meta.as_str(),
    ];
    args.extend_from_slice(extra);
    agent_auth(sb, &args)
}

#[test]
fn conflict_lists_the_agent_names_and_stops() {
    let sb = Sandbox::new();
    let imds = fake_aws(AWS_DOCUMENT, AWS_SIGNATURE);
    let coderd = Fake::scripted(vec![Reply::json(
        409,
        json!({"message": "Multiple agents found with instance ID \"i-0fake\". Set CODER_AGENT_NAME to one of: dev, main"}),
    )]);
    let out = run_aws_against(&sb, &imds, &coderd, &[]);
    let err = out.assert_one_line_error();
    assert!(err.contains("409"), "{err}");
    assert!(err.contains("CODER_AGENT_NAME"), "{err}");
    assert!(err.contains("--agent-name"), "{err}");
    assert!(err.ends_with("one of: dev, main"), "lists the names: {err}");
    assert_eq!(coderd.requests().len(), 1, "asked once");
}

#[test]
fn not_found_quotes_the_server_and_stops() {
    let sb = Sandbox::new();
    let imds = fake_aws(AWS_DOCUMENT, AWS_SIGNATURE);
    let coderd = Fake::scripted(vec![Reply::json(
        404,
        json!({"message": "Instance with id \"i-0fake\" not found."}),
    )]);
    let out = run_aws_against(&sb, &imds, &coderd, &[]);
    let err = out.assert_one_line_error();
    assert!(err.contains("404"), "{err}");
    assert!(
        err.contains("Instance with id \"i-0fake\" not found."),
        "{err}"
    );
    assert_eq!(coderd.requests().len(), 1, "asked once");
}

#[test]
fn unauthorized_quotes_message_and_detail() {
    let sb = Sandbox::new();
    let imds = fake_aws(AWS_DOCUMENT, AWS_SIGNATURE);
    let coderd = Fake::scripted(vec![Reply::json(
        401,
        json!({"message": "Invalid AWS identity.", "detail": "crypto/rsa: verification error"}),
    )]);
    let out = run_aws_against(&sb, &imds, &coderd, &[]);
    let err = out.assert_one_line_error();
    assert!(err.contains("Invalid AWS identity."), "{err}");
    assert!(err.contains("crypto/rsa: verification error"), "{err}");
    assert_eq!(coderd.requests().len(), 1, "asked once");
}

#[test]
fn server_errors_are_retried_with_backoff() {
    let sb = Sandbox::new();
    let imds = fake_aws(AWS_DOCUMENT, AWS_SIGNATURE);
    let coderd = Fake::scripted(vec![
        Reply::json(503, json!({"message": "Starting up."})),
        Reply::json(200, json!({"session_token": "tok-after-503"})),
    ]);
    let started = Instant::now();
    let out = run_aws_against(&sb, &imds, &coderd, &[]);
    out.assert_success();
    assert_eq!(out.stdout, "tok-after-503\n");
    assert!(
        out.stderr.contains("503") && out.stderr.contains("retrying in"),
        "one progress line per retry: {}",
        out.stderr
    );
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "backed off"
    );
    assert_eq!(coderd.requests().len(), 2);
    // Each attempt fetches a fresh proof.
    assert_eq!(imds.requests().len(), 6);
}

#[test]
fn rate_limits_are_retried_after_retry_after() {
    let sb = Sandbox::new();
    let imds = fake_azure();
    let coderd = Fake::scripted(vec![
        Reply::json(429, json!({"message": "You've been rate limited."}))
            .with_header("Retry-After", "1"),
        Reply::json(200, json!({"session_token": "tok-after-429"})),
    ]);
    let (url, meta) = (coderd.url(), imds.url());
    let out = agent_auth(
        &sb,
        &[
            "--url",
            &url,
            "--auth",
            "azure-instance-identity",
            "--azure-metadata-url",
            &meta,
        ],
    );
    out.assert_success();
    assert_eq!(out.stdout, "tok-after-429\n");
    assert!(out.stderr.contains("429"), "{}", out.stderr);
    assert!(
        out.stderr.contains("retrying in 1s"),
        "honours Retry-After: {}",
        out.stderr
    );
}

#[test]
fn metadata_service_down_retries_until_the_timeout() {
    let sb = Sandbox::new();
    // A port nobody listens on.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let meta = format!("http://{closed}");
    let coderd = fake_coderd_ok("never");
    let url = coderd.url();
    let started = Instant::now();
    let out = agent_auth(
        &sb,
        &[
            "--url",
            &url,
            "--auth",
            "aws-instance-identity",
            "--aws-metadata-url",
            &meta,
            "--timeout",
            "3s",
        ],
    );
    let elapsed = started.elapsed();
    let err = out.assert_failure();
    assert_eq!(out.stdout, "");
    assert!(
        elapsed >= Duration::from_millis(2500) && elapsed < Duration::from_secs(15),
        "bounded by --timeout: {elapsed:?}"
    );
    let retries = err.lines().filter(|l| l.contains("retrying in")).count();
    assert!(retries >= 2, "retried: {err}");
    let last = err.lines().last().unwrap_or("");
    assert!(
        last.starts_with("error: gave up after")
            && last.contains("--timeout 3s")
            && last.contains(&meta),
        "says why it gave up: {err}"
    );
    assert!(coderd.requests().is_empty(), "no proof, no sign-in");
}

#[test]
fn a_metadata_refusal_stops_with_a_hint() {
    // E.g. running on Azure with --auth google-instance-identity.
    let sb = Sandbox::new();
    let imds = Fake::scripted(vec![Reply::text(404, "Not Found")]);
    let coderd = fake_coderd_ok("never");
    let (url, meta) = (coderd.url(), imds.url());
    let out = agent_auth(
        &sb,
        &[
            "--url",
            &url,
            "--auth",
            "google-instance-identity",
            "--gcp-metadata-url",
            &meta,
        ],
    );
    let err = out.assert_failure();
    assert!(
        err.contains("404") && err.contains("--gcp-service-account"),
        "{err}"
    );
    assert_eq!(imds.requests().len(), 1, "no retry on a 404");
    assert!(coderd.requests().is_empty());
}

// ---------------------------------------------------------------------------
// End to end: the real server, a real AWS identity document
// ---------------------------------------------------------------------------

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/identity/aws/coder-us-east-1-2022"
);

#[test]
fn end_to_end_with_a_real_aws_identity_document() {
    let server = TestServer::start();
    server.apply(
        r#"
name = "ec2"
owner = "admin"

[[resources]]
name = "vm"
type = "aws_instance"
instance_id = "i-076e9b91f7c420782"

  [[resources.agents]]
  name = "main"
  auth = "aws-instance-identity"
"#,
    );
    let document =
        std::fs::read_to_string(format!("{FIXTURE}/document.json")).expect("fixture document");
    let signature =
        std::fs::read_to_string(format!("{FIXTURE}/signature.b64")).expect("fixture signature");
    let imds = fake_aws(&document, &signature);
    let (url, meta) = (server.url(""), imds.url());
    let out = agent_auth(
        server.sandbox(),
        &[
            "--url",
            &url,
            "--auth",
            "aws-instance-identity",
            "--aws-metadata-url",
            &meta,
        ],
    );
    out.assert_success();
    let token = out.stdout.trim_end_matches('\n');
    assert!(is_uuid_v4(token), "a UUID agent token: {:?}", out.stdout);

    // The token signs the agent in.
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let resp = http
        .post(server.url("/api/v2/workspaceagents/me/log-source"))
        .header("Coder-Session-Token", token)
        .send_json(json!({
            "id": "7b7e2b9a-2c55-4b4e-9a38-1f1e6f0a4b11",
            "display_name": "agent auth test",
            "icon": ""
        }))
        .expect("log-source request");
    assert_eq!(resp.status().as_u16(), 201, "the minted token works");

    // Naming another agent on the same instance is a clear 404.
    let out = agent_auth(
        server.sandbox(),
        &[
            "--url",
            &url,
            "--auth",
            "aws-instance-identity",
            "--aws-metadata-url",
            &meta,
            "--agent-name",
            "dev",
        ],
    );
    let err = out.assert_failure();
    assert!(
        err.contains("404") && err.contains("name \"dev\""),
        "quotes the server: {err}"
    );
}
