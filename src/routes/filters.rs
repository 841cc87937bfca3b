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

/// The value of cookie `name`, if the request carries a non-empty one.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(warp::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

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
    let cookie = cookie(headers, SESSION_COOKIE).map(str::to_string);
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
    serde_json::from_slice(&as_go_reads_it(bytes)).map_err(|e| {
        ApiError::bad_request("Request body must be valid JSON.").detail(e.to_string())
    })
}

/// The body rewritten so that serde_json reads it as Go's `encoding/json`
/// does where the two differ on strings. Go replaces with U+FFFD what serde
/// refuses: an escaped UTF-16 surrogate that is not half of a valid pair
/// (`"\ud800"`, `"\udc00"`, a high half followed by anything but a low one),
/// and every byte that is not part of valid UTF-8. Borrows the input when
/// there is nothing to rewrite (the common case: one scan, no copy).
///
/// Backslashes are only ever escapes inside strings (anywhere else the body is
/// not JSON, rewritten or not), so the scan needs no string state: it steps
/// over each escape whole, and `\\ud800` stays an escaped backslash followed
/// by text.
pub fn as_go_reads_it(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    use std::borrow::Cow;
    let valid: Cow<'_, [u8]> = if std::str::from_utf8(bytes).is_ok() {
        Cow::Borrowed(bytes)
    } else {
        // One U+FFFD per byte of each invalid sequence: Go's decoder takes an
        // invalid sequence's bytes one at a time (`utf8.DecodeRune` answers
        // width 1), and none of them starts a valid sequence.
        let mut out = Vec::with_capacity(bytes.len() + 16);
        for chunk in bytes.utf8_chunks() {
            out.extend_from_slice(chunk.valid().as_bytes());
            for _ in chunk.invalid() {
                out.extend_from_slice("\u{fffd}".as_bytes());
            }
        }
        Cow::Owned(out)
    };
    match lone_surrogates_replaced(&valid) {
        Some(rewritten) => Cow::Owned(rewritten),
        None => valid,
    }
}

/// The value of four hex digits at the start of `b`.
fn hex4(b: &[u8]) -> Option<u16> {
    let digits = b.get(..4)?;
    digits.iter().try_fold(0u16, |acc, &c| {
        Some(acc << 4 | char::from(c).to_digit(16)? as u16)
    })
}

