//! Unit tests for `identity`: real fixtures (tests/fixtures/identity, copied from
//! shared/fixtures/identity), test PKI made with the openssl CLI
//! (tests/fixtures/identity/generated, see its README), tampering, trust management and
//! robustness against hostile input.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use der::{Decode, Encode};
use rsa::traits::PublicKeyParts;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::*;

// ---------------------------------------------------------------------------------------------
// Fixtures

macro_rules! fixture {
    ($path:literal) => {
        include_str!(concat!("../../tests/fixtures/identity/", $path))
    };
}

struct AwsFixture {
    name: &'static str,
    document: &'static str,
    signature: &'static str,
    instance_id: &'static str,
}

const AWS_SIGNATURE_FIXTURES: &[AwsFixture] = &[
    AwsFixture {
        name: "coder-us-east-1-2022",
        document: fixture!("aws/coder-us-east-1-2022/document.json"),
        signature: fixture!("aws/coder-us-east-1-2022/signature.b64"),
        instance_id: "i-076e9b91f7c420782",
    },
    AwsFixture {
        name: "taskcluster-us-west-2-2019",
        document: fixture!("aws/taskcluster-us-west-2-2019/document.json"),
        signature: fixture!("aws/taskcluster-us-west-2-2019/signature.b64"),
        instance_id: "i-02312cd4f06c990ca",
    },
];

/// `/pkcs7` (DSA-SHA1) fixtures: `signature` holds the PKCS#7 body, which is not what coder's
/// agent sends and must be rejected cleanly by `verify_aws`.
const AWS_PKCS7_FIXTURES: &[AwsFixture] = &[
    AwsFixture {
        name: "taskcluster-ec2-manager-pkcs7-us-east-1-2018",
        document: fixture!("aws/taskcluster-ec2-manager-pkcs7-us-east-1-2018/document.json"),
        signature: fixture!("aws/taskcluster-ec2-manager-pkcs7-us-east-1-2018/pkcs7.b64"),
        instance_id: "i-03ae14c346ba643a1",
    },
    AwsFixture {
        name: "grailbio-pkcs7-us-west-2-2016",
        document: fixture!("aws/grailbio-pkcs7-us-west-2-2016/document.json"),
        signature: fixture!("aws/grailbio-pkcs7-us-west-2-2016/pkcs7.b64"),
        instance_id: "i-0269a78c81708088a",
    },
    AwsFixture {
        name: "grailbio-pkcs7-us-west-2-2017",
        document: fixture!("aws/grailbio-pkcs7-us-west-2-2017/document.json"),
        signature: fixture!("aws/grailbio-pkcs7-us-west-2-2017/pkcs7.b64"),
        instance_id: "i-06af9bb2a3a2861cd",
    },
];

struct AzureFixture {
    name: &'static str,
    signature: &'static str,
    content: &'static str,
    valid_at: &'static str,
    vm_id: &'static str,
}

const AZURE_FIXTURES: &[AzureFixture] = &[
    AzureFixture {
        name: "coder-regular-2022",
        signature: fixture!("azure/coder-regular-2022/signature.b64"),
        content: fixture!("azure/coder-regular-2022/content.json"),
        valid_at: "2023-02-01T00:00:00Z",
        vm_id: "bd8e7443-24a0-41f3-b949-8baf4fd1c573",
    },
    AzureFixture {
        name: "coder-govcloud-2023",
        signature: fixture!("azure/coder-govcloud-2023/signature.b64"),
        content: fixture!("azure/coder-govcloud-2023/content.json"),
        valid_at: "2023-04-01T00:00:00Z",
        vm_id: "990878d4-068a-4ac4-9ee9-1231d2218ef2",
    },
    AzureFixture {
        name: "coder-rsa-2024",
        signature: fixture!("azure/coder-rsa-2024/signature.b64"),
        content: fixture!("azure/coder-rsa-2024/content.json"),
        valid_at: "2024-04-22T17:32:44Z",
        vm_id: "960a4b4a-dab2-44ef-9b73-7753043b4f16",
    },
    AzureFixture {
        name: "coder-regular-2026",
        signature: fixture!("azure/coder-regular-2026/signature.b64"),
        content: fixture!("azure/coder-regular-2026/content.json"),
        valid_at: "2026-06-25T00:00:00Z",
        vm_id: "dc18de58-292f-4794-9a5d-a4192bad0039",
    },
    AzureFixture {
        name: "ansible-sap-operations-2023",
        signature: fixture!("azure/ansible-sap-operations-2023/signature.b64"),
        content: fixture!("azure/ansible-sap-operations-2023/content.json"),
        valid_at: "2023-10-02T12:33:11Z",
        vm_id: "6277b885-20b1-43ba-81a2-ee4e94e7c0af",
    },
    AzureFixture {
        name: "taskcluster-2025",
        signature: fixture!("azure/taskcluster-2025/signature.b64"),
        content: fixture!("azure/taskcluster-2025/content.json"),
        valid_at: "2025-11-19T12:53:30Z",
        vm_id: "ddc87bd2-3ebb-43dc-92a9-90b104cd9527",
    },
];

struct GcpFixture {
    name: &'static str,
    token: &'static str,
    jwks: &'static str,
    iat: i64,
    exp: i64,
    aud: &'static str,
    instance_id: &'static str,
}

const GCP_FIXTURES: &[GcpFixture] = &[
    GcpFixture {
        name: "istio-2019",
        token: fixture!("gcp/istio-2019/token.jwt"),
        jwks: fixture!("gcp/istio-2019/jwks.json"),
        iat: 1556235445,
        exp: 1556239045,
        aud: "myaudience",
        instance_id: "3860110238946415859",
    },
    GcpFixture {
        name: "smallstep-kops-2019",
        token: fixture!("gcp/smallstep-kops-2019/token.jwt"),
        jwks: fixture!("gcp/smallstep-kops-2019/jwks.json"),
        iat: 1555544268,
        exp: 1555547868,
        aud: "gcp:Kops Provisioner",
        instance_id: "3015378661047007286",
    },
    GcpFixture {
        name: "infisical-2024",
        token: fixture!("gcp/infisical-2024/token.jwt"),
        jwks: fixture!("gcp/infisical-2024/jwks.json"),
        iat: 1715962787,
        exp: 1715966387,
        aud: "71d1b279-2fe3-4828-85f5-2f4a2fdb02a1",
        instance_id: "8418160715288427941",
    },
    GcpFixture {
        name: "google-auth-java-sa-no-instance-2020",
        token: fixture!("gcp/google-auth-java-sa-no-instance-2020/token.jwt"),
        jwks: fixture!("gcp/google-auth-java-sa-no-instance-2020/jwks.json"),
        iat: 1587626288,
        exp: 1587629888,
        aud: "https://example.com/path",
        instance_id: "",
    },
];

const GCP_HISTORICAL_JWKS: &str = fixture!("certs/gcp/google-oauth2-v3-certs-historical.json");
const AWS_RENEWED_OTHER: &str = fixture!("certs/aws/coder-extra/other-regions-renewed-2024.pem");
const AWS_DSA_OTHER: &str = fixture!("certs/aws/dsa-pkcs7/other-aws-regions.pem");

mod generated {
    macro_rules! generated {
        ($path:literal) => {
            include_str!(concat!("../../tests/fixtures/identity/generated/", $path))
        };
    }
    pub const ROOT_P384: &str = generated!("root-p384.pem");
    pub const INT_P256: &str = generated!("int-p256.pem");
    pub const ROOT_P256: &str = generated!("root-p256.pem");
    pub const INT_P384: &str = generated!("int-p384.pem");
    pub const NOT_CA: &str = generated!("notca.pem");
    pub const A_P256_NOATTR: &str = generated!("azure-a-p256-noattr.b64");
    pub const B_RSA_NOATTR: &str = generated!("azure-b-rsa-noattr.b64");
    pub const B_RSA_ATTRS: &str = generated!("azure-b-rsa-attrs.b64");
    pub const B_RSA_KEYID: &str = generated!("azure-b-rsa-keyid.b64");
    pub const B_RSA_BER: &str = generated!("azure-b-rsa-ber-stream.b64");
    pub const B_RSA_WITH_INT: &str = generated!("azure-b-rsa-with-intermediate.b64");
    pub const EVIL_CN: &str = generated!("azure-evil-cn.b64");
    pub const UNDER_NOT_CA: &str = generated!("azure-under-notca.b64");
    pub const GCP_TEST_KEY: &str = generated!("gcp-test-key.pem");
    pub const AWS_TEST_KEY: &str = generated!("aws-test-key.pem");
    pub const AWS_OTHER_SPKI: &str = generated!("aws-other-spki.pem");
    pub const AWS_OTHER_PKCS1: &str = generated!("aws-other-pkcs1.pem");
    pub const A_VM_ID: &str = "11111111-aaaa-4bbb-8ccc-000000000001";
    pub const B_VM_ID: &str = "22222222-aaaa-4bbb-8ccc-000000000002";
    /// Inside every generated leaf's validity (2026-02-01 .. 2027-02-01).
    pub const VALID_AT: &str = "2026-06-01T00:00:00Z";
    pub const LEAF_NOT_BEFORE: &str = "2026-02-01T00:00:00Z";
    pub const LEAF_NOT_AFTER: &str = "2027-02-01T00:00:00Z";
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn at(rfc3339: &str) -> OffsetDateTime {
    OffsetDateTime::parse(rfc3339, &Rfc3339).unwrap()
}

fn unix(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).unwrap()
}

fn builtin() -> &'static Trust {
    static TRUST: OnceLock<Trust> = OnceLock::new();
    TRUST.get_or_init(Trust::builtin)
}

fn gcp_trust(jwks: &str) -> GcpTrust {
    let mut trust = GcpTrust::default();
    trust.add_jwks_json(jwks.as_bytes()).unwrap();
    trust
}

/// Deterministic xorshift64* generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
}

/// One random structural mutation: flip, overwrite, insert, delete, truncate, duplicate a
/// range, or set length-like bytes to extremes.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    let rounds = 1 + rng.below(3);
    for _ in 0..rounds {
        let len = out.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = rng.byte();
            }
            2 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(8);
                let extra = rng.bytes(n);
                out.splice(i..i, extra);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let j = (i + 1 + rng.below(16)).min(len);
                out.drain(i..j);
            }
            4 => out.truncate(rng.below(len + 1)),
            5 if len > 1 => {
                let i = rng.below(len);
                let j = (i + 1 + rng.below(64)).min(len);
                let copy = out[i..j].to_vec();
                let k = rng.below(len);
                out.splice(k..k, copy);
            }
            6 if len > 0 => {
                let i = rng.below(len);
                out[i] = [0x00, 0x7f, 0x80, 0x81, 0x84, 0xff][rng.below(6)];
            }
            _ => {
                let i = rng.below(len + 1);
                out.insert(i, [b'\n', b'=', b'.', b'"', b'{', 0][rng.below(6)]);
            }
        }
    }
    out
}

