//! An agent reports the state of one of its apps: the checks and the write
//! shared by `PATCH /me/app-status` (`routes::app_status`) and the
//! UpdateAppStatus RPC, in upstream's order (coder/coder:coderd/agentapi/apps.go
//! `UpdateAppStatus`; BEHAVIOUR.md §1.4): the state (parsed by the caller),
//! the message's length, the URI's length, the app by slug, then the insert.
//! The agent's newest [`MAX_STATUSES_PER_AGENT`] reports are kept (upstream
//! keeps every one). Knows no HTTP: the route maps [`AppStatusError`] to its
//! statuses and texts.

use crate::app::App;
use crate::store::agents::{AgentRow, AppStatusRow};
use crate::store::{self, StoreError};

/// Upstream's limit, in bytes (160 exactly is accepted).
pub const MAX_MESSAGE_BYTES: usize = 160;
/// Upstream's column is `text`, without bound; a URI is a link.
pub const MAX_URI_BYTES: usize = 2048;
/// Statuses kept per agent; older ones are dropped (upstream keeps all).
pub const MAX_STATUSES_PER_AGENT: usize = 100;

/// Coder's states, matched case-insensitively.
pub fn parse_state(state: &str) -> Option<&'static str> {
    ["working", "idle", "complete", "failure"]
        .into_iter()
        .find(|s| s.eq_ignore_ascii_case(state))
}

/// Why a report was refused.
#[derive(Debug, thiserror::Error)]
pub enum AppStatusError {
    #[error("Message must be less than 160 characters.")]
    MessageTooLong,
    #[error("URI must be at most {MAX_URI_BYTES} bytes.")]
    UriTooLong,
    /// The agent has no app with this slug.
    #[error("No app found with slug \"{0}\"")]
    NoApp(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks and stores one report of `agent`'s app `slug`; `state` is one of
/// [`parse_state`]'s values. The message is cleaned
/// (`sanitize::app_status_message`) before it is stored; an empty `uri` is
/// stored as none.
pub async fn update(
    app: &App,
    agent: AgentRow,
    slug: String,
    state: &'static str,
    message: &str,
    uri: String,
) -> Result<AppStatusRow, AppStatusError> {
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(AppStatusError::MessageTooLong);
    }
    if uri.len() > MAX_URI_BYTES {
        return Err(AppStatusError::UriTooLong);
    }
    let message = crate::sanitize::app_status_message(message);
    let uri = (!uri.is_empty()).then_some(uri);
    let now = store::now();
    app.store
        .write_async(move |tx| {
            let Some(found) = store::agents::apps(tx, agent.id)?
                .into_iter()
                .find(|a| a.slug == slug)
            else {
                return Ok(Err(AppStatusError::NoApp(slug)));
            };
            store::agents::insert_app_status(
                tx,
                &agent,
                found.id,
                state,
                &message,
                uri.as_deref(),
                now,
                MAX_STATUSES_PER_AGENT,
            )
            .map(Ok)
        })
        .await?
}

#[cfg(test)]
mod tests {
    use super::parse_state;

    #[test]
    fn states_are_case_insensitive_and_closed() {
        assert_eq!(parse_state("WORKING"), Some("working"));
        assert_eq!(parse_state("Idle"), Some("idle"));
        assert_eq!(parse_state("complete"), Some("complete"));
        assert_eq!(parse_state("failure"), Some("failure"));
        assert_eq!(parse_state(""), None);
        assert_eq!(parse_state("done"), None);
    }
}
