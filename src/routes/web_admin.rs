//! The dashboard's admin pages: users (list, create) and API keys (list,
//! create — the key shown once —, revoke), with the same store functions and
//! rules as `appliance user` and `appliance token`. Members get a 403 page.

use time::OffsetDateTime;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;

use super::error::ApiError;
use super::web::{
    Form, PageError, Session, admin, check_post, field, page, redirect, respond_page,
};
use crate::app::App;
use crate::auth::{self, Role};
use crate::store::{self, StoreError};
use crate::web::pages::{KeysPage, UsersPage};
use crate::{config, gitsshkey};

/// The longest lifetime the key form accepts.
const MAX_KEY_LIFETIME: std::time::Duration = std::time::Duration::from_secs(3650 * 24 * 3600);

/// `GET /admin/users`.
pub(super) async fn users(app: App, headers: HeaderMap) -> Response {
    let r = async {
        let s = admin(&app, &headers)?;
        users_page(&app, &s, StatusCode::OK, |_| {}).await
    }
    .await;
    respond_page(&app, r)
}

async fn users_page(
    app: &App,
    s: &Session,
    status: StatusCode,
    fill: impl FnOnce(&mut UsersPage),
) -> Result<Response, PageError> {
    let users = app
        .store
        .read_async(store::users::list_users)
        .await
        .map_err(|e| PageError::signed_in(e, s))?;
    let mut body = UsersPage::new(s.nav(), &users);
    fill(&mut body);
    page(status, &body).map_err(|e| PageError::signed_in(e, s))
}

/// `POST /admin/users`: name, email (optional), role.
pub(super) async fn create_user(app: App, headers: HeaderMap, form: Form) -> Response {
    let r = create_user_inner(&app, &headers, &form).await;
    respond_page(&app, r)
}

async fn create_user_inner(
    app: &App,
    headers: &HeaderMap,
    form: &Form,
) -> Result<Response, PageError> {
    let s = admin(app, headers)?;
    check_post(app, headers, form, &s.csrf).map_err(|e| PageError::signed_in(e, &s))?;
    let name = field(form, "name").trim().to_string();
    let email = field(form, "email").trim().to_string();
    let role_text = field(form, "role");
    let role = if role_text.is_empty() {
        Some(Role::Member)
    } else {
        Role::parse(role_text)
    };
    let refuse = |status: StatusCode, why: String| {
        let (name, email) = (name.clone(), email.clone());
        let is_admin = role == Some(Role::Admin);
        users_page(app, &s, status, move |p| {
            p.error = Some(why);
            p.form_name = name;
            p.form_email = email;
            p.form_admin = is_admin;
        })
    };
    if !auth::valid_username(&name) {
        let why = format!(
            "\"{name}\" is not a valid username: use letters, digits and single hyphens, at most 32 characters."
        );
        return refuse(StatusCode::BAD_REQUEST, why).await;
    }
    if !email.is_empty() && !auth::valid_email(&email) {
        let why =
            format!("\"{email}\" is not an email address: use name@domain, or leave it empty.");
        return refuse(StatusCode::BAD_REQUEST, why).await;
    }
    let Some(role) = role else {
        let why = "The role is admin or member.".to_string();
        return refuse(StatusCode::BAD_REQUEST, why).await;
    };
    let algorithm = app.config.ssh_keygen_algorithm;
    let pair = tokio::task::spawn_blocking(move || gitsshkey::generate(algorithm))
        .await
        .map_err(|e| ApiError::internal("Internal error generating git SSH key.", &e))
        .and_then(|r| {
            r.map_err(|e| ApiError::internal("Internal error generating git SSH key.", &e))
        })
        .map_err(|e| PageError::signed_in(e, &s))?;
    let now = store::now();
    let (new_name, new_email) = (name.clone(), email.clone());
    let created = app
        .store
        .write_async(move |tx| {
            let user = store::users::insert_user(tx, &new_name, &new_email, role, now)?;
            store::users::put_gitsshkey(
                tx,
                user.id,
                &pair.private_key,
                &pair.public_key,
                now,
                false,
            )?;
            Ok(user)
        })
        .await;
    match created {
        Ok(user) => {
            tracing::info!(admin = %s.user.username, user = %user.username, role = %user.role, "created a user from the dashboard");
            Ok(redirect("/admin/users"))
        }
        Err(StoreError::Conflict(why)) => {
            refuse(StatusCode::CONFLICT, format!("{why}: pick another name.")).await
        }
        Err(e) => Err(PageError::signed_in(e, &s)),
    }
}

