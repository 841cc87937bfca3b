//! The store: the only module that knows SQL or rusqlite.
//!
//! [`Store`] owns a pool of SQLite connections to one database file. Reads go
//! through the pool (WAL lets them run beside a writer); every write goes through
//! one process-wide writer lock and an immediate transaction, so writers queue in
//! the process instead of sleeping in SQLite's busy handler. Other processes on
//! the same file (the admin CLI next to a running server) are covered by
//! `busy_timeout`.
//!
//! Query functions live in the submodules, one per table group, each taking a
//! `&Connection` (a `Transaction` derefs to one) and returning row types that are
//! not serialisable: wire types live in `sdk.rs`, so a schema change can never
//! silently change the API.
//!
//! Nothing here knows HTTP, and nothing outside this module imports rusqlite.

pub mod agent_rpc;
pub mod agents;
pub mod backup;
pub mod connections;
pub mod external_auth;
pub mod group;
pub mod lock;
pub mod logs;
pub mod migrate;
pub mod server_keys;
pub mod stats;
pub mod tailnet;
pub mod users;
pub mod workspaces;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
pub use rusqlite::{Connection, Transaction};
use rusqlite::{OpenFlags, TransactionBehavior};
use time::OffsetDateTime;
use uuid::Uuid;

/// What can go wrong in the store, at the granularity callers act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness or constraint violation the caller can explain to a user.
    #[error("{0}")]
    Conflict(String),
    /// The database file was written by a newer appliance.
    #[error(
        "the database is at schema version {found}, but this appliance only knows versions up to {known}: upgrade appliance, or restore a backup made by this version"
    )]
    TooNew { found: i64, known: i64 },
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database pool: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Connection settings.
#[derive(Debug, Clone)]
pub struct Options {
    pub busy_timeout: Duration,
    pub pool_size: u32,
    /// `PRAGMA synchronous = FULL` (fsync per commit) instead of `NORMAL`.
    pub synchronous_full: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            busy_timeout: Duration::from_secs(5),
            pool_size: 8,
            synchronous_full: false,
        }
    }
}

/// A cheap-to-clone handle on the database.
#[derive(Clone)]
pub struct Store {
    pool: r2d2::Pool<SqliteConnectionManager>,
    write_lock: Arc<Mutex<()>>,
    path: PathBuf,
    /// A connection that never writes: its `data_version` moves whenever
    /// anyone (this process or another) commits. See [`Store::version`].
    probe: Arc<Mutex<ChangeProbe>>,
}

/// A file beside the database can only be made in a directory that exists.
pub(crate) fn parent_dir_exists(path: &Path) -> Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() && !parent.exists() => {
            Err(StoreError::Other(format!(
                "the directory {} does not exist: create it, or pass another --db path",
                parent.display()
            )))
        }
        _ => Ok(()),
    }
}

