//! Figures for `GET /metrics`, read at scrape time.

use std::path::Path;

use rusqlite::Connection;

use super::Result;

/// Agents of workspaces' latest builds (`deleted = 0`).
pub fn live_agents(c: &Connection) -> Result<i64> {
    Ok(c.query_row(
        "SELECT count(*) FROM workspace_agents WHERE deleted = 0",
        [],
        |r| r.get(0),
    )?)
}

/// Bytes on disk of the database file and its write-ahead log.
pub fn file_bytes(db: &Path) -> u64 {
    [db.to_path_buf(), super::backup::sidecar(db, "-wal")]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}
