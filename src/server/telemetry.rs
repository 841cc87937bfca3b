//! Logging: `tracing` to stderr, plain text (journald adds timestamps) or JSON.
//!
//! Lines are formatted on the thread that logs them and written by one
//! background thread, which writes whatever has queued up with one `write`:
//! a busy server does not pay a system call per line. Nothing is dropped: a
//! full queue (128,000 lines) makes loggers wait. The filter can be
//! replaced at runtime ([`FilterHandle`], used by SIGHUP reload).

use std::io::{BufWriter, IsTerminal};
use std::sync::Arc;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};

use tracing_subscriber::EnvFilter;

/// The filter directives for `log.filter`: `RUST_LOG` when set, else the
/// configured filter with warp's and hyper's own events kept quiet.
fn directives(filter: &str) -> String {
    rust_log().unwrap_or_else(|| format!("{filter},warp=error,hyper=error"))
}

fn rust_log() -> Option<String> {
    std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
}

/// Checks `log.filter` directives without installing them.
pub fn check_filter(filter: &str) -> Result<(), String> {
    EnvFilter::try_new(directives(filter))
        .map(|_| ())
        .map_err(|e| format!("invalid log filter {filter:?}: {e}"))
}

type SetFilter = dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync;

/// The installed subscriber: keep it until exit (dropping it writes what is
/// still queued), and use it to change the filter at runtime.
#[must_use = "dropping the guard stops the log writer"]
pub struct Telemetry {
    _guard: WorkerGuard,
    set: Option<Arc<SetFilter>>,
}

/// Changes the log filter of the running process (SIGHUP reload).
#[derive(Clone)]
pub struct FilterHandle(Option<Arc<SetFilter>>);

impl Telemetry {
    pub fn filter_handle(&self) -> FilterHandle {
        FilterHandle(self.set.clone())
    }
}

impl FilterHandle {
    /// Installs `log.filter` directives. `Ok(false)`: nothing changed,
    /// because `RUST_LOG` overrides the configured filter.
    pub fn set(&self, filter: &str) -> Result<bool, String> {
        if rust_log().is_some() {
            return Ok(false);
        }
        let new = EnvFilter::try_new(directives(filter))
            .map_err(|e| format!("invalid log filter {filter:?}: {e}"))?;
        match &self.0 {
            Some(set) => set(new).map(|()| true),
            None => Err("this process did not install the log subscriber".to_owned()),
        }
    }
}

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `filter`.
/// warp's own per-request events are kept quiet: the routing layer logs one
/// line per request itself.
pub fn init(filter: &str, json: bool) -> Telemetry {
    let directives = directives(filter);
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
    // A second init (tests in one process) keeps the first subscriber, and
    // reloading then has nothing to change.
    let set: Option<Arc<SetFilter>> = if json {
        let builder = builder.json().with_filter_reloading();
        let handle = builder.reload_handle();
        builder.try_init().ok().map(|()| {
            Arc::new(move |f: EnvFilter| handle.reload(f).map_err(|e| e.to_string()))
                as Arc<SetFilter>
        })
    } else {
        let builder = builder.with_filter_reloading();
        let handle = builder.reload_handle();
        builder.try_init().ok().map(|()| {
            Arc::new(move |f: EnvFilter| handle.reload(f).map_err(|e| e.to_string()))
                as Arc<SetFilter>
        })
    };
    Telemetry { _guard: guard, set }
}
