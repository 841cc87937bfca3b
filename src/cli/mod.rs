//! The command line: `serve` and the admin commands.
//!
//! Every admin command opens the same database file as the server (WAL and a
//! busy timeout make that safe while a server runs), prints plain text for
//! people or `--output json` for scripts, and fails with one line that says what
//! to do next.

mod backup;
pub(crate) mod generate;
mod healthcheck;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;
use time::OffsetDateTime;

use crate::server::app::App;
use crate::config::{self, Config};
use crate::store::{self, Store, StoreError};
use crate::server::{self, telemetry};
use crate::sign_in::trust_files;
use crate::{auth, gitsshkey, manifest};

const ABOUT: &str =
    "Self-hosted control plane for Coder workspace agents: one binary, one SQLite file.";

const AFTER_HELP: &str = "\
Configuration comes from, lowest to highest: built-in defaults, the TOML file
(--config or APPLIANCE_CONFIG, else /etc/appliance/appliance.toml if present),
APPLIANCE_* environment variables (nested keys joined by __, e.g.
APPLIANCE_LOG__FILTER), and flags. `appliance check-config` shows the result.

Quick start:
  appliance serve                                  # creates ./appliance.db, listens on 127.0.0.1:3000
  appliance token create --user admin              # an API key for the first admin
  appliance workspace apply config/examples/single-agent.toml";

#[derive(Debug, Parser)]
#[command(name = "appliance", version, about = ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    /// Configuration file (TOML). Env: APPLIANCE_CONFIG.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// SQLite database file [default: appliance.db]. Env: APPLIANCE_DB.
    #[arg(long, global = true, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Output format of admin commands.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people.
    Text,
    /// For scripts: one JSON document on stdout.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (creates and migrates the database if needed).
    Serve(ServeArgs),
    /// Bring the database schema up to date, then exit.
    Migrate,
    /// Print the effective configuration and where each value came from.
    CheckConfig,
    /// Copy the database to FILE, consistently, while the server runs.
    Backup {
        /// The backup file to write (refused if it exists, unless --force).
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Replace the database with a backup (the server must be stopped).
    Restore {
        /// A file written by `appliance backup`.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
    },
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Create, rebuild, stop and delete workspaces from manifests.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// Check instance-identity proofs and manage trust material, offline.
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// Link users to external-auth providers (`[[external_auth]]` in the
    /// config) without a browser, list and remove links.
    #[command(subcommand)]
    ExternalAuth(ExternalAuthCommand),
    /// Commands run on the workspace machine: sign in, ship logs.
    #[command(subcommand)]
    Agent(crate::agent::AgentCommand),
    /// Exit 0 when the server answers GET /healthz with 200 (for scripts and monitoring).
    Healthcheck(crate::cli::healthcheck::HealthcheckArgs),
    /// Write the man page or shell completions (for packaging).
    #[command(subcommand, hide = true)]
    Generate(crate::cli::generate::GenerateCommand),
}

