//! SIGHUP: the config file and trust material are read again and applied
//! without dropping connections; a broken file changes nothing.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Options, TestServer, agent_id};
use crate::identity_support::{GOOGLE, gcp_body, gcp_jwt, material, post, session_token, unix_now};
use crate::logs_support::{Follower, batch_of, store};

fn toml_path(path: &std::path::Path) -> String {
    serde_json::to_string(path.to_str().expect("utf-8 path")).expect("a TOML string")
}

const MANIFEST: &str = r#"
name = "gce"
owner = "admin"

[[resources]]
name = "vm"
type = "cloud_instance"
instance_id = "reload-instance-1"

  [[resources.agents]]
  name = "main"
  auth = "google-instance-identity"
"#;

/// Sends SIGHUP and waits for the reload to finish; returns the line that
/// says how it ended (`configuration reloaded` or `reload failed`).
#[track_caller]
fn hangup(server: &TestServer, nth: usize) -> String {
    server.signal("-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ended: Vec<String> = server
            .log()
            .into_iter()
            .filter(|l| l.contains("configuration reloaded") || l.contains("reload failed"))
            .collect();
        if ended.len() >= nth {
            return ended[nth - 1].clone();
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "reload #{nth} did not finish; log:\n{}",
            server.log().join("\n")
        );
        server.wait_for_log(left.min(Duration::from_millis(200)), |l| {
            l.contains("configuration reloaded") || l.contains("reload failed")
        });
    }
}

#[test]
fn sighup_loads_new_trust_material_and_keeps_open_sockets() {
    let server = TestServer::start_with(Options::default());
    let applied: Value = server.apply(MANIFEST);
    let agent = agent_id(&applied, "main");
    let key = server.token("admin");
    let jwt = gcp_jwt("reload-instance-1", unix_now() + 3600);

    // No Google keys yet: the proof cannot verify.
    post(&server, GOOGLE, &gcp_body(&jwt, None)).assert_error(401, "Invalid GCP identity.");
    let mut follower = Follower::start(&server, &agent, &key, "");
    assert!(
        follower.frame(Duration::from_secs(10)).is_empty(),
        "no backlog"
    );

    // Point the config at a JWKS, change a key that needs a restart, and reload.
    std::fs::write(
        &server.config,
        format!(
            "[identity.gcp]\njwks_file = {}\n[database]\npool_size = 3\n",
            toml_path(&material().gcp_jwks)
        ),
    )
    .expect("rewrite the config file");
    let ended = hangup(&server, 1);
    assert!(ended.contains("configuration reloaded"), "{ended}");
    let log = server.log().join("\n");
    assert!(log.contains("applied identity.gcp.jwks_file"), "{log}");
    assert!(
        log.contains("database.pool_size changed: needs a restart"),
        "{log}"
    );

    // The same proof now signs in, and the agent's token works.
    let token = session_token(&post(&server, GOOGLE, &gcp_body(&jwt, None)));
    store(&server, &token, &batch_of(&["after the reload"]));
    // The follow socket opened before the reload is still served.
    let rows = follower.frame(Duration::from_secs(10));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["output"], "after the reload");

    // A broken file: an error in the log, nothing changes, nothing stops.
    std::fs::write(&server.config, "[identity.gcp\njwks_file = 3\n").expect("break the config");
    let ended = hangup(&server, 2);
    assert!(ended.contains("reload failed"), "{ended}");
    assert!(
        ended.contains("keeping the configuration in force"),
        "{ended}"
    );
    assert_eq!(server.get("/healthz", None).status, 200);
    session_token(&post(&server, GOOGLE, &gcp_body(&jwt, None)));
    store(&server, &token, &batch_of(&["still following"]));
    let rows = follower.frame(Duration::from_secs(10));
    assert_eq!(rows[0]["output"], "still following");
    follower.close();
}

#[test]
fn sighup_applies_the_metrics_token_and_the_log_filter() {
    let server = TestServer::start_with(Options::default());
    assert_eq!(server.get("/metrics", None).status, 200);
    assert_eq!(server.get("/healthz", None).status, 200);
    let served = |l: &str| l.contains("served") && l.contains("status=200");
    assert!(
        !server.log().iter().any(|l| served(l)),
        "no request lines at info"
    );
    std::fs::write(
        &server.config,
        "[log]\nfilter = \"debug\"\n[metrics]\ntoken = \"fresh\"\n",
    )
    .expect("rewrite the config");
    let ended = hangup(&server, 1);
    assert!(ended.contains("configuration reloaded"), "{ended}");
    server
        .get("/metrics", None)
        .assert_error(401, "Metrics token required.");
    assert_eq!(server.get("/healthz", None).status, 200);
    assert!(
        server
            .wait_for_log(Duration::from_secs(10), served)
            .is_some(),
        "debug request lines after the reload; log:\n{}",
        server.log().join("\n")
    );
    assert!(
        !server.log().join("\n").contains("fresh"),
        "the token is never logged"
    );
}
