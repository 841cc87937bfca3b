//! Store tests on a real SQLite file in a temp dir.

use time::OffsetDateTime;
use time::macros::datetime;

use super::*;
use crate::manifest;

const T0: OffsetDateTime = datetime!(2026-03-01 12:00:00 UTC);

fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("t.db"), &Options::default()).expect("open");
    store.migrate().expect("migrate");
    (dir, store)
}

fn manifest(text: &str) -> manifest::Workspace {
    manifest::parse("test.toml", text).expect("valid manifest")
}

const TWO_AGENTS: &str = r#"
name = "dev"
owner = "alice"
[[resources]]
name = "vm"
type = "aws_instance"
instance_id = "i-1"
  [[resources.agents]]
  name = "main"
  auth = "aws-instance-identity"
    [[resources.agents.apps]]
    slug = "web"
    url = "http://localhost:8080"
    [[resources.agents.scripts]]
    display_name = "Setup"
    script = "echo hi"
    [[resources.agents.children]]
    name = "sub"
  [[resources.agents]]
  name = "dev"
  auth = "token"
"#;

#[test]
fn schema_snapshot_matches_schema_sql() {
    let (_dir, store) = temp_store();
    let dumped = store.read(migrate::dump_schema).expect("dump");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.sql");
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &dumped).expect("write schema.sql");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == dumped,
        "schema.sql does not match the migrations; rerun with UPDATE_SCHEMA=1 cargo test schema_snapshot\n--- migrations give:\n{dumped}"
    );
}

#[test]
fn migrating_twice_is_a_no_op_and_newer_files_are_refused() {
    let (_dir, store) = temp_store();
    assert_eq!(
        store.migrate().expect("again"),
        (migrate::latest(), migrate::latest())
    );
    store
        .write(|tx| {
            tx.execute_batch(&format!("PRAGMA user_version = {}", migrate::latest() + 1))?;
            Ok(())
        })
        .expect("bump");
    let err = store.migrate().expect_err("newer schema");
    assert!(matches!(err, StoreError::TooNew { .. }), "{err}");
    assert!(err.to_string().contains("upgrade appliance"), "{err}");
}

#[test]
fn wal_mode_and_foreign_keys_are_on() {
    let (_dir, store) = temp_store();
    let (mode, fk): (String, i64) = store
        .read(|c| {
            Ok((
                c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?,
                c.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?,
            ))
        })
        .expect("pragmas");
    assert_eq!(mode, "wal");
    assert_eq!(fk, 1);
}

