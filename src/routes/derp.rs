//! `GET /derp` and `GET /derp/latency-check`: the embedded DERP relay as
//! coderd serves it (`derphttp.Handler` wrapped by
//! `tailnet.WithWebsocketSupport`; INTEROP.md §3), no authentication (the
//! relay's handshake proves each client's key).
//!
//! - `Upgrade: websocket` with `Sec-WebSocket-Protocol` containing `derp`: a
//!   WebSocket answering the subprotocol `derp`, without compression, whose
//!   binary messages are one byte stream (`rpc::WsIo`).
//! - Otherwise `Upgrade: DERP` (or `websocket` without the subprotocol, as Go
//!   accepts it), in any case: `101` with exactly `Upgrade: DERP`,
//!   `Connection: Upgrade`, `Derp-Version: 2`, `Derp-Public-Key: <hex>`, then
//!   DERP frames on the raw connection.
//! - No upgrade (or HTTP/2, where there is none): 426 `DERP requires
//!   connection upgrade`, Go's plain-text `http.Error`.
//!
//! The connection is served by `derp::Relay::serve` in its own task until the
//! client leaves or the server shuts down.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use hyper_util::rt::TokioIo;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::header::{CONNECTION, SEC_WEBSOCKET_PROTOCOL, UPGRADE};
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;

use super::filters::with_app;
use crate::app::App;
use crate::routes::error::{ApiError, derp_upgrade_required, respond};

/// WebSocket messages read at most this large (the byte stream's pieces).
const MAX_MESSAGE: usize = 1 << 20;

pub fn routes(app: &App) -> BoxedFilter<(Response,)> {
    let latency = warp::path!("derp" / "latency-check")
        .and(warp::get())
        .map(|| Response::new(Vec::<u8>::new().into()));
    let relay = warp::path!("derp")
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<hyper::upgrade::OnUpgrade>())
        .and(with_app(app))
        .then(
            |headers: HeaderMap, upgrade: Option<hyper::upgrade::OnUpgrade>, app: App| async move {
                accept(app, headers, upgrade)
            },
        );
    latency.or(relay).unify().boxed()
}

fn accept(app: App, headers: HeaderMap, upgrade: Option<hyper::upgrade::OnUpgrade>) -> Response {
    let asked = headers
        .get(UPGRADE)
        .map(|v| v.as_bytes().to_ascii_lowercase())
        .unwrap_or_default();
    let Some(upgrade) = upgrade else {
        return derp_upgrade_required();
    };
    // Go's `strings.Contains(r.Header.Get("Sec-Websocket-Protocol"), "derp")`.
    let wants_derp_protocol = headers
        .get(SEC_WEBSOCKET_PROTOCOL)
        .is_some_and(|v| v.as_bytes().windows(4).any(|w| w == b"derp"));
    match asked.as_slice() {
        b"websocket" if wants_derp_protocol => respond(websocket(app, headers, upgrade)),
        b"derp" | b"websocket" => plain(app, upgrade),
        _ => derp_upgrade_required(),
    }
}

/// The plain upgrade: Go's exact 101, then DERP on the connection.
fn plain(app: App, upgrade: hyper::upgrade::OnUpgrade) -> Response {
    let relay = app.derp.clone();
    let mut resp = Response::new(Vec::<u8>::new().into());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("DERP"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert("Derp-Version", HeaderValue::from_static("2"));
    if let Ok(key) = HeaderValue::from_str(&relay.public_key_hex()) {
        headers.insert("Derp-Public-Key", key);
    }
    let shutdown = app.shutdown.clone();
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => run(&relay, TokioIo::new(upgraded), &shutdown).await,
            Err(e) => tracing::debug!(error = %e, "derp upgrade failed"),
        }
    });
    resp
}

/// The WebSocket path: subprotocol `derp`, no compression.
fn websocket(
    app: App,
    headers: HeaderMap,
    upgrade: hyper::upgrade::OnUpgrade,
) -> Result<Response, ApiError> {
    let mut request = warp::http::Request::new(());
    *request.headers_mut() = headers;
    request.extensions_mut().insert(upgrade);
    let options = yawc::Options::default()
        .with_max_payload_read(MAX_MESSAGE)
        .with_no_delay()
        .without_compression()
        .with_read_buffer_capacity(2 << 10)
        .with_write_buffer_capacity(2 << 10);
    let (handshake, upgraded) = yawc::WebSocket::upgrade_with_options(&mut request, options)
        .map_err(|e| ApiError::bad_request("Failed to accept websocket.").detail(e.to_string()))?;
    let relay = app.derp.clone();
    let shutdown = app.shutdown.clone();
    tokio::spawn(async move {
        match upgraded.await {
            Ok(socket) => {
                // The relay has its own keepalives; nobody reads this clock.
                let last_seen = Arc::new(AtomicI64::new(0));
                run(&relay, super::rpc::WsIo::new(socket, last_seen), &shutdown).await;
            }
            Err(e) => tracing::debug!(error = %e, "derp websocket upgrade failed"),
        }
    });
    let (parts, _) = handshake.into_parts();
    let mut resp = Response::new(Vec::<u8>::new().into());
    *resp.status_mut() = parts.status;
    *resp.headers_mut() = parts.headers;
    resp.headers_mut()
        .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("derp"));
    Ok(resp)
}

async fn run<S>(relay: &crate::derp::Relay, io: S, shutdown: &tokio_util::sync::CancellationToken)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    if let Err(e) = relay.serve(io, shutdown).await {
        tracing::debug!(error = %e, "derp connection ended");
    }
}
