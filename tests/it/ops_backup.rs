//! `appliance backup` and `appliance restore` against a running server: a
//! consistent copy under write load, progress on a large file, restore
//! refused while a server has the database open and served afterwards, and a
//! second `serve` on the same file refused. What a backup may write over
//! (never a device, FIFO or directory), the files' modes and owner, the schema
//! a restore source must have, and the copy of the database a restore replaces.

use std::collections::BTreeSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::harness::{Sandbox, TestServer};
use crate::logs_support::*;

const NO_CAP: &str = "[logs]\nmax_bytes_per_agent = 4000000000\n";

/// `PRAGMA integrity_check` of a file, read the way any SQLite user would.
fn integrity(path: &Path) -> String {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    conn.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
        .expect("integrity_check")
}

/// Starts a server on a copy of `db` (in a fresh sandbox) and reads agent
/// `agent`'s log outputs with `key`.
fn outputs_served_from(db: &Path, agent: &str, key: &str) -> Vec<String> {
    let sandbox = Sandbox::new();
    std::fs::copy(db, &sandbox.db).expect("copy the backup into a sandbox");
    let server = TestServer::start_in(sandbox, &[]);
    outputs(&logs(&server, agent, key, ""))
}

#[test]
fn a_backup_under_write_load_holds_every_batch_acknowledged_before_it_started() {
    let fx = Fixture::with_config(NO_CAP);
    let url = fx.server.url(PATCH_LOGS);
    let acked: Arc<Mutex<Vec<usize>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop, token) = (acked.clone(), stop.clone(), fx.token.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let body = batch_of(&[&format!("batch-{i}-a"), &format!("batch-{i}-b")]);
                let resp = try_send(&url, "PATCH", Some(&token), body.to_string().as_bytes())
                    .expect("PATCH /me/logs");
                assert_eq!(resp.status, 200, "{}", resp.body);
                acked.lock().expect("lock").push(i);
                i += 1;
            }
        })
    };
    // Let the writer get going: a few batches acknowledged before the backup.
    while acked.lock().expect("lock").len() < 20 {
        std::thread::yield_now();
    }
    let before: Vec<usize> = acked.lock().expect("lock").clone();
    let dest = fx.server.path().join("backup.db");
    let out = fx
        .server
        .cli(&["backup", "--to", dest.to_str().expect("utf-8")]);
    out.assert_success();
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("the writer thread");
    let total = acked.lock().expect("lock").len();
    assert!(
        out.stdout.contains("integrity ok") && out.stdout.contains("backup.db"),
        "{}",
        out.stdout
    );

    assert_eq!(integrity(&dest), "ok");
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = dest.as_os_str().to_owned();
        name.push(suffix);
        assert!(
            !Path::new(&name).exists(),
            "the backup is one file, no {suffix}"
        );
    }
    let stored: BTreeSet<String> = outputs_served_from(&dest, &fx.agent, &fx.key)
        .into_iter()
        .collect();
    for i in &before {
        for half in ["a", "b"] {
            assert!(
                stored.contains(&format!("batch-{i}-{half}")),
                "acknowledged batch {i} is missing from the backup ({} of {total} batches stored)",
                stored.len() / 2
            );
        }
    }
    // A batch is stored whole or not at all, never half.
    for line in &stored {
        let pair = if let Some(p) = line.strip_suffix("-a") {
            format!("{p}-b")
        } else {
            format!("{}-a", line.trim_end_matches("-b"))
        };
        assert!(stored.contains(&pair), "{line} without {pair}");
    }
}

