//! Consistent copies of the database file: `appliance backup` and
//! `appliance restore`, with SQLite's online backup API.
//!
//! A backup copies the pages of one read snapshot: the source connection
//! opens a read transaction first and keeps it for every step, so in WAL mode
//! the server's writers never wait for the copy and the copy never restarts
//! because of them. It holds exactly what was committed when the backup
//! started. The copy is written to a temporary file beside the target,
//! switched to a rollback journal (one self-contained file, no `-wal`),
//! checked with `PRAGMA integrity_check`, synced, and only then renamed into
//! place: a target path never holds half a backup.
//!
//! A restore checks the file first (integrity, a schema this binary knows),
//! then copies it the same way over the database and removes the old `-wal`
//! and `-shm`. The caller must hold the database's [`super::lock`] so that no
//! server has the file open.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::{Result, StoreError, migrate};

/// Pages copied per step between progress reports (16 MiB of 4 KiB pages).
pub const PAGES_PER_STEP: i32 = 4096;

/// Where a copy stands: pages done out of the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub done: i64,
    pub total: i64,
}

/// What a finished copy holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub path: PathBuf,
    pub pages: i64,
    pub bytes: u64,
    pub schema_version: i64,
}

/// Copies the live database `db` (which must exist) to `dest`. `dest` must
/// not exist unless `force`. `progress` is called after every step of
/// `pages_per_step` pages.
pub fn backup(
    db: &Path,
    dest: &Path,
    force: bool,
    busy_timeout: Duration,
    pages_per_step: i32,
    progress: &mut dyn FnMut(Progress),
) -> Result<Copied> {
    if !db.is_file() {
        return Err(StoreError::Other(format!(
            "there is no database at {}: pass the right --db path",
            db.display()
        )));
    }
    refuse_existing(dest, force)?;
    if same_file(db, dest) {
        return Err(StoreError::Other(format!(
            "{} is the database itself: back up to another path",
            dest.display()
        )));
    }
    // Read-write (without create) so a WAL database opens whatever the state
    // of its -shm; nothing is written through this connection.
    let src = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(|e| cannot_use(db, e))?;
    src.busy_timeout(busy_timeout)?;
    let version = appliance_version(&src, db)?;
    copy(&src, dest, version, pages_per_step, progress)
}

/// Checks that `file` is an intact appliance database this binary can serve;
/// returns its schema version.
pub fn verify(file: &Path) -> Result<i64> {
    let conn = open_read_only(file)?;
    let version = appliance_version(&conn, file)?;
    if version > migrate::latest() {
        return Err(StoreError::Other(format!(
            "{} is at schema version {version}, newer than this appliance knows ({}): restore it with a newer appliance",
            file.display(),
            migrate::latest()
        )));
    }
    integrity_check(&conn, file)?;
    Ok(version)
}

/// Replaces the database `db` with a verified copy of `from`, removing the
/// old database's `-wal` and `-shm`. The caller holds `db`'s lock.
pub fn restore(
    from: &Path,
    db: &Path,
    pages_per_step: i32,
    progress: &mut dyn FnMut(Progress),
) -> Result<Copied> {
    if same_file(from, db) {
        return Err(StoreError::Other(format!(
            "{} is the database itself: restore from a backup file",
            from.display()
        )));
    }
    let version = verify(from)?;
    let src = open_read_only(from)?;
    let tmp = TempFile::beside(db);
    let copied = copy_to(&src, &tmp.0, version, pages_per_step, progress)?;
    for stale in [sidecar(db, "-wal"), sidecar(db, "-shm")] {
        match std::fs::remove_file(&stale) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(StoreError::Other(format!(
                    "cannot remove {}: {e}",
                    stale.display()
                )));
            }
        }
    }
    tmp.install(db)?;
    Ok(Copied {
        path: db.to_path_buf(),
        ..copied
    })
}

