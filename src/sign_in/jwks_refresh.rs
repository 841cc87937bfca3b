//! Keeps Google's signing keys fresh when `identity.gcp.jwks_url` is set.
//!
//! Google rotates its ID-token keys every few weeks. When the network allows,
//! the server fetches the JWKS at start and again when its `Cache-Control:
//! max-age` runs out (clamped to [`MIN_REFRESH`, `MAX_REFRESH`]), and swaps the
//! result into `App`'s trust material, keeping the keys of `jwks_file` as
//! well. A failed fetch keeps the keys it has and tries again after
//! [`RETRY_AFTER_FAILURE`]; an air-gapped server simply never succeeds and
//! relies on `jwks_file`.

use std::time::Duration;

use anyhow::Context;

use super::TrustSlot;
use crate::identity::Trust;

pub const MIN_REFRESH: Duration = Duration::from_secs(5 * 60);
pub const MAX_REFRESH: Duration = Duration::from_secs(24 * 3600);
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5 * 60);
/// The largest JWKS document accepted (Google's is about 2 KiB).
const MAX_JWKS_BYTES: u64 = 1 << 20;

/// `max-age` of a `Cache-Control` header value, if any.
pub fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|part| {
        let (k, v) = part.trim().split_once('=')?;
        if k.trim().eq_ignore_ascii_case("max-age") {
            v.trim()
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs)
        } else {
            None
        }
    })
}

/// How long to keep a fetched JWKS before fetching again.
pub fn refresh_interval(cache_control: Option<&str>) -> Duration {
    cache_control
        .and_then(max_age)
        .unwrap_or(Duration::from_secs(3600))
        .clamp(MIN_REFRESH, MAX_REFRESH)
}

/// One fetch: the JWKS bytes and the `Cache-Control` header. Blocking.
fn fetch(url: &str) -> anyhow::Result<(Vec<u8>, Option<String>)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(20)))
        .user_agent(format!("appliance/{}", env!("CARGO_PKG_VERSION")).as_str())
        .build()
        .into();
    let mut resp = agent
        .get(url)
        .call()
        .with_context(|| format!("fetching {url}"))?;
    let cache_control = resp
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_JWKS_BYTES)
        .read_to_vec()
        .with_context(|| format!("reading {url}"))?;
    Ok((body, cache_control))
}

/// The trust in force with `jwks` added to the GCP keys loaded from files.
fn with_fetched(base: &Trust, jwks: &[u8]) -> anyhow::Result<(Trust, usize)> {
    let mut trust = base.clone();
    let added = trust
        .gcp
        .add_jwks_json(jwks)
        .context("the fetched JWKS is not usable")?;
    Ok((trust, added))
}

/// Runs until the process ends: fetch, swap, sleep, repeat. `base` is the
/// trust material loaded from files; when it changes (SIGHUP reload), the
/// last fetched keys are added to the new base and swapped in at once.
pub async fn run(slot: TrustSlot, mut base: tokio::sync::watch::Receiver<Trust>, url: String) {
    let mut last_fetched: Option<Vec<u8>> = None;
    loop {
        let u = url.clone();
        let fetched = tokio::task::spawn_blocking(move || fetch(&u)).await;
        let wait = match fetched {
            Ok(Ok((body, cache_control))) => {
                let current = base.borrow_and_update().clone();
                match with_fetched(&current, &body) {
                    Ok((trust, keys)) => {
                        slot.set(trust);
                        last_fetched = Some(body);
                        let wait = refresh_interval(cache_control.as_deref());
                        tracing::info!(
                            url,
                            keys,
                            next_in_s = wait.as_secs(),
                            "fetched Google JWKS"
                        );
                        wait
                    }
                    Err(e) => {
                        tracing::warn!(
                            url,
                            error = format!("{e:#}"),
                            "ignoring the fetched Google JWKS"
                        );
                        RETRY_AFTER_FAILURE
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(
                    url,
                    error = format!("{e:#}"),
                    "could not fetch Google JWKS; keeping the keys already loaded (identity.gcp.jwks_file)"
                );
                RETRY_AFTER_FAILURE
            }
            Err(e) => {
                tracing::error!(error = %e, "JWKS fetch task failed");
                RETRY_AFTER_FAILURE
            }
        };
        let next = tokio::time::Instant::now() + wait;
        let mut watching = true;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => break,
                changed = base.changed(), if watching => {
                    if changed.is_err() {
                        watching = false;
                        continue;
                    }
                    let current = base.borrow_and_update().clone();
                    let trust = match &last_fetched {
                        Some(body) => with_fetched(&current, body).map(|(t, _)| t).unwrap_or(current),
                        None => current,
                    };
                    slot.set(trust);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_sets_the_refresh_within_bounds() {
        assert_eq!(
            max_age("public, max-age=22270, must-revalidate, no-transform"),
            Some(Duration::from_secs(22270))
        );
        assert_eq!(max_age("no-cache"), None);
        assert_eq!(
            refresh_interval(Some("public, max-age=22270")),
            Duration::from_secs(22270)
        );
        assert_eq!(refresh_interval(Some("max-age=1")), MIN_REFRESH);
        assert_eq!(refresh_interval(Some("max-age=9999999")), MAX_REFRESH);
        assert_eq!(refresh_interval(None), Duration::from_secs(3600));
    }

    #[test]
    fn fetched_keys_are_added_to_the_file_keys() {
        let mut base = Trust::default();
        base.gcp
            .add_jwks_json(include_bytes!(
                "../../tests/fixtures/identity/gcp/istio-2019/jwks.json"
            ))
            .expect("file jwks");
        let (trust, added) = with_fetched(
            &base,
            include_bytes!("../../tests/fixtures/identity/gcp/smallstep-kops-2019/jwks.json"),
        )
        .expect("fetched jwks");
        assert!(added >= 1);
        assert_eq!(trust.gcp.len(), base.gcp.len() + added);
        assert!(with_fetched(&base, b"<html>captive portal</html>").is_err());
    }
}
