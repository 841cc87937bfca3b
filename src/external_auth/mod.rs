//! External auth (Coder's "external auth", formerly "git auth"): OAuth2
//! providers such as GitHub, GitLab or a self-hosted Gitea that a workspace
//! owner links once, so their workspaces get a git token on demand.
//!
//! This module is pure: the provider model with each type's defaults,
//! choosing the provider for a request (Coder's
//! `workspaceAgentsExternalAuth` step 3, template-scoped selection), and the
//! answer an agent gets (steps 7-9). No I/O. `flow` has the browser flow's
//! rules; `oauth_client` is the blocking HTTP side.

pub(crate) mod flow;
pub(crate) mod oauth_client;

use std::fmt;
use std::str::FromStr;

use regex_lite::Regex;
use time::OffsetDateTime;

use crate::sdk::ExternalAuthResponse;

/// Provider types Coder knows, with their wire names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderType {
    Github,
    Gitlab,
    Gitea,
    BitbucketCloud,
    BitbucketServer,
    AzureDevops,
    Generic,
}

impl ProviderType {
    pub const ALL: [ProviderType; 7] = [
        ProviderType::Github,
        ProviderType::Gitlab,
        ProviderType::Gitea,
        ProviderType::BitbucketCloud,
        ProviderType::BitbucketServer,
        ProviderType::AzureDevops,
        ProviderType::Generic,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderType::Github => "github",
            ProviderType::Gitlab => "gitlab",
            ProviderType::Gitea => "gitea",
            ProviderType::BitbucketCloud => "bitbucket-cloud",
            ProviderType::BitbucketServer => "bitbucket-server",
            ProviderType::AzureDevops => "azure-devops",
            ProviderType::Generic => "generic",
        }
    }

    /// The public service's endpoints, for types that have one.
    pub fn defaults(self) -> Option<Defaults> {
        let d =
            |display_name, auth_url, token_url, validate_url, regex, scopes: &[&'static str]| {
                Some(Defaults {
                    display_name,
                    auth_url,
                    token_url,
                    validate_url,
                    regex,
                    scopes: scopes.to_vec(),
                })
            };
        match self {
            ProviderType::Github => d(
                "GitHub",
                "https://github.com/login/oauth/authorize",
                "https://github.com/login/oauth/access_token",
                "https://api.github.com/user",
                r"^(https?://)?github\.com(/.*)?$",
                &["repo", "workflow"],
            ),
            ProviderType::Gitlab => d(
                "GitLab",
                "https://gitlab.com/oauth/authorize",
                "https://gitlab.com/oauth/token",
                "https://gitlab.com/oauth/token/info",
                r"^(https?://)?gitlab\.com(/.*)?$",
                &["write_repository"],
            ),
            ProviderType::Gitea => d(
                "Gitea",
                "https://gitea.com/login/oauth/authorize",
                "https://gitea.com/login/oauth/access_token",
                "https://gitea.com/login/oauth/userinfo",
                r"^(https?://)?gitea\.com(/.*)?$",
                &["write:repository", "read:user"],
            ),
            ProviderType::BitbucketCloud => d(
                "Bitbucket Cloud",
                "https://bitbucket.org/site/oauth2/authorize",
                "https://bitbucket.org/site/oauth2/access_token",
                "https://api.bitbucket.org/2.0/user",
                r"^(https?://)?bitbucket\.org(/.*)?$",
                &["account", "repository:write"],
            ),
            ProviderType::AzureDevops => d(
                "Azure DevOps",
                "https://app.vssps.visualstudio.com/oauth2/authorize",
                "https://app.vssps.visualstudio.com/oauth2/token",
                "https://app.vssps.visualstudio.com/_apis/profile/profiles/me?api-version=7.1-preview.3",
                r"^(https?://)?dev\.azure\.com(/.*)?$",
                &["vso.code_write"],
            ),
            // Self-hosted only: the operator names the endpoints.
            ProviderType::BitbucketServer | ProviderType::Generic => None,
        }
    }

    /// Git credentials for a token (Coder's `createExternalAuthResponse`):
    /// (username, password).
    pub fn git_credentials(self, token: &str) -> (String, String) {
        match self {
            ProviderType::Gitlab => ("oauth2".into(), token.into()),
            ProviderType::BitbucketCloud | ProviderType::BitbucketServer => {
                ("x-token-auth".into(), token.into())
            }
            _ => (token.into(), String::new()),
        }
    }
}

