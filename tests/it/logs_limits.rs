//! What one agent's logs, and one reader of them, can cost the server: every
//! line counts toward the per-agent cap (even an empty one), a read of a large
//! agent streams in bounded chunks, a follower's backlog arrives in bounded
//! frames without stalling other requests, and a follower that stops reading
//! is closed within the send timeout whatever the client does.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::TestServer;
use crate::logs_support::*;

/// A cap large enough that no test reaches it by accident.
const NO_CAP: &str = "[logs]\nmax_bytes_per_agent = 4000000000\n";
/// What each stored line costs against the cap on top of its bytes.
const LINE_COST: usize = 64;
/// Most lines a follow frame (backlog or live) carries.
const FRAME_LINES: usize = 1000;

// ---------------------------------------------------------------------------
// The cap counts lines, not only bytes
// ---------------------------------------------------------------------------

#[test]
fn every_line_counts_toward_the_cap_even_an_empty_one() {
    // 1024 is the smallest cap the config accepts: 16 empty lines.
    let fx = Fixture::with_config("[logs]\nmax_bytes_per_agent = 1024\n");
    let empty = |n: usize| batch_of(&vec![""; n]);

    // Ten thousand empty lines hold no output bytes, and are still refused.
    let resp = patch(&fx.server, &fx.token, &empty(10_000));
    resp.assert_error(413, "Logs limit exceeded");
    assert_eq!(fx.logs("").len(), 0, "nothing of a refused batch is stored");
    let agent = fx.agent_json();
    assert_eq!(agent["logs_length"], 0);
    assert_eq!(agent["logs_overflowed"], true);

    // 16 lines of 64 each fill 1024 exactly; the 17th is refused.
    store(&fx.server, &fx.token, &empty(16));
    assert_eq!(fx.agent_json()["logs_length"], 16 * LINE_COST);
    patch(&fx.server, &fx.token, &empty(1)).assert_error(413, "Logs limit exceeded");
    assert_eq!(fx.logs("").len(), 16);

    // Bytes and lines add up: 1 line of 960 bytes costs 1024.
    let side = fx.token_of("side");
    let resp = patch(&fx.server, &side, &batch_of(&[&"x".repeat(961)]));
    resp.assert_error(413, "Logs limit exceeded");
    store(&fx.server, &side, &batch_of(&[&"x".repeat(960)]));
    let side_agent = fx.server.get_agent(&fx.id_of("side"), &fx.key).ok_json();
    assert_eq!(side_agent["logs_length"], 1024);
}

// ---------------------------------------------------------------------------
// A large agent: reads and follows are bounded
// ---------------------------------------------------------------------------

const BIG_LINES: usize = 200_000;
const BIG_BATCH: usize = 10_000;
const BIG_LINE_BYTES: usize = 100;

/// Stores [`BIG_LINES`] lines of [`BIG_LINE_BYTES`] bytes for agent `main`.
fn fill_big_agent(fx: &Fixture) {
    for b in 0..BIG_LINES / BIG_BATCH {
        let lines: Vec<String> = (0..BIG_BATCH)
            .map(|i| format!("{:0width$}", b * BIG_BATCH + i, width = BIG_LINE_BYTES))
            .collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        store(&fx.server, &fx.token, &batch_of(&refs));
    }
}

/// The pid of the process listening on the server's port (the harness keeps
/// its child to itself), from `/proc/net/tcp` and the processes' sockets.
fn server_pid(server: &TestServer) -> u32 {
    let port = format!("{:04X}", server.addr.port());
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let inode = table
        .lines()
        .skip(1)
        .find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let listening = f.get(3) == Some(&"0A");
            (listening && f[1].ends_with(&format!(":{port}"))).then(|| f[9].to_string())
        })
        .expect("the server's listening socket");
    let target = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").expect("/proc") {
        let Ok(entry) = entry else { continue };
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == target) {
                return pid;
            }
        }
    }
    panic!("no process holds {target}");
}

/// A `kB` field of `/proc/<pid>/status`, in bytes.
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .map(|kb: u64| kb * 1024)
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// How far the server's anonymous resident memory (its heap: not the
/// database file it maps) rose above its level before `f`, sampled every
/// 2 ms while `f` runs.
fn peak_growth<T>(pid: u32, f: impl FnOnce() -> T) -> (u64, T) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let before = status_bytes(pid, "RssAnon:");
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(status_bytes(pid, "RssAnon:"));
                std::thread::sleep(Duration::from_millis(2));
            }
            peak
        })
    };
    let out = f();
    done.store(true, Ordering::Relaxed);
    let peak = sampler.join().expect("sampler");
    (peak.saturating_sub(before), out)
}

const MIB: u64 = 1024 * 1024;

