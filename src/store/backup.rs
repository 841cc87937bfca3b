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
//! Files: a target must be a regular file or not exist (a symlink is followed
//! to the file it names; a device, FIFO, socket or directory is refused, so a
//! rename never replaces one). The temporary file is created with the mode the
//! result must have (the database's), before anything is written to it: the
//! file holds SSH private keys and OAuth tokens.
//!
//! A restore checks the file first (integrity, a schema version this binary
//! knows, and the tables, columns, indexes and triggers that version has),
//! keeps the database it replaces beside it (`<db>.before-restore-<time>`, a
//! hard link: same bytes, mode and owner, no extra space), then copies the
//! backup the same way over the database, with the old file's mode and owner,
//! and removes the old `-wal` and `-shm`. The caller must hold the database's
//! [`super::lock`] so that no server has the file open.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions, Permissions};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use time::OffsetDateTime;

use super::{Result, StoreError, migrate};

/// Pages copied per step between progress reports (16 MiB of 4 KiB pages).
pub const PAGES_PER_STEP: i32 = 4096;

/// The mode of a restored database when there was none to replace.
const NEW_DATABASE_MODE: u32 = 0o600;

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
    /// The file's permission bits.
    pub mode: u32,
}

/// What a restore did: the copy, and where the replaced database is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub copied: Copied,
    /// `None` when there was no database to replace.
    pub safety_copy: Option<SafetyCopy>,
}

/// The replaced database, kept beside the restored one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetyCopy {
    pub path: PathBuf,
    /// Its `-wal` had committed pages that could not be checkpointed into it,
    /// so `<path>-wal` is kept too (SQLite reads both together).
    pub with_wal: bool,
}

