//! The routes where the server reaches a live agent through its own tailnet
//! peer (`peer::AgentDialer`) and asks the agent's HTTP API (port 4), as
//! coderd does through `AgentConn` (BEHAVIOUR.md §1.12–§1.15, §1.17):
//!
//! - `GET /workspaceagents/{id}/listening-ports`: the agent's ports, less
//!   the reserved ones (< 9), Coder's ignore list and the ports of the
//!   agent's apps;
//! - `GET /workspaceagents/{id}/containers?label=k=v`: the agent's
//!   containers, filtered by label here;
//! - `GET /workspaceagents/{id}/containers/watch`: the agent's own watch
//!   socket, relayed as text messages (one JSON document and a newline
//!   each);
//! - `DELETE /workspaceagents/{id}/containers/devcontainers/{devcontainer}`
//!   (204) and `POST .../recreate` (202 with the agent's body).
//!
//! Every one goes the same way, in coderd's order: the caller's key (401),
//! the id (400), an agent the caller may read (404), its own checks (the
//! label format), the agent's status (400 unless `connected`), the dial
//! (500 `Internal error dialing workspace agent.`) within 30 s, then the
//! call. A refusal from the agent (`codersdk.Error`) is passed on with its
//! status and body. The `/pty` route (`pty.rs`) shares the status check
//! and the dial.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use uuid::Uuid;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::Response;
use yawc::close::CloseCode;
use yawc::frame::{Frame, OpCode};

use super::agent_conn::{self, Reply};
use super::agents::timestamps;
use super::error::json_response;
use super::filters::{query_pairs, session_token, with_app};
use super::rpc::upgrade_binary;
use super::session::{read_inline, readable_agent};
use crate::agent_status::{self, Status};
use crate::app::App;
use crate::peer::{AGENT_HTTP_PORT, DialError, PeerStream};
use crate::routes::error::{ApiError, respond};
use crate::sdk;
use crate::store::{self, agents::AgentRow};

/// How long reaching an agent may take (coderd: 30 s): the dial, and for
/// listening ports and containers the whole request.
pub(super) const BUDGET: Duration = Duration::from_secs(30);

/// `workspacesdk.AgentMinimumListeningPort`: ports 1–8 are the agent's.
const MINIMUM_LISTENING_PORT: u16 = 9;

/// `workspacesdk.AgentIgnoredListeningPorts`, less the ports below
/// [`MINIMUM_LISTENING_PORT`]: servers that do not speak HTTP.
const IGNORED_LISTENING_PORTS: &[u16] = &[
    20, 21, 22, 23, 25, 53, 110, 143, 179, 389, 636, 465, 587, 989, 990, 993, 995, 3306, 3389,
    5432, 27017, 27018, 27019, 28017,
];

/// Watch sockets are pinged this often; a client that has not answered the
/// last ping when the next is due is gone.
const PING_EVERY: Duration = Duration::from_secs(15);
/// A frame not taken by the client within this long ends a watch.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

pub fn routes(app: &App) -> BoxedFilter<(Response,)> {
    let listening_ports =
        warp::path!("api" / "v2" / "workspaceagents" / String / "listening-ports")
            .and(warp::get())
            .and(session_token())
            .and(with_app(app))
            .then(|id: String, token: Option<String>, app: App| async move {
                respond(listening_ports(app, token, id).await)
            });
    let containers = warp::path!("api" / "v2" / "workspaceagents" / String / "containers")
        .and(warp::get())
        .and(session_token())
        .and(query_pairs())
        .and(with_app(app))
        .then(
            |id: String, token: Option<String>, query: Vec<(String, String)>, app: App| async move {
                respond(containers(app, token, id, query).await)
            },
        );
    let watch = warp::path!("api" / "v2" / "workspaceagents" / String / "containers" / "watch")
        .and(warp::get())
        .and(session_token())
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<hyper::upgrade::OnUpgrade>())
        .and(with_app(app))
        .then(
            |id: String,
             token: Option<String>,
             headers: HeaderMap,
             upgrade: Option<hyper::upgrade::OnUpgrade>,
             app: App| async move {
                respond(watch_containers(app, token, id, headers, upgrade).await)
            },
        );
    let delete = warp::path!(
        "api" / "v2" / "workspaceagents" / String / "containers" / "devcontainers" / String
    )
    .and(warp::delete())
    .and(session_token())
    .and(with_app(app))
    .then(
        |id: String, devcontainer: String, token: Option<String>, app: App| async move {
            respond(devcontainer_action(app, token, id, devcontainer, Action::Delete).await)
        },
    );
    let recreate = warp::path!(
        "api"
            / "v2"
            / "workspaceagents"
            / String
            / "containers"
            / "devcontainers"
            / String
            / "recreate"
    )
    .and(warp::post())
    .and(session_token())
    .and(with_app(app))
    .then(
        |id: String, devcontainer: String, token: Option<String>, app: App| async move {
            respond(devcontainer_action(app, token, id, devcontainer, Action::Recreate).await)
        },
    );
    listening_ports
        .or(containers)
        .unify()
        .or(watch)
        .unify()
        .or(delete)
        .unify()
        .or(recreate)
        .unify()
        .boxed()
}

