//! Admin commands: help, version, users, tokens, migrations, configuration.

use serde_json::Value;

use crate::harness::Sandbox;

fn is_api_key(s: &str) -> bool {
    let Some((id, secret)) = s.split_once('-') else {
        return false;
    };
    let alnum = |p: &str| p.bytes().all(|b| b.is_ascii_alphanumeric());
    id.len() == 10 && secret.len() == 22 && alnum(id) && alnum(secret)
}

#[test]
fn top_level_help_lists_every_subcommand_and_global_flag() {
    let sb = Sandbox::new();
    for flag in ["--help", "-h"] {
        let out = sb.cli_raw(&[flag], &[]);
        out.assert_success();
        for word in [
            "serve",
            "migrate",
            "check-config",
            "user",
            "token",
            "workspace",
            "--config",
            "--db",
            "--output",
        ] {
            assert!(
                out.stdout.contains(word),
                "{flag} mentions {word}:\n{}",
                out.stdout
            );
        }
    }
}

#[test]
fn every_subcommand_has_help_naming_its_flags() {
    let sb = Sandbox::new();
    let cases: &[(&[&str], &[&str])] = &[
        (&["serve"], &["--listen", "--access-url"]),
        (&["migrate"], &["schema"]),
        (&["check-config"], &["configuration"]),
        (&["user"], &["create", "list"]),
        (
            &["user", "create"],
            &["--email", "--role", "admin", "member"],
        ),
        (&["user", "list"], &["--output"]),
        (&["token"], &["create", "list", "revoke"]),
        (&["token", "create"], &["--user", "--lifetime", "--name"]),
        (&["token", "list"], &["--user", "never the secret"]),
        (&["token", "revoke"], &["ID", "whole key"]),
        (&["workspace"], &["apply", "list", "show", "stop", "delete"]),
        (&["workspace", "apply"], &["FILE", "JSON"]),
        (&["workspace", "list"], &["--output"]),
        (&["workspace", "show"], &["--owner"]),
        (&["workspace", "stop"], &["--owner"]),
        (&["workspace", "delete"], &["--owner"]),
    ];
    for (command, words) in cases {
        let mut args = command.to_vec();
        args.push("--help");
        let out = sb.cli_raw(&args, &[]);
        out.assert_success();
        assert!(
            out.stdout.starts_with(|c: char| c.is_ascii_uppercase()),
            "help of {command:?} starts with its description:\n{}",
            out.stdout
        );
        for word in *words {
            assert!(
                out.stdout.contains(word),
                "help of {command:?} mentions {word}:\n{}",
                out.stdout
            );
        }
    }
}