/// Copies the live database `db` (which must exist) to `dest`. `dest` must
/// not exist unless `force`, and must be a regular file if it does. The copy
/// gets `db`'s mode. `progress` is called after every step of
/// `pages_per_step` pages.
pub fn backup(
    db: &Path,
    dest: &Path,
    force: bool,
    busy_timeout: Duration,
    pages_per_step: i32,
    progress: &mut dyn FnMut(Progress),
) -> Result<Copied> {
    let db_meta = match fs::metadata(db) {
        Ok(m) if m.is_file() => m,
        _ => {
            return Err(StoreError::Other(format!(
                "there is no database at {}: pass the right --db path",
                db.display()
            )));
        }
    };
    let dest = writable_target(dest, force, Purpose::Backup)?;
    if let Some(what) = part_of_database(db, &dest) {
        return Err(StoreError::Other(format!(
            "{} is {what}: back up to another path",
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
    let mode = FileMode {
        mode: db_meta.permissions().mode() & 0o777,
        owner: None,
    };
    let tmp = TempFile::create(&dest, mode)?;
    let copied = copy_to(&src, &tmp, version, pages_per_step, progress)?;
    tmp.install(&dest)?;
    Ok(Copied {
        path: dest,
        ..copied
    })
}

/// Checks that `file` is an intact appliance database this binary can serve:
/// a known schema version, `PRAGMA integrity_check`, and exactly the tables,
/// columns, indexes and triggers the migrations give that version. Returns
/// the version.
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
    let differences = expected_schema(version)?.differences(&Schema::read(&conn)?);
    if !differences.is_empty() {
        const SHOWN: usize = 6;
        let mut shown = differences
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        if differences.len() > SHOWN {
            shown.push_str(&format!(" (and {} more)", differences.len() - SHOWN));
        }
        return Err(StoreError::Other(format!(
            "{} is not an appliance database: its schema differs from version {version}'s: {shown}",
            file.display()
        )));
    }
    Ok(version)
}

/// Replaces the database `db` with a verified copy of `from`: keeps the old
/// file as a [`SafetyCopy`], gives the new one the old one's mode and owner
/// (0600 and the caller when there was none), removes the old `-wal` and
/// `-shm`. The caller holds `db`'s lock.
pub fn restore(
    from: &Path,
    db: &Path,
    pages_per_step: i32,
    progress: &mut dyn FnMut(Progress),
) -> Result<Restored> {
    if same_file(from, db) {
        return Err(StoreError::Other(format!(
            "{} is the database itself: restore from a backup file",
            from.display()
        )));
    }
    let version = verify(from)?;
    let db = writable_target(db, true, Purpose::Restore)?;
    let mode = match fs::metadata(&db) {
        Ok(m) => FileMode {
            mode: m.permissions().mode() & 0o777,
            owner: Some((m.uid(), m.gid())),
        },
        Err(_) => FileMode {
            mode: NEW_DATABASE_MODE,
            owner: None,
        },
    };
    let src = open_read_only(from)?;
    let tmp = TempFile::create(&db, mode)?;
    let copied = copy_to(&src, &tmp, version, pages_per_step, progress)?;
    drop(src);
    let safety_copy = if db.exists() {
        Some(keep_replaced(&db, OffsetDateTime::now_utc())?)
    } else {
        None
    };
    let replace = || -> Result<()> {
        for stale in [sidecar(&db, "-wal"), sidecar(&db, "-shm")] {
            match fs::remove_file(&stale) {
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
        tmp.install(&db)
    };
    if let Err(e) = replace() {
        return Err(match &safety_copy {
            Some(kept) => StoreError::Other(format!(
                "{e}; the database as it was before is kept at {}",
                kept.path.display()
            )),
            None => e,
        });
    }
    Ok(Restored {
        copied: Copied { path: db, ..copied },
        safety_copy,
    })
}

/// `db` + suffix, e.g. `appliance.db-wal`.
pub fn sidecar(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Keeps the database about to be replaced at `<db>.before-restore-<time>`
/// (`-2`, `-3`, ... when taken): first its WAL is checkpointed into it, so the
/// copy is one file when SQLite can; then a hard link (the very file: bytes,
/// mode, owner), or a copy with the same mode and owner where links are not
/// supported. A WAL that could not be checkpointed is kept beside it.
fn keep_replaced(db: &Path, now: OffsetDateTime) -> Result<SafetyCopy> {
    checkpoint(db);
    let stamp = now
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .map_err(|e| StoreError::Other(format!("cannot format the time: {e}")))?;
    let base = sidecar(db, &format!(".before-restore-{stamp}"));
    let mut n = 1;
    let path = loop {
        let candidate = if n == 1 {
            base.clone()
        } else {
            sidecar(&base, &format!("-{n}"))
        };
        if fs::symlink_metadata(&candidate).is_err()
            && fs::symlink_metadata(sidecar(&candidate, "-wal")).is_err()
        {
            match link_or_copy(db, &candidate) {
                Ok(()) => break candidate,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(StoreError::Other(format!(
                        "cannot keep the replaced database at {}: {e} (nothing was changed)",
                        candidate.display()
                    )));
                }
            }
        }
        n += 1;
    };
    let wal = sidecar(db, "-wal");
    let with_wal = fs::metadata(&wal).is_ok_and(|m| m.len() > 0);
    if with_wal {
        link_or_copy(&wal, &sidecar(&path, "-wal")).map_err(|e| {
            StoreError::Other(format!(
                "cannot keep the replaced database's WAL at {}: {e} (nothing was changed)",
                sidecar(&path, "-wal").display()
            ))
        })?;
    }
    Ok(SafetyCopy { path, with_wal })
}

/// Moves committed WAL pages into the database file, where SQLite can (the
/// file may be damaged: that is what restores are for; then nothing happens
/// and the WAL is kept as it is).
fn checkpoint(db: &Path) {
    let Ok(conn) = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) else {
        return;
    };
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    let _ = conn.close();
}

/// A hard link `to` → `from`, else a byte copy created with `from`'s mode
/// and owner. Never replaces `to`.
fn link_or_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    match fs::hard_link(from, to) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(e),
        Err(_) => {}
    }
    let meta = fs::metadata(from)?;
    let mut src = File::open(from)?;
    let mut dst = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(meta.permissions().mode() & 0o777)
        .open(to)?;
    let result = (|| {
        std::os::unix::fs::fchown(&dst, Some(meta.uid()), Some(meta.gid())).or_else(|e| {
            // Only root may give a file away; the caller's own file is fine.
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                Ok(())
            } else {
                Err(e)
            }
        })?;
        dst.set_permissions(Permissions::from_mode(meta.permissions().mode() & 0o777))?;
        std::io::copy(&mut src, &mut dst)?;
        dst.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(to);
    }
    result
}

/// Copies `src` (one read snapshot) into the new file `tmp`, leaves it a
/// self-contained rollback-journal database, checks and syncs it.
fn copy_to(
    src: &Connection,
    tmp: &TempFile,
    version: i64,
    pages_per_step: i32,
    progress: &mut dyn FnMut(Progress),
) -> Result<Copied> {
    let tmp_path = tmp.path.as_path();
    // One snapshot for every step: a read transaction that has read something.
    src.execute_batch("BEGIN DEFERRED")?;
    let result = (|| {
        src.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
            r.get::<_, i64>(0)
        })?;
        // The (empty) file exists with its final mode; SQLite opens it as an
        // empty database and gives its journal the same mode.
        let mut dst = Connection::open_with_flags(
            tmp_path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| cannot_use(tmp_path, e))?;
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
                tmp_path.display()
            )));
        }
        integrity_check(&dst, tmp_path)?;
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
    let file = File::open(tmp_path)
        .map_err(|e| StoreError::Other(format!("cannot open {}: {e}", tmp_path.display())))?;
    file.sync_all()
        .map_err(|e| StoreError::Other(format!("cannot sync {}: {e}", tmp_path.display())))?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok(Copied {
        path: tmp_path.to_path_buf(),
        pages,
        bytes,
        schema_version: version,
        mode: tmp.mode.mode,
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

/// The schema the embedded migrations give `version`: they run on an
/// in-memory database.
fn expected_schema(version: i64) -> Result<Schema> {
    let conn = Connection::open_in_memory()?;
    for (name, sql) in migrate::MIGRATIONS.iter().take(version.max(0) as usize) {
        conn.execute_batch(sql)
            .map_err(|e| StoreError::Other(format!("migration {name} failed: {e}")))?;
    }
    Schema::read(&conn)
}

/// What a database's structure is, as SQLite reports it (not the text of the
/// `CREATE` statements): tables with their columns, indexes with theirs,
/// triggers and views by name. SQLite's own objects (`sqlite_*`) are left out.
#[derive(Debug, PartialEq)]
struct Schema {
    /// Table → its columns in order: (name, declared type, not null, pk).
    tables: BTreeMap<String, Vec<(String, String, bool, i64)>>,
    /// Index → (table, unique, partial, columns).
    indexes: BTreeMap<String, (String, bool, bool, Vec<String>)>,
    /// Trigger or view → (type, table).
    others: BTreeMap<String, (String, String)>,
}

impl Schema {
    fn read(conn: &Connection) -> Result<Schema> {
        let mut objects = conn.prepare(
            "SELECT type, name, tbl_name FROM sqlite_schema
             WHERE substr(name, 1, 7) != 'sqlite_' ORDER BY name",
        )?;
        let objects: Vec<(String, String, String)> = objects
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut schema = Schema {
            tables: BTreeMap::new(),
            indexes: BTreeMap::new(),
            others: BTreeMap::new(),
        };
        for (kind, name, table) in objects {
            match kind.as_str() {
                "table" => {
                    let mut stmt = conn.prepare(
                        "SELECT name, upper(type), \"notnull\", pk FROM pragma_table_xinfo(?1) ORDER BY cid",
                    )?;
                    let columns = stmt
                        .query_map([&name], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? != 0, r.get(3)?))
                        })?
                        .collect::<rusqlite::Result<_>>()?;
                    schema.tables.insert(name, columns);
                }
                "index" => {
                    let (unique, partial) = conn
                        .prepare(
                            "SELECT \"unique\", partial FROM pragma_index_list(?1) WHERE name = ?2",
                        )?
                        .query_row([&table, &name], |r| {
                            Ok((r.get::<_, i64>(0)? != 0, r.get::<_, i64>(1)? != 0))
                        })?;
                    let mut stmt = conn.prepare(
                        "SELECT coalesce(name, '<expression>') FROM pragma_index_info(?1) ORDER BY seqno",
                    )?;
                    let columns = stmt
                        .query_map([&name], |r| r.get(0))?
                        .collect::<rusqlite::Result<_>>()?;
                    schema
                        .indexes
                        .insert(name, (table, unique, partial, columns));
                }
                _ => {
                    schema.others.insert(name, (kind, table));
                }
            }
        }
        Ok(schema)
    }

    /// How `found` differs from this (expected) schema, for people.
    fn differences(&self, found: &Schema) -> Vec<String> {
        let mut out = Vec::new();
        for (table, columns) in &self.tables {
            let Some(have) = found.tables.get(table) else {
                out.push(format!("missing table {table}"));
                continue;
            };
            for col in columns {
                match have.iter().find(|c| c.0 == col.0) {
                    None => out.push(format!("table {table}: missing column {}", col.0)),
                    Some(c) if c != col => out.push(format!(
                        "table {table}: column {} is {} (expected {})",
                        col.0,
                        column_text(c),
                        column_text(col)
                    )),
                    Some(_) => {}
                }
            }
            for c in have {
                if !columns.iter().any(|col| col.0 == c.0) {
                    out.push(format!("table {table}: unexpected column {}", c.0));
                }
            }
        }
        for table in found.tables.keys() {
            if !self.tables.contains_key(table) {
                out.push(format!("unexpected table {table}"));
            }
        }
        for (name, index) in &self.indexes {
            match found.indexes.get(name) {
                None => out.push(format!("missing index {name}")),
                Some(i) if i != index => out.push(format!("index {name} differs")),
                Some(_) => {}
            }
        }
        for name in found.indexes.keys() {
            if !self.indexes.contains_key(name) {
                out.push(format!("unexpected index {name}"));
            }
        }
        for (name, (kind, _)) in &self.others {
            if found.others.get(name).map(|o| &o.0) != Some(kind) {
                out.push(format!("missing {kind} {name}"));
            }
        }
        for (name, (kind, _)) in &found.others {
            if !self.others.contains_key(name) {
                out.push(format!("unexpected {kind} {name}"));
            }
        }
        out
    }
}

