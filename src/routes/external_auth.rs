//! External auth.
//!
//! - `GET /api/v2/workspaceagents/me/external-auth` and its alias
//!   `/me/gitauth` (Coder: `workspaceAgentsExternalAuth`, answer
//!   `agentsdk.ExternalAuthResponse`): an agent asks for a git token for a
//!   remote URL (`match`, legacy `url`) or a provider `id`; with `listen` it
//!   waits until the workspace owner has linked the provider.
//! - `GET /external-auth/{provider}` and `/external-auth/{provider}/callback`:
//!   the OAuth2 authorization-code flow a user follows in a browser (signed
//!   in with their API key: cookie `coder_session_token`, or the query at the
//!   start) to link the provider; its rules are in `external_auth::flow`.
//!   `appliance external-auth link` does it without one.

use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::header::{LOCATION, SET_COOKIE};
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;

use super::filters::{query_flag, query_pairs, session_token, with_app};
use super::session::{agent_before_body, read_inline, user_for_key};
use crate::app::App;
use crate::external_auth::Provider;
use crate::external_auth::flow::{self, STATE_COOKIE};
use crate::external_auth::oauth_client::{self, Failure};
use crate::routes::error::{ApiError, json_response, respond};
use crate::sdk::ExternalAuthResponse;
use crate::store;
use crate::store::external_auth::LinkRow;

pub fn routes(app: &App) -> BoxedFilter<(Response,)> {
    let agent_route = |name: &'static str| {
        warp::path("api")
            .and(warp::path("v2"))
            .and(warp::path("workspaceagents"))
            .and(warp::path("me"))
            .and(warp::path(name))
            .and(warp::path::end())
            .and(warp::get())
            .and(session_token())
            .and(query_pairs())
            .and(with_app(app))
            .then(
                |token: Option<String>, query: Vec<(String, String)>, app: App| async move {
                    respond(agent_external_auth(app, token, query).await)
                },
            )
            .boxed()
    };
    let start = warp::path!("external-auth" / String)
        .and(warp::get())
        .and(session_token())
        .and(with_app(app))
        .then(
            |provider: String, token: Option<String>, app: App| async move {
                respond(start_link(app, provider, token).await)
            },
        );
    let callback = warp::path!("external-auth" / String / "callback")
        .and(warp::get())
        .and(session_token())
        .and(warp::cookie::optional::<String>(STATE_COOKIE))
        .and(query_pairs())
        .and(with_app(app))
        .then(
            |provider: String,
             token: Option<String>,
             state_cookie: Option<String>,
             query: Vec<(String, String)>,
             app: App| async move {
                respond(finish_link(app, provider, token, state_cookie, query).await)
            },
        );
    agent_route("external-auth")
        .or(agent_route("gitauth"))
        .unify()
        .or(start)
        .unify()
        .or(callback)
        .unify()
        .boxed()
}

fn query<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn agent_external_auth(
    app: App,
    token: Option<String>,
    q: Vec<(String, String)>,
) -> Result<Response, ApiError> {
    let agent = agent_before_body(&app, token.as_deref())?;
    let match_url = query(&q, "match")
        .or_else(|| query(&q, "url"))
        .unwrap_or("");
    let by_id = query(&q, "id").filter(|s| !s.is_empty());
    match (match_url.is_empty(), by_id) {
        (true, None) => return Err(ApiError::bad_request("'url' or 'id' must be provided!")),
        (false, Some(_)) => {
            return Err(ApiError::bad_request(
                "'url' and 'id' cannot be provided together!",
            ));
        }
        _ => {}
    }
    let listen = query_flag(&q, "listen")?;
    let workspace_id = agent.workspace_id;
    let declared = app
        .store
        .read_inline(|c| store::workspaces::declared_external_auth(c, workspace_id))?;
    let provider = crate::external_auth::select(&app.external_auth, &declared, by_id, match_url)
        .map_err(|nf| ApiError::not_found(nf.message).detail(nf.detail))?
        .clone();
    if agent.api_key_scope == "no_user_data" {
        return Err(ApiError::forbidden());
    }
    let owner = agent.owner_id;
    let link_url = format!("{}/external-auth/{}", app.config.access_url, provider.id);
    if listen {
        return listen_for_link(app, provider, owner).await;
    }
    let answer = match usable(&app, &provider, owner).await? {
        Some(answer) => answer,
        None => crate::external_auth::link_answer(link_url),
    };
    Ok(json_response(StatusCode::OK, &answer))
}

