//! The dashboard's rendering: view structs filled from store rows and sdk
//! types, askama templates compiled into the binary (`src/web/templates/`,
//! named in `askama.toml`), and the embedded static assets (`app.css`,
//! `app.js`, and the web terminal's from [`terminal`]).
//!
//! Pure: it renders what it is given. It knows no warp, no HTTP statuses, no
//! SQL and no cookies; `routes/web.rs` reads, authorises and answers. No page
//! references anything outside the server (no CDN, no web fonts), and no
//! page carries inline script or style (the Content-Security-Policy forbids
//! them): the live parts are `app.js` reading `data-*` attributes.

pub mod pages;
pub mod terminal;

use std::collections::HashMap;
use std::sync::LazyLock;

use time::OffsetDateTime;

/// The stylesheet every page loads.
const APP_CSS: &str = include_str!("static/app.css");
/// The one script every page loads: polling, the log follower, copy buttons.
const APP_JS: &str = include_str!("static/app.js");

/// An embedded file served under `/static/`.
#[derive(Debug, Clone)]
pub struct Asset {
    pub body: &'static [u8],
    pub content_type: &'static str,
    /// A strong validator of `body` (quoted, as the `ETag` header carries it).
    pub etag: &'static str,
}

/// Every name [`asset`] may answer, for the validators computed once.
const NAMES: [&str; 5] = ["app.css", "app.js", "xterm.js", "xterm.css", "terminal.js"];

fn bytes_of(name: &str) -> Option<(&'static [u8], &'static str)> {
    match name {
        "app.css" => Some((APP_CSS.as_bytes(), "text/css; charset=utf-8")),
        "app.js" => Some((APP_JS.as_bytes(), "text/javascript; charset=utf-8")),
        other => terminal::asset(other),
    }
}

static ETAGS: LazyLock<HashMap<&'static str, String>> = LazyLock::new(|| {
    NAMES
        .iter()
        .filter_map(|&name| {
            let (body, _) = bytes_of(name)?;
            let digest = crate::auth::sha256(body);
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            Some((name, format!("\"{hex}\"")))
        })
        .collect()
});

/// The embedded asset `name` (`app.css`, `app.js`, and the terminal's when
/// bundled), or `None`.
pub fn asset(name: &str) -> Option<Asset> {
    let (body, content_type) = bytes_of(name)?;
    let etag = ETAGS.get(name)?;
    Some(Asset {
        body,
        content_type,
        etag: etag.as_str(),
    })
}

/// `2026-08-12 10:15:00Z`: a time to the second, as the pages show it (and
/// `app.js` writes the times it updates).
pub fn short_time(t: &OffsetDateTime) -> String {
    let full = crate::sdk::rfc3339::format(t);
    match full.get(..19) {
        Some(head) => format!("{}Z", head.replacen('T', " ", 1)),
        None => full,
    }
}

/// [`short_time`], or `never`.
pub fn short_time_or_never(t: Option<&OffsetDateTime>) -> String {
    t.map_or_else(|| "never".to_string(), short_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_assets_are_served_with_validators() {
        for name in ["app.css", "app.js"] {
            let a = asset(name).expect(name);
            assert!(!a.body.is_empty());
            assert!(a.etag.starts_with('"') && a.etag.ends_with('"'));
        }
        assert!(asset("nope.js").is_none());
        assert!(asset("../Cargo.toml").is_none());
        assert_eq!(asset("xterm.js").is_some(), terminal::BUNDLED);
    }

    #[test]
    fn assets_name_nothing_outside_the_server() {
        for text in [APP_CSS, APP_JS] {
            assert!(!text.contains("http://") && !text.contains("https://"));
            assert!(!text.contains("@import") && !text.contains("url("));
        }
    }

    #[test]
    fn times_to_the_second() {
        let t = time::macros::datetime!(2026-08-12 10:15:00.123 UTC);
        assert_eq!(short_time(&t), "2026-08-12 10:15:00Z");
        assert_eq!(short_time_or_never(None), "never");
    }
}
