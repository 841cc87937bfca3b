//! `appliance agent logs`: ships the lines read from stdin to the server as
//! the agent's logs, batched the way Coder's agent ships a startup script's
//! output (coder/coder:codersdk/agentsdk/logs.go, `LogSender`):
//!
//! - a batch goes out 1 s after its first line was read, or as soon as it
//!   holds 1 MiB, counting [`OVERHEAD_PER_LINE`] bytes per line as upstream;
//! - at most 1 MiB is held unacknowledged: beyond that, stdin is not read
//!   (upstream drops lines instead; a pipe can apply backpressure, so the
//!   writer waits and nothing is lost or grows without bound);
//! - a line longer than 1 MiB is dropped with a warning, as upstream;
//! - after `413 Logs limit exceeded` nothing more is sent, as upstream.
//!
//! A batch leaves the queue only once the server answered 200, so a retried
//! batch neither loses nor repeats lines. (One case cannot be told apart: the
//! server stored a batch but its answer was lost on the way; the retry then
//! stores those lines again, as with upstream's agent.)
//!
//! Network errors, 5xx and 429 (honouring `Retry-After`) are retried with the
//! backoff of `agent auth`; `--timeout` bounds how long the server may go
//! without accepting anything. Any other answer stops sending at once. After
//! a stop the command still reads stdin to its end, discarding it, so that
//! the writer of a pipeline (`./setup.sh | appliance agent logs`) is neither
//! killed by SIGPIPE nor blocked; then it exits non-zero: 3 when the agent's
//! log limit was reached, 1 otherwise.
//!
//! Invalid UTF-8 is replaced by ❌ before sending, exactly as the server
//! would (see [`crate::logs::ingest::lossy_utf8`]); a line's `\n` or `\r\n` is
//! not part of it.

use std::collections::VecDeque;
use std::io::{BufRead, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::{Args, ValueEnum};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use ureq::http::StatusCode;
use uuid::Uuid;

use super::http::{retry_after, server_agent, status_text};
use super::{Backoff, MIN_LAST_WAIT, fmt_duration, parse_duration, server_base};

/// A batch goes out at the latest this long after its first line was read.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// A batch holds at most this many bytes of output, counting
/// [`OVERHEAD_PER_LINE`] per line (upstream's `maxBytesPerBatch`).
pub const MAX_BATCH_BYTES: usize = 1 << 20;
/// What upstream counts per line on top of its output.
pub const OVERHEAD_PER_LINE: usize = 21;
/// At most this much (counted like a batch) is held unacknowledged; beyond
/// it stdin is not read (upstream's `maxBytesQueued`).
pub const MAX_QUEUED_BYTES: usize = 1 << 20;
/// A batch's JSON body stays below this (the server takes 4 MiB); only lines
/// full of control characters, escaped as `\u0001`, come near it.
const MAX_BODY_BYTES: usize = 3 << 20;
/// JSON around one line's output and timestamp: `{"created_at":"","output":"","level":"error"},`.
const WIRE_OVERHEAD_PER_LINE: usize = 64;
/// Upper bound of one request to the server.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Answers we read are small (`{"message": ...}`); more is a mistake.
const MAX_ANSWER: u64 = 64 << 10;
/// Exit status when the server refused more logs for this agent.
pub const EXIT_LIMIT_EXCEEDED: i32 = 3;
/// The namespace of the UUIDv5 that names a `--source`: the same name always
/// gives the same log source id, so every run appends to one source.
pub const SOURCE_NAMESPACE: Uuid = Uuid::from_u128(0xbf29eae7_d328_49d0_b3a4_91b23e345e65);
/// Where lines go without `--source` (upstream's `ExternalLogSourceID`, which
/// the server uses for a nil `log_source_id`).
const DEFAULT_SOURCE_NAME: &str = "External";

/// The level given to every line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Options of `appliance agent logs`.
#[derive(Debug, Clone, Args)]
pub struct LogsOptions {
    /// The server's URL, as agents reach it (e.g. https://appliance.example.internal).
    #[arg(long, env = "CODER_AGENT_URL", value_name = "URL")]
    pub url: String,
    /// The agent's session token.
    #[arg(
        long,
        env = "CODER_AGENT_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Read the agent's session token from this file (surrounding whitespace
    /// is ignored), e.g. the one `appliance agent auth --token-file` wrote.
    /// Takes precedence over --token and CODER_AGENT_TOKEN.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Ship the lines under the log source of this name, created if needed.
    /// Its id is derived from the name, so every run with the same name adds
    /// to the same source. Without it the lines go to the agent's default
    /// source, "External".
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
    /// The icon of the --source (a URL or a path such as /icon/terminal.svg).
    #[arg(
        long,
        value_name = "ICON",
        default_value = "",
        hide_default_value = true,
        requires = "source"
    )]
    pub icon: String,
    /// The level of every line.
    #[arg(long, value_enum, default_value_t = Level::Info)]
    pub level: Level,
    /// Stop when the server has accepted nothing for this long, retrying
    /// meanwhile (e.g. 30s, 5m, 1h; 0 = retry forever).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Trust only the CA certificates in this PEM file for an https:// --url
    /// (default: the Mozilla roots built into the binary).
    #[arg(long, env = "SSL_CERT_FILE", value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
}

