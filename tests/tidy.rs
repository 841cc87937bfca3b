//! Tidy checks: the architecture's boundaries, as rules over the source text
//! (in the spirit of rust-analyzer's `tidy` tests). Each rule is one test
//! that names the file and line that break it and says what to do instead.
//!
//! The rules are the ones ARCHITECTURE.md states:
//! - only `routes/` knows warp, hyper and WebSocket crates; HTTP statuses
//!   appear only there and in the HTTP clients (`CLIENT_HTTP`);
//! - only `store/` speaks SQL or names rusqlite;
//! - only wire types derive `Serialize` (`sdk.rs`, and the agent side's
//!   request bodies in `agent/`);
//! - `identity/` does no I/O, reads no clock and keeps no global state;
//! - every module starts with a `//!` doc;
//! - no import cycles between the top-level modules;
//! - ARCHITECTURE.md's code map names every top-level module and folder, and
//!   every path it (or a doc comment) cites exists.

// Tests panic on purpose: an unwrap that fails is a failing test.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `src/`, as (path relative to `src/`, text).
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read src dir")
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, base, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let rel = p
                    .strip_prefix(base)
                    .expect("under src")
                    .to_string_lossy()
                    .replace('\\', "/");
                let text = std::fs::read_to_string(&p).expect("read source");
                out.push((rel, text));
            }
        }
    }
    let mut out = Vec::new();
    let src = root().join("src");
    walk(&src, &src, &mut out);
    out
}

/// The lines of code in `text`, numbered from 1: full-line comments, and a
/// file's `#[cfg(test)] mod tests { ... }` tail, are left out.
fn code_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut after_cfg_test = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if after_cfg_test && t.starts_with("mod tests") && t.ends_with('{') {
            // Unit tests sit at the end of a file by convention.
            break;
        }
        after_cfg_test = t == "#[cfg(test)]";
        if t.starts_with("//") {
            continue;
        }
        out.push((i + 1, line));
    }
    out
}

fn is_test_file(rel: &str) -> bool {
    rel.ends_with("/tests.rs") || rel == "tests.rs"
}

/// The top-level module a file belongs to (`routes/logs.rs` -> `routes`).
fn top_module(rel: &str) -> &str {
    let first = rel.split('/').next().unwrap_or(rel);
    first.strip_suffix(".rs").unwrap_or(first)
}

/// Whether `line` uses the path `name::` or imports `name` as a crate.
fn names_crate(line: &str, name: &str) -> bool {
    let bytes = line.as_bytes();
    let mut from = 0;
    while let Some(pos) = line[from..].find(name) {
        let at = from + pos;
        let before_ok = at == 0 || {
            let c = bytes[at - 1] as char;
            !(c.is_alphanumeric() || c == '_' || c == ':')
        };
        let rest = &line[at + name.len()..];
        if before_ok
            && (rest.starts_with("::")
                || (line.trim_start().starts_with("use ") && rest.starts_with(';')))
        {
            return true;
        }
        from = at + name.len();
    }
    false
}

fn report(rule: &str, fix: &str, found: &[String]) {
    assert!(
        found.is_empty(),
        "tidy: {rule}\n{}\nfix: {fix}",
        found.join("\n")
    );
}

/// HTTP clients (ureq) may name HTTP statuses; only `routes/` serves HTTP.
const CLIENT_HTTP: &[&str] = &[
    "agent/",
    "cli/healthcheck.rs",
    "external_auth/oauth_client.rs",
    "sign_in/jwks_refresh.rs",
];

