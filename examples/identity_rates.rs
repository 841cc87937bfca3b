//! Single-core verification rates for instance-identity sign-in (`bench/identity.sh`).
//!
//! Measures, on one thread, how many proofs per second the library verifies
//! (`appliance::identity::verify_{aws,azure,gcp}`) next to the raw signature
//! primitives underneath each one, using the repository's fixtures:
//!
//! * AWS: `tests/fixtures/identity/aws/coder-us-east-1-2022` against the built-in
//!   keys; primitive: SHA-256 + RSA-1024 PKCS#1 v1.5 verify with the "other regions" key.
//!   `aws_verify_operator`: the same document bytes signed with `generated/aws-test-key.pem`
//!   (RSA-1024 too), against the built-in keys plus that key as an operator-configured one
//!   (`identity.aws.certificates`), next to `aws_verify_builtin_beside_operator`: the
//!   fixture's own proof against that same trust.
//! * Azure: `generated/azure-b-rsa-noattr.b64` against chain B (root-p256, int-p384) at
//!   2026-06-01T00:00:00Z; primitives: RSA-2048 (the envelope's signature), ECDSA P-384
//!   (int-p384 signed the leaf) and ECDSA P-256 (root-p256 signed int-p384), and all three
//!   in one loop (`azure_primitives`, the signature work one `verify_azure` must do).
//! * GCP: an RS256 token signed here with `generated/gcp-test-key.pem`, JWKS built from
//!   its public key; primitive: SHA-256 + RSA-2048 PKCS#1 v1.5 verify.
//! * `store_sign_in_write`: the database transaction a successful sign-in runs (find the
//!   instance's agents, pick one, mint and insert a token, prune old ones, commit), through
//!   `Store::write` on a fresh database in a temporary directory (WAL, default options).
//!
//! ```text
//! cargo run --release --example identity_rates                  # ~2 s per measurement
//! cargo run --release --example identity_rates -- --seconds 5
//! cargo run --release --example identity_rates -- --iterations 10000
//! cargo run --release --example identity_rates -- --seconds 0.5 --repeat 4   # best of 4
//! cargo run --release --example identity_rates -- --only aws
//! cargo run --release --example identity_rates -- --print-jwks  # JWKS for gcp-test-key
//! cargo run --release --example identity_rates -- --print-jwt 1234567890 [--exp-in 3600]
//! cargo run --release --example identity_rates -- --print-aws-operator-key    # its PUBLIC KEY PEM
//! cargo run --release --example identity_rates -- --print-aws-operator-proof  # request body JSON
//! ```
//!
//! Each measurement prints one JSON line:
//! `{"name":"aws_rsa1024_verify","ops_per_sec":R,"ns_per_op":T,"median_ops_per_sec":M,
//! "worst_ops_per_sec":W,"runs":K,"iterations":N,"seconds":S,"what":"..."}` where R is the best
//! of the K runs (default 1; on a shared machine the best is the least disturbed).
//! Every input is checked to verify (and to yield the expected instance id) before it is timed.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use appliance::identity::{self, AzureTrust, GcpTrust, Trust};
use appliance::sign_in::agent_select;
use appliance::store::{self, Store};
use appliance::{auth, manifest};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use der::{Decode, Encode};
use rsa::traits::PublicKeyParts;
use sha2::Digest;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

macro_rules! fixture {
    ($path:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/identity/",
            $path
        ))
    };
}

const AWS_DOCUMENT: &str = fixture!("aws/coder-us-east-1-2022/document.json");
const AWS_SIGNATURE: &str = fixture!("aws/coder-us-east-1-2022/signature.b64");
const AWS_INSTANCE_ID: &str = "i-076e9b91f7c420782";
const AWS_OTHER_SPKI: &str = fixture!("generated/aws-other-spki.pem");
/// The operator's key in the operator-key measurements (RSA-1024, like AWS's).
const AWS_TEST_KEY: &str = fixture!("generated/aws-test-key.pem");
/// The label `identity.aws.certificates` would give it (its path): named for no region.
const AWS_OPERATOR_LABEL: &str = "/etc/appliance/aws/operator-ca.pem";

