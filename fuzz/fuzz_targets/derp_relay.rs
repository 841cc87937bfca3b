//! The embedded DERP relay (`derp::Relay::serve`, what `GET /derp` runs for
//! anyone who connects) over `tokio::io::duplex`, in a current-thread tokio
//! runtime whose clock is paused: a fuzzed connection beside a well-behaved
//! peer. The fuzzed connection must end (Ok or Err, never a panic, in the
//! reader or in its writer task) within 10 minutes of virtual time after its
//! client half-closes, and afterwards the peer must still be served (a Ping
//! answered) and the relay must count exactly the connections still open.
//! The harness reads every connection all the time, so the relay is never
//! held by a full pipe; with the clock paused, time passes only while every
//! task waits, so a hang jumps straight to the deadline.
//!
//! Keys are fixed (relay, fuzzed client, peer) and ClientInfo boxes use a
//! fixed nonce, so inputs reproduce and a seed can carry a valid handshake.
//!
//! Input: one selector byte, then bytes.
//! - bit 0: 0 = the bytes are the whole client side from the start (the
//!   handshake: ClientInfo length, key, box, JSON); 1 = the harness first
//!   completes a valid handshake as the fuzzed client, and the bytes are the
//!   frames after it.
//! - bits 1-3: the bytes are written in pieces of 1, 2, 3, 7, 64, 1000 or
//!   4096 bytes with a yield after each (the relay reads each on its own),
//!   or (0) all at once.
//! - bit 4: with bit 0 = 0, the bytes up to the first NUL are the ClientInfo
//!   JSON, which the harness seals as the fuzzed client, and the bytes after
//!   the NUL follow the ClientInfo frame; with bit 0 = 1, another connection
//!   with the fuzzed client's key is open throughout (duplicate key: Health,
//!   last writer wins).
//! - bits 5-6: SendPacket destinations (frames walked by their declared
//!   lengths) are 0: left as they are, 1: replaced by the peer's key, 2: by
//!   the fuzzed client's own key, 3: the peer's or its own by the low bit of
//!   the destination's first byte.
//! - bit 7: meanwhile the peer sends 20 data and disco packets to the fuzzed
//!   client's key.

#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use appliance::derp::frame::{self, FrameReader, KEY_LEN, Key, kind};
use appliance::derp::{DerpError, Limits, Relay, ServerKey};
use crypto_box::aead::Aead;
use crypto_box::{Nonce, PublicKey, SalsaBox, SecretKey};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncWriteExt, DuplexStream, WriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const RELAY_SECRET: [u8; 32] = [1; 32];
const FUZZED_SECRET: [u8; 32] = [2; 32];
const PEER_SECRET: [u8; 32] = [3; 32];
const NONCE: [u8; frame::NONCE_LEN] = [4; frame::NONCE_LEN];
/// What a ClientInfo says unless the input says otherwise.
const CLIENT_JSON: &[u8] = br#"{"version":2,"CanAckPings":true}"#;
/// Piece sizes by selector bits 1-3.
const PIECES: [usize; 8] = [usize::MAX, 1, 2, 3, 7, 64, 1000, 4096];
/// Virtual time the fuzzed connection may take, and a well-behaved one to
/// answer. Several KeepAlive periods (60 s), so that a relay waiting on a
/// timer is not mistaken for a hang.
const DEADLINE: Duration = Duration::from_secs(600);

struct Keys {
    relay_public: Key,
    fuzzed: Key,
    peer: Key,
    /// The fuzzed client's box with the relay.
    fuzzed_box: SalsaBox,
    /// The ClientInfo frames of the fuzzed client and of the peer.
    fuzzed_hello: Vec<u8>,
    peer_hello: Vec<u8>,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let relay_public = ServerKey::from_bytes(&RELAY_SECRET)
            .expect("32 bytes")
            .public();
        let fuzzed = SecretKey::from(FUZZED_SECRET);
        let peer = SecretKey::from(PEER_SECRET);
        let fuzzed_box = SalsaBox::new(&PublicKey::from(relay_public), &fuzzed);
        let peer_box = SalsaBox::new(&PublicKey::from(relay_public), &peer);
        let fuzzed = fuzzed.public_key().to_bytes();
        let peer = peer.public_key().to_bytes();
        Keys {
            relay_public,
            fuzzed_hello: client_info(&fuzzed, &fuzzed_box, CLIENT_JSON),
            peer_hello: client_info(&peer, &peer_box, CLIENT_JSON),
            fuzzed,
            peer,
            fuzzed_box,
        }
    })
}

