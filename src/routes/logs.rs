//! Agent logs.
//!
//! - `PATCH /api/v2/workspaceagents/me/logs` (Coder: `patchWorkspaceAgentLogs`,
//!   body `agentsdk.PatchLogs`): an agent ships a batch.
//! - `GET /api/v2/workspaceagents/{workspaceagent}/logs` and its alias
//!   `/startup-logs` (Coder: `workspaceAgentLogs`, `[]codersdk.WorkspaceAgentLog`):
//!   read by range, as JSON or text, or follow over a WebSocket.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;
use warp::Filter;
use warp::Reply;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;
use yawc::close::CloseCode;
use yawc::frame::{Frame, OpCode};

use super::filters::{
    null_as_default, query_flag, query_pairs, read_body, session_token, with_app,
};
use super::session::{agent_before_body, read_inline, readable_agent};
use crate::app::App;
use crate::logs::follow::{Follower, Next};
use crate::logs::ingest::{self, Outcome};
use crate::logs::read::{Format, Reader};
use crate::routes::error::{ApiError, MAX_BODY_BYTES, json_response, respond};

/// The follow socket: yawc's WebSocket on the connection hyper hands over.
type Socket = yawc::WebSocket<yawc::HttpStream>;

/// Liveness pings on follow sockets, as upstream; a client that has not
/// answered one when the next is due is closed (upstream waits as long for
/// its pong).
const PING_EVERY: Duration = Duration::from_secs(15);
/// A follower that cannot take a frame (or a ping) within this long is closed.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the close frame may take before the connection is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

pub fn routes(app: &App) -> BoxedFilter<(Response,)> {
    let patch = warp::path!("api" / "v2" / "workspaceagents" / "me" / "logs")
        .and(warp::patch())
        .and(session_token())
        .and(warp::body::stream())
        .and(with_app(app))
        .then(|token: Option<String>, body, app: App| async move {
            respond(patch_logs(app, token, body).await)
        })
        .boxed();
    let read = |name: &'static str| {
        warp::path("api")
            .and(warp::path("v2"))
            .and(warp::path("workspaceagents"))
            .and(warp::path::param::<String>())
            .and(warp::path(name))
            .and(warp::path::end())
            .and(warp::get())
            .and(session_token())
            .and(query_pairs())
            .and(warp::header::headers_cloned())
            .and(warp::ext::optional::<hyper::upgrade::OnUpgrade>())
            .and(with_app(app))
            .then(
                |id: String,
                 token: Option<String>,
                 query: Vec<(String, String)>,
                 headers: HeaderMap,
                 upgrade: Option<hyper::upgrade::OnUpgrade>,
                 app: App| async move {
                    respond(get_logs(app, token, id, query, (headers, upgrade)).await)
                },
            )
            .boxed()
    };
    patch
        .or(read("logs"))
        .unify()
        .or(read("startup-logs"))
        .unify()
        .boxed()
}

// ----- PATCH /me/logs -----

#[derive(Debug, Deserialize)]
struct PatchLogs {
    #[serde(default, deserialize_with = "null_as_default")]
    log_source_id: Uuid,
    #[serde(default, deserialize_with = "null_as_default")]
    logs: Vec<PatchLine>,
}

#[derive(Debug, Deserialize)]
struct PatchLine {
    #[serde(default, deserialize_with = "null_as_default")]
    output: String,
    #[serde(default, deserialize_with = "null_as_default")]
    level: String,
}

