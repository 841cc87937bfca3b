//! External auth through the real binary, against a fake OAuth2 provider on
//! loopback: `GET /me/external-auth` (and `/me/gitauth`), `listen`, refresh,
//! validation, the browser flow and `appliance external-auth`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Auth, Options, TestServer};
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

/// A browser that follows no redirects (the start answers with one to the
/// provider's consent page).
fn browser() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .build()
        .into()
}

/// What `GET /external-auth/{provider}` answered.
struct Started {
    /// The consent page the browser was sent to.
    location: String,
    /// The `state` in that URL.
    state: String,
    /// The whole `Set-Cookie` for `oauth_state`, if there was one.
    set_cookie: Option<String>,
    /// The `oauth_state` cookie's value, if one was set.
    cookie: Option<String>,
}

impl Fx {
    /// Starts the browser flow signed in with `key` (cookie), asserting the
    /// redirect.
    fn start_flow(&self, key: &str) -> Started {
        let resp = browser()
            .get(&self.server.url("/external-auth/gitea"))
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
        let query: HashMap<String, String> =
            serde_urlencoded::from_str(location.split_once('?').unwrap().1).unwrap();
        let set_cookie = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("oauth_state="))
            .map(str::to_string);
        let cookie = set_cookie.as_ref().map(|c| {
            c["oauth_state=".len()..]
                .split(';')
                .next()
                .unwrap()
                .to_string()
        });
        Started {
            state: query["state"].clone(),
            location,
            set_cookie,
            cookie,
        }
    }

    /// The provider sends a browser back: `GET /callback?QUERY` with the
    /// given cookies.
    fn callback(&self, query: &str, cookies: &[(&str, &str)]) -> crate::harness::Resp {
        let header = cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let headers = [("Cookie", header.as_str())];
        let auth = if cookies.is_empty() {
            Auth::None
        } else {
            Auth::Headers(&headers)
        };
        self.server
            .get_with(&format!("/external-auth/gitea/callback?{query}"), auth)
    }

    /// Every stored link, as `external-auth list` prints them.
    fn links(&self) -> Vec<Value> {
        self.server
            .cli(&["external-auth", "list", "--output", "json"])
            .json()
            .as_array()
            .expect("a list")
            .clone()
    }
}

/// The state cookie the start set (the browser sends it back).
fn state_cookie(started: &Started) -> &str {
    started
        .cookie
        .as_deref()
        .expect("the start sets an oauth_state cookie")
}

