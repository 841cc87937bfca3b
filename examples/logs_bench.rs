//! Load generator and follower client for the agent-logs benchmark
//! (`bench/logs.sh`). Each subcommand prints one JSON object on stdout.
//!
//! ```text
//! logs_bench ingest --base URL --agents APPLY.json [--prefix ingest-] [--seconds 10] [--batch 100] [--line-bytes 80]
//! logs_bench direct --db NEW.db --rows N [--agents 16] [--batch 100] [--batches-per-tx 1] [--line-bytes 80]
//! logs_bench follow --base URL --agents APPLY.json --api-key FILE [--agent follow] [--followers 100] [--rate 50] [--seconds 5]
//! logs_bench seed   --base URL --agents APPLY.json --api-key FILE [--agent seed] [--lines 100000] [--batch 1000] [--tail 1000]
//! logs_bench fill   --base URL --agents APPLY.json --agent NAME [--batch 20000] [--line-bytes 0]
//! logs_bench read   --base URL --agents APPLY.json --api-key FILE --agent NAME [--readers 10] [--format json]
//! logs_bench stall  --base URL --agents APPLY.json --api-key FILE --agent NAME [--followers 500] [--hold 20] [--deflate true]
//! ```
//!
//! - `ingest`: one thread per agent whose name starts with PREFIX, each PATCHing
//!   BATCH-line batches back to back (one request in flight per agent) for
//!   SECONDS; lines/s and client-side request latency.
//! - `direct`: the same kind of rows written straight through the library
//!   (`Store::open` + `migrate`, so the same schema and pragmas) into a fresh
//!   file with `store::logs::insert_batch`, BATCH-row batches, BATCHES-PER-TX
//!   of them per transaction (1: one batch per transaction); rows/s.
//! - `follow`: FOLLOWERS WebSockets (`?follow=true`) on one agent, then one
//!   writer PATCHes single-line batches at RATE/s for SECONDS; latency from the
//!   PATCH response reaching the writer to each follower receiving the line
//!   (and, for reference, from the PATCH being sent).
//! - `seed`: LINES lines for one agent in BATCH-line PATCHes, then prints the
//!   `after` id that selects the agent's last TAIL lines.
//! - `fill`: PATCHes BATCH-line batches of LINE-BYTES-byte lines (default:
//!   empty lines) until the server answers 413, then halves the batch down to
//!   one line: the agent ends exactly at its cap. Lines stored and seconds.
//! - `read`: READERS concurrent `GET …/logs` of the whole agent (JSON or
//!   text), each body read as it arrives and thrown away; bytes and seconds.
//! - `stall`: FOLLOWERS follow sockets (`?follow`, from the first line)
//!   upgraded by hand over TCP that never read a byte after the handshake,
//!   held for HOLD seconds; then how many the server had closed (drained to
//!   EOF) and how many were still open. DEFLATE offers permessage-deflate as
//!   browsers do.
//!
//! APPLY.json is the output of `appliance workspace apply --output json`
//! (agent ids, names and tokens); secrets are read from files, never argv.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use appliance::manifest;
use appliance::store::{self, Options, Store, logs, users, workspaces};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use uuid::Uuid;

const USAGE: &str = "usage: logs_bench ingest|direct|follow|seed|fill|read|stall [--flag value]... (see the file's header)";
const TOKEN_HEADER: &str = "Coder-Session-Token";

type Res<T> = Result<T, String>;

/// `--name value` pairs.
struct Flags(HashMap<String, String>);

impl Flags {
    fn parse(args: impl Iterator<Item = String>) -> Res<Flags> {
        let mut map = HashMap::new();
        let mut args = args.peekable();
        while let Some(a) = args.next() {
            let name = a
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {a:?}"))?;
            let v = args
                .next()
                .ok_or_else(|| format!("--{name} needs a value"))?;
            map.insert(name.to_string(), v);
        }
        Ok(Flags(map))
    }
    fn str(&self, name: &str) -> Res<String> {
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| format!("--{name} is required"))
    }
    fn str_or(&self, name: &str, default: &str) -> String {
        self.0.get(name).cloned().unwrap_or_else(|| default.into())
    }
    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Res<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.0.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| format!("--{name} {v}: {e}")),
        }
    }
}

