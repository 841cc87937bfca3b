//! Azure IMDS attested document: `GET /metadata/attested/document` → `{encoding, signature}`.
//!
//! `signature` is base64 DER PKCS#7 SignedData with the JSON document attached and only the
//! signer's (leaf) certificate embedded. Verification, following coder
//! (coder/coder:coderd/azureidentity) and IDENTITY.md §0:
//!
//! 1. exactly one signer, whose certificate is in the envelope;
//! 2. signer CN matches `^(.*\.)?metadata\.(azure\.(com|us|cn)|microsoftazure\.de)$`;
//! 3. the CMS signature verifies (IMDS uses no signed attributes, so it covers the raw content,
//!    and it puts the sha256WithRSAEncryption OID in `digestAlgorithm`, which is accepted as
//!    SHA-256; signed attributes are handled too, per RFC 5652, for other signers);
//! 4. a chain leaf → configured intermediates (plus any extra envelope certificates) →
//!    configured root validates at `now`: every certificate's notBefore/notAfter, every link's
//!    signature (RSA PKCS#1 v1.5 or ECDSA P-256/P-384 with SHA-256/384/512), issuers must be
//!    CAs (BasicConstraints cA, pathLen, keyCertSign when KeyUsage is present). EKU is not
//!    restricted (Go's PKCS#7 verifier uses `ExtKeyUsageAny`);
//! 5. `vmId` from the content JSON.
//!
//! Offline only: a missing intermediate is reported with its DN and AIA caIssuers URL instead of
//! being downloaded.

use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier};
use der::Decode;
use der::asn1::OctetString;
use spki::ObjectIdentifier;
use time::OffsetDateTime;

use super::IdentityError;
use super::pki::{self, Cert, SigAlg};
use super::trust::AzureTrust;

/// Largest accepted `signature` field (base64). Real envelopes are ~4 KiB.
const MAX_SIGNATURE_B64_LEN: usize = 256 << 10;
/// Most certificates accepted in one envelope (IMDS sends one).
const MAX_ENVELOPE_CERTS: usize = 16;
/// Most intermediates in a chain.
const MAX_CHAIN_INTERMEDIATES: usize = 8;
/// Most link-signature verifications per call: bounds the work an envelope stuffed with
/// look-alike certificates can cause.
const MAX_LINK_VERIFICATIONS: usize = 32;

const OID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const OID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const OID_ATTR_CONTENT_TYPE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const OID_ATTR_MESSAGE_DIGEST: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");

/// Host names allowed as the signer's CN, exactly or as a `.`-separated suffix.
const ALLOWED_CN_SUFFIXES: &[&str] = &[
    "metadata.azure.com",
    "metadata.azure.us",
    "metadata.azure.cn",
    "metadata.microsoftazure.de",
];

/// Verifies an Azure attested document (`signature` field of the IMDS response) at time `now`
/// and returns the signed `vmId` (empty if the document has none, as coder's decoding would).
pub fn verify_azure(
    signature_b64: &str,
    trust: &AzureTrust,
    now: OffsetDateTime,
) -> Result<String, IdentityError> {
    let der = pki::decode_base64_lines(signature_b64, MAX_SIGNATURE_B64_LEN, "signature")
        .map_err(IdentityError::Malformed)?;
    let envelope = Envelope::parse(&der)?;
    let signer = envelope.signer()?;

    check_signer_name(signer)?;
    envelope.verify_signature(signer)?;
    verify_chain(signer, &envelope.certs, trust, now)?;

    let content: serde_json::Value = serde_json::from_slice(&envelope.content)
        .map_err(|e| IdentityError::Malformed(format!("signed content is not valid JSON: {e}")))?;
    let content = content.as_object().ok_or_else(|| {
        IdentityError::Malformed("signed content is not a JSON object".to_string())
    })?;
    match content.get("vmId") {
        None | Some(serde_json::Value::Null) => Ok(String::new()),
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(IdentityError::Malformed(
            "signed content field \"vmId\" is not a string".to_string(),
        )),
    }
}

/// The parts of a SignedData envelope verification needs.
struct Envelope {
    content: Vec<u8>,
    content_type: ObjectIdentifier,
    certs: Vec<Cert>,
    sid: SignerIdentifier,
    digest_alg: ObjectIdentifier,
    signature_alg: ObjectIdentifier,
    signature: Vec<u8>,
    /// The SignerInfo's digest and signature algorithm parameters are absent or NULL (the only
    /// forms RSA/ECDSA/SHA-2 use); anything else is refused rather than silently ignored.
    algorithm_params_ok: bool,
    /// Raw signed attributes re-tagged as `SET OF` (what the signature covers), and parsed.
    signed_attrs: Option<(Vec<u8>, x509_cert::attr::Attributes)>,
}

