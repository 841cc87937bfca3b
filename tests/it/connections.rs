//! Connections: clients that never finish a request head, idle keep-alive
//! and HTTP/2 connections, the connection cap under a small file-descriptor
//! limit, and SIGTERM while streams and half-sent requests are open.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::harness::{Options, Sandbox, TestServer};
use crate::logs_support::{Event, Follower, agent_and_token};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect to the server");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// Whether the server has closed `s`: reads (discarding any answer, e.g. a
/// 408) until end of file or a reset (closed), or until `wait` passes with
/// the connection still open.
fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).expect("read timeout");
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// `GET /healthz` on an open connection (keep-alive); the status, or `None`
/// if no answer came within `wait`. Reads the whole answer, so that the
/// connection can be used again.
fn healthz_on(s: &mut TcpStream, wait: Duration) -> Option<u16> {
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    s.set_read_timeout(Some(wait)).expect("read timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let head_end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while got.len() < head_end + length {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    head.split_whitespace().nth(1)?.parse().ok()
}

/// `GET /healthz` on a fresh connection: the status and how long it took, or
/// `None` if nothing came within `wait`.
fn fresh_healthz(addr: SocketAddr, wait: Duration) -> Option<(u16, Duration)> {
    let started = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, wait).ok()?;
    healthz_on(&mut s, wait).map(|status| (status, started.elapsed()))
}

/// Lines at WARN or ERROR level other than the ones `allowed` matches.
fn loud_lines(log: &[String], allowed: impl Fn(&str) -> bool) -> Vec<String> {
    log.iter()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .filter(|l| !allowed(l))
        .cloned()
        .collect()
}

#[test]
fn clients_that_never_finish_a_request_head_are_cut_at_the_header_timeout() {
    let server = TestServer::start_with(Options {
        env: env(&[
            ("APPLIANCE_HTTP__HEADER_READ_TIMEOUT", "2s"),
            ("APPLIANCE_HTTP__IDLE_TIMEOUT", "30s"),
        ]),
        ..Options::default()
    });
    let addr = server.addr;
    // Silent: connects and sends nothing.
    let mut silent: Vec<TcpStream> = (0..5).map(|_| connect(addr)).collect();
    // Slow: an HTTP/1.1 head, one byte per 200 ms, never finished.
    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut slow: Vec<TcpStream> = (0..5).map(|_| connect(addr)).collect();
    // An HTTP/2 preface, as slowly.
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut slow_h2: Vec<TcpStream> = (0..3).map(|_| connect(addr)).collect();
    // Half a head, then the client goes away: an aborted connection.
    for _ in 0..3 {
        let mut s = connect(addr);
        s.write_all(b"GET /healthz HTTP/1.1\r\nHo").expect("write");
        drop(s);
    }
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_millis(3500) {
        for s in &mut slow {
            let _ = s.write_all(&head[sent % head.len()..][..1]);
        }
        for s in &mut slow_h2 {
            if sent < preface.len() {
                let _ = s.write_all(&preface[sent..][..1]);
            }
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    for (what, conns) in [
        ("silent", &mut silent),
        ("slow HTTP/1.1", &mut slow),
        ("slow HTTP/2 preface", &mut slow_h2),
    ] {
        for s in conns.iter_mut() {
            assert!(
                closed_within(s, Duration::from_millis(1500)),
                "a {what} connection is still open {:?} after it was opened (header timeout 2s)",
                started.elapsed()
            );
        }
    }
    let (status, _) = fresh_healthz(addr, Duration::from_secs(5)).expect("healthz answers");
    assert_eq!(status, 200);
    let (code, log) = server.stop();
    assert_eq!(code.code(), Some(0), "{}", log.join("\n"));
    let loud = loud_lines(&log, |_| false);
    assert!(
        loud.is_empty(),
        "timed-out and aborted connections log at debug:\n{}",
        loud.join("\n")
    );
}

#[test]
fn plaintext_http2_is_served_and_an_idle_connection_is_closed() {
    let server = TestServer::start_with(Options {
        env: env(&[
            ("APPLIANCE_HTTP__IDLE_TIMEOUT", "2s"),
            ("APPLIANCE_HTTP__HEADER_READ_TIMEOUT", "30s"),
        ]),
        ..Options::default()
    });
    let url = server.url("/healthz");
    let addr = server.addr;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async move {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .expect("an HTTP/2 (prior knowledge) handshake");
        let conn = tokio::spawn(conn);
        for _ in 0..2 {
            let req = hyper::Request::get(&url)
                .body(String::new())
                .expect("request");
            let resp = send.send_request(req).await.expect("an HTTP/2 answer");
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.version(), hyper::Version::HTTP_2);
        }
        let idle_since = Instant::now();
        let ended = tokio::time::timeout(Duration::from_secs(8), conn).await;
        assert!(
            ended.is_ok(),
            "an idle HTTP/2 connection is still open 8s later (idle timeout 2s)"
        );
        assert!(
            idle_since.elapsed() >= Duration::from_millis(1500),
            "closed too early: {:?}",
            idle_since.elapsed()
        );
    });
}

