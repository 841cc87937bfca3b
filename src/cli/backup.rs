//! The `backup` and `restore` commands: people-facing wording around
//! `store::backup`, with progress on stderr for large files.

use std::io::Write;
use std::path::Path;

use anyhow::bail;
use serde_json::json;

use crate::config::Config;
use crate::store::backup::{self, Copied, PAGES_PER_STEP, Progress, SafetyCopy};
use crate::store::lock::{self, LockError};
use crate::store::migrate;

/// Prints `copied 1200/5000 pages (24%)` to stderr after each step, for files
/// larger than one step (small ones finish before anyone could read it).
fn progress_printer() -> impl FnMut(Progress) {
    let mut last = -1;
    move |p: Progress| {
        if p.total <= i64::from(PAGES_PER_STEP) || p.done == last {
            return;
        }
        last = p.done;
        let pct = if p.total > 0 {
            p.done * 100 / p.total
        } else {
            100
        };
        let _ = writeln!(
            std::io::stderr().lock(),
            "copied {}/{} pages ({pct}%)",
            p.done,
            p.total
        );
    }
}

/// `12.3 MiB`-style sizes.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

fn copied_json(c: &Copied) -> serde_json::Value {
    json!({"path": c.path, "pages": c.pages, "bytes": c.bytes, "schema_version": c.schema_version, "mode": format!("{:04o}", c.mode)})
}

/// Where the replaced database is kept, for people.
fn safety_copy_text(kept: &SafetyCopy) -> String {
    let mut s = format!("the replaced database is kept at {}", kept.path.display());
    if kept.with_wal {
        s.push_str(&format!(
            " (with {}-wal, which holds part of it: keep them together)",
            kept.path.display()
        ));
    }
    s.push_str("; delete it once the restored database serves well");
    s
}

/// `appliance backup --to FILE [--force]`: a consistent copy of the live
/// database, safe while the server runs. Returns (JSON, text).
pub fn run_backup(
    config: &Config,
    to: &Path,
    force: bool,
) -> anyhow::Result<(serde_json::Value, String)> {
    let copied = backup::backup(
        &config.db,
        to,
        force,
        config.database.busy_timeout,
        PAGES_PER_STEP,
        &mut progress_printer(),
    )
    .map_err(|e| anyhow::anyhow!("backup of {} failed: {e}", config.db.display()))?;
    let text = format!(
        "backed up {} to {} ({}, {} pages, schema version {}, integrity ok, mode {:04o})",
        config.db.display(),
        copied.path.display(),
        size(copied.bytes),
        copied.pages,
        copied.schema_version,
        copied.mode
    );
    let mut v = copied_json(&copied);
    v["db"] = json!(config.db);
    Ok((v, text))
}

/// `appliance restore --from FILE`: replaces the database with a checked
/// backup; refuses while a server has the database open.
pub fn run_restore(config: &Config, from: &Path) -> anyhow::Result<(serde_json::Value, String)> {
    let db = &config.db;
    let _lock = match lock::try_lock(db) {
        Ok(l) => l,
        Err(LockError::Held { .. }) => bail!(
            "a server has {} open: stop it first (e.g. `systemctl stop appliance`), then run restore again",
            db.display()
        ),
        Err(LockError::Store(e)) => bail!("{e}"),
    };
    let restored = backup::restore(from, db, PAGES_PER_STEP, &mut progress_printer())
        .map_err(|e| anyhow::anyhow!("restore from {} failed: {e}", from.display()))?;
    let copied = &restored.copied;
    let mut text = format!(
        "restored {} from {} ({}, {} pages, schema version {}, integrity ok, mode {:04o})",
        copied.path.display(),
        from.display(),
        size(copied.bytes),
        copied.pages,
        copied.schema_version,
        copied.mode
    );
    if copied.schema_version < migrate::latest() {
        text.push_str(&format!(
            "; the server migrates it to version {} when it starts",
            migrate::latest()
        ));
    }
    match &restored.safety_copy {
        Some(kept) => {
            text.push('\n');
            text.push_str(&safety_copy_text(kept));
        }
        None => text.push_str("\nthere was no database to replace"),
    }
    text.push_str("\nnext: start the server again (e.g. `systemctl start appliance`)");
    let mut v = copied_json(copied);
    v["from"] = json!(from);
    v["safety_copy"] = json!(restored.safety_copy.as_ref().map(|k| &k.path));
    v["safety_copy_wal"] = json!(
        restored
            .safety_copy
            .as_ref()
            .filter(|k| k.with_wal)
            .map(|k| backup::sidecar(&k.path, "-wal"))
    );
    Ok((v, text))
}

#[cfg(test)]
mod tests {
    use super::size;

    #[test]
    fn sizes_read_well() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(4096), "4.0 KiB");
        assert_eq!(size(20 * 1024 * 1024 + 512 * 1024), "20.5 MiB");
    }
}
