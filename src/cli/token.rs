//! `appliance token`: API keys for users.

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::json;
use time::OffsetDateTime;

use super::output::Printer;
use super::user::find_user;
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
}

pub(super) fn run(store: &Store, cmd: TokenCommand, out: &Printer) -> anyhow::Result<()> {
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
