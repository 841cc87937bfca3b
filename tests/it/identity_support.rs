//! Helpers for `identity.rs`: trust material made with the `openssl` CLI (once
//! per test binary, cached in a `OnceLock`), proofs signed with it, and a raw
//! `POST` (the harness only sends body-less requests).
//!
//! Everything here is test-only PKI. The material lives in
//! `$CARGO_TARGET_TMPDIR/identity-it/<pid>`; directories of earlier runs are
//! removed when they are more than an hour old.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::harness::{Resp, TestServer};

/// How long one `openssl` invocation may take (RSA key generation included).
const OPENSSL_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `openssl ARGS` with `stdin`, returning stdout; panics with stderr on failure.
pub fn openssl(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn openssl (is the openssl CLI installed?)");
    let mut input = child.stdin.take().expect("piped stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        // openssl may not read its input (e.g. genpkey); that is fine.
        let _ = input.write_all(&data);
    });
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(OPENSSL_TIMEOUT) {
        Ok(out) => out.expect("wait for openssl"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("openssl {args:?} did not finish within {OPENSSL_TIMEOUT:?}");
        }
    };
    let _ = writer.join();
    assert!(
        output.status.success(),
        "openssl {args:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A certificate chain for Azure-style envelopes: root → intermediate → leaf.
pub struct Chain {
    pub root: PathBuf,
    pub intermediate: PathBuf,
    pub leaf: PathBuf,
    pub leaf_key: PathBuf,
}

/// All trust material the identity tests use.
pub struct Material {
    /// AWS: a self-signed certificate wrapping the RSA key documents are signed with.
    pub aws_cert: PathBuf,
    pub aws_key: PathBuf,
    /// Azure, all RSA: leaf CN `metadata.azure.com`.
    pub azure_rsa: Chain,
    /// Azure, ECDSA: P-384 root and intermediate, P-256 leaf CN `eastus.metadata.azure.com`.
    pub azure_ec: Chain,
    /// A leaf under `azure_rsa`'s intermediate with CN `metadata.azure.com.evil.example`.
    pub azure_evil_leaf: PathBuf,
    pub azure_evil_key: PathBuf,
    /// A self-signed `metadata.azure.com` leaf that no configuration trusts.
    pub azure_rogue_leaf: PathBuf,
    pub azure_rogue_key: PathBuf,
    /// An Azure root that expires in 30 days (for `check-config`'s warning).
    pub expiring_root: PathBuf,
    pub expiring_root_subject_cn: &'static str,
    /// GCP: the RSA key tokens are signed with and the JWKS holding its public part.
    pub gcp_key: PathBuf,
    pub gcp_jwks: PathBuf,
    pub gcp_kid: &'static str,
}

const EXT_CNF: &str = "\
[req]
distinguished_name = dn
[dn]
[v3_root]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[v3_int]
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[v3_leaf]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[v3_aws]
basicConstraints = critical, CA:false
";

struct Gen {
    dir: PathBuf,
    cnf: PathBuf,
    serial: u32,
}

impl Gen {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `kind`: `rsa` (2048 bits) or an EC curve name.
    fn key(&self, name: &str, kind: &str) -> PathBuf {
        let out = self.path(&format!("{name}.key"));
        let curve = format!("ec_paramgen_curve:{kind}");
        let mut args = vec!["genpkey", "-out", p(&out)];
        if kind == "rsa" {
            args.extend(["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
        } else {
            args.extend(["-algorithm", "EC", "-pkeyopt", &curve]);
        }
        openssl(&args, b"");
        out
    }

    /// A self-signed certificate for `key`.
    fn self_signed(&self, name: &str, key: &Path, subject: &str, ext: &str, days: u32) -> PathBuf {
        let out = self.path(&format!("{name}.pem"));
        let days = days.to_string();
        openssl(
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                p(key),
                "-subj",
                subject,
                "-config",
                p(&self.cnf),
                "-extensions",
                ext,
                "-days",
                &days,
                "-sha256",
                "-out",
                p(&out),
            ],
            b"",
        );
        out
    }

    /// A certificate for `key` issued by `issuer`/`issuer_key`.
    #[allow(clippy::too_many_arguments)]
    fn issued(
        &mut self,
        name: &str,
        key: &Path,
        subject: &str,
        issuer: &Path,
        issuer_key: &Path,
        ext: &str,
        md: &str,
    ) -> PathBuf {
        let csr = self.path(&format!("{name}.csr"));
        openssl(
            &[
                "req",
                "-new",
                "-key",
                p(key),
                "-subj",
                subject,
                "-config",
                p(&self.cnf),
                "-out",
                p(&csr),
            ],
            b"",
        );
        self.serial += 1;
        let serial = self.serial.to_string();
        let out = self.path(&format!("{name}.pem"));
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                p(&csr),
                "-CA",
                p(issuer),
                "-CAkey",
                p(issuer_key),
                "-set_serial",
                &serial,
                "-extfile",
                p(&self.cnf),
                "-extensions",
                ext,
                "-days",
                "3650",
                &format!("-{md}"),
                "-out",
                p(&out),
            ],
            b"",
        );
        out
    }

    fn chain(&mut self, name: &str, root_kind: &str, leaf_kind: &str, md: &str, cn: &str) -> Chain {
        let root_key = self.key(&format!("{name}-root"), root_kind);
        let root = self.self_signed(
            &format!("{name}-root"),
            &root_key,
            &format!("/O=appliance-it/CN=Test {name} Root"),
            "v3_root",
            3650,
        );
        let int_key = self.key(&format!("{name}-int"), root_kind);
        let intermediate = self.issued(
            &format!("{name}-int"),
            &int_key,
            &format!("/O=appliance-it/CN=Test {name} Intermediate"),
            &root,
            &root_key,
            "v3_int",
            md,
        );
        let leaf_key = self.key(&format!("{name}-leaf"), leaf_kind);
        let leaf = self.issued(
            &format!("{name}-leaf"),
            &leaf_key,
            &format!("/O=appliance-it/CN={cn}"),
            &intermediate,
            &int_key,
            "v3_leaf",
            md,
        );
        Chain {
            root,
            intermediate,
            leaf,
            leaf_key,
        }
    }
}