const AZURE_ENVELOPE: &str = fixture!("generated/azure-b-rsa-noattr.b64");
const AZURE_ROOT: &str = fixture!("generated/root-p256.pem");
const AZURE_INTERMEDIATE: &str = fixture!("generated/int-p384.pem");
const AZURE_LEAF: &str = fixture!("generated/leaf-b-rsa.pem");
const AZURE_VM_ID: &str = "22222222-aaaa-4bbb-8ccc-000000000002";
/// Inside the generated leaves' validity (2026-02-01 .. 2027-02-01).
const AZURE_AT: &str = "2026-06-01T00:00:00Z";

const GCP_KEY: &str = fixture!("generated/gcp-test-key.pem");
const GCP_KID: &str = "appliance-bench";
const GCP_INSTANCE_ID: &str = "4242424242424242424";

const USAGE: &str = "usage: identity_rates [--seconds S | --iterations N] [--repeat K] [--only PREFIX]\n       \
                     identity_rates --print-jwks\n       \
                     identity_rates --print-aws-operator-key | --print-aws-operator-proof\n       \
                     identity_rates --print-jwt INSTANCE_ID [--exp-in SECONDS]";

type SigningKey = rsa::pkcs1v15::SigningKey<sha2::Sha256>;

// ---------------------------------------------------------------------------------------------
// Arguments

/// How long one timed run lasts, and how many runs make a measurement (the best counts).
#[derive(Clone, Copy)]
struct Budget {
    amount: Amount,
    repeat: u32,
}

#[derive(Clone, Copy)]
enum Amount {
    Seconds(f64),
    Iterations(u64),
}

enum Mode {
    Measure {
        budget: Budget,
        only: Option<String>,
    },
    PrintJwks,
    PrintAwsOperatorKey,
    PrintAwsOperatorProof,
    PrintJwt {
        instance_id: String,
        exp_in: i64,
    },
}

