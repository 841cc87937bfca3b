//! Credentials: making, recognising and hashing API keys, agent tokens and
//! the dashboard's one-time sign-in link tokens; the rules for usernames.
//!
//! None of them is ever stored in the clear ("Decisions for appliance" 2): the
//! database holds SHA-256 digests, so a stolen database file or backup cannot be
//! used to sign in. Pure functions; no SQL, no HTTP.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// What a user may do: admins read every workspace and agent, members their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Admin, Role::Member];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The one authorisation rule for workspaces and their agents: owners read
/// their own, admins read all.
pub fn may_read(role: Role, user_id: Uuid, owner_id: Uuid) -> bool {
    role == Role::Admin || user_id == owner_id
}

const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
pub const API_KEY_ID_LEN: usize = 10;
pub const API_KEY_SECRET_LEN: usize = 22;

fn random_alphanumeric(len: usize) -> String {
    (0..len)
        .map(|_| char::from(ALPHANUMERIC[rand::random_range(0..ALPHANUMERIC.len())]))
        .collect()
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// A freshly made API key, in Coder's `<id:10>-<secret:22>` format.
pub struct NewApiKey {
    /// The whole key, shown to the user once.
    pub key: String,
    /// The public part, the row's primary key.
    pub id: String,
    /// SHA-256 of the secret part: all the database keeps.
    pub hashed_secret: [u8; 32],
}

pub fn new_api_key() -> NewApiKey {
    let id = random_alphanumeric(API_KEY_ID_LEN);
    let secret = random_alphanumeric(API_KEY_SECRET_LEN);
    NewApiKey {
        key: format!("{id}-{secret}"),
        hashed_secret: sha256(secret.as_bytes()),
        id,
    }
}

/// Splits an API key into (id, secret) if it has Coder's shape.
///
/// ```
/// use appliance::auth::split_api_key;
/// assert_eq!(
///     split_api_key("0123456789-abcdefghijklmnopqrstuv"),
///     Some(("0123456789", "abcdefghijklmnopqrstuv"))
/// );
/// assert_eq!(split_api_key("not-a-key"), None);
/// ```
pub fn split_api_key(key: &str) -> Option<(&str, &str)> {
    let (id, secret) = key.split_once('-')?;
    let alnum = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric());
    (id.len() == API_KEY_ID_LEN && secret.len() == API_KEY_SECRET_LEN && alnum(id) && alnum(secret))
        .then_some((id, secret))
}

/// Compares digests without leaking where they differ.
pub fn digests_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A freshly made agent token: a UUIDv4 string, as Coder's agents expect.
pub struct NewAgentToken {
    pub token: String,
    pub hash: [u8; 32],
}

pub fn new_agent_token() -> NewAgentToken {
    let token = Uuid::new_v4().to_string();
    NewAgentToken {
        hash: agent_token_hash(&token),
        token,
    }
}

/// The digest stored for an agent token. The token is normalised through its
/// UUID form first, so upper-case or braced spellings of the same token match.
pub fn agent_token_hash(token: &str) -> [u8; 32] {
    match Uuid::parse_str(token) {
        Ok(u) => sha256(u.hyphenated().to_string().as_bytes()),
        Err(_) => sha256(token.as_bytes()),
    }
}

/// A username people and the CLI can use: letters, digits and single
/// hyphens, at most 32 characters, no hyphen first or last.
pub fn valid_username(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// An email address, loosely: `local@domain`, no spaces or controls.
pub fn valid_email(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

/// The length of a dashboard sign-in link's token (`appliance login-link`).
pub const LOGIN_LINK_TOKEN_LEN: usize = 32;

/// A fresh one-time sign-in link token and the digest the database keeps.
pub fn new_login_link_token() -> (String, [u8; 32]) {
    let token = random_alphanumeric(LOGIN_LINK_TOKEN_LEN);
    let hash = sha256(token.as_bytes());
    (token, hash)
}

/// Whether `token` has the shape of a sign-in link token (checked before
/// it is looked up).
pub fn is_login_link_token(token: &str) -> bool {
    token.len() == LOGIN_LINK_TOKEN_LEN && token.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// How many tokens an agent may hold at once; minting one more revokes the
/// oldest. Bounds the rows a retry storm of instance-identity sign-ins can add.
pub const MAX_LIVE_AGENT_TOKENS: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_have_coders_shape_and_split_back() {
        let k = new_api_key();
        assert_eq!(k.key.len(), 33);
        let (id, secret) = split_api_key(&k.key).expect("own keys split");
        assert_eq!(id, k.id);
        assert_eq!(sha256(secret.as_bytes()), k.hashed_secret);
        assert_ne!(new_api_key().key, k.key);
    }

    #[test]
    fn malformed_api_keys_are_refused() {
        for bad in [
            "",
            "abc",
            "0123456789-",
            "0123456789-012345678901234567890",
            "012345678-0123456789012345678901",
            "0123456789_0123456789012345678901",
            "01234567é9-0123456789012345678901",
        ] {
            assert!(split_api_key(bad).is_none(), "{bad:?}");
        }
        assert!(split_api_key("0123456789-0123456789012345678901").is_some());
    }

    #[test]
    fn agent_tokens_are_uuids_and_hash_case_insensitively() {
        let t = new_agent_token();
        let parsed = Uuid::parse_str(&t.token).expect("uuid");
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(agent_token_hash(&t.token.to_uppercase()), t.hash);
        assert_ne!(agent_token_hash("not-a-uuid"), t.hash);
    }

    #[test]
    fn usernames() {
        for ok in ["alice", "a", "bob-2", "A1"] {
            assert!(valid_username(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a--b", "a b", "ä", &"x".repeat(33)] {
            assert!(!valid_username(bad), "{bad}");
        }
    }

    #[test]
    fn login_link_tokens() {
        let (token, hash) = new_login_link_token();
        assert!(is_login_link_token(&token));
        assert_eq!(sha256(token.as_bytes()), hash);
        assert!(!is_login_link_token("short"));
        assert!(!is_login_link_token(&"-".repeat(LOGIN_LINK_TOKEN_LEN)));
    }

    #[test]
    fn digest_comparison() {
        assert!(digests_equal(&[1, 2, 3], &[1, 2, 3]));
        assert!(!digests_equal(&[1, 2, 3], &[1, 2, 4]));
        assert!(!digests_equal(&[1, 2], &[1, 2, 3]));
    }
}
