//! `appliance healthcheck`: exit 0 when the server answers `GET /healthz`
//! with 200, for scripts, container health checks and monitoring.

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;

use serde_json::json;

use super::output::Printer;
use crate::config::Config;

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The server's base URL; `/healthz` is appended [default: http://<listen>,
    /// with 0.0.0.0 and [::] replaced by loopback].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Give up after this long, e.g. 5s.
    #[arg(long, default_value = "5s", value_parser = crate::config::parse_duration)]
    pub timeout: Duration,
}

/// Checks the server and prints what it found.
pub(super) fn run(config: &Config, args: &HealthcheckArgs, out: &Printer) -> anyhow::Result<()> {
    let url = target(args, config);
    let ok = check(&url, args.timeout)?;
    let ms = ok.elapsed.as_secs_f64() * 1000.0;
    out.emit(
        &json!({"url": ok.url, "status": 200, "elapsed_ms": ms}),
        || format!("{}: 200 OK in {ms:.1} ms", ok.url),
    );
    Ok(())
}

/// What a successful check found.
pub struct Healthy {
    pub url: String,
    pub elapsed: Duration,
}

/// The `/healthz` URL for `--url`, or for the configured listen address.
pub fn target(args: &HealthcheckArgs, config: &Config) -> String {
    let base = match &args.url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        // The local process, not access_url: that may be a proxy in front of it.
        None => crate::config::derive_access_url(config.listen),
    };
    format!("{base}/healthz")
}

/// GET `url` once; Ok on 200, otherwise an error that says why in one line.
pub fn check(url: &str, timeout: Duration) -> anyhow::Result<Healthy> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("{url}: not an http:// or https:// URL; pass the server's base URL with --url");
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        // Health is about this server, not about a proxy on the way.
        .proxy(None)
        .timeout_global(Some(timeout))
        .user_agent(format!(
            "appliance-healthcheck/{}",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
        .into();
    let started = Instant::now();
    let mut resp = match agent.get(url).call() {
        Ok(resp) => resp,
        Err(ureq::Error::Timeout(_)) => {
            bail!("{url}: no answer within {timeout:?}; is the server overloaded or hung?")
        }
        Err(ureq::Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            bail!("{url}: connection refused; is the server running and listening there?")
        }
        Err(e) => bail!("{url}: {e}"),
    };
    let status = resp.status();
    if status != ureq::http::StatusCode::OK {
        let body = resp
            .body_mut()
            .with_config()
            .limit(4096)
            .read_to_string()
            .unwrap_or_default();
        let body = body.split_whitespace().collect::<Vec<_>>().join(" ");
        let body: String = body.chars().take(200).collect();
        if body.is_empty() {
            bail!("{url}: answered {status}, expected 200 OK");
        }
        bail!("{url}: answered {status}, expected 200 OK: {body}");
    }
    Ok(Healthy {
        url: url.to_owned(),
        elapsed: started.elapsed(),
    })
}
