//! The relay: clients by public key, one connection served by [`Relay::serve`].
//!
//! A connection is the handshake (ServerKey; ClientInfo opened with the
//! relay's key, which proves the client owns its key; ServerInfo), then a
//! reader (this task) and a writer (its own task):
//!
//! - The reader takes frames in turn. SendPacket looks the destination up
//!   (a read lock on one of 64 shards of the key map, then an `Arc` clone)
//!   and appends the packet, split off the reader's buffer without a copy,
//!   to the destination's [`Outbox`]; the source written out is always the
//!   sending connection's own key. Ping sets a Pong, NotePreferred is noted,
//!   the mesh frames (ForwardPacket, WatchConns, ClosePeer) end the
//!   connection (this relay has no mesh), other types are skipped unread.
//! - The writer takes everything queued in one lock, writes it as frames
//!   into a buffer sent every 64 KiB, and flushes when the queue is empty;
//!   a KeepAlive every 60 s (plus up to 5 s of jitter). A write or flush
//!   that takes longer than 2 s ends the connection: a client that does not
//!   read is cut off instead of holding the relay.
//!
//! Queues: each connection's outbox holds at most 512 data packets, and 512
//! disco packets in a queue of their own so that a flood of data never
//! pushes out path discovery. When a queue is full the *oldest* packet is
//! dropped (Go's derp server: fresher packets matter more to WireGuard) and
//! counted; a sender never waits for a receiver. PeerGone notices are kept
//! up to 1024 (oldest dropped), one Pong (a Ping while one waits is
//! ignored, as Go does), and the latest Health message.
//!
//! Keys connected twice: every connection stays open and all of them get a
//! Health frame saying so; packets go to the connection that registered or
//! sent last (Go's `lastWriterIsActive`). When one remains it gets an empty
//! Health (healthy again).
//!
//! PeerGone: when a key's last connection ends, every connection it sent
//! packets to (still the same connection) gets PeerGone(key, disconnected),
//! so it forgets the route (Go's `notePeerGoneFromRegionLocked`). A disco
//! packet to a key that is not here is answered with PeerGone(key,
//! not-here), at most 3 at once and one a second per sender.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crypto_box::aead::Aead;
use crypto_box::{Nonce, PublicKey, SalsaBox};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::ServerKey;
use super::frame::{self, FrameError, FrameReader, KEY_LEN, Key, kind, reason};

/// The Health message sent to every connection of a key connected twice.
pub const DUPLICATE_HEALTH: &str = "this node key is connected to the relay more than once \
     (is the same node key in use on two machines?); packets go to the connection that sent last";

/// The writer sends its buffer once it holds this much.
const WRITE_CHUNK: usize = 64 << 10;
/// An idle writer keeps at most this much buffer.
const WRITE_KEEP: usize = 16 << 10;
/// PeerGone notices waiting for one connection.
const PEER_GONE_DEPTH: usize = 1024;
/// Key-map shards (by the key's first byte).
const SHARDS: usize = 64;
/// A reader's record of destinations is pruned from this size on.
const SENT_TO_PRUNE: usize = 1024;
/// An idle writer lets go of queues that grew beyond this many entries.
const QUEUE_KEEP: usize = 64;

/// The relay's timings and bounds; [`Limits::default`] is Go's (coder's
/// fork: 512 packets per queue).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Packets queued per connection (and as many disco packets).
    pub queue_depth: usize,
    /// The longest a write to a client may take before it is cut off.
    pub write_timeout: Duration,
    /// The longest from accepting a connection to its ClientInfo.
    pub handshake_timeout: Duration,
    /// KeepAlive period (plus up to 5 s of jitter).
    pub keepalive: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            queue_depth: 512,
            write_timeout: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(60),
        }
    }
}

