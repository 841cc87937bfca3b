//! Runtime configuration: where every setting comes from and what it resolves to.
//!
//! Settings are layered, lowest to highest precedence:
//!
//! 1. built-in defaults (declared with each key below),
//! 2. the TOML config file,
//! 3. `APPLIANCE_*` environment variables (`APPLIANCE_<KEY>`, nested keys joined
//!    by `__`, e.g. `log.filter` → `APPLIANCE_LOG__FILTER`),
//! 4. command-line flags ([`Overrides`]).
//!
//! The config file is `--config FILE` if given, else `$APPLIANCE_CONFIG` if set,
//! and otherwise [`DEFAULT_CONFIG_PATH`] — but only if that file exists. A file
//! named by the flag or the variable must exist.
//!
//! Every key is declared once, in the `settings!` table below (the syntax
//! is documented on the macro, in `schema.rs`): its field and type in [`Config`] (or one of its tables), its
//! default, what the file may hold for it and how its value is validated.
//! From that one declaration come the typed structs, the file schema serde
//! parses (unknown keys rejected), the environment variable names, and the
//! resolution that records where each value came from ([`Source`]). Every
//! error names the key and where the offending value came from. Unknown
//! `APPLIANCE_*` variables are not fatal: they are returned as warnings in
//! [`Loaded::warnings`] for the caller to log.
//!
//! Adding a key: one line in the table (plus a parser in `values.rs` if none
//! fits), and its documentation in `config/appliance.toml`; the unit tests
//! fail if the sample misses it or shows a stale default. Keys whose name
//! ends in `secret`, `token` or `password` are redacted whenever values are
//! rendered; a key of type [`Secret`] must be named so (a test checks).
//!
//! Files: `schema.rs` (the table machinery), `layers.rs` (file, environment
//! and flags), `values.rs` (parsers, durations, URLs), `render.rs`
//! (`check-config` output), `tests.rs`.
//!
//! What this module must not do: no I/O other than reading the one config
//! file (the environment is passed in, never read from `std::env`), no global
//! state, no printing or logging (warnings are returned), and no dependency on
//! the rest of the crate beyond the types of the keys.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod layers;
mod render;
mod schema;
#[cfg(test)]
mod tests;
mod values;

pub use layers::load;
pub(crate) use values::derive_access_url;
pub use values::{format_duration, parse_duration};

use layers::{RawDuration, RawExternalAuth};
use schema::{Entry, settings};
use values::{
    check_http_url, parse_base_url, parse_bool, parse_duration_at_least, parse_host_port_list,
    parse_int_in, parse_log_format, parse_non_empty, parse_optional, parse_path, parse_path_list,
    parse_socket_addr, parse_ssh_keygen_algorithm, parse_synchronous, parse_url,
};

/// Config file read when neither `--config` nor `APPLIANCE_CONFIG` is given,
/// and only if it exists.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/appliance/appliance.toml";

/// Environment variable naming the config file (lower precedence than `--config`).
pub const CONFIG_ENV: &str = "APPLIANCE_CONFIG";

/// Prefix of every configuration environment variable.
pub const ENV_PREFIX: &str = "APPLIANCE_";

/// What secret values render as.
pub const REDACTED: &str = "(redacted)";

// ---------------------------------------------------------------------------
// The keys: one declaration each (see `schema::settings!` for the syntax).
// Declaration order is the order `check-config` lists them and resolves them.
// ---------------------------------------------------------------------------

