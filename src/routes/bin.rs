//! `GET /bin/{name}` and `HEAD`: Coder's agent binaries from
//! `agent_binaries.dir`, as coderd serves its own (no credential; Go's
//! `http.FileServer` behind a SHA-1 ETag).
//!
//! The file is streamed from disk a chunk at a time (never read whole), with
//! `Content-Length`, a strong `ETag` (the quoted SHA-1, computed once per file
//! version by `agent_binaries::EtagCache`), `Last-Modified`,
//! `Accept-Ranges: bytes` and coderd's `X-Original-Content-Length`. The
//! conditional headers and `Range` are evaluated as Go's `http.ServeContent`
//! does (RFC 9110's order): `If-Match`/`If-Unmodified-Since` → 412,
//! `If-None-Match`/`If-Modified-Since` → 304, `If-Range`, then one range →
//! 206 with `Content-Range`, none that overlaps or one that does not parse →
//! 416 (with `Content-Range: bytes */size`). Differences from Go: several
//! ranges are answered with the whole file (200) instead of
//! `multipart/byteranges`, and a zero-length suffix (`bytes=-0`) is
//! unsatisfiable. Which names and files are served is `agent_binaries`'s
//! rule; refusals are Coder's error JSON.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use warp::filters::BoxedFilter;
use warp::http::header::{self, HeaderMap, HeaderValue};
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::error::{ApiError, respond};
use super::filters::with_app;
use crate::agent_binaries::{self, EtagCache, OpenError, Opened};
use crate::app::App;

/// How much of a file is read (on the blocking pool) per body chunk.
const CHUNK: usize = 256 << 10;

pub fn routes(app: &App) -> BoxedFilter<(Response,)> {
    // One cache for the server's life: digests per file version.
    let cache = Arc::new(EtagCache::default());
    warp::path!("bin" / String)
        .and(warp::get().or(warp::head()).unify())
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(with_app(app))
        .then(
            move |name: String, method: Method, headers: HeaderMap, app: App| {
                let cache = cache.clone();
                async move { respond(serve(app, cache, name, method, headers).await) }
            },
        )
        .boxed()
}

/// What is answered when `agent_binaries.dir` is not set.
fn not_configured() -> ApiError {
    ApiError::not_found(
        "The operator has not configured agent_binaries.dir: this server serves no agent binaries.",
    )
    .detail(
        "Set agent_binaries.dir in appliance's configuration to a directory of Coder's release binaries (coder-linux-amd64, ...) and restart appliance.",
    )
}

async fn serve(
    app: App,
    cache: Arc<EtagCache>,
    raw_name: String,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(dir) = app.config.agent_binaries.dir.clone() else {
        return Err(not_configured());
    };
    // The segment as sent: `%2F` must not become a slash unseen.
    let name = percent_encoding::percent_decode_str(&raw_name)
        .decode_utf8()
        .map_err(|_| ApiError::from(OpenError::InvalidName("the name is not UTF-8")))?
        .into_owned();
    let (opened, sha1) = tokio::task::spawn_blocking(move || {
        let opened = agent_binaries::open_served(&dir, &name)?;
        let sha1 = cache.sha1_hex(&opened).map_err(OpenError::Io)?;
        Ok::<_, OpenError>((opened, sha1))
    })
    .await
    .map_err(|e| ApiError::internal("An internal server error occurred.", &e))??;
    let etag = format!("\"{sha1}\"");
    let modified = opened.modified.map(whole_seconds);

    let head = |status: StatusCode| {
        let mut resp = Response::new(Vec::<u8>::new().into());
        *resp.status_mut() = status;
        resp.headers_mut().insert(header::ETAG, value(&etag));
        resp
    };
    match preconditions(&headers, &etag, modified) {
        Precondition::Failed => return Err(ApiError::precondition_failed()),
        Precondition::NotModified => return Ok(head(StatusCode::NOT_MODIFIED)),
        Precondition::Proceed => {}
    }
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .filter(|_| if_range(&headers, &etag, modified))
        .unwrap_or("");
    let size = opened.size;
    let (status, start, len) = match parse_range(range, size) {
        Ok(Some((start, len))) => (StatusCode::PARTIAL_CONTENT, start, len),
        Ok(None) => (StatusCode::OK, 0, size),
        Err(RangeError::NoOverlap) if size == 0 => (StatusCode::OK, 0, 0),
        Err(e) => {
            let mut resp = ApiError::range_not_satisfiable(e.detail()).into_response();
            if e == RangeError::NoOverlap {
                resp.headers_mut()
                    .insert(header::CONTENT_RANGE, value(&format!("bytes */{size}")));
            }
            return Ok(resp);
        }
    };

    let mut resp = if method == Method::HEAD {
        head(status)
    } else {
        let mut resp = warp::reply::stream(chunks(&app, &opened, start, len)).into_response();
        *resp.status_mut() = status;
        resp.headers_mut().insert(header::ETAG, value(&etag));
        resp
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, value(&len.to_string()));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert("x-original-content-length", value(&size.to_string()));
    if let Some(m) = modified {
        h.insert(header::LAST_MODIFIED, value(&httpdate::fmt_http_date(m)));
    }
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(
            header::CONTENT_RANGE,
            value(&format!("bytes {start}-{}/{size}", start + len - 1)),
        );
    }
    Ok(resp)
}

