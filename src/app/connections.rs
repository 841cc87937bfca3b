//! Connected agents (CONNECTIVITY.md §1.6): the registry of live `/me/rpc`
//! sessions and the monitor that keeps their connection columns true.
//!
//! Each session registers with the time it last received bytes from the
//! agent (an atomic the transport stores to; the server's yamux pings, sent
//! every `agent.connection_update_interval`, make a live agent answer). Once
//! per interval the monitor:
//! - ends sessions silent for longer than `agent.inactive_disconnect_timeout`
//!   (coderd: no successful ping for 30 s);
//! - writes `last_connected_at = now` for every other connected agent in one
//!   statement (not one UPDATE per agent every 15 s, which at 10,000 agents
//!   would be ~667 writes a second);
//! - ends the sessions of agents that are no longer live (a newer build
//!   replaced them, or the workspace was deleted).
//!
//! The session itself writes `first_connected_at`/`last_connected_at` when it
//! begins and `disconnected_at` when it ends, whatever the reason.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::store::{self, Store};

/// Milliseconds since the Unix epoch, as [`LastSeen`] holds them.
pub fn unix_millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// When a session last received anything from its agent (Unix ms).
pub type LastSeen = Arc<AtomicI64>;

struct Live {
    agent_id: Uuid,
    last_seen: LastSeen,
    end: CancellationToken,
}

/// Every monitored `/me/rpc` session of this process.
#[derive(Default)]
pub struct Connections {
    live: Mutex<HashMap<u64, Live>>,
    next_id: AtomicU64,
}

/// A session's place in the registry; dropping it removes the session.
pub struct Registration {
    id: u64,
    /// Cancelled when the monitor ends the session.
    pub end: CancellationToken,
    connections: Arc<Connections>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.connections.lock().remove(&self.id);
    }
}

/// What one tick did (for logs and tests).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tick {
    /// Sessions whose agents were written as seen.
    pub seen: usize,
    /// Sessions ended for silence.
    pub silent: usize,
    /// Sessions ended because their agent is no longer live.
    pub replaced: usize,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Live>> {
        // The map stays consistent whatever panicked while holding it.
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a session of `agent_id` whose transport stores to `last_seen`.
    pub fn register(self: &Arc<Self>, agent_id: Uuid, last_seen: LastSeen) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let end = CancellationToken::new();
        self.lock().insert(
            id,
            Live {
                agent_id,
                last_seen,
                end: end.clone(),
            },
        );
        Registration {
            id,
            end,
            connections: self.clone(),
        }
    }

    /// How many sessions are registered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One pass of the monitor at `now` (see the module docs).
    pub async fn tick(
        &self,
        store: &Store,
        now: OffsetDateTime,
        inactive: Duration,
    ) -> store::Result<Tick> {
        let cutoff = unix_millis(now) - i64::try_from(inactive.as_millis()).unwrap_or(i64::MAX);
        let mut tick = Tick::default();
        let mut seen = Vec::new();
        {
            let live = self.lock();
            for l in live.values() {
                if l.last_seen.load(Ordering::Relaxed) < cutoff {
                    l.end.cancel();
                    tick.silent += 1;
                } else {
                    seen.push(l.agent_id);
                }
            }
        }
        seen.sort_unstable();
        seen.dedup();
        let stale = store
            .write_async(move |tx| store::connections::seen(tx, &seen, now))
            .await?;
        let live = self.lock();
        for l in live.values() {
            if stale.contains(&l.agent_id) {
                l.end.cancel();
                tick.replaced += 1;
            } else if !l.end.is_cancelled() {
                tick.seen += 1;
            }
        }
        Ok(tick)
    }
}

/// Runs the monitor every `interval` until `shutdown`.
pub async fn run(
    connections: Arc<Connections>,
    store: Store,
    interval: Duration,
    inactive: Duration,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if connections.is_empty() {
            continue;
        }
        match connections
            .tick(&store, OffsetDateTime::now_utc(), inactive)
            .await
        {
            Ok(t) if t.silent > 0 || t.replaced > 0 => tracing::info!(
                connected = t.seen,
                silent = t.silent,
                replaced = t.replaced,
                "agent connections: ended silent or replaced sessions"
            ),
            Ok(t) => tracing::debug!(connected = t.seen, "agent connections: seen"),
            Err(e) => tracing::warn!(error = %e, "agent connections: could not record last seen"),
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::store::{Options, agents, users, workspaces};

    const T0: OffsetDateTime = datetime!(2026-03-01 12:00:00 UTC);
    const ONE: &str = r#"
name = "dev"
owner = "alice"
[[resources]]
name = "vm"
type = "box"
  [[resources.agents]]
  name = "main"
  auth = "token"
"#;

    fn apply(store: &Store, owner: Uuid) -> Uuid {
        let ws = crate::manifest::parse("t.toml", ONE).expect("manifest");
        let applied = store
            .write(|tx| workspaces::apply(tx, &ws, owner, owner, T0))
            .expect("apply");
        applied.agents[0].id
    }

    fn row(store: &Store, id: Uuid) -> Option<agents::AgentRow> {
        store.read(|c| agents::live_agent(c, id)).expect("read")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tick_writes_seen_ends_silent_and_replaced_sessions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("t.db"), &Options::default()).expect("open");
        store.migrate().expect("migrate");
        let alice = store
            .write(|tx| users::insert_user(tx, "alice", "", users::Role::Member, T0))
            .expect("user");
        let first = apply(&store, alice.id);
        store
            .write(|tx| store::connections::connected(tx, first, T0))
            .expect("connected");
        let r = row(&store, first).expect("live");
        assert_eq!(r.first_connected_at, Some(T0));
        assert_eq!(r.last_connected_at, Some(T0));

        let connections = Arc::new(Connections::default());
        let t1 = T0 + time::Duration::seconds(15);
        let talking: LastSeen = Arc::new(AtomicI64::new(unix_millis(t1)));
        let silent: LastSeen = Arc::new(AtomicI64::new(unix_millis(T0)));
        let a = connections.register(first, talking.clone());
        let b = connections.register(first, silent);
        let tick = connections
            .tick(
                &store,
                t1 + time::Duration::seconds(1),
                Duration::from_secs(10),
            )
            .await
            .expect("tick");
        assert_eq!(
            tick,
            Tick {
                seen: 1,
                silent: 1,
                replaced: 0
            }
        );
        assert!(!a.end.is_cancelled());
        assert!(b.end.is_cancelled(), "silent for 16s > 10s");
        let r = row(&store, first).expect("live");
        assert_eq!(r.first_connected_at, Some(T0), "first stays");
        assert_eq!(r.last_connected_at, Some(t1 + time::Duration::seconds(1)));
        drop(b);
        assert_eq!(connections.len(), 1, "a dropped registration leaves");

        // A new build replaces the agent: the next tick ends its session.
        let _second = apply(&store, alice.id);
        let tick = connections
            .tick(
                &store,
                t1 + time::Duration::seconds(2),
                Duration::from_secs(10),
            )
            .await
            .expect("tick");
        assert_eq!(tick.replaced, 1);
        assert!(a.end.is_cancelled());

        store
            .write(|tx| store::connections::disconnected(tx, first, t1))
            .expect("disconnected");
        drop(a);
        assert!(connections.is_empty());
    }
}
