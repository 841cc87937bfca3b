//! The HTTP layer: the routing table, `serve` and `error`; the only code that
//! knows warp, hyper and HTTP statuses.
//!
//! Each resource file starts with a `routes(&App)` function listing its routes
//! (path and method, then extractors, then `.then(handler)`), followed by its
//! handlers as plain async functions returning `Result<_, ApiError>`.

mod agents;
mod app_status;
pub(crate) mod error;
mod external_auth;
mod filters;
mod gitsshkey;
mod health;
mod instance_identity;
mod log_sources;
mod logs;
mod metrics;
mod reinit;
mod serve;
mod session;

pub(crate) use serve::serve;

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use crate::app::App;

/// Every route, the rejection handler, and per-request logging.
pub fn routes(app: &App) -> BoxedFilter<(Response,)> {
    let counters = app.metrics.clone();
    health::routes()
        .or(metrics::routes(app))
        .unify()
        .or(instance_identity::routes(app))
        .unify()
        .or(log_sources::routes(app))
        .unify()
        .or(app_status::routes(app))
        .unify()
        .or(gitsshkey::routes(app))
        .unify()
        .or(external_auth::routes(app))
        .unify()
        .or(reinit::routes(app))
        .unify()
        .or(logs::routes(app))
        .unify()
        .or(agents::routes(app))
        .unify()
        .recover(error::recover)
        .unify()
        .with(warp::log::custom(move |info: warp::log::Info<'_>| {
            counters.record_request(
                &route_template(info.path()),
                info.status().as_u16(),
                info.elapsed(),
            );
            log_request(info)
        }))
        .with(warp::trace(|info| {
            tracing::info_span!("request", method = %info.method(), route = %route_template(info.path()))
        }))
        .map(warp::Reply::into_response)
        .boxed()
}

/// The route template of a path: ids replaced by the parameter they fill, so
/// log lines and metrics group by route, not by agent.
pub fn route_template(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut segments = path.split('/').peekable();
    let mut previous = "";
    while let Some(seg) = segments.next() {
        if uuid::Uuid::parse_str(seg).is_ok() {
            out.push_str(match previous {
                "workspaceagents" => "{workspaceagent}",
                _ => "{id}",
            });
        } else {
            out.push_str(seg);
        }
        previous = seg;
        if segments.peek().is_some() {
            out.push('/');
        }
    }
    out
}

/// One line per request, inside the request span (which carries the method
/// and route template): status and latency. Never the query string (it may
/// carry a session token). As Coder's request logger: `debug` below 500 (the
/// events that matter, such as sign-ins, log at `info` themselves; a busy
/// server does not spend its time writing access lines), `error` for 5xx.
fn log_request(info: warp::log::Info<'_>) {
    let status = info.status().as_u16();
    let latency_us = info.elapsed().as_micros() as u64;
    if status >= 500 {
        tracing::error!(status, latency_us, "served");
    } else {
        tracing::debug!(status, latency_us, "served");
    }
}

#[cfg(test)]
mod tests {
    use super::route_template;

    #[test]
    fn templates_hide_ids() {
        assert_eq!(
            route_template("/api/v2/workspaceagents/3b579bf4-1ed8-4b99-87a8-e9a1e3410410/logs"),
            "/api/v2/workspaceagents/{workspaceagent}/logs"
        );
        assert_eq!(route_template("/healthz"), "/healthz");
        assert_eq!(
            route_template("/api/v2/workspaceagents/me/logs"),
            "/api/v2/workspaceagents/me/logs"
        );
    }
}
