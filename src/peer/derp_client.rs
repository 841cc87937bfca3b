//! The peer's connection to the embedded relay, in-process (coderd attaches
//! its `ServerTailnet` to its own DERP server through an in-memory pipe the
//! same way): a `tokio::io::duplex` whose far end `derp::Relay::serve`
//! serves like any client's connection, and Tailscale's client side of the
//! protocol on the near end: the handshake (ServerKey, a ClientInfo sealed
//! with the peer's node key, ServerInfo), then SendPacket frames out and
//! RecvPacket frames in.

use bytes::{Bytes, BytesMut};
use crypto_box::aead::Aead;
use crypto_box::{Nonce, PublicKey, SalsaBox, SecretKey};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::derp::frame::{self, FrameReader, KEY_LEN, Key, kind};

/// Frames queued for the relay before new ones are dropped (as a full UDP
/// socket drops; WireGuard and TCP recover).
pub const SEND_QUEUE: usize = 4096;

/// What the relay sent the peer.
#[derive(Debug)]
pub enum Inbound {
    /// A packet from `src`.
    Packet { src: Key, body: BytesMut },
    /// A peer we sent to left the relay (its tunnel ends by the
    /// coordinator's word, or WireGuard's timers).
    PeerGone,
}

/// Runs the handshake on `io`; then the returned sender takes encoded frames
/// (see [`send_packet_frame`]) and `on_recv` gets what arrives, until either
/// side closes. Returns once the handshake is done; the traffic runs in two
/// spawned tasks that end with the connection.
pub async fn connect<S>(
    io: S,
    secret: &SecretKey,
    mut on_recv: impl FnMut(Inbound) + Send + 'static,
) -> Result<mpsc::Sender<Bytes>, String>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, mut wr) = tokio::io::split(io);
    let mut reader = FrameReader::new(rd);
    let server_key = read_server_key(&mut reader).await?;
    let sealer = SalsaBox::new(&PublicKey::from(server_key), secret);
    let public = secret.public_key().to_bytes();
    let nonce: [u8; 24] = rand::random();
    let sealed = sealer
        .encrypt(Nonce::from_slice(&nonce), &br#"{"version":2}"#[..])
        .map_err(|_| "seal ClientInfo".to_owned())?;
    let mut out = Vec::new();
    frame::put_frame(&mut out, kind::CLIENT_INFO, &[&public, &nonce, &sealed]);
    wr.write_all(&out)
        .await
        .map_err(|e| format!("write ClientInfo: {e}"))?;
    let (k, len) = next_header(&mut reader).await?;
    if k != kind::SERVER_INFO {
        return Err(format!("expected ServerInfo, got frame type {k:#04x}"));
    }
    let _ = reader
        .body(len as usize)
        .await
        .map_err(|e| format!("ServerInfo: {e}"))?;

    let (tx, mut rx) = mpsc::channel::<Bytes>(SEND_QUEUE);
    let pong_tx = tx.clone();
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(64 << 10);
        while let Some(first) = rx.recv().await {
            batch.clear();
            batch.extend_from_slice(&first);
            while batch.len() < (64 << 10) {
                match rx.try_recv() {
                    Ok(more) => batch.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            if wr.write_all(&batch).await.is_err() || wr.flush().await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        loop {
            let Ok(Some((k, len))) = reader.header().await else {
                return;
            };
            let len = len as usize;
            if len > frame::MAX_PACKET_SIZE + KEY_LEN {
                return;
            }
            let Ok(body) = reader.body(len).await else {
                return;
            };
            match k {
                kind::RECV_PACKET if body.len() >= KEY_LEN => {
                    let mut body = body;
                    let src_bytes = body.split_to(KEY_LEN);
                    let mut src = [0u8; KEY_LEN];
                    src.copy_from_slice(&src_bytes);
                    on_recv(Inbound::Packet { src, body });
                }
                kind::PEER_GONE => on_recv(Inbound::PeerGone),
                kind::PING if body.len() == frame::PING_LEN => {
                    let mut out = Vec::with_capacity(frame::HEADER_LEN + frame::PING_LEN);
                    frame::put_frame(&mut out, kind::PONG, &[&body]);
                    let _ = pong_tx.try_send(Bytes::from(out));
                }
                _ => {}
            }
        }
    });
    Ok(tx)
}

/// A SendPacket frame: `packet` for `dst`.
pub fn send_packet_frame(dst: &Key, packet: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(frame::HEADER_LEN + KEY_LEN + packet.len());
    frame::put_frame(&mut out, kind::SEND_PACKET, &[dst, packet]);
    Bytes::from(out)
}

async fn next_header<R: AsyncRead + Unpin>(r: &mut FrameReader<R>) -> Result<(u8, u32), String> {
    r.header()
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "the relay closed the connection".to_owned())
}

async fn read_server_key<R: AsyncRead + Unpin>(r: &mut FrameReader<R>) -> Result<Key, String> {
    let (k, len) = next_header(r).await?;
    if k != kind::SERVER_KEY || len as usize != frame::MAGIC.len() + KEY_LEN {
        return Err(format!("expected ServerKey, got frame type {k:#04x}"));
    }
    let body = r.body(len as usize).await.map_err(|e| e.to_string())?;
    if body[..frame::MAGIC.len()] != frame::MAGIC {
        return Err("ServerKey without the DERP magic".to_owned());
    }
    let mut key = [0u8; KEY_LEN];
    key.copy_from_slice(&body[frame::MAGIC.len()..]);
    Ok(key)
}
