//! Shared, cloud-independent plumbing: base64 and PEM decoding, a minimal DER walker, X.509
//! certificate facts, public keys and signature verification.
//!
//! The typed parsers (`x509-cert`, `cms`) decode into structs and re-encode on demand. Signatures
//! are computed over the *original* bytes, though, and a re-encoding is only identical when the
//! signer produced canonical DER (e.g. `SET OF` members are re-sorted on decode). So wherever a
//! signature covers a sub-structure (a certificate's TBS, CMS signed attributes), the raw bytes
//! are recovered with the small walker below instead of re-encoding.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use der::{Decode, Encode};
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256, Sha384, Sha512};
use spki::ObjectIdentifier;
use time::OffsetDateTime;
use x509_cert::Certificate;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{AuthorityInfoAccessSyntax, BasicConstraints, KeyUsage};

// ---------------------------------------------------------------------------------------------
// OIDs

pub(super) const OID_RSA_ENCRYPTION: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
pub(super) const OID_SHA256_WITH_RSA: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
pub(super) const OID_SHA384_WITH_RSA: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
pub(super) const OID_SHA512_WITH_RSA: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const OID_SHA1_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.5");
const OID_RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
pub(super) const OID_EC_PUBLIC_KEY: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
pub(super) const OID_ECDSA_SHA256: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
pub(super) const OID_ECDSA_SHA384: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
pub(super) const OID_ECDSA_SHA512: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const OID_ECDSA_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.1");
const OID_DSA_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10040.4.3");
const OID_DSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10040.4.1");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
pub(super) const OID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
pub(super) const OID_SHA256: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
pub(super) const OID_SHA384: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
pub(super) const OID_SHA512: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const OID_COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
const OID_CE_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
const OID_CE_SUBJECT_ALT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");
const OID_CE_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const OID_CE_NAME_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.30");
const OID_CE_CERTIFICATE_POLICIES: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.32");
const OID_CE_POLICY_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.36");
const OID_CE_EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const OID_CE_INHIBIT_ANY_POLICY: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.54");
const OID_CE_SUBJECT_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
const OID_PE_AUTHORITY_INFO_ACCESS: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.1.1");
const OID_AD_CA_ISSUERS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.2");

// ---------------------------------------------------------------------------------------------
// base64