pub(super) const LOGS_AFTER_HELP: &str = "\
Examples:
  # A startup script's output, as the log source \"Startup\":
  ./setup.sh 2>&1 | appliance agent logs --source Startup

  # With the token `appliance agent auth` wrote:
  appliance agent auth --auth aws-instance-identity --token-file /run/coder/token
  ./setup.sh 2>&1 | appliance agent logs --token-file /run/coder/token \\
    --source Setup --icon /icon/terminal.svg

A batch is sent 1 s after its first line was read, or sooner once it holds
1 MiB. While the server cannot take them, up to 1 MiB of lines is held and
then stdin is not read, so the writer waits. Lines longer than 1 MiB are
dropped with a warning; the server keeps the first 1024 characters of a line.

Exit status: 0 once stdin ended and the server accepted every line; 3 when
the server refused more logs because the agent reached its limit
(logs.max_bytes_per_agent in the server's configuration); 1 on any other
failure. After a failure nothing more is sent, but stdin is still read to its
end so that the writer is not killed by SIGPIPE.";

/// The id of the log source named `name`.
pub fn source_id(name: &str) -> Uuid {
    Uuid::new_v5(&SOURCE_NAMESPACE, name.as_bytes())
}

/// Runs `appliance agent logs`. Exits the process with
/// [`EXIT_LIMIT_EXCEEDED`] when the server refused more logs.
pub fn run(opts: &LogsOptions) -> anyhow::Result<()> {
    let base = server_base(&opts.url)?;
    let token = resolve_token(opts)?;
    let source = match &opts.source {
        Some(name) if name.trim().is_empty() => bail!("--source needs a name"),
        Some(name) => Some(Source {
            id: source_id(name),
            name: name.clone(),
            icon: opts.icon.clone(),
        }),
        None => None,
    };
    let server = Server::new(&base, &token, opts.ca_file.as_deref())?;

    let shared = Arc::new(Shared::default());
    let reader = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || read_lines(&shared, std::io::stdin().lock()))
            .context("starting the stdin reader")?
    };
    let mut sender = Sender {
        server,
        shared: shared.clone(),
        level: opts.level,
        source_id: source.as_ref().map_or(Uuid::nil(), |s| s.id),
        timeout: opts.timeout,
        stats: Stats::default(),
    };
    let result = sender.run(source.as_ref());
    let stats = sender.stats;

    let stop = match result {
        Ok(()) => {
            let _ = reader.join();
            let q = shared.lock();
            eprintln!("agent logs: {}", summary(&stats, &q, source.as_ref()));
            return Ok(());
        }
        Err(stop) => stop,
    };
    let reason = match &stop {
        Stop::Limit(m) => m.clone(),
        Stop::Fatal(e) => format!("{e:#}"),
    };
    if !shared.discard_from_now() {
        eprintln!("agent logs: stopped sending: {reason}");
        eprintln!(
            "agent logs: reading stdin to its end without sending it, so that the writer is not killed by SIGPIPE"
        );
    }
    shared.wait_eof();
    let _ = reader.join();
    {
        let q = shared.lock();
        eprintln!("agent logs: {}", summary(&stats, &q, source.as_ref()));
    }
    match stop {
        Stop::Limit(message) => {
            eprintln!("error: {message}");
            std::process::exit(EXIT_LIMIT_EXCEEDED);
        }
        Stop::Fatal(e) => Err(e),
    }
}

