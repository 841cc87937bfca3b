//! AWS EC2 instance identity: `/latest/dynamic/instance-identity/document` + `/signature`.
//!
//! The signature is RSASSA-PKCS1-v1_5/SHA-256 over the document bytes *exactly as received*
//! (no trimming, no re-serialising: one public fixture verifies only without a trailing newline).
//! Like coder (coder/coder:coderd/awsidentity), every configured key is tried and certificate
//! dates are ignored; unlike coder, the key for the document's region is tried first so the
//! common case costs one RSA verification instead of up to fourteen.

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
    let preferred = preferred_labels(region);
    let is_preferred = |labels: &[String]| labels.iter().any(|l| preferred.iter().any(|p| l == p));

    // Two passes over a short list: the region's keys first, then everything else.
    let first = trust.keys.iter().filter(|k| is_preferred(&k.labels));
    let rest = trust.keys.iter().filter(|k| !is_preferred(&k.labels));
    for key in first.chain(rest) {
        if key.key.verify(scheme(), &hash, &signature).is_ok() {
            return Ok(instance_id);
        }
    }
    Err(IdentityError::BadSignature(
        RSA_VERIFICATION_ERROR.to_string(),
    ))
}

/// Labels whose keys should be tried first for a document from `region`: the region code
/// itself (operators may label keys by region) and coder's region-group name, per the table in
/// the fixtures' `certs/aws/README.md`. Only an optimisation: all keys are tried anyway.
fn preferred_labels(region: &str) -> [&str; 2] {
    let group = match region {
        "" => "",
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
    };
    // Labels are never empty (AwsTrust rejects that), so "" matches nothing.
    [region, group]
}

#[cfg(test)]
mod unit {
    use super::preferred_labels;

    #[test]
    fn region_table() {
        assert_eq!(preferred_labels("us-east-1"), ["us-east-1", "other"]);
        assert_eq!(preferred_labels("ap-east-1"), ["ap-east-1", "hongkong"]);
        assert_eq!(
            preferred_labels("cn-northwest-1"),
            ["cn-northwest-1", "china"]
        );
        assert_eq!(
            preferred_labels("il-central-1"),
            ["il-central-1", "telaviv"]
        );
        assert_eq!(preferred_labels(""), ["", ""]);
    }
}
