//! Signing in to the dashboard and out: an API key pasted into `/login`, or
//! a one-time link from `appliance login-link` (`/login/link`, which makes an
//! API key named `dashboard` for its user); either sets the session cookie.
//! Signing out clears the cookie and revokes nothing.
//!
//! The sign-in forms have no session yet: their CSRF token is bound to a
//! random `appliance_csrf` cookie the form's page sets.

use std::time::Duration;

use time::OffsetDateTime;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;

use super::error::ApiError;
use super::filters::{SESSION_COOKIE, cookie};
use super::session::{read_inline, user_for_key};
use super::web::{
    Form, PRE_SESSION_COOKIE, PageError, check_post, csrf_token, field, page, redirect,
    respond_page, session, set_cookie,
};
use crate::app::App;
use crate::auth;
use crate::store;
use crate::web::pages::{LoginLinkPage, LoginPage, MessagePage};

/// The name of the API key a sign-in link makes.
const LINK_KEY_NAME: &str = "dashboard";
/// How long the API key a sign-in link makes lasts (and its cookie).
const LINK_KEY_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// What a used, expired or unknown link says (the contract's words).
pub(super) const LINK_GONE: &str = "This sign-in link has been used or has expired.";

/// The pre-session cookie's value if the request has a well-formed one,
/// else a new one (and whether it is new, so it is set).
fn pre_session(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, PRE_SESSION_COOKIE) {
        Some(v) if v.len() == 32 && v.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            (v.to_string(), false)
        }
        _ => (auth::new_login_link_token().0, true),
    }
}

/// A sign-in page, with the pre-session cookie set when it is new.
fn pre_session_page(
    app: &App,
    headers: &HeaderMap,
    status: StatusCode,
    build: impl FnOnce(String) -> Result<Response, ApiError>,
) -> Result<Response, ApiError> {
    let (value, new) = pre_session(headers);
    let mut resp = build(csrf_token(app, "login", &value))?;
    *resp.status_mut() = status;
    if new {
        set_cookie(&mut resp, app, PRE_SESSION_COOKIE, &value, None);
    }
    Ok(resp)
}

/// The pre-session CSRF check of a sign-in form.
fn check_pre_session(app: &App, headers: &HeaderMap, form: &Form) -> Result<(), ApiError> {
    let expected = match cookie(headers, PRE_SESSION_COOKIE) {
        Some(v) => csrf_token(app, "login", v),
        // No cookie: no token can match.
        None => String::new(),
    };
    check_post(app, headers, form, &expected)
}

/// `GET /login`.
pub(super) fn form(app: App, headers: HeaderMap) -> Response {
    let r = login_page(&app, &headers, StatusCode::OK, None).map_err(PageError::from);
    respond_page(&app, r)
}

fn login_page(
    app: &App,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<String>,
) -> Result<Response, ApiError> {
    pre_session_page(app, headers, status, |csrf| {
        page(StatusCode::OK, &LoginPage { csrf, error })
    })
}

/// The session cookie for `key`, valid as long as the key.
fn with_session_cookie(
    app: &App,
    mut resp: Response,
    key: &str,
    until: OffsetDateTime,
) -> Response {
    let left = until - OffsetDateTime::now_utc();
    let age = Duration::try_from(left).unwrap_or(Duration::ZERO);
    set_cookie(&mut resp, app, SESSION_COOKIE, key, Some(age));
    resp
}

/// `POST /login`: a valid API key signs in.
pub(super) async fn sign_in(app: App, headers: HeaderMap, form: Form) -> Response {
    let r = sign_in_inner(&app, &headers, &form).await;
    respond_page(&app, r)
}

async fn sign_in_inner(app: &App, headers: &HeaderMap, form: &Form) -> Result<Response, PageError> {
    check_pre_session(app, headers, form)?;
    let key = field(form, "api_key").trim().to_string();
    let now = OffsetDateTime::now_utc();
    let key_for_read = key.clone();
    let found = read_inline(&app.store, move |c| {
        let user = user_for_key(c, Some(&key_for_read), now)?;
        let id = auth::split_api_key(&key_for_read).map_or("", |(id, _)| id);
        let expires = store::users::api_key_with_user(c, id)?.map(|(k, _)| k.expires_at);
        Ok((user, expires))
    });
    match found {
        Ok((user, Some(expires_at))) => {
            tracing::info!(user = %user.username, "signed in to the dashboard with an API key");
            Ok(with_session_cookie(
                app,
                redirect("/workspaces"),
                &key,
                expires_at,
            ))
        }
        Ok((_, None)) => Err(ApiError::internal(
            "Internal error signing in.",
            &"the key vanished while it was read",
        )
        .into()),
        Err(e) if e.status == StatusCode::UNAUTHORIZED => {
            let why = match e.body.detail {
                Some(d) if !key.is_empty() => format!("That API key does not sign in: {d}"),
                _ => "Paste an API key (<id>-<secret>), e.g. from `appliance token create`."
                    .to_string(),
            };
            Ok(login_page(
                app,
                headers,
                StatusCode::UNAUTHORIZED,
                Some(why),
            )?)
        }
        Err(e) => Err(e.into()),
    }
}