impl fmt::Display for ProviderType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        ProviderType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "expected one of {}",
                    ProviderType::ALL.map(|t| format!("\"{t}\"")).join(", ")
                )
            })
    }
}

/// A public service's endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    pub display_name: &'static str,
    pub auth_url: &'static str,
    pub token_url: &'static str,
    pub validate_url: &'static str,
    pub regex: &'static str,
    pub scopes: Vec<&'static str>,
}

/// A configured provider, defaults filled in and its regex compiled.
#[derive(Debug, Clone)]
pub struct Provider {
    pub id: String,
    pub kind: ProviderType,
    pub display_name: String,
    pub client_id: String,
    pub client_secret: String,
    pub auth_url: String,
    pub token_url: String,
    /// Empty: tokens are not validated against the provider.
    pub validate_url: String,
    pub scopes: Vec<String>,
    /// Which git remote URLs the provider serves; `None` matches nothing in
    /// the full scan (as upstream's nil regex).
    pub regex: Option<Regex>,
}

impl Provider {
    pub fn matches(&self, url: &str) -> bool {
        self.regex.as_ref().is_some_and(|r| r.is_match(url))
    }
}

/// What the operator wrote for one provider (all optional but `id`/`type`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProviderSpec {
    pub id: String,
    pub kind: String,
    pub display_name: Option<String>,
    pub client_id: String,
    pub client_secret: String,
    pub auth_url: Option<String>,
    pub token_url: Option<String>,
    pub validate_url: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub regex: Option<String>,
}

impl fmt::Debug for ProviderSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderSpec")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("auth_url", &self.auth_url)
            .field("token_url", &self.token_url)
            .finish_non_exhaustive()
    }
}

/// Builds a provider from its spec: the type's defaults for what is not set;
/// a self-hosted instance (auth URL on another host) gets a regex for that
/// host unless one is given. Errors name the field.
pub fn provider(spec: &ProviderSpec) -> Result<Provider, (&'static str, String)> {
    if !valid_id(&spec.id) {
        return Err((
            "id",
            format!(
                "\"{}\" is not a valid provider id: use letters, digits, '-', '_' and '.'",
                spec.id
            ),
        ));
    }
    let kind: ProviderType = spec.kind.parse().map_err(|e| ("type", e))?;
    let defaults = kind.defaults();
    let pick =
        |given: &Option<String>, default: Option<&'static str>, field: &'static str| match given
            .clone()
            .filter(|s| !s.is_empty())
        {
            Some(v) => Ok(v),
            None => default.map(str::to_string).ok_or((
                field,
                format!("a \"{kind}\" provider needs {field} (it has no public default)"),
            )),
        };
    let auth_url = pick(
        &spec.auth_url,
        defaults.as_ref().map(|d| d.auth_url),
        "auth_url",
    )?;
    let token_url = pick(
        &spec.token_url,
        defaults.as_ref().map(|d| d.token_url),
        "token_url",
    )?;
    for (field, url) in [("auth_url", &auth_url), ("token_url", &token_url)] {
        check_url(url).map_err(|e| (field, e))?;
    }
    let validate_url = match &spec.validate_url {
        Some(v) => v.clone(),
        None if spec.auth_url.is_none() => defaults
            .as_ref()
            .map(|d| d.validate_url.to_string())
            .unwrap_or_default(),
        // A self-hosted instance's validation URL is not the public one.
        None => String::new(),
    };
    if !validate_url.is_empty() {
        check_url(&validate_url).map_err(|e| ("validate_url", e))?;
    }
    let regex_text = match &spec.regex {
        Some(r) => Some(r.clone()),
        None if spec.auth_url.is_some() => {
            host_of(&auth_url).map(|h| format!(r"^(https?://)?{}(/.*)?$", escape_regex(h)))
        }
        None => defaults.as_ref().map(|d| d.regex.to_string()),
    };
    let regex = match regex_text.filter(|r| !r.is_empty()) {
        Some(r) => Some(Regex::new(&r).map_err(|e| ("regex", format!("invalid regex: {e}")))?),
        None => None,
    };
    if spec.client_id.is_empty() {
        return Err(("client_id", "is required".into()));
    }
    Ok(Provider {
        id: spec.id.clone(),
        kind,
        display_name: spec
            .display_name
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| defaults.as_ref().map(|d| d.display_name.to_string()))
            .unwrap_or_else(|| spec.id.clone()),
        client_id: spec.client_id.clone(),
        client_secret: spec.client_secret.clone(),
        auth_url,
        token_url,
        validate_url,
        scopes: spec.scopes.clone().unwrap_or_else(|| {
            defaults
                .map(|d| d.scopes.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default()
        }),
        regex,
    })
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn check_url(url: &str) -> Result<(), String> {
    if (url.starts_with("https://") || url.starts_with("http://")) && host_of(url).is_some() {
        Ok(())
    } else {
        Err(format!("\"{url}\" is not an http(s) URL"))
    }
}

/// The host (and port) of an http(s) URL.
fn host_of(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty()).then_some(host)
}

