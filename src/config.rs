//! Runtime configuration: where every setting comes from and what it resolves to.
//!
//! Settings are layered, lowest to highest precedence:
//!
//! 1. built-in defaults (written next to each key in [`resolve`]),
//! 2. the TOML config file,
//! 3. `APPLIANCE_*` environment variables (`APPLIANCE_<KEY>`, nested keys joined
//!    by `__`, e.g. `log.filter` → `APPLIANCE_LOG__FILTER`),
//! 4. command-line flags ([`Overrides`]).
//!
//! The config file is `--config FILE` if given, else `$APPLIANCE_CONFIG` if set,
//! and otherwise [`DEFAULT_CONFIG_PATH`] — but only if that file exists. A file
//! named by the flag or the variable must exist.
//!
//! Loading happens in two stages. The file is parsed into a [`RawConfig`]
//! (every field optional, unknown keys rejected), then the file, environment
//! and flag layers are flattened into one map of dotted key → raw value plus
//! its [`Source`], and [`resolve`] validates each key into the typed
//! [`Config`]. Every error names the key and where the offending value came
//! from. Unknown `APPLIANCE_*` variables are not fatal: they are returned as
//! warnings in [`Loaded::warnings`] for the caller to log.
//!
//! Adding a key: add the field to [`RawConfig`] (or one of its tables), add the
//! typed field to [`Config`] with one `r.get(...)` line in [`resolve`], and
//! document it in `config/appliance.toml`. The unit tests fail if any of the
//! three disagree (including a sample that went stale). Keys whose name ends in
//! `secret`, `token` or `password` are redacted whenever values are rendered.
//!
//! What this module must not do: no I/O other than reading the one config
//! file (the environment is passed in, never read from `std::env`), no global
//! state, no printing or logging (warnings are returned), and no dependency on
//! the rest of the crate.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
// Resolved configuration
// ---------------------------------------------------------------------------

/// The validated configuration. `Config::default()` is the built-in defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// SQLite database file.
    pub db: PathBuf,
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// Externally reachable base URL: `http`/`https`, has a host, no trailing `/`.
    pub access_url: String,
    pub log: LogConfig,
    pub database: DatabaseConfig,
    pub agent: AgentConfig,
    pub identity: IdentityConfig,
    pub logs: LogsConfig,
    /// Algorithm of new users' git SSH keys.
    pub ssh_keygen_algorithm: crate::gitsshkey::Algorithm,
    /// `[[external_auth]]` providers, in file order (file only; checked with
    /// `external_auth::provider`, secrets read from their files).
    pub external_auth: Vec<crate::external_auth::ProviderSpec>,
    pub metrics: MetricsConfig,
}

/// `GET /metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Serve `/metrics` at all (false: it answers 404 like an unknown route).
    pub enabled: bool,
    /// When set, scrapes must send `Authorization: Bearer <token>`.
    pub token: Option<Secret>,
}

/// A value never shown: its `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Agent logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogsConfig {
    /// Per-agent cap on stored log bytes (upstream: 1 MiB).
    pub max_bytes_per_agent: u32,
    /// How long logs of agents that left the latest build are kept; zero keeps them forever.
    pub retention: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `tracing_subscriber::EnvFilter` directives (only checked to be non-empty here).
    pub filter: String,
    pub format: LogFormat,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// SQLite `busy_timeout`: how long a connection waits for a lock.
    pub busy_timeout: Duration,
    /// Connections in the pool, 1..=64.
    pub pool_size: u32,
    /// Survive power loss too (`FULL`: an fsync per commit), not only a crash
    /// of the process (`NORMAL`).
    pub synchronous_full: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// Troubleshooting link for agents whose template sets none (http/https URL).
    pub fallback_troubleshooting_url: String,
    /// How long an agent may stay silent before it counts as disconnected (≥ 2s).
    pub inactive_disconnect_timeout: Duration,
}

