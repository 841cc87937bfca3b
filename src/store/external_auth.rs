//! Users' external-auth links (OAuth2 tokens for configured git providers).

use rusqlite::{Connection, params};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Result, from_micros, get_uuid, optional, to_micros};

#[derive(Clone, PartialEq)]
pub struct LinkRow {
    pub provider_id: String,
    pub user_id: Uuid,
    pub username: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub access_token: String,
    pub refresh_token: String,
    /// `None`: never expires.
    pub expires_at: Option<OffsetDateTime>,
    /// JSON object text.
    pub oauth_extra: Option<String>,
}

impl std::fmt::Debug for LinkRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkRow")
            .field("provider_id", &self.provider_id)
            .field("username", &self.username)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "l.provider_id, l.user_id, u.username, l.created_at, l.updated_at,
    l.access_token, l.refresh_token, l.expires_at, l.oauth_extra";

fn link_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LinkRow> {
    Ok(LinkRow {
        provider_id: r.get(0)?,
        user_id: get_uuid(r, 1)?,
        username: r.get(2)?,
        created_at: from_micros(r.get(3)?),
        updated_at: from_micros(r.get(4)?),
        access_token: r.get(5)?,
        refresh_token: r.get(6)?,
        expires_at: r.get::<_, Option<i64>>(7)?.map(from_micros),
        oauth_extra: r.get(8)?,
    })
}

pub fn link(conn: &Connection, provider_id: &str, user_id: Uuid) -> Result<Option<LinkRow>> {
    optional(
        conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM external_auth_links l JOIN users u ON u.id = l.user_id
             WHERE l.provider_id = ?1 AND l.user_id = ?2"
        ))?
        .query_row(params![provider_id, user_id.to_string()], link_row),
    )
}

/// Every link, or one user's, by provider then username.
pub fn links(conn: &Connection, user_id: Option<Uuid>) -> Result<Vec<LinkRow>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM external_auth_links l JOIN users u ON u.id = l.user_id
         WHERE ?1 IS NULL OR l.user_id = ?1 ORDER BY l.provider_id, u.username"
    ))?;
    let rows = stmt.query_map([user_id.map(|u| u.to_string())], link_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// What a link holds; written whole by [`put_link`].
pub struct NewToken<'a> {
    pub access_token: &'a str,
    pub refresh_token: &'a str,
    pub expires_at: Option<OffsetDateTime>,
    pub oauth_extra: Option<&'a str>,
}

/// Creates or replaces the user's link to the provider.
pub fn put_link(
    conn: &Connection,
    provider_id: &str,
    user_id: Uuid,
    token: &NewToken<'_>,
    now: OffsetDateTime,
) -> Result<LinkRow> {
    conn.prepare_cached(
        "INSERT INTO external_auth_links (provider_id, user_id, created_at, updated_at,
             access_token, refresh_token, expires_at, oauth_extra)
         VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (provider_id, user_id) DO UPDATE SET updated_at = excluded.updated_at,
             access_token = excluded.access_token, refresh_token = excluded.refresh_token,
             expires_at = excluded.expires_at, oauth_extra = excluded.oauth_extra",
    )?
    .execute(params![
        provider_id,
        user_id.to_string(),
        to_micros(now),
        token.access_token,
        token.refresh_token,
        token.expires_at.map(to_micros),
        token.oauth_extra
    ])?;
    link(conn, provider_id, user_id)?.ok_or(super::StoreError::NotFound)
}

/// Removes the link; whether there was one.
pub fn delete_link(conn: &Connection, provider_id: &str, user_id: Uuid) -> Result<bool> {
    Ok(conn
        .prepare_cached("DELETE FROM external_auth_links WHERE provider_id = ?1 AND user_id = ?2")?
        .execute(params![provider_id, user_id.to_string()])?
        > 0)
}

// ----- browser flows in progress -----

