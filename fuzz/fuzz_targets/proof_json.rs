//! The instance-identity route without HTTP: the request body decoded into
//! the route's body shape (a mirror of the private `Proof` in
//! src/routes/instance_identity.rs: same fields, same serde attributes), each
//! cloud's verifier on its fields (built-in trust, a fixed time), then agent
//! selection and Go quoting on what came out.

#![no_main]

use std::sync::OnceLock;

use appliance::sign_in::agent_select::{go_quote, select};
use appliance::identity::{Trust, verify_aws, verify_azure, verify_gcp};
use appliance::store::agents::InstanceCandidate;
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use time::macros::datetime;
use uuid::Uuid;

#[derive(Debug, Default, Deserialize)]
#[allow(dead_code)]
struct Proof {
    #[serde(default)]
    document: String,
    #[serde(default)]
    signature: String,
    #[serde(default)]
    encoding: String,
    #[serde(default)]
    json_web_token: String,
    #[serde(default)]
    agent_name: Option<String>,
}

fn trust() -> &'static Trust {
    static TRUST: OnceLock<Trust> = OnceLock::new();
    TRUST.get_or_init(Trust::builtin)
}

fn candidate(n: u128, name: &str, latest: bool) -> InstanceCandidate {
    InstanceCandidate {
        agent_id: Uuid::from_u128(n),
        name: name.to_string(),
        build_id: Uuid::from_u128(n + 100),
        workspace_id: Uuid::from_u128(n + 200),
        created_at: time::OffsetDateTime::UNIX_EPOCH,
        on_latest_build: latest,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(proof) = serde_json::from_slice::<Proof>(data) else {
        return;
    };
    let now = datetime!(2024-04-22 17:32:44 UTC);
    let trust = trust();
    let ids = [
        verify_aws(&proof.document, &proof.signature, &trust.aws),
        verify_azure(&proof.signature, &trust.azure, now),
        verify_gcp(&proof.json_web_token, &trust.gcp, None, now),
    ];
    for id in ids {
        let id = id.unwrap_or_else(|e| e.to_string());
        let _ = go_quote(&id);
        let name = proof.agent_name.as_deref();
        let _ = select(&id, name, vec![]);
        let _ = select(&id, name, vec![candidate(1, "alpha", true)]);
        let _ = select(
            &id,
            name,
            vec![
                candidate(2, name.unwrap_or("beta").trim(), false),
                candidate(3, "alpha", true),
                candidate(4, "alpha", true),
            ],
        );
    }
});
