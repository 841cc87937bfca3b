//! `server_keys`: keys the server generates once and keeps across restarts,
//! by name (today `derp`, the embedded DERP relay's private key). A key is
//! written once and never replaced: the first writer wins, and every later
//! start reads what it wrote.

use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

use super::{Result, to_micros};

/// The key stored under `name`, if any.
pub fn get(conn: &Connection, name: &str) -> Result<Option<Vec<u8>>> {
    Ok(conn
        .prepare_cached("SELECT value FROM server_keys WHERE name = ?1")?
        .query_row(params![name], |r| r.get(0))
        .optional()?)
}

/// The key stored under `name`; when there is none, `fresh` is stored first
/// and returned. Call it in a write transaction, so two processes starting at
/// once agree on one key.
pub fn get_or_insert(
    conn: &Connection,
    name: &str,
    fresh: &[u8],
    now: OffsetDateTime,
) -> Result<Vec<u8>> {
    conn.prepare_cached(
        "INSERT INTO server_keys (name, value, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO NOTHING",
    )?
    .execute(params![name, fresh, to_micros(now)])?;
    match get(conn, name)? {
        Some(value) => Ok(value),
        None => Err(super::StoreError::Other(format!(
            "server key {name:?} vanished after it was written"
        ))),
    }
}
