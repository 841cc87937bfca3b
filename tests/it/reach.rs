//! The routes where the server reaches a live agent (BEHAVIOUR.md §1.12–§1.15,
//! §1.17, §1.19): listening ports, containers (list, watch, delete,
//! recreate), the web terminal and its signed token. Every refusal, in
//! coderd's order, up to the dial: an agent connected over `/me/rpc` that
//! never sent its tailnet node cannot be dialed, so that is where these
//! requests end.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, handshake::HandshakeError};
use uuid::Uuid;

use crate::harness::{Auth, Resp, TestServer};
use crate::logs_support::{Fixture, agent_and_token, send};
use crate::rpc_client::RpcClient;

const NO_KEY: &str = "API key or external proxy authentication required, but none provided";
const NO_AGENT: &str = "Agent doesn't exist with that id, or you do not have access to it.";
const NOT_FOUND: &str = "Resource not found or you do not have access to this resource";
const DIAL_FAILED: &str = "Internal error dialing workspace agent.";
const SIGNED_TOKEN: &str = "coder_signed_app_token_23db1dde";
const TOKEN_ROUTE: &str = "/api/v2/applications/reconnecting-pty-signed-token";

/// The five `{workspaceagent}` routes that call the agent's HTTP API:
/// method and path (after `/api/v2/workspaceagents/{id}`).
const AGENT_API: &[(&str, &str)] = &[
    ("GET", "/listening-ports"),
    ("GET", "/containers"),
    ("GET", "/containers/watch"),
    ("DELETE", "/containers/devcontainers/3f8a2b1c"),
    ("POST", "/containers/devcontainers/3f8a2b1c/recreate"),
];

fn path(agent: &str, rest: &str) -> String {
    format!("/api/v2/workspaceagents/{agent}{rest}")
}

/// Alice's workspace (agents `main` and `side`, neither connected), her
/// key, and member Bob's key.
struct Setup {
    fx: Fixture,
    bob: String,
}

impl Setup {
    fn new() -> Setup {
        let fx = Fixture::new();
        fx.server.create_user("bob", "member");
        let bob = fx.server.token("bob");
        Setup { fx, bob }
    }

    fn server(&self) -> &TestServer {
        &self.fx.server
    }

    fn alice(&self) -> &str {
        &self.fx.key
    }

    fn side(&self) -> String {
        self.fx.id_of("side")
    }

    fn pty_url(&self, agent: &str) -> String {
        format!(
            "ws://{}/api/v2/workspaceagents/{agent}/pty",
            self.server().addr
        )
    }

    fn issue(&self, key: Option<&str>, body: &Value) -> Resp {
        send(
            self.server(),
            "POST",
            TOKEN_ROUTE,
            key,
            body.to_string().as_bytes(),
        )
    }
}

/// Asserts one of Coder's static HTML error pages.
#[track_caller]
fn assert_page(resp: &Resp, status: u16, title: &str, text: &str) {
    assert_eq!(resp.status, status, "status; body: {}", resp.body);
    assert_eq!(
        resp.header("content-type"),
        Some("text/html; charset=utf-8"),
        "{}",
        resp.body
    );
    assert!(
        resp.body
            .contains(&format!("<title>{status} - {title}</title>")),
        "{}",
        resp.body
    );
    assert!(resp.body.contains(text), "{text:?} in {}", resp.body);
}

#[test]
fn agent_api_routes_refuse_in_coders_order() {
    let s = Setup::new();
    let server = s.server();
    let (main, side) = (&s.fx.agent, s.side());
    let unknown = Uuid::new_v4().to_string();
    let admin = server.token("admin");
    let not_connected =
        "Agent state is \"connecting\", it must be in the \"connected\" state.".to_string();
    for (method, rest) in AGENT_API {
        let what = format!("{method} {rest}");
        server
            .request(method, &path(main, rest), Auth::None)
            .assert_error(401, NO_KEY);
        server
            .request(
                method,
                &path(main, rest),
                Auth::Header("abcdefghij-0123456789abcdefghijkl"),
            )
            .assert_error(401, NO_KEY);
        server
            .request(method, &path("nope", rest), Auth::Header(s.alice()))
            .assert_error(400, "Invalid UUID \"nope\".");
        server
            .request(method, &path(&unknown, rest), Auth::Header(s.alice()))
            .assert_error(404, NO_AGENT);
        // Another member's agent does not exist for Bob.
        server
            .request(method, &path(main, rest), Auth::Header(&s.bob))
            .assert_error(404, NO_AGENT);
        // The owner, any way she sends her key, and an admin get as far as
        // the agent's status: it never connected.
        for auth in [
            Auth::Header(s.alice()),
            Auth::Cookie(s.alice()),
            Auth::Query(s.alice()),
            Auth::Bearer(s.alice()),
            Auth::Header(&admin),
        ] {
            let resp = server.request(method, &path(main, rest), auth);
            let body = resp.assert_error(400, &not_connected);
            assert!(body.get("detail").is_none(), "{what}: {body}");
        }
        server
            .request(method, &path(&side, rest), Auth::Header(s.alice()))
            .assert_error(400, &not_connected);
    }
}

