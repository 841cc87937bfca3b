//! `coder.agent.v2.Agent`: what coderd answers an agent
//! (CONNECTIVITY.md §1.4–§1.6, coder/coder:coderd/agentapi), on the store and
//! the log writer.
//!
//! - `manifest`: GetManifest.
//! - `lifecycle`: UpdateStartup (semver, subsystems) and UpdateLifecycle
//!   (`started_at`/`ready_at`).
//! - `logs`: BatchCreateLogs (through `App::logs`, the one writer of agent
//!   logs), BatchUpdateMetadata, BatchUpdateAppHealths.
//! - `app_status`: UpdateAppStatus, shared with `PATCH /me/app-status`.
//! - `sub_agents`: ListSubAgents, and the create/delete logic whose RPCs
//!   cannot be decoded yet.
//! - here: the version gate, request limits, and the RPCs that only accept or
//!   answer constants (UpdateStats, banners, resource monitoring, scripts,
//!   connection reports, boundary logs, PushContextState).
//!
//! Every method is registered through [`add`], which answers a method newer
//! than the connection's API version as an unknown one (code 12, the text
//! drpc's server uses), as a server of that version would. Errors are plain
//! DRPC errors (code 0) with coderd's texts where the design gives them;
//! nothing a peer sends panics. Requests with repeated fields are counted on
//! the wire ([`count_field`]) before they are decoded, and refused above a
//! cap, so a 4 MiB request never grows into hundreds of MB of structs.
//!
//! Requests the design gives no field numbers for are decoded as `()` (every
//! field skipped; the bytes must still be valid protobuf):
//! PushResourcesMonitoringUsage, ReportBoundaryLogs, ListSubAgents,
//! CreateSubAgent, DeleteSubAgent and PushContextState. UpdateStats' request
//! is decoded as `()` too: stats are not stored.

// Nothing outside the tests calls `agentapi::router()` until the `/me/rpc`
// transport (`routes`) serves it.

pub mod app_status;
pub mod lifecycle;
pub mod logs;
pub mod manifest;
pub mod sub_agents;

use std::future::Future;
use std::time::Duration as StdDuration;

use bytes::Bytes;
use prost::Message;
use prost::encoding::{WireType, decode_key, decode_varint};
use time::OffsetDateTime;
use uuid::Uuid;

use super::Session;
use crate::rpc::drpc::{Call, Router, RpcError};
use crate::rpc::proto::agent as pb;
use crate::rpc::proto::methods::{self, agent as rpc};
use crate::rpc::proto::{Duration, Timestamp};
use crate::store::StoreError;

/// GetResourcesMonitoringConfiguration: coderd's datapoints per push and
/// collection interval.
pub const MONITORING_DATAPOINTS: i32 = 20;
pub const MONITORING_INTERVAL_SECONDS: i32 = 10;

/// The largest request accepted by a method without repeated fields of
/// structs (startup, lifecycle, app status, script timing, connection
/// report). Their legitimate requests are a few KiB at most.
pub const MAX_SMALL_REQUEST: usize = 64 << 10;

