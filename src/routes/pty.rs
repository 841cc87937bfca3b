//! The web terminal (BEHAVIOUR.md §1.19, CONNECTIVITY.md §2.2):
//!
//! - `GET /api/v2/workspaceagents/{id}/pty?reconnect=UUID&...`: a WebSocket
//!   (binary, no compression) bridged to the agent's reconnecting-PTY port
//!   (2): the init frame first (2-byte little-endian length, then
//!   `sdk::AgentReconnectingPtyInit`), then bytes both ways: every client
//!   message's payload goes to the agent as is, the agent's output comes
//!   back as binary messages of at most 32 KiB.
//! - `POST /api/v2/applications/reconnecting-pty-signed-token`: a token
//!   (`coder_signed_app_token_23db1dde` on `/pty`) that stands in for the
//!   session token for one minute, for one user and one agent.
//!
//! As coderd's workspace-apps proxy serves it, `/pty` answers its refusals
//! as HTML pages (`ApiError::app_*`), except a request with no usable
//! credential (404 JSON `Resource not found ...`: no login redirect for a
//! terminal) and invalid query parameters (400 JSON). A valid signed token
//! that names this agent skips the checks. Otherwise the key's user must
//! be allowed to reach the agent (its owner, admins; else 404 "Application
//! Not Found") and the agent must be connected (else 404 "Application
//! Unavailable"). The dial happens after the upgrade: a failure closes the
//! socket with 1011 and `dial workspace agent: ...`.
//!
//! Signed tokens: `base64url(agent id ‖ user id ‖ expiry as Unix seconds,
//! big-endian)` `.` `base64url(HMAC-SHA256)` under `App::pty_token_key`.
//! coderd signs a JWT, but the token is opaque to its clients.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Buf;
use futures_util::{SinkExt, Stream};
use hmac::{KeyInit, Mac};
use serde::Deserialize;
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use uuid::Uuid;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, StatusCode, Uri};
use warp::reply::Response;
use yawc::close::CloseCode;
use yawc::frame::Frame;

use super::error::json_response;
use super::filters::{
    null_as_default, query_pairs, read_json, refuse_unread, session_token, with_app,
};
use super::reach::{BUDGET, check_origin, dial, status_of};
use super::rpc::{WsIo, upgrade_binary};
use super::session::{read_inline, user_for_key};
use crate::agent_status::Status;
use crate::app::App;
use crate::auth;
use crate::peer::{AGENT_PTY_PORT, PeerStream};
use crate::routes::error::{ApiError, respond};
use crate::sdk;
use crate::store::{self, users::UserRow};

/// `codersdk.SignedAppTokenQueryParameter`.
const SIGNED_TOKEN_PARAM: &str = "coder_signed_app_token_23db1dde";

/// How long a signed token is good for (coderd: `DefaultTokenExpiry`).
const TOKEN_LIFETIME: time::Duration = time::Duration::minutes(1);

/// The longest close reason coder/websocket sends.
const MAX_CLOSE_REASON: usize = 123;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

pub fn routes(app: &App) -> BoxedFilter<(Response,)> {
    let pty = warp::path!("api" / "v2" / "workspaceagents" / String / "pty")
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
             app: App| async move { respond(pty(app, token, id, query, headers, upgrade)) },
        );
    let issue = warp::path!("api" / "v2" / "applications" / "reconnecting-pty-signed-token")
        .and(warp::post())
        .and(session_token())
        .and(warp::body::stream())
        .and(with_app(app))
        .then(|token: Option<String>, body, app: App| async move {
            respond(issue_token(app, token, body).await)
        });
    pty.or(issue).unify().boxed()
}

// ----- signed tokens -----

fn mac(key: &[u8; 32], payload: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; 32 bytes never fails.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(payload);
    mac
}

/// A token for `user` to open `agent`'s terminal until `now` + 1 minute.
fn sign(key: &[u8; 32], agent: Uuid, user: Uuid, now: OffsetDateTime) -> String {
    let mut payload = Vec::with_capacity(40);
    payload.extend_from_slice(agent.as_bytes());
    payload.extend_from_slice(user.as_bytes());
    payload.extend_from_slice(&(now + TOKEN_LIFETIME).unix_timestamp().to_be_bytes());
    let tag = mac(key, &payload).finalize().into_bytes();
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&payload),
        URL_SAFE_NO_PAD.encode(tag)
    )
}

