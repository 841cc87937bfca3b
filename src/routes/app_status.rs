//! `PATCH /api/v2/workspaceagents/me/app-status` (Coder:
//! `patchWorkspaceAgentAppStatus`; body `agentsdk.PatchAppStatus`): an agent
//! reports the state of one of its apps. The agent's newest
//! [`MAX_STATUSES_PER_AGENT`] reports are kept (upstream keeps every one);
//! `GET /workspaceagents/{id}` shows them under the app's `statuses`, newest
//! first.

use serde::Deserialize;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::filters::{null_as_default, read_json, session_token, with_app};
use super::session::agent_before_body;
use crate::app::App;
use crate::routes::error::{ApiError, json_response, respond};
use crate::{sanitize, sdk, store};

/// Upstream's limit, in bytes (160 exactly is accepted).
pub const MAX_MESSAGE_BYTES: usize = 160;
/// Upstream's column is `text`, without bound; a URI is a link.
pub const MAX_URI_BYTES: usize = 2048;
/// Statuses kept per agent; older ones are dropped (upstream keeps all).
pub const MAX_STATUSES_PER_AGENT: usize = 100;

pub fn routes(app: &App) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "v2" / "workspaceagents" / "me" / "app-status")
        .and(warp::patch())
        .and(session_token())
        .and(warp::body::stream())
        .and(with_app(app))
        .then(|token: Option<String>, body, app: App| async move {
            respond(patch_app_status(app, token, body).await)
        })
        .boxed()
}

/// `icon` and `needs_user_attention` are accepted and ignored, as upstream.
#[derive(Debug, Deserialize)]
struct PatchAppStatus {
    #[serde(default, deserialize_with = "null_as_default")]
    app_slug: String,
    #[serde(default, deserialize_with = "null_as_default")]
    state: String,
    #[serde(default, deserialize_with = "null_as_default")]
    message: String,
    #[serde(default, deserialize_with = "null_as_default")]
    uri: String,
}

/// Coder's states, matched case-insensitively.
fn parse_state(state: &str) -> Option<&'static str> {
    ["working", "idle", "complete", "failure"]
        .into_iter()
        .find(|s| s.eq_ignore_ascii_case(state))
}

async fn patch_app_status(
    app: App,
    token: Option<String>,
    body: impl futures_util::Stream<Item = Result<impl bytes::Buf, warp::Error>>,
) -> Result<Response, ApiError> {
    let agent = agent_before_body(&app, token.as_deref())?;
    let req: PatchAppStatus = read_json(body).await?;
    let state = parse_state(&req.state).ok_or_else(|| {
        ApiError::bad_request("Failed to parse request.")
            .detail(format!("Invalid state: {}", req.state))
    })?;
    if req.message.len() > MAX_MESSAGE_BYTES {
        let why = "Message must be less than 160 characters.";
        return Err(ApiError::bad_request("Message is too long.")
            .detail(why)
            .validation("message", why));
    }
    if req.uri.len() > MAX_URI_BYTES {
        let why = format!("URI must be at most {MAX_URI_BYTES} bytes.");
        return Err(ApiError::bad_request("URI is too long.")
            .detail(why.clone())
            .validation("uri", why));
    }
    let message = sanitize::app_status_message(&req.message);
    let uri = (!req.uri.is_empty()).then_some(req.uri);
    let slug = req.app_slug;
    let now = store::now();
    let stored = app
        .store
        .write_async(move |tx| {
            let Some(found) = store::agents::apps(tx, agent.id)?
                .into_iter()
                .find(|a| a.slug == slug)
            else {
                return Ok(Err(slug));
            };
            store::agents::insert_app_status(
                tx,
                &agent,
                found.id,
                state,
                &message,
                uri.as_deref(),
                now,
                MAX_STATUSES_PER_AGENT,
            )
            .map(Ok)
        })
        .await?;
    match stored {
        Ok(_) => Ok(json_response(
            StatusCode::OK,
            &sdk::Response {
                message: "App status updated.".into(),
                detail: None,
                validations: Vec::new(),
            },
        )),
        Err(slug) => Err(ApiError::bad_request("Failed to get workspace app.")
            .detail(format!("No app found with slug \"{slug}\""))),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_state;

    #[test]
    fn states_are_case_insensitive_and_closed() {
        assert_eq!(parse_state("WORKING"), Some("working"));
        assert_eq!(parse_state("Idle"), Some("idle"));
        assert_eq!(parse_state("complete"), Some("complete"));
        assert_eq!(parse_state("failure"), Some("failure"));
        assert_eq!(parse_state(""), None);
        assert_eq!(parse_state("done"), None);
    }
}
