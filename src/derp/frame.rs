//! DERP frames (coder/tailscale:derp/derp.go): a 1-byte type, a big-endian
//! u32 length, then that many bytes. [`FrameReader`] reads headers and bodies
//! from a byte stream into one growing buffer (bodies are split off it, so a
//! relayed packet is never copied on the way in and costs no allocation of
//! its own); the length is checked by the caller against the type's cap
//! *before* the body is waited for. Writing appends whole frames to a `Vec`
//! that the writer sends in batches. Knows bytes only: no keys, no sockets.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The magic that opens the ServerKey frame: "DERP🔑".
pub const MAGIC: [u8; 8] = [0x44, 0x45, 0x52, 0x50, 0xf0, 0x9f, 0x94, 0x91];
/// The protocol version spoken (v2: RecvPacket starts with the source key).
pub const PROTOCOL_VERSION: u32 = 2;
/// A Curve25519 public key.
pub const KEY_LEN: usize = 32;
/// A NaCl box nonce.
pub const NONCE_LEN: usize = 24;
/// Type byte and length.
pub const HEADER_LEN: usize = 5;
/// The largest packet a client may send (the bytes after the destination key).
pub const MAX_PACKET_SIZE: usize = 64 << 10;
/// ClientInfo: at least a key and a nonce, at most 256 KiB (Go's limit
/// before it trusts the client at all).
pub const MIN_CLIENT_INFO: usize = KEY_LEN + NONCE_LEN;
pub const MAX_CLIENT_INFO: usize = 256 << 10;
/// Ping bodies: 8 bytes, up to 1000 with room for extensions (Go's cap).
pub const PING_LEN: usize = 8;
pub const MAX_PING_FRAME: usize = 1000;

/// A public key, as the relay addresses clients.
pub type Key = [u8; KEY_LEN];

/// Frame types.
pub mod kind {
    pub const SERVER_KEY: u8 = 0x01;
    pub const CLIENT_INFO: u8 = 0x02;
    pub const SERVER_INFO: u8 = 0x03;
    pub const SEND_PACKET: u8 = 0x04;
    pub const RECV_PACKET: u8 = 0x05;
    pub const KEEP_ALIVE: u8 = 0x06;
    pub const NOTE_PREFERRED: u8 = 0x07;
    pub const PEER_GONE: u8 = 0x08;
    pub const PEER_PRESENT: u8 = 0x09;
    pub const FORWARD_PACKET: u8 = 0x0a;
    pub const WATCH_CONNS: u8 = 0x10;
    pub const CLOSE_PEER: u8 = 0x11;
    pub const PING: u8 = 0x12;
    pub const PONG: u8 = 0x13;
    pub const HEALTH: u8 = 0x14;
    pub const RESTARTING: u8 = 0x15;
}

/// PeerGone reasons.
pub mod reason {
    /// The peer was here and disconnected.
    pub const DISCONNECTED: u8 = 0x00;
    /// A disco packet was sent to a key the relay does not know.
    pub const NOT_HERE: u8 = 0x01;
}

/// Appends a frame header.
pub fn put_header(out: &mut Vec<u8>, kind: u8, len: u32) {
    out.push(kind);
    out.extend_from_slice(&len.to_be_bytes());
}

/// Appends a whole frame whose body is the concatenation of `parts` (at
/// most 4 GiB; the relay's frames are at most 64 KiB and a key).
pub fn put_frame(out: &mut Vec<u8>, kind: u8, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    put_header(out, kind, u32::try_from(len).unwrap_or(u32::MAX));
    for p in parts {
        out.extend_from_slice(p);
    }
}

/// Whether a relayed packet is a Tailscale disco message ("TS💬", the
/// sender's disco key, a nonce, a box): such packets get their own queue
/// and may be answered with PeerGone(NotHere).
pub fn looks_like_disco(packet: &[u8]) -> bool {
    const DISCO_MAGIC: &[u8] = &[0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac];
    packet.len() >= DISCO_MAGIC.len() + KEY_LEN + NONCE_LEN && packet.starts_with(DISCO_MAGIC)
}

/// Why reading frames stopped.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection ended in the middle of a frame")]
    Truncated,
    #[error("read: {0}")]
    Io(#[from] std::io::Error),
}

/// The smallest read buffer; an idle connection holds no more than this.
const MIN_READ: usize = 1 << 10;
/// The largest read buffer a connection grows to while reads keep filling it.
const MAX_READ: usize = 64 << 10;

/// Reads frames from a byte stream into one buffer that grows while reads
/// fill it (up to 64 KiB) and is let go when a read leaves it empty and
/// small reads have shrunk the target again, so an idle connection holds
/// about 1 KiB.
pub struct FrameReader<R> {
    io: R,
    buf: BytesMut,
    want: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(io: R) -> FrameReader<R> {
        FrameReader {
            io,
            buf: BytesMut::new(),
            want: MIN_READ,
        }
    }

