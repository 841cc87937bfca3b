//! The two HTTP conversations of `agent auth` and how their outcomes are
//! judged: worth retrying ([`Failure::Transient`]) or final ([`Failure::Fatal`]).
//!
//! Metadata requests never go through a proxy (the service is link-local and
//! a proxy would answer with its own identity, or not at all); requests to the
//! server honour `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` like Coder's agent.
//! Redirects are not followed: a POST turned into a GET would fail in a
//! confusing way, so the error names the address to use instead.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Map, Value};
use ureq::http::{HeaderMap, StatusCode};
use ureq::tls::{PemItem, RootCerts, TlsConfig};

use super::AuthMethod;

/// Upper bound of one metadata request (the service is on the same host).
const METADATA_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound of one request to the server.
const SERVER_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A request started just before the deadline still gets this long.
const MIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Bodies we read are small (a proof, a token, an error); more is a mistake.
const MAX_BODY: u64 = 1 << 20;

/// Why an attempt failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Worth another try: network trouble, 5xx, 429.
    Transient {
        reason: String,
        /// What the server asked for (`Retry-After`), instead of the backoff.
        retry_after: Option<Duration>,
    },
    /// Asking again cannot help.
    Fatal(anyhow::Error),
}

impl Failure {
    pub(crate) fn transient(reason: String) -> Failure {
        Failure::Transient {
            reason,
            retry_after: None,
        }
    }

    fn fatal(message: String) -> Failure {
        Failure::Fatal(anyhow::anyhow!(message))
    }
}

const USER_AGENT: &str = concat!("appliance-agent/", env!("CARGO_PKG_VERSION"));

/// The agent for talking to the appliance server at `base`: no redirects,
/// statuses as answers, `ca_file` (PEM) instead of the built-in roots for an
/// https:// server (ignored for http://), an overall timeout if given.
pub(crate) fn server_agent(
    base: &str,
    ca_file: Option<&Path>,
    timeout: Option<std::time::Duration>,
) -> anyhow::Result<ureq::Agent> {
    let mut tls = TlsConfig::builder();
    if let Some(path) = ca_file
        && base.starts_with("https://")
    {
        tls = tls.root_certs(load_roots(path)?);
    }
    Ok(ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_global(timeout)
        .user_agent(USER_AGENT)
        .tls_config(tls.build())
        .build()
        .into())
}

pub(crate) struct Client {
    server_base: String,
    server: ureq::Agent,
    metadata: ureq::Agent,
}

impl Client {
    /// `server_base` has no trailing slash; `ca_file` (PEM) replaces the
    /// built-in roots for an https:// server and is ignored for http://.
    pub(crate) fn new(server_base: &str, ca_file: Option<&Path>) -> anyhow::Result<Client> {
        let server = server_agent(server_base, ca_file, None)?;
        let metadata = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .proxy(None)
            .user_agent(USER_AGENT)
            .build()
            .into();
        Ok(Client {
            server_base: server_base.to_owned(),
            server,
            metadata,
        })
    }

