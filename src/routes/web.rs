//! The dashboard's HTTP side: its routes, the session cookie, CSRF, the
//! headers every page carries, HTML error pages, and `/static/{name}`.
//! The pages are rendered by `crate::web`; the handlers are in
//! `web_auth.rs` (sign-in, sign-in links, sign-out), `web_pages.rs`
//! (workspaces, agents, the user's settings) and `web_admin.rs` (users, API
//! keys).
//!
//! The session is the `coder_session_token` cookie holding a user API key,
//! as Coder's dashboard keeps it, so the API (`/api/v2/...`, the log follow
//! socket, `/pty`) accepts the same cookie. A key that stops working (revoked,
//! expired) ends the session: pages answer with a redirect to `/login` that
//! clears the cookie. Every POST carries a `csrf` field: an HMAC under
//! `App::csrf_key` of the session's key id (or, before sign-in, of the
//! `appliance_csrf` cookie), and is refused when its `Origin` names another
//! site.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use time::OffsetDateTime;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, LOCATION,
    REFERRER_POLICY, SET_COOKIE, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;

use super::error::ApiError;
use super::filters::{SESSION_COOKIE, cookie, query_pairs, read_body, with_app};
use super::session::user_for_key_cached;
use super::{web_admin, web_auth, web_pages};
use crate::app::App;
use crate::auth;
use crate::store::users::UserRow;
use crate::web::pages::{self, MessagePage, Nav};

/// The cookie that binds the sign-in forms' CSRF token to one browser
/// before there is a session.
pub(super) const PRE_SESSION_COOKIE: &str = "appliance_csrf";

/// Every page's policy: nothing from elsewhere, no inline script or style.
const CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'";

/// How long browsers may keep `/static/` files before revalidating them
/// (their `ETag` makes that a 304).
const STATIC_MAX_AGE: &str = "public, max-age=86400";

pub fn routes(app: &App) -> BoxedFilter<(Response,)> {
    let get = |path: BoxedFilter<()>| {
        path.and(warp::get())
            .and(warp::header::headers_cloned())
            .and(query_pairs())
            .and(with_app(app))
            .boxed()
    };
    let post = |path: BoxedFilter<()>| {
        path.and(warp::post())
            .and(warp::header::headers_cloned())
            .and(warp::body::stream())
            .and(with_app(app))
            .and_then(|headers: HeaderMap, body, app: App| async move {
                let form = read_form(body).await;
                Ok::<_, std::convert::Infallible>((headers, form, app))
            })
            .untuple_one()
            .boxed()
    };
    let root = get(warp::path::end().boxed()).then(|h, _q, app| async move { root(app, h) });
    let login_form =
        get(warp::path!("login").boxed()).then(|h, _q, app| async move { web_auth::form(app, h) });
    let login = post(warp::path!("login").boxed())
        .then(|h, f, app| async move { web_auth::sign_in(app, h, f).await });
    let link_form = get(warp::path!("login" / "link").boxed())
        .then(|h, q, app| async move { web_auth::link_form(app, h, q).await });
    let link = post(warp::path!("login" / "link").boxed())
        .then(|h, f, app| async move { web_auth::use_link(app, h, f).await });
    let logout = post(warp::path!("logout").boxed())
        .then(|h, f, app| async move { web_auth::sign_out(app, h, f) });
    let workspaces = get(warp::path!("workspaces").boxed())
        .then(|h, _q, app| async move { web_pages::workspaces(app, h).await });
    let workspace =
        warp::path!("workspaces" / String / String)
            .and(get(warp::any().boxed()))
            .then(|owner, name, h, _q, app| async move {
                web_pages::workspace(app, h, owner, name).await
            });
    let agent = warp::path!("agents" / String)
        .and(get(warp::any().boxed()))
        .then(|id, h, _q, app| async move { web_pages::agent(app, h, id) });
    let external_auth = get(warp::path!("external-auth").boxed())
        .then(|h, _q, app| async move { web_pages::external_auth(app, h) });
    let unlink = warp::path!("external-auth" / String / "unlink")
        .and(post(warp::any().boxed()))
        .then(|provider, h, f, app| async move { web_pages::unlink(app, h, f, provider).await });
    let gitsshkey = get(warp::path!("gitsshkey").boxed())
        .then(|h, _q, app| async move { web_pages::gitsshkey(app, h).await });
    let users = get(warp::path!("admin" / "users").boxed())
        .then(|h, _q, app| async move { web_admin::users(app, h).await });
    let create_user = post(warp::path!("admin" / "users").boxed())
        .then(|h, f, app| async move { web_admin::create_user(app, h, f).await });
    let keys = get(warp::path!("admin" / "keys").boxed())
        .then(|h, _q, app| async move { web_admin::keys(app, h).await });
    let create_key = post(warp::path!("admin" / "keys").boxed())
        .then(|h, f, app| async move { web_admin::create_key(app, h, f).await });
    let revoke = warp::path!("admin" / "keys" / String / "revoke")
        .and(post(warp::any().boxed()))
        .then(|id, h, f, app| async move { web_admin::revoke_key(app, h, f, id).await });
    let asset = warp::path!("static" / String)
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .map(|name: String, h: HeaderMap| static_asset(&name, &h));
    root.or(login_form)
        .unify()
        .or(login)
        .unify()
        .or(link_form)
        .unify()
        .or(link)
        .unify()
        .or(logout)
        .unify()
        .or(workspaces)
        .unify()
        .or(workspace)
        .unify()
        .or(agent)
        .unify()
        .or(external_auth)
        .unify()
        .or(unlink)
        .unify()
        .or(gitsshkey)
        .unify()
        .or(users)
        .unify()
        .or(create_user)
        .unify()
        .or(keys)
        .unify()
        .or(create_key)
        .unify()
        .or(revoke)
        .unify()
        .or(asset)
        .unify()
        .boxed()
}

