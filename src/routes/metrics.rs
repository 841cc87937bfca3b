//! `GET /metrics`: Prometheus text exposition (no Coder counterpart).
//!
//! Open unless `metrics.token` is set, then `Authorization: Bearer <token>`
//! is required (401 in Coder's error shape otherwise); `metrics.enabled =
//! false` answers as for an unknown route. Live agents and the database size
//! are read at scrape time, off the executor.

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::filters::with_app;
use crate::app::App;
use crate::app::metrics::Denied;
use crate::routes::error::{ApiError, respond};
use crate::store;

pub fn routes(app: &App) -> BoxedFilter<(Response,)> {
    warp::path!("metrics")
        .and(warp::get())
        .and(warp::header::optional::<String>("authorization"))
        .and(with_app(app))
        .then(|authorization: Option<String>, app: App| async move {
            respond(scrape(app, authorization).await)
        })
        .boxed()
}

async fn scrape(app: App, authorization: Option<String>) -> Result<Response, ApiError> {
    match app.metrics.check_access(authorization.as_deref()) {
        Ok(()) => {}
        Err(Denied::Disabled) => return Err(ApiError::not_found("Route not found.")),
        Err(Denied::Unauthorized) => {
            return Err(ApiError::unauthorized("Metrics token required.").detail(
                "Send the token configured as metrics.token in an \"Authorization: Bearer\" header.",
            ));
        }
    }
    let path = app.store.path().to_path_buf();
    let (agents, bytes) = app
        .store
        .read_async(move |c| {
            // The file size is not worth failing the scrape over.
            Ok((
                store::stats::live_agents(c),
                store::stats::file_bytes(&path),
            ))
        })
        .await?;
    let agents = agents
        .map_err(|e| tracing::error!(error = %e, "reading live agents for /metrics"))
        .ok();
    let mut resp = Response::new(
        app.metrics
            .render(
                agents,
                bytes,
                (
                    app.connections.len(),
                    app.coordinator.peer_count(),
                    app.dialer.tunnels(),
                ),
                app.derp.stats(),
            )
            .into(),
    );
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(resp)
}
