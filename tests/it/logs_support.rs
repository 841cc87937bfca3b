//! Helpers for the agent-log tests (`logs.rs`): a workspace with a token-auth
//! agent, requests with bodies, reading logs back, and a synchronous
//! WebSocket follower.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::WebSocket;
use tungstenite::{Message, handshake::HandshakeError};

use crate::harness::{Options, Resp, TestServer, agent, agent_id};

pub const PATCH_LOGS: &str = "/api/v2/workspaceagents/me/logs";
pub const LOG_SOURCE: &str = "/api/v2/workspaceagents/me/log-source";
pub const EXTERNAL: &str = "3b579bf4-1ed8-4b99-87a8-e9a1e3410410";

/// Workspace `dev` of member `alice`: one resource with two token-auth agents.
pub const MANIFEST: &str = r#"
name = "dev"
owner = "alice"

[[resources]]
name = "box"
type = "t"

  [[resources.agents]]
  name = "main"

  [[resources.agents]]
  name = "side"
"#;

/// A server with `alice` (member) and `dev` applied.
pub struct Fixture {
    pub server: TestServer,
    /// Alice's API key.
    pub key: String,
    pub applied: Value,
    /// Agent `main`: id and agent token.
    pub agent: String,
    pub token: String,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::with_config("")
    }

    pub fn with_config(config: &str) -> Fixture {
        let server = TestServer::start_with(Options {
            config: config.to_string(),
            ..Options::default()
        });
        server.create_user("alice", "member");
        let key = server.token("alice");
        let applied = server.apply(MANIFEST);
        let (agent, token) = agent_and_token(&applied, "main");
        Fixture {
            server,
            key,
            applied,
            agent,
            token,
        }
    }

    /// The agent token of agent `name` of the first build.
    pub fn token_of(&self, name: &str) -> String {
        agent_and_token(&self.applied, name).1
    }

    pub fn id_of(&self, name: &str) -> String {
        agent_id(&self.applied, name)
    }

    /// Stores `outputs` (level info) for agent `main`, asserting 200.
    #[track_caller]
    pub fn store(&self, outputs: &[&str]) {
        store(&self.server, &self.token, &batch_of(outputs));
    }

    /// `GET /logs?query` for agent `main` as alice.
    #[track_caller]
    pub fn logs(&self, query: &str) -> Vec<Value> {
        logs(&self.server, &self.agent, &self.key, query)
    }

    /// `GET /api/v2/workspaceagents/{main}` as alice.
    #[track_caller]
    pub fn agent_json(&self) -> Value {
        self.server.get_agent(&self.agent, &self.key).ok_json()
    }
}

/// The id and agent token of agent `name` in an apply result.
#[track_caller]
pub fn agent_and_token(applied: &Value, name: &str) -> (String, String) {
    let a = agent(applied, name);
    (
        a["id"].as_str().expect("agent id").to_string(),
        a["token"].as_str().expect("agent token").to_string(),
    )
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// A client that opens a connection per request: the server may close a
/// connection after answering before it read the body (see
/// `logs::an_early_refusal_leaves_the_connection_usable`), and a pooled
/// connection would then fail the *next* request.
fn http() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into()
    })
}

/// `PATCH`/`POST path` with `body` as is and, if given, a token in
/// `Coder-Session-Token`. `Err` carries a transport error (e.g. the server died).
pub fn try_send(
    server_url: &str,
    method: &str,
    token: Option<&str>,
    body: &[u8],
) -> Result<Resp, ureq::Error> {
    let mut req = match method {
        "PATCH" => http().patch(server_url),
        "POST" => http().post(server_url),
        other => panic!("unsupported method {other}"),
    }
    .header("Content-Type", "application/json");
    if let Some(token) = token {
        req = req.header("Coder-Session-Token", token);
    }
    let mut resp = req.send(body)?;
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
    let body = resp.body_mut().read_to_string()?;
    Ok(Resp {
        status: resp.status().as_u16(),
        headers,
        body,
    })
}

pub fn send(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> Resp {
    let url = server.url(path);
    try_send(&url, method, token, body).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// `PATCH /me/logs` with a raw body.
pub fn patch_raw(server: &TestServer, token: Option<&str>, body: &[u8]) -> Resp {
    send(server, "PATCH", PATCH_LOGS, token, body)
}

/// `PATCH /me/logs` with a JSON body.
pub fn patch(server: &TestServer, token: &str, body: &Value) -> Resp {
    patch_raw(server, Some(token), body.to_string().as_bytes())
}

/// `POST /me/log-source`.
pub fn post_source(server: &TestServer, token: &str, body: &Value) -> Resp {
    send(
        server,
        "POST",
        LOG_SOURCE,
        Some(token),
        body.to_string().as_bytes(),
    )
}

/// `{"logs": [{output, level}...]}` with the default source.
pub fn batch(lines: &[(&str, &str)]) -> Value {
    let logs: Vec<Value> = lines
        .iter()
        .map(|(output, level)| json!({"output": output, "level": level}))
        .collect();
    json!({ "logs": logs })
}

/// A batch of `info` lines with the default source.
pub fn batch_of(outputs: &[&str]) -> Value {
    let lines: Vec<(&str, &str)> = outputs.iter().map(|o| (*o, "info")).collect();
    batch(&lines)
}

/// Stores a batch, asserting 200 and the `Stored N log line(s).` answer.
#[track_caller]
pub fn store(server: &TestServer, token: &str, body: &Value) {
    let n = body["logs"].as_array().expect("logs").len();
    let resp = patch(server, token, body);
    let got = resp.ok_json();
    let plural = if n == 1 { "" } else { "s" };
    assert_eq!(
        got,
        json!({ "message": format!("Stored {n} log line{plural}.") })
    );
}

/// `GET /api/v2/workspaceagents/{agent}/logs?query` with an API key, asserting
/// a 200 JSON array.
#[track_caller]
pub fn logs(server: &TestServer, agent: &str, key: &str, query: &str) -> Vec<Value> {
    let resp = server.get(
        &format!("/api/v2/workspaceagents/{agent}/logs{query}"),
        Some(key),
    );
    resp.ok_json()
        .as_array()
        .unwrap_or_else(|| panic!("logs are an array: {}", resp.body))
        .clone()
}

pub fn ids(rows: &[Value]) -> Vec<i64> {
    rows.iter()
        .map(|r| r["id"].as_i64().expect("id is an integer"))
        .collect()
}

pub fn outputs(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|r| r["output"].as_str().expect("output").to_string())
        .collect()
}

/// Parses an RFC 3339 timestamp.
#[track_caller]
pub fn timestamp(v: &Value) -> time::OffsetDateTime {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("a timestamp string: {v}"));
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{s:?} is not RFC 3339: {e}"))
}