// ----- reaching an agent (shared with pty.rs) -----

/// The agent's connection status now, as `GET /workspaceagents/{id}` shows it.
pub(super) fn status_of(app: &App, agent: &AgentRow) -> Status {
    agent_status::status(
        &timestamps(agent),
        crate::store::now(),
        app.config.agent.inactive_disconnect_timeout,
    )
    .0
}

/// Why an agent was not reached.
#[derive(Debug)]
pub(super) enum Unreached {
    Dial(DialError),
    TimedOut,
    ShuttingDown,
}

impl std::fmt::Display for Unreached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreached::Dial(e) => write!(f, "{e}"),
            Unreached::TimedOut => write!(f, "timed out after {BUDGET:?}"),
            Unreached::ShuttingDown => f.write_str("the server is shutting down"),
        }
    }
}

impl From<Unreached> for ApiError {
    fn from(u: Unreached) -> ApiError {
        match u {
            Unreached::Dial(e) => e.into(),
            Unreached::ShuttingDown => ApiError::shutting_down(),
            timed_out => {
                ApiError::agent_failed("Internal error dialing workspace agent.", timed_out)
            }
        }
    }
}

/// Dials `port` on the agent by `deadline`, or until the server shuts down.
pub(super) async fn dial(
    app: &App,
    agent: Uuid,
    port: u16,
    deadline: Instant,
) -> Result<PeerStream, Unreached> {
    until(app, Some(deadline), app.dialer.dial(agent, port))
        .await?
        .map_err(Unreached::Dial)
}

/// The checks before every call to an agent the caller may read, then the
/// dial: the agent must be `connected` (coderd's 400 otherwise), and the
/// dial must succeed by `deadline` (500).
pub(super) async fn reach(
    app: &App,
    agent: &AgentRow,
    port: u16,
    deadline: Instant,
) -> Result<PeerStream, ApiError> {
    let status = status_of(app, agent);
    if status != Status::Connected {
        return Err(ApiError::bad_request(format!(
            "Agent state is \"{}\", it must be in the \"connected\" state.",
            status.as_str()
        )));
    }
    Ok(dial(app, agent.id, port, deadline).await?)
}

/// A connection to an agent: a `PeerStream`, or a pipe in tests.
pub(super) trait AgentStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AgentStream for S {}

/// Runs `work` until `deadline` (if any) passes or the server shuts down.
async fn until<F: std::future::Future>(
    app: &App,
    deadline: Option<Instant>,
    work: F,
) -> Result<F::Output, Unreached> {
    let deadline = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        done = work => Ok(done),
        () = deadline => Err(Unreached::TimedOut),
        () = app.shutdown.cancelled() => Err(Unreached::ShuttingDown),
    }
}

/// The `{workspaceagent}` routes' gate (`session::readable_agent`).
fn readable(app: &App, token: Option<&str>, raw_id: &str) -> Result<AgentRow, ApiError> {
    let now = crate::store::now();
    read_inline(&app.store, |c| readable_agent(c, token, raw_id, now))
}

/// When a call to the agent must be answered by, and coderd's answer when
/// it is not.
struct Deadline {
    at: Instant,
    missed: fn() -> ApiError,
}

/// One call to the agent's API on a fresh connection, by `deadline` if there
/// is one. `failed` is coderd's message when the call itself fails.
async fn ask<S: AgentStream>(
    app: &App,
    stream: S,
    method: Method,
    path: &str,
    failed: &str,
    deadline: Option<Deadline>,
) -> Result<Reply, ApiError> {
    let at = deadline.as_ref().map(|d| d.at);
    match until(app, at, agent_conn::call(stream, method, path)).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(why)) => Err(ApiError::agent_failed(failed, why)),
        Err(Unreached::ShuttingDown) => Err(ApiError::shutting_down()),
        Err(_) => Err(deadline.map_or_else(ApiError::shutting_down, |d| (d.missed)())),
    }
}

