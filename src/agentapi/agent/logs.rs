//! The batch RPCs: BatchCreateLogs, BatchUpdateMetadata and
//! BatchUpdateAppHealths. Each counts its repeated field on the wire
//! (`count_field`) and refuses a batch above its cap before decoding.
//!
//! - BatchCreateLogs goes through `App::logs`, the writer `PATCH /me/logs`
//!   uses, so followers see the lines and the same per-agent cap applies.
//!   As coderd's dRPC path: an empty batch is a no-op; an agent already
//!   overflowed gets `log_limit_exceeded` at once; a batch that would cross
//!   the cap is refused whole and answered `log_limit_exceeded` (not an
//!   error); an unknown level is stored as `info`; a nil source id means the
//!   agent's `External` source; client timestamps are ignored.
//! - BatchUpdateMetadata stores each result under its key, as coderd: only
//!   keys the manifest declares are stored (others are dropped silently); a
//!   value over [`MAX_METADATA_VALUE_BYTES`] is cut and its error says so; an
//!   error is cut at the same length; an unset `collected_at` is now; once
//!   the batch's keys add up to more than [`MAX_METADATA_KEYS_BYTES`], the
//!   remaining items are dropped and the call answers an error after storing
//!   the others.
//! - BatchUpdateAppHealths: every id must be an app of this agent with a
//!   health check, and every health a known one, before anything is written.

use super::{cap_elements, decode, parse_id, store_error, time_of};
use crate::agentapi::Session;
use crate::logs::ingest::{self, Outcome};
use crate::rpc::drpc::RpcError;
use crate::rpc::proto::agent::log::Level;
use crate::rpc::proto::agent::{
    AppHealth, BatchCreateLogsRequest, BatchCreateLogsResponse, BatchUpdateAppHealthRequest,
    BatchUpdateAppHealthResponse, BatchUpdateMetadataRequest, BatchUpdateMetadataResponse,
};
use crate::store::{self, agent_rpc};

/// Lines per BatchCreateLogs request. The agent sends at most 1 MiB of
/// output per batch; at its smallest a line costs it a few bytes of overhead.
pub const MAX_LOG_LINES: usize = 65_536;
/// Updates per BatchUpdateAppHealths request.
pub const MAX_APP_HEALTH_UPDATES: usize = 1024;
/// Items per BatchUpdateMetadata request.
pub const MAX_METADATA_ITEMS: usize = 1024;
/// coderd's `maxAllKeysLen`: the keys of one batch together.
pub const MAX_METADATA_KEYS_BYTES: usize = 6144;
/// coderd's `maxValueLen` (and `maxErrorLen`).
pub const MAX_METADATA_VALUE_BYTES: usize = 2048;

fn level_name(value: i32) -> &'static str {
    match Level::try_from(value) {
        Ok(Level::Trace) => "trace",
        Ok(Level::Debug) => "debug",
        Ok(Level::Warn) => "warn",
        Ok(Level::Error) => "error",
        // Older agents send no level.
        _ => "info",
    }
}

pub async fn batch_create_logs(
    session: &Session,
    request: &[u8],
) -> Result<BatchCreateLogsResponse, RpcError> {
    cap_elements(request, 2, MAX_LOG_LINES, "log lines")?;
    let req: BatchCreateLogsRequest = decode(request)?;
    let source = if req.log_source_id.is_empty() {
        None
    } else {
        let id = parse_id(&req.log_source_id, "log source id")?;
        (!id.is_nil()).then_some(id)
    };
    if req.logs.is_empty() {
        return Ok(BatchCreateLogsResponse::default());
    }
    let app = &session.app;
    let agent_id = session.agent.id;
    // coderd refuses every batch once the agent has overflowed.
    if session
        .logs_overflowed
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        return Ok(BatchCreateLogsResponse {
            log_limit_exceeded: true,
        });
    }
    let lines: Vec<_> = req
        .logs
        .iter()
        .map(|l| ingest::clean_line(level_name(l.level), &l.output))
        .collect();
    let count = lines.len();
    let bytes = lines.iter().map(|l| l.bytes).sum();
    match app.logs.submit(agent_id, source, lines).await {
        Ok(Outcome::Stored { .. }) => {
            app.metrics.logs_ingested(count, bytes);
            Ok(BatchCreateLogsResponse::default())
        }
        Ok(Outcome::OverCap { .. }) => {
            session
                .logs_overflowed
                .store(true, std::sync::atomic::Ordering::Relaxed);
            app.metrics.log_overflow();
            Ok(BatchCreateLogsResponse {
                log_limit_exceeded: true,
            })
        }
        Err(e) => Err(RpcError::message(format!(
            "insert workspace agent logs: {e}"
        ))),
    }
}