/// `GET /`: the workspaces when signed in, else the sign-in page.
fn root(app: App, headers: HeaderMap) -> Response {
    match session(&app, &headers) {
        Ok(_) => redirect("/workspaces"),
        Err(_) => redirect("/login"),
    }
}

// ----- the session -----

/// A signed-in request: the user, and the CSRF token of their session.
pub(super) struct Session {
    pub user: UserRow,
    pub csrf: String,
}

impl Session {
    pub fn nav(&self) -> Nav {
        Nav::new(&self.user, self.csrf.clone())
    }

    pub fn is_admin(&self) -> bool {
        self.user.role == auth::Role::Admin
    }
}

/// The user the session cookie signs in, or a 401 (which pages answer with
/// a redirect to `/login`).
pub(super) fn session(app: &App, headers: &HeaderMap) -> Result<Session, ApiError> {
    let token = cookie(headers, SESSION_COOKIE);
    let now = OffsetDateTime::now_utc();
    let version = app.store.version()?;
    let user = user_for_key_cached(app, token, version, now)?;
    // user_for_key_cached accepted it, so it splits.
    let key_id = token
        .and_then(auth::split_api_key)
        .map(|(id, _)| id)
        .unwrap_or_default();
    Ok(Session {
        user,
        csrf: csrf_token(app, "session", key_id),
    })
}