/// Where instance-identity trust material comes from. The files are read by
/// the caller (this module reads only the config file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConfig {
    /// Sign-in attempts per minute per client address; 0 turns the limit off.
    pub rate_limit_per_minute: u32,
    pub aws: AwsIdentityConfig,
    pub azure: AzureIdentityConfig,
    pub gcp: GcpIdentityConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsIdentityConfig {
    /// Keep the built-in AWS keys (false: only `certificates`).
    pub builtin: bool,
    /// PEM files or directories of PEM files, added to (or replacing) the built-ins.
    pub certificates: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureIdentityConfig {
    /// Keep the built-in Azure roots and intermediates.
    pub builtin: bool,
    pub roots: Vec<PathBuf>,
    pub intermediates: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcpIdentityConfig {
    /// A Google JWKS document on disk (e.g. installed by `appliance identity import-jwks`).
    pub jwks_file: Option<PathBuf>,
    /// Where to fetch Google's JWKS from, when the network allows.
    pub jwks_url: Option<String>,
    /// Required `aud` of GCP identity tokens; `None` accepts any (as upstream).
    pub audience: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        // Only built-in constants are parsed here; the `defaults_are_valid`
        // test proves they resolve.
        match resolve(&BTreeMap::new()) {
            Ok((config, _)) => config,
            Err(e) => panic!("built-in config defaults are invalid: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Raw file schema
// ---------------------------------------------------------------------------

/// The config file as written: every key optional, unknown keys rejected.
/// Tables are plain structs (never `Option`) so that the key list can be
/// derived from `RawConfig::default()`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub db: Option<PathBuf>,
    pub listen: Option<String>,
    pub access_url: Option<String>,
    pub ssh_keygen_algorithm: Option<String>,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub database: RawDatabase,
    #[serde(default)]
    pub agent: RawAgent,
    #[serde(default)]
    pub identity: RawIdentity,
    #[serde(default)]
    pub logs: RawLogs,
    #[serde(default)]
    pub metrics: RawMetrics,
    /// `[[external_auth]]`: a list of tables, so not a dotted key (no
    /// environment variable or flag sets it); left out of the key listing.
    #[serde(default, skip_serializing)]
    pub external_auth: Vec<RawExternalAuth>,
}

/// One `[[external_auth]]` table.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExternalAuth {
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub display_name: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    pub auth_url: Option<String>,
    pub token_url: Option<String>,
    pub validate_url: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub regex: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub enabled: Option<bool>,
    pub token: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogs {
    pub max_bytes_per_agent: Option<i64>,
    pub retention: Option<RawDuration>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    pub rate_limit_per_minute: Option<i64>,
    #[serde(default)]
    pub aws: RawIdentityAws,
    #[serde(default)]
    pub azure: RawIdentityAzure,
    #[serde(default)]
    pub gcp: RawIdentityGcp,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentityAws {
    pub builtin: Option<bool>,
    pub certificates: Option<Vec<String>>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentityAzure {
    pub builtin: Option<bool>,
    pub roots: Option<Vec<String>>,
    pub intermediates: Option<Vec<String>>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentityGcp {
    pub jwks_file: Option<String>,
    pub jwks_url: Option<String>,
    pub audience: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub filter: Option<String>,
    pub format: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    pub busy_timeout: Option<RawDuration>,
    pub pool_size: Option<i64>,
    pub synchronous: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub fallback_troubleshooting_url: Option<String>,
    pub inactive_disconnect_timeout: Option<RawDuration>,
}

/// A duration as written in the file: `"30s"`-style text or integer seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum RawDuration {
    Seconds(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a duration such as \"30s\", \"5m\", \"1h\", \"7d\", or integer seconds",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawDuration, E> {
                Ok(RawDuration::Text(v.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawDuration, E> {
                Ok(RawDuration::Seconds(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawDuration, E> {
                i64::try_from(v)
                    .map(RawDuration::Seconds)
                    .map_err(|_| E::custom("duration is too large"))
            }
        }
        d.deserialize_any(V)
    }
}

/// Every dotted key, in declaration order of [`RawConfig`].
fn known_keys() -> Vec<String> {
    // Serializing a struct of options, strings and integers cannot fail.
    let value = serde_json::to_value(RawConfig::default()).unwrap_or_default();
    let mut out = Vec::new();
    flatten_json(&value, "", &mut |key, _| out.push(key));
    out
}

/// Calls `leaf` for every non-object value, with its dotted key.
fn flatten_json(
    value: &serde_json::Value,
    prefix: &str,
    leaf: &mut dyn FnMut(String, &serde_json::Value),
) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_json(v, &key, leaf);
            }
        }
        other => leaf(prefix.to_owned(), other),
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
// Sources, overrides, errors
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

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

/// A value before validation, from any layer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Raw {
    Str(String),
    Int(i64),
    Bool(bool),
    /// A TOML array of strings (from the environment: one comma-separated string).
    List(Vec<String>),
    /// From a `PathBuf` flag; may not be UTF-8.
    Path(PathBuf),
}

impl Raw {
    fn shown(&self, key: &str) -> String {
        if is_secret(key) {
            return REDACTED.to_owned();
        }
        match self {
            Raw::Str(s) => format!("{s:?}"),
            Raw::Int(i) => i.to_string(),
            Raw::Bool(b) => b.to_string(),
            Raw::List(l) => format!("{l:?}"),
            Raw::Path(p) => format!("{:?}", p.display().to_string()),
        }
    }
}

/// Merged layers: dotted key → highest-precedence raw value and its source.
type Layered = BTreeMap<String, (Raw, Source)>;

/// One resolved key, for rendering.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    key: String,
    /// Effective value (normalized), `Null` if unset.
    value: serde_json::Value,
    source: Source,
}

/// The result of [`load`]: the configuration plus how it was arrived at.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// The config file that was read, if any.
    pub file: Option<PathBuf>,
    /// Non-fatal problems (unknown `APPLIANCE_*` variables) for the caller to log.
    pub warnings: Vec<String>,
    entries: Vec<Entry>,
}

/// Loads the configuration: defaults < file < `env` < `overrides`.
///
/// `env` is the process environment (only `APPLIANCE_*` entries matter); pass
/// it in, e.g. `std::env::vars_os()` filtered to UTF-8 pairs. The only I/O is
/// reading the config file: `overrides.config`, else `APPLIANCE_CONFIG`,
/// else [`DEFAULT_CONFIG_PATH`] if it exists (a missing default file is not an
/// error; a missing named file is).
pub fn load(overrides: &Overrides, env: &BTreeMap<String, String>) -> Result<Loaded, ConfigError> {
    load_with(overrides, env, &|path| std::fs::read_to_string(path))
}

/// [`load`] with the file reader injected (tests use an in-memory one).
fn load_with(
    overrides: &Overrides,
    env: &BTreeMap<String, String>,
    read: &dyn Fn(&Path) -> io::Result<String>,
) -> Result<Loaded, ConfigError> {
    let keys = known_keys();
    let mut layered = Layered::new();

    // File.
    let file = read_config_file(overrides, env, read)?;
    let mut external_auth = Vec::new();
    if let Some((path, text)) = &file {
        let (pairs, external) = parse_file(path, text, &keys)?;
        for (key, raw) in pairs {
            layered.insert(key, (raw, Source::File(path.clone())));
        }
        external_auth = external_auth_specs(path, &external, read)?;
    }

    // Environment.
    let mut warnings = Vec::new();
    let by_env: BTreeMap<String, &String> = keys.iter().map(|k| (env_var_name(k), k)).collect();
    for (name, value) in env {
        if !name.starts_with(ENV_PREFIX) || name == CONFIG_ENV {
            continue;
        }
        match by_env.get(name) {
            Some(key) => {
                layered.insert(
                    (*key).clone(),
                    (Raw::Str(value.clone()), Source::Env(name.clone())),
                );
            }
            None => warnings.push(unknown_env_warning(name, by_env.keys())),
        }
    }

    // Flags.
    let flags = [
        ("db", "--db", overrides.db.clone().map(Raw::Path)),
        (
            "listen",
            "--listen",
            overrides.listen.map(|a| Raw::Str(a.to_string())),
        ),
        (
            "access_url",
            "--access-url",
            overrides.access_url.clone().map(Raw::Str),
        ),
    ];
    for (key, flag, value) in flags {
        debug_assert!(keys.iter().any(|k| k == key), "flag for unknown key {key}");
        if let Some(raw) = value {
            layered.insert(key.to_owned(), (raw, Source::Flag(flag)));
        }
    }

    let (mut config, entries) = resolve(&layered)?;
    config.external_auth = external_auth;
    Ok(Loaded {
        config,
        file: file.map(|(path, _)| path),
        warnings,
        entries,
    })
}

/// Finds and reads the config file; `None` if there is none to read.
fn read_config_file(
    overrides: &Overrides,
    env: &BTreeMap<String, String>,
    read: &dyn Fn(&Path) -> io::Result<String>,
) -> Result<Option<(PathBuf, String)>, ConfigError> {
    let named = match (&overrides.config, env.get(CONFIG_ENV)) {
        (Some(path), _) => Some((path.clone(), Source::Flag("--config"))),
        (None, Some(path)) => Some((PathBuf::from(path), Source::Env(CONFIG_ENV.to_owned()))),
        (None, None) => None,
    };
    match named {
        Some((path, origin)) => {
            if path.as_os_str().is_empty() {
                return Err(ConfigError::EmptyConfigPath { origin });
            }
            match read(&path) {
                Ok(text) => Ok(Some((path, text))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    Err(ConfigError::FileNotFound { path, origin })
                }
                Err(error) => Err(ConfigError::ReadFile { path, error }),
            }
        }
        None => {
            let path = PathBuf::from(DEFAULT_CONFIG_PATH);
            match read(&path) {
                Ok(text) => Ok(Some((path, text))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(error) => Err(ConfigError::ReadFile { path, error }),
            }
        }
    }
}

/// Parses the file text into flattened `(key, raw value)` pairs.
type FileKeys = (Vec<(String, Raw)>, Vec<RawExternalAuth>);

fn parse_file(path: &Path, text: &str, keys: &[String]) -> Result<FileKeys, ConfigError> {
    let parse_err = |e: toml::de::Error| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    };
    // Syntax first, then unknown keys with their full dotted name (serde's
    // deny_unknown_fields only names the last segment), then types.
    let table: toml::Table = toml::from_str(text).map_err(parse_err)?;
    check_unknown_keys(path, &table, "", keys)?;
    let raw: RawConfig = toml::from_str(text).map_err(parse_err)?;

    let value = serde_json::to_value(&raw).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let mut out = Vec::new();
    let mut bad = None;
    flatten_json(&value, "", &mut |key, v| match v {
        serde_json::Value::Null => {}
        serde_json::Value::String(s) => out.push((key, Raw::Str(s.clone()))),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => out.push((key, Raw::Int(i))),
            None => bad = Some(key),
        },
        serde_json::Value::Bool(b) => out.push((key, Raw::Bool(*b))),
        serde_json::Value::Array(items) => {
            let strings: Option<Vec<String>> = items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect();
            match strings {
                Some(list) => out.push((key, Raw::List(list))),
                None => bad = Some(key),
            }
        }
        _ => bad = Some(key),
    });
    match bad {
        // Unreachable with RawConfig's field types; kept as an error, not a panic.
        Some(key) => Err(ConfigError::Parse {
            path: path.to_owned(),
            message: format!("unsupported value type for `{key}`"),
        }),
        None => Ok((out, raw.external_auth)),
    }
}

/// Checks each `[[external_auth]]` table (with `external_auth::provider`)
/// and reads `client_secret_file`s. Errors name `external_auth[i].field`.
fn external_auth_specs(
    path: &Path,
    raws: &[RawExternalAuth],
    read: &dyn Fn(&Path) -> io::Result<String>,
) -> Result<Vec<crate::external_auth::ProviderSpec>, ConfigError> {
    let invalid = |i: usize, field: &str, value: String, reason: String| ConfigError::Invalid {
        key: format!("external_auth[{i}].{field}"),
        origin: Source::File(path.to_owned()),
        value,
        reason,
    };
    let mut specs: Vec<crate::external_auth::ProviderSpec> = Vec::new();
    for (i, raw) in raws.iter().enumerate() {
        let client_secret = match (&raw.client_secret, &raw.client_secret_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    i,
                    "client_secret_file",
                    REDACTED.into(),
                    "set client_secret or client_secret_file, not both".into(),
                ));
            }
            (Some(secret), None) => secret.clone(),
            (None, Some(file)) => read(file).map(|s| s.trim().to_string()).map_err(|e| {
                invalid(
                    i,
                    "client_secret_file",
                    format!("{:?}", file.display().to_string()),
                    format!("cannot read it: {e}"),
                )
            })?,
            (None, None) => String::new(),
        };
        let spec = crate::external_auth::ProviderSpec {
            id: raw.id.clone().unwrap_or_default(),
            kind: raw.kind.clone().unwrap_or_default(),
            display_name: raw.display_name.clone(),
            client_id: raw.client_id.clone().unwrap_or_default(),
            client_secret,
            auth_url: raw.auth_url.clone(),
            token_url: raw.token_url.clone(),
            validate_url: raw.validate_url.clone(),
            scopes: raw.scopes.clone(),
            regex: raw.regex.clone(),
        };
        if let Err((field, reason)) = crate::external_auth::provider(&spec) {
            let value = match field {
                "id" => format!("{:?}", spec.id),
                "type" => format!("{:?}", spec.kind),
                "client_id" => format!("{:?}", spec.client_id),
                "auth_url" => format!("{:?}", spec.auth_url.clone().unwrap_or_default()),
                "token_url" => format!("{:?}", spec.token_url.clone().unwrap_or_default()),
                "validate_url" => format!("{:?}", spec.validate_url.clone().unwrap_or_default()),
                "regex" => format!("{:?}", spec.regex.clone().unwrap_or_default()),
                _ => String::new(),
            };
            return Err(invalid(i, field, value, reason));
        }
        if specs.iter().any(|s| s.id == spec.id) {
            return Err(invalid(
                i,
                "id",
                format!("{:?}", spec.id),
                "another provider has this id".into(),
            ));
        }
        specs.push(spec);
    }
    Ok(specs)
}

fn check_unknown_keys(
    path: &Path,
    table: &toml::Table,
    prefix: &str,
    keys: &[String],
) -> Result<(), ConfigError> {
    for (name, value) in table {
        // A quoted key containing '.' is a single segment and never valid;
        // show it quoted so it is not mistaken for the nested key.
        let dotted = name.contains('.');
        let segment = if dotted {
            format!("{name:?}")
        } else {
            name.clone()
        };
        let key = if prefix.is_empty() {
            segment
        } else {
            format!("{prefix}.{segment}")
        };
        // `[[external_auth]]` tables are checked by serde (deny_unknown_fields).
        let is_leaf = !dotted && (keys.contains(&key) || key == "external_auth");
        let is_table = !dotted && keys.iter().any(|k| k.starts_with(&format!("{key}.")));
        match value {
            _ if is_leaf => {}
            toml::Value::Table(inner) if is_table => check_unknown_keys(path, inner, &key, keys)?,
            _ if is_table => {} // wrong type: serde reports it with a line number
            _ => {
                let hint = siblings_hint(prefix, keys);
                return Err(ConfigError::UnknownKey {
                    path: path.to_owned(),
                    key,
                    hint,
                });
            }
        }
    }
    Ok(())
}

/// "known keys in [log]: filter, format" / "known top-level keys: db, ..., [log], ...".
fn siblings_hint(prefix: &str, keys: &[String]) -> String {
    let mut names: Vec<String> = Vec::new();
    for key in keys {
        let rest = if prefix.is_empty() {
            key.as_str()
        } else {
            match key.strip_prefix(&format!("{prefix}.")) {
                Some(rest) => rest,
                None => continue,
            }
        };
        let name = match rest.split_once('.') {
            Some((table, _)) => format!(
                "[{}]",
                if prefix.is_empty() {
                    table.to_owned()
                } else {
                    format!("{prefix}.{table}")
                }
            ),
            None => rest.to_owned(),
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if prefix.is_empty() {
        format!("known top-level keys: {}", names.join(", "))
    } else {
        format!("known keys in [{prefix}]: {}", names.join(", "))
    }
}

fn unknown_env_warning<'a>(name: &str, mut known: impl Iterator<Item = &'a String>) -> String {
    // Forgiving match: case-insensitive, `_` for `__`.
    let loose = |s: &str| s.to_ascii_uppercase().replace("__", "_");
    let guess = known.find(|k| loose(k) == loose(name));
    match guess {
        Some(k) => format!("ignoring unknown environment variable {name} (did you mean {k}?)"),
        None => format!("ignoring unknown environment variable {name} (not a config key)"),
    }
}

// ---------------------------------------------------------------------------
// Resolution: one line per key
// ---------------------------------------------------------------------------

/// Validates the merged layers into a [`Config`]. The one place that lists
/// every key with its default and validation.
fn resolve(layered: &Layered) -> Result<(Config, Vec<Entry>), ConfigError> {
    let mut r = Resolver {
        layered,
        entries: Vec::new(),
    };
    let db = r.get("db", "appliance.db", parse_path)?;
    let listen = r.get("listen", "127.0.0.1:3000", parse_socket_addr)?;
    let access_url = r.get_or("access_url", parse_base_url, || derive_access_url(listen))?;
    let log = LogConfig {
        filter: r.get("log.filter", "info", parse_non_empty)?,
        format: r.get("log.format", "text", parse_log_format)?,
    };
    let database = DatabaseConfig {
        busy_timeout: r.get("database.busy_timeout", "5s", |v| {
            parse_duration_at_least(v, 0)
        })?,
        pool_size: r.get("database.pool_size", "8", |v| parse_int_in(v, 1, 64))?,
        synchronous_full: r.get("database.synchronous", "normal", |v| {
            match expect_str(v, "\"normal\" or \"full\"")?
                .to_ascii_lowercase()
                .as_str()
            {
                "normal" => Ok(false),
                "full" => Ok(true),
                _ => Err("expected \"normal\" or \"full\"".to_owned()),
            }
        })?,
    };
    let agent = AgentConfig {
        fallback_troubleshooting_url: r.get(
            "agent.fallback_troubleshooting_url",
            "https://coder.com/docs/admin/templates/troubleshooting",
            parse_url,
        )?,
        inactive_disconnect_timeout: r.get("agent.inactive_disconnect_timeout", "30s", |v| {
            parse_duration_at_least(v, 2)
        })?,
    };
    let identity = IdentityConfig {
        rate_limit_per_minute: r.get("identity.rate_limit_per_minute", "600", |v| {
            parse_int_in(v, 0, 1_000_000)
        })?,
        aws: AwsIdentityConfig {
            builtin: r.get("identity.aws.builtin", "true", parse_bool)?,
            certificates: r.get("identity.aws.certificates", "", parse_path_list)?,
        },
        azure: AzureIdentityConfig {
            builtin: r.get("identity.azure.builtin", "true", parse_bool)?,
            roots: r.get("identity.azure.roots", "", parse_path_list)?,
            intermediates: r.get("identity.azure.intermediates", "", parse_path_list)?,
        },
        gcp: GcpIdentityConfig {
            jwks_file: r.get("identity.gcp.jwks_file", "", |v| {
                parse_optional(v, |s| Ok(PathBuf::from(s)))
            })?,
            jwks_url: r.get("identity.gcp.jwks_url", "", |v| {
                parse_optional(v, |s| check_http_url(s, false))
            })?,
            audience: r.get("identity.gcp.audience", "", |v| {
                parse_optional(v, |s| Ok(s.to_owned()))
            })?,
        },
    };
    let logs = LogsConfig {
        max_bytes_per_agent: r.get("logs.max_bytes_per_agent", "1048576", |v| {
            parse_int_in(v, 1024, u32::MAX)
        })?,
        retention: r.get("logs.retention", "7d", |v| parse_duration_at_least(v, 0))?,
    };
    let ssh_keygen_algorithm = r.get("ssh_keygen_algorithm", "ed25519", |v| {
        expect_str(v, "\"ed25519\", \"ecdsa\" or \"rsa4096\"")?.parse()
    })?;
    let metrics = MetricsConfig {
        enabled: r.get("metrics.enabled", "true", parse_bool)?,
        token: r.get("metrics.token", "", |v| {
            parse_optional(v, |s| Ok(Secret(s.to_owned())))
        })?,
    };
    let config = Config {
        db,
        listen,
        access_url,
        log,
        database,
        agent,
        identity,
        logs,
        ssh_keygen_algorithm,
        external_auth: Vec::new(),
        metrics,
    };
    Ok((config, r.entries))
}

struct Resolver<'a> {
    layered: &'a Layered,
    entries: Vec<Entry>,
}

impl Resolver<'_> {
    /// The key's value from the highest layer that sets it, else `default`
    /// (parsed with the same parser, so defaults are validated too).
    fn get<T: Render>(
        &mut self,
        key: &str,
        default: &str,
        parse: impl FnOnce(&Raw) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let fallback = (Raw::Str(default.to_owned()), Source::Default);
        let (raw, source) = self.layered.get(key).unwrap_or(&fallback);
        let value = parse(raw).map_err(|reason| invalid(key, raw, source, reason))?;
        self.record(key, &value, source.clone());
        Ok(value)
    }

    /// Like [`Resolver::get`], but the default is computed (e.g. from another key).
    fn get_or<T: Render>(
        &mut self,
        key: &str,
        parse: impl FnOnce(&Raw) -> Result<T, String>,
        default: impl FnOnce() -> T,
    ) -> Result<T, ConfigError> {
        let value = match self.layered.get(key) {
            Some((raw, source)) => {
                let value = parse(raw).map_err(|reason| invalid(key, raw, source, reason))?;
                self.record(key, &value, source.clone());
                value
            }
            None => {
                let value = default();
                self.record(key, &value, Source::Default);
                value
            }
        };
        Ok(value)
    }

    fn record<T: Render>(&mut self, key: &str, value: &T, source: Source) {
        self.entries.push(Entry {
            key: key.to_owned(),
            value: value.render(),
            source,
        });
    }
}

fn invalid(key: &str, raw: &Raw, source: &Source, reason: String) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        origin: source.clone(),
        value: raw.shown(key),
        reason,
    }
}

