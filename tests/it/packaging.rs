//! What the packaging ships beside the binary: the man page and completions
//! (generated from the command definition) and the packaged config file.

use crate::harness::Sandbox;

#[test]
fn generate_writes_man_page_and_completions() {
    let sandbox = Sandbox::new();
    let dir = sandbox.path().join("out");
    let dir_str = dir.to_str().unwrap();
    let out = sandbox.cli_raw(&["generate", "man", dir_str], &[]);
    out.assert_success();
    let page = std::fs::read_to_string(dir.join("appliance.1")).unwrap();
    assert!(page.contains(".TH appliance 1 "), "{page}");
    for sub in ["serve", "healthcheck", "workspace", "check\\-config"] {
        assert!(page.contains(sub), "man page lacks {sub}");
    }
    // One page per subcommand, with its flags.
    let page = std::fs::read_to_string(dir.join("appliance-healthcheck.1")).unwrap();
    assert!(page.contains("\\-\\-url"), "{page}");
    let page = std::fs::read_to_string(dir.join("appliance-workspace-apply.1")).unwrap();
    assert!(page.contains("FILE"), "{page}");
    // The packaging-only command is not advertised.
    assert!(!dir.join("appliance-generate.1").exists());
    let listed: Vec<&str> = out.stdout.lines().collect();
    assert!(listed.len() > 10, "{listed:?}");
    for path in &listed {
        assert!(
            path.ends_with(".1") && std::path::Path::new(path).is_file(),
            "{path}"
        );
        let text = std::fs::read_to_string(path).unwrap();
        // As a word: `--regenerate` (user gitsshkey) is another matter.
        assert!(
            !text
                .split(|c: char| !c.is_ascii_alphanumeric())
                .any(|w| w == "generate"),
            "{path} mentions the hidden command"
        );
    }

    let out = sandbox.cli_raw(&["generate", "completions", dir_str], &[]);
    out.assert_success();
    for (file, needle) in [
        ("appliance.bash", "complete -F _appliance"),
        ("_appliance", "#compdef appliance"),
        ("appliance.fish", "complete -c appliance"),
    ] {
        let text =
            std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(text.contains(needle), "{file} lacks {needle:?}");
        assert!(
            text.contains("healthcheck"),
            "{file} lacks the healthcheck command"
        );
    }
    assert_eq!(out.stdout.lines().count(), 3, "{}", out.stdout);
}

/// `packaging/appliance.toml` (installed as /etc/appliance/appliance.toml) is
/// `config/appliance.toml` with the database under /var/lib/appliance, and loads.
#[test]
fn packaged_config_is_the_documented_one_with_the_state_directory() {
    let root = env!("CARGO_MANIFEST_DIR");
    let documented = std::fs::read_to_string(format!("{root}/config/appliance.toml")).unwrap();
    let packaged = std::fs::read_to_string(format!("{root}/packaging/appliance.toml")).unwrap();
    let expected = documented.replacen(
        "# db = \"appliance.db\"\n",
        "# The systemd unit passes --db /var/lib/appliance/appliance.db; this line\n\
         # points admin commands (`sudo -u appliance appliance ...`) at the same file.\n\
         db = \"/var/lib/appliance/appliance.db\"\n",
        1,
    );
    assert_ne!(
        expected, documented,
        "config/appliance.toml has no `# db = ` line"
    );
    assert_eq!(
        packaged, expected,
        "packaging/appliance.toml is out of date: regenerate it from config/appliance.toml"
    );

    let sandbox = Sandbox::new();
    let path = format!("{root}/packaging/appliance.toml");
    let v = sandbox
        .cli_raw(
            &["check-config", "--config", &path, "--output", "json"],
            &[],
        )
        .json();
    let text = v.to_string();
    assert!(text.contains("/var/lib/appliance/appliance.db"), "{v:#}");
}
