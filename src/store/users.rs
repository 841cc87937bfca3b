//! Users and their API keys.

use rusqlite::{Connection, params};
use time::OffsetDateTime;
use uuid::Uuid;

pub use crate::auth::Role;

use super::{Result, StoreError, from_micros, get_uuid, one, optional, to_micros};

#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub role: Role,
    pub created_at: OffsetDateTime,
}

const USER_COLUMNS: &str = "id, username, email, role, created_at";

/// A `users.role` value; anything else is a corrupt row, not a member.
fn role_column(r: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Role> {
    let text: String = r.get(idx)?;
    Role::parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            rusqlite::types::Type::Text,
            format!("unknown role {text:?}").into(),
        )
    })
}

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        id: get_uuid(r, 0)?,
        username: r.get(1)?,
        email: r.get(2)?,
        role: role_column(r, 3)?,
        created_at: from_micros(r.get(4)?),
    })
}

pub fn insert_user(
    conn: &Connection,
    username: &str,
    email: &str,
    role: Role,
    now: OffsetDateTime,
) -> Result<UserRow> {
    let id = Uuid::new_v4();
    let res = conn.execute(
        "INSERT INTO users (id, username, email, role, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            id.to_string(),
            username,
            email,
            role.as_str(),
            to_micros(now)
        ],
    );
    match res {
        Ok(_) => {}
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            let what = if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                && user_by_name(conn, username)?.is_none()
            {
                format!("a user with the email \"{email}\" already exists")
            } else {
                format!("a user named \"{username}\" already exists")
            };
            return Err(StoreError::Conflict(what));
        }
        Err(e) => return Err(e.into()),
    }
    user_by_id(conn, id)
}

pub fn user_by_id(conn: &Connection, id: Uuid) -> Result<UserRow> {
    one(conn
        .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))?
        .query_row([id.to_string()], user_row))
}

/// Coder's prebuilds system user: owns prebuilt workspaces until a user
/// claims one (created by migration 0003; never signs in, never listed).
pub const PREBUILDS_USER_ID: Uuid = Uuid::from_u128(0xc42fdf75_3097_471c_8c33_fb52454d81c0);

/// A user that people and the CLI can name (system users are not).
pub fn user_by_name(conn: &Connection, username: &str) -> Result<Option<UserRow>> {
    optional(
        conn.prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE username = ?1 AND is_system = 0"
        ))?
        .query_row([username], user_row),
    )
}