/// Why a connection ended other than by the client hanging up.
#[derive(Debug, thiserror::Error)]
pub enum DerpError {
    #[error("handshake: {0}")]
    Handshake(String),
    #[error("no ClientInfo within {0:?}")]
    HandshakeTimeout(Duration),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("{0}")]
    Protocol(String),
    #[error("write: {0}")]
    Write(std::io::Error),
    #[error("a write took longer than {0:?}: the client does not read")]
    WriteTimeout(Duration),
}

/// Counters since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections that completed the handshake.
    pub accepted: u64,
    /// Connections open now.
    pub connected: u64,
    /// Packets queued for a destination.
    pub packets_relayed: u64,
    /// Packets dropped from the head of a full queue.
    pub dropped_queue_full: u64,
    /// Packets for a key not connected here.
    pub dropped_unknown_dest: u64,
    /// Packets for a connection that was ending.
    pub dropped_gone: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    connected: AtomicU64,
    /// Packets relayed by connections that have ended (live ones count on
    /// their own `Client::sent`, touched only by their reader).
    relayed_retired: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_unknown_dest: AtomicU64,
    dropped_gone: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

/// A packet waiting for its destination's writer.
struct Packet {
    src: Key,
    body: Bytes,
}

/// What waits for one connection's writer.
#[derive(Default)]
struct Pending {
    data: VecDeque<Packet>,
    disco: VecDeque<Packet>,
    peer_gone: VecDeque<(Key, u8)>,
    pong: Option<[u8; 8]>,
    health: Option<String>,
    closed: bool,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.data.is_empty()
            && self.disco.is_empty()
            && self.peer_gone.is_empty()
            && self.pong.is_none()
            && self.health.is_none()
    }
}

/// What happened to a packet handed to an outbox.
#[derive(Debug, PartialEq, Eq)]
enum Queued {
    Added,
    /// Queued, after dropping the oldest packet of a full queue.
    DroppedOldest,
    /// The connection is ending; the packet was dropped.
    Gone,
}

/// One connection's bounded queues and the writer's wake-up.
struct Outbox {
    pending: Mutex<Pending>,
    wake: Notify,
    depth: usize,
}

impl Outbox {
    fn new(depth: usize) -> Outbox {
        Outbox {
            pending: Mutex::default(),
            wake: Notify::new(),
            depth: depth.max(1),
        }
    }

    /// Runs `f` on the queues and wakes the writer if they were empty (a
    /// writer that is awake takes everything before it sleeps again).
    fn with<T>(&self, f: impl FnOnce(&mut Pending) -> T) -> T {
        let (was_empty, out) = {
            let mut p = lock(&self.pending);
            let was_empty = p.is_empty();
            (was_empty, f(&mut p))
        };
        if was_empty {
            self.wake.notify_one();
        }
        out
    }

    fn push_packet(&self, src: Key, body: Bytes) -> Queued {
        let depth = self.depth;
        let disco = frame::looks_like_disco(&body);
        self.with(|p| {
            if p.closed {
                return Queued::Gone;
            }
            let q = if disco { &mut p.disco } else { &mut p.data };
            let dropped = q.len() >= depth && q.pop_front().is_some();
            q.push_back(Packet { src, body });
            if dropped {
                Queued::DroppedOldest
            } else {
                Queued::Added
            }
        })
    }

    fn push_peer_gone(&self, peer: Key, why: u8) {
        self.with(|p| {
            if p.peer_gone.len() >= PEER_GONE_DEPTH {
                p.peer_gone.pop_front();
            }
            p.peer_gone.push_back((peer, why));
        });
    }

    fn set_pong(&self, data: [u8; 8]) {
        self.with(|p| {
            if p.pong.is_none() {
                p.pong = Some(data);
            }
        });
    }

    fn set_health(&self, message: &str) {
        self.with(|p| p.health = Some(message.to_owned()));
    }

    /// Marks the connection as ending: later packets are dropped, and the
    /// queued ones are let go.
    fn close(&self) {
        let mut p = lock(&self.pending);
        p.closed = true;
        p.data = VecDeque::new();
        p.disco = VecDeque::new();
    }

