//! Group commit: one thread that runs many requests' writes in one
//! transaction.
//!
//! Each [`GroupWriter`] owns a thread. A request submits a job and waits; the
//! thread takes every job waiting (up to [`MAX_GROUP`]), runs the step for
//! each inside one write transaction, commits, and only then answers each
//! request. (Letting jobs that arrive during the transaction join it made
//! groups larger but answers later: fewer sign-ins per second, measured.) Requests never contend for the write lock among themselves (no
//! futex ping-pong between blocking threads), and under load one commit
//! covers many requests. An answered job is in the database file; if the
//! transaction fails, every job in it gets the error and nothing of the group
//! is stored.

use std::time::Duration;

use rusqlite::Transaction;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use super::{Result, Store, StoreError};

/// At most this many jobs share one transaction.
pub const MAX_GROUP: usize = 256;
/// Jobs waiting beyond this make submitters wait: backpressure instead of an
/// unbounded queue.
const QUEUE: usize = 1024;

/// The handle requests submit jobs through; cheap to clone.
pub struct GroupWriter<J, O> {
    jobs: mpsc::Sender<(J, oneshot::Sender<Result<O>>)>,
    name: &'static str,
}

impl<J, O> Clone for GroupWriter<J, O> {
    fn clone(&self) -> Self {
        GroupWriter {
            jobs: self.jobs.clone(),
            name: self.name,
        }
    }
}

impl<J: Send + 'static, O: Send + 'static> GroupWriter<J, O> {
    /// Starts the thread `name`. `step` runs once per job inside the group's
    /// transaction, with the group's time (one clock reading per commit); an
    /// error from it aborts the whole group. `after_commit` runs once per job
    /// after the commit, before its submitter is answered (e.g. to wake
    /// followers).
    pub fn start(
        name: &'static str,
        store: Store,
        step: impl Fn(&Transaction<'_>, &J, OffsetDateTime) -> Result<O> + Send + 'static,
        after_commit: impl Fn(&J, &O) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (tx, mut rx) = mpsc::channel::<(J, oneshot::Sender<Result<O>>)>(QUEUE);
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                while let Some(first) = rx.blocking_recv() {
                    let mut group = vec![first];
                    while group.len() < MAX_GROUP {
                        match rx.try_recv() {
                            Ok(job) => group.push(job),
                            Err(_) => break,
                        }
                    }
                    let now = super::now();
                    let result = store.write(|tx| {
                        group
                            .iter()
                            .map(|(job, _)| step(tx, job, now))
                            .collect::<Result<Vec<O>>>()
                    });
                    match result {
                        Ok(outputs) => {
                            for ((job, reply), out) in group.into_iter().zip(outputs) {
                                after_commit(&job, &out);
                                let _ = reply.send(Ok(out));
                            }
                        }
                        Err(e) => {
                            tracing::error!(writer = name, error = %e, jobs = group.len(), "group commit failed");
                            let message = e.to_string();
                            for (_, reply) in group {
                                let _ = reply.send(Err(StoreError::Other(message.clone())));
                            }
                            // Do not spin on a persistent failure (disk full, I/O error).
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
            })?;
        Ok(GroupWriter { jobs: tx, name })
    }

    /// Runs `job` in the next group; resolves once its transaction committed
    /// (or failed).
    pub async fn submit(&self, job: J) -> Result<O> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Other(format!("the {} thread has stopped", self.name));
        self.jobs.send((job, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open(&dir.path().join("g.db"), &super::super::Options::default()).unwrap();
        store.migrate().unwrap();
        (dir, store)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_job_is_answered_after_its_commit() {
        let (_dir, store) = store();
        store
            .write(|tx| {
                tx.execute_batch("CREATE TABLE t (v INTEGER NOT NULL)")?;
                Ok(())
            })
            .unwrap();
        let writer = GroupWriter::start(
            "test-writer",
            store.clone(),
            |tx, v: &i64, _| {
                tx.execute("INSERT INTO t (v) VALUES (?1)", [v])?;
                Ok(v * 2)
            },
            |_, _| {},
        )
        .unwrap();
        let handles: Vec<_> = (0..200i64)
            .map(|i| {
                let w = writer.clone();
                tokio::spawn(async move { (i, w.submit(i).await.unwrap()) })
            })
            .collect();
        for h in handles {
            let (i, out) = h.await.unwrap();
            assert_eq!(out, i * 2);
        }
        let (n, sum): (i64, i64) = store
            .read(|c| {
                Ok(c.query_row("SELECT count(*), sum(v) FROM t", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?)
            })
            .unwrap();
        assert_eq!((n, sum), (200, (0..200).sum::<i64>()));
    }

    #[tokio::test]
    async fn a_failing_step_fails_the_whole_group_and_stores_nothing() {
        let (_dir, store) = store();
        store
            .write(|tx| {
                tx.execute_batch("CREATE TABLE t (v INTEGER NOT NULL CHECK (v >= 0))")?;
                Ok(())
            })
            .unwrap();
        let writer = GroupWriter::start(
            "test-writer",
            store.clone(),
            |tx, v: &i64, _| {
                tx.execute("INSERT INTO t (v) VALUES (?1)", [v])?;
                Ok(())
            },
            |_, _| {},
        )
        .unwrap();
        assert!(writer.submit(1).await.is_ok());
        assert!(writer.submit(-1).await.is_err());
        let n: i64 = store
            .read(|c| Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(n, 1);
    }
}
