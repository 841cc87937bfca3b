//! The RPC names of the Agent and Tailnet services as DRPC's Invoke carries
//! them (`/coder.agent.v2.Agent/GetManifest`), each with the API version that
//! added it and its shape ([`METHODS`]; CONNECTIVITY.md §1.4 and §1.7).
//!
//! A connection's API version is the `version` query parameter of `/me/rpc`
//! (a missing one means 2.0); the agent and tailnet versions move together.

/// An API version, `major.minor`. Ordered, so `a <= b` means "b has
/// everything a has".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version {
    pub major: u16,
    pub minor: u16,
}

impl Version {
    pub const fn new(major: u16, minor: u16) -> Version {
        Version { major, minor }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The newest API version the design describes (2.11: `session_counts` in
/// Stats); coderd validates `version` against it.
pub const CURRENT_VERSION: Version = Version::new(2, 11);

/// A method's shape, as DRPC runs it (§1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// One request, one response.
    Unary,
    /// One request, then any number of responses.
    ServerStream,
    /// Messages both ways until either side ends the stream.
    Bidi,
}

/// One method of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Method {
    /// The RPC name, `/<package>.<Service>/<Method>`.
    pub name: &'static str,
    /// The API version that added it.
    pub added_in: Version,
    pub kind: Kind,
}

impl Method {
    /// Whether a client at `version` may call it.
    pub fn available_in(&self, version: Version) -> bool {
        self.added_in <= version
    }
}

/// `/coder.agent.v2.Agent/...`
pub mod agent {
    pub const GET_MANIFEST: &str = "/coder.agent.v2.Agent/GetManifest";
    pub const GET_SERVICE_BANNER: &str = "/coder.agent.v2.Agent/GetServiceBanner";
    pub const UPDATE_STATS: &str = "/coder.agent.v2.Agent/UpdateStats";
    pub const UPDATE_LIFECYCLE: &str = "/coder.agent.v2.Agent/UpdateLifecycle";
    pub const BATCH_UPDATE_APP_HEALTHS: &str = "/coder.agent.v2.Agent/BatchUpdateAppHealths";
    pub const UPDATE_STARTUP: &str = "/coder.agent.v2.Agent/UpdateStartup";
    pub const BATCH_UPDATE_METADATA: &str = "/coder.agent.v2.Agent/BatchUpdateMetadata";
    pub const BATCH_CREATE_LOGS: &str = "/coder.agent.v2.Agent/BatchCreateLogs";
    pub const GET_ANNOUNCEMENT_BANNERS: &str = "/coder.agent.v2.Agent/GetAnnouncementBanners";
    pub const SCRIPT_COMPLETED: &str = "/coder.agent.v2.Agent/ScriptCompleted";
    pub const GET_RESOURCES_MONITORING_CONFIGURATION: &str =
        "/coder.agent.v2.Agent/GetResourcesMonitoringConfiguration";
    pub const PUSH_RESOURCES_MONITORING_USAGE: &str =
        "/coder.agent.v2.Agent/PushResourcesMonitoringUsage";
    pub const REPORT_CONNECTION: &str = "/coder.agent.v2.Agent/ReportConnection";
    pub const CREATE_SUB_AGENT: &str = "/coder.agent.v2.Agent/CreateSubAgent";
    pub const DELETE_SUB_AGENT: &str = "/coder.agent.v2.Agent/DeleteSubAgent";
    pub const LIST_SUB_AGENTS: &str = "/coder.agent.v2.Agent/ListSubAgents";
    pub const REPORT_BOUNDARY_LOGS: &str = "/coder.agent.v2.Agent/ReportBoundaryLogs";
    pub const UPDATE_APP_STATUS: &str = "/coder.agent.v2.Agent/UpdateAppStatus";
    pub const PUSH_CONTEXT_STATE: &str = "/coder.agent.v2.Agent/PushContextState";
}

/// `/coder.tailnet.v2.Tailnet/...`
pub mod tailnet {
    pub const STREAM_DERP_MAPS: &str = "/coder.tailnet.v2.Tailnet/StreamDERPMaps";
    pub const COORDINATE: &str = "/coder.tailnet.v2.Tailnet/Coordinate";
    pub const POST_TELEMETRY: &str = "/coder.tailnet.v2.Tailnet/PostTelemetry";
    pub const REFRESH_RESUME_TOKEN: &str = "/coder.tailnet.v2.Tailnet/RefreshResumeToken";
    pub const WORKSPACE_UPDATES: &str = "/coder.tailnet.v2.Tailnet/WorkspaceUpdates";
}

const fn m(name: &'static str, major: u16, minor: u16, kind: Kind) -> Method {
    Method {
        name,
        added_in: Version::new(major, minor),
        kind,
    }
}

/// Every method of both services, in the design's order.
pub const METHODS: &[Method] = &[
    m(agent::GET_MANIFEST, 2, 0, Kind::Unary),
    m(agent::GET_SERVICE_BANNER, 2, 0, Kind::Unary),
    m(agent::UPDATE_STATS, 2, 0, Kind::Unary),
    m(agent::UPDATE_LIFECYCLE, 2, 0, Kind::Unary),
    m(agent::BATCH_UPDATE_APP_HEALTHS, 2, 0, Kind::Unary),
    m(agent::UPDATE_STARTUP, 2, 0, Kind::Unary),
    m(agent::BATCH_UPDATE_METADATA, 2, 0, Kind::Unary),
    m(agent::BATCH_CREATE_LOGS, 2, 0, Kind::Unary),
    m(agent::GET_ANNOUNCEMENT_BANNERS, 2, 1, Kind::Unary),
    m(agent::SCRIPT_COMPLETED, 2, 3, Kind::Unary),
    m(
        agent::GET_RESOURCES_MONITORING_CONFIGURATION,
        2,
        4,
        Kind::Unary,
    ),
    m(agent::PUSH_RESOURCES_MONITORING_USAGE, 2, 4, Kind::Unary),
    m(agent::REPORT_CONNECTION, 2, 4, Kind::Unary),
    m(agent::CREATE_SUB_AGENT, 2, 6, Kind::Unary),
    m(agent::DELETE_SUB_AGENT, 2, 6, Kind::Unary),
    m(agent::LIST_SUB_AGENTS, 2, 6, Kind::Unary),
    m(agent::REPORT_BOUNDARY_LOGS, 2, 7, Kind::Unary),
    m(agent::UPDATE_APP_STATUS, 2, 8, Kind::Unary),
    m(agent::PUSH_CONTEXT_STATE, 2, 10, Kind::Unary),
    m(tailnet::STREAM_DERP_MAPS, 2, 0, Kind::ServerStream),
    m(tailnet::COORDINATE, 2, 0, Kind::Bidi),
    m(tailnet::POST_TELEMETRY, 2, 2, Kind::Unary),
    m(tailnet::REFRESH_RESUME_TOKEN, 2, 3, Kind::Unary),
    m(tailnet::WORKSPACE_UPDATES, 2, 3, Kind::ServerStream),
];

/// The method called `name`, if either service has one.
pub fn find(name: &str) -> Option<&'static Method> {
    METHODS.iter().find(|method| method.name == name)
}

