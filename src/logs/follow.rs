//! A log follower's read loop, without the transport: it yields frames (JSON
//! arrays of logs) and the reason to stop; `routes::logs` carries them over
//! a WebSocket.
//!
//! The follower subscribes to the agent's logs before it reads anything, and
//! every read asks for ids above the last one yielded, so a batch committed
//! between a read and a wake-up is neither lost nor yielded twice. It
//! buffers nothing: a slow client just reads later lines from the database
//! later. Every read is one bounded page ([`read::PAGE`]) on the blocking
//! pool, the backlog included, so a follower holds at most one page and
//! never blocks the executor.

use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use super::read;
use super::relay::Hub;
use crate::store::{self, Store};

/// Followers re-check their agent at least this often even without signals.
const RECHECK_EVERY: Duration = Duration::from_secs(60);

/// What the follower has next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A JSON array of at most one page of lines, in id order. The first
    /// frame is always sent, empty if there is no backlog.
    Frame(Vec<u8>),
    /// The agent left the latest build and every line it wrote was yielded.
    AgentLeft,
    /// The database failed (logged): nothing more can be yielded.
    Failed,
}

pub struct Follower {
    store: Store,
    agent_id: Uuid,
    /// The last id yielded.
    last: i64,
    new_logs: watch::Receiver<i64>,
    database: watch::Receiver<u64>,
    recheck: tokio::time::Interval,
    /// Whether the first frame was yielded.
    started: bool,
    /// Whether more rows may be waiting (a wake-up, or a full page).
    read_more: bool,
    /// Whether the agent's liveness must be checked (a database change).
    check_live: bool,
    /// The agent left: yield what is left, then [`Next::AgentLeft`].
    leaving: bool,
    /// Whether the hub's channels are open (they live as long as the hub).
    logs_open: bool,
    database_open: bool,
}

impl Follower {
    /// Follows `agent_id` from after `after`. Subscribes at once: whatever is
    /// committed from here on wakes the follower.
    pub fn start(store: Store, hub: &Hub, agent_id: Uuid, after: i64) -> Follower {
        let new_logs = hub.subscribe_logs(agent_id);
        let database = hub.subscribe_database();
        let mut recheck = tokio::time::interval(RECHECK_EVERY);
        recheck.reset();
        Follower {
            store,
            agent_id,
            last: after,
            new_logs,
            database,
            recheck,
            started: false,
            read_more: true,
            check_live: false,
            leaving: false,
            logs_open: true,
            database_open: true,
        }
    }