#[test]
fn version_prints_the_package_version() {
    let out = Sandbox::new().cli_raw(&["--version"], &[]);
    out.assert_success();
    assert_eq!(
        out.stdout,
        format!("appliance {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn no_subcommand_is_a_usage_error() {
    let out = Sandbox::new().cli_raw::<&str>(&[], &[]);
    let stderr = out.assert_failure();
    assert_eq!(out.status.code(), Some(2), "clap usage errors exit 2");
    assert!(stderr.contains("Usage"), "{stderr}");
}

#[test]
fn user_create_prints_the_user_and_the_next_step() {
    let sb = Sandbox::new();
    let out = sb.cli(&["user", "create", "alice", "--email", "alice@example.com"]);
    out.assert_success();
    assert!(
        out.stdout.starts_with("created member \"alice\" ("),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("next: appliance token create --user alice"),
        "{}",
        out.stdout
    );
}

#[test]
fn user_create_json_has_id_username_email_and_role() {
    let sb = Sandbox::new();
    let v = sb
        .cli(&[
            "user",
            "create",
            "bob",
            "--email",
            "b@example.com",
            "--role",
            "admin",
            "--output",
            "json",
        ])
        .json();
    let obj = v.as_object().expect("object");
    let mut keys: Vec<&str> = obj.keys().map(|k| k.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["email", "id", "role", "username"]);
    assert_eq!(v["username"], "bob");
    assert_eq!(v["email"], "b@example.com");
    assert_eq!(v["role"], "admin");
    uuid::Uuid::parse_str(v["id"].as_str().expect("id string")).expect("id is a UUID");

    let member = sb.create_user("carol", "member");
    assert_eq!(member["role"], "member");
    assert_eq!(member["email"], "");
    let default_role = sb
        .cli(&["user", "create", "dave", "--output", "json"])
        .json();
    assert_eq!(default_role["role"], "member", "members by default");
}

#[test]
fn duplicate_username_fails_with_one_line() {
    let sb = Sandbox::new();
    sb.create_user("alice", "member");
    let out = sb.cli(&["user", "create", "alice", "--role", "admin"]);
    let line = out.assert_one_line_error();
    assert!(line.contains("\"alice\""), "{line}");
    assert!(line.contains("already exists"), "{line}");
    let users = sb.cli(&["user", "list", "--output", "json"]).json();
    assert_eq!(users.as_array().expect("list").len(), 1);
    assert_eq!(users[0]["role"], "member", "the first alice is untouched");
}

#[test]
fn usernames_are_unique_regardless_of_case() {
    // Upstream: UNIQUE INDEX users_username_lower_idx ON users (lower(username)).
    let sb = Sandbox::new();
    sb.create_user("alice", "member");
    let out = sb.cli(&["user", "create", "Alice"]);
    let line = out.assert_one_line_error();
    assert!(line.contains("already exists"), "{line}");
    let users = sb.cli(&["user", "list", "--output", "json"]).json();
    assert_eq!(users.as_array().expect("list").len(), 1, "{users:#}");
}

#[test]
fn invalid_usernames_are_refused() {
    let sb = Sandbox::new();
    let long = "x".repeat(33);
    for bad in [
        "-alice",
        "alice-",
        "al--ice",
        "al ice",
        "al_ice",
        "älice",
        long.as_str(),
    ] {
        let out = sb.cli(&["user", "create", "--", bad]);
        let line = out.assert_one_line_error();
        assert!(
            line.contains(&format!("\"{bad}\" is not a valid username")),
            "{bad}: {line}"
        );
        assert!(line.contains("at most 32 characters"), "{line}");
    }
    let out = sb.cli(&["user", "create", ""]);
    out.assert_failure();
    let users = sb.cli(&["user", "list", "--output", "json"]).json();
    assert_eq!(users, Value::Array(vec![]), "nothing was created");
    // The longest valid name is accepted.
    sb.create_user(&"x".repeat(32), "member");
}

#[test]
fn unknown_role_is_a_usage_error_listing_the_roles() {
    let out = Sandbox::new().cli(&["user", "create", "alice", "--role", "root"]);
    let stderr = out.assert_failure();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("admin") && stderr.contains("member"),
        "{stderr}"
    );
}

#[test]
fn user_list_in_text_and_json() {
    let sb = Sandbox::new();
    let empty = sb.cli(&["user", "list"]);
    empty.assert_success();
    assert_eq!(
        empty.stdout.lines().count(),
        1,
        "header only: {}",
        empty.stdout
    );
    let bob = sb.create_user("bob", "admin");
    let alice = sb.create_user("alice", "member");
    let text = sb.cli(&["user", "list"]);
    text.assert_success();
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", text.stdout);
    for word in ["USERNAME", "ROLE", "ID"] {
        assert!(lines[0].contains(word), "{}", lines[0]);
    }
    let row = |line: &str| {
        line.split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        row(lines[1])[..3],
        ["alice", "member", alice["id"].as_str().expect("id")]
    );
    assert_eq!(
        row(lines[2])[..3],
        ["bob", "admin", bob["id"].as_str().expect("id")]
    );
    let json = sb.cli(&["user", "list", "--output", "json"]).json();
    assert_eq!(json, Value::Array(vec![alice, bob]), "sorted by username");
}

#[test]
fn token_create_prints_only_the_key() {
    let sb = Sandbox::new();
    sb.create_user("alice", "member");
    let out = sb.cli(&[
        "token",
        "create",
        "--user",
        "alice",
        "--lifetime",
        "30d",
        "--name",
        "laptop",
    ]);
    out.assert_success();
    let key = out.stdout.strip_suffix('\n').expect("ends with a newline");
    assert!(is_api_key(key), "{key:?} is <10 alnum>-<22 alnum>");
    let default = sb.cli(&["token", "create", "--user", "alice"]);
    default.assert_success();
    assert!(is_api_key(default.stdout.trim_end()));
    assert_ne!(default.stdout, out.stdout, "every key is new");
}

#[test]
fn token_create_json_has_only_the_token() {
    let sb = Sandbox::new();
    sb.create_user("alice", "member");
    let v = sb
        .cli(&["token", "create", "--user", "alice", "--output", "json"])
        .json();
    let obj = v.as_object().expect("object");
    assert_eq!(obj.len(), 1, "{v}");
    assert!(is_api_key(v["token"].as_str().expect("token")), "{v}");
}

#[test]
fn token_for_an_unknown_user_says_how_to_create_it() {
    let sb = Sandbox::new();
    let out = sb.cli(&["token", "create", "--user", "ghost"]);
    let line = out.assert_one_line_error();
    assert!(line.contains("\"ghost\""), "{line}");
    assert!(line.contains("appliance user create ghost"), "{line}");
}

#[test]
fn token_with_a_bad_lifetime_is_refused() {
    let sb = Sandbox::new();
    sb.create_user("alice", "member");
    for bad in ["5x", "30", "soon", "0s", "-1d", "99999999999999d"] {
        let out = sb.cli(&[
            "token",
            "create",
            "--user",
            "alice",
            &format!("--lifetime={bad}"),
        ]);
        let stderr = out.assert_failure();
        assert!(stderr.contains("--lifetime"), "{bad}: {stderr}");
        assert_eq!(out.stdout, "", "{bad}: no key printed");
    }
}

#[test]
fn migrate_creates_the_schema_then_reports_it_up_to_date() {
    let sb = Sandbox::new();
    let db = sb.db.to_str().expect("utf-8 path");
    let first = sb.cli(&["migrate"]);
    first.assert_success();
    assert!(
        first
            .stdout
            .starts_with(&format!("{db}: migrated schema from version 0 to ")),
        "{}",
        first.stdout
    );
    let again = sb.cli(&["migrate"]);
    again.assert_success();
    assert!(
        again
            .stdout
            .starts_with(&format!("{db}: schema is up to date (version ")),
        "{}",
        again.stdout
    );
}

#[test]
fn migrate_json_reports_versions() {
    let sb = Sandbox::new();
    let first = sb.cli(&["migrate", "--output", "json"]).json();
    assert_eq!(first["db"], sb.db.to_str().expect("utf-8"));
    assert_eq!(first["from_version"], 0);
    let version = first["to_version"].as_i64().expect("to_version");
    assert!(version >= 1, "{first}");
    let again = sb.cli(&["migrate", "--output", "json"]).json();
    assert_eq!(again["from_version"], version);
    assert_eq!(again["to_version"], version);
}

/// The keys `check-config --output json` reports, with their sources.
fn config_sources(v: &Value) -> Vec<(String, String)> {
    v["keys"]
        .as_object()
        .expect("keys")
        .iter()
        .map(|(k, e)| (k.clone(), e["source"].as_str().expect("source").to_string()))
        .collect()
}

#[test]
fn check_config_shows_every_key_with_its_source() {
    let sb = Sandbox::with_config("[log]\nfilter = \"debug\"\n");
    let json = sb.cli(&["check-config", "--output", "json"]).json();
    let sources = config_sources(&json);
    for key in [
        "db",
        "listen",
        "access_url",
        "log.filter",
        "log.format",
        "database.busy_timeout",
        "database.pool_size",
        "agent.fallback_troubleshooting_url",
        "agent.inactive_disconnect_timeout",
    ] {
        assert!(sources.iter().any(|(k, _)| k == key), "{key} in {json:#}");
    }
    let source = |key: &str| {
        sources
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, s)| s.clone())
            .expect("key")
    };
    assert_eq!(source("db"), "flag:--db");
    assert_eq!(
        source("log.filter"),
        format!("file:{}", sb.config.display())
    );
    assert_eq!(source("log.format"), "default");
    assert_eq!(json["keys"]["log.filter"]["value"], "debug");
    assert_eq!(json["file"], sb.config.to_str().expect("utf-8"));

    let text = sb.cli(&["check-config"]);
    text.assert_success();
    for (key, source) in &sources {
        let line = text
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("{key} in\n{}", text.stdout));
        assert!(
            line.ends_with(&format!("# {source}")),
            "{key} shows its source {source}: {line}"
        );
    }
    assert!(!sb.db.exists(), "check-config does not create the database");
}