#[derive(Debug, Subcommand)]
pub enum ExternalAuthCommand {
    /// Store a token for a user and provider (e.g. a personal access token
    /// made in Gitea or GitLab); agents waiting with `listen=true` get it
    /// within a second.
    Link {
        #[arg(long)]
        user: String,
        /// Provider id from `[[external_auth]]`.
        #[arg(long)]
        provider: String,
        #[arg(long)]
        access_token: String,
        /// Used to get a new access token from the provider's token URL once
        /// this one expires.
        #[arg(long, default_value = "")]
        refresh_token: String,
        /// When the access token expires (RFC 3339); never if left out.
        #[arg(long, value_name = "RFC3339")]
        expires_at: Option<String>,
    },
    /// List links (tokens are not shown).
    List {
        /// Only this user's links.
        #[arg(long)]
        user: Option<String>,
    },
    /// Remove a user's link to a provider.
    Unlink {
        #[arg(long)]
        user: String,
        #[arg(long)]
        provider: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Verify a proof with the configured trust material and print the
    /// instance id it vouches for, or why it fails.
    Verify {
        #[arg(long, value_enum)]
        cloud: CloudArg,
        /// The request body an agent would send: AWS {"document","signature"},
        /// Azure {"encoding","signature"}, Google {"json_web_token"}.
        #[arg(long, value_name = "PROOF.json")]
        file: PathBuf,
        /// Verify as of this time (RFC 3339) instead of now.
        #[arg(long, value_name = "RFC3339")]
        at: Option<String>,
    },
    /// Validate a Google JWKS document and install it at identity.gcp.jwks_file.
    ImportJwks {
        /// A JWKS document, e.g. a saved copy of https://www.googleapis.com/oauth2/v3/certs.
        file: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CloudArg {
    Aws,
    Azure,
    Google,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:3000]. Env: APPLIANCE_LISTEN.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// The URL agents and browsers reach this server at [default: http://<listen>]. Env: APPLIANCE_ACCESS_URL.
    #[arg(long, value_name = "URL")]
    pub access_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user.
    Create {
        /// Username: letters, digits and single hyphens, at most 32 characters.
        name: String,
        #[arg(long, default_value = "")]
        email: String,
        #[arg(long, value_enum, default_value_t = Role::Member)]
        role: Role,
    },
    /// List users.
    List,
    /// Print the user's git SSH public key (served to their workspaces by
    /// `GET /api/v2/workspaceagents/me/gitsshkey`), for adding to Gitea,
    /// GitLab or GitHub. Creates the key pair if the user has none.
    Gitsshkey {
        name: String,
        /// Replace the key pair with a new one (algorithm: `ssh_keygen_algorithm`).
        #[arg(long)]
        regenerate: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Reads every workspace and agent.
    Admin,
    /// Reads their own workspaces and agents.
    Member,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API key for a user and print it (shown only this once).
    Create {
        /// The user the key signs in as.
        #[arg(long)]
        user: String,
        /// How long the key is valid: e.g. 12h, 30d, 365d.
        #[arg(long, default_value = "30d")]
        lifetime: String,
        /// A label to recognise the key by.
        #[arg(long, default_value = "")]
        name: String,
    },
}

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

/// Runs the command; the caller prints the error and sets the exit code.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    // The agent side runs on workspace machines: no server config, no database.
    if let Command::Agent(cmd) = cli.command {
        return crate::agent::run(cmd);
    }
    // Packaging: rendered from the command definition alone.
    if let Command::Generate(cmd) = cli.command {
        return crate::cli::generate::run(cmd);
    }
    // vars_os: a non-UTF-8 variable elsewhere in the environment must not panic.
    let env: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let (listen, access_url) = match &cli.command {
        Command::Serve(a) => (a.listen, a.access_url.clone()),
        _ => (None, None),
    };
    let overrides = config::Overrides {
        config: cli.config.clone(),
        db: cli.db.clone(),
        listen,
        access_url,
    };
    let loaded = config::load(&overrides, &env).map_err(|e| anyhow::anyhow!("{e}"))?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    let out = Printer { format: cli.output };
    match cli.command {
        Command::Serve(_) => serve(loaded.config, crate::server::reload::Source { overrides, env }),
        Command::CheckConfig => check_config(&loaded, &out),
        Command::Backup { to, force } => {
            let (json, text) = crate::cli::backup::run_backup(&loaded.config, &to, force)?;
            out.emit(&json, || text);
            Ok(())
        }
        Command::Restore { from } => {
            let (json, text) = crate::cli::backup::run_restore(&loaded.config, &from)?;
            out.emit(&json, || text);
            Ok(())
        }
        Command::Migrate => {
            let store = open_store(&loaded.config, false)?;
            let (before, after) = store.migrate()?;
            out.emit(
                &json!({"db": store.path(), "from_version": before, "to_version": after}),
                || {
                    if before == after {
                        format!(
                            "{}: schema is up to date (version {after})",
                            store.path().display()
                        )
                    } else {
                        format!(
                            "{}: migrated schema from version {before} to {after}",
                            store.path().display()
                        )
                    }
                },
            );
            Ok(())
        }
        Command::User(cmd) => user(
            &open_store(&loaded.config, true)?,
            loaded.config.ssh_keygen_algorithm,
            cmd,
            &out,
        ),
        Command::Token(cmd) => token(&open_store(&loaded.config, true)?, cmd, &out),
        Command::Workspace(cmd) => workspace(&open_store(&loaded.config, true)?, cmd, &out),
        Command::Identity(cmd) => identity_command(&loaded.config, cmd, &out),
        Command::ExternalAuth(cmd) => external_auth_command(
            &open_store(&loaded.config, true)?,
            &loaded.config,
            cmd,
            &out,
        ),
        Command::Agent(cmd) => crate::agent::run(cmd),
        Command::Healthcheck(args) => healthcheck(&loaded.config, &args, &out),
        Command::Generate(cmd) => crate::cli::generate::run(cmd),
    }
}

fn healthcheck(
    config: &Config,
    args: &crate::cli::healthcheck::HealthcheckArgs,
    out: &Printer,
) -> anyhow::Result<()> {
    let url = crate::cli::healthcheck::target(args, config);
    let ok = crate::cli::healthcheck::check(&url, args.timeout)?;
    let ms = ok.elapsed.as_secs_f64() * 1000.0;
    out.emit(
        &json!({"url": ok.url, "status": 200, "elapsed_ms": ms}),
        || format!("{}: 200 OK in {ms:.1} ms", ok.url),
    );
    Ok(())
}

/// Prints the effective configuration and the trust material it loads; fails
/// (after printing) when the trust material cannot be loaded.
fn check_config(loaded: &config::Loaded, out: &Printer) -> anyhow::Result<()> {
    let trust = trust_files::load(&loaded.config.identity);
    let now = OffsetDateTime::now_utc();
    match out.format {
        Output::Json => {
            let mut v = loaded.render_json();
            match &trust {
                Ok(t) => {
                    let (_, expiring) = trust_files::describe(&t.trust, now);
                    v["trust"] = json!(t.trust.summary().iter().map(|i| json!({
                        "cloud": i.cloud.as_str(), "kind": i.kind.as_str(), "label": i.label,
                        "key": i.key, "source": i.source,
                        "not_after": i.not_after.as_ref().map(crate::sdk::rfc3339::format),
                    })).collect::<Vec<_>>());
                    v["trust_warnings"] =
                        json!(t.warnings.iter().chain(&expiring).collect::<Vec<_>>());
                    v["trust_notes"] = json!(t.notes);
                }
                Err(e) => v["trust_error"] = json!(format!("{e:#}")),
            }
            out.json(&v);
        }
        Output::Text => {
            let mut text = loaded.render_text();
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str("\n# instance-identity trust material\n");
            match &trust {
                Ok(t) => {
                    let (lines, expiring) = trust_files::describe(&t.trust, now);
                    for l in lines {
                        text.push_str(&format!("# {l}\n"));
                    }
                    for w in t.warnings.iter().chain(&expiring) {
                        text.push_str(&format!("# warning: {w}\n"));
                    }
                    for n in &t.notes {
                        text.push_str(&format!("# note: {n}\n"));
                    }
                }
                Err(e) => text.push_str(&format!("# error: {e:#}\n")),
            }
            out.text(&text);
        }
    }
    trust.map(|_| ())
}

fn open_store(config: &Config, migrate: bool) -> anyhow::Result<Store> {
    let options = store::Options {
        busy_timeout: config.database.busy_timeout,
        pool_size: config.database.pool_size,
        synchronous_full: config.database.synchronous_full,
    };
    let store = Store::open(&config.db, &options)
        .with_context(|| format!("opening the database {}", config.db.display()))?;
    if migrate {
        store.migrate().context("migrating the database schema")?;
    }
    Ok(store)
}

struct Printer {
    format: Output,
}

impl Printer {
    fn json(&self, value: &serde_json::Value) {
        let mut stdout = std::io::stdout().lock();
        let _ = serde_json::to_writer_pretty(&mut stdout, value);
        let _ = writeln!(stdout);
    }

    fn text(&self, text: &str) {
        let mut stdout = std::io::stdout().lock();
        let _ = write!(stdout, "{text}");
        if !text.ends_with('\n') {
            let _ = writeln!(stdout);
        }
    }

    fn emit(&self, value: &serde_json::Value, text: impl FnOnce() -> String) {
        match self.format {
            Output::Json => self.json(value),
            Output::Text => self.text(&text()),
        }
    }
}

fn valid_username(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn valid_email(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

fn find_user(store: &Store, name: &str) -> anyhow::Result<store::users::UserRow> {
    store
        .read(|c| store::users::user_by_name(c, name))?
        .with_context(|| {
            format!("unknown user \"{name}\": create it with `appliance user create {name}`")
        })
}

fn user_json(u: &store::users::UserRow) -> serde_json::Value {
    json!({"id": u.id, "username": u.username, "email": u.email, "role": u.role})
}

fn user(
    store: &Store,
    algorithm: gitsshkey::Algorithm,
    cmd: UserCommand,
    out: &Printer,
) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Create { name, email, role } => {
            if !valid_username(&name) {
                bail!(
                    "\"{name}\" is not a valid username: use letters, digits and single hyphens, at most 32 characters"
                );
            }
            if !email.is_empty() && !valid_email(&email) {
                bail!("\"{email}\" is not an email address: use name@domain, or leave --email out");
            }
            let now = OffsetDateTime::now_utc();
            let key = gitsshkey::generate(algorithm).map_err(anyhow::Error::msg)?;
            let user = store
                .write(|tx| {
                    let user = store::users::insert_user(tx, &name, &email, role.as_str(), now)?;
                    store::users::put_gitsshkey(
                        tx,
                        user.id,
                        &key.private_key,
                        &key.public_key,
                        now,
                        false,
                    )?;
                    Ok(user)
                })
                .map_err(|e| match e {
                    StoreError::Conflict(m) => anyhow::anyhow!("{m}: pick another name"),
                    other => other.into(),
                })?;
            out.emit(&user_json(&user), || {
                format!(
                    "created {} \"{}\" ({})\nnext: appliance token create --user {}",
                    user.role, user.username, user.id, user.username
                )
            });
        }
        UserCommand::Gitsshkey { name, regenerate } => {
            let user = find_user(store, &name)?;
            let existing = store.read(|c| store::users::gitsshkey(c, user.id))?;
            let key = match existing {
                Some(k) if !regenerate => k,
                _ => {
                    let pair = gitsshkey::generate(algorithm).map_err(anyhow::Error::msg)?;
                    let now = OffsetDateTime::now_utc();
                    store.write(|tx| {
                        store::users::put_gitsshkey(
                            tx,
                            user.id,
                            &pair.private_key,
                            &pair.public_key,
                            now,
                            true,
                        )
                    })?
                }
            };
            out.emit(
                &json!({"username": user.username, "public_key": key.public_key, "updated_at": crate::sdk::rfc3339::format(&key.updated_at)}),
                || key.public_key.trim_end().to_string(),
            );
        }
        UserCommand::List => {
            let users = store.read(store::users::list_users)?;
            out.emit(
                &json!(users.iter().map(user_json).collect::<Vec<_>>()),
                || {
                    let mut s = format!("{:<24} {:<8} {:<36} EMAIL\n", "USERNAME", "ROLE", "ID");
                    for u in &users {
                        s.push_str(&format!(
                            "{:<24} {:<8} {:<36} {}\n",
                            u.username, u.role, u.id, u.email
                        ));
                    }
                    s
                },
            );
        }
    }
    Ok(())
}

fn token(store: &Store, cmd: TokenCommand, out: &Printer) -> anyhow::Result<()> {
    let TokenCommand::Create {
        user,
        lifetime,
        name,
    } = cmd;
    let lifetime = config::parse_duration(&lifetime)
        .map_err(|e| anyhow::anyhow!("--lifetime {lifetime:?}: {e}; use e.g. 12h, 30d"))?;
    if lifetime.is_zero() {
        bail!("--lifetime must be longer than zero");
    }
    let user = find_user(store, &user)?;
    let now = OffsetDateTime::now_utc();
    let expires_at = time::Duration::try_from(lifetime)
        .ok()
        .and_then(|d| now.checked_add(d))
        .context("--lifetime is too long")?;
    let key = auth::new_api_key();
    store.write(|tx| {
        store::users::insert_api_key(
            tx,
            &key.id,
            &key.hashed_secret,
            user.id,
            &name,
            now,
            expires_at,
        )
    })?;
    out.emit(&json!({"token": key.key}), || key.key.clone());
    Ok(())
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

fn workspace(store: &Store, cmd: WorkspaceCommand, out: &Printer) -> anyhow::Result<()> {
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
            // Tokens are minted in the same transaction that records the agents.
            let (applied, tokens) = store.write(|tx| {
                let applied = store::workspaces::apply(tx, &ws, owner.id, owner.id, now)?;
                let mut tokens = BTreeMap::new();
                for agent in applied
                    .agents
                    .iter()
                    .filter(|a| a.auth == manifest::AgentAuth::Token)
                {
                    let t = auth::new_agent_token();
                    store::agents::insert_agent_token(
                        tx,
                        agent.id,
                        &t.hash,
                        now,
                        auth::MAX_LIVE_AGENT_TOKENS,
                    )?;
                    tokens.insert(agent.id, t.token);
                }
                Ok((applied, tokens))
            })?;
            let agents: Vec<_> = applied
                .agents
                .iter()
                .map(|a| {
                    let mut v = json!({"id": a.id, "name": a.name, "parent_id": a.parent_id, "auth": a.auth.as_str()});
                    if let Some(t) = tokens.get(&a.id) {
                        v["token"] = json!(t);
                    }
                    v
                })
                .collect();
            out.emit(
                &json!({
                    "workspace": {"id": applied.workspace.id, "name": applied.workspace.name, "owner": applied.workspace.owner_name},
                    "build": {"id": applied.build.id, "number": applied.build.number},
                    "agents": agents,
                }),
                || {
                    let mut s = format!(
                        "workspace {}/{} build #{} ({} agent{})\n",
                        applied.workspace.owner_name,
                        applied.workspace.name,
                        applied.build.number,
                        applied.agents.len(),
                        if applied.agents.len() == 1 { "" } else { "s" }
                    );
                    for a in &applied.agents {
                        s.push_str(&format!("  agent {:<20} {}  auth={}", a.name, a.id, a.auth.as_str()));
                        if let Some(p) = a.parent_id {
                            s.push_str(&format!(" parent={p}"));
                        }
                        s.push('\n');
                        if let Some(t) = tokens.get(&a.id) {
                            s.push_str(&format!("    token (shown once): {t}\n"));
                        }
                    }
                    s
                },
            );
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

fn identity_command(config: &Config, cmd: IdentityCommand, out: &Printer) -> anyhow::Result<()> {
    match cmd {
        IdentityCommand::Verify { cloud, file, at } => {
            let now = match at {
                Some(at) => {
                    OffsetDateTime::parse(&at, &time::format_description::well_known::Rfc3339)
                        .with_context(|| {
                            format!(
                                "--at {at:?} is not an RFC 3339 time, e.g. 2024-04-22T17:32:44Z"
                            )
                        })?
                }
                None => OffsetDateTime::now_utc(),
            };
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let body: serde_json::Value = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not JSON: it must hold the request body an agent sends",
                    file.display()
                )
            })?;
            let field = |name: &str| -> anyhow::Result<String> {
                body.get(name)
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
                    .with_context(|| format!("{} has no string field \"{name}\"", file.display()))
            };
            let loaded = trust_files::load(&config.identity)?;
            let trust = &loaded.trust;
            let (cloud_name, result) = match cloud {
                CloudArg::Aws => (
                    "aws",
                    crate::identity::verify_aws(
                        &field("document")?,
                        &field("signature")?,
                        &trust.aws,
                    ),
                ),
                CloudArg::Azure => (
                    "azure",
                    crate::identity::verify_azure(&field("signature")?, &trust.azure, now),
                ),
                CloudArg::Google => (
                    "google",
                    crate::identity::verify_gcp(
                        &field("json_web_token")?,
                        &trust.gcp,
                        config.identity.gcp.audience.as_deref(),
                        now,
                    ),
                ),
            };
            let at = crate::sdk::rfc3339::format(&now);
            match result {
                Ok(instance_id) => {
                    out.emit(
                        &json!({"valid": true, "cloud": cloud_name, "instance_id": instance_id, "at": at}),
                        || format!("valid {cloud_name} proof for instance {instance_id:?} (checked at {at})"),
                    );
                    Ok(())
                }
                Err(e) => {
                    out.emit(&json!({"valid": false, "cloud": cloud_name, "error": e.to_string(), "at": at}), || {
                        format!("invalid {cloud_name} proof (checked at {at}): {e}")
                    });
                    bail!("the proof does not verify")
                }
            }
        }
        IdentityCommand::ImportJwks { file } => {
            let target = config.identity.gcp.jwks_file.clone().context(
                "identity.gcp.jwks_file is not set: set it in the config file (e.g. /var/lib/appliance/gcp-jwks.json) first",
            )?;
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let mut gcp = crate::identity::GcpTrust::default();
            let count = gcp
                .add_jwks_json(&bytes)
                .with_context(|| format!("{} is not a usable JWKS", file.display()))?;
            if count == 0 {
                bail!("{} holds no keys", file.display());
            }
            let kids: Vec<String> = crate::identity::Trust {
                gcp,
                ..crate::identity::Trust::default()
            }
            .summary()
            .into_iter()
            .map(|i| i.label)
            .collect();
            // Write beside the target, then rename: a running server never reads half a file.
            let tmp = target.with_extension("json.tmp");
            std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &target)
                .with_context(|| format!("installing {}", target.display()))?;
            out.emit(&json!({"installed": target, "keys": kids}), || {
                format!(
                    "installed {} key(s) ({}) at {}; reload the server (SIGHUP, e.g. systemctl reload appliance) to use them",
                    kids.len(),
                    kids.join(", "),
                    target.display()
                )
            });
            Ok(())
        }
    }
}