settings! {
    /// The validated configuration. `Config::default()` is the built-in defaults.
    pub struct Config in RawConfig {
        /// SQLite database file.
        db: PathBuf = key { default: "appliance.db", file: PathBuf, parse: parse_path },
        /// Address the HTTP server binds.
        listen: SocketAddr = key {
            default: "127.0.0.1:3000", file: String, parse: parse_socket_addr,
        },
        /// Externally reachable base URL: `http`/`https`, has a host, no trailing `/`.
        access_url: String = key {
            default: { derive_access_url(listen) }, file: String, parse: parse_base_url,
        },
        http: HttpConfig,
        log: LogConfig,
        database: DatabaseConfig,
        agent: AgentConfig,
        identity: IdentityConfig,
        logs: LogsConfig,
        /// Algorithm of new users' git SSH keys.
        ssh_keygen_algorithm: crate::gitsshkey::Algorithm = key {
            default: "ed25519", file: String, parse: parse_ssh_keygen_algorithm,
        },
        /// `[[external_auth]]` providers, in file order (file only; checked with
        /// `external_auth::provider`, secrets read from their files).
        external_auth: Vec<crate::external_auth::ProviderSpec> = list {
            file: Vec<RawExternalAuth>,
        },
        metrics: MetricsConfig,
        derp: DerpConfig,
        agent_binaries: AgentBinariesConfig,
    }

    /// Coder's agent binaries, served at `GET /bin/{name}` as coderd does.
    pub struct AgentBinariesConfig in RawAgentBinaries {
        /// The directory whose files (`coder-linux-amd64`, ...) are served;
        /// unset: `/bin/` answers 404. Its files are read at request time.
        dir: Option<PathBuf> = key {
            default: "", file: String,
            parse: |v| parse_optional(v, |s| Ok(PathBuf::from(s))),
        },
    }

    /// The DERP map clients and agents are given, and the embedded relay.
    pub struct DerpConfig in RawDerp {
        /// Serve the relay at `/derp` on this server and put it in the map.
        embedded_relay: bool = key { default: "true", file: bool, parse: parse_bool },
        /// The embedded relay's region (coderd's defaults: 999, `coder`).
        region_id: u32 = key {
            default: "999", file: i64, parse: |v| parse_int_in(v, 1, i32::MAX as u32),
        },
        region_code: String = key { default: "coder", file: String, parse: parse_non_empty },
        region_name: String = key {
            default: "Coder Embedded Relay", file: String, parse: parse_non_empty,
        },
        /// STUN servers (`host:port`) added to the embedded region; none by
        /// default, as an air-gapped network has none to reach.
        stun_addresses: Vec<String> = key {
            default: "", file: Vec<String>, parse: parse_host_port_list,
        },
        /// A JSON DERP map (tailcfg.DERPMap, Go field names) of the operator's
        /// own relays, merged with the embedded region. Read at start-up.
        map_file: Option<PathBuf> = key {
            default: "", file: String,
            parse: |v| parse_optional(v, |s| Ok(PathBuf::from(s))),
        },
        /// Clients and agents connect only through relays, never directly
        /// (STUN is then left out of the map).
        disable_direct_connections: bool = key {
            default: "false", file: bool, parse: parse_bool,
        },
        /// Clients and agents reach relays over WebSockets only.
        force_websockets: bool = key { default: "false", file: bool, parse: parse_bool },
        /// The suffix of workspace host names clients use (`<agent>.<workspace>.<owner>.<suffix>`).
        hostname_suffix: String = key { default: "coder", file: String, parse: parse_non_empty },
    }

    /// Connections: how long a client may take, how many may be open, and
    /// how long a shutdown waits for them.
    pub struct HttpConfig in RawHttp {
        /// A request head must arrive within this long of the connection being
        /// ready for it (accepted, or done with the previous request).
        header_read_timeout: Duration = key {
            default: "1m", file: RawDuration, parse: |v| parse_duration_at_least(v, 1),
        },
        /// A connection with no request in progress is closed after this long.
        idle_timeout: Duration = key {
            default: "1m", file: RawDuration, parse: |v| parse_duration_at_least(v, 1),
        },
        /// Open connections (WebSockets included); more wait to be accepted.
        /// Lowered at start-up to fit the open-files limit.
        max_connections: u32 = key {
            default: "16384", file: i64, parse: |v| parse_int_in(v, 1, 1_000_000),
        },
        /// After SIGTERM, how long in-flight requests may take before their
        /// connections are cut.
        shutdown_timeout: Duration = key {
            default: "10s", file: RawDuration, parse: |v| parse_duration_at_least(v, 0),
        },
    }

    /// `GET /metrics`.
    pub struct MetricsConfig in RawMetrics {
        /// Serve `/metrics` at all (false: it answers 404 like an unknown route).
        enabled: bool = key { default: "true", file: bool, parse: parse_bool },
        /// When set, scrapes must send `Authorization: Bearer <token>`.
        token: Option<Secret> = key {
            default: "", file: String,
            parse: |v| parse_optional(v, |s| Ok(Secret(s.to_owned()))),
        },
    }

    /// Agent logs.
    pub struct LogsConfig in RawLogs {
        /// Per-agent cap on stored log bytes (upstream: 1 MiB).
        max_bytes_per_agent: u32 = key {
            default: "1048576", file: i64, parse: |v| parse_int_in(v, 1024, u32::MAX),
        },
        /// How long logs of agents that left the latest build are kept; zero keeps them forever.
        retention: Duration = key {
            default: "7d", file: RawDuration, parse: |v| parse_duration_at_least(v, 0),
        },
    }

    pub struct LogConfig in RawLog {
        /// `tracing_subscriber::EnvFilter` directives (only checked to be non-empty here).
        filter: String = key { default: "info", file: String, parse: parse_non_empty },
        format: LogFormat = key { default: "text", file: String, parse: parse_log_format },
    }

    pub struct DatabaseConfig in RawDatabase {
        /// SQLite `busy_timeout`: how long a connection waits for a lock.
        busy_timeout: Duration = key {
            default: "5s", file: RawDuration, parse: |v| parse_duration_at_least(v, 0),
        },
        /// Connections in the pool, 1..=64.
        pool_size: u32 = key { default: "8", file: i64, parse: |v| parse_int_in(v, 1, 64) },
        /// Survive power loss too (`FULL`: an fsync per commit), not only a crash
        /// of the process (`NORMAL`).
        #[key = "synchronous"]
        synchronous_full: bool = key {
            default: "normal", file: String, parse: parse_synchronous,
        },
    }

    pub struct AgentConfig in RawAgent {
        /// Troubleshooting link for agents whose template sets none (http/https URL).
        fallback_troubleshooting_url: String = key {
            default: "https://coder.com/docs/admin/templates/troubleshooting",
            file: String,
            parse: parse_url,
        },
        /// How long an agent may stay silent before it counts as disconnected (≥ 2s).
        inactive_disconnect_timeout: Duration = key {
            default: "30s", file: RawDuration, parse: |v| parse_duration_at_least(v, 2),
        },
        /// How often a connected agent's `/me/rpc` session is pinged and its
        /// `last_connected_at` written (all agents in one transaction).
        connection_update_interval: Duration = key {
            default: "15s", file: RawDuration, parse: |v| parse_duration_at_least(v, 1),
        },
        /// The `report_interval` UpdateStats tells agents (Coder's default: 30s).
        stats_report_interval: Duration = key {
            default: "30s", file: RawDuration, parse: |v| parse_duration_at_least(v, 1),
        },
    }

    /// Where instance-identity trust material comes from. The files are read by
    /// the caller (this module reads only the config file).
    pub struct IdentityConfig in RawIdentity {
        /// Sign-in attempts per minute per client address; 0 turns the limit off.
        rate_limit_per_minute: u32 = key {
            default: "600", file: i64, parse: |v| parse_int_in(v, 0, 1_000_000),
        },
        aws: AwsIdentityConfig,
        azure: AzureIdentityConfig,
        gcp: GcpIdentityConfig,
    }

    pub struct AwsIdentityConfig in RawIdentityAws {
        /// Keep the built-in AWS keys (false: only `certificates`).
        builtin: bool = key { default: "true", file: bool, parse: parse_bool },
        /// PEM files or directories of PEM files, added to (or replacing) the built-ins.
        certificates: Vec<PathBuf> = key {
            default: "", file: Vec<String>, parse: parse_path_list,
        },
    }

    pub struct AzureIdentityConfig in RawIdentityAzure {
        /// Keep the built-in Azure roots and intermediates.
        builtin: bool = key { default: "true", file: bool, parse: parse_bool },
        roots: Vec<PathBuf> = key { default: "", file: Vec<String>, parse: parse_path_list },
        intermediates: Vec<PathBuf> = key {
            default: "", file: Vec<String>, parse: parse_path_list,
        },
    }

    pub struct GcpIdentityConfig in RawIdentityGcp {
        /// A Google JWKS document on disk (e.g. installed by `appliance identity import-jwks`).
        jwks_file: Option<PathBuf> = key {
            default: "", file: String,
            parse: |v| parse_optional(v, |s| Ok(PathBuf::from(s))),
        },
        /// Where to fetch Google's JWKS from, when the network allows.
        jwks_url: Option<String> = key {
            default: "", file: String,
            parse: |v| parse_optional(v, |s| check_http_url(s, false)),
        },
        /// Required `aud` of GCP identity tokens; `None` accepts any (as upstream).
        audience: Option<String> = key {
            default: "", file: String,
            parse: |v| parse_optional(v, |s| Ok(s.to_owned())),
        },
    }
}

