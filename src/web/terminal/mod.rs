//! The web terminal of the agent page: xterm.js, embedded when the build
//! found it (`packaging/xterm.sh` fetches it at a pinned version with its
//! integrity checked; build.rs then sets cfg `xterm_bundled`), and our
//! `terminal.js`, which opens the agent's `/pty` WebSocket with the session
//! cookie. Bytes by name and their content types; no HTTP, no routes, no I/O.
//!
//! `terminal.js` is served with xterm.js's fit addon in front of it (joined at
//! compile time), so the page loads three files: `xterm.js`, `xterm.css`,
//! `terminal.js`. Without xterm.js there is no asset at all and the page
//! shows [`MISSING`].

/// Whether this build embeds xterm.js (and so has a terminal).
pub const BUNDLED: bool = cfg!(xterm_bundled);

/// What the agent page says instead of a terminal when [`BUNDLED`] is false.
pub const MISSING: &str = "This build of appliance does not bundle xterm.js, so there is no terminal here. Build with packaging/xterm.sh first.";

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// An asset of the terminal by file name (`xterm.js`, `xterm.css`,
/// `terminal.js`) with its content type; `None` for any other name, and for
/// every name when xterm.js is not bundled.
pub fn asset(name: &str) -> Option<(&'static [u8], &'static str)> {
    #[cfg(xterm_bundled)]
    {
        match name {
            "xterm.js" => Some((bundle::XTERM_JS, JS)),
            "xterm.css" => Some((bundle::XTERM_CSS, CSS)),
            "terminal.js" => Some((&bundle::TERMINAL_JS, JS)),
            _ => None,
        }
    }
    #[cfg(not(xterm_bundled))]
    {
        let _ = (name, JS, CSS);
        None
    }
}

#[cfg(xterm_bundled)]
mod bundle {
    pub const XTERM_JS: &[u8] = include_bytes!(env!("APPLIANCE_XTERM_JS"));
    pub const XTERM_CSS: &[u8] = include_bytes!(env!("APPLIANCE_XTERM_CSS"));
    const FIT_JS: &[u8] = include_bytes!(env!("APPLIANCE_XTERM_FIT_JS"));
    const OURS: &[u8] = include_bytes!("terminal.js");
    const HEADER: &[u8] =
        b"/* @xterm/addon-fit (MIT License, Copyright (c) 2019 The xterm.js authors), then appliance's terminal.js */\n";
    const PARTS: [&[u8]; 4] = [HEADER, FIT_JS, b"\n", OURS];
    const LEN: usize = HEADER.len() + FIT_JS.len() + 1 + OURS.len();

    /// The fit addon, then `terminal.js`.
    pub static TERMINAL_JS: [u8; LEN] = concat(&PARTS);

    const fn concat<const N: usize>(parts: &[&[u8]]) -> [u8; N] {
        let mut out = [0u8; N];
        let mut at = 0;
        let mut p = 0;
        while p < parts.len() {
            let part = parts[p];
            let mut i = 0;
            while i < part.len() {
                out[at] = part[i];
                at += 1;
                i += 1;
            }
            p += 1;
        }
        assert!(at == N, "the parts do not add up to N bytes");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// The directory build.rs looked in, as it computes it.
    fn xterm_dir() -> PathBuf {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        match option_env!("APPLIANCE_XTERM_DIR") {
            Some(d) if !d.is_empty() => manifest.join(d),
            _ => manifest.join("target").join("xterm"),
        }
    }

    #[test]
    fn bundled_exactly_when_the_xterm_directory_holds_the_files() {
        let dir = xterm_dir();
        let present = ["xterm.js", "xterm.css", "addon-fit.js"]
            .iter()
            .all(|f| dir.join(f).metadata().is_ok_and(|m| m.len() > 0));
        assert_eq!(
            BUNDLED,
            present,
            "build.rs and {} disagree (run cargo build again?)",
            dir.display()
        );
    }

    #[test]
    fn assets_by_name_with_their_content_types() {
        for unknown in [
            "",
            "addon-fit.js",
            "XTERM.JS",
            "../xterm.js",
            "xterm.js.map",
            "app.js",
        ] {
            assert_eq!(asset(unknown), None, "{unknown:?}");
        }
        if !BUNDLED {
            for name in ["xterm.js", "xterm.css", "terminal.js"] {
                assert_eq!(asset(name), None, "{name} without xterm.js bundled");
            }
            return;
        }
        let get = |name: &str| {
            let (bytes, ty) = asset(name).unwrap_or_else(|| panic!("{name} is bundled"));
            (String::from_utf8_lossy(bytes).into_owned(), ty)
        };
        let (xterm, ty) = get("xterm.js");
        assert_eq!(ty, "text/javascript; charset=utf-8");
        assert!(xterm.contains("e.Terminal=") || xterm.contains("Terminal"));
        assert!(xterm.len() > 100_000, "xterm.js is {} bytes", xterm.len());
        let (css, ty) = get("xterm.css");
        assert_eq!(ty, "text/css; charset=utf-8");
        assert!(css.contains(".xterm"));
        let (terminal, ty) = get("terminal.js");
        assert_eq!(ty, "text/javascript; charset=utf-8");
        let fit = terminal.find("FitAddon").expect("the fit addon");
        let ours = terminal.find("/pty?reconnect=").expect("our terminal.js");
        assert!(fit < ours, "the fit addon comes first");
        assert!(terminal.ends_with(include_str!("terminal.js")));
    }

    #[test]
    fn the_missing_text_says_why_and_what_to_do() {
        assert!(MISSING.contains("does not bundle xterm.js"));
        assert!(MISSING.contains("packaging/xterm.sh"));
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("packaging/xterm.sh")
                .is_file()
        );
    }

    #[test]
    fn terminal_js_speaks_the_pty_protocol() {
        let js = include_str!("terminal.js");
        for needle in [
            "/api/v2/workspaceagents/",
            "/pty?reconnect=",
            "&width=",
            "&height=",
            "binaryType = \"arraybuffer\"",
            "send({ data: data })",
            "send({ height: size.rows, width: size.cols })",
            "sessionStorage",
        ] {
            assert!(js.contains(needle), "terminal.js lacks {needle:?}");
        }
    }
}
