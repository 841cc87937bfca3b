//! Cleaning free text an agent reports before it is stored and shown (app
//! status messages), as Coder's `UpdateAppStatus` does: unquote a Go-style
//! string literal, strip HTML, strip ANSI escapes, collapse whitespace runs to
//! one space, drop non-printable characters, trim. Pure.

/// Elements whose content is dropped with them (as bluemonday's strict
/// policy does), not just their tags.
const DROPPED_WITH_CONTENT: [&str; 2] = ["script", "style"];

/// The stored form of an app-status message.
pub fn app_status_message(message: &str) -> String {
    let unquoted = unquote(message);
    // Whitespace becomes plain spaces first: the ANSI stripper drops control
    // characters such as tabs and newlines, which separate words.
    let text: String = strip_html(&unquoted)
        .chars()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .collect();
    let plain = String::from_utf8_lossy(&strip_ansi_escapes::strip(text.as_bytes())).into_owned();
    let mut out = String::with_capacity(plain.len());
    let mut pending_space = false;
    for c in plain.chars() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if c.is_control() || is_format_or_unassigned(c) {
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(c);
    }
    out
}

/// A message sent as a quoted string literal (`"line\nnext"`) is unquoted;
/// anything that is not a valid literal is kept as it is.
fn unquote(s: &str) -> String {
    let t = s.trim();
    if t.len() >= 2 && t.starts_with('"') && t.ends_with('"') {
        if let Ok(v) = serde_json::from_str::<String>(t) {
            return v;
        }
    } else if t.len() >= 2 && t.starts_with('`') && t.ends_with('`') {
        let inner = &t[1..t.len() - 1];
        if !inner.contains('`') {
            return inner.to_string();
        }
    }
    s.to_string()
}

/// Removes tags (`<...>`, comments, doctypes), and `script`/`style`
/// elements with their content; text between tags stays. A `<` that does not
/// open a tag (`a < b`) is text.
fn strip_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let opens_tag = after
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '!' || c == '?');
        if !opens_tag {
            out.push('<');
            rest = after;
            continue;
        }
        if let Some(body) = after.strip_prefix("!--") {
            rest = body.find("-->").map_or("", |end| &body[end + 3..]);
            continue;
        }
        let Some(end) = after.find('>') else {
            // An unterminated tag: drop the rest, as an HTML parser would.
            rest = "";
            break;
        };
        let name: String = after[..end]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        rest = &after[end + 1..];
        if DROPPED_WITH_CONTENT.contains(&name.as_str()) {
            let close = format!("</{name}");
            let lower = rest.to_ascii_lowercase();
            rest = match lower.find(&close) {
                Some(at) => rest[at..].find('>').map_or("", |gt| &rest[at + gt + 1..]),
                None => "",
            };
        }
    }
    out.push_str(rest);
    out
}

/// Unicode format characters (zero-width joiners, bidi overrides) and
/// private-use code points: invisible, dropped like Go's `!unicode.IsPrint`.
fn is_format_or_unassigned(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}'
        | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}' | '\u{E000}'..='\u{F8FF}')
}

#[cfg(test)]
mod tests {
    use super::app_status_message as clean;

    #[test]
    fn html_is_stripped_and_scripts_dropped_whole() {
        assert_eq!(clean("<b>Build</b> <i>done</i>"), "Build done");
        assert_eq!(clean("ok<script>alert(1)</script> then"), "ok then");
        assert_eq!(clean("x <STYLE>p{}</style>y"), "x y");
        assert_eq!(clean("a <!-- hidden --> b"), "a b");
        assert_eq!(clean("1 < 2 and 3 > 2"), "1 < 2 and 3 > 2");
        assert_eq!(clean("broken <a href="), "broken");
    }

    #[test]
    fn ansi_whitespace_and_invisibles() {
        assert_eq!(clean("\x1b[31mred\x1b[0m text"), "red text");
        assert_eq!(clean("  many\n\n\tspaces   here  "), "many spaces here");
        assert_eq!(clean("zero\u{200B}width\u{0007}bell"), "zerowidthbell");
        assert_eq!(clean("héllo ✓"), "héllo ✓");
    }

    #[test]
    fn quoted_literals_are_unquoted() {
        assert_eq!(clean(r#""line one\nline two""#), "line one line two");
        assert_eq!(clean("`raw text`"), "raw text");
        assert_eq!(clean(r#""not closed"#), "\"not closed");
    }
}