pub fn list_users(conn: &Connection) -> Result<Vec<UserRow>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE is_system = 0 ORDER BY username"
    ))?;
    let rows = stmt.query_map([], user_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn count_users(conn: &Connection) -> Result<i64> {
    Ok(
        conn.query_row("SELECT count(*) FROM users WHERE is_system = 0", [], |r| {
            r.get(0)
        })?,
    )
}

/// An API key as stored (the secret only as its hash).
#[derive(Debug, Clone)]
pub struct ApiKeyRow {
    pub id: String,
    pub hashed_secret: Vec<u8>,
    pub user_id: Uuid,
    pub name: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

pub fn insert_api_key(
    conn: &Connection,
    id: &str,
    hashed_secret: &[u8],
    user_id: Uuid,
    name: &str,
    now: OffsetDateTime,
    expires_at: OffsetDateTime,
) -> Result<()> {
    conn.execute(
        "INSERT INTO api_keys (id, hashed_secret, user_id, name, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            id,
            hashed_secret,
            user_id.to_string(),
            name,
            to_micros(now),
            to_micros(expires_at)
        ],
    )?;
    Ok(())
}

/// The key and its user, looked up by the key's public id.
pub fn api_key_with_user(conn: &Connection, id: &str) -> Result<Option<(ApiKeyRow, UserRow)>> {
    optional(
        conn.prepare_cached(
            "SELECT k.id, k.hashed_secret, k.user_id, k.name, k.created_at, k.expires_at, k.revoked_at,
                    u.id, u.username, u.email, u.role, u.created_at
             FROM api_keys k JOIN users u ON u.id = k.user_id
             WHERE k.id = ?1",
        )?
        .query_row([id], |r| {
            Ok((
                ApiKeyRow {
                    id: r.get(0)?,
                    hashed_secret: r.get(1)?,
                    user_id: get_uuid(r, 2)?,
                    name: r.get(3)?,
                    created_at: from_micros(r.get(4)?),
                    expires_at: from_micros(r.get(5)?),
                    revoked_at: r.get::<_, Option<i64>>(6)?.map(from_micros),
                },
                UserRow {
                    id: get_uuid(r, 7)?,
                    username: r.get(8)?,
                    email: r.get(9)?,
                    role: role_column(r, 10)?,
                    created_at: from_micros(r.get(11)?),
                },
            ))
        }),
    )
}

/// An API key as `appliance token list` shows it: never the secret, nor its
/// digest.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyInfo {
    pub id: String,
    pub user_id: Uuid,
    pub username: String,
    pub name: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

const API_KEY_INFO_COLUMNS: &str =
    "k.id, k.user_id, u.username, k.name, k.created_at, k.expires_at, k.revoked_at";

fn api_key_info_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKeyInfo> {
    Ok(ApiKeyInfo {
        id: r.get(0)?,
        user_id: get_uuid(r, 1)?,
        username: r.get(2)?,
        name: r.get(3)?,
        created_at: from_micros(r.get(4)?),
        expires_at: from_micros(r.get(5)?),
        revoked_at: r.get::<_, Option<i64>>(6)?.map(from_micros),
    })
}

/// Every API key (or `user`'s), by username, then oldest first; revoked and
/// expired keys included.
pub fn list_api_keys(conn: &Connection, user: Option<Uuid>) -> Result<Vec<ApiKeyInfo>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {API_KEY_INFO_COLUMNS}
         FROM api_keys k JOIN users u ON u.id = k.user_id
         WHERE ?1 IS NULL OR k.user_id = ?1
         ORDER BY u.username, k.created_at, k.id"
    ))?;
    let rows = stmt.query_map([user.map(|u| u.to_string())], api_key_info_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Marks the key `id` revoked at `now` unless it already is. Returns the key
/// as it now stands and whether it was already revoked; `None` for an
/// unknown id. Run it in a write transaction.
pub fn revoke_api_key(
    conn: &Connection,
    id: &str,
    now: OffsetDateTime,
) -> Result<Option<(ApiKeyInfo, bool)>> {
    let changed = conn.execute(
        "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        params![id, to_micros(now)],
    )?;
    let found = optional(
        conn.prepare_cached(&format!(
            "SELECT {API_KEY_INFO_COLUMNS}
             FROM api_keys k JOIN users u ON u.id = k.user_id
             WHERE k.id = ?1"
        ))?
        .query_row([id], api_key_info_row),
    )?;
    Ok(found.map(|k| (k, changed == 0)))
}

/// A user's git SSH key pair.
#[derive(Clone, PartialEq)]
pub struct GitSshKeyRow {
    pub user_id: Uuid,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub private_key: String,
    pub public_key: String,
}

impl std::fmt::Debug for GitSshKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitSshKeyRow")
            .field("user_id", &self.user_id)
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

pub fn gitsshkey(conn: &Connection, user_id: Uuid) -> Result<Option<GitSshKeyRow>> {
    optional(
        conn.prepare_cached(
            "SELECT user_id, created_at, updated_at, private_key, public_key
             FROM gitsshkeys WHERE user_id = ?1",
        )?
        .query_row([user_id.to_string()], |r| {
            Ok(GitSshKeyRow {
                user_id: get_uuid(r, 0)?,
                created_at: from_micros(r.get(1)?),
                updated_at: from_micros(r.get(2)?),
                private_key: r.get(3)?,
                public_key: r.get(4)?,
            })
        }),
    )
}

/// Stores a user's key pair. With `replace` an existing pair is overwritten;
/// without, an existing pair wins (two first uses racing keep one key).
/// Returns the pair now stored.
pub fn put_gitsshkey(
    conn: &Connection,
    user_id: Uuid,
    private_key: &str,
    public_key: &str,
    now: OffsetDateTime,
    replace: bool,
) -> Result<GitSshKeyRow> {
    let sql = if replace {
        "INSERT INTO gitsshkeys (user_id, created_at, updated_at, private_key, public_key)
         VALUES (?1, ?2, ?2, ?3, ?4)
         ON CONFLICT (user_id) DO UPDATE SET updated_at = excluded.updated_at,
             private_key = excluded.private_key, public_key = excluded.public_key"
    } else {
        "INSERT INTO gitsshkeys (user_id, created_at, updated_at, private_key, public_key)
         VALUES (?1, ?2, ?2, ?3, ?4) ON CONFLICT (user_id) DO NOTHING"
    };
    conn.prepare_cached(sql)?.execute(params![
        user_id.to_string(),
        to_micros(now),
        private_key,
        public_key
    ])?;
    gitsshkey(conn, user_id)?.ok_or(StoreError::NotFound)
}

// ----- dashboard sign-in links -----

/// Stores a one-time sign-in link for `user_id` (its token's digest),
/// valid until `expires_at`; purges every expired link first.
pub fn insert_login_link(
    conn: &Connection,
    token_hash: &[u8],
    user_id: Uuid,
    now: OffsetDateTime,
    expires_at: OffsetDateTime,
) -> Result<()> {
    conn.prepare_cached("DELETE FROM login_links WHERE expires_at <= ?1")?
        .execute([to_micros(now)])?;
    conn.prepare_cached(
        "INSERT INTO login_links (token_hash, user_id, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        token_hash,
        user_id.to_string(),
        to_micros(now),
        to_micros(expires_at)
    ])?;
    Ok(())
}

/// The user a sign-in link is for, while it is unused and unexpired; the
/// link stays usable.
pub fn login_link_user(
    conn: &Connection,
    token_hash: &[u8],
    now: OffsetDateTime,
) -> Result<Option<UserRow>> {
    optional(
        conn.prepare_cached(
            "SELECT u.id, u.username, u.email, u.role, u.created_at
             FROM login_links l JOIN users u ON u.id = l.user_id
             WHERE l.token_hash = ?1 AND l.expires_at > ?2 AND u.is_system = 0",
        )?
        .query_row(params![token_hash, to_micros(now)], user_row),
    )
}

/// Uses up a sign-in link: deletes it and returns its user, if it was
/// unused and unexpired. Run it in a write transaction (with the API key it
/// leads to), so two uses of one link cannot both succeed.
pub fn take_login_link(
    conn: &Connection,
    token_hash: &[u8],
    now: OffsetDateTime,
) -> Result<Option<UserRow>> {
    let user = login_link_user(conn, token_hash, now)?;
    conn.prepare_cached("DELETE FROM login_links WHERE token_hash = ?1")?
        .execute([token_hash])?;
    Ok(user)
}