#[derive(Clone)]
struct Agent {
    id: Uuid,
    name: String,
    token: String,
}

fn read_agents(path: &str) -> Res<Vec<Agent>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let agents = v["agents"]
        .as_array()
        .ok_or_else(|| format!("{path}: no \"agents\" array"))?;
    agents
        .iter()
        .map(|a| {
            Ok(Agent {
                id: a["id"]
                    .as_str()
                    .and_then(|s| Uuid::parse_str(s).ok())
                    .ok_or_else(|| format!("{path}: agent without an id"))?,
                name: a["name"].as_str().unwrap_or_default().to_string(),
                token: a["token"]
                    .as_str()
                    .ok_or_else(|| format!("{path}: agent without a token (auth = \"token\"?)"))?
                    .to_string(),
            })
        })
        .collect()
}

fn agent_named(agents: &[Agent], name: &str) -> Res<Agent> {
    agents
        .iter()
        .find(|a| a.name == name)
        .cloned()
        .ok_or_else(|| format!("no agent named {name:?}"))
}

fn read_secret(path: &str) -> Res<String> {
    Ok(std::fs::read_to_string(path)
        .map_err(|e| format!("{path}: {e}"))?
        .trim()
        .to_string())
}

/// A printable ASCII line of exactly `bytes` bytes (no JSON escaping needed).
fn line(prefix: &str, bytes: usize) -> String {
    let mut s = String::with_capacity(bytes.max(prefix.len()));
    s.push_str(prefix);
    let filler = b" lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor";
    let mut i = 0;
    while s.len() < bytes {
        s.push(filler[i % filler.len()] as char);
        i += 1;
    }
    s
}

/// A `PatchLogs` body. Lines are plain ASCII without quotes or backslashes.
fn patch_body(lines: impl Iterator<Item = String>) -> String {
    let mut body = String::from("{\"logs\":[");
    for (i, l) in lines.enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str("{\"output\":\"");
        body.push_str(&l);
        body.push_str("\",\"level\":\"info\"}");
    }
    body.push_str("]}");
    body
}

fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// PATCHes one batch; Ok once the server answered 200 (body read, so the
/// connection is reused).
fn patch(http: &ureq::Agent, url: &str, token: &str, body: &str) -> Res<()> {
    let mut resp = http
        .patch(url)
        .header(TOKEN_HEADER, token)
        .content_type("application/json")
        .send(body)
        .map_err(|e| format!("PATCH {url}: {e}"))?;
    let status = resp.status();
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("PATCH {url}: reading the answer: {e}"))?;
    if status != 200 {
        return Err(format!("PATCH {url}: {status}: {text}"));
    }
    Ok(())
}

/// Nearest-rank percentile in milliseconds of sorted durations.
fn pct_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

// ----- ingest -----