#[test]
fn opening_in_a_missing_directory_says_so() {
    let err = Store::open(
        std::path::Path::new("/nonexistent-dir-xyz/a.db"),
        &Options::default(),
    )
    .err()
    .expect("must fail");
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[test]
fn apply_records_builds_and_keeps_only_the_latest_builds_agents_live() {
    let (_dir, store) = temp_store();
    let alice = store
        .write(|tx| users::insert_user(tx, "alice", "", users::Role::Member, T0))
        .expect("user");
    let ws = manifest(TWO_AGENTS);
    let first = store
        .write(|tx| workspaces::apply(tx, &ws, alice.id, alice.id, T0))
        .expect("apply 1");
    assert_eq!(first.build.number, 1);
    assert_eq!(first.agents.len(), 3);
    let sub = first.agents.iter().find(|a| a.name == "sub").expect("sub");
    let main = first
        .agents
        .iter()
        .find(|a| a.name == "main")
        .expect("main");
    assert_eq!(sub.parent_id, Some(main.id));
    let sub_row = store
        .read(|c| agents::live_agent(c, sub.id))
        .expect("read")
        .expect("live");
    assert_eq!(
        sub_row.auth_instance_id.as_deref(),
        Some("i-1"),
        "sub-agents run on their parent's instance"
    );

    let row = store
        .read(|c| agents::live_agent(c, main.id))
        .expect("read")
        .expect("live");
    assert_eq!(row.auth_instance_id.as_deref(), Some("i-1"));
    assert_eq!(row.owner_id, alice.id);
    assert_eq!(row.workspace_name, "dev");
    let dev = first.agents.iter().find(|a| a.name == "dev").expect("dev");
    let dev_row = store
        .read(|c| agents::live_agent(c, dev.id))
        .expect("read")
        .expect("live");
    assert_eq!(
        dev_row.auth_instance_id, None,
        "token agents carry no instance id"
    );
    let scripts = store
        .read(|c| agents::scripts(c, main.id))
        .expect("scripts");
    let sources = store
        .read(|c| agents::log_sources(c, main.id))
        .expect("sources");
    assert_eq!(scripts.len(), 1);
    assert_eq!(sources.len(), 1);
    assert_eq!(
        scripts[0].log_source_id, sources[0].id,
        "each script logs under its own source"
    );
    assert_eq!(sources[0].display_name, "Setup");

    let second = store
        .write(|tx| workspaces::apply(tx, &ws, alice.id, alice.id, T0 + time::Duration::seconds(1)))
        .expect("apply 2");
    assert_eq!(second.build.number, 2);
    assert_eq!(
        second.workspace.id, first.workspace.id,
        "same workspace, new build"
    );
    for old in &first.agents {
        assert!(
            store
                .read(|c| agents::live_agent(c, old.id))
                .expect("read")
                .is_none(),
            "{} soft-deleted",
            old.name
        );
    }
    for new in &second.agents {
        assert!(
            store
                .read(|c| agents::live_agent(c, new.id))
                .expect("read")
                .is_some()
        );
    }

    let stop = store
        .write(|tx| workspaces::stop(tx, first.workspace.id, alice.id, T0))
        .expect("stop");
    assert_eq!((stop.number, stop.transition.as_str()), (3, "stop"));
    for new in &second.agents {
        assert!(
            store
                .read(|c| agents::live_agent(c, new.id))
                .expect("read")
                .is_none()
        );
    }
    let list = store.read(workspaces::list).expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].live_agents, 0);

    let third = store
        .write(|tx| workspaces::apply(tx, &ws, alice.id, alice.id, T0))
        .expect("apply 3");
    store
        .write(|tx| workspaces::delete(tx, third.workspace.id, alice.id, T0))
        .expect("delete");
    for a in &third.agents {
        assert!(
            store
                .read(|c| agents::live_agent(c, a.id))
                .expect("read")
                .is_none()
        );
    }
    assert!(
        store
            .read(|c| workspaces::live_workspace(c, alice.id, "dev"))
            .expect("read")
            .is_none()
    );
    let again = store
        .write(|tx| workspaces::apply(tx, &ws, alice.id, alice.id, T0))
        .expect("reuse name");
    assert_ne!(
        again.workspace.id, first.workspace.id,
        "a deleted name can be reused by a new workspace"
    );
    assert_eq!(again.build.number, 1);
}

#[test]
fn other_workspaces_are_untouched_by_a_build() {
    let (_dir, store) = temp_store();
    let alice = store
        .write(|tx| users::insert_user(tx, "alice", "", users::Role::Member, T0))
        .expect("user");
    let one = store
        .write(|tx| workspaces::apply(tx, &manifest(TWO_AGENTS), alice.id, alice.id, T0))
        .expect("one");
    let other = TWO_AGENTS.replace("name = \"dev\"\nowner", "name = \"other\"\nowner");
    let two = store
        .write(|tx| workspaces::apply(tx, &manifest(&other), alice.id, alice.id, T0))
        .expect("two");
    store
        .write(|tx| workspaces::apply(tx, &manifest(&other), alice.id, alice.id, T0))
        .expect("rebuild two");
    for a in &one.agents {
        assert!(
            store
                .read(|c| agents::live_agent(c, a.id))
                .expect("read")
                .is_some()
        );
    }
    for a in &two.agents {
        assert!(
            store
                .read(|c| agents::live_agent(c, a.id))
                .expect("read")
                .is_none()
        );
    }
}