impl Store {
    /// Opens (creating if needed) the database file and applies the connection
    /// pragmas. Does not migrate: call [`Store::migrate`].
    pub fn open(path: &Path, options: &Options) -> Result<Store> {
        parent_dir_exists(path)?;
        if path.is_dir() {
            return Err(StoreError::Other(format!(
                "{} is a directory: pass the path of a database file, e.g. {}/appliance.db",
                path.display(),
                path.display()
            )));
        }
        // Fail at once, with SQLite's own words, on a file that is not a
        // database (the pool would retry until its timeout instead).
        rusqlite::Connection::open(path)
            .and_then(|c| c.query_row("PRAGMA schema_version", [], |r| r.get::<_, i64>(0)))
            .map_err(|e| {
                StoreError::Other(format!("cannot use {} as a database: {e}", path.display()))
            })?;
        // SQLite takes the timeout as a C int of milliseconds.
        let busy_ms = options.busy_timeout.as_millis().min(i32::MAX as u128);
        let synchronous = if options.synchronous_full {
            "FULL"
        } else {
            "NORMAL"
        };
        let manager = SqliteConnectionManager::file(path)
            .with_flags(
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_CREATE
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
                    | OpenFlags::SQLITE_OPEN_URI,
            )
            .with_init(move |c| {
                // Keep query plans: without this SQLite re-plans every statement
                // that binds a LIMIT, on every run (several µs per query).
                c.set_db_config(
                    rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
                    true,
                )?;
                // busy_timeout first, so every later pragma already waits for locks.
                c.execute_batch(&format!(
                    "PRAGMA busy_timeout = {busy_ms};
                     PRAGMA foreign_keys = ON;
                     PRAGMA synchronous = {synchronous};
                     PRAGMA temp_store = MEMORY;
                     PRAGMA mmap_size = 268435456;"
                ))
            });
        let pool = r2d2::Pool::builder()
            .max_size(options.pool_size.max(1))
            // A broken SQLite connection surfaces as an error on use anyway;
            // checking each checkout would cost a statement per request.
            .test_on_check_out(false)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(30))
            .build(manager)?;
        {
            let conn = pool.get()?;
            // WAL is a property of the file, set once; readers then never block the writer.
            let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::Other(format!(
                    "could not switch {} to WAL mode (got {mode}); is it on a network filesystem?",
                    path.display()
                )));
            }
        }
        let probe = rusqlite::Connection::open(path)?;
        probe.busy_timeout(options.busy_timeout)?;
        Ok(Store {
            pool,
            write_lock: Arc::new(Mutex::new(())),
            path: path.to_path_buf(),
            probe: Arc::new(Mutex::new(ChangeProbe(probe))),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Brings the schema up to date; returns (version before, version after).
    pub fn migrate(&self) -> Result<(i64, i64)> {
        let _guard = self.lock_writer();
        let mut conn = self.pool.get()?;
        migrate::migrate(&mut conn)
    }

    /// The schema version of the file.
    pub fn schema_version(&self) -> Result<i64> {
        let conn = self.pool.get()?;
        migrate::version(&conn)
    }

    /// Runs `f` on a pooled connection in one read transaction (blocking): all
    /// its queries see one snapshot, and the file locks are taken once rather
    /// than once per statement.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.pool.get()?;
        let tx = conn.unchecked_transaction()?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs `f` in an immediate transaction under the writer lock, committing if
    /// it returns `Ok` (blocking).
    pub fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let _guard = self.lock_writer();
        let mut conn = self.pool.get()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// [`Store::read`] on the calling (async) thread, for short indexed reads
    /// on the request path: a few rows by key. In WAL mode a reader never waits
    /// for the writer, so this takes microseconds, less than the hand-off to the
    /// blocking pool that [`Store::read_async`] pays. Anything that scans, or
    /// could wait on a lock, uses `read_async` or `write_async` instead.
    ///
    /// Checking a connection out of the pool never blocks a runtime worker:
    /// when none is free at once, the wait (up to the pool's timeout) happens
    /// under `block_in_place`, so the worker's other tasks move elsewhere.
    pub fn read_inline<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = match self.pool.try_get() {
            Some(conn) => conn,
            None => match tokio::runtime::Handle::try_current() {
                Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                    tokio::task::block_in_place(|| self.pool.get())?
                }
                _ => self.pool.get()?,
            },
        };
        let tx = conn.unchecked_transaction()?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// [`Store::read`] on the blocking thread pool, keeping the caller's span.
    pub async fn read_async<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let store = self.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(|| store.read(f)))
            .await
            .map_err(|e| StoreError::Other(format!("store task failed: {e}")))?
    }

    /// [`Store::write`] on the blocking thread pool, keeping the caller's span.
    pub async fn write_async<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let store = self.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(|| store.write(f)))
            .await
            .map_err(|e| StoreError::Other(format!("store task failed: {e}")))?
    }

    /// A number that changes whenever anything was committed to the database
    /// since the last call, by this process or another: a cheap way to tell
    /// whether something read earlier may be stale (one `PRAGMA`, no table
    /// read). Equal numbers mean nothing was committed in between.
    pub fn version(&self) -> Result<i64> {
        self.probe
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .data_version()
    }

    /// A connection of its own whose `data_version` changes whenever any other
    /// connection (in this process or another) commits.
    pub fn change_probe(&self) -> Result<ChangeProbe> {
        let conn = rusqlite::Connection::open(&self.path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Ok(ChangeProbe(conn))
    }

    /// Checkpoints the WAL into the main file; called on clean shutdown so the
    /// file can be copied on its own afterwards.
    pub fn checkpoint(&self) -> Result<()> {
        let _guard = self.lock_writer();
        let conn = self.pool.get()?;
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(())
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, ()> {
        // A writer that panicked left no transaction open (rusqlite rolls back on
        // drop), so the lock is still good to use.
        self.write_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// See [`Store::change_probe`].
pub struct ChangeProbe(rusqlite::Connection);

impl ChangeProbe {
    pub fn data_version(&self) -> Result<i64> {
        Ok(self.0.query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }
}

// ----- column helpers shared by the query modules -----

/// The time now at the precision the store keeps (microseconds), so what a
/// response echoes equals what a later read returns.
pub fn now() -> OffsetDateTime {
    from_micros(to_micros(OffsetDateTime::now_utc()))
}

/// Time as stored: microseconds since the Unix epoch.
pub(crate) fn to_micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000) as i64
}

pub(crate) fn from_micros(us: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

pub(crate) fn opt_from_micros(us: Option<i64>) -> Option<OffsetDateTime> {
    us.map(from_micros)
}

/// Reads a UUID stored as text.
pub(crate) fn get_uuid(r: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Uuid> {
    let s: String = r.get(idx)?;
    Uuid::parse_str(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub(crate) fn get_opt_uuid(r: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Option<Uuid>> {
    let s: Option<String> = r.get(idx)?;
    s.map(|s| {
        Uuid::parse_str(&s).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
        })
    })
    .transpose()
}

/// Maps "no rows" to [`StoreError::NotFound`].
pub(crate) fn one<T>(r: rusqlite::Result<T>) -> Result<T> {
    match r {
        Ok(v) => Ok(v),
        Err(rusqlite::Error::QueryReturnedNoRows) => Err(StoreError::NotFound),
        Err(e) => Err(e.into()),
    }
}

/// Maps "no rows" to `None`.
pub(crate) fn optional<T>(r: rusqlite::Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests;
