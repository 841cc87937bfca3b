//! Logging: `tracing` to stderr, plain text (journald adds timestamps) or JSON.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `filter`.
/// warp's own per-request events are kept quiet: the routing layer logs one
/// line per request itself.
pub fn init(filter: &str, json: bool) {
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| format!("{filter},warp=error,hyper=error"));
    let env_filter = EnvFilter::try_new(&directives).unwrap_or_else(|e| {
        eprintln!("warning: invalid log filter {directives:?} ({e}); using \"info\"");
        EnvFilter::new("info,warp=error,hyper=error")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let result = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // A second init (tests in one process) keeps the first subscriber.
    let _ = result;
}
