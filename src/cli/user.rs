//! `appliance user`: create and list users, show or replace a user's git SSH key.

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::json;
use time::OffsetDateTime;

use super::output::Printer;
use crate::auth::{self, Role};
use crate::gitsshkey;
use crate::store::{self, Store, StoreError};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user.
    Create {
        /// Username: letters, digits and single hyphens, at most 32 characters.
        name: String,
        #[arg(long, default_value = "")]
        email: String,
        #[arg(long, default_value = "member", value_parser = parse_role)]
        role: Role,
    },
    /// List users.
    List,
    /// Print the user's git SSH public key (served to their workspaces by
    /// `GET /api/v2/workspaceagents/me/gitsshkey`), for adding to Gitea,
    /// GitLab or GitHub. Creates the key pair if the user has none.
    Gitsshkey {
        name: String,
        /// Replace the key pair with a new one (algorithm: `ssh_keygen_algorithm`).
        #[arg(long)]
        regenerate: bool,
    },
}

pub(super) fn find_user(store: &Store, name: &str) -> anyhow::Result<store::users::UserRow> {
    store
        .read(|c| store::users::user_by_name(c, name))?
        .with_context(|| {
            format!("unknown user \"{name}\": create it with `appliance user create {name}`")
        })
}

fn user_json(u: &store::users::UserRow) -> serde_json::Value {
    json!({"id": u.id, "username": u.username, "email": u.email, "role": u.role.as_str()})
}

pub(super) fn run(
    store: &Store,
    algorithm: gitsshkey::Algorithm,
    cmd: UserCommand,
    out: &Printer,
) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Create { name, email, role } => {
            if !auth::valid_username(&name) {
                bail!(
                    "\"{name}\" is not a valid username: use letters, digits and single hyphens, at most 32 characters"
                );
            }
            if !email.is_empty() && !auth::valid_email(&email) {
                bail!("\"{email}\" is not an email address: use name@domain, or leave --email out");
            }
            let now = OffsetDateTime::now_utc();
            let key = gitsshkey::generate(algorithm).map_err(anyhow::Error::msg)?;
            let user = store
                .write(|tx| {
                    let user = store::users::insert_user(tx, &name, &email, role, now)?;
                    store::users::put_gitsshkey(
                        tx,
                        user.id,
                        &key.private_key,
                        &key.public_key,
                        now,
                        false,
                    )?;
                    Ok(user)
                })
                .map_err(|e| match e {
                    StoreError::Conflict(m) => anyhow::anyhow!("{m}: pick another name"),
                    other => other.into(),
                })?;
            out.emit(&user_json(&user), || {
                format!(
                    "created {} \"{}\" ({})\nnext: appliance token create --user {}",
                    user.role, user.username, user.id, user.username
                )
            });
        }
        UserCommand::Gitsshkey { name, regenerate } => {
            let user = find_user(store, &name)?;
            let existing = store.read(|c| store::users::gitsshkey(c, user.id))?;
            let key = match existing {
                Some(k) if !regenerate => k,
                _ => {
                    let pair = gitsshkey::generate(algorithm).map_err(anyhow::Error::msg)?;
                    let now = OffsetDateTime::now_utc();
                    store.write(|tx| {
                        store::users::put_gitsshkey(
                            tx,
                            user.id,
                            &pair.private_key,
                            &pair.public_key,
                            now,
                            true,
                        )
                    })?
                }
            };
            out.emit(
                &json!({"username": user.username, "public_key": key.public_key, "updated_at": crate::sdk::rfc3339::format(&key.updated_at)}),
                || key.public_key.trim_end().to_string(),
            );
        }
        UserCommand::List => {
            let users = store.read(store::users::list_users)?;
            out.emit(
                &json!(users.iter().map(user_json).collect::<Vec<_>>()),
                || {
                    let mut s = format!("{:<24} {:<8} {:<36} EMAIL\n", "USERNAME", "ROLE", "ID");
                    for u in &users {
                        s.push_str(&format!(
                            "{:<24} {:<8} {:<36} {}\n",
                            u.username, u.role, u.id, u.email
                        ));
                    }
                    s
                },
            );
        }
    }
    Ok(())
}

/// `--role`: admins read every workspace and agent, members their own.
fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| {
        let names: Vec<_> = Role::ALL.iter().map(|r| r.as_str()).collect();
        format!("use one of: {}", names.join(", "))
    })
}