#[test]
fn check_config_names_the_environment_variable_a_value_came_from() {
    let sb = Sandbox::new();
    let out = sb.cli_env(
        &["check-config", "--output", "json"],
        &[("APPLIANCE_LISTEN", "127.0.0.1:4321")],
    );
    let json = out.json();
    assert_eq!(json["keys"]["listen"]["source"], "env:APPLIANCE_LISTEN");
    assert_eq!(json["keys"]["listen"]["value"], "127.0.0.1:4321");
    assert_eq!(json["keys"]["access_url"]["value"], "http://127.0.0.1:4321");
    let text = sb.cli_env(&["check-config"], &[("APPLIANCE_LISTEN", "127.0.0.1:4321")]);
    let line = text
        .stdout
        .lines()
        .find(|l| l.starts_with("listen "))
        .expect("listen line");
    assert!(line.contains("\"127.0.0.1:4321\""), "{line}");
    assert!(line.ends_with("# env:APPLIANCE_LISTEN"), "{line}");
}

#[test]
fn unknown_environment_variable_is_a_warning_not_an_error() {
    let sb = Sandbox::new();
    let out = sb.cli_env(
        &["check-config", "--output", "json"],
        &[("APPLIANCE_LISTN", "127.0.0.1:1")],
    );
    let json = out.json();
    let warnings = json["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{json:#}");
    assert!(
        warnings[0]
            .as_str()
            .expect("string")
            .contains("APPLIANCE_LISTN"),
        "{json:#}"
    );
    assert!(out.stderr.contains("APPLIANCE_LISTN"), "{}", out.stderr);
}