/// Starts `serve` under `ulimit -n files`.
fn start_with_open_files(files: u32, env: &[(&str, &str)]) -> TestServer {
    let script = format!("ulimit -n {files} && exec \"$0\" \"$@\"");
    TestServer::start_prefixed(Sandbox::new(), env, &["sh", "-c", &script])
}

#[test]
fn at_the_file_limit_slow_clients_cannot_keep_healthz_from_answering() {
    // 256 files: the connection cap comes down to fit (128), the rest wait
    // in the listen backlog, and slow clients are cut after 2 s.
    let server = start_with_open_files(256, &[("APPLIANCE_HTTP__HEADER_READ_TIMEOUT", "2s")]);
    let addr = server.addr;
    let mut existing = connect(addr);
    assert_eq!(healthz_on(&mut existing, Duration::from_secs(5)), Some(200));
    let mut slow: Vec<TcpStream> = Vec::new();
    for _ in 0..300 {
        let mut s = connect(addr);
        let _ = s.write_all(b"G");
        slow.push(s);
    }
    // A connection opened before the flood still answers at once.
    let t = Instant::now();
    assert_eq!(healthz_on(&mut existing, Duration::from_secs(1)), Some(200));
    let on_existing = t.elapsed();
    // A fresh one is admitted as slow ones are cut.
    let fresh = fresh_healthz(addr, Duration::from_secs(15));
    eprintln!(
        "healthz at the cap: existing connection {on_existing:?}, fresh connection {fresh:?}"
    );
    let (status, took) = fresh.unwrap_or_else(|| {
        panic!(
            "healthz on a fresh connection got no answer within 15s; log:\n{}",
            server.log().join("\n")
        )
    });
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(10), "{took:?}");
    drop(slow);
    let log = server.log();
    assert!(
        log.iter()
            .any(|l| l.contains("http.max_connections") && l.contains("128")),
        "the lowered cap is logged:\n{}",
        log.join("\n")
    );
    assert!(
        log.iter().any(|l| l.contains("connection limit")),
        "reaching the cap is logged:\n{}",
        log.join("\n")
    );
    let loud = loud_lines(&log, |l| {
        l.contains("connection limit") || l.contains("http.max_connections")
    });
    assert!(loud.is_empty(), "{}", loud.join("\n"));
}

const PREBUILD: &str = r#"
name = "pool-1"

[[resources]]
name = "vm"
type = "null_resource"

  [[resources.agents]]
  name = "main"
"#;

/// A server with a prebuilt workspace and an external-auth provider;
/// returns the agent's id and token.
fn server_with_streams(extra_env: &[(&str, &str)]) -> (TestServer, String, String) {
    // The provider is never contacted: nobody links an account.
    let config = "[[external_auth]]\nid = \"gitea\"\ntype = \"gitea\"\nclient_id = \"cid\"\nauth_url = \"http://127.0.0.1:9/authorize\"\ntoken_url = \"http://127.0.0.1:9/token\"\n";
    let server = TestServer::start_with(Options {
        config: config.into(),
        env: env(extra_env),
    });
    let path = server.sandbox().write("pool.toml", PREBUILD);
    let applied = server
        .cli(&[
            "workspace",
            "apply",
            path.to_str().expect("utf-8"),
            "--prebuild",
            "--output",
            "json",
        ])
        .json();
    let (id, token) = agent_and_token(&applied, "main");
    (server, id, token)
}