/// Records the digest of a flow's OAuth `state` for `user_id` and the
/// provider. Purges every flow started at or before `expired_before`, then
/// keeps only the user's `keep` newest: one user starting flows never
/// pushes out another's.
pub fn put_state(
    conn: &Connection,
    state_hash: &[u8; 32],
    user_id: Uuid,
    provider_id: &str,
    now: OffsetDateTime,
    expired_before: OffsetDateTime,
    keep: usize,
) -> Result<()> {
    conn.prepare_cached("DELETE FROM external_auth_states WHERE created_at <= ?1")?
        .execute([to_micros(expired_before)])?;
    conn.prepare_cached(
        "INSERT INTO external_auth_states (state_hash, user_id, provider_id, created_at)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        &state_hash[..],
        user_id.to_string(),
        provider_id,
        to_micros(now)
    ])?;
    conn.prepare_cached(
        "DELETE FROM external_auth_states WHERE user_id = ?1 AND state_hash NOT IN (
             SELECT state_hash FROM external_auth_states WHERE user_id = ?1
             ORDER BY created_at DESC LIMIT ?2)",
    )?
    .execute(params![user_id.to_string(), keep as i64])?;
    Ok(())
}

/// Spends a flow's `state`: removes it and answers true only if it is
/// `user_id`'s, for `provider_id`, and started after `expired_before`.
/// Someone else's state is left alone.
pub fn take_state(
    conn: &Connection,
    state_hash: &[u8; 32],
    user_id: Uuid,
    provider_id: &str,
    expired_before: OffsetDateTime,
) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "DELETE FROM external_auth_states
             WHERE state_hash = ?1 AND user_id = ?2 AND provider_id = ?3 AND created_at > ?4",
        )?
        .execute(params![
            &state_hash[..],
            user_id.to_string(),
            provider_id,
            to_micros(expired_before)
        ])?
        > 0)
}

#[cfg(test)]
mod tests {
    use time::Duration;
    use time::macros::datetime;

    use super::*;
    use crate::store::{Options, Store};

    const T0: OffsetDateTime = datetime!(2026-03-01 12:00:00 UTC);
    const TTL: Duration = Duration::minutes(10);

    fn user(store: &Store, name: &str) -> Uuid {
        store
            .write(|tx| {
                crate::store::users::insert_user(
                    tx,
                    name,
                    "",
                    crate::store::users::Role::Member,
                    T0,
                )
            })
            .expect("user")
            .id
    }

    #[test]
    fn a_state_is_spent_once_by_its_user_for_its_provider_before_it_expires() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("t.db"), &Options::default()).expect("open");
        store.migrate().expect("migrate");
        let (alice, bob) = (user(&store, "alice"), user(&store, "bob"));
        let put = |hash: u8, who: Uuid, at: OffsetDateTime| {
            store
                .write(|tx| put_state(tx, &[hash; 32], who, "gitea", at, at - TTL, 3))
                .expect("put")
        };
        let take = |hash: u8, who: Uuid, provider: &str, at: OffsetDateTime| {
            store
                .write(|tx| take_state(tx, &[hash; 32], who, provider, at - TTL))
                .expect("take")
        };
        put(1, alice, T0);
        assert!(!take(1, bob, "gitea", T0), "someone else's state");
        assert!(!take(1, alice, "gh", T0), "another provider's state");
        assert!(!take(1, alice, "gitea", T0 + TTL), "expired");
        assert!(take(1, alice, "gitea", T0 + TTL - Duration::SECOND));
        assert!(!take(1, alice, "gitea", T0), "spent");

        // Bob's many flows keep his newest three and leave alice's alone.
        put(2, alice, T0);
        for (i, hash) in (10..20).enumerate() {
            put(hash, bob, T0 + Duration::seconds(i as i64 + 1));
        }
        assert!(take(2, alice, "gitea", T0));
        assert!(!take(16, bob, "gitea", T0 + Duration::seconds(11)));
        for hash in 17..20 {
            assert!(take(hash, bob, "gitea", T0 + Duration::seconds(11)));
        }

        // Starting a flow purges everyone's expired ones.
        put(3, alice, T0);
        put(4, bob, T0 + TTL);
        let left: i64 = store
            .read(|c| {
                Ok(
                    c.query_row("SELECT count(*) FROM external_auth_states", [], |r| {
                        r.get(0)
                    })?,
                )
            })
            .expect("count");
        assert_eq!(left, 1);
    }
}