fn column_text(c: &(String, String, bool, i64)) -> String {
    let mut s = if c.1.is_empty() {
        "untyped".to_string()
    } else {
        c.1.clone()
    };
    if c.2 {
        s.push_str(" NOT NULL");
    }
    if c.3 > 0 {
        s.push_str(" PRIMARY KEY");
    }
    s
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

/// Which file a target names, for the wording of refusals.
#[derive(Clone, Copy)]
enum Purpose {
    Backup,
    Restore,
}

/// What a non-regular file is, in words.
fn kind_of(ft: fs::FileType) -> &'static str {
    if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// The regular file a copy may be renamed over: `target` itself, or the file
/// a symlink at `target` names. Refuses devices, FIFOs, sockets, directories,
/// dangling symlinks and (unless `force`) existing files. `Ok` also when
/// nothing exists at `target`.
fn writable_target(target: &Path, force: bool, purpose: Purpose) -> Result<PathBuf> {
    let meta = match fs::symlink_metadata(target) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(target.to_path_buf()),
        Err(e) => {
            return Err(StoreError::Other(format!(
                "cannot use {}: {e}",
                target.display()
            )));
        }
    };
    let (path, meta, described) = if meta.file_type().is_symlink() {
        let real = fs::canonicalize(target).map_err(|e| {
            StoreError::Other(format!(
                "{} is a symlink to a file that cannot be used ({e}): name the file itself",
                target.display()
            ))
        })?;
        let real_meta = fs::metadata(&real)
            .map_err(|e| StoreError::Other(format!("cannot use {}: {e}", real.display())))?;
        let described = format!(
            "{} is a symlink to {}, which",
            target.display(),
            real.display()
        );
        (real, real_meta, described)
    } else {
        (target.to_path_buf(), meta, target.display().to_string())
    };
    let ft = meta.file_type();
    if ft.is_dir() {
        return Err(StoreError::Other(match purpose {
            Purpose::Backup => format!(
                "{described} is a directory: name the backup file, e.g. {}/appliance-backup.db",
                path.display()
            ),
            Purpose::Restore => {
                format!("{described} is a directory: pass the database file with --db")
            }
        }));
    }
    if !ft.is_file() {
        let what = kind_of(ft);
        return Err(StoreError::Other(match purpose {
            Purpose::Backup => format!(
                "{described} is {what}, not a regular file: name a file to write the backup to (nothing was written)"
            ),
            Purpose::Restore => format!(
                "{described} is {what}, not a regular file: pass the database file with --db (nothing was written)"
            ),
        }));
    }
    if !force {
        return Err(StoreError::Other(format!(
            "{} already exists: choose another name, or pass --force to replace it",
            target.display()
        )));
    }
    Ok(path)
}

