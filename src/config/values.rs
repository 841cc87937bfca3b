//! Value parsers: each turns a [`Raw`] value from any layer into a typed one,
//! or says what was expected (the caller adds the key, the value and where
//! it came from). Also the duration syntax (`"1h30m"`) and the URL checks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::LogFormat;
use super::schema::Raw;

/// `0.0.0.0`/`[::]` are not addresses a client can use; point at loopback instead.
pub(crate) fn derive_access_url(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

// ---------------------------------------------------------------------------
// Value parsers. Errors say what was expected; the caller adds key, value, source.
// ---------------------------------------------------------------------------

pub(super) fn expect_str(raw: &Raw, what: &str) -> Result<String, String> {
    match raw {
        Raw::Str(s) => Ok(s.clone()),
        Raw::Path(p) => Ok(p.to_string_lossy().into_owned()),
        Raw::Int(_) => Err(format!("expected {what}, not an integer")),
        Raw::Bool(_) => Err(format!("expected {what}, not a boolean")),
        Raw::List(_) => Err(format!("expected {what}, not a list")),
    }
}

pub(super) fn parse_path(raw: &Raw) -> Result<PathBuf, String> {
    let path = match raw {
        Raw::Path(p) => p.clone(),
        other => PathBuf::from(expect_str(other, "a path")?),
    };
    if path.as_os_str().is_empty() {
        return Err("must not be empty".to_owned());
    }
    Ok(path)
}

pub(super) fn parse_socket_addr(raw: &Raw) -> Result<SocketAddr, String> {
    expect_str(raw, "an address")?.trim().parse().map_err(|_| {
        "expected IP:port, e.g. 127.0.0.1:3000, 0.0.0.0:3000 or [::]:3000 (host names are not accepted)"
            .to_owned()
    })
}

pub(super) fn parse_bool(raw: &Raw) -> Result<bool, String> {
    match raw {
        Raw::Bool(b) => Ok(*b),
        other => match expect_str(other, "true or false")?.trim() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err("expected true or false".to_owned()),
        },
    }
}

/// A list of paths: a TOML array, or one comma-separated string (environment);
/// the empty string is the empty list.
pub(super) fn parse_path_list(raw: &Raw) -> Result<Vec<PathBuf>, String> {
    let items: Vec<String> = match raw {
        Raw::List(l) => l.clone(),
        other => expect_str(other, "a list of paths")?
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
    };
    if items.iter().any(|s| s.trim().is_empty()) {
        return Err("paths must not be empty".to_owned());
    }
    Ok(items.into_iter().map(PathBuf::from).collect())
}

/// A list of `host:port` addresses: a TOML array, or one comma-separated
/// string (environment); the empty string is the empty list.
pub(super) fn parse_host_port_list(raw: &Raw) -> Result<Vec<String>, String> {
    let items: Vec<String> = match raw {
        Raw::List(l) => l.iter().map(|s| s.trim().to_owned()).collect(),
        other => expect_str(other, "a list of host:port addresses")?
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
    };
    for item in &items {
        let port = item
            .rsplit_once(':')
            .map(|(host, port)| (host, port.parse::<u16>()));
        match port {
            Some((host, Ok(p))) if !host.is_empty() && p > 0 => {}
            _ => {
                return Err(format!(
                    "{item:?} is not host:port, e.g. stun.example.internal:3478"
                ));
            }
        }
    }
    Ok(items)
}

/// An optional string setting: empty means unset.
pub(super) fn parse_optional<T>(
    raw: &Raw,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<Option<T>, String> {
    let s = expect_str(raw, "a string")?;
    if s.trim().is_empty() {
        Ok(None)
    } else {
        parse(s.trim()).map(Some)
    }
}

pub(super) fn parse_non_empty(raw: &Raw) -> Result<String, String> {
    let s = expect_str(raw, "a string")?;
    if s.trim().is_empty() {
        return Err("must not be empty".to_owned());
    }
    Ok(s)
}

pub(super) fn parse_log_format(raw: &Raw) -> Result<LogFormat, String> {
    match expect_str(raw, "\"text\" or \"json\"")?.as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err("expected \"text\" or \"json\"".to_owned()),
    }
}

/// `"normal"` (false) or `"full"` (true), any case: `database.synchronous`.
pub(super) fn parse_synchronous(raw: &Raw) -> Result<bool, String> {
    match expect_str(raw, "\"normal\" or \"full\"")?
        .to_ascii_lowercase()
        .as_str()
    {
        "normal" => Ok(false),
        "full" => Ok(true),
        _ => Err("expected \"normal\" or \"full\"".to_owned()),
    }
}

pub(super) fn parse_ssh_keygen_algorithm(raw: &Raw) -> Result<crate::gitsshkey::Algorithm, String> {
    expect_str(raw, "\"ed25519\", \"ecdsa\" or \"rsa4096\"")?.parse()
}

