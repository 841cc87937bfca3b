//! The dashboard's pages: one askama template per struct, and the plain
//! values each is built from. Constructors take store rows and sdk types and
//! do all the formatting, so the templates only place text.
//!
//! Element ids and classes are the dashboard contract's (the browser tests
//! find them): change them only with it.

use std::time::Duration;

use askama::Template;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{short_time, short_time_or_never};
use crate::agent_status::{self, Status};
use crate::auth::Role;
use crate::sdk;
use crate::store::users::{ApiKeyInfo, UserRow};
use crate::store::workspaces::{AgentBrief, BuildRow, ResourceRow, WorkspaceOverview};

/// Renders a page; askama's errors are only ever a failed `Display` of a
/// value, which these pages do not have, but the caller still answers 500.
pub fn render<T: Template>(page: &T) -> Result<String, askama::Error> {
    page.render()
}

/// The header of every signed-in page: who is signed in, what they may
/// open, and the CSRF token every form of the page carries.
#[derive(Debug, Clone)]
pub struct Nav {
    pub username: String,
    pub is_admin: bool,
    pub csrf: String,
}

impl Nav {
    pub fn new(user: &UserRow, csrf: String) -> Nav {
        Nav {
            username: user.username.clone(),
            is_admin: user.role == Role::Admin,
            csrf,
        }
    }
}

// ----- signing in -----

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    /// The pre-session CSRF token (bound to the `appliance_csrf` cookie).
    pub csrf: String,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "login_link.html")]
pub struct LoginLinkPage {
    pub csrf: String,
    pub token: String,
    pub username: String,
}

/// A page that says one thing: an error (403, 404, 410, ...) or a notice.
#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub nav: Option<Nav>,
    pub title: String,
    pub message: String,
    /// Where to go from here (a link's text and target), if anywhere.
    pub next: Option<(String, String)>,
}

// ----- workspaces -----

/// Agents counted by status: up, coming up, down (`timeout` counts as down).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub connected: usize,
    pub connecting: usize,
    pub disconnected: usize,
}

impl Counts {
    fn add(&mut self, status: Status) {
        match status {
            Status::Connected => self.connected += 1,
            Status::Connecting => self.connecting += 1,
            Status::Disconnected | Status::Timeout => self.disconnected += 1,
        }
    }

    /// `2 connected, 1 connecting, 0 disconnected`.
    pub fn summary(&self) -> String {
        format!(
            "{} connected, {} connecting, {} disconnected",
            self.connected, self.connecting, self.disconnected
        )
    }

    /// A class for the row: `up` (all connected), `down` (none connected
    /// and some down), `partial`, or `none` (no agents).
    pub fn class(&self) -> &'static str {
        let total = self.connected + self.connecting + self.disconnected;
        if total == 0 {
            "none"
        } else if self.connected == total {
            "up"
        } else if self.connected == 0 && self.disconnected > 0 {
            "down"
        } else {
            "partial"
        }
    }
}

/// One agent in a list, with its status as the API computes it.
#[derive(Debug, Clone)]
pub struct AgentLine {
    pub id: Uuid,
    pub name: String,
    pub child: bool,
    pub status: &'static str,
    pub lifecycle: String,
    /// `healthy`, or why not.
    pub health: String,
    pub version: String,
    pub platform: String,
    pub last_seen: String,
    status_value: Status,
}

impl AgentLine {
    fn new(a: &AgentBrief, now: OffsetDateTime, inactive: Duration) -> AgentLine {
        let timestamps = agent_status::Timestamps {
            created_at: a.created_at,
            first_connected_at: a.first_connected_at,
            last_connected_at: a.last_connected_at,
            disconnected_at: a.disconnected_at,
            connection_timeout_seconds: a.connection_timeout_seconds,
        };
        let (status, _) = agent_status::status(&timestamps, now, inactive);
        AgentLine {
            id: a.id,
            name: a.name.clone(),
            child: a.parent_id.is_some(),
            status: status.as_str(),
            lifecycle: a.lifecycle_state.clone(),
            health: health_text(agent_status::health(status, &a.lifecycle_state)),
            version: a.version.clone(),
            platform: platform(&a.operating_system, &a.architecture),
            last_seen: short_time_or_never(a.last_connected_at.as_ref()),
            status_value: status,
        }
    }
}

fn health_text(h: Result<(), &str>) -> String {
    match h {
        Ok(()) => "healthy".to_string(),
        Err(reason) => reason.to_string(),
    }
}

fn platform(os: &str, arch: &str) -> String {
    match (os.is_empty(), arch.is_empty()) {
        (true, true) => String::new(),
        (false, true) => os.to_string(),
        (true, false) => arch.to_string(),
        (false, false) => format!("{os}/{arch}"),
    }
}