/// Adds the Agent service's methods.
pub fn register(router: Router<Session>) -> Router<Session> {
    let r = add(router, rpc::GET_MANIFEST, |s, req| async move {
        decode_small::<pb::GetManifestRequest>(&req)?;
        manifest::get_manifest(&s).await.map(encode)
    });
    let r = add(r, rpc::GET_SERVICE_BANNER, |_, req| async move {
        decode_small::<pb::GetServiceBannerRequest>(&req)?;
        Ok(encode(pb::ServiceBanner::default()))
    });
    let r = add(r, rpc::UPDATE_STATS, |s, req| async move {
        // Stats are accepted and dropped; the first call only asks for the
        // interval (`agent.stats_report_interval`).
        decode::<()>(&req)?;
        Ok(encode(pb::UpdateStatsResponse {
            report_interval: Some(duration(s.app.config.agent.stats_report_interval)),
        }))
    });
    let r = add(r, rpc::UPDATE_LIFECYCLE, |s, req| async move {
        let req = decode_small::<pb::UpdateLifecycleRequest>(&req)?;
        lifecycle::update_lifecycle(&s, req).await.map(encode)
    });
    let r = add(r, rpc::BATCH_UPDATE_APP_HEALTHS, |s, req| async move {
        logs::batch_update_app_healths(&s, &req).await.map(encode)
    });
    let r = add(r, rpc::UPDATE_STARTUP, |s, req| async move {
        let req = decode_small::<pb::UpdateStartupRequest>(&req)?;
        lifecycle::update_startup(&s, req).await.map(encode)
    });
    let r = add(r, rpc::BATCH_UPDATE_METADATA, |s, req| async move {
        logs::batch_update_metadata(&s, &req).await.map(encode)
    });
    let r = add(r, rpc::BATCH_CREATE_LOGS, |s, req| async move {
        logs::batch_create_logs(&s, &req).await.map(encode)
    });
    let r = add(r, rpc::GET_ANNOUNCEMENT_BANNERS, |_, req| async move {
        decode_small::<pb::GetAnnouncementBannersRequest>(&req)?;
        Ok(encode(pb::GetAnnouncementBannersResponse::default()))
    });
    let r = add(r, rpc::SCRIPT_COMPLETED, |s, req| async move {
        let req = decode_small::<pb::WorkspaceAgentScriptCompletedRequest>(&req)?;
        script_completed(&s, req).await.map(encode)
    });
    let r = add(
        r,
        rpc::GET_RESOURCES_MONITORING_CONFIGURATION,
        |_, req| async move {
            decode_small::<pb::GetResourcesMonitoringConfigurationRequest>(&req)?;
            Ok(encode(monitoring_configuration()))
        },
    );
    let r = add(
        r,
        rpc::PUSH_RESOURCES_MONITORING_USAGE,
        |_, req| async move {
            decode::<()>(&req)?;
            Ok(encode(pb::PushResourcesMonitoringUsageResponse::default()))
        },
    );
    let r = add(r, rpc::REPORT_CONNECTION, |s, req| async move {
        let req = decode_small::<pb::ReportConnectionRequest>(&req)?;
        report_connection(&s, req).map(encode)
    });
    let r = add(r, rpc::CREATE_SUB_AGENT, |s, req| async move {
        let req = decode_small::<pb::CreateSubAgentRequest>(&req)?;
        sub_agents::create_rpc(&s, req).await.map(encode)
    });
    let r = add(r, rpc::DELETE_SUB_AGENT, |s, req| async move {
        let req = decode_small::<pb::DeleteSubAgentRequest>(&req)?;
        sub_agents::delete_rpc(&s, req).await?;
        Ok(encode(()))
    });
    let r = add(r, rpc::LIST_SUB_AGENTS, |s, req| async move {
        decode::<()>(&req)?;
        sub_agents::list(&s).await.map(encode)
    });
    let r = add(r, rpc::REPORT_BOUNDARY_LOGS, |_, req| async move {
        decode::<()>(&req)?;
        Ok(encode(pb::ReportBoundaryLogsResponse::default()))
    });
    let r = add(r, rpc::UPDATE_APP_STATUS, |s, req| async move {
        let req = decode_small::<pb::UpdateAppStatusRequest>(&req)?;
        update_app_status(&s, req).await.map(encode)
    });
    add(r, rpc::PUSH_CONTEXT_STATE, |_, _| async move {
        // The agent's push loop stops cleanly on code 12 (§1.4).
        Err::<Vec<u8>, _>(RpcError::unimplemented(
            "PushContextState is not implemented",
        ))
    })
}

