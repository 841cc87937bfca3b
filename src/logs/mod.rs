//! Agent logs: `ingest` cleans lines and commits batches through one
//! group-committing writer, `relay` wakes followers after commits (ours and
//! other processes'), `follow` is a follower's read loop, `retention` purges
//! logs of agents that left the latest build.

pub(crate) mod ingest;
pub(crate) mod relay;
pub(crate) mod retention;