#[test]
fn only_routes_know_warp_and_http_statuses() {
    let mut found = Vec::new();
    for (rel, text) in sources() {
        if rel.starts_with("routes/") {
            continue;
        }
        let client = CLIENT_HTTP.iter().any(|c| rel.starts_with(c));
        for (n, line) in code_lines(&text) {
            let server_crate = ["warp", "hyper", "hyper_util", "yawc", "tungstenite"]
                .iter()
                .any(|c| names_crate(line, c));
            let status = line.contains("StatusCode") || names_crate(line, "http");
            if server_crate || (status && !client) {
                found.push(format!("src/{rel}:{n}: {}", line.trim()));
            }
        }
    }
    report(
        "warp, hyper or HTTP statuses outside routes/ (the HTTP layer)",
        "move the HTTP part into routes/ and hand the rest plain values or a domain error with a From<..> for ApiError in routes/error.rs",
        &found,
    );
}

#[test]
fn only_store_speaks_sql() {
    const SQL: &[&str] = &[
        "SELECT ",
        "INSERT INTO",
        "INSERT OR",
        "DELETE FROM",
        "UPDATE ",
        "PRAGMA ",
        "CREATE TABLE",
        "BEGIN IMMEDIATE",
    ];
    const CALLS: &[&str] = &[
        ".execute(",
        ".execute_batch(",
        ".prepare(",
        ".prepare_cached(",
        ".query_row(",
        ".query_map(",
    ];
    let mut found = Vec::new();
    for (rel, text) in sources() {
        if rel.starts_with("store/") {
            continue;
        }
        for (n, line) in code_lines(&text) {
            let sql_literal = line.split('"').skip(1).step_by(2).any(|lit| {
                SQL.iter()
                    .any(|k| lit.starts_with(k) || lit.contains(&format!(" {k}")))
            });
            if names_crate(line, "rusqlite")
                || CALLS.iter().any(|c| line.contains(c))
                || sql_literal
            {
                found.push(format!("src/{rel}:{n}: {}", line.trim()));
            }
        }
    }
    report(
        "SQL or rusqlite outside store/",
        "add a function to the store/ file of that table group and call it",
        &found,
    );
}

#[test]
fn only_wire_types_derive_serialize() {
    // sdk.rs: what the server sends. agent/: what the workspace side sends.
    let wire = |rel: &str| rel == "sdk.rs" || rel.starts_with("agent/");
    let mut found = Vec::new();
    for (rel, text) in sources() {
        if wire(&rel) {
            continue;
        }
        for (n, line) in code_lines(&text) {
            let derive = line.contains("derive(")
                && line
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .any(|w| w == "Serialize");
            let manual =
                line.contains("impl Serialize for") || line.contains("impl serde::Serialize for");
            if derive || manual {
                found.push(format!("src/{rel}:{n}: {}", line.trim()));
            }
        }
    }
    report(
        "Serialize on a type that is not a wire type",
        "declare the wire shape in src/sdk.rs (field for field as Coder sends it) and convert to it; CLI output uses serde_json::json!",
        &found,
    );
}

#[test]
fn identity_does_no_io_reads_no_clock_keeps_no_state() {
    const FORBIDDEN: &[&str] = &[
        "std::fs",
        "std::net",
        "std::env",
        "std::process",
        "std::thread",
        "File::",
        "tokio",
        "ureq",
        "SystemTime::now",
        "Instant::now",
        "now_utc(",
        "OffsetDateTime::now",
        "thread_rng",
        "OnceLock",
        "LazyLock",
        "static mut",
    ];
    let mut found = Vec::new();
    for (rel, text) in sources() {
        if !rel.starts_with("identity/") || is_test_file(&rel) {
            continue;
        }
        for (n, line) in code_lines(&text) {
            let global = line.trim_start().starts_with("static ")
                || line.trim_start().starts_with("pub static ")
                || line.trim_start().starts_with("pub(crate) static ");
            if global || FORBIDDEN.iter().any(|f| line.contains(f)) {
                found.push(format!("src/{rel}:{n}: {}", line.trim()));
            }
        }
    }
    report(
        "I/O, a clock or global state in identity/",
        "take the bytes, the trust material and `now` as arguments; do the I/O in sign_in/ or cli/",
        &found,
    );
}