#[test]
fn container_labels_are_checked_after_the_agent_and_before_its_status() {
    let s = Setup::new();
    let server = s.server();
    let main = &s.fx.agent;
    let not_connected = "Agent state is \"connecting\", it must be in the \"connected\" state.";
    for bad in ["label=a", "label=a=b=c", "label=k=v&label=novalue"] {
        let p = format!("{}?{bad}", path(main, "/containers"));
        let body = server
            .get(&p, Some(s.alice()))
            .assert_error(400, "Invalid label format");
        assert_eq!(body["detail"], "Labels must be in the format key=value");
        // Who is asking comes first.
        server.get(&p, None).assert_error(401, NO_KEY);
        server.get(&p, Some(&s.bob)).assert_error(404, NO_AGENT);
    }
    for good in ["label=k=v", "label=k=", "label=a=1&label=b=2", "label=%3D"] {
        let p = format!("{}?{good}", path(main, "/containers"));
        server
            .get(&p, Some(s.alice()))
            .assert_error(400, not_connected);
    }
}

#[test]
fn the_terminal_refuses_as_the_workspace_apps_proxy_does() {
    let s = Setup::new();
    let server = s.server();
    let main = &s.fx.agent;
    let q = format!("/pty?reconnect={}", Uuid::new_v4());
    // No credential (or one that is no key): coderd's JSON 404, no redirect.
    for auth in [
        Auth::None,
        Auth::Header("abcdefghij-0123456789abcdefghijkl"),
    ] {
        server
            .request("GET", &path(main, &q), auth)
            .assert_error(404, NOT_FOUND);
    }
    // A key that may not reach the agent, or no such agent: the HTML page.
    for (agent, key) in [
        (main.to_string(), s.bob.as_str()),
        (Uuid::new_v4().to_string(), s.alice()),
    ] {
        let resp = server.get(&path(&agent, &q), Some(key));
        assert_page(
            &resp,
            404,
            "Application Not Found",
            "The application or workspace you are trying to access does not exist or you do not have permission to access it.",
        );
    }
    // The id must be a UUID (coderd: its "invalid app request" 500 page).
    let resp = server.get(&path("nope", &q), Some(s.alice()));
    assert_page(
        &resp,
        500,
        "Internal Server Error",
        "An internal server error occurred.",
    );
    // Not connected: "Application Unavailable", before the query is read.
    for auth in [
        Auth::Header(s.alice()),
        Auth::Cookie(s.alice()),
        Auth::Query(s.alice()),
    ] {
        for rest in [q.as_str(), "/pty", "/pty?reconnect=nope"] {
            let resp = server.request("GET", &path(main, rest), auth);
            assert_page(
                &resp,
                404,
                "Application Unavailable",
                "Agent state is &#34;connecting&#34;, not &#34;connected&#34;",
            );
        }
    }
    // A signed token that is not one counts as none.
    let resp = server.get(
        &format!("{}&{SIGNED_TOKEN}=forged.token", path(main, &q)),
        None,
    );
    resp.assert_error(404, NOT_FOUND);
}