/// The agent and user a token was signed for, if it is ours and unexpired.
fn verify(key: &[u8; 32], token: &str, now: OffsetDateTime) -> Result<(Uuid, Uuid), &'static str> {
    const MALFORMED: &str = "malformed token";
    let (payload, tag) = token.split_once('.').ok_or(MALFORMED)?;
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| MALFORMED)?;
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| MALFORMED)?;
    if payload.len() != 40 {
        return Err(MALFORMED);
    }
    mac(key, &payload)
        .verify_slice(&tag)
        .map_err(|_| "invalid signature")?;
    let (ids, expiry) = payload.split_at(32);
    let expiry = i64::from_be_bytes(expiry.try_into().map_err(|_| MALFORMED)?);
    if now.unix_timestamp() >= expiry {
        return Err("token is expired");
    }
    let id = |b: &[u8]| Uuid::from_slice(b).map_err(|_| MALFORMED);
    Ok((id(&ids[..16])?, id(&ids[16..])?))
}

// ----- who may open a terminal -----

/// The checks coderd makes before it signs a terminal token (`Issue` for
/// the terminal access method), for a user already known: the agent exists
/// and the user may reach it (`ssh` on the workspace: its owner, admins),
/// else "Application Not Found"; it is connected, else "Application
/// Unavailable".
fn terminal_agent(app: &App, user: &UserRow, agent_id: Uuid) -> Result<(), ApiError> {
    let agent = read_inline(&app.store, |c| Ok(store::agents::live_agent(c, agent_id)?))?;
    let agent = match agent {
        Some(a) if auth::may_read(user.role, user.id, a.owner_id) => a,
        _ => return Err(ApiError::app_not_found()),
    };
    let status = status_of(app, &agent);
    if status != Status::Connected {
        return Err(ApiError::app_unavailable(format!(
            "Agent state is \"{}\", not \"connected\"",
            status.as_str()
        )));
    }
    Ok(())
}

/// Who may open `raw_id`'s terminal: a signed token for this agent, or a
/// session token whose user passes [`terminal_agent`]. An invalid key counts
/// as none, as coderd's optional key middleware has it.
fn terminal_access(
    app: &App,
    token: Option<&str>,
    raw_id: &str,
    query: &[(String, String)],
) -> Result<Uuid, ApiError> {
    let agent_id = Uuid::parse_str(raw_id).map_err(|e| {
        ApiError::app_internal(&format!(
            "invalid agent name or ID {raw_id:?}, must be a UUID: {e}"
        ))
    })?;
    let now = store::now();
    if let Some(signed) = first(query, SIGNED_TOKEN_PARAM)
        && let Ok((signed_for, user)) = verify(&app.pty_token_key, signed, now)
        && signed_for == agent_id
    {
        tracing::debug!(%agent_id, %user, "web terminal opened with a signed token");
        return Ok(agent_id);
    }
    let user = read_inline(&app.store, |c| user_for_key(c, token, now)).map_err(|e| {
        if e.status == StatusCode::UNAUTHORIZED {
            ApiError::not_found("Resource not found or you do not have access to this resource")
        } else {
            e
        }
    })?;
    terminal_agent(app, &user, agent_id)?;
    Ok(agent_id)
}

// ----- GET /pty -----

/// The first value of a query parameter (Go's `Query().Get`).
fn first<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// Go's `QueryParamParser` for one single-valued parameter: missing or
/// empty (its first value) is the default; more than one value, or one
/// `parse` refuses, is a validation error.
fn single<T>(
    query: &[(String, String)],
    name: &str,
    errors: &mut Vec<sdk::ValidationError>,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    let values: Vec<&str> = query
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect();
    match values[..] {
        [] | ["", ..] => None,
        [one] => match parse(one) {
            Ok(v) => Some(v),
            Err(detail) => {
                errors.push(sdk::ValidationError {
                    field: name.to_owned(),
                    detail,
                });
                None
            }
        },
        _ => {
            errors.push(sdk::ValidationError {
                field: name.to_owned(),
                detail: format!(
                    "Query param {name:?} provided more than once, found {} times. Only provide 1 instance of this query param.",
                    values.len()
                ),
            });
            None
        }
    }
}

