//! SIGHUP: re-read the config file and the trust material, and apply what can
//! change while the server runs, without dropping a connection.
//!
//! The configuration is loaded exactly as at start (the same file, the
//! environment the process started with, the same flags). Applied at once:
//! instance-identity trust material (every file is re-read, so a replaced
//! JWKS or PEM takes effect even when no key changed), the sign-in rate
//! limit, `log.filter` and the `[metrics]` settings. Every other key that
//! differs from what the server started with is logged as needing a restart.
//! A file that does not load (bad TOML, an invalid value, unreadable trust
//! material) is logged as an error and changes nothing: the server keeps
//! running with what it has.

use std::collections::BTreeMap;

use serde_json::Value;
use tokio::signal::unix::Signal;
use tokio::sync::watch;

use crate::app::App;
use crate::config::{self, Loaded};
use crate::identity::Trust;
use crate::server::telemetry::{self, FilterHandle};
use crate::sign_in::trust_files;

/// What `serve` was started with, to load the configuration again.
pub struct Source {
    pub overrides: config::Overrides,
    pub env: BTreeMap<String, String>,
}

/// Keys (or `table.` prefixes) applied without a restart.
pub const RELOADABLE: &[&str] = &[
    "log.filter",
    "identity.rate_limit_per_minute",
    "identity.aws.",
    "identity.azure.",
    "identity.gcp.jwks_file",
    "metrics.",
];

pub fn is_reloadable(key: &str) -> bool {
    RELOADABLE.iter().any(|r| {
        if r.ends_with('.') {
            key.starts_with(r)
        } else {
            key == *r
        }
    })
}

/// A key's value as it may be logged.
fn shown(key: &str, value: &Value) -> String {
    if config::is_secret(key) && !value.is_null() {
        config::REDACTED.to_owned()
    } else if value.is_null() {
        "(unset)".to_owned()
    } else {
        value.to_string()
    }
}

/// What one reload changes, worked out before anything is applied.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    /// Reloadable keys that differ from the values in force: (key, old, new), shown.
    pub applied: Vec<(String, String, String)>,
    /// Other keys that differ from what the server started with.
    pub need_restart: Vec<String>,
}

/// Compares a new load with the values in force and those at start.
pub fn changes(
    startup: &BTreeMap<String, Value>,
    current: &BTreeMap<String, Value>,
    new: &BTreeMap<String, Value>,
) -> Changes {
    let mut out = Changes::default();
    for (key, value) in new {
        if is_reloadable(key) {
            let old = current.get(key).unwrap_or(&Value::Null);
            if old != value {
                out.applied
                    .push((key.clone(), shown(key, old), shown(key, value)));
            }
        } else if startup.get(key).unwrap_or(&Value::Null) != value {
            out.need_restart.push(key.clone());
        }
    }
    out
}

pub struct Reloader {
    pub source: Source,
    pub app: App,
    pub log_filter: FilterHandle,
    /// Set when `jwks_refresh` runs: it owns swapping trust in (it adds the
    /// fetched keys to what the files hold).
    pub gcp_base: Option<watch::Sender<Trust>>,
    /// The values at start.
    pub startup: BTreeMap<String, Value>,
}

