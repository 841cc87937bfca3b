//! `PATCH /api/v2/workspaceagents/me/app-status` (Coder:
//! `patchWorkspaceAgentAppStatus`; body `agentsdk.PatchAppStatus`): an agent
//! reports the state of one of its apps. The checks and the write are
//! `agentapi::agent::app_status`'s, shared with the UpdateAppStatus RPC; this
//! file maps its errors to upstream's statuses and texts. The agent's newest
//! `MAX_STATUSES_PER_AGENT` reports are kept (upstream keeps every one);
//! `GET /workspaceagents/{id}` shows them under the app's `statuses`, newest
//! first.

use serde::Deserialize;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::filters::{null_as_default, read_json, session_token, with_app};
use super::session::agent_before_body;
use crate::agentapi::agent::app_status::{self, AppStatusError, parse_state};
use crate::app::App;
use crate::routes::error::{ApiError, json_response, respond};
use crate::sdk;

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
    match app_status::update(&app, agent, req.app_slug, state, &req.message, req.uri).await {
        Ok(_) => Ok(json_response(
            StatusCode::OK,
            &sdk::Response {
                message: "App status updated.".into(),
                detail: None,
                validations: Vec::new(),
            },
        )),
        Err(e @ AppStatusError::MessageTooLong) => {
            let why = e.to_string();
            Err(ApiError::bad_request("Message is too long.")
                .detail(why.clone())
                .validation("message", why))
        }
        Err(e @ AppStatusError::UriTooLong) => {
            let why = e.to_string();
            Err(ApiError::bad_request("URI is too long.")
                .detail(why.clone())
                .validation("uri", why))
        }
        Err(e @ AppStatusError::NoApp(_)) => {
            Err(ApiError::bad_request("Failed to get workspace app.").detail(e.to_string()))
        }
        Err(AppStatusError::Store(e)) => Err(e.into()),
    }
}
