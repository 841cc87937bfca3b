//! Load generator for the `/me/rpc` benchmark (`bench/rpc.sh`): holds N agent
//! sessions the way `coder agent` does and measures the server meanwhile.
//! Prints one JSON object on stdout.
//!
//! ```text
//! rpc_load --base URL --agents APPLY.json --api-key FILE --pid SERVER_PID --n N
//!          [--ramp 400] [--in-flight 64] [--settle 5] [--window 30]
//!          [--log-interval-ms 1000] [--metadata-interval 10] [--stats-interval 0]
//!          [--compare-seconds 10] [--compare-agents 16] [--batch 100] [--line-bytes 80]
//!          [--clk-tck 100]
//! ```
//!
//! Each of the first N agents of APPLY.json (`{"agents":[{"id","token"}…]}`,
//! as `appliance workspace apply --output json` or `bench_seed agents`
//! write it) dials `/me/rpc?version=2.10&role=agent` and does what an agent
//! does at start: GetManifest, UpdateStartup, UpdateLifecycle starting then
//! ready, UpdateStats without stats (for the interval), a Coordinate stream
//! (its node published) and a StreamDERPMaps stream, both kept open. Then,
//! each on its own phase so the agents do not tick together: UpdateStats
//! every interval (the server's `report_interval` unless `--stats-interval`),
//! a one-line BatchCreateLogs every LOG-INTERVAL-MS, a BatchUpdateMetadata
//! every METADATA-INTERVAL seconds.
//!
//! Sessions are opened at RAMP per second with at most IN-FLIGHT dials and
//! start-ups at once (no stampede); a failed dial is retried 5 times, 1 s
//! apart. The measurements, from `/proc/PID` of the server:
//! - RSS (VmRSS) before the first dial and SETTLE seconds after the last
//!   start-up: the difference divided by the sessions held;
//! - CPU (utime + stime) over a WINDOW-second window while the N sessions
//!   tick, with the calls (answered, and of those successful) and log lines
//!   per second in that window, and the load generator's own CPU (it shares
//!   the machine);
//! - `GET /api/v2/workspaceagents/{id}` from a separate client during the
//!   window (one request at a time, 20 ms apart, over the N agents): p50/p99;
//! - then ingestion side by side, COMPARE-SECONDS each, the N sessions still
//!   ticking: COMPARE-AGENTS agents calling BatchCreateLogs with BATCH lines
//!   of LINE-BYTES back to back, then the same agents PATCHing
//!   `/api/v2/workspaceagents/me/logs` with the same batches: lines/s.
//!
//! Secrets are read from files, never argv.

#[path = "../tests/it/rpc_client.rs"]
mod rpc_client;

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use appliance::rpc::proto::{agent, tailnet};
use rpc_client::{CallError, RpcClient};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

const USAGE: &str = "usage: rpc_load --base URL --agents APPLY.json --api-key FILE --pid PID --n N [--flag value]... (see the file's header)";
const VERSION: &str = "2.10";

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

/// What the sessions did, counted as they go.
#[derive(Default)]
struct Counters {
    connected: AtomicU64,
    ready: AtomicU64,
    dial_retries: AtomicU64,
    failed: AtomicU64,
    /// Sessions that ended while they should have been held.
    dropped: AtomicU64,
    calls_ok: AtomicU64,
    calls_err: AtomicU64,
    log_lines: AtomicU64,
    /// The first few call errors, for the report.
    errors: Mutex<Vec<String>>,
}

impl Counters {
    fn note<T>(&self, what: &str, r: &Result<T, CallError>) {
        match r {
            Ok(_) => {
                self.calls_ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.calls_err.fetch_add(1, Ordering::Relaxed);
                let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
                if errors.len() < 10 {
                    errors.push(format!("{what}: {e}"));
                }
            }
        }
    }
}

fn get(n: &AtomicU64) -> u64 {
    n.load(Ordering::Relaxed)
}

struct Plan {
    base: String,
    log_interval: Duration,
    metadata_interval: Duration,
    stats_interval: Option<Duration>,
}

