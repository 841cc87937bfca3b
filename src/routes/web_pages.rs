//! The dashboard's pages for every signed-in user: the workspaces they may
//! read (owners their own, admins all: `auth::may_read`, as the API), a
//! workspace, an agent, their external-auth links and their git SSH key.
//! What is not theirs answers 404, as the API does.

use time::OffsetDateTime;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;

use super::agents::{agent_data, workspace_agent};
use super::error::ApiError;
use super::session::parse_uuid_param;
use super::web::{Form, PageError, Session, check_post, page, redirect, respond_page, session};
use crate::agent_start::{self, AgentStart};
use crate::app::App;
use crate::store::workspaces::Which;
use crate::web::pages::{
    AgentContext, AgentPage, ExternalAuthPage, GitSshKeyPage, ProviderState, WorkspacePage,
    WorkspacesPage,
};
use crate::{auth, gitsshkey, manifest, store};

/// How many builds the workspace page lists (the newest).
const BUILDS_SHOWN: usize = 50;

fn workspace_not_found() -> ApiError {
    ApiError::not_found("Workspace doesn't exist, or you do not have access to it.")
}

fn agent_not_found() -> ApiError {
    ApiError::not_found("Agent doesn't exist with that id, or you do not have access to it.")
}

/// `GET /workspaces`: one row per workspace, agents counted by status.
pub(super) async fn workspaces(app: App, headers: HeaderMap) -> Response {
    let r = workspaces_inner(&app, &headers).await;
    respond_page(&app, r)
}

async fn workspaces_inner(app: &App, headers: &HeaderMap) -> Result<Response, PageError> {
    let s = session(app, headers)?;
    let which = if s.is_admin() {
        Which::All
    } else {
        Which::OwnedBy(s.user.id)
    };
    let overview = app
        .store
        .read_async(move |c| store::workspaces::overview(c, which))
        .await
        .map_err(|e| PageError::signed_in(e, &s))?;
    let now = OffsetDateTime::now_utc();
    let body = WorkspacesPage::new(
        s.nav(),
        &overview,
        now,
        app.config.agent.inactive_disconnect_timeout,
    );
    Ok(page(StatusCode::OK, &body)?)
}

/// `GET /workspaces/{owner}/{name}`: builds, resources, agents.
pub(super) async fn workspace(
    app: App,
    headers: HeaderMap,
    owner: String,
    name: String,
) -> Response {
    let r = workspace_inner(&app, &headers, &owner, &name).await;
    respond_page(&app, r)
}

async fn workspace_inner(
    app: &App,
    headers: &HeaderMap,
    owner: &str,
    name: &str,
) -> Result<Response, PageError> {
    let s = session(app, headers)?;
    let decode = |v: &str| {
        percent_encoding::percent_decode_str(v)
            .decode_utf8_lossy()
            .into_owned()
    };
    let (owner, name) = (decode(owner), decode(name));
    let (user_id, role) = (s.user.id, s.user.role);
    let found = app
        .store
        .read_async(move |c| {
            let Some(owner) = store::users::user_by_name(c, &owner)? else {
                return Ok(None);
            };
            let Some(ws) = store::workspaces::live_workspace(c, owner.id, &name)? else {
                return Ok(None);
            };
            if !auth::may_read(role, user_id, ws.owner_id) {
                return Ok(None);
            }
            let Some(overview) = store::workspaces::overview(c, Which::One(ws.id))?.pop() else {
                return Ok(None);
            };
            let builds = store::workspaces::builds(c, ws.id, BUILDS_SHOWN)?;
            let resources = match &overview.latest_build {
                Some(b) => store::workspaces::resources(c, b.id)?,
                None => Vec::new(),
            };
            Ok(Some((overview, builds, resources)))
        })
        .await
        .map_err(|e| PageError::signed_in(e, &s))?;
    let Some((overview, builds, resources)) = found else {
        return Err(PageError::signed_in(workspace_not_found(), &s));
    };
    let body = WorkspacePage::new(
        s.nav(),
        &overview,
        &builds,
        &resources,
        OffsetDateTime::now_utc(),
        app.config.agent.inactive_disconnect_timeout,
    );
    Ok(page(StatusCode::OK, &body)?)
}

/// `GET /agents/{id}`: what `GET /api/v2/workspaceagents/{id}` says, laid
/// out, with live logs, the start lines and the terminal.
pub(super) fn agent(app: App, headers: HeaderMap, raw_id: String) -> Response {
    let r = agent_inner(&app, &headers, &raw_id);
    respond_page(&app, r)
}

