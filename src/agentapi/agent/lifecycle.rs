//! UpdateStartup and UpdateLifecycle (coder/coder:coderd/agentapi/lifecycle.go;
//! CONNECTIVITY.md §1.5 items 3–4, §1.6).
//!
//! UpdateStartup refuses a version that is not semver with a leading `v`
//! (Go's `golang.org/x/mod/semver.IsValid`, which also takes the shorthands
//! `v1` and `v1.2`: [`valid_semver`]) and an unknown subsystem, then stores
//! the version, the expanded directory, the subsystems (deduplicated, in
//! the order sent) and the connection's API version. UpdateLifecycle
//! refuses an unknown state, takes an unset `changed_at` as now, and stores
//! the state with `started_at`/`ready_at` as coderd sets them
//! (`store::agent_rpc::update_lifecycle`). Both echo the request.

use super::{store_error, time_of, timestamp};
use crate::agentapi::Session;
use crate::rpc::drpc::RpcError;
use crate::rpc::proto::agent::lifecycle::State;
use crate::rpc::proto::agent::startup::Subsystem;
use crate::rpc::proto::agent::{Lifecycle, Startup, UpdateLifecycleRequest, UpdateStartupRequest};
use crate::store;

/// The longest version string stored (upstream's column is unbounded text).
pub const MAX_VERSION_BYTES: usize = 256;
/// Upstream's `expanded_directory varchar(4096)`.
pub const MAX_DIRECTORY_BYTES: usize = 4096;

/// Whether `v` is a semantic version with a leading `v`, as Go's
/// `semver.IsValid`: `vMAJOR[.MINOR[.PATCH[-PRERELEASE][+BUILD]]]`, numbers
/// without leading zeros, prerelease and build only after a full
/// `MAJOR.MINOR.PATCH`.
pub fn valid_semver(v: &str) -> bool {
    let Some(rest) = v.strip_prefix('v') else {
        return false;
    };
    let (core, build) = match rest.split_once('+') {
        Some((core, build)) => (core, Some(build)),
        None => (rest, None),
    };
    let (core, pre) = match core.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (core, None),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    if numbers.is_empty() || numbers.len() > 3 || !numbers.iter().all(|n| number(n)) {
        return false;
    }
    if (pre.is_some() || build.is_some()) && numbers.len() != 3 {
        return false;
    }
    let idents = |s: &str, numeric_rule: bool| {
        s.split('.').all(|id| {
            !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && (!numeric_rule || !id.bytes().all(|b| b.is_ascii_digit()) || number(id))
        })
    };
    pre.is_none_or(|p| idents(p, true)) && build.is_none_or(|b| idents(b, false))
}

/// Digits without a leading zero (or exactly `0`).
fn number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
}

fn subsystem_name(value: i32) -> Option<&'static str> {
    match Subsystem::try_from(value) {
        Ok(Subsystem::Envbox) => Some("envbox"),
        Ok(Subsystem::Envbuilder) => Some("envbuilder"),
        Ok(Subsystem::Exectrace) => Some("exectrace"),
        _ => None,
    }
}

pub async fn update_startup(
    session: &Session,
    req: UpdateStartupRequest,
) -> Result<Startup, RpcError> {
    let startup = req.startup.unwrap_or_default();
    if !valid_semver(&startup.version) || startup.version.len() > MAX_VERSION_BYTES {
        return Err(RpcError::message(format!(
            "invalid agent semver version {:?}",
            startup.version
        )));
    }
    if startup.expanded_directory.len() > MAX_DIRECTORY_BYTES {
        return Err(RpcError::message(format!(
            "expanded directory of {} bytes is longer than {MAX_DIRECTORY_BYTES}",
            startup.expanded_directory.len()
        )));
    }
    let mut subsystems: Vec<&'static str> = Vec::new();
    for &s in &startup.subsystems {
        let name = subsystem_name(s)
            .ok_or_else(|| RpcError::message(format!("invalid agent subsystem {s}")))?;
        if !subsystems.contains(&name) {
            subsystems.push(name);
        }
    }
    let agent_id = session.agent.id;
    let api_version = session.version.to_string();
    let (version, directory) = (startup.version.clone(), startup.expanded_directory.clone());
    session
        .app
        .store
        .write_async(move |tx| {
            store::agent_rpc::update_startup(
                tx,
                agent_id,
                &version,
                &directory,
                &subsystems,
                &api_version,
                store::now(),
            )
        })
        .await
        .map_err(|e| store_error("update workspace agent startup", e))?;
    Ok(startup)
}

/// The column value of a lifecycle state; `None` for unspecified or unknown.
pub fn state_name(value: i32) -> Option<&'static str> {
    Some(match State::try_from(value).ok()? {
        State::Unspecified => return None,
        State::Created => "created",
        State::Starting => "starting",
        State::StartTimeout => "start_timeout",
        State::StartError => "start_error",
        State::Ready => "ready",
        State::ShuttingDown => "shutting_down",
        State::ShutdownTimeout => "shutdown_timeout",
        State::ShutdownError => "shutdown_error",
        State::Off => "off",
    })
}

pub async fn update_lifecycle(
    session: &Session,
    req: UpdateLifecycleRequest,
) -> Result<Lifecycle, RpcError> {
    let mut lifecycle = req.lifecycle.unwrap_or_default();
    let state = state_name(lifecycle.state)
        .ok_or_else(|| RpcError::message(format!("unknown lifecycle state {}", lifecycle.state)))?;
    let now = store::now();
    let changed_at = match time_of(lifecycle.changed_at.as_ref()) {
        Some(t) => t,
        None => {
            lifecycle.changed_at = Some(timestamp(now));
            now
        }
    };
    let agent_id = session.agent.id;
    session
        .app
        .store
        .write_async(move |tx| {
            store::agent_rpc::update_lifecycle(tx, agent_id, state, changed_at, now)
        })
        .await
        .map_err(|e| store_error("update workspace agent lifecycle state", e))?;
    Ok(lifecycle)
}

#[cfg(test)]
mod tests {
    use super::valid_semver;

    #[test]
    fn semver_as_go_checks_it() {
        for ok in [
            "v1",
            "v1.2",
            "v1.2.3",
            "v0.0.0",
            "v2.16.0-rc.1",
            "v2.16.0+abc.def",
            "v2.16.0-devel+4a1b2c3",
            "v1.2.3-0a.1",
        ] {
            assert!(valid_semver(ok), "{ok}");
        }
        for bad in [
            "",
            "1.2.3",
            "v",
            "v1.",
            "v01.2.3",
            "v1.2.3.4",
            "v1.2-rc1",
            "v1.2.3-",
            "v1.2.3-01",
            "v1.2.3+",
            "v1.2.3-a..b",
            "v1.2.3-a_b",
            "V1.2.3",
            "v1.2.x",
        ] {
            assert!(!valid_semver(bad), "{bad}");
        }
    }
}