/// `GET path` with an API key, reading a body of any size (the harness's
/// client stops at 10 MB): status, content type, body.
fn get_big(server: &TestServer, path: &str, key: &str) -> (u16, String, String) {
    let mut resp = ureq::get(&server.url(path))
        .header("Coder-Session-Token", key)
        .config()
        .proxy(None)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .call()
        .expect("GET");
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = resp
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_string()
        .expect("the body");
    (resp.status().as_u16(), content_type, body)
}

#[test]
fn reading_and_following_a_large_agent_is_bounded_and_leaves_the_server_responsive() {
    let fx = Fixture::with_config(NO_CAP);
    fill_big_agent(&fx);
    let pid = server_pid(&fx.server);
    let path = format!("/api/v2/workspaceagents/{}/logs", fx.agent);

    // JSON: the whole array, in order, while the server's memory barely moves
    // (the body is over 40 MB; built in memory it costs twice that and more).
    let (growth, (status, content_type, body)) =
        peak_growth(pid, || get_big(&fx.server, &path, &fx.key));
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/json; charset=utf-8");
    assert!(body.ends_with("]\n"), "the array and a newline");
    let rows: Vec<Value> = serde_json::from_str(&body).expect("a JSON array");
    let rows = rows.as_slice();
    assert_eq!(rows.len(), BIG_LINES);
    assert!(ids(rows).windows(2).all(|w| w[0] < w[1]), "ascending ids");
    assert_eq!(
        rows[BIG_LINES - 1]["output"],
        format!("{:0100}", BIG_LINES - 1)
    );
    eprintln!(
        "GET {} bytes: server peak RSS +{:.1} MiB",
        body.len(),
        growth as f64 / MIB as f64
    );
    assert!(
        growth < 24 * MIB,
        "reading {} bytes grew the server by {growth} bytes",
        body.len()
    );

    // Text: one line per log, same bound.
    let (growth, (status, content_type, body)) = peak_growth(pid, || {
        get_big(&fx.server, &format!("{path}?format=text"), &fx.key)
    });
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/plain; charset=utf-8");
    assert_eq!(body.lines().count(), BIG_LINES);
    assert!(
        growth < 24 * MIB,
        "reading {} bytes as text grew the server by {growth} bytes",
        body.len()
    );

    // Four followers from the start: every frame is bounded, every line
    // arrives once in order, and /healthz keeps answering meanwhile.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = {
        let (url, stop) = (fx.server.url("/healthz"), stop.clone());
        std::thread::spawn(move || {
            let mut worst = Duration::ZERO;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                let status = ureq::get(&url)
                    .config()
                    .proxy(None)
                    .build()
                    .call()
                    .map(|r| r.status().as_u16());
                assert_eq!(status.ok(), Some(200), "/healthz");
                worst = worst.max(t.elapsed());
                std::thread::sleep(Duration::from_millis(20));
            }
            worst
        })
    };
    let (growth, frames) = peak_growth(pid, || {
        let followers: Vec<RawFollower> = (0..4)
            .map(|_| RawFollower::open(&fx.server, &fx.agent, &fx.key))
            .collect();
        followers
            .into_iter()
            .map(|mut f| {
                std::thread::spawn(move || {
                    let mut sizes = Vec::new();
                    let mut last = 0;
                    let mut seen = 0;
                    while seen < BIG_LINES {
                        let (opcode, payload) = f.frame(Duration::from_secs(60));
                        assert_eq!(opcode, 1, "a text frame");
                        // Only the ids: parsing whole values would make this
                        // client, not the server, the slow part.
                        #[derive(serde::Deserialize)]
                        struct Id {
                            id: i64,
                        }
                        let rows: Vec<Id> = serde_json::from_slice(&payload).expect("JSON");
                        for row in &rows {
                            assert!(row.id > last, "ids ascend across frames");
                            last = row.id;
                        }
                        seen += rows.len();
                        sizes.push(rows.len());
                    }
                    assert_eq!(seen, BIG_LINES, "every line once");
                    sizes
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().expect("follower"))
            .collect::<Vec<_>>()
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let worst = probe.join().expect("probe");
    eprintln!(
        "4 followers from after=0: server peak RSS +{:.1} MiB, /healthz worst {worst:?}",
        growth as f64 / MIB as f64
    );
    for sizes in &frames {
        let largest = sizes.iter().max().copied().unwrap_or(0);
        assert!(
            largest <= FRAME_LINES,
            "a backlog frame carried {largest} lines ({} frames)",
            sizes.len()
        );
    }
    assert!(
        growth < 48 * MIB,
        "four backlogs grew the server by {growth} bytes"
    );
    assert!(
        worst < Duration::from_secs(1),
        "/healthz took {worst:?} while backlogs were sent"
    );
}

// ---------------------------------------------------------------------------
// A follower that stops reading
// ---------------------------------------------------------------------------

/// A follow socket upgraded by hand over TCP, without permessage-deflate.
struct RawFollower {
    stream: TcpStream,
}

impl RawFollower {
    fn open(server: &TestServer, agent: &str, key: &str) -> RawFollower {
        let mut stream = TcpStream::connect(server.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        let request = format!(
            "GET /api/v2/workspaceagents/{agent}/logs?follow HTTP/1.1\r\nHost: {}\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Coder-Session-Token: {key}\r\n\r\n",
            server.addr
        );
        stream.write_all(request.as_bytes()).expect("handshake");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).expect("handshake answer");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        RawFollower { stream }
    }

    /// The next frame: (opcode, payload).
    fn frame(&mut self, timeout: Duration) -> (u8, Vec<u8>) {
        self.stream
            .set_read_timeout(Some(timeout))
            .expect("read timeout");
        let mut h = [0u8; 2];
        self.stream.read_exact(&mut h).expect("frame header");
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b).expect("length");
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                self.stream.read_exact(&mut b).expect("length");
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        let mut payload = vec![0u8; len as usize];
        self.stream.read_exact(&mut payload).expect("payload");
        (h[0] & 0x0f, payload)
    }
}

/// The open follow WebSockets, from `/metrics`.
fn open_websockets(server: &TestServer) -> u64 {
    let resp = server.get("/metrics", None);
    assert_eq!(resp.status, 200, "{}", resp.body);
    resp.body
        .lines()
        .find_map(|l| l.strip_prefix("appliance_streams_open{kind=\"websocket\"} "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the websocket gauge")
}

#[test]
fn a_follower_that_stops_reading_is_closed_within_the_send_timeout() {
    /// The server's promise: a frame not taken within 10 s closes the
    /// follower, and the close frame gets 1 s more.
    const SEND_TIMEOUT: Duration = Duration::from_secs(10);
    const CLOSE_GRACE: Duration = Duration::from_secs(1);
    let fx = Fixture::with_config(NO_CAP);
    let mut follower = RawFollower::open(&fx.server, &fx.agent, &fx.key);
    // The (empty) backlog frame arrives; from now on the client never reads.
    let (opcode, payload) = follower.frame(Duration::from_secs(10));
    assert_eq!((opcode, payload.as_slice()), (1, b"[]".as_slice()));
    assert_eq!(open_websockets(&fx.server), 1);

    // Far more than the kernel buffers on both sides can hold: ~40 MB.
    let line = "z".repeat(1024);
    let batch = batch_of(&vec![line.as_str(); 3500]);
    for _ in 0..12 {
        store(&fx.server, &fx.token, &batch);
    }
    let stored = Instant::now();

    // The follower task, its buffered frame and its socket go away on time.
    let deadline = stored + SEND_TIMEOUT + CLOSE_GRACE + Duration::from_secs(4);
    while open_websockets(&fx.server) > 0 {
        assert!(
            Instant::now() < deadline,
            "the stalled follower is still open {:?} after the last batch",
            stored.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "stalled follower closed {:?} after the last batch",
        stored.elapsed()
    );

    // The server dropped the connection: what it had sent drains, then EOF
    // (or a reset), without the client having to close anything.
    follower
        .stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut sink = vec![0u8; 1 << 20];
    loop {
        match follower.stream.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server did not close the connection: {e}"),
        }
    }
}

#[test]
fn a_follower_that_stops_reading_an_idle_agent_is_closed_when_a_ping_goes_unanswered() {
    // A ping every 15 s; one still unanswered when the next is due closes
    // the follower, even though its socket buffers take everything.
    const PING_EVERY: Duration = Duration::from_secs(15);
    let fx = Fixture::new();
    let mut stalled = RawFollower::open(&fx.server, &fx.agent, &fx.key);
    let opened = Instant::now();
    let (opcode, payload) = stalled.frame(Duration::from_secs(10));
    assert_eq!((opcode, payload.as_slice()), (1, b"[]".as_slice()));
    // A follower that reads (and so answers pings) beside it.
    let mut reading = Follower::start(&fx.server, &fx.agent, &fx.key, "");
    assert!(reading.frame(Duration::from_secs(10)).is_empty());
    assert_eq!(open_websockets(&fx.server), 2);

    let deadline = opened + 2 * PING_EVERY + Duration::from_secs(5);
    while open_websockets(&fx.server) > 1 {
        assert!(
            Instant::now() < deadline,
            "the silent follower is still open {:?} after it stopped reading",
            opened.elapsed()
        );
        // Reading lets the client answer the server's pings.
        assert!(
            reading
                .next_until(Instant::now() + Duration::from_millis(200))
                .is_none(),
            "nothing to read but pings"
        );
    }
    eprintln!(
        "silent follower closed {:?} after it stopped reading",
        opened.elapsed()
    );
    assert!(
        opened.elapsed() >= PING_EVERY,
        "closed before any ping could go unanswered"
    );
    // The one that reads is still served.
    fx.store(&["still here"]);
    assert_eq!(
        outputs(&reading.frame(Duration::from_secs(10))),
        ["still here"]
    );
    reading.close();
}