    /// Moves everything queued into `into` (whose queues are empty, so the
    /// two sets of queues swap their allocations back and forth).
    fn take(&self, into: &mut Pending) {
        let mut p = lock(&self.pending);
        std::mem::swap(&mut p.data, &mut into.data);
        std::mem::swap(&mut p.disco, &mut into.disco);
        std::mem::swap(&mut p.peer_gone, &mut into.peer_gone);
        into.pong = p.pong.take();
        into.health = p.health.take();
        into.closed = p.closed;
    }
}

/// One connection that completed the handshake.
struct Client {
    key: Key,
    /// Unique per connection, so a PeerGone reaches the connection that
    /// received the packets and not a later one with the same key.
    conn: u64,
    outbox: Outbox,
    /// Another connection has the same key.
    dup: AtomicBool,
    preferred: AtomicBool,
    /// Packets this connection sent that were queued (its reader only).
    sent: AtomicU64,
}

/// The connections of one key; the last is the one packets go to.
#[derive(Default)]
struct Entry {
    members: Vec<Arc<Client>>,
}

/// The embedded DERP relay. Cheap to share (`Arc`); every method takes
/// `&self`.
pub struct Relay {
    key: ServerKey,
    public: Key,
    shards: Box<[RwLock<HashMap<Key, Entry>>]>,
    next_conn: AtomicU64,
    limits: Limits,
    counters: Counters,
}

