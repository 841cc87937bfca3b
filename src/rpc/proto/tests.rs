//! The messages against CONNECTIVITY.md §1.7/§1.8: byte vectors worked out by
//! hand, every field's number and wire type read back from an encoding,
//! round trips, forward compatibility (unknown fields, unknown enum values)
//! and hostile input; then the method table.
//!
//! Protobuf in one paragraph, for checking the vectors: a message is a
//! sequence of fields, each a key then a value. The key is the varint
//! `field << 3 | wire type`; wire types are 0 varint (ints, bools, enums),
//! 1 eight little-endian bytes (double), 2 a varint length then that many
//! bytes (strings, bytes, messages, map entries, packed repeated scalars),
//! 5 four bytes. A varint is 7 bits per byte, low group first, the high bit
//! set on every byte but the last. proto3 leaves out fields at their default
//! (0, "", empty), except `optional` ones that are set. A map entry is a
//! message {key = 1, value = 2}.

use std::collections::BTreeMap;

use prost::Message;

use super::agent::{self, *};
use super::methods::{self, Kind, METHODS, Version};
use super::tailnet::{self, *};
use super::{Duration, Timestamp};

const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;

/// A 16-byte id: `first`, `first + 1`, ... `first + 15`.
fn id(first: u8) -> Vec<u8> {
    (first..first + 16).collect()
}

fn ts(seconds: i64, nanos: i32) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos })
}

fn dur(seconds: i64) -> Option<Duration> {
    Some(Duration { seconds, nanos: 0 })
}

/// Encodes, checks `encoded_len`, decodes to the same value and re-encodes
/// to the same bytes.
fn roundtrip<M: Message + Default + PartialEq + std::fmt::Debug>(message: &M) -> Vec<u8> {
    let bytes = message.encode_to_vec();
    assert_eq!(bytes.len(), message.encoded_len(), "{message:?}");
    let back = M::decode(bytes.as_slice()).expect("decodes its own encoding");
    assert_eq!(&back, message);
    assert_eq!(back.encode_to_vec(), bytes);
    bytes
}

fn read_varint(buf: &mut &[u8]) -> u64 {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first().expect("varint ends");
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return value;
        }
    }
    panic!("varint longer than 10 bytes");
}

/// The top-level fields of an encoding as (number, wire type, payload of a
/// length-delimited field), in order.
fn fields(mut buf: &[u8]) -> Vec<(u64, u8, &[u8])> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = read_varint(&mut buf);
        let wire = (key & 7) as u8;
        let mut payload: &[u8] = &[];
        match wire {
            0 => {
                read_varint(&mut buf);
            }
            1 => buf = &buf[8..],
            2 => {
                let len = read_varint(&mut buf) as usize;
                payload = &buf[..len];
                buf = &buf[len..];
            }
            5 => buf = &buf[4..],
            other => panic!("unexpected wire type {other}"),
        }
        out.push((key >> 3, wire, payload));
    }
    out
}

/// (number, wire type) of each field present, a repeated field once.
fn layout(buf: &[u8]) -> Vec<(u64, u8)> {
    let mut out: Vec<(u64, u8)> = Vec::new();
    for (number, wire, _) in fields(buf) {
        if out.last() != Some(&(number, wire)) {
            out.push((number, wire));
        }
    }
    out
}

/// The payload of the first occurrence of length-delimited field `number`.
fn payload(buf: &[u8], number: u64) -> &[u8] {
    fields(buf)
        .into_iter()
        .find(|(n, wire, _)| *n == number && *wire == LEN)
        .map(|(_, _, p)| p)
        .expect("field present")
}

