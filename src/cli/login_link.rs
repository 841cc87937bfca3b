//! `appliance login-link --user NAME [--ttl 10m]`: a one-time link that signs
//! the user in to the dashboard (`{access_url}/login/link?token=...`). Only
//! the token's digest is stored; the link works once, until it expires.

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;
use time::OffsetDateTime;

use super::output::Printer;
use super::user::find_user;
use crate::sdk::rfc3339;
use crate::store::{self, Store};
use crate::{auth, config};

/// The longest `--ttl` (a link is meant to be used at once).
const MAX_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

#[derive(Debug, Args)]
pub struct LoginLinkArgs {
    /// The user the link signs in.
    #[arg(long)]
    pub user: String,
    /// How long the link works (at most 24h).
    #[arg(long, default_value = "10m")]
    pub ttl: String,
}

pub(super) fn run(
    store: &Store,
    access_url: &str,
    args: &LoginLinkArgs,
    out: &Printer,
) -> anyhow::Result<()> {
    let ttl = config::parse_duration(&args.ttl)
        .map_err(|e| anyhow::anyhow!("--ttl {:?}: {e}; use e.g. 10m, 1h", args.ttl))?;
    if ttl.is_zero() || ttl > MAX_TTL {
        bail!("--ttl must be longer than zero and at most 24h");
    }
    let user = find_user(store, &args.user)?;
    let now = OffsetDateTime::now_utc();
    let expires_at = time::Duration::try_from(ttl)
        .ok()
        .and_then(|d| now.checked_add(d))
        .context("--ttl is too long")?;
    let (token, hash) = auth::new_login_link_token();
    store.write(|tx| store::users::insert_login_link(tx, &hash, user.id, now, expires_at))?;
    let url = link_url(access_url, &token);
    out.emit(
        &json!({
            "url": url,
            "username": user.username,
            "expires_at": rfc3339::format(&expires_at),
        }),
        || {
            format!(
                "{url}\n(signs {} in to the dashboard once, until {})",
                user.username,
                rfc3339::format(&expires_at)
            )
        },
    );
    Ok(())
}

/// `{access_url}/login/link?token=TOKEN` (the token is letters and digits).
fn link_url(access_url: &str, token: &str) -> String {
    format!(
        "{}/login/link?token={token}",
        access_url.trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            link_url("https://a.example/", "abc"),
            "https://a.example/login/link?token=abc"
        );
        assert_eq!(
            link_url("http://127.0.0.1:3000", "abc"),
            "http://127.0.0.1:3000/login/link?token=abc"
        );
    }
}
