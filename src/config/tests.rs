//! Unit tests of the config module: the sample file against the key table,
//! precedence, file location, unknown keys, bad values, rendering.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::layers::load_with;
use super::schema::{Entry, Layered, Raw, Table, all_keys, known_keys, resolve};
use super::values::check_http_url;
use super::*;

const SAMPLE: &str = include_str!("../../config/appliance.toml");

/// In-memory filesystem for `load_with`.
fn fs(files: &[(&str, &str)]) -> impl Fn(&Path) -> io::Result<String> {
    let files: BTreeMap<PathBuf, String> = files
        .iter()
        .map(|(p, t)| (PathBuf::from(p), (*t).to_owned()))
        .collect();
    move |path: &Path| {
        files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn with_config(path: &str) -> Overrides {
    Overrides {
        config: Some(PathBuf::from(path)),
        ..Overrides::default()
    }
}

/// Loads with `file` as the --config file.
fn load_file(file: &str, env_pairs: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    load_with(
        &with_config("/c.toml"),
        &env(env_pairs),
        &fs(&[("/c.toml", file)]),
    )
}

fn uncommented_sample() -> String {
    SAMPLE
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest)
                if rest.split_once(" = ").is_some_and(|(k, _)| {
                    !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                }) =>
            {
                rest
            }
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn invalid(err: ConfigError) -> (String, Source, String) {
    match err {
        ConfigError::Invalid {
            key,
            origin,
            reason,
            ..
        } => (key, origin, reason),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

// --- sample file ----------------------------------------------------

#[test]
fn sample_parses_and_sets_nothing() {
    let raw: RawConfig = toml::from_str(SAMPLE).expect("sample parses");
    assert_eq!(
        raw,
        RawConfig::default(),
        "sample must leave every key commented out"
    );
}

#[test]
fn external_auth_tables_are_read_checked_and_shown_without_secrets() {
    let text = r#"
[[external_auth]]
id = "gh"
type = "github"
client_id = "abc"
client_secret = "s3cret"

[[external_auth]]
id = "gitea"
type = "gitea"
client_id = "def"
client_secret_file = "/gitea.secret"
auth_url = "https://git.home.lan/login/oauth/authorize"
token_url = "https://git.home.lan/login/oauth/access_token"
"#;
    let loaded = load_with(
        &with_config("/c.toml"),
        &env(&[]),
        &fs(&[("/c.toml", text), ("/gitea.secret", "from-file\n")]),
    )
    .expect("loads");
    let ext = &loaded.config.external_auth;
    assert_eq!(ext.len(), 2);
    assert_eq!(
        (ext[0].id.as_str(), ext[0].client_secret.as_str()),
        ("gh", "s3cret")
    );
    assert_eq!(ext[1].client_secret, "from-file");
    let shown = loaded.render_text() + &loaded.render_json().to_string();
    assert!(
        !shown.contains("s3cret") && !shown.contains("from-file"),
        "{shown}"
    );
    assert!(shown.contains("git.home.lan"), "{shown}");
    assert!(!format!("{:?}", loaded.config).contains("s3cret"));

    let bad = |text: &str| invalid(load_file(text, &[]).expect_err("invalid")).0;
    assert_eq!(
        bad("[[external_auth]]\nid = \"x\"\ntype = \"generic\"\nclient_id = \"c\"\n"),
        "external_auth[0].auth_url"
    );
    assert_eq!(
        bad(
            "[[external_auth]]\nid = \"a\"\ntype = \"github\"\nclient_id = \"c\"\n[[external_auth]]\nid = \"a\"\ntype = \"gitlab\"\nclient_id = \"c\"\n"
        ),
        "external_auth[1].id"
    );
    assert_eq!(
        bad(
            "[[external_auth]]\nid = \"a\"\ntype = \"github\"\nclient_id = \"c\"\nclient_secret_file = \"/missing\"\n"
        ),
        "external_auth[0].client_secret_file"
    );
    let err = load_file("[[external_auth]]\nid = \"a\"\ncolour = \"red\"\n", &[])
        .expect_err("unknown field");
    assert!(err.to_string().contains("colour"), "{err}");
}

#[test]
fn uncommented_sample_covers_every_key_with_its_default() {
    let text = uncommented_sample();
    let raw: RawConfig = toml::from_str(&text).expect("uncommented sample parses");
    let mut pairs = Vec::new();
    Config::flatten(&raw, "", &mut pairs);
    let set: BTreeSet<String> = pairs.into_iter().map(|(k, _)| k).collect();
    let all: BTreeSet<String> = known_keys().into_iter().collect();
    assert_eq!(set, all, "config/appliance.toml must show every key");

    // And the values shown are the real defaults.
    let loaded = load_file(&text, &[]).expect("uncommented sample loads");
    assert_eq!(loaded.config, Config::default());
}

#[test]
fn every_key_is_resolved_exactly_once() {
    let (_, entries) = resolve(&Layered::new()).expect("defaults resolve");
    let resolved: Vec<String> = entries.into_iter().map(|e| e.key).collect();
    let mut known = known_keys();
    let mut sorted = resolved.clone();
    sorted.sort();
    known.sort();
    assert_eq!(sorted, known);
    assert!(!known.iter().any(|k| env_var_name(k) == CONFIG_ENV));
    // check-config lists the keys in declaration order.
    let declared: Vec<String> = all_keys()
        .into_iter()
        .filter(|k| k.layered)
        .map(|k| k.name)
        .collect();
    assert_eq!(resolved, declared);
}

#[test]
fn keys_holding_a_secret_are_named_to_be_redacted() {
    for key in all_keys() {
        assert_eq!(
            key.secret,
            is_secret(&key.name),
            "`{}`: a key of type Secret must end in secret, token or password, and only those",
            key.name
        );
    }
}

#[test]
fn defaults_are_valid() {
    let c = Config::default();
    assert_eq!(c.db, PathBuf::from("appliance.db"));
    assert_eq!(
        c.listen,
        "127.0.0.1:3000".parse::<SocketAddr>().expect("addr")
    );
    assert_eq!(c.access_url, "http://127.0.0.1:3000");
    assert_eq!(
        c.log,
        LogConfig {
            filter: "info".into(),
            format: LogFormat::Text
        }
    );
    assert_eq!(
        c.database,
        DatabaseConfig {
            busy_timeout: Duration::from_secs(5),
            pool_size: 8,
            synchronous_full: false,
        }
    );
    assert_eq!(c.agent.inactive_disconnect_timeout, Duration::from_secs(30));
    assert_eq!(
        c.agent.fallback_troubleshooting_url,
        "https://coder.com/docs/admin/templates/troubleshooting"
    );
}

// --- precedence -----------------------------------------------------

#[test]
fn precedence_default_file_env_flag() {
    let none = fs(&[]);
    let l = load_with(&Overrides::default(), &env(&[]), &none).expect("defaults");
    assert_eq!(l.file, None);
    assert_eq!(l.source("listen"), Some(&Source::Default));
    assert_eq!(l.source("log.filter"), Some(&Source::Default));

    let file = "listen = \"127.0.0.1:4000\"\n[log]\nfilter = \"debug\"\n";
    let file_src = Source::File(PathBuf::from("/c.toml"));
    let l = load_file(file, &[]).expect("file");
    assert_eq!(l.file, Some(PathBuf::from("/c.toml")));
    assert_eq!(l.config.listen.port(), 4000);
    assert_eq!(l.config.log.filter, "debug");
    assert_eq!(l.source("listen"), Some(&file_src));
    assert_eq!(l.source("log.filter"), Some(&file_src));
    assert_eq!(l.source("db"), Some(&Source::Default));

    let vars = [
        ("APPLIANCE_LISTEN", "127.0.0.1:5000"),
        ("APPLIANCE_LOG__FILTER", "trace"),
    ];
    let l = load_file(file, &vars).expect("env");
    assert_eq!(l.config.listen.port(), 5000);
    assert_eq!(l.config.log.filter, "trace");
    assert_eq!(
        l.source("listen"),
        Some(&Source::Env("APPLIANCE_LISTEN".into()))
    );
    assert_eq!(
        l.source("log.filter"),
        Some(&Source::Env("APPLIANCE_LOG__FILTER".into()))
    );
    assert!(l.warnings.is_empty());

    let flags = Overrides {
        listen: Some("127.0.0.1:6000".parse().expect("addr")),
        db: Some(PathBuf::from("/var/lib/a.db")),
        ..with_config("/c.toml")
    };
    let l = load_with(&flags, &env(&vars), &fs(&[("/c.toml", file)])).expect("flags");
    assert_eq!(l.config.listen.port(), 6000);
    assert_eq!(l.config.db, PathBuf::from("/var/lib/a.db"));
    assert_eq!(l.config.log.filter, "trace");
    assert_eq!(l.source("listen"), Some(&Source::Flag("--listen")));
    assert_eq!(l.source("db"), Some(&Source::Flag("--db")));
    assert_eq!(l.source("nope"), None);
    // Derived from the effective listen address.
    assert_eq!(l.config.access_url, "http://127.0.0.1:6000");
    assert_eq!(l.source("access_url"), Some(&Source::Default));
}

#[test]
fn env_values_for_all_types() {
    let vars = [
        ("APPLIANCE_DB", "/x.db"),
        ("APPLIANCE_LOG__FORMAT", "json"),
        ("APPLIANCE_DATABASE__POOL_SIZE", "16"),
        ("APPLIANCE_DATABASE__BUSY_TIMEOUT", "1m"),
        ("APPLIANCE_AGENT__INACTIVE_DISCONNECT_TIMEOUT", "2s"),
        ("APPLIANCE_ACCESS_URL", "HTTPS://coder.example.com/"),
        ("PATH", "/bin"),
    ];
    let l = load_with(&Overrides::default(), &env(&vars), &fs(&[])).expect("loads");
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    assert_eq!(l.config.db, PathBuf::from("/x.db"));
    assert_eq!(l.config.log.format, LogFormat::Json);
    assert_eq!(l.config.database.pool_size, 16);
    assert_eq!(l.config.database.busy_timeout, Duration::from_secs(60));
    assert_eq!(
        l.config.agent.inactive_disconnect_timeout,
        Duration::from_secs(2)
    );
    assert_eq!(l.config.access_url, "https://coder.example.com");
}

#[test]
fn integer_seconds_in_file() {
    let l = load_file("[database]\nbusy_timeout = 10\npool_size = 2\n", &[]).expect("loads");
    assert_eq!(l.config.database.busy_timeout, Duration::from_secs(10));
    assert_eq!(l.config.database.pool_size, 2);
    let err = load_file("[database]\nbusy_timeout = -1\n", &[]).expect_err("negative");
    assert_eq!(invalid(err).0, "database.busy_timeout");
}

#[test]
fn access_url_derivation() {
    let load_listen = |addr: &str| {
        let o = Overrides {
            listen: Some(addr.parse().expect("addr")),
            ..Overrides::default()
        };
        load_with(&o, &env(&[]), &fs(&[])).expect("loads")
    };
    assert_eq!(
        load_listen("0.0.0.0:8080").config.access_url,
        "http://127.0.0.1:8080"
    );
    assert_eq!(
        load_listen("[::]:8080").config.access_url,
        "http://[::1]:8080"
    );
    assert_eq!(
        load_listen("10.1.2.3:80").config.access_url,
        "http://10.1.2.3:80"
    );
    let l = load_listen("0.0.0.0:8080");
    assert!(l.warnings.is_empty());
}

// --- config file location -------------------------------------------

#[test]
fn config_file_location() {
    let files = fs(&[
        ("/a.toml", "db = \"a.db\""),
        ("/b.toml", "db = \"b.db\""),
        (DEFAULT_CONFIG_PATH, "db = \"etc.db\""),
    ]);
    let e = env(&[("APPLIANCE_CONFIG", "/b.toml")]);
    // Flag beats env.
    let l = load_with(&with_config("/a.toml"), &e, &files).expect("flag");
    assert_eq!(l.config.db, PathBuf::from("a.db"));
    // Env beats the default location.
    let l = load_with(&Overrides::default(), &e, &files).expect("env");
    assert_eq!(l.file, Some(PathBuf::from("/b.toml")));
    // Default location is read if it exists...
    let l = load_with(&Overrides::default(), &env(&[]), &files).expect("default path");
    assert_eq!(l.config.db, PathBuf::from("etc.db"));
    assert_eq!(
        l.source("db"),
        Some(&Source::File(PathBuf::from(DEFAULT_CONFIG_PATH)))
    );
    // ...and silently skipped if not.
    let l = load_with(&Overrides::default(), &env(&[]), &fs(&[])).expect("no file");
    assert_eq!(l.file, None);

    // A named file must exist.
    let err = load_with(&with_config("/missing.toml"), &env(&[]), &files).expect_err("missing");
    assert!(matches!(err, ConfigError::FileNotFound { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("/missing.toml") && msg.contains("--config"),
        "{msg}"
    );
    let err = load_with(
        &Overrides::default(),
        &env(&[("APPLIANCE_CONFIG", "/nope.toml")]),
        &files,
    )
    .expect_err("missing");
    let msg = err.to_string();
    assert!(
        msg.contains("/nope.toml") && msg.contains("APPLIANCE_CONFIG"),
        "{msg}"
    );
    let err = load_with(
        &Overrides::default(),
        &env(&[("APPLIANCE_CONFIG", "")]),
        &files,
    )
    .expect_err("empty");
    assert!(matches!(err, ConfigError::EmptyConfigPath { .. }));

    // Other read errors are errors even for the default location.
    let denied =
        |_: &Path| -> io::Result<String> { Err(io::Error::from(io::ErrorKind::PermissionDenied)) };
    let err = load_with(&Overrides::default(), &env(&[]), &denied).expect_err("denied");
    assert!(matches!(err, ConfigError::ReadFile { .. }));
}

// --- unknown keys -----------------------------------------------------

#[test]
fn unknown_file_keys_are_errors_naming_key_and_file() {
    let err = load_file("[log]\nfilter = \"info\"\nbogus = 1\n", &[]).expect_err("unknown");
    assert_eq!(err.key(), Some("log.bogus"));
    let msg = err.to_string();
    assert!(
        msg.contains("`log.bogus`") && msg.contains("/c.toml"),
        "{msg}"
    );
    assert!(msg.contains("filter, format"), "{msg}");

    let err = load_file("lsiten = \"0.0.0.0:1\"\n", &[]).expect_err("unknown");
    assert_eq!(err.key(), Some("lsiten"));
    assert!(err.to_string().contains("[log]"), "{err}");
    assert!(
        err.to_string().ends_with(
            "(known top-level keys: access_url, [agent], [agent_binaries], [database], db, [derp], [http], [identity], \
             listen, [log], [logs], [metrics], ssh_keygen_algorithm)"
        ),
        "{err}"
    );
    let err = load_file("[identity]\nfoo = 1\n", &[]).expect_err("unknown");
    assert!(
        err.to_string().ends_with(
            "(known keys in [identity]: [identity.aws], [identity.azure], [identity.gcp], \
             rate_limit_per_minute)"
        ),
        "{err}"
    );

    let err = load_file("[nope]\nx = 1\n", &[]).expect_err("unknown table");
    assert_eq!(err.key(), Some("nope"));
    let err = load_file("\"log.filter\" = \"x\"\n", &[]).expect_err("quoted dotted key");
    assert_eq!(err.key(), Some("\"log.filter\""));
}

#[test]
fn file_type_and_syntax_errors_name_the_file() {
    let err = load_file("listen = 3000\n", &[]).expect_err("type");
    assert!(matches!(err, ConfigError::Parse { .. }));
    let msg = err.to_string();
    assert!(msg.contains("/c.toml") && msg.contains("listen"), "{msg}");
    let err = load_file("log = \"x\"\n", &[]).expect_err("table type");
    assert!(err.to_string().contains("/c.toml"), "{err}");
    let err = load_file("log.filter.x = 1\n", &[]).expect_err("too deep");
    assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
    let err = load_file("db = \n", &[]).expect_err("syntax");
    assert!(err.to_string().contains("/c.toml"), "{err}");
}

#[test]
fn unknown_env_vars_are_warnings() {
    let vars = [
        ("APPLIANCE_BOGUS", "1"),
        ("APPLIANCE_LOG_FILTER", "debug"),
        ("appliance_db", "x"),
        ("APPLIANCE_CONFIG", "/c.toml"),
        ("HOME", "/root"),
    ];
    let l = load_with(&Overrides::default(), &env(&vars), &fs(&[("/c.toml", "")])).expect("loads");
    assert_eq!(l.warnings.len(), 2, "{:?}", l.warnings);
    assert!(l.warnings.iter().any(|w| w.contains("APPLIANCE_BOGUS")));
    assert!(
        l.warnings
            .iter()
            .any(|w| w.contains("did you mean APPLIANCE_LOG__FILTER"))
    );
    assert_eq!(l.config.log.filter, "info");
}

// --- bad values -------------------------------------------------------

#[test]
fn bad_values_name_key_and_source() {
    let file = Source::File(PathBuf::from("/c.toml"));
    let cases: Vec<(Result<Loaded, ConfigError>, &str, Source)> = vec![
        (
            load_file("", &[("APPLIANCE_LISTEN", "localhost:3000")]),
            "listen",
            Source::Env("APPLIANCE_LISTEN".into()),
        ),
        (
            load_file("listen = \"1.2.3.4\"", &[]),
            "listen",
            file.clone(),
        ),
        (
            load_file("[database]\npool_size = 0", &[]),
            "database.pool_size",
            file.clone(),
        ),
        (
            load_file("[database]\npool_size = 65", &[]),
            "database.pool_size",
            file.clone(),
        ),
        (
            load_file("", &[("APPLIANCE_DATABASE__POOL_SIZE", "lots")]),
            "database.pool_size",
            Source::Env("APPLIANCE_DATABASE__POOL_SIZE".into()),
        ),
        (
            load_file("[database]\nbusy_timeout = \"abc\"", &[]),
            "database.busy_timeout",
            file.clone(),
        ),
        (
            load_with(
                &Overrides {
                    access_url: Some("ftp://x".into()),
                    ..Overrides::default()
                },
                &env(&[]),
                &fs(&[]),
            ),
            "access_url",
            Source::Flag("--access-url"),
        ),
        (
            load_file("access_url = \"http://\"", &[]),
            "access_url",
            file.clone(),
        ),
        (
            load_file("access_url = \"https://x/?a=b\"", &[]),
            "access_url",
            file.clone(),
        ),
        (
            load_file("[agent]\ninactive_disconnect_timeout = \"1s\"", &[]),
            "agent.inactive_disconnect_timeout",
            file.clone(),
        ),
        (
            load_file("[agent]\nfallback_troubleshooting_url = \"docs\"", &[]),
            "agent.fallback_troubleshooting_url",
            file.clone(),
        ),
        (
            load_file("[log]\nfilter = \" \"", &[]),
            "log.filter",
            file.clone(),
        ),
        (
            load_file("[log]\nformat = \"xml\"", &[]),
            "log.format",
            file.clone(),
        ),
        (load_file("db = \"\"", &[]), "db", file.clone()),
    ];
    for (result, key, source) in cases {
        let err = result.expect_err(key);
        let msg = err.to_string();
        let (k, origin, _) = invalid(err);
        assert_eq!((k.as_str(), &origin), (key, &source), "{msg}");
        assert!(msg.contains(&format!("`{key}`")), "{msg}");
        assert!(msg.contains(&source.to_string()), "{msg}");
    }
}

#[test]
fn error_message_shape() {
    let err = load_file("[agent]\ninactive_disconnect_timeout = \"1s\"", &[]).expect_err("bad");
    assert_eq!(
        err.to_string(),
        "invalid value \"1s\" for `agent.inactive_disconnect_timeout` (from config file /c.toml): must be at least 2s"
    );
}

// --- urls, durations, redaction -------------------------------------

#[test]
fn url_checks() {
    let ok = |s: &str| check_http_url(s, true);
    assert_eq!(
        ok("http://a.example:8080/").as_deref(),
        Ok("http://a.example:8080")
    );
    assert_eq!(ok("https://a/b///").as_deref(), Ok("https://a/b"));
    assert_eq!(ok("http://[::1]:3000").as_deref(), Ok("http://[::1]:3000"));
    assert_eq!(
        check_http_url("https://a/x?y=/", false).as_deref(),
        Ok("https://a/x?y=/")
    );
    for bad in [
        "ftp://x",
        "x",
        "http://",
        "http://:80",
        "http://a:",
        "http://a:99999",
        "http://u@a",
        "http://[zz]",
        "http://a b",
        "https://a#f",
    ] {
        assert!(ok(bad).is_err(), "{bad}");
    }
}

#[test]
fn durations() {
    let secs = |s: &str| parse_duration(s).map(|d| d.as_secs());
    assert_eq!(secs("30s"), Ok(30));
    assert_eq!(secs("5m"), Ok(300));
    assert_eq!(secs("1h"), Ok(3600));
    assert_eq!(secs("7d"), Ok(604_800));
    assert_eq!(secs("30d"), Ok(2_592_000));
    assert_eq!(secs("1h30m"), Ok(5400));
    assert_eq!(secs("1d2h3m4s"), Ok(93_784));
    assert_eq!(secs(" 0s "), Ok(0));
    for bad in [
        "",
        "abc",
        "30",
        "5x",
        "1.5h",
        "-5s",
        "5 s",
        "s",
        "1s1h",
        "1m1m",
        "5ms",
        "99999999999999999999s",
        "999999999999999d",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
    }
    assert!(
        parse_duration("30")
            .expect_err("unit")
            .contains("missing unit")
    );
    assert!(
        parse_duration("5x")
            .expect_err("unit")
            .contains("unknown unit")
    );
    for s in ["0s", "30s", "5m", "1m30s", "1h", "1d1s", "7d"] {
        assert_eq!(format_duration(parse_duration(s).expect("parses")), s);
    }
}

#[test]
fn redaction() {
    assert!(is_secret("identity.client_secret"));
    assert!(is_secret("metrics.token"));
    assert!(is_secret("password"));
    assert!(!is_secret("token.path"));
    assert!(!is_secret("log.filter"));

    let entry = |key: &str, value: &str| Entry {
        key: key.to_owned(),
        value: value.into(),
        source: Source::Env(env_var_name(key)),
    };
    let loaded = Loaded {
        config: Config::default(),
        file: None,
        warnings: vec![],
        entries: vec![
            entry("identity.client_secret", "hunter2"),
            entry("log.filter", "info"),
        ],
    };
    let text = loaded.render_text();
    assert!(
        !text.contains("hunter2") && text.contains(REDACTED),
        "{text}"
    );
    let json = loaded.render_json();
    assert_eq!(json["keys"]["identity.client_secret"]["value"], REDACTED);
    assert_eq!(
        json["keys"]["identity.client_secret"]["source"],
        "env:APPLIANCE_IDENTITY__CLIENT_SECRET"
    );
    assert_eq!(json["keys"]["log.filter"]["value"], "info");
    assert_eq!(Raw::Str("hunter2".into()).shown("a.token"), REDACTED);
}

#[test]
fn rendering() {
    let flags = Overrides {
        db: Some(PathBuf::from("/d.db")),
        ..with_config("/c.toml")
    };
    let vars = env(&[("APPLIANCE_LOG__FORMAT", "json"), ("APPLIANCE_X", "1")]);
    let l = load_with(
        &flags,
        &vars,
        &fs(&[("/c.toml", "[database]\npool_size = 4\n")]),
    )
    .expect("loads");

    let json = l.render_json();
    assert_eq!(json["file"], "/c.toml");
    assert_eq!(
        json["keys"]["db"],
        serde_json::json!({"value": "/d.db", "source": "flag:--db"})
    );
    assert_eq!(
        json["keys"]["database.pool_size"],
        serde_json::json!({"value": 4, "source": "file:/c.toml"})
    );
    assert_eq!(
        json["keys"]["log.format"]["source"],
        "env:APPLIANCE_LOG__FORMAT"
    );
    assert_eq!(
        json["keys"]["database.busy_timeout"],
        serde_json::json!({"value": "5s", "source": "default"})
    );
    assert_eq!(
        json["keys"].as_object().map(|m| m.len()),
        Some(known_keys().len())
    );
    assert_eq!(json["warnings"].as_array().map(Vec::len), Some(1));

    let text = l.render_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "# config file: /c.toml");
    assert_eq!(lines.len(), 1 + known_keys().len() + 1, "{text}");
    let key_lines = &lines[1..lines.len() - 1];
    let eq_col = key_lines[0].find(" = ");
    let hash_col = key_lines[0].find("  # ");
    for line in key_lines {
        assert_eq!(line.find(" = "), eq_col, "{text}");
        assert_eq!(line.find("  # "), hash_col, "{text}");
    }
    assert!(text.contains("database.pool_size"), "{text}");
    assert!(text.contains("\"/d.db\""), "{text}");
    assert!(text.contains("# flag:--db"), "{text}");
    assert!(lines[lines.len() - 1].starts_with("# warning: "), "{text}");
}