/// Decodes standard (padded) base64 the way Go's `base64.StdEncoding` does for IMDS bodies:
/// CR and LF anywhere are ignored (AWS wraps `/signature` at 76 columns), everything else must
/// be canonical base64. `max_len` caps the *encoded* length so hostile input is rejected before
/// any allocation proportional to it.
pub(super) fn decode_base64_lines(
    input: &str,
    max_len: usize,
    what: &str,
) -> Result<Vec<u8>, String> {
    if input.len() > max_len {
        return Err(format!(
            "{what} is too large ({} bytes of base64, at most {max_len} accepted)",
            input.len()
        ));
    }
    let cleaned: Vec<u8> = input
        .bytes()
        .filter(|b| *b != b'\n' && *b != b'\r')
        .collect();
    if cleaned.is_empty() {
        return Err(format!("{what} is empty"));
    }
    STANDARD
        .decode(&cleaned)
        .map_err(|e| format!("illegal base64 data in {what}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// PEM

/// One `-----BEGIN label----- ... -----END label-----` block, base64 body decoded.
pub(super) struct PemBlock {
    pub label: String,
    pub der: Vec<u8>,
}

/// Largest PEM text accepted as trust material (a full CA bundle is ~250 KiB).
const MAX_PEM_LEN: usize = 16 << 20;

/// Splits PEM text into blocks. Text outside blocks is ignored (OpenSSL's `-text` dumps and
/// "Bag Attributes" lines are common in hand-assembled files); inside a block, RFC 1421 headers
/// are rejected because they mean the payload is encrypted or otherwise not plain DER.
pub(super) fn parse_pem(text: &str) -> Result<Vec<PemBlock>, String> {
    if text.len() > MAX_PEM_LEN {
        return Err(format!("PEM text is too large ({} bytes)", text.len()));
    }
    let mut blocks = Vec::new();
    let mut current: Option<(String, String, usize)> = None;
    for (index, raw_line) in text.lines().enumerate() {
        let line = raw_line.trim();
        let line_no = index + 1;
        match current.as_mut() {
            None => {
                if let Some(label) = line
                    .strip_prefix("-----BEGIN ")
                    .and_then(|rest| rest.strip_suffix("-----"))
                {
                    current = Some((label.to_string(), String::new(), line_no));
                } else if line.starts_with("-----END ") {
                    return Err(format!("line {line_no}: END line without a BEGIN line"));
                }
            }
            Some((label, body, start)) => {
                if let Some(end_label) = line
                    .strip_prefix("-----END ")
                    .and_then(|rest| rest.strip_suffix("-----"))
                {
                    if end_label != label.as_str() {
                        return Err(format!(
                            "line {line_no}: \"-----END {end_label}-----\" closes the block \
                             \"{label}\" opened on line {start}"
                        ));
                    }
                    let der = STANDARD.decode(body.as_bytes()).map_err(|e| {
                        format!("PEM block \"{label}\" opened on line {start}: bad base64: {e}")
                    })?;
                    if der.is_empty() {
                        return Err(format!(
                            "PEM block \"{label}\" opened on line {start} is empty"
                        ));
                    }
                    blocks.push(PemBlock {
                        label: std::mem::take(label),
                        der,
                    });
                    current = None;
                } else if line.starts_with("-----") {
                    return Err(format!(
                        "line {line_no}: unexpected boundary inside the block \"{label}\" \
                         opened on line {start}"
                    ));
                } else if line.contains(':') {
                    return Err(format!(
                        "line {line_no}: PEM headers are not supported (encrypted PEM?)"
                    ));
                } else {
                    body.push_str(line);
                }
            }
        }
    }
    if let Some((label, _, start)) = current {
        return Err(format!(
            "PEM block \"{label}\" opened on line {start} has no END line"
        ));
    }
    if blocks.is_empty() {
        return Err("no PEM block found (expected \"-----BEGIN ...-----\")".to_string());
    }
    Ok(blocks)
}

// ---------------------------------------------------------------------------------------------
// Minimal DER walker

/// One DER TLV: its tag byte, its value, and the whole encoding (tag + length + value).
#[derive(Clone, Copy)]
pub(super) struct Tlv<'a> {
    pub tag: u8,
    pub value: &'a [u8],
    pub raw: &'a [u8],
}

/// Reads one definite-length TLV with a single-byte tag from the front of `input` and returns
/// it with the remaining bytes. `None` on anything unexpected (truncation, indefinite length,
/// high tag numbers, lengths that do not fit); callers only walk structures that a strict parser
/// has already accepted, so `None` just means "not the expected shape".
pub(super) fn read_tlv(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let tag = *input.first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let first_len = *input.get(1)?;
    let (len, header_len) = if first_len < 0x80 {
        (usize::from(first_len), 2usize)
    } else {
        let n = usize::from(first_len & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*input.get(2 + i)?);
        }
        (len, 2 + n)
    };
    let end = header_len.checked_add(len)?;
    let raw = input.get(..end)?;
    let value = raw.get(header_len..)?;
    let rest = input.get(end..)?;
    Some((Tlv { tag, value, raw }, rest))
}

/// Reads a TLV and checks its tag.
pub(super) fn expect_tlv(input: &[u8], tag: u8) -> Option<(Tlv<'_>, &[u8])> {
    let (tlv, rest) = read_tlv(input)?;
    (tlv.tag == tag).then_some((tlv, rest))
}

/// Splits the value of a constructed TLV into its children.
pub(super) fn children(mut value: &[u8]) -> Option<Vec<Tlv<'_>>> {
    let mut out = Vec::new();
    while !value.is_empty() {
        let (tlv, rest) = read_tlv(value)?;
        out.push(tlv);
        value = rest;
    }
    Some(out)
}

/// Largest nesting depth [`ber_to_der`] follows.
const MAX_BER_DEPTH: usize = 32;

/// Re-encodes BER with indefinite lengths and constructed OCTET STRINGs as DER-shaped bytes
/// (definite lengths, OCTET STRING segments concatenated into one primitive value), which is
/// what `openssl cms -sign -stream` and some PKCS#7 libraries emit. Go's PKCS#7 parser does the
/// same conversion before parsing. Set members are not re-sorted; the typed parser does that.
/// Returns `None` for anything that is not well-formed BER within the depth limit.
pub(super) fn ber_to_der(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let rest = ber_element(input, &mut out, 0)?;
    rest.is_empty().then_some(out)
}