fn parse_args() -> Result<Mode, String> {
    let mut amount = Amount::Seconds(2.0);
    let mut repeat = 1;
    let mut only = None;
    let mut print_jwks = false;
    let mut print_aws = None;
    let mut print_jwt = None;
    let mut exp_in = 3600;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--seconds" => {
                let v = value("--seconds")?;
                let s: f64 = v
                    .parse()
                    .map_err(|_| format!("--seconds {v}: not a number"))?;
                if !(s > 0.0 && s <= 3600.0) {
                    return Err(format!("--seconds {v}: out of range (0, 3600]"));
                }
                amount = Amount::Seconds(s);
            }
            "--iterations" => {
                let v = value("--iterations")?;
                let n: u64 = v
                    .parse()
                    .map_err(|_| format!("--iterations {v}: not a number"))?;
                if n == 0 {
                    return Err("--iterations must be at least 1".to_string());
                }
                amount = Amount::Iterations(n);
            }
            "--repeat" => {
                let v = value("--repeat")?;
                repeat = v
                    .parse()
                    .map_err(|_| format!("--repeat {v}: not a number"))?;
                if !(1..=100).contains(&repeat) {
                    return Err(format!("--repeat {v}: out of range 1..=100"));
                }
            }
            "--only" => only = Some(value("--only")?),
            "--print-jwks" => print_jwks = true,
            "--print-aws-operator-key" => print_aws = Some(Mode::PrintAwsOperatorKey),
            "--print-aws-operator-proof" => print_aws = Some(Mode::PrintAwsOperatorProof),
            "--print-jwt" => print_jwt = Some(value("--print-jwt")?),
            "--exp-in" => {
                let v = value("--exp-in")?;
                exp_in = v
                    .parse()
                    .map_err(|_| format!("--exp-in {v}: not a number"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if let Some(mode) = print_aws {
        if print_jwks || print_jwt.is_some() {
            return Err("print one thing at a time".to_string());
        }
        return Ok(mode);
    }
    match (print_jwks, print_jwt) {
        (true, Some(_)) => Err("--print-jwks and --print-jwt are exclusive".to_string()),
        (true, None) => Ok(Mode::PrintJwks),
        (false, Some(instance_id)) => Ok(Mode::PrintJwt {
            instance_id,
            exp_in,
        }),
        (false, None) => Ok(Mode::Measure {
            budget: Budget { amount, repeat },
            only,
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding helpers

/// The DER of the first PEM block in `pem` (any label).
fn pem_der(pem: &str) -> Result<Vec<u8>, String> {
    let mut inside = false;
    let mut body = String::new();
    for line in pem.lines().map(str::trim) {
        if line.starts_with("-----BEGIN ") {
            inside = true;
        } else if line.starts_with("-----END ") {
            return STANDARD.decode(&body).map_err(|e| format!("bad PEM: {e}"));
        } else if inside {
            body.push_str(line);
        }
    }
    Err("no PEM block".to_string())
}

/// Standard base64 with line breaks (AWS `/signature`, the Azure envelope files).
fn decode_b64_lines(b64: &str) -> Result<Vec<u8>, String> {
    let cleaned: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD
        .decode(cleaned)
        .map_err(|e| format!("bad base64: {e}"))
}

/// One DER TLV at the front of some input: the whole encoding and its value.
struct Tlv<'a> {
    whole: &'a [u8],
    value: &'a [u8],
}

/// The DER TLV at the front of `input` (definite lengths up to 4 bytes).
fn der_tlv(input: &[u8]) -> Result<Tlv<'_>, String> {
    let bad = || "truncated or unsupported DER".to_string();
    let first_len = *input.get(1).ok_or_else(bad)?;
    let (header, len) = if first_len < 0x80 {
        (2, usize::from(first_len))
    } else {
        let n = usize::from(first_len & 0x7f);
        if n == 0 || n > 4 {
            return Err(bad());
        }
        let bytes = input.get(2..2 + n).ok_or_else(bad)?;
        (
            2 + n,
            bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b)),
        )
    };
    let end = header.checked_add(len).ok_or_else(bad)?;
    let whole = input.get(..end).ok_or_else(bad)?;
    Ok(Tlv {
        whole,
        value: &whole[header..],
    })
}

/// A certificate's raw `tbsCertificate` (what its issuer signed), its signature and its SPKI.
struct CertParts {
    tbs: Vec<u8>,
    signature: Vec<u8>,
    spki: Vec<u8>,
}

fn cert_parts(pem: &str) -> Result<CertParts, String> {
    let der = pem_der(pem)?;
    // Certificate ::= SEQUENCE { tbsCertificate, ... }: the raw bytes, not a re-encoding.
    let tbs = der_tlv(der_tlv(&der)?.value)?.whole;
    let cert =
        x509_cert::Certificate::from_der(&der).map_err(|e| format!("bad certificate: {e}"))?;
    let signature = cert
        .signature()
        .as_bytes()
        .ok_or("certificate signature is not whole bytes")?
        .to_vec();
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| format!("cannot re-encode SPKI: {e}"))?;
    Ok(CertParts {
        tbs: tbs.to_vec(),
        signature,
        spki,
    })
}

/// The attached content and the signer's signature of a `-noattr` CMS SignedData.
fn envelope_parts(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
    let ci = cms::content_info::ContentInfo::from_der(der).map_err(|e| format!("bad CMS: {e}"))?;
    let sd: cms::signed_data::SignedData = ci
        .content
        .decode_as()
        .map_err(|e| format!("bad SignedData: {e}"))?;
    let content = sd
        .encap_content_info
        .econtent
        .as_ref()
        .ok_or("no attached content")?
        .decode_as::<der::asn1::OctetString>()
        .map_err(|e| format!("content is not an OCTET STRING: {e}"))?
        .into_bytes()
        .into_vec();
    let si = sd.signer_infos.0.iter().next().ok_or("no signer")?;
    if si.signed_attrs.is_some() {
        return Err("expected an envelope without signed attributes".to_string());
    }
    Ok((content, si.signature.as_bytes().to_vec()))
}

// ---------------------------------------------------------------------------------------------
// GCP token material

fn gcp_signing_key() -> Result<SigningKey, String> {
    use rsa::pkcs8::DecodePrivateKey;
    SigningKey::from_pkcs8_der(&pem_der(GCP_KEY)?).map_err(|e| format!("gcp-test-key.pem: {e}"))
}

fn gcp_jwks(key: &SigningKey) -> String {
    let public = rsa::PublicKey::from(key.as_ref().clone());
    serde_json::json!({
        "keys": [{
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": GCP_KID,
            "n": URL_SAFE_NO_PAD.encode(public.n().to_be_bytes_trimmed_vartime()),
            "e": URL_SAFE_NO_PAD.encode(public.e().to_be_bytes_trimmed_vartime()),
        }]
    })
    .to_string()
}

/// An RS256 token shaped like a Compute Engine identity token (format=full).
fn gcp_jwt(key: &SigningKey, instance_id: &str, iat: i64, exp: i64) -> String {
    use rsa::signature::{SignatureEncoding, Signer};
    let header = serde_json::json!({"alg": "RS256", "kid": GCP_KID, "typ": "JWT"});
    let claims = serde_json::json!({
        "aud": "coder",
        "azp": "117372393939393939393",
        "email": "123456789012-compute@developer.gserviceaccount.com",
        "email_verified": true,
        "exp": exp,
        "iat": iat,
        "iss": "https://accounts.google.com",
        "sub": "117372393939393939393",
        "google": {
            "compute_engine": {
                "instance_creation_timestamp": iat - 600,
                "instance_id": instance_id,
                "instance_name": "appliance-bench",
                "project_id": "appliance-bench",
                "project_number": 123456789012u64,
                "zone": "us-central1-a"
            }
        }
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = key.sign(signing_input.as_bytes()).to_vec();
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

// ---------------------------------------------------------------------------------------------
// AWS operator-key material

fn aws_operator_signing_key() -> Result<SigningKey, String> {
    use rsa::pkcs8::DecodePrivateKey;
    SigningKey::from_pkcs8_der(&pem_der(AWS_TEST_KEY)?)
        .map_err(|e| format!("aws-test-key.pem: {e}"))
}

/// The operator key's public half, as the file `identity.aws.certificates` would name.
fn aws_operator_public_pem(key: &SigningKey) -> Result<String, String> {
    use rsa::pkcs8::EncodePublicKey;
    let der = rsa::PublicKey::from(key.as_ref().clone())
        .to_public_key_der()
        .map_err(|e| format!("aws-test-key.pem public key: {e}"))?;
    let b64 = STANDARD.encode(der.as_bytes());
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    Ok(pem)
}

/// The fixture's document bytes signed with the operator key, base64 wrapped at 76 columns
/// like IMDS's `/signature`.
fn aws_operator_signature(key: &SigningKey) -> String {
    use rsa::signature::{SignatureEncoding, Signer};
    let b64 = STANDARD.encode(key.sign(AWS_DOCUMENT.as_bytes()).to_vec());
    let lines: Vec<String> = b64
        .as_bytes()
        .chunks(76)
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    lines.join("\n")
}

// ---------------------------------------------------------------------------------------------
// Timing

/// Runs `f` for the budget on this thread (after a short warm-up), `repeat` times, and
/// prints one JSON line: the best run's rate (the least disturbed one on a shared machine),
/// the median and the worst.
fn measure(budget: Budget, name: &str, what: &str, mut f: impl FnMut()) {
    let warm_up = Instant::now();
    while warm_up.elapsed() < Duration::from_millis(100) {
        f();
    }
    let mut rates = Vec::new();
    let (mut total_iterations, mut total_seconds) = (0u64, 0f64);
    for _ in 0..budget.repeat {
        let start = Instant::now();
        let mut iterations = 0u64;
        match budget.amount {
            Amount::Iterations(n) => {
                for _ in 0..n {
                    f();
                }
                iterations = n;
            }
            Amount::Seconds(secs) => {
                let limit = Duration::from_secs_f64(secs);
                // Check the clock every few calls: cheap next to a signature check.
                while start.elapsed() < limit {
                    for _ in 0..8 {
                        f();
                    }
                    iterations += 8;
                }
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        rates.push(iterations as f64 / seconds);
        total_iterations += iterations;
        total_seconds += seconds;
    }
    rates.sort_by(f64::total_cmp);
    let best = rates[rates.len() - 1];
    // Written by hand to keep the field order (serde_json's maps sort their keys).
    println!(
        "{{\"name\":{},\"ops_per_sec\":{best:.0},\"ns_per_op\":{:.0},\"median_ops_per_sec\":{:.0},\"worst_ops_per_sec\":{:.0},\"runs\":{},\"iterations\":{total_iterations},\"seconds\":{total_seconds:.3},\"what\":{}}}",
        serde_json::Value::from(name),
        1e9 / best,
        rates[rates.len() / 2],
        rates[0],
        rates.len(),
        serde_json::Value::from(what),
    );
}

// ---------------------------------------------------------------------------------------------
// Measurements

fn run(budget: Budget, only: Option<&str>) -> Result<(), String> {
    let wanted = |name: &str| only.is_none_or(|p| name.starts_with(p));
    let sha256_pkcs1 = || rsa::Pkcs1v15Sign::new::<sha2::Sha256>();

    // AWS ------------------------------------------------------------------------------------
    let aws_key = {
        use rsa::pkcs8::DecodePublicKey;
        rsa::PublicKey::from_public_key_der(&pem_der(AWS_OTHER_SPKI)?)
            .map_err(|e| format!("aws-other-spki.pem: {e}"))?
    };
    if aws_key.n().bit_width_vartime() != 1024 {
        return Err("the AWS key is not RSA-1024".to_string());
    }
    let aws_sig = decode_b64_lines(AWS_SIGNATURE)?;
    let aws_rsa = || {
        let hash = sha2::Sha256::digest(black_box(AWS_DOCUMENT).as_bytes());
        aws_key.verify(sha256_pkcs1(), &hash, black_box(&aws_sig))
    };
    aws_rsa().map_err(|e| format!("AWS fixture does not verify with the raw key: {e}"))?;
    if wanted("aws_rsa1024_verify") {
        measure(
            budget,
            "aws_rsa1024_verify",
            "SHA-256 + RSA-1024 PKCS#1 v1.5 verify (rsa crate), AWS fixture document",
            || {
                black_box(aws_rsa()).ok();
            },
        );
    }
    let trust = Trust::builtin();
    let got = identity::verify_aws(AWS_DOCUMENT, AWS_SIGNATURE, &trust.aws)
        .map_err(|e| format!("verify_aws: {e}"))?;
    if got != AWS_INSTANCE_ID {
        return Err(format!("verify_aws returned {got:?}"));
    }
    if wanted("aws_verify_full") {
        measure(
            budget,
            "aws_verify_full",
            "appliance::identity::verify_aws, built-in keys (14)",
            || {
                black_box(identity::verify_aws(
                    black_box(AWS_DOCUMENT),
                    black_box(AWS_SIGNATURE),
                    &trust.aws,
                ))
                .ok();
            },
        );
    }

    // The same document signed by an operator-configured key, beside the built-in keys.
    let operator_key = aws_operator_signing_key()?;
    let mut operator_trust = Trust::builtin().aws;
    operator_trust
        .add_pem(AWS_OPERATOR_LABEL, &aws_operator_public_pem(&operator_key)?)
        .map_err(|e| format!("operator key: {e}"))?;
    let operator_sig = aws_operator_signature(&operator_key);
    let got = identity::verify_aws(AWS_DOCUMENT, &operator_sig, &operator_trust)
        .map_err(|e| format!("verify_aws (operator key): {e}"))?;
    if got != AWS_INSTANCE_ID {
        return Err(format!("verify_aws (operator key) returned {got:?}"));
    }
    if wanted("aws_verify_operator") {
        measure(
            budget,
            "aws_verify_operator",
            "appliance::identity::verify_aws, a proof signed by an operator-configured RSA-1024 key (built-in keys + that key)",
            || {
                black_box(identity::verify_aws(
                    black_box(AWS_DOCUMENT),
                    black_box(&operator_sig),
                    &operator_trust,
                ))
                .ok();
            },
        );
    }
    if wanted("aws_verify_builtin_beside_operator") {
        measure(
            budget,
            "aws_verify_builtin_beside_operator",
            "appliance::identity::verify_aws, the built-in-key proof against built-in keys + an operator key",
            || {
                black_box(identity::verify_aws(
                    black_box(AWS_DOCUMENT),
                    black_box(AWS_SIGNATURE),
                    &operator_trust,
                ))
                .ok();
            },
        );
    }

    // Azure ----------------------------------------------------------------------------------
    let azure_at = OffsetDateTime::parse(AZURE_AT, &Rfc3339).map_err(|e| e.to_string())?;
    let (content, content_sig) = envelope_parts(&decode_b64_lines(AZURE_ENVELOPE)?)?;
    let leaf = cert_parts(AZURE_LEAF)?;
    let int = cert_parts(AZURE_INTERMEDIATE)?;
    let root = cert_parts(AZURE_ROOT)?;
    let leaf_key = {
        use rsa::pkcs8::DecodePublicKey;
        rsa::PublicKey::from_public_key_der(&leaf.spki).map_err(|e| format!("leaf key: {e}"))?
    };
    if leaf_key.n().bit_width_vartime() != 2048 {
        return Err("the Azure test leaf is not RSA-2048".to_string());
    }
    let int_key = {
        use p384::pkcs8::DecodePublicKey;
        p384::ecdsa::VerifyingKey::from_public_key_der(&int.spki)
            .map_err(|e| format!("intermediate key: {e}"))?
    };
    let root_key = {
        use p256::pkcs8::DecodePublicKey;
        p256::ecdsa::VerifyingKey::from_public_key_der(&root.spki)
            .map_err(|e| format!("root key: {e}"))?
    };
    let leaf_sig = p384::ecdsa::Signature::from_der(&leaf.signature)
        .map_err(|e| format!("leaf signature: {e}"))?;
    let int_sig = p256::ecdsa::Signature::from_der(&int.signature)
        .map_err(|e| format!("intermediate signature: {e}"))?;
    let azure_rsa = || {
        let hash = sha2::Sha256::digest(black_box(&content));
        leaf_key
            .verify(sha256_pkcs1(), &hash, black_box(&content_sig))
            .map_err(|e| format!("content signature: {e}"))
    };
    let azure_p384 = || {
        use p384::ecdsa::signature::hazmat::PrehashVerifier;
        let hash = sha2::Sha384::digest(black_box(&leaf.tbs));
        int_key
            .verify_prehash(&hash, black_box(&leaf_sig))
            .map_err(|e| format!("leaf certificate signature: {e}"))
    };
    let azure_p256 = || {
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        let hash = sha2::Sha256::digest(black_box(&int.tbs));
        root_key
            .verify_prehash(&hash, black_box(&int_sig))
            .map_err(|e| format!("intermediate certificate signature: {e}"))
    };
    azure_rsa()?;
    azure_p384()?;
    azure_p256()?;
    if wanted("azure_rsa2048_verify") {
        measure(
            budget,
            "azure_rsa2048_verify",
            "SHA-256 + RSA-2048 PKCS#1 v1.5 verify, the envelope's signature over its content",
            || {
                black_box(azure_rsa()).ok();
            },
        );
    }
    if wanted("azure_p384_verify") {
        measure(
            budget,
            "azure_p384_verify",
            "SHA-384 + ECDSA P-384 verify, int-p384's signature on the leaf certificate",
            || {
                black_box(azure_p384()).ok();
            },
        );
    }
    if wanted("azure_p256_verify") {
        measure(
            budget,
            "azure_p256_verify",
            "SHA-256 + ECDSA P-256 verify, root-p256's signature on int-p384",
            || {
                black_box(azure_p256()).ok();
            },
        );
    }
    if wanted("azure_primitives") {
        measure(
            budget,
            "azure_primitives",
            "the three verifies above in sequence (all the signature work of one verify_azure)",
            || {
                black_box(azure_rsa()).ok();
                black_box(azure_p384()).ok();
                black_box(azure_p256()).ok();
            },
        );
    }
    let mut azure_trust = AzureTrust::default();
    azure_trust
        .add_root_pem("root-p256", AZURE_ROOT)
        .map_err(|e| format!("root-p256.pem: {e}"))?;
    azure_trust
        .add_intermediate_pem("int-p384", AZURE_INTERMEDIATE)
        .map_err(|e| format!("int-p384.pem: {e}"))?;
    let got = identity::verify_azure(AZURE_ENVELOPE, &azure_trust, azure_at)
        .map_err(|e| format!("verify_azure: {e}"))?;
    if got != AZURE_VM_ID {
        return Err(format!("verify_azure returned {got:?}"));
    }
    if wanted("azure_verify_full") {
        measure(
            budget,
            "azure_verify_full",
            "appliance::identity::verify_azure, trust = root-p256 + int-p384, at 2026-06-01",
            || {
                black_box(identity::verify_azure(
                    black_box(AZURE_ENVELOPE),
                    &azure_trust,
                    azure_at,
                ))
                .ok();
            },
        );
    }

    // GCP ------------------------------------------------------------------------------------
    let gcp_key = gcp_signing_key()?;
    let gcp_at = azure_at;
    let iat = gcp_at.unix_timestamp() - 60;
    let jwt = gcp_jwt(&gcp_key, GCP_INSTANCE_ID, iat, iat + 3600);
    let gcp_public = rsa::PublicKey::from(gcp_key.as_ref().clone());
    let (signing_input, jwt_sig) = jwt.rsplit_once('.').ok_or("JWT without a signature")?;
    let jwt_sig = URL_SAFE_NO_PAD
        .decode(jwt_sig)
        .map_err(|e| format!("JWT signature: {e}"))?;
    let gcp_rsa = || {
        let hash = sha2::Sha256::digest(black_box(signing_input).as_bytes());
        gcp_public.verify(sha256_pkcs1(), &hash, black_box(&jwt_sig))
    };
    gcp_rsa().map_err(|e| format!("JWT does not verify with the raw key: {e}"))?;
    if wanted("gcp_rsa2048_verify") {
        measure(
            budget,
            "gcp_rsa2048_verify",
            "SHA-256 + RSA-2048 PKCS#1 v1.5 verify, the JWT's signing input",
            || {
                black_box(gcp_rsa()).ok();
            },
        );
    }
    let mut gcp_trust = GcpTrust::default();
    gcp_trust
        .add_jwks_json(gcp_jwks(&gcp_key).as_bytes())
        .map_err(|e| format!("JWKS: {e}"))?;
    let got = identity::verify_gcp(&jwt, &gcp_trust, None, gcp_at)
        .map_err(|e| format!("verify_gcp: {e}"))?;
    if got != GCP_INSTANCE_ID {
        return Err(format!("verify_gcp returned {got:?}"));
    }
    if wanted("gcp_verify_full") {
        measure(
            budget,
            "gcp_verify_full",
            "appliance::identity::verify_gcp, JWKS with the one test key, no audience",
            || {
                black_box(identity::verify_gcp(
                    black_box(&jwt),
                    &gcp_trust,
                    None,
                    gcp_at,
                ))
                .ok();
            },
        );
    }

    // Store ----------------------------------------------------------------------------------
    if wanted("store_sign_in_write") {
        let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
        let store = sign_in_store(&dir.path().join("appliance.db"))?;
        let sign_in = || -> Result<(), String> {
            let minted = auth::new_agent_token();
            store
                .write(|tx| {
                    let candidates = store::agents::instance_candidates(tx, AWS_INSTANCE_ID)?;
                    let chosen = agent_select::select(AWS_INSTANCE_ID, None, candidates)
                        .map_err(|r| store::StoreError::Other(format!("{r:?}")))?;
                    store::agents::insert_agent_token(
                        tx,
                        chosen.agent_id,
                        &minted.hash,
                        OffsetDateTime::now_utc(),
                        auth::MAX_LIVE_AGENT_TOKENS,
                    )
                })
                .map_err(|e| format!("sign-in transaction: {e}"))?;
            black_box(minted.token);
            Ok(())
        };
        sign_in()?;
        measure(
            budget,
            "store_sign_in_write",
            "a successful sign-in's transaction: instance_candidates + select + token insert/prune + commit (Store::write, temp db)",
            || {
                black_box(sign_in()).ok();
            },
        );
    }
    Ok(())
}

/// A fresh database holding one agent on the AWS fixture's instance id.
fn sign_in_store(path: &std::path::Path) -> Result<Store, String> {
    let store = Store::open(path, &store::Options::default()).map_err(|e| e.to_string())?;
    store.migrate().map_err(|e| e.to_string())?;
    let text = format!(
        "name = \"rates\"\nowner = \"admin\"\n\n[[resources]]\nname = \"vm\"\n\
         type = \"aws_instance\"\ninstance_id = \"{AWS_INSTANCE_ID}\"\n\n  \
         [[resources.agents]]\n  name = \"main\"\n  auth = \"aws-instance-identity\"\n"
    );
    let ws = manifest::parse("rates.toml", &text).map_err(|e| e.to_string())?;
    let now = OffsetDateTime::now_utc();
    store
        .write(|tx| {
            let admin = store::users::insert_user(tx, "admin", "", store::users::Role::Admin, now)?;
            store::workspaces::apply(tx, &ws, admin.id, admin.id, now)
        })
        .map_err(|e| format!("applying the manifest: {e}"))?;
    Ok(store)
}

fn main() -> ExitCode {
    let mode = match parse_args() {
        Ok(m) => m,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("identity_rates: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match mode {
        Mode::Measure { budget, only } => run(budget, only.as_deref()),
        Mode::PrintJwks => gcp_signing_key().map(|key| println!("{}", gcp_jwks(&key))),
        Mode::PrintAwsOperatorKey => aws_operator_signing_key()
            .and_then(|key| aws_operator_public_pem(&key))
            .map(|pem| print!("{pem}")),
        Mode::PrintAwsOperatorProof => aws_operator_signing_key().map(|key| {
            let body = serde_json::json!({
                "document": AWS_DOCUMENT,
                "signature": aws_operator_signature(&key),
            });
            println!("{body}");
        }),
        Mode::PrintJwt {
            instance_id,
            exp_in,
        } => gcp_signing_key().map(|key| {
            let now = OffsetDateTime::now_utc().unix_timestamp();
            println!("{}", gcp_jwt(&key, &instance_id, now, now + exp_in));
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("identity_rates: {e}");
            ExitCode::FAILURE
        }
    }
}
