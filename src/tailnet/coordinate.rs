//! A Coordinate stream (the Tailnet service's bidirectional RPC) driven
//! against the [`Coordinator`], as coderd's `communicator` drives it: the
//! peer's requests go to the coordinator, the coordinator's responses go to
//! the peer. The stream ends when the client stops sending (CloseSend: the
//! peer is LOST to its tunnel peers), when the coordinator drops the peer
//! (graceful disconnect, overwritten by a newer connection, too slow), when a
//! request is refused (its error is sent first, then the peer is LOST), or
//! on shutdown.

use prost::Message;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::coordinator::{Auth, Coordinator, Refused};
use crate::rpc::drpc::{Receiver, RpcError, Sender};
use crate::rpc::proto::tailnet::{CoordinateRequest, CoordinateResponse};

/// The largest CoordinateRequest taken (a node is a few KiB at most; the cap
/// bounds what decoding one may cost).
pub const MAX_REQUEST: usize = 64 << 10;

/// Runs one Coordinate stream for peer `id` with `auth` until it ends.
pub async fn serve(
    coordinator: &Coordinator,
    id: Uuid,
    auth: Auth,
    mut requests: Receiver,
    responses: Sender,
    shutdown: CancellationToken,
) -> Result<(), RpcError> {
    let (peer, mut updates) = coordinator.join(id, auth);
    loop {
        tokio::select! {
            req = requests.recv() => {
                let Some(bytes) = req else { return Ok(()) };
                let refused = if bytes.len() > MAX_REQUEST {
                    Err(Refused(format!(
                        "coordinate request of {} bytes is over the limit of {MAX_REQUEST}",
                        bytes.len()
                    )))
                } else {
                    match CoordinateRequest::decode(bytes) {
                        Ok(req) => peer.handle(&req),
                        Err(e) => Err(Refused(format!("decode coordinate request: {e}"))),
                    }
                };
                if let Err(Refused(why)) = refused {
                    tracing::debug!(peer_id = %id, error = %why, "coordinate request refused");
                    drop(peer);
                    let _ = responses
                        .send(
                            CoordinateResponse {
                                peer_updates: Vec::new(),
                                error: why,
                            }
                            .encode_to_vec(),
                        )
                        .await;
                    return Ok(());
                }
            }
            update = updates.recv() => {
                let Some(update) = update else { return Ok(()) };
                if responses.send(update.encode_to_vec()).await.is_err() {
                    return Ok(());
                }
            }
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}