fn external_auth_command(
    store: &Store,
    config: &Config,
    cmd: ExternalAuthCommand,
    out: &Printer,
) -> anyhow::Result<()> {
    let configured = |provider: &str| -> anyhow::Result<()> {
        if config.external_auth.iter().any(|p| p.id == provider) {
            return Ok(());
        }
        let ids: Vec<&str> = config.external_auth.iter().map(|p| p.id.as_str()).collect();
        if ids.is_empty() {
            bail!(
                "no external-auth provider is configured: add an [[external_auth]] table to the config file (see config/appliance.toml)"
            )
        }
        bail!(
            "no external-auth provider \"{provider}\" is configured (configured: {})",
            ids.join(", ")
        )
    };
    let now = OffsetDateTime::now_utc();
    match cmd {
        ExternalAuthCommand::Link {
            user,
            provider,
            access_token,
            refresh_token,
            expires_at,
        } => {
            configured(&provider)?;
            let user = find_user(store, &user)?;
            if access_token.trim().is_empty() {
                bail!("--access-token is empty");
            }
            let expires_at = expires_at
                .map(|t| {
                    OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339)
                        .with_context(|| {
                            format!("--expires-at {t:?}: use RFC 3339, e.g. 2027-01-31T12:00:00Z")
                        })
                })
                .transpose()?;
            let link = store.write(|tx| {
                store::external_auth::put_link(
                    tx,
                    &provider,
                    user.id,
                    &store::external_auth::NewToken {
                        access_token: access_token.trim(),
                        refresh_token: refresh_token.trim(),
                        expires_at,
                        oauth_extra: None,
                    },
                    now,
                )
            })?;
            out.emit(
                &json!({"provider": link.provider_id, "user": link.username, "expires_at": link.expires_at.map(|t| crate::sdk::rfc3339::format(&t))}),
                || format!("linked {} to {}", link.username, link.provider_id),
            );
        }
        ExternalAuthCommand::List { user } => {
            let user_id = match user {
                Some(u) => Some(find_user(store, &u)?.id),
                None => None,
            };
            let links = store.read(|c| store::external_auth::links(c, user_id))?;
            let rows: Vec<_> = links
                .iter()
                .map(|l| json!({"provider": l.provider_id, "user": l.username, "updated_at": crate::sdk::rfc3339::format(&l.updated_at), "expires_at": l.expires_at.map(|t| crate::sdk::rfc3339::format(&t)), "refreshable": !l.refresh_token.is_empty()}))
                .collect();
            out.emit(&json!(rows), || {
                let mut s = format!(
                    "{:<20} {:<24} {:<32} REFRESHABLE\n",
                    "PROVIDER", "USER", "EXPIRES"
                );
                for l in &links {
                    s.push_str(&format!(
                        "{:<20} {:<24} {:<32} {}\n",
                        l.provider_id,
                        l.username,
                        l.expires_at
                            .map_or("never".to_string(), |t| crate::sdk::rfc3339::format(&t)),
                        if l.refresh_token.is_empty() {
                            "no"
                        } else {
                            "yes"
                        }
                    ));
                }
                s
            });
        }
        ExternalAuthCommand::Unlink { user, provider } => {
            let user = find_user(store, &user)?;
            let removed =
                store.write(|tx| store::external_auth::delete_link(tx, &provider, user.id))?;
            if !removed {
                bail!(
                    "{} has no link to \"{provider}\" (see `appliance external-auth list`)",
                    user.username
                );
            }
            out.emit(
                &json!({"provider": provider, "user": user.username, "removed": true}),
                || format!("unlinked {} from {provider}", user.username),
            );
        }
    }
    Ok(())
}

