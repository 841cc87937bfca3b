//! The dashboard, black-box: every page's status for signed-out visitors,
//! owners, other members and admins; the session cookie's flags; CSRF and
//! `Origin` refusals; one-time sign-in links (single use, expiry); revoking
//! a key ends its session; the admin forms; no page names anything outside
//! the server; page weights.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{Options, TestServer, agent_id};

const MANIFEST: &str = r#"
name = "dev"
owner = "alice"

[[resources]]
name = "box"
type = "docker_container"

  [[resources.agents]]
  name = "main"
  os = "linux"
  arch = "amd64"

    [[resources.agents.apps]]
    slug = "code"
    display_name = "code-server"
    url = "http://localhost:13337"

    [[resources.agents.scripts]]
    display_name = "Install"
    script = "true"
    run_on_start = true
"#;

/// What every dashboard page answers with (the contract's CSP).
const CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'";

/// A response, with every header (Set-Cookie comes more than once).
#[derive(Debug)]
struct R {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl R {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The `Set-Cookie` for `name`.
    #[track_caller]
    fn cookie(&self, name: &str) -> &str {
        self.cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no Set-Cookie for {name}: {:?}", self.headers))
    }

    /// The value a `Set-Cookie` for `name` sets.
    fn cookie_value(&self, name: &str) -> String {
        let c = self.cookie(name);
        c[name.len() + 1..]
            .split(';')
            .next()
            .unwrap_or("")
            .to_string()
    }

    #[track_caller]
    fn assert_redirect(&self, to: &str) {
        assert_eq!(self.status, 303, "{}", self.body);
        assert_eq!(self.header("location"), Some(to));
    }

    /// The value of the first `csrf` field of the page.
    #[track_caller]
    fn csrf(&self) -> String {
        attr_after(&self.body, "name=\"csrf\" value=\"")
    }

    #[track_caller]
    fn assert_page(&self, status: u16) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(self.header("cache-control"), Some("no-store"));
        assert_eq!(self.header("x-frame-options"), Some("DENY"));
        assert_eq!(self.header("content-security-policy"), Some(CSP));
    }
}

/// The text after `prefix` up to the next `"`.
#[track_caller]
fn attr_after(body: &str, prefix: &str) -> String {
    let at = body
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix:?} in {body}"));
    let rest = &body[at + prefix.len()..];
    rest[..rest.find('"').expect("closing quote")].to_string()
}

struct Web {
    server: TestServer,
    http: ureq::Agent,
}

