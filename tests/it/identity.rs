//! Instance-identity sign-in end to end: `POST /api/v2/workspaceagents/{aws,azure,google}-
//! instance-identity` against trust material made for the test (`identity_support.rs`), so
//! instance ids are under the test's control; and the `identity` / `check-config` CLI with the
//! real fixtures under `tests/fixtures/identity`.
//!
//! The HTTP scenarios follow coder/coder:coderd/workspaceresourceauth_test.go (BEHAVIOUR.md §5)
//! with the decision tree and messages of BEHAVIOUR.md §2. "The token is alpha's" is proven by
//! using the token: `POST /me/log-source` answers with the agent's id (`token_agent`).

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::harness::{Options, Resp, Sandbox, TestServer, agent_id};
use crate::identity_support::{
    AWS, AZURE, GOOGLE, aws_body, aws_document, aws_signature, azure_body, azure_content,
    azure_signature, cms_sign, gcp_body, gcp_claims, gcp_jwt, gcp_jwt_raw, identity_config,
    material, openssl, post, post_raw, session_token, token_agent, unix_now,
};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A server trusting the test material (plus `identity_extra` under `[identity]`).
fn server_with(identity_extra: &str) -> TestServer {
    TestServer::start_with(Options {
        config: identity_config(identity_extra),
        ..Default::default()
    })
}

fn server() -> TestServer {
    server_with("")
}

/// A fresh instance id, so no two scenarios can see each other's agents.
fn instance(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..17]
    )
}

/// A manifest for workspace `ws` owned by `admin` with one resource on
/// `instance_id` holding root agents `agents`, all signing in with `auth`.
fn manifest(ws: &str, instance_id: &str, auth: &str, agents: &[&str]) -> String {
    let mut s = format!(
        "name = \"{ws}\"\nowner = \"admin\"\n\n[[resources]]\nname = \"vm\"\n\
         type = \"cloud_instance\"\ninstance_id = {}\n",
        serde_json::to_string(instance_id).expect("a string")
    );
    for a in agents {
        s.push_str(&format!(
            "\n  [[resources.agents]]\n  name = \"{a}\"\n  auth = \"{auth}\"\n"
        ));
    }
    s
}

const AWS_AUTH: &str = "aws-instance-identity";
const AZURE_AUTH: &str = "azure-instance-identity";
const GOOGLE_AUTH: &str = "google-instance-identity";

/// Applies `manifest` on the server's database and returns the apply result.
fn apply(server: &TestServer, manifest: &str) -> Value {
    server.apply(manifest)
}

/// Asserts that `resp` is a successful sign-in whose token belongs to `agent`.
#[track_caller]
fn assert_signed_in_as(server: &TestServer, resp: &Resp, agent: &str) -> String {
    let token = session_token(resp);
    assert_eq!(
        token_agent(server, &token).as_deref(),
        Some(agent),
        "the token belongs to agent {agent}"
    );
    token
}

fn not_found(id: &str) -> String {
    format!("Instance with id \"{id}\" not found.")
}

fn ambiguous(id: &str, names: &str) -> String {
    format!(
        "Multiple agents found with instance ID \"{id}\". Set CODER_AGENT_NAME to one of: {names}"
    )
}