/// `GET /admin/keys`.
pub(super) async fn keys(app: App, headers: HeaderMap) -> Response {
    let r = async {
        let s = admin(&app, &headers)?;
        keys_page(&app, &s, StatusCode::OK, |_| {}).await
    }
    .await;
    respond_page(&app, r)
}

async fn keys_page(
    app: &App,
    s: &Session,
    status: StatusCode,
    fill: impl FnOnce(&mut KeysPage),
) -> Result<Response, PageError> {
    let (keys, users) = app
        .store
        .read_async(|c| {
            Ok((
                store::users::list_api_keys(c, None)?,
                store::users::list_users(c)?,
            ))
        })
        .await
        .map_err(|e| PageError::signed_in(e, s))?;
    let mut body = KeysPage::new(s.nav(), &keys, &users, OffsetDateTime::now_utc());
    fill(&mut body);
    page(status, &body).map_err(|e| PageError::signed_in(e, s))
}

/// `POST /admin/keys`: user, name, lifetime; answers the key list with the
/// new key, shown this once.
pub(super) async fn create_key(app: App, headers: HeaderMap, form: Form) -> Response {
    let r = create_key_inner(&app, &headers, &form).await;
    respond_page(&app, r)
}

async fn create_key_inner(
    app: &App,
    headers: &HeaderMap,
    form: &Form,
) -> Result<Response, PageError> {
    let s = admin(app, headers)?;
    check_post(app, headers, form, &s.csrf).map_err(|e| PageError::signed_in(e, &s))?;
    let username = field(form, "user").trim().to_string();
    let name = field(form, "name").trim().to_string();
    let lifetime_text = match field(form, "lifetime").trim() {
        "" => "30d",
        t => t,
    };
    let refuse =
        |status: StatusCode, why: String| keys_page(app, &s, status, move |p| p.error = Some(why));
    let lifetime = match config::parse_duration(lifetime_text) {
        Ok(d) if !d.is_zero() && d <= MAX_KEY_LIFETIME => d,
        _ => {
            let why = format!(
                "\"{lifetime_text}\" is not a lifetime: use e.g. 12h or 30d, at most 3650d."
            );
            return refuse(StatusCode::BAD_REQUEST, why).await;
        }
    };
    if name.chars().count() > 64 {
        let why = "The name is at most 64 characters.".to_string();
        return refuse(StatusCode::BAD_REQUEST, why).await;
    }
    let now = store::now();
    let expires_at = now + lifetime;
    let key = auth::new_api_key();
    let (id, secret_hash) = (key.id.clone(), key.hashed_secret);
    let (lookup, key_name) = (username.clone(), name.clone());
    let user = app
        .store
        .write_async(move |tx| {
            let Some(user) = store::users::user_by_name(tx, &lookup)? else {
                return Ok(None);
            };
            store::users::insert_api_key(
                tx,
                &id,
                &secret_hash,
                user.id,
                &key_name,
                now,
                expires_at,
            )?;
            Ok(Some(user))
        })
        .await
        .map_err(|e| PageError::signed_in(e, &s))?;
    let Some(user) = user else {
        let why = format!("There is no user \"{username}\".");
        return refuse(StatusCode::BAD_REQUEST, why).await;
    };
    tracing::info!(admin = %s.user.username, user = %user.username, key_id = %key.id, "created an API key from the dashboard");
    let shown = (key.key, user.username);
    keys_page(app, &s, StatusCode::OK, move |p| p.new_key = Some(shown)).await
}

/// `POST /admin/keys/{id}/revoke`: a running server refuses the key from
/// the next request (the session it signs in ends).
pub(super) async fn revoke_key(app: App, headers: HeaderMap, form: Form, id: String) -> Response {
    let r = revoke_key_inner(&app, &headers, &form, id).await;
    respond_page(&app, r)
}

async fn revoke_key_inner(
    app: &App,
    headers: &HeaderMap,
    form: &Form,
    id: String,
) -> Result<Response, PageError> {
    let s = admin(app, headers)?;
    check_post(app, headers, form, &s.csrf).map_err(|e| PageError::signed_in(e, &s))?;
    let now = OffsetDateTime::now_utc();
    let revoked = app
        .store
        .write_async(move |tx| store::users::revoke_api_key(tx, &id, now))
        .await
        .map_err(|e| PageError::signed_in(e, &s))?;
    let Some((key, already)) = revoked else {
        return Err(PageError::signed_in(
            ApiError::not_found("There is no API key with that id."),
            &s,
        ));
    };
    if !already {
        tracing::info!(admin = %s.user.username, user = %key.username, key_id = %key.id, "revoked an API key from the dashboard");
    }
    Ok(redirect("/admin/keys"))
}