/// `--token-file` (trimmed), else `--token` / `CODER_AGENT_TOKEN`.
fn resolve_token(opts: &LogsOptions) -> anyhow::Result<String> {
    let token = match &opts.token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the token file {}", path.display()))?;
            let token = text.trim().to_owned();
            if token.is_empty() {
                bail!("the token file {} is empty", path.display());
            }
            token
        }
        None => opts.token.as_deref().unwrap_or("").trim().to_owned(),
    };
    if token.is_empty() {
        bail!(
            "no agent token: pass --token or --token-file, or set CODER_AGENT_TOKEN \
             (`appliance workspace apply` prints it; `appliance agent auth` gets it for instance identity)"
        );
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("the agent token contains whitespace: pass the token alone");
    }
    Ok(token)
}

#[derive(Debug, Clone)]
struct Source {
    id: Uuid,
    name: String,
    icon: String,
}

fn summary(stats: &Stats, q: &Queue, source: Option<&Source>) -> String {
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let to = match source {
        Some(s) => format!("log source {:?} ({})", s.name, s.id),
        None => format!("the default log source ({DEFAULT_SOURCE_NAME})"),
    };
    let mut s = format!(
        "sent {} ({}) in {} to {to}",
        plural(stats.lines, "line", "lines"),
        plural(stats.bytes, "byte", "bytes"),
        plural(stats.batches, "batch", "batches"),
    );
    if q.dropped > 0 {
        s.push_str(&format!(
            "; dropped {} longer than 1 MiB",
            plural(q.dropped, "line", "lines")
        ));
    }
    if q.discarded > 0 {
        s.push_str(&format!(
            "; {} not sent",
            plural(q.discarded, "line was", "lines were")
        ));
    }
    s
}

// ---------------------------------------------------------------------------
// The queue between the stdin reader and the sender
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct Line {
    created_at: String,
    output: String,
    read_at: Instant,
}

impl Line {
    /// What the line counts against a batch and the queue, as upstream counts.
    fn cost(&self) -> usize {
        self.output.len() + OVERHEAD_PER_LINE
    }

    /// Its share of the JSON body.
    fn wire(&self) -> usize {
        json_escaped_len(&self.output) + self.created_at.len() + WIRE_OVERHEAD_PER_LINE
    }
}

/// Lines read and not yet acknowledged, oldest first.
#[derive(Debug, Default)]
struct Queue {
    lines: VecDeque<Line>,
    /// Sum of the lines' [`Line::cost`].
    cost: usize,
    /// Sum of the lines' [`Line::wire`].
    wire: usize,
    /// Stdin ended (or failed).
    eof: bool,
    /// The reader holds a line that does not fit: send now, do not wait.
    reader_waiting: bool,
    /// Sending stopped: the reader discards what it reads.
    discard: bool,
    /// Lines longer than the limit, never queued.
    dropped: u64,
    /// Lines read but never sent because sending stopped.
    discarded: u64,
}

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// Signalled on every change to the queue.
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panicking thread already failed the command; the data is still usable.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, q: MutexGuard<'a, Queue>) -> MutexGuard<'a, Queue> {
        self.changed.wait(q).unwrap_or_else(|p| p.into_inner())
    }

    fn wait_timeout<'a>(&self, q: MutexGuard<'a, Queue>, d: Duration) -> MutexGuard<'a, Queue> {
        match self.changed.wait_timeout(q, d) {
            Ok((q, _)) => q,
            Err(p) => p.into_inner().0,
        }
    }

    /// Queues a line, waiting while the queue is full. Returns false when it
    /// was discarded because sending stopped.
    fn push(&self, line: Line) -> bool {
        let mut q = self.lock();
        loop {
            if q.discard {
                q.discarded += 1;
                return false;
            }
            if q.lines.is_empty() || q.cost + line.cost() <= MAX_QUEUED_BYTES {
                break;
            }
            q.reader_waiting = true;
            self.changed.notify_all();
            q = self.wait(q);
        }
        q.reader_waiting = false;
        q.cost += line.cost();
        q.wire += line.wire();
        q.lines.push_back(line);
        self.changed.notify_all();
        true
    }

    fn dropped_line(&self) {
        self.lock().dropped += 1;
    }

    fn end(&self) {
        self.lock().eof = true;
        self.changed.notify_all();
    }

    /// From now on lines are discarded, those queued included. Returns
    /// whether stdin had already ended.
    fn discard_from_now(&self) -> bool {
        let mut q = self.lock();
        q.discard = true;
        q.discarded += q.lines.len() as u64;
        q.lines.clear();
        q.cost = 0;
        q.wire = 0;
        self.changed.notify_all();
        q.eof
    }

    fn wait_eof(&self) {
        let mut q = self.lock();
        while !q.eof {
            q = self.wait(q);
        }
    }
}

