//! Binds, serves (through `routes::serve`, the HTTP layer), and shuts down
//! gracefully: stop accepting, finish in-flight requests, checkpoint the database.

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

pub async fn bind(addr: SocketAddr) -> anyhow::Result<Bound> {
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!("could not listen on {addr}: is another server using that port? choose another with --listen")
    })?;
    let addr = listener.local_addr().context("reading the bound address")?;
    Ok(Bound { listener, addr })
}

/// Serves until `shutdown` resolves, then stops accepting, lets in-flight
/// requests finish, and checkpoints the database.
pub async fn run(
    bound: Bound,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    routes::serve(bound.listener, &app, shutdown).await;
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
            _ = term.recv() => tracing::info!("SIGTERM received; finishing in-flight requests"),
            _ = int.recv() => tracing::info!("SIGINT received; finishing in-flight requests"),
        }
    })
}
