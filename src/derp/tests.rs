//! The relay driven over `tokio::io::duplex` by DERP clients written here
//! (frame codec from `frame`, NaCl box from crypto_box): handshake, relay
//! both ways, PeerGone, Health on a duplicate key, a client that never reads,
//! the limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use crypto_box::aead::Aead;
use crypto_box::{Nonce, PublicKey, SalsaBox, SecretKey};
use tokio::io::{AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::frame::{self, FrameReader, KEY_LEN, Key, kind};
use super::server::DUPLICATE_HEALTH;
use super::{DerpError, Limits, Relay, ServerKey};

const WAIT: Duration = Duration::from_secs(5);

fn relay_with(limits: Limits) -> Arc<Relay> {
    Arc::new(Relay::with_limits(ServerKey::generate(), limits))
}

fn relay() -> Arc<Relay> {
    relay_with(Limits::default())
}

struct TestClient {
    secret: SecretKey,
    public: Key,
    reader: FrameReader<ReadHalf<DuplexStream>>,
    writer: WriteHalf<DuplexStream>,
}

type Served = JoinHandle<Result<(), DerpError>>;

/// A connection to `relay` whose server side runs in its own task.
fn dial(relay: &Arc<Relay>, buffer: usize) -> (DuplexStream, Served) {
    let (ours, theirs) = tokio::io::duplex(buffer);
    let relay = relay.clone();
    let served = tokio::spawn(async move {
        let shutdown = CancellationToken::new();
        relay.serve(theirs, &shutdown).await
    });
    (ours, served)
}

impl TestClient {
    async fn connect(relay: &Arc<Relay>) -> (TestClient, Served) {
        TestClient::connect_as(relay, SecretKey::from(rand::random::<[u8; 32]>()), 1 << 16).await
    }

    async fn connect_as(
        relay: &Arc<Relay>,
        secret: SecretKey,
        buffer: usize,
    ) -> (TestClient, Served) {
        let (stream, served) = dial(relay, buffer);
        let (rd, wr) = tokio::io::split(stream);
        let mut client = TestClient {
            public: secret.public_key().to_bytes(),
            secret,
            reader: FrameReader::new(rd),
            writer: wr,
        };
        let server_key = client.read_server_key().await;
        assert_eq!(server_key, relay.public_key());
        let sealer = SalsaBox::new(&PublicKey::from(server_key), &client.secret);
        let info = client_info(
            &client.public,
            &sealer,
            br#"{"version":2,"CanAckPings":true}"#,
        );
        client.send(&info).await;
        let (k, body) = client.next().await;
        assert_eq!(k, kind::SERVER_INFO);
        let (nonce, sealed) = body.split_at(frame::NONCE_LEN);
        let plain = sealer.decrypt(Nonce::from_slice(nonce), sealed).unwrap();
        assert_eq!(plain, br#"{"version":2}"#);
        (client, served)
    }

    async fn read_server_key(&mut self) -> Key {
        let (k, body) = self.next().await;
        assert_eq!(k, kind::SERVER_KEY);
        assert_eq!(body.len(), 40);
        assert_eq!(&body[..8], &frame::MAGIC);
        body[8..].try_into().unwrap()
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    async fn send_frame(&mut self, k: u8, parts: &[&[u8]]) {
        let mut out = Vec::new();
        frame::put_frame(&mut out, k, parts);
        self.send(&out).await;
    }

    async fn send_packet(&mut self, dst: &Key, data: &[u8]) {
        self.send_frame(kind::SEND_PACKET, &[dst, data]).await;
    }

    /// The next frame (within 5 s).
    async fn next(&mut self) -> (u8, BytesMut) {
        tokio::time::timeout(WAIT, async {
            let (k, len) = self.reader.header().await.unwrap().expect("a frame");
            (k, self.reader.body(len as usize).await.unwrap())
        })
        .await
        .expect("a frame within 5 s")
    }

    /// The next frame that is not a KeepAlive.
    async fn next_not_keepalive(&mut self) -> (u8, BytesMut) {
        loop {
            let f = self.next().await;
            if f.0 != kind::KEEP_ALIVE {
                return f;
            }
        }
    }

    async fn recv_packet(&mut self) -> (Key, Vec<u8>) {
        let (k, body) = self.next_not_keepalive().await;
        assert_eq!(k, kind::RECV_PACKET, "{body:?}");
        (body[..32].try_into().unwrap(), body[32..].to_vec())
    }

    /// Whether the relay closed the connection (EOF within 5 s).
    async fn closed(&mut self) -> bool {
        tokio::time::timeout(WAIT, async {
            loop {
                match self.reader.header().await {
                    Ok(None) | Err(_) => return Some(true),
                    Ok(Some((_, len))) => self.reader.skip(u64::from(len)).await.ok()?,
                };
            }
        })
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
    }
}

/// A ClientInfo frame: key, nonce, box(json).
fn client_info(public: &Key, sealer: &SalsaBox, json: &[u8]) -> Vec<u8> {
    let nonce: [u8; 24] = rand::random();
    let sealed = sealer.encrypt(Nonce::from_slice(&nonce), json).unwrap();
    let mut out = Vec::new();
    frame::put_frame(&mut out, kind::CLIENT_INFO, &[public, &nonce, &sealed]);
    out
}

async fn result(served: Served) -> Result<(), DerpError> {
    tokio::time::timeout(WAIT, served)
        .await
        .expect("the relay ends the connection within 5 s")
        .unwrap()
}

#[tokio::test]
async fn relays_both_ways_with_the_senders_key_as_source() {
    let relay = relay();
    let (mut a, _) = TestClient::connect(&relay).await;
    let (mut b, _) = TestClient::connect(&relay).await;
    a.send_packet(&b.public, b"from a").await;
    assert_eq!(b.recv_packet().await, (a.public, b"from a".to_vec()));
    b.send_packet(&a.public, b"from b").await;
    assert_eq!(a.recv_packet().await, (b.public, b"from b".to_vec()));
    // An empty packet and one of the largest size pass too.
    let big = vec![7u8; frame::MAX_PACKET_SIZE];
    a.send_packet(&b.public, b"").await;
    a.send_packet(&b.public, &big).await;
    assert_eq!(b.recv_packet().await, (a.public, Vec::new()));
    assert_eq!(b.recv_packet().await, (a.public, big));
    let stats = relay.stats();
    assert_eq!((stats.accepted, stats.connected), (2, 2));
    assert_eq!(stats.packets_relayed, 4);
}

#[tokio::test]
async fn ping_is_answered_and_unknown_frames_are_skipped() {
    let relay = relay();
    let (mut a, _) = TestClient::connect(&relay).await;
    a.send_frame(0x42, &[&[1u8; 3000]]).await;
    a.send_frame(kind::NOTE_PREFERRED, &[&[1]]).await;
    a.send_frame(kind::PING, &[b"12345678", b"future"]).await;
    let (k, body) = a.next_not_keepalive().await;
    assert_eq!((k, &body[..]), (kind::PONG, &b"12345678"[..]));
}

#[tokio::test]
async fn a_box_not_sealed_by_the_claimed_key_is_refused() {
    let relay = relay();
    let (stream, served) = dial(&relay, 1 << 16);
    let (rd, wr) = tokio::io::split(stream);
    let claimed = SecretKey::from(rand::random::<[u8; 32]>());
    let mut c = TestClient {
        public: claimed.public_key().to_bytes(),
        secret: claimed,
        reader: FrameReader::new(rd),
        writer: wr,
    };
    let server = c.read_server_key().await;
    // Sealed with another key than the one claimed.
    let other = SecretKey::from(rand::random::<[u8; 32]>());
    let sealer = SalsaBox::new(&PublicKey::from(server), &other);
    let info = client_info(&c.public, &sealer, b"{}");
    c.send(&info).await;
    assert!(c.closed().await);
    let err = result(served).await.unwrap_err();
    assert!(
        matches!(&err, DerpError::Handshake(m) if m.contains("does not open")),
        "{err}"
    );
    assert_eq!(relay.stats().accepted, 0);
}

#[tokio::test]
async fn client_info_limits_and_deadline() {
    let relay = relay_with(Limits {
        handshake_timeout: Duration::from_millis(200),
        ..Limits::default()
    });
    // Over 256 KiB: refused from the header alone.
    let (stream, served) = dial(&relay, 1 << 16);
    let (_rd, mut wr) = tokio::io::split(stream);
    let mut header = Vec::new();
    frame::put_header(&mut header, kind::CLIENT_INFO, (256 << 10) + 1);
    wr.write_all(&header).await.unwrap();
    let err = result(served).await.unwrap_err();
    assert!(
        matches!(&err, DerpError::Handshake(m) if m.contains("over")),
        "{err}"
    );
    // Too short to hold a key and a nonce.
    let (stream, served) = dial(&relay, 1 << 16);
    let (_rd, mut wr) = tokio::io::split(stream);
    let mut short = Vec::new();
    frame::put_frame(&mut short, kind::CLIENT_INFO, &[&[0u8; 55]]);
    wr.write_all(&short).await.unwrap();
    let err = result(served).await.unwrap_err();
    assert!(
        matches!(&err, DerpError::Handshake(m) if m.contains("short")),
        "{err}"
    );
    // Another frame first.
    let (stream, served) = dial(&relay, 1 << 16);
    let (_rd, mut wr) = tokio::io::split(stream);
    let mut ping = Vec::new();
    frame::put_frame(&mut ping, kind::PING, &[&[0u8; 8]]);
    wr.write_all(&ping).await.unwrap();
    assert!(matches!(result(served).await, Err(DerpError::Handshake(_))));
    // Nothing at all: the deadline.
    let (_stream, served) = dial(&relay, 1 << 16);
    assert!(matches!(
        result(served).await,
        Err(DerpError::HandshakeTimeout(_))
    ));
}

#[tokio::test]
async fn oversized_and_mesh_frames_end_the_connection() {
    let relay = relay();
    let (mut a, served) = TestClient::connect(&relay).await;
    let mut header = Vec::new();
    frame::put_header(
        &mut header,
        kind::SEND_PACKET,
        (frame::KEY_LEN + frame::MAX_PACKET_SIZE + 1) as u32,
    );
    a.send(&header).await;
    assert!(a.closed().await);
    let err = result(served).await.unwrap_err();
    assert!(
        matches!(&err, DerpError::Protocol(m) if m.contains("limit")),
        "{err}"
    );

    for mesh in [kind::WATCH_CONNS, kind::FORWARD_PACKET, kind::CLOSE_PEER] {
        let (mut a, served) = TestClient::connect(&relay).await;
        a.send_frame(mesh, &[]).await;
        assert!(a.closed().await);
        let err = result(served).await.unwrap_err();
        assert!(
            matches!(&err, DerpError::Protocol(m) if m.contains("mesh")),
            "{err}"
        );
    }
    assert_eq!(relay.stats().connected, 0);
}

#[tokio::test]
async fn peer_gone_reaches_those_the_leaver_sent_to() {
    let relay = relay();
    let (mut a, a_served) = TestClient::connect(&relay).await;
    let (mut b, _) = TestClient::connect(&relay).await;
    let (mut c, _) = TestClient::connect(&relay).await;
    a.send_packet(&b.public, b"hi").await;
    assert_eq!(b.recv_packet().await.0, a.public);
    let a_key = a.public;
    drop(a);
    assert!(result(a_served).await.is_ok(), "a hang-up is not an error");
    let (k, body) = b.next_not_keepalive().await;
    assert_eq!(k, kind::PEER_GONE);
    assert_eq!(&body[..32], &a_key);
    assert_eq!(body[32], frame::reason::DISCONNECTED);
    // c never heard from a: the next thing it gets is its own pong.
    c.send_frame(kind::PING, &[b"cccccccc"]).await;
    assert_eq!(c.next_not_keepalive().await.0, kind::PONG);
}

#[tokio::test]
async fn a_disco_packet_to_an_absent_key_gets_peer_gone_not_here() {
    let relay = relay();
    let (mut a, _) = TestClient::connect(&relay).await;
    let nobody = [9u8; 32];
    let mut disco = vec![0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac];
    disco.resize(100, 1);
    a.send_packet(&nobody, b"not disco").await;
    a.send_packet(&nobody, &disco).await;
    let (k, body) = a.next_not_keepalive().await;
    assert_eq!(k, kind::PEER_GONE);
    assert_eq!(
        (&body[..32], body[32]),
        (&nobody[..], frame::reason::NOT_HERE)
    );
    assert_eq!(relay.stats().dropped_unknown_dest, 2);
}

#[tokio::test]
async fn a_key_connected_twice_gets_health_and_the_last_writer_gets_packets() {
    let relay = relay();
    let secret = rand::random::<[u8; 32]>();
    let (mut first, _) = TestClient::connect_as(&relay, SecretKey::from(secret), 1 << 16).await;
    let (mut second, second_served) =
        TestClient::connect_as(&relay, SecretKey::from(secret), 1 << 16).await;
    let (mut b, _) = TestClient::connect(&relay).await;
    for c in [&mut first, &mut second] {
        let (k, body) = c.next_not_keepalive().await;
        assert_eq!(k, kind::HEALTH);
        assert_eq!(&body[..], DUPLICATE_HEALTH.as_bytes());
    }
    // The newer connection gets the packets...
    b.send_packet(&first.public, b"one").await;
    assert_eq!(second.recv_packet().await.1, b"one");
    // ...until the older one speaks.
    first.send_frame(kind::PING, &[b"firstpng"]).await;
    assert_eq!(first.next_not_keepalive().await.0, kind::PONG);
    b.send_packet(&first.public, b"two").await;
    assert_eq!(first.recv_packet().await.1, b"two");
    // One left: healthy again.
    drop(second);
    assert!(result(second_served).await.is_ok());
    let (k, body) = first.next_not_keepalive().await;
    assert_eq!((k, body.len()), (kind::HEALTH, 0));
    b.send_packet(&first.public, b"three").await;
    assert_eq!(first.recv_packet().await.1, b"three");
}

#[tokio::test]
async fn a_client_that_never_reads_stalls_nobody() {
    let relay = relay_with(Limits {
        write_timeout: Duration::from_millis(300),
        ..Limits::default()
    });
    // `sink` never reads; its pipe holds 4 KiB.
    let (sink, sink_served) =
        TestClient::connect_as(&relay, SecretKey::from(rand::random::<[u8; 32]>()), 4096).await;
    let (mut flood, _) = TestClient::connect(&relay).await;
    let (mut a, _) = TestClient::connect(&relay).await;
    let (mut b, _) = TestClient::connect(&relay).await;
    let sink_key = sink.public;
    let packet = vec![5u8; 1200];
    let sent = tokio::time::timeout(WAIT, async {
        for _ in 0..3000 {
            flood.send_packet(&sink_key, &packet).await;
        }
    })
    .await;
    assert!(sent.is_ok(), "the sender to a stalled reader is never held");
    // Meanwhile another pair talks as usual.
    for i in 0..200u32 {
        a.send_packet(&b.public, &i.to_be_bytes()).await;
        assert_eq!(b.recv_packet().await.1, i.to_be_bytes());
        b.send_packet(&a.public, &i.to_be_bytes()).await;
        assert_eq!(a.recv_packet().await.1, i.to_be_bytes());
    }
    // The stalled reader is cut off at the write timeout, its queue dropped.
    let err = result(sink_served).await.unwrap_err();
    assert!(matches!(err, DerpError::WriteTimeout(_)), "{err}");
    let stats = relay.stats();
    assert!(stats.dropped_queue_full > 0, "{stats:?}");
    drop(sink);
}

/// xorshift64: the mutation test's inputs are the same on every run. (A
/// `Cell`, so that draws can nest: `rng.bytes(rng.below(10))`.)
struct Rng(std::cell::Cell<u64>);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(std::cell::Cell::new(seed))
    }

    fn next(&self) -> u64 {
        let mut x = self.0.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0.set(x);
        x
    }

    fn below(&self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// A few frames of every kind a client may send, some malformed: packets to
/// `peer`, to the sender itself and to nobody (data and disco), Pings of
/// every size, NotePreferred, the mesh frames, unknown types, and (unless
/// `honest`) lengths that lie (short, long, huge) and bodies cut short.
fn random_frames(rng: &Rng, me: &Key, peer: &Key, honest: bool, out: &mut Vec<u8>) {
    const DISCO: [u8; 6] = [0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac];
    for _ in 0..1 + rng.below(8) {
        let k = match rng.below(16) {
            0..=4 => kind::SEND_PACKET,
            5 => kind::NOTE_PREFERRED,
            6 | 7 => kind::PING,
            8 => kind::PONG,
            9 => kind::KEEP_ALIVE,
            10 => [kind::FORWARD_PACKET, kind::WATCH_CONNS, kind::CLOSE_PEER][rng.below(3)],
            11 => [kind::CLIENT_INFO, kind::SERVER_KEY, kind::RECV_PACKET][rng.below(3)],
            _ => rng.next() as u8,
        };
        let mut body = match k {
            kind::SEND_PACKET if rng.below(8) == 0 => rng.bytes(rng.below(KEY_LEN)),
            kind::SEND_PACKET => {
                let mut b = match rng.below(4) {
                    0 | 1 => peer.to_vec(),
                    2 => me.to_vec(),
                    _ => rng.bytes(KEY_LEN),
                };
                if rng.below(3) == 0 {
                    b.extend_from_slice(&DISCO);
                }
                let len = rng.below(300);
                b.extend(rng.bytes(len));
                b
            }
            kind::NOTE_PREFERRED => rng.bytes(if rng.below(4) == 0 { rng.below(3) } else { 1 }),
            kind::PING => rng.bytes(match rng.below(4) {
                0 => rng.below(frame::PING_LEN),
                1 => frame::MAX_PING_FRAME + rng.below(3),
                _ => frame::PING_LEN + rng.below(20),
            }),
            _ => rng.bytes(rng.below(100)),
        };
        let len = match rng.below(12) {
            _ if honest => body.len() as u32,
            0 => rng.next() as u32,
            1 => (body.len() + rng.below(4)) as u32,
            2 => body.len().saturating_sub(1 + rng.below(4)) as u32,
            _ => body.len() as u32,
        };
        if !honest && rng.below(16) == 0 {
            body.truncate(rng.below(body.len() + 1));
        }
        frame::put_header(out, k, len);
        out.extend_from_slice(&body);
    }
}

/// Applies 1 to 4 random edits (overwrite, delete, insert) to `v`.
fn mutate(rng: &Rng, v: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len().max(1));
        match rng.below(3) {
            0 if at < v.len() => v[at] = rng.next() as u8,
            1 if at < v.len() => {
                v.remove(at);
            }
            _ => v.insert(at.min(v.len()), rng.next() as u8),
        }
    }
}

/// Stands in for the fuzz target (`fuzz/fuzz_targets/derp_relay.rs`) where
/// cargo-fuzz is not available: thousands of connections that send random
/// or mutated bytes before and after a valid handshake, written in random
/// pieces and then half-closed. Each must end (Ok or Err, its writer never
/// panicking) within 5 s, and a well-behaved client connected throughout
/// must still get its packets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_mutated_frames_never_panic_or_hang() {
    let relay = relay();
    let (b, b_served) = TestClient::connect(&relay).await;
    let b_key = b.public;
    // b reads all the time (its writer would cut it off otherwise) and
    // reports the first packet whose payload is `marker`.
    let marker = b"still served".to_vec();
    let mut b_reader = b.reader;
    let b_writer = b.writer;
    let from_fuzzed = Arc::new(AtomicU64::new(0));
    let b_reads = tokio::spawn({
        let marker = marker.clone();
        let from_fuzzed = from_fuzzed.clone();
        async move {
            loop {
                let Some((k, len)) = b_reader.header().await.unwrap() else {
                    panic!("b's connection ended");
                };
                let body = b_reader.body(len as usize).await.unwrap();
                if k == kind::RECV_PACKET {
                    if body[KEY_LEN..] == marker[..] {
                        return Key::try_from(&body[..KEY_LEN]).unwrap();
                    }
                    from_fuzzed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });

    // The fuzzed connections all claim one key, whose box is sealed once
    // (the relay opens each with one key agreement of its own).
    let secret = SecretKey::from([0x42u8; 32]);
    let a_key = secret.public_key().to_bytes();
    let sealer = SalsaBox::new(&PublicKey::from(relay.public_key()), &secret);
    let hello = client_info(&a_key, &sealer, br#"{"version":2,"CanAckPings":true}"#);
    let mut valid = Vec::new();
    frame::put_frame(&mut valid, kind::SEND_PACKET, &[&b_key, b"hello b"]);
    frame::put_frame(&mut valid, kind::NOTE_PREFERRED, &[&[1]]);
    frame::put_frame(&mut valid, kind::PING, &[b"12345678", b"ext"]);
    frame::put_frame(&mut valid, kind::SEND_PACKET, &[&a_key, b"to myself"]);
    frame::put_frame(&mut valid, 0x42, &[&[7u8; 40]]);
    frame::put_frame(&mut valid, kind::KEEP_ALIVE, &[]);
    let mut disco = vec![0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac];
    disco.resize(80, 3);
    frame::put_frame(&mut valid, kind::SEND_PACKET, &[&[9u8; 32], &disco]);
    frame::put_frame(&mut valid, kind::SEND_PACKET, &[&b_key, &disco]);

    let rng = Rng::new(0x2545_f491_4f6c_dd1d);
    let (mut ended_ok, mut ended_err) = (0, 0);
    for round in 0..3000 {
        let mut honest = false;
        let input = match round % 4 {
            // A ClientInfo that opens, its JSON mutated (or not JSON, or not
            // an object), then valid frames.
            0 if rng.below(3) == 0 => {
                let mut json = br#"{"version":2,"CanAckPings":true}"#.to_vec();
                match rng.below(4) {
                    0 => json = br#"[1,"a",null]"#.to_vec(),
                    1 => json = b"null".to_vec(),
                    _ => mutate(&rng, &mut json),
                }
                [&client_info(&a_key, &sealer, &json)[..], &valid[..]].concat()
            }
            // No handshake: random bytes, now and then behind a ClientInfo header.
            0 => {
                let mut v = rng.bytes(rng.below(200));
                if rng.below(2) == 0 {
                    let len = (frame::MIN_CLIENT_INFO + rng.below(100)) as u32;
                    let mut h = Vec::new();
                    frame::put_header(&mut h, kind::CLIENT_INFO, len);
                    v.splice(0..0, h);
                }
                v
            }
            // The handshake and valid frames, mutated anywhere.
            1 => {
                let mut v = [&hello[..], &valid[..]].concat();
                mutate(&rng, &mut v);
                v
            }
            // A valid handshake, then random frames; when their lengths are
            // true, a Ping at the end that the relay answers (unless a frame
            // before it ended the connection) before the client half-closes,
            // so that the writer has its turn.
            2 => {
                let mut v = hello.clone();
                honest = rng.below(2) == 0;
                random_frames(&rng, &a_key, &b_key, honest, &mut v);
                if honest {
                    frame::put_frame(&mut v, kind::PING, &[b"lastping"]);
                }
                v
            }
            // A valid handshake, then valid frames mutated.
            _ => {
                let mut f = valid.clone();
                mutate(&rng, &mut f);
                [&hello[..], &f[..]].concat()
            }
        };
        let chunk = 1 + rng.below(if rng.below(2) == 0 { 8 } else { 600 });
        let (stream, served) = dial(&relay, 1 + rng.below(4096));
        let (rd, mut wr) = tokio::io::split(stream);
        // Reads everything the relay sends; reports the first Pong, or the
        // end (by dropping `pong`).
        let (pong, ponged) = tokio::sync::oneshot::channel::<()>();
        let drain = tokio::spawn(async move {
            let mut pong = Some(pong);
            let mut r = FrameReader::new(rd);
            while let Ok(Some((k, len))) = r.header().await {
                if k == kind::PONG
                    && let Some(p) = pong.take()
                {
                    let _ = p.send(());
                }
                if r.skip(u64::from(len)).await.is_err() {
                    break;
                }
            }
        });
        for piece in input.chunks(chunk) {
            if wr.write_all(piece).await.is_err() {
                break; // the relay has hung up
            }
        }
        if honest {
            let _ = tokio::time::timeout(WAIT, ponged)
                .await
                .unwrap_or_else(|_| panic!("round {round}: no Pong and no end: {input:02x?}"));
        }
        let _ = wr.shutdown().await;
        let r = tokio::time::timeout(WAIT, served)
            .await
            .unwrap_or_else(|_| panic!("round {round}: the connection did not end: {input:02x?}"))
            .unwrap_or_else(|e| panic!("round {round}: the relay panicked ({e}): {input:02x?}"));
        match r {
            Ok(()) => ended_ok += 1,
            Err(DerpError::Protocol(m)) if m.starts_with("the writer failed") => {
                panic!("round {round}: {m}: {input:02x?}")
            }
            Err(_) => ended_err += 1,
        }
        tokio::time::timeout(WAIT, drain)
            .await
            .expect("the relay closes its side")
            .unwrap();
        drop(wr);
    }
    assert!(ended_ok > 100 && ended_err > 100, "{ended_ok} {ended_err}");

    // Every fuzzed connection is gone; b is still here and still served.
    assert_eq!(relay.stats().connected, 1);
    assert!(from_fuzzed.load(Ordering::Relaxed) > 100);
    let (mut c, _) = TestClient::connect(&relay).await;
    c.send_packet(&b_key, &marker).await;
    let src = tokio::time::timeout(WAIT, b_reads)
        .await
        .expect("b gets the packet within 5 s")
        .unwrap();
    assert_eq!(src, c.public);
    assert!(!b_served.is_finished());
    drop(b_writer);
    assert!(result(b_served).await.is_ok());
}
