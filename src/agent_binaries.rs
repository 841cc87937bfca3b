//! The directory of Coder's agent binaries (`agent_binaries.dir`): which
//! names are served, opening one without leaving the directory, their
//! digests, and the listing `check-config` prints.
//!
//! `GET /bin/{name}` (in `routes/bin.rs`) serves what [`open_served`] opens,
//! as coderd serves its `site/bin` files: a name is one plain file name (no
//! slash or backslash, no leading dot, no `..`, no control character), and
//! the file must be a regular file whose real path (every symlink resolved)
//! lies inside the directory's real path, so a symlink pointing elsewhere
//! serves nothing. The directory is read at request time: files dropped
//! there are served at once, without a restart.
//!
//! The ETag is the file's SHA-1, as coderd's (Coder's clients compare it
//! with their copy's), computed once per file version: [`EtagCache`] keys it
//! by path, device, inode, size and modification time. `check-config` shows
//! SHA-256 digests, the ones to compare with a release's checksums.
//!
//! Blocking file I/O: callers on the runtime use the blocking pool. Knows no
//! HTTP.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The longest name served (a file name on Linux).
const MAX_NAME_BYTES: usize = 255;

/// How much is read at a time when hashing.
const HASH_CHUNK: usize = 1 << 20;

/// File versions whose digest is remembered; past this the cache starts over.
const MAX_CACHED: usize = 256;

/// Why `name` is not a name that is served, or `Ok`.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("the name is empty")
    } else if name.len() > MAX_NAME_BYTES {
        Err("the name is longer than 255 bytes")
    } else if name.contains(['/', '\\']) {
        Err("a name is one file name, without slashes")
    } else if name.starts_with('.') {
        Err("names starting with a dot are not served")
    } else if name.contains("..") {
        Err("a name may not contain \"..\"")
    } else if name.chars().any(char::is_control) {
        Err("a name may not contain control characters")
    } else {
        Ok(())
    }
}

/// A file of the directory, open for reading.
#[derive(Debug)]
pub struct Opened {
    pub file: Arc<File>,
    pub size: u64,
    pub modified: Option<SystemTime>,
    key: FileKey,
}

/// Why a file is not served.
#[derive(Debug)]
pub enum OpenError {
    /// Not a name that is served ([`check_name`]).
    InvalidName(&'static str),
    /// No such file, or not a regular file.
    NotFound,
    /// A symlink (or a path through one) that leads out of the directory.
    Outside,
    /// The directory itself cannot be read (missing, not a directory, no permission).
    Dir(io::Error),
    /// Reading the file failed.
    Io(io::Error),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::InvalidName(why) => f.write_str(why),
            OpenError::NotFound => f.write_str("not a regular file"),
            OpenError::Outside => f.write_str("a symlink that leads out of the directory"),
            OpenError::Dir(e) => write!(f, "the directory cannot be read: {e}"),
            OpenError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Opens `name` as `GET /bin/{name}` serves it: the file of that name, or,
/// if there is none and the name has underscores, the one with hyphens
/// instead (coderd turns every `_` into `-`, so `coder_linux_amd64` works).
pub fn open_served(dir: &Path, name: &str) -> Result<Opened, OpenError> {
    match open(dir, name) {
        Err(OpenError::NotFound) if name.contains('_') => open(dir, &name.replace('_', "-")),
        other => other,
    }
}

/// Opens the file `name` of `dir`: a regular file whose real path is inside
/// the directory's real path.
pub fn open(dir: &Path, name: &str) -> Result<Opened, OpenError> {
    check_name(name).map_err(OpenError::InvalidName)?;
    let real_dir = std::fs::canonicalize(dir).map_err(OpenError::Dir)?;
    let real = match std::fs::canonicalize(real_dir.join(name)) {
        Ok(p) => p,
        Err(e) if gone(&e) => return Err(OpenError::NotFound),
        Err(e) => return Err(OpenError::Io(e)),
    };
    if !real.starts_with(&real_dir) {
        return Err(OpenError::Outside);
    }
    // Looked at before opening: opening a FIFO would wait for a writer.
    match std::fs::metadata(&real) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(OpenError::NotFound),
        Err(e) if gone(&e) => return Err(OpenError::NotFound),
        Err(e) => return Err(OpenError::Io(e)),
    }
    let file = match File::open(&real) {
        Ok(f) => f,
        Err(e) if gone(&e) => return Err(OpenError::NotFound),
        Err(e) => return Err(OpenError::Io(e)),
    };
    // What was opened, not what the path named a moment earlier.
    let meta = file.metadata().map_err(OpenError::Io)?;
    if !meta.is_file() {
        return Err(OpenError::NotFound);
    }
    let key = FileKey {
        path: real,
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.len(),
        mtime: (meta.mtime(), meta.mtime_nsec()),
    };
    Ok(Opened {
        file: Arc::new(file),
        size: meta.len(),
        modified: meta.modified().ok(),
        key,
    })
}

/// Errors that mean "no such file" for a name.
fn gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    ) || e.raw_os_error() == Some(40) // ELOOP: a symlink loop
}