pub(super) fn parse_int_in(raw: &Raw, min: u32, max: u32) -> Result<u32, String> {
    let n = match raw {
        Raw::Int(i) => *i,
        other => expect_str(other, "an integer")?
            .trim()
            .parse::<i64>()
            .map_err(|_| "expected an integer".to_owned())?,
    };
    u32::try_from(n)
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("must be between {min} and {max}"))
}

/// Text durations use [`parse_duration`]; integers (TOML only) are seconds.
pub(super) fn parse_duration_at_least(raw: &Raw, min_secs: u64) -> Result<Duration, String> {
    let d = match raw {
        Raw::Int(i) => {
            Duration::from_secs(u64::try_from(*i).map_err(|_| "must not be negative".to_owned())?)
        }
        other => parse_duration(&expect_str(other, "a duration")?)?,
    };
    if d < Duration::from_secs(min_secs) {
        return Err(format!(
            "must be at least {}",
            format_duration(Duration::from_secs(min_secs))
        ));
    }
    Ok(d)
}

/// An `http`/`https` URL with a host, normalized (scheme lowercased, trailing `/` stripped).
pub(super) fn parse_url(raw: &Raw) -> Result<String, String> {
    check_http_url(&expect_str(raw, "a URL")?, false)
}

/// Like [`parse_url`], but no query or fragment: it is a base for other URLs.
pub(super) fn parse_base_url(raw: &Raw) -> Result<String, String> {
    check_http_url(&expect_str(raw, "a URL")?, true)
}

pub(super) fn check_http_url(s: &str, base: bool) -> Result<String, String> {
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".to_owned());
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err("expected a URL starting with http:// or https://".to_owned());
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err("the scheme must be http or https".to_owned());
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        return Err("must not contain credentials".to_owned());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((ip, after)) = v6.split_once(']') else {
            return Err("unterminated [IPv6] host".to_owned());
        };
        if ip.parse::<Ipv6Addr>().is_err() {
            return Err("invalid IPv6 host".to_owned());
        }
        match after {
            "" => (ip, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (ip, Some(port)),
                None => return Err("unexpected characters after the host".to_owned()),
            },
        }
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.contains(['[', ']']) {
            return Err("invalid host".to_owned());
        }
        (host, port)
    };
    if host.is_empty() {
        return Err("the URL must have a host".to_owned());
    }
    if let Some(port) = port
        && (port.is_empty()
            || !port.bytes().all(|b| b.is_ascii_digit())
            || port.parse::<u16>().is_err())
    {
        return Err("invalid port".to_owned());
    }
    if base && tail.contains(['?', '#']) {
        return Err("must not have a query (?) or fragment (#)".to_owned());
    }
    let url = format!("{scheme}://{rest}");
    let trimmed = if tail.contains(['?', '#']) {
        url.as_str()
    } else {
        url.trim_end_matches('/')
    };
    Ok(trimmed.to_owned())
}

// ---------------------------------------------------------------------------
// Durations
// ---------------------------------------------------------------------------

const DURATION_HINT: &str =
    "expected whole numbers with units s, m, h or d, e.g. \"30s\", \"5m\", \"1h30m\" or \"7d\"";

/// Parses `"30s"`, `"5m"`, `"1h"`, `"7d"` and combinations largest unit first
/// (`"1h30m"`). Units: `s`, `m`, `h`, `d`. A bare number is rejected (the unit
/// is never guessed). Surrounding whitespace is ignored.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err(format!("empty duration; {DURATION_HINT}"));
    }
    let mut rest = s;
    let mut total: u64 = 0;
    let mut previous_unit: Option<u64> = None;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(DURATION_HINT.to_owned());
        }
        let (number, after) = rest.split_at(digits);
        let letters = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(letters);
        let unit_secs: u64 = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "" if after.is_empty() => {
                return Err(format!("missing unit after {number}; {DURATION_HINT}"));
            }
            "" => return Err(DURATION_HINT.to_owned()),
            other => return Err(format!("unknown unit \"{other}\"; {DURATION_HINT}")),
        };
        if previous_unit.is_some_and(|p| unit_secs >= p) {
            return Err(format!(
                "each unit may appear once, largest first; {DURATION_HINT}"
            ));
        }
        previous_unit = Some(unit_secs);
        total = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(unit_secs))
            .and_then(|n| n.checked_add(total))
            .ok_or_else(|| "duration is too large".to_owned())?;
        rest = after;
    }
    Ok(Duration::from_secs(total))
}

/// Inverse of [`parse_duration`] for whole seconds: `90s` → `"1m30s"`.
pub fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() != 0 {
        return format!("{d:?}");
    }
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}
