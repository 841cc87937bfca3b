//! Deletes the logs of agents that left their workspace's latest build more
//! than `logs.retention` ago. The latest build's logs are always kept.

use std::time::Duration;

use crate::store;

/// How often the purge runs (as upstream's dbpurge).
pub const EVERY: Duration = Duration::from_secs(10 * 60);
/// Agents handled per transaction, so the writer is never held for long.
const CHUNK: usize = 100;

/// One pass; returns (agents, lines) purged.
pub fn purge_once(store: &store::Store, retention: Duration) -> store::Result<(usize, usize)> {
    let cutoff = store::now() - time::Duration::try_from(retention).unwrap_or(time::Duration::MAX);
    let (mut agents, mut lines) = (0, 0);
    loop {
        let (a, l) = store.write(|tx| store::logs::purge_stale(tx, cutoff, CHUNK))?;
        agents += a;
        lines += l;
        if a < CHUNK {
            return Ok((agents, lines));
        }
    }
}

/// Runs until the process ends. Does nothing when retention is zero.
pub async fn run(store: store::Store, retention: Duration) {
    if retention.is_zero() {
        return;
    }
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        let store = store.clone();
        match tokio::task::spawn_blocking(move || purge_once(&store, retention)).await {
            Ok(Ok((0, _))) => {}
            Ok(Ok((agents, lines))) => tracing::info!(agents, lines, "purged logs past retention"),
            Ok(Err(e)) => tracing::error!(error = %e, "purging old logs"),
            Err(e) => tracing::error!(error = %e, "log purge task failed"),
        }
    }
}
