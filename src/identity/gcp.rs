//! Google Compute Engine identity token (`.../service-accounts/default/identity?format=full`).
//!
//! A compact JWS signed by Google with RS256. Verification follows the idtoken validator coder
//! uses (google.golang.org/api/idtoken, IDENTITY.md §3.2), restricted to RS256:
//!
//! * exactly three base64url segments; header `alg` must be `RS256` (so `none`, `HS256` with the
//!   public key as secret, ES256/PS256 and any other algorithm are refused before any key is
//!   touched), `crit` is refused;
//! * the key is chosen by the header's `kid` from the imported JWKS, never from the token
//!   (`jwk`/`jku`/`x5u`/`x5c` headers are ignored);
//! * RSASSA-PKCS1-v1_5/SHA-256 over `base64url(header) "." base64url(payload)`;
//! * `exp` must be an integer and `now <= exp` (whole seconds, no leeway, as upstream); `iat`,
//!   `nbf` and `iss` are not checked (upstream does not either, IDENTITY.md §0);
//! * the audience is compared only when the caller asks for one (coder passes none);
//! * the instance id is `google.compute_engine.instance_id`: absent → `""` (the caller's lookup
//!   then fails with 404), present with the wrong JSON type → [`IdentityError::MalformedClaims`].

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use time::OffsetDateTime;

use super::IdentityError;
use super::trust::GcpTrust;

/// Largest accepted token. Google's are ~1 KiB.
const MAX_JWT_LEN: usize = 64 << 10;

/// Verifies a Google ID token at time `now` and returns `google.compute_engine.instance_id`
/// (empty string if the token has no such claim). `audience: None` accepts any audience.
pub fn verify_gcp(
    jwt: &str,
    trust: &GcpTrust,
    audience: Option<&str>,
    now: OffsetDateTime,
) -> Result<String, IdentityError> {
    // Surrounding whitespace (a trailing newline from `curl`) is not part of the token.
    let jwt = jwt.trim_matches(|c: char| c.is_ascii_whitespace());
    if jwt.len() > MAX_JWT_LEN {
        return Err(IdentityError::Malformed(format!(
            "idtoken: token is too large ({} bytes)",
            jwt.len()
        )));
    }
    let segments: Vec<&str> = jwt.split('.').collect();
    let [header_b64, payload_b64, signature_b64] = segments.as_slice() else {
        return Err(IdentityError::Malformed(format!(
            "idtoken: invalid token, token must have three segments; found {}",
            segments.len()
        )));
    };

    let header = decode_json_segment(header_b64, "header")?;
    match header.get("alg") {
        Some(Value::String(alg)) if alg == "RS256" => {}
        other => {
            let found = match other {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => String::new(),
            };
            return Err(IdentityError::AlgorithmNotAllowed(format!(
                "idtoken: expected JWT signed with RS256 but found {found:?}"
            )));
        }
    }
    if header.contains_key("crit") {
        return Err(IdentityError::Malformed(
            "idtoken: critical header parameters are not supported".to_string(),
        ));
    }
    let kid = match header.get("kid") {
        Some(Value::String(kid)) => kid.as_str(),
        _ => "",
    };
    let key = trust.find(kid).ok_or_else(|| {
        IdentityError::UnknownKey(format!(
            "idtoken: could not find matching cert keyId for the token provided (kid {kid:?}; \
             import a current Google JWKS)"
        ))
    })?;

    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|e| IdentityError::Malformed(format!("idtoken: bad signature encoding: {e}")))?;
    let signed_len = header_b64.len() + 1 + payload_b64.len();
    let signing_input = jwt.get(..signed_len).unwrap_or_default();
    let hash = super::pki::HashAlg::Sha256.digest(signing_input.as_bytes());
    key.key
        .verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &hash, &signature)
        .map_err(|_| IdentityError::BadSignature("crypto/rsa: verification error".to_string()))?;

    let payload = decode_json_segment(payload_b64, "payload")?;
    let exp = match payload.get("exp") {
        Some(v) => v.as_i64().ok_or_else(|| {
            IdentityError::Malformed("idtoken: \"exp\" claim is not an integer".to_string())
        })?,
        None => {
            return Err(IdentityError::Expired(
                "idtoken: token expired: token has no \"exp\" claim".to_string(),
            ));
        }
    };
    let now_unix = now.unix_timestamp();
    if now_unix > exp {
        return Err(IdentityError::Expired(format!(
            "idtoken: token expired: now={now_unix}, expires={exp}"
        )));
    }

    if let Some(expected) = audience {
        let matches = match payload.get("aud") {
            Some(Value::String(aud)) => aud == expected,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(expected)),
            _ => false,
        };
        if !matches {
            return Err(IdentityError::AudienceMismatch(
                "idtoken: audience provided does not match aud claim in the JWT".to_string(),
            ));
        }
    }

    instance_id(&payload)
}

/// Decodes one base64url JSON segment that must be a JSON object.
fn decode_json_segment(
    segment: &str,
    what: &str,
) -> Result<serde_json::Map<String, Value>, IdentityError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|e| IdentityError::Malformed(format!("idtoken: bad {what} encoding: {e}")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(IdentityError::Malformed(format!(
            "idtoken: {what} is not a JSON object"
        ))),
        Err(e) => Err(IdentityError::Malformed(format!(
            "idtoken: {what} is not valid JSON: {e}"
        ))),
    }
}

/// `google.compute_engine.instance_id`, decoded the way coder's mapstructure decoding behaves:
/// missing or null anywhere along the path → `""`; an object where a string is expected (or
/// vice versa) → a claims-decoding error.
fn instance_id(payload: &serde_json::Map<String, Value>) -> Result<String, IdentityError> {
    let wrong = |what: &str| {
        IdentityError::MalformedClaims(format!(
            "Error decoding JWT claims: {what} has the wrong type"
        ))
    };
    let google = match payload.get("google") {
        None | Some(Value::Null) => return Ok(String::new()),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(wrong("\"google\"")),
    };
    let compute_engine = match google.get("compute_engine") {
        None | Some(Value::Null) => return Ok(String::new()),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(wrong("\"google.compute_engine\"")),
    };
    match compute_engine.get("instance_id") {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(wrong("\"google.compute_engine.instance_id\"")),
    }
}
