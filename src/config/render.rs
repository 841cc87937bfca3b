//! `check-config` rendering: every key's effective value and source as
//! aligned text or JSON, secrets redacted; the providers of
//! `[[external_auth]]` without their secrets; and [`Loaded::values`], what a
//! SIGHUP reload compares.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{Loaded, LogFormat, REDACTED, Secret, Source, format_duration, is_secret};

/// How an effective value is shown by `check-config`.
pub(super) trait Render {
    /// Whether the type holds a secret (its key must be one [`is_secret`] redacts).
    const SECRET: bool = false;

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
impl Render for Vec<String> {
    fn render(&self) -> serde_json::Value {
        self.clone().into()
    }
}
impl<T: Render> Render for Option<T> {
    const SECRET: bool = T::SECRET;

    fn render(&self) -> serde_json::Value {
        match self {
            Some(v) => v.render(),
            None => serde_json::Value::Null,
        }
    }
}
impl Render for Secret {
    const SECRET: bool = true;

    /// The value itself: [`Loaded::values`] needs it to notice a change;
    /// everything that shows it redacts by the key's name.
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
