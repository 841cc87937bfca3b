//! `GET /healthz`: no credential, no database; answers while the process serves.

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

pub fn routes() -> BoxedFilter<(Response,)> {
    warp::path!("healthz")
        .and(warp::get().or(warp::head()).unify())
        .map(|| warp::reply::Reply::into_response("OK"))
        .boxed()
}