    /// One metadata request; the body of a 2xx answer. `what` names the
    /// service in messages, `hint` is added when it refuses.
    pub(crate) fn metadata(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        what: &str,
        hint: &str,
        deadline: Instant,
    ) -> Result<String, Failure> {
        let timeout = Some(request_timeout(METADATA_REQUEST_TIMEOUT, deadline));
        let result = if method == "PUT" {
            let mut req = self.metadata.put(url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.config().timeout_global(timeout).build().send_empty()
        } else {
            let mut req = self.metadata.get(url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.config().timeout_global(timeout).build().call()
        };
        let context = format!("{what}: {method} {url}");
        let mut resp = result.map_err(|e| classify(&context, e))?;
        let status = resp.status();
        let body = read_body(&context, &mut resp)?;
        if status.is_success() {
            return Ok(body);
        }
        let answered = format!(
            "{context} answered {}{}",
            status_text(status),
            snippet(&body).map(|s| format!(": {s}")).unwrap_or_default()
        );
        if retryable(status) {
            return Err(Failure::Transient {
                reason: answered,
                retry_after: retry_after(resp.headers(), None),
            });
        }
        Err(Failure::fatal(format!("{answered}; {hint}")))
    }

    /// Posts the proof; the session token of a 200 answer.
    pub(crate) fn exchange(
        &self,
        method: AuthMethod,
        proof: &Map<String, Value>,
        deadline: Instant,
    ) -> Result<String, Failure> {
        let path = format!("/api/v2/workspaceagents/{}", method.as_str());
        let url = format!("{}{path}", self.server_base);
        let context = format!("server: POST {url}");
        let timeout = Some(request_timeout(SERVER_REQUEST_TIMEOUT, deadline));
        let mut resp = self
            .server
            .post(&url)
            .header("Accept", "application/json")
            .config()
            .timeout_global(timeout)
            .build()
            .send_json(proof)
            .map_err(|e| classify(&context, e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = read_body(&context, &mut resp)?;
        if status == StatusCode::OK {
            let token = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v.get("session_token")?.as_str().map(str::to_owned))
                .filter(|t| !t.is_empty());
            return token.ok_or_else(|| {
                Failure::fatal(format!(
                    "{context} answered 200 without a session token{}: is --url the appliance (or Coder) server?",
                    snippet(&body).map(|s| format!(" ({s})")).unwrap_or_default()
                ))
            });
        }
        let error = CoderError::parse(&body);
        if status.is_redirection() {
            let location = headers
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("(no Location)");
            return Err(Failure::fatal(format!(
                "{context} answered {} to {location}: set --url / CODER_AGENT_URL to the address agents should use",
                status_text(status)
            )));
        }
        let answered = format!(
            "the server answered {}: {}",
            status_text(status),
            error.text()
        );
        if retryable(status) {
            return Err(Failure::Transient {
                reason: answered,
                retry_after: retry_after(&headers, error.detail.as_deref()),
            });
        }
        let hint = match status.as_u16() {
            409 => {
                let names = error.agent_names();
                if names.is_empty() {
                    "several agents run on this instance: say which one this is with --agent-name or CODER_AGENT_NAME".to_owned()
                } else {
                    format!(
                        "several agents run on this instance: say which one this is with --agent-name or CODER_AGENT_NAME, one of: {}",
                        names.join(", ")
                    )
                }
            }
            404 if proof.contains_key("agent_name") => {
                "check the agent name (--agent-name / CODER_AGENT_NAME) against the workspace manifest".to_owned()
            }
            404 => "is this instance's id the instance_id of a resource in a live workspace? (`appliance workspace show`)".to_owned(),
            401 => "the server could not verify the proof; `appliance identity verify` on the server says why".to_owned(),
            _ => String::new(),
        };
        let mut message = answered;
        if !hint.is_empty() {
            message.push_str("; ");
            message.push_str(&hint);
        }
        Err(Failure::fatal(message))
    }
}

pub(super) fn load_roots(path: &Path) -> anyhow::Result<RootCerts> {
    let pem = std::fs::read(path).with_context(|| {
        format!(
            "reading the CA file {} (--ca-file / SSL_CERT_FILE)",
            path.display()
        )
    })?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        let item = item.with_context(|| format!("{} is not valid PEM", path.display()))?;
        if let PemItem::Certificate(c) = item {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        anyhow::bail!(
            "{} holds no PEM certificate (--ca-file / SSL_CERT_FILE)",
            path.display()
        );
    }
    Ok(RootCerts::new_with_certs(&certs))
}

/// The time left before `deadline`, at least [`MIN_REQUEST_TIMEOUT`], at most `cap`.
fn request_timeout(cap: Duration, deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .clamp(MIN_REQUEST_TIMEOUT, cap)
}

fn read_body(
    context: &str,
    resp: &mut ureq::http::Response<ureq::Body>,
) -> Result<String, Failure> {
    resp.body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_string()
        .map_err(|e| classify(&format!("{context}: reading the answer"), e))
}

/// 5xx (including a proxy's 502/503/504) and 429 are worth another try.
fn retryable(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// Network trouble is transient; a bad URL, proxy or certificate is not.
fn classify(context: &str, e: ureq::Error) -> Failure {
    use ureq::Error as E;
    match &e {
        E::BadUri(_)
        | E::Http(_)
        | E::InvalidProxyUrl
        | E::RequireHttpsOnly(_)
        | E::TlsRequired => Failure::fatal(format!("{context}: {e}")),
        E::Tls(_) | E::Pem(_) => Failure::fatal(format!("{context}: {e}")),
        E::Rustls(inner) if inner.to_string().contains("certificate") => Failure::fatal(format!(
            "{context}: {e}; if the server's certificate comes from an internal CA, pass its PEM with --ca-file (or SSL_CERT_FILE)"
        )),
        E::BodyExceedsLimit(_) | E::LargeResponseHeader(..) => {
            Failure::fatal(format!("{context}: {e}"))
        }
        _ => Failure::transient(format!("{context}: {e}")),
    }
}

/// `Retry-After: <seconds>`, else the appliance's own 429 detail
/// (`Try again in N seconds.`).
pub(super) fn retry_after(headers: &HeaderMap, detail: Option<&str>) -> Option<Duration> {
    let from_header = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let from_detail = || {
        let rest = detail?.strip_prefix("Try again in ")?;
        rest.split_whitespace().next()?.parse::<u64>().ok()
    };
    from_header.or_else(from_detail).map(Duration::from_secs)
}

pub(super) fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// The start of a body, on one line, for messages; `None` when blank.
fn snippet(body: &str) -> Option<String> {
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        return None;
    }
    let mut s: String = one_line.chars().take(200).collect();
    if s.len() < one_line.len() {
        s.push('…');
    }
    Some(s)
}

/// Coder's error body (`codersdk.Response`), or whatever else came back.
#[derive(Debug, Default)]
struct CoderError {
    message: Option<String>,
    detail: Option<String>,
    validations: Vec<(String, String)>,
    raw: Option<String>,
}

impl CoderError {
    fn parse(body: &str) -> CoderError {
        let Ok(v) = serde_json::from_str::<Value>(body) else {
            return CoderError {
                raw: snippet(body),
                ..CoderError::default()
            };
        };
        let text = |v: Option<&Value>| {
            v.and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let validations = v
            .get("validations")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|x| Some((text(x.get("field"))?, text(x.get("detail"))?)))
                    .collect()
            })
            .unwrap_or_default();
        CoderError {
            message: text(v.get("message")),
            detail: text(v.get("detail")),
            validations,
            raw: snippet(body),
        }
    }

    /// `message (detail) [field: detail; ...]`, or the raw body.
    fn text(&self) -> String {
        let Some(message) = &self.message else {
            return self
                .raw
                .clone()
                .unwrap_or_else(|| "(empty body)".to_owned());
        };
        let mut s = message.clone();
        if let Some(detail) = &self.detail {
            s.push_str(&format!(" ({detail})"));
        }
        if !self.validations.is_empty() {
            let v: Vec<String> = self
                .validations
                .iter()
                .map(|(f, d)| format!("{f}: {d}"))
                .collect();
            s.push_str(&format!(" [{}]", v.join("; ")));
        }
        s
    }

    /// The names a 409 offers: `... Set CODER_AGENT_NAME to one of: a, b`.
    fn agent_names(&self) -> Vec<String> {
        let Some(message) = &self.message else {
            return Vec::new();
        };
        let Some((_, list)) = message.rsplit_once("one of: ") else {
            return Vec::new();
        };
        list.trim_end_matches('.')
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_names() {
        let e = CoderError::parse(
            r#"{"message":"Multiple agents found with instance ID \"i-1\". Set CODER_AGENT_NAME to one of: dev, main, main"}"#,
        );
        assert_eq!(e.agent_names(), ["dev", "main", "main"]);
        assert!(CoderError::parse("oops").agent_names().is_empty());
    }

    #[test]
    fn error_text() {
        let e = CoderError::parse(
            r#"{"message":"Invalid AWS identity.","detail":"crypto/rsa: verification error"}"#,
        );
        assert_eq!(
            e.text(),
            "Invalid AWS identity. (crypto/rsa: verification error)"
        );
        let e = CoderError::parse(
            r#"{"message":"Validation failed.","validations":[{"field":"signature","detail":"required"}]}"#,
        );
        assert_eq!(e.text(), "Validation failed. [signature: required]");
        assert_eq!(
            CoderError::parse("<html>\n bad gateway</html>").text(),
            "<html> bad gateway</html>"
        );
        assert_eq!(CoderError::parse("").text(), "(empty body)");
    }

    #[test]
    fn retry_after_header_or_detail() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, None), None);
        assert_eq!(
            retry_after(&h, Some("Try again in 7 seconds.")),
            Some(Duration::from_secs(7))
        );
        h.insert("retry-after", "3".parse().unwrap());
        assert_eq!(
            retry_after(&h, Some("Try again in 7 seconds.")),
            Some(Duration::from_secs(3))
        );
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h, None), None);
    }

    #[test]
    fn snippets_are_short_single_lines() {
        assert_eq!(snippet(" \n "), None);
        let long = "x".repeat(500);
        let s = snippet(&long).unwrap();
        assert_eq!(s.chars().count(), 201);
    }
}
