//! Wakes long-lived connections (log followers) when something they watch
//! changes. Never writes to the database: writers commit first, then publish
//! here.
//!
//! Two kinds of signal, both `tokio::sync::watch` channels, so a slow
//! listener never makes anything queue up: it just sees the latest value.
//! - per agent: the highest log id committed for it;
//! - for the whole database: a counter bumped whenever any connection (this
//!   process's writer or another process, such as `appliance workspace apply`
//!   from the CLI) commits. [`watch_database`] polls SQLite's `data_version`
//!   to notice commits from other processes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use crate::store::Store;

/// How often other processes' commits are looked for.
pub const DATABASE_POLL: Duration = Duration::from_millis(200);

#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    logs: Mutex<HashMap<Uuid, watch::Sender<i64>>>,
    database: watch::Sender<u64>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            inner: Arc::new(Inner {
                logs: Mutex::new(HashMap::new()),
                database: watch::channel(0).0,
            }),
        }
    }
}

impl Hub {
    fn logs(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, watch::Sender<i64>>> {
        self.inner
            .logs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Wakes when a log line for `agent` is committed; the value is the
    /// highest id committed so far.
    pub fn subscribe_logs(&self, agent: Uuid) -> watch::Receiver<i64> {
        let mut logs = self.logs();
        logs.retain(|_, tx| tx.receiver_count() > 0);
        logs.entry(agent)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Called after a commit that stored lines for `agent` up to `last_id`.
    pub fn publish_logs(&self, agent: Uuid, last_id: i64) {
        let logs = self.logs();
        if let Some(tx) = logs.get(&agent) {
            tx.send_if_modified(|v| {
                let newer = last_id > *v;
                if newer {
                    *v = last_id;
                }
                newer
            });
        }
    }

    /// Wakes after any commit to the database (this process or another).
    pub fn subscribe_database(&self) -> watch::Receiver<u64> {
        self.inner.database.subscribe()
    }

    pub fn database_changed(&self) {
        self.inner.database.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// How many agents have followers right now.
    #[cfg(test)]
    pub fn followed_agents(&self) -> usize {
        self.logs()
            .values()
            .filter(|tx| tx.receiver_count() > 0)
            .count()
    }
}

/// Polls `PRAGMA data_version` on a connection of its own and calls
/// [`Hub::database_changed`] when another connection committed. Runs until the
/// process exits; on a database error it logs and keeps polling.
pub fn watch_database(store: &Store, hub: Hub) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let probe = store.change_probe()?;
    Ok(std::thread::Builder::new()
        .name("db-watch".into())
        .spawn(move || {
            let mut last = None;
            loop {
                match probe.data_version() {
                    Ok(v) => {
                        if last.is_some_and(|l| l != v) {
                            hub.database_changed();
                        }
                        last = Some(v);
                    }
                    Err(e) => tracing::warn!(error = %e, "watching the database for changes"),
                }
                std::thread::sleep(DATABASE_POLL);
            }
        })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_see_the_latest_id_and_idle_agents_are_forgotten() {
        let hub = Hub::default();
        let a = Uuid::new_v4();
        let mut rx = hub.subscribe_logs(a);
        hub.publish_logs(a, 5);
        hub.publish_logs(a, 3); // older: ignored
        rx.changed().await.expect("woken");
        assert_eq!(*rx.borrow_and_update(), 5);
        assert_eq!(hub.followed_agents(), 1);
        drop(rx);
        let _other = hub.subscribe_logs(Uuid::new_v4());
        assert_eq!(hub.logs().len(), 1, "the idle agent's channel was dropped");
        hub.publish_logs(a, 9); // nobody listening: no entry is created
        assert_eq!(hub.logs().len(), 1);
    }

    #[tokio::test]
    async fn database_changes_wake_subscribers() {
        let hub = Hub::default();
        let mut rx = hub.subscribe_database();
        hub.database_changed();
        rx.changed().await.expect("woken");
    }
}