/// Converts one BER element from the front of `input`, appending DER to `out`.
fn ber_element<'a>(input: &'a [u8], out: &mut Vec<u8>, depth: usize) -> Option<&'a [u8]> {
    if depth > MAX_BER_DEPTH {
        return None;
    }
    let tag = *input.first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let constructed = tag & 0x20 != 0;
    let first_len = *input.get(1)?;
    let (content, rest, indefinite) = if first_len == 0x80 {
        if !constructed {
            return None;
        }
        (input.get(2..)?, &[][..], true)
    } else {
        let (tlv, rest) = read_tlv(input)?;
        (tlv.value, rest, false)
    };
    if !constructed {
        out.push(tag);
        push_der_len(out, content.len());
        out.extend_from_slice(content);
        return Some(rest);
    }
    // Constructed: convert children into a scratch buffer, then emit with a definite length.
    let mut inner = Vec::new();
    let mut cursor = content;
    loop {
        if indefinite {
            if cursor.len() >= 2 && cursor[0] == 0 && cursor[1] == 0 {
                cursor = cursor.get(2..)?;
                break;
            }
            if cursor.is_empty() {
                return None;
            }
        } else if cursor.is_empty() {
            break;
        }
        cursor = ber_element(cursor, &mut inner, depth + 1)?;
    }
    if tag == 0x24 {
        // Constructed OCTET STRING: the children are OCTET STRING segments (already converted
        // to primitive form); their contents concatenated are the value.
        let segments = children(&inner)?;
        let mut joined = Vec::with_capacity(inner.len());
        for segment in segments {
            if segment.tag != 0x04 {
                return None;
            }
            joined.extend_from_slice(segment.value);
        }
        out.push(0x04);
        push_der_len(out, joined.len());
        out.extend_from_slice(&joined);
    } else {
        out.push(tag);
        push_der_len(out, inner.len());
        out.extend_from_slice(&inner);
    }
    Some(if indefinite { cursor } else { rest })
}

fn push_der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let significant = &bytes[skip..];
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
}

// ---------------------------------------------------------------------------------------------
// Hashes, algorithms and keys

/// Hash functions accepted anywhere in this module. SHA-1 is deliberately absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HashAlg {
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    pub fn digest(self, msg: &[u8]) -> Vec<u8> {
        match self {
            HashAlg::Sha256 => Sha256::digest(msg).to_vec(),
            HashAlg::Sha384 => Sha384::digest(msg).to_vec(),
            HashAlg::Sha512 => Sha512::digest(msg).to_vec(),
        }
    }

    fn pkcs1v15(self) -> rsa::Pkcs1v15Sign {
        match self {
            HashAlg::Sha256 => rsa::Pkcs1v15Sign::new::<Sha256>(),
            HashAlg::Sha384 => rsa::Pkcs1v15Sign::new::<Sha384>(),
            HashAlg::Sha512 => rsa::Pkcs1v15Sign::new::<Sha512>(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha256 => "SHA-256",
            HashAlg::Sha384 => "SHA-384",
            HashAlg::Sha512 => "SHA-512",
        }
    }
}

/// A signature algorithm: key family plus hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SigAlg {
    RsaPkcs1(HashAlg),
    Ecdsa(HashAlg),
}

/// Maps an X.509/CMS signature-algorithm OID to a supported algorithm, or explains why not.
pub(super) fn sig_alg_from_oid(oid: &ObjectIdentifier) -> Result<SigAlg, String> {
    match *oid {
        OID_SHA256_WITH_RSA => Ok(SigAlg::RsaPkcs1(HashAlg::Sha256)),
        OID_SHA384_WITH_RSA => Ok(SigAlg::RsaPkcs1(HashAlg::Sha384)),
        OID_SHA512_WITH_RSA => Ok(SigAlg::RsaPkcs1(HashAlg::Sha512)),
        OID_ECDSA_SHA256 => Ok(SigAlg::Ecdsa(HashAlg::Sha256)),
        OID_ECDSA_SHA384 => Ok(SigAlg::Ecdsa(HashAlg::Sha384)),
        OID_ECDSA_SHA512 => Ok(SigAlg::Ecdsa(HashAlg::Sha512)),
        OID_SHA1_WITH_RSA | OID_ECDSA_SHA1 | OID_DSA_SHA1 => Err(format!(
            "signature algorithm {oid} uses SHA-1, which is not accepted"
        )),
        OID_RSASSA_PSS => Err("RSASSA-PSS signatures are not supported".to_string()),
        _ => Err(format!("unsupported signature algorithm {oid}")),
    }
}

