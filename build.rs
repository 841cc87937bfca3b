//! Embeds xterm.js for the web terminal when `packaging/xterm.sh` has put it in
//! `$APPLIANCE_XTERM_DIR` (default `target/xterm`): sets cfg `xterm_bundled`
//! and `APPLIANCE_XTERM_{JS,CSS,FIT_JS}` (absolute paths) for
//! `src/web/terminal/mod.rs`. Without the files the build goes on without
//! a terminal. No dependencies, nothing else: debug builds stay quick.

use std::path::{Path, PathBuf};

const FILES: [(&str, &str); 3] = [
    ("xterm.js", "APPLIANCE_XTERM_JS"),
    ("xterm.css", "APPLIANCE_XTERM_CSS"),
    ("addon-fit.js", "APPLIANCE_XTERM_FIT_JS"),
];

fn main() {
    println!("cargo:rustc-check-cfg=cfg(xterm_bundled)");
    println!("cargo:rerun-if-env-changed=APPLIANCE_XTERM_DIR");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let dir = match std::env::var_os("APPLIANCE_XTERM_DIR") {
        Some(d) if !d.is_empty() => manifest.join(d),
        _ => manifest.join("target").join("xterm"),
    };
    // Cargo treats a missing rerun-if-changed path as changed on every build
    // (which would rebuild the crate each time), and scans a directory for
    // changes: so the directory is made, empty, and watched; xterm.sh
    // filling it reruns this script. A directory made now is dated back, or
    // cargo would see it as newer than this run and build once more.
    if !dir.exists() && std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::File::open(&dir).and_then(|d| d.set_modified(std::time::UNIX_EPOCH));
    }
    let dir = dir.canonicalize().unwrap_or(dir);
    println!("cargo:rerun-if-changed={}", dir.display());
    if FILES.iter().all(|(name, _)| is_file(&dir.join(name))) {
        println!("cargo:rustc-cfg=xterm_bundled");
        for (name, var) in FILES {
            println!("cargo:rustc-env={var}={}", dir.join(name).display());
        }
    }
}

fn is_file(path: &Path) -> bool {
    path.metadata().is_ok_and(|m| m.is_file() && m.len() > 0)
}