/// The agents `workspace show` lists for the workspace's latest build.
fn shown_agent_ids(sandbox: &Sandbox, ws: &str) -> Vec<String> {
    let shown = sandbox
        .cli(&["workspace", "show", ws, "--output", "json"])
        .json();
    shown["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .map(|a| a["id"].as_str().expect("id").to_string())
        .collect()
}

// ---------------------------------------------------------------------------
// Azure (workspaceresourceauth_test.go: Azure/Success, Azure/Ambiguous/AzureWithSelector)
// ---------------------------------------------------------------------------

#[test]
fn azure_success() {
    let server = server();
    let vm = uuid::Uuid::new_v4().to_string();
    let applied = apply(&server, &manifest("az", &vm, AZURE_AUTH, &["main"]));
    let sig = azure_signature(&material().azure_rsa, &vm);
    let resp = post(&server, AZURE, &azure_body(&sig, None));
    assert_signed_in_as(&server, &resp, &agent_id(&applied, "main"));
}

#[test]
fn azure_ecdsa_chain_success() {
    let server = server();
    let vm = uuid::Uuid::new_v4().to_string();
    let applied = apply(&server, &manifest("az", &vm, AZURE_AUTH, &["main"]));
    let sig = azure_signature(&material().azure_ec, &vm);
    let resp = post(&server, AZURE, &azure_body(&sig, None));
    assert_signed_in_as(&server, &resp, &agent_id(&applied, "main"));
}

#[test]
fn azure_signed_attributes_and_any_encoding_are_accepted() {
    let server = server();
    let vm = uuid::Uuid::new_v4().to_string();
    let applied = apply(&server, &manifest("az", &vm, AZURE_AUTH, &["main"]));
    let chain = &material().azure_rsa;
    let der = cms_sign(
        &chain.leaf,
        &chain.leaf_key,
        azure_content(&vm).as_bytes(),
        true,
    );
    // `encoding` is required but never inspected, as upstream.
    let body = json!({"encoding": "whatever", "signature": STANDARD.encode(der)});
    let resp = post(&server, AZURE, &body);
    assert_signed_in_as(&server, &resp, &agent_id(&applied, "main"));
}

#[test]
fn azure_with_selector() {
    let server = server();
    let vm = uuid::Uuid::new_v4().to_string();
    let applied = apply(
        &server,
        &manifest("az", &vm, AZURE_AUTH, &["alpha", "beta"]),
    );
    let sig = azure_signature(&material().azure_rsa, &vm);
    let resp = post(&server, AZURE, &azure_body(&sig, Some("alpha")));
    assert_signed_in_as(&server, &resp, &agent_id(&applied, "alpha"));
    let resp = post(&server, AZURE, &azure_body(&sig, Some("beta")));
    assert_signed_in_as(&server, &resp, &agent_id(&applied, "beta"));
    post(&server, AZURE, &azure_body(&sig, None)).assert_error(409, &ambiguous(&vm, "alpha, beta"));
}

/// Every Azure rejection carries the same detail (the reason is only logged).
#[test]
fn azure_failure_detail_is_generic() {
    let server = server();
    let m = material();
    let vm = uuid::Uuid::new_v4().to_string();
    apply(&server, &manifest("az", &vm, AZURE_AUTH, &["main"]));
    let content = azure_content(&vm);
    let good = cms_sign(
        &m.azure_rsa.leaf,
        &m.azure_rsa.leaf_key,
        content.as_bytes(),
        false,
    );
    let mut tampered = good.clone();
    let at = tampered
        .windows(vm.len())
        .position(|w| w == vm.as_bytes())
        .expect("the content is in the envelope");
    tampered[at] ^= 0x01;
    let cases: Vec<(&str, String)> = vec![
        (
            "untrusted self-signed leaf",
            STANDARD.encode(cms_sign(
                &m.azure_rogue_leaf,
                &m.azure_rogue_key,
                content.as_bytes(),
                false,
            )),
        ),
        (
            "signer CN not an Azure metadata name",
            STANDARD.encode(cms_sign(
                &m.azure_evil_leaf,
                &m.azure_evil_key,
                content.as_bytes(),
                false,
            )),
        ),
        ("content changed after signing", STANDARD.encode(&tampered)),
        ("not base64", "!!! not base64 !!!".to_string()),
        ("base64 of garbage", STANDARD.encode(b"hello, world")),
        ("truncated DER", STANDARD.encode(&good[..good.len() / 2])),
        (
            "DER minus one byte",
            STANDARD.encode(&good[..good.len() - 1]),
        ),
        // The AWS document's signature is no PKCS#7 envelope.
        ("an AWS signature", aws_signature(&aws_document(&vm))),
    ];
    for (what, signature) in cases {
        let body = post(&server, AZURE, &azure_body(&signature, None))
            .assert_error(401, "Invalid Azure identity.");
        assert_eq!(
            body["detail"], "Signature verification failed.",
            "{what}: {body}"
        );
    }
    // The genuine envelope still works (nothing above was cached as a failure).
    session_token(&post(
        &server,
        AZURE,
        &azure_body(&STANDARD.encode(&good), None),
    ));
}

// ---------------------------------------------------------------------------
// AWS (workspaceresourceauth_test.go: AWS/...)
// ---------------------------------------------------------------------------

#[test]
fn aws_single_agent() {
    let server = server();
    let id = instance("i-");
    let applied = apply(&server, &manifest("ec2", &id, AWS_AUTH, &["main"]));
    let resp = post(&server, AWS, &aws_body(&id, None));
    assert_signed_in_as(&server, &resp, &agent_id(&applied, "main"));
    // `"agent_name": null` is the same as leaving it out.
    let mut body = aws_body(&id, None);
    body["agent_name"] = Value::Null;
    assert_signed_in_as(
        &server,
        &post(&server, AWS, &body),
        &agent_id(&applied, "main"),
    );
    // Unknown fields are ignored, as Coder's decoder does.
    let mut body = aws_body(&id, None);
    body["region"] = json!("us-east-1");
    assert_signed_in_as(
        &server,
        &post(&server, AWS, &body),
        &agent_id(&applied, "main"),
    );
}

#[test]
fn aws_single_agent_with_a_wrong_name_is_not_found() {
    let server = server();
    let id = instance("i-");
    apply(&server, &manifest("ec2", &id, AWS_AUTH, &["main"]));
    // A wrong name is never ignored, even with one candidate; names are case-sensitive.
    for name in ["other", "Main"] {
        post(&server, AWS, &aws_body(&id, Some(name))).assert_error(
            404,
            &format!("No agent found with instance ID \"{id}\" and name \"{name}\"."),
        );
    }
}

#[test]
fn aws_recycled_instance_id() {
    let server = server();
    let old = instance("i-old");
    let new = instance("i-new");
    let first = apply(&server, &manifest("recycle", &old, AWS_AUTH, &["main"]));
    let old_token = assert_signed_in_as(
        &server,
        &post(&server, AWS, &aws_body(&old, None)),
        &agent_id(&first, "main"),
    );
    // A new build whose resource has another instance id.
    let second = apply(&server, &manifest("recycle", &new, AWS_AUTH, &["main"]));
    assert_eq!(second["build"]["number"], 2);
    post(&server, AWS, &aws_body(&old, None)).assert_error(404, &not_found(&old));
    assert_eq!(
        token_agent(&server, &old_token),
        None,
        "the old agent's token died with it"
    );
    assert_signed_in_as(
        &server,
        &post(&server, AWS, &aws_body(&new, None)),
        &agent_id(&second, "main"),
    );
}

#[test]
fn aws_multiple_agents_no_selector() {
    let server = server();
    let id = instance("i-");
    apply(
        &server,
        &manifest("pair", &id, AWS_AUTH, &["beta", "alpha"]),
    );
    post(&server, AWS, &aws_body(&id, None)).assert_error(409, &ambiguous(&id, "alpha, beta"));
}

#[test]
fn aws_empty_agent_name_treated_as_unset() {
    let server = server();
    let id = instance("i-");
    apply(
        &server,
        &manifest("pair", &id, AWS_AUTH, &["alpha", "beta"]),
    );
    // The raw body, so the empty string is really on the wire.
    let document = aws_document(&id);
    let raw = format!(
        "{{\"signature\":{},\"document\":{},\"agent_name\":\"\"}}",
        json!(aws_signature(&document)),
        json!(document)
    );
    post_raw(&server, AWS, raw.as_bytes()).assert_error(409, &ambiguous(&id, "alpha, beta"));
}

#[test]
fn aws_whitespace_agent_name_treated_as_unset() {
    let server = server();
    let id = instance("i-");
    apply(
        &server,
        &manifest("pair", &id, AWS_AUTH, &["alpha", "beta"]),
    );
    for blank in ["   ", "\t\n "] {
        post(&server, AWS, &aws_body(&id, Some(blank)))
            .assert_error(409, &ambiguous(&id, "alpha, beta"));
    }
}

#[test]
fn aws_multiple_agents_with_selector() {
    let server = server();
    let id = instance("i-");
    let applied = apply(
        &server,
        &manifest("pair", &id, AWS_AUTH, &["alpha", "beta"]),
    );
    let alpha = agent_id(&applied, "alpha");
    let resp = post(&server, AWS, &aws_body(&id, Some("alpha")));
    assert_signed_in_as(&server, &resp, &alpha);
    // The name is trimmed before matching.
    let resp = post(&server, AWS, &aws_body(&id, Some("  alpha ")));
    assert_signed_in_as(&server, &resp, &alpha);
    let resp = post(&server, AWS, &aws_body(&id, Some("beta")));
    assert_signed_in_as(&server, &resp, &agent_id(&applied, "beta"));
}

#[test]
fn aws_multiple_agents_unknown_selector() {
    let server = server();
    let id = instance("i-");
    apply(
        &server,
        &manifest("pair", &id, AWS_AUTH, &["alpha", "beta"]),
    );
    post(&server, AWS, &aws_body(&id, Some("nonexistent"))).assert_error(
        404,
        &format!("No agent found with instance ID \"{id}\" and name \"nonexistent\"."),
    );
}

#[test]
fn aws_sub_agent_excluded() {
    let server = server();
    let id = instance("i-");
    let text = format!(
        "{}\n    [[resources.agents.children]]\n    name = \"devcontainer\"\n",
        manifest("sub", &id, AWS_AUTH, &["dev"])
    );
    let applied = apply(&server, &text);
    let dev = agent_id(&applied, "dev");
    assert_eq!(agent_id(&applied, "devcontainer").len(), 36);
    assert_signed_in_as(&server, &post(&server, AWS, &aws_body(&id, None)), &dev);
    // The sub-agent cannot be chosen by name either.
    post(&server, AWS, &aws_body(&id, Some("devcontainer"))).assert_error(
        404,
        &format!("No agent found with instance ID \"{id}\" and name \"devcontainer\"."),
    );
}

/// Release-branch scenario AWS/Ambiguous/PriorBuildAgentsExcluded: stop, then
/// start again; the fresh agent signs in without a 409.
#[test]
fn aws_prior_build_agents_excluded_after_stop_and_reapply() {
    let server = server();
    let id = instance("i-");
    let text = manifest("cycle", &id, AWS_AUTH, &["main"]);
    let first = apply(&server, &text);
    let first_main = agent_id(&first, "main");
    assert_signed_in_as(
        &server,
        &post(&server, AWS, &aws_body(&id, None)),
        &first_main,
    );

    server
        .cli(&["workspace", "stop", "cycle", "--output", "json"])
        .assert_success();
    post(&server, AWS, &aws_body(&id, None)).assert_error(404, &not_found(&id));

    let again = apply(&server, &text);
    assert_eq!(again["build"]["number"], 3);
    let fresh = agent_id(&again, "main");
    assert_ne!(fresh, first_main);
    assert_eq!(shown_agent_ids(&server, "cycle"), vec![fresh.clone()]);
    assert_signed_in_as(&server, &post(&server, AWS, &aws_body(&id, None)), &fresh);
}

/// Token agents on an instance carry no instance id, so they never make a
/// sign-in ambiguous.
#[test]
fn token_agents_on_the_instance_are_not_candidates() {
    let server = server();
    let id = instance("i-");
    let text = format!(
        "{}\n  [[resources.agents]]\n  name = \"helper\"\n",
        manifest("mixed", &id, AWS_AUTH, &["main"])
    );
    let applied = apply(&server, &text);
    assert!(crate::harness::agent(&applied, "helper")["token"].is_string());
    let resp = post(&server, AWS, &aws_body(&id, None));
    assert_signed_in_as(&server, &resp, &agent_id(&applied, "main"));
    post(&server, AWS, &aws_body(&id, Some("helper"))).assert_error(
        404,
        &format!("No agent found with instance ID \"{id}\" and name \"helper\"."),
    );
}

/// Messages quote the instance id the way Go's `%q` does.
#[test]
fn messages_quote_the_instance_id_like_go() {
    let server = server();
    let id = "i-\"q\"\\é\t\u{7}";
    post(&server, AWS, &aws_body(id, None)).assert_error(
        404,
        "Instance with id \"i-\\\"q\\\"\\\\é\\t\\a\" not found.",
    );
}

#[test]
fn two_live_workspaces_sharing_an_instance_id_conflict() {
    let server = server();
    let id = instance("i-");
    let one = apply(&server, &manifest("one", &id, AWS_AUTH, &["main"]));
    let two = apply(&server, &manifest("two", &id, AWS_AUTH, &["dev", "main"]));
    post(&server, AWS, &aws_body(&id, None)).assert_error(409, &ambiguous(&id, "dev, main, main"));
    // A name held by one agent picks it; one held by two picks the newest.
    let resp = post(&server, AWS, &aws_body(&id, Some("dev")));
    assert_signed_in_as(&server, &resp, &agent_id(&two, "dev"));
    let resp = post(&server, AWS, &aws_body(&id, Some("main")));
    assert_signed_in_as(&server, &resp, &agent_id(&two, "main"));

    server
        .cli(&["workspace", "delete", "two", "--output", "json"])
        .assert_success();
    let resp = post(&server, AWS, &aws_body(&id, None));
    assert_signed_in_as(&server, &resp, &agent_id(&one, "main"));
}

#[test]
fn aws_rejections_are_401_with_the_reason() {
    let server = server();
    let id = instance("i-");
    apply(&server, &manifest("ec2", &id, AWS_AUTH, &["main"]));
    let document = aws_document(&id);
    let signature = aws_signature(&document);
    let sig_bytes = STANDARD
        .decode(signature.replace('\n', ""))
        .expect("base64");
    let mut flipped = sig_bytes.clone();
    flipped[10] ^= 0x40;
    let other_key_sig = STANDARD.encode(openssl(
        &[
            "dgst",
            "-sha256",
            "-sign",
            material().gcp_key.to_str().expect("utf-8"),
        ],
        document.as_bytes(),
    ));
    let verification = "crypto/rsa: verification error";
    let cases: Vec<(&str, String, String, Option<&str>)> = vec![
        (
            "document changed after signing",
            document.replace("t3.micro", "t3.large"),
            signature.clone(),
            Some(verification),
        ),
        (
            "trailing newline added",
            format!("{document}\n"),
            signature.clone(),
            Some(verification),
        ),
        (
            "signature flipped",
            document.clone(),
            STANDARD.encode(&flipped),
            Some(verification),
        ),
        (
            "signed by an untrusted key",
            document.clone(),
            other_key_sig,
            Some(verification),
        ),
        (
            "signature not base64",
            document.clone(),
            "%%%%".into(),
            None,
        ),
        (
            "signature a giant integer",
            document.clone(),
            STANDARD.encode(vec![0xff; 8192]),
            None,
        ),
        (
            "signature of one byte",
            document.clone(),
            STANDARD.encode([1u8]),
            None,
        ),
        (
            "document not JSON",
            "not json".into(),
            signature.clone(),
            None,
        ),
        (
            "document a JSON array",
            "[]".into(),
            signature.clone(),
            None,
        ),
        (
            "document with a numeric instanceId",
            "{\"instanceId\": 12345678901234567890123}".into(),
            signature.clone(),
            None,
        ),
    ];
    for (what, document, signature, detail) in cases {
        let body = json!({"document": document, "signature": signature});
        let got = post(&server, AWS, &body).assert_error(401, "Invalid AWS identity.");
        let got_detail = got["detail"].as_str().unwrap_or("");
        assert!(!got_detail.is_empty(), "{what}: a detail: {got}");
        if let Some(detail) = detail {
            assert_eq!(got_detail, detail, "{what}: {got}");
        }
    }
}

// ---------------------------------------------------------------------------
// Google (workspaceresourceauth_test.go: Google/...)
// ---------------------------------------------------------------------------

#[test]
fn google_expired() {
    let server = server();
    let id = instance("");
    apply(&server, &manifest("gce", &id, GOOGLE_AUTH, &["main"]));
    let jwt = gcp_jwt(&id, unix_now() - 60);
    let body =
        post(&server, GOOGLE, &gcp_body(&jwt, None)).assert_error(401, "Invalid GCP identity.");
    let detail = body["detail"].as_str().unwrap_or("");
    assert!(detail.contains("token expired"), "{body}");
}

#[test]
fn google_instance_not_found() {
    let server = server();
    let id = instance("");
    let jwt = gcp_jwt(&id, unix_now() + 3600);
    post(&server, GOOGLE, &gcp_body(&jwt, None)).assert_error(404, &not_found(&id));
}

#[test]
fn google_success() {
    let server = server();
    let id = instance("");
    let applied = apply(&server, &manifest("gce", &id, GOOGLE_AUTH, &["main"]));
    let jwt = gcp_jwt(&id, unix_now() + 3600);
    let resp = post(&server, GOOGLE, &gcp_body(&jwt, None));
    assert_signed_in_as(&server, &resp, &agent_id(&applied, "main"));
    // A trailing newline (as `curl` output has) is not part of the token.
    let resp = post(&server, GOOGLE, &gcp_body(&format!("{jwt}\n"), None));
    assert_signed_in_as(&server, &resp, &agent_id(&applied, "main"));
}

#[test]
fn google_with_selector() {
    let server = server();
    let id = instance("");
    let applied = apply(
        &server,
        &manifest("gce", &id, GOOGLE_AUTH, &["alpha", "beta"]),
    );
    let jwt = gcp_jwt(&id, unix_now() + 3600);
    let resp = post(&server, GOOGLE, &gcp_body(&jwt, Some("alpha")));
    assert_signed_in_as(&server, &resp, &agent_id(&applied, "alpha"));
    post(&server, GOOGLE, &gcp_body(&jwt, None)).assert_error(409, &ambiguous(&id, "alpha, beta"));
}

#[test]
fn google_rejections() {
    let server = server();
    let id = instance("");
    apply(&server, &manifest("gce", &id, GOOGLE_AUTH, &["main"]));
    let later = unix_now() + 3600;
    let jwt = gcp_jwt(&id, later);
    let (head, rest) = jwt.split_once('.').expect("three segments");
    let (payload, sig) = rest.split_once('.').expect("three segments");
    let enc = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let mut other_claims = gcp_claims("someone-else", later);
    other_claims["google"]["compute_engine"]["instance_id"] = json!("someone-else");
    let unsigned_alg_none = format!(
        "{}.{payload}.",
        enc(json!({"alg": "none", "kid": material().gcp_kid}))
    );
    let unknown_kid = format!(
        "{}.{payload}.{sig}",
        enc(json!({"alg": "RS256", "kid": "no-such-kid"}))
    );
    let swapped_payload = format!("{head}.{}.{sig}", enc(other_claims));
    let mut giant_exp = gcp_claims(&id, later).to_string();
    giant_exp = giant_exp.replace(
        &format!("\"exp\":{later}"),
        "\"exp\":99999999999999999999999999999999",
    );
    assert!(giant_exp.contains("9999999999999999"), "{giant_exp}");
    let cases = [
        ("not a JWT", "not-a-jwt".to_string()),
        ("two segments", format!("{head}.{payload}")),
        ("alg none", unsigned_alg_none),
        ("unknown kid", unknown_kid),
        ("payload swapped", swapped_payload),
        ("bad signature encoding", format!("{head}.{payload}.!!!")),
        ("giant exp", gcp_jwt_raw(&giant_exp)),
        ("payload not JSON", gcp_jwt_raw("not json")),
        (
            "no exp",
            gcp_jwt_raw(&json!({"google": {"compute_engine": {"instance_id": id}}}).to_string()),
        ),
    ];
    for (what, token) in cases {
        let body = post(&server, GOOGLE, &gcp_body(&token, None))
            .assert_error(401, "Invalid GCP identity.");
        assert!(
            !body["detail"].as_str().unwrap_or("").is_empty(),
            "{what}: a detail: {body}"
        );
    }

    // Verified, but the instance id has the wrong JSON type.
    let mut claims = gcp_claims(&id, later);
    claims["google"]["compute_engine"]["instance_id"] = json!(12345678901234567890u64);
    post(
        &server,
        GOOGLE,
        &gcp_body(&gcp_jwt_raw(&claims.to_string()), None),
    )
    .assert_error(400, "Error decoding JWT claims.");
    // Verified, no compute_engine claim (a service-account token): id "" is unknown.
    let mut claims = gcp_claims(&id, later);
    claims.as_object_mut().expect("object").remove("google");
    post(
        &server,
        GOOGLE,
        &gcp_body(&gcp_jwt_raw(&claims.to_string()), None),
    )
    .assert_error(404, &not_found(""));
}

// ---------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------

/// Bodies Go's `json.Decoder` refuses: 400 `Request body must be valid JSON.`
/// with the decoder's message as detail. Collects every miss before failing.
fn assert_all_invalid_json(server: &TestServer, raws: &[&str]) {
    let mut misses = Vec::new();
    for path in [AWS, AZURE, GOOGLE] {
        for raw in raws {
            let resp = post_raw(server, path, raw.as_bytes());
            let ok = resp.status == 400
                && resp.json()["message"] == "Request body must be valid JSON."
                && resp.json()["detail"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty());
            if ok {
                resp.assert_error(400, "Request body must be valid JSON.");
            } else {
                misses.push(format!(
                    "{path} {raw:?} -> {} {}",
                    resp.status,
                    resp.body.trim()
                ));
            }
        }
    }
    assert!(
        misses.is_empty(),
        "not refused as invalid JSON:\n{}",
        misses.join("\n")
    );
}

#[test]
fn malformed_bodies_are_400() {
    let server = server();
    assert_all_invalid_json(
        &server,
        &[
            "",
            "not json",
            "{",
            "\"a string\"",
            "42",
            "{\"signature\": 5, \"document\": \"x\", \"encoding\": \"x\", \"json_web_token\": \"x\"}",
            "{\"signature\": \"x\", \"document\": {\"instanceId\": \"i-1\"}, \"encoding\": [], \"json_web_token\": {}}",
            "{\"signature\": \"x\", \"document\": \"x\", \"encoding\": \"x\", \"json_web_token\": \"x\", \"agent_name\": 7}",
        ],
    );
}

/// Go cannot decode a JSON array into the request struct; serde's derive
/// would take one as the fields in declaration order (`["doc", "sig"]` reached
/// the verifier until filters.rs refused non-objects).
#[test]
fn json_arrays_are_not_request_bodies() {
    let server = server();
    assert_all_invalid_json(
        &server,
        &["[]", "[\"a\", \"b\"]", "[\"a\", \"b\", \"c\", \"d\"]"],
    );
}

#[track_caller]
fn assert_validation(resp: &Resp, fields: &[&str]) {
    let body = resp.assert_error(400, "Validation failed.");
    let got: Vec<&str> = body["validations"]
        .as_array()
        .expect("validations")
        .iter()
        .map(|v| v["field"].as_str().expect("field"))
        .collect();
    assert_eq!(got, fields, "{body}");
    for v in body["validations"].as_array().expect("validations") {
        assert_eq!(
            v["detail"], "Validation failed for tag \"required\" with value: \"\"",
            "{body}"
        );
    }
}

#[test]
fn missing_fields_fail_validation() {
    let server = server();
    let post_str = |path: &str, raw: &str| post_raw(&server, path, raw.as_bytes());
    assert_validation(&post_str(AWS, "{}"), &["signature", "document"]);
    assert_validation(&post_str(AWS, "{\"signature\": \"x\"}"), &["document"]);
    assert_validation(
        &post_str(AWS, "{\"document\": \"x\", \"signature\": \"\"}"),
        &["signature"],
    );
    assert_validation(
        &post_str(AWS, "{\"agent_name\": \"main\"}"),
        &["signature", "document"],
    );
    assert_validation(&post_str(AZURE, "{}"), &["signature", "encoding"]);
    assert_validation(&post_str(AZURE, "{\"signature\": \"x\"}"), &["encoding"]);
    assert_validation(
        &post_str(AZURE, "{\"encoding\": \"pkcs7\"}"),
        &["signature"],
    );
    assert_validation(&post_str(GOOGLE, "{}"), &["json_web_token"]);
    assert_validation(
        &post_str(GOOGLE, "{\"json_web_token\": \"\"}"),
        &["json_web_token"],
    );
    // Another cloud's fields do not count.
    assert_validation(
        &post_str(GOOGLE, "{\"document\": \"x\", \"signature\": \"x\"}"),
        &["json_web_token"],
    );
}

#[test]
fn bodies_over_four_mebibytes_are_413() {
    let server = server();
    const LIMIT: usize = 4 << 20;
    let garbage = vec![b'x'; LIMIT + 1];
    for path in [AWS, AZURE, GOOGLE] {
        post_raw(&server, path, &garbage).assert_error(413, "Request body too large.");
    }
    // Exactly 4 MiB is read (and then judged on its content).
    let mut padded = b"{\"document\": \"x\", \"signature\": \"x\"}".to_vec();
    padded.resize(LIMIT, b' ');
    post_raw(&server, AWS, &padded).assert_error(401, "Invalid AWS identity.");
}

/// Hostile DER in the Azure envelope: lengths and integers far larger than
/// the input. Each must be a 401, never a 500 or a hang.
#[test]
fn hostile_der_is_401_never_500() {
    let server = server();
    let mut giant_version = vec![0x30, 0x82, 0x27, 0x14, 0x02, 0x82, 0x27, 0x10];
    giant_version.extend(std::iter::repeat_n(0x7f, 10_000));
    let mut giant_in_signed_data = vec![
        0x30, 0x82, 0x27, 0x21, // ContentInfo
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02, // signedData
        0xa0, 0x82, 0x27, 0x14, // [0]
        0x30, 0x82, 0x27, 0x10, // SignedData
        0x02, 0x82, 0x27, 0x0c, // version: a 9996-byte INTEGER
    ];
    giant_in_signed_data.extend(std::iter::repeat_n(0x01, 9_996));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "length claims 2 GiB",
            vec![0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x02, 0x01, 0x01],
        ),
        ("length of length 127", vec![0x30, 0xff, 0x01]),
        (
            "indefinite length, no end",
            vec![0x30, 0x80, 0x02, 0x01, 0x01],
        ),
        ("giant INTEGER at the top", giant_version),
        ("giant INTEGER as SignedData version", giant_in_signed_data),
        ("deep nesting", [0x30, 0x80].repeat(5_000)),
    ];
    for (what, der) in cases {
        let body = post(&server, AZURE, &azure_body(&STANDARD.encode(&der), None))
            .assert_error(401, "Invalid Azure identity.");
        assert_eq!(body["detail"], "Signature verification failed.", "{what}");
    }
    // The server is still fine.
    assert_eq!(server.get("/healthz", None).status, 200);
}