fn ingest(f: &Flags) -> Res<Value> {
    let base = f.str("base")?;
    let prefix = f.str_or("prefix", "ingest-");
    let agents: Vec<Agent> = read_agents(&f.str("agents")?)?
        .into_iter()
        .filter(|a| a.name.starts_with(&prefix))
        .collect();
    if agents.is_empty() {
        return Err(format!("no agents named {prefix}*"));
    }
    let seconds: f64 = f.num("seconds", 10.0)?;
    let batch: usize = f.num("batch", 100)?;
    let line_bytes: usize = f.num("line-bytes", 80)?;
    let url = format!("{base}/api/v2/workspaceagents/me/logs");
    let barrier = Arc::new(Barrier::new(agents.len() + 1));
    let mut handles = Vec::new();
    for (n, agent) in agents.iter().enumerate() {
        let (url, token, barrier) = (url.clone(), agent.token.clone(), barrier.clone());
        handles.push(std::thread::spawn(move || -> Res<Vec<Duration>> {
            let http = http_agent();
            // Open the keep-alive connection before the clock starts.
            patch(
                &http,
                &url,
                &token,
                &patch_body(std::iter::once(line("warmup ", line_bytes))),
            )?;
            barrier.wait();
            let end = Instant::now() + Duration::from_secs_f64(seconds);
            let mut lat = Vec::new();
            let mut b = 0u64;
            while Instant::now() < end {
                let body = patch_body(
                    (0..batch).map(|i| line(&format!("a{n:02} b{b:08} l{i:03} "), line_bytes)),
                );
                let t0 = Instant::now();
                patch(&http, &url, &token, &body)?;
                lat.push(t0.elapsed());
                b += 1;
            }
            Ok(lat)
        }));
    }
    barrier.wait();
    let start = Instant::now();
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.join().map_err(|_| "a client thread panicked")??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort();
    let lines = lat.len() * batch;
    Ok(json!({
        "agents": agents.len(),
        "batch": batch,
        "line_bytes": line_bytes,
        "requests": lat.len(),
        "lines": lines,
        "seconds": round3(elapsed),
        "lines_per_s": (lines as f64 / elapsed).round(),
        "p50_ms": round3(pct_ms(&lat, 50.0)),
        "p99_ms": round3(pct_ms(&lat, 99.0)),
        "max_ms": round3(pct_ms(&lat, 100.0)),
    }))
}

// ----- direct -----

