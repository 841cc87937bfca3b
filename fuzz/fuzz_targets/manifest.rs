//! `manifest::parse` (TOML, or JSON), then the error's rendering (which maps
//! key paths back to TOML lines) and `problem_at`.
//!
//! Input: one selector byte (bit 0: name the file `*.json`), then the text.

#![no_main]

use appliance::manifest::{parse, problem_at};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let file = if selector & 1 == 1 {
        "fuzz.json"
    } else {
        "fuzz.toml"
    };
    let text = String::from_utf8_lossy(rest);
    match parse(file, &text) {
        Ok(ws) => {
            let _ = ws.agent_count();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    for path in [
        "owner",
        "name",
        "resources[0].agents[0].name",
        "resources[1].instance_id",
    ] {
        let _ = problem_at(file, &text, path, "fuzz").to_string();
    }
});