/// How an effective value is shown by `check-config`.
trait Render {
    fn render(&self) -> serde_json::Value;
}

impl Render for PathBuf {
    fn render(&self) -> serde_json::Value {
        self.to_string_lossy().into_owned().into()
    }
}
impl Render for SocketAddr {
    fn render(&self) -> serde_json::Value {
        self.to_string().into()
    }
}
impl Render for String {
    fn render(&self) -> serde_json::Value {
        self.clone().into()
    }
}
impl Render for u32 {
    fn render(&self) -> serde_json::Value {
        (*self).into()
    }
}
impl Render for Duration {
    fn render(&self) -> serde_json::Value {
        format_duration(*self).into()
    }
}
impl Render for bool {
    fn render(&self) -> serde_json::Value {
        (*self).into()
    }
}
impl Render for Vec<PathBuf> {
    fn render(&self) -> serde_json::Value {
        self.iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .into()
    }
}
impl<T: Render> Render for Option<T> {
    fn render(&self) -> serde_json::Value {
        match self {
            Some(v) => v.render(),
            None => serde_json::Value::Null,
        }
    }
}
impl Render for Secret {
    fn render(&self) -> serde_json::Value {
        self.0.clone().into()
    }
}
impl Render for LogFormat {
    fn render(&self) -> serde_json::Value {
        self.as_str().into()
    }
}
impl Render for crate::gitsshkey::Algorithm {
    fn render(&self) -> serde_json::Value {
        self.as_str().into()
    }
}