impl Envelope {
    fn parse(input: &[u8]) -> Result<Envelope, IdentityError> {
        let malformed = |msg: String| IdentityError::Malformed(format!("pkcs7: {msg}"));
        // IMDS sends DER; BER (indefinite lengths, segmented content) is converted first.
        let normalized: Vec<u8>;
        let (der, ci): (&[u8], ContentInfo) = match ContentInfo::from_der(input) {
            Ok(ci) => (input, ci),
            Err(der_error) => {
                normalized = pki::ber_to_der(input).ok_or_else(|| {
                    malformed(format!(
                        "bad ContentInfo (neither DER nor BER): {der_error}"
                    ))
                })?;
                let ci = ContentInfo::from_der(&normalized)
                    .map_err(|e| malformed(format!("bad ContentInfo: {e}")))?;
                (&normalized, ci)
            }
        };
        if ci.content_type != OID_SIGNED_DATA {
            return Err(malformed(format!(
                "content type {} is not SignedData",
                ci.content_type
            )));
        }
        let sd: SignedData = ci
            .content
            .decode_as()
            .map_err(|e| malformed(format!("bad SignedData: {e}")))?;
        let raw = RawSignedData::walk(der)
            .ok_or_else(|| malformed("unexpected SignedData layout".to_string()))?;

        let signer_count = sd.signer_infos.0.len();
        let si = match sd.signer_infos.0.as_slice() {
            [si] => si,
            _ => {
                return Err(malformed(format!(
                    "expected exactly one signer, found {signer_count}"
                )));
            }
        };

        let content_type = sd.encap_content_info.econtent_type;
        let content = sd
            .encap_content_info
            .econtent
            .as_ref()
            .ok_or_else(|| malformed("no attached content (detached signature)".to_string()))?
            .decode_as::<OctetString>()
            .map_err(|e| malformed(format!("content is not an OCTET STRING: {e}")))?
            .into_bytes()
            .into_vec();

        if raw.certs.len() > MAX_ENVELOPE_CERTS {
            return Err(malformed(format!(
                "too many certificates in the envelope ({})",
                raw.certs.len()
            )));
        }
        let mut certs = Vec::with_capacity(raw.certs.len());
        for cert_der in &raw.certs {
            certs.push(
                Cert::from_der(cert_der)
                    .map_err(|e| malformed(format!("envelope certificate: {e}")))?,
            );
        }

        let signed_attrs = match (&si.signed_attrs, raw.signed_attrs) {
            (None, None) => None,
            (Some(parsed), Some(raw_attrs)) => {
                let mut bytes = raw_attrs.to_vec();
                if let Some(tag) = bytes.first_mut() {
                    // Signed over as `SET OF` (RFC 5652 §5.4), encoded as `[0] IMPLICIT`.
                    *tag = 0x31;
                }
                Some((bytes, parsed.clone()))
            }
            _ => return Err(malformed("inconsistent signed attributes".to_string())),
        };

        Ok(Envelope {
            content,
            content_type,
            certs,
            sid: si.sid.clone(),
            digest_alg: si.digest_alg.oid,
            signature_alg: si.signature_algorithm.oid,
            signature: si.signature.as_bytes().to_vec(),
            algorithm_params_ok: params_absent_or_null(&si.digest_alg)
                && params_absent_or_null(&si.signature_algorithm),
            signed_attrs,
        })
    }

    /// The envelope certificate named by the SignerInfo.
    fn signer(&self) -> Result<&Cert, IdentityError> {
        let found = match &self.sid {
            SignerIdentifier::IssuerAndSerialNumber(isn) => {
                let issuer = der::Encode::to_der(&isn.issuer).ok();
                self.certs.iter().find(|c| {
                    Some(&c.issuer_der) == issuer.as_ref()
                        && c.serial == isn.serial_number.as_bytes()
                })
            }
            SignerIdentifier::SubjectKeyIdentifier(skid) => self
                .certs
                .iter()
                .find(|c| c.subject_key_id.as_deref() == Some(skid.0.as_bytes())),
        };
        found.ok_or_else(|| {
            IdentityError::Malformed(
                "pkcs7: the signer's certificate is not in the envelope".to_string(),
            )
        })
    }

