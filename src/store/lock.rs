//! The server's claim on a database file: an advisory lock on `<db>.lock`,
//! held by `serve` for its whole life.
//!
//! `restore` takes the same lock before it replaces the file, so it cannot
//! pull a database out from under a running server, and a second `serve` on
//! the same file refuses to start. The lock is `flock(2)` on a sidecar file
//! (SQLite's own locks on the database are `fcntl` locks, which are
//! independent): the kernel drops it when the process ends, even on `kill -9`,
//! so a stale lock file is harmless and is never deleted.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use super::{Result, StoreError};

/// Held while alive; dropping it (or the process ending) releases the lock.
#[derive(Debug)]
pub struct DbLock {
    _file: File,
    path: PathBuf,
}

impl DbLock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The lock file that belongs to database `db`: `<db>.lock`.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process (a running server, or a restore) holds it.
    #[error("{} is in use by another process (it holds {})", db.display(), lock.display())]
    Held { db: PathBuf, lock: PathBuf },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Takes the lock on `db` without waiting.
pub fn try_lock(db: &Path) -> std::result::Result<DbLock, LockError> {
    let path = lock_path(db);
    let file = open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(DbLock { _file: file, path }),
        Err(TryLockError::WouldBlock) => Err(LockError::Held {
            db: db.to_path_buf(),
            lock: path,
        }),
        Err(TryLockError::Error(e)) => {
            Err(StoreError::Other(format!("cannot lock {}: {e}", path.display())).into())
        }
    }
}

fn open(path: &Path) -> Result<File> {
    super::parent_dir_exists(path)?;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| StoreError::Other(format!("cannot open {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("a.db");
        let first = try_lock(&db).expect("first lock");
        assert_eq!(first.path(), dir.path().join("a.db.lock"));
        match try_lock(&db) {
            Err(LockError::Held { lock, .. }) => assert_eq!(lock, first.path()),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        let again = try_lock(&db).expect("free again after drop");
        // The lock file stays; it is only ever locked, never removed.
        assert!(again.path().exists());
    }

    #[test]
    fn a_missing_directory_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = try_lock(&dir.path().join("nope/a.db")).expect_err("no dir");
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
}