/// Dials, retrying 5 times 1 s apart.
async fn dial(plan: &Plan, token: &str, counters: &Counters) -> Res<RpcClient> {
    let mut last = String::new();
    for attempt in 0..6 {
        if attempt > 0 {
            counters.dial_retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        match RpcClient::connect(&plan.base, token, VERSION, Some("agent")).await {
            Ok(c) => return Ok(c),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// The agent's tailnet address (CONNECTIVITY.md §1.7).
fn tailnet_address(id: &uuid::Uuid) -> String {
    let mut bytes = *id.as_bytes();
    bytes[..6].copy_from_slice(&[0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0]);
    format!("{}/128", std::net::Ipv6Addr::from(bytes))
}

/// What every agent task shares.
struct Shared {
    plan: Plan,
    counters: Counters,
    /// Each agent's client once it is ready (for the ingestion comparison).
    slots: Mutex<Vec<Option<Arc<RpcClient>>>>,
    stop: AtomicBool,
}

/// One agent: start-up, then ticking until `stop`.
async fn run_agent(
    index: usize,
    id: uuid::Uuid,
    token: String,
    shared: Arc<Shared>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let (plan, counters, stop) = (&shared.plan, &shared.counters, &shared.stop);
    let client = match dial(plan, &token, counters).await {
        Ok(c) => Arc::new(c),
        Err(e) => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            let mut errors = counters.errors.lock().unwrap_or_else(|p| p.into_inner());
            if errors.len() < 10 {
                errors.push(format!("dial: {e}"));
            }
            return;
        }
    };
    counters.connected.fetch_add(1, Ordering::Relaxed);
    let c = &client;
    counters.note("GetManifest", &c.get_manifest().await);
    counters.note(
        "UpdateStartup",
        &c.update_startup("v2.18.0", "/home/coder", &[]).await,
    );
    for state in [
        agent::lifecycle::State::Starting,
        agent::lifecycle::State::Ready,
    ] {
        counters.note("UpdateLifecycle", &c.update_lifecycle(state).await);
    }
    let first = c.update_stats(None).await;
    counters.note("UpdateStats", &first);
    let stats_interval = plan
        .stats_interval
        .or_else(|| {
            let d = first.ok()?.report_interval?;
            Some(Duration::new(
                d.seconds.max(0) as u64,
                d.nanos.max(0) as u32,
            ))
        })
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(30));
    let coordinate = c.coordinate().await;
    if let Ok((out, _)) = &coordinate {
        let node = tailnet::Node {
            id: index as i64 + 1,
            as_of: Some(rpc_client::now()),
            key: vec![1; 32],
            preferred_derp: 999,
            addresses: vec![tailnet_address(&id)],
            allowed_ips: vec![tailnet_address(&id)],
            ..Default::default()
        };
        let update = tailnet::CoordinateRequest {
            update_self: Some(tailnet::coordinate_request::UpdateSelf { node: Some(node) }),
            ..Default::default()
        };
        let _ = out.send(&update).await;
    }
    counters.note("Coordinate", &coordinate);
    let derp = c.stream_derp_maps().await;
    counters.note("StreamDERPMaps", &derp);
    counters.ready.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut guard) = shared.slots.lock() {
        guard[index] = Some(client.clone());
    }
    drop(permit);

    // Each agent on its own phase: spread over the interval by index.
    let phase = |every: Duration| {
        let ms = every.as_millis().max(1) as u64;
        tokio::time::Instant::now() + Duration::from_millis((index as u64 * 7919) % ms)
    };
    let mut stats_tick = tokio::time::interval_at(phase(stats_interval), stats_interval);
    let mut log_tick = tokio::time::interval_at(phase(plan.log_interval), plan.log_interval);
    let mut metadata_tick =
        tokio::time::interval_at(phase(plan.metadata_interval), plan.metadata_interval);
    for tick in [&mut stats_tick, &mut log_tick, &mut metadata_tick] {
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    let mut n = 0u64;
    let mut stop_check = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = stats_tick.tick() => {
                let stats = agent::Stats {
                    connection_count: 1,
                    rx_bytes: 1000 * n as i64,
                    tx_bytes: 2000 * n as i64,
                    ..Default::default()
                };
                counters.note("UpdateStats", &c.update_stats(Some(stats)).await);
            }
            _ = log_tick.tick() => {
                n += 1;
                let line = format!("agent {index} line {n}");
                let r = c.batch_create_logs(None, &[(&line, agent::log::Level::Info)]).await;
                if r.is_ok() {
                    counters.log_lines.fetch_add(1, Ordering::Relaxed);
                }
                counters.note("BatchCreateLogs", &r);
            }
            _ = metadata_tick.tick() => {
                let value = n.to_string();
                counters.note(
                    "BatchUpdateMetadata",
                    &c.batch_update_metadata(&[("load", &value), ("disk", "42")]).await,
                );
            }
            () = c.closed() => {
                if !stop.load(Ordering::Relaxed) {
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
                break;
            }
            _ = stop_check.tick() => {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        }
    }
    drop(coordinate);
    drop(derp);
}

/// VmRSS of `pid`, in KiB.
fn rss_kib(pid: u32) -> Res<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Res<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    // Fields after the command (which may hold spaces) in parentheses.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or("malformed stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15.
    let utime: u64 = fields.get(11).and_then(|v| v.parse().ok()).ok_or("utime")?;
    let stime: u64 = fields.get(12).and_then(|v| v.parse().ok()).ok_or("stime")?;
    Ok(utime + stime)
}

fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// Nearest-rank percentile in milliseconds of sorted durations.
fn pct_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let ms = sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0;
    (ms * 1000.0).round() / 1000.0
}

fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// GET agent, one at a time, 20 ms apart, until `stop`: latencies and
/// failures.
fn probe_get_agent(
    base: String,
    api_key: String,
    ids: Vec<String>,
    stop: Arc<AtomicBool>,
) -> (Vec<Duration>, u64) {
    let http = http_agent();
    let mut took = Vec::new();
    let mut failed = 0;
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let url = format!("{base}/api/v2/workspaceagents/{}", ids[i % ids.len()]);
        i += 1;
        let t = Instant::now();
        let ok = http
            .get(&url)
            .header("Coder-Session-Token", &api_key)
            .call()
            .ok()
            .and_then(|mut r| {
                let status = r.status();
                r.body_mut().read_to_string().ok()?;
                (status == 200).then_some(())
            })
            .is_some();
        if ok {
            took.push(t.elapsed());
        } else {
            failed += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    took.sort();
    (took, failed)
}

fn line(prefix: &str, bytes: usize) -> String {
    let mut s = prefix.to_string();
    while s.len() < bytes {
        s.push('x');
    }
    s
}

async fn run(flags: Flags) -> Res<Value> {
    let base = flags.str("base")?.trim_end_matches('/').to_string();
    let apply: Value = serde_json::from_str(
        &std::fs::read_to_string(flags.str("agents")?).map_err(|e| format!("--agents: {e}"))?,
    )
    .map_err(|e| format!("--agents: {e}"))?;
    let api_key = std::fs::read_to_string(flags.str("api-key")?)
        .map_err(|e| format!("--api-key: {e}"))?
        .trim()
        .to_string();
    let pid: u32 = flags.num("pid", 0)?;
    if pid == 0 {
        return Err("--pid is required".into());
    }
    let n: usize = flags.num("n", 0)?;
    let ramp: f64 = flags.num("ramp", 400.0)?;
    let in_flight: usize = flags.num("in-flight", 64)?;
    let settle: u64 = flags.num("settle", 5)?;
    let window: u64 = flags.num("window", 30)?;
    let compare_seconds: u64 = flags.num("compare-seconds", 10)?;
    let compare_agents: usize = flags.num("compare-agents", 16)?;
    let batch: usize = flags.num("batch", 100)?;
    let line_bytes: usize = flags.num("line-bytes", 80)?;
    let clk_tck: f64 = flags.num("clk-tck", 100.0)?;
    let stats_interval: u64 = flags.num("stats-interval", 0)?;
    let plan = Plan {
        base: base.clone(),
        log_interval: Duration::from_millis(flags.num("log-interval-ms", 1000)?),
        metadata_interval: Duration::from_secs(flags.num("metadata-interval", 10)?),
        stats_interval: (stats_interval > 0).then(|| Duration::from_secs(stats_interval)),
    };
    let agents: Vec<(uuid::Uuid, String)> = apply["agents"]
        .as_array()
        .ok_or("--agents: no agents array")?
        .iter()
        .filter_map(|a| {
            Some((
                uuid::Uuid::parse_str(a["id"].as_str()?).ok()?,
                a["token"].as_str()?.to_string(),
            ))
        })
        .collect();
    if agents.len() < n || n == 0 {
        return Err(format!(
            "--n {n}: {} token agents in --agents",
            agents.len()
        ));
    }

    let rss_before = rss_kib(pid)?;
    let fds_before = open_fds(pid);
    let shared = Arc::new(Shared {
        plan,
        counters: Counters::default(),
        slots: Mutex::new(vec![None; n]),
        stop: AtomicBool::new(false),
    });
    let counters = &shared.counters;
    let gate = Arc::new(Semaphore::new(in_flight.max(1)));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for (i, (id, token)) in agents.iter().take(n).enumerate() {
        let due = started + Duration::from_secs_f64(i as f64 / ramp.max(1.0));
        tokio::time::sleep_until(due.into()).await;
        let permit = gate
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        tasks.push(tokio::spawn(run_agent(
            i,
            *id,
            token.clone(),
            shared.clone(),
            permit,
        )));
    }
    // Every start-up done (or failed).
    let _all = gate
        .acquire_many(in_flight.max(1) as u32)
        .await
        .map_err(|e| e.to_string())?;
    drop(_all);
    let ramp_seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(settle)).await;
    let held = get(&counters.ready) - get(&counters.dropped);
    let rss_after = rss_kib(pid)?;
    let fds_after = open_fds(pid);

    // The measured window.
    let ids: Vec<String> = agents
        .iter()
        .take(n)
        .map(|(id, _)| id.to_string())
        .collect();
    let probe_stop = Arc::new(AtomicBool::new(false));
    let probe = {
        let (base, api_key, stop) = (base.clone(), api_key.clone(), probe_stop.clone());
        std::thread::spawn(move || probe_get_agent(base, api_key, ids, stop))
    };
    let cpu0 = cpu_ticks(pid)?;
    let own0 = cpu_ticks(std::process::id())?;
    let (ok0, err0, lines0) = (
        get(&counters.calls_ok),
        get(&counters.calls_err),
        get(&counters.log_lines),
    );
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(window)).await;
    let secs = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_ticks(pid)?;
    let own1 = cpu_ticks(std::process::id())?;
    let (ok1, err1, lines1) = (
        get(&counters.calls_ok),
        get(&counters.calls_err),
        get(&counters.log_lines),
    );
    probe_stop.store(true, Ordering::Relaxed);
    let (get_took, get_failed) = probe.join().map_err(|_| "the GET probe panicked")?;
    let rss_window_end = rss_kib(pid)?;

    // Ingestion side by side.
    let lines: Vec<String> = (0..batch)
        .map(|i| line(&format!("l{i:03} "), line_bytes))
        .collect();
    let compare: Vec<Arc<RpcClient>> = shared
        .slots
        .lock()
        .map_err(|_| "slots")?
        .iter()
        .flatten()
        .take(compare_agents)
        .cloned()
        .collect();
    let rpc_lines = Arc::new(AtomicU64::new(0));
    let rpc_errors = Arc::new(AtomicU64::new(0));
    let rpc_took = Arc::new(Mutex::new(Vec::new()));
    let until = Instant::now() + Duration::from_secs(compare_seconds);
    let t = Instant::now();
    let mut writers = Vec::new();
    for client in compare {
        let (lines, rpc_lines, rpc_errors, rpc_took) = (
            lines.clone(),
            rpc_lines.clone(),
            rpc_errors.clone(),
            rpc_took.clone(),
        );
        writers.push(tokio::spawn(async move {
            let refs: Vec<(&str, agent::log::Level)> = lines
                .iter()
                .map(|l| (l.as_str(), agent::log::Level::Info))
                .collect();
            let mut took = Vec::new();
            while Instant::now() < until {
                let s = Instant::now();
                match client.batch_create_logs(None, &refs).await {
                    Ok(r) if !r.log_limit_exceeded => {
                        took.push(s.elapsed());
                        rpc_lines.fetch_add(refs.len() as u64, Ordering::Relaxed);
                    }
                    _ => {
                        rpc_errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            if let Ok(mut all) = rpc_took.lock() {
                all.extend(took);
            }
        }));
    }
    for w in writers {
        let _ = w.await;
    }
    let rpc_secs = t.elapsed().as_secs_f64();
    let mut rpc_took = rpc_took.lock().map_err(|_| "took")?.clone();
    rpc_took.sort();

    let body = {
        let mut body = String::from("{\"logs\":[");
        for (i, l) in lines.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&format!("{{\"output\":\"{l}\",\"level\":\"info\"}}"));
        }
        body.push_str("]}");
        Arc::new(body)
    };
    let patch_tokens: Vec<String> = agents
        .iter()
        .take(compare_agents.min(n))
        .map(|(_, t)| t.clone())
        .collect();
    let until = Instant::now() + Duration::from_secs(compare_seconds);
    let t = Instant::now();
    let url = Arc::new(format!("{base}/api/v2/workspaceagents/me/logs"));
    let mut threads = Vec::new();
    for token in patch_tokens {
        let (body, url) = (body.clone(), url.clone());
        threads.push(std::thread::spawn(move || {
            let http = http_agent();
            let (mut ok, mut failed, mut took) = (0u64, 0u64, Vec::new());
            while Instant::now() < until {
                let s = Instant::now();
                let answered = http
                    .patch(url.as_str())
                    .header("Coder-Session-Token", &token)
                    .content_type("application/json")
                    .send(body.as_str())
                    .ok()
                    .and_then(|mut r| {
                        let status = r.status();
                        r.body_mut().read_to_string().ok()?;
                        (status == 200).then_some(())
                    });
                if answered.is_some() {
                    ok += 1;
                    took.push(s.elapsed());
                } else {
                    failed += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            (ok, failed, took)
        }));
    }
    let (mut patch_ok, mut patch_failed, mut patch_took) = (0, 0, Vec::new());
    for th in threads {
        let (ok, failed, took) = th.join().map_err(|_| "a PATCH thread panicked")?;
        patch_ok += ok;
        patch_failed += failed;
        patch_took.extend(took);
    }
    let patch_secs = t.elapsed().as_secs_f64();
    patch_took.sort();

    shared.stop.store(true, Ordering::Relaxed);
    let errors = counters
        .errors
        .lock()
        .map(|e| e.clone())
        .unwrap_or_default();
    let round = |x: f64| (x * 10.0).round() / 10.0;
    Ok(json!({
        "n": n,
        "ramp_per_s": ramp,
        "log_interval_ms": shared.plan.log_interval.as_millis() as u64,
        "ramp_seconds": round(ramp_seconds),
        "connected": get(&counters.connected),
        "ready": get(&counters.ready),
        "failed": get(&counters.failed),
        "dial_retries": get(&counters.dial_retries),
        "dropped": get(&counters.dropped),
        "held": held,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "rss_window_end_kib": rss_window_end,
        "rss_per_session_kib": if held > 0 { round((rss_after as f64 - rss_before as f64) / held as f64) } else { f64::NAN },
        "fds_before": fds_before,
        "fds_after": fds_after,
        "window_seconds": round(secs),
        "cpu_percent": round((cpu1 - cpu0) as f64 / clk_tck / secs * 100.0),
        "load_cpu_percent": round((own1 - own0) as f64 / clk_tck / secs * 100.0),
        "calls_per_s": round((ok1 - ok0) as f64 / secs),
        "calls_answered_per_s": round((ok1 - ok0 + err1 - err0) as f64 / secs),
        "call_errors_per_s": round((err1 - err0) as f64 / secs),
        "log_lines_per_s": round((lines1 - lines0) as f64 / secs),
        "get_agent_requests": get_took.len(),
        "get_agent_failed": get_failed,
        "get_agent_p50_ms": pct_ms(&get_took, 50.0),
        "get_agent_p99_ms": pct_ms(&get_took, 99.0),
        "compare_agents": compare_agents,
        "batch": batch,
        "line_bytes": line_bytes,
        "rpc_lines_per_s": round(rpc_lines.load(Ordering::Relaxed) as f64 / rpc_secs),
        "rpc_errors": rpc_errors.load(Ordering::Relaxed),
        "rpc_p50_ms": pct_ms(&rpc_took, 50.0),
        "rpc_p99_ms": pct_ms(&rpc_took, 99.0),
        "patch_lines_per_s": round((patch_ok * batch as u64) as f64 / patch_secs),
        "patch_failed": patch_failed,
        "patch_p50_ms": pct_ms(&patch_took, 50.0),
        "patch_p99_ms": pct_ms(&patch_took, 99.0),
        "errors": errors,
    }))
}

fn main() -> ExitCode {
    let flags = match Flags::parse(std::env::args().skip(1)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("rpc_load: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rpc_load: a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(flags)) {
        Ok(report) => {
            println!("{report}");
            // Thousands of sessions need no orderly teardown.
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("rpc_load: {e}");
            ExitCode::FAILURE
        }
    }
}