    /// Checks the CMS signature (and signed attributes, if any) with the signer's key.
    fn verify_signature(&self, signer: &Cert) -> Result<(), IdentityError> {
        let not_allowed = |msg: String| IdentityError::AlgorithmNotAllowed(format!("pkcs7: {msg}"));
        let bad = |msg: String| IdentityError::BadSignature(format!("pkcs7: {msg}"));
        if self.content_type != OID_DATA {
            return Err(IdentityError::Malformed(format!(
                "pkcs7: content type {} is not id-data",
                self.content_type
            )));
        }
        if !self.algorithm_params_ok {
            return Err(IdentityError::Malformed(
                "pkcs7: unexpected algorithm parameters in SignerInfo".to_string(),
            ));
        }
        let hash = pki::digest_alg_from_oid(&self.digest_alg).map_err(not_allowed)?;
        let alg = match self.signature_alg {
            pki::OID_RSA_ENCRYPTION => SigAlg::RsaPkcs1(hash),
            pki::OID_EC_PUBLIC_KEY => SigAlg::Ecdsa(hash),
            oid => {
                let alg = pki::sig_alg_from_oid(&oid).map_err(not_allowed)?;
                let named = match alg {
                    SigAlg::RsaPkcs1(h) | SigAlg::Ecdsa(h) => h,
                };
                if named != hash {
                    return Err(not_allowed(format!(
                        "signature algorithm uses {} but the digest algorithm is {}",
                        named.name(),
                        hash.name()
                    )));
                }
                alg
            }
        };
        let key = signer
            .key
            .as_ref()
            .map_err(|e| bad(format!("signer certificate key: {e}")))?;

        let message: &[u8] = match &self.signed_attrs {
            None => &self.content,
            Some((raw, attrs)) => {
                let content_type: ObjectIdentifier = single_attr(attrs, OID_ATTR_CONTENT_TYPE)
                    .map_err(|e| IdentityError::Malformed(format!("pkcs7: contentType: {e}")))?;
                if content_type != self.content_type {
                    return Err(bad(
                        "contentType attribute does not match the content".into()
                    ));
                }
                let digest: OctetString = single_attr(attrs, OID_ATTR_MESSAGE_DIGEST)
                    .map_err(|e| IdentityError::Malformed(format!("pkcs7: messageDigest: {e}")))?;
                if digest.as_bytes() != hash.digest(&self.content).as_slice() {
                    return Err(bad("messageDigest does not match the content".into()));
                }
                raw
            }
        };
        key.verify(alg, message, &self.signature)
            .map_err(|e| bad(format!("signature verification failed: {e}")))
    }
}

fn params_absent_or_null(alg: &spki::AlgorithmIdentifierOwned) -> bool {
    match &alg.parameters {
        None => true,
        Some(any) => der::Tagged::tag(any) == der::Tag::Null && any.value().is_empty(),
    }
}

/// Decodes the single value of the single attribute `oid`.
fn single_attr<'a, T>(
    attrs: &'a x509_cert::attr::Attributes,
    oid: ObjectIdentifier,
) -> Result<T, String>
where
    T: der::Choice<'a> + der::DecodeValue<'a>,
{
    let mut matching = attrs.iter().filter(|a| a.oid == oid);
    let attr = matching.next().ok_or("attribute missing")?;
    if matching.next().is_some() {
        return Err("attribute repeated".to_string());
    }
    match attr.values.as_slice() {
        [value] => value
            .decode_as::<T>()
            .map_err(|_| "attribute value has the wrong type".to_string()),
        _ => Err("attribute must have exactly one value".to_string()),
    }
}

/// Raw byte views into a DER SignedData that the typed parser does not preserve.
struct RawSignedData<'a> {
    certs: Vec<&'a [u8]>,
    /// `[0] IMPLICIT SignedAttributes` of the (first) SignerInfo, tag included.
    signed_attrs: Option<&'a [u8]>,
}