#[test]
fn the_browser_flow_links_the_signed_in_user() {
    let fx = setup();
    let key = fx.server.token("alice");
    // Not signed in: refused.
    let resp = browser()
        .get(&fx.server.url("/external-auth/gitea"))
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let started = fx.start_flow(&key);
    assert!(
        started
            .location
            .starts_with(&format!("{}/authorize?", fx.fake.base)),
        "{}",
        started.location
    );
    let query: HashMap<String, String> =
        serde_urlencoded::from_str(started.location.split_once('?').unwrap().1).unwrap();
    assert_eq!(query["client_id"], "cid");
    assert_eq!(query["response_type"], "code");
    assert_eq!(
        query["redirect_uri"],
        fx.server.url("/external-auth/gitea/callback")
    );
    assert_eq!(query["scope"], "write:repository read:user");
    // The state is bound to this browser by a cookie only the callback gets.
    let set_cookie = started.set_cookie.clone().expect("an oauth_state cookie");
    assert_eq!(state_cookie(&started), started.state);
    for attribute in [
        "Path=/external-auth/gitea/callback",
        "HttpOnly",
        "SameSite=Lax",
        "Max-Age=600",
    ] {
        assert!(
            set_cookie.split("; ").any(|a| a == attribute),
            "{attribute} in {set_cookie}"
        );
    }
    let state = started.state.clone();
    let signed_in = [
        ("coder_session_token", key.as_str()),
        ("oauth_state", state.as_str()),
    ];

    // A forged state is refused; the provider sends the browser back with a code.
    fx.callback(
        "code=good-code&state=forged",
        &[("coder_session_token", &key), ("oauth_state", "forged")],
    )
    .assert_error(400, "Invalid or expired OAuth state.");
    fx.callback("code=good-code", &signed_in)
        .assert_error(400, "State must be provided.");
    let done = fx.callback(&format!("code=good-code&state={state}"), &signed_in);
    let body = done.ok_json();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Linked Gitea."),
        "{body}"
    );
    // The state cookie is spent.
    let cleared = done.header("set-cookie").unwrap_or("");
    assert!(
        cleared.starts_with("oauth_state=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    // A state is good once.
    fx.callback(&format!("code=good-code&state={state}"), &signed_in)
        .assert_error(400, "Invalid or expired OAuth state.");

    let body = fx.ask_remote();
    assert_eq!(body["access_token"], "tok-1");
    assert_eq!(body["token_extra"]["scope"], "repo");
    assert!(
        body["expires_at"].as_str().unwrap().ends_with('Z'),
        "{body}"
    );
}

#[test]
fn an_attackers_state_cannot_link_a_victims_code() {
    let fx = setup();
    fx.server.create_user("mallory", "member");
    let theirs = MANIFEST
        .replace("name = \"dev\"", "name = \"mal\"")
        .replace("owner = \"alice\"", "owner = \"mallory\"");
    let (_, mallory_agent) = agent_and_token(&fx.server.apply(&theirs), "main");
    let alice = fx.server.token("alice");
    let mallory = fx.server.token("mallory");

    // Mallory starts a flow with her own key and sends alice the consent
    // page; the provider brings alice's browser back with alice's code and
    // mallory's state. Alice's browser has her session, not mallory's state
    // cookie.
    let attack = fx.start_flow(&mallory);
    fx.callback(
        &format!("code=good-code&state={}", attack.state),
        &[("coder_session_token", &alice)],
    )
    .assert_error(401, "Cookie \"oauth_state\" must be provided.");
    // Even with mallory's state cookie planted in alice's browser, the state
    // belongs to mallory, not to the signed-in alice.
    let attack = fx.start_flow(&mallory);
    fx.callback(
        &format!("code=good-code&state={}", attack.state),
        &[
            ("coder_session_token", &alice),
            ("oauth_state", &attack.state),
        ],
    )
    .assert_error(400, "Invalid or expired OAuth state.");
    // Without any session: refused before anything else.
    let attack = fx.start_flow(&mallory);
    fx.callback(
        &format!("code=good-code&state={}", attack.state),
        &[("oauth_state", &attack.state)],
    )
    .assert_error(
        401,
        "API key or external proxy authentication required, but none provided",
    );
    fx.callback(&format!("code=good-code&state={}", attack.state), &[])
        .assert_error(
            401,
            "API key or external proxy authentication required, but none provided",
        );

    assert_eq!(fx.links(), Vec::<Value>::new(), "nobody was linked");
    let link_page = fx.server.url("/external-auth/gitea");
    assert_eq!(fx.ask_remote()["url"], link_page);
    let mallorys = fx
        .server
        .get(
            &format!(
                "/api/v2/workspaceagents/me/external-auth?match={}",
                fx.remote
            ),
            Some(&mallory_agent),
        )
        .ok_json();
    assert_eq!(mallorys["access_token"], "", "{mallorys}");
    assert_eq!(mallorys["url"], link_page);
}

#[test]
fn the_callback_needs_the_session_and_the_state_cookie_of_the_start() {
    let fx = setup();
    let key = fx.server.token("alice");
    let started = fx.start_flow(&key);
    let callback = format!("code=good-code&state={}", started.state);
    let cookie = state_cookie(&started).to_string();
    fx.callback(&callback, &[("oauth_state", &cookie)])
        .assert_error(
            401,
            "API key or external proxy authentication required, but none provided",
        );
    fx.callback(&callback, &[("coder_session_token", &key)])
        .assert_error(401, "Cookie \"oauth_state\" must be provided.");
    fx.callback(
        &callback,
        &[("coder_session_token", &key), ("oauth_state", "other")],
    )
    .assert_error(401, "State mismatched.");
    assert_eq!(fx.links(), Vec::<Value>::new());
    // None of those spent the state: the right browser still finishes.
    fx.callback(
        &callback,
        &[("coder_session_token", &key), ("oauth_state", &cookie)],
    )
    .ok_json();
    let links = fx.links();
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0]["user"], "alice", "{links:?}");
}

#[test]
fn one_user_starting_many_flows_cannot_evict_anothers() {
    let fx = setup();
    fx.server.create_user("mallory", "member");
    let alice = fx.server.token("alice");
    let mallory = fx.server.token("mallory");
    let alices = fx.start_flow(&alice);
    let mallorys_first = fx.start_flow(&mallory);
    for _ in 0..40 {
        fx.start_flow(&mallory);
    }
    let mallorys_last = fx.start_flow(&mallory);
    let finish = |started: &Started, key: &str| {
        fx.callback(
            &format!("code=good-code&state={}", started.state),
            &[
                ("coder_session_token", key),
                ("oauth_state", state_cookie(started)),
            ],
        )
    };
    // Each user keeps only their newest flows.
    finish(&mallorys_first, &mallory).assert_error(400, "Invalid or expired OAuth state.");
    finish(&mallorys_last, &mallory).ok_json();
    finish(&alices, &alice).ok_json();
    let users: Vec<Value> = fx.links().iter().map(|l| l["user"].clone()).collect();
    assert_eq!(users, ["alice", "mallory"]);
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

#[test]
fn a_flow_in_progress_survives_a_restart() {
    let fx = setup();
    let key = fx.server.token("alice");
    let started = fx.start_flow(&key);
    let sandbox = fx.server.sandbox().clone();
    // The provider stays up for the code exchange.
    let Fx {
        server,
        fake: _provider,
        ..
    } = fx;
    let (status, _) = server.stop();
    assert!(status.success(), "{status}");
    let server = TestServer::start_in(sandbox, &[]);
    let cookie = format!(
        "coder_session_token={key}; oauth_state={}",
        state_cookie(&started)
    );
    server
        .get_with(
            &format!(
                "/external-auth/gitea/callback?code=good-code&state={}",
                started.state
            ),
            Auth::Headers(&[("Cookie", &cookie)]),
        )
        .ok_json();
    let links = server
        .cli(&["external-auth", "list", "--output", "json"])
        .json();
    assert_eq!(links[0]["user"], "alice", "{links}");
}