// ---------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------

/// Each sign-in mints a new token (only digests are stored); an agent keeps the
/// newest eight, and each of them works.
#[test]
fn each_sign_in_mints_a_token_and_the_newest_eight_live() {
    let server = server();
    let id = instance("i-");
    let applied = apply(&server, &manifest("tokens", &id, AWS_AUTH, &["main"]));
    let main = agent_id(&applied, "main");
    let body = aws_body(&id, None);
    let mut tokens = Vec::new();
    for _ in 0..8 {
        tokens.push(assert_signed_in_as(
            &server,
            &post(&server, AWS, &body),
            &main,
        ));
    }
    let mut unique = tokens.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 8, "every sign-in mints a new token");
    for t in &tokens {
        assert_eq!(token_agent(&server, t).as_deref(), Some(main.as_str()));
    }
    // The ninth revokes the oldest.
    tokens.push(assert_signed_in_as(
        &server,
        &post(&server, AWS, &body),
        &main,
    ));
    assert_eq!(
        token_agent(&server, &tokens[0]),
        None,
        "the oldest is revoked"
    );
    for t in &tokens[1..] {
        assert_eq!(token_agent(&server, t).as_deref(), Some(main.as_str()));
    }
    // Tokens are not stored in the clear.
    let db = std::fs::read(&server.db).expect("read the database");
    for t in &tokens {
        assert!(
            !db.windows(t.len()).any(|w| w == t.as_bytes()),
            "token {t} is not in the database file"
        );
    }
}