#[test]
fn unknown_key_in_the_config_file_is_an_error_naming_it() {
    let sb = Sandbox::new();
    let file = sb.write("bad.toml", "listen = \"127.0.0.1:1\"\nlisten_port = 3000\n");
    let file = file.to_str().expect("utf-8");
    let out = sb.cli(&["--config", file, "check-config"]);
    let line = out.assert_one_line_error();
    assert!(line.contains("`listen_port`"), "{line}");
    assert!(line.contains(file), "{line}");

    let nested = sb.write("nested.toml", "[log]\nfiltre = \"debug\"\n");
    let nested = nested.to_str().expect("utf-8");
    let out = sb.cli(&["--config", nested, "check-config"]);
    let line = out.assert_one_line_error();
    assert!(line.contains("`log.filtre`"), "{line}");
    assert!(line.contains("filter"), "names the known keys: {line}");

    // The same file breaks every command, not only check-config.
    let out = sb.cli(&["--config", file, "user", "list"]);
    assert!(out.assert_failure().contains("`listen_port`"));
}

#[test]
fn invalid_value_in_the_environment_names_key_and_variable() {
    let sb = Sandbox::new();
    let out = sb.cli_env(&["check-config"], &[("APPLIANCE_LISTEN", "localhost:80")]);
    let line = out.assert_one_line_error();
    assert!(line.contains("`listen`"), "{line}");
    assert!(line.contains("APPLIANCE_LISTEN"), "{line}");
}

#[test]
fn a_file_that_is_not_a_database_fails_fast_and_says_so() {
    let sb = Sandbox::new();
    std::fs::write(&sb.db, "this is not SQLite\n".repeat(100)).expect("write");
    let db = sb.db.to_str().expect("utf-8");
    for args in [&["user", "list"][..], &["migrate"][..]] {
        // Nothing to wait for: the file can be read at once.
        let out = sb.cli_within(std::time::Duration::from_secs(5), args);
        let line = out.assert_one_line_error();
        assert!(line.contains(db), "{args:?}: {line}");
        assert!(line.contains("not a database"), "{args:?}: {line}");
    }
}

#[test]
fn a_directory_as_the_database_fails_fast() {
    let sb = Sandbox::new();
    std::fs::create_dir(&sb.db).expect("mkdir");
    let out = sb.cli_within(std::time::Duration::from_secs(5), &["user", "list"]);
    let line = out.assert_one_line_error();
    assert!(line.contains(sb.db.to_str().expect("utf-8")), "{line}");
}