fn open_request(addr: SocketAddr, text: &str) -> TcpStream {
    let mut s = connect(addr);
    s.write_all(text.as_bytes()).expect("write");
    s
}

#[test]
fn sigterm_ends_streams_and_half_sent_requests_and_exits_within_seconds() {
    let (server, agent, token) = server_with_streams(&[]);
    let admin = server.token("admin");
    let addr = server.addr;
    let mut sse = open_request(
        addr,
        &format!(
            "GET /api/v2/workspaceagents/me/reinit HTTP/1.1\r\nHost: x\r\nCoder-Session-Token: {token}\r\n\r\n"
        ),
    );
    let mut listen = open_request(
        addr,
        &format!(
            "GET /api/v2/workspaceagents/me/external-auth?listen=true&id=gitea HTTP/1.1\r\nHost: x\r\nCoder-Session-Token: {token}\r\n\r\n"
        ),
    );
    let mut half = open_request(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Half: ");
    let mut follower = Follower::start(&server, &agent, &admin, "");
    assert!(
        follower.frame(Duration::from_secs(5)).is_empty(),
        "the backlog"
    );
    // Every stream is waiting in its handler.
    std::thread::sleep(Duration::from_millis(500));
    for s in [&mut sse, &mut listen, &mut half] {
        assert!(!closed_within(s, Duration::from_millis(10)));
    }

    let started = Instant::now();
    let (status, log) = server.stop();
    let took = started.elapsed();
    eprintln!(
        "SIGTERM to exit with an SSE stream, a listen, a follow socket and a half-sent request open: {took:?}"
    );
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM ({took:?}); log:\n{}",
        log.join("\n")
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(
        log.last().is_some_and(|l| l.contains("stopped cleanly")),
        "{}",
        log.join("\n")
    );
    assert!(
        !log.iter().any(|l| l.contains("cut")),
        "the streams ended by themselves, not at the deadline:\n{}",
        log.join("\n")
    );
    for (what, s) in [
        ("SSE", &mut sse),
        ("listen", &mut listen),
        ("half-sent", &mut half),
    ] {
        assert!(
            closed_within(s, Duration::from_secs(1)),
            "{what} still open"
        );
    }
    match follower.next(Duration::from_secs(2)) {
        Event::Closed(code) => assert!(code == 1001 || code == 0, "close code {code}"),
        Event::Frame(rows) => panic!("a frame instead of a close: {rows:?}"),
    }
}

#[test]
fn a_request_still_running_at_the_shutdown_deadline_is_cut() {
    let (server, _, token) = server_with_streams(&[("APPLIANCE_HTTP__SHUTDOWN_TIMEOUT", "1s")]);
    // A log upload whose body never arrives: the handler waits for it.
    let mut upload = open_request(
        server.addr,
        &format!(
            "PATCH /api/v2/workspaceagents/me/logs HTTP/1.1\r\nHost: x\r\nCoder-Session-Token: {token}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"logs\":["
        ),
    );
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let (status, log) = server.stop();
    let took = started.elapsed();
    eprintln!("SIGTERM to exit with a stalled upload and a 1s deadline: {took:?}");
    assert_eq!(status.code(), Some(0), "{}", log.join("\n"));
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(
        log.iter().any(|l| l.contains("cut 1 connection")),
        "{}",
        log.join("\n")
    );
    assert!(
        log.last().is_some_and(|l| l.contains("stopped cleanly")),
        "{}",
        log.join("\n")
    );
    assert!(closed_within(&mut upload, Duration::from_secs(1)));
}

#[test]
fn check_config_shows_the_connection_settings() {
    let sb = Sandbox::new();
    let json = sb
        .cli_env(
            &["check-config", "--output", "json"],
            &[("APPLIANCE_HTTP__MAX_CONNECTIONS", "100")],
        )
        .json();
    let keys = &json["keys"];
    assert_eq!(keys["http.header_read_timeout"]["value"], "1m");
    assert_eq!(keys["http.idle_timeout"]["value"], "1m");
    assert_eq!(keys["http.shutdown_timeout"]["value"], "10s");
    assert_eq!(keys["http.max_connections"]["value"], 100);
    assert_eq!(
        keys["http.max_connections"]["source"],
        "env:APPLIANCE_HTTP__MAX_CONNECTIONS"
    );
}