/// Removes material directories of earlier runs (older than an hour).
fn sweep(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < hour_ago);
        if old {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn generate() -> Material {
    let parent = Path::new(env!("CARGO_TARGET_TMPDIR")).join("identity-it");
    sweep(&parent);
    let dir = parent.join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the material directory");
    let cnf = dir.join("ext.cnf");
    std::fs::write(&cnf, EXT_CNF).expect("write ext.cnf");
    let mut g = Gen {
        dir: dir.clone(),
        cnf,
        serial: 0x1000,
    };

    let aws_key = g.key("aws", "rsa");
    let aws_cert = g.self_signed(
        "aws",
        &aws_key,
        "/O=appliance-it/CN=appliance-it AWS key",
        "v3_aws",
        3650,
    );

    let azure_rsa = g.chain("rsa", "rsa", "rsa", "sha256", "metadata.azure.com");
    let azure_ec = g.chain(
        "ec",
        "P-384",
        "P-256",
        "sha384",
        "eastus.metadata.azure.com",
    );

    let rsa_int_key = g.path("rsa-int.key");
    let azure_evil_key = g.key("evil", "rsa");
    let azure_evil_leaf = g.issued(
        "evil",
        &azure_evil_key,
        "/O=appliance-it/CN=metadata.azure.com.evil.example",
        &azure_rsa.intermediate,
        &rsa_int_key,
        "v3_leaf",
        "sha256",
    );
    let azure_rogue_key = g.key("rogue", "rsa");
    let azure_rogue_leaf = g.self_signed(
        "rogue",
        &azure_rogue_key,
        "/O=appliance-it/CN=metadata.azure.com",
        "v3_leaf",
        3650,
    );

    let expiring_root_subject_cn = "appliance-it expiring root";
    let expiring_key = g.key("expiring", "P-256");
    let expiring_root = g.self_signed(
        "expiring",
        &expiring_key,
        &format!("/CN={expiring_root_subject_cn}"),
        "v3_root",
        30,
    );

    let gcp_key = g.key("gcp", "rsa");
    let gcp_kid = "appliance-it-kid-1";
    let modulus = String::from_utf8(openssl(
        &["rsa", "-in", p(&gcp_key), "-noout", "-modulus"],
        b"",
    ))
    .expect("modulus is text");
    let hex = modulus
        .trim()
        .strip_prefix("Modulus=")
        .expect("openssl prints Modulus=HEX");
    let n: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex modulus"))
        .collect();
    let jwks = json!({"keys": [{
        "kty": "RSA", "alg": "RS256", "use": "sig", "kid": gcp_kid,
        "n": URL_SAFE_NO_PAD.encode(&n), "e": "AQAB",
    }]});
    let gcp_jwks = dir.join("gcp-jwks.json");
    std::fs::write(&gcp_jwks, jwks.to_string()).expect("write the JWKS");

    Material {
        aws_cert,
        aws_key,
        azure_rsa,
        azure_ec,
        azure_evil_leaf,
        azure_evil_key,
        azure_rogue_leaf,
        azure_rogue_key,
        expiring_root,
        expiring_root_subject_cn,
        gcp_key,
        gcp_jwks,
        gcp_kid,
    }
}

/// The material, made on first use.
pub fn material() -> &'static Material {
    static MATERIAL: OnceLock<Material> = OnceLock::new();
    MATERIAL.get_or_init(generate)
}