// ---------------------------------------------------------------------------
// Rate limit
// ---------------------------------------------------------------------------

#[test]
fn rate_limit_answers_429_after_the_budget() {
    let server = server_with("rate_limit_per_minute = 3");
    let id = instance("i-");
    let applied = apply(&server, &manifest("rl", &id, AWS_AUTH, &["main"]));
    // The budget is per client address, across the three endpoints.
    assert_signed_in_as(
        &server,
        &post(&server, AWS, &aws_body(&id, None)),
        &agent_id(&applied, "main"),
    );
    post_raw(&server, AZURE, b"{}").assert_error(400, "Validation failed.");
    post_raw(&server, GOOGLE, b"not json").assert_error(400, "Request body must be valid JSON.");
    for path in [AWS, AZURE, GOOGLE] {
        let body = post(&server, path, &aws_body(&id, None)).assert_error(
            429,
            "You've been rate limited for sending more than 3 requests in 1m0s.",
        );
        let detail = body["detail"].as_str().unwrap_or("");
        assert!(detail.starts_with("Try again in "), "{body}");
    }
    // Other routes are not affected.
    assert_eq!(server.get("/healthz", None).status, 200);
}

#[test]
fn rate_limit_zero_turns_it_off() {
    let server = server_with("rate_limit_per_minute = 0");
    for _ in 0..40 {
        post_raw(&server, GOOGLE, b"{}").assert_error(400, "Validation failed.");
    }
}