/// The reader thread: every line of `input` into the queue, then the end.
fn read_lines(shared: &Shared, mut input: impl BufRead) {
    let mut buf = Vec::new();
    loop {
        match read_line_capped(&mut input, &mut buf, MAX_BATCH_BYTES) {
            Ok(None) => break,
            Ok(Some(len)) => {
                let output = crate::logs::ingest::lossy_utf8(&buf);
                let line = Line {
                    created_at: OffsetDateTime::now_utc()
                        .format(&Rfc3339)
                        .unwrap_or_default(),
                    output,
                    read_at: Instant::now(),
                };
                if len > buf.len() || line.cost() > MAX_BATCH_BYTES || line.wire() > MAX_BODY_BYTES
                {
                    if !shared.lock().discard {
                        eprintln!(
                            "agent logs: dropped a line of {len} bytes: lines longer than 1 MiB are not sent"
                        );
                    }
                    shared.dropped_line();
                    continue;
                }
                shared.push(line);
            }
            Err(e) => {
                eprintln!("agent logs: reading stdin failed ({e}); taking it as the end of input");
                break;
            }
        }
    }
    shared.end();
}

/// Reads the next line into `buf`, without its `\n` or `\r\n`, keeping at
/// most `cap` bytes of it (the rest is read and thrown away). Returns the
/// line's full length, or `None` at the end of input.
fn read_line_capped(
    input: &mut impl BufRead,
    buf: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<Option<usize>> {
    buf.clear();
    let mut len = 0usize;
    let mut any = false;
    loop {
        let chunk = match input.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(any.then_some(len));
        }
        any = true;
        let newline = chunk.iter().position(|&b| b == b'\n');
        let part = &chunk[..newline.unwrap_or(chunk.len())];
        len += part.len();
        let room = cap.saturating_sub(buf.len());
        buf.extend_from_slice(&part[..part.len().min(room)]);
        let used = newline.map_or(chunk.len(), |i| i + 1);
        input.consume(used);
        if newline.is_some() {
            break;
        }
    }
    if len == buf.len() && buf.last() == Some(&b'\r') {
        buf.pop();
        len -= 1;
    }
    Ok(Some(len))
}

/// The length of `s` as a JSON string's contents, escaped as serde_json does.
fn json_escaped_len(s: &str) -> usize {
    s.bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum()
}

// ---------------------------------------------------------------------------
// The sender
// ---------------------------------------------------------------------------

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    lines: u64,
    bytes: u64,
    batches: u64,
}

/// Why sending stopped.
#[derive(Debug)]
enum Stop {
    /// The server refused more logs for this agent; the message says what to do.
    Limit(String),
    Fatal(anyhow::Error),
}

/// How one request went wrong.
#[derive(Debug)]
enum Failure {
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    Stop(Stop),
}

impl Failure {
    fn fatal(message: String) -> Failure {
        Failure::Stop(Stop::Fatal(anyhow!(message)))
    }
}

#[derive(Serialize)]
struct PatchLogs<'a> {
    log_source_id: Uuid,
    logs: Vec<WireLine<'a>>,
}

#[derive(Serialize)]
struct WireLine<'a> {
    created_at: &'a str,
    output: &'a str,
    level: &'a str,
}

#[derive(Serialize)]
struct PostLogSource<'a> {
    id: Uuid,
    display_name: &'a str,
    icon: &'a str,
}

/// One batch, serialised, and what it holds.
struct Batch {
    body: Vec<u8>,
    lines: usize,
    bytes: usize,
}