/// Maps a CMS digest-algorithm OID to a hash. Azure IMDS puts the *signature* OID
/// sha256WithRSAEncryption in this field (IDENTITY.md §0, Azure step 4), so the
/// `shaXXXWithRSAEncryption` OIDs are accepted as their hash, like Go's PKCS#7 parser does.
pub(super) fn digest_alg_from_oid(oid: &ObjectIdentifier) -> Result<HashAlg, String> {
    match *oid {
        OID_SHA256 | OID_SHA256_WITH_RSA => Ok(HashAlg::Sha256),
        OID_SHA384 | OID_SHA384_WITH_RSA => Ok(HashAlg::Sha384),
        OID_SHA512 | OID_SHA512_WITH_RSA => Ok(HashAlg::Sha512),
        OID_SHA1 | OID_SHA1_WITH_RSA => Err("SHA-1 digests are not accepted".to_string()),
        _ => Err(format!("unsupported digest algorithm {oid}")),
    }
}

/// A public key that can check signatures in this module.
#[derive(Debug, Clone)]
pub(super) enum PublicKey {
    Rsa(rsa::PublicKey),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
}

impl PublicKey {
    /// Decodes a DER `SubjectPublicKeyInfo`. RSA keys must be 1024..=8192 bits with a sane
    /// exponent (the `rsa` crate's defaults; AWS still uses RSA-1024); EC keys must be on P-256
    /// or P-384.
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, String> {
        let spki = spki::SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| format!("bad SubjectPublicKeyInfo: {e}"))?;
        match spki.algorithm.oid {
            OID_RSA_ENCRYPTION => rsa::PublicKey::try_from(spki)
                .map(PublicKey::Rsa)
                .map_err(|e| format!("unusable RSA key: {e}")),
            OID_EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters_oid()
                    .map_err(|_| "EC key without a named curve".to_string())?;
                let point = spki
                    .subject_public_key
                    .as_bytes()
                    .ok_or_else(|| "EC public key is not a whole number of bytes".to_string())?;
                match curve {
                    OID_P256 => p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
                        .map(PublicKey::P256)
                        .map_err(|_| "invalid P-256 public key".to_string()),
                    OID_P384 => p384::ecdsa::VerifyingKey::from_sec1_bytes(point)
                        .map(PublicKey::P384)
                        .map_err(|_| "invalid P-384 public key".to_string()),
                    other => Err(format!(
                        "unsupported elliptic curve {other} (only P-256 and P-384)"
                    )),
                }
            }
            OID_DSA => Err("DSA keys are not supported".to_string()),
            OID_ED25519 => Err("Ed25519 keys are not supported".to_string()),
            OID_RSASSA_PSS => Err("RSASSA-PSS keys are not supported".to_string()),
            other => Err(format!("unsupported public key algorithm {other}")),
        }
    }

    /// Short description for summaries and messages: `rsa-2048`, `ec-p256`, `ec-p384`.
    pub fn describe(&self) -> String {
        match self {
            PublicKey::Rsa(key) => format!("rsa-{}", key.n().bit_width_vartime()),
            PublicKey::P256(_) => "ec-p256".to_string(),
            PublicKey::P384(_) => "ec-p384".to_string(),
        }
    }

    /// Verifies `sig` over `msg` with algorithm `alg`. ECDSA signatures are DER
    /// `Ecdsa-Sig-Value`s (X.509 and CMS encoding). The error is a short reason.
    pub fn verify(&self, alg: SigAlg, msg: &[u8], sig: &[u8]) -> Result<(), String> {
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        match (self, alg) {
            (PublicKey::Rsa(key), SigAlg::RsaPkcs1(hash)) => key
                .verify(hash.pkcs1v15(), &hash.digest(msg), sig)
                .map_err(|_| "crypto/rsa: verification error".to_string()),
            (PublicKey::P256(key), SigAlg::Ecdsa(hash)) => {
                let sig = p256::ecdsa::Signature::from_der(sig)
                    .map_err(|_| "malformed ECDSA signature".to_string())?;
                key.verify_prehash(&hash.digest(msg), &sig)
                    .map_err(|_| "ECDSA verification failure".to_string())
            }
            (PublicKey::P384(key), SigAlg::Ecdsa(hash)) => {
                let sig = p384::ecdsa::Signature::from_der(sig)
                    .map_err(|_| "malformed ECDSA signature".to_string())?;
                key.verify_prehash(&hash.digest(msg), &sig)
                    .map_err(|_| "ECDSA verification failure".to_string())
            }
            (key, alg) => Err(format!(
                "signature algorithm {alg:?} does not match the {} key",
                key.describe()
            )),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Time

/// Converts an X.509 time to `OffsetDateTime`. X.509 times are 1970..=9999 in the `der` crate,
/// which always fits.
pub(super) fn x509_time(t: &x509_cert::time::Time) -> Result<OffsetDateTime, String> {
    let secs = i64::try_from(t.to_unix_duration().as_secs())
        .map_err(|_| "certificate time out of range".to_string())?;
    OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|_| "certificate time out of range".to_string())
}

/// RFC 3339 rendering for messages; falls back to the Unix timestamp.
pub(super) fn fmt_time(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

// ---------------------------------------------------------------------------------------------
// Certificates

/// The facts about one X.509 certificate that verification needs, extracted once.
#[derive(Debug, Clone)]
pub(super) struct Cert {
    /// The certificate's DER exactly as received.
    pub der: Vec<u8>,
    /// Byte range of the raw `tbsCertificate` inside `der`.
    tbs: std::ops::Range<usize>,
    pub subject_der: Vec<u8>,
    pub issuer_der: Vec<u8>,
    /// RFC 4514 renderings for messages and summaries.
    pub subject: String,
    pub issuer: String,
    pub serial: Vec<u8>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// The algorithm this certificate was signed with (by its issuer). Unsupported algorithms
    /// are kept as the reason, because roots (never verified) may use SHA-1.
    pub sig_alg: Result<SigAlg, String>,
    pub signature: Vec<u8>,
    /// The subject public key, or why it cannot be used.
    pub key: Result<PublicKey, String>,
    /// `(cA, pathLenConstraint)` if a BasicConstraints extension is present.
    pub basic_constraints: Option<(bool, Option<u8>)>,
    /// `Some(keyCertSign)` if a KeyUsage extension is present.
    pub key_cert_sign: Option<bool>,
    pub has_name_constraints: bool,
    /// The first critical extension this module does not process, if any.
    pub unhandled_critical: Option<String>,
    /// AIA caIssuers URLs (where the issuer's certificate can be downloaded).
    pub ca_issuers: Vec<String>,
    pub subject_key_id: Option<Vec<u8>>,
    /// Every CN attribute value of the subject, in order.
    pub common_names: Vec<String>,
}

impl Cert {
    /// Parses a DER certificate. Fails on anything a strict DER X.509 parser rejects and on
    /// malformed extensions this module relies on.
    pub fn from_der(der: &[u8]) -> Result<Cert, String> {
        let cert = Certificate::from_der(der)
            .map_err(|e| format!("not a valid X.509 certificate: {e}"))?;
        let tbs = raw_tbs_range(der).ok_or_else(|| "cannot locate tbsCertificate".to_string())?;
        let tbs_cert = cert.tbs_certificate();
        if cert.signature_algorithm() != tbs_cert.signature() {
            return Err("inner and outer signature algorithm identifiers don't match".to_string());
        }
        let subject_der = tbs_cert
            .subject()
            .to_der()
            .map_err(|e| format!("cannot encode subject: {e}"))?;
        let issuer_der = tbs_cert
            .issuer()
            .to_der()
            .map_err(|e| format!("cannot encode issuer: {e}"))?;
        let validity = tbs_cert.validity();
        let not_before = x509_time(&validity.not_before)?;
        let not_after = x509_time(&validity.not_after)?;
        let signature = cert
            .signature()
            .as_bytes()
            .ok_or_else(|| "signature is not a whole number of bytes".to_string())?
            .to_vec();
        let spki_der = tbs_cert
            .subject_public_key_info()
            .to_der()
            .map_err(|e| format!("cannot encode public key: {e}"))?;

        let mut common_names = Vec::new();
        for atv in tbs_cert.subject().iter() {
            if atv.oid == OID_COMMON_NAME {
                let value: x509_cert::ext::pkix::name::DirectoryString = atv
                    .value
                    .decode_as()
                    .map_err(|e| format!("subject CN is not a string: {e}"))?;
                common_names.push(value.value().into_owned());
            }
        }

        let mut facts = Cert {
            der: der.to_vec(),
            tbs,
            subject: tbs_cert.subject().to_string(),
            issuer: tbs_cert.issuer().to_string(),
            subject_der,
            issuer_der,
            serial: tbs_cert.serial_number().as_bytes().to_vec(),
            not_before,
            not_after,
            sig_alg: sig_alg_from_oid(&cert.signature_algorithm().oid),
            signature,
            key: PublicKey::from_spki_der(&spki_der),
            basic_constraints: None,
            key_cert_sign: None,
            has_name_constraints: false,
            unhandled_critical: None,
            ca_issuers: Vec::new(),
            subject_key_id: None,
            common_names,
        };

        for ext in tbs_cert.extensions().into_iter().flatten() {
            let value = ext.extn_value.as_bytes();
            match ext.extn_id {
                OID_CE_BASIC_CONSTRAINTS => {
                    let bc = BasicConstraints::from_der(value)
                        .map_err(|e| format!("malformed BasicConstraints: {e}"))?;
                    facts.basic_constraints = Some((bc.ca, bc.path_len_constraint));
                }
                OID_CE_KEY_USAGE => {
                    let ku = KeyUsage::from_der(value)
                        .map_err(|e| format!("malformed KeyUsage: {e}"))?;
                    facts.key_cert_sign = Some(ku.key_cert_sign());
                }
                OID_CE_NAME_CONSTRAINTS => facts.has_name_constraints = true,
                OID_PE_AUTHORITY_INFO_ACCESS => {
                    // Only used to help the operator; a malformed AIA is ignored, not fatal.
                    if let Ok(aia) = AuthorityInfoAccessSyntax::from_der(value) {
                        for ad in aia.0 {
                            if ad.access_method == OID_AD_CA_ISSUERS
                                && let GeneralName::UniformResourceIdentifier(uri) =
                                    ad.access_location
                            {
                                facts.ca_issuers.push(uri.to_string());
                            }
                        }
                    }
                }
                OID_CE_SUBJECT_KEY_ID => {
                    let skid = der::asn1::OctetString::from_der(value)
                        .map_err(|e| format!("malformed SubjectKeyIdentifier: {e}"))?;
                    facts.subject_key_id = Some(skid.as_bytes().to_vec());
                }
                _ => {}
            }
            let handled = matches!(
                ext.extn_id,
                OID_CE_BASIC_CONSTRAINTS
                    | OID_CE_KEY_USAGE
                    | OID_CE_EXT_KEY_USAGE
                    | OID_CE_SUBJECT_ALT_NAME
                    | OID_CE_NAME_CONSTRAINTS
                    | OID_CE_CERTIFICATE_POLICIES
                    | OID_CE_POLICY_CONSTRAINTS
                    | OID_CE_INHIBIT_ANY_POLICY
            );
            if ext.critical && !handled && facts.unhandled_critical.is_none() {
                facts.unhandled_critical = Some(ext.extn_id.to_string());
            }
        }
        Ok(facts)
    }

    /// The raw `tbsCertificate` bytes the issuer signed.
    pub fn tbs_der(&self) -> &[u8] {
        self.der.get(self.tbs.clone()).unwrap_or_default()
    }

    /// Checks `now` against notBefore/notAfter (both inclusive, like Go's `x509`).
    pub fn check_validity(&self, now: OffsetDateTime) -> Result<(), String> {
        if now < self.not_before {
            return Err(format!(
                "x509: certificate \"{}\" is not yet valid: current time {} is before {}",
                self.subject,
                fmt_time(now),
                fmt_time(self.not_before)
            ));
        }
        if now > self.not_after {
            return Err(format!(
                "x509: certificate \"{}\" has expired: current time {} is after {}",
                self.subject,
                fmt_time(now),
                fmt_time(self.not_after)
            ));
        }
        Ok(())
    }

    /// Verifies that `issuer`'s key signed this certificate.
    pub fn verify_signed_by(&self, issuer: &Cert) -> Result<(), String> {
        let alg = self.sig_alg.clone()?;
        let key = issuer
            .key
            .as_ref()
            .map_err(|e| format!("issuer \"{}\" has an unusable key: {e}", issuer.subject))?;
        key.verify(alg, self.tbs_der(), &self.signature)
    }
}

/// Locates the raw `tbsCertificate` TLV inside a DER certificate.
fn raw_tbs_range(der: &[u8]) -> Option<std::ops::Range<usize>> {
    let (outer, _) = expect_tlv(der, 0x30)?;
    let (tbs, _) = expect_tlv(outer.value, 0x30)?;
    let start = outer.raw.len() - outer.value.len();
    Some(start..start + tbs.raw.len())
}
