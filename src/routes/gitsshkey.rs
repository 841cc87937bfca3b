//! `GET /api/v2/workspaceagents/me/gitsshkey` (Coder: `agentGitSSHKey`,
//! answer `agentsdk.GitSSHKey`): the workspace owner's git SSH key pair, so
//! `git` over SSH works inside the workspace.

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::filters::{session_token, with_app};
use super::session::agent_before_body;
use crate::app::App;
use crate::routes::error::{ApiError, json_response, respond};
use crate::{gitsshkey, sdk, store};

pub fn routes(app: &App) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "v2" / "workspaceagents" / "me" / "gitsshkey")
        .and(warp::get())
        .and(session_token())
        .and(with_app(app))
        .then(|token: Option<String>, app: App| async move {
            respond(get_gitsshkey(app, token).await)
        })
        .boxed()
}

async fn get_gitsshkey(app: App, token: Option<String>) -> Result<Response, ApiError> {
    let agent = agent_before_body(&app, token.as_deref())?;
    if agent.api_key_scope == "no_user_data" {
        return Err(ApiError::forbidden());
    }
    let owner = agent.owner_id;
    let key = match app
        .store
        .read_inline(|c| store::users::gitsshkey(c, owner))?
    {
        Some(key) => key,
        None => {
            // A user from before git SSH keys existed: one is made on first
            // use (upstream answers 500 here). Generation may take a second
            // (RSA): off the executor, and the first of two racing requests
            // wins.
            let algorithm = app.config.ssh_keygen_algorithm;
            let pair = tokio::task::spawn_blocking(move || gitsshkey::generate(algorithm))
                .await
                .map_err(|e| ApiError::internal("Internal error generating git SSH key.", &e))?
                .map_err(|e| ApiError::internal("Internal error generating git SSH key.", &e))?;
            let now = store::now();
            let key = app
                .store
                .write_async(move |tx| {
                    store::users::put_gitsshkey(
                        tx,
                        owner,
                        &pair.private_key,
                        &pair.public_key,
                        now,
                        false,
                    )
                })
                .await
                .map_err(|e| ApiError::internal("Internal error fetching git SSH key.", &e))?;
            tracing::info!(user_id = %owner, algorithm = %algorithm, "generated a git SSH key on first use");
            key
        }
    };
    Ok(json_response(
        StatusCode::OK,
        &sdk::GitSshKey {
            public_key: key.public_key,
            private_key: key.private_key,
        },
    ))
}