fn agent_inner(app: &App, headers: &HeaderMap, raw_id: &str) -> Result<Response, PageError> {
    let s = session(app, headers)?;
    let Ok(id) = parse_uuid_param(raw_id) else {
        return Err(PageError::signed_in(agent_not_found(), &s));
    };
    let (user_id, role) = (s.user.id, s.user.role);
    let now = OffsetDateTime::now_utc();
    // One short read by key, as the API's agent GET.
    let data = app
        .store
        .read_inline(|c| match store::agents::live_agent(c, id)? {
            Some(a) if auth::may_read(role, user_id, a.owner_id) => Ok(Some(agent_data(c, a)?)),
            _ => Ok(None),
        })
        .map_err(|e| PageError::signed_in(e, &s))?;
    let Some(data) = data else {
        return Err(PageError::signed_in(agent_not_found(), &s));
    };
    let row = &data.agent;
    let lines = agent_start::lines(
        &app.config.access_url,
        &AgentStart {
            name: &row.name,
            auth: manifest::AgentAuth::parse(&row.auth).unwrap_or(manifest::AgentAuth::Token),
            os: &row.operating_system,
            arch: &row.architecture,
            token: None,
        },
    );
    let ctx = AgentContext {
        owner: row.owner_name.clone(),
        workspace: row.workspace_name.clone(),
        start_shell: lines.shell,
        start_cloud_init: lines.cloud_init,
    };
    let agent = workspace_agent(data, now, app);
    Ok(page(StatusCode::OK, &AgentPage::new(s.nav(), &agent, ctx))?)
}

/// `GET /external-auth`: every configured provider, linked or not.
pub(super) fn external_auth(app: App, headers: HeaderMap) -> Response {
    let r = external_auth_inner(&app, &headers);
    respond_page(&app, r)
}

fn external_auth_inner(app: &App, headers: &HeaderMap) -> Result<Response, PageError> {
    let s = session(app, headers)?;
    let user_id = s.user.id;
    let links = app
        .store
        .read_inline(|c| store::external_auth::links(c, Some(user_id)))
        .map_err(|e| PageError::signed_in(e, &s))?;
    let providers: Vec<ProviderState<'_>> = app
        .external_auth
        .iter()
        .map(|p| ProviderState {
            id: &p.id,
            display_name: &p.display_name,
            link: links
                .iter()
                .find(|l| l.provider_id == p.id)
                .map(|l| (l.created_at, l.expires_at)),
        })
        .collect();
    Ok(page(
        StatusCode::OK,
        &ExternalAuthPage::new(s.nav(), &providers),
    )?)
}

/// `POST /external-auth/{provider}/unlink`: removes the user's link.
pub(super) async fn unlink(app: App, headers: HeaderMap, form: Form, provider: String) -> Response {
    let r = unlink_inner(&app, &headers, &form, provider).await;
    respond_page(&app, r)
}

async fn unlink_inner(
    app: &App,
    headers: &HeaderMap,
    form: &Form,
    provider: String,
) -> Result<Response, PageError> {
    let s = session(app, headers)?;
    check_post(app, headers, form, &s.csrf).map_err(|e| PageError::signed_in(e, &s))?;
    let provider = percent_encoding::percent_decode_str(&provider)
        .decode_utf8_lossy()
        .into_owned();
    let user_id = s.user.id;
    let removed = app
        .store
        .write_async({
            let provider = provider.clone();
            move |tx| store::external_auth::delete_link(tx, &provider, user_id)
        })
        .await
        .map_err(|e| PageError::signed_in(e, &s))?;
    if removed {
        tracing::info!(user = %s.user.username, %provider, "unlinked an external-auth provider from the dashboard");
    }
    Ok(redirect("/external-auth"))
}

/// `GET /gitsshkey`: the user's public key, made on first use.
pub(super) async fn gitsshkey(app: App, headers: HeaderMap) -> Response {
    let r = gitsshkey_inner(&app, &headers).await;
    respond_page(&app, r)
}

async fn gitsshkey_inner(app: &App, headers: &HeaderMap) -> Result<Response, PageError> {
    let s = session(app, headers)?;
    let key = own_gitsshkey(app, &s)
        .await
        .map_err(|e| PageError::signed_in(e, &s))?;
    Ok(page(
        StatusCode::OK,
        &GitSshKeyPage {
            nav: s.nav(),
            public_key: key.public_key.trim_end().to_string(),
            updated: crate::web::short_time(&key.updated_at),
        },
    )?)
}

/// The user's key pair; one is made (off the executor) for a user who has
/// none, as `GET /me/gitsshkey` does.
async fn own_gitsshkey(app: &App, s: &Session) -> Result<store::users::GitSshKeyRow, ApiError> {
    let user_id = s.user.id;
    if let Some(key) = app
        .store
        .read_inline(|c| store::users::gitsshkey(c, user_id))?
    {
        return Ok(key);
    }
    let algorithm = app.config.ssh_keygen_algorithm;
    let pair = tokio::task::spawn_blocking(move || gitsshkey::generate(algorithm))
        .await
        .map_err(|e| ApiError::internal("Internal error generating git SSH key.", &e))?
        .map_err(|e| ApiError::internal("Internal error generating git SSH key.", &e))?;
    let now = store::now();
    Ok(app
        .store
        .write_async(move |tx| {
            store::users::put_gitsshkey(
                tx,
                user_id,
                &pair.private_key,
                &pair.public_key,
                now,
                false,
            )
        })
        .await?)
}