/// Go's `strconv.ParseUint(v, 10, 64)`, with its error text.
fn parse_uint(v: &str) -> Result<u64, String> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.ParseUint: parsing {v:?}: invalid syntax"));
    }
    v.parse()
        .map_err(|_| format!("strconv.ParseUint: parsing {v:?}: value out of range"))
}

/// The query as coderd reads it, all problems at once (400 `Invalid query
/// parameters.`).
fn init_from_query(query: &[(String, String)]) -> Result<sdk::AgentReconnectingPtyInit, ApiError> {
    let mut errors = Vec::new();
    let reconnect = if first(query, "reconnect").is_none() {
        errors.push(sdk::ValidationError {
            field: "reconnect".to_owned(),
            detail: "Query param \"reconnect\" is required and cannot be empty".to_owned(),
        });
        None
    } else {
        single(query, "reconnect", &mut errors, |v| {
            Uuid::parse_str(v)
                .map_err(|_| "Query param \"reconnect\" must be a valid uuid".to_owned())
        })
    };
    let size = |name: &str, errors: &mut Vec<sdk::ValidationError>| {
        single(query, name, errors, |v| {
            parse_uint(v)
                .map_err(|e| format!("Query param {name:?} must be a valid positive integer: {e}"))
        })
        // Go converts with `uint16(...)`: the value wraps.
        .map_or(80, |n| n as u16)
    };
    let height = size("height", &mut errors);
    let width = size("width", &mut errors);
    let text = |name: &str, errors: &mut Vec<sdk::ValidationError>| {
        single(query, name, errors, |v| Ok(v.to_owned())).unwrap_or_default()
    };
    let container = text("container", &mut errors);
    let container_user = text("container_user", &mut errors);
    let backend_type = text("backend_type", &mut errors);
    if !errors.is_empty() {
        let mut err = ApiError::bad_request("Invalid query parameters.");
        err.body.validations = errors;
        return Err(err);
    }
    Ok(sdk::AgentReconnectingPtyInit {
        id: reconnect.unwrap_or_default(),
        height,
        width,
        command: first(query, "command").unwrap_or("").to_owned(),
        container,
        container_user,
        backend_type,
    })
}

/// The init frame: the JSON's length (2 bytes, little-endian), then the JSON.
fn init_frame(init: &sdk::AgentReconnectingPtyInit) -> Result<Vec<u8>, ApiError> {
    let json = serde_json::to_vec(init)
        .map_err(|e| ApiError::internal("Internal error encoding the terminal request.", &e))?;
    let Ok(len) = u16::try_from(json.len()) else {
        return Err(
            ApiError::bad_request("Invalid query parameters.").validation(
                "command",
                "The terminal request is longer than 65535 bytes.",
            ),
        );
    };
    let mut frame = Vec::with_capacity(json.len() + 2);
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&json);
    Ok(frame)
}

/// The access URL's host (with its port, if it names one).
fn access_host(app: &App) -> Option<String> {
    let uri: Uri = app.config.access_url.parse().ok()?;
    uri.authority()
        .map(|a| a.as_str().rsplit('@').next().unwrap_or("").to_owned())
}