#[test]
fn every_module_has_a_doc() {
    let found: Vec<String> = sources()
        .into_iter()
        .filter(|(_, text)| !text.trim_start().starts_with("//!"))
        .map(|(rel, _)| format!("src/{rel}"))
        .collect();
    report(
        "a module without a `//!` doc",
        "start the file with a `//!` paragraph: what the module is for and what it must not do",
        &found,
    );
}

/// Which top-level modules each top-level module names (`crate::x`, or
/// `x` inside `use crate::{...}`), outside its unit tests.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let sources = sources();
    let tops: BTreeSet<String> = sources
        .iter()
        .map(|(rel, _)| top_module(rel).to_string())
        .filter(|t| t != "lib" && t != "main")
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in &sources {
        let me = top_module(rel);
        if is_test_file(rel) || me == "lib" || me == "main" {
            continue;
        }
        let code: String = code_lines(text)
            .into_iter()
            .map(|(_, l)| format!("{l}\n"))
            .collect();
        let mut add = |name: &str| {
            if name != me && tops.contains(name) {
                graph
                    .entry(me.to_string())
                    .or_default()
                    .insert(name.to_string());
            }
        };
        let mut rest = code.as_str();
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let name = item.trim().split("::").next().unwrap_or("").trim();
                    add(name);
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                add(&name);
            }
        }
    }
    graph
}

#[test]
fn no_import_cycles_between_top_level_modules() {
    let graph = module_graph();
    // Depth-first search for a back edge; report each cycle once.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        cycles: &mut Vec<String>,
    ) {
        if let Some(pos) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[pos..].to_vec();
            cycle.push(node.to_string());
            cycles.push(cycle.join(" -> "));
            return;
        }
        if done.contains(node) {
            return;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, stack, done, cycles);
        }
        stack.pop();
        done.insert(node.to_string());
    }
    let mut cycles = Vec::new();
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, &graph, &mut Vec::new(), &mut done, &mut cycles);
    }
    report(
        "an import cycle between top-level modules",
        "the lower module must not name the higher one: pass it plain values or a small handle (see app::App, sign_in::TrustSlot)",
        &cycles,
    );
}

fn architecture() -> String {
    std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("read ARCHITECTURE.md")
}

