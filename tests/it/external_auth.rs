//! External auth through the real binary, against a fake OAuth2 provider on
//! loopback: `GET /me/external-auth` (and `/me/gitauth`), `listen`, refresh,
//! validation, the browser flow and `appliance external-auth`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Options, TestServer};
use crate::logs_support::agent_and_token;

/// A fake OAuth2 provider: `/token` (code `good-code`, refresh tokens
/// `ref-1` and `revoked`) and `/validate` (tokens starting `tok` or `good`
/// are valid). Counts validations per token.
struct FakeProvider {
    base: String,
    validations: Arc<Mutex<HashMap<String, usize>>>,
}

impl FakeProvider {
    fn start() -> FakeProvider {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake provider");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let validations = Arc::new(Mutex::new(HashMap::new()));
        let counts = validations.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let counts = counts.clone();
                std::thread::spawn(move || serve(stream, &counts));
            }
        });
        FakeProvider { base, validations }
    }

    fn validations(&self, token: &str) -> usize {
        self.validations
            .lock()
            .unwrap()
            .get(token)
            .copied()
            .unwrap_or(0)
    }
}

fn serve(stream: TcpStream, counts: &Mutex<HashMap<String, usize>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    let _ = reader.read_exact(&mut body);
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let (status, answer) = match (method, path) {
        ("POST", "/token") => {
            let client_ok = form.get("client_id").map(String::as_str) == Some("cid")
                && form.get("client_secret").map(String::as_str) == Some("csecret");
            match (
                client_ok,
                form.get("grant_type").map(String::as_str),
                form.get("code")
                    .or(form.get("refresh_token"))
                    .map(String::as_str),
            ) {
                (true, Some("authorization_code"), Some("good-code")) => (
                    200,
                    r#"{"access_token":"tok-1","refresh_token":"ref-1","expires_in":3600,"token_type":"bearer","scope":"repo"}"#,
                ),
                (true, Some("refresh_token"), Some("ref-1")) => (
                    200,
                    r#"{"access_token":"tok-2","refresh_token":"ref-2","expires_in":3600}"#,
                ),
                _ => (400, r#"{"error":"invalid_grant"}"#),
            }
        }
        ("GET", "/validate") => {
            let token = headers
                .get("authorization")
                .and_then(|a| a.strip_prefix("Bearer "))
                .unwrap_or("")
                .to_string();
            *counts.lock().unwrap().entry(token.clone()).or_default() += 1;
            if token.starts_with("tok") || token.starts_with("good") {
                (200, "{}")
            } else {
                (401, r#"{"message":"bad token"}"#)
            }
        }
        _ => (404, "{}"),
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
}

const MANIFEST: &str = r#"
name = "dev"
owner = "alice"
external_auth = ["gitea"]

[[resources]]
name = "vm"
type = "null_resource"

  [[resources.agents]]
  name = "main"

  [[resources.agents]]
  name = "restricted"
  api_key_scope = "no_user_data"
"#;

struct Fx {
    server: TestServer,
    fake: FakeProvider,
    token: String,
    restricted: String,
    /// A git remote on the fake provider's host.
    remote: String,
}

fn setup() -> Fx {
    let fake = FakeProvider::start();
    let config = format!(
        r#"
[[external_auth]]
id = "gitea"
type = "gitea"
client_id = "cid"
client_secret = "csecret"
auth_url = "{base}/authorize"
token_url = "{base}/token"
validate_url = "{base}/validate"

[[external_auth]]
id = "gh"
type = "github"
client_id = "gh-client"
validate_url = ""
"#,
        base = fake.base
    );
    let server = TestServer::start_with(Options {
        config,
        ..Options::default()
    });
    server.create_user("alice", "member");
    let applied = server.apply(MANIFEST);
    let (_, token) = agent_and_token(&applied, "main");
    let (_, restricted) = agent_and_token(&applied, "restricted");
    let remote = format!("{}/alice/dotfiles.git", fake.base);
    Fx {
        server,
        fake,
        token,
        restricted,
        remote,
    }
}

impl Fx {
    fn ask(&self, query: &str) -> crate::harness::Resp {
        self.server.get(
            &format!("/api/v2/workspaceagents/me/external-auth?{query}"),
            Some(&self.token),
        )
    }

    fn ask_remote(&self) -> Value {
        self.ask(&format!("match={}", self.remote)).ok_json()
    }

    fn link(&self, args: &[&str]) {
        let mut all = vec![
            "external-auth",
            "link",
            "--user",
            "alice",
            "--provider",
            "gitea",
        ];
        all.extend_from_slice(args);
        self.server.cli(&all).assert_success();
    }
}

#[test]
fn without_a_link_the_answer_is_where_to_make_one() {
    let fx = setup();
    let body = fx.ask_remote();
    assert_eq!(body["url"], fx.server.url("/external-auth/gitea"));
    assert_eq!(body["access_token"], "");
    assert_eq!(body["type"], "");
    assert_eq!(body["expires_at"], "0001-01-01T00:00:00Z");
    assert_eq!(body["token_extra"], Value::Null);
    // The legacy alias and `url` parameter work the same.
    let alias = fx
        .server
        .get(
            &format!("/api/v2/workspaceagents/me/gitauth?url={}", fx.remote),
            Some(&fx.token),
        )
        .ok_json();
    assert_eq!(alias, body);
}

#[test]
fn queries_are_checked_in_upstreams_order() {
    let fx = setup();
    fx.ask("")
        .assert_error(400, "'url' or 'id' must be provided!");
    fx.ask("match=https://github.com/a/b&id=gh")
        .assert_error(400, "'url' and 'id' cannot be provided together!");
    let err = fx.ask("id=nope").assert_error(
        404,
        "No external auth provider with the id \"nope\" is configured.",
    );
    assert!(err["detail"].as_str().unwrap().contains("gitea="), "{err}");
    fx.ask("match=https://example.com/x.git").assert_error(
        404,
        "No matching external auth provider found in Coder for the url \"https://example.com/x.git\".",
    );
    // By id, and a public provider found by the full scan.
    assert_eq!(
        fx.ask("id=gitea").ok_json()["url"],
        fx.server.url("/external-auth/gitea")
    );
    assert_eq!(
        fx.ask("match=https://github.com/coder/coder").ok_json()["url"],
        fx.server.url("/external-auth/gh")
    );
    let resp = fx.server.get(
        &format!(
            "/api/v2/workspaceagents/me/external-auth?match={}",
            fx.remote
        ),
        Some(&fx.restricted),
    );
    assert_eq!(resp.status, 403, "{}", resp.body);
}

#[test]
fn a_linked_token_is_validated_once_and_mapped_per_type() {
    let fx = setup();
    fx.link(&["--access-token", "good-pat"]);
    for _ in 0..3 {
        let body = fx.ask_remote();
        assert_eq!(body["access_token"], "good-pat");
        assert_eq!(body["type"], "gitea");
        assert_eq!(body["username"], "good-pat");
        assert_eq!(body["password"], "");
        assert_eq!(body["url"], "");
        assert_eq!(body["expires_at"], "0001-01-01T00:00:00Z");
    }
    assert_eq!(
        fx.fake.validations("good-pat"),
        1,
        "validated once per distinct token"
    );

    fx.link(&["--access-token", "bad-pat"]);
    for _ in 0..3 {
        assert_eq!(
            fx.ask_remote()["url"],
            fx.server.url("/external-auth/gitea")
        );
    }
    assert_eq!(fx.fake.validations("bad-pat"), 1);

    // Expiry in UTC.
    fx.link(&[
        "--access-token",
        "good-2",
        "--expires-at",
        "2099-01-02T05:04:05+02:00",
    ]);
    assert_eq!(fx.ask_remote()["expires_at"], "2099-01-02T03:04:05Z");
    let list = fx
        .server
        .cli(&["external-auth", "list", "--output", "json"])
        .json();
    assert_eq!(list[0]["provider"], "gitea");
    assert!(
        !list.to_string().contains("good-2"),
        "tokens are not listed: {list}"
    );
}

#[test]
fn an_expired_token_is_refreshed_and_a_refused_refresh_asks_to_link_again() {
    let fx = setup();
    fx.link(&[
        "--access-token",
        "tok-old",
        "--refresh-token",
        "ref-1",
        "--expires-at",
        "2020-01-01T00:00:00Z",
    ]);
    let body = fx.ask_remote();
    assert_eq!(body["access_token"], "tok-2", "{body}");
    assert_ne!(body["expires_at"], "0001-01-01T00:00:00Z");
    // Stored: the next request needs no refresh.
    assert_eq!(fx.ask_remote()["access_token"], "tok-2");
    fx.link(&[
        "--access-token",
        "tok-old",
        "--refresh-token",
        "revoked",
        "--expires-at",
        "2020-01-01T00:00:00Z",
    ]);
    assert_eq!(
        fx.ask_remote()["url"],
        fx.server.url("/external-auth/gitea")
    );
    // Expired without a refresh token: link again.
    fx.link(&[
        "--access-token",
        "tok-old",
        "--expires-at",
        "2020-01-01T00:00:00Z",
    ]);
    assert_eq!(
        fx.ask_remote()["url"],
        fx.server.url("/external-auth/gitea")
    );
}

#[test]
fn listen_wakes_on_a_link_from_the_cli_and_does_not_revalidate_an_unchanged_bad_token() {
    let fx = setup();
    fx.link(&["--access-token", "bad-pat"]);
    let url = fx.server.url(&format!(
        "/api/v2/workspaceagents/me/external-auth?listen&match={}",
        fx.remote
    ));
    let token = fx.token.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .build()
            .into();
        let mut resp = agent
            .get(&url)
            .header("Coder-Session-Token", &token)
            .call()
            .expect("listen");
        let status = resp.status().as_u16();
        let _ = tx.send((status, resp.body_mut().read_to_string().unwrap_or_default()));
    });
    // Unrelated commits wake the waiter; the bad token is not asked about again.
    for i in 0..5 {
        fx.server.create_user(&format!("other{i}"), "member");
    }
    assert!(
        rx.recv_timeout(Duration::from_millis(700)).is_err(),
        "answered without a usable token"
    );
    assert_eq!(fx.fake.validations("bad-pat"), 1);
    fx.link(&["--access-token", "good-late"]);
    let (status, body) = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("an answer after the link");
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["access_token"], "good-late");
}