/// A page only admins open: 403 for members.
pub(super) fn admin(app: &App, headers: &HeaderMap) -> Result<Session, PageError> {
    let s = session(app, headers)?;
    if !s.is_admin() {
        return Err(PageError {
            err: ApiError::forbidden(),
            nav: Some(Box::new(s.nav())),
        });
    }
    Ok(s)
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The CSRF token for `value` (a session's key id, or the pre-session
/// cookie) and what it is for.
pub(super) fn csrf_token(app: &App, purpose: &str, value: &str) -> String {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&app.csrf_key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(purpose.as_bytes());
    mac.update(&[0]);
    mac.update(value.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// A form's fields, in order.
pub(super) type Form = Vec<(String, String)>;

/// The last value of field `name`.
pub(super) fn field<'a>(form: &'a Form, name: &str) -> &'a str {
    form.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// An `application/x-www-form-urlencoded` body (at most 4 MiB); anything
/// unreadable reads as no fields, which every form then refuses.
async fn read_form(
    body: impl futures_util::Stream<Item = Result<impl bytes::Buf, warp::Error>>,
) -> Form {
    match read_body(body).await {
        Ok(bytes) => serde_urlencoded::from_bytes(&bytes).unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// Why a POST is refused before it does anything: a foreign `Origin`, or a
/// missing or wrong CSRF token (both 403).
pub(super) fn check_post(
    app: &App,
    headers: &HeaderMap,
    form: &Form,
    expected_csrf: &str,
) -> Result<(), ApiError> {
    if !same_origin(headers, &app.config.access_url) {
        return Err(ApiError::forbidden().detail(
            "This form was sent from another site; open the dashboard and send it again.",
        ));
    }
    let given = field(form, "csrf");
    if given.is_empty() || !auth::digests_equal(given.as_bytes(), expected_csrf.as_bytes()) {
        return Err(ApiError::forbidden().detail(
            "The form's security token is missing or out of date; reload the page and send it again.",
        ));
    }
    Ok(())
}

/// Whether the request's `Origin` (browsers send one with every POST) is
/// this server: the host it was sent to, or the access URL's. No `Origin`
/// passes (other clients); `null` does not.
fn same_origin(headers: &HeaderMap, access_url: &str) -> bool {
    let Some(origin) = headers
        .get(warp::http::header::ORIGIN)
        .map(|o| String::from_utf8_lossy(o.as_bytes()).into_owned())
    else {
        return true;
    };
    let host_of = |url: &str| -> Option<String> {
        let (_, rest) = url.split_once("://")?;
        let host = rest.split(['/', '?', '#']).next()?;
        (!host.is_empty()).then(|| host.to_ascii_lowercase())
    };
    let Some(origin_host) = host_of(&origin) else {
        return false;
    };
    let request_host = headers
        .get(warp::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase);
    request_host.as_deref() == Some(origin_host.as_str())
        || host_of(access_url).as_deref() == Some(origin_host.as_str())
}

// ----- responses -----

/// A page: HTML with the headers every dashboard page carries.
pub(super) fn html(status: StatusCode, body: String) -> Response {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = status;
    page_headers(resp.headers_mut());
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

fn page_headers(h: &mut HeaderMap) {
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
}

/// A rendered page, or a 500 when rendering fails.
pub(super) fn page<T: askama::Template>(
    status: StatusCode,
    page: &T,
) -> Result<Response, ApiError> {
    pages::render(page)
        .map(|body| html(status, body))
        .map_err(|e| ApiError::internal("Internal error rendering the page.", &e))
}

/// `303 See Other` to `to` (after a form, and for pages that moved).
pub(super) fn redirect(to: &'static str) -> Response {
    let mut resp = Response::new(Vec::<u8>::new().into());
    *resp.status_mut() = StatusCode::SEE_OTHER;
    page_headers(resp.headers_mut());
    resp.headers_mut()
        .insert(LOCATION, HeaderValue::from_static(to));
    resp
}

/// Adds a `Set-Cookie` for `name`: HttpOnly, SameSite=Lax, Path=/, Secure
/// when the access URL is https; `max_age` `None` is a browser-session
/// cookie, zero deletes it.
pub(super) fn set_cookie(
    resp: &mut Response,
    app: &App,
    name: &str,
    value: &str,
    max_age: Option<Duration>,
) {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={}", age.as_secs()));
    }
    if app.config.access_url.starts_with("https://") {
        c.push_str("; Secure");
    }
    if let Ok(v) = HeaderValue::from_str(&c) {
        resp.headers_mut().append(SET_COOKIE, v);
    }
}

/// A failed page: the error and, once the user is known, the header.
pub(super) struct PageError {
    pub err: ApiError,
    /// Boxed: the error travels through every page's `Result`.
    pub nav: Option<Box<Nav>>,
}

impl From<ApiError> for PageError {
    fn from(err: ApiError) -> PageError {
        PageError { err, nav: None }
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(e: crate::store::StoreError) -> PageError {
        ApiError::from(e).into()
    }
}

impl PageError {
    /// `err` on a page of a signed-in user.
    pub fn signed_in(err: impl Into<ApiError>, session: &Session) -> PageError {
        PageError {
            err: err.into(),
            nav: Some(Box::new(session.nav())),
        }
    }
}

/// A page's answer: the page, or its error as an HTML page; a 401 (no
/// session, or one that ended) is a redirect to `/login` that also clears
/// the cookie.
pub(super) fn respond_page(app: &App, result: Result<Response, PageError>) -> Response {
    let PageError { err, nav } = match result {
        Ok(resp) => return resp,
        Err(e) => e,
    };
    if err.status == StatusCode::UNAUTHORIZED {
        let mut resp = redirect("/login");
        set_cookie(&mut resp, app, SESSION_COOKIE, "", Some(Duration::ZERO));
        return resp;
    }
    let title = err.status.canonical_reason().unwrap_or("Error").to_string();
    let mut message = err.body.message.clone();
    if let Some(detail) = &err.body.detail {
        message = format!("{message} {detail}");
    }
    let next = if nav.is_some() {
        Some((
            "Back to the workspaces".to_string(),
            "/workspaces".to_string(),
        ))
    } else {
        Some(("Sign in".to_string(), "/login".to_string()))
    };
    let body = MessagePage {
        nav: nav.map(|n| *n),
        title,
        message,
        next,
    };
    match pages::render(&body) {
        Ok(text) => html(err.status, text),
        Err(e) => ApiError::internal("Internal error rendering the page.", &e).into_response(),
    }
}

use warp::Reply as _;

// ----- /static/{name} -----

fn static_asset(name: &str, headers: &HeaderMap) -> Response {
    let Some(asset) = crate::web::asset(name) else {
        return ApiError::not_found("No such file.").into_response();
    };
    let fresh = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == asset.etag || t.trim() == "*")
        });
    let mut resp = if fresh {
        let mut r = Response::new(Vec::<u8>::new().into());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(asset.body.into());
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
        r
    };
    let h = resp.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static(STATIC_MAX_AGE));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(v) = HeaderValue::from_str(asset.etag) {
        h.insert(ETAG, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                warp::http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        h
    }

    #[test]
    fn origins() {
        let access = "https://dash.example:8443";
        assert!(same_origin(&headers(&[("host", "a:1")]), access));
        assert!(same_origin(
            &headers(&[("host", "a:1"), ("origin", "http://A:1")]),
            access
        ));
        assert!(same_origin(
            &headers(&[("host", "a:1"), ("origin", "https://dash.example:8443")]),
            access
        ));
        assert!(!same_origin(
            &headers(&[("host", "a:1"), ("origin", "http://evil:1")]),
            access
        ));
        assert!(!same_origin(
            &headers(&[("host", "a:1"), ("origin", "null")]),
            access
        ));
    }

    #[test]
    fn cookies() {
        let h = headers(&[("cookie", "a=1; coder_session_token=k ; b=2")]);
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("k"));
        assert_eq!(cookie(&h, "c"), None);
        assert_eq!(cookie(&headers(&[("cookie", "a=")]), "a"), None);
    }
}