/// The link's token from a query or a form, if it has a token's shape.
fn link_token(value: &str) -> Option<&str> {
    auth::is_login_link_token(value).then_some(value)
}

fn link_gone() -> Result<Response, ApiError> {
    page(
        StatusCode::GONE,
        &MessagePage {
            nav: None,
            title: "Sign-in link expired".into(),
            message: LINK_GONE.into(),
            next: Some(("Sign in with an API key".into(), "/login".into())),
        },
    )
}

/// `GET /login/link?token=T`: asks before using the link (a link preview
/// or a mail scanner opening it must not use it up).
pub(super) async fn link_form(
    app: App,
    headers: HeaderMap,
    query: Vec<(String, String)>,
) -> Response {
    let r = link_form_inner(&app, &headers, &query).await;
    respond_page(&app, r.map_err(PageError::from))
}

async fn link_form_inner(
    app: &App,
    headers: &HeaderMap,
    query: &[(String, String)],
) -> Result<Response, ApiError> {
    let token = query
        .iter()
        .rev()
        .find(|(k, _)| k == "token")
        .and_then(|(_, v)| link_token(v));
    let Some(token) = token.map(str::to_string) else {
        return link_gone();
    };
    let hash = auth::sha256(token.as_bytes());
    let now = OffsetDateTime::now_utc();
    let user = app
        .store
        .read_inline(|c| store::users::login_link_user(c, &hash, now))?;
    let Some(user) = user else {
        return link_gone();
    };
    pre_session_page(app, headers, StatusCode::OK, |csrf| {
        page(
            StatusCode::OK,
            &LoginLinkPage {
                csrf,
                token,
                username: user.username,
            },
        )
    })
}

/// `POST /login/link`: uses the link up and signs its user in with a new
/// API key.
pub(super) async fn use_link(app: App, headers: HeaderMap, form: Form) -> Response {
    let r = use_link_inner(&app, &headers, &form).await;
    respond_page(&app, r.map_err(PageError::from))
}

async fn use_link_inner(app: &App, headers: &HeaderMap, form: &Form) -> Result<Response, ApiError> {
    check_pre_session(app, headers, form)?;
    let Some(token) = link_token(field(form, "token")) else {
        return link_gone();
    };
    let hash = auth::sha256(token.as_bytes());
    let now = store::now();
    let expires_at = now + LINK_KEY_LIFETIME;
    let key = auth::new_api_key();
    let (id, secret_hash) = (key.id.clone(), key.hashed_secret);
    let user = app
        .store
        .write_async(move |tx| {
            let Some(user) = store::users::take_login_link(tx, &hash, now)? else {
                return Ok(None);
            };
            store::users::insert_api_key(
                tx,
                &id,
                &secret_hash,
                user.id,
                LINK_KEY_NAME,
                now,
                expires_at,
            )?;
            Ok(Some(user))
        })
        .await?;
    let Some(user) = user else {
        return link_gone();
    };
    tracing::info!(user = %user.username, key_id = %key.id, "signed in to the dashboard with a sign-in link");
    Ok(with_session_cookie(
        app,
        redirect("/workspaces"),
        &key.key,
        expires_at,
    ))
}

/// `POST /logout`: clears the cookie (the key stays valid: it may be in use
/// elsewhere).
pub(super) fn sign_out(app: App, headers: HeaderMap, form: Form) -> Response {
    let r = match session(&app, &headers) {
        // No session left: nothing to protect, just clear the cookie.
        Err(_) => Ok(()),
        Ok(s) => {
            check_post(&app, &headers, &form, &s.csrf).map_err(|e| PageError::signed_in(e, &s))
        }
    };
    let r = r.map(|()| {
        let mut resp = redirect("/login");
        set_cookie(&mut resp, &app, SESSION_COOKIE, "", Some(Duration::ZERO));
        resp
    });
    respond_page(&app, r)
}
