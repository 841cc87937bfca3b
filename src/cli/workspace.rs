//! `appliance workspace`: apply manifests (builds), list, show, stop,
//! delete, and claim prebuilt workspaces.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use time::OffsetDateTime;

use super::output::Printer;
use super::user::find_user;
use crate::store::{self, Store, StoreError};
use crate::{agent_start, auth, manifest};

#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Create the workspace a manifest describes, or record a new build of it.
    Apply {
        /// Manifest file (TOML, or JSON with a .json extension).
        file: PathBuf,
        /// Create a prebuilt workspace: owned by the prebuilds system user
        /// (the manifest's `owner` may be left out) until `workspace claim`
        /// gives it to a user; its agents wait on `GET /me/reinit`.
        #[arg(long)]
        prebuild: bool,
    },
    /// List live workspaces.
    List,
    /// Show a workspace, its latest build and its agents.
    Show(WorkspaceRef),
    /// Record a stop build: the workspace's agents go away.
    Stop(WorkspaceRef),
    /// Delete the workspace and all its agents.
    Delete(WorkspaceRef),
    /// Give a prebuilt workspace to a user: records the claim build, which
    /// keeps the running agents, and wakes agents waiting on `/me/reinit`.
    Claim {
        /// Name of the prebuilt workspace.
        name: String,
        /// The user who gets it.
        #[arg(long)]
        owner: String,
        /// Record the claim build as failed instead (the waiting agents get
        /// 409 "Claim build failed permanently.").
        #[arg(long)]
        fail: bool,
    },
}

#[derive(Debug, Args)]
pub struct WorkspaceRef {
    /// Workspace name.
    pub name: String,
    /// Owner's username (needed when several users have a workspace of that name).
    #[arg(long)]
    pub owner: Option<String>,
}