struct Sender {
    server: Server,
    shared: Arc<Shared>,
    level: Level,
    source_id: Uuid,
    timeout: Duration,
    stats: Stats,
}

impl Sender {
    /// Registers the source, then sends until stdin ended and every line
    /// was acknowledged.
    fn run(&mut self, source: Option<&Source>) -> Result<(), Stop> {
        if let Some(s) = source {
            let body = serde_json::to_vec(&PostLogSource {
                id: s.id,
                display_name: &s.name,
                icon: &s.icon,
            })
            .map_err(|e| Stop::Fatal(e.into()))?;
            self.with_retries("registering the log source", || {
                self.server.send(
                    "POST",
                    "/api/v2/workspaceagents/me/log-source",
                    &body,
                    StatusCode::CREATED,
                )
            })?;
        }
        while let Some(batch) = self.next_batch()? {
            let what = format!(
                "sending {} line{}",
                batch.lines,
                if batch.lines == 1 { "" } else { "s" }
            );
            self.with_retries(&what, || {
                self.server.send(
                    "PATCH",
                    "/api/v2/workspaceagents/me/logs",
                    &batch.body,
                    StatusCode::OK,
                )
            })?;
            // Acknowledged: only now do the lines leave the queue.
            let mut guard = self.shared.lock();
            let q = &mut *guard;
            for line in q.lines.drain(..batch.lines) {
                q.cost -= line.cost();
                q.wire -= line.wire();
            }
            self.shared.changed.notify_all();
            drop(guard);
            self.stats.lines += batch.lines as u64;
            self.stats.bytes += batch.bytes as u64;
            self.stats.batches += 1;
        }
        Ok(())
    }

    /// Waits until a batch is due and serialises it; `None` once stdin ended
    /// and the queue is empty.
    fn next_batch(&self) -> Result<Option<Batch>, Stop> {
        let mut q = self.shared.lock();
        loop {
            let Some(first) = q.lines.front() else {
                if q.eof {
                    return Ok(None);
                }
                q = self.shared.wait(q);
                continue;
            };
            let due = first.read_at + FLUSH_INTERVAL;
            let now = Instant::now();
            if q.eof
                || q.reader_waiting
                || q.cost >= MAX_BATCH_BYTES
                || q.wire >= MAX_BODY_BYTES
                || now >= due
            {
                break;
            }
            q = self.shared.wait_timeout(q, due - now);
        }
        let (mut cost, mut wire) = (0, 0);
        let mut logs = Vec::new();
        let mut bytes = 0;
        for line in &q.lines {
            if !logs.is_empty()
                && (cost + line.cost() > MAX_BATCH_BYTES || wire + line.wire() > MAX_BODY_BYTES)
            {
                break;
            }
            cost += line.cost();
            wire += line.wire();
            bytes += line.output.len();
            logs.push(WireLine {
                created_at: &line.created_at,
                output: &line.output,
                level: self.level.as_str(),
            });
        }
        let lines = logs.len();
        let body = serde_json::to_vec(&PatchLogs {
            log_source_id: self.source_id,
            logs,
        })
        .map_err(|e| Stop::Fatal(e.into()))?;
        Ok(Some(Batch { body, lines, bytes }))
    }

