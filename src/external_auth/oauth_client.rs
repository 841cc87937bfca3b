//! The server's side of OAuth2 with external-auth providers: exchanging an
//! authorization code, refreshing an expired token, and validating a token
//! against the provider's `validate_url`. Blocking HTTP (ureq): call it from
//! the blocking pool.

use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;

use crate::external_auth::Provider;

/// A token as the provider's token endpoint returned it.
#[derive(Clone, PartialEq)]
pub struct Token {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_at: Option<OffsetDateTime>,
    /// The other fields of the answer (JSON object), Coder's `oauth_extra`.
    pub extra: Option<String>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Why the provider gave no token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The provider refused the grant or token (invalid, revoked, expired).
    Refused(String),
    /// The provider could not be asked or answered nonsense.
    Unavailable(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused(m) => write!(f, "the provider refused: {m}"),
            Failure::Unavailable(m) => write!(f, "the provider is unavailable: {m}"),
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(15)))
        .max_redirects(0)
        .user_agent(concat!("appliance/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// `grant_type=authorization_code` at the token URL.
pub fn exchange_code(p: &Provider, code: &str, redirect_uri: &str) -> Result<Token, Failure> {
    token_request(
        p,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
        ],
        "",
    )
}

/// `grant_type=refresh_token` at the token URL. A provider that does not send
/// a new refresh token keeps the old one valid.
pub fn refresh(p: &Provider, refresh_token: &str) -> Result<Token, Failure> {
    token_request(
        p,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
        refresh_token,
    )
}

fn token_request(p: &Provider, form: &[(&str, &str)], old_refresh: &str) -> Result<Token, Failure> {
    let mut fields: Vec<(&str, &str)> = form.to_vec();
    fields.push(("client_id", &p.client_id));
    fields.push(("client_secret", &p.client_secret));
    let now = OffsetDateTime::now_utc();
    let mut resp = agent()
        .post(&p.token_url)
        .header("Accept", "application/json")
        .send_form(fields)
        .map_err(|e| Failure::Unavailable(format!("POST {}: {e}", p.token_url)))?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(1024 * 1024)
        .read_to_string()
        .map_err(|e| Failure::Unavailable(format!("reading the token answer: {e}")))?;
    parse_token_answer(status, &body, old_refresh, now)
}

/// The token endpoint's answer (RFC 6749 §5.1/§5.2; GitHub answers errors
/// with 200 and an `error` field).
pub fn parse_token_answer(
    status: u16,
    body: &str,
    old_refresh: &str,
    now: OffsetDateTime,
) -> Result<Token, Failure> {
    let json: Value = serde_json::from_str(body).map_err(|_| {
        if (400..500).contains(&status) {
            Failure::Refused(format!("HTTP {status}"))
        } else {
            Failure::Unavailable(format!("HTTP {status}, not JSON"))
        }
    })?;
    if let Some(error) = json.get("error").and_then(Value::as_str) {
        let description = json
            .get("error_description")
            .and_then(Value::as_str)
            .unwrap_or("");
        return Err(Failure::Refused(
            format!("{error} {description}").trim().to_string(),
        ));
    }
    if !(200..300).contains(&status) {
        return Err(if (400..500).contains(&status) {
            Failure::Refused(format!("HTTP {status}"))
        } else {
            Failure::Unavailable(format!("HTTP {status}"))
        });
    }
    let Some(access_token) = json
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    else {
        return Err(Failure::Unavailable("no access_token in the answer".into()));
    };
    let refresh_token = json
        .get("refresh_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .unwrap_or(old_refresh)
        .to_string();
    let expires_at = json
        .get("expires_in")
        .and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .filter(|s| *s > 0)
        .map(|s| now + time::Duration::seconds(s));
    let mut extra = json.as_object().cloned().unwrap_or_default();
    for known in ["access_token", "refresh_token", "expires_in", "token_type"] {
        extra.remove(known);
    }
    Ok(Token {
        access_token: access_token.to_string(),
        refresh_token,
        expires_at,
        extra: (!extra.is_empty()).then(|| Value::Object(extra).to_string()),
    })
}

/// Whether the provider accepts `access_token` at its `validate_url`
/// (`Authorization: Bearer`): 2xx yes, 401/403 no, anything else an error.
pub fn validate(p: &Provider, access_token: &str) -> Result<bool, Failure> {
    let resp = agent()
        .get(&p.validate_url)
        .header("Authorization", &format!("Bearer {access_token}"))
        .header("Accept", "application/json")
        .call()
        .map_err(|e| Failure::Unavailable(format!("GET {}: {e}", p.validate_url)))?;
    match resp.status().as_u16() {
        200..=299 => Ok(true),
        401 | 403 => Ok(false),
        other => Err(Failure::Unavailable(format!(
            "GET {}: HTTP {other}",
            p.validate_url
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: OffsetDateTime = time::macros::datetime!(2026-11-29 12:00 UTC);

    #[test]
    fn token_answers() {
        let t = parse_token_answer(
            200,
            r#"{"access_token":"a","refresh_token":"r","expires_in":3600,"token_type":"bearer","scope":"repo"}"#,
            "",
            NOW,
        )
        .unwrap();
        assert_eq!(t.access_token, "a");
        assert_eq!(t.refresh_token, "r");
        assert_eq!(t.expires_at, Some(NOW + time::Duration::hours(1)));
        assert_eq!(t.extra.as_deref(), Some(r#"{"scope":"repo"}"#));
        // No new refresh token: the old one stays; no expiry: never.
        let t = parse_token_answer(200, r#"{"access_token":"b"}"#, "old", NOW).unwrap();
        assert_eq!(
            (t.refresh_token.as_str(), t.expires_at, t.extra),
            ("old", None, None)
        );
    }

    #[test]
    fn refusals_and_failures() {
        // GitHub: 200 with an error field.
        let e = parse_token_answer(
            200,
            r#"{"error":"bad_refresh_token","error_description":"expired"}"#,
            "",
            NOW,
        )
        .unwrap_err();
        assert_eq!(e, Failure::Refused("bad_refresh_token expired".into()));
        assert!(matches!(
            parse_token_answer(400, r#"{"error":"invalid_grant"}"#, "", NOW),
            Err(Failure::Refused(_))
        ));
        assert!(matches!(
            parse_token_answer(401, "nope", "", NOW),
            Err(Failure::Refused(_))
        ));
        assert!(matches!(
            parse_token_answer(502, "<html>", "", NOW),
            Err(Failure::Unavailable(_))
        ));
        assert!(matches!(
            parse_token_answer(200, "{}", "", NOW),
            Err(Failure::Unavailable(_))
        ));
    }
}
