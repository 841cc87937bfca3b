//! Unit tests for `manifest`: parsing, validation and where each problem is reported.

use super::*;

fn problems(file: &str, text: &str) -> Vec<Problem> {
    parse(file, text).expect_err("must be invalid").problems
}

fn find<'a>(ps: &'a [Problem], path: &str) -> &'a Problem {
    ps.iter()
        .find(|p| p.path == path)
        .unwrap_or_else(|| panic!("no problem at {path}: {ps:#?}"))
}

const MINIMAL: &str = r#"
name = "dev"
owner = "alice"
[[resources]]
name = "box"
type = "vm"
  [[resources.agents]]
  name = "main"
"#;

#[test]
fn minimal_manifest_gets_upstream_defaults() {
    let ws = parse("m.toml", MINIMAL).expect("valid");
    let a = &ws.resources[0].agents[0];
    assert_eq!(a.auth, AgentAuth::Token);
    assert_eq!(a.operating_system, "linux");
    assert_eq!(a.architecture, "amd64");
    assert_eq!(a.connection_timeout_seconds, 120);
    assert_eq!(a.display_apps, DISPLAY_APPS.map(String::from).to_vec());
    assert_eq!(a.api_key_scope, "all");
    assert!(a.subsystems.is_empty());
    assert_eq!(ws.agent_count(), 1);
}

#[test]
fn the_shipped_examples_are_valid() {
    let single = parse(
        "single-agent.toml",
        include_str!("../../config/examples/single-agent.toml"),
    )
    .expect("single");
    assert_eq!(single.agent_count(), 1);
    let multi = parse(
        "aws-multi-agent.toml",
        include_str!("../../config/examples/aws-multi-agent.toml"),
    )
    .expect("multi");
    let names: Vec<&str> = multi.resources[0]
        .agents
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names, ["main", "dev"]);
    assert!(
        multi.resources[0]
            .agents
            .iter()
            .all(|a| a.auth == AgentAuth::AwsInstanceIdentity)
    );
    assert!(multi.resources[0].instance_id.is_some());
}

#[test]
fn json_manifests_are_accepted() {
    let json = r#"{"name":"dev","owner":"alice","resources":[{"name":"box","type":"vm","agents":[{"name":"main","apps":[{"slug":"web","url":"http://x"}]}]}]}"#;
    let ws = parse("m.json", json).expect("valid json");
    assert_eq!(ws.resources[0].agents[0].apps[0].slug, "web");
    let err = parse("m.json", "{\"name\": 3}").expect_err("type error");
    assert!(err.problems[0].line.is_some());
}

#[test]
fn errors_name_file_line_path_and_what_is_allowed() {
    let text = r#"name = "dev"
owner = "alice"
[[resources]]
name = "box"
type = "vm"
  [[resources.agents]]
  name = "main"
  auth = "password"
  [[resources.agents]]
  name = "main"
    [[resources.agents.apps]]
    slug = "Bad_Slug"
"#;
    let err = parse("ws.toml", text).expect_err("invalid");
    let ps = &err.problems;
    let auth = find(ps, "resources[0].agents[0].auth");
    assert_eq!(auth.line, Some(8));
    assert!(
        auth.message.contains("\"token\"") && auth.message.contains("\"aws-instance-identity\""),
        "{}",
        auth.message
    );
    let dup = find(ps, "resources[0].agents[1].name");
    assert_eq!(dup.line, Some(10));
    assert!(dup.message.contains("already used"), "{}", dup.message);
    let slug = find(ps, "resources[0].agents[1].apps[0].slug");
    assert_eq!(slug.line, Some(12));
    let shown = err.to_string();
    assert!(
        shown.contains("ws.toml:8: resources[0].agents[0].auth:"),
        "{shown}"
    );
}

#[test]
fn unknown_keys_and_syntax_errors_have_lines() {
    let ps = problems(
        "ws.toml",
        "name = \"dev\"\nowner = \"a\"\ncolour = \"red\"\n",
    );
    assert_eq!(ps[0].line, Some(3));
    assert!(ps[0].message.contains("colour"), "{}", ps[0].message);
    let ps = problems("ws.toml", "name = \"dev\"\nowner = \n");
    assert_eq!(ps[0].line, Some(2));
}

#[test]
fn instance_identity_needs_an_instance_id() {
    let text = MINIMAL.replace("name = \"main\"", "name = \"main\"\n  auth = \"gcp\"");
    let ps = problems("m.toml", &text);
    assert!(
        find(&ps, "resources[0].agents[0].auth")
            .message
            .contains("not allowed")
    );
    let text = MINIMAL.replace(
        "name = \"main\"",
        "name = \"main\"\n  auth = \"google-instance-identity\"",
    );
    let ps = problems("m.toml", &text);
    assert!(
        find(&ps, "resources[0].agents[0].auth")
            .message
            .contains("instance_id")
    );
    let ok = text.replace("type = \"vm\"", "type = \"vm\"\ninstance_id = \"123\"");
    assert!(parse("m.toml", &ok).is_ok());
    let blank = text.replace("type = \"vm\"", "type = \"vm\"\ninstance_id = \"  \"");
    let ps = problems("m.toml", &blank);
    find(&ps, "resources[0].instance_id");
}

