//! Binds, serves (through `routes::serve`, the HTTP layer), and shuts down
//! gracefully: stop accepting, end long-lived streams, finish in-flight
//! requests (at most `http.shutdown_timeout`), checkpoint the database.

pub(crate) mod reload;
pub(crate) mod start;
pub(crate) mod systemd;
pub(crate) mod telemetry;

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::app::App;
use crate::routes;

/// A server bound to its address and ready to serve.
pub struct Bound {
    listener: TcpListener,
    pub addr: SocketAddr,
}

/// Connections the kernel completes and queues while none is accepted (at
/// `http.max_connections`); the kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 1024;

pub async fn bind(addr: SocketAddr) -> anyhow::Result<Bound> {
    let listener = listen(addr).with_context(|| {
        format!("could not listen on {addr}: is another server using that port? choose another with --listen")
    })?;
    let addr = listener.local_addr().context("reading the bound address")?;
    Ok(Bound { listener, addr })
}

/// A listener on `addr` with a backlog of [`LISTEN_BACKLOG`] (tokio's
/// `TcpListener::bind` queues only 128).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves until `shutdown` resolves, then cancels `App::shutdown` (the
/// server stops accepting and long-lived streams end), lets in-flight
/// requests finish within `http.shutdown_timeout`, and checkpoints the database.
pub async fn run(
    bound: Bound,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let stop = app.shutdown.clone();
    tokio::spawn(async move {
        shutdown.await;
        stop.cancel();
    });
    routes::serve(bound.listener, &app).await;
    let store = app.store.clone();
    tokio::task::spawn_blocking(move || store.checkpoint())
        .await
        .context("checkpoint task")?
        .context("checkpointing the database on shutdown")?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// A future resolving on SIGTERM or SIGINT. The handlers are installed now,
/// before the caller announces it is listening, so a signal sent right after
/// the announcement is never fatal.
pub fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received; ending streams and finishing in-flight requests"),
            _ = int.recv() => tracing::info!("SIGINT received; ending streams and finishing in-flight requests"),
        }
    })
}

/// How many connections fit under the open-files limit `files` (the soft
/// `RLIMIT_NOFILE`): the rest is kept for the database (three files per
/// pooled connection and the writers'), the listener and the runtime.
pub(crate) fn connections_that_fit(files: u64, pool_size: u32) -> u64 {
    let reserve = (128 + 3 * u64::from(pool_size)).min(files / 2);
    (files - reserve).max(1)
}

/// Raises the soft limit on open files to the hard limit, as Go programs
/// (coderd among them) do at start: each connected agent holds a socket, and
/// a shell's default soft limit (often 1024) would cap a server far below
/// what the hard limit allows. Returns the limits before and after when it
/// changed anything.
pub(crate) fn raise_open_files_limit() -> Option<(u64, u64)> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current?;
    // Unlimited (None) is capped at what a kernel accepts for nofile.
    let target = limit.maximum.unwrap_or(1 << 20).min(1 << 20);
    if target <= current {
        return None;
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(target),
            maximum: limit.maximum,
        },
    )
    .ok()?;
    Some((current, target))
}

/// The soft limit on open files, from `/proc/self/limits`; `None` when it is
/// unlimited or cannot be read.
pub(crate) fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::connections_that_fit;

    #[test]
    fn the_connection_cap_leaves_room_for_the_database() {
        assert_eq!(connections_that_fit(65536, 8), 65536 - 152);
        assert_eq!(connections_that_fit(1024, 8), 1024 - 152);
        assert_eq!(connections_that_fit(256, 8), 128);
        assert_eq!(connections_that_fit(1024, 64), 1024 - 320);
        assert_eq!(connections_that_fit(10, 8), 5);
        assert_eq!(connections_that_fit(0, 8), 1);
    }

    #[test]
    fn the_open_files_limit_is_read() {
        assert!(super::open_files_limit().is_some_and(|n| n > 0));
    }
}