    /// Runs `attempt` until it succeeds, retrying transient failures with
    /// backoff until nothing succeeded for `--timeout`.
    fn with_retries(
        &self,
        what: &str,
        mut attempt: impl FnMut() -> Result<(), Failure>,
    ) -> Result<(), Stop> {
        let start = Instant::now();
        let mut backoff = Backoff::new();
        let mut attempts = 1u32;
        loop {
            let (reason, retry_after) = match attempt() {
                Ok(()) => {
                    if attempts > 1 {
                        eprintln!("agent logs: {what}: succeeded on attempt {attempts}");
                    }
                    return Ok(());
                }
                Err(Failure::Stop(stop)) => return Err(stop),
                Err(Failure::Transient {
                    reason,
                    retry_after,
                }) => (reason, retry_after),
            };
            let mut wait = retry_after.unwrap_or_else(|| backoff.next_delay());
            if !self.timeout.is_zero() {
                let left = self.timeout.saturating_sub(start.elapsed());
                if left < MIN_LAST_WAIT {
                    return Err(Stop::Fatal(anyhow!(
                        "gave up {what} after {attempts} attempt{} in {} (--timeout {}): {reason}",
                        if attempts == 1 { "" } else { "s" },
                        fmt_duration(start.elapsed()),
                        fmt_duration(self.timeout),
                    )));
                }
                wait = wait.min(left);
            }
            eprintln!(
                "agent logs: {what} failed: {reason}; retrying in {}",
                fmt_duration(wait)
            );
            std::thread::sleep(wait);
            attempts += 1;
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

struct Server {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Server {
    fn new(base: &str, token: &str, ca_file: Option<&Path>) -> anyhow::Result<Server> {
        let agent = server_agent(base, ca_file, Some(REQUEST_TIMEOUT))?;
        Ok(Server {
            base: base.to_owned(),
            token: token.to_owned(),
            agent,
        })
    }

    /// One request with a JSON body; `Ok` when the answer is `expected`.
    fn send(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        expected: StatusCode,
    ) -> Result<(), Failure> {
        let url = format!("{}{path}", self.base);
        let req = if method == "PATCH" {
            self.agent.patch(&url)
        } else {
            self.agent.post(&url)
        };
        let mut resp = req
            .header("Coder-Session-Token", &self.token)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .send(body)
            .map_err(|e| classify(&format!("{method} {url}"), e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        // Read the answer in full so the connection can be reused; its text
        // only matters for errors.
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_string()
            .unwrap_or_default();
        if status == expected {
            return Ok(());
        }
        let answer = ErrorBody::parse(&text);
        let answered = format!(
            "the server answered {method} {path} with {}: {}",
            status_text(status),
            answer.text()
        );
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(Failure::Transient {
                reason: answered,
                retry_after: retry_after(&headers, answer.detail.as_deref()),
            });
        }
        if status.is_redirection() {
            let location = headers
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("(no Location)");
            return Err(Failure::fatal(format!(
                "{url} answered {} to {location}: set --url / CODER_AGENT_URL to the address agents should use",
                status_text(status)
            )));
        }
        let hint = match status.as_u16() {
            413 if answer.message.as_deref() == Some("Logs limit exceeded") => {
                return Err(Failure::Stop(Stop::Limit(format!(
                    "the server refused more logs for this agent ({}). Each agent may store at most \
                     logs.max_bytes_per_agent bytes of log output, counting 64 bytes per line (1 MiB unless configured); what it \
                     stored so far stays, and nothing more is sent. To allow more, the server's \
                     operator raises `max_bytes_per_agent` under [logs] in its configuration file \
                     (or APPLIANCE_LOGS__MAX_BYTES_PER_AGENT) and restarts it; a new build \
                     (`appliance workspace apply`) starts its agents with empty logs",
                    answer.text()
                ))));
            }
            401 => {
                "check the agent token (--token / CODER_AGENT_TOKEN / --token-file): \
                 applying the workspace again replaces its agents and their tokens"
            }
            404 => "is --url the appliance (or Coder) server?",
            _ => "",
        };
        let mut message = answered;
        if !hint.is_empty() {
            message.push_str("; ");
            message.push_str(hint);
        }
        Err(Failure::fatal(message))
    }
}

/// Network trouble is transient; a bad URL, proxy or certificate is not.
fn classify(context: &str, e: ureq::Error) -> Failure {
    use ureq::Error as E;
    match &e {
        E::BadUri(_)
        | E::Http(_)
        | E::InvalidProxyUrl
        | E::RequireHttpsOnly(_)
        | E::TlsRequired
        | E::Tls(_)
        | E::Pem(_)
        | E::LargeResponseHeader(..) => Failure::fatal(format!("{context}: {e}")),
        E::Rustls(inner) if inner.to_string().contains("certificate") => Failure::fatal(format!(
            "{context}: {e}; if the server's certificate comes from an internal CA, pass its PEM with --ca-file (or SSL_CERT_FILE)"
        )),
        _ => Failure::Transient {
            reason: format!("{context}: {e}"),
            retry_after: None,
        },
    }
}

/// Coder's error body (`{"message","detail"}`), or the start of whatever came back.
#[derive(Debug, Default)]
struct ErrorBody {
    message: Option<String>,
    detail: Option<String>,
    raw: String,
}

impl ErrorBody {
    fn parse(body: &str) -> ErrorBody {
        let v: Option<serde_json::Value> = serde_json::from_str(body).ok();
        let field = |name: &str| {
            v.as_ref()?
                .get(name)?
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let one_line = body.split_whitespace().collect::<Vec<_>>().join(" ");
        ErrorBody {
            message: field("message"),
            detail: field("detail"),
            raw: one_line.chars().take(200).collect(),
        }
    }

    /// `message (detail)`, or the raw body.
    fn text(&self) -> String {
        match (&self.message, &self.detail) {
            (Some(m), Some(d)) => format!("{m} ({d})"),
            (Some(m), None) => m.clone(),
            (None, _) if self.raw.is_empty() => "(empty body)".to_owned(),
            (None, _) => self.raw.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], cap: usize) -> Vec<(Vec<u8>, usize)> {
        let mut r = std::io::BufReader::with_capacity(4, input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some(len) = read_line_capped(&mut r, &mut buf, cap).unwrap() {
            out.push((buf.clone(), len));
        }
        out
    }

    #[test]
    fn lines_lose_their_line_ends_only() {
        let got = lines(b"a\nbb\r\n\n c\r d \r\nlast", 100);
        let want: Vec<(Vec<u8>, usize)> = vec![
            (b"a".to_vec(), 1),
            (b"bb".to_vec(), 2),
            (b"".to_vec(), 0),
            (b" c\r d ".to_vec(), 6),
            (b"last".to_vec(), 4),
        ];
        assert_eq!(got, want);
        assert!(lines(b"", 100).is_empty());
        assert_eq!(lines(b"\n", 100), vec![(Vec::new(), 0)]);
    }

    #[test]
    fn long_lines_are_cut_to_the_cap_but_measured_in_full() {
        let got = lines(b"0123456789\nok\n", 4);
        assert_eq!(got, vec![(b"0123".to_vec(), 10), (b"ok".to_vec(), 2)]);
    }

    #[test]
    fn escaped_length_matches_serde_json() {
        for s in [
            "plain",
            "quote \" backslash \\ slash /",
            "tab\tnl\ncr\rbs\u{8}ff\u{c}",
            "nul \0 esc \u{1b} del \u{7f}",
            "❌ café",
        ] {
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(json_escaped_len(s), json.len() - 2, "{s:?}");
        }
    }

    #[test]
    fn source_ids_are_stable_and_differ_by_name() {
        assert_eq!(source_id("Startup"), source_id("Startup"));
        assert_ne!(source_id("Startup"), source_id("startup"));
        assert_eq!(source_id("Startup").get_version_num(), 5);
        // Pinned: changing it would split every existing source in two.
        assert_eq!(
            source_id("Startup").to_string(),
            "1991b269-7708-5803-8579-135a14515279"
        );
    }

    #[test]
    fn the_queue_blocks_the_reader_only_when_full() {
        let shared = Shared::default();
        let line = |n: usize| Line {
            created_at: String::new(),
            output: "x".repeat(n),
            read_at: Instant::now(),
        };
        // One line larger than the queue still goes in when the queue is empty.
        assert!(shared.push(line(MAX_QUEUED_BYTES)));
        assert_eq!(shared.lock().lines.len(), 1);
        // Discarding empties the queue and counts what was lost.
        assert!(!shared.discard_from_now());
        assert!(!shared.push(line(1)));
        let q = shared.lock();
        assert_eq!((q.lines.len(), q.cost, q.discarded), (0, 0, 2));
    }

    #[test]
    fn error_bodies() {
        let e = ErrorBody::parse(r#"{"message":"Logs limit exceeded"}"#);
        assert_eq!(e.message.as_deref(), Some("Logs limit exceeded"));
        assert_eq!(e.text(), "Logs limit exceeded");
        let e = ErrorBody::parse(r#"{"message":"Invalid log level provided.","detail":"x"}"#);
        assert_eq!(e.text(), "Invalid log level provided. (x)");
        assert_eq!(
            ErrorBody::parse("<h1>\nBad gateway</h1>").text(),
            "<h1> Bad gateway</h1>"
        );
        assert_eq!(ErrorBody::parse("").text(), "(empty body)");
    }
}