impl Default for Config {
    fn default() -> Self {
        // Only built-in constants are parsed here; the `defaults_are_valid`
        // test proves they resolve.
        match schema::resolve(&schema::Layered::new()) {
            Ok((config, _)) => config,
            Err(e) => panic!("built-in config defaults are invalid: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Value types
// ---------------------------------------------------------------------------

/// A value never shown: its `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// `log.filter` → `APPLIANCE_LOG__FILTER`.
pub fn env_var_name(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.to_ascii_uppercase().replace('.', "__")
    )
}

/// Whether a key's value must never be shown: its last segment ends in
/// `secret`, `token` or `password`.
pub fn is_secret(key: &str) -> bool {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    ["secret", "token", "password"]
        .iter()
        .any(|s| leaf.ends_with(s))
}

// ---------------------------------------------------------------------------
// Sources, overrides, errors, the result of loading
// ---------------------------------------------------------------------------

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    /// Environment variable name.
    Env(String),
    /// Flag name including dashes, e.g. `--db`.
    Flag(&'static str),
}

impl Source {
    /// Compact form used by `check-config`: `default`, `file:/path`, `env:NAME`, `flag:--db`.
    pub fn tag(&self) -> String {
        match self {
            Source::Default => "default".to_owned(),
            Source::File(p) => format!("file:{}", p.display()),
            Source::Env(name) => format!("env:{name}"),
            Source::Flag(flag) => format!("flag:{flag}"),
        }
    }
}

/// Prose form for error messages.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("built-in default"),
            Source::File(p) => write!(f, "config file {}", p.display()),
            Source::Env(name) => write!(f, "environment variable {name}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// Command-line flags, already parsed by clap. `None` means "not given".
///
/// Do not give these clap `env = ...` fallbacks: the environment is handled
/// here, and a clap fallback would be reported as coming from the flag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--config FILE`
    pub config: Option<PathBuf>,
    /// `--db PATH`
    pub db: Option<PathBuf>,
    /// `--listen ADDR`
    pub listen: Option<SocketAddr>,
    /// `--access-url URL` (validated here, so clap can take it as a string)
    pub access_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {} does not exist (named by {origin})", path.display())]
    FileNotFound { path: PathBuf, origin: Source },
    #[error("{origin} names the config file but is empty")]
    EmptyConfigPath { origin: Source },
    #[error("cannot read config file {}: {error}", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        error: io::Error,
    },
    #[error("invalid config file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("unknown key `{key}` in config file {} ({hint})", path.display())]
    UnknownKey {
        path: PathBuf,
        key: String,
        hint: String,
    },
    #[error("invalid value {value} for `{key}` (from {origin}): {reason}")]
    Invalid {
        key: String,
        origin: Source,
        /// The offending value as written, or [`REDACTED`] for secret keys.
        value: String,
        reason: String,
    },
}

impl ConfigError {
    /// The key an error is about, if any.
    #[cfg(test)]
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. } | ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// The result of [`load`]: the configuration plus how it was arrived at.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// The config file that was read, if any.
    pub file: Option<PathBuf>,
    /// Non-fatal problems (unknown `APPLIANCE_*` variables) for the caller to log.
    pub warnings: Vec<String>,
    /// Every key's effective value and source, in declaration order.
    entries: Vec<Entry>,
}
