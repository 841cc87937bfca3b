//! Workspace manifests: what an operator writes instead of a Coder template.
//!
//! A manifest (TOML, or JSON) names a workspace, its owner, and its resources
//! with their agents, apps, scripts, metadata and sub-agents: the same things
//! a Coder template's `coder_agent` (with its `metadata` blocks), `coder_app`,
//! `coder_script` and `coder_agent_instance` resources carry. [`parse`] checks everything and
//! returns a [`Workspace`] the store can record as a build, or every problem at
//! once, each with the key path and (for TOML) the line.
//!
//! Pure: no I/O beyond what the caller read; no SQL.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;

/// How an agent proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentAuth {
    Token,
    AwsInstanceIdentity,
    AzureInstanceIdentity,
    GoogleInstanceIdentity,
}

impl AgentAuth {
    pub const ALL: [AgentAuth; 4] = [
        AgentAuth::Token,
        AgentAuth::AwsInstanceIdentity,
        AgentAuth::AzureInstanceIdentity,
        AgentAuth::GoogleInstanceIdentity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AgentAuth::Token => "token",
            AgentAuth::AwsInstanceIdentity => "aws-instance-identity",
            AgentAuth::AzureInstanceIdentity => "azure-instance-identity",
            AgentAuth::GoogleInstanceIdentity => "google-instance-identity",
        }
    }

    pub fn parse(s: &str) -> Option<AgentAuth> {
        AgentAuth::ALL.into_iter().find(|a| a.as_str() == s)
    }

    pub fn is_instance_identity(self) -> bool {
        self != AgentAuth::Token
    }
}

pub const DISPLAY_APPS: [&str; 5] = [
    "vscode",
    "vscode_insiders",
    "web_terminal",
    "ssh_helper",
    "port_forwarding_helper",
];
pub const SUBSYSTEMS: [&str; 3] = ["envbox", "envbuilder", "exectrace"];
pub const SHARING_LEVELS: [&str; 4] = ["owner", "authenticated", "organization", "public"];
pub const OPEN_IN: [&str; 2] = ["slim-window", "tab"];
pub const API_KEY_SCOPES: [&str; 2] = ["all", "no_user_data"];
pub const OPERATING_SYSTEMS: [&str; 3] = ["linux", "darwin", "windows"];

// Lengths of what a manifest declares, in characters: Coder's columns where
// they are `varchar(n)` (a template exceeding them fails its build there),
// appliance's own bound where Coder's column is `text`.
/// `workspace_agents.directory varchar(4096)`.
pub const MAX_DIRECTORY_CHARS: usize = 4096;
/// `workspace_agents.architecture varchar(64)`.
pub const MAX_ARCH_CHARS: usize = 64;
/// `workspace_apps.display_name varchar(64)`.
pub const MAX_APP_DISPLAY_NAME_CHARS: usize = 64;
/// `workspace_apps.icon varchar(256)`.
pub const MAX_APP_ICON_CHARS: usize = 256;
/// `workspace_apps.command varchar(65534)` and `url varchar(65534)`.
pub const MAX_APP_COMMAND_CHARS: usize = 65534;
/// `workspace_apps.tooltip varchar(2048)`.
pub const MAX_APP_TOOLTIP_CHARS: usize = 2048;
/// A script logs under a source named after it, and upstream casts source
/// names to `varchar(127)`.
pub const MAX_SCRIPT_DISPLAY_NAME_CHARS: usize = 127;
/// A script's icon is its log source's icon: the bound an agent's own
/// sources have, in bytes (`text` upstream).
pub const MAX_SCRIPT_ICON_BYTES: usize = 2048;
/// Each script takes one of the agent's log sources (64 in all); the rest
/// are left for the sources the agent registers itself. No bound upstream.
pub const MAX_SCRIPTS_PER_AGENT: usize = 32;
/// Metadata items per agent (each is a script the agent runs on a timer).
pub const MAX_METADATA_PER_AGENT: usize = 32;
/// The longest metadata key. BatchUpdateMetadata accepts 6144 bytes of keys
/// per batch (upstream's `maxAllKeysLen`), which this keeps every batch of
/// a full agent under.
pub const MAX_METADATA_KEY_BYTES: usize = 128;

