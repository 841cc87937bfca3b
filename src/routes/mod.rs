//! The HTTP layer: the routing table, `serve` and `error`; the only code that
//! knows warp, hyper and HTTP statuses.
//!
//! Each resource file starts with a `routes(&App)` function listing its routes
//! (path and method, then extractors, then `.then(handler)`), followed by its
//! handlers as plain async functions returning `Result<_, ApiError>`.

mod agent_conn;
mod agents;
mod app_status;
mod bin;
mod buildinfo;
mod coordinate;
mod derp;
pub(crate) mod error;
mod external_auth;
mod filters;
mod gitsshkey;
mod health;
mod instance_identity;
mod log_sources;
mod logs;
mod metrics;
mod pty;
mod reach;
mod reinit;
mod rpc;
mod serve;
mod session;
mod tailnet;
mod web;
mod web_admin;
mod web_auth;
mod web_pages;

pub(crate) use serve::serve;

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;

use crate::app::App;
use crate::app::metrics::OTHER_ROUTE;

/// One route: its path template (`{name}` stands for any one non-empty
/// segment, as the routes' `String` parameters take it) and the methods it
/// answers, as `Allow` lists them.
#[derive(Debug)]
pub struct Route {
    pub template: &'static str,
    pub allow: &'static str,
}

impl Route {
    fn allows(&self, method: &Method) -> bool {
        self.allow.split(", ").any(|m| m == method.as_str())
    }
}

/// Every route the `routes()` functions below serve. It names the label
/// `/metrics` counts a request under, and the `Allow` of a 405. A path served
/// but missing here is counted as `other` and logged as a bug (see
/// `record`); tests/it/wire.rs asks every route with every method.
pub const ROUTES: &[Route] = &[
    Route {
        template: "/healthz",
        allow: "GET, HEAD",
    },
    Route {
        template: "/metrics",
        allow: "GET",
    },
    Route {
        template: "/api/v2/workspaceagents/{workspaceagent}",
        allow: "GET",
    },
    Route {
        template: "/api/v2/workspaceagents/{workspaceagent}/logs",
        allow: "GET",
    },
    Route {
        template: "/api/v2/workspaceagents/{workspaceagent}/startup-logs",
        allow: "GET",
    },
    Route {
        template: "/api/v2/workspaceagents/aws-instance-identity",
        allow: "POST",
    },
    Route {
        template: "/api/v2/workspaceagents/azure-instance-identity",
        allow: "POST",
    },
    Route {
        template: "/api/v2/workspaceagents/google-instance-identity",
        allow: "POST",
    },
    Route {
        template: "/api/v2/workspaceagents/me/log-source",
        allow: "POST",
    },
    Route {
        template: "/api/v2/workspaceagents/me/logs",
        allow: "PATCH",
    },
    Route {
        template: "/api/v2/workspaceagents/me/app-status",
        allow: "PATCH",
    },
    Route {
        template: "/api/v2/workspaceagents/me/external-auth",
        allow: "GET",
    },
    Route {
        template: "/api/v2/workspaceagents/me/gitauth",
        allow: "GET",
    },
    Route {
        template: "/api/v2/workspaceagents/me/gitsshkey",
        allow: "GET",
    },
    Route {
        template: "/api/v2/workspaceagents/me/reinit",
        allow: "GET",
    },
    Route {
        template: "/api/v2/workspaceagents/me/rpc",
        allow: "GET",
    },
    Route {
        template: "/api/v2/buildinfo",
        allow: "GET",
    },
    Route {
        template: "/api/v2/derp-map",
        allow: "GET",
    },
    Route {
        template: "/api/v2/tailnet",
        allow: "GET",
    },
    Route {
        template: "/api/v2/workspaceagents/{workspaceagent}/coordinate",
        allow: "GET",
    },
    Route {
        template: "/api/v2/workspaceagents/connection",
        allow: "GET",
    },
    Route {
        template: "/api/v2/workspaceagents/{workspaceagent}/connection",
        allow: "GET",
    },
    Route {
        template: "/api/v2/workspaceagents/{workspaceagent}/listening-ports",
        allow: "GET",
    },
    Route {
        template: "/api/v2/workspaceagents/{workspaceagent}/containers",
        allow: "GET",
    },
    Route {
        template: "/api/v2/workspaceagents/{workspaceagent}/containers/watch",
        allow: "GET",
    },
    Route {
        template: "/api/v2/workspaceagents/{workspaceagent}/containers/devcontainers/{devcontainer}",
        allow: "DELETE",
    },
    Route {
        template: "/api/v2/workspaceagents/{workspaceagent}/containers/devcontainers/{devcontainer}/recreate",
        allow: "POST",
    },
    Route {
        template: "/api/v2/workspaceagents/{workspaceagent}/pty",
        allow: "GET",
    },
    Route {
        template: "/api/v2/applications/reconnecting-pty-signed-token",
        allow: "POST",
    },
    Route {
        template: "/derp",
        allow: "GET",
    },
    Route {
        template: "/derp/latency-check",
        allow: "GET",
    },
    Route {
        template: "/external-auth/{externalauth}",
        allow: "GET",
    },
    Route {
        template: "/external-auth/{externalauth}/callback",
        allow: "GET",
    },
    Route {
        template: "/bin/{name}",
        allow: "GET, HEAD",
    },
    // The dashboard (routes/web.rs).
    Route {
        template: "/",
        allow: "GET",
    },
    Route {
        template: "/login",
        allow: "GET, POST",
    },
    Route {
        template: "/login/link",
        allow: "GET, POST",
    },
    Route {
        template: "/logout",
        allow: "POST",
    },
    Route {
        template: "/workspaces",
        allow: "GET",
    },
    Route {
        template: "/workspaces/{owner}/{workspace}",
        allow: "GET",
    },
    Route {
        template: "/agents/{workspaceagent}",
        allow: "GET",
    },
    Route {
        template: "/external-auth",
        allow: "GET",
    },
    Route {
        template: "/external-auth/{externalauth}/unlink",
        allow: "POST",
    },
    Route {
        template: "/gitsshkey",
        allow: "GET",
    },
    Route {
        template: "/admin/users",
        allow: "GET, POST",
    },
    Route {
        template: "/admin/keys",
        allow: "GET, POST",
    },
    Route {
        template: "/admin/keys/{key}/revoke",
        allow: "POST",
    },
    Route {
        template: "/static/{name}",
        allow: "GET",
    },
];