/// An answer other than the one expected: the agent's refusal passed on
/// (coderd writes a `codersdk.Error` back as it came), or coderd's 500
/// when the body is not even a refusal.
fn refused(reply: &Reply, failed: &str) -> ApiError {
    match agent_conn::agent_error(reply) {
        Ok(body) => ApiError::from_agent(reply.status, body),
        Err(why) => ApiError::agent_failed(failed, why),
    }
}

// ----- GET /listening-ports -----

async fn listening_ports(
    app: App,
    token: Option<String>,
    raw_id: String,
) -> Result<Response, ApiError> {
    let deadline = Instant::now() + BUDGET;
    let agent = readable(&app, token.as_deref(), &raw_id)?;
    let stream = reach(&app, &agent, AGENT_HTTP_PORT, deadline).await?;
    ports_from(&app, agent.id, stream, deadline).await
}

/// The listening ports on a connection to the agent, filtered.
async fn ports_from<S: AgentStream>(
    app: &App,
    agent_id: Uuid,
    stream: S,
    deadline: Instant,
) -> Result<Response, ApiError> {
    const FAILED: &str = "Internal error fetching listening ports.";
    const PATH: &str = "/api/v0/listening-ports";
    let deadline = Deadline {
        at: deadline,
        missed: || ApiError::agent_failed(FAILED, "do request: context deadline exceeded"),
    };
    let reply = ask(app, stream, Method::GET, PATH, FAILED, Some(deadline)).await?;
    if reply.status != 200 {
        return Err(ApiError::agent_failed(
            FAILED,
            agent_conn::describe(&Method::GET, PATH, &reply),
        ));
    }
    let mut ports: sdk::WorkspaceAgentListeningPortsResponse =
        agent_conn::first_json(&reply.body).map_err(|why| ApiError::agent_failed(FAILED, why))?;
    let apps = read_inline(&app.store, |c| {
        store::agents::apps(c, agent_id)
            .map_err(|e| ApiError::internal("Internal error fetching workspace apps.", &e))
    })?;
    let app_ports: HashSet<u16> = apps.iter().filter_map(|a| url_port(&a.url)).collect();
    ports.ports.retain(|p| shown_port(p.port, &app_ports));
    Ok(json_response(StatusCode::OK, &ports))
}

/// Whether a listening port is shown: not one of the agent's own, not one of
/// Coder's ignored ports, not one of the agent's apps.
fn shown_port(port: u16, app_ports: &HashSet<u16>) -> bool {
    port >= MINIMUM_LISTENING_PORT
        && !IGNORED_LISTENING_PORTS.contains(&port)
        && !app_ports.contains(&port)
}

/// The explicit port of an app URL, as Go's `url.Parse(u).Port()` finds it
/// (only in an authority, `//host:port`); `None` when it has none or it is
/// not a port number 1–65535.
fn url_port(url: &str) -> Option<u16> {
    let url = url.split('#').next().unwrap_or("");
    // A scheme: a letter, then letters, digits, `+`, `-`, `.`, then `:`.
    let rest = match url.find(':') {
        Some(i)
            if url[..i].starts_with(|c: char| c.is_ascii_alphabetic())
                && url[..i]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) =>
        {
            &url[i + 1..]
        }
        _ => url,
    };
    let authority = rest.strip_prefix("//")?;
    let authority = authority
        .split(['/', '?'])
        .next()
        .unwrap_or("")
        .rsplit('@')
        .next()
        .unwrap_or("");
    let (_, port) = authority.rsplit_once(':')?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    port.parse::<u16>().ok().filter(|p| *p >= 1)
}

// ----- GET /containers -----

/// The `label` parameters as coderd reads them: each `key=value` (the value
/// may be empty, a second `=` is refused); a key given twice keeps its last
/// value.
fn labels(query: &[(String, String)]) -> Result<BTreeMap<String, String>, ApiError> {
    let mut labels = BTreeMap::new();
    for (_, label) in query.iter().filter(|(k, _)| k == "label") {
        let mut parts = label.split('=');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(k), Some(v), None) => {
                labels.insert(k.to_owned(), v.to_owned());
            }
            _ => {
                return Err(ApiError::bad_request("Invalid label format")
                    .detail("Labels must be in the format key=value"));
            }
        }
    }
    Ok(labels)
}