fn decode_b64(b64: &str) -> Vec<u8> {
    let cleaned: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD.decode(cleaned).unwrap()
}

/// The first certificate embedded in a PKCS#7 envelope (the leaf, for IMDS documents).
fn envelope_leaf(b64: &str) -> pki::Cert {
    let der = decode_b64(b64);
    let ci = cms::content_info::ContentInfo::from_der(&der).unwrap();
    let sd: cms::signed_data::SignedData = ci.content.decode_as().unwrap();
    let certs = sd.certificates.unwrap();
    let cms::cert::CertificateChoices::Certificate(cert) = certs.0.iter().next().unwrap() else {
        panic!("not a certificate");
    };
    pki::Cert::from_der(&cert.to_der().unwrap()).unwrap()
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
}

/// Sample positions in `0..len`: every `step`-th plus the last one.
fn positions(len: usize, step: usize) -> impl Iterator<Item = usize> {
    (0..len).step_by(step).chain(len.checked_sub(1))
}

fn pem_key_der(pem: &str) -> Vec<u8> {
    let blocks = pki::parse_pem(pem).unwrap();
    blocks.into_iter().next().unwrap().der
}

fn rsa_signing_key(pem: &str) -> rsa::pkcs1v15::SigningKey<sha2::Sha256> {
    use rsa::pkcs8::DecodePrivateKey;
    rsa::pkcs1v15::SigningKey::<sha2::Sha256>::from_pkcs8_der(&pem_key_der(pem)).unwrap()
}

fn rsa_sign(key: &rsa::pkcs1v15::SigningKey<sha2::Sha256>, msg: &[u8]) -> Vec<u8> {
    use rsa::signature::{SignatureEncoding, Signer};
    key.sign(msg).to_vec()
}

// ---------------------------------------------------------------------------------------------
// Built-in trust and summary

#[test]
fn builtin_trust_matches_coder_defaults() {
    let trust = builtin();
    assert_eq!(trust.aws.len(), 14, "coder embeds 14 distinct AWS keys");
    let mut labels: Vec<String> = trust
        .aws
        .keys
        .iter()
        .flat_map(|k| k.labels.clone())
        .collect();
    labels.sort();
    assert_eq!(
        labels,
        [
            "bahrain",
            "capetown",
            "china",
            "govcloud",
            "hongkong",
            "hyderabad",
            "jakarta",
            "melbourne",
            "milan",
            "other",
            "spain",
            "telaviv",
            "uae",
            "zurich"
        ]
    );
    assert!(
        trust
            .aws
            .keys
            .iter()
            .all(|k| k.key.n().bit_width_vartime() == 1024)
    );
    assert_eq!(trust.azure.root_count(), 3);
    assert_eq!(trust.azure.intermediate_count(), 23);
    assert!(
        trust.gcp.is_empty(),
        "Google keys rotate; none are built in"
    );

    let summary = trust.summary();
    assert_eq!(summary.len(), 14 + 3 + 23);
    let count = |kind: TrustKind| summary.iter().filter(|i| i.kind == kind).count();
    assert_eq!(count(TrustKind::AwsKey), 14);
    assert_eq!(count(TrustKind::AzureRoot), 3);
    assert_eq!(count(TrustKind::AzureIntermediate), 23);
    let g2 = summary
        .iter()
        .find(|i| i.kind == TrustKind::AzureRoot && i.label.contains("DigiCert Global Root G2"))
        .unwrap();
    assert_eq!(g2.cloud, Cloud::Azure);
    assert_eq!(g2.source, "builtin");
    assert_eq!(g2.key, "rsa-2048");
    assert_eq!(g2.not_after, Some(at("2038-01-15T12:00:00Z")));
    let g3 = summary
        .iter()
        .find(|i| i.label.contains("DigiCert Global Root G3"))
        .unwrap();
    assert_eq!(g3.key, "ec-p384");
    let other = summary.iter().find(|i| i.label == "other").unwrap();
    assert_eq!(other.kind.as_str(), "aws-key");
    assert_eq!(other.key, "rsa-1024");
    // The 2014 "other" certificate expired; AWS dates are informational only.
    assert_eq!(other.not_after, Some(at("2024-06-05T14:28:02Z")));
    assert_eq!(Cloud::Aws.as_str(), "aws");
    assert_eq!(Cloud::Azure.as_str(), "azure");
    assert_eq!(Cloud::Google.as_str(), "google");
    assert_eq!(TrustKind::GcpJwk.as_str(), "gcp-jwk");
    assert_eq!(TrustKind::AzureIntermediate.as_str(), "azure-intermediate");
}

// ---------------------------------------------------------------------------------------------
// AWS

#[test]
fn aws_fixtures_verify_with_builtin_keys() {
    for f in AWS_SIGNATURE_FIXTURES {
        let id = verify_aws(f.document, f.signature, &builtin().aws)
            .unwrap_or_else(|e| panic!("{}: {e}", f.name));
        assert_eq!(id, f.instance_id, "{}", f.name);
    }
}

#[test]
fn aws_hashes_the_document_exactly_as_received() {
    let trust = &builtin().aws;
    for f in AWS_SIGNATURE_FIXTURES {
        for variant in [
            format!("{}\n", f.document),
            format!("{}\r\n", f.document),
            format!(" {}", f.document),
            f.document.replace(" : ", ":"),
        ] {
            let err = verify_aws(&variant, f.signature, trust).unwrap_err();
            assert_eq!(
                err,
                IdentityError::BadSignature("crypto/rsa: verification error".into())
            );
            assert!(err.is_verification_failure());
        }
    }
    // coder's FailBad case: same signature, document "{}".
    let f = &AWS_SIGNATURE_FIXTURES[0];
    assert!(
        verify_aws("{}", f.signature, trust)
            .unwrap_err()
            .is_verification_failure()
    );
}

#[test]
fn aws_signature_line_breaks_are_ignored() {
    let f = &AWS_SIGNATURE_FIXTURES[0];
    assert!(
        f.signature.contains('\n'),
        "fixture is wrapped like IMDS output"
    );
    let one_line: String = f.signature.chars().filter(|c| *c != '\n').collect();
    let crlf = f.signature.replace('\n', "\r\n");
    for sig in [one_line.as_str(), crlf.as_str()] {
        assert_eq!(
            verify_aws(f.document, sig, &builtin().aws).unwrap(),
            f.instance_id
        );
    }
    // Other whitespace is not part of Go's leniency.
    let spaced = one_line.replacen('A', " A", 1);
    assert!(
        verify_aws(f.document, &spaced, &builtin().aws)
            .unwrap_err()
            .is_malformed()
    );
}

#[test]
fn aws_rejects_empty_and_malformed_input() {
    let f = &AWS_SIGNATURE_FIXTURES[0];
    let trust = &builtin().aws;
    assert!(verify_aws("", "", trust).unwrap_err().is_malformed());
    assert!(
        verify_aws(f.document, "", trust)
            .unwrap_err()
            .is_malformed()
    );
    assert!(
        verify_aws("", f.signature, trust)
            .unwrap_err()
            .is_malformed()
    );
    assert!(
        verify_aws("[1,2]", f.signature, trust)
            .unwrap_err()
            .is_malformed()
    );
    assert!(
        verify_aws(f.document, "!!!!", trust)
            .unwrap_err()
            .is_malformed()
    );
    assert!(
        verify_aws(f.document, "QUJD", trust)
            .unwrap_err()
            .is_verification_failure()
    );
    // instanceId with the wrong type is malformed; missing is "" (but needs a valid signature).
    let wrong_type = f.document.replace("\"i-076e9b91f7c420782\"", "17");
    assert!(
        verify_aws(&wrong_type, f.signature, trust)
            .unwrap_err()
            .is_malformed()
    );
}

#[test]
fn aws_single_byte_flips_in_document_fail() {
    let trust = &builtin().aws;
    for f in AWS_SIGNATURE_FIXTURES {
        let doc = f.document.as_bytes();
        for i in positions(doc.len(), 5) {
            for bit in [0x01u8, 0x20] {
                let mut tampered = doc.to_vec();
                tampered[i] ^= bit;
                // A flip can leave invalid UTF-8; such a body never reaches verify_aws as &str.
                let Ok(tampered) = String::from_utf8(tampered) else {
                    continue;
                };
                let result = verify_aws(&tampered, f.signature, trust);
                assert!(
                    result.is_err(),
                    "{}: flip 0x{bit:02x} at {i} verified",
                    f.name
                );
            }
        }
    }
}

#[test]
fn aws_single_byte_flips_in_signature_fail() {
    let trust = &builtin().aws;
    for f in AWS_SIGNATURE_FIXTURES {
        let sig = decode_b64(f.signature);
        assert_eq!(sig.len(), 128);
        for i in positions(sig.len(), 3) {
            let mut tampered = sig.clone();
            tampered[i] ^= 0x80;
            let err = verify_aws(f.document, &STANDARD.encode(&tampered), trust).unwrap_err();
            assert!(err.is_verification_failure(), "{}: byte {i}: {err}", f.name);
        }
        // Flips in the base64 text itself (never canonical-and-equal, so always an error).
        let text = f.signature.as_bytes();
        for i in positions(text.len(), 7) {
            let mut tampered = text.to_vec();
            tampered[i] ^= 0x01;
            let tampered = String::from_utf8(tampered).unwrap();
            assert!(
                verify_aws(f.document, &tampered, trust).is_err(),
                "{}: char {i}",
                f.name
            );
        }
    }
}

#[test]
fn aws_pkcs7_dsa_fixtures_are_rejected_cleanly() {
    // coder's agent sends /signature, not /pkcs7; the DSA PKCS#7 bodies are not RSA signatures
    // and must fail as a verification failure, never a panic or an acceptance.
    for f in AWS_PKCS7_FIXTURES {
        let err = verify_aws(f.document, f.signature, &builtin().aws).unwrap_err();
        assert_eq!(
            err,
            IdentityError::BadSignature("crypto/rsa: verification error".into()),
            "{}",
            f.name
        );
        assert!(f.document.contains(f.instance_id));
    }
}