fn direct(f: &Flags) -> Res<Value> {
    let db = PathBuf::from(f.str("db")?);
    let rows: usize = f.num("rows", 100_000)?;
    let nagents: usize = f.num("agents", 16)?;
    let batch: usize = f.num("batch", 100)?;
    let per_tx: usize = f.num("batches-per-tx", 1)?;
    let line_bytes: usize = f.num("line-bytes", 80)?;
    if batch == 0 || per_tx == 0 {
        return Err("--batch and --batches-per-tx must be positive".into());
    }
    if db.exists() {
        return Err(format!("{} exists: give a new file", db.display()));
    }
    let store = Store::open(&db, &Options::default()).map_err(|e| e.to_string())?;
    store.migrate().map_err(|e| e.to_string())?;
    let mut text = String::from(
        "name = \"direct\"\nowner = \"admin\"\n[[resources]]\nname = \"box\"\ntype = \"bench\"\n",
    );
    for i in 0..nagents {
        text.push_str(&format!(
            "[[resources.agents]]\nname = \"ingest-{i:02}\"\nauth = \"token\"\nos = \"linux\"\narch = \"amd64\"\n"
        ));
    }
    let ws = manifest::parse("direct.toml", &text).map_err(|e| e.to_string())?;
    let now = store::now();
    let agents: Vec<Uuid> = store
        .write(|tx| {
            let admin =
                users::insert_user(tx, "admin", "admin@example.com", users::Role::Admin, now)?;
            let applied = workspaces::apply(tx, &ws, admin.id, admin.id, now)?;
            for a in &applied.agents {
                logs::ensure_external_source(tx, a.id, now)?;
            }
            Ok(applied.agents.iter().map(|a| a.id).collect())
        })
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut written = 0usize;
    let mut b = 0usize;
    while written < rows {
        // The batches of one transaction, built outside it (as the server does).
        let mut group = Vec::with_capacity(per_tx);
        while group.len() < per_tx && written < rows {
            let n = batch.min(rows - written);
            let a = b % agents.len();
            let lines: Vec<logs::NewLine> = (0..n)
                .map(|i| {
                    let output = line(&format!("a{a:02} b{b:08} l{i:03} "), line_bytes);
                    logs::NewLine {
                        level: "info",
                        bytes: output.len() as i64,
                        output,
                    }
                })
                .collect();
            group.push((agents[a], lines));
            written += n;
            b += 1;
        }
        let refused = store
            .write(|tx| {
                let now = store::now();
                let mut refused = 0;
                for (agent, lines) in &group {
                    let outcome = logs::insert_batch(
                        tx,
                        *agent,
                        logs::EXTERNAL_SOURCE_ID,
                        lines,
                        now,
                        i64::MAX,
                    )?;
                    refused += usize::from(!matches!(outcome, logs::Inserted::Stored { .. }));
                }
                Ok(refused)
            })
            .map_err(|e| e.to_string())?;
        if refused > 0 {
            return Err(format!("{refused} batches refused"));
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(json!({
        "rows": written,
        "agents": agents.len(),
        "rows_per_tx": batch * per_tx,
        "seconds": round3(elapsed),
        "rows_per_s": (written as f64 / elapsed).round(),
    }))
}

// ----- follow -----

/// Sequence number embedded in a follow-benchmark line.
fn seq_of(output: &str) -> Option<usize> {
    output.strip_prefix("seq=")?.get(..8)?.parse().ok()
}

fn follow(f: &Flags) -> Res<Value> {
    let base = f.str("base")?;
    let agent = agent_named(
        &read_agents(&f.str("agents")?)?,
        &f.str_or("agent", "follow"),
    )?;
    let api_key = read_secret(&f.str("api-key")?)?;
    let followers: usize = f.num("followers", 100)?;
    let rate: f64 = f.num("rate", 50.0)?;
    let seconds: f64 = f.num("seconds", 5.0)?;
    let line_bytes: usize = f.num("line-bytes", 80)?;
    let total = (rate * seconds).round() as usize;
    if total == 0 {
        return Err("--rate x --seconds is zero".into());
    }
    let ws_url = format!(
        "{}/api/v2/workspaceagents/{}/logs?follow=true",
        base.replacen("http://", "ws://", 1),
        agent.id
    );
    let patch_url = format!("{base}/api/v2/workspaceagents/me/logs");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        // Connect everyone and take the backlog frame before writing anything.
        let mut sockets = Vec::with_capacity(followers);
        for _ in 0..followers {
            let mut req = ws_url
                .as_str()
                .into_client_request()
                .map_err(|e| e.to_string())?;
            req.headers_mut().insert(
                TOKEN_HEADER,
                HeaderValue::from_str(&api_key).map_err(|e| e.to_string())?,
            );
            // Frames here are small: a 128 KiB read buffer (the default) would
            // be zero-filled on every read and cost the client more CPU than
            // the frames themselves, on the cores the server uses too.
            let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
            let (mut ws, _) = tokio_tungstenite::connect_async_with_config(req, Some(config), true)
                .await
                .map_err(|e| format!("connecting a follower: {e}"))?;
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                Ok(Some(Ok(Message::Text(_)))) => {}
                other => return Err(format!("no backlog frame: {other:?}")),
            }
            sockets.push(ws);
        }
        let last_seq = total - 1;
        let mut tasks = Vec::with_capacity(followers);
        for mut ws in sockets {
            tasks.push(tokio::spawn(async move {
                let mut seen: Vec<(usize, Instant)> = Vec::with_capacity(total);
                loop {
                    let msg = match tokio::time::timeout(
                        Duration::from_secs_f64(seconds + 10.0),
                        ws.next(),
                    )
                    .await
                    {
                        Ok(Some(Ok(m))) => m,
                        Ok(Some(Err(e))) => return Err(format!("follower: {e}")),
                        Ok(None) => return Err("follower: socket closed".to_string()),
                        Err(_) => break, // gave up waiting: lines are missing
                    };
                    let at = Instant::now();
                    let Message::Text(text) = msg else { continue };
                    let rows: Vec<Value> =
                        serde_json::from_str(text.as_str()).map_err(|e| e.to_string())?;
                    let mut done = false;
                    for r in &rows {
                        if let Some(s) = r["output"].as_str().and_then(seq_of) {
                            seen.push((s, at));
                            done |= s == last_seq;
                        }
                    }
                    if done {
                        break;
                    }
                }
                let _ = ws.close(None).await;
                Ok::<_, String>(seen)
            }));
        }
        // The writer: one blocking thread, single-line batches on a fixed schedule.
        let token = agent.token.clone();
        let writer = tokio::task::spawn_blocking(move || -> Res<Vec<(Instant, Instant)>> {
            let http = http_agent();
            patch(
                &http,
                &patch_url,
                &token,
                &patch_body(std::iter::once(line("warmup ", line_bytes))),
            )?;
            // Let the warm-up line reach every follower before timing starts.
            std::thread::sleep(Duration::from_millis(500));
            let start = Instant::now();
            let mut acked = Vec::with_capacity(total);
            for seq in 0..total {
                let due = start + Duration::from_secs_f64(seq as f64 / rate);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let body = patch_body(std::iter::once(line(&format!("seq={seq:08} "), line_bytes)));
                let sent = Instant::now();
                patch(&http, &patch_url, &token, &body)?;
                acked.push((sent, Instant::now()));
            }
            Ok(acked)
        });
        let acked = writer.await.map_err(|e| e.to_string())??;
        let mut lat = Vec::with_capacity(total * followers);
        let mut from_send = Vec::with_capacity(total * followers);
        let (mut early, mut missing) = (0usize, 0usize);
        for t in tasks {
            let seen = t.await.map_err(|e| e.to_string())??;
            let mut got = vec![false; total];
            for (s, at) in seen {
                if s >= total || got[s] {
                    continue;
                }
                got[s] = true;
                from_send.push(at.saturating_duration_since(acked[s].0));
                // A frame can beat the PATCH answer to this process: count 0.
                match at.checked_duration_since(acked[s].1) {
                    Some(d) => lat.push(d),
                    None => {
                        early += 1;
                        lat.push(Duration::ZERO);
                    }
                }
            }
            missing += got.iter().filter(|g| !**g).count();
        }
        lat.sort();
        from_send.sort();
        let mut patch_lat: Vec<Duration> = acked.iter().map(|(s, a)| *a - *s).collect();
        patch_lat.sort();
        Ok(json!({
            "followers": followers,
            "lines": total,
            "rate_per_s": rate,
            "pairs": lat.len(),
            "missing": missing,
            "frame_before_ack": early,
            "p50_ms": round3(pct_ms(&lat, 50.0)),
            "p99_ms": round3(pct_ms(&lat, 99.0)),
            "max_ms": round3(pct_ms(&lat, 100.0)),
            "from_send_p50_ms": round3(pct_ms(&from_send, 50.0)),
            "from_send_p99_ms": round3(pct_ms(&from_send, 99.0)),
            "patch_p50_ms": round3(pct_ms(&patch_lat, 50.0)),
            "patch_p99_ms": round3(pct_ms(&patch_lat, 99.0)),
        }))
    })
}

