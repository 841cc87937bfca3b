//! `coder.agent.v2.Agent`.

use super::Session;
use crate::rpc::drpc::Router;

/// Adds the Agent service's methods.
pub fn register(router: Router<Session>) -> Router<Session> {
    router
}