/// `0.0.0.0`/`[::]` are not addresses a client can use; point at loopback instead.
pub(crate) fn derive_access_url(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

// ---------------------------------------------------------------------------
// Value parsers. Errors say what was expected; the caller adds key, value, source.
// ---------------------------------------------------------------------------

fn expect_str(raw: &Raw, what: &str) -> Result<String, String> {
    match raw {
        Raw::Str(s) => Ok(s.clone()),
        Raw::Path(p) => Ok(p.to_string_lossy().into_owned()),
        Raw::Int(_) => Err(format!("expected {what}, not an integer")),
        Raw::Bool(_) => Err(format!("expected {what}, not a boolean")),
        Raw::List(_) => Err(format!("expected {what}, not a list")),
    }
}

fn parse_path(raw: &Raw) -> Result<PathBuf, String> {
    let path = match raw {
        Raw::Path(p) => p.clone(),
        other => PathBuf::from(expect_str(other, "a path")?),
    };
    if path.as_os_str().is_empty() {
        return Err("must not be empty".to_owned());
    }
    Ok(path)
}

fn parse_socket_addr(raw: &Raw) -> Result<SocketAddr, String> {
    expect_str(raw, "an address")?.trim().parse().map_err(|_| {
        "expected IP:port, e.g. 127.0.0.1:3000, 0.0.0.0:3000 or [::]:3000 (host names are not accepted)"
            .to_owned()
    })
}

fn parse_bool(raw: &Raw) -> Result<bool, String> {
    match raw {
        Raw::Bool(b) => Ok(*b),
        other => match expect_str(other, "true or false")?.trim() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err("expected true or false".to_owned()),
        },
    }
}

/// A list of paths: a TOML array, or one comma-separated string (environment);
/// the empty string is the empty list.
fn parse_path_list(raw: &Raw) -> Result<Vec<PathBuf>, String> {
    let items: Vec<String> = match raw {
        Raw::List(l) => l.clone(),
        other => expect_str(other, "a list of paths")?
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
    };
    if items.iter().any(|s| s.trim().is_empty()) {
        return Err("paths must not be empty".to_owned());
    }
    Ok(items.into_iter().map(PathBuf::from).collect())
}

/// An optional string setting: empty means unset.
fn parse_optional<T>(
    raw: &Raw,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<Option<T>, String> {
    let s = expect_str(raw, "a string")?;
    if s.trim().is_empty() {
        Ok(None)
    } else {
        parse(s.trim()).map(Some)
    }
}

fn parse_non_empty(raw: &Raw) -> Result<String, String> {
    let s = expect_str(raw, "a string")?;
    if s.trim().is_empty() {
        return Err("must not be empty".to_owned());
    }
    Ok(s)
}

fn parse_log_format(raw: &Raw) -> Result<LogFormat, String> {
    match expect_str(raw, "\"text\" or \"json\"")?.as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err("expected \"text\" or \"json\"".to_owned()),
    }
}

fn parse_int_in(raw: &Raw, min: u32, max: u32) -> Result<u32, String> {
    let n = match raw {
        Raw::Int(i) => *i,
        other => expect_str(other, "an integer")?
            .trim()
            .parse::<i64>()
            .map_err(|_| "expected an integer".to_owned())?,
    };
    u32::try_from(n)
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("must be between {min} and {max}"))
}

/// Text durations use [`parse_duration`]; integers (TOML only) are seconds.
fn parse_duration_at_least(raw: &Raw, min_secs: u64) -> Result<Duration, String> {
    let d = match raw {
        Raw::Int(i) => {
            Duration::from_secs(u64::try_from(*i).map_err(|_| "must not be negative".to_owned())?)
        }
        other => parse_duration(&expect_str(other, "a duration")?)?,
    };
    if d < Duration::from_secs(min_secs) {
        return Err(format!(
            "must be at least {}",
            format_duration(Duration::from_secs(min_secs))
        ));
    }
    Ok(d)
}

