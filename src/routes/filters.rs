//! Small shared extractors. None of them rejects with an application error:
//! they only pull values out of the request; handlers decide what is wrong.

use std::convert::Infallible;

use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use warp::Filter;
use warp::http::HeaderMap;

use crate::app::App;
use crate::routes::error::{ApiError, MAX_BODY_BYTES};

pub fn with_app(app: &App) -> impl Filter<Extract = (App,), Error = Infallible> + Clone + use<> {
    let app = app.clone();
    warp::any().map(move || app.clone())
}

/// The query string as (key, value) pairs; empty when there is none.
pub fn query_pairs() -> impl Filter<Extract = (Vec<(String, String)>,), Error = Infallible> + Clone
{
    warp::query::raw()
        .map(|raw: String| url_decode_pairs(&raw))
        .or(warp::any().map(Vec::new))
        .unify()
}

fn url_decode_pairs(raw: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(raw).unwrap_or_default()
}

/// The session token a request carries, looked for where Coder looks, in
/// Coder's order: cookie `coder_session_token`, query `coder_session_token`,
/// header `Coder-Session-Token`, `Authorization: Bearer`, query `access_token`.
pub fn session_token() -> impl Filter<Extract = (Option<String>,), Error = Infallible> + Clone {
    warp::header::headers_cloned()
        .and(query_pairs())
        .map(|headers: HeaderMap, query: Vec<(String, String)>| find_token(&headers, &query))
}

pub const SESSION_COOKIE: &str = "coder_session_token";

fn find_token(headers: &HeaderMap, query: &[(String, String)]) -> Option<String> {
    let non_empty = |s: &str| {
        let s = s.trim();
        (!s.is_empty()).then(|| s.to_string())
    };
    let from_query = |key: &str| {
        query
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| non_empty(v))
    };
    let cookie = headers
        .get_all(warp::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .and_then(|(_, v)| non_empty(v));
    let header = headers
        .get("Coder-Session-Token")
        .and_then(|v| v.to_str().ok())
        .and_then(non_empty);
    let bearer = headers
        .get(warp::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let v = v.trim();
            (v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ")).then(|| &v[7..])
        })
        .and_then(non_empty);
    cookie
        .or_else(|| from_query(SESSION_COOKIE))
        .or(header)
        .or(bearer)
        .or_else(|| from_query("access_token"))
}

/// Reads a body of at most 4 MiB and decodes it as JSON, answering as Coder
/// does: 413 when too large, 400 with the decoder's message when not JSON.
/// Unknown fields are ignored. Feed it `warp::body::stream()`: unlike
/// `warp::body::json`, it needs no Content-Length and ignores Content-Type, as
/// Coder's decoder does.
pub async fn read_json<T: DeserializeOwned>(
    body: impl Stream<Item = Result<impl Buf, warp::Error>>,
) -> Result<T, ApiError> {
    decode_json(&read_body(body).await?)
}

/// Reads a body of at most 4 MiB (413 beyond, as Coder).
pub async fn read_body(
    body: impl Stream<Item = Result<impl Buf, warp::Error>>,
) -> Result<Bytes, ApiError> {
    let mut body = std::pin::pin!(body);
    let mut buf = Vec::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| {
            ApiError::bad_request("Failed to read request body.").detail(e.to_string())
        })?;
        if buf.len() as u64 + chunk.remaining() as u64 > MAX_BODY_BYTES {
            return Err(
                ApiError::payload_too_large("Request body too large.").detail(format!(
                    "Maximum request body size is {MAX_BODY_BYTES} bytes."
                )),
            );
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            buf.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(Bytes::from(buf))
}

/// Deserializes JSON `null` as the type's default, as Go's decoder leaves a
/// field at its zero value: `{"logs": null}` is an empty list.
pub fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + serde::Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Answers an error before the request body was read, with `Connection:
/// close`: the unread body would otherwise be taken for the next request on a
/// keep-alive connection, and waiting for it first could stall a client that
/// waits for the answer before sending it.
pub fn refuse_unread(err: ApiError) -> ApiError {
    ApiError { close: true, ..err }
}

pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Request bodies are objects. serde would also accept an array for a
    // struct (by position); Go's decoder refuses it, and so do we. `null`
    // leaves every field at its zero value, as in Go.
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    match start.map(|i| &bytes[i..]) {
        Some(rest) if rest.starts_with(b"[") => {
            return Err(ApiError::bad_request("Request body must be valid JSON.")
                .detail("json: cannot unmarshal array into an object: send a JSON object"));
        }
        Some(rest) if rest.trim_ascii_end() == b"null" => return decode_json(b"{}"),
        _ => {}
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request("Request body must be valid JSON.").detail(e.to_string())
    })
}

/// A boolean query flag (appliance's decision 4): `true`/`1`/bare presence
/// turn it on, `false`/`0` off; anything else is Coder's 400.
pub fn query_flag(query: &[(String, String)], name: &str) -> Result<bool, ApiError> {
    match query
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
    {
        None => Ok(false),
        Some("" | "1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(other) => Err(ApiError::bad_request(format!(
            "Query param \"{name}\" must be a boolean."
        ))
        .validation(name, format!("Must be true or false, not {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                warp::http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        h
    }

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn token_sources_in_coders_order() {
        let all = headers(&[
            ("cookie", "a=b; coder_session_token=cookie"),
            ("coder-session-token", "header"),
            ("authorization", "Bearer bearer"),
        ]);
        let query = q(&[("coder_session_token", "query"), ("access_token", "access")]);
        assert_eq!(find_token(&all, &query).as_deref(), Some("cookie"));
        let no_cookie = headers(&[
            ("coder-session-token", "header"),
            ("authorization", "Bearer bearer"),
        ]);
        assert_eq!(find_token(&no_cookie, &query).as_deref(), Some("query"));
        assert_eq!(find_token(&no_cookie, &[]).as_deref(), Some("header"));
        let bearer = headers(&[("authorization", "bEaReR   spaced  ")]);
        assert_eq!(find_token(&bearer, &[]).as_deref(), Some("spaced"));
        assert_eq!(
            find_token(&HeaderMap::new(), &q(&[("access_token", "access")])).as_deref(),
            Some("access")
        );
        assert_eq!(
            find_token(&headers(&[("authorization", "Basic abc")]), &[]),
            None
        );
        assert_eq!(
            find_token(&headers(&[("coder-session-token", "  ")]), &[]),
            None
        );
    }

    #[test]
    fn json_errors_carry_the_decoder_message() {
        let err = decode_json::<serde_json::Value>(b"{not json").expect_err("invalid");
        assert_eq!(err.status, warp::http::StatusCode::BAD_REQUEST);
        assert_eq!(err.body.message, "Request body must be valid JSON.");
        assert!(err.body.detail.as_deref().unwrap_or("").contains("line 1"));
    }

    #[tokio::test]
    async fn bodies_over_four_mebibytes_are_refused() {
        let big = vec![b' '; (MAX_BODY_BYTES + 1) as usize];
        let chunks = futures_util::stream::iter(
            big.chunks(64 * 1024)
                .map(|c| Ok::<_, warp::Error>(Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        );
        let err = read_json::<serde_json::Value>(chunks)
            .await
            .expect_err("too large");
        assert_eq!(err.status, warp::http::StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(err.body.message, "Request body too large.");
        let ok = futures_util::stream::iter(vec![Ok::<_, warp::Error>(Bytes::from_static(
            b"{\"a\":1}",
        ))]);
        let v: serde_json::Value = read_json(ok).await.expect("small json");
        assert_eq!(v["a"], 1);
    }
}