/// A TOML string literal for a path.
fn toml_path(path: &Path) -> String {
    toml_str(p(path))
}

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a JSON string is a TOML basic string")
}

/// The config that trusts the test material for all three clouds (built-in AWS
/// keys stay on; built-in Azure roots off), plus `extra` lines under `[identity]`.
pub fn identity_config(identity_extra: &str) -> String {
    let m = material();
    format!(
        "[identity]\n{identity_extra}\n\
         [identity.aws]\ncertificates = [{}]\n\
         [identity.azure]\nbuiltin = false\nroots = [{}, {}]\nintermediates = [{}, {}]\n\
         [identity.gcp]\njwks_file = {}\n",
        toml_path(&m.aws_cert),
        toml_path(&m.azure_rsa.root),
        toml_path(&m.azure_ec.root),
        toml_path(&m.azure_rsa.intermediate),
        toml_path(&m.azure_ec.intermediate),
        toml_path(&m.gcp_jwks),
    )
}

// ---------------------------------------------------------------------------
// Proofs
// ---------------------------------------------------------------------------

/// An instance identity document as IMDS serves it (pretty-printed, `" : "`,
/// no trailing newline).
pub fn aws_document(instance_id: &str) -> String {
    format!(
        "{{\n  \"accountId\" : \"123456789012\",\n  \"architecture\" : \"x86_64\",\n  \
         \"availabilityZone\" : \"us-east-1a\",\n  \"billingProducts\" : null,\n  \
         \"devpayProductCodes\" : null,\n  \"marketplaceProductCodes\" : null,\n  \
         \"imageId\" : \"ami-0123456789abcdef0\",\n  \"instanceId\" : {},\n  \
         \"instanceType\" : \"t3.micro\",\n  \"kernelId\" : null,\n  \
         \"pendingTime\" : \"2026-11-29T00:00:00Z\",\n  \"privateIp\" : \"10.0.0.12\",\n  \
         \"ramdiskId\" : null,\n  \"region\" : \"us-east-1\",\n  \"version\" : \"2017-09-30\"\n}}",
        toml_str(instance_id)
    )
}