// ---------------------------------------------------------------------------
// CLI: `identity verify` with the real fixtures
// ---------------------------------------------------------------------------

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/identity")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn expected(dir: &Path) -> Value {
    serde_json::from_str(&read(&dir.join("expected.json"))).expect("expected.json")
}

/// `identity verify --cloud CLOUD --file PROOF [--at AT] --output json`.
fn verify(
    sandbox: &Sandbox,
    cloud: &str,
    proof: &Path,
    at: Option<&str>,
) -> crate::harness::CliOutput {
    let proof = proof.to_str().expect("utf-8");
    let mut args = vec![
        "identity", "verify", "--cloud", cloud, "--file", proof, "--output", "json",
    ];
    if let Some(at) = at {
        args.extend(["--at", at]);
    }
    sandbox.cli(&args)
}

#[track_caller]
fn assert_verifies(out: &crate::harness::CliOutput, cloud: &str, instance_id: &str) {
    let v = out.json();
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["cloud"], cloud, "{v}");
    assert_eq!(v["instance_id"], instance_id, "{v}");
}

#[track_caller]
fn assert_refuses(out: &crate::harness::CliOutput, what: &str) {
    out.assert_failure();
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: stdout is JSON ({e}): {}", out.stdout));
    assert_eq!(v["valid"], false, "{what}: {v}");
    assert!(
        v["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: {v}"
    );
}

fn rfc3339(unix: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).expect("a time");
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

fn unix_of(rfc3339: &str) -> i64 {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
        .unix_timestamp()
}

#[test]
fn cli_verify_real_aws_fixtures() {
    let sandbox = Sandbox::new();
    for name in ["coder-us-east-1-2022", "taskcluster-us-west-2-2019"] {
        let dir = fixtures().join("aws").join(name);
        let document = read(&dir.join("document.json"));
        let signature = read(&dir.join("signature.b64"));
        let id = expected(&dir)["instance_id"]
            .as_str()
            .expect("id")
            .to_string();
        let proof = sandbox.write(
            &format!("{name}.json"),
            &json!({"document": document, "signature": signature}).to_string(),
        );
        assert_verifies(&verify(&sandbox, "aws", &proof, None), "aws", &id);
        // Dates do not matter for AWS.
        assert_verifies(
            &verify(&sandbox, "aws", &proof, Some("2099-01-01T00:00:00Z")),
            "aws",
            &id,
        );
        let bad = sandbox.write(
            &format!("{name}-newline.json"),
            &json!({"document": format!("{document}\n"), "signature": signature}).to_string(),
        );
        assert_refuses(&verify(&sandbox, "aws", &bad, None), name);
    }
}

/// The leaf certificate's notAfter of an Azure envelope, via openssl.
fn azure_leaf_not_after(signature_b64: &str) -> i64 {
    let der = STANDARD
        .decode(signature_b64.trim())
        .expect("signature.b64 is base64");
    let pem = openssl(&["pkcs7", "-inform", "DER", "-print_certs"], &der);
    let out = String::from_utf8(openssl(
        &["x509", "-noout", "-enddate", "-dateopt", "iso_8601"],
        &pem,
    ))
    .expect("text");
    // notAfter=2025-04-13 08:35:37Z
    let date = out
        .trim()
        .strip_prefix("notAfter=")
        .unwrap_or_else(|| panic!("openssl printed {out:?}"));
    unix_of(&date.replacen(' ', "T", 1))
}

#[test]
fn cli_verify_real_azure_fixtures() {
    let sandbox = Sandbox::new();
    let mut names: Vec<String> = std::fs::read_dir(fixtures().join("azure"))
        .expect("azure fixtures")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 6, "{names:?}");
    for name in names {
        let dir = fixtures().join("azure").join(&name);
        let exp = expected(&dir);
        let id = exp["instance_id"].as_str().expect("id");
        let valid_at = exp["valid_at"].as_str().expect("valid_at");
        let proof = dir.join("request.json");
        assert_verifies(
            &verify(&sandbox, "azure", &proof, Some(valid_at)),
            "azure",
            id,
        );
        let not_after = azure_leaf_not_after(&read(&dir.join("signature.b64")));
        assert!(not_after > unix_of(valid_at), "{name}");
        // RFC 5280: the validity period includes notAfter.
        assert_verifies(
            &verify(&sandbox, "azure", &proof, Some(&rfc3339(not_after))),
            "azure",
            id,
        );
        assert_refuses(
            &verify(&sandbox, "azure", &proof, Some(&rfc3339(not_after + 1))),
            &format!("{name} one second after the leaf expired"),
        );
        // And today (all these leaves have expired).
        assert_refuses(&verify(&sandbox, "azure", &proof, None), &name);
    }
}

