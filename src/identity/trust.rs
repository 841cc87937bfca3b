//! Trust material: which AWS keys, Azure roots/intermediates and Google JWKs are accepted.
//!
//! Everything is parsed and validated when it is added, so verification never re-parses trust
//! material and a bad file is reported at startup (`appliance check-config`) rather than as a
//! mysterious 401 later. The built-in defaults mirror what coder embeds; operators add to or
//! replace them from files they control (this module never reads files itself).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::traits::PublicKeyParts;
use std::sync::atomic::{AtomicU64, Ordering};
use time::OffsetDateTime;

use super::pki::{self, Cert, PublicKey};
use super::{Cloud, IdentityError};

/// All trust material, one part per cloud.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// Keys for [`super::verify_aws`].
    pub aws: AwsTrust,
    /// Roots and intermediates for [`super::verify_azure`].
    pub azure: AzureTrust,
    /// JWKs for [`super::verify_gcp`].
    pub gcp: GcpTrust,
}

impl Trust {
    /// The defaults coder ships with: the 14 AWS `/signature` keys from
    /// coder/coder:coderd/awsidentity, the Azure roots (DigiCert Global Root G2/G3, Baltimore)
    /// and the 23 Azure intermediates from coder/coder:coderd/azureidentity, and **no** GCP keys:
    /// Google rotates its signing keys every few weeks, so any embedded JWKS would be stale;
    /// operators import the current one (`https://www.googleapis.com/oauth2/v3/certs`).
    pub fn builtin() -> Trust {
        Trust {
            aws: AwsTrust::builtin(),
            azure: AzureTrust::builtin(),
            gcp: GcpTrust::default(),
        }
    }

    /// One line per trusted key or certificate, for `appliance check-config`.
    pub fn summary(&self) -> Vec<TrustItem> {
        let mut items = self.aws.summary();
        items.extend(self.azure.summary());
        items.extend(self.gcp.summary());
        items
    }
}

/// What kind of trust anchor a [`TrustItem`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrustKind {
    /// An AWS `/signature` RSA key.
    AwsKey,
    /// An Azure trust anchor.
    AzureRoot,
    /// An Azure intermediate CA certificate (chain building only).
    AzureIntermediate,
    /// A Google RS256 JWK.
    GcpJwk,
}

impl TrustKind {
    /// `aws-key` | `azure-root` | `azure-intermediate` | `gcp-jwk`.
    pub fn as_str(self) -> &'static str {
        match self {
            TrustKind::AwsKey => "aws-key",
            TrustKind::AzureRoot => "azure-root",
            TrustKind::AzureIntermediate => "azure-intermediate",
            TrustKind::GcpJwk => "gcp-jwk",
        }
    }
}

/// One trusted key or certificate, as shown by `appliance check-config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustItem {
    /// Which cloud this item verifies proofs for.
    pub cloud: Cloud,
    /// What kind of item it is.
    pub kind: TrustKind,
    /// AWS: the key's label(s) joined with `,` (region group, e.g. `other`, `hongkong`);
    /// Azure: the certificate subject DN (RFC 4514); GCP: the `kid`.
    pub label: String,
    /// Where it came from: `builtin`, or the label/source given when it was added.
    pub source: String,
    /// Key type and size: `rsa-1024`, `rsa-4096`, `ec-p384`, ...
    pub key: String,
    /// Certificate notAfter when known (AWS keys loaded from certificates, Azure certificates).
    /// Informational for AWS: AWS keys outlive their certificates and dates are not enforced.
    pub not_after: Option<OffsetDateTime>,
}

// ---------------------------------------------------------------------------------------------
// AWS