/// The route templates, for the metrics.
pub fn templates() -> impl Iterator<Item = &'static str> {
    ROUTES.iter().map(|r| r.template)
}

/// Every route, the rejection handler, and per-request logging.
pub fn routes(app: &App) -> BoxedFilter<(Response,)> {
    let counters = app.metrics.clone();
    method_not_allowed()
        .or(health::routes())
        .unify()
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
        .or(rpc::routes(app))
        .unify()
        .or(buildinfo::routes(app))
        .unify()
        .or(bin::routes(app))
        .unify()
        .or(tailnet::routes(app))
        .unify()
        .or(coordinate::routes(app))
        .unify()
        .or(derp::routes(app))
        .unify()
        .or(logs::routes(app))
        .unify()
        .or(reach::routes(app))
        .unify()
        .or(pty::routes(app))
        .unify()
        .or(agents::routes(app))
        .unify()
        .or(web::routes(app))
        .unify()
        .recover(error::recover)
        .unify()
        .with(warp::log::custom(move |info: warp::log::Info<'_>| {
            let route = route_template(info.path());
            counters.record_request(route, info.status().as_u16(), info.elapsed());
            if route == OTHER_ROUTE && info.status() != StatusCode::NOT_FOUND {
                tracing::error!(
                    status = info.status().as_u16(),
                    path = info.path(),
                    "a path outside routes::ROUTES was served: add its template there"
                );
            }
            log_request(info)
        }))
        .with(warp::trace(|info| {
            tracing::info_span!("request", method = %info.method(), route = %route_template(info.path()))
        }))
        .map(warp::Reply::into_response)
        .boxed()
}

/// A path that is a route, asked with a method the route does not answer:
/// Coder's 405 with `Allow`, before any route runs. (Otherwise a path such as
/// `/workspaceagents/aws-instance-identity`, which is also
/// `/workspaceagents/{workspaceagent}` to the routes, would get that route's
/// answer to a GET: a 400 about the id.) Every other request passes on.
fn method_not_allowed() -> BoxedFilter<(Response,)> {
    warp::method()
        .and(warp::path::full())
        .and_then(|method: Method, path: warp::path::FullPath| async move {
            match route_of(path.as_str()) {
                Some(route) if !route.allows(&method) => Ok(error::method_not_allowed(route.allow)),
                _ => Err(warp::reject::not_found()),
            }
        })
        .boxed()
}