/// A ClientInfo frame: key, nonce, box(json).
fn client_info(public: &Key, sealer: &SalsaBox, json: &[u8]) -> Vec<u8> {
    let sealed = sealer
        .encrypt(Nonce::from_slice(&NONCE), json)
        .expect("sealing cannot fail");
    let mut out = Vec::new();
    frame::put_frame(&mut out, kind::CLIENT_INFO, &[public, &NONCE, &sealed]);
    out
}

type Served = JoinHandle<Result<(), DerpError>>;

fn dial(relay: &Arc<Relay>) -> (DuplexStream, Served) {
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let relay = relay.clone();
    let served = tokio::spawn(async move { relay.serve(theirs, &CancellationToken::new()).await });
    (ours, served)
}

/// The next frame from the relay (whose lengths are trusted here).
async fn next<R: tokio::io::AsyncRead + Unpin>(r: &mut FrameReader<R>) -> (u8, Vec<u8>) {
    let (k, len) = r.header().await.expect("a frame").expect("not the end");
    (k, r.body(len as usize).await.expect("a body").to_vec())
}

/// A client that completes the handshake and reads everything the relay
/// sends, passing on the Pongs.
struct Peer {
    writer: WriteHalf<DuplexStream>,
    pongs: mpsc::UnboundedReceiver<Vec<u8>>,
    served: Served,
}

impl Peer {
    async fn connect(relay: &Arc<Relay>, hello: &[u8]) -> Peer {
        let (stream, served) = dial(relay);
        let (rd, mut writer) = tokio::io::split(stream);
        let mut reader = FrameReader::new(rd);
        assert_eq!(next(&mut reader).await.0, kind::SERVER_KEY);
        writer.write_all(hello).await.expect("ClientInfo sent");
        assert_eq!(next(&mut reader).await.0, kind::SERVER_INFO);
        let (tx, pongs) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some((k, len))) = reader.header().await {
                let Ok(body) = reader.body(len as usize).await else {
                    return;
                };
                if k == kind::PONG {
                    let _ = tx.send(body.to_vec());
                }
            }
        });
        Peer {
            writer,
            pongs,
            served,
        }
    }

    async fn send_frame(&mut self, k: u8, parts: &[&[u8]]) {
        let mut out = Vec::new();
        frame::put_frame(&mut out, k, parts);
        self.writer
            .write_all(&out)
            .await
            .expect("the peer is served");
    }

    /// A Ping answered.
    async fn ping(&mut self, data: [u8; 8]) {
        self.send_frame(kind::PING, &[&data]).await;
        tokio::time::timeout(DEADLINE, async {
            while self.pongs.recv().await.expect("the peer is served") != data {}
        })
        .await
        .expect("the peer's Ping is answered");
    }

    /// Hangs up (half-closes: the read half lives on in the reading task);
    /// the relay ends the connection cleanly.
    async fn close(mut self) {
        self.writer.shutdown().await.expect("the peer is served");
        let r = tokio::time::timeout(DEADLINE, self.served)
            .await
            .expect("a hung-up peer's connection ends")
            .expect("no panic");
        assert!(r.is_ok(), "{r:?}");
    }
}

/// Rewrites the destination of every SendPacket in `frames` (walked by the
/// declared lengths) as selector bits 5-6 say.
fn rewrite_destinations(frames: &mut [u8], how: u8, k: &Keys) {
    if how == 0 {
        return;
    }
    let mut at = 0usize;
    while at + frame::HEADER_LEN <= frames.len() {
        let len = u32::from_be_bytes([
            frames[at + 1],
            frames[at + 2],
            frames[at + 3],
            frames[at + 4],
        ]) as usize;
        let body = at + frame::HEADER_LEN;
        if frames[at] == kind::SEND_PACKET && len >= KEY_LEN && body + KEY_LEN <= frames.len() {
            let dst = match how {
                1 => &k.peer,
                2 => &k.fuzzed,
                _ if frames[body] & 1 == 0 => &k.peer,
                _ => &k.fuzzed,
            };
            frames[body..body + KEY_LEN].copy_from_slice(dst);
        }
        at = body.saturating_add(len);
    }
}

