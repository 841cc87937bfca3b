//! `serve` under systemd's `Type=notify`: READY=1 once it answers, WATCHDOG=1
//! keep-alives at half of WATCHDOG_USEC, STOPPING=1 on SIGTERM. The test plays
//! systemd: it binds the notification socket and reads the datagrams.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::harness::{Options, TestServer};

/// The datagrams received until one satisfies `pred` (returned last), or
/// panics after `timeout`.
fn recv_until(
    socket: &UnixDatagram,
    timeout: Duration,
    pred: impl Fn(&str) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no matching notification within {timeout:?}; got {got:?}"
        );
        socket.set_read_timeout(Some(left)).unwrap();
        match socket.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = pred(&msg);
                got.push(msg);
                if done {
                    return got;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
}

fn has_line(msg: &str, line: &str) -> bool {
    msg.lines().any(|l| l == line)
}

#[test]
fn notify_ready_watchdog_and_stopping_on_a_path_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let server = TestServer::start_with(Options {
        env: vec![
            ("NOTIFY_SOCKET".into(), path.to_str().unwrap().into()),
            // 200 ms: keep-alives every 100 ms.
            ("WATCHDOG_USEC".into(), "200000".into()),
        ],
        ..Options::default()
    });

    let got = recv_until(&socket, Duration::from_secs(10), |m| has_line(m, "READY=1"));
    let ready = got.last().unwrap();
    assert!(
        ready.contains(&format!("STATUS=listening on http://{}", server.addr)),
        "{ready:?}"
    );
    assert!(
        !got.iter().any(|m| has_line(m, "STOPPING=1")),
        "no STOPPING before READY: {got:?}"
    );
    // Once READY=1 is sent, the server answers.
    let health = server.get("/healthz", None);
    assert_eq!((health.status, health.body.as_str()), (200, "OK"));

    // Keep-alives: several, at about 100 ms intervals.
    let started = Instant::now();
    for _ in 0..3 {
        recv_until(&socket, Duration::from_secs(5), |m| m == "WATCHDOG=1");
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(3),
        "three keep-alives took {elapsed:?} with WATCHDOG_USEC=200000"
    );

    let (status, log) = server.stop();
    assert!(status.success(), "{status}; log:\n{}", log.join("\n"));
    let got = recv_until(&socket, Duration::from_secs(5), |m| {
        has_line(m, "STOPPING=1")
    });
    assert!(
        !got.iter().any(|m| has_line(m, "READY=1")),
        "READY only once: {got:?}"
    );
}

#[test]
fn notify_ready_on_an_abstract_socket_without_watchdog() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("appliance-it-notify-{}", uuid::Uuid::new_v4());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = UnixDatagram::bind_addr(&addr).unwrap();
    let server = TestServer::start_with(Options {
        env: vec![("NOTIFY_SOCKET".into(), format!("@{name}"))],
        ..Options::default()
    });
    recv_until(&socket, Duration::from_secs(10), |m| has_line(m, "READY=1"));
    let (status, _) = server.stop();
    assert!(status.success());
    // Without WATCHDOG_USEC no keep-alive was sent: STOPPING=1 is all that follows.
    let got = recv_until(&socket, Duration::from_secs(5), |m| {
        has_line(m, "STOPPING=1")
    });
    assert_eq!(got.len(), 1, "{got:?}");
}
