//! `POST /api/v2/workspaceagents/me/log-source` (Coder:
//! `workspaceAgentPostLogSource`; body `agentsdk.PostLogSourceRequest`, answer
//! 201 `codersdk.WorkspaceAgentLogSource`).

use serde::Deserialize;
use uuid::Uuid;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::filters::{null_as_default, read_json, session_token, with_app};
use super::session::agent_before_body;
use crate::app::App;
use crate::routes::error::{ApiError, json_response, respond};
use crate::{sdk, store};

/// Display names are cut here, as upstream's VARCHAR(127) does.
pub const MAX_DISPLAY_NAME_CHARS: usize = 127;
/// Upstream's column is `text`, without bound; an icon is a path or a URL.
pub const MAX_ICON_BYTES: usize = 2048;
/// Sources per agent, the manifest's scripts' included (at most
/// `manifest::MAX_SCRIPTS_PER_AGENT` of them); upstream has no bound.
pub const MAX_LOG_SOURCES_PER_AGENT: usize = 64;

pub fn routes(app: &App) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "v2" / "workspaceagents" / "me" / "log-source")
        .and(warp::post())
        .and(session_token())
        .and(warp::body::stream())
        .and(with_app(app))
        .then(|token: Option<String>, body, app: App| async move {
            respond(post_log_source(app, token, body).await)
        })
        .boxed()
}

#[derive(Debug, Deserialize)]
struct PostLogSource {
    /// A missing id is the nil UUID, as Go decodes it; no validation, as upstream.
    #[serde(default, deserialize_with = "null_as_default")]
    id: Uuid,
    #[serde(default, deserialize_with = "null_as_default")]
    display_name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    icon: String,
}

async fn post_log_source(
    app: App,
    token: Option<String>,
    body: impl futures_util::Stream<Item = Result<impl bytes::Buf, warp::Error>>,
) -> Result<Response, ApiError> {
    let agent = agent_before_body(&app, token.as_deref())?;
    let req: PostLogSource = read_json(body).await?;
    if req.icon.len() > MAX_ICON_BYTES {
        let why = format!("Icon must be at most {MAX_ICON_BYTES} bytes.");
        return Err(ApiError::bad_request("Icon is too long.")
            .detail(why.clone())
            .validation("icon", why));
    }
    let display_name: String = req
        .display_name
        .chars()
        .take(MAX_DISPLAY_NAME_CHARS)
        .collect();
    let now = store::now();
    let (agent_id, id, name, icon) = (agent.id, req.id, display_name.clone(), req.icon.clone());
    let added = app
        .store
        .write_async(move |tx| {
            store::agents::add_log_source(
                tx,
                agent_id,
                id,
                &name,
                &icon,
                now,
                MAX_LOG_SOURCES_PER_AGENT,
            )
        })
        .await?;
    if added == store::agents::LogSourceAdded::Full {
        let why = format!(
            "An agent has at most {MAX_LOG_SOURCES_PER_AGENT} log sources; this id is not one of them."
        );
        return Err(ApiError::bad_request("Too many log sources.")
            .detail(why.clone())
            .validation("id", why));
    }
    // 201 echoing what was asked for, also when the source already existed (as upstream).
    Ok(json_response(
        StatusCode::CREATED,
        &sdk::WorkspaceAgentLogSource {
            workspace_agent_id: agent.id,
            id: req.id,
            created_at: now,
            display_name,
            icon: req.icon,
        },
    ))
}