#[test]
fn agent_tokens_are_bounded_and_die_with_the_agent() {
    let (_dir, store) = temp_store();
    let alice = store
        .write(|tx| users::insert_user(tx, "alice", "", users::Role::Member, T0))
        .expect("user");
    let ws = manifest(TWO_AGENTS);
    let applied = store
        .write(|tx| workspaces::apply(tx, &ws, alice.id, alice.id, T0))
        .expect("apply");
    let agent = applied.agents[0].id;
    let mut hashes = Vec::new();
    for i in 0..5u8 {
        let hash = crate::auth::sha256(&[i]);
        store
            .write(|tx| {
                agents::insert_agent_token(
                    tx,
                    agent,
                    &hash,
                    T0 + time::Duration::seconds(i64::from(i)),
                    3,
                )
            })
            .expect("token");
        hashes.push(hash);
    }
    assert_eq!(
        store
            .read(|c| agents::token_count(c, agent))
            .expect("count"),
        3
    );
    assert!(
        store
            .read(|c| agents::agent_by_token_hash(c, &hashes[0]))
            .expect("read")
            .is_none(),
        "oldest revoked"
    );
    let found = store
        .read(|c| agents::agent_by_token_hash(c, &hashes[4]))
        .expect("read")
        .expect("newest works");
    assert_eq!(found.id, agent);
    store
        .write(|tx| workspaces::apply(tx, &ws, alice.id, alice.id, T0))
        .expect("rebuild");
    assert!(
        store
            .read(|c| agents::agent_by_token_hash(c, &hashes[4]))
            .expect("read")
            .is_none(),
        "a soft-deleted agent's tokens no longer authenticate"
    );
}

#[test]
fn users_and_api_keys() {
    let (_dir, store) = temp_store();
    let u = store
        .write(|tx| users::insert_user(tx, "bob", "b@example.com", users::Role::Admin, T0))
        .expect("user");
    let dup = store
        .write(|tx| users::insert_user(tx, "bob", "", users::Role::Member, T0))
        .expect_err("duplicate");
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup}");
    store
        .write(|tx| {
            users::insert_api_key(
                tx,
                "abcdefghij",
                &[7; 32],
                u.id,
                "ci",
                T0,
                T0 + time::Duration::days(1),
            )
        })
        .expect("key");
    let (key, user) = store
        .read(|c| users::api_key_with_user(c, "abcdefghij"))
        .expect("read")
        .expect("found");
    assert_eq!(user, u);
    assert_eq!(key.hashed_secret, vec![7; 32]);
    assert_eq!(key.expires_at, T0 + time::Duration::days(1));
    assert!(
        store
            .read(|c| users::api_key_with_user(c, "zzzzzzzzzz"))
            .expect("read")
            .is_none()
    );
    assert_eq!(store.read(users::count_users).expect("count"), 1);
}

#[test]
fn app_statuses_come_back_newest_first() {
    let (_dir, store) = temp_store();
    let alice = store
        .write(|tx| users::insert_user(tx, "alice", "", users::Role::Member, T0))
        .expect("user");
    let applied = store
        .write(|tx| workspaces::apply(tx, &manifest(TWO_AGENTS), alice.id, alice.id, T0))
        .expect("apply");
    let main = applied
        .agents
        .iter()
        .find(|a| a.name == "main")
        .expect("main")
        .id;
    let agent = store
        .read(|c| agents::live_agent(c, main))
        .expect("read")
        .expect("live");
    let app = store
        .read(|c| agents::apps(c, main))
        .expect("apps")
        .remove(0);
    for (i, state) in ["working", "idle", "complete"].iter().enumerate() {
        let at = T0 + time::Duration::seconds(i as i64);
        store
            .write(|tx| agents::insert_app_status(tx, &agent, app.id, state, "m", None, at, 10))
            .expect("status");
    }
    let statuses = store
        .read(|c| agents::app_statuses(c, main))
        .expect("statuses");
    let states: Vec<&str> = statuses.iter().map(|s| s.state.as_str()).collect();
    assert_eq!(states, ["complete", "idle", "working"]);
    let bad =
        store.write(|tx| agents::insert_app_status(tx, &agent, app.id, "bogus", "m", None, T0, 10));
    assert!(bad.is_err(), "the CHECK constraint refuses unknown states");

    // Beyond `keep`, the oldest go, whichever app they belong to.
    let apps = store.read(|c| agents::apps(c, main)).expect("apps");
    for i in 3..8 {
        let at = T0 + time::Duration::seconds(i);
        let app = &apps[i as usize % apps.len()];
        let message = format!("m{i}");
        store
            .write(|tx| {
                agents::insert_app_status(tx, &agent, app.id, "idle", &message, None, at, 4)
            })
            .expect("status");
    }
    let statuses = store
        .read(|c| agents::app_statuses(c, main))
        .expect("statuses");
    let messages: Vec<&str> = statuses.iter().map(|s| s.message.as_str()).collect();
    assert_eq!(messages, ["m7", "m6", "m5", "m4"]);
}

