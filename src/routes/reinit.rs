//! `GET /api/v2/workspaceagents/me/reinit` (Coder: `workspaceAgentReinit`):
//! an agent of a prebuilt workspace waits here to learn that a user claimed
//! the workspace, as Server-Sent Events of `agentsdk.ReinitializationEvent`.
//!
//! A claim is recorded by `appliance workspace claim`, often in another
//! process: waiters wake on every commit to the database (the relay's
//! `data_version` watch, polled every 200 ms) and look at their workspace's
//! latest build.

use std::time::Duration;

use futures_util::{StreamExt, stream};
use uuid::Uuid;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use super::filters::{query_pairs, session_token, with_app};
use super::session::agent_before_body;
use crate::app::App;
use crate::routes::error::{ApiError, respond};
use crate::store::users::PREBUILDS_USER_ID;
use crate::store::workspaces::BuildRow;
use crate::{sdk, store};

/// Keep-alive events, as upstream.
const PING_EVERY: Duration = Duration::from_secs(15);

pub fn routes(app: &App) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "v2" / "workspaceagents" / "me" / "reinit")
        .and(warp::get())
        .and(session_token())
        .and(query_pairs())
        .and(with_app(app))
        .then(
            |token: Option<String>, query: Vec<(String, String)>, app: App| async move {
                respond(reinit(app, token, query).await)
            },
        )
        .boxed()
}

/// Go's `strconv.ParseBool` truths; anything else (even unparsable) is false.
fn go_parse_bool(v: &str) -> bool {
    matches!(v, "1" | "t" | "T" | "TRUE" | "true" | "True")
}

fn not_prebuilt(detail: &str) -> ApiError {
    ApiError::conflict("Workspace is not a prebuilt workspace waiting to be claimed.")
        .detail(detail)
}

/// What the durable check (`wait=true`) concluded.
enum Next {
    /// Send the event now (the claim already completed).
    Event(sdk::ReinitializationEvent),
    /// Wait for a claim.
    Stream,
}

/// Upstream's step 3, for a workspace no longer owned by the prebuilds user.
fn durable_check(
    workspace_id: Uuid,
    owner: Uuid,
    first: &BuildRow,
    latest: &BuildRow,
) -> Result<Next, ApiError> {
    if first.initiator_id != PREBUILDS_USER_ID {
        return Err(not_prebuilt(
            "This endpoint is only for agents running in prebuilt workspaces.",
        ));
    }
    if latest.prebuild_claim {
        return match latest.job_status.as_str() {
            "succeeded" => Ok(Next::Event(claimed(workspace_id, owner))),
            "failed" => Err(ApiError::conflict("Claim build failed permanently.")
                .detail(latest.job_error.clone().unwrap_or_default())),
            _ => Ok(Next::Stream),
        };
    }
    if latest.initiator_id == PREBUILDS_USER_ID {
        return Ok(Next::Stream);
    }
    Err(not_prebuilt(
        "The prebuild claim for this workspace has already been handled by an earlier build.",
    ))
}

fn claimed(workspace_id: Uuid, owner: Uuid) -> sdk::ReinitializationEvent {
    sdk::ReinitializationEvent {
        workspace_id,
        reason: "prebuild_claimed",
        owner_id: (!owner.is_nil()).then_some(owner),
    }
}

/// What a waiting stream sends next.
enum Wake {
    /// The claim (a succeeded claim build newer than the baseline).
    Claimed(sdk::ReinitializationEvent),
    /// A keep-alive ping.
    Ping,
    /// Nothing: the server is shutting down and the stream ends.
    Shutdown,
}

/// Waits for the next event: the claim, while `waiting` for one (a succeeded
/// claim build newer than `baseline`), or else the next ping, or shutdown.
async fn next_event(
    app: &App,
    workspace_id: Uuid,
    baseline: i64,
    changes: &mut tokio::sync::watch::Receiver<u64>,
    ping: &mut tokio::time::Interval,
    waiting: &mut bool,
) -> store::Result<Wake> {
    loop {
        tokio::select! {
            biased;
            () = app.shutdown.cancelled() => return Ok(Wake::Shutdown),
            _ = ping.tick() => return Ok(Wake::Ping),
            changed = changes.changed(), if *waiting => {
                if changed.is_err() {
                    // The watcher stopped (shutdown): only pings from here.
                    *waiting = false;
                    continue;
                }
                let (owner, _, latest) = app
                    .store
                    .read_inline(|c| store::workspaces::claim_state(c, workspace_id))?;
                if latest.number > baseline && latest.prebuild_claim && latest.job_status == "succeeded" {
                    *waiting = false;
                    return Ok(Wake::Claimed(claimed(workspace_id, owner)));
                }
            }
        }
    }
}

