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