/// The owner's token for the provider if it is usable now: refreshed when
/// expired (a refused refresh: `None`), validated once per distinct token
/// when the provider has a `validate_url`.
async fn usable(
    app: &App,
    provider: &Provider,
    owner: Uuid,
) -> Result<Option<ExternalAuthResponse>, ApiError> {
    let id = provider.id.clone();
    let Some(link) = app
        .store
        .read_inline(|c| store::external_auth::link(c, &id, owner))?
    else {
        return Ok(None);
    };
    evaluate(app, provider, link).await
}

async fn evaluate(
    app: &App,
    provider: &Provider,
    link: LinkRow,
) -> Result<Option<ExternalAuthResponse>, ApiError> {
    let now = OffsetDateTime::now_utc();
    let expired = link.expires_at.is_some_and(|t| t <= now);
    let refresh_failed =
        |e: &dyn std::fmt::Display| ApiError::internal("Failed to refresh external auth token.", e);
    let (access, extra, expires_at) = if expired {
        if link.refresh_token.is_empty() {
            return Ok(None);
        }
        let p = provider.clone();
        let refresh_token = link.refresh_token.clone();
        let refreshed =
            tokio::task::spawn_blocking(move || oauth_client::refresh(&p, &refresh_token))
                .await
                .map_err(|e| refresh_failed(&e))?;
        let token = match refreshed {
            Ok(t) => t,
            Err(Failure::Refused(why)) => {
                tracing::info!(provider = %provider.id, user_id = %link.user_id, why, "external-auth refresh refused");
                return Ok(None);
            }
            Err(e @ Failure::Unavailable(_)) => return Err(refresh_failed(&e)),
        };
        store_issued(app, &provider.id, link.user_id, &token).await?;
        (token.access_token, token.extra, token.expires_at)
    } else {
        if !provider.validate_url.is_empty()
            && !validated(app, provider, &link.access_token).await?
        {
            return Ok(None);
        }
        (link.access_token, link.oauth_extra, link.expires_at)
    };
    let extra = extra.and_then(|e| serde_json::from_str(&e).ok());
    Ok(Some(crate::external_auth::token_answer(
        provider.kind,
        &access,
        extra,
        expires_at,
    )))
}

/// Stores a token the provider just issued as the user's link; being fresh
/// from the provider, it counts as validated.
async fn store_issued(
    app: &App,
    provider_id: &str,
    user_id: Uuid,
    token: &oauth_client::Token,
) -> Result<(), ApiError> {
    let (pid, stored) = (provider_id.to_string(), token.clone());
    app.store
        .write_async(move |tx| {
            store::external_auth::put_link(
                tx,
                &pid,
                user_id,
                &store::external_auth::NewToken {
                    access_token: &stored.access_token,
                    refresh_token: &stored.refresh_token,
                    expires_at: stored.expires_at,
                    oauth_extra: stored.extra.as_deref(),
                },
                store::now(),
            )
        })
        .await?;
    app.external_auth_state.remember(&token.access_token, true);
    Ok(())
}

/// Whether the provider accepts the token; asks it at most once per token.
async fn validated(app: &App, provider: &Provider, token: &str) -> Result<bool, ApiError> {
    if let Some(valid) = app.external_auth_state.validated(token) {
        return Ok(valid);
    }
    let (p, t) = (provider.clone(), token.to_string());
    let answer = tokio::task::spawn_blocking(move || oauth_client::validate(&p, &t))
        .await
        .map_err(|e| ApiError::internal("Failed to refresh external auth token.", &e))?
        .map_err(|e| ApiError::internal("Failed to refresh external auth token.", &e))?;
    app.external_auth_state.remember(token, answer);
    Ok(answer)
}