/// A small token bucket (PeerGone(not-here) answers per sender).
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    const BURST: f64 = 3.0;
    const PER_SECOND: f64 = 1.0;

    fn new() -> Bucket {
        Bucket {
            tokens: Bucket::BURST,
            at: Instant::now(),
        }
    }

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        let earned = now.duration_since(self.at).as_secs_f64() * Bucket::PER_SECOND;
        self.tokens = (self.tokens + earned).min(Bucket::BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What one connection's reader remembers.
struct ReaderState {
    /// Destinations this connection sent to, with their connection number.
    sent_to: HashMap<Key, u64>,
    last_dst: Option<(Key, u64)>,
    /// `sent_to` is pruned when it reaches this size.
    prune_at: usize,
    not_here: Bucket,
}

impl Relay {
    pub fn new(key: ServerKey) -> Relay {
        Relay::with_limits(key, Limits::default())
    }

    pub fn with_limits(key: ServerKey, limits: Limits) -> Relay {
        let public = key.public();
        Relay {
            key,
            public,
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            next_conn: AtomicU64::new(0),
            limits,
            counters: Counters::default(),
        }
    }

    /// The relay's public key (ServerKey frame, `Derp-Public-Key`).
    pub fn public_key(&self) -> Key {
        self.public
    }

    /// The public key as 64 lowercase hex digits (Go's `UntypedHexString`).
    pub fn public_key_hex(&self) -> String {
        super::hex(&self.public)
    }

    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        let live: u64 = self
            .shards
            .iter()
            .map(|s| {
                read(s)
                    .values()
                    .flat_map(|e| e.members.iter())
                    .map(|m| m.sent.load(Ordering::Relaxed))
                    .sum::<u64>()
            })
            .sum();
        Stats {
            accepted: c.accepted.load(Ordering::Relaxed),
            connected: c.connected.load(Ordering::Relaxed),
            packets_relayed: c.relayed_retired.load(Ordering::Relaxed) + live,
            dropped_queue_full: c.dropped_queue_full.load(Ordering::Relaxed),
            dropped_unknown_dest: c.dropped_unknown_dest.load(Ordering::Relaxed),
            dropped_gone: c.dropped_gone.load(Ordering::Relaxed),
        }
    }

    fn shard(&self, key: &Key) -> &RwLock<HashMap<Key, Entry>> {
        &self.shards[usize::from(key[0]) % SHARDS]
    }

    /// The connection packets for `key` go to.
    fn active(&self, key: &Key) -> Option<Arc<Client>> {
        read(self.shard(key))
            .get(key)
            .and_then(|e| e.members.last().cloned())
    }

    /// Serves one connection (the bytes after the HTTP upgrade) until the
    /// client leaves, breaks the protocol, stops reading, or `shutdown` is
    /// cancelled. `Ok` when the client hung up or the relay shut down.
    pub async fn serve<S>(&self, conn: S, shutdown: &CancellationToken) -> Result<(), DerpError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, mut wr) = tokio::io::split(conn);
        let mut reader = FrameReader::new(rd);
        let limit = self.limits.handshake_timeout;
        let handshake = tokio::time::timeout(limit, self.handshake(&mut reader, &mut wr));
        let (key, sealer) = tokio::select! {
            r = handshake => match r {
                Ok(r) => r?,
                Err(_) => return Err(DerpError::HandshakeTimeout(limit)),
            },
            _ = shutdown.cancelled() => return Ok(()),
        };
        let mut out = Vec::new();
        put_server_info(&mut out, &sealer)?;
        drop(sealer);

        let client = Arc::new(Client {
            key,
            conn: self.next_conn.fetch_add(1, Ordering::Relaxed) + 1,
            outbox: Outbox::new(self.limits.queue_depth),
            dup: AtomicBool::new(false),
            preferred: AtomicBool::new(false),
            sent: AtomicU64::new(0),
        });
        self.register(&client);
        tracing::debug!(client = %short(&key), conn = client.conn, "derp client connected");

        let end = CancellationToken::new();
        let writer = tokio::spawn(write_loop(
            wr,
            client.clone(),
            out,
            self.limits.clone(),
            end.clone(),
        ));
        let mut state = ReaderState {
            sent_to: HashMap::new(),
            last_dst: None,
            prune_at: SENT_TO_PRUNE,
            not_here: Bucket::new(),
        };
        let read = tokio::select! {
            r = self.read_loop(&mut reader, &client, &mut state) => r,
            _ = end.cancelled() => Ok(()),
            _ = shutdown.cancelled() => Ok(()),
        };
        end.cancel();
        client.outbox.close();
        self.unregister(&client, &state.sent_to);
        let written = match writer.await {
            Ok(r) => r,
            Err(e) => Err(DerpError::Protocol(format!("the writer failed: {e}"))),
        };
        tracing::debug!(
            client = %short(&key),
            conn = client.conn,
            preferred = client.preferred.load(Ordering::Relaxed),
            "derp client disconnected"
        );
        read.and(written)
    }

    /// ServerKey out, ClientInfo in; the client's key and the box shared
    /// with it.
    async fn handshake<R, W>(
        &self,
        reader: &mut FrameReader<R>,
        wr: &mut W,
    ) -> Result<(Key, SalsaBox), DerpError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut out = Vec::with_capacity(frame::HEADER_LEN + 8 + KEY_LEN);
        frame::put_frame(&mut out, kind::SERVER_KEY, &[&frame::MAGIC, &self.public]);
        wr.write_all(&out).await.map_err(DerpError::Write)?;
        wr.flush().await.map_err(DerpError::Write)?;

        let Some((k, len)) = reader.header().await? else {
            return Err(DerpError::Handshake(
                "the client left before its ClientInfo".into(),
            ));
        };
        if k != kind::CLIENT_INFO {
            return Err(DerpError::Handshake(format!(
                "frame type {k:#04x} where ClientInfo (0x02) belongs"
            )));
        }
        let len = len as usize;
        if len < frame::MIN_CLIENT_INFO {
            return Err(DerpError::Handshake(format!(
                "a ClientInfo of {len} bytes is too short"
            )));
        }
        if len > frame::MAX_CLIENT_INFO {
            return Err(DerpError::Handshake(format!(
                "a ClientInfo of {len} bytes is over the {} byte limit",
                frame::MAX_CLIENT_INFO
            )));
        }
        let body = reader.body(len).await?;
        let (key, rest) = body.split_at(KEY_LEN);
        let (nonce, sealed) = rest.split_at(frame::NONCE_LEN);
        let mut client_key = [0u8; KEY_LEN];
        client_key.copy_from_slice(key);
        let sealer = SalsaBox::new(&PublicKey::from(client_key), self.key.secret());
        let info = sealer
            .decrypt(Nonce::from_slice(nonce), sealed)
            .map_err(|_| {
                DerpError::Handshake(format!(
                    "the ClientInfo box ({} bytes) does not open with the key {}",
                    sealed.len(),
                    short(&client_key)
                ))
            })?;
        match serde_json::from_slice::<serde_json::Value>(&info) {
            Ok(serde_json::Value::Object(_) | serde_json::Value::Null) => {}
            Ok(_) => {
                return Err(DerpError::Handshake(
                    "the ClientInfo is not a JSON object".into(),
                ));
            }
            Err(e) => {
                return Err(DerpError::Handshake(format!(
                    "the ClientInfo is not JSON: {e}"
                )));
            }
        }
        Ok((client_key, sealer))
    }

    async fn read_loop<R: AsyncRead + Unpin>(
        &self,
        reader: &mut FrameReader<R>,
        me: &Arc<Client>,
        state: &mut ReaderState,
    ) -> Result<(), DerpError> {
        loop {
            let Some((k, len)) = reader.header().await? else {
                return Ok(());
            };
            if me.dup.load(Ordering::Relaxed) {
                self.note_activity(me);
            }
            let len = len as usize;
            match k {
                kind::SEND_PACKET => {
                    if len < KEY_LEN {
                        return Err(DerpError::Protocol(format!(
                            "a SendPacket of {len} bytes is shorter than a key"
                        )));
                    }
                    if len - KEY_LEN > frame::MAX_PACKET_SIZE {
                        return Err(DerpError::Protocol(format!(
                            "a packet of {} bytes is over the {} byte limit",
                            len - KEY_LEN,
                            frame::MAX_PACKET_SIZE
                        )));
                    }
                    let body = reader.body(len).await?.freeze();
                    let mut dst = [0u8; KEY_LEN];
                    dst.copy_from_slice(&body[..KEY_LEN]);
                    self.relay(me, dst, body.slice(KEY_LEN..), state);
                }
                kind::NOTE_PREFERRED => {
                    if len != 1 {
                        return Err(DerpError::Protocol(format!(
                            "a NotePreferred of {len} bytes (not 1)"
                        )));
                    }
                    let b = reader.body(1).await?;
                    me.preferred.store(b[0] != 0, Ordering::Relaxed);
                }
                kind::PING => {
                    if !(frame::PING_LEN..=frame::MAX_PING_FRAME).contains(&len) {
                        return Err(DerpError::Protocol(format!(
                            "a Ping of {len} bytes (8 to {} allowed)",
                            frame::MAX_PING_FRAME
                        )));
                    }
                    let b = reader.body(len).await?;
                    let mut data = [0u8; 8];
                    data.copy_from_slice(&b[..8]);
                    me.outbox.set_pong(data);
                }
                kind::FORWARD_PACKET | kind::WATCH_CONNS | kind::CLOSE_PEER => {
                    return Err(DerpError::Protocol(format!(
                        "mesh frame {k:#04x} refused: this relay is not part of a mesh"
                    )));
                }
                _ => reader.skip(len as u64).await?,
            }
        }
    }

    /// Queues one packet from `me` for `dst`.
    fn relay(&self, me: &Arc<Client>, dst: Key, packet: Bytes, state: &mut ReaderState) {
        let Some(to) = self.active(&dst) else {
            self.counters
                .dropped_unknown_dest
                .fetch_add(1, Ordering::Relaxed);
            if frame::looks_like_disco(&packet) && state.not_here.allow() {
                me.outbox.push_peer_gone(dst, reason::NOT_HERE);
            }
            return;
        };
        if state.last_dst != Some((dst, to.conn)) {
            state.sent_to.insert(dst, to.conn);
            state.last_dst = Some((dst, to.conn));
            if state.sent_to.len() >= state.prune_at {
                // Forget destinations that have left since (a long-lived
                // connection meets many short-lived peers).
                state
                    .sent_to
                    .retain(|k, conn| self.active(k).is_some_and(|c| c.conn == *conn));
                state.prune_at = (2 * state.sent_to.len()).max(SENT_TO_PRUNE);
            }
        }
        match to.outbox.push_packet(me.key, packet) {
            Queued::Added => {
                me.sent.fetch_add(1, Ordering::Relaxed);
            }
            Queued::DroppedOldest => {
                me.sent.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
            }
            Queued::Gone => {
                self.counters.dropped_gone.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn register(&self, c: &Arc<Client>) {
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        self.counters.connected.fetch_add(1, Ordering::Relaxed);
        let mut shard = write(self.shard(&c.key));
        let entry = shard.entry(c.key).or_default();
        entry.members.push(c.clone());
        if entry.members.len() > 1 {
            for m in &entry.members {
                m.dup.store(true, Ordering::Relaxed);
                m.outbox.set_health(DUPLICATE_HEALTH);
            }
            tracing::info!(
                client = %short(&c.key),
                connections = entry.members.len(),
                "a DERP client key is connected more than once"
            );
        }
    }

    /// A connection of a duplicated key sent something: it becomes the one
    /// packets go to.
    fn note_activity(&self, me: &Arc<Client>) {
        let is_last = |e: &Entry| e.members.last().is_some_and(|m| Arc::ptr_eq(m, me));
        if read(self.shard(&me.key)).get(&me.key).is_none_or(is_last) {
            return;
        }
        let mut shard = write(self.shard(&me.key));
        if let Some(e) = shard.get_mut(&me.key)
            && let Some(i) = e.members.iter().position(|m| Arc::ptr_eq(m, me))
        {
            let m = e.members.remove(i);
            e.members.push(m);
        }
    }

    fn unregister(&self, c: &Arc<Client>, sent_to: &HashMap<Key, u64>) {
        self.counters.connected.fetch_sub(1, Ordering::Relaxed);
        let gone = {
            let mut shard = write(self.shard(&c.key));
            let gone = match shard.get_mut(&c.key) {
                None => true,
                Some(e) => {
                    e.members.retain(|m| !Arc::ptr_eq(m, c));
                    if let [last] = e.members.as_slice() {
                        last.dup.store(false, Ordering::Relaxed);
                        last.outbox.set_health("");
                    }
                    e.members.is_empty()
                }
            };
            if gone {
                shard.remove(&c.key);
            }
            // Counted while the connection is still out of the map's sum.
            self.counters
                .relayed_retired
                .fetch_add(c.sent.load(Ordering::Relaxed), Ordering::Relaxed);
            gone
        };
        if !gone {
            return;
        }
        for (dst, conn) in sent_to {
            if let Some(e) = read(self.shard(dst)).get(dst) {
                for m in e.members.iter().filter(|m| m.conn == *conn) {
                    m.outbox.push_peer_gone(c.key, reason::DISCONNECTED);
                }
            }
        }
    }
}

/// ServerInfo: a fresh nonce and the box of `{"version":2}`.
fn put_server_info(out: &mut Vec<u8>, sealer: &SalsaBox) -> Result<(), DerpError> {
    let nonce: [u8; frame::NONCE_LEN] = rand::random();
    let info = format!("{{\"version\":{}}}", frame::PROTOCOL_VERSION);
    let sealed = sealer
        .encrypt(Nonce::from_slice(&nonce), info.as_bytes())
        .map_err(|_| DerpError::Protocol("could not seal the ServerInfo".into()))?;
    frame::put_frame(out, kind::SERVER_INFO, &[&nonce, &sealed]);
    Ok(())
}

/// The first 8 hex digits of a key, for logs.
fn short(key: &Key) -> String {
    super::hex(&key[..4])
}

/// Sends `out` (and empties it) within the write timeout.
async fn send<W: AsyncWrite + Unpin>(
    w: &mut W,
    out: &mut Vec<u8>,
    limit: Duration,
) -> Result<(), DerpError> {
    match tokio::time::timeout(limit, w.write_all(out)).await {
        Ok(Ok(())) => {
            out.clear();
            Ok(())
        }
        Ok(Err(e)) => Err(DerpError::Write(e)),
        Err(_) => Err(DerpError::WriteTimeout(limit)),
    }
}

async fn flush<W: AsyncWrite + Unpin>(w: &mut W, limit: Duration) -> Result<(), DerpError> {
    match tokio::time::timeout(limit, w.flush()).await {
        Ok(r) => r.map_err(DerpError::Write),
        Err(_) => Err(DerpError::WriteTimeout(limit)),
    }
}

/// One connection's writer: `out` (the ServerInfo) first, then whatever the
/// outbox holds, in batches; flushed whenever the outbox is empty. Ends when
/// `end` is cancelled or the outbox closes (the reader ended), or with an
/// error when a write fails or times out (it then cancels `end`, which ends
/// the reader).
async fn write_loop<W: AsyncWrite + Unpin>(
    mut w: W,
    client: Arc<Client>,
    mut out: Vec<u8>,
    limits: Limits,
    end: CancellationToken,
) -> Result<(), DerpError> {
    let result = write_frames(&mut w, &client, &mut out, &limits, &end).await;
    end.cancel();
    if result.is_ok() {
        // Best effort: a close frame (WebSocket) or FIN after what was sent.
        let _ = tokio::time::timeout(limits.write_timeout, w.shutdown()).await;
    }
    result
}

async fn write_frames<W: AsyncWrite + Unpin>(
    w: &mut W,
    client: &Client,
    out: &mut Vec<u8>,
    limits: &Limits,
    end: &CancellationToken,
) -> Result<(), DerpError> {
    let limit = limits.write_timeout;
    let jitter = Duration::from_millis(rand::random_range(0..5000));
    let period = limits.keepalive + jitter;
    let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Pending::default();
    // Bytes written but not flushed: a WebSocket holds them until a flush.
    let mut unflushed = false;
    loop {
        if end.is_cancelled() {
            return Ok(());
        }
        client.outbox.take(&mut batch);
        if batch.closed {
            return Ok(());
        }
        if !batch.is_empty() {
            if let Some(message) = batch.health.take() {
                frame::put_frame(out, kind::HEALTH, &[message.as_bytes()]);
            }
            if let Some(data) = batch.pong.take() {
                frame::put_frame(out, kind::PONG, &[&data]);
            }
            for (peer, why) in batch.peer_gone.drain(..) {
                frame::put_frame(out, kind::PEER_GONE, &[&peer, &[why]]);
            }
            while let Some(p) = batch.disco.pop_front().or_else(|| batch.data.pop_front()) {
                frame::put_frame(out, kind::RECV_PACKET, &[&p.src, &p.body]);
                drop(p);
                if out.len() >= WRITE_CHUNK {
                    send(w, out, limit).await?;
                    unflushed = true;
                }
            }
            continue;
        }
        // Nothing more queued: send and flush what the batch left (and what
        // full chunks sent before it).
        if !out.is_empty() {
            send(w, out, limit).await?;
            unflushed = true;
        }
        if unflushed {
            flush(w, limit).await?;
            unflushed = false;
            if out.capacity() > WRITE_KEEP {
                *out = Vec::new();
            }
        }
        if batch.data.capacity() > QUEUE_KEEP
            || batch.disco.capacity() > QUEUE_KEEP
            || batch.peer_gone.capacity() > QUEUE_KEEP
        {
            // The outbox gets these back on the next take: after a burst,
            // two idle turns leave both sets small.
            batch = Pending::default();
        }
        tokio::select! {
            biased;
            _ = end.cancelled() => return Ok(()),
            _ = client.outbox.wake.notified() => {}
            _ = keepalive.tick() => frame::put_header(out, kind::KEEP_ALIVE, 0),
        }
    }
}
