//! How Coder's clients coordinate with agents (BEHAVIOUR.md §1.16, §1.2):
//! `GET /api/v2/workspaceagents/{id}/coordinate` (`coder ssh`, port
//! forwarding, VS Code: one agent) and `GET /api/v2/tailnet` (Coder Connect:
//! every agent the user may reach, plus WorkspaceUpdates). Both are the same
//! stack as `/me/rpc` (WebSocket → yamux → DRPC) serving the Tailnet service
//! (`agentapi::tailnet_service`) for a client session.
//!
//! In coderd's order: the user's API key (401), the agent the user may `ssh`
//! into (404; owners and admins, the readers of the agent), `version`
//! (`/coordinate`: missing means 1.0, which is no longer supported;
//! `/tailnet`: missing means 2.0), `resume_token` (a valid one keeps the
//! peer id it names; an invalid one is 401 `Invalid resume token`), then the
//! WebSocket.

use std::sync::Arc;

use time::OffsetDateTime;
use uuid::Uuid;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::HeaderMap;
use warp::reply::Response;

use super::filters::{query_pairs, session_token, with_app};
use super::rpc::{serve_session, upgrade_binary, yamux_server};
use super::session::{read_inline, readable_agent, user_for_key};
use crate::agentapi::client::{self, ClientSession};
use crate::app::App;
use crate::auth;
use crate::routes::error::{ApiError, respond};
use crate::rpc::drpc::Router;
use crate::rpc::proto::methods::{self, Version};
use crate::tailnet::coordinator::Auth;
use crate::tailnet::resume;

/// `workspacesdk.CoordinateAPIInvalidResumeToken`.
const INVALID_RESUME_TOKEN: &str = "Invalid resume token";

pub fn routes(app: &App) -> BoxedFilter<(Response,)> {
    let router = Arc::new(client::router());
    let agent = {
        let router = router.clone();
        warp::path!("api" / "v2" / "workspaceagents" / String / "coordinate")
            .and(warp::get())
            .and(session_token())
            .and(query_pairs())
            .and(warp::header::headers_cloned())
            .and(warp::ext::optional::<hyper::upgrade::OnUpgrade>())
            .and(with_app(app))
            .then(
                move |id: String,
                      token: Option<String>,
                      query: Vec<(String, String)>,
                      headers: HeaderMap,
                      upgrade: Option<hyper::upgrade::OnUpgrade>,
                      app: App| {
                    let router = router.clone();
                    async move {
                        respond(coordinate(
                            app,
                            router,
                            Target::Agent(id),
                            token,
                            query,
                            (headers, upgrade),
                        ))
                    }
                },
            )
    };
    let tailnet = warp::path!("api" / "v2" / "tailnet")
        .and(warp::get())
        .and(session_token())
        .and(query_pairs())
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<hyper::upgrade::OnUpgrade>())
        .and(with_app(app))
        .then(
            move |token: Option<String>,
                  query: Vec<(String, String)>,
                  headers: HeaderMap,
                  upgrade: Option<hyper::upgrade::OnUpgrade>,
                  app: App| {
                let router = router.clone();
                async move {
                    respond(coordinate(
                        app,
                        router,
                        Target::User,
                        token,
                        query,
                        (headers, upgrade),
                    ))
                }
            },
        );
    agent.or(tailnet).unify().boxed()
}

/// Which route: one agent (its id as given), or all of the user's.
enum Target {
    Agent(String),
    User,
}

/// The first value of a query parameter, empty counting as missing.
fn query_value<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn version(query: &[(String, String)], default: &str) -> Result<Version, ApiError> {
    methods::validate(query_value(query, "version").unwrap_or(default)).map_err(|why| {
        ApiError::bad_request("Unknown or unsupported API version").validation("version", why)
    })
}

/// The peer id: a fresh one, or the one a valid `resume_token` names.
fn peer_id(app: &App, query: &[(String, String)], now: OffsetDateTime) -> Result<Uuid, ApiError> {
    match query_value(query, "resume_token") {
        None => Ok(Uuid::new_v4()),
        Some(token) => resume::verify(&app.resume_key, token, now).map_err(|why| {
            ApiError::unauthorized(INVALID_RESUME_TOKEN)
                .detail(why)
                .validation("resume_token", INVALID_RESUME_TOKEN)
        }),
    }
}

fn coordinate(
    app: App,
    router: Arc<Router<ClientSession>>,
    target: Target,
    token: Option<String>,
    query: Vec<(String, String)>,
    (headers, upgrade): (HeaderMap, Option<hyper::upgrade::OnUpgrade>),
) -> Result<Response, ApiError> {
    if app.shutdown.is_cancelled() {
        return Err(ApiError::shutting_down());
    }
    let now = crate::store::now();
    let (user, auth, version) = match &target {
        Target::Agent(raw_id) => {
            let agent = read_inline(&app.store, |c| {
                readable_agent(c, token.as_deref(), raw_id, now)
            })?;
            (
                None,
                Auth::Client { agent: agent.id },
                version(&query, "1.0")?,
            )
        }
        Target::User => {
            let user = read_inline(&app.store, |c| user_for_key(c, token.as_deref(), now))?;
            let (user_id, role, store) = (user.id, user.role, app.store.clone());
            // A user may tunnel to agents of workspaces they may ssh into:
            // their own, or any for an admin (`auth::may_read`).
            let allowed: crate::tailnet::coordinator::TunnelAuthorizer =
                Arc::new(move |agent_id| {
                    store
                        .read_inline(|c| crate::store::tailnet::agent_owner(c, agent_id))
                        .ok()
                        .flatten()
                        .is_some_and(|owner| auth::may_read(role, user_id, owner))
                });
            (
                Some((user.id, user.role)),
                Auth::User(allowed),
                version(&query, "2.0")?,
            )
        }
    };
    let peer_id = peer_id(&app, &query, now)?;
    let route = match user {
        Some(_) => "/tailnet",
        None => "/coordinate",
    };
    let session = ClientSession {
        app: app.clone(),
        version,
        peer_id,
        auth,
        user,
    };
    upgrade_binary(headers, upgrade, route, move |socket| async move {
        let keepalive = app.config.agent.connection_update_interval;
        let yamux = yamux_server(socket, keepalive, None);
        tracing::debug!(%peer_id, route, "tailnet client connected");
        let why = serve_session(
            yamux,
            router,
            session,
            tokio_util::sync::CancellationToken::new(),
            app.shutdown.clone(),
        )
        .await;
        tracing::debug!(%peer_id, reason = %why, "tailnet client disconnected");
    })
}