/// A header value made of what this module writes (ASCII).
fn value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `len` bytes of the file from `start`, read a chunk at a time on the
/// blocking pool as hyper asks for them. Cut short (the client sees a body
/// shorter than its `Content-Length`) if the file shrinks, on a read error
/// or when the server shuts down.
fn chunks(
    app: &App,
    opened: &Opened,
    start: u64,
    len: u64,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + Sync + 'static
{
    let state = (
        opened.file.clone(),
        start,
        start + len,
        app.shutdown.clone(),
    );
    futures_util::stream::try_unfold(state, |(file, offset, end, shutdown)| async move {
        if offset >= end {
            return Ok(None);
        }
        if shutdown.is_cancelled() {
            return Err(std::io::Error::other("the server is shutting down"));
        }
        let want = usize::try_from(end - offset).map_or(CHUNK, |n| n.min(CHUNK));
        let reader = file.clone();
        let buf = tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let mut buf = vec![0u8; want];
            let n = reader.read_at(&mut buf, offset)?;
            buf.truncate(n);
            Ok::<_, std::io::Error>(buf)
        })
        .await
        .map_err(std::io::Error::other)??;
        if buf.is_empty() {
            tracing::warn!("an agent binary shrank while it was sent; the response is cut short");
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let next = offset + buf.len() as u64;
        Ok(Some((bytes::Bytes::from(buf), (file, next, end, shutdown))))
    })
}

/// Seconds precision, as `Last-Modified` carries it.
fn whole_seconds(t: SystemTime) -> SystemTime {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => UNIX_EPOCH,
    }
}

/// The outcome of the conditional headers, before any range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Precondition {
    Proceed,
    NotModified,
    Failed,
}

/// Go's `checkPreconditions` for a GET or HEAD: `If-Match` (else
/// `If-Unmodified-Since`) failing is 412; `If-None-Match` matching (else
/// `If-Modified-Since` not older than the file) is 304.
fn preconditions(headers: &HeaderMap, etag: &str, modified: Option<SystemTime>) -> Precondition {
    let get = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
    };
    let date = |name| get(name).and_then(|v| httpdate::parse_http_date(v).ok());
    let matched = match get(header::IF_MATCH) {
        Some(list) => Some(etag_list_matches(list, etag, true)),
        None => match (date(header::IF_UNMODIFIED_SINCE), modified) {
            (Some(t), Some(m)) => Some(m <= t),
            _ => None,
        },
    };
    if matched == Some(false) {
        return Precondition::Failed;
    }
    match get(header::IF_NONE_MATCH) {
        Some(list) if etag_list_matches(list, etag, false) => Precondition::NotModified,
        Some(_) => Precondition::Proceed,
        None => match (date(header::IF_MODIFIED_SINCE), modified) {
            (Some(t), Some(m)) if m <= t => Precondition::NotModified,
            _ => Precondition::Proceed,
        },
    }
}

/// Whether `If-Range` (if any) lets the `Range` apply: a strong match of
/// our ETag, or exactly our `Last-Modified`.
fn if_range(headers: &HeaderMap, etag: &str, modified: Option<SystemTime>) -> bool {
    let Some(v) = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
    else {
        return true;
    };
    if let Some((tag, _)) = scan_etag(v) {
        return tag == etag;
    }
    match (httpdate::parse_http_date(v.trim()), modified) {
        (Ok(t), Some(m)) => t == m,
        _ => false,
    }
}