#[test]
fn a_large_backup_reports_progress_and_an_existing_file_needs_force() {
    let fx = Fixture::with_config(NO_CAP);
    // About 20 MiB of log lines (1,000 bytes each): more than one copy step.
    let line = "x".repeat(1000);
    for _ in 0..7 {
        let lines: Vec<&str> = std::iter::repeat_n(line.as_str(), 3000).collect();
        store(&fx.server, &fx.token, &batch_of(&lines));
    }
    let dest = fx.server.path().join("big.db");
    let dest_s = dest.to_str().expect("utf-8");
    let out = fx.server.cli(&["backup", "--to", dest_s]);
    out.assert_success();
    let progress: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("copied "))
        .collect();
    assert!(progress.len() >= 2, "progress lines:\n{}", out.stderr);
    assert!(
        progress
            .iter()
            .all(|l| l.ends_with("%)") && l.contains(" pages (")),
        "{progress:?}"
    );
    assert!(
        progress.last().expect("a line").ends_with("(100%)"),
        "{progress:?}"
    );
    assert_eq!(integrity(&dest), "ok");

    let again = fx.server.cli(&["backup", "--to", dest_s]);
    let err = again.assert_one_line_error();
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    let forced = fx
        .server
        .cli(&["backup", "--to", dest_s, "--force", "--output", "json"]);
    let v = forced.json();
    assert_eq!(v["path"], json!(dest_s));
    assert!(v["bytes"].as_u64().expect("bytes") > 20_000_000, "{v}");
    // The schema version this binary writes: one per migration file.
    let migrations =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src/store/migrations"))
            .expect("migrations")
            .count();
    assert_eq!(v["schema_version"], json!(migrations));
}

#[test]
fn restore_is_refused_while_a_server_runs_and_brings_back_the_backup_after() {
    let fx = Fixture::new();
    fx.store(&["before the backup"]);
    let dest = fx.server.path().join("backup.db");
    let dest_s = dest.to_str().expect("utf-8").to_string();
    fx.server.cli(&["backup", "--to", &dest_s]).assert_success();
    fx.store(&["after the backup"]);

    // A second server on the same database refuses to start.
    let second = fx.server.cli_within(
        Duration::from_secs(20),
        &["serve", "--listen", "127.0.0.1:0"],
    );
    let err = second.assert_failure();
    assert!(
        err.contains("another appliance server is serving") && err.contains("stop it first"),
        "{err}"
    );

    // Restore refuses while the server has the database open, and changes nothing.
    let refused = fx.server.cli(&["restore", "--from", &dest_s]);
    let err = refused.assert_one_line_error();
    assert!(
        err.contains("a server has") && err.contains("systemctl stop appliance"),
        "{err}"
    );
    assert_eq!(
        outputs(&fx.logs("")),
        ["before the backup", "after the backup"]
    );

    let sandbox = fx.server.sandbox().clone();
    let (agent, key) = (fx.agent.clone(), fx.key.clone());
    let (status, _) = fx.server.stop();
    assert!(status.success());

    let restored = sandbox.cli(&["restore", "--from", &dest_s]);
    restored.assert_success();
    assert!(
        restored.stdout.contains("restored") && restored.stdout.contains("integrity ok"),
        "{}",
        restored.stdout
    );
    let server = TestServer::start_in(sandbox, &[]);
    assert_eq!(
        outputs(&logs(&server, &agent, &key, "")),
        ["before the backup"],
        "the restored database is served"
    );
    // And it takes writes again.
    let resp = server.get_agent(&agent, &key).ok_json();
    assert_eq!(resp["id"], json!(agent));
}

#[test]
fn restore_refuses_a_file_that_is_not_a_database() {
    let sandbox = Sandbox::new();
    let junk = sandbox.write("junk.db", &"not a database ".repeat(1000));
    let out = sandbox.cli(&["restore", "--from", junk.to_str().expect("utf-8")]);
    let err = out.assert_one_line_error();
    assert!(
        err.contains("restore from") && err.contains("junk.db"),
        "{err}"
    );
    assert!(!sandbox.db.exists(), "no database was created");
}

// ---------------------------------------------------------------------------
// File handling: what a backup or restore may write over, file modes, the
// schema of a restore source, the copy of the replaced database.
// ---------------------------------------------------------------------------

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A sandbox whose database (mode `db_mode`) holds user `alice`.
fn sandbox_with_alice(db_mode: u32) -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.cli(&["migrate"]).assert_success();
    chmod(&sandbox.db, db_mode);
    sandbox.create_user("alice", "member");
    sandbox
}