impl Web {
    fn new(server: TestServer) -> Web {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(10)))
            .build();
        Web {
            server,
            http: config.into(),
        }
    }

    fn run(&self, req: ureq::http::Request<Vec<u8>>) -> R {
        let mut resp = self.http.run(req).expect("request");
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
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        R {
            status: resp.status().as_u16(),
            headers,
            body,
        }
    }

    /// `GET path` with the cookies `cookies` (`name=value; ...`).
    fn get(&self, path: &str, cookies: &str) -> R {
        let mut req = ureq::http::Request::builder()
            .method("GET")
            .uri(self.server.url(path));
        if !cookies.is_empty() {
            req = req.header("Cookie", cookies);
        }
        self.run(req.body(Vec::new()).expect("request"))
    }

    /// `GET path` signed in with `key`.
    fn page(&self, path: &str, key: &str) -> R {
        self.get(path, &format!("coder_session_token={key}"))
    }

    /// `POST path` with a form, the cookies and, if given, an `Origin`.
    fn post(&self, path: &str, cookies: &str, form: &[(&str, &str)], origin: Option<&str>) -> R {
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut req = ureq::http::Request::builder()
            .method("POST")
            .uri(self.server.url(path))
            .header("Content-Type", "application/x-www-form-urlencoded");
        if !cookies.is_empty() {
            req = req.header("Cookie", cookies);
        }
        if let Some(o) = origin {
            req = req.header("Origin", o);
        }
        self.run(req.body(body.into_bytes()).expect("request"))
    }

    /// The browser's `Origin` for this server.
    fn origin(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// A signed-in POST as a browser sends it: the session cookie, the
    /// page's CSRF token, this server's `Origin`.
    fn submit(&self, key: &str, csrf: &str, path: &str, extra: &[(&str, &str)]) -> R {
        let mut form = vec![("csrf", csrf)];
        form.extend_from_slice(extra);
        self.post(
            path,
            &format!("coder_session_token={key}"),
            &form,
            Some(&self.origin()),
        )
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Fx {
    web: Web,
    admin: String,
    alice: String,
    bob: String,
    agent: String,
}

fn setup_with(options: Options) -> Fx {
    let server = TestServer::start_with(options);
    server.create_user("alice", "member");
    server.create_user("bob", "member");
    let applied = server.apply(MANIFEST);
    let agent = agent_id(&applied, "main");
    let (admin, alice, bob) = (
        server.token("admin"),
        server.token("alice"),
        server.token("bob"),
    );
    Fx {
        web: Web::new(server),
        admin,
        alice,
        bob,
        agent,
    }
}

fn setup() -> Fx {
    setup_with(Options::default())
}

/// `http://` and `https://` outside the access URL in resource attributes
/// (HTML) or anywhere (CSS, JS).
fn external_references(text: &str, whole: bool) -> Vec<String> {
    let mut found = Vec::new();
    let needles: &[&str] = if whole {
        &["http://", "https://", "//fonts.", "url("]
    } else {
        &[
            "src=\"http",
            "href=\"http",
            "src=\"//",
            "href=\"//",
            "action=\"http",
            "action=\"//",
            "url(",
            "@import",
        ]
    };
    for n in needles {
        if let Some(at) = text.find(n) {
            found.push(text[at..(at + 60).min(text.len())].to_string());
        }
    }
    found
}

#[test]
fn every_page_answers_by_who_asks() {
    let fx = setup();
    let web = &fx.web;
    let agent_page = format!("/agents/{}", fx.agent);
    let signed_in_pages = [
        "/workspaces",
        "/workspaces/alice/dev",
        agent_page.as_str(),
        "/external-auth",
        "/gitsshkey",
        "/admin/users",
        "/admin/keys",
    ];

    // Signed out: every page sends the visitor to /login.
    web.get("/", "").assert_redirect("/login");
    for path in signed_in_pages {
        web.get(path, "").assert_redirect("/login");
        web.page(path, "0123456789-0123456789012345678901")
            .assert_redirect("/login");
    }
    let login = web.get("/login", "");
    login.assert_page(200);
    assert!(login.body.contains("<form id=\"login\""));
    assert!(login.body.contains("id=\"api_key\"") && login.body.contains("name=\"api_key\""));
    assert!(login.body.contains("id=\"sign-in\""));
    let gone = web.get("/login/link", "");
    gone.assert_page(410);
    assert!(
        gone.body
            .contains("This sign-in link has been used or has expired.")
    );

    // The owner.
    web.page("/", &fx.alice).assert_redirect("/workspaces");
    let list = web.page("/workspaces", &fx.alice);
    list.assert_page(200);
    assert!(list.body.contains("<table id=\"workspaces\""));
    assert!(list.body.contains("data-workspace=\"alice/dev\""));
    assert!(
        list.body
            .contains("0 connected, 1 connecting, 0 disconnected")
    );
    assert!(
        list.body
            .contains("class=\"workspace-link\" href=\"/workspaces/alice/dev\"")
    );
    assert!(list.body.contains("<form id=\"logout\""));
    let ws = web.page("/workspaces/alice/dev", &fx.alice);
    ws.assert_page(200);
    assert!(ws.body.contains("<table id=\"builds\""));
    assert!(ws.body.contains(&format!(
        "class=\"agent-link\" data-agent-id=\"{}\"",
        fx.agent
    )));
    let agent = web.page(&agent_page, &fx.alice);
    agent.assert_page(200);
    for hook in [
        "id=\"agent-status\"",
        "id=\"lifecycle\"",
        "id=\"health\"",
        "id=\"version\"",
        "id=\"last-seen\"",
        "<table id=\"apps\"",
        "<table id=\"scripts\"",
        "id=\"log-sources\"",
        "<pre id=\"logs\"",
        "<select id=\"log-source\"",
        "<pre id=\"agent-start-shell\"",
        "<pre id=\"agent-start-cloud-init\"",
    ] {
        assert!(agent.body.contains(hook), "{hook}");
    }
    assert!(agent.body.contains(">connecting</span>"));
    assert!(agent.body.contains(&format!(
        "id=\"logs-download\" href=\"/api/v2/workspaceagents/{}/logs?format=text\"",
        fx.agent
    )));
    assert!(agent.body.contains(&format!(
        "<section id=\"terminal\" data-agent-id=\"{}\"",
        fx.agent
    )));
    assert!(
        agent.body.contains("class=\"terminal-missing\"")
            != agent.body.contains("src=\"/static/xterm.js\""),
        "either the terminal or why it is missing"
    );
    assert!(
        agent.body.contains("/bin/coder-linux-amd64"),
        "the start line"
    );
    web.page("/external-auth", &fx.alice).assert_page(200);
    let key = web.page("/gitsshkey", &fx.alice);
    key.assert_page(200);
    assert!(
        key.body
            .contains("<pre id=\"gitsshkey\" class=\"copyable\">ssh-")
    );
    assert!(key.body.contains("id=\"copy-gitsshkey\""));
    for admin_only in ["/admin/users", "/admin/keys"] {
        let r = web.page(admin_only, &fx.alice);
        r.assert_page(403);
        assert!(r.body.contains("class=\"error\""));
        assert!(
            r.body.contains("<form id=\"logout\""),
            "a signed-in error page"
        );
    }

    // Another member: alice's workspace and agent do not exist for bob.
    let list = web.page("/workspaces", &fx.bob);
    list.assert_page(200);
    assert!(!list.body.contains("alice/dev"));
    web.page("/workspaces/alice/dev", &fx.bob).assert_page(404);
    web.page(&agent_page, &fx.bob).assert_page(404);
    web.page("/admin/users", &fx.bob).assert_page(403);

    // An admin reads everything.
    for path in signed_in_pages {
        web.page(path, &fx.admin).assert_page(200);
    }
    assert!(
        web.page("/workspaces", &fx.admin)
            .body
            .contains("data-workspace=\"alice/dev\"")
    );
    web.page("/workspaces/alice/nope", &fx.admin)
        .assert_page(404);
    web.page("/workspaces/nobody/dev", &fx.admin)
        .assert_page(404);
    web.page("/agents/not-a-uuid", &fx.admin).assert_page(404);
    web.page(&format!("/agents/{}", uuid::Uuid::new_v4()), &fx.admin)
        .assert_page(404);
    let users = web.page("/admin/users", &fx.admin);
    assert!(users.body.contains("<table id=\"users\""));
    assert!(users.body.contains("<form id=\"create-user\""));
    let keys = web.page("/admin/keys", &fx.admin);
    assert!(keys.body.contains("<table id=\"keys\""));
    assert!(keys.body.contains("<form id=\"create-key\""));
    assert!(keys.body.contains("class=\"revoke-key\""));

    // The API takes the same cookie (the agent page's polling and logs).
    let api = web.page(&format!("/api/v2/workspaceagents/{}", fx.agent), &fx.alice);
    assert_eq!(api.status, 200, "{}", api.body);
}

#[test]
fn pages_are_small_and_name_nothing_outside_the_server() {
    let fx = setup();
    let web = &fx.web;
    let agent_page = format!("/agents/{}", fx.agent);
    let mut weights = Vec::new();
    for path in [
        "/login",
        "/workspaces",
        "/workspaces/alice/dev",
        agent_page.as_str(),
        "/external-auth",
        "/gitsshkey",
        "/admin/users",
        "/admin/keys",
    ] {
        let r = web.page(path, &fx.admin);
        r.assert_page(200);
        let found = external_references(&r.body, false);
        assert!(
            found.is_empty(),
            "{path} names something elsewhere: {found:?}"
        );
        weights.push((path.to_string(), r.body.len()));
    }
    let mut assets = 0;
    for name in ["app.css", "app.js"] {
        let r = web.get(&format!("/static/{name}"), "");
        assert_eq!(r.status, 200);
        assert!(r.header("etag").is_some());
        assert!(
            r.header("cache-control")
                .is_some_and(|c| c.contains("max-age"))
        );
        let found = external_references(&r.body, true);
        assert!(
            found.is_empty(),
            "{name} names something elsewhere: {found:?}"
        );
        assets += r.body.len();
        // Revalidation costs nothing.
        let etag = r.header("etag").expect("etag").to_string();
        let mut req = ureq::http::Request::builder()
            .uri(web.server.url(&format!("/static/{name}")))
            .header("If-None-Match", etag);
        req = req.method("GET");
        let again = web.run(req.body(Vec::new()).expect("request"));
        assert_eq!(again.status, 304);
    }
    assert_eq!(web.get("/static/nope.js", "").status, 404);
    // Without the terminal, a page and its assets stay under 100 KB.
    for (path, bytes) in weights {
        assert!(
            bytes + assets < 100 * 1024,
            "{path}: {bytes} + {assets} bytes"
        );
    }
}

#[test]
fn signing_in_sets_the_session_cookie() {
    let fx = setup();
    let web = &fx.web;
    let login = web.get("/login", "");
    let pre = login.cookie("appliance_csrf").to_string();
    assert!(pre.contains("HttpOnly") && pre.contains("SameSite=Lax") && pre.contains("Path=/"));
    let pre = format!("appliance_csrf={}", login.cookie_value("appliance_csrf"));
    let csrf = login.csrf();

    // A bad key: the form again, with why.
    let bad = web.post(
        "/login",
        &pre,
        &[("csrf", &csrf), ("api_key", "nope")],
        Some(&web.origin()),
    );
    bad.assert_page(401);
    assert!(bad.body.contains("class=\"error\""));
    assert!(bad.body.contains("<form id=\"login\""));
    assert!(
        bad.cookies()
            .iter()
            .all(|c| !c.starts_with("coder_session_token"))
    );

    let ok = web.post(
        "/login",
        &pre,
        &[("csrf", &csrf), ("api_key", &fx.alice)],
        Some(&web.origin()),
    );
    ok.assert_redirect("/workspaces");
    let cookie = ok.cookie("coder_session_token");
    assert_eq!(ok.cookie_value("coder_session_token"), fx.alice);
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");

    // Signing out clears the cookie (the key stays valid).
    let page = web.page("/workspaces", &fx.alice);
    let out = web.submit(&fx.alice, &page.csrf(), "/logout", &[]);
    out.assert_redirect("/login");
    let cleared = out.cookie("coder_session_token");
    assert!(cleared.starts_with("coder_session_token=;") && cleared.contains("Max-Age=0"));
    web.page("/workspaces", &fx.alice).assert_page(200);
}

#[test]
fn cookies_are_secure_under_an_https_access_url() {
    let fx = setup_with(Options {
        config: "access_url = \"https://dash.example.test\"\n".into(),
        ..Options::default()
    });
    let web = &fx.web;
    let login = web.get("/login", "");
    assert!(login.cookie("appliance_csrf").contains("; Secure"));
    let pre = format!("appliance_csrf={}", login.cookie_value("appliance_csrf"));
    // The access URL's origin is this server too.
    let ok = web.post(
        "/login",
        &pre,
        &[("csrf", &login.csrf()), ("api_key", &fx.alice)],
        Some("https://dash.example.test"),
    );
    ok.assert_redirect("/workspaces");
    let cookie = ok.cookie("coder_session_token");
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/", "Secure"] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    // The sign-in link names the access URL.
    let link = web
        .server
        .cli(&["login-link", "--user", "alice", "--output", "json"])
        .json();
    let url = link["url"].as_str().expect("url");
    assert!(
        url.starts_with("https://dash.example.test/login/link?token="),
        "{url}"
    );
}

#[test]
fn forms_without_the_right_token_or_from_elsewhere_are_refused() {
    let fx = setup();
    let web = &fx.web;
    let session = format!("coder_session_token={}", fx.admin);
    let page = web.page("/admin/keys", &fx.admin);
    let csrf = page.csrf();
    let key_id = fx.alice.split('-').next().expect("id").to_string();
    let revoke = format!("/admin/keys/{key_id}/revoke");
    let origin = web.origin();
    // (what, the form's fields, the Origin header)
    type Refusal<'a> = (&'a str, Vec<(&'a str, &'a str)>, Option<&'a str>);
    let refusals: [Refusal; 5] = [
        ("missing", vec![], Some(origin.as_str())),
        ("empty", vec![("csrf", "")], Some(origin.as_str())),
        ("wrong", vec![("csrf", "AAAA")], Some(origin.as_str())),
        (
            "foreign origin",
            vec![("csrf", &csrf)],
            Some("http://evil.example"),
        ),
        ("null origin", vec![("csrf", &csrf)], Some("null")),
    ];
    for (what, form, origin) in &refusals {
        for path in [revoke.as_str(), "/logout", "/admin/users", "/admin/keys"] {
            let r = web.post(path, &session, form, *origin);
            assert_eq!(r.status, 403, "{what} {path}: {}", r.body);
            assert!(r.body.contains("class=\"error\""), "{what} {path}");
        }
    }
    // Nothing happened: alice's key still works, the session too.
    web.page("/workspaces", &fx.alice).assert_page(200);
    web.page("/workspaces", &fx.admin).assert_page(200);
    // Another session's token does not do either.
    let alice_csrf = web.page("/workspaces", &fx.alice).csrf();
    assert_ne!(alice_csrf, csrf);
    let r = web.post("/logout", &session, &[("csrf", &alice_csrf)], None);
    assert_eq!(r.status, 403);

    // Sign-in forms: their token is bound to the pre-session cookie.
    let login = web.get("/login", "");
    let pre = format!("appliance_csrf={}", login.cookie_value("appliance_csrf"));
    let form = [("csrf", login.csrf()), ("api_key", fx.alice.clone())];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(web.post("/login", "", &form, None).status, 403, "no cookie");
    let other = "appliance_csrf=ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    assert_eq!(
        web.post("/login", other, &form, None).status,
        403,
        "another cookie"
    );
    assert_eq!(
        web.post("/login", &pre, &form[1..], None).status,
        403,
        "no token"
    );
    assert_eq!(
        web.post("/login", &pre, &form, Some("http://evil.example"))
            .status,
        403,
        "foreign origin"
    );
    web.post("/login", &pre, &form, None)
        .assert_redirect("/workspaces");
}

/// `appliance login-link --user NAME`: its JSON, asserting success.
fn login_link(server: &TestServer, args: &[&str]) -> Value {
    let mut all = vec!["login-link", "--output", "json"];
    all.extend_from_slice(args);
    server.cli(&all).assert_success().json()
}

/// The path and query of a sign-in link, and its token.
fn link_parts(link: &Value) -> (String, String) {
    let url = link["url"].as_str().expect("url");
    let at = url.find("/login/link?token=").expect("a sign-in link");
    let path = url[at..].to_string();
    let token = path["/login/link?token=".len()..].to_string();
    (path, token)
}

#[test]
fn sign_in_links_work_once_and_expire() {
    let fx = setup();
    let web = &fx.web;
    let link = login_link(&web.server, &["--user", "alice"]);
    assert_eq!(link["username"], "alice");
    assert!(link["expires_at"].is_string());
    let (path, token) = link_parts(&link);

    // Opening the link asks first; opening it twice is fine.
    web.get(&path, "").assert_page(200);
    let confirm = web.get(&path, "");
    confirm.assert_page(200);
    assert!(confirm.body.contains("<form id=\"use-link\""));
    assert!(
        confirm
            .body
            .contains("id=\"use-link-button\">Sign in as alice<")
    );
    let pre = format!("appliance_csrf={}", confirm.cookie_value("appliance_csrf"));
    let form = [("csrf", confirm.csrf()), ("token", token.clone())];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let used = web.post("/login/link", &pre, &form, Some(&web.origin()));
    used.assert_redirect("/workspaces");
    let key = used.cookie_value("coder_session_token");
    assert!(used.cookie("coder_session_token").contains("HttpOnly"));
    let list = web.page("/workspaces", &key);
    list.assert_page(200);
    assert!(list.body.contains("data-workspace=\"alice/dev\""));
    // The key it made is alice's, named "dashboard".
    let keys = web
        .server
        .cli(&["token", "list", "--user", "alice", "--output", "json"])
        .json();
    assert!(
        keys.as_array()
            .expect("keys")
            .iter()
            .any(|k| k["name"] == "dashboard" && k["status"] == "active"),
        "{keys:#}"
    );

    // Once only.
    let again = web.post("/login/link", &pre, &form, Some(&web.origin()));
    again.assert_page(410);
    assert!(
        again
            .body
            .contains("This sign-in link has been used or has expired.")
    );
    assert!(
        again
            .cookies()
            .iter()
            .all(|c| !c.starts_with("coder_session_token"))
    );
    web.get(&path, "").assert_page(410);
    web.get("/login/link?token=nope", "").assert_page(410);

    // Expired links are refused.
    let short = login_link(&web.server, &["--user", "bob", "--ttl", "1s"]);
    let (path, token) = link_parts(&short);
    std::thread::sleep(Duration::from_millis(1200));
    web.get(&path, "").assert_page(410);
    let confirm = web.get("/login", "");
    let pre = format!("appliance_csrf={}", confirm.cookie_value("appliance_csrf"));
    let r = web.post(
        "/login/link",
        &pre,
        &[("csrf", &confirm.csrf()), ("token", &token)],
        None,
    );
    r.assert_page(410);

    // The command's refusals.
    for args in [
        vec!["--user", "nobody"],
        vec!["--user", "alice", "--ttl", "0s"],
        vec!["--user", "alice", "--ttl", "48h"],
        vec!["--user", "alice", "--ttl", "soon"],
    ] {
        let mut all = vec!["login-link"];
        all.extend(args);
        web.server.cli(&all).assert_one_line_error();
    }
}

#[test]
fn admins_manage_users_and_keys_and_a_revoked_key_ends_its_session() {
    let fx = setup();
    let web = &fx.web;
    let csrf = web.page("/admin/keys", &fx.admin).csrf();

    // Create a user; a bad or taken name re-renders the form with why.
    let created = web.submit(
        &fx.admin,
        &csrf,
        "/admin/users",
        &[("name", "carol"), ("role", "member"), ("email", "")],
    );
    created.assert_redirect("/admin/users");
    let users = web.page("/admin/users", &fx.admin);
    assert!(users.body.contains("data-user=\"carol\""));
    let taken = web.submit(&fx.admin, &csrf, "/admin/users", &[("name", "carol")]);
    taken.assert_page(409);
    assert!(taken.body.contains("class=\"error\""));
    let bad = web.submit(&fx.admin, &csrf, "/admin/users", &[("name", "no way")]);
    bad.assert_page(400);
    let bad_role = web.submit(
        &fx.admin,
        &csrf,
        "/admin/users",
        &[("name", "dave"), ("role", "owner")],
    );
    bad_role.assert_page(400);
    // Members cannot, even with their own valid token.
    let alice_csrf = web.page("/workspaces", &fx.alice).csrf();
    web.submit(&fx.alice, &alice_csrf, "/admin/users", &[("name", "eve")])
        .assert_page(403);
    web.submit(&fx.alice, &alice_csrf, "/admin/keys", &[("user", "alice")])
        .assert_page(403);

    // Create a key: shown once, and it works.
    let made = web.submit(
        &fx.admin,
        &csrf,
        "/admin/keys",
        &[("user", "carol"), ("name", "laptop"), ("lifetime", "7d")],
    );
    made.assert_page(200);
    let new_key = {
        let at = made
            .body
            .find("<code id=\"new-key\">")
            .expect("the new key");
        let rest = &made.body[at + "<code id=\"new-key\">".len()..];
        rest[..rest.find('<').expect("end")].to_string()
    };
    web.page("/workspaces", &new_key).assert_page(200);
    assert!(
        !web.page("/admin/keys", &fx.admin).body.contains(&new_key),
        "shown once"
    );
    let unknown = web.submit(&fx.admin, &csrf, "/admin/keys", &[("user", "nobody")]);
    unknown.assert_page(400);
    let forever = web.submit(
        &fx.admin,
        &csrf,
        "/admin/keys",
        &[("user", "carol"), ("lifetime", "forever")],
    );
    forever.assert_page(400);

    // Revoke alice's key: her session ends at her next page.
    let alice_id = fx.alice.split('-').next().expect("id");
    let keys = web.page("/admin/keys", &fx.admin);
    assert!(keys.body.contains(&format!("data-key-id=\"{alice_id}\"")));
    web.submit(
        &fx.admin,
        &csrf,
        &format!("/admin/keys/{alice_id}/revoke"),
        &[],
    )
    .assert_redirect("/admin/keys");
    let ended = web.page("/workspaces", &fx.alice);
    ended.assert_redirect("/login");
    assert!(ended.cookie("coder_session_token").contains("Max-Age=0"));
    let api = web.page(&format!("/api/v2/workspaceagents/{}", fx.agent), &fx.alice);
    assert_eq!(api.status, 401);
    // Revoking again changes nothing; an unknown key is a 404 page.
    web.submit(
        &fx.admin,
        &csrf,
        &format!("/admin/keys/{alice_id}/revoke"),
        &[],
    )
    .assert_redirect("/admin/keys");
    web.submit(&fx.admin, &csrf, "/admin/keys/ZZZZZZZZZZ/revoke", &[])
        .assert_page(404);
}

#[test]
fn external_auth_links_are_listed_and_unlinked() {
    let fx = setup_with(Options {
        config: r#"
[[external_auth]]
id = "gh"
type = "github"
client_id = "gh-client"
validate_url = ""
"#
        .into(),
        ..Options::default()
    });
    let web = &fx.web;
    let page = web.page("/external-auth", &fx.alice);
    page.assert_page(200);
    assert!(page.body.contains("<table id=\"external-auth\""));
    assert!(
        page.body
            .contains("class=\"link-provider\" href=\"/external-auth/gh\"")
    );
    web.server
        .cli(&[
            "external-auth",
            "link",
            "--user",
            "alice",
            "--provider",
            "gh",
            "--access-token",
            "gho_secret",
        ])
        .assert_success();
    let page = web.page("/external-auth", &fx.alice);
    assert!(
        page.body.contains(
            "class=\"unlink-provider\" method=\"post\" action=\"/external-auth/gh/unlink\""
        )
    );
    assert!(!page.body.contains("gho_secret"));
    let r = web.post(
        "/external-auth/gh/unlink",
        &format!("coder_session_token={}", fx.alice),
        &[],
        None,
    );
    assert_eq!(r.status, 403, "no token");
    web.submit(&fx.alice, &page.csrf(), "/external-auth/gh/unlink", &[])
        .assert_redirect("/external-auth");
    let links = web
        .server
        .cli(&["external-auth", "list", "--output", "json"])
        .json();
    assert_eq!(links.as_array().map(Vec::len), Some(0), "{links:#}");
    assert!(
        web.page("/external-auth", &fx.alice)
            .body
            .contains("class=\"link-provider\"")
    );
}
