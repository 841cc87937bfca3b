//! Unit tests for `external_auth`: provider defaults, template-scoped selection, answers.

use super::*;

fn spec(id: &str, kind: &str) -> ProviderSpec {
    ProviderSpec {
        id: id.into(),
        kind: kind.into(),
        client_id: "client".into(),
        client_secret: "secret".into(),
        ..ProviderSpec::default()
    }
}

fn providers(list: &[(&str, &str)]) -> Vec<Provider> {
    list.iter()
        .map(|(id, kind)| provider(&spec(id, kind)).expect("valid provider"))
        .collect()
}

fn ids(declared: &[&str]) -> Vec<String> {
    declared.iter().map(|s| s.to_string()).collect()
}

const GH: &str = "https://github.com/coder/coder.git";

#[test]
fn a_declared_provider_wins_regardless_of_config_order() {
    let ps = providers(&[("gh-a", "github"), ("gh-b", "github")]);
    assert_eq!(select(&ps, &ids(&["gh-a"]), None, GH).unwrap().id, "gh-a");
    let ps = providers(&[("gh-b", "github"), ("gh-a", "github")]);
    assert_eq!(select(&ps, &ids(&["gh-a"]), None, GH).unwrap().id, "gh-a");
}

#[test]
fn without_declarations_the_last_match_in_config_order_wins() {
    let ps = providers(&[("gh-a", "github"), ("gh-b", "github")]);
    assert_eq!(select(&ps, &[], None, GH).unwrap().id, "gh-b");
}

#[test]
fn an_unrelated_host_still_resolves_through_the_full_scan() {
    let ps = providers(&[("gh-a", "github"), ("lab", "gitlab")]);
    let got = select(&ps, &ids(&["gh-a"]), None, "https://gitlab.com/a/b.git").unwrap();
    assert_eq!(got.id, "lab");
}

#[test]
fn several_declared_matches_are_ambiguous() {
    let ps = providers(&[("gh-a", "github"), ("gh-b", "github")]);
    let err = select(&ps, &ids(&["gh-a", "gh-b"]), None, GH).unwrap_err();
    assert_eq!(
        err.message,
        format!(
            "Multiple external auth providers declared by this workspace's template match \"{GH}\": gh-a, gh-b."
        )
    );
    assert!(
        err.detail.contains("coder external-auth access-token gh-a"),
        "{}",
        err.detail
    );
}

#[test]
fn a_missing_declared_provider_does_not_fall_back() {
    let ps = providers(&[("gh-b", "github")]);
    let err = select(&ps, &ids(&["gone"]), None, GH).unwrap_err();
    assert_eq!(
        err.message,
        "This workspace's template declares external auth provider(s) that this deployment no longer configures: gone."
    );
}

#[test]
fn a_missing_declared_provider_does_not_block_another_declared_match() {
    let ps = providers(&[("gh-a", "github")]);
    assert_eq!(
        select(&ps, &ids(&["gone", "gh-a"]), None, GH).unwrap().id,
        "gh-a"
    );
}

#[test]
fn by_id_and_nothing_found() {
    let ps = providers(&[("gh-a", "github")]);
    assert_eq!(select(&ps, &[], Some("gh-a"), "").unwrap().id, "gh-a");
    let err = select(&ps, &[], Some("nope"), "").unwrap_err();
    assert!(err.message.contains("\"nope\""), "{}", err.message);
    let err = select(&ps, &[], None, "https://example.com/x.git").unwrap_err();
    assert_eq!(
        err.message,
        "No matching external auth provider found in Coder for the url \"https://example.com/x.git\"."
    );
    assert!(
        err.detail
            .starts_with("The configured external auth provider have regex filters")
    );
    assert!(err.detail.contains("gh-a="), "{}", err.detail);
    let err = select(&[], &[], None, GH).unwrap_err();
    assert_eq!(err.detail, "External auth provider not found.");
}

#[test]
fn self_hosted_instances_get_a_regex_for_their_host() {
    let mut s = spec("gitea", "gitea");
    s.auth_url = Some("https://git.home.lan:3000/login/oauth/authorize".into());
    s.token_url = Some("https://git.home.lan:3000/login/oauth/access_token".into());
    let p = provider(&s).expect("valid");
    assert!(p.matches("https://git.home.lan:3000/me/dotfiles.git"));
    assert!(p.matches("git.home.lan:3000/me/dotfiles"));
    assert!(!p.matches("https://gitea.com/me/dotfiles.git"));
    assert!(
        !p.matches("https://git.home.lanX3000/x"),
        "dots and colons are literal"
    );
    assert_eq!(
        p.validate_url, "",
        "the public validate URL is not used for another host"
    );
    assert_eq!(p.display_name, "Gitea");

    let public = provider(&spec("gh", "github")).unwrap();
    assert_eq!(public.auth_url, "https://github.com/login/oauth/authorize");
    assert_eq!(public.validate_url, "https://api.github.com/user");
    assert_eq!(public.scopes, ["repo", "workflow"]);
}