/// `db` + suffix, e.g. `appliance.db-wal`.
pub fn sidecar(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn copy(
    src: &Connection,
    dest: &Path,
    version: i64,
    pages_per_step: i32,
    progress: &mut dyn FnMut(Progress),
) -> Result<Copied> {
    let tmp = TempFile::beside(dest);
    let copied = copy_to(src, &tmp.0, version, pages_per_step, progress)?;
    tmp.install(dest)?;
    Ok(Copied {
        path: dest.to_path_buf(),
        ..copied
    })
}

/// Copies `src` (one read snapshot) into the new file `tmp`, leaves it a
/// self-contained rollback-journal database, checks and syncs it.
fn copy_to(
    src: &Connection,
    tmp: &Path,
    version: i64,
    pages_per_step: i32,
    progress: &mut dyn FnMut(Progress),
) -> Result<Copied> {
    // One snapshot for every step: a read transaction that has read something.
    src.execute_batch("BEGIN DEFERRED")?;
    let result = (|| {
        src.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
            r.get::<_, i64>(0)
        })?;
        let mut dst = Connection::open(tmp).map_err(|e| cannot_use(tmp, e))?;
        let pages = {
            let backup = Backup::new(src, &mut dst)?;
            loop {
                let step = backup.step(pages_per_step.max(1))?;
                let p = backup.progress();
                let total = i64::from(p.pagecount);
                progress(Progress {
                    done: total - i64::from(p.remaining),
                    total,
                });
                match step {
                    StepResult::Done => break total,
                    StepResult::More => {}
                    // Another connection holds a lock the step needs; wait a little.
                    StepResult::Busy | StepResult::Locked => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    // `StepResult` is non-exhaustive.
                    _ => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        };
        // The source is in WAL mode; the copy becomes one file on its own.
        let mode: String = dst.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("delete") {
            return Err(StoreError::Other(format!(
                "could not take {} out of WAL mode (got {mode})",
                tmp.display()
            )));
        }
        integrity_check(&dst, tmp)?;
        let copied_version = migrate::version(&dst)?;
        if copied_version != version {
            return Err(StoreError::Other(format!(
                "the copy is at schema version {copied_version}, the source at {version}"
            )));
        }
        dst.close().map_err(|(_, e)| e)?;
        Ok(pages)
    })();
    // Ends the read transaction (nothing was written).
    let _ = src.execute_batch("COMMIT");
    let pages = result?;
    let file = std::fs::File::open(tmp)
        .map_err(|e| StoreError::Other(format!("cannot open {}: {e}", tmp.display())))?;
    file.sync_all()
        .map_err(|e| StoreError::Other(format!("cannot sync {}: {e}", tmp.display())))?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok(Copied {
        path: tmp.to_path_buf(),
        pages,
        bytes,
        schema_version: version,
    })
}

/// `PRAGMA integrity_check` must answer exactly `ok`.
fn integrity_check(conn: &Connection, file: &Path) -> Result<()> {
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<_>>()?;
    if rows.len() == 1 && rows[0] == "ok" {
        return Ok(());
    }
    let shown: Vec<&str> = rows.iter().take(5).map(String::as_str).collect();
    Err(StoreError::Other(format!(
        "{} fails PRAGMA integrity_check: {}",
        file.display(),
        shown.join("; ")
    )))
}

/// The schema version of an appliance database; refuses files that are not one.
fn appliance_version(conn: &Connection, file: &Path) -> Result<i64> {
    let version = migrate::version(conn).map_err(|e| match e {
        StoreError::Sqlite(e) => cannot_use(file, e),
        other => other,
    })?;
    if version < 1 {
        return Err(StoreError::Other(format!(
            "{} is not an appliance database (schema version 0)",
            file.display()
        )));
    }
    Ok(version)
}

fn open_read_only(file: &Path) -> Result<Connection> {
    if !file.is_file() {
        return Err(StoreError::Other(format!(
            "{} does not exist or is not a file",
            file.display()
        )));
    }
    Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| cannot_use(file, e))
}

fn cannot_use(file: &Path, e: rusqlite::Error) -> StoreError {
    StoreError::Other(format!("cannot use {} as a database: {e}", file.display()))
}