/// Registers `handler` under `name`, behind the version gate: a connection
/// whose API version predates the method gets drpc's unknown-method answer.
fn add<F, Fut>(router: Router<Session>, name: &'static str, handler: F) -> Router<Session>
where
    F: Fn(Session, Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<u8>, RpcError>> + Send + 'static,
{
    let method = methods::find(name);
    router.unary(name, move |session: Session, call: Call, request: Bytes| {
        let available = method.is_some_and(|m| m.available_in(session.version));
        let running = available.then(|| handler(session, request));
        async move {
            match running {
                Some(fut) => fut.await,
                None => Err(RpcError::unimplemented(format!(
                    "unknown rpc: {:?}",
                    call.rpc
                ))),
            }
        }
    })
}

fn encode(message: impl Message) -> Vec<u8> {
    message.encode_to_vec()
}

/// Decodes a request; bad bytes are a plain error naming the message.
pub(crate) fn decode<M: Message + Default>(request: &[u8]) -> Result<M, RpcError> {
    M::decode(request).map_err(|e| {
        let name = std::any::type_name::<M>();
        let name = name.rsplit("::").next().unwrap_or(name);
        RpcError::message(format!("invalid request: decode {name}: {e}"))
    })
}

/// [`decode`] for a method whose requests are small ([`MAX_SMALL_REQUEST`]).
pub(crate) fn decode_small<M: Message + Default>(request: &[u8]) -> Result<M, RpcError> {
    if request.len() > MAX_SMALL_REQUEST {
        return Err(RpcError::message(format!(
            "request of {} bytes is larger than the {MAX_SMALL_REQUEST} bytes accepted",
            request.len()
        )));
    }
    decode(request)
}

/// How many times top-level field `field` occurs in an encoded message,
/// read without decoding anything (the elements of a repeated message
/// field). Malformed bytes are an error.
pub fn count_field(mut buf: &[u8], field: u32) -> Result<usize, RpcError> {
    let bad = |e: &dyn std::fmt::Display| RpcError::message(format!("invalid request: {e}"));
    let mut n = 0;
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf).map_err(|e| bad(&e))?;
        if tag == field {
            n += 1;
        }
        let skip = match wire_type {
            WireType::Varint => {
                decode_varint(&mut buf).map_err(|e| bad(&e))?;
                0
            }
            WireType::SixtyFourBit => 8,
            WireType::ThirtyTwoBit => 4,
            WireType::LengthDelimited => {
                let len = decode_varint(&mut buf).map_err(|e| bad(&e))?;
                usize::try_from(len).unwrap_or(usize::MAX)
            }
            WireType::StartGroup | WireType::EndGroup => {
                return Err(bad(&"groups are not accepted"));
            }
        };
        if skip > buf.len() {
            return Err(bad(&"a field runs past the end of the message"));
        }
        buf = &buf[skip..];
    }
    Ok(n)
}

/// Refuses a request whose repeated field `field` (`what`) has more than
/// `max` elements, before it is decoded.
pub(crate) fn cap_elements(
    request: &[u8],
    field: u32,
    max: usize,
    what: &str,
) -> Result<(), RpcError> {
    let n = count_field(request, field)?;
    if n > max {
        return Err(RpcError::message(format!(
            "too many {what}: {n}, at most {max} per request"
        )));
    }
    Ok(())
}

/// A 16-byte UUID field; `what` names it in the error (coderd's
/// `parse <what>: invalid UUID (got N bytes)`).
pub(crate) fn parse_id(bytes: &[u8], what: &str) -> Result<Uuid, RpcError> {
    Uuid::from_slice(bytes).map_err(|_| {
        RpcError::message(format!(
            "parse {what}: invalid UUID (got {} bytes)",
            bytes.len()
        ))
    })
}

/// A store failure, as the agent sees it.
pub(crate) fn store_error(what: &str, e: StoreError) -> RpcError {
    tracing::warn!(error = %e, "agent rpc: {what}");
    RpcError::message(format!("{what}: {e}"))
}