#[test]
fn aws_trust_management() {
    let f = &AWS_SIGNATURE_FIXTURES[0];

    // The 2024 re-issue has the same key: merged, not duplicated.
    let mut trust = AwsTrust::builtin();
    assert_eq!(trust.add_pem("other-2024", AWS_RENEWED_OTHER).unwrap(), 1);
    assert_eq!(trust.len(), 14);
    let summary = Trust {
        aws: trust.clone(),
        ..Trust::default()
    }
    .summary();
    let other = summary
        .iter()
        .find(|i| i.label.starts_with("other"))
        .unwrap();
    assert_eq!(other.label, "other,other-2024");
    assert_eq!(other.not_after, Some(at("2029-04-28T17:34:01Z")));

    // Only the renewed certificate, or the bare key in either PEM form, verifies the fixture.
    for pem in [
        AWS_RENEWED_OTHER,
        generated::AWS_OTHER_SPKI,
        generated::AWS_OTHER_PKCS1,
    ] {
        let mut only = AwsTrust::default();
        assert_eq!(only.replace_with_pem("us-east-1", pem).unwrap(), 1);
        assert_eq!(
            verify_aws(f.document, f.signature, &only).unwrap(),
            f.instance_id
        );
    }

    // Without the "other" key nothing verifies.
    let mut without = AwsTrust::builtin();
    without.remove_label("other");
    assert_eq!(without.len(), 13);
    assert!(verify_aws(f.document, f.signature, &without).is_err());

    // Per-region override replaces the region's key (coder's Certificates map semantics).
    let mut overridden = AwsTrust::builtin();
    overridden
        .replace_label_pem("other", generated::AWS_OTHER_SPKI)
        .unwrap();
    assert_eq!(overridden.len(), 14);
    assert_eq!(
        verify_aws(f.document, f.signature, &overridden).unwrap(),
        f.instance_id
    );

    // Empty trust: always a verification failure.
    let mut empty = AwsTrust::builtin();
    empty.clear();
    assert!(empty.is_empty());
    assert!(
        verify_aws(f.document, f.signature, &empty)
            .unwrap_err()
            .is_verification_failure()
    );

    // Unusable material is refused with a useful message, and nothing is added.
    let mut trust = AwsTrust::default();
    let err = trust.add_pem("other", AWS_DSA_OTHER).unwrap_err();
    assert!(err.is_trust_error());
    assert!(err.to_string().contains("DSA"), "{err}");
    let ec_root = include_str!("certs/azure/roots/digicert-global-root-g3.pem");
    let err = trust.add_pem("x", ec_root).unwrap_err();
    assert!(
        err.to_string()
            .contains("ec-p384 key; AWS /signature keys are RSA"),
        "{err}"
    );
    let mixed = format!("{AWS_RENEWED_OTHER}\n{AWS_DSA_OTHER}");
    assert!(trust.add_pem("mixed", &mixed).is_err());
    assert!(trust.is_empty(), "all-or-nothing");
    for bad in [
        "",
        "not pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n",
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END PUBLIC KEY-----\n",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ] {
        let err = trust.add_pem("bad", bad).unwrap_err();
        assert!(err.is_trust_error(), "{bad:?}");
    }
    assert!(
        trust.add_pem("  ", AWS_RENEWED_OTHER).is_err(),
        "empty label"
    );
}

/// The public half of a test signing key as a `PUBLIC KEY` PEM.
fn public_pem(signer: &rsa::pkcs1v15::SigningKey<sha2::Sha256>) -> String {
    use rsa::pkcs8::EncodePublicKey;
    let public = rsa::PublicKey::from(signer.as_ref().clone());
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        STANDARD.encode(public.to_public_key_der().unwrap().as_bytes())
    )
}

/// An IMDS-shaped document from `region` and its `/signature` made with `signer`.
fn aws_proof(
    signer: &rsa::pkcs1v15::SigningKey<sha2::Sha256>,
    region: &str,
    instance_id: &str,
) -> (String, String) {
    let document = format!(
        "{{\n  \"region\" : {},\n  \"instanceId\" : {}\n}}",
        serde_json::Value::from(region),
        serde_json::Value::from(instance_id)
    );
    let signature = STANDARD.encode(rsa_sign(signer, document.as_bytes()));
    (document, signature)
}

/// The built-in keys plus the AWS test key, configured the way `identity.aws.certificates`
/// adds a file (labelled with its path).
fn builtin_and_operator_key() -> AwsTrust {
    let mut trust = AwsTrust::builtin();
    let signer = rsa_signing_key(generated::AWS_TEST_KEY);
    trust
        .add_pem("/etc/appliance/aws/test-ca.pem", &public_pem(&signer))
        .unwrap();
    trust
}

/// Counts RSA verifications: `verify_aws` and how many keys it tried.
fn aws_counted(document: &str, signature: &str, trust: &AwsTrust) -> (Result<String, ()>, usize) {
    let (result, tries) = aws::verify_aws_counted(document, signature, trust);
    (result.map_err(|_| ()), tries)
}

#[test]
fn aws_operator_keys_work_under_any_label() {
    // A document signed with a test key labelled for the document's region, by its region
    // group, or by an unrelated name: always the operator key tried first.
    let signer = rsa_signing_key(generated::AWS_TEST_KEY);
    let (document, signature) = aws_proof(&signer, "ap-east-1", "i-0123456789abcdef0");
    let pem = public_pem(&signer);
    for label in [
        "hongkong",
        "ap-east-1",
        "unrelated",
        "/etc/appliance/aws/x.pem",
    ] {
        let mut trust = AwsTrust::builtin();
        trust.add_pem(label, &pem).unwrap();
        assert_eq!(
            aws_counted(&document, &signature, &trust),
            (Ok("i-0123456789abcdef0".to_string()), 1),
            "{label}"
        );
    }
    // Missing instanceId verifies but yields "" (the caller answers 404).
    let no_id = "{\"region\":\"us-east-1\"}";
    let sig = STANDARD.encode(rsa_sign(&signer, no_id.as_bytes()));
    let mut trust = AwsTrust::default();
    trust.add_pem("other", &pem).unwrap();
    assert_eq!(verify_aws(no_id, &sig, &trust).unwrap(), "");
}

#[test]
fn aws_garbage_signature_costs_at_most_two_verifications() {
    let f = &AWS_SIGNATURE_FIXTURES[0];
    let aws_signer = rsa_signing_key(generated::AWS_TEST_KEY);
    let gcp_signer = rsa_signing_key(generated::GCP_TEST_KEY);
    let mut several = builtin_and_operator_key();
    several
        .add_pem("/etc/appliance/aws/b.pem", &public_pem(&gcp_signer))
        .unwrap();
    several
        .add_pem("/etc/appliance/aws/c.pem", generated::INT_P384)
        .unwrap_err(); // EC: refused
    several
        .add_pem(
            "/etc/appliance/aws/ap-east-1.pem",
            include_str!("../../tests/fixtures/identity/generated/leaf-b-rsa.pem"),
        )
        .unwrap();
    assert_eq!(several.len(), 17);
    let mut only_operator = several.clone();
    only_operator.remove_label("other");
    for group in [
        "hongkong",
        "bahrain",
        "uae",
        "capetown",
        "milan",
        "spain",
        "zurich",
        "jakarta",
        "melbourne",
        "hyderabad",
        "china",
        "govcloud",
        "telaviv",
    ] {
        only_operator.remove_label(group);
    }
    assert_eq!(only_operator.len(), 3);
    let mut copies = AwsTrust::default();
    for (name, pem) in [
        ("china", include_str!("certs/aws/china.pem")),
        ("govcloud", include_str!("certs/aws/aws-govcloud-us.pem")),
        ("other", include_str!("certs/aws/other-aws-regions.pem")),
    ] {
        copies
            .add_pem(&format!("/etc/appliance/aws/{name}-copy.pem"), pem)
            .unwrap();
    }
    copies
        .add_pem("/etc/appliance/aws/test.pem", &public_pem(&aws_signer))
        .unwrap();
    let trusts = [
        ("built-in", builtin().aws.clone()),
        ("built-in + operator key", builtin_and_operator_key()),
        ("built-in + three operator keys", several),
        ("three operator keys", only_operator),
        ("operator copies of built-in keys", copies),
    ];
    let mut rng = Rng(0x6a7b_0001);
    let long_region = "x".repeat(10_000);
    let mut flipped = decode_b64(f.signature);
    flipped[17] ^= 0x40;
    for (name, trust) in &trusts {
        for region in [
            "us-east-1",
            "ap-east-1",
            "cn-north-1",
            "",
            "RegionOne",
            long_region.as_str(),
        ] {
            let document = f.document.replace("us-east-1", region);
            let garbage = [
                STANDARD.encode(rng.bytes(128)),
                STANDARD.encode(rng.bytes(256)),
                STANDARD.encode(rng.bytes(7)),
                STANDARD.encode(&flipped),
                f.signature.to_string(),
            ];
            for signature in &garbage {
                for _ in 0..3 {
                    let (result, tries) = aws_counted(&document, signature, trust);
                    if region == "us-east-1" && signature == f.signature {
                        // The real proof, unchanged: verifies (nothing forged).
                        assert!(result.is_ok() || *name == "three operator keys", "{name}");
                    } else {
                        assert!(result.is_err(), "{name}, {region:.20}");
                    }
                    assert!(tries <= 2, "{name}, {region:.20}: {tries} verifications");
                }
            }
        }
        // A region that is not a string is no region ("other").
        let document = f.document.replace("\"us-east-1\"", "[1]");
        let (result, tries) = aws_counted(&document, &STANDARD.encode(&flipped), trust);
        assert!(result.is_err() && tries <= 2, "{name}");
    }
    // coder would have tried every key: the built-in trust alone holds fourteen.
    assert_eq!(builtin().aws.len(), 14);
    // Built-in keys only: a forged us-east-1 proof costs one verification.
    let (_, tries) = aws_counted(f.document, &STANDARD.encode(&flipped), &builtin().aws);
    assert_eq!(tries, 1);
}

#[test]
fn aws_operator_key_verifies_on_the_first_try() {
    let signer = rsa_signing_key(generated::AWS_TEST_KEY);
    let trust = builtin_and_operator_key();
    for region in ["us-east-1", "ap-east-1", "govcloud", "RegionOne", ""] {
        let (document, signature) = aws_proof(&signer, region, "i-0a");
        for _ in 0..2 {
            assert_eq!(
                aws_counted(&document, &signature, &trust),
                (Ok("i-0a".to_string()), 1),
                "{region}"
            );
        }
    }
    // Only operator keys (identity.aws.builtin = false): the same.
    let mut only = AwsTrust::default();
    only.add_pem("/etc/appliance/aws/test-ca.pem", &public_pem(&signer))
        .unwrap();
    let (document, signature) = aws_proof(&signer, "us-east-1", "i-0b");
    assert_eq!(
        aws_counted(&document, &signature, &only),
        (Ok("i-0b".to_string()), 1)
    );
}