/// An `http`/`https` URL with a host, normalized (scheme lowercased, trailing `/` stripped).
fn parse_url(raw: &Raw) -> Result<String, String> {
    check_http_url(&expect_str(raw, "a URL")?, false)
}

/// Like [`parse_url`], but no query or fragment: it is a base for other URLs.
fn parse_base_url(raw: &Raw) -> Result<String, String> {
    check_http_url(&expect_str(raw, "a URL")?, true)
}

fn check_http_url(s: &str, base: bool) -> Result<String, String> {
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".to_owned());
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err("expected a URL starting with http:// or https://".to_owned());
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err("the scheme must be http or https".to_owned());
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        return Err("must not contain credentials".to_owned());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((ip, after)) = v6.split_once(']') else {
            return Err("unterminated [IPv6] host".to_owned());
        };
        if ip.parse::<Ipv6Addr>().is_err() {
            return Err("invalid IPv6 host".to_owned());
        }
        match after {
            "" => (ip, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (ip, Some(port)),
                None => return Err("unexpected characters after the host".to_owned()),
            },
        }
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.contains(['[', ']']) {
            return Err("invalid host".to_owned());
        }
        (host, port)
    };
    if host.is_empty() {
        return Err("the URL must have a host".to_owned());
    }
    if let Some(port) = port
        && (port.is_empty()
            || !port.bytes().all(|b| b.is_ascii_digit())
            || port.parse::<u16>().is_err())
    {
        return Err("invalid port".to_owned());
    }
    if base && tail.contains(['?', '#']) {
        return Err("must not have a query (?) or fragment (#)".to_owned());
    }
    let url = format!("{scheme}://{rest}");
    let trimmed = if tail.contains(['?', '#']) {
        url.as_str()
    } else {
        url.trim_end_matches('/')
    };
    Ok(trimmed.to_owned())
}

// ---------------------------------------------------------------------------
// Durations
// ---------------------------------------------------------------------------

const DURATION_HINT: &str =
    "expected whole numbers with units s, m, h or d, e.g. \"30s\", \"5m\", \"1h30m\" or \"7d\"";

/// Parses `"30s"`, `"5m"`, `"1h"`, `"7d"` and combinations largest unit first
/// (`"1h30m"`). Units: `s`, `m`, `h`, `d`. A bare number is rejected (the unit
/// is never guessed). Surrounding whitespace is ignored.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err(format!("empty duration; {DURATION_HINT}"));
    }
    let mut rest = s;
    let mut total: u64 = 0;
    let mut previous_unit: Option<u64> = None;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(DURATION_HINT.to_owned());
        }
        let (number, after) = rest.split_at(digits);
        let letters = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(letters);
        let unit_secs: u64 = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "" if after.is_empty() => {
                return Err(format!("missing unit after {number}; {DURATION_HINT}"));
            }
            "" => return Err(DURATION_HINT.to_owned()),
            other => return Err(format!("unknown unit \"{other}\"; {DURATION_HINT}")),
        };
        if previous_unit.is_some_and(|p| unit_secs >= p) {
            return Err(format!(
                "each unit may appear once, largest first; {DURATION_HINT}"
            ));
        }
        previous_unit = Some(unit_secs);
        total = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(unit_secs))
            .and_then(|n| n.checked_add(total))
            .ok_or_else(|| "duration is too large".to_owned())?;
        rest = after;
    }
    Ok(Duration::from_secs(total))
}

/// Inverse of [`parse_duration`] for whole seconds: `90s` → `"1m30s"`.
pub fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() != 0 {
        return format!("{d:?}");
    }
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Rendering (check-config)
// ---------------------------------------------------------------------------