/// `listen=true`: answers once the owner has a usable token. Wakes on commits
/// to the database (a link made by the web flow here or by the CLI in another
/// process) and when a stored token's expiry passes; a token that did not
/// validate is not asked about again until the link changes. Ends when the
/// client goes away (hyper drops this future).
async fn listen_for_link(app: App, provider: Provider, owner: Uuid) -> Result<Response, ApiError> {
    /// Logs when the waiter ends, however it ends (answered, error, or the
    /// client went away and hyper dropped the request).
    struct Ended(String);
    impl Drop for Ended {
        fn drop(&mut self) {
            tracing::debug!(provider = %self.0, "external-auth listener ended");
        }
    }
    let _ended = Ended(provider.id.clone());
    let mut changes = app.hub.subscribe_database();
    let mut last_seen: Option<(String, String, Option<OffsetDateTime>)> = None;
    loop {
        let id = provider.id.clone();
        let link = app
            .store
            .read_inline(|c| store::external_auth::link(c, &id, owner))?;
        let mut wake_at = None;
        if let Some(link) = link {
            let seen = (
                link.access_token.clone(),
                link.refresh_token.clone(),
                link.expires_at,
            );
            let now = OffsetDateTime::now_utc();
            let expired_for_good =
                link.expires_at.is_some_and(|t| t <= now) && link.refresh_token.is_empty();
            if last_seen.as_ref() != Some(&seen) && !expired_for_good {
                last_seen = Some(seen);
                if let Some(answer) = evaluate(&app, &provider, link.clone()).await? {
                    return Ok(json_response(StatusCode::OK, &answer));
                }
            }
            if let Some(t) = link.expires_at.filter(|t| *t > now) {
                wake_at = Some(t);
            }
        }
        let sleep = match wake_at {
            Some(t) => {
                let secs = (t - OffsetDateTime::now_utc()).as_seconds_f64().max(0.0);
                Duration::from_secs_f64(secs + 0.01)
            }
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            () = app.shutdown.cancelled() => return Err(ApiError::shutting_down()),
            changed = changes.changed() => {
                if changed.is_err() {
                    return Err(ApiError::internal("An internal server error occurred.", &"the database watcher stopped"));
                }
            }
            _ = tokio::time::sleep(sleep) => {
                // An expiry passed: a refresh may now be due.
                last_seen = None;
            }
        }
    }
}

// ----- the browser flow -----

fn configured<'a>(app: &'a App, id: &str) -> Result<&'a Provider, ApiError> {
    app.external_auth
        .iter()
        .find(|p| p.id == id)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "No external auth provider with the id \"{id}\" is configured."
            ))
        })
}

fn callback_url(app: &App, provider: &str) -> String {
    format!(
        "{}/external-auth/{provider}/callback",
        app.config.access_url
    )
}

/// `GET /external-auth/{provider}`: a signed-in user is sent to the
/// provider's consent page, with a fresh state in the URL and in a cookie
/// for the callback only.
async fn start_link(
    app: App,
    provider: String,
    token: Option<String>,
) -> Result<Response, ApiError> {
    let p = configured(&app, &provider)?;
    let now = store::now();
    let user = read_inline(&app.store, |c| user_for_key(c, token.as_deref(), now))?;
    let state = flow::new_state();
    let (pid, digest) = (provider.clone(), state.digest);
    app.store
        .write_async(move |tx| {
            store::external_auth::put_state(
                tx,
                &digest,
                user.id,
                &pid,
                now,
                now - flow::STATE_TTL,
                flow::MAX_PENDING_PER_USER,
            )
        })
        .await?;
    let scope = p.scopes.join(" ");
    let params = serde_urlencoded::to_string([
        ("client_id", p.client_id.as_str()),
        ("redirect_uri", callback_url(&app, &provider).as_str()),
        ("response_type", "code"),
        ("scope", scope.as_str()),
        ("state", state.value.as_str()),
    ])
    .map_err(|e| ApiError::internal("An internal server error occurred.", &e))?;
    let sep = if p.auth_url.contains('?') { '&' } else { '?' };
    let location = format!("{}{sep}{params}", p.auth_url);
    let mut resp = Response::new(Vec::<u8>::new().into());
    *resp.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    resp.headers_mut()
        .insert(LOCATION, header_value(&location)?);
    resp.headers_mut().insert(
        SET_COOKIE,
        state_cookie(
            &app,
            &provider,
            &state.value,
            flow::STATE_TTL.whole_seconds(),
        )?,
    );
    Ok(resp)
}

