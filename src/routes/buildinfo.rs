//! `GET /api/v2/buildinfo` (Coder: `buildInfoHandler`): what agents and tools
//! read first to learn the server's version and API versions. No auth.
//!
//! `version` is the Coder release whose agent API appliance serves, with
//! appliance's own version as semver build metadata
//! (`v2.35.1+appliance.0.1.0`), so clients comparing versions treat it as
//! that release: log shippers use `/me/rpc` on ≥ 2.9, and Coder's CLI does
//! not warn about a version mismatch with that release's agent.

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::error::json_response;
use crate::app::App;
use crate::rpc::proto::methods::CURRENT_VERSION;
use crate::sdk;

/// The Coder release whose agent API (2.11) and behaviour appliance follows.
pub const CODER_VERSION: &str = "v2.35.1";

/// The provisioner API version coderd 2.35 reports (appliance runs no
/// provisioners; reported for clients that parse it).
const PROVISIONER_API_VERSION: &str = "1.11";

pub fn routes(app: &App) -> BoxedFilter<(Response,)> {
    let body = build_info(app);
    warp::path!("api" / "v2" / "buildinfo")
        .and(warp::get())
        .map(move || json_response(StatusCode::OK, &body))
        .boxed()
}

fn build_info(app: &App) -> sdk::BuildInfoResponse {
    let access_url = app.config.access_url.clone();
    sdk::BuildInfoResponse {
        external_url: "https://github.com/coder/coder/releases/tag/".to_owned() + CODER_VERSION,
        version: format!("{CODER_VERSION}+appliance.{}", env!("CARGO_PKG_VERSION")),
        // A stable id per deployment: derived from where it is reached.
        deployment_id: uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, access_url.as_bytes())
            .to_string(),
        dashboard_url: access_url,
        telemetry: false,
        workspace_proxy: false,
        agent_api_version: CURRENT_VERSION.to_string(),
        provisioner_api_version: PROVISIONER_API_VERSION.to_owned(),
        upgrade_message: String::new(),
    }
}