impl Loaded {
    /// Where `key`'s effective value came from; `None` for an unknown key.
    #[cfg(test)]
    pub fn source(&self, key: &str) -> Option<&Source> {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| &e.source)
    }

    /// Every key in declaration order with its effective value (secrets redacted).
    fn shown_entries(&self) -> impl Iterator<Item = (&str, serde_json::Value, &Source)> {
        self.entries.iter().map(|e| {
            let value = if is_secret(&e.key) && !e.value.is_null() {
                REDACTED.into()
            } else {
                e.value.clone()
            };
            (e.key.as_str(), value, &e.source)
        })
    }

    /// Human-readable listing: one aligned `key = value  # source` line per
    /// key (TOML-like, values JSON-quoted), preceded by the file read and
    /// followed by any warnings.
    pub fn render_text(&self) -> String {
        let rows: Vec<(&str, String, String)> = self
            .shown_entries()
            .map(|(key, value, source)| {
                let value = match value {
                    serde_json::Value::Null => "(unset)".to_owned(),
                    v => v.to_string(),
                };
                (key, value, source.tag())
            })
            .collect();
        let key_w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let val_w = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
        let mut out = match &self.file {
            Some(path) => format!("# config file: {}\n", path.display()),
            None => "# config file: none\n".to_owned(),
        };
        for (key, value, source) in rows {
            out.push_str(&format!("{key:<key_w$} = {value:<val_w$}  # {source}\n"));
        }
        for (i, p) in self.external_auth_shown().iter().enumerate() {
            out.push_str(&format!("# external_auth[{i}]: {p}\n"));
        }
        for warning in &self.warnings {
            out.push_str(&format!("# warning: {warning}\n"));
        }
        out
    }

    /// Every key's effective value, secrets included (`Null` if unset): for
    /// telling what changed between two loads. Redact with [`is_secret`]
    /// before showing any of it.
    pub fn values(&self) -> BTreeMap<String, serde_json::Value> {
        let mut values: BTreeMap<String, serde_json::Value> = self
            .entries
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect();
        // The providers as a whole (secrets only as digests), so a reload
        // notices a change to them.
        let providers: Vec<serde_json::Value> = self
            .config
            .external_auth
            .iter()
            .map(|p| {
                use sha2::Digest;
                serde_json::json!([
                    p.id,
                    p.kind,
                    p.display_name,
                    p.client_id,
                    sha2::Sha256::digest(p.client_secret.as_bytes())
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>(),
                    p.auth_url,
                    p.token_url,
                    p.validate_url,
                    p.scopes,
                    p.regex
                ])
            })
            .collect();
        values.insert("external_auth".into(), providers.into());
        values
    }

    /// `{"file": path|null, "keys": {key: {"value", "source"}}, "warnings": [...]}`,
    /// with `source` as in [`Source::tag`] and secrets redacted.
    pub fn render_json(&self) -> serde_json::Value {
        let keys: serde_json::Map<String, serde_json::Value> = self
            .shown_entries()
            .map(|(key, value, source)| {
                (
                    key.to_owned(),
                    serde_json::json!({ "value": value, "source": source.tag() }),
                )
            })
            .collect();
        serde_json::json!({
            "file": self.file.as_ref().map(|p| p.to_string_lossy().into_owned()),
            "keys": keys,
            "external_auth": self.external_auth_shown(),
            "warnings": self.warnings,
        })
    }

    /// The `[[external_auth]]` providers as they will be used (defaults
    /// filled in), secrets left out.
    fn external_auth_shown(&self) -> Vec<serde_json::Value> {
        self.config
            .external_auth
            .iter()
            .filter_map(|spec| crate::external_auth::provider(spec).ok())
            .map(|p| {
                serde_json::json!({
                    "id": p.id,
                    "type": p.kind.as_str(),
                    "display_name": p.display_name,
                    "client_id": p.client_id,
                    "client_secret": if p.client_secret.is_empty() { serde_json::Value::Null } else { REDACTED.into() },
                    "auth_url": p.auth_url,
                    "token_url": p.token_url,
                    "validate_url": p.validate_url,
                    "regex": p.regex.as_ref().map(|r| r.as_str().to_string()),
                    "scopes": p.scopes,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const SAMPLE: &str = include_str!("../config/appliance.toml");

    /// In-memory filesystem for `load_with`.
    fn fs(files: &[(&str, &str)]) -> impl Fn(&Path) -> io::Result<String> {
        let files: BTreeMap<PathBuf, String> = files
            .iter()
            .map(|(p, t)| (PathBuf::from(p), (*t).to_owned()))
            .collect();
        move |path: &Path| {
            files
                .get(path)
                .cloned()
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        }
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn with_config(path: &str) -> Overrides {
        Overrides {
            config: Some(PathBuf::from(path)),
            ..Overrides::default()
        }
    }

    /// Loads with `file` as the --config file.
    fn load_file(file: &str, env_pairs: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
        load_with(
            &with_config("/c.toml"),
            &env(env_pairs),
            &fs(&[("/c.toml", file)]),
        )
    }

    fn uncommented_sample() -> String {
        SAMPLE
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if rest.split_once(" = ").is_some_and(|(k, _)| {
                        !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    }) =>
                {
                    rest
                }
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn invalid(err: ConfigError) -> (String, Source, String) {
        match err {
            ConfigError::Invalid {
                key,
                origin,
                reason,
                ..
            } => (key, origin, reason),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    // --- sample file ----------------------------------------------------

    #[test]
    fn sample_parses_and_sets_nothing() {
        let raw: RawConfig = toml::from_str(SAMPLE).expect("sample parses");
        assert_eq!(
            raw,
            RawConfig::default(),
            "sample must leave every key commented out"
        );
    }

    #[test]
    fn external_auth_tables_are_read_checked_and_shown_without_secrets() {
        let text = r#"
[[external_auth]]
id = "gh"
type = "github"
client_id = "abc"
client_secret = "s3cret"

[[external_auth]]
id = "gitea"
type = "gitea"
client_id = "def"
client_secret_file = "/gitea.secret"
auth_url = "https://git.home.lan/login/oauth/authorize"
token_url = "https://git.home.lan/login/oauth/access_token"
"#;
        let loaded = load_with(
            &with_config("/c.toml"),
            &env(&[]),
            &fs(&[("/c.toml", text), ("/gitea.secret", "from-file\n")]),
        )
        .expect("loads");
        let ext = &loaded.config.external_auth;
        assert_eq!(ext.len(), 2);
        assert_eq!(
            (ext[0].id.as_str(), ext[0].client_secret.as_str()),
            ("gh", "s3cret")
        );
        assert_eq!(ext[1].client_secret, "from-file");
        let shown = loaded.render_text() + &loaded.render_json().to_string();
        assert!(
            !shown.contains("s3cret") && !shown.contains("from-file"),
            "{shown}"
        );
        assert!(shown.contains("git.home.lan"), "{shown}");
        assert!(!format!("{:?}", loaded.config).contains("s3cret"));

        let bad = |text: &str| invalid(load_file(text, &[]).expect_err("invalid")).0;
        assert_eq!(
            bad("[[external_auth]]\nid = \"x\"\ntype = \"generic\"\nclient_id = \"c\"\n"),
            "external_auth[0].auth_url"
        );
        assert_eq!(
            bad(
                "[[external_auth]]\nid = \"a\"\ntype = \"github\"\nclient_id = \"c\"\n[[external_auth]]\nid = \"a\"\ntype = \"gitlab\"\nclient_id = \"c\"\n"
            ),
            "external_auth[1].id"
        );
        assert_eq!(
            bad(
                "[[external_auth]]\nid = \"a\"\ntype = \"github\"\nclient_id = \"c\"\nclient_secret_file = \"/missing\"\n"
            ),
            "external_auth[0].client_secret_file"
        );
        let err = load_file("[[external_auth]]\nid = \"a\"\ncolour = \"red\"\n", &[])
            .expect_err("unknown field");
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn uncommented_sample_covers_every_key_with_its_default() {
        let text = uncommented_sample();
        let raw: RawConfig = toml::from_str(&text).expect("uncommented sample parses");
        let mut set = BTreeSet::new();
        flatten_json(
            &serde_json::to_value(&raw).expect("serializes"),
            "",
            &mut |k, v| {
                if !v.is_null() {
                    set.insert(k);
                }
            },
        );
        let all: BTreeSet<String> = known_keys().into_iter().collect();
        assert_eq!(set, all, "config/appliance.toml must show every key");

        // And the values shown are the real defaults.
        let loaded = load_file(&text, &[]).expect("uncommented sample loads");
        assert_eq!(loaded.config, Config::default());
    }

    #[test]
    fn every_key_is_resolved_exactly_once() {
        let (_, entries) = resolve(&Layered::new()).expect("defaults resolve");
        let resolved: Vec<String> = entries.into_iter().map(|e| e.key).collect();
        let mut known = known_keys();
        let mut sorted = resolved.clone();
        sorted.sort();
        known.sort();
        assert_eq!(sorted, known);
        assert!(!known.iter().any(|k| env_var_name(k) == CONFIG_ENV));
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::default();
        assert_eq!(c.db, PathBuf::from("appliance.db"));
        assert_eq!(
            c.listen,
            "127.0.0.1:3000".parse::<SocketAddr>().expect("addr")
        );
        assert_eq!(c.access_url, "http://127.0.0.1:3000");
        assert_eq!(
            c.log,
            LogConfig {
                filter: "info".into(),
                format: LogFormat::Text
            }
        );
        assert_eq!(
            c.database,
            DatabaseConfig {
                busy_timeout: Duration::from_secs(5),
                pool_size: 8,
                synchronous_full: false,
            }
        );
        assert_eq!(c.agent.inactive_disconnect_timeout, Duration::from_secs(30));
        assert_eq!(
            c.agent.fallback_troubleshooting_url,
            "https://coder.com/docs/admin/templates/troubleshooting"
        );
    }

    // --- precedence -----------------------------------------------------

    #[test]
    fn precedence_default_file_env_flag() {
        let none = fs(&[]);
        let l = load_with(&Overrides::default(), &env(&[]), &none).expect("defaults");
        assert_eq!(l.file, None);
        assert_eq!(l.source("listen"), Some(&Source::Default));
        assert_eq!(l.source("log.filter"), Some(&Source::Default));

        let file = "listen = \"127.0.0.1:4000\"\n[log]\nfilter = \"debug\"\n";
        let file_src = Source::File(PathBuf::from("/c.toml"));
        let l = load_file(file, &[]).expect("file");
        assert_eq!(l.file, Some(PathBuf::from("/c.toml")));
        assert_eq!(l.config.listen.port(), 4000);
        assert_eq!(l.config.log.filter, "debug");
        assert_eq!(l.source("listen"), Some(&file_src));
        assert_eq!(l.source("log.filter"), Some(&file_src));
        assert_eq!(l.source("db"), Some(&Source::Default));

        let vars = [
            ("APPLIANCE_LISTEN", "127.0.0.1:5000"),
            ("APPLIANCE_LOG__FILTER", "trace"),
        ];
        let l = load_file(file, &vars).expect("env");
        assert_eq!(l.config.listen.port(), 5000);
        assert_eq!(l.config.log.filter, "trace");
        assert_eq!(
            l.source("listen"),
            Some(&Source::Env("APPLIANCE_LISTEN".into()))
        );
        assert_eq!(
            l.source("log.filter"),
            Some(&Source::Env("APPLIANCE_LOG__FILTER".into()))
        );
        assert!(l.warnings.is_empty());

        let flags = Overrides {
            listen: Some("127.0.0.1:6000".parse().expect("addr")),
            db: Some(PathBuf::from("/var/lib/a.db")),
            ..with_config("/c.toml")
        };
        let l = load_with(&flags, &env(&vars), &fs(&[("/c.toml", file)])).expect("flags");
        assert_eq!(l.config.listen.port(), 6000);
        assert_eq!(l.config.db, PathBuf::from("/var/lib/a.db"));
        assert_eq!(l.config.log.filter, "trace");
        assert_eq!(l.source("listen"), Some(&Source::Flag("--listen")));
        assert_eq!(l.source("db"), Some(&Source::Flag("--db")));
        assert_eq!(l.source("nope"), None);
        // Derived from the effective listen address.
        assert_eq!(l.config.access_url, "http://127.0.0.1:6000");
        assert_eq!(l.source("access_url"), Some(&Source::Default));
    }

    #[test]
    fn env_values_for_all_types() {
        let vars = [
            ("APPLIANCE_DB", "/x.db"),
            ("APPLIANCE_LOG__FORMAT", "json"),
            ("APPLIANCE_DATABASE__POOL_SIZE", "16"),
            ("APPLIANCE_DATABASE__BUSY_TIMEOUT", "1m"),
            ("APPLIANCE_AGENT__INACTIVE_DISCONNECT_TIMEOUT", "2s"),
            ("APPLIANCE_ACCESS_URL", "HTTPS://coder.example.com/"),
            ("PATH", "/bin"),
        ];
        let l = load_with(&Overrides::default(), &env(&vars), &fs(&[])).expect("loads");
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        assert_eq!(l.config.db, PathBuf::from("/x.db"));
        assert_eq!(l.config.log.format, LogFormat::Json);
        assert_eq!(l.config.database.pool_size, 16);
        assert_eq!(l.config.database.busy_timeout, Duration::from_secs(60));
        assert_eq!(
            l.config.agent.inactive_disconnect_timeout,
            Duration::from_secs(2)
        );
        assert_eq!(l.config.access_url, "https://coder.example.com");
    }

    #[test]
    fn integer_seconds_in_file() {
        let l = load_file("[database]\nbusy_timeout = 10\npool_size = 2\n", &[]).expect("loads");
        assert_eq!(l.config.database.busy_timeout, Duration::from_secs(10));
        assert_eq!(l.config.database.pool_size, 2);
        let err = load_file("[database]\nbusy_timeout = -1\n", &[]).expect_err("negative");
        assert_eq!(invalid(err).0, "database.busy_timeout");
    }

    #[test]
    fn access_url_derivation() {
        let load_listen = |addr: &str| {
            let o = Overrides {
                listen: Some(addr.parse().expect("addr")),
                ..Overrides::default()
            };
            load_with(&o, &env(&[]), &fs(&[])).expect("loads")
        };
        assert_eq!(
            load_listen("0.0.0.0:8080").config.access_url,
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            load_listen("[::]:8080").config.access_url,
            "http://[::1]:8080"
        );
        assert_eq!(
            load_listen("10.1.2.3:80").config.access_url,
            "http://10.1.2.3:80"
        );
        let l = load_listen("0.0.0.0:8080");
        assert!(l.warnings.is_empty());
    }

    // --- config file location -------------------------------------------

    #[test]
    fn config_file_location() {
        let files = fs(&[
            ("/a.toml", "db = \"a.db\""),
            ("/b.toml", "db = \"b.db\""),
            (DEFAULT_CONFIG_PATH, "db = \"etc.db\""),
        ]);
        let e = env(&[("APPLIANCE_CONFIG", "/b.toml")]);
        // Flag beats env.
        let l = load_with(&with_config("/a.toml"), &e, &files).expect("flag");
        assert_eq!(l.config.db, PathBuf::from("a.db"));
        // Env beats the default location.
        let l = load_with(&Overrides::default(), &e, &files).expect("env");
        assert_eq!(l.file, Some(PathBuf::from("/b.toml")));
        // Default location is read if it exists...
        let l = load_with(&Overrides::default(), &env(&[]), &files).expect("default path");
        assert_eq!(l.config.db, PathBuf::from("etc.db"));
        assert_eq!(
            l.source("db"),
            Some(&Source::File(PathBuf::from(DEFAULT_CONFIG_PATH)))
        );
        // ...and silently skipped if not.
        let l = load_with(&Overrides::default(), &env(&[]), &fs(&[])).expect("no file");
        assert_eq!(l.file, None);

        // A named file must exist.
        let err = load_with(&with_config("/missing.toml"), &env(&[]), &files).expect_err("missing");
        assert!(matches!(err, ConfigError::FileNotFound { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("/missing.toml") && msg.contains("--config"),
            "{msg}"
        );
        let err = load_with(
            &Overrides::default(),
            &env(&[("APPLIANCE_CONFIG", "/nope.toml")]),
            &files,
        )
        .expect_err("missing");
        let msg = err.to_string();
        assert!(
            msg.contains("/nope.toml") && msg.contains("APPLIANCE_CONFIG"),
            "{msg}"
        );
        let err = load_with(
            &Overrides::default(),
            &env(&[("APPLIANCE_CONFIG", "")]),
            &files,
        )
        .expect_err("empty");
        assert!(matches!(err, ConfigError::EmptyConfigPath { .. }));

        // Other read errors are errors even for the default location.
        let denied = |_: &Path| -> io::Result<String> {
            Err(io::Error::from(io::ErrorKind::PermissionDenied))
        };
        let err = load_with(&Overrides::default(), &env(&[]), &denied).expect_err("denied");
        assert!(matches!(err, ConfigError::ReadFile { .. }));
    }

    // --- unknown keys -----------------------------------------------------

    #[test]
    fn unknown_file_keys_are_errors_naming_key_and_file() {
        let err = load_file("[log]\nfilter = \"info\"\nbogus = 1\n", &[]).expect_err("unknown");
        assert_eq!(err.key(), Some("log.bogus"));
        let msg = err.to_string();
        assert!(
            msg.contains("`log.bogus`") && msg.contains("/c.toml"),
            "{msg}"
        );
        assert!(msg.contains("filter, format"), "{msg}");

        let err = load_file("lsiten = \"0.0.0.0:1\"\n", &[]).expect_err("unknown");
        assert_eq!(err.key(), Some("lsiten"));
        assert!(err.to_string().contains("[log]"), "{err}");

        let err = load_file("[nope]\nx = 1\n", &[]).expect_err("unknown table");
        assert_eq!(err.key(), Some("nope"));
        let err = load_file("\"log.filter\" = \"x\"\n", &[]).expect_err("quoted dotted key");
        assert_eq!(err.key(), Some("\"log.filter\""));
    }

    #[test]
    fn file_type_and_syntax_errors_name_the_file() {
        let err = load_file("listen = 3000\n", &[]).expect_err("type");
        assert!(matches!(err, ConfigError::Parse { .. }));
        let msg = err.to_string();
        assert!(msg.contains("/c.toml") && msg.contains("listen"), "{msg}");
        let err = load_file("log = \"x\"\n", &[]).expect_err("table type");
        assert!(err.to_string().contains("/c.toml"), "{err}");
        let err = load_file("log.filter.x = 1\n", &[]).expect_err("too deep");
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
        let err = load_file("db = \n", &[]).expect_err("syntax");
        assert!(err.to_string().contains("/c.toml"), "{err}");
    }

    #[test]
    fn unknown_env_vars_are_warnings() {
        let vars = [
            ("APPLIANCE_BOGUS", "1"),
            ("APPLIANCE_LOG_FILTER", "debug"),
            ("appliance_db", "x"),
            ("APPLIANCE_CONFIG", "/c.toml"),
            ("HOME", "/root"),
        ];
        let l =
            load_with(&Overrides::default(), &env(&vars), &fs(&[("/c.toml", "")])).expect("loads");
        assert_eq!(l.warnings.len(), 2, "{:?}", l.warnings);
        assert!(l.warnings.iter().any(|w| w.contains("APPLIANCE_BOGUS")));
        assert!(
            l.warnings
                .iter()
                .any(|w| w.contains("did you mean APPLIANCE_LOG__FILTER"))
        );
        assert_eq!(l.config.log.filter, "info");
    }

    // --- bad values -------------------------------------------------------

    #[test]
    fn bad_values_name_key_and_source() {
        let file = Source::File(PathBuf::from("/c.toml"));
        let cases: Vec<(Result<Loaded, ConfigError>, &str, Source)> = vec![
            (
                load_file("", &[("APPLIANCE_LISTEN", "localhost:3000")]),
                "listen",
                Source::Env("APPLIANCE_LISTEN".into()),
            ),
            (
                load_file("listen = \"1.2.3.4\"", &[]),
                "listen",
                file.clone(),
            ),
            (
                load_file("[database]\npool_size = 0", &[]),
                "database.pool_size",
                file.clone(),
            ),
            (
                load_file("[database]\npool_size = 65", &[]),
                "database.pool_size",
                file.clone(),
            ),
            (
                load_file("", &[("APPLIANCE_DATABASE__POOL_SIZE", "lots")]),
                "database.pool_size",
                Source::Env("APPLIANCE_DATABASE__POOL_SIZE".into()),
            ),
            (
                load_file("[database]\nbusy_timeout = \"abc\"", &[]),
                "database.busy_timeout",
                file.clone(),
            ),
            (
                load_with(
                    &Overrides {
                        access_url: Some("ftp://x".into()),
                        ..Overrides::default()
                    },
                    &env(&[]),
                    &fs(&[]),
                ),
                "access_url",
                Source::Flag("--access-url"),
            ),
            (
                load_file("access_url = \"http://\"", &[]),
                "access_url",
                file.clone(),
            ),
            (
                load_file("access_url = \"https://x/?a=b\"", &[]),
                "access_url",
                file.clone(),
            ),
            (
                load_file("[agent]\ninactive_disconnect_timeout = \"1s\"", &[]),
                "agent.inactive_disconnect_timeout",
                file.clone(),
            ),
            (
                load_file("[agent]\nfallback_troubleshooting_url = \"docs\"", &[]),
                "agent.fallback_troubleshooting_url",
                file.clone(),
            ),
            (
                load_file("[log]\nfilter = \" \"", &[]),
                "log.filter",
                file.clone(),
            ),
            (
                load_file("[log]\nformat = \"xml\"", &[]),
                "log.format",
                file.clone(),
            ),
            (load_file("db = \"\"", &[]), "db", file.clone()),
        ];
        for (result, key, source) in cases {
            let err = result.expect_err(key);
            let msg = err.to_string();
            let (k, origin, _) = invalid(err);
            assert_eq!((k.as_str(), &origin), (key, &source), "{msg}");
            assert!(msg.contains(&format!("`{key}`")), "{msg}");
            assert!(msg.contains(&source.to_string()), "{msg}");
        }
    }

    #[test]
    fn error_message_shape() {
        let err = load_file("[agent]\ninactive_disconnect_timeout = \"1s\"", &[]).expect_err("bad");
        assert_eq!(
            err.to_string(),
            "invalid value \"1s\" for `agent.inactive_disconnect_timeout` (from config file /c.toml): must be at least 2s"
        );
    }

    // --- urls, durations, redaction -------------------------------------

    #[test]
    fn url_checks() {
        let ok = |s: &str| check_http_url(s, true);
        assert_eq!(
            ok("http://a.example:8080/").as_deref(),
            Ok("http://a.example:8080")
        );
        assert_eq!(ok("https://a/b///").as_deref(), Ok("https://a/b"));
        assert_eq!(ok("http://[::1]:3000").as_deref(), Ok("http://[::1]:3000"));
        assert_eq!(
            check_http_url("https://a/x?y=/", false).as_deref(),
            Ok("https://a/x?y=/")
        );
        for bad in [
            "ftp://x",
            "x",
            "http://",
            "http://:80",
            "http://a:",
            "http://a:99999",
            "http://u@a",
            "http://[zz]",
            "http://a b",
            "https://a#f",
        ] {
            assert!(ok(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        let secs = |s: &str| parse_duration(s).map(|d| d.as_secs());
        assert_eq!(secs("30s"), Ok(30));
        assert_eq!(secs("5m"), Ok(300));
        assert_eq!(secs("1h"), Ok(3600));
        assert_eq!(secs("7d"), Ok(604_800));
        assert_eq!(secs("30d"), Ok(2_592_000));
        assert_eq!(secs("1h30m"), Ok(5400));
        assert_eq!(secs("1d2h3m4s"), Ok(93_784));
        assert_eq!(secs(" 0s "), Ok(0));
        for bad in [
            "",
            "abc",
            "30",
            "5x",
            "1.5h",
            "-5s",
            "5 s",
            "s",
            "1s1h",
            "1m1m",
            "5ms",
            "99999999999999999999s",
            "999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(
            parse_duration("30")
                .expect_err("unit")
                .contains("missing unit")
        );
        assert!(
            parse_duration("5x")
                .expect_err("unit")
                .contains("unknown unit")
        );
        for s in ["0s", "30s", "5m", "1m30s", "1h", "1d1s", "7d"] {
            assert_eq!(format_duration(parse_duration(s).expect("parses")), s);
        }
    }

    #[test]
    fn redaction() {
        assert!(is_secret("identity.client_secret"));
        assert!(is_secret("metrics.token"));
        assert!(is_secret("password"));
        assert!(!is_secret("token.path"));
        assert!(!is_secret("log.filter"));

        let entry = |key: &str, value: &str| Entry {
            key: key.to_owned(),
            value: value.into(),
            source: Source::Env(env_var_name(key)),
        };
        let loaded = Loaded {
            config: Config::default(),
            file: None,
            warnings: vec![],
            entries: vec![
                entry("identity.client_secret", "hunter2"),
                entry("log.filter", "info"),
            ],
        };
        let text = loaded.render_text();
        assert!(
            !text.contains("hunter2") && text.contains(REDACTED),
            "{text}"
        );
        let json = loaded.render_json();
        assert_eq!(json["keys"]["identity.client_secret"]["value"], REDACTED);
        assert_eq!(
            json["keys"]["identity.client_secret"]["source"],
            "env:APPLIANCE_IDENTITY__CLIENT_SECRET"
        );
        assert_eq!(json["keys"]["log.filter"]["value"], "info");
        assert_eq!(Raw::Str("hunter2".into()).shown("a.token"), REDACTED);
    }

    #[test]
    fn rendering() {
        let flags = Overrides {
            db: Some(PathBuf::from("/d.db")),
            ..with_config("/c.toml")
        };
        let vars = env(&[("APPLIANCE_LOG__FORMAT", "json"), ("APPLIANCE_X", "1")]);
        let l = load_with(
            &flags,
            &vars,
            &fs(&[("/c.toml", "[database]\npool_size = 4\n")]),
        )
        .expect("loads");

        let json = l.render_json();
        assert_eq!(json["file"], "/c.toml");
        assert_eq!(
            json["keys"]["db"],
            serde_json::json!({"value": "/d.db", "source": "flag:--db"})
        );
        assert_eq!(
            json["keys"]["database.pool_size"],
            serde_json::json!({"value": 4, "source": "file:/c.toml"})
        );
        assert_eq!(
            json["keys"]["log.format"]["source"],
            "env:APPLIANCE_LOG__FORMAT"
        );
        assert_eq!(
            json["keys"]["database.busy_timeout"],
            serde_json::json!({"value": "5s", "source": "default"})
        );
        assert_eq!(
            json["keys"].as_object().map(|m| m.len()),
            Some(known_keys().len())
        );
        assert_eq!(json["warnings"].as_array().map(Vec::len), Some(1));

        let text = l.render_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "# config file: /c.toml");
        assert_eq!(lines.len(), 1 + known_keys().len() + 1, "{text}");
        let key_lines = &lines[1..lines.len() - 1];
        let eq_col = key_lines[0].find(" = ");
        let hash_col = key_lines[0].find("  # ");
        for line in key_lines {
            assert_eq!(line.find(" = "), eq_col, "{text}");
            assert_eq!(line.find("  # "), hash_col, "{text}");
        }
        assert!(text.contains("database.pool_size"), "{text}");
        assert!(text.contains("\"/d.db\""), "{text}");
        assert!(text.contains("# flag:--db"), "{text}");
        assert!(lines[lines.len() - 1].starts_with("# warning: "), "{text}");
    }
}
