//! Resume tokens (RefreshResumeToken, `resume_token` on `/coordinate` and
//! `/tailnet`): a client that reconnects with one keeps its tailnet peer id,
//! so its tunnels' peers see a node update instead of a new peer.
//!
//! coderd signs a JWT; the token is opaque to clients, so appliance's is
//! simpler: `base64url(peer id ‖ expiry as Unix seconds, big-endian)` `.`
//! `base64url(HMAC-SHA256)` under a 32-byte server key. Tokens last 24 h and
//! clients are told to refresh them after 12 h, as coderd's defaults. The
//! clock is an argument, the key the caller's (kept in the database, so a
//! token outlives a restart).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use time::OffsetDateTime;
use uuid::Uuid;

/// The key's name in the database's server keys.
pub const KEY_NAME: &str = "tailnet_resume_token";

/// How long a token is valid (coderd: `DefaultResumeTokenExpiry`).
pub const EXPIRY: time::Duration = time::Duration::hours(24);

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// A signing key for resume tokens.
#[derive(Clone)]
pub struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("resume::Key(..)")
    }
}

impl Key {
    /// A fresh random key.
    pub fn random() -> Key {
        Key(rand::random())
    }

    /// A key as [`Key::as_bytes`] gave it; `None` unless 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Key> {
        bytes.try_into().ok().map(Key)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn mac(&self, payload: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length; 32 bytes never fails.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(payload);
        mac
    }
}

/// A new token for `peer` and when it expires.
pub fn issue(key: &Key, peer: Uuid, now: OffsetDateTime) -> (String, OffsetDateTime) {
    let expires = now + EXPIRY;
    let mut payload = peer.as_bytes().to_vec();
    payload.extend_from_slice(&expires.unix_timestamp().to_be_bytes());
    let tag = key.mac(&payload).finalize().into_bytes();
    let token = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&payload),
        URL_SAFE_NO_PAD.encode(tag)
    );
    (token, expires)
}

/// The peer id a token was issued for, if it is genuine and unexpired; the
/// error is the `detail` of the 401.
pub fn verify(key: &Key, token: &str, now: OffsetDateTime) -> Result<Uuid, String> {
    let (payload, tag) = token
        .split_once('.')
        .ok_or("verify payload: malformed token")?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| "verify payload: malformed token")?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| "verify payload: malformed token")?;
    if payload.len() != 24 {
        return Err("verify payload: malformed token".to_owned());
    }
    key.mac(&payload)
        .verify_slice(&tag)
        .map_err(|_| "verify payload: invalid signature")?;
    let (id, expiry) = payload.split_at(16);
    let expiry = i64::from_be_bytes(
        expiry
            .try_into()
            .map_err(|_| "verify payload: malformed token")?,
    );
    if now.unix_timestamp() >= expiry {
        return Err("verify payload: token is expired".to_owned());
    }
    Uuid::from_slice(id).map_err(|_| "parse peerID from token".to_owned())
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const T0: OffsetDateTime = datetime!(2026-12-04 12:00 UTC);

    #[test]
    fn a_token_names_its_peer_until_it_expires() {
        let key = Key::random();
        let peer = Uuid::new_v4();
        let (token, expires) = issue(&key, peer, T0);
        assert_eq!(expires, T0 + EXPIRY);
        assert_eq!(
            verify(&key, &token, T0 + time::Duration::hours(23)),
            Ok(peer)
        );
        assert_eq!(
            verify(&key, &token, expires).unwrap_err(),
            "verify payload: token is expired"
        );
        assert_eq!(
            verify(&Key::random(), &token, T0).unwrap_err(),
            "verify payload: invalid signature"
        );
    }

    #[test]
    fn tampered_and_garbage_tokens_are_refused() {
        let key = Key::random();
        let (token, _) = issue(&key, Uuid::new_v4(), T0);
        let (payload, tag) = token.split_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(payload).unwrap();
        bytes[0] ^= 1;
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(&bytes));
        assert!(verify(&key, &forged, T0).is_err());
        for junk in ["", ".", "abc", "a.b", "eyJhbGciOiJIUzI1NiJ9.e30.sig"] {
            assert!(verify(&key, junk, T0).is_err(), "{junk:?}");
        }
    }
}