impl Reloader {
    /// Reloads on every SIGHUP until the process ends. `hangup` is installed
    /// by the caller before it announces it is listening, so a SIGHUP is
    /// never fatal.
    pub async fn run(self, mut hangup: Signal) {
        let mut current = self.startup.clone();
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP received; reloading the configuration and trust material");
            if let Some(now_in_force) = self.reload_once(&current).await {
                current = now_in_force;
            }
        }
    }

    /// One reload; returns the values now in force, or `None` if nothing was applied.
    async fn reload_once(
        &self,
        current: &BTreeMap<String, Value>,
    ) -> Option<BTreeMap<String, Value>> {
        let overrides = self.source.overrides.clone();
        let env = self.source.env.clone();
        // Reading files: off the executor.
        let loaded = tokio::task::spawn_blocking(move || -> Result<_, String> {
            let loaded: Loaded = config::load(&overrides, &env).map_err(|e| e.to_string())?;
            let trust = trust_files::load(&loaded.config.identity).map_err(|e| format!("{e:#}"))?;
            telemetry::check_filter(&loaded.config.log.filter)?;
            Ok((loaded, trust))
        })
        .await;
        let (loaded, trust) = match loaded {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "reload failed; keeping the configuration in force");
                return None;
            }
            Err(e) => {
                tracing::error!(error = %e, "reload task failed; keeping the configuration in force");
                return None;
            }
        };
        let new = loaded.values();
        let diff = changes(&self.startup, current, &new);
        let config = &loaded.config;

        for w in &trust.warnings {
            tracing::warn!("{w}");
        }
        let items = trust.trust.summary().len();
        match &self.gcp_base {
            Some(base) => {
                let _ = base.send(trust.trust);
            }
            None => self.app.set_trust(trust.trust),
        }
        self.app
            .identity_limiter
            .set_limit(config.identity.rate_limit_per_minute);
        self.app.metrics.configure(&config.metrics);
        match self.log_filter.set(&config.log.filter) {
            Ok(true) => {}
            Ok(false) => {
                if diff.applied.iter().any(|(k, _, _)| k == "log.filter") {
                    tracing::warn!("log.filter changed, but RUST_LOG is set and overrides it");
                }
            }
            Err(e) => tracing::error!(error = %e, "could not change the log filter"),
        }

        for (key, old, new) in &diff.applied {
            tracing::info!("applied {key}: {old} -> {new}");
        }
        for key in &diff.need_restart {
            tracing::warn!(
                "{key} changed: needs a restart to take effect (e.g. systemctl restart appliance)"
            );
        }
        tracing::info!(
            applied = diff.applied.len(),
            need_restart = diff.need_restart.len(),
            trust_items = items,
            "configuration reloaded"
        );
        Some(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn reloadable_keys() {
        for k in [
            "log.filter",
            "identity.gcp.jwks_file",
            "identity.aws.certificates",
            "identity.azure.roots",
            "identity.rate_limit_per_minute",
            "metrics.token",
            "metrics.enabled",
        ] {
            assert!(is_reloadable(k), "{k}");
        }
        for k in [
            "listen",
            "db",
            "access_url",
            "log.format",
            "database.pool_size",
            "identity.gcp.jwks_url",
            "identity.gcp.audience",
            "logs.max_bytes_per_agent",
        ] {
            assert!(!is_reloadable(k), "{k}");
        }
    }

    #[test]
    fn changes_split_applied_from_restart_and_hide_secrets() {
        let startup = map(&[
            ("listen", json!("127.0.0.1:3000")),
            ("log.filter", json!("info")),
            ("metrics.token", Value::Null),
        ]);
        let new = map(&[
            ("listen", json!("0.0.0.0:3000")),
            ("log.filter", json!("debug")),
            ("metrics.token", json!("hunter2")),
        ]);
        let c = changes(&startup, &startup, &new);
        assert_eq!(c.need_restart, ["listen"]);
        assert_eq!(
            c.applied,
            [
                (
                    "log.filter".to_owned(),
                    "\"info\"".to_owned(),
                    "\"debug\"".to_owned()
                ),
                (
                    "metrics.token".to_owned(),
                    "(unset)".to_owned(),
                    config::REDACTED.to_owned()
                ),
            ]
        );
        // Reloading the same file again: nothing more to apply, and the
        // restart is still pending.
        let again = changes(&startup, &new, &new);
        assert!(again.applied.is_empty());
        assert_eq!(again.need_restart, ["listen"]);
    }

    #[test]
    fn a_changed_external_auth_provider_needs_a_restart() {
        let text = |secret: &str| {
            format!(
                "[[external_auth]]\nid = \"gh\"\ntype = \"github\"\nclient_id = \"c\"\nclient_secret = \"{secret}\"\n"
            )
        };
        let values = |secret: &str| {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("c.toml");
            std::fs::write(&path, text(secret)).expect("write");
            let overrides = config::Overrides {
                config: Some(path),
                ..config::Overrides::default()
            };
            config::load(&overrides, &BTreeMap::new())
                .expect("loads")
                .values()
        };
        let (before, after) = (values("one"), values("two"));
        assert!(
            !before["external_auth"].to_string().contains("one"),
            "secrets are digested"
        );
        let c = changes(&before, &before, &after);
        assert_eq!(c.need_restart, ["external_auth"]);
        assert!(
            changes(&before, &before, &values("one"))
                .need_restart
                .is_empty()
        );
    }
}