/// The name of the admin created on a new, empty database.
pub const FIRST_ADMIN: &str = "admin";

fn serve(config: Config, source: crate::server::reload::Source) -> anyhow::Result<()> {
    let log_output = telemetry::init(
        &config.log.filter,
        config.log.format == config::LogFormat::Json,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("appliance")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let mut config = config;
        // Bind first: a busy port must not leave a half-initialised database behind.
        let bound = server::bind(config.listen).await?;
        if config.listen.port() == 0 && config.access_url.ends_with(":0") {
            // Derived from an ephemeral port: name the port actually bound.
            config.access_url = format!("http://{}", bound.addr);
        }
        let (store, schema, config, _db_lock) = tokio::task::spawn_blocking(move || {
            // Held until the process ends: `restore` and a second `serve` refuse meanwhile.
            let lock = store::lock::try_lock(&config.db).map_err(|e| match e {
                store::lock::LockError::Held { .. } => anyhow::anyhow!(
                    "another appliance server is serving {}: stop it first, or pass another --db",
                    config.db.display()
                ),
                store::lock::LockError::Store(e) => e.into(),
            })?;
            prepare_database(&config).map(|(store, schema)| (store, schema, config, lock))
        })
        .await
        .context("database setup task")??;
        let trust = trust_files::load(&config.identity)?;
        for w in &trust.warnings {
            tracing::warn!("{w}");
        }
        for n in &trust.notes {
            tracing::info!("{n}");
        }
        let notifier = crate::server::systemd::Notifier::from_env();
        let shutdown = notifier.clone().stopping_after(server::shutdown_signal()?);
        // Installed before the announcement: SIGHUP's default action would end the process.
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("listening for SIGHUP")?;
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            db = %config.db.display(),
            schema,
            access_url = %config.access_url,
            "listening on http://{}",
            bound.addr
        );
        if !tracing::enabled!(tracing::Level::INFO) {
            // Scripts and tests learn the port from this line whatever the log level.
            eprintln!("listening on http://{}", bound.addr);
        }
        let jwks_url = config.identity.gcp.jwks_url.clone();
        let base_trust = trust.trust.clone();
        let startup = config::load(&source.overrides, &source.env)
            .map(|l| l.values())
            .unwrap_or_default();
        let app = App::start(store, config, trust.trust)?;
        tokio::spawn(crate::logs::retention::run(app.clone()));
        let mut gcp_base = None;
        if let Some(url) = jwks_url {
            let (tx, rx) = tokio::sync::watch::channel(base_trust);
            gcp_base = Some(tx);
            tokio::spawn(crate::sign_in::jwks_refresh::run(app.clone(), rx, url));
        }
        let reloader = crate::server::reload::Reloader {
            source,
            app: app.clone(),
            log_filter: log_output.filter_handle(),
            gcp_base,
            startup,
        };
        tokio::spawn(reloader.run(hangup));
        notifier.ready(&format!("listening on http://{}", bound.addr));
        tokio::spawn(notifier.watchdog());
        server::run(bound, app, shutdown).await
    })
}