impl<'a> RawSignedData<'a> {
    /// Walks `ContentInfo { oid, [0] { SignedData } }` (already validated by the typed parser).
    fn walk(der: &'a [u8]) -> Option<RawSignedData<'a>> {
        let (ci, _) = pki::expect_tlv(der, 0x30)?;
        let (_, rest) = pki::expect_tlv(ci.value, 0x06)?;
        let (explicit, _) = pki::expect_tlv(rest, 0xa0)?;
        let (sd, _) = pki::expect_tlv(explicit.value, 0x30)?;
        let fields = pki::children(sd.value)?;
        let mut certs = Vec::new();
        let mut signer_infos = None;
        // version, digestAlgorithms, encapContentInfo, [0] certificates?, [1] crls?, signerInfos
        for field in fields.iter().skip(3) {
            match field.tag {
                0xa0 => {
                    for cert in pki::children(field.value)? {
                        // Only plain certificates (SEQUENCE); other CertificateChoices are
                        // ignored, as Go's parser does.
                        if cert.tag == 0x30 {
                            certs.push(cert.raw);
                        }
                    }
                }
                0x31 => signer_infos = Some(field.value),
                _ => {}
            }
        }
        let (si, _) = pki::expect_tlv(signer_infos?, 0x30)?;
        let si_fields = pki::children(si.value)?;
        // version, sid, digestAlgorithm, [0] signedAttrs?
        let signed_attrs = si_fields.get(3).filter(|f| f.tag == 0xa0).map(|f| f.raw);
        Some(RawSignedData {
            certs,
            signed_attrs,
        })
    }
}

/// Applies coder's signer-name rule, `^(.*\.)?metadata\.(azure\.(com|us|cn)|microsoftazure\.de)$`,
/// to the signer's CN, without a regex engine: the CN is one of the fixed names or ends with
/// `.` + one of them (and, as Go's `.` does not match `\n`, the prefix has no newline).
fn check_signer_name(signer: &Cert) -> Result<(), IdentityError> {
    let cn = match signer.common_names.as_slice() {
        [cn] => cn.as_str(),
        [] => {
            return Err(IdentityError::SignerNotAllowed(format!(
                "signer certificate \"{}\" has no common name",
                signer.subject
            )));
        }
        _ => {
            return Err(IdentityError::SignerNotAllowed(format!(
                "signer certificate \"{}\" has several common names",
                signer.subject
            )));
        }
    };
    if cn_allowed(cn) {
        Ok(())
    } else {
        Err(IdentityError::SignerNotAllowed(format!(
            "signer certificate common name {cn:?} is not an Azure metadata service name"
        )))
    }
}

fn cn_allowed(cn: &str) -> bool {
    ALLOWED_CN_SUFFIXES
        .iter()
        .any(|suffix| match cn.strip_suffix(suffix) {
            Some("") => true,
            Some(prefix) => prefix.ends_with('.') && !prefix.contains('\n'),
            None => false,
        })
}

// ---------------------------------------------------------------------------------------------
// Chain building

/// Why one chain attempt failed, and how far it got (the deepest failure is reported).
struct ChainFailure {
    depth: usize,
    expired: bool,
    message: String,
}

struct ChainSearch<'a> {
    now: OffsetDateTime,
    trust: &'a AzureTrust,
    /// Configured intermediates followed by extra envelope certificates.
    intermediates: Vec<&'a Cert>,
    verifications_left: usize,
    best: Option<ChainFailure>,
}

/// Validates `leaf` up to a configured root at `now`.
fn verify_chain(
    leaf: &Cert,
    envelope_certs: &[Cert],
    trust: &AzureTrust,
    now: OffsetDateTime,
) -> Result<(), IdentityError> {
    leaf.check_validity(now).map_err(IdentityError::Expired)?;
    if let Some(oid) = &leaf.unhandled_critical {
        return Err(IdentityError::UntrustedChain(format!(
            "x509: unhandled critical extension {oid} in \"{}\"",
            leaf.subject
        )));
    }
    let mut intermediates: Vec<&Cert> = trust.intermediates.iter().map(|c| &c.cert).collect();
    intermediates.extend(envelope_certs.iter().filter(|c| c.der != leaf.der));
    let mut search = ChainSearch {
        now,
        trust,
        intermediates,
        verifications_left: MAX_LINK_VERIFICATIONS,
        best: None,
    };
    let mut path = Vec::new();
    if search.extend(leaf, &mut path) {
        return Ok(());
    }
    let failure = search.best.unwrap_or(ChainFailure {
        depth: 0,
        expired: false,
        message: "x509: certificate signed by unknown authority".to_string(),
    });
    Err(if failure.expired {
        IdentityError::Expired(failure.message)
    } else {
        IdentityError::UntrustedChain(failure.message)
    })
}