// ----- seed -----

fn seed(f: &Flags) -> Res<Value> {
    let base = f.str("base")?;
    let agent = agent_named(&read_agents(&f.str("agents")?)?, &f.str_or("agent", "seed"))?;
    let api_key = read_secret(&f.str("api-key")?)?;
    let lines: usize = f.num("lines", 100_000)?;
    let batch: usize = f.num("batch", 1000)?;
    let tail: usize = f.num("tail", 1000)?;
    let line_bytes: usize = f.num("line-bytes", 80)?;
    if tail >= lines {
        return Err("--tail must be below --lines".into());
    }
    let http = http_agent();
    let patch_url = format!("{base}/api/v2/workspaceagents/me/logs");
    let start = Instant::now();
    let mut sent = 0;
    while sent < lines {
        let n = batch.min(lines - sent);
        let body = patch_body((sent..sent + n).map(|i| line(&format!("seed {i:08} "), line_bytes)));
        patch(&http, &patch_url, &agent.token, &body)?;
        sent += n;
    }
    let seeded_in = start.elapsed().as_secs_f64();
    // Every id of the agent, to pick the `after` that leaves exactly `tail`.
    let get_url = format!("{base}/api/v2/workspaceagents/{}/logs?after=0", agent.id);
    let mut resp = http
        .get(&get_url)
        .header(TOKEN_HEADER, &api_key)
        .call()
        .map_err(|e| format!("GET {get_url}: {e}"))?;
    if resp.status() != 200 {
        return Err(format!("GET {get_url}: {}", resp.status()));
    }
    let body = resp
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()
        .map_err(|e| format!("GET {get_url}: {e}"))?;
    let rows: Vec<Value> = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    let ids: Vec<i64> = rows.iter().filter_map(|r| r["id"].as_i64()).collect();
    if ids.len() != lines {
        return Err(format!(
            "the agent has {} lines, expected {lines}",
            ids.len()
        ));
    }
    let after = ids[ids.len() - tail - 1];
    Ok(json!({
        "lines": lines,
        "seconds": round3(seeded_in),
        "lines_per_s": (lines as f64 / seeded_in).round(),
        "first_id": ids[0],
        "last_id": ids[ids.len() - 1],
        "after": after,
        "tail": tail,
    }))
}