#[test]
fn specs_are_checked_field_by_field() {
    let err = provider(&spec("bb", "bitbucket-server")).unwrap_err();
    assert_eq!(err.0, "auth_url");
    let err = provider(&spec("x", "svn")).unwrap_err();
    assert_eq!(err.0, "type");
    assert!(err.1.contains("\"gitea\""), "{}", err.1);
    let mut s = spec("gh", "github");
    s.regex = Some("(".into());
    assert_eq!(provider(&s).unwrap_err().0, "regex");
    let mut s = spec("gh", "github");
    s.client_id = String::new();
    assert_eq!(provider(&s).unwrap_err().0, "client_id");
    assert_eq!(provider(&spec("has space", "github")).unwrap_err().0, "id");
    let mut s = spec("gen", "generic");
    s.auth_url = Some("ftp://x/auth".into());
    s.token_url = Some("https://x/token".into());
    assert_eq!(provider(&s).unwrap_err().0, "auth_url");
}

#[test]
fn answers_map_credentials_per_type_and_times_to_utc() {
    let at = time::macros::datetime!(2026-11-29 12:00:00 +02:00);
    let gitlab = token_answer(ProviderType::Gitlab, "tok", None, Some(at));
    let v = serde_json::to_value(&gitlab).unwrap();
    assert_eq!(v["username"], "oauth2");
    assert_eq!(v["password"], "tok");
    assert_eq!(v["type"], "gitlab");
    assert_eq!(v["expires_at"], "2026-11-29T10:00:00Z");
    assert_eq!(v["token_extra"], serde_json::Value::Null);
    assert_eq!(v["url"], "");
    for kind in [ProviderType::BitbucketCloud, ProviderType::BitbucketServer] {
        let v = serde_json::to_value(token_answer(kind, "tok", None, None)).unwrap();
        assert_eq!(
            (v["username"].as_str(), v["password"].as_str()),
            (Some("x-token-auth"), Some("tok"))
        );
        assert_eq!(v["expires_at"], "0001-01-01T00:00:00Z");
    }
    let v = serde_json::to_value(token_answer(
        ProviderType::Github,
        "tok",
        Some(serde_json::json!({"scope": "repo"})),
        None,
    ))
    .unwrap();
    assert_eq!(
        (v["username"].as_str(), v["password"].as_str()),
        (Some("tok"), Some(""))
    );
    assert_eq!(v["token_extra"]["scope"], "repo");
    let v = serde_json::to_value(link_answer("http://x/external-auth/gh".into())).unwrap();
    assert_eq!(v["url"], "http://x/external-auth/gh");
    assert_eq!(v["access_token"], "");
    assert_eq!(v["type"], "");
    assert_eq!(v["expires_at"], "0001-01-01T00:00:00Z");
}

#[test]
fn answers_are_byte_for_byte_what_coderd_sends() {
    let at = time::macros::datetime!(2026-11-29 12:00:00.25 +02:00);
    let cases = [
        (
            link_answer("http://x/external-auth/gh".into()),
            r#"{"access_token":"","token_extra":null,"url":"http://x/external-auth/gh","type":"","expires_at":"0001-01-01T00:00:00Z","username":"","password":""}"#,
        ),
        (
            token_answer(
                ProviderType::Gitlab,
                "tok",
                Some(serde_json::json!({"scope": "repo"})),
                Some(at),
            ),
            r#"{"access_token":"tok","token_extra":{"scope":"repo"},"url":"","type":"gitlab","expires_at":"2026-11-29T10:00:00.25Z","username":"oauth2","password":"tok"}"#,
        ),
        (
            token_answer(ProviderType::Github, "tok", None, None),
            r#"{"access_token":"tok","token_extra":null,"url":"","type":"github","expires_at":"0001-01-01T00:00:00Z","username":"tok","password":""}"#,
        ),
    ];
    for (answer, want) in cases {
        assert_eq!(serde_json::to_string(&answer).unwrap(), want);
    }
}