/// Usernames in the database at `db`, read with the CLI.
fn usernames(sandbox: &Sandbox, db: &Path) -> Vec<String> {
    let args = ["--db", s(db), "user", "list", "--output", "json"];
    sandbox
        .cli_raw(&args, &[])
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|u| u["username"].as_str().expect("username").to_string())
        .collect()
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

#[test]
fn a_backup_never_replaces_a_device_fifo_or_directory_and_follows_a_symlink_to_a_file() {
    let sandbox = sandbox_with_alice(0o600);
    let fifo = sandbox.path().join("fifo");
    mkfifo(&fifo);
    let to_fifo = sandbox.path().join("to-fifo");
    std::os::unix::fs::symlink(&fifo, &to_fifo).expect("symlink");
    for target in [&fifo, &to_fifo] {
        let out = sandbox.cli(&["backup", "--to", s(target), "--force"]);
        let err = out.assert_one_line_error();
        assert!(
            err.contains("not a regular file") && err.contains("name a file"),
            "{err}"
        );
        assert!(
            std::fs::symlink_metadata(&fifo)
                .expect("stat")
                .file_type()
                .is_fifo(),
            "the FIFO is still a FIFO"
        );
    }
    assert!(
        std::fs::symlink_metadata(&to_fifo)
            .expect("stat")
            .file_type()
            .is_symlink(),
        "the link is still a link"
    );

    // The same refusal for the real /dev/null, tried only now that the FIFO
    // (same code path) was refused, so a regression fails above instead of
    // replacing the device. Nothing is written to it either way.
    let out = sandbox.cli(&["backup", "--to", "/dev/null", "--force"]);
    let err = out.assert_one_line_error();
    assert!(
        err.contains("/dev/null") && err.contains("character device"),
        "{err}"
    );
    let devnull = std::fs::symlink_metadata("/dev/null").expect("stat /dev/null");
    assert!(
        devnull.file_type().is_char_device(),
        "/dev/null is a device"
    );

    let dir = sandbox.path().join("backups");
    std::fs::create_dir(&dir).expect("mkdir");
    let err = sandbox
        .cli(&["backup", "--to", s(&dir), "--force"])
        .assert_one_line_error()
        .to_string();
    assert!(
        err.contains("is a directory") && err.contains("name"),
        "{err}"
    );
    assert!(dir.is_dir());

    // A symlink to a regular file: the backup replaces the file it points at
    // (with --force), and the link stays a link.
    let real = sandbox.write("real.db", "old");
    let link = sandbox.path().join("latest.db");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    let err = sandbox
        .cli(&["backup", "--to", s(&link)])
        .assert_one_line_error()
        .to_string();
    assert!(err.contains("--force"), "{err}");
    let v = sandbox
        .cli(&["backup", "--to", s(&link), "--force", "--output", "json"])
        .json();
    assert_eq!(
        v["path"],
        json!(s(&real.canonicalize().expect("real path")))
    );
    assert!(
        std::fs::symlink_metadata(&link)
            .expect("stat")
            .file_type()
            .is_symlink(),
        "the link is still a link"
    );
    assert_eq!(integrity(&real), "ok");
    assert_eq!(usernames(&sandbox, &real), ["alice"]);
}

#[test]
fn a_backup_has_the_mode_of_the_database() {
    for db_mode in [0o600, 0o640] {
        let sandbox = sandbox_with_alice(db_mode);
        let dest = sandbox.path().join("backup.db");
        sandbox.cli(&["backup", "--to", s(&dest)]).assert_success();
        assert_eq!(mode(&dest), db_mode, "a new backup");
        // Replacing a wider file narrows it: the file is new, not rewritten.
        chmod(&dest, 0o666);
        sandbox
            .cli(&["backup", "--to", s(&dest), "--force"])
            .assert_success();
        assert_eq!(mode(&dest), db_mode, "a replaced backup");
    }
}