async fn containers(
    app: App,
    token: Option<String>,
    raw_id: String,
    query: Vec<(String, String)>,
) -> Result<Response, ApiError> {
    let deadline = Instant::now() + BUDGET;
    let agent = readable(&app, token.as_deref(), &raw_id)?;
    let labels = labels(&query)?;
    let stream = reach(&app, &agent, AGENT_HTTP_PORT, deadline).await?;
    containers_from(&app, stream, &labels, deadline).await
}

/// The containers on a connection to the agent, filtered by `labels`.
async fn containers_from<S: AgentStream>(
    app: &App,
    stream: S,
    labels: &BTreeMap<String, String>,
    deadline: Instant,
) -> Result<Response, ApiError> {
    const FAILED: &str = "Internal error fetching containers.";
    let deadline = Deadline {
        at: deadline,
        missed: || ApiError::agent_timed_out("Failed to fetch containers from agent."),
    };
    let reply = ask(
        app,
        stream,
        Method::GET,
        "/api/v0/containers",
        FAILED,
        Some(deadline),
    )
    .await?;
    if reply.status != 200 {
        return Err(refused(&reply, FAILED));
    }
    let body = agent_conn::first_json(&reply.body)
        .and_then(|v| filter_containers(v, labels))
        .map_err(|why| ApiError::agent_failed(FAILED, why))?;
    Ok(json_response(StatusCode::OK, &body))
}

/// `codersdk.WorkspaceAgentListContainersResponse` as coderd re-encodes the
/// agent's: `devcontainers` and `containers` (null when absent), `warnings`
/// only when there are some; containers kept only when they carry every
/// requested label (with the requested value, unless that is empty).
/// Everything inside is the agent's, as it sent it.
fn filter_containers(body: Value, labels: &BTreeMap<String, String>) -> Result<Value, String> {
    let Value::Object(mut got) = body else {
        return Err(
            "decode body: json: cannot unmarshal into codersdk.WorkspaceAgentListContainersResponse"
                .to_owned(),
        );
    };
    let mut containers = got.remove("containers").unwrap_or(Value::Null);
    if let Value::Array(list) = &mut containers {
        list.retain(|c| {
            labels.iter().all(|(k, want)| {
                c.get("labels")
                    .and_then(|l| l.get(k))
                    .and_then(Value::as_str)
                    .is_some_and(|v| want.is_empty() || v == want)
            })
        });
    }
    let mut out = serde_json::Map::new();
    out.insert(
        "devcontainers".to_owned(),
        got.remove("devcontainers").unwrap_or(Value::Null),
    );
    out.insert("containers".to_owned(), containers);
    if let Some(Value::Array(w)) = got.remove("warnings")
        && !w.is_empty()
    {
        out.insert("warnings".to_owned(), Value::Array(w));
    }
    Ok(Value::Object(out))
}

// ----- GET /containers/watch -----

