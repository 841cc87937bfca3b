//! The embedded DERP relay: Tailscale's relay protocol as coderd embeds it
//! at `GET /derp` (coder/tailscale:derp; INTEROP.md §3, CONNECTIVITY.md §2.3).
//!
//! Peers run WireGuard end to end; the relay only forwards opaque packets
//! between connections addressed by Curve25519 public key. A client proves it
//! owns its key in the handshake (its ClientInfo is a NaCl box the relay can
//! open only with that key), and every packet it relays carries that key as
//! its source, so no client can speak for another.
//!
//! - `frame`: the wire format (type byte, big-endian length, body), the
//!   reader that checks lengths before it waits for bodies, frame writing.
//! - `server`: [`Relay`], which serves one connection at a time given as any
//!   `AsyncRead + AsyncWrite` (the upgraded HTTP connection or WebSocket byte
//!   stream from `routes/derp.rs`; `tokio::io::duplex` in tests), with
//!   bounded per-client queues that drop the oldest packet when full.
//!
//! The relay's private key ([`ServerKey`]) is generated once and kept in the
//! database (`store::server_keys`, name [`KEY_NAME`]), so its public key
//! stays the same across restarts. It knows no HTTP and no database: `app`
//! loads the key and hands it over.

pub mod frame;
pub mod server;

#[cfg(test)]
mod tests;

pub use frame::Key;
pub use server::{DerpError, Limits, Relay, Stats};

use crypto_box::SecretKey;

/// The name the relay's private key is stored under in `server_keys`.
pub const KEY_NAME: &str = "derp";

/// The relay's X25519 private key.
pub struct ServerKey(SecretKey);

impl ServerKey {
    /// A new random key (from the thread's CSPRNG, seeded by the OS).
    pub fn generate() -> ServerKey {
        ServerKey(SecretKey::from(rand::random::<[u8; 32]>()))
    }

    /// A key as stored: exactly 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<ServerKey, String> {
        SecretKey::from_slice(bytes)
            .map(ServerKey)
            .map_err(|_| format!("a DERP key is 32 bytes, not {}", bytes.len()))
    }

    /// The bytes to store.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public key clients address the relay with.
    pub fn public(&self) -> Key {
        self.0.public_key().to_bytes()
    }

    fn secret(&self) -> &SecretKey {
        &self.0
    }
}

/// Lowercase hex, as Go's `UntypedHexString`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}
