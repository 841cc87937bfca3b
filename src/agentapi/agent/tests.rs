//! The Agent service end to end: a real `App` over a temp SQLite file, a
//! workspace applied through the store, and every RPC called through
//! `rpc::drpc::serve` over `tokio::io::duplex` with raw DRPC client packets.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use bytes::Bytes;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use super::*;
use crate::agentapi::{self, Session};
use crate::app::App;
use crate::rpc::drpc::wire::{Decoder, Id, Kind, write_packet};
use crate::rpc::drpc::{UNIMPLEMENTED, serve};
use crate::rpc::proto::methods::Version;
use crate::store::agents::AgentRow;
use crate::store::{self, Options, Store, users};

const WORKSPACE: &str = r#"
name = "dev"
owner = "alice"
[[resources]]
name = "vm"
type = "docker_container"
  [[resources.agents]]
  name = "main"
  auth = "token"
  directory = "/home/coder"
  motd_file = "/etc/motd"
  env = { FOO = "bar", LANG = "C.UTF-8" }
    [[resources.agents.apps]]
    slug = "web"
    display_name = "Web"
    url = "http://localhost:8080"
    healthcheck = { url = "http://localhost:8080/healthz", interval = 5, threshold = 6 }
    [[resources.agents.apps]]
    slug = "plain"
    url = "http://localhost:9090"
    [[resources.agents.scripts]]
    display_name = "Setup"
    script = "echo hi"
    run_on_start = true
    start_blocks_login = true
    timeout_seconds = 30
    [[resources.agents.metadata]]
    key = "cpu"
    display_name = "CPU"
    script = "cat /proc/loadavg"
    interval = 10
    timeout = 2
    [[resources.agents.metadata]]
    key = "disk"
    script = "df -h /"
    interval = 60
    [[resources.agents.children]]
    name = "sub"
"#;

const OTHER: &str = r#"
name = "other"
owner = "alice"
[[resources]]
name = "vm"
type = "docker_container"
  [[resources.agents]]
  name = "main"
  auth = "token"
    [[resources.agents.scripts]]
    display_name = "Theirs"
    script = "true"
    run_on_start = true
    [[resources.agents.children]]
    name = "theirs"
"#;

/// Logs cap for the tests: small, so overflowing is cheap.
const CAP: u32 = 4096;

struct Harness {
    _dir: tempfile::TempDir,
    app: App,
    main: AgentRow,
    sub: AgentRow,
    other: AgentRow,
    other_child: AgentRow,
}

fn agent(store: &Store, id: Uuid) -> AgentRow {
    store
        .read(|c| store::agents::live_agent(c, id))
        .expect("read")
        .expect("live agent")
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("t.db"), &Options::default()).expect("open");
    store.migrate().expect("migrate");
    let now = store::now();
    let alice = store
        .write(|tx| users::insert_user(tx, "alice", "", users::Role::Member, now))
        .expect("user");
    let mut ids = Vec::new();
    for text in [WORKSPACE, OTHER] {
        let ws = crate::manifest::parse("t.toml", text).expect("manifest");
        let applied = store
            .write(|tx| store::workspaces::apply(tx, &ws, alice.id, alice.id, now))
            .expect("apply");
        ids.push((applied.agents[0].id, applied.agents[1].id));
    }
    let mut config = crate::config::Config::default();
    config.logs.max_bytes_per_agent = CAP;
    let app = App::start(
        store.clone(),
        config,
        crate::identity::Trust::default(),
        std::iter::empty(),
    )
    .expect("app");
    Harness {
        main: agent(&store, ids[0].0),
        sub: agent(&store, ids[0].1),
        other: agent(&store, ids[1].0),
        other_child: agent(&store, ids[1].1),
        app,
        _dir: dir,
    }
}

impl Harness {
    fn session(&self, agent: &AgentRow, version: Version) -> Session {
        Session::new(self.app.clone(), agent.clone(), version)
    }

    fn main_session(&self) -> Session {
        self.session(&self.main, Version::new(2, 10))
    }

    fn reread(&self, id: Uuid) -> AgentRow {
        agent(&self.app.store, id)
    }

    /// One RPC as the main agent at API 2.10.
    async fn call(&self, rpc: &str, request: &[u8]) -> Result<Bytes, RpcError> {
        call(self.main_session(), rpc, request).await
    }
}

/// Invoke, request and CloseSend on stream 1 of a fresh transport, then the
/// server's answer: the message before CloseSend, or the Error.
async fn call(session: Session, rpc: &str, request: &[u8]) -> Result<Bytes, RpcError> {
    tokio::time::timeout(StdDuration::from_secs(20), async {
        let router = Arc::new(agentapi::router());
        let (mut client, server) = tokio::io::duplex(64 << 10);
        let task = tokio::spawn(async move { serve(server, &router, session).await });
        let mut out = Vec::new();
        write_packet(&mut out, Id::new(1, 1), Kind::Invoke, false, rpc.as_bytes());
        write_packet(&mut out, Id::new(1, 2), Kind::Message, false, request);
        write_packet(&mut out, Id::new(1, 3), Kind::CloseSend, false, b"");
        // The server answers only once the request is complete, so writing
        // it all first cannot deadlock.
        client.write_all(&out).await.expect("write");
        let mut decoder = Decoder::new();
        let mut message = None;
        let answer = loop {
            let packet = loop {
                if let Some(p) = decoder.decode().expect("valid packets") {
                    break p;
                }
                let n = client.read_buf(decoder.buffer_mut()).await.expect("read");
                assert!(n > 0, "the server closed without answering");
            };
            assert_eq!(packet.id.stream, 1);
            match packet.kind {
                Kind::Message => message = Some(packet.data.clone()),
                Kind::CloseSend => break Ok(message.take().expect("a message before CloseSend")),
                Kind::Error => break Err(RpcError::decode(&packet.data)),
                other => panic!("unexpected {other:?}"),
            }
        };
        drop(client);
        task.await.expect("join").expect("serve ends cleanly");
        answer
    })
    .await
    .expect("timed out")
}