/// A build as the pages show it: `#3 start`.
fn build_label(b: &BuildRow) -> String {
    format!("#{} {}", b.number, b.transition)
}

/// `/workspaces/OWNER/NAME`.
fn workspace_href(owner: &str, name: &str) -> String {
    format!("/workspaces/{owner}/{name}")
}

pub struct WorkspaceLine {
    pub owner: String,
    pub name: String,
    pub href: String,
    pub build: String,
    pub build_status: String,
    pub counts: Counts,
}

#[derive(Template)]
#[template(path = "workspaces.html")]
pub struct WorkspacesPage {
    pub nav: Nav,
    pub workspaces: Vec<WorkspaceLine>,
    pub totals: Counts,
}

impl WorkspacesPage {
    pub fn new(
        nav: Nav,
        overview: &[WorkspaceOverview],
        now: OffsetDateTime,
        inactive: Duration,
    ) -> WorkspacesPage {
        let mut totals = Counts::default();
        let workspaces = overview
            .iter()
            .map(|o| {
                let mut counts = Counts::default();
                for a in &o.agents {
                    let timestamps = agent_status::Timestamps {
                        created_at: a.created_at,
                        first_connected_at: a.first_connected_at,
                        last_connected_at: a.last_connected_at,
                        disconnected_at: a.disconnected_at,
                        connection_timeout_seconds: a.connection_timeout_seconds,
                    };
                    let status = agent_status::status(&timestamps, now, inactive).0;
                    counts.add(status);
                    totals.add(status);
                }
                WorkspaceLine {
                    owner: o.workspace.owner_name.clone(),
                    name: o.workspace.name.clone(),
                    href: workspace_href(&o.workspace.owner_name, &o.workspace.name),
                    build: o.latest_build.as_ref().map(build_label).unwrap_or_default(),
                    build_status: o
                        .latest_build
                        .as_ref()
                        .map(|b| b.job_status.clone())
                        .unwrap_or_default(),
                    counts,
                }
            })
            .collect();
        WorkspacesPage {
            nav,
            workspaces,
            totals,
        }
    }
}

pub struct BuildLine {
    pub number: i64,
    pub transition: String,
    pub status: String,
    pub error: String,
    pub created: String,
    pub claim: bool,
}

pub struct ResourceBlock {
    pub name: String,
    pub kind: String,
    pub instance_id: String,
    pub agents: Vec<AgentLine>,
}

#[derive(Template)]
#[template(path = "workspace.html")]
pub struct WorkspacePage {
    pub nav: Nav,
    pub owner: String,
    pub name: String,
    pub builds: Vec<BuildLine>,
    pub resources: Vec<ResourceBlock>,
    pub counts: Counts,
}

impl WorkspacePage {
    pub fn new(
        nav: Nav,
        overview: &WorkspaceOverview,
        builds: &[BuildRow],
        resources: &[ResourceRow],
        now: OffsetDateTime,
        inactive: Duration,
    ) -> WorkspacePage {
        let mut counts = Counts::default();
        let lines: Vec<AgentLine> = overview
            .agents
            .iter()
            .map(|a| {
                let line = AgentLine::new(a, now, inactive);
                counts.add(line.status_value);
                line
            })
            .collect();
        let resources = resources
            .iter()
            .map(|r| ResourceBlock {
                name: r.name.clone(),
                kind: r.kind.clone(),
                instance_id: r.instance_id.clone().unwrap_or_default(),
                agents: overview
                    .agents
                    .iter()
                    .zip(&lines)
                    .filter(|(a, _)| a.resource_id == r.id)
                    .map(|(_, l)| l.clone())
                    .collect(),
            })
            .collect();
        WorkspacePage {
            nav,
            owner: overview.workspace.owner_name.clone(),
            name: overview.workspace.name.clone(),
            builds: builds
                .iter()
                .map(|b| BuildLine {
                    number: b.number,
                    transition: b.transition.clone(),
                    status: b.job_status.clone(),
                    error: b.job_error.clone().unwrap_or_default(),
                    created: short_time(&b.created_at),
                    claim: b.prebuild_claim,
                })
                .collect(),
            resources,
            counts,
        }
    }
}

// ----- one agent -----

pub struct AppStatusLine {
    pub state: String,
    pub message: String,
    pub at: String,
}

pub struct AppLine {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    /// The URL or the command it opens.
    pub target: String,
    pub health: String,
    /// The newest first, at most [`STATUSES_SHOWN`].
    pub statuses: Vec<AppStatusLine>,
}

/// How many of an app's latest statuses the agent page shows.
pub const STATUSES_SHOWN: usize = 3;

pub struct ScriptLine {
    pub name: String,
    pub when: String,
    pub blocks_login: bool,
    pub timeout: String,
    pub exit_code: String,
    pub status: String,
    pub log_source_id: Uuid,
}