#[test]
fn signed_tokens_are_refused_for_bad_requests_and_unreachable_agents() {
    let s = Setup::new();
    let main = &s.fx.agent;
    let good_url = s.pty_url(main);
    let body = json!({"url": good_url, "agentID": main});
    s.issue(None, &body).assert_error(401, NO_KEY);

    let resp = s.issue(Some(s.alice()), &json!({}));
    let err = resp.assert_error(400, "Validation failed.");
    assert_eq!(
        err["validations"],
        json!([
            {"field": "url", "detail": "Validation failed for tag \"required\" with value: \"\""},
            {"field": "agentID", "detail": "Validation failed for tag \"required\" with value: \"00000000-0000-0000-0000-000000000000\""},
        ])
    );
    s.issue(Some(s.alice()), &json!({"url": 1}))
        .assert_error(400, "Request body must be valid JSON.");
    let err = s
        .issue(
            Some(s.alice()),
            &json!({"url": good_url.replacen("ws://", "http://", 1), "agentID": main}),
        )
        .assert_error(400, "Invalid URL.");
    assert_eq!(
        err["detail"],
        "invalid URL scheme \"http\", expected 'ws' or 'wss'"
    );
    let err = s
        .issue(
            Some(s.alice()),
            &json!({"url": s.pty_url(&s.side()), "agentID": main}),
        )
        .assert_error(400, "Invalid URL path.");
    assert_eq!(
        err["detail"],
        "The provided URL is not a valid reconnecting PTY endpoint URL."
    );
    s.issue(
        Some(s.alice()),
        &json!({"url": format!("ws://elsewhere.example/api/v2/workspaceagents/{main}/pty"), "agentID": main}),
    )
    .assert_error(400, "Invalid hostname in URL.");
    // Bob may not reach Alice's agent; nobody reaches an unknown one.
    let resp = s.issue(Some(&s.bob), &body);
    assert_page(&resp, 404, "Application Not Found", "does not exist");
    let unknown = Uuid::new_v4();
    let resp = s.issue(
        Some(s.alice()),
        &json!({"url": s.pty_url(&unknown.to_string()), "agentID": unknown}),
    );
    assert_page(&resp, 404, "Application Not Found", "does not exist");
    // The agent must be connected to get a token.
    let resp = s.issue(Some(s.alice()), &body);
    assert_page(
        &resp,
        404,
        "Application Unavailable",
        "Agent state is &#34;connecting&#34;, not &#34;connected&#34;",
    );
}

// ---------------------------------------------------------------------------
// A connected agent that cannot be dialed
// ---------------------------------------------------------------------------

/// Agent `main` of a [`Setup`] connected over `/me/rpc` (without ever sending
/// its tailnet node), kept connected by the runtime's tasks.
struct Connected {
    s: Setup,
    _client: RpcClient,
    _rt: tokio::runtime::Runtime,
}

