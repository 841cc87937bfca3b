//! `appliance token`: API keys for users: create, list, revoke.

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::json;
use time::OffsetDateTime;

use super::output::Printer;
use super::user::find_user;
use crate::sdk::rfc3339;
use crate::store::users::ApiKeyInfo;
use crate::store::{self, Store};
use crate::{auth, config};

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
    /// List API keys: id, user, name, created, expires, status (never the secret).
    List {
        /// Only this user's keys.
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke an API key: a running server refuses it from the next request.
    Revoke {
        /// The key's id (the part before the dash, as `token list` shows
        /// it) or the whole key.
        #[arg(value_name = "ID")]
        key: String,
    },
}

pub(super) fn run(store: &Store, cmd: TokenCommand, out: &Printer) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create {
            user,
            lifetime,
            name,
        } => create(store, &user, &lifetime, &name, out),
        TokenCommand::List { user } => list(store, user.as_deref(), out),
        TokenCommand::Revoke { key } => revoke(store, &key, out),
    }
}

fn create(
    store: &Store,
    user: &str,
    lifetime: &str,
    name: &str,
    out: &Printer,
) -> anyhow::Result<()> {
    let lifetime = config::parse_duration(lifetime)
        .map_err(|e| anyhow::anyhow!("--lifetime {lifetime:?}: {e}; use e.g. 12h, 30d"))?;
    if lifetime.is_zero() {
        bail!("--lifetime must be longer than zero");
    }
    let user = find_user(store, user)?;
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
            name,
            now,
            expires_at,
        )
    })?;
    out.emit(&json!({"token": key.key}), || key.key.clone());
    Ok(())
}

/// `active`, `expired` or `revoked` (revoked wins).
fn status(key: &ApiKeyInfo, now: OffsetDateTime) -> &'static str {
    if key.revoked_at.is_some() {
        "revoked"
    } else if key.expires_at <= now {
        "expired"
    } else {
        "active"
    }
}

fn key_json(key: &ApiKeyInfo, now: OffsetDateTime) -> serde_json::Value {
    json!({
        "id": key.id,
        "username": key.username,
        "name": key.name,
        "created_at": rfc3339::format(&key.created_at),
        "expires_at": rfc3339::format(&key.expires_at),
        "revoked_at": key.revoked_at.as_ref().map(rfc3339::format),
        "status": status(key, now),
    })
}

/// `2026-08-12 10:15:00Z`: a timestamp to the second, for tables.
fn short_time(t: &OffsetDateTime) -> String {
    let full = rfc3339::format(t);
    // RFC 3339 from `rfc3339::format` is `YYYY-MM-DDTHH:MM:SS[.frac]Z`.
    match full.get(..19) {
        Some(head) => format!("{}Z", head.replacen('T', " ", 1)),
        None => full,
    }
}

fn list(store: &Store, user: Option<&str>, out: &Printer) -> anyhow::Result<()> {
    let user_id = match user {
        Some(name) => Some(find_user(store, name)?.id),
        None => None,
    };
    let keys = store.read(|c| store::users::list_api_keys(c, user_id))?;
    let now = OffsetDateTime::now_utc();
    out.emit(
        &json!(keys.iter().map(|k| key_json(k, now)).collect::<Vec<_>>()),
        || {
            if keys.is_empty() {
                return match user {
                    Some(name) => format!(
                        "no API keys for {name}: create one with `appliance token create --user {name}`"
                    ),
                    None => "no API keys: create one with `appliance token create --user NAME`"
                        .to_string(),
                };
            }
            let mut s = format!(
                "{:<10}  {:<24} {:<20} {:<20} {:<8} NAME\n",
                "ID", "USER", "CREATED", "EXPIRES", "STATUS"
            );
            for k in &keys {
                let line = format!(
                    "{:<10}  {:<24} {:<20} {:<20} {:<8} {}",
                    k.id,
                    k.username,
                    short_time(&k.created_at),
                    short_time(&k.expires_at),
                    status(k, now),
                    k.name
                );
                s.push_str(line.trim_end());
                s.push('\n');
            }
            s
        },
    );
    Ok(())
}

/// The key id in `arg`: an id alone, or a whole key (whose secret is not
/// needed, and never printed back).
fn key_id(arg: &str) -> anyhow::Result<&str> {
    let arg = arg.trim();
    if let Some((id, _)) = auth::split_api_key(arg) {
        return Ok(id);
    }
    if arg.len() == auth::API_KEY_ID_LEN && arg.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Ok(arg);
    }
    bail!(
        "{:?} is neither an API key id ({} letters and digits) nor a whole key (<id>-<secret>): `appliance token list` shows the ids",
        // A malformed key may still hold a secret: show only what precedes a dash.
        arg.split('-').next().unwrap_or_default(),
        auth::API_KEY_ID_LEN
    )
}

fn revoke(store: &Store, arg: &str, out: &Printer) -> anyhow::Result<()> {
    let id = key_id(arg)?;
    let now = OffsetDateTime::now_utc();
    let Some((key, already)) = store.write(|tx| store::users::revoke_api_key(tx, id, now))? else {
        bail!("there is no API key with id {id}: `appliance token list` shows the keys");
    };
    let revoked_at = key.revoked_at.unwrap_or(now);
    let mut v = key_json(&key, now);
    v["already_revoked"] = json!(already);
    out.emit(&v, || {
        if already {
            format!(
                "API key {} of {} was already revoked at {}; nothing changed",
                key.id,
                key.username,
                rfc3339::format(&revoked_at)
            )
        } else {
            let name = if key.name.is_empty() {
                String::new()
            } else {
                format!(" ({})", key.name)
            };
            format!(
                "revoked API key {}{name} of {}; a running server refuses it from now on",
                key.id, key.username
            )
        }
    });
    Ok(())
}