#[test]
fn restore_keeps_the_mode_and_a_copy_of_the_replaced_database() {
    let sandbox = sandbox_with_alice(0o600);
    let backup = sandbox.path().join("backup.db");
    sandbox
        .cli(&["backup", "--to", s(&backup)])
        .assert_success();
    chmod(&backup, 0o644);
    sandbox.create_user("bob", "member");

    let out = sandbox.cli(&["restore", "--from", s(&backup)]);
    out.assert_success();
    let kept: Vec<std::path::PathBuf> = std::fs::read_dir(sandbox.path())
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                n.to_string_lossy()
                    .starts_with("appliance.db.before-restore-")
            })
        })
        .collect();
    assert_eq!(kept.len(), 1, "one safety copy: {kept:?}");
    let kept = &kept[0];
    assert!(
        out.stdout.contains(s(kept)),
        "the output says where the replaced database is:\n{}",
        out.stdout
    );
    assert_eq!(mode(&sandbox.db), 0o600, "the restored database");
    assert_eq!(mode(kept), 0o600, "the safety copy");
    assert_eq!(usernames(&sandbox, &sandbox.db), ["alice"]);
    assert_eq!(usernames(&sandbox, kept), ["alice", "bob"]);

    // A second restore keeps the first safety copy and names a new one.
    let v = sandbox
        .cli(&["restore", "--from", s(&backup), "--output", "json"])
        .json();
    let second = v["safety_copy"].as_str().expect("safety_copy");
    assert_ne!(second, s(kept));
    assert!(Path::new(second).is_file() && kept.is_file());
}

#[test]
fn restore_keeps_the_owner_of_the_replaced_database() {
    let sandbox = sandbox_with_alice(0o600);
    let backup = sandbox.path().join("backup.db");
    sandbox
        .cli(&["backup", "--to", s(&backup)])
        .assert_success();
    let me = std::fs::metadata(&backup).expect("stat").uid();
    if me != 0 {
        // Only root can hand a file to another user.
        return;
    }
    let chown = std::process::Command::new("chown")
        .arg("4242:4343")
        .arg(&sandbox.db)
        .status()
        .expect("chown");
    assert!(chown.success());
    sandbox
        .cli(&["restore", "--from", s(&backup)])
        .assert_success();
    let meta = std::fs::metadata(&sandbox.db).expect("stat");
    assert_eq!((meta.uid(), meta.gid()), (4242, 4343));
    assert_eq!(mode(&sandbox.db), 0o600);
}

#[test]
fn restore_refuses_a_database_without_the_appliance_schema() {
    let sandbox = sandbox_with_alice(0o600);
    let migrations =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src/store/migrations"))
            .expect("migrations")
            .count();
    // The right user_version, no tables.
    let foreign = sandbox.path().join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .and_then(|c| c.execute_batch(&format!("PRAGMA user_version = {migrations}")))
        .expect("foreign db");
    // A real backup with a column dropped.
    let altered = sandbox.path().join("altered.db");
    sandbox
        .cli(&["backup", "--to", s(&altered)])
        .assert_success();
    rusqlite::Connection::open(&altered)
        .and_then(|c| c.execute_batch("ALTER TABLE api_keys DROP COLUMN revoked_at"))
        .expect("drop a column");

    for (file, says) in [
        (&foreign, "missing table api_keys"),
        (&altered, "table api_keys: missing column revoked_at"),
    ] {
        let out = sandbox.cli(&["restore", "--from", s(file)]);
        let err = out.assert_one_line_error();
        assert!(
            err.contains("not an appliance database") && err.contains(says),
            "{err}"
        );
    }
    assert_eq!(usernames(&sandbox, &sandbox.db), ["alice"], "unchanged");
    let names: Vec<String> = std::fs::read_dir(sandbox.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.contains("before-restore") || n.contains(".tmp-")),
        "{names:?}"
    );
}