impl<'a> ChainSearch<'a> {
    /// Depth-first search for an issuer of `cert` (the leaf, or the last of `path`). Returns
    /// true once a root is reached; records the deepest failure otherwise.
    fn extend(&mut self, cert: &'a Cert, path: &mut Vec<&'a Cert>) -> bool {
        let below = path.len();
        let mut candidates = 0usize;

        for root in self.trust.roots.iter().map(|r| &r.cert) {
            if root.subject_der != cert.issuer_der {
                continue;
            }
            candidates += 1;
            match self.check_link(cert, root, below) {
                Ok(()) => return true,
                Err((expired, message)) => self.record(below + 1, expired, message),
            }
        }

        if below < MAX_CHAIN_INTERMEDIATES {
            let pool = self.intermediates.clone();
            for candidate in pool {
                if candidate.subject_der != cert.issuer_der
                    || candidate.der == cert.der
                    || path.iter().any(|p| p.der == candidate.der)
                {
                    continue;
                }
                candidates += 1;
                if let Err((expired, message)) = self.check_link(cert, candidate, below) {
                    self.record(below + 1, expired, message);
                    continue;
                }
                path.push(candidate);
                if self.extend(candidate, path) {
                    return true;
                }
                path.pop();
            }
        }

        if candidates == 0 {
            let aia = match cert.ca_issuers.first() {
                Some(url) => format!(" (its certificate is published at {url})"),
                None => String::new(),
            };
            self.record(
                below + 1,
                false,
                format!(
                    "x509: certificate signed by unknown authority: no configured Azure root or \
                     intermediate has the subject \"{}\", the issuer of \"{}\"{aia}; add that \
                     certificate's PEM to the Azure intermediates (or roots)",
                    cert.issuer, cert.subject
                ),
            );
        }
        false
    }

    /// Checks that `issuer` may have issued `cert` at `self.now`: issuer validity and CA
    /// constraints, then the signature (cheap checks first, signature counted against the budget).
    fn check_link(
        &mut self,
        cert: &Cert,
        issuer: &Cert,
        below: usize,
    ) -> Result<(), (bool, String)> {
        issuer.check_validity(self.now).map_err(|e| (true, e))?;
        let untrusted = |msg: String| (false, msg);
        match issuer.basic_constraints {
            Some((false, _)) => {
                return Err(untrusted(format!(
                    "x509: \"{}\" is not a CA (basicConstraints cA is false)",
                    issuer.subject
                )));
            }
            Some((true, Some(max))) if below > usize::from(max) => {
                return Err(untrusted(format!(
                    "x509: too many intermediates for path length constraint of \"{}\"",
                    issuer.subject
                )));
            }
            None if !self.is_root(issuer) => {
                return Err(untrusted(format!(
                    "x509: \"{}\" is not a CA (no basicConstraints)",
                    issuer.subject
                )));
            }
            _ => {}
        }
        if issuer.key_cert_sign == Some(false) {
            return Err(untrusted(format!(
                "x509: \"{}\" may not sign certificates (keyUsage lacks keyCertSign)",
                issuer.subject
            )));
        }
        if issuer.has_name_constraints {
            return Err(untrusted(format!(
                "x509: \"{}\" has name constraints, which are not supported",
                issuer.subject
            )));
        }
        if let Some(oid) = &issuer.unhandled_critical {
            return Err(untrusted(format!(
                "x509: unhandled critical extension {oid} in \"{}\"",
                issuer.subject
            )));
        }
        if self.verifications_left == 0 {
            return Err(untrusted(
                "x509: chain building gave up (too many candidate issuers)".to_string(),
            ));
        }
        self.verifications_left -= 1;
        cert.verify_signed_by(issuer).map_err(|e| {
            untrusted(format!(
                "x509: certificate \"{}\" is not signed by \"{}\": {e}",
                cert.subject, issuer.subject
            ))
        })
    }

    fn is_root(&self, cert: &Cert) -> bool {
        self.trust.roots.iter().any(|r| r.cert.der == cert.der)
    }

    fn record(&mut self, depth: usize, expired: bool, message: String) {
        if self.best.as_ref().is_none_or(|b| depth > b.depth) {
            self.best = Some(ChainFailure {
                depth,
                expired,
                message,
            });
        }
    }
}

#[cfg(test)]
mod unit {
    use super::cn_allowed;

    #[test]
    fn signer_name_rule() {
        for ok in [
            "metadata.azure.com",
            "eastus.metadata.azure.com",
            "a.b.metadata.azure.us",
            "metadata.azure.cn",
            "metadata.microsoftazure.de",
            ".metadata.azure.com",
        ] {
            assert!(cn_allowed(ok), "{ok}");
        }
        for bad in [
            "",
            "metadata.azure.org",
            "evilmetadata.azure.com",
            "metadata.azure.com.evil.com",
            "metadata-azure.com",
            "metadataXazure.com",
            "x\n.metadata.azure.com",
            "METADATA.AZURE.COM",
            "metadata.azure.de",
        ] {
            assert!(!cn_allowed(bad), "{bad:?}");
        }
    }
}
