//! `coder.tailnet.v2.Tailnet` as an agent uses it.

use super::Session;
use crate::rpc::drpc::Router;

/// Adds the Tailnet service's methods.
pub fn register(router: Router<Session>) -> Router<Session> {
    router
}
