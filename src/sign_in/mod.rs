//! The write half of an instance-identity sign-in: pick the agent for the
//! verified instance (`agent_select`) and store the new token's digest, for
//! many sign-ins in one transaction (group commit, `store::group`).
//!
//! Signature checks run in parallel on the request's side; only this short
//! transaction is serialised, on one thread, so sign-ins never queue on
//! SQLite's lock and one commit covers every sign-in that arrived meanwhile.

pub mod agent_select;
pub(crate) mod jwks_refresh;
pub(crate) mod rate_limit;
pub(crate) mod trust_files;

use std::sync::{Arc, RwLock};

use self::agent_select::Refusal;
use crate::auth;
use crate::identity::Trust;
use crate::store::agents::{self, InstanceCandidate};
use crate::store::group::GroupWriter;
use crate::store::{Result, Store};

/// The trust material in force, shared by the sign-in routes, SIGHUP reload
/// and the JWKS refresher; replaced whole, read as a cheap snapshot.
#[derive(Clone)]
pub struct TrustSlot(Arc<RwLock<Arc<Trust>>>);

impl TrustSlot {
    pub fn new(trust: Trust) -> TrustSlot {
        TrustSlot(Arc::new(RwLock::new(Arc::new(trust))))
    }

    pub fn get(&self) -> Arc<Trust> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn set(&self, trust: Trust) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(trust);
    }
}

/// One verified sign-in waiting for its agent and token.
pub struct Job {
    /// The instance id the proof vouched for.
    pub instance_id: String,
    pub agent_name: Option<String>,
    /// Digest of the token minted for the agent.
    pub token_hash: [u8; 32],
}

/// Requests hand verified sign-ins to this; cheap to clone.
#[derive(Clone)]
pub struct SignInWriter(GroupWriter<Job, Result<InstanceCandidate, Refusal>>);

impl SignInWriter {
    pub fn start(store: Store) -> std::io::Result<SignInWriter> {
        let step = |tx: &crate::store::Transaction<'_>, job: &Job, now| {
            let candidates = agents::instance_candidates(tx, &job.instance_id)?;
            let chosen =
                match agent_select::select(&job.instance_id, job.agent_name.as_deref(), candidates)
                {
                    Ok(c) => c,
                    Err(refusal) => return Ok(Err(refusal)),
                };
            agents::insert_agent_token(
                tx,
                chosen.agent_id,
                &job.token_hash,
                now,
                auth::MAX_LIVE_AGENT_TOKENS,
            )?;
            Ok(Ok(chosen))
        };
        Ok(SignInWriter(GroupWriter::start(
            "sign-in-writer",
            store,
            step,
            |_, _| {},
        )?))
    }

    /// Picks the agent and stores the token; resolves after the commit.
    pub async fn submit(&self, job: Job) -> Result<Result<InstanceCandidate, Refusal>> {
        self.0.submit(job).await
    }
}