#[test]
fn names_slugs_and_enums_are_checked() {
    let cases: &[(&str, &str, &str)] = &[
        ("name = \"dev\"", "name = \"dev_1\"", "name"),
        ("owner = \"alice\"", "", "owner"),
        (
            "name = \"main\"",
            "name = \"-main\"",
            "resources[0].agents[0].name",
        ),
        (
            "name = \"main\"",
            "name = \"main\"\n  os = \"plan9\"",
            "resources[0].agents[0].os",
        ),
        (
            "name = \"main\"",
            "name = \"main\"\n  arch = \"x86 64\"",
            "resources[0].agents[0].arch",
        ),
        (
            "name = \"main\"",
            "name = \"main\"\n  display_apps = [\"vscode\", \"emacs\"]",
            "resources[0].agents[0].display_apps",
        ),
        (
            "name = \"main\"",
            "name = \"main\"\n  display_apps = [\"vscode\", \"vscode\"]",
            "resources[0].agents[0].display_apps",
        ),
        (
            "name = \"main\"",
            "name = \"main\"\n  subsystems = [\"none\"]",
            "resources[0].agents[0].subsystems",
        ),
        (
            "name = \"main\"",
            "name = \"main\"\n  api_key_scope = \"everything\"",
            "resources[0].agents[0].api_key_scope",
        ),
        (
            "name = \"main\"",
            "name = \"main\"\n  connection_timeout_seconds = -1",
            "resources[0].agents[0].connection_timeout_seconds",
        ),
        (
            "name = \"main\"",
            "name = \"main\"\n  env = { \"1BAD\" = \"x\" }",
            "resources[0].agents[0].env",
        ),
    ];
    for (from, to, path) in cases {
        let text = MINIMAL.replacen(from, to, 1);
        let ps = problems("m.toml", &text);
        find(&ps, path);
    }
}

#[test]
fn apps_scripts_and_children_are_checked() {
    let base = MINIMAL.to_string();
    let app = |body: &str| format!("{base}    [[resources.agents.apps]]\n{body}\n");
    find(
        &problems(
            "m.toml",
            &app("    slug = \"web\"\n    url = \"http://x\"\n    command = \"ls\""),
        ),
        "resources[0].agents[0].apps[0].command",
    );
    find(
        &problems("m.toml", &app("    slug = \"web\"\n    subdomain = true")),
        "resources[0].agents[0].apps[0].subdomain",
    );
    find(
        &problems("m.toml", &app("    slug = \"web\"\n    share = \"world\"")),
        "resources[0].agents[0].apps[0].share",
    );
    find(
        &problems(
            "m.toml",
            &app("    slug = \"web\"\n    open_in = \"window\""),
        ),
        "resources[0].agents[0].apps[0].open_in",
    );
    find(
        &problems(
            "m.toml",
            &app(
                "    slug = \"web\"\n    healthcheck = { url = \"\", interval = 0, threshold = 1 }",
            ),
        ),
        "resources[0].agents[0].apps[0].healthcheck.interval",
    );
    find(
        &problems("m.toml", &app("    display_name = \"x\"")),
        "resources[0].agents[0].apps[0].slug",
    );
    let dup = format!(
        "{base}    [[resources.agents.apps]]\n    slug = \"a\"\n    [[resources.agents.apps]]\n    slug = \"a\"\n"
    );
    find(
        &problems("m.toml", &dup),
        "resources[0].agents[0].apps[1].slug",
    );
    let script = format!(
        "{base}    [[resources.agents.scripts]]\n    display_name = \"s\"\n    script = \"x\"\n    cron = \"* * *\"\n"
    );
    find(
        &problems("m.toml", &script),
        "resources[0].agents[0].scripts[0].cron",
    );
    let empty_script =
        format!("{base}    [[resources.agents.scripts]]\n    display_name = \"s\"\n");
    find(
        &problems("m.toml", &empty_script),
        "resources[0].agents[0].scripts[0].script",
    );
    let grandchild = format!(
        "{base}    [[resources.agents.children]]\n    name = \"c\"\n      [[resources.agents.children.children]]\n      name = \"g\"\n"
    );
    find(
        &problems("m.toml", &grandchild),
        "resources[0].agents[0].children[0].children",
    );
    let clash = format!("{base}    [[resources.agents.children]]\n    name = \"main\"\n");
    find(
        &problems("m.toml", &clash),
        "resources[0].agents[0].children[0].name",
    );
}

#[test]
fn duplicate_resources_are_refused() {
    let text = format!("{MINIMAL}[[resources]]\nname = \"box\"\ntype = \"vm\"\n");
    find(&problems("m.toml", &text), "resources[1].name");
}