#[test]
fn cli_verify_real_gcp_fixtures_with_an_imported_jwks() {
    let sandbox = Sandbox::new();
    let jwks_file = sandbox.path().join("gcp-jwks.json");
    std::fs::write(
        &sandbox.config,
        format!(
            "[identity.gcp]\njwks_file = {}\n",
            serde_json::to_string(jwks_file.to_str().expect("utf-8")).expect("string")
        ),
    )
    .expect("write the config");
    let mut names: Vec<String> = std::fs::read_dir(fixtures().join("gcp"))
        .expect("gcp fixtures")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 4, "{names:?}");
    for name in names {
        let dir = fixtures().join("gcp").join(&name);
        let exp = expected(&dir);
        let kid = exp["kid"].as_str().expect("kid");
        let imported = sandbox
            .cli(&[
                "identity",
                "import-jwks",
                dir.join("jwks.json").to_str().expect("utf-8"),
                "--output",
                "json",
            ])
            .json();
        assert_eq!(
            imported["installed"],
            jwks_file.to_str().expect("utf-8"),
            "{imported}"
        );
        assert!(
            imported["keys"]
                .as_array()
                .expect("keys")
                .iter()
                .any(|k| k == kid),
            "{imported}"
        );
        assert_eq!(
            read(&jwks_file),
            read(&dir.join("jwks.json")),
            "installed verbatim"
        );

        // The negative fixture verifies but has no instance id.
        let id = exp["instance_id"].as_str().unwrap_or("");
        let token = read(&dir.join("token.jwt"));
        let proof = sandbox.write(
            &format!("{name}.json"),
            &json!({"json_web_token": token.trim()}).to_string(),
        );
        let valid_at = exp["valid_at"].as_str().expect("valid_at");
        let exp_time = exp["exp"].as_i64().expect("exp");
        assert_verifies(
            &verify(&sandbox, "google", &proof, Some(valid_at)),
            "google",
            id,
        );
        assert_verifies(
            &verify(&sandbox, "google", &proof, Some(&rfc3339(exp_time))),
            "google",
            id,
        );
        assert_refuses(
            &verify(&sandbox, "google", &proof, Some(&rfc3339(exp_time + 1))),
            &format!("{name} one second after exp"),
        );
        assert_refuses(&verify(&sandbox, "google", &proof, None), &name);
    }
}