/// Whether a comma-separated list of entity tags (or `*`) matches `etag`:
/// strong comparison (`If-Match`) or weak (`If-None-Match`). Stops at the
/// first thing that is not an entity tag, as Go does.
fn etag_list_matches(list: &str, etag: &str, strong: bool) -> bool {
    let mut rest = list;
    loop {
        rest = rest.trim_matches([' ', '\t']);
        if rest.is_empty() {
            return false;
        }
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
            continue;
        }
        if rest.starts_with('*') {
            return true;
        }
        let Some((tag, remain)) = scan_etag(rest) else {
            return false;
        };
        let hit = if strong {
            tag == etag && !tag.starts_with("W/")
        } else {
            tag.trim_start_matches("W/") == etag.trim_start_matches("W/")
        };
        if hit {
            return true;
        }
        rest = remain;
    }
}

/// Go's `scanETag`: an entity tag (`"..."` or `W/"..."`) at the start of
/// `s`, and what follows it.
fn scan_etag(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_matches([' ', '\t']);
    let start = if s.starts_with("W/") { 2 } else { 0 };
    let bytes = s.as_bytes();
    if bytes.len() < start + 2 || bytes[start] != b'"' {
        return None;
    }
    for (i, &c) in bytes.iter().enumerate().skip(start + 1) {
        match c {
            b'"' => return Some((&s[..=i], &s[i + 1..])),
            0x21 | 0x23..=0x7e | 0x80.. => {}
            _ => return None,
        }
    }
    None
}

/// Why a `Range` header is refused with 416.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeError {
    /// Not `bytes=` ranges as RFC 9110 writes them.
    Invalid,
    /// No range starts inside the file.
    NoOverlap,
}

impl RangeError {
    fn detail(self) -> &'static str {
        match self {
            RangeError::Invalid => "The Range header is not a valid bytes range.",
            RangeError::NoOverlap => "No requested range overlaps the file.",
        }
    }
}