#[test]
fn aws_builtin_region_proof_verifies_and_its_key_is_remembered() {
    let trust = builtin_and_operator_key();
    for f in AWS_SIGNATURE_FIXTURES {
        // First proof from the region: the operator key, then the built-in one.
        assert_eq!(
            aws_counted(f.document, f.signature, &trust),
            (Ok(f.instance_id.to_string()), 2),
            "{}",
            f.name
        );
        // Remembered: the built-in key first from now on.
        for _ in 0..3 {
            assert_eq!(
                aws_counted(f.document, f.signature, &trust),
                (Ok(f.instance_id.to_string()), 1),
                "{}",
                f.name
            );
        }
    }
    // The hint is per region, and follows whichever key verified last.
    let signer = rsa_signing_key(generated::AWS_TEST_KEY);
    let (document, signature) = aws_proof(&signer, "us-east-1", "i-0c");
    let f = &AWS_SIGNATURE_FIXTURES[0];
    let g = &AWS_SIGNATURE_FIXTURES[1];
    assert_eq!(aws_counted(&document, &signature, &trust).1, 2);
    assert_eq!(aws_counted(&document, &signature, &trust).1, 1);
    assert_eq!(
        aws_counted(g.document, g.signature, &trust).1,
        1,
        "us-west-2"
    );
    assert_eq!(aws_counted(f.document, f.signature, &trust).1, 2);
    assert_eq!(aws_counted(f.document, f.signature, &trust).1, 1);
    // A forged proof does not move the hint, and still costs at most two.
    let forged = f
        .document
        .replace("i-076e9b91f7c420782", "i-0ffffffffffffffff");
    assert_eq!(aws_counted(&forged, f.signature, &trust), (Err(()), 2));
    assert_eq!(aws_counted(f.document, f.signature, &trust).1, 1);
    // A copy shares the hints; changing the keys forgets them (indices move).
    let copy = trust.clone();
    assert_eq!(aws_counted(f.document, f.signature, &copy).1, 1);
    let mut changed = trust.clone();
    changed.add_pem("other-2024", AWS_RENEWED_OTHER).unwrap();
    assert_eq!(aws_counted(f.document, f.signature, &changed).1, 2);
    assert_eq!(aws_counted(f.document, f.signature, &changed).1, 1);
}

#[test]
fn aws_hint_with_operator_keys_only() {
    // identity.aws.builtin = false, two operator keys: the second one verifies on the second
    // try once per region, then first; absurdly long regions are not remembered.
    let aws_signer = rsa_signing_key(generated::AWS_TEST_KEY);
    let gcp_signer = rsa_signing_key(generated::GCP_TEST_KEY);
    let mut trust = AwsTrust::default();
    trust
        .add_pem("/etc/appliance/aws/a.pem", &public_pem(&gcp_signer))
        .unwrap();
    trust
        .add_pem("/etc/appliance/aws/b.pem", &public_pem(&aws_signer))
        .unwrap();
    let long_region = "r".repeat(65);
    for (region, tries) in [("RegionOne", [2, 1, 1]), (long_region.as_str(), [2, 2, 2])] {
        let (document, signature) = aws_proof(&aws_signer, region, "i-10");
        for expected in tries {
            assert_eq!(
                aws_counted(&document, &signature, &trust),
                (Ok("i-10".to_string()), expected),
                "{region:.10}"
            );
        }
    }
}

#[test]
fn aws_keys_named_for_a_region_are_tried_for_it() {
    let aws_signer = rsa_signing_key(generated::AWS_TEST_KEY);
    let gcp_signer = rsa_signing_key(generated::GCP_TEST_KEY);
    let mut trust = AwsTrust::builtin();
    trust
        .add_pem("/etc/appliance/aws/eu-west-1.pem", &public_pem(&gcp_signer))
        .unwrap();
    trust
        .add_pem(
            "/etc/appliance/aws/ap-southeast-5.PEM",
            &public_pem(&aws_signer),
        )
        .unwrap();
    let ok = |signer, region: &str, tries| {
        let (document, signature) = aws_proof(signer, region, "i-0d");
        assert_eq!(
            aws_counted(&document, &signature, &trust),
            (Ok("i-0d".to_string()), tries),
            "{region}"
        );
    };
    ok(&gcp_signer, "eu-west-1", 1);
    ok(&aws_signer, "ap-southeast-5", 1);
    // A region no file is named for gets the first operator key.
    ok(&gcp_signer, "RegionOne", 1);
    // ... and only that one: the second operator key is not tried there.
    let (document, signature) = aws_proof(&aws_signer, "RegionOne", "i-0d");
    assert_eq!(aws_counted(&document, &signature, &trust), (Err(()), 2));
    // Built-in regions still verify.
    let f = &AWS_SIGNATURE_FIXTURES[0];
    assert_eq!(
        verify_aws(f.document, f.signature, &trust).unwrap(),
        f.instance_id
    );
    // A region group name works as a file name too.
    let mut trust = AwsTrust::builtin();
    trust
        .add_pem("/etc/appliance/aws/a.pem", &public_pem(&gcp_signer))
        .unwrap();
    trust
        .add_pem("C:\\appliance\\hongkong.crt", &public_pem(&aws_signer))
        .unwrap();
    let (document, signature) = aws_proof(&aws_signer, "ap-east-1", "i-0e");
    assert_eq!(
        aws_counted(&document, &signature, &trust),
        (Ok("i-0e".to_string()), 1)
    );
}

#[test]
fn aws_operator_copies_of_builtin_keys_keep_their_region() {
    // identity.aws.builtin = false and a few of AWS's certificates under names of one's own:
    // each is still tried for its regions, whatever the file is called and however many.
    let mut trust = AwsTrust::default();
    for (name, pem) in [
        ("1.pem", include_str!("certs/aws/china.pem")),
        ("2.pem", include_str!("certs/aws/aws-govcloud-us.pem")),
        (
            "3.pem",
            include_str!("certs/aws/asia-pacific-hong-kong.pem"),
        ),
        ("4.pem", include_str!("certs/aws/other-aws-regions.pem")),
    ] {
        trust
            .add_pem(&format!("/etc/appliance/aws/{name}"), pem)
            .unwrap();
    }
    for f in AWS_SIGNATURE_FIXTURES {
        assert_eq!(
            aws_counted(f.document, f.signature, &trust),
            (Ok(f.instance_id.to_string()), 1),
            "{}",
            f.name
        );
    }
}

#[test]
fn aws_label_stems() {
    use super::trust::label_stem;
    assert_eq!(
        label_stem("/etc/appliance/aws/eu-south-1.pem"),
        "eu-south-1"
    );
    assert_eq!(label_stem("C:\\aws\\hongkong.CRT"), "hongkong");
    assert_eq!(label_stem("certs/us-east-1.cer"), "us-east-1");
    assert_eq!(label_stem("us-east-1"), "us-east-1");
    assert_eq!(label_stem("/etc/x/other.key"), "other.key");
    assert_eq!(label_stem("/etc/x/.pem"), ".pem");
    assert_eq!(label_stem("/etc/x/"), "");
    assert_eq!(label_stem("é.pem"), "é");
    assert_eq!(label_stem("ééé"), "ééé");
    assert_eq!(label_stem(""), "");
}