/// The backticked words of ARCHITECTURE.md's code-map headings (`### ...`).
fn code_map_headings(arch: &str) -> BTreeSet<String> {
    let map = arch
        .split("## Code map")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("ARCHITECTURE.md has a `## Code map` section");
    map.lines()
        .filter(|l| l.starts_with("### "))
        .flat_map(|l| {
            l.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn architecture_code_map_matches_the_modules() {
    let arch = architecture();
    let headings = code_map_headings(&arch);
    let src = root().join("src");
    let mut found = Vec::new();
    // Every top-level module has a heading.
    let tops: BTreeSet<String> = sources()
        .iter()
        .map(|(rel, _)| top_module(rel).to_string())
        .filter(|t| t != "lib" && t != "main")
        .collect();
    for t in &tops {
        if !headings.contains(t) && !headings.contains(&format!("{t}/")) {
            found.push(format!("src/{t}: no `### `{t}`` heading in the code map"));
        }
    }
    // Every heading names something that exists.
    for h in &headings {
        let name = h.trim_end_matches('/');
        if !name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            continue; // a route or a phrase, not a module
        }
        let exists = src.join(format!("{name}.rs")).exists()
            || src.join(name).is_dir()
            || root().join(name).is_dir();
        if !exists {
            found.push(format!(
                "heading `{h}`: no src/{name}.rs, src/{name}/ or {name}/"
            ));
        }
    }
    report(
        "ARCHITECTURE.md's code map and the modules differ",
        "give each top-level module one heading, and rename or remove headings of modules that moved",
        &found,
    );
}

/// Path-like words in backticks: a file name with a known extension, or a
/// path under one of the repository's top-level folders. Paths outside the
/// repository (`../shared/...`), URL paths and placeholders are not checked.
fn cited_paths(text: &str) -> Vec<String> {
    const EXT: &[&str] = &[
        ".rs", ".md", ".toml", ".sql", ".sh", ".json", ".service", ".py", ".go", ".pem", ".png",
        ".mjs", ".html",
    ];
    const DIRS: &[&str] = &[
        "src/",
        "tests/",
        "packaging/",
        "config/",
        "bench/",
        "examples/",
        "fuzz/",
        "docs/",
        ".ci/",
    ];
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| !w.contains([' ', '<', '{', '*', ':']) && !w.contains("..."))
        .filter(|w| !w.starts_with('/') && !w.starts_with("../"))
        // `.json` alone is an extension, not a file.
        .filter(|w| !w.starts_with('.') || w[1..].contains(['.', '/']))
        .filter(|w| DIRS.iter().any(|d| w.starts_with(d)) || EXT.iter().any(|e| w.ends_with(e)))
        .map(str::to_string)
        .collect()
}

/// Whether `cited` names a file in the repository: from the root, from
/// `src/`, beside `dir`, or (a bare file name) anywhere.
fn resolves(cited: &str, dir: &Path, all: &BTreeSet<String>) -> bool {
    let root = root();
    let clean = cited.trim_end_matches('/');
    if root.join(clean).exists()
        || root.join("src").join(clean).exists()
        || dir.join(clean).exists()
    {
        return true;
    }
    !clean.contains('/') && all.iter().any(|p| p.rsplit('/').next() == Some(clean))
}

fn repository_files() -> BTreeSet<String> {
    fn walk(dir: &Path, base: &Path, out: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if name == "target" || name == ".git" {
                continue;
            }
            if p.is_dir() {
                walk(&p, base, out);
            } else if let Ok(rel) = p.strip_prefix(base) {
                out.insert(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&root(), &root(), &mut out);
    out
}

#[test]
fn cited_paths_exist() {
    let all = repository_files();
    let mut found = Vec::new();
    for cited in cited_paths(&architecture()) {
        if !resolves(&cited, &root(), &all) {
            found.push(format!("ARCHITECTURE.md cites `{cited}`"));
        }
    }
    for (rel, text) in sources() {
        let dir = root().join("src").join(&rel);
        let dir = dir.parent().unwrap_or(&dir).to_path_buf();
        for (i, line) in text.lines().enumerate() {
            let t = line.trim_start();
            if !(t.starts_with("//!") || t.starts_with("///")) {
                continue;
            }
            for cited in cited_paths(t) {
                if !resolves(&cited, &dir, &all) {
                    found.push(format!("src/{rel}:{}: cites `{cited}`", i + 1));
                }
            }
        }
    }
    report(
        "a cited path that is not in the repository",
        "point at the file where it lives now, or say what it is without a path",
        &found,
    );
}

/// The relative targets of Markdown links and images (`[..](path)`,
/// `![..](path)`): not web addresses, not anchors.
fn markdown_targets(text: &str) -> Vec<String> {
    text.split("](")
        .skip(1)
        .filter_map(|rest| rest.split_once(')').map(|(target, _)| target))
        .map(|t| t.split('#').next().unwrap_or(t).trim())
        .filter(|t| !t.is_empty() && !t.contains("://") && !t.starts_with("mailto:"))
        .map(str::to_string)
        .collect()
}

#[test]
fn readme_links_and_images_exist() {
    let text = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let targets = markdown_targets(&text);
    assert!(
        targets.iter().any(|t| t.ends_with(".png")),
        "README's Dashboard section shows screenshots: {targets:?}"
    );
    let found: Vec<String> = targets
        .into_iter()
        .filter(|t| !root().join(t).is_file())
        .map(|t| format!("README.md links to {t}"))
        .collect();
    report(
        "a README link or image whose file is not in the repository",
        "commit the file (screenshots live in docs/screenshots/) or fix the path",
        &found,
    );
}