fn escape_regex(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Why no provider was chosen: a 404 with Coder's message and detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotFound {
    pub message: String,
    pub detail: String,
}

/// Chooses the provider for `GET /me/external-auth` (Coder's step 3).
/// `declared` are the provider ids the workspace's manifest declares, in
/// order; `by_id` and `match_url` are the query (exactly one is set).
pub fn select<'a>(
    providers: &'a [Provider],
    declared: &[String],
    by_id: Option<&str>,
    match_url: &str,
) -> Result<&'a Provider, NotFound> {
    if let Some(id) = by_id {
        return providers
            .iter()
            .find(|p| p.id == id)
            .ok_or_else(|| NotFound {
                // Coder names the (empty) url here; appliance names the id.
                message: format!("No external auth provider with the id \"{id}\" is configured."),
                detail: configured_detail(providers),
            });
    }
    let declared_configured: Vec<&Provider> = declared
        .iter()
        .filter_map(|id| providers.iter().find(|p| &p.id == id))
        .collect();
    let declared_matching: Vec<&Provider> = declared_configured
        .iter()
        .copied()
        .filter(|p| p.matches(match_url))
        .collect();
    match declared_matching.len() {
        0 => {}
        1 => return Ok(declared_matching[0]),
        _ => {
            let ids: Vec<&str> = declared_matching.iter().map(|p| p.id.as_str()).collect();
            return Err(NotFound {
                message: format!(
                    "Multiple external auth providers declared by this workspace's template match \"{match_url}\": {}.",
                    ids.join(", ")
                ),
                detail: format!(
                    "Ask for one by id, e.g. `coder external-auth access-token {}`.",
                    ids[0]
                ),
            });
        }
    }
    let missing: Vec<&str> = declared
        .iter()
        .filter(|id| !providers.iter().any(|p| &p.id == *id))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(NotFound {
            message: format!(
                "This workspace's template declares external auth provider(s) that this deployment no longer configures: {}.",
                missing.join(", ")
            ),
            detail:
                "Configure them again, or remove them from the workspace manifest and apply it."
                    .into(),
        });
    }
    // Full scan: the last match in configuration order wins.
    providers
        .iter()
        .rev()
        .find(|p| p.matches(match_url))
        .ok_or_else(|| NotFound {
            message: format!(
                "No matching external auth provider found in Coder for the url \"{match_url}\"."
            ),
            detail: configured_detail(providers),
        })
}

fn configured_detail(providers: &[Provider]) -> String {
    if providers.is_empty() {
        return "External auth provider not found.".into();
    }
    let regexes: Vec<String> = providers
        .iter()
        .map(|p| {
            format!(
                "{}={:?}",
                p.id,
                p.regex.as_ref().map(|r| r.as_str()).unwrap_or("")
            )
        })
        .collect();
    format!(
        "The configured external auth provider have regex filters that do not match the url. Provider url regex: {}",
        regexes.join(",")
    )
}

/// The answer while the user has no usable link: where to make one.
pub fn link_answer(url: String) -> ExternalAuthResponse {
    ExternalAuthResponse {
        access_token: String::new(),
        token_extra: None,
        url,
        kind: String::new(),
        expires_at: None,
        username: String::new(),
        password: String::new(),
    }
}

/// The answer with a usable token: git credentials as the type wants them.
pub fn token_answer(
    kind: ProviderType,
    access_token: &str,
    extra: Option<serde_json::Value>,
    expires_at: Option<OffsetDateTime>,
) -> ExternalAuthResponse {
    let (username, password) = kind.git_credentials(access_token);
    ExternalAuthResponse {
        access_token: access_token.to_string(),
        token_extra: extra,
        url: String::new(),
        kind: kind.as_str().to_string(),
        expires_at,
        username,
        password,
    }
}

#[cfg(test)]
mod tests;
