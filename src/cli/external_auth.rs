//! `appliance external-auth`: link, list and unlink users' external-auth
//! providers without a browser.

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::json;
use time::OffsetDateTime;

use super::output::Printer;
use super::user::find_user;
use crate::config::Config;
use crate::store::{self, Store};

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

pub(super) fn run(
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