pub struct SourceLine {
    pub id: Uuid,
    pub name: String,
}

#[derive(Template)]
#[template(path = "agent.html")]
pub struct AgentPage {
    pub nav: Nav,
    pub id: Uuid,
    pub name: String,
    pub owner: String,
    pub workspace: String,
    pub workspace_href: String,
    pub status: &'static str,
    pub lifecycle: String,
    pub healthy: bool,
    pub health: String,
    pub version: String,
    pub api_version: String,
    pub last_seen: String,
    pub platform: String,
    pub directory: String,
    pub apps: Vec<AppLine>,
    pub scripts: Vec<ScriptLine>,
    pub sources: Vec<SourceLine>,
    pub logs_overflowed: bool,
    pub start_shell: String,
    pub start_cloud_init: String,
    pub terminal_bundled: bool,
    pub terminal_missing: &'static str,
}

/// What the agent page needs beside the agent itself.
pub struct AgentContext {
    pub owner: String,
    pub workspace: String,
    pub start_shell: String,
    pub start_cloud_init: String,
}

impl AgentPage {
    pub fn new(nav: Nav, a: &sdk::WorkspaceAgent, ctx: AgentContext) -> AgentPage {
        let apps = a
            .apps
            .iter()
            .map(|app| AppLine {
                id: app.id,
                name: if app.display_name.is_empty() {
                    app.slug.clone()
                } else {
                    app.display_name.clone()
                },
                slug: app.slug.clone(),
                target: if app.url.is_empty() {
                    app.command.clone()
                } else {
                    app.url.clone()
                },
                health: app.health.clone(),
                statuses: app
                    .statuses
                    .iter()
                    .take(STATUSES_SHOWN)
                    .map(|s| AppStatusLine {
                        state: s.state.clone(),
                        message: s.message.clone(),
                        at: short_time(&s.created_at),
                    })
                    .collect(),
            })
            .collect();
        let scripts = a
            .scripts
            .iter()
            .map(|s| {
                let mut when = Vec::new();
                if s.run_on_start {
                    when.push("start".to_string());
                }
                if s.run_on_stop {
                    when.push("stop".to_string());
                }
                if !s.cron.is_empty() {
                    when.push(format!("cron {}", s.cron));
                }
                ScriptLine {
                    name: s.display_name.clone(),
                    when: when.join(", "),
                    blocks_login: s.start_blocks_login,
                    timeout: match s.timeout / 1_000_000_000 {
                        0 => "none".to_string(),
                        secs => format!("{secs}s"),
                    },
                    exit_code: s.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                    status: s.status.clone().unwrap_or_else(|| "not run".to_string()),
                    log_source_id: s.log_source_id,
                }
            })
            .collect();
        AgentPage {
            nav,
            id: a.id,
            name: a.name.clone(),
            workspace_href: workspace_href(&ctx.owner, &ctx.workspace),
            owner: ctx.owner,
            workspace: ctx.workspace,
            status: a.status,
            lifecycle: a.lifecycle_state.clone(),
            healthy: a.health.healthy,
            health: match a.health.reason {
                None => "healthy".to_string(),
                Some(r) => r.to_string(),
            },
            version: a.version.clone(),
            api_version: a.api_version.clone(),
            last_seen: short_time_or_never(a.last_connected_at.as_ref()),
            platform: platform(&a.operating_system, &a.architecture),
            directory: if a.expanded_directory.is_empty() {
                a.directory.clone()
            } else {
                a.expanded_directory.clone()
            },
            apps,
            scripts,
            sources: a
                .log_sources
                .iter()
                .map(|s| SourceLine {
                    id: s.id,
                    name: s.display_name.clone(),
                })
                .collect(),
            logs_overflowed: a.logs_overflowed,
            start_shell: ctx.start_shell,
            start_cloud_init: ctx.start_cloud_init,
            terminal_bundled: super::terminal::BUNDLED,
            terminal_missing: super::terminal::MISSING,
        }
    }
}

// ----- the user's own settings -----

pub struct ProviderLine {
    pub id: String,
    pub name: String,
    pub linked: bool,
    pub linked_at: String,
    pub expires: String,
}

#[derive(Template)]
#[template(path = "external_auth.html")]
pub struct ExternalAuthPage {
    pub nav: Nav,
    pub providers: Vec<ProviderLine>,
}

/// A configured provider and the user's link to it, if any.
pub struct ProviderState<'a> {
    pub id: &'a str,
    pub display_name: &'a str,
    /// (linked at, expires at).
    pub link: Option<(OffsetDateTime, Option<OffsetDateTime>)>,
}