fn resolve_workspace(
    store: &Store,
    r: &WorkspaceRef,
) -> anyhow::Result<store::workspaces::WorkspaceRow> {
    if let Some(owner) = &r.owner {
        let user = find_user(store, owner)?;
        return store
            .read(|c| store::workspaces::live_workspace(c, user.id, &r.name))?
            .with_context(|| format!("user \"{owner}\" has no workspace named \"{}\": see `appliance workspace list`", r.name));
    }
    let mut found = store.read(|c| store::workspaces::live_workspaces_named(c, &r.name))?;
    match found.len() {
        0 => bail!(
            "no workspace named \"{}\": see `appliance workspace list`",
            r.name
        ),
        1 => Ok(found.remove(0)),
        _ => bail!(
            "several users have a workspace named \"{}\": pass --owner (one of {})",
            r.name,
            found
                .iter()
                .map(|w| w.owner_name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `access_url` is where agents reach the server: `apply` prints, per
/// agent, the line that downloads Coder's agent from it and starts it.
pub(super) fn run(
    store: &Store,
    access_url: &str,
    cmd: WorkspaceCommand,
    out: &Printer,
) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    match cmd {
        WorkspaceCommand::Apply { file, prebuild } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading the manifest {}", file.display()))?;
            let ws = manifest::parse_with(&file.display().to_string(), &text, prebuild)
                .map_err(|e| anyhow::anyhow!("invalid manifest:\n{e}"))?;
            let file_name = file.display().to_string();
            if prebuild && !ws.owner.is_empty() && ws.owner != "prebuilds" {
                bail!(
                    "{file_name}: a prebuilt workspace belongs to the prebuilds user until it is claimed: remove `owner = \"{}\"` from the manifest, then `appliance workspace claim {} --owner {}` gives it to them",
                    ws.owner,
                    ws.name,
                    ws.owner
                );
            }
            let owner = if prebuild {
                Some(store.read(|c| store::users::user_by_id(c, store::users::PREBUILDS_USER_ID))?)
            } else {
                store.read(|c| store::users::user_by_name(c, &ws.owner))?
            };
            let owner = owner.ok_or_else(|| {
                let e = manifest::problem_at(
                    &file_name,
                    &text,
                    "owner",
                    format!(
                        "unknown user \"{}\": create it with `appliance user create {}`",
                        ws.owner, ws.owner
                    ),
                );
                anyhow::anyhow!("cannot apply the manifest:\n{e}")
            })?;
            let (applied, tokens) = store.write(|tx| {
                store::workspaces::apply_with_tokens(
                    tx,
                    &ws,
                    owner.id,
                    owner.id,
                    now,
                    auth::MAX_LIVE_AGENT_TOKENS,
                    || {
                        let t = auth::new_agent_token();
                        (t.hash, t.token)
                    },
                )
            })?;
            let starts = start_lines(access_url, &ws, &applied, &tokens);
            out.emit(&applied_json(&applied, &tokens, &starts), || {
                applied_text(&applied, &tokens, &starts)
            });
        }
        WorkspaceCommand::List => {
            let list = store.read(store::workspaces::list)?;
            let rows: Vec<_> = list
                .iter()
                .map(|s| {
                    json!({
                        "id": s.workspace.id, "name": s.workspace.name, "owner": s.workspace.owner_name,
                        "latest_build": s.latest_build.as_ref().map(|b| json!({"id": b.id, "number": b.number, "transition": b.transition})),
                        "agents": s.live_agents,
                    })
                })
                .collect();
            out.emit(&json!(rows), || {
                let mut s = format!(
                    "{:<16} {:<24} {:>6} {:<10} {:>6}\n",
                    "OWNER", "NAME", "BUILD", "STATE", "AGENTS"
                );
                for w in &list {
                    let (n, t) = w
                        .latest_build
                        .as_ref()
                        .map(|b| (b.number, b.transition.as_str()))
                        .unwrap_or((0, "-"));
                    s.push_str(&format!(
                        "{:<16} {:<24} {:>6} {:<10} {:>6}\n",
                        w.workspace.owner_name, w.workspace.name, n, t, w.live_agents
                    ));
                }
                s
            });
        }
        WorkspaceCommand::Show(r) => {
            let w = resolve_workspace(store, &r)?;
            let build = store.read(|c| store::workspaces::latest_build(c, w.id))?;
            let agents = match &build {
                Some(b) => store.read(|c| store::workspaces::build_agents(c, b.id))?,
                None => Vec::new(),
            };
            out.emit(
                &json!({
                    "workspace": {"id": w.id, "name": w.name, "owner": w.owner_name},
                    "build": build.as_ref().map(|b| json!({"id": b.id, "number": b.number, "transition": b.transition, "created_at": crate::sdk::rfc3339::format(&b.created_at)})),
                    "agents": agents.iter().map(|a| json!({"id": a.id, "name": a.name, "parent_id": a.parent_id, "auth": a.auth.as_str(), "resource": a.resource_name})).collect::<Vec<_>>(),
                }),
                || {
                    let mut s = format!("workspace {}/{} ({})\n", w.owner_name, w.name, w.id);
                    if let Some(b) = &build {
                        s.push_str(&format!(
                            "latest build #{} {} at {}\n",
                            b.number,
                            b.transition,
                            crate::sdk::rfc3339::format(&b.created_at)
                        ));
                    }
                    for a in &agents {
                        s.push_str(&format!(
                            "  agent {:<20} {}  auth={} resource={}\n",
                            a.name,
                            a.id,
                            a.auth.as_str(),
                            a.resource_name
                        ));
                    }
                    s
                },
            );
        }
        WorkspaceCommand::Claim { name, owner, fail } => {
            let user = find_user(store, &owner)?;
            let prebuilds = store::users::PREBUILDS_USER_ID;
            let w = store
                .read(|c| store::workspaces::live_workspace(c, prebuilds, &name))?
                .with_context(|| {
                    format!(
                        "no prebuilt workspace named \"{name}\" is waiting to be claimed (see `appliance workspace list`; create one with `appliance workspace apply FILE --prebuild`)"
                    )
                })?;
            let error = fail.then_some(
                "The claim build failed (recorded with `appliance workspace claim --fail`).",
            );
            let b = store
                .write(|tx| store::workspaces::claim(tx, w.id, prebuilds, user.id, error, now))
                .map_err(|e| match e {
                    StoreError::Conflict(m) => anyhow::anyhow!("{m}"),
                    other => other.into(),
                })?;
            out.emit(
                &json!({"workspace": {"id": w.id, "name": w.name, "owner": user.username}, "build": {"id": b.id, "number": b.number, "status": b.job_status}}),
                || {
                    format!(
                        "workspace {} claimed by {} (build #{}, {})",
                        w.name, user.username, b.number, b.job_status
                    )
                },
            );
        }
        WorkspaceCommand::Stop(r) => {
            let w = resolve_workspace(store, &r)?;
            let b = store.write(|tx| store::workspaces::stop(tx, w.id, w.owner_id, now))?;
            out.emit(&json!({"workspace": {"id": w.id, "name": w.name, "owner": w.owner_name}, "build": {"id": b.id, "number": b.number}}), || {
                format!("workspace {}/{} stopped (build #{})", w.owner_name, w.name, b.number)
            });
        }
        WorkspaceCommand::Delete(r) => {
            let w = resolve_workspace(store, &r)?;
            let b = store.write(|tx| store::workspaces::delete(tx, w.id, w.owner_id, now))?;
            out.emit(&json!({"workspace": {"id": w.id, "name": w.name, "owner": w.owner_name}, "build": {"id": b.id, "number": b.number}}), || {
                format!("workspace {}/{} deleted (build #{})", w.owner_name, w.name, b.number)
            });
        }
    }
    Ok(())
}

/// Each new agent's start lines (`agent_start`), with its token when it
/// has one: the download from `access_url` for the manifest's os and arch.
fn start_lines(
    access_url: &str,
    ws: &manifest::Workspace,
    applied: &store::workspaces::AppliedBuild,
    tokens: &BTreeMap<uuid::Uuid, String>,
) -> BTreeMap<uuid::Uuid, agent_start::StartLines> {
    // Agent names are unique in a workspace (the manifest checks it).
    let declared: BTreeMap<&str, &manifest::Agent> = ws
        .resources
        .iter()
        .flat_map(|r| &r.agents)
        .flat_map(|a| std::iter::once(a).chain(&a.children))
        .map(|a| (a.name.as_str(), a))
        .collect();
    applied
        .agents
        .iter()
        .map(|a| {
            let (os, arch) = declared
                .get(a.name.as_str())
                .map_or(("linux", "amd64"), |d| {
                    (d.operating_system.as_str(), d.architecture.as_str())
                });
            let start = agent_start::AgentStart {
                name: &a.name,
                auth: a.auth,
                os,
                arch,
                token: tokens.get(&a.id).map(String::as_str),
            };
            (a.id, agent_start::lines(access_url, &start))
        })
        .collect()
}

/// `workspace apply --output json`: the build and its agents, with each
/// new token (shown only this once) and the lines that start the agent
/// (`start.shell`, `start.cloud_init`).
fn applied_json(
    applied: &store::workspaces::AppliedBuild,
    tokens: &BTreeMap<uuid::Uuid, String>,
    starts: &BTreeMap<uuid::Uuid, agent_start::StartLines>,
) -> serde_json::Value {
    let agents: Vec<_> = applied
        .agents
        .iter()
        .map(|a| {
            let mut v = json!({"id": a.id, "name": a.name, "parent_id": a.parent_id, "auth": a.auth.as_str()});
            if let Some(t) = tokens.get(&a.id) {
                v["token"] = json!(t);
            }
            if let Some(s) = starts.get(&a.id) {
                v["start"] = json!({"shell": s.shell, "cloud_init": s.cloud_init});
            }
            v
        })
        .collect();
    json!({
        "workspace": {"id": applied.workspace.id, "name": applied.workspace.name, "owner": applied.workspace.owner_name},
        "build": {"id": applied.build.id, "number": applied.build.number},
        "agents": agents,
    })
}

/// `workspace apply` for people: per agent its token, the shell line that
/// starts it, and the cloud-init user data (indented; `--output json` has
/// it as is).
fn applied_text(
    applied: &store::workspaces::AppliedBuild,
    tokens: &BTreeMap<uuid::Uuid, String>,
    starts: &BTreeMap<uuid::Uuid, agent_start::StartLines>,
) -> String {
    let mut s = format!(
        "workspace {}/{} build #{} ({} agent{})\n",
        applied.workspace.owner_name,
        applied.workspace.name,
        applied.build.number,
        applied.agents.len(),
        if applied.agents.len() == 1 { "" } else { "s" }
    );
    for a in &applied.agents {
        s.push_str(&format!(
            "  agent {:<20} {}  auth={}",
            a.name,
            a.id,
            a.auth.as_str()
        ));
        if let Some(p) = a.parent_id {
            s.push_str(&format!(" parent={p}"));
        }
        s.push('\n');
        if let Some(t) = tokens.get(&a.id) {
            s.push_str(&format!("    token (shown once): {t}\n"));
        }
        if let Some(start) = starts.get(&a.id) {
            s.push_str(&format!(
                "    start it on the machine:\n      {}\n",
                start.shell
            ));
            s.push_str("    or as cloud-init user data:\n");
            for line in start.cloud_init.lines() {
                if line.is_empty() {
                    s.push('\n');
                } else {
                    s.push_str(&format!("      {line}\n"));
                }
            }
        }
    }
    s
}
