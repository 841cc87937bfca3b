//! What Coder's clients read before they dial an agent over tailnet:
//! `GET /api/v2/derp-map` (BEHAVIOUR.md §1.1: a WebSocket of the DERP map,
//! no auth, as upstream) and `GET /api/v2/workspaceagents/{id}/connection`
//! (§1.11: the map and the deployment's connection settings; the sibling
//! `GET /api/v2/workspaceagents/connection` answers the same without an agent).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;
use yawc::close::CloseCode;
use yawc::frame::{Frame, OpCode};

use super::error::json_response;
use super::filters::{session_token, with_app};
use super::session::{read_inline, readable_agent, user_for_key};
use crate::app::App;
use crate::routes::error::{ApiError, respond};
use crate::rpc::proto::tailnet::DerpMap;
use crate::sdk;

/// A frame (or the close) not taken by the client within this long ends the socket.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

pub fn routes(app: &App) -> BoxedFilter<(Response,)> {
    let derp_map = warp::path!("api" / "v2" / "derp-map")
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<hyper::upgrade::OnUpgrade>())
        .and(with_app(app))
        .then(
            |headers: HeaderMap, upgrade: Option<hyper::upgrade::OnUpgrade>, app: App| async move {
                respond(derp_map_updates(app, headers, upgrade))
            },
        );
    let generic = warp::path!("api" / "v2" / "workspaceagents" / "connection")
        .and(warp::get())
        .and(session_token())
        .and(with_app(app))
        .then(|token: Option<String>, app: App| async move {
            respond(connection_info(app, token, None))
        });
    let agent = warp::path!("api" / "v2" / "workspaceagents" / String / "connection")
        .and(warp::get())
        .and(session_token())
        .and(with_app(app))
        .then(|id: String, token: Option<String>, app: App| async move {
            respond(connection_info(app, token, Some(id)))
        });
    derp_map.or(generic).unify().or(agent).unify().boxed()
}

/// `workspacesdk.AgentConnectionInfo` from the deployment's settings; the
/// agent only decides who may ask (its readers: owner, admins).
fn connection_info(
    app: App,
    token: Option<String>,
    agent_id: Option<String>,
) -> Result<Response, ApiError> {
    let now = crate::store::now();
    read_inline(&app.store, |c| match &agent_id {
        Some(id) => readable_agent(c, token.as_deref(), id, now).map(|_| ()),
        None => user_for_key(c, token.as_deref(), now).map(|_| ()),
    })?;
    let derp = &app.config.derp;
    let info = sdk::AgentConnectionInfo {
        derp_map: sdk::DerpMap::from(app.derp_map.borrow().as_ref()),
        derp_force_websockets: derp.force_websockets,
        disable_direct_connections: derp.disable_direct_connections,
        hostname_suffix: derp.hostname_suffix.clone(),
    };
    Ok(json_response(StatusCode::OK, &info))
}

/// The map as `/derp-map` sends it: JSON of `tailcfg.DERPMap` and a newline.
fn encode(map: &DerpMap) -> bytes::Bytes {
    let mut json = serde_json::to_vec(&sdk::DerpMap::from(map)).unwrap_or_default();
    json.push(b'\n');
    json.into()
}

fn derp_map_updates(
    app: App,
    headers: HeaderMap,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Result<Response, ApiError> {
    let not_websocket =
        |detail: String| ApiError::bad_request("Failed to accept websocket.").detail(detail);
    let asks_upgrade = headers
        .get(warp::http::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let upgrade = match upgrade {
        Some(u) if asks_upgrade => u,
        _ => {
            return Err(not_websocket(
                "/derp-map needs a WebSocket upgrade request.".into(),
            ));
        }
    };
    let mut request = warp::http::Request::new(());
    *request.headers_mut() = headers;
    request.extensions_mut().insert(upgrade);
    let options = yawc::Options::default()
        .with_max_payload_read(64 << 10)
        .with_no_delay();
    let (handshake, upgraded) = yawc::WebSocket::upgrade_with_options(&mut request, options)
        .map_err(|e| not_websocket(e.to_string()))?;
    tokio::spawn(async move {
        match upgraded.await {
            Ok(socket) => send_updates(app, socket).await,
            Err(e) => tracing::debug!(error = %e, "derp-map upgrade failed"),
        }
    });
    let (parts, _) = handshake.into_parts();
    let mut resp = Response::new(Vec::<u8>::new().into());
    *resp.status_mut() = parts.status;
    *resp.headers_mut() = parts.headers;
    Ok(resp)
}

/// The map now, then whenever it changes, with pings every
/// `agent.connection_update_interval`; a ping unanswered when the next is
/// due closes with 1001 `ping failed`, as upstream. Client frames other than
/// pongs and close are ignored.
async fn send_updates<S>(app: App, socket: yawc::WebSocket<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut tx, mut rx) = socket.split();
    let pongs = Arc::new(AtomicU64::new(0));
    let (gone_tx, mut gone) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn({
        let pongs = pongs.clone();
        async move {
            while let Some(frame) = rx.next().await {
                match frame.opcode() {
                    OpCode::Close => break,
                    OpCode::Pong => {
                        pongs.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
            let _ = gone_tx.send(());
        }
    });
    let mut maps = app.derp_map.subscribe();
    let mut ping = tokio::time::interval(app.config.agent.connection_update_interval);
    ping.reset();
    let mut awaiting: Option<u64> = None;
    let mut next = Some(Frame::binary(encode(&maps.borrow_and_update())));
    let close = loop {
        if let Some(frame) = next.take() {
            match tokio::time::timeout(SEND_TIMEOUT, tx.send(frame)).await {
                Ok(Ok(())) => {}
                _ => break None,
            }
        }
        tokio::select! {
            changed = maps.changed() => {
                if changed.is_err() {
                    break Some((1001, ""));
                }
                next = Some(Frame::binary(encode(&maps.borrow_and_update())));
            }
            _ = ping.tick() => {
                let answered = pongs.load(Ordering::Relaxed);
                if awaiting.is_some_and(|at| at == answered) {
                    break Some((1001, "ping failed"));
                }
                awaiting = Some(answered);
                next = Some(Frame::ping(bytes::Bytes::new()));
            }
            _ = &mut gone => break None,
            () = app.shutdown.cancelled() => break Some((1001, "")),
        }
    };
    reader.abort();
    if let Some((code, reason)) = close {
        let _ = tokio::time::timeout(
            SEND_TIMEOUT,
            tx.send(Frame::close(CloseCode::from(code), reason)),
        )
        .await;
    }
}
