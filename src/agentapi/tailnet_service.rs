//! `coder.tailnet.v2.Tailnet` (coderd's `tailnet.DRPCService`), for every
//! kind of peer: agents on `/me/rpc`, clients of one agent on
//! `/{id}/coordinate`, users' clients on `/tailnet`. A session type says who
//! the peer is ([`TailnetPeer`]); the methods are the same.
//!
//! - StreamDERPMaps: the map at once, then whenever it changes.
//! - Coordinate: the stream driven against the coordinator
//!   (`tailnet::coordinate`) as the session's peer id with its authorisation.
//! - RefreshResumeToken (2.3+): a token for the session's peer id.
//! - PostTelemetry (2.2+): accepted and dropped (appliance sends none on).
//! - WorkspaceUpdates (2.3+): for a user's session only (`/tailnet`): the
//!   user's (or, for an admin, the named owner's) workspaces and agents,
//!   then the changes as builds are applied (any process's commit wakes it).
//!
//! A method newer than the session's API version answers code 12, as an
//! older server would.

use bytes::Bytes;
use prost::Message;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::app::App;
use crate::auth::Role;
use crate::rpc::drpc::{Call, Receiver, Router, RpcError, Sender};
use crate::rpc::proto::methods::{self, Version};
use crate::rpc::proto::tailnet::{RefreshResumeTokenResponse, WorkspaceUpdatesRequest};
use crate::tailnet::coordinator::Auth;
use crate::tailnet::{coordinate, resume, workspace_updates};

/// Who a Tailnet session's peer is.
pub trait TailnetPeer: Clone + Send + Sync + 'static {
    fn app(&self) -> &App;
    /// The API version the session was opened with.
    fn version(&self) -> Version;
    /// The peer id it coordinates as.
    fn peer_id(&self) -> Uuid;
    /// What it may ask of the coordinator.
    fn coordinate_auth(&self) -> Auth;
    /// The user behind the session, for WorkspaceUpdates (`None`: an agent).
    fn user(&self) -> Option<(Uuid, Role)>;
}

/// Code 12 for a method the session's version does not have.
fn available<S: TailnetPeer>(session: &S, rpc: &str) -> Result<(), RpcError> {
    match methods::find(rpc) {
        Some(m) if m.available_in(session.version()) => Ok(()),
        _ => Err(RpcError::unimplemented(format!(
            "unknown rpc: {rpc:?} (not in API version {})",
            session.version()
        ))),
    }
}

/// Adds the Tailnet service's methods.
pub fn register<S: TailnetPeer>(router: Router<S>) -> Router<S> {
    use methods::tailnet::*;
    router
        .server_stream(STREAM_DERP_MAPS, stream_derp_maps::<S>)
        .bidi(COORDINATE, coordinate::<S>)
        .unary(REFRESH_RESUME_TOKEN, refresh_resume_token::<S>)
        .unary(POST_TELEMETRY, post_telemetry::<S>)
        .server_stream(WORKSPACE_UPDATES, workspace_updates::<S>)
}

async fn stream_derp_maps<S: TailnetPeer>(
    session: S,
    call: Call,
    _request: Bytes,
    sender: Sender,
) -> Result<(), RpcError> {
    available(&session, &call.rpc)?;
    let app = session.app();
    let mut maps = app.derp_map.subscribe();
    loop {
        let map = maps.borrow_and_update().encode_to_vec();
        if sender.send(map).await.is_err() {
            return Ok(());
        }
        tokio::select! {
            changed = maps.changed() => if changed.is_err() { return Ok(()) },
            () = app.shutdown.cancelled() => return Ok(()),
        }
    }
}

async fn coordinate<S: TailnetPeer>(
    session: S,
    call: Call,
    requests: Receiver,
    responses: Sender,
) -> Result<(), RpcError> {
    available(&session, &call.rpc)?;
    let app = session.app();
    coordinate::serve(
        &app.coordinator,
        session.peer_id(),
        session.coordinate_auth(),
        requests,
        responses,
        app.shutdown.clone(),
    )
    .await
}

async fn refresh_resume_token<S: TailnetPeer>(
    session: S,
    call: Call,
    _request: Bytes,
) -> Result<Vec<u8>, RpcError> {
    available(&session, &call.rpc)?;
    let now = OffsetDateTime::now_utc();
    let (token, expires) = resume::issue(&session.app().resume_key, session.peer_id(), now);
    Ok(RefreshResumeTokenResponse {
        token,
        refresh_in: Some(prost_types::Duration {
            seconds: resume::EXPIRY.whole_seconds() / 2,
            nanos: 0,
        }),
        expires_at: Some(prost_types::Timestamp {
            seconds: expires.unix_timestamp(),
            nanos: 0,
        }),
    }
    .encode_to_vec())
}

async fn post_telemetry<S: TailnetPeer>(
    session: S,
    call: Call,
    request: Bytes,
) -> Result<Vec<u8>, RpcError> {
    available(&session, &call.rpc)?;
    tracing::debug!(peer_id = %session.peer_id(), bytes = request.len(), "tailnet telemetry received and dropped");
    Ok(Vec::new())
}

async fn workspace_updates<S: TailnetPeer>(
    session: S,
    call: Call,
    request: Bytes,
    sender: Sender,
) -> Result<(), RpcError> {
    available(&session, &call.rpc)?;
    let Some((user, role)) = session.user() else {
        return Err(RpcError::unimplemented(
            "WorkspaceUpdates is for users' clients (/api/v2/tailnet)",
        ));
    };
    let req = WorkspaceUpdatesRequest::decode(request)
        .map_err(|e| RpcError::message(format!("decode request: {e}")))?;
    let owner = Uuid::from_slice(&req.workspace_owner_id).map_err(|_| {
        RpcError::message(format!(
            "parse workspace owner ID: invalid UUID (got {} bytes)",
            req.workspace_owner_id.len()
        ))
    })?;
    if owner != user && role != Role::Admin {
        return Err(RpcError::message(
            "subscribe to workspace updates: not authorized to read that user's workspaces",
        ));
    }
    let app = session.app().clone();
    let mut changes = app.hub.subscribe_database();
    let mut seen = workspace_updates::State::new();
    let mut first = true;
    loop {
        changes.borrow_and_update();
        let rows = app
            .store
            .read_async(move |c| crate::store::tailnet::workspaces_and_agents_by_owner(c, owner))
            .await
            .map_err(|e| {
                RpcError::message(format!("get workspaces and agents by owner ID: {e}"))
            })?;
        let now = workspace_updates::state(rows);
        // The first message is sent even when the user has no workspace.
        let update = match workspace_updates::diff(&seen, &now) {
            Some(update) => Some(update),
            None if first => Some(crate::rpc::proto::tailnet::WorkspaceUpdate::default()),
            None => None,
        };
        if let Some(update) = update
            && sender.send(update.encode_to_vec()).await.is_err()
        {
            return Ok(());
        }
        seen = now;
        first = false;
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return Ok(()) },
            () = app.shutdown.cancelled() => return Ok(()),
        }
    }
}
