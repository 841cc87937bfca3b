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
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;
use yawc::close::CloseCode;
use yawc::frame::{Frame, OpCode};

use super::filters::{
    null_as_default, query_flag, query_pairs, read_body, session_token, with_app,
};
use super::session::{agent_before_body, readable_agent};
use crate::app::App;
use crate::logs::ingest::{self, Outcome};
use crate::routes::error::{ApiError, MAX_BODY_BYTES, json_bytes, json_response, respond};
use crate::store::{self, logs::LogRow};

/// The follow socket: yawc's WebSocket on the connection hyper hands over.
type Socket = yawc::WebSocket<yawc::HttpStream>;

/// Lines per follow frame after the first (the first holds the whole backlog).
const FOLLOW_FRAME_LINES: usize = 1000;
/// Liveness pings on follow sockets, as upstream.
const PING_EVERY: Duration = Duration::from_secs(15);
/// A follower that cannot take a frame within this long is closed.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Followers re-check their agent at least this often even without signals.
const RECHECK_EVERY: Duration = Duration::from_secs(60);

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

/// Encodes rows as Coder's `[]codersdk.WorkspaceAgentLog`, straight from the
/// rows (no copies); lines of one batch share their timestamp, formatted once.
fn encode_logs(rows: &[LogRow]) -> Vec<u8> {
    let mut stamps: Vec<String> = Vec::new();
    let mut last: Option<OffsetDateTime> = None;
    for r in rows {
        if last != Some(r.created_at) {
            stamps.push(crate::sdk::rfc3339::format(&r.created_at));
            last = Some(r.created_at);
        }
    }
    let mut stamp = stamps.iter();
    let mut current = "";
    let mut last: Option<OffsetDateTime> = None;
    let body: Vec<crate::sdk::WorkspaceAgentLog<'_>> = rows
        .iter()
        .map(|r| {
            if last != Some(r.created_at) {
                current = stamp.next().map_or("", String::as_str);
                last = Some(r.created_at);
            }
            crate::sdk::WorkspaceAgentLog {
                id: r.id,
                created_at: current,
                output: &r.output,
                level: &r.level,
                source_id: r.source_id,
            }
        })
        .collect();
    let mut out = Vec::with_capacity(rows.len() * 200 + 2);
    // Serialising borrowed strings and integers cannot fail.
    let _ = serde_json::to_writer(&mut out, &body);
    out
}

async fn get_logs(
    app: App,
    token: Option<String>,
    raw_id: String,
    query: Vec<(String, String)>,
    (headers, upgrade): (HeaderMap, Option<hyper::upgrade::OnUpgrade>),
) -> Result<Response, ApiError> {
    let now = OffsetDateTime::now_utc();
    let agent = app
        .store
        .read_inline(|c| Ok(readable_agent(c, token.as_deref(), &raw_id, now)))??;
    let q = parse_query(&query)?;
    if q.follow {
        return accept_follower(app, agent.id, &q, headers, upgrade);
    }
    let (agent_id, agent_name) = (agent.id, agent.name.clone());
    let (rows, sources) = app
        .store
        .read_async(move |c| {
            let rows = store::logs::range(c, agent_id, q.after, q.before, usize::MAX)?;
            let sources = if q.text {
                store::agents::log_sources(c, agent_id)?
            } else {
                Vec::new()
            };
            Ok((rows, sources))
        })
        .await?;
    if !q.text {
        let mut body = encode_logs(&rows);
        body.push(b'\n');
        return Ok(json_bytes(StatusCode::OK, body.into()));
    }
    let mut out = String::new();
    for row in &rows {
        let when = row
            .created_at
            .replace_nanosecond(0)
            .map(|t| crate::sdk::rfc3339::format(&t))
            .unwrap_or_default();
        let source = sources.iter().find(|s| s.id == row.source_id);
        match source {
            Some(s) => out.push_str(&format!(
                "{when} [{}] [agent.{agent_name}|{}] {}\n",
                row.level, s.display_name, row.output
            )),
            None => out.push_str(&format!(
                "{when} [{}] [agent.{agent_name}] {}\n",
                row.level, row.output
            )),
        }
    }
    let mut resp = Response::new(out.into());
    resp.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("text/plain; charset=utf-8"),
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

/// Sends `rows` as one JSON-array text frame, giving up after [`SEND_TIMEOUT`].
async fn send_rows(
    socket: &mut futures_util::stream::SplitSink<Socket, Frame>,
    rows: &[LogRow],
) -> Result<(), &'static str> {
    let text = encode_logs(rows);
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(Frame::text(text))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err("client went away"),
        Err(_) => Err("client too slow: a frame waited more than 10s"),
    }
}