async fn watch_containers(
    app: App,
    token: Option<String>,
    raw_id: String,
    headers: HeaderMap,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Result<Response, ApiError> {
    const FAILED: &str = "Internal error watching agent's containers.";
    let deadline = Instant::now() + BUDGET;
    let agent = readable(&app, token.as_deref(), &raw_id)?;
    let stream = reach(&app, &agent, AGENT_HTTP_PORT, deadline).await?;
    let watched = match until(
        &app,
        Some(deadline),
        agent_conn::websocket(stream, "/api/v0/containers/watch"),
    )
    .await
    {
        Ok(Ok(ws)) => ws,
        Ok(Err(why)) => return Err(ApiError::agent_failed(FAILED, why)),
        Err(Unreached::ShuttingDown) => return Err(ApiError::shutting_down()),
        Err(cut) => return Err(ApiError::agent_failed(FAILED, cut)),
    };
    check_origin(&headers, None)?;
    let agent_id = agent.id;
    upgrade_binary(headers, upgrade, "/containers/watch", move |socket| {
        relay_watch(app, agent_id, watched, socket)
    })
}

/// Why a watch ended, for the log.
#[derive(Debug)]
enum WatchEnd {
    AgentDone,
    AgentBroke,
    ClientGone,
    ClientSilent,
    ShuttingDown,
}

/// Relays the agent's watch messages to the client, each as one text
/// message (the JSON document and a newline), until the agent's stream
/// ends, the client goes away or the server shuts down; pings the client
/// every 15 s. Frames from the client are read only for pongs and its close.
async fn relay_watch(
    app: App,
    agent_id: Uuid,
    mut agent: yawc::WebSocket<impl AgentStream>,
    mut client: yawc::WebSocket<yawc::HttpStream>,
) {
    let _open = app
        .metrics
        .stream_opened(crate::app::metrics::Stream::WebSocket);
    let mut pongs: u64 = 0;
    let mut awaiting_pong: Option<u64> = None;
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.reset();
    let end = loop {
        let frame = tokio::select! {
            () = app.shutdown.cancelled() => break WatchEnd::ShuttingDown,
            got = agent.next() => match got {
                Some(f) if matches!(f.opcode(), OpCode::Text | OpCode::Binary) => {
                    let payload = f.into_payload();
                    let json = payload.trim_ascii_end();
                    if serde_json::from_slice::<serde::de::IgnoredAny>(json).is_err() {
                        break WatchEnd::AgentBroke;
                    }
                    let mut text = Vec::with_capacity(json.len() + 1);
                    text.extend_from_slice(json);
                    text.push(b'\n');
                    Frame::text(text)
                }
                Some(f) if f.opcode() == OpCode::Close => break WatchEnd::AgentDone,
                Some(_) => continue,
                None => break WatchEnd::AgentDone,
            },
            got = client.next() => match got {
                Some(f) if f.opcode() == OpCode::Pong => {
                    pongs += 1;
                    continue;
                }
                Some(f) if f.opcode() == OpCode::Close => break WatchEnd::ClientGone,
                Some(_) => continue,
                None => break WatchEnd::ClientGone,
            },
            _ = ping.tick() => {
                if awaiting_pong == Some(pongs) {
                    break WatchEnd::ClientSilent;
                }
                awaiting_pong = Some(pongs);
                Frame::ping(bytes::Bytes::new())
            }
        };
        match tokio::time::timeout(SEND_TIMEOUT, client.send(frame)).await {
            Ok(Ok(())) => {}
            _ => break WatchEnd::ClientGone,
        }
    };
    // As coderd, which closes its end normally however the watch ended.
    if !matches!(end, WatchEnd::ClientGone) {
        let close = Frame::close(CloseCode::from(1000), "");
        let _ = tokio::time::timeout(Duration::from_secs(1), client.send(close)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), agent.close()).await;
    tracing::debug!(%agent_id, ?end, "container watch ended");
}

/// coder/websocket's origin check: a browser's `Origin` must name the host
/// the request was sent to, or `also` (the access URL's host). Other
/// clients send none.
pub(super) fn check_origin(headers: &HeaderMap, also: Option<&str>) -> Result<(), ApiError> {
    let Some(origin) = headers.get(warp::http::header::ORIGIN) else {
        return Ok(());
    };
    let origin = String::from_utf8_lossy(origin.as_bytes());
    let host = origin
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""))
        .unwrap_or("");
    let request_host = headers
        .get(warp::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !host.is_empty()
        && (host.eq_ignore_ascii_case(request_host)
            || also.is_some_and(|a| host.eq_ignore_ascii_case(a)))
    {
        return Ok(());
    }
    if host.is_empty() {
        return Err(ApiError::websocket_origin(format!(
            "request Origin {origin:?} is not a valid URL with a host"
        )));
    }
    Err(ApiError::websocket_origin(format!(
        "request Origin {host:?} is not authorized for Host {request_host:?}"
    )))
}

// ----- DELETE and POST .../devcontainers/{devcontainer} -----

#[derive(Debug, Clone, Copy)]
enum Action {
    Delete,
    Recreate,
}

async fn devcontainer_action(
    app: App,
    token: Option<String>,
    raw_id: String,
    devcontainer: String,
    action: Action,
) -> Result<Response, ApiError> {
    // Coder asks for `update` on the workspace here (403 otherwise). In
    // appliance everyone who may read an agent (its owner, admins) may also
    // update it, so reading is the whole check. The id is never empty: the
    // route needs a segment there.
    let agent = readable(&app, token.as_deref(), &raw_id)?;
    let stream = reach(&app, &agent, AGENT_HTTP_PORT, Instant::now() + BUDGET).await?;
    devcontainer_from(&app, stream, &devcontainer, action).await
}