/// A path's segments as warp's path filters see them: after the leading `/`,
/// with one trailing `/` ignored.
fn segments(path: &str) -> Option<std::str::Split<'_, char>> {
    let rest = path.strip_prefix('/')?;
    Some(rest.strip_suffix('/').unwrap_or(rest).split('/'))
}

/// Whether `path` fits `template`; if so, which of its segments are literal,
/// one bit each, the first segment highest (so that of two templates a path
/// fits, the greater has a literal segment where the other first has a
/// parameter: Coder's router prefers it).
fn fit(template: &str, path: &str) -> Option<u64> {
    let mut want = segments(template)?;
    let mut got = segments(path)?;
    let mut literal = 0u64;
    for _ in 0..64 {
        literal <<= 1;
        match (want.next(), got.next()) {
            (None, None) => return Some(literal),
            (Some(w), Some(g)) if w.starts_with('{') && !g.is_empty() => {}
            (Some(w), Some(g)) if w == g => literal |= 1,
            _ => return None,
        }
    }
    None
}

/// The route a path is for: of the templates it fits, the one with a literal
/// segment where the others have a parameter.
fn route_of(path: &str) -> Option<&'static Route> {
    ROUTES
        .iter()
        .filter_map(|r| fit(r.template, path).map(|literal| (literal, r)))
        .max_by_key(|(literal, _)| *literal)
        .map(|(_, r)| r)
}

/// The template of the route a path is for, or `other`: what log lines and
/// metrics group requests by (never the path itself, which carries ids and
/// anything a client makes up).
pub fn route_template(path: &str) -> &'static str {
    route_of(path).map_or(OTHER_ROUTE, |r| r.template)
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
    use super::*;

    #[test]
    fn templates_hide_ids() {
        assert_eq!(
            route_template("/api/v2/workspaceagents/3b579bf4-1ed8-4b99-87a8-e9a1e3410410/logs"),
            "/api/v2/workspaceagents/{workspaceagent}/logs"
        );
        assert_eq!(route_template("/healthz"), "/healthz");
        assert_eq!(
            route_template("/healthz/"),
            "/healthz",
            "as warp matches it"
        );
        assert_eq!(
            route_template("/api/v2/workspaceagents/me/logs"),
            "/api/v2/workspaceagents/me/logs"
        );
        assert_eq!(
            route_template("/external-auth/github/callback"),
            "/external-auth/{externalauth}/callback"
        );
    }

    #[test]
    fn a_path_that_is_no_route_is_other_whatever_it_carries() {
        for path in [
            "",
            "//healthz",
            "/healthz//",
            "/api/v2/workspaceagents",
            "/api/v2/workspaceagents/",
            "/api/v2/workspaceagents//logs",
            "/api/v2/workspaceagents/%7Bx%7D/logs/more",
            "/api/v2/workspaceagents/me/nope",
            "/API/v2/workspaceagents/me/logs",
            "/api/v2/workspace%61gents/me/logs",
        ] {
            assert_eq!(route_template(path), OTHER_ROUTE, "{path:?}");
        }
        // Any segment fills a parameter: the label is still the template.
        for id in ["%7B3b579bf4-1ed8-4b99-87a8-e9a1e3410410%7D", "me", "x"] {
            assert_eq!(
                route_template(&format!("/api/v2/workspaceagents/{id}")),
                "/api/v2/workspaceagents/{workspaceagent}"
            );
        }
    }

    #[test]
    fn literal_segments_win_over_parameters() {
        for cloud in ["aws", "azure", "google"] {
            let path = format!("/api/v2/workspaceagents/{cloud}-instance-identity");
            let route = route_of(&path).expect("a route");
            assert_eq!(route.template, path);
            assert!(route.allows(&Method::POST) && !route.allows(&Method::GET));
        }
    }

    #[test]
    fn the_table_is_well_formed() {
        let mut seen = std::collections::BTreeSet::new();
        for r in ROUTES {
            assert!(seen.insert(r.template), "{} twice", r.template);
            assert_eq!(route_of(r.template).map(|x| x.template), Some(r.template));
            assert!(!r.allow.is_empty());
            for m in r.allow.split(", ") {
                assert!(m.parse::<Method>().is_ok(), "{m} in {r:?}");
            }
            assert_ne!(r.template, OTHER_ROUTE);
        }
    }
}