/// Fields 1..=n, all with one wire type, except those listed.
fn numbered(n: u64, default: u8, except: &[(u64, u8)]) -> Vec<(u64, u8)> {
    (1..=n)
        .map(|f| {
            except
                .iter()
                .find(|(g, _)| *g == f)
                .copied()
                .unwrap_or((f, default))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Full values: every field set to something other than its default.

fn full_derp_node() -> derp_map::region::Node {
    derp_map::region::Node {
        name: "999a".into(),
        region_id: 999,
        host_name: "derp.example".into(),
        cert_name: "derp.example".into(),
        ipv4: "192.0.2.1".into(),
        ipv6: "2001:db8::1".into(),
        stun_port: 3478,
        stun_only: true,
        derp_port: 443,
        insecure_for_tests: true,
        force_http: true,
        stun_test_ip: "192.0.2.2".into(),
        can_port_80: true,
    }
}

fn full_region() -> derp_map::Region {
    derp_map::Region {
        region_id: 999,
        embedded_relay: true,
        region_code: "coder".into(),
        region_name: "Coder Embedded Relay".into(),
        avoid: true,
        nodes: vec![full_derp_node()],
    }
}

fn full_derp_map() -> DerpMap {
    DerpMap {
        home_params: Some(derp_map::HomeParams {
            region_score: BTreeMap::from([(999, 1.5)]),
        }),
        regions: BTreeMap::from([(999, full_region())]),
    }
}

fn full_healthcheck() -> workspace_app::Healthcheck {
    workspace_app::Healthcheck {
        url: "http://localhost:8080/healthz".into(),
        interval: dur(5),
        threshold: 3,
    }
}

fn full_app() -> WorkspaceApp {
    WorkspaceApp {
        id: id(0x21),
        url: "http://localhost:8080".into(),
        external: true,
        slug: "code".into(),
        display_name: "Code".into(),
        command: "code-server".into(),
        icon: "/icon/code.svg".into(),
        subdomain: true,
        subdomain_name: "code--main".into(),
        sharing_level: workspace_app::SharingLevel::Authenticated.into(),
        healthcheck: Some(full_healthcheck()),
        health: AppHealth::Healthy.into(),
        hidden: true,
    }
}

fn full_script() -> WorkspaceAgentScript {
    WorkspaceAgentScript {
        log_source_id: id(0x31),
        log_path: "/tmp/coder-startup.log".into(),
        script: "echo hi".into(),
        cron: "0 * * * * *".into(),
        run_on_start: true,
        run_on_stop: true,
        start_blocks_login: true,
        timeout: dur(60),
        display_name: "Startup".into(),
        id: id(0x41),
    }
}

fn full_description() -> workspace_agent_metadata::Description {
    workspace_agent_metadata::Description {
        display_name: "Load".into(),
        key: "load".into(),
        script: "uptime".into(),
        interval: dur(10),
        timeout: dur(2),
    }
}

fn full_result() -> workspace_agent_metadata::Result {
    workspace_agent_metadata::Result {
        collected_at: ts(1_700_000_000, 1),
        age: 3,
        value: "0.42".into(),
        error: "none".into(),
    }
}

fn full_devcontainer() -> WorkspaceAgentDevcontainer {
    WorkspaceAgentDevcontainer {
        id: id(0x51),
        workspace_folder: "/workspaces/app".into(),
        config_path: "/workspaces/app/.devcontainer/devcontainer.json".into(),
        name: "app".into(),
        subagent_id: Some(id(0x61)),
    }
}

fn full_secret() -> WorkspaceSecret {
    WorkspaceSecret {
        env_name: "TOKEN".into(),
        file_path: "/run/secrets/token".into(),
        value: b"s3cret".to_vec(),
    }
}

fn full_manifest() -> Manifest {
    Manifest {
        agent_id: id(0x01),
        git_auth_configs: 2,
        environment_variables: BTreeMap::from([("EDITOR".into(), "vim".into())]),
        directory: "/home/coder".into(),
        vs_code_port_proxy_uri: "https://{{port}}.example".into(),
        motd_path: "/etc/motd".into(),
        disable_direct_connections: true,
        derp_force_websockets: true,
        derp_map: Some(full_derp_map()),
        scripts: vec![full_script()],
        apps: vec![full_app()],
        metadata: vec![full_description()],
        owner_username: "alice".into(),
        workspace_id: id(0x11),
        agent_name: "main".into(),
        workspace_name: "dev".into(),
        devcontainers: vec![full_devcontainer()],
        parent_id: Some(id(0x71)),
        secrets: vec![full_secret()],
    }
}

fn full_stats() -> Stats {
    Stats {
        connections_by_proto: BTreeMap::from([("tcp".into(), 2)]),
        connection_count: 2,
        connection_median_latency_ms: 12.5,
        rx_packets: 10,
        rx_bytes: 1000,
        tx_packets: 20,
        tx_bytes: 2000,
        session_count_vscode: 1,
        session_count_jetbrains: 2,
        session_count_reconnecting_pty: 3,
        session_count_ssh: 4,
        session_counts: BTreeMap::from([("ssh".into(), 4)]),
    }
}

fn full_lifecycle() -> Lifecycle {
    Lifecycle {
        state: lifecycle::State::Ready.into(),
        changed_at: ts(1_700_000_000, 500),
    }
}

fn full_startup() -> Startup {
    Startup {
        version: "v2.24.1".into(),
        expanded_directory: "/home/coder".into(),
        subsystems: vec![
            startup::Subsystem::Envbox.into(),
            startup::Subsystem::Exectrace.into(),
        ],
    }
}

fn full_log() -> Log {
    Log {
        created_at: ts(1, 0),
        output: "hi".into(),
        level: log::Level::Info.into(),
    }
}

fn full_timing() -> Timing {
    Timing {
        script_id: id(0x41),
        start: ts(100, 0),
        end: ts(160, 0),
        exit_code: 1,
        stage: timing::Stage::Cron.into(),
        status: timing::Status::ExitFailure.into(),
    }
}

fn full_connection() -> Connection {
    Connection {
        id: id(0x81),
        action: connection::Action::Connect.into(),
        r#type: connection::Type::Ssh.into(),
        timestamp: ts(1_700_000_000, 0),
        ip: "192.0.2.7".into(),
        status_code: 255,
        reason: Some("closed".into()),
        app_name: "code".into(),
    }
}

fn full_node() -> tailnet::Node {
    tailnet::Node {
        id: 42,
        as_of: ts(1_700_000_000, 0),
        key: vec![7; 32],
        disco: "discokey:00".into(),
        preferred_derp: 999,
        derp_latency: BTreeMap::from([("999-v4".into(), 0.015)]),
        derp_forced_websocket: BTreeMap::from([(999, "test".into())]),
        addresses: vec!["fd7a:115c:a1e0::1/128".into()],
        allowed_ips: vec!["fd7a:115c:a1e0::1/128".into()],
        endpoints: vec!["192.0.2.9:41641".into()],
    }
}

fn full_coordinate_request() -> CoordinateRequest {
    CoordinateRequest {
        update_self: Some(coordinate_request::UpdateSelf {
            node: Some(full_node()),
        }),
        disconnect: Some(coordinate_request::Disconnect {}),
        add_tunnel: Some(coordinate_request::Tunnel { id: id(0x91) }),
        remove_tunnel: Some(coordinate_request::Tunnel { id: id(0xA1) }),
        ready_for_handshake: vec![
            coordinate_request::ReadyForHandshake { id: id(0xB1) },
            coordinate_request::ReadyForHandshake { id: id(0xC1) },
        ],
    }
}

fn full_monitoring_configuration() -> GetResourcesMonitoringConfigurationResponse {
    use agent::get_resources_monitoring_configuration_response::{Config, Memory, Volume};
    GetResourcesMonitoringConfigurationResponse {
        config: Some(Config {
            num_datapoints: 20,
            collection_interval_seconds: 10,
        }),
        memory: Some(Memory { enabled: true }),
        volumes: vec![Volume {
            enabled: true,
            path: "/home".into(),
        }],
    }
}

// ---------------------------------------------------------------------------
// Byte vectors worked out by hand.

#[test]
fn manifest_bytes_by_hand() {
    let manifest = Manifest {
        agent_id: id(0x01),
        directory: "/home/coder".into(),
        apps: vec![WorkspaceApp {
            id: id(0x21),
            slug: "code".into(),
            health: AppHealth::Healthy.into(),
            ..Default::default()
        }],
        parent_id: Some(id(0x41)),
        ..Default::default()
    };
    let expected = [
        // agent_id: field 1, wire 2: key 1<<3|2 = 0x0A, length 16.
        &[0x0A, 0x10][..],
        &id(0x01),
        // directory: field 4, wire 2: 4<<3|2 = 0x22, length 11.
        &[0x22, 0x0B],
        b"/home/coder",
        // apps: field 11, wire 2: 11<<3|2 = 0x5A; the app is
        // 2+16 (id) + 2+4 (slug) + 2 (health) = 26 = 0x1A bytes.
        &[0x5A, 0x1A],
        // app.id: field 1: 0x0A, 16.
        &[0x0A, 0x10],
        &id(0x21),
        // app.slug: field 4: 0x22, 4.
        &[0x22, 0x04],
        b"code",
        // app.health: field 12, wire 0: 12<<3|0 = 0x60; HEALTHY = 3.
        &[0x60, 0x03],
        // parent_id: field 18, wire 2: 18<<3|2 = 146 = 0b1001_0010, over 127 so
        // two varint bytes: low 7 bits 0x12 | 0x80 = 0x92, then 146>>7 = 0x01.
        &[0x92, 0x01, 0x10],
        &id(0x41),
    ]
    .concat();
    assert_eq!(roundtrip(&manifest), expected);
}

#[test]
fn update_lifecycle_request_bytes_by_hand() {
    let request = UpdateLifecycleRequest {
        lifecycle: Some(full_lifecycle()),
    };
    // changed_at = Timestamp {seconds: 1_700_000_000, nanos: 500}.
    // 1_700_000_000 as a varint, 7 bits at a time from the low end:
    //   1_700_000_000 % 128 = 0           -> 0x80 (more follows)
    //   13_281_250   % 128 = 98 = 0x62    -> 0xE2
    //   103_759      % 128 = 79 = 0x4F    -> 0xCF
    //   810          % 128 = 42 = 0x2A    -> 0xAA
    //   6                                 -> 0x06 (last)
    // 500 = 0x1F4: 0x74 | 0x80 = 0xF4, then 500>>7 = 3 -> 0x03.
    // Timestamp: 0x08 (field 1 varint) + 5 bytes, 0x10 (field 2 varint) + 2
    // bytes = 9 bytes.
    // Lifecycle: 0x08 0x05 (state, field 1 varint, READY = 5), then
    // 0x12 0x09 (changed_at, field 2 wire 2, 9 bytes) = 13 bytes.
    // Request: 0x0A (lifecycle, field 1 wire 2) 0x0D (13).
    let expected = [
        0x0A, 0x0D, //
        0x08, 0x05, //
        0x12, 0x09, //
        0x08, 0x80, 0xE2, 0xCF, 0xAA, 0x06, //
        0x10, 0xF4, 0x03,
    ];
    assert_eq!(roundtrip(&request), expected);
}

#[test]
fn batch_create_logs_request_bytes_by_hand() {
    let request = BatchCreateLogsRequest {
        log_source_id: id(0x61),
        logs: vec![full_log()],
    };
    let expected = [
        // log_source_id: field 1 wire 2, 16 bytes.
        &[0x0A, 0x10][..],
        &id(0x61),
        // logs: field 2 wire 2 = 0x12; the log is 4 + 4 + 2 = 10 bytes.
        &[0x12, 0x0A],
        // created_at: field 1 wire 2, 2 bytes: Timestamp {seconds = 1}
        // (0x08 0x01; nanos 0 is left out).
        &[0x0A, 0x02, 0x08, 0x01],
        // output: field 2 wire 2 = 0x12, "hi".
        &[0x12, 0x02, b'h', b'i'],
        // level: field 3 wire 0 = 0x18, INFO = 3.
        &[0x18, 0x03],
    ]
    .concat();
    assert_eq!(roundtrip(&request), expected);
}

#[test]
fn coordinate_request_update_self_bytes_by_hand() {
    let request = CoordinateRequest {
        update_self: Some(coordinate_request::UpdateSelf {
            node: Some(tailnet::Node {
                id: 1,
                preferred_derp: 999,
                derp_latency: BTreeMap::from([("999".into(), 1.5)]),
                addresses: vec!["fd7a:115c:a1e0::1/128".into()],
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    let expected = [
        // update_self: field 1 wire 2, 46 bytes; its node: field 1 wire 2,
        // 44 bytes (2 + 3 + 16 + 23 below).
        &[0x0A, 0x2E, 0x0A, 0x2C][..],
        // node.id: field 1 varint, 1.
        &[0x08, 0x01],
        // preferred_derp: field 5 wire 0 = 0x28; 999 = 0x3E7 -> 0xE7 0x07.
        &[0x28, 0xE7, 0x07],
        // derp_latency: field 6 wire 2 = 0x32, one entry of 14 bytes:
        // key (field 1 wire 2) "999", value (field 2 wire 1 = 0x11) the
        // double 1.5 = 0x3FF8_0000_0000_0000, little-endian.
        &[0x32, 0x0E, 0x0A, 0x03, b'9', b'9', b'9', 0x11],
        &[0, 0, 0, 0, 0, 0, 0xF8, 0x3F],
        // addresses: field 8 wire 2 = 0x42, 21 bytes.
        &[0x42, 0x15],
        b"fd7a:115c:a1e0::1/128",
    ]
    .concat();
    assert_eq!(roundtrip(&request), expected);
}

#[test]
fn update_stats_response_bytes_by_hand() {
    // report_interval: field 1 wire 2, Duration {seconds = 30}: 0x08 0x1E.
    let response = UpdateStatsResponse {
        report_interval: dur(30),
    };
    assert_eq!(roundtrip(&response), [0x0A, 0x02, 0x08, 0x1E]);
}

#[test]
fn batch_update_metadata_uses_field_two() {
    let request = BatchUpdateMetadataRequest {
        metadata: vec![batch_update_metadata_request::Metadata {
            key: "k".into(),
            result: None,
        }],
    };
    // metadata: field 2 wire 2 = 0x12, 3 bytes: key field 1 "k".
    assert_eq!(roundtrip(&request), [0x12, 0x03, 0x0A, 0x01, b'k']);
}

// ---------------------------------------------------------------------------
// Every field's number and wire type, from an encoding of a full value. The
// expected lists are §1.7/§1.8 with their types turned into wire types.

#[test]
fn every_field_has_the_designs_number_and_wire_type() {
    // Manifest: 2 uint32, 7 and 8 bools; the rest bytes, strings, a map and
    // messages.
    let manifest = full_manifest().encode_to_vec();
    assert_eq!(
        layout(&manifest),
        numbered(19, LEN, &[(2, VARINT), (7, VARINT), (8, VARINT)])
    );
    // environment_variables' entry: string key, string value.
    assert_eq!(layout(payload(&manifest, 3)), [(1, LEN), (2, LEN)]);

    assert_eq!(
        layout(&full_script().encode_to_vec()),
        numbered(10, LEN, &[(5, VARINT), (6, VARINT), (7, VARINT)])
    );
    assert_eq!(
        layout(&full_app().encode_to_vec()),
        numbered(
            13,
            LEN,
            &[
                (3, VARINT),
                (8, VARINT),
                (10, VARINT),
                (12, VARINT),
                (13, VARINT)
            ]
        )
    );
    assert_eq!(
        layout(&full_healthcheck().encode_to_vec()),
        [(1, LEN), (2, LEN), (3, VARINT)]
    );
    assert_eq!(
        layout(&full_result().encode_to_vec()),
        [(1, LEN), (2, VARINT), (3, LEN), (4, LEN)]
    );
    assert_eq!(
        layout(&full_description().encode_to_vec()),
        numbered(5, LEN, &[])
    );
    let metadata = WorkspaceAgentMetadata {
        result: Some(full_result()),
        description: Some(full_description()),
    };
    assert_eq!(layout(&metadata.encode_to_vec()), [(1, LEN), (2, LEN)]);
    assert_eq!(
        layout(&full_devcontainer().encode_to_vec()),
        numbered(5, LEN, &[])
    );
    assert_eq!(
        layout(&full_secret().encode_to_vec()),
        numbered(3, LEN, &[])
    );

    assert_eq!(
        layout(&full_lifecycle().encode_to_vec()),
        [(1, VARINT), (2, LEN)]
    );
    // subsystems: a packed repeated enum, so one length-delimited field.
    assert_eq!(
        layout(&full_startup().encode_to_vec()),
        [(1, LEN), (2, LEN), (3, LEN)]
    );
    assert_eq!(
        layout(&full_log().encode_to_vec()),
        [(1, LEN), (2, LEN), (3, VARINT)]
    );
    let logs = BatchCreateLogsRequest {
        log_source_id: id(1),
        logs: vec![full_log(), full_log()],
    };
    assert_eq!(layout(&logs.encode_to_vec()), [(1, LEN), (2, LEN)]);
    assert_eq!(
        layout(
            &BatchCreateLogsResponse {
                log_limit_exceeded: true
            }
            .encode_to_vec()
        ),
        [(1, VARINT)]
    );
    let health = batch_update_app_health_request::HealthUpdate {
        id: id(1),
        health: AppHealth::Unhealthy.into(),
    };
    assert_eq!(layout(&health.encode_to_vec()), [(1, LEN), (2, VARINT)]);
    let healths = BatchUpdateAppHealthRequest {
        updates: vec![health],
    };
    assert_eq!(layout(&healths.encode_to_vec()), [(1, LEN)]);
    let metadata = batch_update_metadata_request::Metadata {
        key: "load".into(),
        result: Some(full_result()),
    };
    assert_eq!(layout(&metadata.encode_to_vec()), [(1, LEN), (2, LEN)]);

    // Stats: a map, int64s, a double (wire 1), the deprecated 8-11, no 12,
    // and the session_counts map.
    let stats = full_stats().encode_to_vec();
    let mut expected = numbered(11, VARINT, &[(1, LEN), (3, I64)]);
    expected.push((13, LEN));
    assert_eq!(layout(&stats), expected);
    assert_eq!(layout(payload(&stats, 1)), [(1, LEN), (2, VARINT)]);
    assert_eq!(layout(payload(&stats, 13)), [(1, LEN), (2, VARINT)]);
    let request = UpdateStatsRequest {
        stats: Some(full_stats()),
    };
    assert_eq!(layout(&request.encode_to_vec()), [(1, LEN)]);

    let banner = BannerConfig {
        enabled: true,
        message: "hello".into(),
        background_color: "#000000".into(),
    };
    assert_eq!(
        layout(&banner.encode_to_vec()),
        [(1, VARINT), (2, LEN), (3, LEN)]
    );
    let service = ServiceBanner {
        enabled: true,
        message: "hello".into(),
        background_color: "#000000".into(),
    };
    assert_eq!(
        layout(&service.encode_to_vec()),
        [(1, VARINT), (2, LEN), (3, LEN)]
    );
    let banners = GetAnnouncementBannersResponse {
        announcement_banners: vec![banner],
    };
    assert_eq!(layout(&banners.encode_to_vec()), [(1, LEN)]);

    assert_eq!(
        layout(&full_timing().encode_to_vec()),
        numbered(6, VARINT, &[(1, LEN), (2, LEN), (3, LEN)])
    );
    let completed = WorkspaceAgentScriptCompletedRequest {
        timing: Some(full_timing()),
    };
    assert_eq!(layout(&completed.encode_to_vec()), [(1, LEN)]);

    let monitoring = full_monitoring_configuration().encode_to_vec();
    assert_eq!(layout(&monitoring), [(1, LEN), (2, LEN), (3, LEN)]);
    assert_eq!(layout(payload(&monitoring, 1)), [(1, VARINT), (2, VARINT)]);
    assert_eq!(layout(payload(&monitoring, 2)), [(1, VARINT)]);
    assert_eq!(layout(payload(&monitoring, 3)), [(1, VARINT), (2, LEN)]);

    assert_eq!(
        layout(&full_connection().encode_to_vec()),
        numbered(8, LEN, &[(2, VARINT), (3, VARINT), (6, VARINT), (4, LEN)])
    );
    let report = ReportConnectionRequest {
        connection: Some(full_connection()),
    };
    assert_eq!(layout(&report.encode_to_vec()), [(1, LEN)]);

    let status = UpdateAppStatusRequest {
        slug: "code".into(),
        state: update_app_status_request::AppStatusState::Failure.into(),
        message: "broke".into(),
        uri: "https://example.com".into(),
    };
    assert_eq!(
        layout(&status.encode_to_vec()),
        [(1, LEN), (2, VARINT), (3, LEN), (4, LEN)]
    );
    let sub = SubAgent {
        name: "app".into(),
        id: id(1),
        auth_token: id(2),
    };
    assert_eq!(layout(&sub.encode_to_vec()), numbered(3, LEN, &[]));
    let list = ListSubAgentsResponse { agents: vec![sub] };
    assert_eq!(layout(&list.encode_to_vec()), [(1, LEN)]);
    let pushed = PushContextStateResponse { accepted: true };
    assert_eq!(layout(&pushed.encode_to_vec()), [(1, VARINT)]);
    let startup = UpdateStartupRequest {
        startup: Some(full_startup()),
    };
    assert_eq!(layout(&startup.encode_to_vec()), [(1, LEN)]);
}

#[test]
fn every_tailnet_field_has_the_designs_number_and_wire_type() {
    let map = full_derp_map().encode_to_vec();
    assert_eq!(layout(&map), [(1, LEN), (2, LEN)]);
    // home_params.region_score's entry: int64 key, double value.
    let home = payload(&map, 1);
    assert_eq!(layout(home), [(1, LEN)]);
    assert_eq!(layout(payload(home, 1)), [(1, VARINT), (2, I64)]);
    // regions' entry: int64 key, Region value.
    assert_eq!(layout(payload(&map, 2)), [(1, VARINT), (2, LEN)]);
    assert_eq!(
        layout(&full_region().encode_to_vec()),
        [
            (1, VARINT),
            (2, VARINT),
            (3, LEN),
            (4, LEN),
            (5, VARINT),
            (6, LEN)
        ]
    );
    assert_eq!(
        layout(&full_derp_node().encode_to_vec()),
        numbered(
            13,
            VARINT,
            &[(1, LEN), (3, LEN), (4, LEN), (5, LEN), (6, LEN), (12, LEN)]
        )
    );

    let node = full_node().encode_to_vec();
    assert_eq!(
        layout(&node),
        numbered(10, LEN, &[(1, VARINT), (5, VARINT)])
    );
    assert_eq!(layout(payload(&node, 6)), [(1, LEN), (2, I64)]);
    assert_eq!(layout(payload(&node, 7)), [(1, VARINT), (2, LEN)]);

    let request = full_coordinate_request().encode_to_vec();
    assert_eq!(layout(&request), numbered(5, LEN, &[]));
    // update_self {node = 1}, the tunnels {id = 1}, ready {id = 1}.
    assert_eq!(layout(payload(&request, 1)), [(1, LEN)]);
    assert_eq!(payload(&request, 2), b"");
    assert_eq!(layout(payload(&request, 3)), [(1, LEN)]);
    assert_eq!(layout(payload(&request, 4)), [(1, LEN)]);
    assert_eq!(layout(payload(&request, 5)), [(1, LEN)]);
    // Two handshakes: field 5 twice.
    assert_eq!(fields(&request).iter().filter(|f| f.0 == 5).count(), 2);

    let response = CoordinateResponse {
        error: "peer overwritten".into(),
        ..Default::default()
    };
    assert_eq!(layout(&response.encode_to_vec()), [(2, LEN)]);
}

#[test]
fn enum_values_match_the_design() {
    use lifecycle::State;
    let states = [
        (State::Unspecified, 0),
        (State::Created, 1),
        (State::Starting, 2),
        (State::StartTimeout, 3),
        (State::StartError, 4),
        (State::Ready, 5),
        (State::ShuttingDown, 6),
        (State::ShutdownTimeout, 7),
        (State::ShutdownError, 8),
        (State::Off, 9),
    ];
    for (state, value) in states {
        assert_eq!(state as i32, value, "{state:?}");
    }
    use workspace_app::SharingLevel;
    assert_eq!(
        [
            SharingLevel::Unspecified,
            SharingLevel::Owner,
            SharingLevel::Authenticated,
            SharingLevel::Public,
            SharingLevel::Organization
        ]
        .map(i32::from),
        [0, 1, 2, 3, 4]
    );
    assert_eq!(
        [
            AppHealth::Unspecified,
            AppHealth::Disabled,
            AppHealth::Initializing,
            AppHealth::Healthy,
            AppHealth::Unhealthy
        ]
        .map(i32::from),
        [0, 1, 2, 3, 4]
    );
    use startup::Subsystem;
    assert_eq!(
        [
            Subsystem::Envbox,
            Subsystem::Envbuilder,
            Subsystem::Exectrace
        ]
        .map(i32::from),
        [1, 2, 3]
    );
    assert_eq!(
        [log::Level::Trace, log::Level::Error].map(i32::from),
        [1, 5]
    );
    assert_eq!(
        [
            timing::Stage::Start,
            timing::Stage::Stop,
            timing::Stage::Cron
        ]
        .map(i32::from),
        [0, 1, 2]
    );
    assert_eq!(
        [
            timing::Status::Ok,
            timing::Status::ExitFailure,
            timing::Status::TimedOut,
            timing::Status::PipesLeftOpen
        ]
        .map(i32::from),
        [0, 1, 2, 3]
    );
    assert_eq!(
        [connection::Action::Connect, connection::Action::Disconnect].map(i32::from),
        [1, 2]
    );
    assert_eq!(
        [
            connection::Type::Ssh,
            connection::Type::Vscode,
            connection::Type::Jetbrains,
            connection::Type::ReconnectingPty
        ]
        .map(i32::from),
        [1, 2, 3, 4]
    );
    use update_app_status_request::AppStatusState;
    assert_eq!(
        [
            AppStatusState::Working,
            AppStatusState::Idle,
            AppStatusState::Complete,
            AppStatusState::Failure
        ]
        .map(i32::from),
        [0, 1, 2, 3]
    );
    assert_eq!(
        [
            PeerUpdateKind::Unspecified,
            PeerUpdateKind::Node,
            PeerUpdateKind::Disconnected,
            PeerUpdateKind::Lost,
            PeerUpdateKind::ReadyForHandshake
        ]
        .map(i32::from),
        [0, 1, 2, 3, 4]
    );
}

// ---------------------------------------------------------------------------
// Round trips.

#[test]
fn every_message_round_trips() {
    roundtrip(&full_manifest());
    roundtrip(&full_script());
    roundtrip(&full_app());
    roundtrip(&full_healthcheck());
    roundtrip(&full_result());
    roundtrip(&full_description());
    roundtrip(&WorkspaceAgentMetadata {
        result: Some(full_result()),
        description: Some(full_description()),
    });
    roundtrip(&full_devcontainer());
    roundtrip(&full_secret());
    roundtrip(&ServiceBanner {
        enabled: true,
        message: "m".into(),
        background_color: "#fff".into(),
    });
    roundtrip(&full_stats());
    roundtrip(&UpdateStatsRequest {
        stats: Some(full_stats()),
    });
    roundtrip(&UpdateStatsResponse {
        report_interval: dur(30),
    });
    roundtrip(&full_lifecycle());
    roundtrip(&UpdateLifecycleRequest {
        lifecycle: Some(full_lifecycle()),
    });
    roundtrip(&BatchUpdateAppHealthRequest {
        updates: vec![batch_update_app_health_request::HealthUpdate {
            id: id(1),
            health: AppHealth::Initializing.into(),
        }],
    });
    roundtrip(&full_startup());
    roundtrip(&UpdateStartupRequest {
        startup: Some(full_startup()),
    });
    roundtrip(&BatchUpdateMetadataRequest {
        metadata: vec![batch_update_metadata_request::Metadata {
            key: "load".into(),
            result: Some(full_result()),
        }],
    });
    roundtrip(&full_log());
    roundtrip(&BatchCreateLogsRequest {
        log_source_id: id(1),
        logs: vec![full_log(), full_log()],
    });
    roundtrip(&BatchCreateLogsResponse {
        log_limit_exceeded: true,
    });
    roundtrip(&GetAnnouncementBannersResponse {
        announcement_banners: vec![BannerConfig {
            enabled: true,
            message: "m".into(),
            background_color: "#fff".into(),
        }],
    });
    roundtrip(&full_timing());
    roundtrip(&WorkspaceAgentScriptCompletedRequest {
        timing: Some(full_timing()),
    });
    roundtrip(&full_monitoring_configuration());
    roundtrip(&full_connection());
    roundtrip(&ReportConnectionRequest {
        connection: Some(full_connection()),
    });
    roundtrip(&UpdateAppStatusRequest {
        slug: "code".into(),
        state: update_app_status_request::AppStatusState::Idle.into(),
        message: "waiting".into(),
        uri: "https://example.com".into(),
    });
    roundtrip(&ListSubAgentsResponse {
        agents: vec![SubAgent {
            name: "app".into(),
            id: id(1),
            auth_token: id(2),
        }],
    });
    roundtrip(&PushContextStateResponse { accepted: true });

    roundtrip(&full_derp_node());
    roundtrip(&full_region());
    roundtrip(&full_derp_map());
    roundtrip(&full_node());
    roundtrip(&full_coordinate_request());
    roundtrip(&CoordinateResponse {
        error: "ready for handshake error: no tunnel".into(),
        ..Default::default()
    });
    roundtrip(&CoordinateResponse {
        peer_updates: vec![
            crate::rpc::proto::tailnet::coordinate_response::PeerUpdate {
                id: vec![7; 16],
                node: Some(full_node()),
                kind: 4,
                reason: "add tunnel".into(),
            },
        ],
        error: String::new(),
    });
}

#[test]
fn default_values_encode_to_nothing_and_round_trip() {
    fn empty<M: Message + Default + PartialEq + std::fmt::Debug>() {
        assert!(roundtrip(&M::default()).is_empty());
    }
    empty::<GetManifestRequest>();
    empty::<Manifest>();
    empty::<WorkspaceAgentScript>();
    empty::<WorkspaceApp>();
    empty::<workspace_app::Healthcheck>();
    empty::<WorkspaceAgentMetadata>();
    empty::<workspace_agent_metadata::Result>();
    empty::<workspace_agent_metadata::Description>();
    empty::<WorkspaceAgentDevcontainer>();
    empty::<WorkspaceSecret>();
    empty::<GetServiceBannerRequest>();
    empty::<ServiceBanner>();
    empty::<Stats>();
    empty::<UpdateStatsRequest>();
    empty::<UpdateStatsResponse>();
    empty::<Lifecycle>();
    empty::<UpdateLifecycleRequest>();
    empty::<BatchUpdateAppHealthRequest>();
    empty::<batch_update_app_health_request::HealthUpdate>();
    empty::<BatchUpdateAppHealthResponse>();
    empty::<Startup>();
    empty::<UpdateStartupRequest>();
    empty::<BatchUpdateMetadataRequest>();
    empty::<batch_update_metadata_request::Metadata>();
    empty::<BatchUpdateMetadataResponse>();
    empty::<Log>();
    empty::<BatchCreateLogsRequest>();
    empty::<BatchCreateLogsResponse>();
    empty::<GetAnnouncementBannersRequest>();
    empty::<GetAnnouncementBannersResponse>();
    empty::<BannerConfig>();
    empty::<Timing>();
    empty::<WorkspaceAgentScriptCompletedRequest>();
    empty::<WorkspaceAgentScriptCompletedResponse>();
    empty::<GetResourcesMonitoringConfigurationRequest>();
    empty::<GetResourcesMonitoringConfigurationResponse>();
    empty::<PushResourcesMonitoringUsageResponse>();
    empty::<Connection>();
    empty::<ReportConnectionRequest>();
    empty::<super::Empty>();
    empty::<SubAgent>();
    empty::<ListSubAgentsResponse>();
    empty::<ReportBoundaryLogsResponse>();
    empty::<UpdateAppStatusRequest>();
    empty::<UpdateAppStatusResponse>();
    empty::<PushContextStateResponse>();
    empty::<StreamDerpMapsRequest>();
    empty::<DerpMap>();
    empty::<derp_map::HomeParams>();
    empty::<derp_map::Region>();
    empty::<derp_map::region::Node>();
    empty::<tailnet::Node>();
    empty::<CoordinateRequest>();
    empty::<coordinate_request::UpdateSelf>();
    empty::<coordinate_request::Disconnect>();
    empty::<coordinate_request::Tunnel>();
    empty::<coordinate_request::ReadyForHandshake>();
    empty::<CoordinateResponse>();
    empty::<PostTelemetryResponse>();
    empty::<RefreshResumeTokenRequest>();
}

#[test]
fn optional_fields_keep_presence() {
    // parent_id (18), subagent_id (5) and reason (7) are `optional`: set to
    // empty they are still sent, and decode as Some.
    let manifest = Manifest {
        parent_id: Some(Vec::new()),
        ..Default::default()
    };
    assert_eq!(roundtrip(&manifest), [0x92, 0x01, 0x00]);
    let connection = Connection {
        reason: Some(String::new()),
        ..Default::default()
    };
    // reason: field 7 wire 2 = 0x3A, length 0.
    assert_eq!(roundtrip(&connection), [0x3A, 0x00]);
    let devcontainer = WorkspaceAgentDevcontainer {
        subagent_id: Some(Vec::new()),
        ..Default::default()
    };
    assert_eq!(roundtrip(&devcontainer), [0x2A, 0x00]);
}

// ---------------------------------------------------------------------------
// Forward compatibility and hostile input.

/// One unknown field of every wire type, numbered 1000-1004 (no message
/// here has fields that high): varint, length-delimited, eight bytes, four
/// bytes, and a (deprecated) group holding a varint field.
fn unknown_fields() -> Vec<u8> {
    [
        // 1000<<3|0 = 8000 = 0x1F40: 0x40 | 0x80 = 0xC0, then 8000>>7 = 0x3E;
        // value 1.
        &[0xC0, 0x3E, 0x01][..],
        // 1001<<3|2 = 8010 -> 0xCA 0x3E, length 3.
        &[0xCA, 0x3E, 0x03, b'a', b'b', b'c'],
        // 1002<<3|1 = 8017 -> 0xD1 0x3E, eight bytes.
        &[0xD1, 0x3E, 1, 2, 3, 4, 5, 6, 7, 8],
        // 1003<<3|5 = 8029 -> 0xDD 0x3E, four bytes.
        &[0xDD, 0x3E, 1, 2, 3, 4],
        // 1004<<3|3 = 8035 -> 0xE3 0x3E (start group), field 1 varint 5,
        // 1004<<3|4 = 8036 -> 0xE4 0x3E (end group).
        &[0xE3, 0x3E, 0x08, 0x05, 0xE4, 0x3E],
    ]
    .concat()
}

fn skips_unknown<M: Message + Default + PartialEq + std::fmt::Debug>(message: M) {
    let known = message.encode_to_vec();
    // Unknown fields before and after the known ones.
    let mut bytes = unknown_fields();
    bytes.extend_from_slice(&known);
    bytes.extend_from_slice(&unknown_fields());
    let decoded = M::decode(bytes.as_slice()).expect("unknown fields are skipped");
    assert_eq!(decoded, message);
    // They are dropped, not kept: re-encoding gives the known fields only.
    assert_eq!(decoded.encode_to_vec(), known);
}

#[test]
fn unknown_fields_are_skipped() {
    skips_unknown(full_manifest());
    skips_unknown(UpdateLifecycleRequest {
        lifecycle: Some(full_lifecycle()),
    });
    skips_unknown(full_lifecycle());
    skips_unknown(BatchCreateLogsRequest {
        log_source_id: id(1),
        logs: vec![full_log()],
    });
    skips_unknown(full_log());
    skips_unknown(full_stats());
    skips_unknown(full_coordinate_request());
    skips_unknown(full_node());
    skips_unknown(full_derp_map());
    skips_unknown(GetManifestRequest {});
    skips_unknown::<super::Empty>(());

    // And inside a nested message: the log's own fields get an unknown one.
    let mut log = full_log().encode_to_vec();
    log.extend_from_slice(&unknown_fields());
    let mut request = vec![0x12];
    prost::encoding::encode_varint(log.len() as u64, &mut request);
    request.extend_from_slice(&log);
    let decoded = BatchCreateLogsRequest::decode(request.as_slice()).expect("decodes");
    assert_eq!(decoded.logs, [full_log()]);
}

#[test]
fn stats_metrics_field_twelve_is_skipped() {
    // An agent sends its metrics in Stats field 12, which is left out here:
    // the field, whatever it holds, must not fail UpdateStats (fatal to the
    // agent).
    let mut stats = full_stats().encode_to_vec();
    // 12<<3|2 = 0x62, a 14-byte message: 3 (field 1 "x") + 2 (field 2
    // varint 1) + 9 (field 3 wire 1: 3<<3|1 = 0x19, a double).
    stats.extend_from_slice(&[0x62, 0x0E, 0x0A, 0x01, b'x', 0x10, 0x01, 0x19]);
    stats.extend_from_slice(&1.0f64.to_le_bytes());
    let mut request = vec![0x0A];
    prost::encoding::encode_varint(stats.len() as u64, &mut request);
    request.extend_from_slice(&stats);
    let decoded = UpdateStatsRequest::decode(request.as_slice()).expect("decodes");
    assert_eq!(decoded.stats, Some(full_stats()));
}

#[test]
fn unknown_enum_values_decode_and_are_kept() {
    // Lifecycle.state = 42: 0x08 0x2A.
    let lifecycle = Lifecycle::decode(&[0x08, 0x2A][..]).expect("decodes");
    assert_eq!(lifecycle.state, 42);
    // The typed getter falls back to the zero value; the raw value survives
    // a re-encoding.
    assert_eq!(lifecycle.state(), lifecycle::State::Unspecified);
    assert_eq!(lifecycle.encode_to_vec(), [0x08, 0x2A]);

    // A negative value: -1 as a varint is ten bytes (sign-extended to 64 bits).
    let negative = [
        0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01,
    ];
    let lifecycle = Lifecycle::decode(&negative[..]).expect("decodes");
    assert_eq!(lifecycle.state, -1);
    assert_eq!(lifecycle.encode_to_vec(), negative);

    // In a packed repeated enum (subsystems, field 3): 1, 99.
    let startup = Startup::decode(&[0x1A, 0x02, 0x01, 0x63][..]).expect("decodes");
    assert_eq!(startup.subsystems, [1, 99]);
    assert_eq!(
        startup.subsystems().collect::<Vec<_>>(),
        [startup::Subsystem::Envbox]
    );
    // The unpacked form of the same list decodes too (wire 0, twice).
    let unpacked = Startup::decode(&[0x18, 0x01, 0x18, 0x63][..]).expect("decodes");
    assert_eq!(unpacked, startup);

    let health =
        batch_update_app_health_request::HealthUpdate::decode(&[0x10, 0x07][..]).expect("decodes");
    assert_eq!(health.health, 7);
    assert_eq!(health.health(), AppHealth::Unspecified);
    let connection = Connection::decode(&[0x10, 0x09, 0x18, 0x09][..]).expect("decodes");
    assert_eq!((connection.action, connection.r#type), (9, 9));
    let timing = Timing::decode(&[0x28, 0x05, 0x30, 0x05][..]).expect("decodes");
    assert_eq!((timing.stage, timing.status), (5, 5));
    assert_eq!(timing.stage(), timing::Stage::Start);
}

#[test]
fn a_length_past_the_end_is_refused_without_allocating_it() {
    // logs (field 2) claiming 2^32 - 1 bytes: refused, not allocated.
    let claim = [0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F];
    assert!(BatchCreateLogsRequest::decode(&claim[..]).is_err());
    // log_source_id claiming 17 bytes with 16 present.
    let mut short = vec![0x0A, 0x11];
    short.extend_from_slice(&id(1));
    assert!(BatchCreateLogsRequest::decode(short.as_slice()).is_err());
    // A varint longer than ten bytes.
    assert!(
        Lifecycle::decode(
            &[
                0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01
            ][..]
        )
        .is_err()
    );
    // Field number 0 and wire types 6 and 7 are invalid.
    assert!(Lifecycle::decode(&[0x00, 0x01][..]).is_err());
    assert!(Lifecycle::decode(&[0x0E][..]).is_err());
    assert!(Lifecycle::decode(&[0x0F][..]).is_err());
    // A string that is not UTF-8.
    assert!(Log::decode(&[0x12, 0x01, 0xFF][..]).is_err());
    // The wrong wire type for a known field (state as length-delimited).
    assert!(Lifecycle::decode(&[0x0A, 0x00][..]).is_err());
}

#[test]
fn repeated_request_elements_fit_the_fuzz_targets_bound() {
    // fuzz/fuzz_targets/rpc_requests.rs bounds what a decode holds by the
    // largest element of a repeated field in a request that 2 input bytes
    // (key, length 0) can create: 104 bytes. A bigger element needs a bigger
    // AMPLIFICATION there.
    use std::mem::size_of;
    let elements = [
        ("Log", size_of::<Log>()),
        (
            "HealthUpdate",
            size_of::<batch_update_app_health_request::HealthUpdate>(),
        ),
        (
            "Metadata",
            size_of::<batch_update_metadata_request::Metadata>(),
        ),
        (
            "ReadyForHandshake",
            size_of::<coordinate_request::ReadyForHandshake>(),
        ),
        ("String (Node's lists)", size_of::<String>()),
    ];
    for (name, size) in elements {
        assert!(size <= 104, "{name} is {size} bytes");
    }
    assert_eq!(
        size_of::<batch_update_metadata_request::Metadata>(),
        104,
        "the fuzz target's figure"
    );
}

#[test]
fn every_prefix_and_every_byte_flip_decodes_or_errs() {
    // No panics on truncated or corrupted input (the fuzz target goes
    // further). Each prefix and each single-byte corruption either decodes
    // or is an error.
    fn hammer<M: Message + Default>(bytes: &[u8]) {
        for end in 0..=bytes.len() {
            let _ = M::decode(&bytes[..end]);
        }
        for i in 0..bytes.len() {
            for value in [0x00, 0x01, 0x7F, 0x80, 0xFF] {
                let mut corrupt = bytes.to_vec();
                corrupt[i] = value;
                if let Ok(m) = M::decode(corrupt.as_slice()) {
                    assert_eq!(m.encode_to_vec().len(), m.encoded_len());
                }
            }
        }
    }
    hammer::<Manifest>(&full_manifest().encode_to_vec());
    hammer::<CoordinateRequest>(&full_coordinate_request().encode_to_vec());
    hammer::<UpdateStatsRequest>(
        &UpdateStatsRequest {
            stats: Some(full_stats()),
        }
        .encode_to_vec(),
    );
    hammer::<BatchCreateLogsRequest>(
        &BatchCreateLogsRequest {
            log_source_id: id(1),
            logs: vec![full_log()],
        }
        .encode_to_vec(),
    );
}

// ---------------------------------------------------------------------------
// The method table.

#[test]
fn method_table_names_every_rpc_once() {
    assert_eq!(METHODS.len(), 24);
    let agent = METHODS
        .iter()
        .filter(|m| m.name.starts_with("/coder.agent.v2.Agent/"))
        .count();
    let tailnet = METHODS
        .iter()
        .filter(|m| m.name.starts_with("/coder.tailnet.v2.Tailnet/"))
        .count();
    assert_eq!((agent, tailnet), (19, 5));
    let mut names: Vec<&str> = METHODS.iter().map(|m| m.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), METHODS.len());
    for method in METHODS {
        // `/<package>.<Service>/<Method>`, ASCII, one method segment.
        let rest = method.name.strip_prefix('/').expect("leading slash");
        let (service, name) = rest.split_once('/').expect("service/method");
        assert!(service.starts_with("coder.") && !name.contains('/'));
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric()), "{name}");
        assert!(method.added_in >= Version::new(2, 0));
        assert!(method.added_in <= methods::CURRENT_VERSION);
        assert_eq!(methods::find(method.name), Some(method));
    }
    // §1.3's example: the Invoke body of GetManifest is 33 bytes.
    assert_eq!(methods::agent::GET_MANIFEST.len(), 33);
    assert_eq!(methods::find("/coder.agent.v2.Agent/Nope"), None);
}

#[test]
fn method_table_versions_and_kinds() {
    let added = |name| methods::find(name).expect("in the table").added_in;
    assert_eq!(added(methods::agent::GET_MANIFEST), Version::new(2, 0));
    assert_eq!(
        added(methods::agent::GET_ANNOUNCEMENT_BANNERS),
        Version::new(2, 1)
    );
    assert_eq!(added(methods::agent::SCRIPT_COMPLETED), Version::new(2, 3));
    assert_eq!(added(methods::agent::REPORT_CONNECTION), Version::new(2, 4));
    assert_eq!(added(methods::agent::LIST_SUB_AGENTS), Version::new(2, 6));
    assert_eq!(
        added(methods::agent::REPORT_BOUNDARY_LOGS),
        Version::new(2, 7)
    );
    assert_eq!(added(methods::agent::UPDATE_APP_STATUS), Version::new(2, 8));
    assert_eq!(
        added(methods::agent::PUSH_CONTEXT_STATE),
        Version::new(2, 10)
    );
    assert_eq!(added(methods::tailnet::POST_TELEMETRY), Version::new(2, 2));
    assert_eq!(
        added(methods::tailnet::WORKSPACE_UPDATES),
        Version::new(2, 3)
    );

    // An envbuilder (2.0) client cannot call GetAnnouncementBanners; the
    // current agent (2.10) can call everything but nothing newer exists.
    let banners = methods::find(methods::agent::GET_ANNOUNCEMENT_BANNERS).expect("in the table");
    assert!(!banners.available_in(Version::new(2, 0)));
    assert!(banners.available_in(Version::new(2, 1)));
    assert!(METHODS.iter().all(|m| m.available_in(Version::new(2, 10))));
    // Versions order by minor number, not as text: 2.10 > 2.9.
    assert!(Version::new(2, 10) > Version::new(2, 9));
    assert_eq!(methods::CURRENT_VERSION.to_string(), "2.11");

    let streams: Vec<(&str, Kind)> = METHODS
        .iter()
        .filter(|m| m.kind != Kind::Unary)
        .map(|m| (m.name, m.kind))
        .collect();
    assert_eq!(
        streams,
        [
            (methods::tailnet::STREAM_DERP_MAPS, Kind::ServerStream),
            (methods::tailnet::COORDINATE, Kind::Bidi),
            (methods::tailnet::WORKSPACE_UPDATES, Kind::ServerStream),
        ]
    );
}