#[test]
fn log_sources_an_agent_adds_are_bounded_and_idempotent() {
    let (_dir, store) = temp_store();
    let alice = store
        .write(|tx| users::insert_user(tx, "alice", "", users::Role::Member, T0))
        .expect("user");
    let applied = store
        .write(|tx| workspaces::apply(tx, &manifest(TWO_AGENTS), alice.id, alice.id, T0))
        .expect("apply");
    let agent = applied.agents[0].id;
    let before = store
        .read(|c| agents::log_sources(c, agent))
        .expect("sources")
        .len();
    let max = before + 2;
    let add = |id: Uuid, name: &str| {
        store
            .write(|tx| agents::add_log_source(tx, agent, id, name, "", T0, max))
            .expect("add")
    };
    let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(add(a, "a"), agents::LogSourceAdded::Inserted);
    assert_eq!(add(a, "again"), agents::LogSourceAdded::Existed);
    assert_eq!(add(b, "b"), agents::LogSourceAdded::Inserted);
    assert_eq!(add(c, "c"), agents::LogSourceAdded::Full);
    assert_eq!(
        add(b, "b"),
        agents::LogSourceAdded::Existed,
        "known ids stay fine"
    );
    let sources = store
        .read(|c| agents::log_sources(c, agent))
        .expect("sources");
    assert_eq!(sources.len(), max);
    assert!(sources.iter().any(|s| s.id == a && s.display_name == "a"));
}

#[test]
fn timestamps_round_trip_at_microsecond_precision() {
    let t = datetime!(2026-03-01 12:00:00.123456 UTC);
    assert_eq!(from_micros(to_micros(t)), t);
}

#[test]
fn read_inline_waits_for_a_connection_without_holding_its_worker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = Options {
        pool_size: 1,
        ..Options::default()
    };
    let store = Store::open(&dir.path().join("t.db"), &options).expect("open");
    store.migrate().expect("migrate");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    // The pool's only connection is taken: the reader must wait for it.
    let held = store.pool.get().expect("the one connection");
    runtime.block_on(async move {
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let s = store.clone();
        let reader = tokio::spawn(async move {
            let _ = started_tx.send(());
            s.read_inline(users::count_users)
        });
        started_rx.await.expect("reader started");
        // The runtime's one worker is now inside read_inline. Another task
        // must still run: the wait happens under block_in_place.
        let other = tokio::spawn(async { "ran" });
        let ran = tokio::time::timeout(std::time::Duration::from_secs(10), other)
            .await
            .expect("a task ran while read_inline waited for a connection")
            .expect("task");
        assert_eq!(ran, "ran");
        drop(held);
        let n = reader.await.expect("reader task").expect("read");
        assert_eq!(n, 0);
    });
}

#[test]
fn a_server_key_is_written_once_and_read_back() {
    let (_dir, store) = temp_store();
    let now = super::now();
    assert_eq!(store.read(|c| server_keys::get(c, "derp")).unwrap(), None);
    let first = store
        .write(|tx| server_keys::get_or_insert(tx, "derp", &[1; 32], now))
        .unwrap();
    assert_eq!(first, vec![1; 32]);
    // A second start offers another key and gets the first one back.
    let again = store
        .write(|tx| server_keys::get_or_insert(tx, "derp", &[2; 32], now))
        .unwrap();
    assert_eq!(again, vec![1; 32]);
    let other = store
        .write(|tx| server_keys::get_or_insert(tx, "other", &[3; 16], now))
        .unwrap();
    assert_eq!(other, vec![3; 16]);
}