fn pty(
    app: App,
    token: Option<String>,
    raw_id: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Result<Response, ApiError> {
    if app.shutdown.is_cancelled() {
        return Err(ApiError::shutting_down());
    }
    let agent_id = terminal_access(&app, token.as_deref(), &raw_id, &query)?;
    let frame = init_frame(&init_from_query(&query)?)?;
    check_origin(&headers, access_host(&app).as_deref())?;
    upgrade_binary(headers, upgrade, "/pty", move |socket| {
        relay(app, agent_id, frame, socket)
    })
}

/// A close reason as coderd cuts it (`WebsocketCloseSprintf`): at most 123
/// bytes, never half a character.
fn close_reason(reason: &str) -> &str {
    if reason.len() <= MAX_CLOSE_REASON {
        return reason;
    }
    let mut end = MAX_CLOSE_REASON;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// The terminal's life on the upgraded socket: dial, init, then bytes both
/// ways until either side ends or the server shuts down.
async fn relay(
    app: App,
    agent_id: Uuid,
    init: Vec<u8>,
    mut socket: yawc::WebSocket<yawc::HttpStream>,
) {
    let _open = app
        .metrics
        .stream_opened(crate::app::metrics::Stream::WebSocket);
    let started = async {
        let mut stream: PeerStream = dial(&app, agent_id, AGENT_PTY_PORT, Instant::now() + BUDGET)
            .await
            .map_err(|e| format!("dial workspace agent: {e}"))?;
        stream
            .write_all(&init)
            .await
            .map_err(|e| format!("dial: write init: {e}"))?;
        Ok::<_, String>(stream)
    };
    let stream = match started.await {
        Ok(stream) => stream,
        Err(why) => {
            tracing::debug!(%agent_id, error = %why, "web terminal: no connection to the agent");
            let close = Frame::close(CloseCode::from(1011), close_reason(&why));
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(1), socket.send(close)).await;
            return;
        }
    };
    let (mut from_client, mut to_client) = tokio::io::split(WsIo::new(socket, Default::default()));
    let (mut from_agent, mut to_agent) = tokio::io::split(stream);
    // As coderd's `Bicopy`: when either direction ends, both do.
    let why = tokio::select! {
        r = tokio::io::copy(&mut from_client, &mut to_agent) => format!("client: {r:?}"),
        r = tokio::io::copy(&mut from_agent, &mut to_client) => format!("agent: {r:?}"),
        () = app.shutdown.cancelled() => "server shutting down".to_owned(),
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), to_client.shutdown()).await;
    tracing::debug!(%agent_id, ended = %why, "web terminal closed");
}

// ----- POST /applications/reconnecting-pty-signed-token -----

/// `codersdk.IssueReconnectingPTYSignedTokenRequest`.
#[derive(Debug, Default, Deserialize)]
struct IssueRequest {
    #[serde(default, deserialize_with = "null_as_default")]
    url: String,
    #[serde(default, rename = "agentID", deserialize_with = "null_as_default")]
    agent_id: Uuid,
}

/// Go's `validate:"required"` on both fields, in their order.
fn validate(req: &IssueRequest) -> Result<(), ApiError> {
    let mut missing = Vec::new();
    if req.url.is_empty() {
        missing.push(("url", String::new()));
    }
    if req.agent_id.is_nil() {
        missing.push(("agentID", Uuid::nil().to_string()));
    }
    if missing.is_empty() {
        return Ok(());
    }
    let mut err = ApiError::bad_request("Validation failed.");
    for (field, value) in missing {
        err = err.validation(
            field,
            format!("Validation failed for tag \"required\" with value: \"{value}\""),
        );
    }
    Err(err)
}

/// The URL's `host[:port]` as coderd checks it, and its path: refused with
/// coderd's 400s unless it is `ws`/`wss` and this agent's `/pty`.
fn pty_url(raw: &str, agent_id: Uuid) -> Result<(String, Option<u16>), ApiError> {
    let invalid = |detail: String| ApiError::bad_request("Invalid URL.").detail(detail);
    let uri: Uri = raw
        .parse()
        .map_err(|e| invalid(format!("parse {raw:?}: {e}")))?;
    let scheme = uri.scheme_str().unwrap_or("").to_ascii_lowercase();
    if scheme != "ws" && scheme != "wss" {
        return Err(invalid(format!(
            "invalid URL scheme {scheme:?}, expected 'ws' or 'wss'"
        )));
    }
    if uri.path() != format!("/api/v2/workspaceagents/{agent_id}/pty") {
        return Err(ApiError::bad_request("Invalid URL path.")
            .detail("The provided URL is not a valid reconnecting PTY endpoint URL."));
    }
    let host = uri.host().unwrap_or("").to_ascii_lowercase();
    let port = uri
        .port_u16()
        .or(Some(if scheme == "wss" { 443 } else { 80 }));
    Ok((host, port))
}

