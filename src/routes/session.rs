//! Who is calling: user API keys (`/api/v2/...` routes other than `/me`).

use time::OffsetDateTime;

use crate::auth;
use crate::routes::error::ApiError;
use crate::store::{self, users::UserRow};

/// Coder's answer when no usable user credential came with the request. An
/// invalid, unknown, expired or revoked key counts as none (as upstream, whose
/// optional key middleware drops it); the detail says which, for the operator.
fn no_credentials(detail: Option<&str>) -> ApiError {
    let e = ApiError::unauthorized(
        "API key or external proxy authentication required, but none provided",
    );
    match detail {
        Some(d) => e.detail(d),
        None => e,
    }
}

/// [`Store::read_inline`](store::Store::read_inline) for a closure that may
/// refuse the request: one read transaction, and one `Result` for the caller
/// (a database failure becomes an internal `ApiError`).
pub fn read_inline<T>(
    store: &store::Store,
    f: impl FnOnce(&store::Connection) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    store.read_inline(|c| Ok(f(c)))?
}

/// Resolves the user an API key belongs to. Runs on a store connection.
pub fn user_for_key(
    conn: &store::Connection,
    token: Option<&str>,
    now: OffsetDateTime,
) -> Result<UserRow, ApiError> {
    let (id, secret) = split(token)?;
    let found = store::users::api_key_with_user(conn, id)?;
    check_key(found.as_ref(), secret, now)
}

/// [`user_for_key`] answered from `cache` when nothing was committed since
/// the key was read (`version`), else from the database (and remembered).
pub fn user_for_key_cached(
    app: &crate::app::App,
    token: Option<&str>,
    version: i64,
    now: OffsetDateTime,
) -> Result<UserRow, ApiError> {
    let (id, secret) = split(token)?;
    let found = match app.api_keys.get(id, version) {
        Some(hit) => hit,
        None => {
            let found = app
                .store
                .read_inline(|c| store::users::api_key_with_user(c, id))?;
            app.api_keys.put(id, version, found.clone());
            found
        }
    };
    check_key(found.as_ref(), secret, now)
}

fn split(token: Option<&str>) -> Result<(&str, &str), ApiError> {
    let Some(token) = token else {
        return Err(no_credentials(None));
    };
    auth::split_api_key(token)
        .ok_or_else(|| no_credentials(Some("The API key is not in the <id>-<secret> format.")))
}

fn check_key(
    found: Option<&(store::users::ApiKeyRow, UserRow)>,
    secret: &str,
    now: OffsetDateTime,
) -> Result<UserRow, ApiError> {
    let Some((key, user)) = found else {
        return Err(no_credentials(Some(
            "The API key is not known to this server.",
        )));
    };
    if !auth::digests_equal(&key.hashed_secret, &auth::sha256(secret.as_bytes())) {
        return Err(no_credentials(Some("The API key secret is invalid.")));
    }
    if key.revoked_at.is_some() {
        return Err(no_credentials(Some("The API key has been revoked.")));
    }
    if key.expires_at <= now {
        return Err(no_credentials(Some(&format!(
            "The API key expired at {}; create a new one with `appliance token create`.",
            crate::sdk::rfc3339::format(&key.expires_at)
        ))));
    }
    Ok(user.clone())
}

/// Parses a `{workspaceagent}`-style path parameter as Coder does (on the
/// percent-decoded segment).
pub fn parse_uuid_param(raw: &str) -> Result<uuid::Uuid, ApiError> {
    let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
    uuid::Uuid::parse_str(&decoded).map_err(|e| {
        ApiError::bad_request(format!("Invalid UUID \"{decoded}\".")).detail(e.to_string())
    })
}

/// The `{workspaceagent}` routes' gate, in Coder's order: a user credential
/// (401), a UUID (400), an agent the user may read (404 when it does not exist
/// or belongs to someone else: owners read their own, admins read all).
pub fn readable_agent(
    conn: &store::Connection,
    token: Option<&str>,
    raw_id: &str,
    now: OffsetDateTime,
) -> Result<store::agents::AgentRow, ApiError> {
    let user = user_for_key(conn, token, now)?;
    let id = parse_uuid_param(raw_id)?;
    match store::agents::live_agent(conn, id)? {
        Some(a) if auth::may_read(user.role, user.id, a.owner_id) => Ok(a),
        _ => Err(ApiError::not_found(
            "Agent doesn't exist with that id, or you do not have access to it.",
        )),
    }
}

/// [`agent_for_token`] for a route whose body is still unread: a refusal
/// closes the connection (see `filters::refuse_unread`).
pub fn agent_before_body(
    app: &crate::app::App,
    token: Option<&str>,
) -> Result<store::agents::AgentRow, ApiError> {
    read_inline(&app.store, |c| agent_for_token(c, token)).map_err(super::filters::refuse_unread)
}

/// Resolves the agent an agent token belongs to (`/me/*` routes), with
/// Coder's messages. Only live agents (of their workspace's latest build)
/// authenticate. Runs on a store connection.
pub fn agent_for_token(
    conn: &store::Connection,
    token: Option<&str>,
) -> Result<store::agents::AgentRow, ApiError> {
    let Some(token) = token else {
        return Err(ApiError::unauthorized(
            "Cookie \"coder_session_token\" must be provided.",
        ));
    };
    if uuid::Uuid::parse_str(token).is_err() {
        return Err(
            ApiError::unauthorized("Workspace agent token invalid.").detail(format!(
                "An agent token must be a valid UUIDv4. (len {})",
                token.len()
            )),
        );
    }
    match store::agents::agent_by_token_hash(conn, &auth::agent_token_hash(token))? {
        Some(agent) => Ok(agent),
        None => Err(ApiError::unauthorized("Workspace agent not authorized.").detail(
            "The agent cannot authenticate until the workspace provision job has been completed. If the job is no longer running, this agent is invalid.",
        )),
    }
}