/// The keys coder embeds (coder/coder:coderd/awsidentity/awsidentity.go), by coder's region
/// name. `tests/fixtures/identity/certs/aws/README.md` documents each file's provenance.
const AWS_BUILTIN: &[(&str, &str)] = &[
    ("other", include_str!("certs/aws/other-aws-regions.pem")),
    (
        "hongkong",
        include_str!("certs/aws/asia-pacific-hong-kong.pem"),
    ),
    ("bahrain", include_str!("certs/aws/middle-east-bahrain.pem")),
    ("uae", include_str!("certs/aws/middle-east-uae.pem")),
    ("capetown", include_str!("certs/aws/africa-cape-town.pem")),
    ("milan", include_str!("certs/aws/europe-milan.pem")),
    ("spain", include_str!("certs/aws/europe-spain.pem")),
    ("zurich", include_str!("certs/aws/europe-zurich.pem")),
    (
        "jakarta",
        include_str!("certs/aws/asia-pacific-jakarta.pem"),
    ),
    (
        "melbourne",
        include_str!("certs/aws/asia-pacific-melbourne.pem"),
    ),
    (
        "hyderabad",
        include_str!("certs/aws/asia-pacific-hyderabad.pem"),
    ),
    ("china", include_str!("certs/aws/china.pem")),
    ("govcloud", include_str!("certs/aws/aws-govcloud-us.pem")),
    (
        "telaviv",
        include_str!("certs/aws/il-central-1-tel-aviv.pem"),
    ),
];

/// One AWS RSA key, possibly known under several labels (the same key re-issued in a new
/// certificate, or added once per region).
#[derive(Debug, Clone)]
pub(super) struct AwsKey {
    pub labels: Vec<String>,
    pub source: String,
    pub key: rsa::PublicKey,
    pub not_after: Option<OffsetDateTime>,
    /// Loaded by [`AwsTrust::builtin`] (as opposed to added by the operator).
    pub builtin: bool,
    /// coder's region group when this is one of the built-in keys, also when the operator
    /// supplied it from a file of their own (so `other-aws-regions.pem` under any file name is
    /// still the key for `us-east-1`).
    pub builtin_group: Option<&'static str>,
}

impl AwsKey {
    /// True if this key is meant for documents from `region`, whose coder region group is
    /// `group`: a label (or a label's file name without `.pem`/`.crt`/`.cer`) equals the region
    /// code or the group, or the key is the built-in key of that group.
    pub(super) fn applies_to(&self, region: &str, group: &str) -> bool {
        let named = |name: &str| !name.is_empty() && (name == region || name == group);
        self.builtin_group == Some(group)
            || self.labels.iter().any(|l| named(l) || named(label_stem(l)))
    }
}

/// The file name of a label that is a path, without a `.pem`, `.crt` or `.cer` extension (any
/// case): `/etc/appliance/aws/eu-south-1.pem` → `eu-south-1`. Other labels are returned whole.
pub(super) fn label_stem(label: &str) -> &str {
    let base = label.rsplit(['/', '\\']).next().unwrap_or(label);
    let cut = base.len().saturating_sub(4);
    match (base.get(..cut), base.get(cut..)) {
        (Some(stem), Some(ext))
            if !stem.is_empty()
                && [".pem", ".crt", ".cer"]
                    .iter()
                    .any(|e| ext.eq_ignore_ascii_case(e)) =>
        {
            stem
        }
        _ => base,
    }
}

/// Slots in [`KeyHints`]; regions hash into them (a collision only costs a verification).
const HINT_SLOTS: usize = 64;
/// Longer `region` values (no real one is) get no hint: not worth hashing.
const MAX_HINTED_REGION_LEN: usize = 64;

/// Per region, which key verified a document from that region last, so the next document from
/// there is checked against it first. A hint changes what a sign-in costs, never whether it is
/// accepted: it only reorders the (at most two) keys that apply to the region anyway. Regions
/// hash into a fixed table of atomics (no allocation, no lock); each slot holds a 32-bit tag of
/// the region and the key's index + 1 (0: empty), and is only written after a successful
/// verification, so a forged document cannot move it. Reset whenever the keys change.
pub(super) struct KeyHints {
    slots: [AtomicU64; HINT_SLOTS],
}

impl KeyHints {
    /// The slot `region` hashes to and the tag that marks it as this region's (FNV-1a).
    fn slot(&self, region: &str) -> Option<(&AtomicU64, u64)> {
        if region.len() > MAX_HINTED_REGION_LEN {
            return None;
        }
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in region.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        // The remainder is below HINT_SLOTS, so the cast is lossless and the index in range.
        let slot = &self.slots[(hash % HINT_SLOTS as u64) as usize];
        Some((slot, hash >> 32))
    }

    /// The key that last verified a document from `region`, if remembered.
    pub(super) fn get(&self, region: &str) -> Option<usize> {
        let (slot, tag) = self.slot(region)?;
        let value = slot.load(Ordering::Relaxed);
        if value >> 32 != tag {
            return None;
        }
        usize::try_from(value & 0xffff_ffff).ok()?.checked_sub(1)
    }