/// Whether `host:port` is where this server is reached (its access URL).
fn is_access_host(app: &App, host: &str, port: Option<u16>) -> bool {
    let Ok(access) = app.config.access_url.parse::<Uri>() else {
        return false;
    };
    let default = if access.scheme_str() == Some("https") {
        443
    } else {
        80
    };
    access.host().is_some_and(|h| h.eq_ignore_ascii_case(host))
        && access.port_u16().or(Some(default)) == port
}

async fn issue_token(
    app: App,
    token: Option<String>,
    body: impl Stream<Item = Result<impl Buf, warp::Error>>,
) -> Result<Response, ApiError> {
    let now = store::now();
    let user = read_inline(&app.store, |c| user_for_key(c, token.as_deref(), now))
        .map_err(refuse_unread)?;
    let req: IssueRequest = read_json(body).await?;
    validate(&req)?;
    let (host, port) = pty_url(&req.url, req.agent_id)?;
    // coderd signs these only for a workspace proxy's own host (its primary
    // URL needs none); appliance is its own and only proxy.
    if !is_access_host(&app, &host, port) {
        return Err(ApiError::bad_request("Invalid hostname in URL.").detail(
            "The hostname must be the primary wildcard app hostname, a workspace proxy access URL or a workspace proxy wildcard app hostname.",
        ));
    }
    terminal_agent(&app, &user, req.agent_id)?;
    let body = sdk::IssueReconnectingPtySignedTokenResponse {
        signed_token: sign(&app.pty_token_key, req.agent_id, user.id, now),
    };
    Ok(json_response(StatusCode::OK, &body))
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const T0: OffsetDateTime = datetime!(2026-12-04 12:00 UTC);

    #[test]
    fn a_token_names_its_agent_and_user_for_a_minute() {
        let key = [7u8; 32];
        let (agent, user) = (Uuid::new_v4(), Uuid::new_v4());
        let token = sign(&key, agent, user, T0);
        assert_eq!(verify(&key, &token, T0), Ok((agent, user)));
        assert_eq!(
            verify(&key, &token, T0 + time::Duration::seconds(59)),
            Ok((agent, user))
        );
        assert_eq!(
            verify(&key, &token, T0 + TOKEN_LIFETIME),
            Err("token is expired")
        );
        assert_eq!(verify(&[8u8; 32], &token, T0), Err("invalid signature"));
    }

    #[test]
    fn tampered_and_garbage_tokens_are_refused() {
        let key = [7u8; 32];
        let token = sign(&key, Uuid::new_v4(), Uuid::new_v4(), T0);
        let (payload, tag) = token.split_once('.').expect("two parts");
        let mut bytes = URL_SAFE_NO_PAD.decode(payload).expect("base64");
        bytes[0] ^= 1;
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(&bytes));
        assert_eq!(verify(&key, &forged, T0), Err("invalid signature"));
        for junk in ["", ".", "abc", "a.b", "eyJhbGciOiJIUzI1NiJ9.e30.sig"] {
            assert!(verify(&key, junk, T0).is_err(), "{junk:?}");
        }
    }

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn details(err: ApiError) -> Vec<(String, String)> {
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(err.body.message, "Invalid query parameters.");
        err.body
            .validations
            .into_iter()
            .map(|v| (v.field, v.detail))
            .collect()
    }

    #[test]
    fn the_query_is_read_as_coderd_reads_it() {
        let id = Uuid::new_v4();
        let init = init_from_query(&q(&[
            ("reconnect", &id.to_string()),
            ("width", "120"),
            ("command", "bash -l"),
            ("command", "ignored"),
            ("container", "c1"),
            ("container_user", "root"),
            ("backend_type", "buffered"),
        ]))
        .expect("valid");
        assert_eq!(
            init,
            sdk::AgentReconnectingPtyInit {
                id,
                height: 80,
                width: 120,
                command: "bash -l".into(),
                container: "c1".into(),
                container_user: "root".into(),
                backend_type: "buffered".into(),
            }
        );
        // uint16 in Go wraps.
        let init = init_from_query(&q(&[("reconnect", &id.to_string()), ("height", "65537")]))
            .expect("valid");
        assert_eq!(init.height, 1);

        let got = details(init_from_query(&[]).expect_err("no reconnect"));
        assert_eq!(
            got,
            [(
                "reconnect".to_owned(),
                "Query param \"reconnect\" is required and cannot be empty".to_owned()
            )]
        );
        let got = details(init_from_query(&q(&[("reconnect", "")])).expect_err("empty"));
        assert_eq!(got[0].0, "reconnect");
        let got = details(
            init_from_query(&q(&[
                ("reconnect", "nope"),
                ("height", "-1"),
                ("width", "x"),
            ]))
            .expect_err("three problems"),
        );
        assert_eq!(
            got,
            [
                (
                    "reconnect".to_owned(),
                    "Query param \"reconnect\" must be a valid uuid".to_owned()
                ),
                (
                    "height".to_owned(),
                    "Query param \"height\" must be a valid positive integer: strconv.ParseUint: parsing \"-1\": invalid syntax".to_owned()
                ),
                (
                    "width".to_owned(),
                    "Query param \"width\" must be a valid positive integer: strconv.ParseUint: parsing \"x\": invalid syntax".to_owned()
                ),
            ]
        );
        let got = details(
            init_from_query(&q(&[
                ("reconnect", &id.to_string()),
                ("container", "a"),
                ("container", "b"),
            ]))
            .expect_err("twice"),
        );
        assert_eq!(
            got,
            [(
                "container".to_owned(),
                "Query param \"container\" provided more than once, found 2 times. Only provide 1 instance of this query param.".to_owned()
            )]
        );
    }

    #[test]
    fn the_init_frame_is_a_little_endian_length_and_go_field_names() {
        let id = Uuid::parse_str("3b579bf4-1ed8-4b99-87a8-e9a1e3410410").expect("uuid");
        let frame = init_frame(&sdk::AgentReconnectingPtyInit {
            id,
            height: 24,
            width: 80,
            command: "bash".into(),
            container: String::new(),
            container_user: String::new(),
            backend_type: String::new(),
        })
        .expect("fits");
        let json = br#"{"ID":"3b579bf4-1ed8-4b99-87a8-e9a1e3410410","Height":24,"Width":80,"Command":"bash","Container":"","ContainerUser":"","BackendType":""}"#;
        assert_eq!(&frame[..2], &(json.len() as u16).to_le_bytes());
        assert_eq!(&frame[2..], &json[..]);
    }

    #[test]
    fn close_reasons_stop_at_123_bytes_on_a_character() {
        assert_eq!(close_reason("short"), "short");
        let long = format!("{}é", "x".repeat(122));
        assert_eq!(close_reason(&long), "x".repeat(122));
        assert_eq!(close_reason(&"y".repeat(200)).len(), 123);
    }

    #[test]
    fn token_urls_must_be_this_agents_pty() {
        let agent = Uuid::new_v4();
        let ok = format!("wss://Example.com/api/v2/workspaceagents/{agent}/pty?reconnect=x");
        assert_eq!(
            pty_url(&ok, agent).expect("valid"),
            ("example.com".to_owned(), Some(443))
        );
        let e = pty_url(
            &format!("https://example.com/api/v2/workspaceagents/{agent}/pty"),
            agent,
        )
        .expect_err("http");
        assert_eq!(e.body.message, "Invalid URL.");
        assert_eq!(
            e.body.detail.as_deref(),
            Some("invalid URL scheme \"https\", expected 'ws' or 'wss'")
        );
        let e = pty_url(
            &format!(
                "ws://example.com/api/v2/workspaceagents/{}/pty",
                Uuid::new_v4()
            ),
            agent,
        )
        .expect_err("another agent");
        assert_eq!(e.body.message, "Invalid URL path.");
        let e = pty_url("not a url", agent).expect_err("garbage");
        assert_eq!(e.body.message, "Invalid URL.");
    }
}
