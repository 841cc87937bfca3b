//! The command line: the admin commands, and `serve` (handed to `server`).
//!
//! Every admin command opens the same database file as the server (WAL and a
//! busy timeout make that safe while a server runs), prints plain text for
//! people or `--output json` for scripts, and fails with one line that says what
//! to do next. One file per command group; `output` prints.

mod backup;
mod external_auth;
pub(crate) mod generate;
mod healthcheck;
mod identity;
mod login_link;
mod output;
mod token;
mod user;
mod workspace;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;
use time::OffsetDateTime;

use self::external_auth::ExternalAuthCommand;
use self::identity::IdentityCommand;
use self::output::Printer;
use self::token::TokenCommand;
use self::user::UserCommand;
use self::workspace::WorkspaceCommand;
use crate::config;
use crate::server::{self, reload};
use crate::sign_in::trust_files;

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
    /// Print a one-time link that signs a user in to the dashboard.
    LoginLink(self::login_link::LoginLinkArgs),
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

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:3000]. Env: APPLIANCE_LISTEN.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// The URL agents and browsers reach this server at [default: http://<listen>]. Env: APPLIANCE_ACCESS_URL.
    #[arg(long, value_name = "URL")]
    pub access_url: Option<String>,
}

/// `--config` and `--db`: what every command that loads the configuration shares.
struct Globals {
    config: Option<PathBuf>,
    db: Option<PathBuf>,
}

impl Globals {
    /// Loads the configuration once (printing its warnings); `serve` also
    /// keeps what it was loaded from, for SIGHUP.
    fn load(self, serve: Option<&ServeArgs>) -> anyhow::Result<(config::Loaded, reload::Source)> {
        // vars_os: a non-UTF-8 variable elsewhere in the environment must not panic.
        let env: BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let overrides = config::Overrides {
            config: self.config,
            db: self.db,
            listen: serve.and_then(|a| a.listen),
            access_url: serve.and_then(|a| a.access_url.clone()),
        };
        let loaded = config::load(&overrides, &env).map_err(|e| anyhow::anyhow!("{e}"))?;
        for w in &loaded.warnings {
            eprintln!("warning: {w}");
        }
        Ok((loaded, reload::Source { overrides, env }))
    }

    fn config(self) -> anyhow::Result<config::Config> {
        Ok(self.load(None)?.0.config)
    }
}

/// Runs the command; the caller prints the error and sets the exit code.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let Cli {
        config,
        db,
        output,
        command,
    } = cli;
    let globals = Globals { config, db };
    let out = Printer::new(output);
    match command {
        // The agent side runs on workspace machines: no server config, no database.
        Command::Agent(cmd) => crate::agent::run(cmd),
        // Packaging: rendered from the command definition alone.
        Command::Generate(cmd) => generate::run(cmd),
        Command::Serve(args) => {
            let (loaded, source) = globals.load(Some(&args))?;
            server::start::serve(loaded, source)
        }
        Command::CheckConfig => check_config(&globals.load(None)?.0, &out),
        Command::Backup { to, force } => {
            let (json, text) = backup::run_backup(&globals.config()?, &to, force)?;
            out.emit(&json, || text);
            Ok(())
        }
        Command::Restore { from } => {
            let (json, text) = backup::run_restore(&globals.config()?, &from)?;
            out.emit(&json, || text);
            Ok(())
        }
        Command::Migrate => {
            let store = server::start::open_store(&globals.config()?, false)?;
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
        Command::User(cmd) => {
            let config = globals.config()?;
            let store = server::start::open_store(&config, true)?;
            user::run(&store, config.ssh_keygen_algorithm, cmd, &out)
        }
        Command::Token(cmd) => token::run(
            &server::start::open_store(&globals.config()?, true)?,
            cmd,
            &out,
        ),
        Command::Workspace(cmd) => {
            let config = globals.config()?;
            let store = server::start::open_store(&config, true)?;
            workspace::run(&store, &config.access_url, cmd, &out)
        }
        Command::LoginLink(args) => {
            let config = globals.config()?;
            let store = server::start::open_store(&config, true)?;
            login_link::run(&store, &config.access_url, &args, &out)
        }
        Command::Identity(cmd) => identity::run(&globals.config()?, cmd, &out),
        Command::ExternalAuth(cmd) => {
            let config = globals.config()?;
            let store = server::start::open_store(&config, true)?;
            external_auth::run(&store, &config, cmd, &out)
        }
        Command::Healthcheck(args) => healthcheck::run(&globals.config()?, &args, &out),
    }
}