/// One version of one file: a digest is valid while all of these hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FileKey {
    path: PathBuf,
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
}

/// SHA-1 digests (hex) of the files served, one per file version, each
/// computed once even when many requests ask for it at the same time.
#[derive(Debug, Default)]
pub struct EtagCache {
    entries: Mutex<HashMap<FileKey, Arc<Mutex<Option<String>>>>>,
}

impl EtagCache {
    /// The SHA-1 of `opened`, hex; computed (blocking) on its first use.
    pub fn sha1_hex(&self, opened: &Opened) -> io::Result<String> {
        let slot = {
            let mut entries = self
                .entries
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(slot) = entries.get(&opened.key) {
                slot.clone()
            } else {
                // Older versions of the same file are of no further use.
                entries.retain(|k, _| k.path != opened.key.path);
                if entries.len() >= MAX_CACHED {
                    entries.clear();
                }
                let slot = Arc::new(Mutex::new(None));
                entries.insert(opened.key.clone(), slot.clone());
                slot
            }
        };
        // Whoever holds the slot computes; the others wait for its result.
        let mut digest = slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(d) = digest.as_ref() {
            return Ok(d.clone());
        }
        let hex = sha1_file(&opened.file, opened.size)?;
        *digest = Some(hex.clone());
        Ok(hex)
    }
}

/// Feeds the first `size` bytes of `file` to `update`, a chunk at a time.
fn read_all(file: &File, size: u64, mut update: impl FnMut(&[u8])) -> io::Result<()> {
    let mut buf = vec![0u8; HASH_CHUNK];
    let mut offset = 0u64;
    while offset < size {
        let want = usize::try_from(size - offset).map_or(HASH_CHUNK, |n| n.min(HASH_CHUNK));
        let n = file.read_at(&mut buf[..want], offset)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was read",
            ));
        }
        update(&buf[..n]);
        offset += n as u64;
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha1_file(file: &File, size: u64) -> io::Result<String> {
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    read_all(file, size, |b| h.update(b))?;
    Ok(hex(&h.finalize()))
}

fn sha256_file(file: &File, size: u64) -> io::Result<String> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    read_all(file, size, |b| h.update(b))?;
    Ok(hex(&h.finalize()))
}

/// A file that is served, as `check-config` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// A file of the directory that is not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub name: String,
    /// Why it is not served.
    pub reason: String,
    /// Most likely a mistake (a symlink that leads out of the directory, an
    /// unreadable file), not a file meant to stay unserved.
    pub mistake: bool,
}

/// The directory as `check-config` shows it: what is served, and what is
/// not and why (hidden files are left out of both).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Listing {
    pub files: Vec<Listed>,
    pub skipped: Vec<Skipped>,
}

