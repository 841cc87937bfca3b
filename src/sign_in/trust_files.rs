//! Builds the instance-identity trust material from the configuration: the
//! built-in keys and certificates, plus the PEM files, directories and JWKS the
//! operator named. The reading happens here, so `identity` stays free of I/O.

use std::path::{Path, PathBuf};

use anyhow::Context;
use time::OffsetDateTime;

use crate::config::IdentityConfig;
use crate::identity::{Trust, TrustItem, TrustKind};

/// Trust material and what the operator should hear about it.
pub struct Loaded {
    pub trust: Trust,
    /// Non-fatal problems (e.g. a configured JWKS file that does not exist yet).
    pub warnings: Vec<String>,
    /// Worth knowing, not a problem (e.g. GCP sign-in is off: no keys configured).
    pub notes: Vec<String>,
}

/// The PEM files a configured path stands for: the file itself, or the
/// `*.pem`/`*.crt` files of a directory, sorted.
fn pem_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).with_context(|| format!("listing {}", path.display()))? {
        let p = entry?.path();
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        if p.is_file() && matches!(ext, "pem" | "crt" | "cer") {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

fn for_each_pem(
    paths: &[PathBuf],
    key: &str,
    mut add: impl FnMut(&str, &str) -> Result<usize, crate::identity::IdentityError>,
) -> anyhow::Result<()> {
    for path in paths {
        for file in pem_files(path).with_context(|| format!("{key}: {}", path.display()))? {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("{key}: reading {}", file.display()))?;
            let label = file.display().to_string();
            add(&label, &text).with_context(|| format!("{key}: {}", file.display()))?;
        }
    }
    Ok(())
}

/// Reads everything `config` names. Unreadable or invalid files are errors
/// (naming the key and file); a JWKS file that does not exist yet is a warning,
/// so a server without GCP agents starts before anyone imports one.
pub fn load(config: &IdentityConfig) -> anyhow::Result<Loaded> {
    let mut trust = Trust::builtin();
    let mut warnings = Vec::new();
    let mut notes = Vec::new();
    if !config.aws.builtin {
        trust.aws.clear();
    }
    for_each_pem(
        &config.aws.certificates,
        "identity.aws.certificates",
        |l, t| trust.aws.add_pem(l, t),
    )?;
    if !config.azure.builtin {
        trust.azure.clear_roots();
        trust.azure.clear_intermediates();
    }
    for_each_pem(&config.azure.roots, "identity.azure.roots", |l, t| {
        trust.azure.add_root_pem(l, t)
    })?;
    for_each_pem(
        &config.azure.intermediates,
        "identity.azure.intermediates",
        |l, t| trust.azure.add_intermediate_pem(l, t),
    )?;
    if let Some(path) = &config.gcp.jwks_file {
        match std::fs::read(path) {
            Ok(bytes) => {
                trust
                    .gcp
                    .add_jwks_json(&bytes)
                    .with_context(|| format!("identity.gcp.jwks_file: {}", path.display()))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => warnings.push(format!(
                "identity.gcp.jwks_file {} does not exist: GCP sign-ins will fail until you run `appliance identity import-jwks FILE`",
                path.display()
            )),
            Err(e) => {
                return Err(e).with_context(|| format!("identity.gcp.jwks_file: reading {}", path.display()));
            }
        }
    }
    if trust.aws.is_empty() {
        warnings.push("no AWS keys are trusted: AWS sign-ins will fail (identity.aws)".into());
    }
    if trust.azure.root_count() == 0 {
        warnings
            .push("no Azure roots are trusted: Azure sign-ins will fail (identity.azure)".into());
    }
    if trust.gcp.is_empty() && config.gcp.jwks_url.is_none() {
        notes.push(
            "GCP sign-in is off: no Google keys; set identity.gcp.jwks_file (appliance identity import-jwks) or identity.gcp.jwks_url to accept GCP sign-ins"
                .into(),
        );
    }
    Ok(Loaded {
        trust,
        warnings,
        notes,
    })
}

/// Certificates that expire within this long are called out.
pub const EXPIRY_WARNING: time::Duration = time::Duration::days(60);

/// The trust material as `check-config` shows it: counts per kind, then one
/// line per item with its expiry, and a warning for what expires soon. AWS
/// certificate dates are shown but never enforced.
pub fn describe(trust: &Trust, now: OffsetDateTime) -> (Vec<String>, Vec<String>) {
    let items = trust.summary();
    let mut lines = Vec::new();
    let mut warnings = Vec::new();
    let mut expired_builtin = 0;
    for kind in [
        TrustKind::AwsKey,
        TrustKind::AzureRoot,
        TrustKind::AzureIntermediate,
        TrustKind::GcpJwk,
    ] {
        let of_kind: Vec<&TrustItem> = items.iter().filter(|i| i.kind == kind).collect();
        lines.push(format!("{}: {}", kind.as_str(), of_kind.len()));
        for item in of_kind {
            let expiry = match item.not_after {
                Some(t) => format!("expires {}", crate::sdk::rfc3339::format(&t)),
                None => "no expiry".to_string(),
            };
            lines.push(format!(
                "  {} [{}] {} ({})",
                item.label, item.key, expiry, item.source
            ));
            if kind != TrustKind::AwsKey
                && let Some(t) = item.not_after
            {
                if t < now && item.source == "builtin" {
                    // Kept so that older documents still verify; nothing to do.
                    expired_builtin += 1;
                } else if t < now {
                    warnings.push(format!(
                        "{} {} expired on {}",
                        kind.as_str(),
                        item.label,
                        crate::sdk::rfc3339::format(&t)
                    ));
                } else if t - now < EXPIRY_WARNING {
                    warnings.push(format!(
                        "{} {} expires on {} (within 60 days): add its successor",
                        kind.as_str(),
                        item.label,
                        crate::sdk::rfc3339::format(&t)
                    ));
                }
            }
        }
    }
    if expired_builtin > 0 {
        lines.push(format!(
            "({expired_builtin} built-in certificates have expired; they are kept for documents signed while they were valid)"
        ));
    }
    (lines, warnings)
}