async fn run(selector: u8, bytes: &[u8]) {
    let k = keys();
    let relay = Arc::new(Relay::with_limits(
        ServerKey::from_bytes(&RELAY_SECRET).expect("32 bytes"),
        // Small queues, so that dropping the oldest packet is reached too.
        Limits {
            queue_depth: 16,
            ..Limits::default()
        },
    ));
    assert_eq!(relay.public_key(), k.relay_public);
    let handshake = selector & 1 == 1;
    let piece = PIECES[usize::from((selector >> 1) & 7)];
    let bit4 = selector & 0x10 != 0;
    let peer_talks = selector & 0x80 != 0;

    let mut peer = Peer::connect(&relay, &k.peer_hello).await;
    let dup = if handshake && bit4 {
        Some(Peer::connect(&relay, &k.fuzzed_hello).await)
    } else {
        None
    };

    let (stream, served) = dial(&relay);
    let (rd, mut wr) = tokio::io::split(stream);
    let mut reader = FrameReader::new(rd);
    let (mut input, frames_at) = if handshake {
        assert_eq!(next(&mut reader).await.0, kind::SERVER_KEY);
        wr.write_all(&k.fuzzed_hello)
            .await
            .expect("ClientInfo sent");
        assert_eq!(next(&mut reader).await.0, kind::SERVER_INFO);
        (bytes.to_vec(), 0)
    } else if bit4 {
        let (json, rest) = match bytes.iter().position(|&b| b == 0) {
            Some(nul) => (&bytes[..nul], &bytes[nul + 1..]),
            None => (bytes, &[][..]),
        };
        let mut v = client_info(&k.fuzzed, &k.fuzzed_box, json);
        let at = v.len();
        v.extend_from_slice(rest);
        (v, at)
    } else {
        (bytes.to_vec(), 0)
    };
    rewrite_destinations(&mut input[frames_at..], (selector >> 5) & 3, k);

    // Everything the relay sends the fuzzed client is read and dropped.
    let drain = tokio::spawn(async move {
        while let Ok(Some((_, len))) = reader.header().await {
            if reader.skip(u64::from(len)).await.is_err() {
                break;
            }
        }
    });
    let fuzzed = async {
        for p in input.chunks(piece) {
            if wr.write_all(p).await.is_err() {
                break; // the relay has hung up
            }
            if piece != usize::MAX {
                tokio::task::yield_now().await;
            }
        }
        let _ = wr.shutdown().await;
        served.await
    };
    let talk = async {
        if !peer_talks {
            return;
        }
        let mut disco = vec![0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac];
        disco.resize(6 + 32 + 24 + 16, 7);
        for i in 0..10u8 {
            peer.send_frame(kind::SEND_PACKET, &[&k.fuzzed, &[i; 100]])
                .await;
            peer.send_frame(kind::SEND_PACKET, &[&k.fuzzed, &disco])
                .await;
            tokio::task::yield_now().await;
        }
    };
    let (r, ()) = tokio::join!(tokio::time::timeout(DEADLINE, fuzzed), talk);
    let r = r
        .expect("the relay ends the connection once the client has half-closed")
        .expect("serve does not panic");
    if let Err(DerpError::Protocol(m)) = &r {
        assert!(!m.starts_with("the writer failed"), "{m}");
    }
    tokio::time::timeout(DEADLINE, drain)
        .await
        .expect("the relay closes its side")
        .expect("no panic");
    drop(wr);

    // Only the others are still counted, and they are still served.
    let open = 1 + u64::from(dup.is_some());
    assert_eq!(relay.stats().connected, open);
    peer.ping(*b"peer-png").await;
    if let Some(mut d) = dup {
        d.ping(*b"dup--png").await;
        d.close().await;
    }
    peer.close().await;
    assert_eq!(relay.stats().connected, 0);
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    rt.block_on(run(selector, bytes));
});
