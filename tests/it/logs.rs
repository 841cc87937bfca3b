//! Agent logs through HTTP: `PATCH /me/logs`, `POST /me/log-source` and
//! `GET /{workspaceagent}/logs` (and `/startup-logs`) as JSON, text and a
//! WebSocket follow; the per-agent cap, sanitising, truncation, crash
//! durability and retention.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::TestServer;
use crate::logs_support::*;

/// A cap large enough that no test reaches it by accident.
const NO_CAP: &str = "[logs]\nmax_bytes_per_agent = 4000000000\n";
/// What each line costs against the cap (and in `logs_length`) besides its
/// bytes.
const LINE_COST: usize = 64;

// ---------------------------------------------------------------------------
// Storing a batch
// ---------------------------------------------------------------------------

#[test]
fn a_batch_is_stored_in_order_and_shares_the_servers_receive_time() {
    let fx = Fixture::new();
    let before = time::OffsetDateTime::now_utc();
    let body = json!({
        "logs": [
            {"created_at": "2000-01-01T00:00:00Z", "output": "first", "level": "info"},
            {"created_at": "2030-06-01T12:00:00.5Z", "output": "second", "level": "warn"},
            {"created_at": "1999-12-31T23:59:59Z", "output": "third", "level": "error"},
        ]
    });
    store(&fx.server, &fx.token, &body);
    let after = time::OffsetDateTime::now_utc();
    store(&fx.server, &fx.token, &batch_of(&["fourth"]));

    let rows = fx.logs("");
    assert_eq!(outputs(&rows), ["first", "second", "third", "fourth"]);
    let ids = ids(&rows);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids ascend in the order the lines were sent: {ids:?}"
    );
    assert_eq!(ids[2] - ids[0], 2, "one batch gets consecutive ids");
    let levels: Vec<&str> = rows
        .iter()
        .map(|r| r["level"].as_str().expect("level"))
        .collect();
    assert_eq!(levels, ["info", "warn", "error", "info"]);
    for row in &rows {
        let keys: BTreeSet<&str> = row
            .as_object()
            .expect("object")
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from(["id", "created_at", "output", "level", "source_id"]),
            "{row}"
        );
        assert_eq!(row["source_id"], EXTERNAL);
    }
    // One receive time for the whole batch; the client's times are ignored.
    assert_eq!(rows[0]["created_at"], rows[1]["created_at"]);
    assert_eq!(rows[1]["created_at"], rows[2]["created_at"]);
    let at = timestamp(&rows[0]["created_at"]);
    let slack = time::Duration::seconds(2);
    assert!(
        before - slack <= at && at <= after + slack,
        "created_at {at} is the server's receive time (between {before} and {after})"
    );
    assert!(timestamp(&rows[3]["created_at"]) >= at);

    let agent = fx.agent_json();
    assert_eq!(agent["logs_length"], 5 + 6 + 5 + 6 + 4 * LINE_COST);
    assert_eq!(agent["logs_overflowed"], false);
}

#[test]
fn an_agent_without_logs_reads_as_an_empty_array_never_null() {
    let fx = Fixture::new();
    let resp = fx.server.get(
        &format!("/api/v2/workspaceagents/{}/logs", fx.agent),
        Some(&fx.key),
    );
    assert_eq!(resp.ok_json(), json!([]));
    assert_eq!(resp.body.trim_end(), "[]");
    // Also when a range selects nothing.
    fx.store(&["x"]);
    let last = ids(&fx.logs(""))[0];
    let resp = fx.server.get(
        &format!("/api/v2/workspaceagents/{}/logs?after={last}", fx.agent),
        Some(&fx.key),
    );
    assert_eq!(resp.body.trim_end(), "[]");
    // And as text: an empty body.
    let resp = fx.server.get(
        &format!(
            "/api/v2/workspaceagents/{}/logs?format=text",
            fx.id_of("side")
        ),
        Some(&fx.key),
    );
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(resp.body, "");
}

#[test]
fn levels_are_the_five_names_and_empty_or_missing_means_info() {
    let fx = Fixture::new();
    let body = json!({"logs": [
        {"output": "t", "level": "trace"},
        {"output": "d", "level": "debug"},
        {"output": "i", "level": "info"},
        {"output": "w", "level": "warn"},
        {"output": "e", "level": "error"},
        {"output": "empty", "level": ""},
        {"output": "missing"},
    ]});
    store(&fx.server, &fx.token, &body);
    let rows = fx.logs("");
    let levels: Vec<&str> = rows
        .iter()
        .map(|r| r["level"].as_str().expect("level"))
        .collect();
    assert_eq!(
        levels,
        ["trace", "debug", "info", "warn", "error", "info", "info"]
    );
    let length = fx.agent_json()["logs_length"].clone();

    for bad in ["INFO", "Warn", "fatal", "warning", " info", "critical"] {
        // A bad level anywhere refuses the whole batch.
        let body = json!({"logs": [
            {"output": "fine", "level": "info"},
            {"output": "bad", "level": bad},
        ]});
        let resp = patch(&fx.server, &fx.token, &body);
        let err = resp.assert_error(400, "Invalid log level provided.");
        assert_eq!(
            err["detail"],
            format!("invalid log level: \"{bad}\""),
            "detail for {bad:?}"
        );
    }
    assert_eq!(fx.logs("").len(), 7, "refused batches store nothing");
    assert_eq!(fx.agent_json()["logs_length"], length, "nor count");
}

#[test]
fn empty_batches_and_bad_json_are_refused() {
    let fx = Fixture::new();
    for body in [
        r#"{"logs":[]}"#,
        "{}",
        r#"{"log_source_id":"3b579bf4-1ed8-4b99-87a8-e9a1e3410410"}"#,
    ] {
        let resp = patch_raw(&fx.server, Some(&fx.token), body.as_bytes());
        resp.assert_error(400, "No logs provided.");
    }
    for body in ["", "not json", r#"{"logs":"#, r#"{"logs":[{"output":1}]}"#] {
        let resp = patch_raw(&fx.server, Some(&fx.token), body.as_bytes());
        let err = resp.assert_error(400, "Request body must be valid JSON.");
        assert!(err["detail"].is_string(), "{err}");
    }
    assert_eq!(fx.logs(""), Vec::<Value>::new());
    let agent = fx.agent_json();
    assert_eq!(agent["logs_length"], 0);
    assert_eq!(
        agent["log_sources"],
        json!([]),
        "a refused batch creates no default source"
    );
}