impl ExternalAuthPage {
    pub fn new(nav: Nav, providers: &[ProviderState<'_>]) -> ExternalAuthPage {
        ExternalAuthPage {
            nav,
            providers: providers
                .iter()
                .map(|p| ProviderLine {
                    id: p.id.to_string(),
                    name: p.display_name.to_string(),
                    linked: p.link.is_some(),
                    linked_at: p.link.map(|(at, _)| short_time(&at)).unwrap_or_default(),
                    expires: match p.link {
                        Some((_, Some(exp))) => short_time(&exp),
                        Some((_, None)) => "never".to_string(),
                        None => String::new(),
                    },
                })
                .collect(),
        }
    }
}

#[derive(Template)]
#[template(path = "gitsshkey.html")]
pub struct GitSshKeyPage {
    pub nav: Nav,
    pub public_key: String,
    pub updated: String,
}

// ----- admin -----

pub struct UserLine {
    pub username: String,
    pub email: String,
    pub role: &'static str,
    pub created: String,
}

#[derive(Template)]
#[template(path = "admin_users.html")]
pub struct UsersPage {
    pub nav: Nav,
    pub users: Vec<UserLine>,
    pub error: Option<String>,
    /// What the create form held when it was refused.
    pub form_name: String,
    pub form_email: String,
    pub form_admin: bool,
    /// The user just created, if any.
    pub created: Option<String>,
}

impl UsersPage {
    pub fn new(nav: Nav, users: &[UserRow]) -> UsersPage {
        UsersPage {
            nav,
            users: users
                .iter()
                .map(|u| UserLine {
                    username: u.username.clone(),
                    email: u.email.clone(),
                    role: u.role.as_str(),
                    created: short_time(&u.created_at),
                })
                .collect(),
            error: None,
            form_name: String::new(),
            form_email: String::new(),
            form_admin: false,
            created: None,
        }
    }
}

pub struct KeyLine {
    pub id: String,
    pub username: String,
    pub name: String,
    pub created: String,
    pub expires: String,
    /// `active`, `expired` or `revoked`.
    pub status: &'static str,
}

#[derive(Template)]
#[template(path = "admin_keys.html")]
pub struct KeysPage {
    pub nav: Nav,
    pub keys: Vec<KeyLine>,
    pub usernames: Vec<String>,
    pub error: Option<String>,
    /// A key just created: (the whole key, shown this once; its user).
    pub new_key: Option<(String, String)>,
}

/// `active`, `expired` or `revoked` (revoked wins), as `appliance token list`.
pub fn key_status(key: &ApiKeyInfo, now: OffsetDateTime) -> &'static str {
    if key.revoked_at.is_some() {
        "revoked"
    } else if key.expires_at <= now {
        "expired"
    } else {
        "active"
    }
}

impl KeysPage {
    pub fn new(nav: Nav, keys: &[ApiKeyInfo], users: &[UserRow], now: OffsetDateTime) -> KeysPage {
        KeysPage {
            nav,
            keys: keys
                .iter()
                .map(|k| KeyLine {
                    id: k.id.clone(),
                    username: k.username.clone(),
                    name: k.name.clone(),
                    created: short_time(&k.created_at),
                    expires: short_time(&k.expires_at),
                    status: key_status(k, now),
                })
                .collect(),
            usernames: users.iter().map(|u| u.username.clone()).collect(),
            error: None,
            new_key: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn nav() -> Nav {
        Nav {
            username: "alice".into(),
            is_admin: false,
            csrf: "c<s>rf".into(),
        }
    }

    #[test]
    fn counts_summarise_as_the_contract_says() {
        let mut c = Counts::default();
        for s in [
            Status::Connected,
            Status::Connected,
            Status::Connecting,
            Status::Timeout,
        ] {
            c.add(s);
        }
        assert_eq!(c.summary(), "2 connected, 1 connecting, 1 disconnected");
        assert_eq!(c.class(), "partial");
        assert_eq!(Counts::default().class(), "none");
    }

    #[test]
    fn text_is_escaped() {
        let page = MessagePage {
            nav: Some(nav()),
            title: "<b>".into(),
            message: "\"x\" & 'y'".into(),
            next: None,
        };
        let html = render(&page).expect("renders");
        assert!(
            html.contains("&#60;b&#62;") || html.contains("&lt;b&gt;"),
            "{html}"
        );
        assert!(!html.contains("<b>"));
        assert!(!html.contains("c<s>rf"));
    }

    #[test]
    fn a_workspace_list_renders_its_hooks() {
        let now = datetime!(2026-08-12 10:00 UTC);
        let page = WorkspacesPage::new(nav(), &[], now, Duration::from_secs(30));
        let html = render(&page).expect("renders");
        assert!(html.contains("id=\"workspaces\""));
        assert!(html.contains("id=\"logout\""));
    }
}