/// Opens and migrates the database; on a new, empty one creates the first admin.
fn prepare_database(config: &Config) -> anyhow::Result<(Store, i64)> {
    let store = open_store(config, false)?;
    let (before, after) = store.migrate().context("migrating the database schema")?;
    if before != after {
        tracing::info!(from = before, to = after, "database schema migrated");
    }
    let now = OffsetDateTime::now_utc();
    let created_admin = store.write(|tx| {
        if store::users::count_users(tx)? > 0 {
            return Ok(None);
        }
        store::users::insert_user(tx, FIRST_ADMIN, "", "admin", now).map(Some)
    })?;
    if let Some(admin) = &created_admin {
        // Generated after the fact (RSA takes a while): the admin's workspaces
        // would otherwise get one on first use anyway.
        let key = gitsshkey::generate(config.ssh_keygen_algorithm).map_err(anyhow::Error::msg)?;
        store.write(|tx| {
            store::users::put_gitsshkey(tx, admin.id, &key.private_key, &key.public_key, now, false)
        })?;
    }
    if let Some(admin) = created_admin {
        tracing::info!(
            user = %admin.username,
            "new database: created the first admin user \"{}\"; get an API token with: appliance token create --user {} --db {}",
            admin.username,
            admin.username,
            config.db.display()
        );
    }
    Ok((store, after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn usernames() {
        for ok in ["alice", "a", "bob-2", "A1"] {
            assert!(valid_username(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a--b", "a b", "ä", &"x".repeat(33)] {
            assert!(!valid_username(bad), "{bad}");
        }
    }
}