fn msg(e: &RpcError) -> &str {
    &e.message
}

fn id_bytes(id: Uuid) -> Vec<u8> {
    id.as_bytes().to_vec()
}

#[tokio::test]
async fn get_manifest_from_the_store() {
    let h = harness();
    let bytes = h.call(rpc::GET_MANIFEST, b"").await.expect("manifest");
    let m = pb::Manifest::decode(bytes).expect("decode");
    assert_eq!(m.agent_id, id_bytes(h.main.id));
    assert_eq!(m.workspace_id, id_bytes(h.main.workspace_id));
    assert_eq!(m.agent_name, "main");
    assert_eq!(m.workspace_name, "dev");
    assert_eq!(m.owner_username, "alice");
    assert_eq!(m.directory, "/home/coder");
    assert_eq!(m.motd_path, "/etc/motd");
    assert_eq!(
        m.environment_variables.get("FOO").map(String::as_str),
        Some("bar")
    );
    assert_eq!(m.environment_variables.len(), 2);
    assert_eq!(
        m.derp_map.as_ref(),
        Some(h.app.derp_map.borrow().as_ref()),
        "the deployment's DERP map"
    );
    assert_eq!(m.derp_map.as_ref().map(|d| d.regions.len()), Some(1));
    assert_eq!(m.parent_id, None);
    assert!(m.devcontainers.is_empty());
    let metadata: Vec<_> = m
        .metadata
        .iter()
        .map(|d| {
            (
                d.key.as_str(),
                d.display_name.as_str(),
                d.script.as_str(),
                d.interval.map(|i| i.seconds),
                d.timeout.map(|t| t.seconds),
            )
        })
        .collect();
    assert_eq!(
        metadata,
        vec![
            ("cpu", "CPU", "cat /proc/loadavg", Some(10), Some(2)),
            ("disk", "", "df -h /", Some(60), Some(0)),
        ]
    );
    let apps = h
        .app
        .store
        .read(|c| store::agents::apps(c, h.main.id))
        .expect("apps");
    assert_eq!(m.apps.len(), 2);
    let web = m.apps.iter().find(|a| a.slug == "web").expect("web");
    let web_row = apps.iter().find(|a| a.slug == "web").expect("web row");
    assert_eq!(web.id, id_bytes(web_row.id));
    assert_eq!(web.id.len(), 16);
    assert_eq!(web.health, pb::AppHealth::Initializing as i32);
    let hc = web.healthcheck.clone().expect("healthcheck");
    assert_eq!(hc.url, "http://localhost:8080/healthz");
    assert_eq!(hc.interval, Some(seconds(5)));
    assert_eq!(hc.threshold, 6);
    let plain = m.apps.iter().find(|a| a.slug == "plain").expect("plain");
    assert_eq!(plain.health, pb::AppHealth::Disabled as i32);
    assert_eq!(m.scripts.len(), 1);
    let s = &m.scripts[0];
    let script_row = h
        .app
        .store
        .read(|c| store::agents::scripts(c, h.main.id))
        .expect("scripts")
        .remove(0);
    assert_eq!(s.id, id_bytes(script_row.id));
    assert_eq!(s.log_source_id, id_bytes(script_row.log_source_id));
    assert_eq!(s.script, "echo hi");
    assert!(s.run_on_start && !s.run_on_stop && s.start_blocks_login);
    assert_eq!(s.timeout, Some(seconds(30)));
    assert_eq!(s.display_name, "Setup");

    // A sub-agent's manifest names its parent.
    let sub = call(
        h.session(&h.sub, Version::new(2, 10)),
        rpc::GET_MANIFEST,
        b"",
    )
    .await
    .expect("sub manifest");
    let sub = pb::Manifest::decode(sub).expect("decode");
    assert_eq!(sub.parent_id, Some(id_bytes(h.main.id)));
    assert_eq!(sub.agent_name, "sub");
}

fn startup(version: &str, subsystems: Vec<i32>) -> Vec<u8> {
    pb::UpdateStartupRequest {
        startup: Some(pb::Startup {
            version: version.into(),
            expanded_directory: "/home/coder/src".into(),
            subsystems,
        }),
    }
    .encode_to_vec()
}