#[test]
fn the_dashboard_overview_lists_live_workspaces_with_their_live_agents() {
    let (_dir, store) = temp_store();
    let (alice, bob) = store
        .write(|tx| {
            Ok((
                users::insert_user(tx, "alice", "", users::Role::Member, T0)?,
                users::insert_user(tx, "bob", "", users::Role::Member, T0)?,
            ))
        })
        .expect("users");
    let ws = manifest(TWO_AGENTS);
    // Two builds of alice's: only the second's agents are live.
    store
        .write(|tx| workspaces::apply(tx, &ws, alice.id, alice.id, T0))
        .expect("apply 1");
    let second = store
        .write(|tx| workspaces::apply(tx, &ws, alice.id, alice.id, T0))
        .expect("apply 2");
    let bobs = store
        .write(|tx| workspaces::apply(tx, &ws, bob.id, bob.id, T0))
        .expect("apply bob");
    store
        .write(|tx| workspaces::stop(tx, bobs.workspace.id, bob.id, T0))
        .expect("stop bob");

    let all = store
        .read(|c| workspaces::overview(c, workspaces::Which::All))
        .expect("overview");
    let names: Vec<_> = all
        .iter()
        .map(|o| (o.workspace.owner_name.as_str(), o.agents.len()))
        .collect();
    assert_eq!(names, [("alice", 3), ("bob", 0)]);
    let mut live: Vec<_> = all[0].agents.iter().map(|a| a.id).collect();
    let mut want: Vec<_> = second.agents.iter().map(|a| a.id).collect();
    live.sort();
    want.sort();
    assert_eq!(live, want, "the latest build's agents only");
    assert_eq!(all[0].latest_build.as_ref().map(|b| b.number), Some(2));
    assert_eq!(
        all[1].latest_build.as_ref().map(|b| b.transition.as_str()),
        Some("stop")
    );

    let bobs_only = store
        .read(|c| workspaces::overview(c, workspaces::Which::OwnedBy(bob.id)))
        .expect("overview");
    assert_eq!(bobs_only.len(), 1);
    assert_eq!(bobs_only[0].workspace.owner_id, bob.id);
    let one = store
        .read(|c| workspaces::overview(c, workspaces::Which::One(second.workspace.id)))
        .expect("overview");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].agents.len(), 3);

    let builds = store
        .read(|c| workspaces::builds(c, second.workspace.id, 10))
        .expect("builds");
    assert_eq!(builds.iter().map(|b| b.number).collect::<Vec<_>>(), [2, 1]);
    let resources = store
        .read(|c| workspaces::resources(c, second.build.id))
        .expect("resources");
    assert_eq!(resources.len(), 1);
    assert_eq!(resources[0].name, "vm");
    assert_eq!(resources[0].instance_id.as_deref(), Some("i-1"));
}

#[test]
fn a_login_link_works_once_until_it_expires() {
    let (_dir, store) = temp_store();
    let alice = store
        .write(|tx| users::insert_user(tx, "alice", "", users::Role::Member, T0))
        .expect("user");
    let later = T0 + time::Duration::minutes(10);
    store
        .write(|tx| users::insert_login_link(tx, &[1; 32], alice.id, T0, later))
        .expect("link");
    store
        .write(|tx| users::insert_login_link(tx, &[2; 32], alice.id, T0, later))
        .expect("link");
    let seen = store
        .read(|c| users::login_link_user(c, &[1; 32], T0))
        .expect("read");
    assert_eq!(seen.as_ref().map(|u| u.id), Some(alice.id));
    let taken = store
        .write(|tx| users::take_login_link(tx, &[1; 32], T0))
        .expect("take");
    assert_eq!(taken.map(|u| u.id), Some(alice.id));
    let again = store
        .write(|tx| users::take_login_link(tx, &[1; 32], T0))
        .expect("take");
    assert!(again.is_none(), "used up");
    // At its expiry it is refused, and the next link made purges it.
    assert!(
        store
            .read(|c| users::login_link_user(c, &[2; 32], later))
            .expect("read")
            .is_none()
    );
    store
        .write(|tx| {
            users::insert_login_link(
                tx,
                &[3; 32],
                alice.id,
                later,
                later + time::Duration::minutes(1),
            )
        })
        .expect("link");
    assert!(
        store
            .write(|tx| users::take_login_link(tx, &[2; 32], T0))
            .expect("take")
            .is_none(),
        "purged"
    );
}