async fn patch_logs(
    app: App,
    token: Option<String>,
    body: impl futures_util::Stream<Item = Result<impl bytes::Buf, warp::Error>>,
) -> Result<Response, ApiError> {
    let agent = agent_before_body(&app, token.as_deref())?;
    // Invalid UTF-8 inside log lines becomes ❌ instead of failing the batch.
    let text = ingest::lossy_utf8(&read_body(body).await?);
    let req: PatchLogs = super::filters::decode_json(text.as_bytes())?;
    if req.logs.is_empty() {
        return Err(ApiError::bad_request("No logs provided."));
    }
    let mut lines = Vec::with_capacity(req.logs.len());
    for l in &req.logs {
        let level = ingest::parse_level(&l.level).ok_or_else(|| {
            ApiError::bad_request("Invalid log level provided.")
                .detail(format!("invalid log level: \"{}\"", l.level))
        })?;
        lines.push(ingest::clean_line(level, &l.output));
    }
    let source = (!req.log_source_id.is_nil()).then_some(req.log_source_id);
    let count = lines.len();
    let bytes = lines.iter().map(|l| l.bytes).sum();
    match app.logs.submit(agent.id, source, lines).await {
        Ok(Outcome::Stored { .. }) => {
            app.metrics.logs_ingested(count, bytes);
            Ok(json_response(
                StatusCode::OK,
                &crate::sdk::Response {
                    message: format!(
                        "Stored {count} log line{}.",
                        if count == 1 { "" } else { "s" }
                    ),
                    detail: None,
                    validations: Vec::new(),
                },
            ))
        }
        Ok(Outcome::OverCap { was_overflowed }) => {
            app.metrics.log_overflow();
            let err = ApiError::payload_too_large("Logs limit exceeded");
            Err(if was_overflowed {
                err.detail(format!(
                    "The agent's logs already hold close to the limit of {} bytes; smaller batches may still fit.",
                    app.config.logs.max_bytes_per_agent
                ))
            } else {
                err
            })
        }
        Err(e) => Err(ApiError::internal("Failed to upload logs", &e)),
    }
}

// ----- GET /{workspaceagent}/logs -----

/// The query, validated in upstream's order.
#[derive(Debug, PartialEq)]
struct LogsQuery {
    after: i64,
    before: Option<i64>,
    follow: bool,
    /// `no_compression`: no permessage-deflate on the follow socket.
    no_compression: bool,
    text: bool,
}

fn id_param(query: &[(String, String)], name: &str) -> Result<Option<i64>, ApiError> {
    match query.iter().rev().find(|(k, _)| k == name) {
        None => Ok(None),
        Some((_, v)) if v.is_empty() => Ok(None),
        Some((_, v)) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "Query param \"{name}\" must be an integer greater than or equal to zero."
                ))
                .validation(name, "Must be an integer greater than or equal to zero")
            }),
    }
}

fn parse_query(query: &[(String, String)]) -> Result<LogsQuery, ApiError> {
    let follow = query_flag(query, "follow")?;
    let no_compression = query_flag(query, "no_compression")?;
    let text = match query
        .iter()
        .rev()
        .find(|(k, _)| k == "format")
        .map(|(_, v)| v.as_str())
    {
        None | Some("" | "json") => false,
        Some("text") => true,
        Some(_) => {
            return Err(ApiError::bad_request("Invalid format parameter.")
                .detail("Allowed values are \"json\" and \"text\"."));
        }
    };
    if text && follow {
        return Err(
            ApiError::bad_request("Text format is not supported with follow mode.")
                .detail("Use format=json or omit the follow parameter."),
        );
    }
    Ok(LogsQuery {
        after: id_param(query, "after")?.unwrap_or(0),
        before: id_param(query, "before")?,
        follow,
        no_compression,
        text,
    })
}

async fn get_logs(
    app: App,
    token: Option<String>,
    raw_id: String,
    query: Vec<(String, String)>,
    (headers, upgrade): (HeaderMap, Option<hyper::upgrade::OnUpgrade>),
) -> Result<Response, ApiError> {
    let now = OffsetDateTime::now_utc();
    let agent = read_inline(&app.store, |c| {
        readable_agent(c, token.as_deref(), &raw_id, now)
    })?;
    let q = parse_query(&query)?;
    if q.follow {
        return accept_follower(app, agent.id, &q, headers, upgrade);
    }
    let format = if q.text {
        Format::Text {
            agent_name: agent.name.clone(),
        }
    } else {
        Format::Json
    };
    let content_type = if q.text {
        "text/plain; charset=utf-8"
    } else {
        "application/json; charset=utf-8"
    };
    let mut reader = Reader::open(app.store.clone(), agent.id, q.after, q.before, format).await?;
    let mut resp = if reader.is_complete() {
        // One page holds it all: one body with its length, as before.
        let body = reader.next_chunk().await?.unwrap_or_default();
        Response::new(body.into())
    } else {
        // Larger reads stream page by page: each page is read (on the
        // blocking pool) only when hyper wants more of the body, so a reader
        // holds about one page whatever the agent's size.
        let agent_id = agent.id;
        let chunks = futures_util::stream::try_unfold(reader, move |mut reader| async move {
            match reader.next_chunk().await {
                Ok(Some(chunk)) => Ok(Some((bytes::Bytes::from(chunk), reader))),
                Ok(None) => Ok(None),
                Err(e) => {
                    // The status is sent: cutting the body short is all that
                    // is left; the client sees an unterminated chunked body.
                    tracing::error!(%agent_id, error = %e, "reading logs mid-response");
                    Err(e)
                }
            }
        });
        warp::reply::stream(chunks).into_response()
    };
    resp.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static(content_type),
    );
    Ok(resp)
}

