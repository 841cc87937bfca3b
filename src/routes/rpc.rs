//! `GET /api/v2/workspaceagents/me/rpc` (Coder: `workspaceAgentRPC`): the
//! connection a Coder agent keeps open to its server (CONNECTIVITY.md §1.1).
//!
//! Agent-token auth (401), then `version` (missing: 2.0) validated against
//! 2.11 (400 `Unknown or unsupported API version`, BEHAVIOUR.md §1.2), then a
//! WebSocket (no compression, 4 MiB messages) whose binary messages are one
//! byte stream ([`WsIo`]) carrying a yamux session. The agent is the yamux
//! client and opens one stream per call; the server never opens streams. The
//! session is polled for as long as it lives (a stream the agent opens is
//! ACKed at once: hashicorp's yamux would close the whole session after 75 s
//! without the ACK), and every accepted stream is served by its own DRPC
//! connection with `agentapi::router()`.
//!
//! Monitoring (`role` empty or `agent`; another role, e.g. a log-shipping
//! sidecar using the agent's token, is served but not monitored): the server
//! pings over yamux every `agent.connection_update_interval`, the session is
//! registered with `app::connections`, whose monitor writes
//! `last_connected_at` and ends the session when the agent is silent for
//! `agent.inactive_disconnect_timeout` or no longer live (a newer build).
//! `first_connected_at`/`last_connected_at` are written when the session
//! begins and `disconnected_at` when it ends.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::{Sink, Stream, StreamExt};
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinSet;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::HeaderMap;
use warp::reply::Response;
use yawc::frame::{Frame, OpCode};

use super::filters::{query_pairs, session_token, with_app};
use super::session::{agent_for_token, read_inline};
use crate::agentapi::{self, Session};
use crate::app::App;
use crate::app::connections::{LastSeen, unix_millis};
use crate::routes::error::{ApiError, respond};
use crate::rpc::drpc::{self, Router};
use crate::rpc::proto::methods::{self, Version};
use crate::store;
use crate::store::agents::AgentRow;

/// The WebSocket read limit both sides set (coder: 4 MiB).
const MAX_MESSAGE: usize = 4 << 20;

/// A write is sent as one binary message of at most this many bytes:
/// coder/websocket's default read limit (32 KiB per message), which Coder's
/// clients keep on `/coordinate`, `/tailnet` and Tailscale's DERP client on
/// `/derp` (only the agent raises it, to 4 MiB). A bigger message ends their
/// connection.
const MAX_WRITE: usize = 32 << 10;

pub fn routes(app: &App) -> BoxedFilter<(Response,)> {
    let router = Arc::new(agentapi::router());
    warp::path!("api" / "v2" / "workspaceagents" / "me" / "rpc")
        .and(warp::get())
        .and(session_token())
        .and(query_pairs())
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<hyper::upgrade::OnUpgrade>())
        .and(with_app(app))
        .then(
            move |token: Option<String>,
                  query: Vec<(String, String)>,
                  headers: HeaderMap,
                  upgrade: Option<hyper::upgrade::OnUpgrade>,
                  app: App| {
                let router = router.clone();
                async move { respond(accept(app, router, token, query, headers, upgrade)) }
            },
        )
        .boxed()
}

/// The first value of a query parameter, as Go's `Query().Get`.
fn first<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `version` as coderd reads it: missing or empty means 2.0.
pub fn api_version(query: &[(String, String)]) -> Result<Version, ApiError> {
    let raw = first(query, "version").filter(|v| !v.is_empty());
    methods::validate(raw.unwrap_or("2.0")).map_err(|why| {
        ApiError::bad_request("Unknown or unsupported API version").validation("version", why)
    })
}

