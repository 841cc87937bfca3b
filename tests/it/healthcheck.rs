//! `appliance healthcheck`: exit 0 when /healthz answers 200, one line and a
//! non-zero exit otherwise.

use std::io::{Read, Write};
use std::net::TcpListener;

use crate::harness::{Sandbox, TestServer};

#[test]
fn healthcheck_passes_against_a_running_server() {
    let server = TestServer::start();
    let base = server.url("");
    let out = server.cli(&["healthcheck", "--url", &base]);
    out.assert_success();
    assert!(
        out.stdout
            .starts_with(&format!("http://{}/healthz: 200 OK in ", server.addr)),
        "{}",
        out.stdout
    );
    // A trailing slash is fine; JSON for scripts.
    let v = server
        .cli(&[
            "healthcheck",
            "--url",
            &format!("{base}/"),
            "--output",
            "json",
        ])
        .json();
    assert_eq!(v["status"], 200);
    assert_eq!(v["url"], format!("http://{}/healthz", server.addr));

    // Without --url: the configured listen address (0.0.0.0 means loopback).
    let other = Sandbox::with_config(&format!("listen = \"0.0.0.0:{}\"\n", server.addr.port()));
    let out = other.cli(&["healthcheck"]);
    out.assert_success();
    assert!(
        out.stdout.starts_with(&format!(
            "http://127.0.0.1:{}/healthz: 200 OK",
            server.addr.port()
        )),
        "{}",
        out.stdout
    );
}

#[test]
fn healthcheck_fails_with_one_line_when_nothing_listens() {
    // A port that was just free: nothing listens there now.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sandbox = Sandbox::with_config(&format!("listen = \"127.0.0.1:{port}\"\n"));
    let out = sandbox.cli(&["healthcheck", "--timeout", "3s"]);
    let line = out.assert_one_line_error();
    assert!(
        line.starts_with(&format!("http://127.0.0.1:{port}/healthz: ")),
        "{line}"
    );
    assert!(line.contains("connection refused"), "{line}");

    let line = sandbox
        .cli(&["healthcheck", "--url", "ftp://example.invalid"])
        .assert_one_line_error()
        .to_owned();
    assert!(line.contains("not an http:// or https:// URL"), "{line}");
}

/// A server that answers every request with `response`, then closes.
fn canned_server(response: &'static str) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(response.as_bytes());
        }
    });
    addr
}

#[test]
fn healthcheck_fails_on_a_non_200_answer() {
    let addr = canned_server(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 9\r\nConnection: close\r\n\r\nstarting\n",
    );
    let sandbox = Sandbox::new();
    let url = format!("http://{addr}");
    let out = sandbox.cli(&["healthcheck", "--url", &url]);
    let line = out.assert_one_line_error();
    assert_eq!(
        line,
        format!(
            "http://{addr}/healthz: answered 503 Service Unavailable, expected 200 OK: starting"
        )
    );
}

#[test]
fn healthcheck_times_out_on_a_silent_server() {
    // Accepts connections (the backlog) but never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let sandbox = Sandbox::new();
    let started = std::time::Instant::now();
    let out = sandbox.cli(&["healthcheck", "--url", &url, "--timeout", "1s"]);
    let line = out.assert_one_line_error();
    assert!(line.contains("no answer within 1s"), "{line}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    drop(listener);
}