#[test]
fn the_browser_flow_links_the_signed_in_user() {
    let fx = setup();
    let key = fx.server.token("alice");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .build()
        .into();
    // Not signed in: refused.
    let resp = agent
        .get(&fx.server.url("/external-auth/gitea"))
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = agent
        .get(&fx.server.url("/external-auth/gitea"))
        .header("Cookie", &format!("coder_session_token={key}"))
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 307);
    let location = resp
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        location.starts_with(&format!("{}/authorize?", fx.fake.base)),
        "{location}"
    );
    let query: HashMap<String, String> =
        serde_urlencoded::from_str(location.split_once('?').unwrap().1).unwrap();
    assert_eq!(query["client_id"], "cid");
    assert_eq!(query["response_type"], "code");
    assert_eq!(
        query["redirect_uri"],
        fx.server.url("/external-auth/gitea/callback")
    );
    assert_eq!(query["scope"], "write:repository read:user");
    let state = &query["state"];

    // A forged state is refused; the provider sends the browser back with a code.
    let resp = agent
        .get(
            &fx.server
                .url("/external-auth/gitea/callback?code=good-code&state=forged"),
        )
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let mut resp = agent
        .get(&fx.server.url(&format!(
            "/external-auth/gitea/callback?code=good-code&state={state}"
        )))
        .call()
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        200,
        "{}",
        resp.body_mut().read_to_string().unwrap()
    );
    // A state is good once.
    let resp = agent
        .get(&fx.server.url(&format!(
            "/external-auth/gitea/callback?code=good-code&state={state}"
        )))
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);

    let body = fx.ask_remote();
    assert_eq!(body["access_token"], "tok-1");
    assert_eq!(body["token_extra"]["scope"], "repo");
    assert!(
        body["expires_at"].as_str().unwrap().ends_with('Z'),
        "{body}"
    );
}

