//! The layers: finding and reading the config file, the `APPLIANCE_*`
//! environment and the command-line flags, merged into one map of dotted
//! key → raw value and its [`Source`] for [`super::schema::resolve`]. Also the
//! file's own types (durations, `[[external_auth]]` tables) and the checks
//! that name an unknown key with its full dotted name.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::schema::{FileValue, Layered, Raw, Table, file_only_keys, known_keys, resolve};
use super::{
    CONFIG_ENV, Config, ConfigError, DEFAULT_CONFIG_PATH, ENV_PREFIX, Loaded, Overrides, REDACTED,
    RawConfig, Source, env_var_name,
};

/// One `[[external_auth]]` table.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExternalAuth {
    id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    display_name: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_secret_file: Option<PathBuf>,
    auth_url: Option<String>,
    token_url: Option<String>,
    validate_url: Option<String>,
    scopes: Option<Vec<String>>,
    regex: Option<String>,
}

/// A duration as written in the file: `"30s"`-style text or integer seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RawDuration {
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
impl FileValue for RawDuration {
    fn to_raw(&self) -> Raw {
        match self {
            RawDuration::Seconds(i) => Raw::Int(*i),
            RawDuration::Text(s) => Raw::Str(s.clone()),
        }
    }
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
pub(super) fn load_with(
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

/// The keys a config file sets, and its `[[external_auth]]` tables.
type FileKeys = (Vec<(String, Raw)>, Vec<RawExternalAuth>);

/// Parses the file text into `(dotted key, raw value)` pairs.
fn parse_file(path: &Path, text: &str, keys: &[String]) -> Result<FileKeys, ConfigError> {
    let parse_err = |e: toml::de::Error| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    };
    // Syntax first, then unknown keys with their full dotted name (serde's
    // deny_unknown_fields only names the last segment), then types.
    let table: toml::Table = toml::from_str(text).map_err(parse_err)?;
    check_unknown_keys(path, &table, "", keys, &file_only_keys())?;
    let raw: RawConfig = toml::from_str(text).map_err(parse_err)?;
    let mut pairs = Vec::new();
    Config::flatten(&raw, "", &mut pairs);
    Ok((pairs, raw.external_auth))
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

/// Rejects the first key in `table` (under `prefix`) that is not one of
/// `keys`, a table of them, or one of `file_only` (checked by serde).
fn check_unknown_keys(
    path: &Path,
    table: &toml::Table,
    prefix: &str,
    keys: &[String],
    file_only: &[String],
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
        let is_leaf = !dotted && (keys.contains(&key) || file_only.contains(&key));
        let is_table = !dotted && keys.iter().any(|k| k.starts_with(&format!("{key}.")));
        match value {
            _ if is_leaf => {}
            toml::Value::Table(inner) if is_table => {
                check_unknown_keys(path, inner, &key, keys, file_only)?
            }
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

/// "known keys in [log]: filter, format" / "known top-level keys: access_url,
/// [agent], ...", in the order of `keys` (sorted).
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