#[tokio::test]
async fn update_startup_checks_and_stores() {
    let h = harness();
    let req = startup("v2.16.0-devel+abc", vec![2, 3, 2]);
    let echo = h.call(rpc::UPDATE_STARTUP, &req).await.expect("startup");
    let echo = pb::Startup::decode(echo).expect("decode");
    assert_eq!(echo.version, "v2.16.0-devel+abc");
    assert_eq!(echo.subsystems, vec![2, 3, 2]);
    let row = h.reread(h.main.id);
    assert_eq!(row.version, "v2.16.0-devel+abc");
    assert_eq!(row.expanded_directory, "/home/coder/src");
    assert_eq!(row.subsystems, r#"["envbuilder","exectrace"]"#);
    assert_eq!(row.api_version, "2.10");

    let err = h
        .call(rpc::UPDATE_STARTUP, &startup("2.16.0", vec![]))
        .await
        .expect_err("no leading v");
    assert_eq!(msg(&err), r#"invalid agent semver version "2.16.0""#);
    assert_eq!(err.code, 0);
    let err = h
        .call(rpc::UPDATE_STARTUP, &startup("v2.16.0", vec![7]))
        .await
        .expect_err("unknown subsystem");
    assert_eq!(msg(&err), "invalid agent subsystem 7");
    let big = vec![0u8; MAX_SMALL_REQUEST + 1];
    let err = h
        .call(rpc::UPDATE_STARTUP, &big)
        .await
        .expect_err("too big");
    assert!(msg(&err).contains("larger than"), "{err:?}");
    // Refusals wrote nothing.
    assert_eq!(h.reread(h.main.id).version, "v2.16.0-devel+abc");
}

fn lifecycle(state: pb::lifecycle::State, at: Option<i64>) -> Vec<u8> {
    pb::UpdateLifecycleRequest {
        lifecycle: Some(pb::Lifecycle {
            state: state as i32,
            changed_at: at.map(|s| Timestamp {
                seconds: s,
                nanos: 0,
            }),
        }),
    }
    .encode_to_vec()
}

#[tokio::test]
async fn update_lifecycle_sets_started_and_ready() {
    use pb::lifecycle::State;
    let h = harness();
    let t1 = 1_800_000_000;
    let echo = h
        .call(rpc::UPDATE_LIFECYCLE, &lifecycle(State::Starting, Some(t1)))
        .await
        .expect("starting");
    assert_eq!(
        pb::Lifecycle::decode(echo).expect("decode"),
        pb::Lifecycle {
            state: State::Starting as i32,
            changed_at: Some(Timestamp {
                seconds: t1,
                nanos: 0
            })
        }
    );
    let row = h.reread(h.main.id);
    assert_eq!(row.lifecycle_state, "starting");
    assert_eq!(row.started_at.map(|t| t.unix_timestamp()), Some(t1));
    assert_eq!(row.ready_at, None);

    h.call(
        rpc::UPDATE_LIFECYCLE,
        &lifecycle(State::Ready, Some(t1 + 5)),
    )
    .await
    .expect("ready");
    let row = h.reread(h.main.id);
    assert_eq!(row.lifecycle_state, "ready");
    assert_eq!(row.started_at.map(|t| t.unix_timestamp()), Some(t1));
    assert_eq!(row.ready_at.map(|t| t.unix_timestamp()), Some(t1 + 5));

    // Shutting down keeps both; restarting clears ready_at.
    h.call(
        rpc::UPDATE_LIFECYCLE,
        &lifecycle(State::ShuttingDown, Some(t1 + 9)),
    )
    .await
    .expect("shutting down");
    let row = h.reread(h.main.id);
    assert_eq!(row.lifecycle_state, "shutting_down");
    assert_eq!(row.ready_at.map(|t| t.unix_timestamp()), Some(t1 + 5));
    // An unset changed_at is now, and the echo says so.
    let echo = h
        .call(rpc::UPDATE_LIFECYCLE, &lifecycle(State::Starting, None))
        .await
        .expect("restart");
    let echo = pb::Lifecycle::decode(echo).expect("decode");
    let at = echo.changed_at.expect("filled in").seconds;
    assert!((at - time::OffsetDateTime::now_utc().unix_timestamp()).abs() < 60);
    let row = h.reread(h.main.id);
    assert_eq!(row.started_at.map(|t| t.unix_timestamp()), Some(at));
    assert_eq!(row.ready_at, None);

    // A start error with no start recorded sets both.
    h.call(
        rpc::UPDATE_LIFECYCLE,
        &lifecycle(State::StartError, Some(t1)),
    )
    .await
    .expect("start error");
    assert_eq!(
        h.reread(h.main.id).ready_at.map(|t| t.unix_timestamp()),
        Some(t1)
    );

    let err = h
        .call(
            rpc::UPDATE_LIFECYCLE,
            &lifecycle(State::Unspecified, Some(t1)),
        )
        .await
        .expect_err("unspecified");
    assert_eq!(msg(&err), "unknown lifecycle state 0");
    let unknown = pb::UpdateLifecycleRequest {
        lifecycle: Some(pb::Lifecycle {
            state: 42,
            changed_at: None,
        }),
    };
    let err = h
        .call(rpc::UPDATE_LIFECYCLE, &unknown.encode_to_vec())
        .await
        .expect_err("unknown");
    assert_eq!(msg(&err), "unknown lifecycle state 42");
}

fn logs(source: &[u8], lines: &[(&str, pb::log::Level)]) -> Vec<u8> {
    pb::BatchCreateLogsRequest {
        log_source_id: source.to_vec(),
        logs: lines
            .iter()
            .map(|(output, level)| pb::Log {
                created_at: None,
                output: output.to_string(),
                level: *level as i32,
            })
            .collect(),
    }
    .encode_to_vec()
}

fn stored_logs(h: &Harness) -> Vec<store::logs::LogRow> {
    h.app
        .store
        .read(|c| {
            store::logs::range(
                c,
                h.main.id,
                0,
                None,
                store::logs::Limit {
                    rows: 1000,
                    bytes: 1 << 20,
                },
            )
        })
        .expect("range")
        .rows
}

#[tokio::test]
async fn batch_create_logs_goes_through_the_writer_and_its_cap() {
    use pb::log::Level;
    let h = harness();
    let answer = h
        .call(
            rpc::BATCH_CREATE_LOGS,
            &logs(
                &[],
                &[
                    ("hello", Level::Info),
                    ("oops", Level::Error),
                    ("old", Level::Unspecified),
                ],
            ),
        )
        .await
        .expect("stored");
    assert!(
        !pb::BatchCreateLogsResponse::decode(answer)
            .expect("decode")
            .log_limit_exceeded
    );
    let rows = stored_logs(&h);
    let got: Vec<_> = rows
        .iter()
        .map(|r| (r.output.as_str(), r.level.as_str(), r.source_id))
        .collect();
    let ext = store::logs::EXTERNAL_SOURCE_ID;
    assert_eq!(
        got,
        vec![
            ("hello", "info", ext),
            ("oops", "error", ext),
            ("old", "info", ext)
        ]
    );
    let sources = h
        .app
        .store
        .read(|c| store::agents::log_sources(c, h.main.id))
        .expect("sources");
    assert!(sources.iter().any(|s| s.id == ext));

    // A script's source.
    let script = h
        .app
        .store
        .read(|c| store::agents::scripts(c, h.main.id))
        .expect("scripts")
        .remove(0);
    h.call(
        rpc::BATCH_CREATE_LOGS,
        &logs(
            script.log_source_id.as_bytes(),
            &[("from setup", Level::Debug)],
        ),
    )
    .await
    .expect("stored");
    let last = stored_logs(&h).pop().expect("a row");
    assert_eq!(
        (last.output.as_str(), last.level.as_str()),
        ("from setup", "debug")
    );
    assert_eq!(last.source_id, script.log_source_id);

    // Empty batch: nothing to do.
    h.call(rpc::BATCH_CREATE_LOGS, &logs(&[], &[]))
        .await
        .expect("empty");

    // Refusals: a bad source id, too many lines, bad bytes.
    let err = h
        .call(
            rpc::BATCH_CREATE_LOGS,
            &logs(&[1, 2, 3], &[("x", Level::Info)]),
        )
        .await
        .expect_err("bad id");
    assert_eq!(msg(&err), "parse log source id: invalid UUID (got 3 bytes)");
    let many: Vec<_> = (0..=super::logs::MAX_LOG_LINES)
        .map(|_| ("", Level::Info))
        .collect();
    let err = h
        .call(rpc::BATCH_CREATE_LOGS, &logs(&[], &many))
        .await
        .expect_err("too many");
    assert!(
        msg(&err).starts_with("too many log lines: 65537"),
        "{err:?}"
    );
    let err = h
        .call(rpc::BATCH_CREATE_LOGS, &[0x12, 0x05, 0x0a])
        .await
        .expect_err("truncated");
    assert!(msg(&err).starts_with("invalid request"), "{err:?}");

    // Over the cap: refused whole and reported, then refused at once on the
    // same connection (a new one reads the flag from the row).
    let session = h.main_session();
    let big = "x".repeat(CAP as usize);
    let answer = call(
        session.clone(),
        rpc::BATCH_CREATE_LOGS,
        &logs(&[], &[(&big, Level::Info)]),
    )
    .await
    .expect("over cap is an answer");
    assert!(
        pb::BatchCreateLogsResponse::decode(answer)
            .expect("decode")
            .log_limit_exceeded
    );
    assert!(h.reread(h.main.id).logs_overflowed);
    let before = stored_logs(&h).len();
    let answer = call(
        session,
        rpc::BATCH_CREATE_LOGS,
        &logs(&[], &[("small", Level::Info)]),
    )
    .await
    .expect("answer");
    assert!(
        pb::BatchCreateLogsResponse::decode(answer)
            .expect("decode")
            .log_limit_exceeded
    );
    let fresh = h.session(&h.reread(h.main.id), Version::new(2, 10));
    let answer = call(
        fresh,
        rpc::BATCH_CREATE_LOGS,
        &logs(&[], &[("small", Level::Info)]),
    )
    .await
    .expect("answer");
    assert!(
        pb::BatchCreateLogsResponse::decode(answer)
            .expect("decode")
            .log_limit_exceeded,
        "a new connection of an overflowed agent"
    );
    assert_eq!(
        stored_logs(&h).len(),
        before,
        "nothing stored once overflowed"
    );
}

fn healths(updates: &[(Vec<u8>, pb::AppHealth)]) -> Vec<u8> {
    pb::BatchUpdateAppHealthRequest {
        updates: updates
            .iter()
            .map(
                |(id, health)| pb::batch_update_app_health_request::HealthUpdate {
                    id: id.clone(),
                    health: *health as i32,
                },
            )
            .collect(),
    }
    .encode_to_vec()
}

#[tokio::test]
async fn app_healths_only_for_this_agents_checked_apps() {
    let h = harness();
    let apps = h
        .app
        .store
        .read(|c| store::agents::apps(c, h.main.id))
        .expect("apps");
    let web = apps.iter().find(|a| a.slug == "web").expect("web").id;
    let plain = apps.iter().find(|a| a.slug == "plain").expect("plain").id;
    h.call(
        rpc::BATCH_UPDATE_APP_HEALTHS,
        &healths(&[(id_bytes(web), pb::AppHealth::Healthy)]),
    )
    .await
    .expect("healthy");
    let health = |h: &Harness| {
        h.app
            .store
            .read(|c| store::agents::apps(c, h.main.id))
            .expect("apps")
            .into_iter()
            .find(|a| a.id == web)
            .expect("web")
            .health
    };
    assert_eq!(health(&h), "healthy");

    let unknown = Uuid::new_v4();
    let err = h
        .call(
            rpc::BATCH_UPDATE_APP_HEALTHS,
            &healths(&[
                (id_bytes(web), pb::AppHealth::Unhealthy),
                (id_bytes(unknown), pb::AppHealth::Healthy),
            ]),
        )
        .await
        .expect_err("unknown app");
    assert_eq!(msg(&err), format!("workspace app name {unknown} not found"));
    assert_eq!(
        health(&h),
        "healthy",
        "nothing written when one update is bad"
    );
    let err = h
        .call(
            rpc::BATCH_UPDATE_APP_HEALTHS,
            &healths(&[(id_bytes(plain), pb::AppHealth::Healthy)]),
        )
        .await
        .expect_err("no health check");
    assert!(
        msg(&err).ends_with("does not have healthchecks enabled"),
        "{err:?}"
    );
    let err = h
        .call(
            rpc::BATCH_UPDATE_APP_HEALTHS,
            &healths(&[(id_bytes(web), pb::AppHealth::Unspecified)]),
        )
        .await
        .expect_err("unspecified");
    assert!(msg(&err).starts_with("unknown health status 0"), "{err:?}");
    // An app of another agent is unknown here.
    let theirs = h
        .app
        .store
        .read(|c| store::agents::apps(c, h.sub.id))
        .expect("apps");
    assert!(theirs.is_empty());
    let many: Vec<_> = (0..=super::logs::MAX_APP_HEALTH_UPDATES)
        .map(|_| (id_bytes(web), pb::AppHealth::Healthy))
        .collect();
    let err = h
        .call(rpc::BATCH_UPDATE_APP_HEALTHS, &healths(&many))
        .await
        .expect_err("too many");
    assert!(
        msg(&err).starts_with("too many app health updates"),
        "{err:?}"
    );
}

#[tokio::test]
async fn metadata_results_are_stored_under_declared_keys() {
    let h = harness();
    let item =
        |key: &str, value: String, at: Option<i64>| pb::batch_update_metadata_request::Metadata {
            key: key.into(),
            result: Some(pb::workspace_agent_metadata::Result {
                collected_at: at.map(|seconds| Timestamp { seconds, nanos: 0 }),
                age: 0,
                value,
                error: String::new(),
            }),
        };
    let req = pb::BatchUpdateMetadataRequest {
        metadata: vec![
            item("cpu", "0.42".into(), Some(1_800_000_000)),
            item("undeclared", "x".into(), None),
            item("disk", "é".repeat(1500), None),
        ],
    };
    h.call(rpc::BATCH_UPDATE_METADATA, &req.encode_to_vec())
        .await
        .expect("accepted");
    let rows = h
        .app
        .store
        .read(|c| store::agent_rpc::metadata(c, h.main.id))
        .expect("metadata");
    assert_eq!(rows.len(), 2, "undeclared keys are dropped");
    assert_eq!(
        (rows[0].key.as_str(), rows[0].value.as_str()),
        ("cpu", "0.42")
    );
    assert_eq!(
        rows[0].collected_at.map(|t| t.unix_timestamp()),
        Some(1_800_000_000)
    );
    assert_eq!(rows[1].key, "disk");
    assert_eq!(rows[1].value.len(), 2048, "cut at a character boundary");
    assert_eq!(rows[1].error, "value of 3000 bytes exceeded 2048 bytes");
    assert!(rows[1].collected_at.is_some(), "unset is now");

    // Keys over 6144 bytes in all: the items before the limit are stored,
    // then the call fails.
    let mut metadata = vec![item("cpu", "1.0".into(), None)];
    metadata.extend((0..7).map(|i| item(&format!("{i}{}", "k".repeat(1000)), String::new(), None)));
    let long = pb::BatchUpdateMetadataRequest { metadata };
    let err = h
        .call(rpc::BATCH_UPDATE_METADATA, &long.encode_to_vec())
        .await
        .expect_err("keys too long");
    assert!(msg(&err).contains("exceed 6144 bytes"), "{err:?}");
    let rows = h
        .app
        .store
        .read(|c| store::agent_rpc::metadata(c, h.main.id))
        .expect("metadata");
    assert_eq!(rows[0].value, "1.0");
    let many = pb::BatchUpdateMetadataRequest {
        metadata: (0..=super::logs::MAX_METADATA_ITEMS)
            .map(|_| Default::default())
            .collect(),
    };
    let err = h
        .call(rpc::BATCH_UPDATE_METADATA, &many.encode_to_vec())
        .await
        .expect_err("too many");
    assert!(msg(&err).starts_with("too many metadata items"), "{err:?}");
}

#[tokio::test]
async fn constant_answers() {
    let h = harness();
    let stats = pb::UpdateStatsRequest {
        stats: Some(pb::Stats {
            connection_count: 3,
            ..Default::default()
        }),
    };
    let answer = h
        .call(rpc::UPDATE_STATS, &stats.encode_to_vec())
        .await
        .expect("stats");
    assert_eq!(
        pb::UpdateStatsResponse::decode(answer)
            .expect("decode")
            .report_interval,
        Some(seconds(30))
    );
    let answer = h
        .call(rpc::GET_RESOURCES_MONITORING_CONFIGURATION, b"")
        .await
        .expect("config");
    let config = pb::GetResourcesMonitoringConfigurationResponse::decode(answer).expect("decode");
    let c = config.config.expect("config");
    assert_eq!((c.num_datapoints, c.collection_interval_seconds), (20, 10));
    assert!(config.memory.is_none_or(|m| !m.enabled) && config.volumes.is_empty());
    let answer = h
        .call(rpc::GET_ANNOUNCEMENT_BANNERS, b"")
        .await
        .expect("banners");
    assert!(
        pb::GetAnnouncementBannersResponse::decode(answer)
            .expect("decode")
            .announcement_banners
            .is_empty()
    );
    let answer = h.call(rpc::GET_SERVICE_BANNER, b"").await.expect("banner");
    assert!(!pb::ServiceBanner::decode(answer).expect("decode").enabled);
    for accepted in [
        rpc::PUSH_RESOURCES_MONITORING_USAGE,
        rpc::REPORT_BOUNDARY_LOGS,
    ] {
        // Bodies the design gives no fields for are skipped whole.
        let answer = h
            .call(accepted, &[0x0a, 0x02, 0x08, 0x01])
            .await
            .expect(accepted);
        assert!(answer.is_empty());
    }
    let err = h
        .call(rpc::PUSH_CONTEXT_STATE, b"")
        .await
        .expect_err("code 12");
    assert_eq!(err.code, UNIMPLEMENTED);
}

#[tokio::test]
async fn script_completed_and_connection_reports_are_checked() {
    let h = harness();
    let script = h
        .app
        .store
        .read(|c| store::agents::scripts(c, h.main.id))
        .expect("scripts")
        .remove(0);
    assert_eq!(script.last_run, None, "no run reported yet");
    let timing = |id: Vec<u8>, start: i64, end: i64, stage: i32, status: i32| {
        pb::WorkspaceAgentScriptCompletedRequest {
            timing: Some(pb::Timing {
                script_id: id,
                start: Some(Timestamp {
                    seconds: start,
                    nanos: 0,
                }),
                end: Some(Timestamp {
                    seconds: end,
                    nanos: 0,
                }),
                exit_code: if status == 0 { 0 } else { 1 },
                stage,
                status,
            }),
        }
    };
    let last_run = || {
        h.app
            .store
            .read(|c| store::agents::scripts(c, h.main.id))
            .expect("scripts")
            .remove(0)
            .last_run
            .map(|r| (r.exit_code, r.status))
    };
    let completed = |req: pb::WorkspaceAgentScriptCompletedRequest| {
        let h = &h;
        async move { h.call(rpc::SCRIPT_COMPLETED, &req.encode_to_vec()).await }
    };
    let ok = pb::timing::Status::Ok as i32;
    let failed = pb::timing::Status::ExitFailure as i32;
    completed(timing(id_bytes(script.id), 100, 103, 0, failed))
        .await
        .expect("accepted");
    assert_eq!(last_run(), Some((1, "exit_failure".to_owned())));
    // A later run replaces it; an earlier one reported late does not.
    completed(timing(id_bytes(script.id), 200, 201, 2, ok))
        .await
        .expect("accepted");
    completed(timing(id_bytes(script.id), 150, 160, 2, failed))
        .await
        .expect("accepted, but older");
    assert_eq!(last_run(), Some((0, "ok".to_owned())));

    let err = completed(timing(id_bytes(Uuid::new_v4()), 100, 103, 0, ok))
        .await
        .expect_err("not this agent's script");
    assert!(msg(&err).ends_with("is not this agent's"), "{err:?}");
    let other_script = h
        .app
        .store
        .read(|c| store::agents::scripts(c, h.other.id))
        .expect("scripts");
    assert_eq!(other_script.len(), 1);
    for s in other_script {
        let err = completed(timing(id_bytes(s.id), 300, 303, 0, ok))
            .await
            .expect_err("another agent's script");
        assert!(msg(&err).ends_with("is not this agent's"), "{err:?}");
    }
    let err = completed(timing(vec![1], 100, 103, 0, ok))
        .await
        .expect_err("bad id");
    assert!(msg(&err).starts_with("parse script id"), "{err:?}");
    let err = completed(timing(id_bytes(script.id), 100, 103, 9, ok))
        .await
        .expect_err("bad stage");
    assert_eq!(msg(&err), "unknown script stage 9");
    let err = completed(timing(id_bytes(script.id), 100, 103, 0, 7))
        .await
        .expect_err("bad status");
    assert_eq!(msg(&err), "unknown script status 7");
    let err = completed(timing(id_bytes(script.id), 0, 103, 0, ok))
        .await
        .expect_err("no start");
    assert_eq!(
        msg(&err),
        "script start time is required and cannot be zero"
    );
    let err = completed(timing(id_bytes(script.id), 100, 0, 0, ok))
        .await
        .expect_err("no end");
    assert_eq!(msg(&err), "script end time is required and cannot be zero");
    let err = completed(timing(id_bytes(script.id), 104, 103, 0, ok))
        .await
        .expect_err("backwards");
    assert_eq!(msg(&err), "script start time cannot be after end time");
    let err = completed(pb::WorkspaceAgentScriptCompletedRequest { timing: None })
        .await
        .expect_err("no timing");
    assert_eq!(msg(&err), "script timing is required");
    assert_eq!(
        last_run(),
        Some((0, "ok".to_owned())),
        "refusals change nothing"
    );

    let report = |action: i32| pb::ReportConnectionRequest {
        connection: Some(pb::Connection {
            id: id_bytes(Uuid::new_v4()),
            action,
            r#type: pb::connection::Type::Ssh as i32,
            timestamp: Some(Timestamp {
                seconds: 100,
                nanos: 0,
            }),
            ip: "10.0.0.2".into(),
            status_code: 0,
            reason: None,
            app_name: String::new(),
        }),
    };
    let answer = h
        .call(rpc::REPORT_CONNECTION, &report(1).encode_to_vec())
        .await
        .expect("accepted");
    assert!(answer.is_empty(), "google.protobuf.Empty");
    let err = h
        .call(rpc::REPORT_CONNECTION, &report(0).encode_to_vec())
        .await
        .expect_err("unspecified action");
    assert_eq!(msg(&err), "unknown agent connection action 0");
}

#[tokio::test]
async fn update_app_status_as_the_patch_route() {
    use pb::update_app_status_request::AppStatusState;
    let h = harness();
    let status = |slug: &str, message: &str| pb::UpdateAppStatusRequest {
        slug: slug.into(),
        state: AppStatusState::Complete as i32,
        message: message.into(),
        uri: "https://example.com/pr/1".into(),
    };
    h.call(
        rpc::UPDATE_APP_STATUS,
        &status("web", "  <b>done</b>\n now ").encode_to_vec(),
    )
    .await
    .expect("stored");
    let rows = h
        .app
        .store
        .read(|c| store::agents::app_statuses(c, h.main.id))
        .expect("statuses");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].state, "complete");
    assert_eq!(rows[0].message, "done now");
    assert_eq!(rows[0].uri.as_deref(), Some("https://example.com/pr/1"));
    let err = h
        .call(rpc::UPDATE_APP_STATUS, &status("nope", "x").encode_to_vec())
        .await
        .expect_err("unknown slug");
    assert_eq!(msg(&err), r#"No app found with slug "nope""#);
    let err = h
        .call(
            rpc::UPDATE_APP_STATUS,
            &status("web", &"m".repeat(161)).encode_to_vec(),
        )
        .await
        .expect_err("too long");
    assert_eq!(msg(&err), "Message must be less than 160 characters.");
    let mut bad = status("web", "x");
    bad.state = 7;
    let err = h
        .call(rpc::UPDATE_APP_STATUS, &bad.encode_to_vec())
        .await
        .expect_err("bad state");
    assert_eq!(msg(&err), "Invalid state: 7");
}

#[tokio::test]
async fn methods_newer_than_the_connection_are_unknown() {
    let h = harness();
    let old = h.session(&h.main, Version::new(2, 0));
    let err = call(old.clone(), rpc::GET_ANNOUNCEMENT_BANNERS, b"")
        .await
        .expect_err("2.1 method at 2.0");
    assert_eq!(err.code, UNIMPLEMENTED);
    assert_eq!(
        err.message,
        format!("unknown rpc: {:?}", rpc::GET_ANNOUNCEMENT_BANNERS)
    );
    let err = call(
        h.session(&h.main, Version::new(2, 7)),
        rpc::UPDATE_APP_STATUS,
        b"",
    )
    .await
    .expect_err("2.8 method at 2.7");
    assert_eq!(err.code, UNIMPLEMENTED);
    // 2.0's own methods answer.
    call(old, rpc::GET_MANIFEST, b"")
        .await
        .expect("manifest at 2.0");
    call(
        h.session(&h.main, Version::new(2, 1)),
        rpc::GET_ANNOUNCEMENT_BANNERS,
        b"",
    )
    .await
    .expect("banners at 2.1");
}

#[tokio::test]
async fn sub_agents_list_create_and_delete() {
    let h = harness();
    let names = |answer: Bytes| {
        pb::ListSubAgentsResponse::decode(answer)
            .expect("decode")
            .agents
            .into_iter()
            .map(|a| (a.name, a.id))
            .collect::<Vec<_>>()
    };
    let listed = names(h.call(rpc::LIST_SUB_AGENTS, b"").await.expect("list"));
    assert_eq!(listed, vec![("sub".to_string(), id_bytes(h.sub.id))]);

    let session = h.main_session();
    let created = sub_agents::create(
        &session,
        None,
        "devcontainer",
        "/workspaces/x",
        "amd64",
        "linux",
    )
    .await
    .expect("created");
    assert_eq!(created.agent.name, "devcontainer");
    let by_token = h
        .app
        .store
        .read(|c| {
            store::agents::agent_by_token_hash(
                c,
                &crate::auth::agent_token_hash(&created.auth_token),
            )
        })
        .expect("read")
        .expect("the token authenticates the sub-agent");
    assert_eq!(by_token.id, created.agent.id);
    assert_eq!(by_token.parent_id, Some(h.main.id));
    assert_eq!(by_token.directory, "/workspaces/x");
    let listed = names(h.call(rpc::LIST_SUB_AGENTS, b"").await.expect("list"));
    assert_eq!(listed.len(), 2);

    let err = sub_agents::create(&session, None, "Main", "", "", "")
        .await
        .expect_err("name taken");
    assert!(
        msg(&err).contains("already exists in this workspace build"),
        "{err:?}"
    );
    let err = sub_agents::create(&session, None, "bad_name", "", "", "")
        .await
        .expect_err("bad name");
    assert!(msg(&err).contains("does not match regex"), "{err:?}");
    let err = sub_agents::create(
        &h.session(&h.sub, Version::new(2, 10)),
        None,
        "deeper",
        "",
        "",
        "",
    )
    .await
    .expect_err("no grandchildren");
    assert!(msg(&err).contains("cannot create"), "{err:?}");

    // Another agent's child, the agent itself: refused, nothing changes.
    let err = sub_agents::delete(&session, h.other_child.id)
        .await
        .expect_err("foreign child");
    assert!(msg(&err).contains("not a child of this agent"), "{err:?}");
    h.reread(h.other_child.id);
    sub_agents::delete(&session, h.main.id)
        .await
        .expect_err("itself");
    sub_agents::delete(&h.session(&h.other, Version::new(2, 10)), h.sub.id)
        .await
        .expect_err("the other agent cannot delete ours");

    sub_agents::delete(&session, created.agent.id)
        .await
        .expect("deleted");
    let listed = names(h.call(rpc::LIST_SUB_AGENTS, b"").await.expect("list"));
    assert_eq!(listed, vec![("sub".to_string(), id_bytes(h.sub.id))]);
    let gone = h
        .app
        .store
        .read(|c| store::agents::live_agent(c, created.agent.id))
        .expect("read");
    assert_eq!(gone, None);

    // Through the RPCs: a pre-chosen id, a token, apps refused one by one.
    let chosen = uuid::Uuid::new_v4();
    let req = pb::CreateSubAgentRequest {
        name: "rpc-made".into(),
        directory: "/w".into(),
        architecture: "amd64".into(),
        operating_system: "linux".into(),
        apps: vec![pb::create_sub_agent_request::App { slug: "web".into() }],
        id: Some(chosen.as_bytes().to_vec()),
    };
    let resp = pb::CreateSubAgentResponse::decode(
        h.call(rpc::CREATE_SUB_AGENT, &req.encode_to_vec())
            .await
            .expect("create"),
    )
    .expect("decode");
    let agent = resp.agent.expect("agent");
    assert_eq!(agent.id, chosen.as_bytes().to_vec());
    assert_eq!(agent.name, "rpc-made");
    let token = uuid::Uuid::from_slice(&agent.auth_token).expect("16-byte UUID token");
    assert_eq!(token.get_version_num(), 4, "{token}");
    assert_eq!(resp.app_creation_errors.len(), 1);
    assert_eq!(resp.app_creation_errors[0].index, 0);
    let del = pb::DeleteSubAgentRequest {
        id: chosen.as_bytes().to_vec(),
    };
    h.call(rpc::DELETE_SUB_AGENT, &del.encode_to_vec())
        .await
        .expect("delete");
    let err = h
        .call(rpc::DELETE_SUB_AGENT, &del.encode_to_vec())
        .await
        .expect_err("gone");
    assert!(msg(&err).contains("not a child"), "{err:?}");
    let err = h
        .call(
            rpc::DELETE_SUB_AGENT,
            &pb::DeleteSubAgentRequest { id: vec![1, 2] }.encode_to_vec(),
        )
        .await
        .expect_err("short id");
    assert!(msg(&err).contains("2 bytes"), "{err:?}");
}

#[tokio::test]
async fn garbage_is_an_error_not_a_panic() {
    let h = harness();
    let garbage = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
    ];
    for method in methods::METHODS
        .iter()
        .filter(|m| m.name.starts_with("/coder.agent.v2.Agent/"))
    {
        let err = h.call(method.name, &garbage).await.expect_err(method.name);
        assert!(!err.message.is_empty(), "{}", method.name);
    }
}

#[test]
fn count_field_counts_without_decoding() {
    let req = logs(
        &[1; 16],
        &[("a", pb::log::Level::Info), ("b", pb::log::Level::Info)],
    );
    assert_eq!(count_field(&req, 2).expect("count"), 2);
    assert_eq!(count_field(&req, 1).expect("count"), 1);
    assert_eq!(count_field(&[], 2).expect("count"), 0);
    // A length past the end, a group, a truncated varint.
    assert!(count_field(&[0x12, 0x05, 0x0a], 2).is_err());
    assert!(count_field(&[0x13], 2).is_err());
    assert!(count_field(&[0x08, 0xff], 2).is_err());
}
