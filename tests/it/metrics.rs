//! `GET /metrics`: the Prometheus text format, the figures moving with
//! requests, log batches, sign-ins and follow sockets, and the token gate.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Auth, Options, Resp, TestServer};
use crate::identity_support::{AWS, GOOGLE, post, post_raw};
use crate::logs_support::*;

/// Parses the exposition text, checking its shape: every sample line is
/// `name{labels} value` with a numeric value, and every sample's family has
/// a `# TYPE` line before it. Returns series (name plus labels) → value.
#[track_caller]
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut typed: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "type of {name}: {kind}"
            );
            assert!(
                typed.insert(name.to_string(), kind.to_string()).is_none(),
                "one TYPE for {name}"
            );
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "unexpected line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("a numeric value in {line:?}"));
        let name = series.split('{').next().expect("name");
        assert!(
            name.starts_with("appliance_")
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "metric name {name:?}"
        );
        if let Some(labels) = series.strip_prefix(name)
            && !labels.is_empty()
        {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "{line:?}");
            for pair in labels[1..labels.len() - 1].split("\",") {
                let (k, v) = pair
                    .split_once("=\"")
                    .unwrap_or_else(|| panic!("label in {line:?}"));
                assert!(
                    k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{line:?}"
                );
                assert!(!v.trim_end_matches('"').contains('"'), "{line:?}");
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| typed.get(*f).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(typed.contains_key(family), "no # TYPE before {line:?}");
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "{series} twice"
        );
    }
    samples
}

#[track_caller]
fn scrape_with(server: &TestServer, auth: Auth<'_>) -> Resp {
    server.get_with("/metrics", auth)
}

#[track_caller]
fn scrape(server: &TestServer) -> BTreeMap<String, f64> {
    let resp = scrape_with(server, Auth::None);
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse(&resp.body)
}