#[test]
fn lengths_and_script_counts_are_bounded_as_coders_columns() {
    let app = |field: &str, value: &str| {
        format!(
            "{MINIMAL}\n    [[resources.agents.apps]]\n    slug = \"a\"\n    {field} = {value:?}\n"
        )
    };
    let cases = [
        ("display_name", MAX_APP_DISPLAY_NAME_CHARS),
        ("icon", MAX_APP_ICON_CHARS),
        ("tooltip", MAX_APP_TOOLTIP_CHARS),
        ("url", MAX_APP_COMMAND_CHARS),
        ("command", MAX_APP_COMMAND_CHARS),
    ];
    for (field, max) in cases {
        // Characters, not bytes, as varchar(n) counts.
        parse("m.toml", &app(field, &"é".repeat(max))).expect("at the bound");
        let ps = problems("m.toml", &app(field, &"x".repeat(max + 1)));
        let p = find(&ps, &format!("resources[0].agents[0].apps[0].{field}"));
        assert_eq!(
            p.message,
            format!("is {} characters long; at most {max} are allowed", max + 1)
        );
    }
    let agent = |field: &str, value: &str| format!("{MINIMAL}  {field} = {value:?}\n");
    find(
        &problems("m.toml", &agent("directory", &"d".repeat(4097))),
        "resources[0].agents[0].directory",
    );
    find(
        &problems("m.toml", &agent("arch", &"a".repeat(65))),
        "resources[0].agents[0].arch",
    );
    let script = |name: &str, icon: &str| {
        format!(
            "\n    [[resources.agents.scripts]]\n    display_name = {name:?}\n    icon = {icon:?}\n    script = \"true\"\n"
        )
    };
    let ps = problems(
        "m.toml",
        &format!("{MINIMAL}{}", script(&"n".repeat(128), &"i".repeat(2049))),
    );
    find(&ps, "resources[0].agents[0].scripts[0].display_name");
    find(&ps, "resources[0].agents[0].scripts[0].icon");
    let many: String = (0..MAX_SCRIPTS_PER_AGENT)
        .map(|i| script(&format!("s{i}"), ""))
        .collect();
    parse("m.toml", &format!("{MINIMAL}{many}")).expect("at the bound");
    let ps = problems(
        "m.toml",
        &format!("{MINIMAL}{many}{}", script("one more", "")),
    );
    assert_eq!(
        find(&ps, "resources[0].agents[0].scripts").message,
        format!(
            "{} scripts; an agent has at most {MAX_SCRIPTS_PER_AGENT}",
            MAX_SCRIPTS_PER_AGENT + 1
        )
    );
}

#[test]
fn agent_metadata_is_parsed_and_checked() {
    let item = |body: &str| format!("{MINIMAL}    [[resources.agents.metadata]]\n{body}\n");
    let ws = parse(
        "m.toml",
        &item("    key = \"cpu\"\n    display_name = \"CPU\"\n    script = \"uptime\"\n    interval = 10\n    timeout = 3"),
    )
    .expect("valid");
    assert_eq!(
        ws.resources[0].agents[0].metadata,
        vec![Metadata {
            key: "cpu".into(),
            display_name: "CPU".into(),
            script: "uptime".into(),
            interval: 10,
            timeout: 3,
        }]
    );
    assert!(
        parse("m.toml", MINIMAL).expect("valid").resources[0].agents[0]
            .metadata
            .is_empty()
    );
    let path = "resources[0].agents[0].metadata[0]";
    find(
        &problems("m.toml", &item("    script = \"x\"\n    interval = 1")),
        &format!("{path}.key"),
    );
    find(
        &problems(
            "m.toml",
            &item("    key = \"a b\"\n    script = \"x\"\n    interval = 1"),
        ),
        &format!("{path}.key"),
    );
    find(
        &problems("m.toml", &item("    key = \"k\"\n    interval = 1")),
        &format!("{path}.script"),
    );
    find(
        &problems("m.toml", &item("    key = \"k\"\n    script = \"x\"")),
        &format!("{path}.interval"),
    );
    find(
        &problems(
            "m.toml",
            &item("    key = \"k\"\n    script = \"x\"\n    interval = 1\n    timeout = -1"),
        ),
        &format!("{path}.timeout"),
    );
    let ps = problems(
        "m.toml",
        &item("    key = \"k\"\n    script = \"x\"\n    interval = 1\n    color = \"red\""),
    );
    assert!(ps.iter().any(|p| p.message.contains("color")), "{ps:#?}");
    let twice = format!(
        "{}    [[resources.agents.metadata]]\n    key = \"k\"\n    script = \"y\"\n    interval = 2\n",
        item("    key = \"k\"\n    script = \"x\"\n    interval = 1")
    );
    find(
        &problems("m.toml", &twice),
        "resources[0].agents[0].metadata[1].key",
    );
    let json = r#"{"name":"dev","owner":"alice","resources":[{"name":"box","type":"vm","agents":[{"name":"main","metadata":[{"key":"m","script":"s","interval":5}]}]}]}"#;
    let ws = parse("m.json", json).expect("valid json");
    assert_eq!(ws.resources[0].agents[0].metadata[0].interval, 5);
}
