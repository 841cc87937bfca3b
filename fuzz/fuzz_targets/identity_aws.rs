//! `verify_aws` with the built-in AWS keys. Input: `document NUL signature`
//! (no NUL: the whole input is the document and the signature is empty).
//! Bytes are made UTF-8 lossily, as the HTTP layer only ever passes strings.

#![no_main]

use std::sync::OnceLock;

use appliance::identity::{AwsTrust, Trust, verify_aws};
use libfuzzer_sys::fuzz_target;

fn trust() -> &'static AwsTrust {
    static TRUST: OnceLock<AwsTrust> = OnceLock::new();
    TRUST.get_or_init(|| Trust::builtin().aws)
}

fuzz_target!(|data: &[u8]| {
    let (document, signature) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let document = String::from_utf8_lossy(document);
    let signature = String::from_utf8_lossy(signature);
    let _ = verify_aws(&document, &signature, trust());
});