/// One follower: backlog first, then every new line in id order, until the
/// agent leaves the latest build (then a final flush and close 1000) or the
/// client goes away.
///
/// The follower subscribes before it reads the backlog, and every read asks
/// for ids above the last one sent, so a batch committed between the backlog
/// query and the subscription is neither lost nor sent twice. Nothing is
/// buffered here: a slow client just reads later lines from the database
/// later, and one that stalls is closed.
async fn follow(app: App, agent_id: Uuid, after: i64, socket: Socket) {
    let _open = app
        .metrics
        .stream_opened(crate::app::metrics::Stream::WebSocket);
    let mut new_logs = app.hub.subscribe_logs(agent_id);
    let mut database = app.hub.subscribe_database();
    let (mut tx, mut rx) = socket.split();
    // The client's frames are read by a task of their own, polled only when
    // the socket has data (not on every wake-up of this loop); it reports
    // when the client closes or goes away.
    let (gone_tx, mut client_gone) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        while let Some(frame) = rx.next().await {
            if frame.opcode() == OpCode::Close {
                break;
            }
        }
        let _ = gone_tx.send(());
    });
    let _stop_reader = AbortOnDrop(reader);
    let mut last = after;
    let fetch = |from: i64, limit: usize| {
        let store = app.store.clone();
        async move {
            // A short indexed read: on this thread, not a blocking-pool trip
            // per follower per wake-up.
            store.read_inline(move |c| store::logs::range(c, agent_id, from, None, limit))
        }
    };
    let close = |code: u16, reason: &'static str| Frame::close(CloseCode::from(code), reason);

    match fetch(last, usize::MAX).await {
        Ok(rows) => {
            if let Some(r) = rows.last() {
                last = r.id;
            }
            if let Err(why) = send_rows(&mut tx, &rows).await {
                tracing::debug!(%agent_id, why, "follower closed");
                return;
            }
        }
        Err(e) => {
            tracing::error!(%agent_id, error = %e, "reading the log backlog");
            let _ = tx.send(close(1011, "internal error")).await;
            return;
        }
    }

    let mut ping = tokio::time::interval(PING_EVERY);
    ping.reset();
    let mut recheck = tokio::time::interval(RECHECK_EVERY);
    recheck.reset();
    loop {
        let (check_live, read_more) = tokio::select! {
            () = app.shutdown.cancelled() => {
                let going_away = tx.send(close(1001, "server shutting down"));
                let _ = tokio::time::timeout(Duration::from_secs(1), going_away).await;
                return;
            }
            changed = new_logs.changed() => (false, changed.is_ok()),
            _ = database.changed() => (true, true),
            _ = recheck.tick() => (true, true),
            _ = ping.tick() => {
                if tokio::time::timeout(SEND_TIMEOUT, tx.send(Frame::ping(bytes::Bytes::new()))).await.map_or(true, |r| r.is_err()) {
                    return;
                }
                continue;
            }
            _ = &mut client_gone => return,
        };
        let still_live = if check_live {
            let store = app.store.clone();
            match store
                .read_async(move |c| store::logs::agent_is_live(c, agent_id))
                .await
            {
                Ok(live) => live,
                Err(e) => {
                    tracing::error!(%agent_id, error = %e, "checking a followed agent");
                    true
                }
            }
        } else {
            true
        };
        if read_more || !still_live {
            loop {
                match fetch(last, FOLLOW_FRAME_LINES).await {
                    Ok(rows) if rows.is_empty() => break,
                    Ok(rows) => {
                        last = rows.last().map_or(last, |r| r.id);
                        let full = rows.len() == FOLLOW_FRAME_LINES;
                        if let Err(why) = send_rows(&mut tx, &rows).await {
                            if why.starts_with("client too slow") {
                                let _ = tx.send(close(1008, "client too slow")).await;
                            }
                            tracing::info!(%agent_id, why, "follower closed");
                            return;
                        }
                        if !full {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::error!(%agent_id, error = %e, "reading logs for a follower");
                        let _ = tx.send(close(1011, "internal error")).await;
                        return;
                    }
                }
            }
        }
        if !still_live {
            // The agent left the latest build: everything it wrote has been sent.
            let _ = tx.send(close(1000, "")).await;
            return;
        }
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
