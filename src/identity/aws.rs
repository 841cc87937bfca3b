//! AWS EC2 instance identity: `/latest/dynamic/instance-identity/document` + `/signature`.
//!
//! The signature is RSASSA-PKCS1-v1_5/SHA-256 over the document bytes *exactly as received*
//! (no trimming, no re-serialising: one public fixture verifies only without a trailing newline).
//! Like coder (coder/coder:coderd/awsidentity), certificate dates are ignored. Unlike coder,
//! which tries every configured key (a garbage signature cost fifteen RSA verifications with one
//! operator key), a document is checked against **at most two** keys, chosen by its `region`
//! (see [`candidates`]):
//!
//! 1. an operator key (added with [`AwsTrust::add_pem`], i.e. `identity.aws.certificates`): the
//!    first one *for* the region (label or file name = region code or coder's region group, or
//!    a copy of that group's built-in key), else the first operator key at all;
//! 2. the built-in key of the region's group (`other` for every region without its own key).
//!
//! If either is missing, the next operator key (or built-in key for the region) takes its
//! place. The key that verified the last document from the region goes first (a hint kept in
//! the [`AwsTrust`], see `KeyHints`); otherwise the operator key does. So a proof signed by the
//! operator's key verifies on the first try, a proof from a built-in region on the second try
//! once and then on the first, and a forged one costs at most two RSA verifications. The price:
//! with more than one operator key, only the first is tried for a region none of them is named
//! for, so name each file after its region (`<region>.pem`, e.g. ap-southeast-5.pem).

use super::IdentityError;
use super::pki::{self, HashAlg};
use super::trust::AwsTrust;

/// Largest accepted `signature` field (base64, with line breaks). RSA-8192 needs ~1.4 KiB.
const MAX_SIGNATURE_B64_LEN: usize = 16 << 10;
/// Largest accepted document. Real ones are ~500 bytes.
const MAX_DOCUMENT_LEN: usize = 64 << 10;

/// The error text coder returns when no key verifies (Go's `rsa.ErrVerification`).
const RSA_VERIFICATION_ERROR: &str = "crypto/rsa: verification error";

/// Verifies an AWS instance identity document and its `/signature`, returning `instanceId`
/// (empty if the signed document has none, as coder's JSON decoding would).
///
/// `signature_b64` is standard base64, possibly wrapped with CR/LF (IMDS wraps at 76 columns).
pub fn verify_aws(
    document: &str,
    signature_b64: &str,
    trust: &AwsTrust,
) -> Result<String, IdentityError> {
    verify_aws_counted(document, signature_b64, trust).0
}

/// [`verify_aws`], also telling how many RSA verifications it ran (at most two).
pub(super) fn verify_aws_counted(
    document: &str,
    signature_b64: &str,
    trust: &AwsTrust,
) -> (Result<String, IdentityError>, usize) {
    let mut tries = 0;
    let result = verify(document, signature_b64, trust, &mut tries);
    (result, tries)
}

fn verify(
    document: &str,
    signature_b64: &str,
    trust: &AwsTrust,
    tries: &mut usize,
) -> Result<String, IdentityError> {
    if document.len() > MAX_DOCUMENT_LEN {
        return Err(IdentityError::Malformed(format!(
            "document is too large ({} bytes)",
            document.len()
        )));
    }
    // coder decodes the document before checking the signature; a document that is not a JSON
    // object cannot yield an instance id, so reject it first, without spending RSA operations.
    let doc: serde_json::Value = serde_json::from_str(document)
        .map_err(|e| IdentityError::Malformed(format!("document is not valid JSON: {e}")))?;
    let doc = doc
        .as_object()
        .ok_or_else(|| IdentityError::Malformed("document is not a JSON object".to_string()))?;
    let instance_id = match doc.get("instanceId") {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(IdentityError::Malformed(
                "document field \"instanceId\" is not a string".to_string(),
            ));
        }
    };
    let region = doc.get("region").and_then(|r| r.as_str()).unwrap_or("");

    let signature = pki::decode_base64_lines(signature_b64, MAX_SIGNATURE_B64_LEN, "signature")
        .map_err(IdentityError::Malformed)?;

    if trust.keys.is_empty() {
        return Err(IdentityError::BadSignature(format!(
            "{RSA_VERIFICATION_ERROR} (no AWS keys are configured)"
        )));
    }

    let hash = HashAlg::Sha256.digest(document.as_bytes());
    let scheme = || rsa::Pkcs1v15Sign::new::<sha2::Sha256>();
    let mut order = candidates(trust, region, region_group(region));
    if order[1].is_some() && order[1] == trust.hints.get(region) {
        order.swap(0, 1);
    }
    if order[0].is_none() {
        return Err(IdentityError::BadSignature(format!(
            "{RSA_VERIFICATION_ERROR} (no configured AWS key applies to the document's region)"
        )));
    }
    for index in order.into_iter().flatten() {
        let Some(key) = trust.keys.get(index) else {
            continue;
        };
        *tries += 1;
        if key.key.verify(scheme(), &hash, &signature).is_ok() {
            trust.hints.set(region, index);
            return Ok(instance_id);
        }
    }
    Err(IdentityError::BadSignature(
        RSA_VERIFICATION_ERROR.to_string(),
    ))
}

/// The (at most two) keys a document from `region` (coder's region group `group`) is checked
/// against, operator key first: indices into `trust.keys`. See the module documentation.
pub(super) fn candidates(trust: &AwsTrust, region: &str, group: &str) -> [Option<usize>; 2] {
    let keys = || trust.keys.iter().enumerate();
    let mut operator = keys()
        .filter(|(_, k)| !k.builtin && k.applies_to(region, group))
        .chain(keys().filter(|(_, k)| !k.builtin && !k.applies_to(region, group)))
        .map(|(i, _)| i);
    let mut builtin = keys()
        .filter(|(_, k)| k.builtin && k.applies_to(region, group))
        .map(|(i, _)| i);
    match (operator.next(), builtin.next()) {
        (Some(o), Some(b)) => [Some(o), Some(b)],
        (Some(o), None) => [Some(o), operator.next()],
        (None, Some(b)) => [Some(b), builtin.next()],
        (None, None) => [None, None],
    }
}

/// coder's region group for an AWS region code: the label of the built-in key that signs its
/// documents, per the table in `tests/fixtures/identity/certs/aws/README.md`. Every other region,
/// including an empty or unknown one, is `other`.
pub(super) fn region_group(region: &str) -> &'static str {
    match region {
        "ap-east-1" => "hongkong",
        "me-south-1" => "bahrain",
        "me-central-1" => "uae",
        "af-south-1" => "capetown",
        "eu-south-1" => "milan",
        "eu-south-2" => "spain",
        "eu-central-2" => "zurich",
        "ap-southeast-3" => "jakarta",
        "ap-southeast-4" => "melbourne",
        "ap-south-2" => "hyderabad",
        "cn-north-1" | "cn-northwest-1" => "china",
        "us-gov-west-1" | "us-gov-east-1" => "govcloud",
        "il-central-1" => "telaviv",
        _ => "other",
    }
}

#[cfg(test)]
mod unit {
    use super::region_group;

    #[test]
    fn region_table() {
        assert_eq!(region_group("us-east-1"), "other");
        assert_eq!(region_group("ap-east-1"), "hongkong");
        assert_eq!(region_group("cn-northwest-1"), "china");
        assert_eq!(region_group("il-central-1"), "telaviv");
        assert_eq!(region_group(""), "other");
        assert_eq!(region_group("RegionOne"), "other");
    }
}