/// A validated manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Workspace {
    pub name: String,
    /// Username of the owner.
    pub owner: String,
    pub resources: Vec<Resource>,
    /// External-auth provider ids the workspace uses (Coder: the template's
    /// `coder_external_auth` resources); preferred when an agent asks for a
    /// token by git URL.
    pub external_auth: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub name: String,
    pub kind: String,
    pub instance_id: Option<String>,
    pub agents: Vec<Agent>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    pub name: String,
    pub auth: AgentAuth,
    pub operating_system: String,
    pub architecture: String,
    pub directory: String,
    pub env: BTreeMap<String, String>,
    pub connection_timeout_seconds: i64,
    pub troubleshooting_url: String,
    pub motd_file: String,
    pub display_apps: Vec<String>,
    pub subsystems: Vec<String>,
    pub api_key_scope: String,
    pub order: i64,
    pub apps: Vec<App>,
    pub scripts: Vec<Script>,
    /// What the agent collects and reports (BatchUpdateMetadata), in order.
    pub metadata: Vec<Metadata>,
    /// Sub-agents (their `parent_id` is this agent). Always empty on a child.
    /// Sub-agents run on their parent's instance: they carry the resource's
    /// instance id but can never sign in with it.
    pub children: Vec<Agent>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub slug: String,
    pub display_name: String,
    pub url: String,
    pub command: String,
    pub icon: String,
    pub subdomain: bool,
    pub share: String,
    pub external: bool,
    pub hidden: bool,
    pub open_in: String,
    pub group: String,
    pub tooltip: String,
    pub order: i64,
    pub healthcheck: Option<Healthcheck>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Healthcheck {
    pub url: String,
    pub interval: i64,
    pub threshold: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    pub display_name: String,
    pub icon: String,
    pub script: String,
    pub cron: String,
    pub run_on_start: bool,
    pub run_on_stop: bool,
    pub start_blocks_login: bool,
    pub timeout_seconds: i64,
    pub log_path: String,
}

/// One metadata item an agent collects: `script` runs every `interval`
/// seconds, for at most `timeout` seconds (0: no limit); its output is the
/// value shown under `key`.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    pub key: String,
    pub display_name: String,
    pub script: String,
    pub interval: i64,
    pub timeout: i64,
}

impl Workspace {
    /// How many agents (roots and sub-agents) the manifest declares.
    pub fn agent_count(&self) -> usize {
        self.resources
            .iter()
            .flat_map(|r| &r.agents)
            .map(|a| 1 + a.children.len())
            .sum()
    }
}

/// One problem in a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Key path, e.g. `resources[0].agents[1].name`.
    pub path: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    pub message: String,
}