/// Parses and validates a client's `version` query parameter as coderd's
/// `apiversion.Validate` does against [`CURRENT_VERSION`]: `major.minor`,
/// the same major, a minor no newer than ours. The error is coderd's
/// validation detail (BEHAVIOUR.md §1.2).
pub fn validate(version: &str) -> Result<Version, String> {
    let mut parts = version.split('.');
    let (Some(major), Some(minor), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("invalid version string: {version}"));
    };
    // Go's strconv.Atoi: an optional sign, then decimal digits.
    let atoi = |s: &str| -> Option<i64> {
        let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<i64>().ok()
    };
    let Some(major) = atoi(major) else {
        return Err(format!("invalid major version: {version}"));
    };
    let Some(minor) = atoi(minor) else {
        return Err(format!("invalid minor version: {version}"));
    };
    let current = CURRENT_VERSION;
    if major > i64::from(current.major) {
        return Err(format!(
            "server is at version {current}, behind requested major version {version}"
        ));
    }
    if major == i64::from(current.major) {
        if minor > i64::from(current.minor) {
            return Err(format!(
                "server is at version {current}, behind requested minor version {version}"
            ));
        }
        if let Ok(minor) = u16::try_from(minor) {
            return Ok(Version::new(current.major, minor));
        }
    }
    Err(format!("version {version} is no longer supported"))
}

#[cfg(test)]
mod validate_tests {
    use super::*;

    #[test]
    fn versions_are_validated_as_coderd_does() {
        assert_eq!(validate("2.0"), Ok(Version::new(2, 0)));
        assert_eq!(validate("2.11"), Ok(Version::new(2, 11)));
        assert_eq!(validate("2.10"), Ok(Version::new(2, 10)));
        assert_eq!(
            validate("2.12").unwrap_err(),
            "server is at version 2.11, behind requested minor version 2.12"
        );
        assert_eq!(
            validate("3.0").unwrap_err(),
            "server is at version 2.11, behind requested major version 3.0"
        );
        assert_eq!(
            validate("1.9").unwrap_err(),
            "version 1.9 is no longer supported"
        );
        assert_eq!(validate("2").unwrap_err(), "invalid version string: 2");
        assert_eq!(
            validate("2.1.1").unwrap_err(),
            "invalid version string: 2.1.1"
        );
        assert_eq!(validate("x.1").unwrap_err(), "invalid major version: x.1");
        assert_eq!(validate("2.y").unwrap_err(), "invalid minor version: 2.y");
        assert_eq!(
            validate("2.-1").unwrap_err(),
            "version 2.-1 is no longer supported"
        );
    }
}