/// Asks the agent on `stream` to delete or recreate a devcontainer.
async fn devcontainer_from<S: AgentStream>(
    app: &App,
    stream: S,
    devcontainer: &str,
    action: Action,
) -> Result<Response, ApiError> {
    let (method, path, expected, failed) = match action {
        Action::Delete => (
            Method::DELETE,
            format!("/api/v0/containers/devcontainers/{devcontainer}"),
            204,
            "Internal error deleting devcontainer.",
        ),
        Action::Recreate => (
            Method::POST,
            format!("/api/v0/containers/devcontainers/{devcontainer}/recreate"),
            202,
            "Internal error recreating devcontainer.",
        ),
    };
    // The agent's own work (stopping, removing, starting a rebuild) has no
    // deadline, as in coderd; the server's shutdown still ends the wait.
    let reply = ask(app, stream, method, &path, failed, None).await?;
    if reply.status != expected {
        return Err(refused(&reply, failed));
    }
    match action {
        Action::Delete => {
            let mut resp = Response::new(Vec::<u8>::new().into());
            *resp.status_mut() = StatusCode::NO_CONTENT;
            Ok(resp)
        }
        Action::Recreate => {
            let body = agent_conn::decode_response(&reply.body)
                .map_err(|why| ApiError::agent_failed(failed, format!("decode response {why}")))?;
            Ok(json_response(StatusCode::ACCEPTED, &body))
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::agent_conn::fake;
    use super::*;

    const WORKSPACE: &str = r#"
name = "dev"
owner = "alice"
[[resources]]
name = "vm"
type = "t"
  [[resources.agents]]
  name = "main"
    [[resources.agents.apps]]
    slug = "code"
    url = "http://localhost:13337/?folder=/src"
    [[resources.agents.apps]]
    slug = "docs"
    url = "https://docs.example.com"
"#;

    /// An app over a fresh database holding [`WORKSPACE`], and its agent's id.
    fn app() -> (App, Uuid, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            store::Store::open(&dir.path().join("t.db"), &store::Options::default()).expect("open");
        store.migrate().expect("migrate");
        let now = store::now();
        let alice = store
            .write(|tx| store::users::insert_user(tx, "alice", "", store::users::Role::Member, now))
            .expect("user");
        let ws = crate::manifest::parse("t.toml", WORKSPACE).expect("manifest");
        let applied = store
            .write(|tx| store::workspaces::apply(tx, &ws, alice.id, alice.id, now))
            .expect("apply");
        let app = App::start(
            store,
            crate::config::Config::default(),
            crate::identity::Trust::default(),
            std::iter::empty(),
        )
        .expect("app");
        (app, applied.agents[0].id, dir)
    }

    async fn body_of(resp: Response) -> (u16, String) {
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8(body.to_vec()).expect("text"))
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn listening_ports_are_the_agents_less_the_filtered() {
        let (app, agent, _dir) = app();
        let (io, head) = fake::agent(fake::json(
            "200 OK",
            r#"{"ports":[{"process_name":"sshd","network":"tcp","port":22},{"process_name":"node","network":"tcp","port":3000},{"process_name":"code-server","network":"tcp","port":13337},{"process_name":"","network":"tcp","port":8}]}"#,
        ));
        let resp = ports_from(&app, agent, io, soon()).await.expect("ports");
        assert_eq!(
            body_of(resp).await,
            (
                200,
                "{\"ports\":[{\"process_name\":\"node\",\"network\":\"tcp\",\"port\":3000}]}\n"
                    .to_owned()
            )
        );
        assert!(
            head.await
                .expect("agent")
                .starts_with("GET /api/v0/listening-ports ")
        );

        let (io, _) = fake::agent(fake::json("200 OK", r#"{"ports":null}"#));
        let resp = ports_from(&app, agent, io, soon()).await.expect("ports");
        assert_eq!(body_of(resp).await.1, "{\"ports\":[]}\n");

        // The agent's refusal is coderd's 500, the refusal in the detail.
        let (io, _) = fake::agent(fake::json(
            "500 Internal Server Error",
            r#"{"message":"Could not scan for listening ports."}"#,
        ));
        let e = ports_from(&app, agent, io, soon())
            .await
            .expect_err("refused");
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.body.message, "Internal error fetching listening ports.");
        assert!(
            e.body
                .detail
                .as_deref()
                .is_some_and(|d| d
                    .ends_with("unexpected status code 500: Could not scan for listening ports.")),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn an_agent_that_never_answers_runs_out_of_time() {
        let (app, agent, _dir) = app();
        let (io, _silent) = tokio::io::duplex(1024);
        let deadline = Instant::now() + Duration::from_millis(200);
        let e = containers_from(&app, io, &BTreeMap::new(), deadline)
            .await
            .expect_err("no answer");
        assert_eq!(e.status, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(e.body.message, "Failed to fetch containers from agent.");
        assert_eq!(e.body.detail.as_deref(), Some("Request timed out."));
        let (io, _silent) = tokio::io::duplex(1024);
        let deadline = Instant::now() + Duration::from_millis(200);
        let e = ports_from(&app, agent, io, deadline)
            .await
            .expect_err("no answer");
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        // The server's shutdown ends a wait without a deadline.
        let (io, _silent) = tokio::io::duplex(1024);
        app.shutdown.cancel();
        let e = devcontainer_from(&app, io, "d1", Action::Delete)
            .await
            .expect_err("shutting down");
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn containers_come_filtered_and_refusals_pass_through() {
        let (app, _agent, _dir) = app();
        let (io, _) = fake::agent(fake::json(
            "200 OK",
            r#"{"containers":[{"id":"a","labels":{"k":"v"}},{"id":"b","labels":{}}],"devcontainers":[],"warnings":null}"#,
        ));
        let labels = BTreeMap::from([("k".to_owned(), "v".to_owned())]);
        let resp = containers_from(&app, io, &labels, soon())
            .await
            .expect("containers");
        let (status, body) = body_of(resp).await;
        assert_eq!(status, 200);
        let body: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(
            body,
            serde_json::json!({"devcontainers": [], "containers": [{"id": "a", "labels": {"k": "v"}}]})
        );

        let (io, _) = fake::agent(fake::json(
            "403 Forbidden",
            r#"{"message":"Dev Container feature not enabled.","detail":"To enable this feature, set CODER_AGENT_DEVCONTAINERS_ENABLE=true in your template."}"#,
        ));
        let e = containers_from(&app, io, &labels, soon())
            .await
            .expect_err("refused");
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert_eq!(e.body.message, "Dev Container feature not enabled.");
        assert_eq!(
            e.body.detail.as_deref(),
            Some(
                "To enable this feature, set CODER_AGENT_DEVCONTAINERS_ENABLE=true in your template."
            )
        );

        let (io, _) = fake::agent(fake::json("200 OK", "[1,2]"));
        let e = containers_from(&app, io, &labels, soon())
            .await
            .expect_err("not an object");
        assert_eq!(e.body.message, "Internal error fetching containers.");
    }

    #[tokio::test]
    async fn devcontainers_are_deleted_and_recreated_by_the_agent() {
        let (app, _agent, _dir) = app();
        let (io, head) = fake::agent(&b"HTTP/1.1 204 No Content\r\n\r\n"[..]);
        let resp = devcontainer_from(&app, io, "d%201", Action::Delete)
            .await
            .expect("deleted");
        assert_eq!(body_of(resp).await, (204, String::new()));
        assert!(
            head.await
                .expect("agent")
                .starts_with("DELETE /api/v0/containers/devcontainers/d%201 HTTP/1.1\r\n")
        );

        let (io, head) = fake::agent(fake::json(
            "202 Accepted",
            r#"{"message":"Devcontainer recreation initiated","detail":"Recreation process for devcontainer \"web\" has started."}"#,
        ));
        let resp = devcontainer_from(&app, io, "d1", Action::Recreate)
            .await
            .expect("recreating");
        let (status, body) = body_of(resp).await;
        assert_eq!(status, 202);
        assert_eq!(
            body,
            "{\"message\":\"Devcontainer recreation initiated\",\"detail\":\"Recreation process for devcontainer \\\"web\\\" has started.\"}\n"
        );
        assert!(
            head.await
                .expect("agent")
                .starts_with("POST /api/v0/containers/devcontainers/d1/recreate HTTP/1.1\r\n")
        );

        let (io, _) = fake::agent(fake::json(
            "409 Conflict",
            r#"{"message":"Unable to delete transitioning devcontainer","detail":"Devcontainer \"web\" is currently starting and cannot be deleted."}"#,
        ));
        let e = devcontainer_from(&app, io, "d1", Action::Delete)
            .await
            .expect_err("conflict");
        assert_eq!(e.status, StatusCode::CONFLICT);
        assert_eq!(
            e.body.message,
            "Unable to delete transitioning devcontainer"
        );

        let (io, _) = fake::agent(&b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nnot found"[..]);
        let e = devcontainer_from(&app, io, "d1", Action::Recreate)
            .await
            .expect_err("not found");
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert_eq!(
            e.body.message,
            "unexpected non-JSON response \"text/plain\""
        );

        let (io, _) = fake::agent(fake::json("202 Accepted", "nope"));
        let e = devcontainer_from(&app, io, "d1", Action::Recreate)
            .await
            .expect_err("no body");
        assert_eq!(e.body.message, "Internal error recreating devcontainer.");
    }

    #[test]
    fn app_ports_come_from_urls_with_an_authority() {
        for (url, want) in [
            ("http://localhost:8080", Some(8080)),
            ("http://localhost:8080/path?q=1#frag", Some(8080)),
            ("https://user:pw@127.0.0.1:3000/", Some(3000)),
            ("http://[::1]:9000/x", Some(9000)),
            ("http://[::1]/x", None),
            ("http://localhost", None),
            ("http://localhost:", None),
            ("http://localhost:0", None),
            ("http://localhost:65536", None),
            ("http://localhost:80x", None),
            ("localhost:8080", None),
            ("//example.com:81/", Some(81)),
            ("", None),
            ("/just/a/path:99", None),
        ] {
            assert_eq!(url_port(url), want, "{url}");
        }
    }

    #[test]
    fn ports_are_filtered_as_coderd_filters_them() {
        let apps: HashSet<u16> = [13337, 8080].into_iter().collect();
        let shown: Vec<u16> = [1, 8, 9, 22, 80, 3000, 5432, 8080, 13337, 28017, 63000]
            .into_iter()
            .filter(|p| shown_port(*p, &apps))
            .collect();
        assert_eq!(shown, vec![9, 80, 3000, 63000]);
    }

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn labels_are_key_equals_value() {
        let got = labels(&q(&[
            ("label", "a=1"),
            ("label", "b="),
            ("other", "x"),
            ("label", "a=2"),
        ]))
        .expect("valid");
        assert_eq!(
            got,
            BTreeMap::from([
                ("a".to_owned(), "2".to_owned()),
                ("b".to_owned(), String::new())
            ])
        );
        for bad in ["a", "a=b=c", "="] {
            let got = labels(&q(&[("label", bad)]));
            if bad == "=" {
                assert!(got.is_ok(), "an empty key and value is two parts");
                continue;
            }
            let e = got.expect_err(bad);
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert_eq!(e.body.message, "Invalid label format");
            assert_eq!(
                e.body.detail.as_deref(),
                Some("Labels must be in the format key=value")
            );
        }
    }

    #[test]
    fn containers_are_filtered_by_label_and_the_rest_kept() {
        let body = serde_json::json!({
            "devcontainers": [{"id": "d1"}],
            "containers": [
                {"id": "a", "labels": {"app": "web", "env": "prod"}},
                {"id": "b", "labels": {"app": "db"}},
                {"id": "c", "labels": null},
                {"id": "d", "labels": {"app": "web"}},
            ],
            "warnings": [],
            "extra": 1,
        });
        let want = |labels: &[(&str, &str)]| -> Vec<String> {
            let labels = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let got = filter_containers(body.clone(), &labels).expect("an object");
            assert_eq!(got["devcontainers"][0]["id"], "d1");
            assert!(got.get("warnings").is_none(), "empty warnings are left out");
            assert!(got.get("extra").is_none());
            got["containers"]
                .as_array()
                .expect("a list")
                .iter()
                .map(|c| c["id"].as_str().expect("id").to_owned())
                .collect()
        };
        assert_eq!(want(&[]), ["a", "b", "c", "d"]);
        assert_eq!(want(&[("app", "web")]), ["a", "d"]);
        assert_eq!(want(&[("app", "web"), ("env", "")]), ["a"]);
        assert_eq!(want(&[("env", "dev")]), Vec::<String>::new());
        let got = filter_containers(
            serde_json::json!({"warnings": ["docker: not found"]}),
            &BTreeMap::new(),
        )
        .expect("an object");
        assert_eq!(
            got,
            serde_json::json!({"devcontainers": null, "containers": null, "warnings": ["docker: not found"]})
        );
        assert!(filter_containers(serde_json::json!([1]), &BTreeMap::new()).is_err());
    }

    #[test]
    fn origins_must_name_the_host() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().expect("value"));
            }
            h
        };
        assert!(check_origin(&headers(&[("host", "a:1")]), None).is_ok());
        assert!(check_origin(&headers(&[("host", "A:1"), ("origin", "http://a:1")]), None).is_ok());
        assert!(
            check_origin(
                &headers(&[("host", "a:1"), ("origin", "https://dash:443")]),
                Some("dash:443")
            )
            .is_ok()
        );
        let e = check_origin(
            &headers(&[("host", "a:1"), ("origin", "http://evil")]),
            None,
        )
        .expect_err("another site");
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert_eq!(
            e.body.message,
            "request Origin \"evil\" is not authorized for Host \"a:1\""
        );
        let e = check_origin(&headers(&[("host", "a:1"), ("origin", "null")]), None)
            .expect_err("no host");
        assert_eq!(
            e.body.message,
            "request Origin \"null\" is not a valid URL with a host"
        );
    }
}