fn refuse_existing(dest: &Path, force: bool) -> Result<()> {
    if dest.is_dir() {
        return Err(StoreError::Other(format!(
            "{} is a directory: name the backup file, e.g. {}/appliance-backup.db",
            dest.display(),
            dest.display()
        )));
    }
    if dest.exists() && !force {
        return Err(StoreError::Other(format!(
            "{} already exists: choose another name, or pass --force to replace it",
            dest.display()
        )));
    }
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// A temporary file beside a target, removed unless installed.
struct TempFile(PathBuf);

impl TempFile {
    fn beside(target: &Path) -> TempFile {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "appliance.db".to_owned());
        let tmp = target.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        // Left over from a crashed run of this same pid: never a live file.
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(sidecar(&tmp, "-journal"));
        TempFile(tmp)
    }

    /// Renames the file into place and syncs the directory.
    fn install(self, target: &Path) -> Result<()> {
        std::fs::rename(&self.0, target).map_err(|e| {
            StoreError::Other(format!(
                "cannot move {} to {}: {e}",
                self.0.display(),
                target.display()
            ))
        })?;
        if let Some(dir) = target.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        std::mem::forget(self);
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_file(sidecar(&self.0, "-journal"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Options, Store};

    fn seeded(dir: &Path, users: usize) -> Store {
        let store = Store::open(&dir.join("live.db"), &Options::default()).expect("open");
        store.migrate().expect("migrate");
        let now = time::OffsetDateTime::now_utc();
        store
            .write(|tx| {
                for i in 0..users {
                    crate::store::users::insert_user(
                        tx,
                        &format!("u{i}"),
                        "",
                        crate::store::users::Role::Member,
                        now,
                    )?;
                }
                Ok(())
            })
            .expect("seed");
        store
    }

    fn user_count(path: &Path) -> usize {
        let store = Store::open(path, &Options::default()).expect("open copy");
        store
            .read(crate::store::users::list_users)
            .expect("users")
            .len()
    }

    #[test]
    fn a_backup_is_a_checked_single_file_with_every_committed_row() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = seeded(dir.path(), 300);
        let dest = dir.path().join("copy.db");
        let mut steps = Vec::new();
        let copied = backup(
            store.path(),
            &dest,
            false,
            Duration::from_secs(5),
            2,
            &mut |p| steps.push(p),
        )
        .expect("backup");
        assert_eq!(copied.schema_version, migrate::latest());
        assert!(copied.pages > 2, "{copied:?}");
        assert!(steps.len() >= 2, "a step at a time: {steps:?}");
        assert_eq!(steps.last().map(|p| p.done), Some(copied.pages));
        assert!(!sidecar(&dest, "-wal").exists(), "no WAL beside the copy");
        assert_eq!(verify(&dest).expect("verify"), migrate::latest());
        assert_eq!(user_count(&dest), 300);
        // No temporary file is left behind.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.contains(".tmp-")), "{names:?}");
    }

    #[test]
    fn an_existing_target_is_kept_unless_forced() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = seeded(dir.path(), 1);
        let dest = dir.path().join("copy.db");
        std::fs::write(&dest, "precious").expect("write");
        let err = backup(
            store.path(),
            &dest,
            false,
            Duration::from_secs(1),
            100,
            &mut |_| {},
        )
        .expect_err("refused");
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(std::fs::read_to_string(&dest).expect("read"), "precious");
        backup(
            store.path(),
            &dest,
            true,
            Duration::from_secs(1),
            100,
            &mut |_| {},
        )
        .expect("forced");
        assert_eq!(user_count(&dest), 1);
        let err = backup(
            store.path(),
            store.path(),
            true,
            Duration::from_secs(1),
            100,
            &mut |_| {},
        )
        .expect_err("onto itself");
        assert!(err.to_string().contains("database itself"), "{err}");
    }

    #[test]
    fn restore_replaces_the_file_and_drops_the_old_wal() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = seeded(dir.path(), 2);
        let dest = dir.path().join("copy.db");
        backup(
            store.path(),
            &dest,
            false,
            Duration::from_secs(1),
            100,
            &mut |_| {},
        )
        .expect("backup");
        drop(store);
        let target = dir.path().join("target.db");
        let other = Store::open(&target, &Options::default()).expect("open target");
        other.migrate().expect("migrate");
        drop(other);
        std::fs::write(sidecar(&target, "-wal"), "stale").expect("stale wal");
        std::fs::write(sidecar(&target, "-shm"), "stale").expect("stale shm");
        let copied = restore(&dest, &target, 100, &mut |_| {}).expect("restore");
        assert_eq!(copied.path, target);
        assert!(!sidecar(&target, "-wal").exists());
        assert!(!sidecar(&target, "-shm").exists());
        assert_eq!(user_count(&target), 2);
    }

    #[test]
    fn restore_refuses_damaged_foreign_and_newer_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = dir.path().join("target.db");
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, vec![b'x'; 8192]).expect("junk");
        let err = restore(&junk, &target, 100, &mut |_| {}).expect_err("junk");
        assert!(err.to_string().contains("cannot use"), "{err}");
        let empty = dir.path().join("empty.db");
        Connection::open(&empty)
            .and_then(|c| c.execute_batch("CREATE TABLE t (x)"))
            .expect("foreign db");
        let err = restore(&empty, &target, 100, &mut |_| {}).expect_err("foreign");
        assert!(
            err.to_string().contains("not an appliance database"),
            "{err}"
        );
        let newer = dir.path().join("newer.db");
        Connection::open(&newer)
            .and_then(|c| {
                c.execute_batch(&format!(
                    "CREATE TABLE t (x); PRAGMA user_version = {}",
                    migrate::latest() + 1
                ))
            })
            .expect("newer db");
        let err = restore(&newer, &target, 100, &mut |_| {}).expect_err("newer");
        assert!(
            err.to_string().contains("newer than this appliance"),
            "{err}"
        );
        assert!(!target.exists(), "nothing was written");
    }
}
