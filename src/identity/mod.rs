//! Offline verification of cloud instance-identity proofs (AWS, Azure, GCP).
//!
//! A workspace agent running on a cloud VM proves which VM it runs on by forwarding a document
//! that the cloud's metadata service signed (`POST /api/v2/workspaceagents/{aws,azure,google}-
//! instance-identity`). This module checks such a proof against operator-controlled trust
//! material and returns the instance id the proof vouches for; the HTTP layer then maps that id
//! to an agent. How each proof is built and how coder verifies it is described byte by byte in
//! `../shared/design/IDENTITY.md`; the functions here follow it:
//!
//! * [`verify_aws`]: RSASSA-PKCS1-v1_5/SHA-256 over the `/document` bytes exactly as received,
//!   against at most two configured AWS keys, picked by the document's region: the operator's
//!   key and the built-in one, the key that verified the region's last document first.
//! * [`verify_azure`]: PKCS#7 SignedData from IMDS `attested/document`, signer CN restricted to
//!   Azure's metadata host names, certificate chain leaf → intermediates → roots valid at `now`.
//! * [`verify_gcp`]: RS256 Google ID token, key chosen by `kid` from an imported JWKS, `exp`
//!   enforced against `now`, optional audience check.
//!
//! What this module must NOT do, by design:
//!
//! * **No I/O and no network.** Trust material comes in as strings/bytes ([`Trust`]); nothing is
//!   read from disk here and nothing is fetched (no AIA certificate download for Azure, no JWKS
//!   refresh for Google). The appliance is meant to work air-gapped, so a missing certificate or
//!   key is reported in the error text (issuer DN, caIssuers URL, `kid`) for the operator to add.
//! * **No clock.** Every time-dependent check takes `now` as a parameter, so callers (and tests
//!   with historical fixtures) decide what "now" is.
//! * **No panics on hostile input.** Every input-derived length, index and conversion is checked;
//!   inputs are size-capped before any decoding, and chain building has a work budget.
//! * **No global state.** Whether a proof verifies is a pure function of (proof, trust, now);
//!   [`Trust`] is a value built once and shared between threads. The one thing that changes in
//!   it afterwards is [`AwsTrust`]'s per-region hint of which key verified last (atomics inside
//!   the trust value, written only after a successful verification), which decides which of a
//!   document's two keys is tried first: the cost of a sign-in, never its outcome.

mod aws;
mod azure;
mod gcp;
mod pki;
mod trust;

#[cfg(test)]
mod tests;

pub use aws::verify_aws;
pub use azure::verify_azure;
pub use gcp::verify_gcp;
pub use trust::{AwsTrust, AzureTrust, GcpTrust, Trust, TrustItem, TrustKind};

use std::fmt;

/// The cloud a proof comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cloud {
    /// Amazon EC2 instance identity document + `/signature`.
    Aws,
    /// Azure IMDS attested document (PKCS#7).
    Azure,
    /// Google Compute Engine identity token (JWT).
    Google,
}

impl Cloud {
    /// The lower-case name used in configuration, logs and `check-config` output.
    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Aws => "aws",
            Cloud::Azure => "azure",
            Cloud::Google => "google",
        }
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a proof (or a piece of trust material) was rejected.
///
/// The variants are grouped by [`IdentityError::kind`] so the HTTP layer can answer like coder
/// without matching on every variant: coder answers 401 for everything a verifier rejects, except
/// GCP claims that cannot be decoded ([`IdentityError::is_malformed_claims`], 400 `Error decoding
/// JWT claims.`). The `Display` text is a detail suitable for the response's `detail` field or a
/// log line; where coder's Go libraries have a well-known message (AWS/GCP
/// `crypto/rsa: verification error`, `idtoken: token expired: ...`), the same words are used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The proof could not be decoded at all: bad base64, DER, JSON, JWT framing, wrong JSON
    /// types, or an input larger than any real proof.
    #[error("{0}")]
    Malformed(String),
    /// A signature did not verify with the key it was checked against (or with any configured
    /// key, for AWS).
    #[error("{0}")]
    BadSignature(String),
    /// The proof names a key that is not configured (GCP `kid` not in the JWKS).
    #[error("{0}")]
    UnknownKey(String),
    /// Azure: no chain from the signer certificate to a configured root could be built or
    /// validated (missing intermediate, bad link signature, not a CA, ...).
    #[error("{0}")]
    UntrustedChain(String),
    /// Azure: the signer certificate is valid but is not Azure's metadata service.
    #[error("{0}")]
    SignerNotAllowed(String),
    /// A certificate or token is outside its validity period at the verification time.
    #[error("{0}")]
    Expired(String),
    /// The proof uses an algorithm that is not accepted (JWT `alg` other than RS256, SHA-1, ...).
    #[error("{0}")]
    AlgorithmNotAllowed(String),
    /// GCP: an audience was required and the token's `aud` does not match it.
    #[error("{0}")]
    AudienceMismatch(String),
    /// GCP: the token verified, but `google.compute_engine.instance_id` has the wrong JSON
    /// shape (coder: 400 `Error decoding JWT claims.`).
    #[error("{0}")]
    MalformedClaims(String),
    /// Trust material given to [`AwsTrust`], [`AzureTrust`] or [`GcpTrust`] is unusable.
    #[error("{0}")]
    InvalidTrust(String),
}

/// Coarse classification of an [`IdentityError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The proof is not decodable (see [`IdentityError::Malformed`]).
    Malformed,
    /// The proof decodes but does not verify (signature, chain, signer, dates, algorithm,
    /// audience, unknown key).
    Verification,
    /// GCP claims decode failure after a successful verification.
    MalformedClaims,
    /// Bad trust material (configuration error, never caused by a request).
    Trust,
}

impl IdentityError {
    /// Which group this error belongs to.
    pub fn kind(&self) -> ErrorKind {
        match self {
            IdentityError::Malformed(_) => ErrorKind::Malformed,
            IdentityError::MalformedClaims(_) => ErrorKind::MalformedClaims,
            IdentityError::InvalidTrust(_) => ErrorKind::Trust,
            IdentityError::BadSignature(_)
            | IdentityError::UnknownKey(_)
            | IdentityError::UntrustedChain(_)
            | IdentityError::SignerNotAllowed(_)
            | IdentityError::Expired(_)
            | IdentityError::AlgorithmNotAllowed(_)
            | IdentityError::AudienceMismatch(_) => ErrorKind::Verification,
        }
    }

    /// True if the proof itself could not be decoded.
    pub fn is_malformed(&self) -> bool {
        self.kind() == ErrorKind::Malformed
    }

    /// True if the proof decoded but failed verification.
    pub fn is_verification_failure(&self) -> bool {
        self.kind() == ErrorKind::Verification
    }

    /// True for GCP's "claims decode" case (coder answers 400 `Error decoding JWT claims.`
    /// rather than 401).
    pub fn is_malformed_claims(&self) -> bool {
        self.kind() == ErrorKind::MalformedClaims
    }

    /// True if the error is about trust material rather than a proof.
    pub fn is_trust_error(&self) -> bool {
        self.kind() == ErrorKind::Trust
    }
}