fn accept(
    app: App,
    router: Arc<Router<Session>>,
    token: Option<String>,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Result<Response, ApiError> {
    if app.shutdown.is_cancelled() {
        return Err(ApiError::shutting_down());
    }
    let agent = read_inline(&app.store, |c| agent_for_token(c, token.as_deref()))?;
    let version = api_version(&query)?;
    let role = first(&query, "role").unwrap_or("");
    let monitored = role.is_empty() || role == "agent";
    upgrade_binary(headers, upgrade, "/me/rpc", move |socket| {
        run(app, router, agent, version, monitored, socket)
    })
}

/// Answers a WebSocket handshake for a binary byte-stream route (no
/// compression, 4 MiB messages, small starting buffers) and runs `then` on
/// the upgraded socket. Not an upgrade request: 400 `Failed to accept
/// websocket.`, as coderd.
pub(crate) fn upgrade_binary<F, Fut>(
    headers: HeaderMap,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
    route: &str,
    then: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(yawc::WebSocket<yawc::HttpStream>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let not_websocket =
        |detail: String| ApiError::bad_request("Failed to accept websocket.").detail(detail);
    let asks_upgrade = headers
        .get(warp::http::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let upgrade = match upgrade {
        Some(u) if asks_upgrade => u,
        _ => {
            return Err(not_websocket(format!(
                "{route} needs a WebSocket upgrade request."
            )));
        }
    };
    let mut request = warp::http::Request::new(());
    *request.headers_mut() = headers;
    request.extensions_mut().insert(upgrade);
    let options = yawc::Options::default()
        .with_max_payload_read(MAX_MESSAGE)
        .with_no_delay()
        .without_compression()
        // Idle agents are the common case: small buffers that grow for
        // large messages and shrink back (yawc's default is 8 KiB each).
        .with_read_buffer_capacity(2 << 10)
        .with_write_buffer_capacity(2 << 10);
    let (handshake, upgraded) = yawc::WebSocket::upgrade_with_options(&mut request, options)
        .map_err(|e| not_websocket(e.to_string()))?;
    tokio::spawn(async move {
        match upgraded.await {
            Ok(socket) => then(socket).await,
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
    });
    let (parts, _) = handshake.into_parts();
    let mut resp = Response::new(Vec::<u8>::new().into());
    *resp.status_mut() = parts.status;
    *resp.headers_mut() = parts.headers;
    Ok(resp)
}

/// One agent's session, from the upgraded socket to its end.
async fn run<S>(
    app: App,
    router: Arc<Router<Session>>,
    agent: AgentRow,
    version: Version,
    monitored: bool,
    socket: yawc::WebSocket<S>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let agent_id = agent.id;
    let last_seen: LastSeen = Arc::new(AtomicI64::new(unix_millis(OffsetDateTime::now_utc())));
    let yamux = yamux_server(
        socket,
        app.config.agent.connection_update_interval,
        Some(last_seen.clone()),
    );
    let registration = if monitored {
        let now = OffsetDateTime::now_utc();
        match app
            .store
            .write_async(move |tx| store::connections::connected(tx, agent_id, now))
            .await
        {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(%agent_id, error = %e, "could not record the agent's connection");
                return;
            }
        }
        Some(app.connections.register(agent_id, last_seen))
    } else {
        None
    };
    tracing::info!(
        %agent_id,
        agent = %agent.name,
        workspace = %agent.workspace_name,
        %version,
        monitored,
        "agent connected"
    );
    let end = registration
        .as_ref()
        .map(|r| r.end.clone())
        .unwrap_or_default();
    let state = Session::new(app.clone(), agent, version);
    let why = serve_session(yamux, router, state, end, app.shutdown.clone()).await;
    drop(registration);
    if monitored {
        let now = OffsetDateTime::now_utc();
        if let Err(e) = app
            .store
            .write_async(move |tx| store::connections::disconnected(tx, agent_id, now))
            .await
        {
            tracing::warn!(%agent_id, error = %e, "could not record the agent's disconnection");
        }
    }
    tracing::info!(%agent_id, reason = %why, "agent disconnected");
}

/// The server side of a yamux session (hashicorp's DefaultConfig, which
/// tokio-yamux's default equals) over a WebSocket byte stream, pinging every
/// `keepalive`; `last_seen`, if given, is stamped on every message received.
pub(crate) fn yamux_server<S>(
    socket: yawc::WebSocket<S>,
    keepalive: std::time::Duration,
    last_seen: Option<LastSeen>,
) -> tokio_yamux::Session<WsIo<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = tokio_yamux::Config {
        keepalive_interval: keepalive,
        ..tokio_yamux::Config::default()
    };
    let last_seen = last_seen.unwrap_or_default();
    tokio_yamux::Session::new_server(WsIo::new(socket, last_seen), config)
}

/// Serves a yamux session until it ends: each stream the client opens gets a
/// task running DRPC with `router` and a clone of `state`; the session is
/// polled all along (streams ACKed at once). Ends when the client goes away,
/// `end` or `shutdown` is cancelled; the stream tasks end with it. Returns
/// why it ended, for the log.
pub(crate) async fn serve_session<T, St>(
    mut yamux: tokio_yamux::Session<T>,
    router: Arc<Router<St>>,
    state: St,
    end: tokio_util::sync::CancellationToken,
    shutdown: tokio_util::sync::CancellationToken,
) -> String
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    St: Clone + Send + Sync + 'static,
{
    let mut calls = JoinSet::new();
    let why = loop {
        tokio::select! {
            next = yamux.next() => match next {
                Some(Ok(stream)) => {
                    let router = router.clone();
                    let state = state.clone();
                    calls.spawn(async move {
                        if let Err(e) = drpc::serve(stream, &router, state).await {
                            tracing::debug!(error = %e, "drpc stream ended with an error");
                        }
                    });
                }
                Some(Err(e)) => break format!("session error: {e}"),
                None => break "closed by the client".to_owned(),
            },
            Some(_) = calls.join_next(), if !calls.is_empty() => {}
            _ = end.cancelled() => break "ended by the server".to_owned(),
            _ = shutdown.cancelled() => break "server shutting down".to_owned(),
        }
    };
    calls.abort_all();
    why
}

/// A WebSocket as a byte stream, as coder's `websocket.NetConn` makes it:
/// every write is one binary message, reads concatenate message payloads
/// (boundaries mean nothing). Pings are answered by yawc; a close frame or
/// an error ends the stream. Every message received stores the time in
/// `last_seen`.
pub struct WsIo<S> {
    ws: yawc::WebSocket<S>,
    pending: Bytes,
    eof: bool,
    last_seen: LastSeen,
}

impl<S> WsIo<S> {
    pub fn new(ws: yawc::WebSocket<S>, last_seen: LastSeen) -> WsIo<S> {
        WsIo {
            ws,
            pending: Bytes::new(),
            eof: false,
            last_seen,
        }
    }
}

fn io_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl<S> AsyncRead for WsIo<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                None => this.eof = true,
                Some(frame) => {
                    this.last_seen
                        .store(unix_millis(OffsetDateTime::now_utc()), Ordering::Relaxed);
                    match frame.opcode() {
                        OpCode::Binary | OpCode::Text | OpCode::Continuation => {
                            this.pending = frame.into_payload();
                        }
                        OpCode::Close => this.eof = true,
                        _ => {}
                    }
                }
            }
        }
    }
}

impl<S> AsyncWrite for WsIo<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(io_error)?;
        let n = buf.len().min(MAX_WRITE);
        Pin::new(&mut this.ws)
            .start_send(Frame::binary(Bytes::copy_from_slice(&buf[..n])))
            .map_err(io_error)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().ws)
            .poll_flush(cx)
            .map_err(io_error)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().ws)
            .poll_close(cx)
            .map_err(io_error)
    }
}
