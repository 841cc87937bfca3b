//! `serve`: the first start, a busy port, and shutting down.

use crate::harness::{Options, Sandbox, TestServer, agent_id};

#[test]
fn the_first_start_creates_the_admin_user_and_says_how_to_get_a_token() {
    let server = TestServer::start();
    let line = server
        .log()
        .into_iter()
        .find(|l| l.contains("created the first admin user"))
        .unwrap_or_else(|| panic!("no first-admin line in:\n{}", server.log().join("\n")));
    assert!(line.contains("\"admin\""), "{line}");
    assert!(
        line.contains("appliance token create --user admin"),
        "{line}"
    );
    assert!(
        line.contains("appliance login-link --user admin"),
        "the dashboard's way in: {line}"
    );
    let users = server.cli(&["user", "list", "--output", "json"]).json();
    assert_eq!(users.as_array().expect("users").len(), 1);
    assert_eq!(users[0]["username"], "admin");
    assert_eq!(users[0]["role"], "admin");

    let sandbox = server.sandbox().clone();
    let (status, _) = server.stop();
    assert!(status.success(), "{status}");
    let again = TestServer::start_in(sandbox, &[]);
    assert!(
        !again.log().iter().any(|l| l.contains("first admin")),
        "a second start creates nobody:\n{}",
        again.log().join("\n")
    );
    let users = again.cli(&["user", "list", "--output", "json"]).json();
    assert_eq!(users.as_array().expect("users").len(), 1);
}

#[test]
fn a_database_with_users_gets_no_first_admin() {
    let sb = Sandbox::new();
    sb.create_user("alice", "member");
    let server = TestServer::start_in(sb, &[]);
    assert!(
        !server.log().iter().any(|l| l.contains("first admin")),
        "{}",
        server.log().join("\n")
    );
    let users = server.cli(&["user", "list", "--output", "json"]).json();
    assert_eq!(users.as_array().expect("users").len(), 1);
    assert_eq!(users[0]["username"], "alice");
}

#[test]
fn listening_on_a_busy_port_fails_clearly() {
    let server = TestServer::start();
    let addr = server.addr.to_string();
    let other = Sandbox::new();
    let out = other.cli(&["serve", "--listen", &addr]);
    let stderr = out.assert_failure();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("an error line in:\n{stderr}"));
    assert!(
        line.contains(&format!("could not listen on {addr}")),
        "{line}"
    );
    assert!(
        line.contains("--listen"),
        "says how to choose another: {line}"
    );
    // The first server is unharmed.
    assert_eq!(server.get("/healthz", None).status, 200);
}

#[test]
fn sigterm_stops_cleanly_and_the_database_reopens() {
    let server = TestServer::start();
    server.create_user("alice", "member");
    let token = server.token("alice");
    let applied = server.apply(
        "name = \"dev\"\nowner = \"alice\"\n[[resources]]\nname = \"b\"\ntype = \"t\"\n[[resources.agents]]\nname = \"main\"\n",
    );
    let id = agent_id(&applied, "main");
    server.get_agent(&id, &token).ok_json();

    let sandbox = server.sandbox().clone();
    let (status, log) = server.stop();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM; log:\n{}",
        log.join("\n")
    );
    assert!(
        log.iter().any(|l| l.contains("SIGTERM received")),
        "{}",
        log.join("\n")
    );
    assert!(
        log.last().is_some_and(|l| l.contains("stopped cleanly")),
        "the last line says it stopped cleanly:\n{}",
        log.join("\n")
    );

    let migrate = sandbox.cli(&["migrate"]);
    migrate.assert_success();
    assert!(
        migrate.stdout.contains("schema is up to date"),
        "{}",
        migrate.stdout
    );

    let again = TestServer::start_in(sandbox, &[]);
    let a = again.get_agent(&id, &token).ok_json();
    assert_eq!(a["name"], "main", "data and keys survive a restart");
}

#[test]
fn json_logs_still_announce_the_address() {
    let server = TestServer::start_with(Options {
        env: vec![("APPLIANCE_LOG__FORMAT".into(), "json".into())],
        ..Options::default()
    });
    assert_eq!(server.get("/healthz", None).status, 200);
    let log = server.log();
    let listening = log
        .iter()
        .find(|l| l.contains("listening on http://"))
        .expect("listening line");
    let v: serde_json::Value = serde_json::from_str(listening)
        .unwrap_or_else(|e| panic!("a JSON log line ({e}): {listening}"));
    assert_eq!(v["level"], "INFO");
}

#[test]
fn serve_with_a_broken_config_fails_before_listening() {
    let sb = Sandbox::with_config("[log]\nformat = \"xml\"\n");
    let out = sb.cli(&["serve", "--listen", "127.0.0.1:0"]);
    let line = out.assert_one_line_error();
    assert!(line.contains("`log.format`"), "{line}");
    assert!(line.contains("\"json\""), "says what is allowed: {line}");
    assert!(!sb.db.exists(), "no database is created");
}

#[test]
fn sigint_stops_cleanly_too() {
    let server = TestServer::start();
    let (status, log) = server.stop_with("-INT");
    assert_eq!(status.code(), Some(0), "{}", log.join("\n"));
    assert!(
        log.iter().any(|l| l.contains("SIGINT received")),
        "{}",
        log.join("\n")
    );
    assert!(
        log.last().is_some_and(|l| l.contains("stopped cleanly")),
        "{}",
        log.join("\n")
    );
}

#[test]
fn the_listening_line_names_the_bound_port_and_the_access_url() {
    let server = TestServer::start();
    let port = server.addr.port();
    assert_ne!(port, 0);
    let line = server
        .log()
        .into_iter()
        .find(|l| l.contains("listening on http://"))
        .expect("listening line");
    assert!(
        line.contains(&format!("access_url=http://127.0.0.1:{port}")),
        "an access URL derived from port 0 names the bound port: {line}"
    );

    let explicit = TestServer::start_with(Options {
        env: vec![(
            "APPLIANCE_ACCESS_URL".into(),
            "https://coder.example.com/".into(),
        )],
        ..Options::default()
    });
    let line = explicit
        .log()
        .into_iter()
        .find(|l| l.contains("listening on http://"))
        .expect("listening line");
    assert!(
        line.contains("access_url=https://coder.example.com") && !line.contains(".com/"),
        "the configured access URL, without its trailing slash: {line}"
    );
}