#[test]
fn cli_verify_the_test_material() {
    // The same proofs the HTTP tests send, checked offline with the same config.
    let sandbox = Sandbox::with_config(&identity_config(""));
    let vm = uuid::Uuid::new_v4().to_string();
    let cases = [
        ("aws", aws_body("i-cli", None), "i-cli"),
        (
            "azure",
            azure_body(&azure_signature(&material().azure_ec, &vm), None),
            vm.as_str(),
        ),
        (
            "google",
            gcp_body(&gcp_jwt("4242", unix_now() + 600), None),
            "4242",
        ),
    ];
    for (cloud, body, id) in cases {
        let proof = sandbox.write(&format!("{cloud}.json"), &body.to_string());
        assert_verifies(&verify(&sandbox, cloud, &proof, None), cloud, id);
    }
    // The Azure chain is only trusted through the config.
    let plain = Sandbox::new();
    let proof = plain.write(
        "azure.json",
        &azure_body(&azure_signature(&material().azure_rsa, &vm), None).to_string(),
    );
    assert_refuses(
        &verify(&plain, "azure", &proof, None),
        "untrusted test chain",
    );
}

// ---------------------------------------------------------------------------
// CLI: check-config and import-jwks
// ---------------------------------------------------------------------------

fn count_by_kind(check: &Value, kind: &str) -> usize {
    check["trust"]
        .as_array()
        .expect("trust array")
        .iter()
        .filter(|i| i["kind"] == kind)
        .count()
}