/// Lists `dir` with each served file's size and SHA-256 (reads every file).
pub fn list(dir: &Path) -> io::Result<Listing> {
    let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    let mut out = Listing::default();
    for name in names {
        let Some(name) = name.to_str().map(str::to_owned) else {
            out.skipped.push(Skipped {
                name: name.to_string_lossy().into_owned(),
                reason: "the name is not UTF-8".into(),
                mistake: true,
            });
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let listed = open(dir, &name).and_then(|f| {
            sha256_file(&f.file, f.size)
                .map(|sha256| Listed {
                    name: name.clone(),
                    size: f.size,
                    sha256,
                })
                .map_err(OpenError::Io)
        });
        match listed {
            Ok(l) => out.files.push(l),
            Err(e) => out.skipped.push(Skipped {
                name,
                reason: e.to_string(),
                mistake: !matches!(e, OpenError::NotFound | OpenError::InvalidName(_)),
            }),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn names() {
        for ok in ["coder-linux-amd64", "coder-windows-amd64.exe", "a_b", "x.y"] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "", ".", "..", ".hidden", "a/b", "../x", "a\\b", "a..b", "a\0b", "a\nb",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name(&"a".repeat(256)).is_err());
    }

    #[test]
    fn opens_regular_files_inside_only() {
        let d = dir();
        let outside = dir();
        std::fs::write(d.path().join("coder-linux-amd64"), b"binary").unwrap();
        std::fs::write(outside.path().join("secret"), b"secret").unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub").join("real"), b"inner").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), d.path().join("escape")).unwrap();
        std::os::unix::fs::symlink("coder-linux-amd64", d.path().join("alias")).unwrap();
        std::os::unix::fs::symlink("sub/real", d.path().join("deeper")).unwrap();
        std::os::unix::fs::symlink("loop", d.path().join("loop")).unwrap();

        let f = open(d.path(), "coder-linux-amd64").unwrap();
        assert_eq!(f.size, 6);
        assert_eq!(open(d.path(), "alias").unwrap().size, 6);
        assert_eq!(open(d.path(), "deeper").unwrap().size, 5);
        assert!(matches!(open(d.path(), "escape"), Err(OpenError::Outside)));
        assert!(matches!(open(d.path(), "sub"), Err(OpenError::NotFound)));
        assert!(matches!(
            open(d.path(), "missing"),
            Err(OpenError::NotFound)
        ));
        assert!(matches!(open(d.path(), "loop"), Err(OpenError::NotFound)));
        assert!(matches!(
            open(d.path(), "../x"),
            Err(OpenError::InvalidName(_))
        ));
        assert!(matches!(
            open(&d.path().join("nope"), "x"),
            Err(OpenError::Dir(_))
        ));
        // coderd's underscore spelling.
        assert_eq!(open_served(d.path(), "coder_linux_amd64").unwrap().size, 6);
        assert!(matches!(
            open_served(d.path(), "coder_linux_arm64"),
            Err(OpenError::NotFound)
        ));
    }

    #[test]
    fn the_etag_is_the_sha1_and_follows_the_file() {
        let d = dir();
        let path = d.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        let cache = EtagCache::default();
        let first = open(d.path(), "f").unwrap();
        assert_eq!(
            cache.sha1_hex(&first).unwrap(),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            cache.sha1_hex(&first).unwrap(),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        // Replaced (a new inode, another size): a new digest, the old one dropped.
        std::fs::write(d.path().join("f.new"), b"abcd").unwrap();
        std::fs::rename(d.path().join("f.new"), &path).unwrap();
        let second = open(d.path(), "f").unwrap();
        assert_eq!(
            cache.sha1_hex(&second).unwrap(),
            "81fe8bfe87576c3ecb22426f8e57847382917acf"
        );
        assert_eq!(cache.entries.lock().unwrap().len(), 1);
    }

    #[test]
    fn listing_shows_sizes_and_sha256_and_what_is_skipped() {
        let d = dir();
        let outside = dir();
        std::fs::write(d.path().join("coder-linux-amd64"), b"abc").unwrap();
        std::fs::write(d.path().join(".gitkeep"), b"").unwrap();
        std::fs::create_dir(d.path().join("old")).unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), d.path().join("escape")).unwrap();
        let l = list(d.path()).unwrap();
        assert_eq!(
            l.files,
            vec![Listed {
                name: "coder-linux-amd64".into(),
                size: 3,
                sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into()
            }]
        );
        assert_eq!(
            l.skipped,
            vec![
                Skipped {
                    name: "escape".into(),
                    reason: "a symlink that leads out of the directory".into(),
                    mistake: true,
                },
                Skipped {
                    name: "old".into(),
                    reason: "not a regular file".into(),
                    mistake: false,
                },
            ]
        );
        assert!(list(&d.path().join("missing")).is_err());
    }
}