/// Prints the effective configuration and the trust material it loads; fails
/// (after printing) when the trust material cannot be loaded.
fn check_config(loaded: &config::Loaded, out: &Printer) -> anyhow::Result<()> {
    let trust = trust_files::load(&loaded.config.identity);
    let derp_map =
        crate::tailnet::derp_map::from_config(&loaded.config, |p| std::fs::read_to_string(p));
    let now = OffsetDateTime::now_utc();
    let binaries = AgentBinaries::read(&loaded.config);
    match out.format {
        Output::Json => {
            let mut v = loaded.render_json();
            v["agent_binaries"] = binaries.json();
            match &derp_map {
                Ok(map) => {
                    v["derp_map"] =
                        serde_json::to_value(crate::sdk::DerpMap::from(map)).unwrap_or_default()
                }
                Err(e) => v["derp_map_error"] = json!(e),
            }
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
            text.push_str("\n# DERP map (what agents and clients are given)\n");
            match &derp_map {
                Ok(map) => {
                    for region in map.regions.values() {
                        text.push_str(&format!(
                            "# region {} {:?} ({}){}\n",
                            region.region_id,
                            region.region_code,
                            region.region_name,
                            if region.embedded_relay {
                                ", embedded: clients use their access URL"
                            } else {
                                ""
                            }
                        ));
                        for n in &region.nodes {
                            let what = if n.stun_only {
                                format!("STUN {}:{}", n.host_name, n.stun_port)
                            } else {
                                format!(
                                    "relay {}://{}:{}{}",
                                    if n.force_http { "http" } else { "https" },
                                    n.host_name,
                                    n.derp_port,
                                    if n.stun_port > 0 {
                                        format!(", STUN :{}", n.stun_port)
                                    } else {
                                        String::new()
                                    }
                                )
                            };
                            text.push_str(&format!("#   {} {what}\n", n.name));
                        }
                    }
                }
                Err(e) => text.push_str(&format!("# error: {e}\n")),
            }
            text.push_str(&binaries.text());
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
    derp_map.map_err(|e| anyhow::anyhow!(e))?;
    trust.map(|_| ())
}

/// `agent_binaries.dir` as `check-config` shows it: each file `GET /bin/`
/// serves with its size and SHA-256, what it leaves out, and warnings.
struct AgentBinaries {
    dir: Option<PathBuf>,
    listing: crate::agent_binaries::Listing,
    warnings: Vec<String>,
}

impl AgentBinaries {
    /// Lists the directory (reading every file to hash it).
    fn read(config: &config::Config) -> AgentBinaries {
        let dir = config.agent_binaries.dir.clone();
        let mut warnings = Vec::new();
        let listing = match &dir {
            None => Default::default(),
            Some(d) => match crate::agent_binaries::list(d) {
                Ok(l) => {
                    for s in l.skipped.iter().filter(|s| s.mistake) {
                        warnings.push(format!(
                            "{} in agent_binaries.dir is not served: {} (copy the file itself there)",
                            s.name, s.reason
                        ));
                    }
                    if l.files.is_empty() {
                        warnings.push(format!(
                            "agent_binaries.dir {} holds no file to serve: put Coder's binaries there (coder-linux-amd64, ...)",
                            d.display()
                        ));
                    }
                    l
                }
                Err(e) => {
                    warnings.push(format!(
                        "agent_binaries.dir {} cannot be read ({e}): GET /bin/ fails until it can",
                        d.display()
                    ));
                    Default::default()
                }
            },
        };
        AgentBinaries {
            dir,
            listing,
            warnings,
        }
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "dir": self.dir.as_ref().map(|d| d.to_string_lossy().into_owned()),
            "files": self.listing.files.iter().map(|f| json!({
                "name": f.name, "size": f.size, "sha256": f.sha256,
            })).collect::<Vec<_>>(),
            "skipped": self.listing.skipped.iter().map(|s| json!({
                "name": s.name, "reason": s.reason,
            })).collect::<Vec<_>>(),
            "warnings": self.warnings,
        })
    }

    fn text(&self) -> String {
        let Some(dir) = &self.dir else {
            return "\n# agent binaries: none served (agent_binaries.dir is not set)\n".into();
        };
        let mut text = format!(
            "\n# agent binaries (GET /bin/NAME) from {}\n",
            dir.display()
        );
        let width = self
            .listing
            .files
            .iter()
            .map(|f| f.name.len())
            .max()
            .unwrap_or(0);
        for f in &self.listing.files {
            text.push_str(&format!(
                "#   {:<width$}  {:>11} bytes  sha256 {}\n",
                f.name, f.size, f.sha256
            ));
        }
        for s in self.listing.skipped.iter().filter(|s| !s.mistake) {
            text.push_str(&format!("# note: {} is not served: {}\n", s.name, s.reason));
        }
        for w in &self.warnings {
            text.push_str(&format!("# warning: {w}\n"));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