    /// The next frame, waiting for new lines when all were yielded.
    ///
    /// Cancel-safe: a call dropped before it returns loses nothing (its read
    /// is made again by the next call), so the transport may `select!` on it.
    pub async fn next(&mut self) -> Next {
        loop {
            if self.read_more || !self.started {
                let frame = match read::frame(&self.store, self.agent_id, self.last).await {
                    Ok(frame) => frame,
                    Err(e) => {
                        tracing::error!(agent_id = %self.agent_id, error = %e, "reading logs for a follower");
                        return Next::Failed;
                    }
                };
                self.read_more = frame.full;
                if let Some(last) = frame.last {
                    self.last = last;
                }
                if frame.last.is_some() || !self.started {
                    self.started = true;
                    return Next::Frame(frame.bytes);
                }
                continue;
            }
            if self.leaving {
                return Next::AgentLeft;
            }
            if self.check_live {
                let agent_id = self.agent_id;
                let live = match self
                    .store
                    .read_async(move |c| store::logs::agent_is_live(c, agent_id))
                    .await
                {
                    Ok(live) => live,
                    Err(e) => {
                        tracing::error!(%agent_id, error = %e, "checking a followed agent");
                        true
                    }
                };
                self.check_live = false;
                if !live {
                    // Everything committed before the agent left is read
                    // once more, then the follower ends.
                    self.leaving = true;
                    self.read_more = true;
                }
                continue;
            }
            // A closed channel is left out (it would wake at once, forever);
            // the recheck always remains.
            tokio::select! {
                changed = self.new_logs.changed(), if self.logs_open => match changed {
                    Ok(()) => self.read_more = true,
                    Err(_) => self.logs_open = false,
                },
                changed = self.database.changed(), if self.database_open => match changed {
                    Ok(()) => {
                        self.read_more = true;
                        self.check_live = true;
                    }
                    Err(_) => self.database_open = false,
                },
                _ = self.recheck.tick() => {
                    self.read_more = true;
                    self.check_live = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::store::logs::{self, NewLine};
    use crate::store::{Options, users, workspaces};

    const MANIFEST: &str = "name = \"dev\"\nowner = \"alice\"\n[[resources]]\nname = \"vm\"\ntype = \"t\"\n  [[resources.agents]]\n  name = \"main\"\n";

    fn insert(store: &Store, agent: Uuid, n: usize) -> i64 {
        let lines: Vec<NewLine> = (0..n)
            .map(|i| NewLine {
                level: "info",
                output: format!("line {i}"),
                bytes: 6,
            })
            .collect();
        let now = datetime!(2026-03-01 12:00 UTC);
        match store
            .write(|tx| {
                logs::insert_batch(tx, agent, logs::EXTERNAL_SOURCE_ID, &lines, now, i64::MAX)
            })
            .expect("insert")
        {
            logs::Inserted::Stored { last, .. } => last,
            other => panic!("{other:?}"),
        }
    }

    fn lines(next: Next) -> usize {
        match next {
            Next::Frame(json) => serde_json::from_slice::<Vec<serde_json::Value>>(&json)
                .expect("a JSON array")
                .len(),
            other => panic!("a frame, not {other:?}"),
        }
    }

    #[tokio::test]
    async fn backlog_in_pages_then_new_lines_then_the_end_when_the_agent_leaves() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("t.db"), &Options::default()).expect("open");
        store.migrate().expect("migrate");
        let ws = crate::manifest::parse("t.toml", MANIFEST).expect("manifest");
        let t0 = datetime!(2026-03-01 12:00 UTC);
        let (alice, agent) = store
            .write(|tx| {
                let alice = users::insert_user(tx, "alice", "", users::Role::Member, t0)?;
                let agent = workspaces::apply(tx, &ws, alice.id, alice.id, t0)?.agents[0].id;
                logs::ensure_external_source(tx, agent, t0)?;
                Ok((alice.id, agent))
            })
            .expect("seed");
        let hub = Hub::default();

        // No backlog: one empty frame, then nothing until a line arrives.
        let mut empty = Follower::start(store.clone(), &hub, agent, 0);
        assert_eq!(empty.next().await, Next::Frame(b"[]".to_vec()));

        insert(&store, agent, 2500);
        let mut follower = Follower::start(store.clone(), &hub, agent, 0);
        assert_eq!(lines(follower.next().await), 1000);
        assert_eq!(lines(follower.next().await), 1000);
        assert_eq!(lines(follower.next().await), 500);
        let quiet = tokio::time::timeout(Duration::from_millis(50), follower.next()).await;
        assert!(quiet.is_err(), "nothing new: the follower waits");

        let last = insert(&store, agent, 3);
        hub.publish_logs(agent, last);
        assert_eq!(lines(follower.next().await), 3);
        // The first follower sees all of it too, a page at a time.
        assert_eq!(lines(empty.next().await), 1000);
        assert_eq!(lines(empty.next().await), 1000);
        assert_eq!(lines(empty.next().await), 503);

        // A new build replaces the agent: lines written before are still
        // sent, then the end.
        insert(&store, agent, 2);
        store
            .write(|tx| workspaces::apply(tx, &ws, alice, alice, t0))
            .expect("second build");
        hub.database_changed();
        assert_eq!(lines(follower.next().await), 2);
        assert_eq!(follower.next().await, Next::AgentLeft);
    }
}
