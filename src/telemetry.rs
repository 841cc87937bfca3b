//! Logging: `tracing` to stderr, plain text (journald adds timestamps) or JSON.
//!
//! Lines are formatted on the thread that logs them and written by one
//! background thread, which writes whatever has queued up with one `write`:
//! a busy server does not pay a system call per line. Nothing is dropped: a
//! full queue (128,000 lines) makes loggers wait.

use std::io::{BufWriter, IsTerminal};

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `filter`.
/// warp's own per-request events are kept quiet: the routing layer logs one
/// line per request itself. Keep the guard until exit: dropping it writes
/// what is still queued.
#[must_use = "dropping the guard stops the log writer"]
pub fn init(filter: &str, json: bool) -> WorkerGuard {
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| format!("{filter},warp=error,hyper=error"));
    let env_filter = EnvFilter::try_new(&directives).unwrap_or_else(|e| {
        eprintln!("warning: invalid log filter {directives:?} ({e}); using \"info\"");
        EnvFilter::new("info,warp=error,hyper=error")
    });
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("log-output")
        .finish(BufWriter::with_capacity(64 * 1024, std::io::stderr()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let result = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // A second init (tests in one process) keeps the first subscriber.
    let _ = result;
    guard
}