// ----- fill -----

fn fill(f: &Flags) -> Res<Value> {
    let base = f.str("base")?;
    let agent = agent_named(&read_agents(&f.str("agents")?)?, &f.str("agent")?)?;
    let mut batch: usize = f.num("batch", 20_000)?;
    let line_bytes: usize = f.num("line-bytes", 0)?;
    let http = http_agent();
    let url = format!("{base}/api/v2/workspaceagents/me/logs");
    let start = Instant::now();
    let (mut lines, mut requests) = (0usize, 0usize);
    while batch > 0 {
        let body = patch_body((0..batch).map(|_| line("", line_bytes)));
        let mut resp = http
            .patch(&url)
            .header(TOKEN_HEADER, &agent.token)
            .content_type("application/json")
            .send(&body)
            .map_err(|e| format!("PATCH {url}: {e}"))?;
        requests += 1;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        match status {
            200 => lines += batch,
            413 if text.contains("Logs limit exceeded") => batch /= 2,
            other => return Err(format!("PATCH {url}: {other}: {text}")),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(json!({
        "lines": lines,
        "line_bytes": line_bytes,
        "requests": requests,
        "seconds": round3(seconds),
        "lines_per_s": (lines as f64 / seconds).round(),
    }))
}

// ----- read -----

fn read(f: &Flags) -> Res<Value> {
    let base = f.str("base")?;
    let agent = agent_named(&read_agents(&f.str("agents")?)?, &f.str("agent")?)?;
    let api_key = read_secret(&f.str("api-key")?)?;
    let readers: usize = f.num("readers", 10)?;
    let format = f.str_or("format", "json");
    let url = format!(
        "{base}/api/v2/workspaceagents/{}/logs?format={format}",
        agent.id
    );
    let barrier = Arc::new(Barrier::new(readers));
    let handles: Vec<_> = (0..readers)
        .map(|_| {
            let (url, key, barrier) = (url.clone(), api_key.clone(), barrier.clone());
            std::thread::spawn(move || -> Res<(u64, Duration)> {
                let http: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(600)))
                    .build()
                    .into();
                barrier.wait();
                let t0 = Instant::now();
                let mut resp = http
                    .get(&url)
                    .header(TOKEN_HEADER, &key)
                    .call()
                    .map_err(|e| format!("GET {url}: {e}"))?;
                if resp.status() != 200 {
                    return Err(format!("GET {url}: {}", resp.status()));
                }
                let mut body = resp.body_mut().with_config().limit(u64::MAX).reader();
                let bytes = std::io::copy(&mut body, &mut std::io::sink())
                    .map_err(|e| format!("GET {url}: reading the body: {e}"))?;
                Ok((bytes, t0.elapsed()))
            })
        })
        .collect();
    let mut results = Vec::new();
    for h in handles {
        results.push(h.join().map_err(|_| "a reader panicked")??);
    }
    let bytes: Vec<u64> = results.iter().map(|r| r.0).collect();
    if bytes.windows(2).any(|w| w[0] != w[1]) {
        return Err(format!("readers got different bodies: {bytes:?} bytes"));
    }
    let slowest = results.iter().map(|r| r.1).max().unwrap_or_default();
    Ok(json!({
        "readers": readers,
        "format": format,
        "body_bytes": bytes.first().copied().unwrap_or(0),
        "slowest_s": round3(slowest.as_secs_f64()),
    }))
}