/// Answers a follow request's WebSocket handshake (101, with permessage-deflate
/// when the client offers it, unless `no_compression`) and starts the
/// follower on the upgraded connection.
fn accept_follower(
    app: App,
    agent_id: Uuid,
    q: &LogsQuery,
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
                "follow=true needs a WebSocket upgrade request.".into(),
            ));
        }
    };
    let mut request = warp::http::Request::new(());
    *request.headers_mut() = headers;
    request.extensions_mut().insert(upgrade);
    let options = yawc::Options::default()
        .with_max_payload_read(MAX_BODY_BYTES as usize)
        .with_no_delay();
    let options = if q.no_compression {
        options.without_compression()
    } else {
        // Log lines compress well; favour speed (level 1), as a server
        // streaming to many followers should.
        options.with_low_latency_compression()
    };
    let (handshake, upgraded) = yawc::WebSocket::upgrade_with_options(&mut request, options)
        .map_err(|e| not_websocket(e.to_string()))?;
    let after = q.after;
    tokio::spawn(async move {
        match upgraded.await {
            Ok(socket) => follow(app, agent_id, after, socket).await,
            Err(e) => tracing::debug!(%agent_id, error = %e, "follow upgrade failed"),
        }
    });
    let (parts, _) = handshake.into_parts();
    let mut resp = Response::new(Vec::<u8>::new().into());
    *resp.status_mut() = parts.status;
    *resp.headers_mut() = parts.headers;
    Ok(resp)
}

/// Aborts a task when dropped: the follower's reader dies with the follower.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a follow socket ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client closed the socket or the connection failed.
    ClientGone,
    /// A frame (or ping) was not taken within [`SEND_TIMEOUT`].
    TooSlow,
    /// The last ping was not answered before the next was due: the client
    /// stopped reading, even if the socket's buffers still take frames.
    Unresponsive,
    /// The agent left the latest build; everything it wrote was sent.
    AgentLeft,
    /// The database failed.
    Failed,
    /// The server is stopping (SIGTERM).
    ShuttingDown,
}

impl End {
    /// The close frame to attempt, if any.
    fn close_frame(self) -> Option<Frame> {
        let (code, reason) = match self {
            End::ClientGone => return None,
            End::TooSlow => (1008, "client too slow"),
            End::Unresponsive => (1008, "no pong"),
            End::AgentLeft => (1000, ""),
            End::Failed => (1011, "internal error"),
            End::ShuttingDown => (1001, "server shutting down"),
        };
        Some(Frame::close(CloseCode::from(code), reason))
    }
}

/// Sends one frame, giving up after `timeout`.
async fn send(
    socket: &mut futures_util::stream::SplitSink<Socket, Frame>,
    frame: Frame,
    timeout: Duration,
) -> Result<(), End> {
    match tokio::time::timeout(timeout, socket.send(frame)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(End::ClientGone),
        Err(_) => Err(End::TooSlow),
    }
}

