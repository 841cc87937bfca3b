//! The browser flow that links a user to a provider: its rules, and the one
//! thing the flows keep in memory. No HTTP and no SQL here:
//! `routes/external_auth.rs` speaks HTTP, `store::external_auth` keeps the
//! flows in progress.
//!
//! 1. A signed-in user opens `/external-auth/{provider}`. A fresh `state`
//!    ([`new_state`]) goes to the provider in the consent URL and to the
//!    browser in the [`STATE_COOKIE`] cookie; the database keeps its digest,
//!    bound to the user and the provider, for [`STATE_TTL`]. A user has at
//!    most [`MAX_PENDING_PER_USER`] flows in progress (the oldest are dropped),
//!    so one user cannot push out another's.
//! 2. The provider sends the browser back to the callback with `code` and
//!    `state`. It is accepted only from a signed-in session, when the `state`
//!    equals the browser's cookie ([`check_returned_state`], as Coder's
//!    `ExtractOAuth2`) and is one of *that* user's flows for that provider.
//!    The state is spent, the code exchanged, and the token linked to the
//!    signed-in user, never to whoever started some other flow.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// The browser cookie that carries a flow's `state` (Coder's
/// `codersdk.OAuth2StateCookie`).
pub const STATE_COOKIE: &str = "oauth_state";
/// How long a browser has between leaving for the provider and coming back.
pub const STATE_TTL: time::Duration = time::Duration::minutes(10);
/// Flows a user may have in progress at once; starting another drops the
/// oldest.
pub const MAX_PENDING_PER_USER: usize = 10;
/// Remembered token validations; forgotten all at once when this full.
const MAX_VALIDATIONS: usize = 10_000;

/// A fresh OAuth `state`.
pub struct NewState {
    /// For the consent URL and the browser's cookie (32 hex digits, 128
    /// random bits).
    pub value: String,
    /// SHA-256 of `value`: all the database keeps.
    pub digest: [u8; 32],
}

pub fn new_state() -> NewState {
    let bytes: [u8; 16] = rand::random();
    let value: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    NewState {
        digest: digest(&value),
        value,
    }
}

pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Why a callback is refused before its state is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `state` in the query.
    NoState,
    /// The browser did not send [`STATE_COOKIE`]: it is not the browser
    /// that started the flow.
    NoCookie,
    /// The cookie holds another flow's state.
    Mismatch,
}

impl Refusal {
    /// Coder's message for it.
    pub fn message(self) -> String {
        match self {
            Refusal::NoState => "State must be provided.".into(),
            Refusal::NoCookie => format!("Cookie \"{STATE_COOKIE}\" must be provided."),
            Refusal::Mismatch => "State mismatched.".into(),
        }
    }
}

/// The callback's `state` query against the browser's [`STATE_COOKIE`], in
/// Coder's order; the state when they agree.
pub fn check_returned_state<'a>(
    query: Option<&'a str>,
    cookie: Option<&str>,
) -> Result<&'a str, Refusal> {
    let state = query.filter(|s| !s.is_empty()).ok_or(Refusal::NoState)?;
    match cookie {
        None => Err(Refusal::NoCookie),
        Some(c) if c != state => Err(Refusal::Mismatch),
        Some(_) => Ok(state),
    }
}

/// What the flows keep in memory: which tokens their provider's
/// `validate_url` accepted (by digest). Only a cache: after a restart each
/// token is asked about once more. Flows in progress are in the database.
#[derive(Default)]
pub struct FlowState {
    validated: Mutex<HashMap<[u8; 32], bool>>,
}

impl FlowState {
    /// What the provider said about `token`, if it was asked.
    pub fn validated(&self, token: &str) -> Option<bool> {
        self.seen().get(&digest(token)).copied()
    }

    /// Records the provider's answer about `token`.
    pub fn remember(&self, token: &str, valid: bool) {
        let mut seen = self.seen();
        if seen.len() >= MAX_VALIDATIONS {
            seen.clear();
        }
        seen.insert(digest(token), valid);
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], bool>> {
        self.validated.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_must_come_back_in_the_query_and_the_cookie() {
        assert_eq!(check_returned_state(None, Some("s")), Err(Refusal::NoState));
        assert_eq!(
            check_returned_state(Some(""), Some("")),
            Err(Refusal::NoState)
        );
        assert_eq!(
            check_returned_state(Some("s"), None),
            Err(Refusal::NoCookie)
        );
        assert_eq!(
            check_returned_state(Some("s"), Some("t")),
            Err(Refusal::Mismatch)
        );
        assert_eq!(check_returned_state(Some("s"), Some("s")), Ok("s"));
        assert_eq!(
            Refusal::NoCookie.message(),
            "Cookie \"oauth_state\" must be provided."
        );
    }

    #[test]
    fn states_are_fresh_and_stored_as_digests() {
        let (a, b) = (new_state(), new_state());
        assert_ne!(a.value, b.value);
        assert_eq!(a.value.len(), 32);
        assert!(a.value.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a.digest, digest(&a.value));
    }

    #[test]
    fn validations_are_remembered_by_token() {
        let memo = FlowState::default();
        assert_eq!(memo.validated("t"), None);
        memo.remember("t", false);
        memo.remember("u", true);
        assert_eq!(memo.validated("t"), Some(false));
        assert_eq!(memo.validated("u"), Some(true));
    }
}