/// Base64 wrapped at 76 columns, as IMDS serves `/signature`.
fn wrap76(b64: &str) -> String {
    b64.as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// RSASSA-PKCS1-v1_5/SHA-256 signature of `data` with `key`.
fn rsa_sha256(key: &Path, data: &[u8]) -> Vec<u8> {
    openssl(&["dgst", "-sha256", "-sign", p(key)], data)
}

/// `/signature` for `document`, signed with the test AWS key.
pub fn aws_signature(document: &str) -> String {
    wrap76(&STANDARD.encode(rsa_sha256(&material().aws_key, document.as_bytes())))
}

/// The body an agent posts to `aws-instance-identity`.
pub fn aws_body(instance_id: &str, agent_name: Option<&str>) -> Value {
    let document = aws_document(instance_id);
    let mut body = json!({"signature": aws_signature(&document), "document": document});
    if let Some(name) = agent_name {
        body["agent_name"] = json!(name);
    }
    body
}

/// The attested document content Azure signs.
pub fn azure_content(vm_id: &str) -> String {
    json!({
        "licenseType": "",
        "nonce": "20261129-120000",
        "plan": {"name": "", "product": "", "publisher": ""},
        "sku": "22_04-lts-gen2",
        "subscriptionId": "00000000-0000-4000-8000-000000000000",
        "timeStamp": {"createdOn": "11/29/26 06:00:00 -0000", "expiresOn": "11/29/26 12:00:00 -0000"},
        "vmId": vm_id,
    })
    .to_string()
}

/// A DER PKCS#7 SignedData over `content`, IMDS-shaped: attached content, only
/// the leaf embedded, and (unless `signed_attrs`) no signed attributes.
pub fn cms_sign(leaf: &Path, key: &Path, content: &[u8], signed_attrs: bool) -> Vec<u8> {
    let mut args = vec![
        "cms",
        "-sign",
        "-binary",
        "-nodetach",
        "-md",
        "sha256",
        "-outform",
        "DER",
        "-signer",
        p(leaf),
        "-inkey",
        p(key),
    ];
    if !signed_attrs {
        args.push("-noattr");
    }
    openssl(&args, content)
}

/// The `signature` field for `vm_id`, signed by `chain`'s leaf without signed attributes.
pub fn azure_signature(chain: &Chain, vm_id: &str) -> String {
    STANDARD.encode(cms_sign(
        &chain.leaf,
        &chain.leaf_key,
        azure_content(vm_id).as_bytes(),
        false,
    ))
}

/// The body an agent posts to `azure-instance-identity`.
pub fn azure_body(signature: &str, agent_name: Option<&str>) -> Value {
    let mut body = json!({"encoding": "pkcs7", "signature": signature});
    if let Some(name) = agent_name {
        body["agent_name"] = json!(name);
    }
    body
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

/// GCE `format=full` identity-token claims, valid for the next hour.
pub fn gcp_claims(instance_id: &str, exp: i64) -> Value {
    json!({
        "aud": "coder",
        "azp": "112233445566778899000",
        "email": "123456789012-compute@developer.gserviceaccount.com",
        "email_verified": true,
        "exp": exp,
        "iat": exp - 3600,
        "iss": "https://accounts.google.com",
        "sub": "112233445566778899000",
        "google": {"compute_engine": {
            "instance_creation_timestamp": 1764400000,
            "instance_id": instance_id,
            "instance_name": "appliance-it",
            "project_id": "appliance-it",
            "project_number": 123456789012u64,
            "zone": "us-central1-a",
        }},
    })
}

/// An RS256 JWT over `claims` (any JSON text), signed with the test GCP key.
pub fn gcp_jwt_raw(claims: &str) -> String {
    let m = material();
    let header = json!({"alg": "RS256", "kid": m.gcp_kid, "typ": "JWT"}).to_string();
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let sig = rsa_sha256(&m.gcp_key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// A signed token for `instance_id` expiring at `exp`.
pub fn gcp_jwt(instance_id: &str, exp: i64) -> String {
    gcp_jwt_raw(&gcp_claims(instance_id, exp).to_string())
}

/// The body an agent posts to `google-instance-identity`.
pub fn gcp_body(jwt: &str, agent_name: Option<&str>) -> Value {
    let mut body = json!({"json_web_token": jwt});
    if let Some(name) = agent_name {
        body["agent_name"] = json!(name);
    }
    body
}

// ---------------------------------------------------------------------------
// HTTP and the database
// ---------------------------------------------------------------------------

pub const AWS: &str = "/api/v2/workspaceagents/aws-instance-identity";
pub const AZURE: &str = "/api/v2/workspaceagents/azure-instance-identity";
pub const GOOGLE: &str = "/api/v2/workspaceagents/google-instance-identity";

fn http() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into()
    })
}

/// `POST path` with `body` as is and, if given, an agent token in
/// `Coder-Session-Token`.
pub fn post_raw_as(server: &TestServer, path: &str, token: Option<&str>, body: &[u8]) -> Resp {
    let url = server.url(path);
    let mut req = http().post(&url).header("Content-Type", "application/json");
    if let Some(token) = token {
        req = req.header("Coder-Session-Token", token);
    }
    let mut resp = req.send(body).unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let body = resp
        .body_mut()
        .read_to_string()
        .unwrap_or_else(|e| panic!("POST {url}: reading the body: {e}"));
    Resp {
        status: resp.status().as_u16(),
        headers,
        body,
    }
}

/// `POST path` with `body` as is (no session token).
pub fn post_raw(server: &TestServer, path: &str, body: &[u8]) -> Resp {
    post_raw_as(server, path, None, body)
}

/// `POST path` with a JSON body.
pub fn post(server: &TestServer, path: &str, body: &Value) -> Resp {
    post_raw(server, path, body.to_string().as_bytes())
}

/// Asserts a 200 `{"session_token": UUIDv4}` and returns the token.
#[track_caller]
pub fn session_token(resp: &Resp) -> String {
    let body = resp.ok_json();
    let obj = body.as_object().expect("an object");
    assert_eq!(obj.len(), 1, "only session_token: {body}");
    let token = body["session_token"]
        .as_str()
        .expect("session_token is a string")
        .to_string();
    let uuid = uuid::Uuid::parse_str(&token).expect("the token is a UUID");
    assert_eq!(uuid.get_version_num(), 4, "a UUIDv4: {token}");
    assert_eq!(uuid.hyphenated().to_string(), token, "canonical spelling");
    token
}

/// The agent an agent token signs in as, learnt by using it: `POST
/// /api/v2/workspaceagents/me/log-source` answers with `workspace_agent_id`.
/// `None` when the token is refused (401 `Workspace agent not authorized.`).
pub fn token_agent(server: &TestServer, token: &str) -> Option<String> {
    let body = json!({
        "id": "3b579bf4-1ed8-4b99-87a8-e9a1e3410410",
        "display_name": "identity test",
        "icon": "",
    });
    let resp = post_raw_as(
        server,
        "/api/v2/workspaceagents/me/log-source",
        Some(token),
        body.to_string().as_bytes(),
    );
    if resp.status == 401 {
        resp.assert_error(401, "Workspace agent not authorized.");
        return None;
    }
    assert_eq!(
        resp.status, 201,
        "log-source with an agent token: {}",
        resp.body
    );
    let v = resp.json();
    Some(
        v["workspace_agent_id"]
            .as_str()
            .expect("workspace_agent_id")
            .to_string(),
    )
}