    /// Remembers that key `index` verified a document from `region` (a store only on change).
    pub(super) fn set(&self, region: &str, index: usize) {
        let Some(stored) = index.checked_add(1).and_then(|i| u32::try_from(i).ok()) else {
            return;
        };
        let Some((slot, tag)) = self.slot(region) else {
            return;
        };
        let value = (tag << 32) | u64::from(stored);
        if slot.load(Ordering::Relaxed) != value {
            slot.store(value, Ordering::Relaxed);
        }
    }

    /// Forgets everything (key indices are about to change).
    fn reset(&mut self) {
        for slot in &mut self.slots {
            *slot.get_mut() = 0;
        }
    }
}

impl Default for KeyHints {
    fn default() -> KeyHints {
        KeyHints {
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Clone for KeyHints {
    fn clone(&self) -> KeyHints {
        KeyHints {
            slots: std::array::from_fn(|i| AtomicU64::new(self.slots[i].load(Ordering::Relaxed))),
        }
    }
}

impl std::fmt::Debug for KeyHints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let used = self
            .slots
            .iter()
            .filter(|s| s.load(Ordering::Relaxed) != 0)
            .count();
        f.debug_struct("KeyHints").field("used", &used).finish()
    }
}

/// AWS `/signature` keys. Certificates only wrap the key: dates are never enforced (the
/// "other regions" certificate expired in 2024 and its key is still the live one).
///
/// Which keys a document is checked against (at most two, see [`super::verify_aws`]) depends
/// on its `region`: the operator's key for that region, else the operator's first key; and the
/// built-in key of the region's group. An operator key is *for* a region when its label, or the
/// file name the label is a path to, is the region code or coder's group name
/// (`/etc/appliance/aws/ap-southeast-5.pem`, `.../hongkong.pem`), or when it is one of the
/// built-in keys under another name. The key that verified last for a region goes first.
#[derive(Debug, Clone, Default)]
pub struct AwsTrust {
    pub(super) keys: Vec<AwsKey>,
    pub(super) hints: KeyHints,
}

impl AwsTrust {
    /// coder's 14 built-in keys (see [`Trust::builtin`]).
    pub fn builtin() -> AwsTrust {
        let mut trust = AwsTrust::default();
        for (group, key, not_after) in builtin_keys() {
            trust.keys.push(AwsKey {
                labels: vec![group.to_string()],
                source: "builtin".to_string(),
                key,
                not_after,
                builtin: true,
                builtin_group: Some(group),
            });
        }
        debug_assert_eq!(trust.keys.len(), AWS_BUILTIN.len());
        trust
    }

    /// Adds every key in `pem` under `label`. Accepts `CERTIFICATE` (the key is taken, dates
    /// ignored), `PUBLIC KEY` (SPKI) and `RSA PUBLIC KEY` (PKCS#1) blocks; every block must hold
    /// an RSA key. `label` is where the keys came from (the configuration passes the file's
    /// path); when it, or the file name it ends in (without `.pem`/`.crt`/`.cer`), is an AWS
    /// region code (`eu-south-1`) or coder's region group (`other`, `hongkong`, ...), the keys
    /// are the operator's keys for documents from that region (see [`AwsTrust`]). A key that is
    /// already present only gains the label. Nothing is added if any block is unusable. Returns
    /// the number of key blocks read.
    pub fn add_pem(&mut self, label: &str, pem: &str) -> Result<usize, IdentityError> {
        let parsed = parse_aws_pem(label, pem)?;
        Ok(self.insert_keys(label, parsed))
    }

    /// Replaces every key carrying `label` with the keys in `pem` (coder's per-region override:
    /// an operator-supplied region replaces that region's default). Keys that also carry other
    /// labels keep those.
    pub fn replace_label_pem(&mut self, label: &str, pem: &str) -> Result<usize, IdentityError> {
        let parsed = parse_aws_pem(label, pem)?;
        self.remove_label(label);
        Ok(self.insert_keys(label, parsed))
    }

    /// Drops all keys and adds the ones in `pem` under `label`.
    pub fn replace_with_pem(&mut self, label: &str, pem: &str) -> Result<usize, IdentityError> {
        let parsed = parse_aws_pem(label, pem)?;
        self.clear();
        Ok(self.insert_keys(label, parsed))
    }