#[test]
fn check_config_lists_trust_material_and_warns_before_expiry() {
    let m = material();
    let baseline = Sandbox::new()
        .cli(&["check-config", "--output", "json"])
        .json();
    let config = format!(
        "[identity.aws]\ncertificates = [{}]\n[identity.azure]\nroots = [{}, {}]\nintermediates = [{}]\n",
        json!(m.aws_cert.to_str().expect("utf-8")),
        json!(m.expiring_root.to_str().expect("utf-8")),
        json!(m.azure_rsa.root.to_str().expect("utf-8")),
        json!(m.azure_rsa.intermediate.to_str().expect("utf-8")),
    );
    let sandbox = Sandbox::with_config(&config);
    let check = sandbox.cli(&["check-config", "--output", "json"]).json();
    for (kind, added) in [
        ("aws-key", 1),
        ("azure-root", 2),
        ("azure-intermediate", 1),
        ("gcp-jwk", 0),
    ] {
        assert_eq!(
            count_by_kind(&check, kind),
            count_by_kind(&baseline, kind) + added,
            "{kind}"
        );
    }
    let cn = m.expiring_root_subject_cn;
    let root = check["trust"]
        .as_array()
        .expect("trust")
        .iter()
        .find(|i| i["kind"] == "azure-root" && i["label"].as_str().unwrap_or("").contains(cn))
        .unwrap_or_else(|| panic!("the added root is listed by subject: {check:#}"));
    assert!(root["not_after"].is_string(), "{root}");
    let warnings: Vec<&str> = check["trust_warnings"]
        .as_array()
        .expect("trust_warnings")
        .iter()
        .map(|w| w.as_str().expect("string"))
        .collect();
    let expiring: Vec<&&str> = warnings
        .iter()
        .filter(|w| w.contains("within 60 days"))
        .collect();
    assert_eq!(
        expiring.len(),
        1,
        "one warning, for the 30-day root: {warnings:?}"
    );
    assert!(expiring[0].contains(cn), "{warnings:?}");

    // The text form says the same to people.
    let text = sandbox.cli(&["check-config"]);
    text.assert_success();
    let out = &text.stdout;
    let n = count_by_kind(&check, "azure-root");
    assert!(out.contains(&format!("azure-root: {n}")), "{out}");
    assert!(
        out.contains(&format!("aws-key: {}", count_by_kind(&check, "aws-key"))),
        "{out}"
    );
    assert!(out.contains("Test rsa Root"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("warning") && l.contains(cn) && l.contains("within 60 days")),
        "{out}"
    );
}

#[test]
fn import_jwks_refuses_garbage() {
    let sandbox = Sandbox::new();
    let target = sandbox.path().join("jwks.json");
    std::fs::write(
        &sandbox.config,
        format!(
            "[identity.gcp]\njwks_file = {}\n",
            json!(target.to_str().expect("utf-8"))
        ),
    )
    .expect("write the config");
    let good = read(&material().gcp_jwks);
    let cases = [
        ("not JSON", "garbage".to_string()),
        ("an empty object", "{}".to_string()),
        ("no keys", "{\"keys\": []}".to_string()),
        ("a key without n", "{\"keys\": [{\"kty\": \"RSA\", \"kid\": \"k\", \"e\": \"AQAB\"}]}".to_string()),
        ("an EC key", "{\"keys\": [{\"kty\": \"EC\", \"kid\": \"k\", \"crv\": \"P-256\", \"x\": \"AA\", \"y\": \"AA\"}]}".to_string()),
        ("a private key", good.replacen("\"kty\"", "\"d\": \"AQAB\", \"kty\"", 1)),
    ];
    for (what, text) in cases {
        let file = sandbox.write("candidate.json", &text);
        let out = sandbox.cli(&["identity", "import-jwks", file.to_str().expect("utf-8")]);
        let err = out.assert_one_line_error();
        assert!(!err.is_empty(), "{what}");
        assert!(!target.exists(), "{what}: nothing installed");
    }
    let missing = sandbox.path().join("missing.json");
    sandbox
        .cli(&["identity", "import-jwks", missing.to_str().expect("utf-8")])
        .assert_one_line_error();
    // A good one installs; garbage afterwards leaves it in place.
    let file = sandbox.write("good.json", &good);
    sandbox
        .cli(&["identity", "import-jwks", file.to_str().expect("utf-8")])
        .assert_success();
    assert_eq!(read(&target), good);
    let file = sandbox.write("bad.json", "{\"keys\": 5}");
    sandbox
        .cli(&["identity", "import-jwks", file.to_str().expect("utf-8")])
        .assert_one_line_error();
    assert_eq!(read(&target), good, "the installed JWKS is untouched");
}

#[test]
fn import_jwks_needs_a_configured_jwks_file() {
    let sandbox = Sandbox::new();
    let file = sandbox.write("jwks.json", &read(&material().gcp_jwks));
    let err = sandbox
        .cli(&["identity", "import-jwks", file.to_str().expect("utf-8")])
        .assert_one_line_error()
        .to_string();
    assert!(err.contains("identity.gcp.jwks_file"), "{err}");
}

/// Google's keys fetched from `identity.gcp.jwks_url` (a fake Google on
/// loopback, serving the test JWKS with a cache lifetime) verify tokens
/// without any `jwks_file`; the server fetched once at start.
#[test]
fn google_keys_fetched_from_jwks_url() {
    use std::io::{Read, Write};
    let jwks = std::fs::read(&material().gcp_jwks).expect("test jwks");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let served = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: public, max-age=21600\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                jwks.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&jwks);
        }
    });
    // Everything as usual, but the GCP keys come only from the URL.
    let config = identity_config("").replace(
        &format!(
            "jwks_file = {}",
            serde_json::to_string(material().gcp_jwks.to_str().expect("utf-8")).expect("json")
        ),
        &format!("jwks_url = \"http://{addr}/oauth2/v3/certs\""),
    );
    assert!(config.contains("jwks_url"), "{config}");
    let server = TestServer::start_with(Options {
        config,
        ..Default::default()
    });
    let id = instance("");
    let applied = apply(&server, &manifest("gce", &id, GOOGLE_AUTH, &["main"]));
    let jwt = gcp_jwt(&id, unix_now() + 3600);
    // The fetch runs beside start-up: allow it a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let resp = post(&server, GOOGLE, &gcp_body(&jwt, None));
        if resp.status == 200 {
            assert_signed_in_as(&server, &resp, &agent_id(&applied, "main"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never accepted: {} {}",
            resp.status,
            resp.body
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "fetched once; the cache lifetime is 6 h"
    );
}
