//! `verify_gcp` with the JWKS documents of tests/fixtures/identity/gcp and
//! the historical Google certs, at one of the fixtures' `valid_at` times.
//!
//! Input: one selector byte, then the token (UTF-8, lossily). Selector bits
//! 0-1 pick the time, bit 2 requires the audience "coder".
//!
//! The claims (`exp`, `google.compute_engine.instance_id`) are only decoded
//! after the signature verifies, which a mutated token never does: that part
//! is covered by the deterministic unit tests in src/identity/tests.rs.

#![no_main]

use std::sync::OnceLock;

use appliance::identity::{GcpTrust, verify_gcp};
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;
use time::macros::datetime;

const TIMES: [OffsetDateTime; 4] = [
    datetime!(2019-04-25 23:38:25 UTC), // gcp/istio-2019
    datetime!(2019-04-17 23:38:48 UTC), // gcp/smallstep-kops-2019
    datetime!(2024-05-17 16:20:47 UTC), // gcp/infisical-2024
    datetime!(2020-04-23 07:19:08 UTC), // gcp/google-auth-java-sa-no-instance-2020
];

const JWKS: [&[u8]; 5] = [
    include_bytes!("../../tests/fixtures/identity/gcp/istio-2019/jwks.json"),
    include_bytes!("../../tests/fixtures/identity/gcp/smallstep-kops-2019/jwks.json"),
    include_bytes!("../../tests/fixtures/identity/gcp/infisical-2024/jwks.json"),
    include_bytes!(
        "../../tests/fixtures/identity/gcp/google-auth-java-sa-no-instance-2020/jwks.json"
    ),
    include_bytes!(
        "../../tests/fixtures/identity/certs/gcp/google-oauth2-v3-certs-historical.json"
    ),
];

fn trust() -> &'static GcpTrust {
    static TRUST: OnceLock<GcpTrust> = OnceLock::new();
    TRUST.get_or_init(|| {
        let mut trust = GcpTrust::default();
        for jwks in JWKS {
            // A kid present in two documents with the same key is skipped.
            trust.add_jwks_json(jwks).expect("a fixture JWKS");
        }
        trust
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let now = TIMES[usize::from(selector & 0x03)];
    let audience = (selector & 0x04 != 0).then_some("coder");
    let token = String::from_utf8_lossy(rest);
    let _ = verify_gcp(&token, trust(), audience, now);
});