impl Connected {
    fn new() -> Connected {
        let s = Setup::new();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let base = format!("http://{}", s.server().addr);
        let (_, token) = agent_and_token(&s.fx.applied, "main");
        let client = rt
            .block_on(RpcClient::connect(&base, &token, "2.10", Some("agent")))
            .unwrap_or_else(|e| panic!("dial /me/rpc: {e}"));
        let deadline = Instant::now() + Duration::from_secs(15);
        while s.fx.agent_json()["status"] != "connected" {
            assert!(
                Instant::now() < deadline,
                "the agent never showed as connected"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Connected {
            s,
            _client: client,
            _rt: rt,
        }
    }
}

/// The key the server signs terminal tokens with, read from its database.
fn token_key(server: &TestServer) -> Vec<u8> {
    let db = rusqlite::Connection::open(&server.sandbox().db).expect("open the database");
    db.query_row(
        "SELECT value FROM server_keys WHERE name = 'reconnecting_pty_token'",
        [],
        |r| r.get(0),
    )
    .expect("the token key")
}

/// A token in the server's format: `base64url(agent ‖ user ‖ expiry)` `.`
/// `base64url(HMAC-SHA256)`.
fn forge(key: &[u8], agent: &str, expires: i64) -> String {
    let mut payload = Uuid::parse_str(agent).expect("uuid").as_bytes().to_vec();
    payload.extend_from_slice(Uuid::new_v4().as_bytes());
    payload.extend_from_slice(&expires.to_be_bytes());
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).expect("a key");
    mac.update(&payload);
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&payload),
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Opens the terminal's WebSocket and returns the close frame the server
/// ends it with (the dial fails after the upgrade).
fn terminal_close(
    addr: std::net::SocketAddr,
    path_and_query: &str,
    key: Option<&str>,
) -> (u16, String) {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("read timeout");
    let mut request = format!("ws://{addr}{path_and_query}")
        .into_client_request()
        .expect("request");
    if let Some(key) = key {
        request
            .headers_mut()
            .insert("Coder-Session-Token", key.parse().expect("header"));
    }
    let (mut ws, resp) = match tungstenite::client(request, stream) {
        Ok(ok) => ok,
        Err(HandshakeError::Failure(e)) => panic!("{path_and_query}: handshake: {e}"),
        Err(HandshakeError::Interrupted(_)) => panic!("{path_and_query}: handshake interrupted"),
    };
    assert_eq!(resp.status().as_u16(), 101);
    assert!(
        resp.headers().get("sec-websocket-extensions").is_none(),
        "no compression on the terminal"
    );
    loop {
        match ws.read() {
            Ok(Message::Close(Some(frame))) => {
                return (u16::from(frame.code), frame.reason.to_string());
            }
            Ok(Message::Close(None)) => panic!("{path_and_query}: closed without a code"),
            Ok(_) => continue,
            Err(e) => panic!("{path_and_query}: {e}"),
        }
    }
}

#[test]
fn a_connected_agent_that_cannot_be_dialed() {
    let c = Connected::new();
    let s = &c.s;
    let server = s.server();
    let main = s.fx.agent.clone();
    let addr = server.addr;
    let reconnect = Uuid::new_v4();
    let pty = path(
        &main,
        &format!("/pty?reconnect={reconnect}&width=100&height=30&command=bash"),
    );

    // Refusals that come before the dial, now that the agent is connected.
    let err = server
        .get(
            &path(&main, "/pty?reconnect=nope&height=x"),
            Some(s.alice()),
        )
        .assert_error(400, "Invalid query parameters.");
    assert_eq!(
        err["validations"],
        json!([
            {"field": "reconnect", "detail": "Query param \"reconnect\" must be a valid uuid"},
            {"field": "height", "detail": "Query param \"height\" must be a valid positive integer: strconv.ParseUint: parsing \"x\": invalid syntax"},
        ])
    );
    let err = server
        .get(&path(&main, "/pty"), Some(s.alice()))
        .assert_error(400, "Invalid query parameters.");
    assert_eq!(
        err["validations"],
        json!([{"field": "reconnect", "detail": "Query param \"reconnect\" is required and cannot be empty"}])
    );
    server
        .get(&pty, Some(s.alice()))
        .assert_error(400, "Failed to accept websocket.");
    let foreign = server.request(
        "GET",
        &pty,
        Auth::Headers(&[
            ("Coder-Session-Token", s.alice()),
            ("Origin", "https://evil.example"),
        ]),
    );
    assert_eq!(foreign.status, 403, "{}", foreign.body);
    assert!(
        foreign.body.contains("\"evil.example\" is not authorized"),
        "{}",
        foreign.body
    );

    // A token for the terminal of the connected agent.
    let issued = s
        .issue(
            Some(s.alice()),
            &json!({"url": format!("{}?reconnect={reconnect}", s.pty_url(&main)), "agentID": main}),
        )
        .ok_json();
    let signed = issued["signed_token"]
        .as_str()
        .expect("signed_token")
        .to_owned();
    assert_eq!(issued.as_object().map(|o| o.len()), Some(1), "{issued}");
    let with = |token: &str| format!("{pty}&{SIGNED_TOKEN}={token}");
    // Accepted in place of a key: the request gets as far as the upgrade.
    server
        .get(&with(&signed), None)
        .assert_error(400, "Failed to accept websocket.");
    // Refused: for another agent, tampered, expired, signed with another key.
    let key = token_key(server);
    let side_pty = format!(
        "{}&{SIGNED_TOKEN}={signed}",
        path(&s.side(), &format!("/pty?reconnect={reconnect}"))
    );
    server.get(&side_pty, None).assert_error(404, NOT_FOUND);
    let mut tampered = signed.clone().into_bytes();
    tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("text");
    server
        .get(&with(&tampered), None)
        .assert_error(404, NOT_FOUND);
    server
        .get(&with(&forge(&key, &main, unix_now() - 1)), None)
        .assert_error(404, NOT_FOUND);
    server
        .get(&with(&forge(&[1u8; 32], &main, unix_now() + 60)), None)
        .assert_error(404, NOT_FOUND);
    // The forger is right: with the server's key and time left, it passes.
    server
        .get(&with(&forge(&key, &main, unix_now() + 60)), None)
        .assert_error(400, "Failed to accept websocket.");

    // The dials, all at once (each fails once the dialer gives up on the
    // agent's node).
    std::thread::scope(|scope| {
        let mut dials = Vec::new();
        for (method, rest) in AGENT_API {
            let p = path(&main, rest);
            let key = s.alice();
            dials.push(scope.spawn(move || {
                let resp = server.request(method, &p, Auth::Header(key));
                let body = resp.assert_error(500, DIAL_FAILED);
                assert!(
                    body["detail"].as_str().is_some_and(|d| !d.is_empty()),
                    "{method} {p}: the reason is the detail: {body}"
                );
            }));
        }
        for (via_token, key) in [(false, Some(s.alice())), (true, None)] {
            let p = if via_token {
                with(&signed)
            } else {
                pty.clone()
            };
            dials.push(scope.spawn(move || {
                let (code, reason) = terminal_close(addr, &p, key);
                assert_eq!(code, u16::from(CloseCode::Error), "{reason}");
                assert!(reason.starts_with("dial workspace agent: "), "{reason}");
                assert!(reason.len() <= 123, "{reason}");
            }));
        }
        for d in dials {
            d.join().expect("a dial check");
        }
    });
}