#[test]
fn aws_hints_are_shared_between_threads() {
    let trust = std::sync::Arc::new(builtin_and_operator_key());
    let signer = rsa_signing_key(generated::AWS_TEST_KEY);
    let (document, signature) = aws_proof(&signer, "us-east-1", "i-0f");
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let trust = trust.clone();
            let (document, signature) = (document.clone(), signature.clone());
            std::thread::spawn(move || {
                let f = &AWS_SIGNATURE_FIXTURES[t % 2];
                for _ in 0..20 {
                    let (ok, tries) = aws_counted(f.document, f.signature, &trust);
                    assert!(ok.is_ok() && tries <= 2);
                    let (ok, tries) = aws_counted(&document, &signature, &trust);
                    assert!(ok.is_ok() && tries <= 2);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Azure

#[test]
fn azure_fixtures_verify_at_valid_at() {
    for f in AZURE_FIXTURES {
        let vm_id = verify_azure(f.signature, &builtin().azure, at(f.valid_at))
            .unwrap_or_else(|e| panic!("{}: {e}", f.name));
        assert_eq!(vm_id, f.vm_id, "{}", f.name);
        assert!(f.content.contains(f.vm_id));
    }
}

#[test]
fn azure_fixtures_fail_outside_leaf_validity() {
    for f in AZURE_FIXTURES {
        let leaf = envelope_leaf(f.signature);
        let second = time::Duration::seconds(1);
        assert!(
            verify_azure(f.signature, &builtin().azure, leaf.not_after).is_ok(),
            "{}: notAfter itself is still valid",
            f.name
        );
        for when in [leaf.not_after + second, leaf.not_before - second] {
            let err = verify_azure(f.signature, &builtin().azure, when).unwrap_err();
            assert!(
                matches!(err, IdentityError::Expired(_)),
                "{}: {err}",
                f.name
            );
        }
        // And at the real "today" of this repository (every leaf has expired).
        let err =
            verify_azure(f.signature, &builtin().azure, at("2026-11-29T00:00:00Z")).unwrap_err();
        assert!(err.is_verification_failure(), "{}: {err}", f.name);
    }
}

#[test]
fn azure_missing_intermediate_names_issuer_and_aia_url() {
    let f = &AZURE_FIXTURES[5]; // taskcluster-2025: Microsoft Azure RSA TLS Issuing CA 07
    let mut trust = AzureTrust::builtin();
    trust.clear_intermediates();
    let err = verify_azure(f.signature, &trust, at(f.valid_at)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, IdentityError::UntrustedChain(_)), "{msg}");
    assert!(
        msg.contains("CN=Microsoft Azure RSA TLS Issuing CA 07"),
        "{msg}"
    );
    assert!(msg.contains("http://"), "AIA caIssuers URL expected: {msg}");
    assert!(msg.contains("intermediates"), "{msg}");

    let mut no_roots = AzureTrust::builtin();
    no_roots.clear_roots();
    assert!(matches!(
        verify_azure(f.signature, &no_roots, at(f.valid_at)).unwrap_err(),
        IdentityError::UntrustedChain(_)
    ));
    assert!(verify_azure(f.signature, &AzureTrust::default(), at(f.valid_at)).is_err());
}

#[test]
fn azure_expired_intermediate_is_reported() {
    // coder-govcloud-2023's intermediate (Microsoft Azure TLS Issuing CA 05) expired
    // 2024-06-27; its leaf expired 2024-01-29. Pretend the leaf were still valid by checking a
    // time where only the root would be fine: the leaf check comes first and reports expiry.
    let f = &AZURE_FIXTURES[1];
    let err = verify_azure(f.signature, &builtin().azure, at("2024-07-01T00:00:00Z")).unwrap_err();
    assert!(matches!(err, IdentityError::Expired(_)), "{err}");
    assert!(err.to_string().contains("has expired"), "{err}");
}

#[test]
fn azure_single_byte_flips_in_content_and_signature_fail() {
    for f in AZURE_FIXTURES {
        let der = decode_b64(f.signature);
        let content_at = find(&der, f.content.as_bytes());
        let trust = &builtin().azure;
        let now = at(f.valid_at);
        for i in positions(f.content.len(), 9) {
            let mut tampered = der.clone();
            tampered[content_at + i] ^= 0x01;
            let err = verify_azure(&STANDARD.encode(&tampered), trust, now).unwrap_err();
            assert!(
                matches!(err, IdentityError::BadSignature(_)),
                "{}: content {i}: {err}",
                f.name
            );
        }
        // The RSA-2048 signature value is the last 256 bytes (no unsigned attributes).
        let sig_at = der.len() - 256;
        for i in positions(256, 5) {
            let mut tampered = der.clone();
            tampered[sig_at + i] ^= 0x01;
            let err = verify_azure(&STANDARD.encode(&tampered), trust, now).unwrap_err();
            assert!(
                matches!(err, IdentityError::BadSignature(_)),
                "{}: sig {i}: {err}",
                f.name
            );
        }
        // Flips inside the leaf certificate's signed part break the chain (or the parse).
        let leaf = envelope_leaf(f.signature);
        let leaf_at = find(&der, &leaf.der);
        let tbs_len = leaf.tbs_der().len();
        for i in positions(tbs_len, 37).skip(1) {
            let mut tampered = der.clone();
            tampered[leaf_at + 4 + i] ^= 0x01;
            let result = verify_azure(&STANDARD.encode(&tampered), trust, now);
            assert!(result.is_err(), "{}: leaf tbs byte {i} verified", f.name);
        }
    }
}

#[test]
fn azure_every_byte_flip_is_rejected_or_harmless() {
    // Flip every byte of one envelope. Some bytes are outside anything signed (e.g. the
    // unsigned digestAlgorithms SET, CMS version); a flip there may still verify, but must never
    // change the vmId. Flips inside signed regions must fail.
    let f = &AZURE_FIXTURES[3];
    let der = decode_b64(f.signature);
    let trust = &builtin().azure;
    let now = at(f.valid_at);
    let content_at = find(&der, f.content.as_bytes());
    let leaf = envelope_leaf(f.signature);
    let leaf_at = find(&der, &leaf.der);
    let signed = |i: usize| {
        (content_at..content_at + f.content.len()).contains(&i)
            || (leaf_at..leaf_at + leaf.der.len()).contains(&i)
            || i >= der.len() - 256
    };
    let mut accepted = Vec::new();
    for i in 0..der.len() {
        let mut tampered = der.clone();
        tampered[i] ^= 0x04;
        if let Ok(id) = verify_azure(&STANDARD.encode(&tampered), trust, now) {
            assert_eq!(id, f.vm_id);
            assert!(!signed(i), "flip in signed byte {i} verified");
            accepted.push(i);
        }
    }
    assert!(
        accepted.len() < 16,
        "unexpectedly many harmless positions: {accepted:?}"
    );
}

#[test]
fn azure_generated_ecdsa_chains() {
    use generated::*;
    // Chain A: P-384 root → P-256 intermediate (ecdsa-with-SHA384) → P-256 leaf.
    let mut a = AzureTrust::default();
    assert_eq!(a.add_root_pem("root-p384.pem", ROOT_P384).unwrap(), 1);
    assert_eq!(a.add_intermediate_pem("int-p256.pem", INT_P256).unwrap(), 1);
    assert_eq!(
        verify_azure(A_P256_NOATTR, &a, at(VALID_AT)).unwrap(),
        A_VM_ID
    );
    // Chain B: P-256 root → P-384 intermediate (ecdsa-with-SHA256) → RSA leaf (ecdsa-with-SHA384).
    let mut b = AzureTrust::default();
    b.add_root_pem("root-p256.pem", ROOT_P256).unwrap();
    b.add_intermediate_pem("int-p384.pem", INT_P384).unwrap();
    for (name, envelope) in [
        ("no signed attributes", B_RSA_NOATTR),
        ("signed attributes", B_RSA_ATTRS),
        ("subjectKeyIdentifier signer", B_RSA_KEYID),
        ("BER streaming encoding", B_RSA_BER),
        ("intermediate in the envelope", B_RSA_WITH_INT),
    ] {
        assert_eq!(
            verify_azure(envelope, &b, at(VALID_AT)).unwrap(),
            B_VM_ID,
            "{name}"
        );
    }
    // The envelope's own intermediate is enough when the operator has none configured.
    let mut root_only = AzureTrust::default();
    root_only.add_root_pem("root-p256.pem", ROOT_P256).unwrap();
    assert_eq!(
        verify_azure(B_RSA_WITH_INT, &root_only, at(VALID_AT)).unwrap(),
        B_VM_ID
    );
    let err = verify_azure(B_RSA_NOATTR, &root_only, at(VALID_AT)).unwrap_err();
    assert!(
        err.to_string().contains("CN=Test Intermediate P-384"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("http://pki.example.test/intermediate.crt"),
        "{err}"
    );

    // Both chains in one trust store; each document still finds its own chain.
    let mut both = a.clone();
    both.add_root_pem("b", ROOT_P256).unwrap();
    both.add_intermediate_pem("b", INT_P384).unwrap();
    assert_eq!(
        verify_azure(A_P256_NOATTR, &both, at(VALID_AT)).unwrap(),
        A_VM_ID
    );
    assert_eq!(
        verify_azure(B_RSA_ATTRS, &both, at(VALID_AT)).unwrap(),
        B_VM_ID
    );
    // Cross: chain B's document with chain A's trust does not verify.
    assert!(verify_azure(B_RSA_NOATTR, &a, at(VALID_AT)).is_err());
    assert!(verify_azure(A_P256_NOATTR, &builtin().azure, at(VALID_AT)).is_err());

    // Validity boundaries of the generated leaves.
    let second = time::Duration::seconds(1);
    for envelope in [A_P256_NOATTR, B_RSA_ATTRS] {
        let trust = &both;
        assert!(verify_azure(envelope, trust, at(LEAF_NOT_BEFORE)).is_ok());
        assert!(verify_azure(envelope, trust, at(LEAF_NOT_AFTER)).is_ok());
        for when in [at(LEAF_NOT_BEFORE) - second, at(LEAF_NOT_AFTER) + second] {
            assert!(matches!(
                verify_azure(envelope, trust, when).unwrap_err(),
                IdentityError::Expired(_)
            ));
        }
    }

    // Summary shows what was added.
    let summary = Trust {
        azure: both,
        ..Trust::default()
    }
    .summary();
    let keys: Vec<(&str, &str)> = summary
        .iter()
        .map(|i| (i.kind.as_str(), i.key.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("azure-root", "ec-p384"),
            ("azure-root", "ec-p256"),
            ("azure-intermediate", "ec-p256"),
            ("azure-intermediate", "ec-p384"),
        ]
    );
    assert_eq!(summary[0].label, "CN=Test Root P-384,O=Appliance Test");
    assert_eq!(summary[0].source, "root-p384.pem");
}

#[test]
fn azure_generated_negative_cases() {
    use generated::*;
    let mut trust = AzureTrust::default();
    trust.add_root_pem("root", ROOT_P256).unwrap();
    trust.add_intermediate_pem("int", INT_P384).unwrap();
    trust.add_intermediate_pem("notca", NOT_CA).unwrap();
    let now = at(VALID_AT);

    let err = verify_azure(EVIL_CN, &trust, now).unwrap_err();
    assert!(matches!(err, IdentityError::SignerNotAllowed(_)), "{err}");
    assert!(
        err.to_string().contains("metadata.azure.com.evil.example"),
        "{err}"
    );

    let err = verify_azure(UNDER_NOT_CA, &trust, now).unwrap_err();
    assert!(matches!(err, IdentityError::UntrustedChain(_)), "{err}");
    assert!(err.to_string().contains("is not a CA"), "{err}");

    // Signed attributes: a content flip is caught by the messageDigest check.
    let der = decode_b64(B_RSA_ATTRS);
    let at_vm = find(&der, B_VM_ID.as_bytes());
    let mut tampered = der.clone();
    tampered[at_vm] ^= 0x01;
    let err = verify_azure(&STANDARD.encode(&tampered), &trust, now).unwrap_err();
    assert!(err.to_string().contains("messageDigest"), "{err}");

    // BER envelope: a content flip inside a segmented OCTET STRING is caught too.
    let der = decode_b64(B_RSA_BER);
    let at_vm = find(&der, b"22222222");
    let mut tampered = der.clone();
    tampered[at_vm] ^= 0x01;
    assert!(matches!(
        verify_azure(&STANDARD.encode(&tampered), &trust, now).unwrap_err(),
        IdentityError::BadSignature(_)
    ));
}

#[test]
fn azure_trust_rejects_unusable_material() {
    let mut trust = AzureTrust::default();
    let err = trust.add_root_pem("dsa.pem", AWS_DSA_OTHER).unwrap_err();
    assert!(err.is_trust_error());
    assert!(err.to_string().contains("dsa.pem"), "{err}");
    assert!(err.to_string().contains("DSA"), "{err}");
    assert!(
        trust
            .add_intermediate_pem("k", generated::AWS_OTHER_SPKI)
            .is_err()
    );
    assert!(trust.add_root_pem("x", "garbage").is_err());
    assert_eq!(trust.root_count() + trust.intermediate_count(), 0);
    // Adding the same certificate twice keeps one copy.
    trust.add_root_pem("a", generated::ROOT_P256).unwrap();
    trust.add_root_pem("b", generated::ROOT_P256).unwrap();
    assert_eq!(trust.root_count(), 1);
    // A bundle of several certificates is read in one call.
    let bundle = format!("{}\n{}", generated::INT_P256, generated::INT_P384);
    assert_eq!(trust.add_intermediate_pem("bundle", &bundle).unwrap(), 2);
}

#[test]
fn azure_rejects_malformed_envelopes() {
    let trust = &builtin().azure;
    let now = at(AZURE_FIXTURES[0].valid_at);
    for bad in [
        "",
        "!!!",
        "AAAA",
        "MAA=",
        "MIAAAA==",
        &STANDARD.encode(b"not der at all"),
    ] {
        let err = verify_azure(bad, trust, now).unwrap_err();
        assert!(err.is_malformed(), "{bad:?}: {err}");
    }
    // A certificate (not SignedData) where the envelope should be.
    let cert = pem_key_der(generated::ROOT_P256);
    assert!(
        verify_azure(&STANDARD.encode(cert), trust, now)
            .unwrap_err()
            .is_malformed()
    );
    // Every truncation of a real envelope.
    let der = decode_b64(AZURE_FIXTURES[0].signature);
    for len in positions(der.len(), 3) {
        let err = verify_azure(&STANDARD.encode(&der[..len]), trust, now).unwrap_err();
        assert!(err.is_malformed(), "truncated to {len}: {err}");
    }
}

// ---------------------------------------------------------------------------------------------
// GCP

#[test]
fn gcp_fixtures_verify_until_exp() {
    for f in GCP_FIXTURES {
        let trust = gcp_trust(f.jwks);
        for now in [
            unix(f.iat),
            unix(f.exp),
            unix(f.exp) + time::Duration::milliseconds(999),
        ] {
            let id = verify_gcp(f.token, &trust, None, now)
                .unwrap_or_else(|e| panic!("{}: {e}", f.name));
            assert_eq!(id, f.instance_id, "{}", f.name);
        }
        let err = verify_gcp(f.token, &trust, None, unix(f.exp + 1)).unwrap_err();
        assert_eq!(
            err,
            IdentityError::Expired(format!(
                "idtoken: token expired: now={}, expires={}",
                f.exp + 1,
                f.exp
            )),
            "{}",
            f.name
        );
        // Audience: optional, exact.
        assert_eq!(
            verify_gcp(f.token, &trust, Some(f.aud), unix(f.iat)).unwrap(),
            f.instance_id
        );
        let err = verify_gcp(f.token, &trust, Some("coder"), unix(f.iat)).unwrap_err();
        assert!(matches!(err, IdentityError::AudienceMismatch(_)), "{err}");
    }
}

#[test]
fn gcp_historical_jwks_verifies_every_fixture() {
    let trust = gcp_trust(GCP_HISTORICAL_JWKS);
    assert_eq!(trust.len(), 5);
    for f in GCP_FIXTURES {
        assert_eq!(
            verify_gcp(f.token, &trust, None, unix(f.iat)).unwrap(),
            f.instance_id,
            "{}",
            f.name
        );
    }
    let summary = Trust {
        gcp: trust,
        ..Trust::default()
    }
    .summary();
    assert_eq!(summary.len(), 5);
    assert!(
        summary
            .iter()
            .all(|i| i.kind == TrustKind::GcpJwk && i.key == "rsa-2048")
    );
    assert!(
        summary
            .iter()
            .any(|i| i.label == "26fc4cd23d387cbc490f60db54a94a6dd1653998")
    );
}

#[test]
fn gcp_unknown_kid_and_wrong_key() {
    let f = &GCP_FIXTURES[0];
    let err = verify_gcp(f.token, &GcpTrust::default(), None, unix(f.iat)).unwrap_err();
    assert!(matches!(err, IdentityError::UnknownKey(_)), "{err}");
    assert!(
        err.to_string()
            .contains("26fc4cd23d387cbc490f60db54a94a6dd1653998"),
        "{err}"
    );
    // Another fixture's JWKS: kid not found.
    let other = gcp_trust(GCP_FIXTURES[2].jwks);
    assert!(matches!(
        verify_gcp(f.token, &other, None, unix(f.iat)).unwrap_err(),
        IdentityError::UnknownKey(_)
    ));
    // Right kid, wrong key material: a bad signature.
    let jwks = GCP_FIXTURES[2].jwks.replace(
        "a3b762f871cdb3bae0044c649622fc1396eda3e3",
        "26fc4cd23d387cbc490f60db54a94a6dd1653998",
    );
    let swapped = gcp_trust(&jwks);
    let err = verify_gcp(f.token, &swapped, None, unix(f.iat)).unwrap_err();
    assert_eq!(
        err,
        IdentityError::BadSignature("crypto/rsa: verification error".into())
    );
}

/// Re-assembles a fixture token with a different header (payload and signature kept).
fn with_header(token: &str, header: &str) -> String {
    let mut parts = token.trim().splitn(2, '.');
    let _ = parts.next();
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        parts.next().unwrap()
    )
}

#[test]
fn gcp_only_rs256_is_accepted() {
    let f = &GCP_FIXTURES[0];
    let trust = gcp_trust(f.jwks);
    let kid = "26fc4cd23d387cbc490f60db54a94a6dd1653998";
    for alg in [
        "\"none\"",
        "\"None\"",
        "\"HS256\"",
        "\"HS512\"",
        "\"ES256\"",
        "\"PS256\"",
        "\"RS384\"",
        "\"rs256\"",
        "\"RS256 \"",
        "null",
        "256",
        "[\"RS256\"]",
    ] {
        let token = with_header(
            f.token,
            &format!("{{\"alg\":{alg},\"kid\":\"{kid}\",\"typ\":\"JWT\"}}"),
        );
        let err = verify_gcp(&token, &trust, None, unix(f.iat)).unwrap_err();
        assert!(
            matches!(err, IdentityError::AlgorithmNotAllowed(_)),
            "{alg}: {err}"
        );
    }
    // Missing alg.
    let token = with_header(f.token, &format!("{{\"kid\":\"{kid}\"}}"));
    assert!(matches!(
        verify_gcp(&token, &trust, None, unix(f.iat)).unwrap_err(),
        IdentityError::AlgorithmNotAllowed(_)
    ));
    // Unsigned token ("alg":"none", empty signature).
    let payload = f.token.trim().split('.').nth(1).unwrap();
    let unsigned = format!(
        "{}.{payload}.",
        URL_SAFE_NO_PAD.encode("{\"alg\":\"none\"}")
    );
    assert!(matches!(
        verify_gcp(&unsigned, &trust, None, unix(f.iat)).unwrap_err(),
        IdentityError::AlgorithmNotAllowed(_)
    ));
    // Header changes that keep alg RS256 still break the signature (header is signed).
    let token = with_header(f.token, &format!("{{\"alg\":\"RS256\",\"kid\":\"{kid}\"}}"));
    assert!(matches!(
        verify_gcp(&token, &trust, None, unix(f.iat)).unwrap_err(),
        IdentityError::BadSignature(_)
    ));
    // crit is refused.
    let token = with_header(
        f.token,
        &format!("{{\"alg\":\"RS256\",\"kid\":\"{kid}\",\"crit\":[\"x\"]}}"),
    );
    assert!(
        verify_gcp(&token, &trust, None, unix(f.iat))
            .unwrap_err()
            .is_malformed()
    );
}

#[test]
fn gcp_single_byte_flips_fail() {
    for f in GCP_FIXTURES {
        let trust = gcp_trust(f.jwks);
        let token = f.token.trim();
        let now = unix(f.iat);
        let (header_len, payload_len) = {
            let mut parts = token.split('.');
            (parts.next().unwrap().len(), parts.next().unwrap().len())
        };
        // Every 3rd character of header and payload text.
        for i in positions(header_len + 1 + payload_len, 3) {
            let mut tampered = token.as_bytes().to_vec();
            tampered[i] ^= 0x01;
            let tampered = String::from_utf8(tampered).unwrap();
            assert!(
                verify_gcp(&tampered, &trust, None, now).is_err(),
                "{}: char {i}",
                f.name
            );
        }
        // Payload bytes flipped *before* encoding (always valid base64url).
        let payload = URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap();
        for i in positions(payload.len(), 7) {
            let mut tampered = payload.clone();
            tampered[i] ^= 0x01;
            let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
            parts[1] = URL_SAFE_NO_PAD.encode(&tampered);
            assert!(
                verify_gcp(&parts.join("."), &trust, None, now).is_err(),
                "{}: payload byte {i}",
                f.name
            );
        }
        // Signature bytes.
        let sig = URL_SAFE_NO_PAD
            .decode(token.split('.').nth(2).unwrap())
            .unwrap();
        for i in positions(sig.len(), 5) {
            let mut tampered = sig.clone();
            tampered[i] ^= 0x01;
            let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
            parts[2] = URL_SAFE_NO_PAD.encode(&tampered);
            assert_eq!(
                verify_gcp(&parts.join("."), &trust, None, now).unwrap_err(),
                IdentityError::BadSignature("crypto/rsa: verification error".into()),
                "{}: sig byte {i}",
                f.name
            );
        }
    }
}

#[test]
fn gcp_framing_errors_are_malformed() {
    let f = &GCP_FIXTURES[0];
    let trust = gcp_trust(f.jwks);
    let now = unix(f.iat);
    let token = f.token.trim();
    let mut parts = token.split('.');
    let (h, p, s) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    for bad in [
        String::new(),
        "a".into(),
        format!("{h}.{p}"),
        format!("{h}.{p}.{s}.{s}"),
        format!("{h}.{p}.{s}="),
        format!("{h}=.{p}.{s}"),
        format!("!!.{p}.{s}"),
        format!("{}.{p}.{s}", URL_SAFE_NO_PAD.encode("[]")),
        format!("{}.{p}.{s}", URL_SAFE_NO_PAD.encode("{")),
    ] {
        let err = verify_gcp(&bad, &trust, None, now).unwrap_err();
        assert!(err.is_malformed(), "{bad:?}: {err}");
    }
    assert!(
        verify_gcp(&format!("{token}\n"), &trust, None, now).is_ok(),
        "trailing newline"
    );
}

/// Signs a JWT with the generated test key; returns the token and a trust holding the key.
fn test_token(header: &str, payload: &str) -> (String, GcpTrust) {
    let signer = rsa_signing_key(generated::GCP_TEST_KEY);
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let sig = rsa_sign(&signer, signing_input.as_bytes());
    let public = rsa::PublicKey::from(signer.as_ref().clone());
    let jwks = format!(
        "{{\"keys\":[{{\"kty\":\"RSA\",\"alg\":\"RS256\",\"use\":\"sig\",\"kid\":\"test-kid\",\"n\":\"{}\",\"e\":\"{}\"}}]}}",
        URL_SAFE_NO_PAD.encode(public.n().to_be_bytes_trimmed_vartime()),
        URL_SAFE_NO_PAD.encode(public.e().to_be_bytes_trimmed_vartime()),
    );
    (
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)),
        gcp_trust(&jwks),
    )
}

const TEST_HEADER: &str = r#"{"alg":"RS256","kid":"test-kid","typ":"JWT"}"#;

#[test]
fn gcp_claims_decoding() {
    let now = unix(1_800_000_000);
    let ok = |payload: &str| {
        let (token, trust) = test_token(TEST_HEADER, payload);
        verify_gcp(&token, &trust, None, now)
    };
    assert_eq!(
        ok(r#"{"exp":1800000000,"google":{"compute_engine":{"instance_id":"42"}}}"#).unwrap(),
        "42"
    );
    for absent in [
        r#"{"exp":1800000000}"#,
        r#"{"exp":1800000000,"google":null}"#,
        r#"{"exp":1800000000,"google":{}}"#,
        r#"{"exp":1800000000,"google":{"compute_engine":null}}"#,
        r#"{"exp":1800000000,"google":{"compute_engine":{"instance_name":"x"}}}"#,
        r#"{"exp":1800000000,"google":{"compute_engine":{"instance_id":null}}}"#,
    ] {
        assert_eq!(ok(absent).unwrap(), "", "{absent}");
    }
    for wrong in [
        r#"{"exp":1800000000,"google":"x"}"#,
        r#"{"exp":1800000000,"google":[]}"#,
        r#"{"exp":1800000000,"google":{"compute_engine":"x"}}"#,
        r#"{"exp":1800000000,"google":{"compute_engine":{"instance_id":42}}}"#,
        r#"{"exp":1800000000,"google":{"compute_engine":{"instance_id":{"a":1}}}}"#,
    ] {
        let err = ok(wrong).unwrap_err();
        assert!(err.is_malformed_claims(), "{wrong}: {err}");
        assert!(!err.is_verification_failure());
    }
    // exp rules.
    assert!(matches!(
        ok(r#"{"iat":1}"#).unwrap_err(),
        IdentityError::Expired(_)
    ));
    assert!(matches!(
        ok(r#"{"exp":1799999999}"#).unwrap_err(),
        IdentityError::Expired(_)
    ));
    for bad_exp in [
        r#"{"exp":"1800000000"}"#,
        r#"{"exp":1.8e9}"#,
        r#"{"exp":1800000000.5}"#,
        r#"{"exp":99999999999999999999}"#,
        r#"{"exp":null}"#,
    ] {
        assert!(ok(bad_exp).unwrap_err().is_malformed(), "{bad_exp}");
    }
    // No iat/nbf/iss checks (upstream does none).
    assert_eq!(
        ok(r#"{"exp":1800000000,"nbf":1900000000,"iat":1900000000,"iss":"evil","google":{"compute_engine":{"instance_id":"7"}}}"#)
            .unwrap(),
        "7"
    );
    // Audience may be an array (RFC 7519) when an audience is required.
    let (token, trust) = test_token(TEST_HEADER, r#"{"exp":1800000000,"aud":["a","coder"]}"#);
    assert_eq!(verify_gcp(&token, &trust, Some("coder"), now).unwrap(), "");
    assert!(verify_gcp(&token, &trust, Some("b"), now).is_err());
    let (token, trust) = test_token(TEST_HEADER, r#"{"exp":1800000000}"#);
    assert!(
        verify_gcp(&token, &trust, Some("coder"), now).is_err(),
        "missing aud"
    );
    // Payload must be an object.
    let (token, trust) = test_token(TEST_HEADER, "[1]");
    assert!(
        verify_gcp(&token, &trust, None, now)
            .unwrap_err()
            .is_malformed()
    );
}

#[test]
fn gcp_ignores_keys_embedded_in_the_token() {
    // A token carrying its own key (jwk header) under an unknown kid is refused: keys only come
    // from the configured JWKS.
    let header = r#"{"alg":"RS256","kid":"attacker","jwk":{"kty":"RSA","n":"AQAB","e":"AQAB"}}"#;
    let (token, _) = test_token(header, r#"{"exp":1800000000}"#);
    let trust = gcp_trust(GCP_HISTORICAL_JWKS);
    assert!(matches!(
        verify_gcp(&token, &trust, None, unix(1_700_000_000)).unwrap_err(),
        IdentityError::UnknownKey(_)
    ));
}

#[test]
fn gcp_jwks_validation() {
    let mut trust = GcpTrust::default();
    assert_eq!(
        trust
            .add_jwks_json(GCP_FIXTURES[0].jwks.as_bytes())
            .unwrap(),
        1
    );
    // Same key again: no duplicate.
    assert_eq!(
        trust
            .add_jwks_json(GCP_FIXTURES[0].jwks.as_bytes())
            .unwrap(),
        1
    );
    assert_eq!(trust.len(), 1);
    // Same kid, different key: refused, nothing added.
    let clash = GCP_FIXTURES[2].jwks.replace(
        "a3b762f871cdb3bae0044c649622fc1396eda3e3",
        "26fc4cd23d387cbc490f60db54a94a6dd1653998",
    );
    let err = trust.add_jwks_json(clash.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("different key"), "{err}");
    assert_eq!(trust.len(), 1);
    trust.clear();
    assert!(trust.is_empty());

    let n = r#""wbRc_hVBiEGE_syqdbnkeEx-GQEAOuqBbgSIn1HgS0xaOqjk8trHi0FNTLg_Pmajo4f3rWedlh_ABGyJeNR5TphqURGemAdg51B3eANOrykzJgg9824rjWII94RxRoeLVEqdU3d0G6nPx2d7Tz2P2w9vN0CdKQTnXG1bpbtOCd4RPw_jNvNFlnnrdrYum7wE9mju4uTCVlTcUz6hZIG_wQp1uLbaWRWFxiTzYkRdQhqutBzixo9VE8eLUPotjDltnvGuQbtHOQwOXKUEWxCTXa1wT4l61YHLo2aMGxTpzC7B14G323ekY2t_24RF213ewGTzImzFvYCBoLXZEJJUwQ""#;
    let key = |fields: &str| format!(r#"{{"keys":[{{{fields}}}]}}"#);
    let good = key(&format!(r#""kty":"RSA","kid":"k","n":{n},"e":"AQAB""#));
    assert_eq!(
        GcpTrust::default().add_jwks_json(good.as_bytes()).unwrap(),
        1
    );
    let padded = key(&format!(r#""kty":"RSA","kid":"k","n":{n},"e":"AQAB==""#));
    assert!(GcpTrust::default().add_jwks_json(padded.as_bytes()).is_ok());
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "JSON"),
        ("{}".into(), "keys"),
        (r#"{"keys":{}}"#.into(), "keys"),
        (r#"{"keys":[]}"#.into(), "empty"),
        (r#"{"keys":[1]}"#.into(), "object"),
        (
            key(&format!(r#""kty":"EC","kid":"k","n":{n},"e":"AQAB""#)),
            "EC",
        ),
        (key(&format!(r#""kid":"k","n":{n},"e":"AQAB""#)), "kty"),
        (key(&format!(r#""kty":"RSA","n":{n},"e":"AQAB""#)), "kid"),
        (
            key(&format!(r#""kty":"RSA","kid":"","n":{n},"e":"AQAB""#)),
            "kid",
        ),
        (
            key(&format!(r#""kty":"RSA","kid":7,"n":{n},"e":"AQAB""#)),
            "kid",
        ),
        (key(r#""kty":"RSA","kid":"k","e":"AQAB""#), "\"n\""),
        (key(&format!(r#""kty":"RSA","kid":"k","n":{n}"#)), "\"e\""),
        (
            key(r#""kty":"RSA","kid":"k","n":"!!","e":"AQAB""#),
            "base64url",
        ),
        (
            key(r#""kty":"RSA","kid":"k","n":"AAAA","e":"AQAB""#),
            "zero",
        ),
        (
            key(r#""kty":"RSA","kid":"k","n":"wbRc","e":"AQAB""#),
            "unusable",
        ),
        (
            key(&format!(r#""kty":"RSA","kid":"k","n":{n},"e":"AQ""#)),
            "unusable",
        ),
        (
            key(&format!(
                r#""kty":"RSA","kid":"k","n":{n},"e":"AQABAQABAQAB""#
            )),
            "exponent",
        ),
        (
            key(&format!(
                r#""kty":"RSA","kid":"k","n":"{}","e":"AQAB""#,
                "AQAB".repeat(400)
            )),
            "8192",
        ),
        (
            key(&format!(
                r#""kty":"RSA","kid":"k","alg":"HS256","n":{n},"e":"AQAB""#
            )),
            "RS256",
        ),
        (
            key(&format!(
                r#""kty":"RSA","kid":"k","use":"enc","n":{n},"e":"AQAB""#
            )),
            "sig",
        ),
        (
            key(&format!(
                r#""kty":"RSA","kid":"k","n":{n},"e":"AQAB","d":"AQAB""#
            )),
            "private",
        ),
        (
            format!(
                r#"{{"keys":[{{"kty":"RSA","kid":"k","n":{n},"e":"AQAB"}},{{"kty":"RSA","kid":"k","n":"{}","e":"AQAB"}}]}}"#,
                &n[1..n.len() - 3]
            ),
            "",
        ),
    ];
    for (json, needle) in cases {
        let mut trust = GcpTrust::default();
        let err = trust.add_jwks_json(json.as_bytes()).unwrap_err();
        assert!(err.is_trust_error(), "{json}: {err}");
        assert!(err.to_string().contains(needle), "{json}: {err}");
        assert!(trust.is_empty(), "{json}: all-or-nothing");
    }
    let huge = vec![b' '; 2 << 20];
    assert!(GcpTrust::default().add_jwks_json(&huge).is_err());
}

// ---------------------------------------------------------------------------------------------
// Plumbing

#[test]
fn pem_parser() {
    let pem = generated::ROOT_P256;
    let crlf = pem.replace('\n', "\r\n");
    let surrounded = format!("Bag Attributes\nsubject=foo\n{pem}\ntrailing text\n");
    for text in [pem, crlf.as_str(), surrounded.as_str()] {
        let blocks = pki::parse_pem(text).unwrap();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].label, "CERTIFICATE");
    }
    for bad in [
        "",
        "-----END CERTIFICATE-----\n",
        "-----BEGIN X-----\nAAAA\n-----BEGIN X-----\n",
        "-----BEGIN X-----\nProc-Type: 4,ENCRYPTED\nAAAA\n-----END X-----\n",
        "-----BEGIN X-----\n\n-----END X-----\n",
    ] {
        assert!(pki::parse_pem(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn ber_converter_is_bounded() {
    // Converts the openssl -stream envelope to something the DER parser accepts.
    let ber = decode_b64(generated::B_RSA_BER);
    let der = pki::ber_to_der(&ber).unwrap();
    assert!(cms::content_info::ContentInfo::from_der(&der).is_ok());
    // Nesting bomb: indefinite-length SEQUENCEs far deeper than the limit.
    let mut bomb = Vec::new();
    for _ in 0..100_000 {
        bomb.extend_from_slice(&[0x30, 0x80]);
    }
    assert!(pki::ber_to_der(&bomb).is_none());
    // Giant declared lengths, missing end-of-contents, primitive indefinite.
    for bad in [
        &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff][..],
        &[0x30, 0x88, 1, 2, 3, 4, 5, 6, 7, 8],
        &[0x30, 0x80, 0x02, 0x01, 0x00],
        &[0x04, 0x80, 0x00, 0x00],
        &[0x24, 0x80, 0x02, 0x01, 0x00, 0x00, 0x00],
        &[0x1f, 0x81, 0x00],
        &[],
    ] {
        assert!(pki::ber_to_der(bad).is_none(), "{bad:02x?}");
    }
    let mut rng = Rng(0x5eed_0001);
    for _ in 0..5000 {
        let input = mutate(&mut rng, &ber);
        let _ = pki::ber_to_der(&input);
    }
}

#[test]
fn trust_is_shareable_between_threads() {
    fn check<T: Send + Sync + Clone + std::fmt::Debug + 'static>() {}
    check::<Trust>();
    check::<IdentityError>();
    check::<TrustItem>();
    let trust = builtin().clone();
    let f = &AWS_SIGNATURE_FIXTURES[0];
    let handle = std::thread::spawn(move || verify_aws(f.document, f.signature, &trust.aws));
    assert_eq!(handle.join().unwrap().unwrap(), f.instance_id);
}

#[test]
fn error_kinds() {
    assert!(IdentityError::Malformed(String::new()).is_malformed());
    assert!(IdentityError::MalformedClaims(String::new()).is_malformed_claims());
    assert!(IdentityError::InvalidTrust(String::new()).is_trust_error());
    for e in [
        IdentityError::BadSignature(String::new()),
        IdentityError::UnknownKey(String::new()),
        IdentityError::UntrustedChain(String::new()),
        IdentityError::SignerNotAllowed(String::new()),
        IdentityError::Expired(String::new()),
        IdentityError::AlgorithmNotAllowed(String::new()),
        IdentityError::AudienceMismatch(String::new()),
    ] {
        assert!(e.is_verification_failure(), "{e:?}");
        assert_eq!(e.kind(), ErrorKind::Verification);
    }
    assert_eq!(
        IdentityError::BadSignature("crypto/rsa: verification error".into()).to_string(),
        "crypto/rsa: verification error"
    );
}

// ---------------------------------------------------------------------------------------------
// Robustness: random, truncated and mutated input never panics and never forges.

const FUZZ_CASES: usize = 3000;

#[test]
fn fuzz_verify_aws() {
    let trust = &builtin().aws;
    let mut rng = Rng(0xa115_0001);
    for f in AWS_SIGNATURE_FIXTURES {
        let sig_raw = decode_b64(f.signature);
        for _ in 0..FUZZ_CASES {
            let (document, signature) = match rng.below(4) {
                0 => (
                    String::from_utf8_lossy(&mutate(&mut rng, f.document.as_bytes())).into_owned(),
                    f.signature.to_string(),
                ),
                1 => (
                    f.document.to_string(),
                    String::from_utf8_lossy(&mutate(&mut rng, f.signature.as_bytes())).into_owned(),
                ),
                2 => (
                    f.document.to_string(),
                    STANDARD.encode(mutate(&mut rng, &sig_raw)),
                ),
                _ => {
                    let n = rng.below(300);
                    (String::from_utf8_lossy(&rng.bytes(n)).into_owned(), {
                        let m = rng.below(300);
                        STANDARD.encode(rng.bytes(m))
                    })
                }
            };
            if let Ok(id) = verify_aws(&document, &signature, trust) {
                assert_eq!(document, f.document, "forged document verified");
                assert_eq!(id, f.instance_id);
            }
        }
    }
}

#[test]
fn fuzz_verify_azure() {
    let trust = &builtin().azure;
    let mut rng = Rng(0xa2_0001);
    let fixtures: Vec<(Vec<u8>, OffsetDateTime, &str)> = AZURE_FIXTURES
        .iter()
        .map(|f| (decode_b64(f.signature), at(f.valid_at), f.vm_id))
        .chain([(
            decode_b64(generated::B_RSA_BER),
            at(generated::VALID_AT),
            generated::B_VM_ID,
        )])
        .collect();
    for i in 0..FUZZ_CASES {
        let (der, now, vm_id) = &fixtures[i % fixtures.len()];
        let input = if rng.below(10) == 0 {
            {
                let n = rng.below(4000);
                STANDARD.encode(rng.bytes(n))
            }
        } else {
            STANDARD.encode(mutate(&mut rng, der))
        };
        if let Ok(id) = verify_azure(&input, trust, *now) {
            assert_eq!(&id, vm_id, "mutated envelope produced another vmId");
        }
    }
}

#[test]
fn fuzz_verify_gcp() {
    let mut rng = Rng(0x6c9_0001);
    for f in GCP_FIXTURES {
        let trust = gcp_trust(f.jwks);
        let token = f.token.trim();
        let parts: Vec<&str> = token.split('.').collect();
        let decoded: Vec<Vec<u8>> = parts
            .iter()
            .map(|p| URL_SAFE_NO_PAD.decode(p).unwrap())
            .collect();
        for _ in 0..FUZZ_CASES / 2 {
            let candidate = match rng.below(3) {
                0 => String::from_utf8_lossy(&mutate(&mut rng, token.as_bytes())).into_owned(),
                1 => {
                    let which = rng.below(3);
                    let mut segments: Vec<String> = parts.iter().map(|p| p.to_string()).collect();
                    segments[which] = URL_SAFE_NO_PAD.encode(mutate(&mut rng, &decoded[which]));
                    segments.join(".")
                }
                _ => {
                    let n = rng.below(2000);
                    String::from_utf8_lossy(&rng.bytes(n)).into_owned()
                }
            };
            if let Ok(id) = verify_gcp(&candidate, &trust, None, unix(f.iat)) {
                assert_eq!(candidate.trim(), token, "forged token verified");
                assert_eq!(id, f.instance_id);
            }
        }
    }
}

#[test]
fn fuzz_trust_inputs() {
    let mut rng = Rng(0x7e57_0001);
    let pems = [
        generated::ROOT_P384,
        generated::INT_P384,
        AWS_RENEWED_OTHER,
        generated::AWS_OTHER_PKCS1,
    ];
    for i in 0..FUZZ_CASES {
        let pem = String::from_utf8_lossy(&mutate(&mut rng, pems[i % pems.len()].as_bytes()))
            .into_owned();
        let _ = AwsTrust::default().add_pem("fuzz", &pem);
        let _ = AzureTrust::default().add_root_pem("fuzz", &pem);
        let jwks = mutate(&mut rng, GCP_HISTORICAL_JWKS.as_bytes());
        let _ = GcpTrust::default().add_jwks_json(&jwks);
        // Certificates as raw DER, mutated.
        let der = pem_key_der(pems[i % 2]);
        let _ = pki::Cert::from_der(&mutate(&mut rng, &der));
    }
}

#[test]
fn oversized_inputs_are_rejected_quickly() {
    let mut rng = Rng(0xb16_0001);
    let garbage_b64 = STANDARD.encode(rng.bytes(3 << 20)); // 4 MiB of base64
    let garbage_text = "A".repeat(4 << 20);
    let start = std::time::Instant::now();
    let trust = builtin();
    let f = &AWS_SIGNATURE_FIXTURES[0];
    assert!(
        verify_aws(&garbage_text, f.signature, &trust.aws)
            .unwrap_err()
            .is_malformed()
    );
    assert!(
        verify_aws(f.document, &garbage_b64, &trust.aws)
            .unwrap_err()
            .is_malformed()
    );
    assert!(
        verify_azure(&garbage_b64, &trust.azure, at("2026-01-01T00:00:00Z"))
            .unwrap_err()
            .is_malformed()
    );
    let gcp = gcp_trust(GCP_HISTORICAL_JWKS);
    assert!(
        verify_gcp(&garbage_b64, &gcp, None, unix(0))
            .unwrap_err()
            .is_malformed()
    );
    let giant_jwt = format!("{0}.{0}.{0}", "A".repeat(1 << 20));
    assert!(
        verify_gcp(&giant_jwt, &gcp, None, unix(0))
            .unwrap_err()
            .is_malformed()
    );
    assert!(
        GcpTrust::default()
            .add_jwks_json(garbage_text.as_bytes())
            .is_err()
    );
    assert!(AwsTrust::default().add_pem("x", &garbage_text).is_err());
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
}

// ---------------------------------------------------------------------------------------------
// Throughput (run with: cargo test --release -- --ignored --nocapture identity_verify_rates)

#[test]
#[ignore = "benchmark; run explicitly in release mode"]
fn identity_verify_rates() {
    fn rate(name: &str, iterations: u32, mut f: impl FnMut()) {
        f();
        let start = std::time::Instant::now();
        for _ in 0..iterations {
            f();
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{name:<48} {:>9.0} ops/s ({:.1} µs/op)",
            f64::from(iterations) / secs,
            secs * 1e6 / f64::from(iterations)
        );
    }
    let trust = Trust::builtin();
    let aws = &AWS_SIGNATURE_FIXTURES[0];
    rate("AWS verify (region key first, RSA-1024)", 2000, || {
        assert!(verify_aws(aws.document, aws.signature, &trust.aws).is_ok());
    });
    rate("AWS verify, bad signature (tries all 14 keys)", 200, || {
        assert!(verify_aws("{}", aws.signature, &trust.aws).is_err());
    });
    let az = &AZURE_FIXTURES[3];
    let now = at(az.valid_at);
    rate("Azure verify (2026 doc, 3-link RSA chain)", 200, || {
        assert!(verify_azure(az.signature, &trust.azure, now).is_ok());
    });
    let az = &AZURE_FIXTURES[5];
    let now = at(az.valid_at);
    rate("Azure verify (2025 doc, 2-link RSA chain)", 200, || {
        assert!(verify_azure(az.signature, &trust.azure, now).is_ok());
    });
    let mut ec = AzureTrust::default();
    ec.add_root_pem("r", generated::ROOT_P384).unwrap();
    ec.add_intermediate_pem("i", generated::INT_P256).unwrap();
    let now = at(generated::VALID_AT);
    rate(
        "Azure verify (generated P-384/P-256 ECDSA chain)",
        200,
        || {
            assert!(verify_azure(generated::A_P256_NOATTR, &ec, now).is_ok());
        },
    );
    let g = &GCP_FIXTURES[0];
    let gcp = gcp_trust(GCP_HISTORICAL_JWKS);
    rate("GCP verify (RS256, RSA-2048)", 2000, || {
        assert!(verify_gcp(g.token, &gcp, None, unix(g.iat)).is_ok());
    });
    rate("Trust::builtin()", 20, || {
        let _ = Trust::builtin();
    });
}