pub async fn batch_update_metadata(
    session: &Session,
    request: &[u8],
) -> Result<BatchUpdateMetadataResponse, RpcError> {
    cap_elements(request, 2, MAX_METADATA_ITEMS, "metadata items")?;
    let req: BatchUpdateMetadataRequest = decode(request)?;
    let now = store::now();
    let mut keys_bytes = 0usize;
    let mut results = Vec::with_capacity(req.metadata.len());
    for item in req.metadata {
        keys_bytes += item.key.len();
        if keys_bytes > MAX_METADATA_KEYS_BYTES {
            break;
        }
        let result = item.result.unwrap_or_default();
        let (mut value, mut error) = (result.value, result.error);
        if value.len() > MAX_METADATA_VALUE_BYTES {
            error = format!(
                "value of {} bytes exceeded {MAX_METADATA_VALUE_BYTES} bytes",
                value.len()
            );
            truncate(&mut value, MAX_METADATA_VALUE_BYTES);
        }
        truncate(&mut error, MAX_METADATA_VALUE_BYTES);
        results.push(agent_rpc::MetadataResult {
            key: item.key,
            value,
            error,
            collected_at: time_of(result.collected_at.as_ref()).unwrap_or(now),
        });
    }
    let agent_id = session.agent.id;
    if !results.is_empty() {
        session
            .app
            .store
            .write_async(move |tx| agent_rpc::update_metadata(tx, agent_id, &results))
            .await
            .map_err(|e| store_error("update workspace agent metadata", e))?;
    }
    if keys_bytes > MAX_METADATA_KEYS_BYTES {
        return Err(RpcError::message(format!(
            "metadata keys of {keys_bytes} bytes exceed {MAX_METADATA_KEYS_BYTES} bytes"
        )));
    }
    Ok(BatchUpdateMetadataResponse::default())
}

/// Cuts `s` to at most `max` bytes, at a character boundary.
fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

fn health_name(value: i32) -> Option<&'static str> {
    match AppHealth::try_from(value) {
        Ok(AppHealth::Disabled) => Some("disabled"),
        Ok(AppHealth::Initializing) => Some("initializing"),
        Ok(AppHealth::Healthy) => Some("healthy"),
        Ok(AppHealth::Unhealthy) => Some("unhealthy"),
        _ => None,
    }
}

pub async fn batch_update_app_healths(
    session: &Session,
    request: &[u8],
) -> Result<BatchUpdateAppHealthResponse, RpcError> {
    cap_elements(request, 1, MAX_APP_HEALTH_UPDATES, "app health updates")?;
    let req: BatchUpdateAppHealthRequest = decode(request)?;
    if req.updates.is_empty() {
        return Ok(BatchUpdateAppHealthResponse::default());
    }
    let mut updates = Vec::with_capacity(req.updates.len());
    for u in &req.updates {
        updates.push((parse_id(&u.id, "workspace app id")?, u.health));
    }
    let agent_id = session.agent.id;
    let checked = session
        .app
        .store
        .write_async(move |tx| {
            let apps = store::agents::apps(tx, agent_id)?;
            let mut set = Vec::with_capacity(updates.len());
            for (id, health) in updates {
                let Some(app) = apps.iter().find(|a| a.id == id) else {
                    return Ok(Err(format!("workspace app name {id} not found")));
                };
                if app.healthcheck_url.is_empty() {
                    return Ok(Err(format!(
                        "workspace app name {id} does not have healthchecks enabled"
                    )));
                }
                let Some(name) = health_name(health) else {
                    return Ok(Err(format!(
                        "unknown health status {health} for app {id} ({:?})",
                        app.slug
                    )));
                };
                set.push((id, name));
            }
            store::agent_rpc::set_app_healths(tx, agent_id, &set).map(Ok)
        })
        .await
        .map_err(|e| store_error("update workspace app health", e))?;
    checked.map_err(RpcError::message)?;
    Ok(BatchUpdateAppHealthResponse::default())
}
