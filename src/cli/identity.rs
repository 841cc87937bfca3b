//! `appliance identity`: verify a proof offline, import a Google JWKS.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use serde_json::json;
use time::OffsetDateTime;

use super::output::Printer;
use crate::config::Config;
use crate::sign_in::trust_files;

#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Verify a proof with the configured trust material and print the
    /// instance id it vouches for, or why it fails.
    Verify {
        #[arg(long, value_enum)]
        cloud: CloudArg,
        /// The request body an agent would send: AWS {"document","signature"},
        /// Azure {"encoding","signature"}, Google {"json_web_token"}.
        #[arg(long, value_name = "PROOF.json")]
        file: PathBuf,
        /// Verify as of this time (RFC 3339) instead of now.
        #[arg(long, value_name = "RFC3339")]
        at: Option<String>,
    },
    /// Validate a Google JWKS document and install it at identity.gcp.jwks_file.
    ImportJwks {
        /// A JWKS document, e.g. a saved copy of https://www.googleapis.com/oauth2/v3/certs.
        file: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CloudArg {
    Aws,
    Azure,
    Google,
}

pub(super) fn run(config: &Config, cmd: IdentityCommand, out: &Printer) -> anyhow::Result<()> {
    match cmd {
        IdentityCommand::Verify { cloud, file, at } => {
            let now = match at {
                Some(at) => {
                    OffsetDateTime::parse(&at, &time::format_description::well_known::Rfc3339)
                        .with_context(|| {
                            format!(
                                "--at {at:?} is not an RFC 3339 time, e.g. 2024-04-22T17:32:44Z"
                            )
                        })?
                }
                None => OffsetDateTime::now_utc(),
            };
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let body: serde_json::Value = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not JSON: it must hold the request body an agent sends",
                    file.display()
                )
            })?;
            let field = |name: &str| -> anyhow::Result<String> {
                body.get(name)
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
                    .with_context(|| format!("{} has no string field \"{name}\"", file.display()))
            };
            let loaded = trust_files::load(&config.identity)?;
            let trust = &loaded.trust;
            let (cloud_name, result) = match cloud {
                CloudArg::Aws => (
                    "aws",
                    crate::identity::verify_aws(
                        &field("document")?,
                        &field("signature")?,
                        &trust.aws,
                    ),
                ),
                CloudArg::Azure => (
                    "azure",
                    crate::identity::verify_azure(&field("signature")?, &trust.azure, now),
                ),
                CloudArg::Google => (
                    "google",
                    crate::identity::verify_gcp(
                        &field("json_web_token")?,
                        &trust.gcp,
                        config.identity.gcp.audience.as_deref(),
                        now,
                    ),
                ),
            };
            let at = crate::sdk::rfc3339::format(&now);
            match result {
                Ok(instance_id) => {
                    out.emit(
                        &json!({"valid": true, "cloud": cloud_name, "instance_id": instance_id, "at": at}),
                        || format!("valid {cloud_name} proof for instance {instance_id:?} (checked at {at})"),
                    );
                    Ok(())
                }
                Err(e) => {
                    out.emit(&json!({"valid": false, "cloud": cloud_name, "error": e.to_string(), "at": at}), || {
                        format!("invalid {cloud_name} proof (checked at {at}): {e}")
                    });
                    bail!("the proof does not verify")
                }
            }
        }
        IdentityCommand::ImportJwks { file } => {
            let target = config.identity.gcp.jwks_file.clone().context(
                "identity.gcp.jwks_file is not set: set it in the config file (e.g. /var/lib/appliance/gcp-jwks.json) first",
            )?;
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let mut gcp = crate::identity::GcpTrust::default();
            let count = gcp
                .add_jwks_json(&bytes)
                .with_context(|| format!("{} is not a usable JWKS", file.display()))?;
            if count == 0 {
                bail!("{} holds no keys", file.display());
            }
            let kids: Vec<String> = crate::identity::Trust {
                gcp,
                ..crate::identity::Trust::default()
            }
            .summary()
            .into_iter()
            .map(|i| i.label)
            .collect();
            // Write beside the target, then rename: a running server never reads half a file.
            let tmp = target.with_extension("json.tmp");
            std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &target)
                .with_context(|| format!("installing {}", target.display()))?;
            out.emit(&json!({"installed": target, "keys": kids}), || {
                format!(
                    "installed {} key(s) ({}) at {}; reload the server (SIGHUP, e.g. systemctl reload appliance) to use them",
                    kids.len(),
                    kids.join(", "),
                    target.display()
                )
            });
            Ok(())
        }
    }
}