#[test]
fn the_cli_names_what_is_wrong() {
    let fx = setup();
    let out = fx.server.cli(&[
        "external-auth",
        "link",
        "--user",
        "alice",
        "--provider",
        "nope",
        "--access-token",
        "x",
    ]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("gitea, gh"), "{}", out.stderr);
    let out = fx.server.cli(&[
        "external-auth",
        "unlink",
        "--user",
        "alice",
        "--provider",
        "gitea",
    ]);
    assert!(!out.status.success());
    fx.link(&["--access-token", "good-pat"]);
    fx.server
        .cli(&[
            "external-auth",
            "unlink",
            "--user",
            "alice",
            "--provider",
            "gitea",
        ])
        .assert_success();
    assert_eq!(
        fx.ask_remote()["url"],
        fx.server.url("/external-auth/gitea")
    );
}

#[test]
fn a_listener_ends_when_its_client_goes_away() {
    let fake = FakeProvider::start();
    let config = format!(
        "[[external_auth]]\nid = \"gitea\"\ntype = \"gitea\"\nclient_id = \"cid\"\nauth_url = \"{b}/authorize\"\ntoken_url = \"{b}/token\"\n",
        b = fake.base
    );
    let server = TestServer::start_with(Options {
        config,
        env: vec![(
            "APPLIANCE_LOG__FILTER".into(),
            "info,appliance=debug".into(),
        )],
    });
    server.create_user("alice", "member");
    let applied = server.apply(MANIFEST);
    let (_, token) = agent_and_token(&applied, "main");
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    write!(
        stream,
        "GET /api/v2/workspaceagents/me/external-auth?listen=true&id=gitea HTTP/1.1\r\nHost: x\r\nCoder-Session-Token: {token}\r\n\r\n"
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !server
            .log()
            .iter()
            .any(|l| l.contains("external-auth listener ended"))
    );
    drop(stream);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !server
        .log()
        .iter()
        .any(|l| l.contains("external-auth listener ended"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the listener outlived its client:\n{}",
            server.log().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn each_workspace_gets_the_provider_its_manifest_declares() {
    let config = "[[external_auth]]\nid = \"gh-a\"\ntype = \"github\"\nclient_id = \"a\"\nvalidate_url = \"\"\n\n[[external_auth]]\nid = \"gh-b\"\ntype = \"github\"\nclient_id = \"b\"\nvalidate_url = \"\"\n";
    let server = TestServer::start_with(Options {
        config: config.into(),
        ..Options::default()
    });
    server.create_user("alice", "member");
    let mut tokens = Vec::new();
    for (name, provider) in [("one", "gh-a"), ("two", "gh-b")] {
        let manifest = MANIFEST
            .replace("name = \"dev\"", &format!("name = \"{name}\""))
            .replace("[\"gitea\"]", &format!("[\"{provider}\"]"));
        let (_, token) = agent_and_token(&server.apply(&manifest), "main");
        tokens.push(token);
    }
    for (provider, secret) in [("gh-a", "token-a"), ("gh-b", "token-b")] {
        server
            .cli(&[
                "external-auth",
                "link",
                "--user",
                "alice",
                "--provider",
                provider,
                "--access-token",
                secret,
            ])
            .assert_success();
    }
    for (token, want) in tokens.iter().zip(["token-a", "token-b"]) {
        let body = server
            .get(
                "/api/v2/workspaceagents/me/external-auth?match=https://github.com/coder/coder.git",
                Some(token),
            )
            .ok_json();
        assert_eq!(body["access_token"], want, "{body}");
    }
}