// ---------------------------------------------------------------------------
// Following over a WebSocket
// ---------------------------------------------------------------------------

/// What a follower saw next.
#[derive(Debug)]
pub enum Event {
    /// A text frame: a JSON array of logs.
    Frame(Vec<Value>),
    /// A close frame with this code (1005 when it carried none), or the
    /// connection ending without one (0).
    Closed(u16),
}

pub struct Follower {
    ws: WebSocket<TcpStream>,
}

impl Follower {
    /// Opens `GET /api/v2/workspaceagents/{agent}/{route}?follow&query` as a
    /// WebSocket with `key` in `Coder-Session-Token` (`route` is `logs` or
    /// `startup-logs`; `query` starts with `&` or is empty). `Err` is the HTTP
    /// status and body when the server refused the upgrade.
    pub fn open(
        server: &TestServer,
        agent: &str,
        key: Option<&str>,
        route: &str,
        query: &str,
    ) -> Result<Follower, (u16, String)> {
        let url = format!(
            "ws://{}/api/v2/workspaceagents/{agent}/{route}?follow{query}",
            server.addr
        );
        let mut req = url.as_str().into_client_request().expect("a ws request");
        if let Some(key) = key {
            req.headers_mut()
                .insert("Coder-Session-Token", key.parse().expect("header value"));
        }
        let stream = TcpStream::connect(server.addr).expect("connect to the server");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        match tungstenite::client(req, stream) {
            Ok((ws, resp)) => {
                assert_eq!(resp.status(), 101);
                Ok(Follower { ws })
            }
            Err(HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
                let body = resp
                    .body()
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Err((resp.status().as_u16(), body))
            }
            Err(e) => panic!("WebSocket handshake with {url}: {e}"),
        }
    }

    /// Follows `agent` with `key` on `/logs`, asserting the upgrade.
    #[track_caller]
    pub fn start(server: &TestServer, agent: &str, key: &str, query: &str) -> Follower {
        Follower::open(server, agent, Some(key), "logs", query)
            .unwrap_or_else(|(status, body)| panic!("follow refused: {status} {body}"))
    }

    /// The next frame or close, or `None` once `deadline` passes.
    pub fn next_until(&mut self, deadline: Instant) -> Option<Event> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.ws
                .get_mut()
                .set_read_timeout(Some(left))
                .expect("read timeout");
            match self.ws.read() {
                Ok(Message::Text(text)) => {
                    let v: Value = serde_json::from_str(text.as_str())
                        .unwrap_or_else(|e| panic!("frame is not JSON ({e}): {text}"));
                    let rows = v
                        .as_array()
                        .unwrap_or_else(|| panic!("frame is a JSON array: {text}"))
                        .clone();
                    return Some(Event::Frame(rows));
                }
                Ok(Message::Close(frame)) => {
                    return Some(Event::Closed(frame.map_or(1005, |f| u16::from(f.code))));
                }
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
                Ok(Message::Binary(b)) => panic!("unexpected binary frame of {} bytes", b.len()),
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    return None;
                }
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return Some(Event::Closed(0));
                }
                Err(tungstenite::Error::Protocol(
                    tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                )) => return Some(Event::Closed(0)),
                Err(e) => panic!("reading the follow socket: {e}"),
            }
        }
    }

    /// The next event within `timeout`, failing the test otherwise.
    #[track_caller]
    pub fn next(&mut self, timeout: Duration) -> Event {
        self.next_until(Instant::now() + timeout)
            .unwrap_or_else(|| panic!("nothing on the follow socket within {timeout:?}"))
    }

    /// The next frame within `timeout`, failing the test on a close or silence.
    #[track_caller]
    pub fn frame(&mut self, timeout: Duration) -> Vec<Value> {
        match self.next(timeout) {
            Event::Frame(rows) => rows,
            Event::Closed(code) => panic!("the follow socket closed ({code}) instead of a frame"),
        }
    }

    /// Frames until the socket closes (returning them and the close code),
    /// failing if `deadline` passes first.
    #[track_caller]
    pub fn until_closed(&mut self, deadline: Instant) -> (Vec<Vec<Value>>, u16) {
        let mut frames = Vec::new();
        loop {
            match self.next_until(deadline) {
                Some(Event::Frame(rows)) => frames.push(rows),
                Some(Event::Closed(code)) => return (frames, code),
                None => panic!(
                    "the follow socket did not close in time; frames so far: {:?}",
                    frames.iter().map(|f| ids(f)).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Closes politely.
    pub fn close(mut self) {
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
    }
}
