//! `verify_azure` with the built-in Azure roots and intermediates, plus the
//! test chains of tests/fixtures/identity/generated (so the ECDSA link paths
//! and a fully valid chain are reachable), at one of a few fixed times.
//!
//! Input: one selector byte, then the envelope. Selector bits 0-2 pick the
//! time (the `valid_at` of each real fixture, then the generated chains'
//! 2026-06-01); bit 7 set passes the rest as the `signature` string verbatim
//! (exercising the base64 layer), clear base64-encodes it first (so the
//! fuzzer mutates DER directly).

#![no_main]

use std::sync::OnceLock;

use appliance::identity::{AzureTrust, Trust, verify_azure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;
use time::macros::datetime;

const TIMES: [OffsetDateTime; 7] = [
    datetime!(2023-02-01 00:00:00 UTC), // azure/coder-regular-2022
    datetime!(2023-04-01 00:00:00 UTC), // azure/coder-govcloud-2023
    datetime!(2023-10-02 12:33:11 UTC), // azure/ansible-sap-operations-2023
    datetime!(2024-04-22 17:32:44 UTC), // azure/coder-rsa-2024
    datetime!(2025-11-19 12:53:30 UTC), // azure/taskcluster-2025
    datetime!(2026-06-25 00:00:00 UTC), // azure/coder-regular-2026
    datetime!(2026-06-01 00:00:00 UTC), // generated/*
];

fn trust() -> &'static AzureTrust {
    static TRUST: OnceLock<AzureTrust> = OnceLock::new();
    TRUST.get_or_init(|| {
        let mut trust = Trust::builtin().azure;
        for (label, pem) in [
            (
                "root-p256",
                include_str!(concat!(
                    "../../tests/fixtures/identity/generated/",
                    "root-p256.pem"
                )),
            ),
            (
                "root-p384",
                include_str!(concat!(
                    "../../tests/fixtures/identity/generated/",
                    "root-p384.pem"
                )),
            ),
        ] {
            trust.add_root_pem(label, pem).expect("a generated root");
        }
        for (label, pem) in [
            (
                "int-p256",
                include_str!(concat!(
                    "../../tests/fixtures/identity/generated/",
                    "int-p256.pem"
                )),
            ),
            (
                "int-p384",
                include_str!(concat!(
                    "../../tests/fixtures/identity/generated/",
                    "int-p384.pem"
                )),
            ),
            (
                "notca",
                include_str!(concat!(
                    "../../tests/fixtures/identity/generated/",
                    "notca.pem"
                )),
            ),
        ] {
            trust
                .add_intermediate_pem(label, pem)
                .expect("a generated intermediate");
        }

        trust
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let now = TIMES[usize::from(selector & 0x07) % TIMES.len()];
    let signature = if selector & 0x80 != 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        STANDARD.encode(rest)
    };
    let _ = verify_azure(&signature, trust(), now);
});
