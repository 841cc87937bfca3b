//! The HTTP server itself: warp serving the routing table on a bound
//! listener until the shutdown future resolves.

use std::future::Future;

use tokio::net::TcpListener;

use crate::app::App;

/// Serves `routes(app)` on `listener`; when `shutdown` resolves, stops
/// accepting and returns once in-flight requests have finished.
pub(crate) async fn serve(
    listener: TcpListener,
    app: &App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    warp::serve(super::routes(app))
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
}