    /// Removes `label` from every key and drops keys left without a label.
    pub fn remove_label(&mut self, label: &str) {
        for key in &mut self.keys {
            key.labels.retain(|l| l != label);
        }
        self.keys.retain(|k| !k.labels.is_empty());
        self.hints.reset();
    }

    /// Removes every key (verification then always fails).
    pub fn clear(&mut self) {
        self.keys.clear();
        self.hints.reset();
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True if no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Adds operator keys under `label` (never `builtin`, even when equal to a built-in key:
    /// that one then only gains the label).
    fn insert_keys(
        &mut self,
        label: &str,
        parsed: Vec<(rsa::PublicKey, Option<OffsetDateTime>)>,
    ) -> usize {
        let count = parsed.len();
        self.hints.reset();
        let known = if parsed.is_empty() {
            Vec::new()
        } else {
            builtin_keys()
        };
        for (key, not_after) in parsed {
            let builtin_group = known.iter().find(|(_, k, _)| *k == key).map(|(g, _, _)| *g);
            if let Some(existing) = self.keys.iter_mut().find(|k| k.key == key) {
                if !existing.labels.iter().any(|l| l == label) {
                    existing.labels.push(label.to_string());
                }
                existing.not_after = match (existing.not_after, not_after) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                existing.builtin_group = existing.builtin_group.or(builtin_group);
            } else {
                self.keys.push(AwsKey {
                    labels: vec![label.to_string()],
                    source: label.to_string(),
                    key,
                    not_after,
                    builtin: false,
                    builtin_group,
                });
            }
        }
        count
    }

    fn summary(&self) -> Vec<TrustItem> {
        self.keys
            .iter()
            .map(|k| TrustItem {
                cloud: Cloud::Aws,
                kind: TrustKind::AwsKey,
                label: k.labels.join(","),
                source: k.source.clone(),
                key: format!("rsa-{}", k.key.n().bit_width_vartime()),
                not_after: k.not_after,
            })
            .collect()
    }
}

/// The built-in keys, parsed: (region group, key, certificate notAfter).
fn builtin_keys() -> Vec<(&'static str, rsa::PublicKey, Option<OffsetDateTime>)> {
    let mut keys = Vec::with_capacity(AWS_BUILTIN.len());
    for (group, pem) in AWS_BUILTIN {
        let parsed = parse_aws_pem(group, pem);
        debug_assert!(parsed.is_ok(), "built-in AWS key {group}: {parsed:?}");
        for (key, not_after) in parsed.unwrap_or_default() {
            keys.push((*group, key, not_after));
        }
    }
    keys
}

/// Parses an AWS PEM file into RSA keys, all-or-nothing.
fn parse_aws_pem(
    label: &str,
    pem: &str,
) -> Result<Vec<(rsa::PublicKey, Option<OffsetDateTime>)>, IdentityError> {
    let bad = |msg: String| IdentityError::InvalidTrust(format!("AWS key \"{label}\": {msg}"));
    if label.trim().is_empty() {
        return Err(bad("label must not be empty".to_string()));
    }
    let blocks = pki::parse_pem(pem).map_err(bad)?;
    let mut keys = Vec::with_capacity(blocks.len());
    for (index, block) in blocks.iter().enumerate() {
        let n = index + 1;
        let (key, not_after) = match block.label.as_str() {
            "CERTIFICATE" => {
                let cert =
                    Cert::from_der(&block.der).map_err(|e| bad(format!("PEM block {n}: {e}")))?;
                let key = cert
                    .key
                    .map_err(|e| bad(format!("PEM block {n} (\"{}\"): {e}", cert.subject)))?;
                (key, Some(cert.not_after))
            }
            "PUBLIC KEY" => {
                let key = PublicKey::from_spki_der(&block.der)
                    .map_err(|e| bad(format!("PEM block {n}: {e}")))?;
                (key, None)
            }
            "RSA PUBLIC KEY" => {
                use rsa::pkcs1::DecodeRsaPublicKey;
                let key = rsa::PublicKey::from_pkcs1_der(&block.der)
                    .map_err(|e| bad(format!("PEM block {n}: unusable RSA key: {e}")))?;
                (PublicKey::Rsa(key), None)
            }
            other => {
                return Err(bad(format!(
                    "PEM block {n} is \"{other}\"; expected CERTIFICATE, PUBLIC KEY or RSA PUBLIC KEY"
                )));
            }
        };
        match key {
            PublicKey::Rsa(key) => keys.push((key, not_after)),
            other => {
                return Err(bad(format!(
                    "PEM block {n} holds a {} key; AWS /signature keys are RSA",
                    other.describe()
                )));
            }
        }
    }
    Ok(keys)
}

// ---------------------------------------------------------------------------------------------
// Azure

const AZURE_BUILTIN_ROOTS: &[(&str, &str)] = &[
    (
        "baltimore-cybertrust-root.pem",
        include_str!("certs/azure/roots/baltimore-cybertrust-root.pem"),
    ),
    (
        "digicert-global-root-g2.pem",
        include_str!("certs/azure/roots/digicert-global-root-g2.pem"),
    ),
    (
        "digicert-global-root-g3.pem",
        include_str!("certs/azure/roots/digicert-global-root-g3.pem"),
    ),
];

const AZURE_BUILTIN_INTERMEDIATES: &[(&str, &str)] = &[
    (
        "microsoft-azure-ecc-tls-issuing-ca-03.pem",
        include_str!("certs/azure/intermediates/microsoft-azure-ecc-tls-issuing-ca-03.pem"),
    ),
    (
        "microsoft-azure-ecc-tls-issuing-ca-04.pem",
        include_str!("certs/azure/intermediates/microsoft-azure-ecc-tls-issuing-ca-04.pem"),
    ),
    (
        "microsoft-azure-ecc-tls-issuing-ca-07.pem",
        include_str!("certs/azure/intermediates/microsoft-azure-ecc-tls-issuing-ca-07.pem"),
    ),
    (
        "microsoft-azure-ecc-tls-issuing-ca-08.pem",
        include_str!("certs/azure/intermediates/microsoft-azure-ecc-tls-issuing-ca-08.pem"),
    ),
    (
        "microsoft-azure-rsa-tls-issuing-ca-03.pem",
        include_str!("certs/azure/intermediates/microsoft-azure-rsa-tls-issuing-ca-03.pem"),
    ),
    (
        "microsoft-azure-rsa-tls-issuing-ca-04.pem",
        include_str!("certs/azure/intermediates/microsoft-azure-rsa-tls-issuing-ca-04.pem"),
    ),
    (
        "microsoft-azure-rsa-tls-issuing-ca-07.pem",
        include_str!("certs/azure/intermediates/microsoft-azure-rsa-tls-issuing-ca-07.pem"),
    ),
    (
        "microsoft-azure-rsa-tls-issuing-ca-08.pem",
        include_str!("certs/azure/intermediates/microsoft-azure-rsa-tls-issuing-ca-08.pem"),
    ),
    (
        "microsoft-azure-tls-issuing-ca-01.pem",
        include_str!("certs/azure/intermediates/microsoft-azure-tls-issuing-ca-01.pem"),
    ),
    (
        "microsoft-azure-tls-issuing-ca-02.pem",
        include_str!("certs/azure/intermediates/microsoft-azure-tls-issuing-ca-02.pem"),
    ),
    (
        "microsoft-azure-tls-issuing-ca-05.pem",
        include_str!("certs/azure/intermediates/microsoft-azure-tls-issuing-ca-05.pem"),
    ),
    (
        "microsoft-azure-tls-issuing-ca-06.pem",
        include_str!("certs/azure/intermediates/microsoft-azure-tls-issuing-ca-06.pem"),
    ),
    (
        "microsoft-rsa-tls-ca-01.pem",
        include_str!("certs/azure/intermediates/microsoft-rsa-tls-ca-01.pem"),
    ),
    (
        "microsoft-rsa-tls-ca-02.pem",
        include_str!("certs/azure/intermediates/microsoft-rsa-tls-ca-02.pem"),
    ),
    (
        "microsoft-tls-g2-rsa-ca-ocsp-02.pem",
        include_str!("certs/azure/intermediates/microsoft-tls-g2-rsa-ca-ocsp-02.pem"),
    ),
    (
        "microsoft-tls-g2-rsa-ca-ocsp-04.pem",
        include_str!("certs/azure/intermediates/microsoft-tls-g2-rsa-ca-ocsp-04.pem"),
    ),
    (
        "microsoft-tls-g2-rsa-ca-ocsp-06.pem",
        include_str!("certs/azure/intermediates/microsoft-tls-g2-rsa-ca-ocsp-06.pem"),
    ),
    (
        "microsoft-tls-g2-rsa-ca-ocsp-08.pem",
        include_str!("certs/azure/intermediates/microsoft-tls-g2-rsa-ca-ocsp-08.pem"),
    ),
    (
        "microsoft-tls-g2-rsa-ca-ocsp-10.pem",
        include_str!("certs/azure/intermediates/microsoft-tls-g2-rsa-ca-ocsp-10.pem"),
    ),
    (
        "microsoft-tls-g2-rsa-ca-ocsp-12.pem",
        include_str!("certs/azure/intermediates/microsoft-tls-g2-rsa-ca-ocsp-12.pem"),
    ),
    (
        "microsoft-tls-g2-rsa-ca-ocsp-14.pem",
        include_str!("certs/azure/intermediates/microsoft-tls-g2-rsa-ca-ocsp-14.pem"),
    ),
    (
        "microsoft-tls-g2-rsa-ca-ocsp-16.pem",
        include_str!("certs/azure/intermediates/microsoft-tls-g2-rsa-ca-ocsp-16.pem"),
    ),
    (
        "microsoft-tls-rsa-root-g2.pem",
        include_str!("certs/azure/intermediates/microsoft-tls-rsa-root-g2.pem"),
    ),
];

/// A configured Azure CA certificate and where it came from.
#[derive(Debug, Clone)]
pub(super) struct AzureCert {
    pub cert: Cert,
    pub source: String,
}

/// Azure trust anchors (roots) and the intermediates used to connect the envelope's leaf to
/// them. IMDS envelopes carry only the leaf, and this appliance never downloads AIA
/// certificates, so every intermediate in use must be configured here.
#[derive(Debug, Clone, Default)]
pub struct AzureTrust {
    pub(super) roots: Vec<AzureCert>,
    pub(super) intermediates: Vec<AzureCert>,
}

impl AzureTrust {
    /// Built-in roots and intermediates (see [`Trust::builtin`]).
    pub fn builtin() -> AzureTrust {
        let mut trust = AzureTrust::default();
        for (label, pem) in AZURE_BUILTIN_ROOTS {
            let added = parse_azure_pem(label, pem).map(|certs| {
                add_certs(&mut trust.roots, "builtin", certs);
            });
            debug_assert!(added.is_ok(), "built-in Azure root {label}: {added:?}");
        }
        for (label, pem) in AZURE_BUILTIN_INTERMEDIATES {
            let added = parse_azure_pem(label, pem).map(|certs| {
                add_certs(&mut trust.intermediates, "builtin", certs);
            });
            debug_assert!(
                added.is_ok(),
                "built-in Azure intermediate {label}: {added:?}"
            );
        }
        trust
    }

    /// Adds the `CERTIFICATE` blocks in `pem` as trust anchors. `label` names the source (file
    /// path) in summaries and errors. Certificates already present are not duplicated. Nothing
    /// is added if any block is unusable (not a certificate, unsupported key type). Returns the
    /// number of certificates read.
    pub fn add_root_pem(&mut self, label: &str, pem: &str) -> Result<usize, IdentityError> {
        let certs = parse_azure_pem(label, pem)?;
        Ok(add_certs(&mut self.roots, label, certs))
    }

    /// Adds the `CERTIFICATE` blocks in `pem` as intermediates (untrusted on their own; used
    /// only to build a chain to a root). Same rules as [`AzureTrust::add_root_pem`].
    pub fn add_intermediate_pem(&mut self, label: &str, pem: &str) -> Result<usize, IdentityError> {
        let certs = parse_azure_pem(label, pem)?;
        Ok(add_certs(&mut self.intermediates, label, certs))
    }

    /// Removes every root (verification then always fails).
    pub fn clear_roots(&mut self) {
        self.roots.clear();
    }

    /// Removes every intermediate.
    pub fn clear_intermediates(&mut self) {
        self.intermediates.clear();
    }

    /// Number of roots.
    pub fn root_count(&self) -> usize {
        self.roots.len()
    }

    /// Number of intermediates.
    pub fn intermediate_count(&self) -> usize {
        self.intermediates.len()
    }

    fn summary(&self) -> Vec<TrustItem> {
        let item = |c: &AzureCert, kind| TrustItem {
            cloud: Cloud::Azure,
            kind,
            label: c.cert.subject.clone(),
            source: c.source.clone(),
            key: c
                .cert
                .key
                .as_ref()
                .map(PublicKey::describe)
                .unwrap_or_else(|_| "unsupported".to_string()),
            not_after: Some(c.cert.not_after),
        };
        self.roots
            .iter()
            .map(|c| item(c, TrustKind::AzureRoot))
            .chain(
                self.intermediates
                    .iter()
                    .map(|c| item(c, TrustKind::AzureIntermediate)),
            )
            .collect()
    }
}

/// Parses an Azure PEM file into certificates whose keys can sign, all-or-nothing.
fn parse_azure_pem(label: &str, pem: &str) -> Result<Vec<Cert>, IdentityError> {
    let bad =
        |msg: String| IdentityError::InvalidTrust(format!("Azure certificate \"{label}\": {msg}"));
    let blocks = pki::parse_pem(pem).map_err(bad)?;
    let mut certs = Vec::with_capacity(blocks.len());
    for (index, block) in blocks.iter().enumerate() {
        let n = index + 1;
        if block.label != "CERTIFICATE" {
            return Err(bad(format!(
                "PEM block {n} is \"{}\"; expected CERTIFICATE",
                block.label
            )));
        }
        let cert = Cert::from_der(&block.der).map_err(|e| bad(format!("PEM block {n}: {e}")))?;
        if let Err(e) = &cert.key {
            return Err(bad(format!("PEM block {n} (\"{}\"): {e}", cert.subject)));
        }
        certs.push(cert);
    }
    Ok(certs)
}

fn add_certs(list: &mut Vec<AzureCert>, source: &str, certs: Vec<Cert>) -> usize {
    let count = certs.len();
    for cert in certs {
        if !list.iter().any(|c| c.cert.der == cert.der) {
            list.push(AzureCert {
                cert,
                source: source.to_string(),
            });
        }
    }
    count
}

// ---------------------------------------------------------------------------------------------
// GCP

/// Largest JWKS document accepted (Google's is ~2 KiB).
const MAX_JWKS_LEN: usize = 1 << 20;
/// Most keys accepted from one JWKS document.
const MAX_JWKS_KEYS: usize = 1000;
/// Longest `kid` accepted (Google's are 40 hex digits).
const MAX_KID_LEN: usize = 256;

/// One RSA signing key from a JWKS.
#[derive(Debug, Clone)]
pub(super) struct Jwk {
    pub kid: String,
    pub key: rsa::PublicKey,
}

/// Google ID-token keys (RS256 JWKs), looked up by `kid`. Empty by default.
#[derive(Debug, Clone, Default)]
pub struct GcpTrust {
    pub(super) keys: Vec<Jwk>,
}

impl GcpTrust {
    /// Adds the keys of a JWKS document (`{"keys":[{"kty":"RSA","kid":..,"n":..,"e":..}]}`,
    /// the format of `https://www.googleapis.com/oauth2/v3/certs`). Validation is strict and
    /// all-or-nothing: every key must be an RSA key with a non-empty `kid` and base64url `n`/`e`
    /// forming a usable public key; `alg`, if present, must be `RS256`; `use`, if present, must
    /// be `sig`; private-key members are refused. A `kid` already present with the same key is
    /// skipped; with a different key it is an error (the lookup would be ambiguous). Returns the
    /// number of keys in the document.
    pub fn add_jwks_json(&mut self, json: &[u8]) -> Result<usize, IdentityError> {
        let bad = |msg: String| IdentityError::InvalidTrust(format!("GCP JWKS: {msg}"));
        if json.len() > MAX_JWKS_LEN {
            return Err(bad(format!("document is too large ({} bytes)", json.len())));
        }
        let doc: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let keys = doc
            .as_object()
            .and_then(|o| o.get("keys"))
            .and_then(|k| k.as_array())
            .ok_or_else(|| bad("expected an object with a \"keys\" array".to_string()))?;
        if keys.is_empty() {
            return Err(bad("\"keys\" is empty".to_string()));
        }
        if keys.len() > MAX_JWKS_KEYS {
            return Err(bad(format!("too many keys ({})", keys.len())));
        }
        let mut parsed: Vec<Jwk> = Vec::with_capacity(keys.len());
        for (index, value) in keys.iter().enumerate() {
            let jwk = parse_jwk(value).map_err(|e| bad(format!("key #{index}: {e}")))?;
            let clash = parsed
                .iter()
                .chain(self.keys.iter())
                .find(|k| k.kid == jwk.kid);
            match clash {
                Some(existing) if existing.key == jwk.key => {}
                Some(_) => {
                    return Err(bad(format!(
                        "key #{index}: kid \"{}\" is already configured with a different key",
                        jwk.kid
                    )));
                }
                None => parsed.push(jwk),
            }
        }
        let count = keys.len();
        self.keys.extend(parsed);
        Ok(count)
    }

    /// Removes every key (verification then always fails with an unknown `kid`).
    pub fn clear(&mut self) {
        self.keys.clear();
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True if no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(super) fn find(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    fn summary(&self) -> Vec<TrustItem> {
        self.keys
            .iter()
            .map(|k| TrustItem {
                cloud: Cloud::Google,
                kind: TrustKind::GcpJwk,
                label: k.kid.clone(),
                source: "jwks".to_string(),
                key: format!("rsa-{}", k.key.n().bit_width_vartime()),
                not_after: None,
            })
            .collect()
    }
}

/// Validates one JWK object and builds its RSA key.
fn parse_jwk(value: &serde_json::Value) -> Result<Jwk, String> {
    let obj = value.as_object().ok_or("not a JSON object")?;
    let string_member = |name: &str| -> Result<Option<&str>, String> {
        match obj.get(name) {
            None => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(format!("\"{name}\" must be a string")),
        }
    };
    match string_member("kty")? {
        Some("RSA") => {}
        Some(other) => return Err(format!("kty \"{other}\" is not supported (only RSA keys)")),
        None => return Err("missing \"kty\"".to_string()),
    }
    let kid = string_member("kid")?.ok_or("missing \"kid\"")?;
    if kid.is_empty() || kid.len() > MAX_KID_LEN {
        return Err(format!("\"kid\" must be 1..={MAX_KID_LEN} characters"));
    }
    if let Some(alg) = string_member("alg")?
        && alg != "RS256"
    {
        return Err(format!(
            "kid \"{kid}\": alg \"{alg}\" is not supported (only RS256)"
        ));
    }
    if let Some(usage) = string_member("use")?
        && usage != "sig"
    {
        return Err(format!("kid \"{kid}\": use \"{usage}\" is not \"sig\""));
    }
    for private in ["d", "p", "q", "dp", "dq", "qi", "oth"] {
        if obj.contains_key(private) {
            return Err(format!(
                "kid \"{kid}\" contains private key member \"{private}\"; import the public JWKS"
            ));
        }
    }
    let n = decode_b64url_uint(
        string_member("n")?.ok_or_else(|| format!("kid \"{kid}\": missing \"n\""))?,
    )
    .map_err(|e| format!("kid \"{kid}\": \"n\": {e}"))?;
    let e = decode_b64url_uint(
        string_member("e")?.ok_or_else(|| format!("kid \"{kid}\": missing \"e\""))?,
    )
    .map_err(|e| format!("kid \"{kid}\": \"e\": {e}"))?;
    // Bound sizes before building big integers: n up to 8192 bits, e up to 64 bits.
    if n.len() > 1024 {
        return Err(format!("kid \"{kid}\": modulus larger than 8192 bits"));
    }
    if e.len() > 8 {
        return Err(format!("kid \"{kid}\": public exponent too large"));
    }
    let n = rsa::BoxedUint::from_be_slice_vartime(&n);
    let e = rsa::BoxedUint::from_be_slice_vartime(&e);
    let key = rsa::PublicKey::new(n, e)
        .map_err(|err| format!("kid \"{kid}\": unusable RSA key: {err}"))?;
    Ok(Jwk {
        kid: kid.to_string(),
        key,
    })
}

/// Decodes a JWK base64url unsigned integer (RFC 7518 §6.3.1), stripping leading zero bytes.
fn decode_b64url_uint(s: &str) -> Result<Vec<u8>, String> {
    // RFC 7518 says no padding; tolerate it, since some generators emit it.
    let bytes = URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|e| format!("bad base64url: {e}"))?;
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let value = bytes.get(skip..).unwrap_or_default().to_vec();
    if value.is_empty() {
        return Err("value is zero or empty".to_string());
    }
    Ok(value)
}