fn header_value(value: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(value)
        .map_err(|e| ApiError::internal("An internal server error occurred.", &e))
}

/// The `oauth_state` cookie: sent back only to this provider's callback,
/// not readable by scripts, sent on the provider's top-level redirect
/// (`SameSite=Lax`), `Secure` when the access URL is https. `max_age` 0
/// removes it.
fn state_cookie(
    app: &App,
    provider: &str,
    value: &str,
    max_age: i64,
) -> Result<HeaderValue, ApiError> {
    let secure = if app.config.access_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    header_value(&format!(
        "{STATE_COOKIE}={value}; Path=/external-auth/{provider}/callback; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
    ))
}

/// `GET /external-auth/{provider}/callback?code&state`: the provider sends
/// the browser back; the code becomes the signed-in user's link, if this
/// browser started this user's flow.
async fn finish_link(
    app: App,
    provider: String,
    token: Option<String>,
    state_cookie_value: Option<String>,
    q: Vec<(String, String)>,
) -> Result<Response, ApiError> {
    let p = configured(&app, &provider)?.clone();
    let now = store::now();
    let user = read_inline(&app.store, |c| user_for_key(c, token.as_deref(), now))?;
    if let Some(error) = query(&q, "error") {
        return Err(
            ApiError::bad_request("The provider refused the link.").detail(
                format!("{error} {}", query(&q, "error_description").unwrap_or(""))
                    .trim()
                    .to_string(),
            ),
        );
    }
    let state = flow::check_returned_state(query(&q, "state"), state_cookie_value.as_deref())
        .map_err(|refusal| {
            let status = match refusal {
                flow::Refusal::NoState => StatusCode::BAD_REQUEST,
                flow::Refusal::NoCookie | flow::Refusal::Mismatch => StatusCode::UNAUTHORIZED,
            };
            ApiError::new(status, refusal.message())
        })?;
    let code = query(&q, "code").unwrap_or("").to_string();
    if code.is_empty() {
        return Err(ApiError::bad_request("Missing \"code\" query parameter."));
    }
    let (pid, digest, user_id) = (provider.clone(), flow::digest(state), user.id);
    let taken = app
        .store
        .write_async(move |tx| {
            store::external_auth::take_state(tx, &digest, user_id, &pid, now - flow::STATE_TTL)
        })
        .await?;
    if !taken {
        return Err(
            ApiError::bad_request("Invalid or expired OAuth state.").detail(format!(
                "Start again at {}/external-auth/{provider}.",
                app.config.access_url
            )),
        );
    }
    let redirect_uri = callback_url(&app, &provider);
    let p2 = p.clone();
    let token =
        tokio::task::spawn_blocking(move || oauth_client::exchange_code(&p2, &code, &redirect_uri))
            .await
            .map_err(|e| ApiError::internal("Failed to exchange the OAuth code.", &e))?
            .map_err(|e| match e {
                Failure::Refused(why) => {
                    ApiError::bad_request("The provider refused the OAuth code.").detail(why)
                }
                other => ApiError::internal("Failed to exchange the OAuth code.", &other),
            })?;
    store_issued(&app, &provider, user_id, &token).await?;
    tracing::info!(provider = %provider, user_id = %user_id, "external auth linked");
    let mut resp = json_response(
        StatusCode::OK,
        &crate::sdk::Response {
            message: format!(
                "Linked {}. You can close this page; waiting workspaces get the token now.",
                p.display_name
            ),
            detail: None,
            validations: Vec::new(),
        },
    );
    resp.headers_mut()
        .insert(SET_COOKIE, state_cookie(&app, &provider, "", 0)?);
    Ok(resp)
}