// ----- stall -----

fn stall(f: &Flags) -> Res<Value> {
    use std::io::{Read, Write};
    let base = f.str("base")?;
    let agent = agent_named(&read_agents(&f.str("agents")?)?, &f.str("agent")?)?;
    let api_key = read_secret(&f.str("api-key")?)?;
    let followers: usize = f.num("followers", 500)?;
    let hold: f64 = f.num("hold", 20.0)?;
    let deflate: bool = f.num("deflate", true)?;
    let addr = base
        .strip_prefix("http://")
        .ok_or("--base must be http://HOST:PORT")?
        .to_string();
    let extensions = if deflate {
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    } else {
        ""
    };
    let request = format!(
        "GET /api/v2/workspaceagents/{}/logs?follow HTTP/1.1\r\nHost: {addr}\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         {extensions}{TOKEN_HEADER}: {api_key}\r\n\r\n",
        agent.id
    );
    let start = Instant::now();
    let mut sockets = Vec::with_capacity(followers);
    for _ in 0..followers {
        let mut s = std::net::TcpStream::connect(&addr).map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        s.write_all(request.as_bytes())
            .map_err(|e| format!("handshake: {e}"))?;
        // The answer's head, byte by byte: nothing of the frames after it.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte)
                .map_err(|e| format!("handshake answer: {e}"))?;
            head.push(byte[0]);
        }
        if !head.starts_with(b"HTTP/1.1 101") {
            return Err(format!(
                "not upgraded: {}",
                String::from_utf8_lossy(&head).lines().next().unwrap_or("")
            ));
        }
        sockets.push(s);
    }
    let opened_in = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs_f64(hold));
    // Now drain: a socket the server closed reaches EOF (or a reset); one it
    // still holds has no end within a second of silence.
    let (mut closed, mut open) = (0usize, 0usize);
    let mut sink = vec![0u8; 1 << 16];
    for mut s in sockets {
        s.set_read_timeout(Some(Duration::from_secs(1)))
            .map_err(|e| e.to_string())?;
        loop {
            match s.read(&mut sink) {
                Ok(0) => {
                    closed += 1;
                    break;
                }
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    closed += 1;
                    break;
                }
                Err(_) => {
                    open += 1;
                    break;
                }
            }
        }
    }
    Ok(json!({
        "followers": followers,
        "deflate": deflate,
        "opened_in_s": round3(opened_in),
        "held_s": hold,
        "closed_by_server": closed,
        "still_open": open,
    }))
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let cmd = args.next().unwrap_or_default();
    let result = Flags::parse(args).and_then(|f| match cmd.as_str() {
        "ingest" => ingest(&f),
        "direct" => direct(&f),
        "follow" => follow(&f),
        "seed" => seed(&f),
        "fill" => fill(&f),
        "read" => read(&f),
        "stall" => stall(&f),
        "" | "-h" | "--help" => Err(String::new()),
        other => Err(format!("unknown subcommand {other:?}")),
    });
    match result {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("logs_bench {cmd}: {e}");
            ExitCode::FAILURE
        }
    }
}