/// Go's `parseRange` for a file of `size` bytes, reduced to one range:
/// `Ok(None)` serves the whole file (no header, or several ranges, which Go
/// would answer as multipart), `Ok(Some((start, len)))` one part.
fn parse_range(header: &str, size: u64) -> Result<Option<(u64, u64)>, RangeError> {
    if header.is_empty() {
        return Ok(None);
    }
    let specs = header.strip_prefix("bytes=").ok_or(RangeError::Invalid)?;
    let number = |s: &str| -> Result<u64, RangeError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RangeError::Invalid);
        }
        s.parse().map_err(|_| RangeError::Invalid)
    };
    let mut ranges = Vec::new();
    let mut no_overlap = false;
    for spec in specs.split(',') {
        let spec = spec.trim_matches([' ', '\t']);
        if spec.is_empty() {
            continue;
        }
        let (first, last) = spec.split_once('-').ok_or(RangeError::Invalid)?;
        let (first, last) = (
            first.trim_matches([' ', '\t']),
            last.trim_matches([' ', '\t']),
        );
        if first.is_empty() {
            // The last `n` bytes.
            let n = number(last)?.min(size);
            if n == 0 {
                no_overlap = true;
                continue;
            }
            ranges.push((size - n, n));
            continue;
        }
        let start = number(first)?;
        if start >= size {
            no_overlap = true;
            continue;
        }
        let len = if last.is_empty() {
            size - start
        } else {
            let end = number(last)?;
            if end < start {
                return Err(RangeError::Invalid);
            }
            end.min(size - 1) - start + 1
        };
        ranges.push((start, len));
    }
    match ranges.as_slice() {
        [] if no_overlap => Err(RangeError::NoOverlap),
        [one] => Ok(Some(*one)),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_as_go_parses_them() {
        let r = |h: &str| parse_range(h, 100);
        assert_eq!(r(""), Ok(None));
        assert_eq!(r("bytes=0-9"), Ok(Some((0, 10))));
        assert_eq!(r("bytes=90-"), Ok(Some((90, 10))));
        assert_eq!(r("bytes=-10"), Ok(Some((90, 10))));
        assert_eq!(r("bytes=-1000"), Ok(Some((0, 100))));
        assert_eq!(r("bytes=95-1000"), Ok(Some((95, 5))));
        assert_eq!(r("bytes= 5-6 "), Ok(Some((5, 2))));
        assert_eq!(r("bytes=5-6,"), Ok(Some((5, 2))));
        assert_eq!(r("bytes=100-"), Err(RangeError::NoOverlap));
        assert_eq!(r("bytes=200-300"), Err(RangeError::NoOverlap));
        assert_eq!(r("bytes=-0"), Err(RangeError::NoOverlap));
        // One range out of the file, one in: the one that is.
        assert_eq!(r("bytes=200-300,0-0"), Ok(Some((0, 1))));
        // Several: the whole file.
        assert_eq!(r("bytes=0-1,5-6"), Ok(None));
        for bad in [
            "bytes",
            "items=0-1",
            "bytes=x-1",
            "bytes=1-x",
            "bytes=5-4",
            "bytes=--1",
            "bytes=1",
            "bytes=-",
            "bytes=+1-2",
            "bytes=-1-2",
        ] {
            assert_eq!(r(bad), Err(RangeError::Invalid), "{bad}");
        }
        assert_eq!(parse_range("bytes=0-", 0), Err(RangeError::NoOverlap));
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn conditionals_in_go_order() {
        let etag = "\"abc\"";
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let before = httpdate::fmt_http_date(t - Duration::from_secs(1));
        let at = httpdate::fmt_http_date(t);
        let p = |pairs: &[(&'static str, &str)]| preconditions(&headers(pairs), etag, Some(t));
        assert_eq!(p(&[]), Precondition::Proceed);
        assert_eq!(
            p(&[("if-none-match", "\"abc\"")]),
            Precondition::NotModified
        );
        assert_eq!(
            p(&[("if-none-match", "W/\"abc\"")]),
            Precondition::NotModified
        );
        assert_eq!(
            p(&[("if-none-match", "\"x\", \"abc\"")]),
            Precondition::NotModified
        );
        assert_eq!(p(&[("if-none-match", "*")]), Precondition::NotModified);
        assert_eq!(p(&[("if-none-match", "\"x\"")]), Precondition::Proceed);
        // If-None-Match wins over If-Modified-Since.
        assert_eq!(
            p(&[
                ("if-none-match", "\"x\""),
                ("if-modified-since", at.as_str())
            ]),
            Precondition::Proceed
        );
        assert_eq!(
            p(&[("if-modified-since", at.as_str())]),
            Precondition::NotModified
        );
        assert_eq!(
            p(&[("if-modified-since", before.as_str())]),
            Precondition::Proceed
        );
        assert_eq!(
            p(&[("if-modified-since", "yesterday")]),
            Precondition::Proceed
        );
        assert_eq!(p(&[("if-match", "\"abc\"")]), Precondition::Proceed);
        assert_eq!(p(&[("if-match", "*")]), Precondition::Proceed);
        assert_eq!(p(&[("if-match", "W/\"abc\"")]), Precondition::Failed);
        assert_eq!(p(&[("if-match", "\"x\"")]), Precondition::Failed);
        assert_eq!(
            p(&[("if-unmodified-since", before.as_str())]),
            Precondition::Failed
        );
        assert_eq!(
            p(&[("if-unmodified-since", at.as_str())]),
            Precondition::Proceed
        );
        // No modification time: the dates say nothing.
        assert_eq!(
            preconditions(&headers(&[("if-modified-since", at.as_str())]), etag, None),
            Precondition::Proceed
        );

        let ir = |v: &str| if_range(&headers(&[("if-range", v)]), etag, Some(t));
        assert!(if_range(&HeaderMap::new(), etag, Some(t)));
        assert!(ir("\"abc\""));
        assert!(!ir("W/\"abc\""));
        assert!(!ir("\"x\""));
        assert!(ir(&at));
        assert!(!ir(&before));
        assert!(!ir("garbage"));
    }

    #[test]
    fn entity_tags_scan_as_go_scans_them() {
        assert_eq!(scan_etag("\"a\" , x"), Some(("\"a\"", " , x")));
        assert_eq!(scan_etag("W/\"a\""), Some(("W/\"a\"", "")));
        assert_eq!(scan_etag("\"a"), None);
        assert_eq!(scan_etag("a"), None);
        assert_eq!(scan_etag("\"a b\""), None);
        // A list stops at garbage.
        assert!(!etag_list_matches("junk, \"abc\"", "\"abc\"", false));
    }
}