fn get(m: &BTreeMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

const HEALTHZ_200: &str = "appliance_http_requests_total{route=\"/healthz\",status=\"200\"}";
const PATCH_200: &str =
    "appliance_http_requests_total{route=\"/api/v2/workspaceagents/me/logs\",status=\"200\"}";
const LINES: &str = "appliance_log_lines_ingested_total";
const BYTES: &str = "appliance_log_bytes_ingested_total";
const OVERFLOWS: &str = "appliance_log_overflows_total";
const WEBSOCKETS: &str = "appliance_streams_open{kind=\"websocket\"}";

fn sign_ins(cloud: &str, outcome: &str) -> String {
    format!("appliance_instance_identity_signins_total{{cloud=\"{cloud}\",outcome=\"{outcome}\"}}")
}

#[test]
fn the_figures_move_with_requests_logs_sign_ins_and_follow_sockets() {
    let fx = Fixture::with_config("[logs]\nmax_bytes_per_agent = 1024\n");
    let before = scrape(&fx.server);
    assert_eq!(
        get(&before, "appliance_agents_live"),
        2.0,
        "dev has two agents"
    );
    assert!(get(&before, "appliance_database_size_bytes") > 0.0);
    assert_eq!(get(&before, WEBSOCKETS), 0.0);
    assert_eq!(get(&before, "appliance_streams_open{kind=\"sse\"}"), 0.0);
    assert_eq!(get(&before, "appliance_build_info{version=\"0.1.0\"}"), 1.0);

    for _ in 0..3 {
        assert_eq!(fx.server.get("/healthz", None).status, 200);
    }
    fx.store(&["one", "two", "three"]); // 3 lines, 11 bytes
    fx.store(&["four"]); // 1 line, 4 bytes
    let over = patch(&fx.server, &fx.token, &batch_of(&[&"x".repeat(2000)]));
    over.assert_error(413, "Logs limit exceeded");
    // Sign-ins: a proof that does not verify, a malformed body, a rate-limit-free server.
    post(
        &fx.server,
        AWS,
        &json!({"document": "{}", "signature": "AAAA"}),
    )
    .assert_error(401, "Invalid AWS identity.");
    post_raw(&fx.server, GOOGLE, b"{}").assert_error(400, "Validation failed.");
    assert_eq!(fx.server.get("/no/such/route", None).status, 404);

    let mut follower = Follower::start(&fx.server, &fx.agent, &fx.key, "");
    follower.frame(Duration::from_secs(10)); // the backlog: the socket is being served

    let after = scrape(&fx.server);
    let delta = |s: &str| get(&after, s) - get(&before, s);
    assert_eq!(delta(HEALTHZ_200), 3.0);
    assert_eq!(delta(PATCH_200), 2.0);
    assert_eq!(
        delta(
            "appliance_http_requests_total{route=\"/api/v2/workspaceagents/me/logs\",status=\"413\"}"
        ),
        1.0
    );
    assert_eq!(
        delta("appliance_http_requests_total{route=\"other\",status=\"404\"}"),
        1.0,
        "unknown paths share one label"
    );
    assert!(!after.keys().any(|k| k.contains("/no/such/route")));
    assert_eq!(delta(LINES), 4.0);
    assert_eq!(delta(BYTES), 15.0);
    assert_eq!(delta(OVERFLOWS), 1.0);
    assert_eq!(delta(&sign_ins("aws", "invalid_proof")), 1.0);
    assert_eq!(delta(&sign_ins("google", "bad_request")), 1.0);
    assert_eq!(delta(&sign_ins("aws", "success")), 0.0);
    assert_eq!(get(&after, WEBSOCKETS), 1.0, "the follower is open");

    // The histogram agrees with the counter for the same route.
    let route = "route=\"/healthz\"";
    let count = get(
        &after,
        &format!("appliance_http_request_duration_seconds_count{{{route}}}"),
    );
    assert_eq!(count, get(&after, HEALTHZ_200));
    assert_eq!(
        get(
            &after,
            &format!("appliance_http_request_duration_seconds_bucket{{{route},le=\"+Inf\"}}")
        ),
        count
    );
    let mut last = 0.0;
    for le in ["0.0005", "0.001", "0.01", "0.1", "1", "10", "+Inf"] {
        let b = get(
            &after,
            &format!("appliance_http_request_duration_seconds_bucket{{{route},le=\"{le}\"}}"),
        );
        assert!(b >= last, "buckets are cumulative at le={le}");
        last = b;
    }

    // Closing the follower brings the gauge back down (the server notices
    // the close asynchronously: poll, bounded).
    follower.close();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if get(&scrape(&fx.server), WEBSOCKETS) == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the websocket gauge never went back to 0"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_configured_token_is_required_as_a_bearer_token() {
    let server = TestServer::start_with(Options {
        config: "[metrics]\ntoken = \"scrape-secret\"\n".into(),
        ..Options::default()
    });
    for auth in [
        Auth::None,
        Auth::Bearer("wrong"),
        Auth::Header("scrape-secret"),
        Auth::Headers(&[("Authorization", "scrape-secret")]),
    ] {
        let body = scrape_with(&server, auth).assert_error(401, "Metrics token required.");
        assert!(
            body["detail"]
                .as_str()
                .unwrap_or("")
                .contains("metrics.token"),
            "{body}"
        );
    }
    let resp = scrape_with(&server, Auth::Bearer("scrape-secret"));
    assert_eq!(resp.status, 200, "{}", resp.body);
    let m = parse(&resp.body);
    assert!(m.contains_key("appliance_agents_live"));
    // The refusals were counted too, without the secret anywhere.
    assert_eq!(
        get(
            &m,
            "appliance_http_requests_total{route=\"/metrics\",status=\"401\"}"
        ),
        4.0
    );
    assert!(!resp.body.contains("scrape-secret"));
    let check = server.cli(&["check-config"]);
    assert!(!check.assert_success().stdout.contains("scrape-secret"));
}

#[test]
fn disabled_metrics_answer_like_an_unknown_route() {
    let server = TestServer::start_with(Options {
        config: "[metrics]\nenabled = false\n".into(),
        ..Options::default()
    });
    scrape_with(&server, Auth::None).assert_error(404, "Route not found.");
}