/// One SSE event as upstream writes it: `event: <type>\n`, `data: <json>\n`
/// when there is data, then a blank line. (warp writes `event:` and `data:`
/// with no space after the colon; the leading spaces here make the bytes
/// Coder's own reader expects.)
fn sse_event(event: Option<&sdk::ReinitializationEvent>) -> warp::sse::Event {
    match event {
        Some(e) => warp::sse::Event::default()
            .event(" data")
            .data(format!(" {}", serde_json::to_string(e).unwrap_or_default())),
        None => warp::sse::Event::default().event(" ping"),
    }
}

async fn reinit(
    app: App,
    token: Option<String>,
    query: Vec<(String, String)>,
) -> Result<Response, ApiError> {
    let agent = agent_before_body(&app, token.as_deref())?;
    let workspace_id = agent.workspace_id;
    // Counted as an open SSE stream from here until the body is dropped.
    let open = app.metrics.stream_opened(crate::app::metrics::Stream::Sse);
    let wait = query
        .iter()
        .rev()
        .find(|(k, _)| k == "wait")
        .is_some_and(|(_, v)| go_parse_bool(v));
    // Subscribe before reading the state: a claim committed in between still
    // wakes this waiter.
    let mut changes = app.hub.subscribe_database();
    let (owner, first, latest) = app
        .store
        .read_inline(|c| store::workspaces::claim_state(c, workspace_id))
        .map_err(|e| {
            ApiError::internal("An internal server error occurred.", &e)
                .detail("failed to determine workspace from agent token")
        })?;
    let next = if wait && owner != PREBUILDS_USER_ID {
        durable_check(workspace_id, owner, &first, &latest)?
    } else {
        Next::Stream
    };
    // Claims newer than this build wake the stream.
    let baseline = latest.number;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    let mut waiting = true;
    // Nothing is written before the first event: headers go out with it.
    let first_event = match next {
        Next::Event(e) => {
            waiting = false;
            Wake::Claimed(e)
        }
        Next::Stream => next_event(
            &app,
            workspace_id,
            baseline,
            &mut changes,
            &mut ping,
            &mut waiting,
        )
        .await
        .map_err(|e| {
            ApiError::internal("An internal server error occurred.", &e)
                .detail("failed to determine workspace from agent token")
        })?,
    };
    let first = match first_event {
        Wake::Claimed(e) => sse_event(Some(&e)),
        Wake::Ping => sse_event(None),
        Wake::Shutdown => return Err(ApiError::shutting_down()),
    };
    // Then: the claim (if not sent yet) when it happens, pings every 15 s,
    // until the client goes away or the server shuts down.
    let rest = stream::unfold(
        (app, changes, waiting, ping, open),
        move |(app, mut changes, mut waiting, mut ping, open)| async move {
            let event = loop {
                match next_event(
                    &app,
                    workspace_id,
                    baseline,
                    &mut changes,
                    &mut ping,
                    &mut waiting,
                )
                .await
                {
                    Ok(Wake::Claimed(e)) => break Some(e),
                    Ok(Wake::Ping) => break None,
                    Ok(Wake::Shutdown) => return None,
                    Err(e) => {
                        tracing::error!(%workspace_id, error = %e, "checking a prebuild claim")
                    }
                }
            };
            let frame = Ok::<_, std::convert::Infallible>(sse_event(event.as_ref()));
            Some((frame, (app, changes, waiting, ping, open)))
        },
    );
    let events = stream::once(async move { Ok(first) }).chain(rest);
    let reply = warp::sse::reply(events);
    let reply = warp::reply::with_header(reply, "Connection", "keep-alive");
    let reply = warp::reply::with_header(reply, "X-Accel-Buffering", "no");
    Ok(warp::Reply::into_response(reply))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_framed_as_upstream_writes_them() {
        let id = Uuid::from_u128(1);
        let owner = Uuid::from_u128(2);
        assert_eq!(
            sse_event(Some(&claimed(id, owner))).to_string(),
            format!(
                "event: data\ndata: {{\"workspace_id\":\"{id}\",\"reason\":\"prebuild_claimed\",\"owner_id\":\"{owner}\"}}\n\n"
            )
        );
        assert_eq!(sse_event(None).to_string(), "event: ping\n\n");
        assert!(
            !serde_json::to_string(&claimed(id, Uuid::nil()))
                .unwrap()
                .contains("owner_id")
        );
    }

    #[test]
    fn wait_is_parsed_like_go() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert!(go_parse_bool(t), "{t}");
        }
        for f in ["", "0", "false", "yes", "on", "tRuE"] {
            assert!(!go_parse_bool(f), "{f}");
        }
    }
}