/// One follower on its socket: frames from [`Follower`] until the agent
/// leaves the latest build (close 1000), the client goes away, or the client
/// stops reading (close 1008): it does not take a frame within
/// [`SEND_TIMEOUT`], or has not answered a ping when the next is due.
///
/// Every send has a timeout, the close frame included ([`CLOSE_TIMEOUT`]),
/// and returning drops the connection. So a client that stops reading costs
/// its task, one page and its socket buffers for at most `SEND_TIMEOUT +
/// CLOSE_TIMEOUT` (11 s) once a frame no longer fits in the buffers, and at
/// most `2 * PING_EVERY + CLOSE_TIMEOUT` (31 s) while they still take
/// everything, whatever it does.
async fn follow(app: App, agent_id: Uuid, after: i64, socket: Socket) {
    let _open = app
        .metrics
        .stream_opened(crate::app::metrics::Stream::WebSocket);
    let mut follower = Follower::start(app.store.clone(), &app.hub, agent_id, after);
    let (mut tx, mut rx) = socket.split();
    // The client's frames are read by a task of their own, polled only when
    // the socket has data (not on every wake-up of this loop); it counts
    // pongs and reports when the client closes or goes away.
    let (gone_tx, mut client_gone) = tokio::sync::oneshot::channel::<()>();
    let pongs = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reader = tokio::spawn({
        let pongs = pongs.clone();
        async move {
            while let Some(frame) = rx.next().await {
                match frame.opcode() {
                    OpCode::Close => break,
                    OpCode::Pong => {
                        pongs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
            let _ = gone_tx.send(());
        }
    });
    let _stop_reader = AbortOnDrop(reader);
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.reset();
    // The pong count when the last ping was sent, while it is unanswered.
    let mut awaiting_pong: Option<u64> = None;
    let end = loop {
        // `Follower::next` is cancel-safe: a ping, the client leaving or the
        // server shutting down may interrupt it.
        let frame = tokio::select! {
            () = app.shutdown.cancelled() => break End::ShuttingDown,
            next = follower.next() => match next {
                Next::Frame(json) => Frame::text(json),
                Next::AgentLeft => break End::AgentLeft,
                Next::Failed => break End::Failed,
            },
            _ = ping.tick() => {
                let answered = pongs.load(std::sync::atomic::Ordering::Relaxed);
                if awaiting_pong.is_some_and(|at_ping| answered == at_ping) {
                    break End::Unresponsive;
                }
                awaiting_pong = Some(answered);
                Frame::ping(bytes::Bytes::new())
            }
            _ = &mut client_gone => break End::ClientGone,
        };
        if let Err(end) = send(&mut tx, frame, SEND_TIMEOUT).await {
            break end;
        }
    };
    if let Some(close) = end.close_frame() {
        // A client too slow for a frame is likely too slow for the close:
        // it gets a short grace, then the connection is dropped regardless.
        let _ = send(&mut tx, close, CLOSE_TIMEOUT).await;
    }
    match end {
        End::TooSlow => {
            tracing::info!(%agent_id, ?end, "follower closed: a frame waited more than 10s")
        }
        End::Unresponsive => {
            tracing::info!(%agent_id, ?end, "follower closed: a ping went unanswered for 15s")
        }
        _ => tracing::debug!(%agent_id, ?end, "follower closed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn query_defaults_and_flags() {
        assert_eq!(
            parse_query(&[]).expect("empty"),
            LogsQuery {
                after: 0,
                before: None,
                follow: false,
                no_compression: false,
                text: false
            }
        );
        let parsed =
            parse_query(&q(&[("follow", ""), ("after", "7"), ("before", "9")])).expect("ok");
        assert_eq!(
            (parsed.follow, parsed.after, parsed.before),
            (true, 7, Some(9))
        );
        assert!(!parse_query(&q(&[("follow", "false")])).expect("ok").follow);
        assert!(
            parse_query(&q(&[("follow", ""), ("no_compression", "true")]))
                .expect("ok")
                .no_compression
        );
        assert!(parse_query(&q(&[("format", "text")])).expect("ok").text);
    }

    #[test]
    fn query_errors_in_upstreams_order_and_words() {
        let e = parse_query(&q(&[("format", "xml"), ("after", "-1")])).expect_err("format first");
        assert_eq!(e.body.message, "Invalid format parameter.");
        let e = parse_query(&q(&[("format", "text"), ("follow", "1")])).expect_err("text+follow");
        assert_eq!(
            e.body.message,
            "Text format is not supported with follow mode."
        );
        let e = parse_query(&q(&[("after", "-1")])).expect_err("negative");
        assert_eq!(
            e.body.message,
            "Query param \"after\" must be an integer greater than or equal to zero."
        );
        assert_eq!(e.body.validations[0].field, "after");
        let e = parse_query(&q(&[("before", "x")])).expect_err("bad before");
        assert_eq!(e.body.validations[0].field, "before");
    }
}