/// Everything wrong with a manifest file.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestError {
    pub file: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.file)?;
            if let Some(line) = p.line {
                write!(f, ":{line}")?;
            }
            if !p.path.is_empty() {
                write!(f, ": {}", p.path)?;
            }
            write!(f, ": {}", p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ManifestError {}

// ----- raw (as written) -----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkspace {
    name: Option<String>,
    owner: Option<String>,
    #[serde(default)]
    resources: Vec<RawResource>,
    #[serde(default)]
    external_auth: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResource {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    instance_id: Option<String>,
    #[serde(default)]
    agents: Vec<RawAgent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    name: Option<String>,
    auth: Option<String>,
    os: Option<String>,
    arch: Option<String>,
    #[serde(default)]
    directory: String,
    #[serde(default)]
    env: BTreeMap<String, String>,
    connection_timeout_seconds: Option<i64>,
    #[serde(default)]
    troubleshooting_url: String,
    #[serde(default)]
    motd_file: String,
    display_apps: Option<Vec<String>>,
    #[serde(default)]
    subsystems: Vec<String>,
    api_key_scope: Option<String>,
    #[serde(default)]
    order: i64,
    #[serde(default)]
    apps: Vec<RawApp>,
    #[serde(default)]
    scripts: Vec<RawScript>,
    #[serde(default)]
    metadata: Vec<RawMetadata>,
    #[serde(default)]
    children: Vec<RawAgent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    slug: Option<String>,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    command: String,
    #[serde(default)]
    icon: String,
    #[serde(default)]
    subdomain: bool,
    share: Option<String>,
    #[serde(default)]
    external: bool,
    #[serde(default)]
    hidden: bool,
    open_in: Option<String>,
    #[serde(default)]
    group: String,
    #[serde(default)]
    tooltip: String,
    #[serde(default)]
    order: i64,
    healthcheck: Option<RawHealthcheck>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealthcheck {
    #[serde(default)]
    url: String,
    #[serde(default)]
    interval: i64,
    #[serde(default)]
    threshold: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetadata {
    key: Option<String>,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    script: String,
    #[serde(default)]
    interval: i64,
    #[serde(default)]
    timeout: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScript {
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    icon: String,
    #[serde(default)]
    script: String,
    #[serde(default)]
    cron: String,
    #[serde(default)]
    run_on_start: bool,
    #[serde(default)]
    run_on_stop: bool,
    #[serde(default)]
    start_blocks_login: bool,
    #[serde(default)]
    timeout_seconds: i64,
    #[serde(default)]
    log_path: String,
}

/// The manifest's syntax, chosen by file extension (`.json`) or content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Syntax {
    Toml,
    Json,
}

/// Parses and validates a manifest. `file` is only used in messages and to pick
/// the syntax (`*.json` is JSON, anything else TOML).
pub fn parse(file: &str, text: &str) -> Result<Workspace, ManifestError> {
    parse_with(file, text, false)
}

/// [`parse`]; with `owner_optional` a missing `owner` is not a problem (a
/// prebuilt workspace belongs to the prebuilds user until it is claimed) and
/// comes back empty.
pub fn parse_with(
    file: &str,
    text: &str,
    owner_optional: bool,
) -> Result<Workspace, ManifestError> {
    let syntax = if file.ends_with(".json") || text.trim_start().starts_with('{') {
        Syntax::Json
    } else {
        Syntax::Toml
    };
    let fail = |problems: Vec<Problem>| ManifestError {
        file: file.to_string(),
        problems,
    };
    let raw: RawWorkspace = match syntax {
        Syntax::Toml => toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            fail(vec![Problem {
                path: String::new(),
                line,
                message: e.message().trim().to_string(),
            }])
        })?,
        Syntax::Json => serde_json::from_str(text).map_err(|e| {
            fail(vec![Problem {
                path: String::new(),
                line: Some(e.line()),
                message: e.to_string(),
            }])
        })?,
    };
    let mut v = Validator {
        owner_optional,
        ..Validator::default()
    };
    let ws = v.workspace(raw);
    if v.problems.is_empty() {
        Ok(ws)
    } else {
        if syntax == Syntax::Toml
            && let Ok(root) = toml::de::DeTable::parse(text)
        {
            // One parse for all problems: a manifest with thousands of
            // mistakes is reported as fast as one with a single mistake.
            for p in &mut v.problems {
                p.line = locate_in(&root, text, &p.path);
            }
        }
        Err(fail(v.problems))
    }
}

/// A problem found after parsing (e.g. an owner the database does not know),
/// reported like the manifest's own problems: file, line, key path.
pub fn problem_at(file: &str, text: &str, path: &str, message: impl Into<String>) -> ManifestError {
    let is_json = file.ends_with(".json") || text.trim_start().starts_with('{');
    ManifestError {
        file: file.to_string(),
        problems: vec![Problem {
            path: path.to_string(),
            line: if is_json {
                None
            } else {
                locate_toml(text, path)
            },
            message: message.into(),
        }],
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Finds the line of a key path such as `resources[0].agents[1].name` (or of
/// the nearest enclosing table that exists).
fn locate_toml(text: &str, path: &str) -> Option<usize> {
    let root = toml::de::DeTable::parse(text).ok()?;
    locate_in(&root, text, path)
}

fn locate_in(root: &toml::Spanned<toml::de::DeTable<'_>>, text: &str, path: &str) -> Option<usize> {
    use toml::de::DeValue;
    let mut best = None;
    let mut current: Option<&toml::Spanned<DeValue<'_>>> = None;
    for segment in path.split('.') {
        let (key, index) = match segment.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        let next = match current {
            None => root.get_ref().get(key),
            Some(v) => v.get_ref().as_table().and_then(|t| t.get(key)),
        };
        let Some(mut value) = next else { break };
        best = Some(value.span().start);
        if let Some(i) = index {
            match value.get_ref().as_array().and_then(|a| a.get(i)) {
                Some(item) => value = item,
                None => break,
            }
            best = Some(value.span().start);
        }
        current = Some(value);
    }
    best.map(|offset| line_of(text, offset))
}

#[derive(Default)]
struct Validator {
    problems: Vec<Problem>,
    owner_optional: bool,
}

/// Coder's name rule for workspaces: letters, digits and single hyphens, ≤ 32.
fn valid_workspace_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && hyphenated_alnum(s, true)
}

/// Coder's agent name rule (case-insensitive `^[a-z0-9](-?[a-z0-9])*$`), ≤ 64.
pub fn valid_agent_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && hyphenated_alnum(s, true)
}

/// Coder's app slug rule (`^[a-z0-9](-?[a-z0-9])*$`), ≤ 64.
fn valid_slug(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && hyphenated_alnum(s, false)
}

fn hyphenated_alnum(s: &str, allow_upper: bool) -> bool {
    let ok_char = |c: char| {
        c.is_ascii_digit() || c.is_ascii_lowercase() || (allow_upper && c.is_ascii_uppercase())
    };
    let mut prev_hyphen = true; // no leading hyphen
    for c in s.chars() {
        if c == '-' {
            if prev_hyphen {
                return false;
            }
            prev_hyphen = true;
        } else if ok_char(c) {
            prev_hyphen = false;
        } else {
            return false;
        }
    }
    !prev_hyphen
}

fn valid_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

fn one_of(list: &[&str]) -> String {
    list.iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Validator {
    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            line: None,
            message: message.into(),
        });
    }

    /// A problem if `value` is longer than `max` characters.
    fn at_most(&mut self, path: &str, value: &str, max: usize) {
        let n = value.chars().count();
        if n > max {
            self.problem(
                path,
                format!("is {n} characters long; at most {max} are allowed"),
            );
        }
    }

    fn required(&mut self, path: &str, value: Option<String>) -> String {
        match value {
            Some(v) if !v.trim().is_empty() => v,
            _ => {
                self.problem(path, "is required");
                String::new()
            }
        }
    }

    fn choice(
        &mut self,
        path: &str,
        value: Option<String>,
        list: &[&str],
        default: &str,
    ) -> String {
        match value {
            None => default.to_string(),
            Some(v) if list.contains(&v.as_str()) => v,
            Some(v) => {
                self.problem(
                    path,
                    format!("\"{v}\" is not allowed; use one of {}", one_of(list)),
                );
                default.to_string()
            }
        }
    }

    fn workspace(&mut self, raw: RawWorkspace) -> Workspace {
        let name = self.required("name", raw.name);
        if !name.is_empty() && !valid_workspace_name(&name) {
            self.problem(
                "name",
                format!("\"{name}\" is not a valid workspace name: use letters, digits and single hyphens, at most 32 characters"),
            );
        }
        let owner = if self.owner_optional {
            raw.owner.unwrap_or_default()
        } else {
            self.required("owner", raw.owner)
        };
        let mut seen_resources = BTreeSet::new();
        let mut agent_names = BTreeMap::<String, String>::new();
        let mut resources = Vec::new();
        for (i, r) in raw.resources.into_iter().enumerate() {
            let path = format!("resources[{i}]");
            let rname = self.required(&format!("{path}.name"), r.name);
            let kind = self.required(&format!("{path}.type"), r.kind);
            if !rname.is_empty() && !seen_resources.insert((kind.clone(), rname.clone())) {
                self.problem(
                    format!("{path}.name"),
                    format!("a resource of type \"{kind}\" named \"{rname}\" is already defined"),
                );
            }
            let instance_id = match r.instance_id {
                Some(id) if id.trim().is_empty() => {
                    self.problem(
                        format!("{path}.instance_id"),
                        "must not be empty; leave it out instead",
                    );
                    None
                }
                Some(id) => Some(id.trim().to_string()),
                None => None,
            };
            let mut agents = Vec::new();
            for (j, a) in r.agents.into_iter().enumerate() {
                let apath = format!("{path}.agents[{j}]");
                let agent = self.agent(&apath, a, false, instance_id.is_some(), &mut agent_names);
                agents.push(agent);
            }
            resources.push(Resource {
                name: rname,
                kind,
                instance_id,
                agents,
            });
        }
        let mut external_auth: Vec<String> = Vec::new();
        for (i, id) in raw.external_auth.into_iter().enumerate() {
            let valid = !id.is_empty()
                && id.len() <= 64
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !valid {
                self.problem(
                    format!("external_auth[{i}]"),
                    format!("\"{id}\" is not a provider id: use letters, digits, '-', '_' and '.'"),
                );
            } else if external_auth.contains(&id) {
                self.problem(
                    format!("external_auth[{i}]"),
                    format!("\"{id}\" is listed twice"),
                );
            } else {
                external_auth.push(id);
            }
        }
        Workspace {
            name,
            owner,
            resources,
            external_auth,
        }
    }

    fn agent(
        &mut self,
        path: &str,
        raw: RawAgent,
        is_child: bool,
        has_instance_id: bool,
        names: &mut BTreeMap<String, String>,
    ) -> Agent {
        let name = self.required(&format!("{path}.name"), raw.name);
        if !name.is_empty() {
            if !valid_agent_name(&name) {
                self.problem(
                    format!("{path}.name"),
                    format!("\"{name}\" is not a valid agent name: use letters, digits and single hyphens, at most 64 characters"),
                );
            } else if let Some(first) = names.get(&name) {
                self.problem(
                    format!("{path}.name"),
                    format!("agent name \"{name}\" is already used by {first}; agent names must be unique in a workspace"),
                );
            } else {
                names.insert(name.clone(), path.to_string());
            }
        }
        let auth = match raw.auth.as_deref() {
            None => AgentAuth::Token,
            Some(s) => AgentAuth::parse(s).unwrap_or_else(|| {
                let all: Vec<&str> = AgentAuth::ALL.iter().map(|a| a.as_str()).collect();
                self.problem(
                    format!("{path}.auth"),
                    format!("\"{s}\" is not allowed; use one of {}", one_of(&all)),
                );
                AgentAuth::Token
            }),
        };
        if auth.is_instance_identity() && is_child {
            self.problem(
                format!("{path}.auth"),
                "a sub-agent cannot sign in with the instance identity (only root agents are chosen by instance id); use auth = \"token\"",
            );
        } else if auth.is_instance_identity() && !has_instance_id {
            self.problem(
                format!("{path}.auth"),
                format!("\"{}\" needs the resource's instance_id: set instance_id on the resource, or use auth = \"token\"", auth.as_str()),
            );
        }
        let operating_system =
            self.choice(&format!("{path}.os"), raw.os, &OPERATING_SYSTEMS, "linux");
        let architecture = raw.arch.unwrap_or_else(|| "amd64".to_string());
        self.at_most(
            &format!("{path}.directory"),
            &raw.directory,
            MAX_DIRECTORY_CHARS,
        );
        if architecture.chars().count() > MAX_ARCH_CHARS {
            self.at_most(&format!("{path}.arch"), &architecture, MAX_ARCH_CHARS);
        } else if architecture.is_empty()
            || !architecture
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.problem(
                format!("{path}.arch"),
                format!("\"{architecture}\" is not an architecture; use e.g. \"amd64\", \"arm64\", \"armv7\""),
            );
        }
        for key in raw.env.keys() {
            if !valid_env_name(key) {
                self.problem(
                    format!("{path}.env"),
                    format!("\"{key}\" is not a valid environment variable name"),
                );
            }
        }
        let connection_timeout_seconds = raw.connection_timeout_seconds.unwrap_or(120);
        if !(0..=7 * 24 * 3600).contains(&connection_timeout_seconds) {
            self.problem(
                format!("{path}.connection_timeout_seconds"),
                "must be between 0 (no timeout) and 604800 seconds",
            );
        }
        let display_apps = match raw.display_apps {
            None => DISPLAY_APPS.iter().map(|s| s.to_string()).collect(),
            Some(list) => self.subset(&format!("{path}.display_apps"), list, &DISPLAY_APPS),
        };
        let subsystems = self.subset(&format!("{path}.subsystems"), raw.subsystems, &SUBSYSTEMS);
        let api_key_scope = self.choice(
            &format!("{path}.api_key_scope"),
            raw.api_key_scope,
            &API_KEY_SCOPES,
            "all",
        );

        let mut slugs = BTreeSet::new();
        let mut apps = Vec::new();
        for (k, a) in raw.apps.into_iter().enumerate() {
            let app = self.app(&format!("{path}.apps[{k}]"), a);
            if !app.slug.is_empty() && !slugs.insert(app.slug.clone()) {
                self.problem(
                    format!("{path}.apps[{k}].slug"),
                    format!(
                        "slug \"{}\" is already used by another app of this agent",
                        app.slug
                    ),
                );
            }
            apps.push(app);
        }
        if raw.scripts.len() > MAX_SCRIPTS_PER_AGENT {
            self.problem(
                format!("{path}.scripts"),
                format!(
                    "{} scripts; an agent has at most {MAX_SCRIPTS_PER_AGENT}",
                    raw.scripts.len()
                ),
            );
        }
        let scripts = raw
            .scripts
            .into_iter()
            .enumerate()
            .map(|(k, s)| self.script(&format!("{path}.scripts[{k}]"), s))
            .collect();
        if raw.metadata.len() > MAX_METADATA_PER_AGENT {
            self.problem(
                format!("{path}.metadata"),
                format!(
                    "{} metadata items; an agent has at most {MAX_METADATA_PER_AGENT}",
                    raw.metadata.len()
                ),
            );
        }
        let mut keys = BTreeSet::new();
        let mut metadata = Vec::new();
        for (k, m) in raw.metadata.into_iter().enumerate() {
            let item = self.metadata(&format!("{path}.metadata[{k}]"), m);
            if !item.key.is_empty() && !keys.insert(item.key.clone()) {
                self.problem(
                    format!("{path}.metadata[{k}].key"),
                    format!(
                        "key \"{}\" is already used by another metadata item of this agent",
                        item.key
                    ),
                );
            }
            metadata.push(item);
        }
        let mut children = Vec::new();
        if is_child && !raw.children.is_empty() {
            self.problem(
                format!("{path}.children"),
                "a sub-agent cannot have sub-agents of its own",
            );
        } else {
            for (k, c) in raw.children.into_iter().enumerate() {
                let child = self.agent(
                    &format!("{path}.children[{k}]"),
                    c,
                    true,
                    has_instance_id,
                    names,
                );
                children.push(child);
            }
        }
        Agent {
            name,
            auth,
            operating_system,
            architecture,
            directory: raw.directory,
            env: raw.env,
            connection_timeout_seconds,
            troubleshooting_url: raw.troubleshooting_url,
            motd_file: raw.motd_file,
            display_apps,
            subsystems,
            api_key_scope,
            order: raw.order,
            apps,
            scripts,
            metadata,
            children,
        }
    }

    fn metadata(&mut self, path: &str, raw: RawMetadata) -> Metadata {
        let key = self.required(&format!("{path}.key"), raw.key);
        if !key.is_empty()
            && (key.len() > MAX_METADATA_KEY_BYTES
                || !key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'))
        {
            self.problem(
                format!("{path}.key"),
                format!("\"{key}\" is not a valid key: use letters, digits, '_', '-' and '.', at most {MAX_METADATA_KEY_BYTES} characters"),
            );
        }
        self.at_most(
            &format!("{path}.display_name"),
            &raw.display_name,
            MAX_SCRIPT_DISPLAY_NAME_CHARS,
        );
        if raw.script.trim().is_empty() {
            self.problem(format!("{path}.script"), "is required");
        }
        if raw.interval < 1 {
            self.problem(format!("{path}.interval"), "must be at least 1 (seconds)");
        }
        if raw.timeout < 0 {
            self.problem(format!("{path}.timeout"), "must be 0 (no timeout) or more");
        }
        Metadata {
            key,
            display_name: raw.display_name,
            script: raw.script,
            interval: raw.interval,
            timeout: raw.timeout,
        }
    }

    fn subset(&mut self, path: &str, list: Vec<String>, allowed: &[&str]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for item in list {
            if !allowed.contains(&item.as_str()) {
                self.problem(
                    path,
                    format!("\"{item}\" is not allowed; use any of {}", one_of(allowed)),
                );
            } else if out.contains(&item) {
                self.problem(path, format!("\"{item}\" is listed twice"));
            } else {
                out.push(item);
            }
        }
        out
    }

    fn app(&mut self, path: &str, raw: RawApp) -> App {
        let slug = self.required(&format!("{path}.slug"), raw.slug);
        if !slug.is_empty() && !valid_slug(&slug) {
            self.problem(
                format!("{path}.slug"),
                format!("\"{slug}\" is not a valid slug: use lowercase letters, digits and single hyphens, at most 64 characters"),
            );
        }
        self.at_most(
            &format!("{path}.display_name"),
            &raw.display_name,
            MAX_APP_DISPLAY_NAME_CHARS,
        );
        self.at_most(&format!("{path}.icon"), &raw.icon, MAX_APP_ICON_CHARS);
        self.at_most(&format!("{path}.url"), &raw.url, MAX_APP_COMMAND_CHARS);
        self.at_most(
            &format!("{path}.command"),
            &raw.command,
            MAX_APP_COMMAND_CHARS,
        );
        self.at_most(
            &format!("{path}.tooltip"),
            &raw.tooltip,
            MAX_APP_TOOLTIP_CHARS,
        );
        if !raw.url.is_empty() && !raw.command.is_empty() {
            self.problem(
                format!("{path}.command"),
                "an app has either a url or a command, not both",
            );
        }
        if raw.subdomain && raw.url.is_empty() {
            self.problem(format!("{path}.subdomain"), "a subdomain app needs a url");
        }
        let share = self.choice(
            &format!("{path}.share"),
            raw.share,
            &SHARING_LEVELS,
            "owner",
        );
        let open_in = self.choice(
            &format!("{path}.open_in"),
            raw.open_in,
            &OPEN_IN,
            "slim-window",
        );
        let healthcheck = raw.healthcheck.map(|h| {
            if h.url.is_empty() {
                self.problem(format!("{path}.healthcheck.url"), "is required");
            }
            if h.interval < 1 {
                self.problem(
                    format!("{path}.healthcheck.interval"),
                    "must be at least 1 (seconds)",
                );
            }
            if h.threshold < 1 {
                self.problem(
                    format!("{path}.healthcheck.threshold"),
                    "must be at least 1",
                );
            }
            Healthcheck {
                url: h.url,
                interval: h.interval,
                threshold: h.threshold,
            }
        });
        App {
            slug,
            display_name: raw.display_name,
            url: raw.url,
            command: raw.command,
            icon: raw.icon,
            subdomain: raw.subdomain,
            share,
            external: raw.external,
            hidden: raw.hidden,
            open_in,
            group: raw.group,
            tooltip: raw.tooltip,
            order: raw.order,
            healthcheck,
        }
    }

    fn script(&mut self, path: &str, raw: RawScript) -> Script {
        if raw.display_name.trim().is_empty() {
            self.problem(format!("{path}.display_name"), "is required");
        }
        self.at_most(
            &format!("{path}.display_name"),
            &raw.display_name,
            MAX_SCRIPT_DISPLAY_NAME_CHARS,
        );
        if raw.icon.len() > MAX_SCRIPT_ICON_BYTES {
            self.problem(
                format!("{path}.icon"),
                format!(
                    "is {} bytes long; at most {MAX_SCRIPT_ICON_BYTES} are allowed",
                    raw.icon.len()
                ),
            );
        }
        if raw.script.trim().is_empty() {
            self.problem(format!("{path}.script"), "is required");
        }
        if raw.timeout_seconds < 0 {
            self.problem(
                format!("{path}.timeout_seconds"),
                "must be 0 (no timeout) or more",
            );
        }
        if !raw.cron.is_empty() && raw.cron.split_whitespace().count() != 6 {
            self.problem(
                format!("{path}.cron"),
                format!("\"{}\" is not a cron expression with 6 fields (seconds first), e.g. \"0 */5 * * * *\"", raw.cron),
            );
        }
        Script {
            display_name: raw.display_name,
            icon: raw.icon,
            script: raw.script,
            cron: raw.cron,
            run_on_start: raw.run_on_start,
            run_on_stop: raw.run_on_stop,
            start_blocks_login: raw.start_blocks_login,
            timeout_seconds: raw.timeout_seconds,
            log_path: raw.log_path,
        }
    }
}

#[cfg(test)]
mod tests;