/// Whether `dest` is the database `db` or one of the files SQLite or the
/// server keep beside it (which a rename must never replace).
fn part_of_database(db: &Path, dest: &Path) -> Option<&'static str> {
    if same_file(db, dest) {
        return Some("the database itself");
    }
    let db = db.canonicalize().ok()?;
    let dest = match (dest.parent(), dest.file_name()) {
        (Some(dir), Some(name)) => {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            dir.canonicalize().ok()?.join(name)
        }
        _ => return None,
    };
    for suffix in ["-wal", "-shm", "-journal", ".lock"] {
        if dest == sidecar(&db, suffix) {
            return Some("a file the database needs beside it");
        }
    }
    None
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The permission bits a new file gets, and its owner when it must differ
/// from the caller (a restore run as root keeps the service user's file).
#[derive(Debug, Clone, Copy)]
struct FileMode {
    mode: u32,
    owner: Option<(u32, u32)>,
}

/// A temporary file beside a target, removed unless installed.
struct TempFile {
    path: PathBuf,
    mode: FileMode,
}

impl TempFile {
    /// Creates the (empty) file with its final owner and mode before
    /// anything is written to it. The owner always may read and write it
    /// while it is written; [`TempFile::install`] narrows it if `mode` says so.
    fn create(target: &Path, mode: FileMode) -> Result<TempFile> {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "appliance.db".to_owned());
        let path = target.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        // Left over from a crashed run of this same pid: never a live file.
        let _ = fs::remove_file(&path);
        let _ = fs::remove_file(sidecar(&path, "-journal"));
        let writing = mode.mode | 0o600;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(writing)
            .open(&path)
            .map_err(|e| StoreError::Other(format!("cannot create {}: {e}", path.display())))?;
        let tmp = TempFile { path, mode };
        let meta = file
            .metadata()
            .map_err(|e| StoreError::Other(format!("cannot stat {}: {e}", tmp.path.display())))?;
        if let Some((uid, gid)) = mode.owner
            && (meta.uid(), meta.gid()) != (uid, gid)
        {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(|e| {
                StoreError::Other(format!(
                    "cannot give {} the owner of the database it replaces (uid {uid}, gid {gid}): {e}; run restore as that user or as root",
                    tmp.path.display()
                ))
            })?;
        }
        // The umask may have narrowed the mode: set it exactly, still empty.
        file.set_permissions(Permissions::from_mode(writing))
            .map_err(|e| StoreError::Other(format!("cannot chmod {}: {e}", tmp.path.display())))?;
        Ok(tmp)
    }

    /// Renames the file into place (over a regular file, or where nothing
    /// is) and syncs the directory.
    fn install(self, target: &Path) -> Result<()> {
        if self.mode.mode | 0o600 != self.mode.mode {
            fs::set_permissions(&self.path, Permissions::from_mode(self.mode.mode)).map_err(
                |e| StoreError::Other(format!("cannot chmod {}: {e}", self.path.display())),
            )?;
        }
        // Checked again just before the rename: nothing but a regular file
        // is ever replaced.
        match fs::symlink_metadata(target) {
            Ok(m) if !m.file_type().is_file() => {
                return Err(StoreError::Other(format!(
                    "{} is {}, not a regular file: nothing was written",
                    target.display(),
                    if m.file_type().is_symlink() {
                        "now a symlink"
                    } else {
                        kind_of(m.file_type())
                    }
                )));
            }
            _ => {}
        }
        fs::rename(&self.path, target).map_err(|e| {
            StoreError::Other(format!(
                "cannot move {} to {}: {e}",
                self.path.display(),
                target.display()
            ))
        })?;
        if let Some(dir) = target.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        std::mem::forget(self);
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
        let _ = fs::remove_file(sidecar(&self.path, "-journal"));
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
        let restored = restore(&dest, &target, 100, &mut |_| {}).expect("restore");
        assert_eq!(restored.copied.path, target);
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

    #[test]
    fn a_temporary_file_has_its_final_mode_before_anything_is_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        for mode in [0o600, 0o640, 0o644] {
            let target = dir.path().join(format!("copy-{mode:o}.db"));
            let tmp = TempFile::create(&target, FileMode { mode, owner: None }).expect("create");
            let meta = fs::metadata(&tmp.path).expect("stat");
            assert_eq!(meta.len(), 0, "empty");
            assert_eq!(meta.permissions().mode() & 0o777, mode, "{mode:o}");
        }
        // A read-only database's copy is written by its owner, then narrowed.
        let target = dir.path().join("ro.db");
        let tmp = TempFile::create(
            &target,
            FileMode {
                mode: 0o400,
                owner: None,
            },
        )
        .expect("create");
        assert_eq!(
            fs::metadata(&tmp.path).expect("stat").permissions().mode() & 0o777,
            0o600
        );
        tmp.install(&target).expect("install");
        assert_eq!(
            fs::metadata(&target).expect("stat").permissions().mode() & 0o777,
            0o400
        );
    }

    #[test]
    fn the_safety_copy_holds_commits_still_in_the_replaced_databases_wal() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = seeded(dir.path(), 1);
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
        let db = store.path().to_path_buf();
        drop(store);
        // A server that died: a commit only in the WAL, never checkpointed.
        let conn = Connection::open(&db).expect("open");
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0")
            .expect("pragma");
        crate::store::users::insert_user(
            &conn,
            "late",
            "",
            crate::store::users::Role::Member,
            time::OffsetDateTime::now_utc(),
        )
        .expect("insert");
        assert!(fs::metadata(sidecar(&db, "-wal")).expect("wal").len() > 0);
        std::mem::forget(conn);

        let restored = restore(&dest, &db, 100, &mut |_| {}).expect("restore");
        let kept = restored.safety_copy.expect("a safety copy");
        assert_eq!(user_count(&db), 1, "the backup");
        assert_eq!(
            user_count(&kept.path),
            2,
            "the replaced database, with its WAL"
        );
    }

    #[test]
    fn a_schema_that_differs_is_described() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = seeded(dir.path(), 1);
        let conn = Connection::open(store.path()).expect("open");
        let expected = expected_schema(migrate::latest()).expect("expected");
        assert_eq!(
            expected.differences(&Schema::read(&conn).expect("read")),
            Vec::<String>::new(),
            "a migrated database has exactly the embedded schema"
        );
        conn.execute_batch(
            "CREATE TABLE notes (x); DROP INDEX api_keys_user_id; ALTER TABLE users ADD COLUMN extra TEXT",
        )
        .expect("alter");
        let found = expected.differences(&Schema::read(&conn).expect("read"));
        assert_eq!(
            found,
            [
                "table users: unexpected column extra",
                "unexpected table notes",
                "missing index api_keys_user_id"
            ]
        );
    }
}