    /// One read into the buffer; the number of bytes read (0 at EOF).
    async fn fill(&mut self, need: usize) -> std::io::Result<usize> {
        if self.buf.is_empty() && self.buf.capacity() > 2 * self.want.max(need) {
            // Let go of a large buffer once the traffic that grew it is over
            // (bodies split off it keep their part alive on their own).
            self.buf = BytesMut::new();
        }
        let room = self.buf.capacity() - self.buf.len();
        if room < need.max(self.want / 2) {
            self.buf.reserve(need.max(self.want));
        }
        let room = self.buf.capacity() - self.buf.len();
        let n = self.io.read_buf(&mut self.buf).await?;
        if n == room {
            self.want = (self.want * 2).min(MAX_READ);
        } else if n < self.want / 8 {
            self.want = (self.want / 2).max(MIN_READ);
        }
        Ok(n)
    }

    /// The next frame's type and length; `None` at a clean end of stream
    /// (between frames).
    pub async fn header(&mut self) -> Result<Option<(u8, u32)>, FrameError> {
        while self.buf.len() < HEADER_LEN {
            let missing = HEADER_LEN - self.buf.len();
            if self.fill(missing).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated)
                };
            }
        }
        let kind = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        let _ = self.buf.split_to(HEADER_LEN);
        Ok(Some((kind, len)))
    }

    /// The next `len` bytes (a body whose length the caller has checked).
    pub async fn body(&mut self, len: usize) -> Result<BytesMut, FrameError> {
        while self.buf.len() < len {
            let missing = len - self.buf.len();
            if self.fill(missing).await? == 0 {
                return Err(FrameError::Truncated);
            }
        }
        Ok(self.buf.split_to(len))
    }

    /// Reads and forgets `len` bytes without holding them (unknown frames).
    pub async fn skip(&mut self, mut len: u64) -> Result<(), FrameError> {
        loop {
            let here = (self.buf.len() as u64).min(len);
            let _ = self.buf.split_to(here as usize);
            len -= here;
            if len == 0 {
                return Ok(());
            }
            if self.fill(1).await? == 0 {
                return Err(FrameError::Truncated);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_frames_split_anywhere() {
        let mut wire = Vec::new();
        put_frame(&mut wire, kind::PING, &[b"12345678"]);
        put_frame(&mut wire, kind::SEND_PACKET, &[&[7u8; 32], b"hello"]);
        put_frame(&mut wire, 0x42, &[&[0u8; 3000]]);
        put_frame(&mut wire, kind::KEEP_ALIVE, &[]);
        for chunk in [1, 2, 5, 7, 4096] {
            let (mut a, b) = tokio::io::duplex(chunk);
            let bytes = wire.clone();
            let writer = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                for piece in bytes.chunks(chunk) {
                    a.write_all(piece).await.unwrap();
                }
            });
            let mut r = FrameReader::new(b);
            assert_eq!(r.header().await.unwrap(), Some((kind::PING, 8)));
            assert_eq!(&r.body(8).await.unwrap()[..], b"12345678");
            assert_eq!(r.header().await.unwrap(), Some((kind::SEND_PACKET, 37)));
            let body = r.body(37).await.unwrap();
            assert_eq!(&body[32..], b"hello");
            assert_eq!(r.header().await.unwrap(), Some((0x42, 3000)));
            r.skip(3000).await.unwrap();
            assert_eq!(r.header().await.unwrap(), Some((kind::KEEP_ALIVE, 0)));
            writer.await.unwrap();
            assert_eq!(r.header().await.unwrap(), None);
        }
    }

    #[tokio::test]
    async fn a_stream_cut_inside_a_frame_is_truncated() {
        let mut wire = Vec::new();
        put_frame(&mut wire, kind::PING, &[b"1234"]);
        let mut r = FrameReader::new(&wire[..3]);
        assert!(matches!(r.header().await, Err(FrameError::Truncated)));
        let mut r = FrameReader::new(&wire[..7]);
        assert_eq!(r.header().await.unwrap(), Some((kind::PING, 4)));
        assert!(matches!(r.body(4).await, Err(FrameError::Truncated)));
    }

    #[test]
    fn disco_is_recognised_by_magic_and_size() {
        let mut p = vec![0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac];
        p.resize(6 + 32 + 24, 0);
        assert!(looks_like_disco(&p));
        assert!(!looks_like_disco(&p[..p.len() - 1]));
        p[0] = 0;
        assert!(!looks_like_disco(&p));
    }
}