/// Go decodes `"logs": null` into an empty slice, so upstream answers
/// `No logs provided.` (BEHAVIOUR §1.8 step 1), not a JSON error.
#[test]
fn null_logs_count_as_no_logs() {
    let fx = Fixture::new();
    let resp = patch_raw(&fx.server, Some(&fx.token), br#"{"logs":null}"#);
    resp.assert_error(400, "No logs provided.");
}

// ---------------------------------------------------------------------------
// Sanitising and truncation
// ---------------------------------------------------------------------------

/// The raw body `{"logs":[{"output":"<output bytes>"}]}`.
fn raw_line(output: &[u8]) -> Vec<u8> {
    let mut body = br#"{"logs":[{"output":""#.to_vec();
    body.extend_from_slice(output);
    body.extend_from_slice(br#"","level":"info"}]}"#);
    body
}

#[test]
fn invalid_utf8_and_nul_become_a_cross_mark_counted_as_sanitised_bytes() {
    let fx = Fixture::new();
    let cases: [(&[u8], &str); 5] = [
        (b"a\xffb", "a\u{274C}b"),
        // An incomplete sequence (the first two bytes of U+274C) is one error.
        (b"x\xe2\x9dy", "x\u{274C}y"),
        (br"nul\u0000here", "nul\u{274C}here"),
        (br"\u0000", "\u{274C}"),
        ("ünïcode ✓".as_bytes(), "ünïcode ✓"),
    ];
    let mut expected_length = 0;
    for (raw, want) in cases {
        let resp = patch_raw(&fx.server, Some(&fx.token), &raw_line(raw));
        assert_eq!(resp.status, 200, "{raw:?}: {}", resp.body);
        let rows = fx.logs("");
        assert_eq!(rows.last().expect("a row")["output"], want, "{raw:?}");
        expected_length += want.len() + LINE_COST;
        assert_eq!(
            fx.agent_json()["logs_length"],
            expected_length,
            "logs_length counts the sanitised bytes and the line ({raw:?})"
        );
    }
    // A line that is nothing but a NUL in a multi-line batch.
    let body = json!({"logs": [{"output": "\u{0}\u{0}"}, {"output": "ok"}]});
    store(&fx.server, &fx.token, &body);
    let rows = fx.logs("");
    assert_eq!(outputs(&rows[rows.len() - 2..]), ["\u{274C}\u{274C}", "ok"]);
    expected_length += 6 + 2 + 2 * LINE_COST;
    assert_eq!(fx.agent_json()["logs_length"], expected_length);
}

/// Upstream sanitises with `strings.ToValidUTF8(s, "❌")`, which replaces each
/// *run* of invalid bytes with one ❌ (and src/ingest.rs's own unit test
/// expects `b"ok \xff\xfe end"` to become `"ok ❌ end"`).
#[test]
fn a_run_of_invalid_bytes_becomes_one_cross_mark() {
    let fx = Fixture::new();
    let resp = patch_raw(
        &fx.server,
        Some(&fx.token),
        &raw_line(b"ok \xff\xfe\xfd end"),
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    let rows = fx.logs("");
    assert_eq!(rows[0]["output"], "ok \u{274C} end");
    assert_eq!(
        fx.agent_json()["logs_length"],
        "ok \u{274C} end".len() + LINE_COST
    );
}

#[test]
fn long_lines_are_truncated_to_1024_characters_but_counted_in_full() {
    let fx = Fixture::new();
    let ascii = "x".repeat(1500);
    let multibyte = "é".repeat(1500);
    let exact = "y".repeat(1024);
    let one_over = "z".repeat(1025);
    store(
        &fx.server,
        &fx.token,
        &batch_of(&[&ascii, &multibyte, &exact, &one_over]),
    );
    let rows = fx.logs("");
    let got = outputs(&rows);
    assert_eq!(got[0], "x".repeat(1024));
    assert_eq!(got[1], "é".repeat(1024), "cut by characters, not bytes");
    assert_eq!(got[2], exact, "exactly 1024 characters is kept whole");
    assert_eq!(got[3], "z".repeat(1024));
    assert_eq!(
        fx.agent_json()["logs_length"],
        1500 + 3000 + 1024 + 1025 + 4 * LINE_COST,
        "the full bytes of each line count"
    );
    // The text format shows the stored (cut) line.
    let text = fx
        .server
        .get(
            &format!("/api/v2/workspaceagents/{}/logs?format=text", fx.agent),
            Some(&fx.key),
        )
        .body;
    let first = text.lines().next().expect("a line");
    assert!(
        first.ends_with(&format!(" {}", "x".repeat(1024))),
        "{first}"
    );
    assert!(!first.contains(&"x".repeat(1025)));
}

// ---------------------------------------------------------------------------
// The per-agent cap
// ---------------------------------------------------------------------------

#[test]
fn the_cap_refuses_whole_batches_and_later_batches_that_fit_are_accepted() {
    // 1024 is the smallest cap the config accepts. A line costs its bytes
    // plus LINE_COST.
    let fx = Fixture::with_config("[logs]\nmax_bytes_per_agent = 1024\n");
    let length = || {
        fx.agent_json()["logs_length"]
            .as_i64()
            .expect("logs_length")
    };
    let overflowed = || fx.agent_json()["logs_overflowed"].as_bool().expect("bool");

    fx.store(&[&"a".repeat(808)]);
    assert_eq!(length(), 872);

    // One byte over (89 + 64 = 153 > 152 left): refused whole, no detail the
    // first time, marks overflow.
    let resp = patch(&fx.server, &fx.token, &batch_of(&[&"b".repeat(89)]));
    let err = resp.assert_error(413, "Logs limit exceeded");
    assert!(
        err.get("detail").is_none(),
        "no detail the first time: {err}"
    );
    assert_eq!(length(), 872, "nothing counted");
    assert!(overflowed());

    // Again: still refused; now it says why.
    let resp = patch(&fx.server, &fx.token, &batch_of(&[&"b".repeat(89)]));
    let err = resp.assert_error(413, "Logs limit exceeded");
    let detail = err["detail"].as_str().expect("a detail once overflowed");
    assert!(detail.contains("1024"), "names the limit: {detail}");

    // A batch whose first line would fit is still refused whole.
    let resp = patch(
        &fx.server,
        &fx.token,
        &batch_of(&["0123456789", &"c".repeat(20)]),
    );
    resp.assert_error(413, "Logs limit exceeded");
    assert_eq!(length(), 872);
    assert_eq!(fx.logs("").len(), 1, "nothing of a refused batch is stored");

    // After overflowing, a batch that still fits is accepted: exactly the cap
    // (20 + 4 + 2 * 64 = 152).
    fx.store(&[&"d".repeat(20), "eeee"]);
    assert_eq!(length(), 1024);
    assert!(overflowed(), "the overflow mark stays");
    assert_eq!(
        outputs(&fx.logs("")),
        ["a".repeat(808), "d".repeat(20), "eeee".to_string()]
    );

    // At the cap, even an empty line is refused.
    let resp = patch(&fx.server, &fx.token, &batch_of(&[""]));
    resp.assert_error(413, "Logs limit exceeded");
    assert_eq!(length(), 1024);

    // Invalid bytes count as the 3-byte ❌: 958 + 3 + 64 = 1025 > 1024.
    let side = fx.token_of("side");
    let mut raw = vec![b'h'; 958];
    raw.push(0xff);
    let resp = patch_raw(&fx.server, Some(&side), &raw_line(&raw));
    resp.assert_error(413, "Logs limit exceeded");
    let mut raw = vec![b'h'; 957];
    raw.push(0xff);
    let resp = patch_raw(&fx.server, Some(&side), &raw_line(&raw));
    assert_eq!(resp.status, 200, "957 + 3 + 64 = 1024 fits: {}", resp.body);
    let side_agent = fx.server.get_agent(&fx.id_of("side"), &fx.key).ok_json();
    assert_eq!(side_agent["logs_length"], 1024);
    assert_eq!(side_agent["logs_overflowed"], true);
}

#[test]
fn the_cap_holds_under_concurrent_batches() {
    const BATCHES: usize = 16;
    // Ten lines of 100 (36 bytes + 64) and one empty line fit under 1064.
    let fx = Fixture::with_config("[logs]\nmax_bytes_per_agent = 1064\n");
    let url = fx.server.url(PATCH_LOGS);
    let go = Arc::new(std::sync::Barrier::new(BATCHES));
    let statuses: Vec<u16> = (0..BATCHES)
        .map(|i| {
            let (url, token, go) = (url.clone(), fx.token.clone(), go.clone());
            std::thread::spawn(move || {
                // 100 each: only ten fit under 1064.
                let line = format!("{i:02}{}", "x".repeat(34));
                let body = batch_of(&[&line]).to_string();
                go.wait();
                try_send(&url, "PATCH", Some(&token), body.as_bytes())
                    .expect("PATCH")
                    .status
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().expect("writer"))
        .collect();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 413).count();
    assert_eq!((ok, refused), (10, 6), "{statuses:?}");
    let rows = fx.logs("");
    assert_eq!(rows.len(), 10);
    let agent = fx.agent_json();
    assert_eq!(agent["logs_length"], 1000);
    assert_eq!(agent["logs_overflowed"], true);
    // What is left still fits.
    fx.store(&[""]);
    assert_eq!(fx.agent_json()["logs_length"], 1064);
}

// ---------------------------------------------------------------------------
// Log sources
// ---------------------------------------------------------------------------

#[test]
fn the_default_external_source_is_created_on_first_use() {
    let fx = Fixture::new();
    assert_eq!(fx.agent_json()["log_sources"], json!([]));
    fx.store(&["one"]);
    let sources = fx.agent_json()["log_sources"].clone();
    let sources = sources.as_array().expect("log_sources");
    assert_eq!(sources.len(), 1, "{sources:?}");
    assert_eq!(sources[0]["id"], EXTERNAL);
    assert_eq!(sources[0]["display_name"], "External");
    assert_eq!(sources[0]["icon"], "/emojis/1f310.png");
    assert_eq!(sources[0]["workspace_agent_id"], fx.agent.as_str());
    let created = sources[0]["created_at"].clone();
    timestamp(&created);

    // Later nil-source batches (absent or the nil UUID) reuse it.
    fx.store(&["two"]);
    let body = json!({
        "log_source_id": "00000000-0000-0000-0000-000000000000",
        "logs": [{"output": "three"}],
    });
    store(&fx.server, &fx.token, &body);
    let sources = fx.agent_json()["log_sources"].clone();
    assert_eq!(sources.as_array().expect("array").len(), 1);
    assert_eq!(sources[0]["created_at"], created, "created once");
    for row in fx.logs("") {
        assert_eq!(row["source_id"], EXTERNAL);
    }
    // Per agent: the other agent has none until it logs.
    let side = fx.server.get_agent(&fx.id_of("side"), &fx.key).ok_json();
    assert_eq!(side["log_sources"], json!([]));
}

#[test]
fn log_sources_are_idempotent_and_display_names_are_capped_at_127_characters() {
    let fx = Fixture::new();
    let id = "6b0bd5c4-9e0f-4b8e-8d55-6a0f7f7f0001";
    let first = post_source(
        &fx.server,
        &fx.token,
        &json!({"id": id, "display_name": "Startup Script", "icon": "/icon/x.svg"}),
    );
    assert_eq!(first.status, 201, "{}", first.body);
    let body = first.json();
    assert_eq!(body["workspace_agent_id"], fx.agent.as_str());
    assert_eq!(body["id"], id);
    assert_eq!(body["display_name"], "Startup Script");
    assert_eq!(body["icon"], "/icon/x.svg");
    timestamp(&body["created_at"]);

    // Again, with other values: 201 echoing the request; the stored row stays.
    let again = post_source(
        &fx.server,
        &fx.token,
        &json!({"id": id, "display_name": "Renamed", "icon": ""}),
    );
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(again.json()["display_name"], "Renamed");
    let sources = fx.agent_json()["log_sources"].clone();
    let sources = sources.as_array().expect("log_sources");
    assert_eq!(sources.len(), 1, "{sources:?}");
    assert_eq!(sources[0]["display_name"], "Startup Script");
    assert_eq!(sources[0]["icon"], "/icon/x.svg");

    // Display names are cut at 127 characters (not bytes).
    let long_id = "6b0bd5c4-9e0f-4b8e-8d55-6a0f7f7f0002";
    let long_name = "ñ".repeat(200);
    let resp = post_source(
        &fx.server,
        &fx.token,
        &json!({"id": long_id, "display_name": long_name, "icon": ""}),
    );
    assert_eq!(resp.status, 201, "{}", resp.body);
    assert_eq!(resp.json()["display_name"], "ñ".repeat(127));
    let sources = fx.agent_json()["log_sources"].clone();
    let stored = sources
        .as_array()
        .expect("array")
        .iter()
        .find(|s| s["id"] == long_id)
        .expect("the long-named source")
        .clone();
    assert_eq!(stored["display_name"], "ñ".repeat(127));
    let exact = "e".repeat(127);
    let resp = post_source(
        &fx.server,
        &fx.token,
        &json!({"id": "6b0bd5c4-9e0f-4b8e-8d55-6a0f7f7f0003", "display_name": exact, "icon": ""}),
    );
    assert_eq!(resp.json()["display_name"], exact);

    // Logs may name it.
    let body = json!({"log_source_id": id, "logs": [{"output": "from the script"}]});
    store(&fx.server, &fx.token, &body);
    assert_eq!(fx.logs("")[0]["source_id"], id);
}

// ---------------------------------------------------------------------------
// Reading: text, ranges, validation, the alias, access
// ---------------------------------------------------------------------------

/// `2026-01-02T03:04:05.123456Z` → `2026-01-02T03:04:05Z`.
fn to_seconds(created_at: &Value) -> String {
    let s = created_at.as_str().expect("created_at");
    match s.split_once('.') {
        Some((head, _)) => format!("{head}Z"),
        None => s.to_string(),
    }
}

#[test]
fn text_format_prints_one_line_per_log_with_agent_and_source() {
    let fx = Fixture::new();
    let script = "6b0bd5c4-9e0f-4b8e-8d55-6a0f7f7f0010";
    let resp = post_source(
        &fx.server,
        &fx.token,
        &json!({"id": script, "display_name": "Startup Script", "icon": ""}),
    );
    assert_eq!(resp.status, 201);
    store(
        &fx.server,
        &fx.token,
        &json!({"log_source_id": script, "logs": [
            {"output": "installing", "level": "info"},
            {"output": "careful", "level": "warn"},
        ]}),
    );
    store(&fx.server, &fx.token, &batch(&[("external line", "error")]));
    // A source nobody registered: the `|name` part is left out.
    let unknown = "6b0bd5c4-9e0f-4b8e-8d55-6a0f7f7f0099";
    store(
        &fx.server,
        &fx.token,
        &json!({"log_source_id": unknown, "logs": [{"output": "orphan", "level": "debug"}]}),
    );

    let rows = fx.logs("");
    let expected: Vec<String> = vec![
        format!(
            "{} [info] [agent.main|Startup Script] installing",
            to_seconds(&rows[0]["created_at"])
        ),
        format!(
            "{} [warn] [agent.main|Startup Script] careful",
            to_seconds(&rows[1]["created_at"])
        ),
        format!(
            "{} [error] [agent.main|External] external line",
            to_seconds(&rows[2]["created_at"])
        ),
        format!(
            "{} [debug] [agent.main] orphan",
            to_seconds(&rows[3]["created_at"])
        ),
    ];
    for path in ["logs", "startup-logs"] {
        let resp = fx.server.get(
            &format!("/api/v2/workspaceagents/{}/{path}?format=text", fx.agent),
            Some(&fx.key),
        );
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert_eq!(
            resp.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(resp.body, expected.join("\n") + "\n", "/{path}");
    }
    // Ranges apply to text too.
    let resp = fx.server.get(
        &format!(
            "/api/v2/workspaceagents/{}/logs?format=text&after={}&before={}",
            fx.agent, rows[0]["id"], rows[3]["id"]
        ),
        Some(&fx.key),
    );
    assert_eq!(resp.body, expected[1..3].join("\n") + "\n");
    // Decision 4: every caller who may read the agent gets text, admins too.
    fx.server.create_user("root", "admin");
    let admin = fx.server.token("root");
    let resp = fx.server.get(
        &format!("/api/v2/workspaceagents/{}/logs?format=text", fx.agent),
        Some(&admin),
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.body, expected.join("\n") + "\n");
}

#[test]
fn after_and_before_select_by_id() {
    let fx = Fixture::new();
    fx.store(&["1", "2"]);
    fx.store(&["3"]);
    fx.store(&["4", "5"]);
    let all = fx.logs("");
    let id: Vec<i64> = ids(&all);
    assert_eq!(outputs(&all), ["1", "2", "3", "4", "5"]);
    let sel = |q: String| outputs(&fx.logs(&q));
    assert_eq!(sel(format!("?after={}", id[1])), ["3", "4", "5"]);
    assert_eq!(sel(format!("?before={}", id[3])), ["1", "2", "3"]);
    assert_eq!(
        sel(format!("?after={}&before={}", id[0], id[4])),
        ["2", "3", "4"]
    );
    assert_eq!(sel(format!("?after={}", id[4])), Vec::<String>::new());
    assert_eq!(sel(format!("?before={}", id[0])), Vec::<String>::new());
    assert_eq!(
        sel(format!("?after={}&before={}", id[3], id[1])),
        Vec::<String>::new()
    );
    assert_eq!(sel("?after=0".into()), outputs(&all));
    assert_eq!(sel("?after=".into()), outputs(&all), "empty means 0");
    assert_eq!(sel("?format=json&follow=false".into()), outputs(&all));
    assert_eq!(sel("?format=".into()), outputs(&all));
    assert_eq!(
        sel(format!("?after=99999999999&before={}", i64::MAX)),
        Vec::<String>::new()
    );
    // Another agent's lines never show.
    let side = fx.token_of("side");
    store(&fx.server, &side, &batch_of(&["side line"]));
    assert_eq!(sel(String::new()), outputs(&all));
}

#[test]
fn query_parameters_are_validated_with_coders_messages() {
    let fx = Fixture::new();
    let get = |q: &str| {
        fx.server.get(
            &format!("/api/v2/workspaceagents/{}/logs{q}", fx.agent),
            Some(&fx.key),
        )
    };
    for q in ["?format=xml", "?format=TEXT", "?format=xml&after=-1"] {
        let err = get(q).assert_error(400, "Invalid format parameter.");
        assert_eq!(
            err["detail"], "Allowed values are \"json\" and \"text\".",
            "{q}"
        );
    }
    for q in [
        "?format=text&follow",
        "?format=text&follow=true",
        "?follow=1&format=text&after=-1",
    ] {
        let err = get(q).assert_error(400, "Text format is not supported with follow mode.");
        assert_eq!(
            err["detail"], "Use format=json or omit the follow parameter.",
            "{q}"
        );
    }
    for (name, value) in [
        ("after", "-1"),
        ("after", "abc"),
        ("after", "1.5"),
        ("after", "99999999999999999999"),
        ("before", "-5"),
        ("before", "x"),
    ] {
        let err = get(&format!("?{name}={value}")).assert_error(
            400,
            &format!("Query param \"{name}\" must be an integer greater than or equal to zero."),
        );
        assert_eq!(
            err["validations"],
            json!([{"field": name, "detail": "Must be an integer greater than or equal to zero"}]),
            "{name}={value}"
        );
    }
    let err = get("?follow=maybe").assert_error(400, "Query param \"follow\" must be a boolean.");
    assert_eq!(err["validations"][0]["field"], "follow");
    // `follow=false` is off (decision 4): text is fine then.
    assert_eq!(get("?format=text&follow=false").status, 200);
    assert_eq!(get("?format=text&follow=0").status, 200);
}

#[test]
fn startup_logs_is_an_alias_of_logs() {
    let fx = Fixture::new();
    fx.store(&["a", "b", "c"]);
    for q in ["", "?after=0", "?before=999999"] {
        let a = fx.server.get(
            &format!("/api/v2/workspaceagents/{}/logs{q}", fx.agent),
            Some(&fx.key),
        );
        let b = fx.server.get(
            &format!("/api/v2/workspaceagents/{}/startup-logs{q}", fx.agent),
            Some(&fx.key),
        );
        assert_eq!(b.ok_json(), a.ok_json(), "{q}");
    }
    let id = ids(&fx.logs(""))[0];
    let b = fx.server.get(
        &format!(
            "/api/v2/workspaceagents/{}/startup-logs?after={id}",
            fx.agent
        ),
        Some(&fx.key),
    );
    assert_eq!(outputs(b.ok_json().as_array().expect("array")), ["b", "c"]);
    let err = fx
        .server
        .get(
            &format!("/api/v2/workspaceagents/{}/startup-logs?after=-1", fx.agent),
            Some(&fx.key),
        )
        .assert_error(
            400,
            "Query param \"after\" must be an integer greater than or equal to zero.",
        );
    assert_eq!(err["validations"][0]["field"], "after");
    fx.server
        .get(
            &format!("/api/v2/workspaceagents/{}/startup-logs", fx.agent),
            None,
        )
        .assert_error(
            401,
            "API key or external proxy authentication required, but none provided",
        );
    // It follows too.
    let mut f = Follower::open(&fx.server, &fx.agent, Some(&fx.key), "startup-logs", "")
        .expect("startup-logs follows");
    assert_eq!(outputs(&f.frame(Duration::from_secs(5))), ["a", "b", "c"]);
    f.close();
}

#[test]
fn reading_logs_needs_a_user_who_may_read_the_agent() {
    let fx = Fixture::new();
    fx.store(&["secret"]);
    fx.server.create_user("bob", "member");
    let bob = fx.server.token("bob");
    fx.server.create_user("root", "admin");
    let admin = fx.server.token("root");
    let path = format!("/api/v2/workspaceagents/{}/logs", fx.agent);

    assert_eq!(outputs(&fx.logs("")), ["secret"], "the owner reads");
    assert_eq!(
        outputs(&logs(&fx.server, &fx.agent, &admin, "")),
        ["secret"],
        "an admin reads"
    );
    for q in ["", "?format=text", "?follow"] {
        fx.server
            .get(&format!("{path}{q}"), Some(&bob))
            .assert_error(
                404,
                "Agent doesn't exist with that id, or you do not have access to it.",
            );
    }
    fx.server.get(&path, None).assert_error(
        401,
        "API key or external proxy authentication required, but none provided",
    );
    // An agent token is not a user credential.
    fx.server.get(&path, Some(&fx.token)).assert_error(
        401,
        "API key or external proxy authentication required, but none provided",
    );
    fx.server
        .get("/api/v2/workspaceagents/not-a-uuid/logs", Some(&fx.key))
        .assert_error(400, "Invalid UUID \"not-a-uuid\".");
    fx.server
        .get(
            &format!("/api/v2/workspaceagents/{}/logs", uuid::Uuid::new_v4()),
            Some(&fx.key),
        )
        .assert_error(
            404,
            "Agent doesn't exist with that id, or you do not have access to it.",
        );
    // After a new build the old agent is gone, logs and all.
    fx.server.apply(MANIFEST);
    for key in [&fx.key, &admin] {
        fx.server.get(&path, Some(key)).assert_error(
            404,
            "Agent doesn't exist with that id, or you do not have access to it.",
        );
    }
}

// ---------------------------------------------------------------------------
// Agent-token errors and body size
// ---------------------------------------------------------------------------

#[test]
fn patching_logs_needs_a_live_agent_token() {
    let fx = Fixture::new();
    let body = batch_of(&["hello"]).to_string();
    let body = body.as_bytes();

    let resp = patch_raw(&fx.server, None, body);
    resp.assert_error(401, "Cookie \"coder_session_token\" must be provided.");

    let err = patch_raw(&fx.server, Some("not-a-uuid"), body)
        .assert_error(401, "Workspace agent token invalid.");
    assert_eq!(
        err["detail"],
        "An agent token must be a valid UUIDv4. (len 10)"
    );
    // A user's API key is not an agent token.
    let err = patch_raw(&fx.server, Some(&fx.key), body)
        .assert_error(401, "Workspace agent token invalid.");
    assert_eq!(
        err["detail"],
        format!(
            "An agent token must be a valid UUIDv4. (len {})",
            fx.key.len()
        )
    );

    let unknown = uuid::Uuid::new_v4().to_string();
    let err = patch_raw(&fx.server, Some(&unknown), body)
        .assert_error(401, "Workspace agent not authorized.");
    assert_eq!(
        err["detail"],
        "The agent cannot authenticate until the workspace provision job has been completed. If the job is no longer running, this agent is invalid."
    );

    // The token works, then the agent is replaced by a new build.
    store(&fx.server, &fx.token, &batch_of(&["hello"]));
    let second = fx.server.apply(MANIFEST);
    patch_raw(&fx.server, Some(&fx.token), body)
        .assert_error(401, "Workspace agent not authorized.");
    send(
        &fx.server,
        "POST",
        LOG_SOURCE,
        Some(&fx.token),
        br#"{"id":"6b0bd5c4-9e0f-4b8e-8d55-6a0f7f7f0001","display_name":"x","icon":""}"#,
    )
    .assert_error(401, "Workspace agent not authorized.");
    // The new build's agent has its own token and starts from nothing.
    let (new_agent, new_token) = agent_and_token(&second, "main");
    store(&fx.server, &new_token, &batch_of(&["fresh"]));
    assert_eq!(
        outputs(&logs(&fx.server, &new_agent, &fx.key, "")),
        ["fresh"]
    );
    // A stopped workspace's agents cannot log either.
    fx.server
        .cli(&["workspace", "stop", "dev"])
        .assert_success();
    patch_raw(&fx.server, Some(&new_token), body)
        .assert_error(401, "Workspace agent not authorized.");
}

/// Reads one HTTP/1.1 response (headers and a `content-length` body) from
/// `stream`; `None` if the connection ends first.
fn read_response(stream: &mut std::net::TcpStream) -> Option<(String, String)> {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().expect("content-length"));
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    Some((head, String::from_utf8_lossy(&body).into_owned()))
}

/// The server answers 401 as soon as it has the headers, before the body
/// arrives. It must then either read (drain) the body and keep serving the
/// connection, as Go's net/http does for small bodies, or say
/// `connection: close`; closing silently makes a keep-alive client's next
/// request on that connection fail ("Peer disconnected").
#[test]
fn an_early_refusal_leaves_the_connection_usable() {
    use std::io::Write;
    let fx = Fixture::new();
    let body = batch_of(&["hello"]).to_string();
    let mut stream = std::net::TcpStream::connect(fx.server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let unknown = uuid::Uuid::new_v4();
    write!(
        stream,
        "PATCH {PATCH_LOGS} HTTP/1.1\r\nHost: x\r\nCoder-Session-Token: {unknown}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .expect("send the headers");
    let (head, answer) = read_response(&mut stream).expect("a response to the headers");
    assert!(head.starts_with("http/1.1 401"), "{head}{answer}");
    if head.contains("connection: close") {
        return; // announced: a client will not reuse the connection
    }
    // The body it announced follows a moment later (a later TCP segment, a
    // slow client: the timing is the subject), then the next request.
    std::thread::sleep(Duration::from_millis(200));
    let _ = stream.write_all(body.as_bytes());
    let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let next = read_response(&mut stream);
    assert!(
        next.as_ref()
            .is_some_and(|(h, _)| h.starts_with("http/1.1 200")),
        "the 401 did not say `connection: close`, yet the next request on the \
         connection got {next:?}"
    );
}

#[test]
fn bodies_over_4_mib_are_refused() {
    let fx = Fixture::with_config(NO_CAP);
    const LIMIT: usize = 4 << 20;
    let body_of = |total: usize| {
        let head = br#"{"logs":[{"output":""#;
        let tail = br#""}]}"#;
        let mut body = head.to_vec();
        body.resize(total - tail.len(), b'q');
        body.extend_from_slice(tail);
        assert_eq!(body.len(), total);
        body
    };
    // Exactly 4 MiB is read (and its one huge line counted in full).
    let resp = patch_raw(&fx.server, Some(&fx.token), &body_of(LIMIT));
    assert_eq!(resp.status, 200, "{}", resp.body);
    let output_len = LIMIT - br#"{"logs":[{"output":""}]}"#.len();
    assert_eq!(fx.agent_json()["logs_length"], output_len + LINE_COST);
    assert_eq!(fx.logs("")[0]["output"], "q".repeat(1024));

    let resp = patch_raw(&fx.server, Some(&fx.token), &body_of(LIMIT + 1));
    let err = resp.assert_error(413, "Request body too large.");
    assert_eq!(err["detail"], "Maximum request body size is 4194304 bytes.");
    assert_eq!(fx.logs("").len(), 1);
    assert_eq!(fx.agent_json()["logs_length"], output_len + LINE_COST);
}

// ---------------------------------------------------------------------------
// Following
// ---------------------------------------------------------------------------

const FRAME_WAIT: Duration = Duration::from_secs(5);

#[test]
fn follow_without_a_websocket_upgrade_is_refused() {
    let fx = Fixture::new();
    for q in ["?follow", "?follow=true", "?follow=1&after=0"] {
        let err = fx
            .server
            .get(
                &format!("/api/v2/workspaceagents/{}/logs{q}", fx.agent),
                Some(&fx.key),
            )
            .assert_error(400, "Failed to accept websocket.");
        assert!(err["detail"].is_string(), "{err}");
    }
}

#[test]
fn follow_sends_the_backlog_then_new_lines_to_the_owner_and_an_admin() {
    let fx = Fixture::new();
    fx.server.create_user("root", "admin");
    let admin = fx.server.token("root");
    fx.server.create_user("bob", "member");
    let bob = fx.server.token("bob");

    // An agent without logs: the first frame is an empty array.
    let mut owner = Follower::start(&fx.server, &fx.agent, &fx.key, "");
    assert_eq!(owner.frame(FRAME_WAIT), Vec::<Value>::new());
    let mut root = Follower::start(&fx.server, &fx.agent, &admin, "");
    assert_eq!(root.frame(FRAME_WAIT), Vec::<Value>::new());

    // Someone else's agent: 404 before any upgrade; no key: 401.
    let (status, body) = Follower::open(&fx.server, &fx.agent, Some(&bob), "logs", "")
        .err()
        .expect("bob may not follow");
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("Agent doesn't exist with that id, or you do not have access to it."),
        "{body}"
    );
    let (status, _) = Follower::open(&fx.server, &fx.agent, None, "logs", "")
        .err()
        .expect("no key");
    assert_eq!(status, 401);

    fx.store(&["one", "two"]);
    for f in [&mut owner, &mut root] {
        let rows = f.frame(FRAME_WAIT);
        assert_eq!(outputs(&rows), ["one", "two"]);
        assert_eq!(rows, fx.logs(""), "frames carry the same objects as GET");
    }
    fx.store(&["three"]);
    for f in [&mut owner, &mut root] {
        assert_eq!(outputs(&f.frame(FRAME_WAIT)), ["three"]);
    }
    // Another agent's lines wake nobody here.
    store(&fx.server, &fx.token_of("side"), &batch_of(&["elsewhere"]));
    fx.store(&["four"]);
    assert_eq!(outputs(&owner.frame(FRAME_WAIT)), ["four"]);

    // A late follower gets the backlog after `after` in its first frame.
    let first = ids(&fx.logs(""))[0];
    let mut late = Follower::start(&fx.server, &fx.agent, &fx.key, &format!("&after={first}"));
    assert_eq!(outputs(&late.frame(FRAME_WAIT)), ["two", "three", "four"]);
    let mut all = Follower::start(&fx.server, &fx.agent, &fx.key, "&no_compression");
    assert_eq!(
        outputs(&all.frame(FRAME_WAIT)),
        ["one", "two", "three", "four"]
    );
    owner.close();
    root.close();
    late.close();
    all.close();
}

/// A follow socket opened by hand over TCP, so the test sees the handshake
/// headers and each frame's RSV1 bit and decompresses with flate2 itself:
/// an independent check of the server's permessage-deflate (RFC 7692).
struct RawFollower {
    stream: std::net::TcpStream,
    head: String,
    inflate: flate2::Decompress,
}

/// One server frame: (opcode, RSV1 set, payload as sent).
type RawFrame = (u8, bool, Vec<u8>);

impl RawFollower {
    fn open(fx: &Fixture, query: &str, extensions: &str) -> RawFollower {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(fx.server.addr).expect("connect");
        stream
            .set_read_timeout(Some(FRAME_WAIT))
            .expect("read timeout");
        let request = format!(
            "GET /api/v2/workspaceagents/{}/logs?follow{query} HTTP/1.1\r\nHost: {}\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Extensions: {extensions}\r\nCoder-Session-Token: {}\r\n\r\n",
            fx.agent, fx.server.addr, fx.key
        );
        stream
            .write_all(request.as_bytes())
            .expect("send handshake");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).expect("handshake answer");
            head.push(byte[0]);
        }
        let head = String::from_utf8(head)
            .expect("ASCII head")
            .to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        RawFollower {
            stream,
            head,
            inflate: flate2::Decompress::new(false),
        }
    }

    fn frame(&mut self) -> RawFrame {
        use std::io::Read;
        let mut h = [0u8; 2];
        self.stream.read_exact(&mut h).expect("frame header");
        assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
        assert_ne!(h[0] & 0x80, 0, "one frame per message (FIN)");
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b).expect("length");
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                self.stream.read_exact(&mut b).expect("length");
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        let mut payload = vec![0u8; len as usize];
        self.stream.read_exact(&mut payload).expect("payload");
        (h[0] & 0x0f, h[0] & 0x40 != 0, payload)
    }

    /// The JSON rows of the next text frame, inflated if it is compressed
    /// (the deflate context carries over between messages).
    fn rows(&mut self) -> (bool, usize, Vec<Value>) {
        let (opcode, compressed, payload) = self.frame();
        assert_eq!(opcode, 1, "a text frame");
        let sent = payload.len();
        let text = if compressed {
            let mut input = payload;
            input.extend_from_slice(&[0, 0, 0xff, 0xff]);
            let mut out = Vec::with_capacity(input.len() * 20 + 1024);
            let start = self.inflate.total_in();
            loop {
                let consumed = (self.inflate.total_in() - start) as usize;
                out.reserve(64 * 1024);
                self.inflate
                    .decompress_vec(&input[consumed..], &mut out, flate2::FlushDecompress::Sync)
                    .expect("valid deflate data");
                if (self.inflate.total_in() - start) as usize == input.len() {
                    break;
                }
            }
            out
        } else {
            payload
        };
        (
            compressed,
            sent,
            serde_json::from_slice(&text).expect("a JSON array"),
        )
    }
}

#[test]
fn follow_frames_are_deflated_when_offered_unless_no_compression() {
    let fx = Fixture::new();
    let lines: Vec<String> = (0..300)
        .map(|i| format!("step {i}: compiling crate number {i} of the workspace"))
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    fx.store(&refs);
    let all = fx.logs("");

    let mut f = RawFollower::open(&fx, "", "permessage-deflate; client_max_window_bits");
    assert!(
        f.head
            .contains("sec-websocket-extensions: permessage-deflate"),
        "{}",
        f.head
    );
    let (compressed, sent, rows) = f.rows();
    assert!(compressed, "the backlog frame has RSV1 set");
    assert!(rows == all, "{} rows, expected {}", rows.len(), all.len());
    let plain = serde_json::to_vec(&all).expect("json").len();
    assert!(
        sent * 4 < plain,
        "{sent} bytes sent for {plain} bytes of JSON"
    );
    // Later frames use the same compression context.
    fx.store(&["after the backlog"]);
    let (compressed, _, rows) = f.rows();
    assert!(compressed);
    assert_eq!(outputs(&rows), ["after the backlog"]);

    // no_compression: the offer is declined and frames are plain text.
    let all = fx.logs("");
    let plain = serde_json::to_vec(&all).expect("json").len();
    let mut f = RawFollower::open(&fx, "&no_compression=true", "permessage-deflate");
    assert!(!f.head.contains("sec-websocket-extensions"), "{}", f.head);
    let (compressed, sent, rows) = f.rows();
    assert!(!compressed);
    assert!(rows == all, "{} rows, expected {}", rows.len(), all.len());
    assert!(sent >= plain);

    // A client that offers nothing gets plain frames too.
    let mut f = RawFollower::open(&fx, "", "x-unknown-extension");
    assert!(!f.head.contains("sec-websocket-extensions"), "{}", f.head);
    let (compressed, _, rows) = f.rows();
    assert!(!compressed);
    assert!(rows == all, "{} rows, expected {}", rows.len(), all.len());
}

/// Reads `f` until a frame holds a line with output `sentinel`; returns every
/// frame, the first being the backlog.
fn read_until(mut f: Follower, sentinel: &str) -> Vec<Vec<Value>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut frames = Vec::new();
    loop {
        match f.next_until(deadline) {
            Some(Event::Frame(rows)) => {
                let done = rows.iter().any(|r| r["output"] == sentinel);
                frames.push(rows);
                if done {
                    f.close();
                    return frames;
                }
            }
            Some(Event::Closed(code)) => panic!("the follower was closed ({code})"),
            None => panic!(
                "no sentinel within 30 s; got {} frames, {} lines",
                frames.len(),
                frames.iter().map(Vec::len).sum::<usize>()
            ),
        }
    }
}

#[test]
fn follow_under_concurrent_writers_sees_every_line_once_in_order() {
    const WRITERS: usize = 4;
    const BATCHES: usize = 40;
    let fx = Fixture::with_config(NO_CAP);
    fx.store(&["backlog 1", "backlog 2", "backlog 3"]);
    let backlog = fx.logs("");

    // One follower before the writers start (its backlog frame read first: the
    // server reads the backlog once the upgrade completes, which may be after
    // the handshake returns here), one while they write.
    let mut early = Follower::start(&fx.server, &fx.agent, &fx.key, "");
    let early_backlog = early.frame(FRAME_WAIT);
    let early = std::thread::spawn(move || {
        let mut frames = vec![early_backlog];
        frames.extend(read_until(early, "the end"));
        frames
    });
    let url = fx.server.url(PATCH_LOGS);
    let go = Arc::new(std::sync::Barrier::new(WRITERS + 1));
    let writers: Vec<_> = (0..WRITERS)
        .map(|t| {
            let (url, token, go) = (url.clone(), fx.token.clone(), go.clone());
            std::thread::spawn(move || {
                go.wait();
                for b in 0..BATCHES {
                    let lines: Vec<String> = (0..1 + (t + b) % 5)
                        .map(|l| format!("t{t}-b{b}-l{l}"))
                        .collect();
                    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
                    let body = batch_of(&refs).to_string();
                    let resp = try_send(&url, "PATCH", Some(&token), body.as_bytes())
                        .unwrap_or_else(|e| panic!("writer {t} batch {b}: {e}"));
                    assert_eq!(resp.status, 200, "writer {t} batch {b}: {}", resp.body);
                }
            })
        })
        .collect();
    go.wait();
    let late = Follower::start(&fx.server, &fx.agent, &fx.key, "");
    let late = std::thread::spawn(move || read_until(late, "the end"));
    for w in writers {
        w.join().expect("writer");
    }
    fx.store(&["the end"]);

    let all = ids(&fx.logs(""));
    let expected_lines: usize = 3
        + 1
        + (0..WRITERS)
            .flat_map(|t| (0..BATCHES).map(move |b| 1 + (t + b) % 5))
            .sum::<usize>();
    assert_eq!(all.len(), expected_lines);
    for (name, handle) in [("early", early), ("late", late)] {
        let frames = handle.join().expect("follower");
        let seen: Vec<i64> = frames.iter().flat_map(|f| ids(f)).collect();
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "{name}: ids strictly ascend across frames (no duplicates)"
        );
        assert_eq!(seen, all, "{name}: every line exactly once, no gaps");
        for (i, f) in frames.iter().enumerate().skip(1) {
            assert!(
                !f.is_empty(),
                "{name}: frame {i} after the backlog is empty (frame sizes: {:?})",
                frames.iter().map(Vec::len).collect::<Vec<_>>()
            );
            assert!(f.len() <= 1000, "{name}: frame {i} has {} lines", f.len());
        }
        if name == "early" {
            assert_eq!(frames[0], backlog, "the first frame is the backlog");
        }
    }
}

#[test]
fn follow_closes_with_1000_when_a_new_build_is_applied_from_the_cli() {
    let fx = Fixture::new();
    let mut f = Follower::start(&fx.server, &fx.agent, &fx.key, "");
    assert_eq!(f.frame(FRAME_WAIT), Vec::<Value>::new());
    fx.store(&["one", "two", "three"]);
    // The new build comes from another process; the socket is not read meanwhile.
    fx.server.apply(MANIFEST);
    let applied = Instant::now();
    let (frames, code) = f.until_closed(applied + Duration::from_secs(2));
    assert_eq!(code, 1000, "a normal closure");
    let lines: Vec<String> = frames.iter().flat_map(|f| outputs(f)).collect();
    assert_eq!(lines, ["one", "two", "three"], "every line, then the close");
    assert!(
        applied.elapsed() < Duration::from_secs(2),
        "closed {:?} after the apply",
        applied.elapsed()
    );
    // Following the replaced agent is no longer possible.
    let (status, _) = Follower::open(&fx.server, &fx.agent, Some(&fx.key), "logs", "")
        .err()
        .expect("the old agent is gone");
    assert_eq!(status, 404);
}

#[test]
fn follow_closes_with_1000_when_the_workspace_is_stopped() {
    let fx = Fixture::new();
    fx.store(&["backlog"]);
    let mut f = Follower::start(&fx.server, &fx.agent, &fx.key, "");
    assert_eq!(outputs(&f.frame(FRAME_WAIT)), ["backlog"]);
    let mut side = Follower::start(&fx.server, &fx.id_of("side"), &fx.key, "");
    assert_eq!(side.frame(FRAME_WAIT), Vec::<Value>::new());
    fx.store(&["last words"]);
    fx.server
        .cli(&["workspace", "stop", "dev"])
        .assert_success();
    let stopped = Instant::now();
    let (frames, code) = f.until_closed(stopped + Duration::from_secs(2));
    assert_eq!(code, 1000);
    let lines: Vec<String> = frames.iter().flat_map(|f| outputs(f)).collect();
    assert_eq!(lines, ["last words"]);
    let (frames, code) = side.until_closed(stopped + Duration::from_secs(2));
    assert_eq!(
        (frames.len(), code),
        (0, 1000),
        "the silent agent's follower too"
    );

    // Deleting a workspace closes its followers the same way.
    let other = fx
        .server
        .apply(&MANIFEST.replace("name = \"dev\"", "name = \"other\""));
    let (other_agent, other_token) = agent_and_token(&other, "main");
    store(&fx.server, &other_token, &batch_of(&["doomed"]));
    let mut f = Follower::start(&fx.server, &other_agent, &fx.key, "");
    assert_eq!(outputs(&f.frame(FRAME_WAIT)), ["doomed"]);
    fx.server
        .cli(&["workspace", "delete", "other"])
        .assert_success();
    let deleted = Instant::now();
    let (frames, code) = f.until_closed(deleted + Duration::from_secs(2));
    assert_eq!((frames.len(), code), (0, 1000));
}

// ---------------------------------------------------------------------------
// Crash durability
// ---------------------------------------------------------------------------

/// Lines in writer `t`'s batch `b`.
fn batch_len(t: usize, b: usize) -> usize {
    1 + (t * 7 + b) % 4
}

#[test]
fn acknowledged_batches_survive_kill_9_whole_and_no_batch_is_partial() {
    const WRITERS: usize = 4;
    let Fixture {
        server,
        key,
        agent,
        token,
        ..
    } = Fixture::with_config(NO_CAP);
    let sandbox = server.sandbox().clone();
    let url = server.url(PATCH_LOGS);
    let killing = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<BTreeSet<(usize, usize)>>> = Arc::default();
    let writers: Vec<_> = (0..WRITERS)
        .map(|t| {
            let (url, token, killing, acked) =
                (url.clone(), token.clone(), killing.clone(), acked.clone());
            std::thread::spawn(move || {
                for b in 0.. {
                    let lines: Vec<String> = (0..batch_len(t, b))
                        .map(|l| format!("t{t}-b{b}-l{l}"))
                        .collect();
                    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
                    let body = batch_of(&refs).to_string();
                    match try_send(&url, "PATCH", Some(&token), body.as_bytes()) {
                        Ok(resp) if resp.status == 200 => {
                            acked.lock().expect("lock").insert((t, b));
                        }
                        Ok(resp) => {
                            assert!(
                                killing.load(Ordering::SeqCst),
                                "writer {t} batch {b}: {} {}",
                                resp.status,
                                resp.body
                            );
                            return;
                        }
                        Err(e) => {
                            assert!(
                                killing.load(Ordering::SeqCst),
                                "writer {t} batch {b} failed before the kill: {e}"
                            );
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    // Time is the subject: let the writers run flat out for a while.
    std::thread::sleep(Duration::from_secs(2));
    killing.store(true, Ordering::SeqCst);
    let (status, _) = server.stop_with("-KILL");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "killed by SIGKILL: {status}"
    );
    for w in writers {
        w.join().expect("writer");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() >= 40,
        "only {} batches were acknowledged",
        acked.len()
    );

    let server = TestServer::start_in(sandbox, &[]);
    let rows = logs(&server, &agent, &key, "");
    let mut found: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
    let mut bytes = 0;
    let mut lines = 0;
    for row in &rows {
        let output = row["output"].as_str().expect("output");
        bytes += output.len();
        lines += 1;
        let parts: Vec<usize> = output
            .split('-')
            .map(|p| {
                p[1..]
                    .parse()
                    .unwrap_or_else(|_| panic!("unexpected line {output:?}"))
            })
            .collect();
        found
            .entry((parts[0], parts[1]))
            .or_default()
            .push(parts[2]);
    }
    let missing: Vec<_> = acked.iter().filter(|k| !found.contains_key(k)).collect();
    assert!(missing.is_empty(), "acknowledged batches lost: {missing:?}");
    for ((t, b), lines) in &found {
        let want: Vec<usize> = (0..batch_len(*t, *b)).collect();
        assert_eq!(lines, &want, "batch t{t}-b{b} is whole, in order, once");
    }
    // Unacknowledged batches that made it are the few in flight at the kill.
    let extra = found.len() - acked.len();
    assert!(extra <= WRITERS, "{extra} unacknowledged batches stored");
    // The length counter moved with the lines, in the same transactions.
    let agent_json = server.get_agent(&agent, &key).ok_json();
    assert_eq!(agent_json["logs_length"], bytes + lines * LINE_COST);
    // The restarted server takes new batches after the old ones.
    let last = *ids(&rows).last().expect("rows");
    store(&server, &token, &batch_of(&["after the crash"]));
    let more = logs(&server, &agent, &key, &format!("?after={last}"));
    assert_eq!(outputs(&more), ["after the crash"]);
}

// ---------------------------------------------------------------------------
// Retention
// ---------------------------------------------------------------------------

fn db_log_count(db: &std::path::Path, agent: &str) -> (i64, i64) {
    let conn = rusqlite::Connection::open(db).expect("open the database");
    conn.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    let lines = conn
        .query_row(
            "SELECT count(*) FROM workspace_agent_logs WHERE agent_id = ?1",
            [agent],
            |r| r.get(0),
        )
        .expect("count logs");
    let length = conn
        .query_row(
            "SELECT logs_length FROM workspace_agents WHERE id = ?1",
            [agent],
            |r| r.get(0),
        )
        .expect("logs_length");
    (lines, length)
}

/// The purge runs every 10 minutes, and once at startup (its interval's first
/// tick): restarting a server with `retention = "1s"` more than a second after
/// a build replaced some agents purges their logs. Old agents are 404 over
/// HTTP, so their rows are checked in the database file and the server's log.
#[test]
fn retention_purges_logs_of_replaced_agents_and_keeps_the_latest_build() {
    let fx = Fixture::with_config("[logs]\nretention = \"1s\"\n");
    let old_main = fx.agent.clone();
    let old_side = fx.id_of("side");
    fx.store(&["old 1", "old 2"]);
    store(&fx.server, &fx.token_of("side"), &batch_of(&["old side"]));
    let other = fx
        .server
        .apply(&MANIFEST.replace("name = \"dev\"", "name = \"other\""));
    let (other_agent, other_token) = agent_and_token(&other, "main");
    store(&fx.server, &other_token, &batch_of(&["stopped soon"]));

    let second = fx.server.apply(MANIFEST);
    let (new_main, new_token) = agent_and_token(&second, "main");
    store(&fx.server, &new_token, &batch_of(&["kept 1", "kept 2"]));
    fx.server
        .cli(&["workspace", "stop", "other"])
        .assert_success();
    let replaced = Instant::now();
    let kept_before = logs(&fx.server, &new_main, &fx.key, "");
    let length_before = fx.server.get_agent(&new_main, &fx.key).ok_json()["logs_length"].clone();

    let db = fx.server.sandbox().db.clone();
    let cost = |bytes: usize, lines: usize| (bytes + lines * LINE_COST) as i64;
    assert_eq!(db_log_count(&db, &old_main), (2, cost(10, 2)));
    assert_eq!(db_log_count(&db, &old_side), (1, cost(8, 1)));
    assert_eq!(db_log_count(&db, &other_agent), (1, cost(12, 1)));

    // Time is the subject: the replaced agents must be older than 1 s.
    let wait = Duration::from_millis(1300).saturating_sub(replaced.elapsed());
    std::thread::sleep(wait);
    let Fixture { server, key, .. } = fx;
    let sandbox = server.sandbox().clone();
    server.stop();
    let server = TestServer::start_in(sandbox, &[]);

    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        if let Some(l) = server
            .log()
            .into_iter()
            .find(|l| l.contains("purged logs past retention"))
        {
            break l;
        }
        assert!(
            Instant::now() < deadline,
            "no purge at startup; log:\n{}",
            server.log().join("\n")
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(line.contains("agents=3"), "{line}");
    assert!(line.contains("lines=4"), "{line}");

    for old in [&old_main, &old_side, &other_agent] {
        assert_eq!(db_log_count(&db, old), (0, 0), "agent {old} purged");
    }
    // The latest build keeps everything, however old.
    assert_eq!(logs(&server, &new_main, &key, ""), kept_before);
    assert_eq!(
        server.get_agent(&new_main, &key).ok_json()["logs_length"],
        length_before
    );
    assert_eq!(db_log_count(&db, &new_main), (2, cost(12, 2)));
}
