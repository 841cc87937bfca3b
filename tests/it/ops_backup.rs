//! `appliance backup` and `appliance restore` against a running server: a
//! consistent copy under write load, progress on a large file, restore
//! refused while a server has the database open and served afterwards, and a
//! second `serve` on the same file refused.

use std::collections::BTreeSet;
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