pub(crate) fn duration(d: StdDuration) -> Duration {
    Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

pub(crate) fn seconds(s: i64) -> Duration {
    Duration {
        seconds: s,
        nanos: 0,
    }
}

/// A protobuf timestamp as a time; `None` for an unset or zero one, or one
/// out of range.
pub(crate) fn time_of(t: Option<&Timestamp>) -> Option<OffsetDateTime> {
    let t = t?;
    if t.seconds == 0 && t.nanos == 0 {
        return None;
    }
    let nanos = i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

pub(crate) fn timestamp(t: OffsetDateTime) -> Timestamp {
    Timestamp {
        seconds: t.unix_timestamp(),
        nanos: i32::try_from(t.nanosecond()).unwrap_or(0),
    }
}

fn monitoring_configuration() -> pb::GetResourcesMonitoringConfigurationResponse {
    use pb::get_resources_monitoring_configuration_response::Config;
    pb::GetResourcesMonitoringConfigurationResponse {
        config: Some(Config {
            num_datapoints: MONITORING_DATAPOINTS,
            collection_interval_seconds: MONITORING_INTERVAL_SECONDS,
        }),
        // Unset: no memory monitor, as coderd without one.
        memory: None,
        volumes: Vec::new(),
    }
}

/// ScriptCompleted: checked as coderd checks it (a timing with a start and an
/// end, in order) and kept as the script's last run, which GET agent shows as
/// the script's `exit_code` and `status`. A script id that is not one of this
/// agent's scripts is refused.
async fn script_completed(
    session: &Session,
    req: pb::WorkspaceAgentScriptCompletedRequest,
) -> Result<pb::WorkspaceAgentScriptCompletedResponse, RpcError> {
    let timing = req
        .timing
        .ok_or_else(|| RpcError::message("script timing is required"))?;
    let script_id = parse_id(&timing.script_id, "script id")?;
    let started_at = time_of(timing.start.as_ref())
        .ok_or_else(|| RpcError::message("script start time is required and cannot be zero"))?;
    let ended_at = time_of(timing.end.as_ref())
        .ok_or_else(|| RpcError::message("script end time is required and cannot be zero"))?;
    if started_at > ended_at {
        return Err(RpcError::message(
            "script start time cannot be after end time",
        ));
    }
    let stage = match pb::timing::Stage::try_from(timing.stage) {
        Ok(pb::timing::Stage::Start) => "start",
        Ok(pb::timing::Stage::Stop) => "stop",
        Ok(pb::timing::Stage::Cron) => "cron",
        Err(_) => {
            return Err(RpcError::message(format!(
                "unknown script stage {}",
                timing.stage
            )));
        }
    };
    let status = match pb::timing::Status::try_from(timing.status) {
        Ok(pb::timing::Status::Ok) => "ok",
        Ok(pb::timing::Status::ExitFailure) => "exit_failure",
        Ok(pb::timing::Status::TimedOut) => "timed_out",
        Ok(pb::timing::Status::PipesLeftOpen) => "pipes_left_open",
        Err(_) => {
            return Err(RpcError::message(format!(
                "unknown script status {}",
                timing.status
            )));
        }
    };
    let agent_id = session.agent.id;
    let exit_code = timing.exit_code;
    tracing::debug!(
        %agent_id,
        %script_id,
        stage,
        status,
        exit_code,
        seconds = (ended_at - started_at).as_seconds_f64(),
        "agent script completed"
    );
    session
        .app
        .store
        .write_async(move |tx| {
            let run = crate::store::agents::ScriptRun {
                started_at,
                ended_at,
                exit_code,
                stage,
                status,
            };
            crate::store::agents::record_script_run(tx, agent_id, script_id, &run)
        })
        .await
        .map_err(|e| match e {
            StoreError::NotFound => RpcError::message(format!(
                "insert workspace agent script timings into database: script {script_id} is not this agent's"
            )),
            e => store_error("insert workspace agent script timings into database", e),
        })?;
    Ok(pb::WorkspaceAgentScriptCompletedResponse::default())
}

/// ReportConnection: checked and logged at info (connection logs are not
/// stored).
fn report_connection(session: &Session, req: pb::ReportConnectionRequest) -> Result<(), RpcError> {
    let c = req.connection.unwrap_or_default();
    let id = parse_id(&c.id, "connection id")?;
    let action = match pb::connection::Action::try_from(c.action) {
        Ok(a @ (pb::connection::Action::Connect | pb::connection::Action::Disconnect)) => a,
        _ => {
            return Err(RpcError::message(format!(
                "unknown agent connection action {}",
                c.action
            )));
        }
    };
    let kind = pb::connection::Type::try_from(c.r#type).unwrap_or_default();
    tracing::info!(
        agent_id = %session.agent.id,
        workspace_id = %session.agent.workspace_id,
        connection_id = %id,
        ?action,
        r#type = ?kind,
        at = ?time_of(c.timestamp.as_ref()),
        ip = %c.ip,
        status_code = c.status_code,
        reason = c.reason.as_deref().unwrap_or(""),
        app_name = %c.app_name,
        "agent reported a connection"
    );
    Ok(())
}

/// UpdateAppStatus: the checks and write of `PATCH /me/app-status`
/// ([`app_status`]); the state is the proto enum instead of a string.
async fn update_app_status(
    session: &Session,
    req: pb::UpdateAppStatusRequest,
) -> Result<pb::UpdateAppStatusResponse, RpcError> {
    use pb::update_app_status_request::AppStatusState as S;
    let state = match S::try_from(req.state) {
        Ok(S::Working) => "working",
        Ok(S::Idle) => "idle",
        Ok(S::Complete) => "complete",
        Ok(S::Failure) => "failure",
        Err(_) => return Err(RpcError::message(format!("Invalid state: {}", req.state))),
    };
    app_status::update(
        &session.app,
        (*session.agent).clone(),
        req.slug,
        state,
        &req.message,
        req.uri,
    )
    .await
    .map(|_| pb::UpdateAppStatusResponse::default())
    .map_err(|e| match e {
        app_status::AppStatusError::Store(e) => store_error("insert workspace app status", e),
        e => RpcError::message(e.to_string()),
    })
}

#[cfg(test)]
mod tests;
