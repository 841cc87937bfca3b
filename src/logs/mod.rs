//! Agent logs: `ingest` cleans lines and commits batches through one
//! group-committing writer, `relay` wakes followers after commits (ours and
//! other processes'), `read` reads and encodes them in bounded pages,
//! `follow` is a follower's read loop, `retention` purges logs of agents that
//! left the latest build.

pub(crate) mod follow;
pub(crate) mod ingest;
pub(crate) mod read;
pub(crate) mod relay;
pub(crate) mod retention;