/// `\uXXXX` escapes of surrogates that are not a high half directly followed
/// by a low half's escape, replaced by `\ufffd` (Go's `unquote`: the invalid
/// unit becomes U+FFFD, and the escape after it is read on its own). `None`
/// when there is none.
fn lone_surrogates_replaced(bytes: &[u8]) -> Option<Vec<u8>> {
    let escape_at = |i: usize| -> Option<u16> {
        if bytes.get(i..i + 2)? == b"\\u" {
            hex4(bytes.get(i + 2..)?)
        } else {
            None
        }
    };
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut i = 0;
    while let Some(skip) = bytes
        .get(i..)
        .and_then(|rest| rest.iter().position(|&b| b == b'\\'))
    {
        i += skip;
        match escape_at(i) {
            // A valid pair: serde_json reads it as Go does.
            Some(0xD800..=0xDBFF)
                if escape_at(i + 6).is_some_and(|low| (0xDC00..=0xDFFF).contains(&low)) =>
            {
                i += 12;
            }
            Some(0xD800..=0xDFFF) => {
                let o = out.get_or_insert_with(|| Vec::with_capacity(bytes.len()));
                o.extend_from_slice(&bytes[copied..i]);
                o.extend_from_slice(b"\\ufffd");
                i += 6;
                copied = i;
            }
            Some(_) => i += 6,
            // Any other escape (`\\`, `\"`, ...) or a malformed one: step over
            // the backslash and the byte after it.
            None => i += 2,
        }
    }
    let mut out = out?;
    out.extend_from_slice(&bytes[copied..]);
    Some(out)
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

    /// Go's `encoding/json` string decoding (`unquote` in decode.go), for
    /// the content between the quotes: the reference the rewrite must meet.
    fn go_unquote(s: &[u8]) -> Option<String> {
        fn getu4(s: &[u8]) -> Option<u32> {
            if s.get(..2)? != b"\\u" {
                return None;
            }
            hex4(&s[2..]).map(u32::from)
        }
        let mut out = String::new();
        let mut r = 0;
        while r < s.len() {
            let c = s[r];
            if c == b'\\' {
                match *s.get(r + 1)? {
                    b'"' => out.push('"'),
                    b'\\' => out.push('\\'),
                    b'/' => out.push('/'),
                    b'b' => out.push('\u{8}'),
                    b'f' => out.push('\u{c}'),
                    b'n' => out.push('\n'),
                    b'r' => out.push('\r'),
                    b't' => out.push('\t'),
                    b'u' => {
                        let mut rr = getu4(&s[r..])?;
                        r += 6;
                        if (0xD800..0xE000).contains(&rr) {
                            let rr1 = getu4(&s[r..]);
                            if (0xD800..0xDC00).contains(&rr)
                                && let Some(lo @ 0xDC00..0xE000) = rr1
                            {
                                r += 6;
                                out.push(
                                    char::from_u32(0x10000 + ((rr - 0xD800) << 10) + (lo - 0xDC00))
                                        .expect("a valid pair"),
                                );
                                continue;
                            }
                            rr = 0xFFFD;
                        }
                        out.push(char::from_u32(rr).expect("not a surrogate"));
                        continue;
                    }
                    _ => return None,
                }
                r += 2;
            } else if c == b'"' || c < b' ' {
                return None;
            } else if c < 0x80 {
                out.push(char::from(c));
                r += 1;
            } else {
                // utf8.DecodeRune: the one valid character here, or (U+FFFD, 1).
                let found = (2..=4).find_map(|w| {
                    let bytes = s.get(r..r + w)?;
                    std::str::from_utf8(bytes).ok().map(|t| (t, w))
                });
                match found {
                    Some((t, w)) => {
                        out.push_str(t);
                        r += w;
                    }
                    None => {
                        out.push('\u{fffd}');
                        r += 1;
                    }
                }
            }
        }
        Some(out)
    }

    /// A small deterministic generator (xorshift64*), so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A random JSON string body made of the pieces that matter: escapes of
    /// surrogates and other units (either hex case), other escapes, escaped
    /// backslashes before `u`, raw multi-byte characters and invalid bytes.
    fn random_string(rng: &mut Rng) -> Vec<u8> {
        let mut s = vec![b'"'];
        for _ in 0..rng.below(12) {
            match rng.below(9) {
                0 | 1 => {
                    let unit = match rng.below(4) {
                        0 => 0xD800 + rng.below(0x400),
                        1 => 0xDC00 + rng.below(0x400),
                        2 => [0x41, 0xE9, 0xFFFD, 0xFFFF, 0xD7FF, 0xE000][rng.below(6) as usize],
                        _ => rng.below(0x10000),
                    };
                    let hex = format!("{unit:04x}");
                    let hex = if rng.below(2) == 0 {
                        hex.to_uppercase()
                    } else {
                        hex
                    };
                    s.extend_from_slice(format!("\\u{hex}").as_bytes());
                }
                2 => s.extend_from_slice(b"\\\\u"),
                3 => s.extend_from_slice(
                    [&b"\\\\"[..], b"\\\"", b"\\n", b"\\/"][rng.below(4) as usize],
                ),
                4 => s.extend_from_slice("é😀".as_bytes()),
                5 => s.extend_from_slice(
                    [
                        &[0x80u8][..],
                        &[0xFF],
                        &[0xED, 0xA0, 0x80],
                        &[0xE2, 0x82],
                        &[0xF0, 0x9F, 0x98],
                    ][rng.below(5) as usize],
                ),
                6 => s.extend_from_slice(b"d800"),
                _ => s.push(b'a' + rng.below(26) as u8),
            }
        }
        s.push(b'"');
        s
    }

    #[test]
    fn strings_decode_as_go_decodes_them() {
        let cases: &[(&[u8], &str)] = &[
            (br#""a\ud800b""#, "a\u{fffd}b"),
            (br#""\udc00""#, "\u{fffd}"),
            (br#""\ud83d\ude00""#, "\u{1f600}"),
            (br#""\ud800\ud800\udc00""#, "\u{fffd}\u{10000}"),
            (br#""\ud800\u0041""#, "\u{fffd}A"),
            (br#""\\ud800""#, "\\ud800"),
            (br#""\\\ud800""#, "\\\u{fffd}"),
            (b"\"a\xffb\"", "a\u{fffd}b"),
            (b"\"\xed\xa0\x80\"", "\u{fffd}\u{fffd}\u{fffd}"),
            (b"\"\xe2\x82A\"", "\u{fffd}\u{fffd}A"),
        ];
        for (body, want) in cases {
            let got: String = decode_json(body).expect("decodes");
            assert_eq!(got, *want, "{}", String::from_utf8_lossy(body));
            let reference = go_unquote(&body[1..body.len() - 1]).expect("Go decodes it");
            assert_eq!(reference, *want, "the reference agrees");
        }
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            let body = random_string(&mut rng);
            let want = go_unquote(&body[1..body.len() - 1]);
            let got = serde_json::from_slice::<String>(&as_go_reads_it(&body)).ok();
            assert_eq!(got, want, "{body:?}");
        }
    }

    #[test]
    fn the_rewrite_never_panics_and_leaves_clean_bodies_alone() {
        let clean = br#"{"a":"\u00e9\ud83d\ude00\\ud800","b":[1,2]}"#;
        assert!(matches!(
            as_go_reads_it(clean),
            std::borrow::Cow::Borrowed(_)
        ));
        let mut rng = Rng(42);
        let alphabet = b"\\u\"dD8aFf0 {}[]:,\x80\xff\xed";
        for _ in 0..50_000 {
            let len = rng.below(24) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
                .collect();
            let out = as_go_reads_it(&bytes);
            assert!(std::str::from_utf8(&out).is_ok(), "{bytes:?}");
        }
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
