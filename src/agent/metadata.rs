//! Fetching an instance-identity proof from the cloud's metadata service,
//! request for request as Coder's agent does (coder/coder:codersdk/agentsdk):
//!
//! - AWS (IMDSv2): `PUT /latest/api/token` with
//!   `X-aws-ec2-metadata-token-ttl-seconds: 21600`, then
//!   `GET /latest/dynamic/instance-identity/signature` and `.../document` with
//!   `X-aws-ec2-metadata-token`; body `{"signature","document"}`, both verbatim.
//! - Azure: `GET /metadata/attested/document?api-version=2020-09-01` with
//!   `Metadata: true`; its `signature` and `encoding` are forwarded.
//! - Google: `GET /computeMetadata/v1/instance/service-accounts/<sa>/identity?audience=coder&format=full`
//!   with `Metadata-Flavor: Google`; body `{"json_web_token"}`.
//!
//! Every body gets `agent_name` only when a name was given. Unlike upstream,
//! which posts whatever the metadata service answered, a non-2xx answer is
//! an error here: 5xx and 429 are retried, anything else names the URL and
//! status, since the proof could only be rejected.

use std::time::Instant;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value};

use super::AuthMethod;
use super::http::{Client, Failure};

/// What to fetch, from where.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: AuthMethod,
    /// Base URL of the metadata service, without a trailing slash.
    pub base: &'a str,
    /// Google only: the service account whose identity token is requested.
    pub gcp_service_account: &'a str,
    /// Added to the body as `agent_name` when not empty.
    pub agent_name: &'a str,
}

/// AWS: the IMDSv2 session token lifetime Coder's agent asks for (6 h).
pub const AWS_TOKEN_TTL_SECONDS: &str = "21600";
pub const AZURE_API_VERSION: &str = "2020-09-01";
/// Google: the audience Coder's agent asks for (the server accepts any).
pub const GCP_AUDIENCE: &str = "coder";

/// Path-segment escaping for the service account name (an email is fine as is).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'@');

/// The request body for the server: the proof plus `agent_name` when given.
pub(super) fn fetch(
    client: &Client,
    req: &Request<'_>,
    deadline: Instant,
) -> Result<Map<String, Value>, Failure> {
    let mut body = Map::new();
    match req.method {
        AuthMethod::AwsInstanceIdentity => {
            let what = "AWS instance metadata service";
            let hint = "is this an EC2 instance with the metadata service (IMDSv2) enabled?";
            let token = client.metadata(
                "PUT",
                &format!("{}/latest/api/token", req.base),
                &[(
                    "X-aws-ec2-metadata-token-ttl-seconds",
                    AWS_TOKEN_TTL_SECONDS,
                )],
                what,
                hint,
                deadline,
            )?;
            if token.is_empty() {
                return Err(Failure::transient(format!(
                    "{what}: {}/latest/api/token answered an empty token",
                    req.base
                )));
            }
            let headers = [("X-aws-ec2-metadata-token", token.as_str())];
            let signature = client.metadata(
                "GET",
                &format!("{}/latest/dynamic/instance-identity/signature", req.base),
                &headers,
                what,
                hint,
                deadline,
            )?;
            let document = client.metadata(
                "GET",
                &format!("{}/latest/dynamic/instance-identity/document", req.base),
                &headers,
                what,
                hint,
                deadline,
            )?;
            // Verbatim: the signature covers the document's exact bytes.
            body.insert("signature".into(), Value::String(signature));
            body.insert("document".into(), Value::String(document));
        }
        AuthMethod::AzureInstanceIdentity => {
            let what = "Azure instance metadata service";
            let url = format!(
                "{}/metadata/attested/document?api-version={AZURE_API_VERSION}",
                req.base
            );
            let text = client.metadata(
                "GET",
                &url,
                &[("Metadata", "true")],
                what,
                "is this an Azure VM?",
                deadline,
            )?;
            let doc: Value = serde_json::from_str(&text).map_err(|e| {
                Failure::Fatal(anyhow::anyhow!(
                    "{what}: {url} did not answer a JSON attested document ({e})"
                ))
            })?;
            for field in ["signature", "encoding"] {
                let value = doc.get(field).and_then(Value::as_str).ok_or_else(|| {
                    Failure::Fatal(anyhow::anyhow!(
                        "{what}: the attested document from {url} has no string field \"{field}\""
                    ))
                })?;
                body.insert(field.into(), Value::String(value.to_owned()));
            }
        }
        AuthMethod::GoogleInstanceIdentity => {
            let what = "Google Compute Engine metadata server";
            let account = utf8_percent_encode(req.gcp_service_account, SEGMENT);
            let url = format!(
                "{}/computeMetadata/v1/instance/service-accounts/{account}/identity?audience={GCP_AUDIENCE}&format=full",
                req.base
            );
            let hint = format!(
                "is this a GCE VM with the service account {:?} attached? (--gcp-service-account)",
                req.gcp_service_account
            );
            let jwt = client.metadata(
                "GET",
                &url,
                &[("Metadata-Flavor", "Google")],
                what,
                &hint,
                deadline,
            )?;
            // A JWT holds no whitespace; a trailing newline is not part of it.
            let jwt = jwt.trim();
            if jwt.is_empty() {
                return Err(Failure::transient(format!(
                    "{what}: {url} answered an empty identity token"
                )));
            }
            body.insert("json_web_token".into(), Value::String(jwt.to_owned()));
        }
        AuthMethod::Token => {
            return Err(Failure::Fatal(anyhow::anyhow!(
                "--auth token has no instance identity to fetch"
            )));
        }
    }
    if !req.agent_name.is_empty() {
        body.insert(
            "agent_name".into(),
            Value::String(req.agent_name.to_owned()),
        );
    }
    Ok(body)
}
