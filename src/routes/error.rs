//! `ApiError`: every failure a handler can answer with, rendered as Coder's
//! `codersdk.Response` JSON; and the one rejection handler for what warp itself
//! refuses (unknown routes, oversized or malformed bodies).
//!
//! Handlers return `Result<_, ApiError>` and are attached with `.then`, so
//! application errors never travel as warp rejections (which would fall
//! through to other routes and turn into 405s). Internal errors are logged here
//! with their cause and answered with a generic message.

use std::convert::Infallible;

use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Rejection, Reply};

use crate::sdk;
use crate::sign_in::agent_select::Refusal;
use crate::store::StoreError;

/// The largest request body accepted, as upstream (4 MiB).
pub const MAX_BODY_BYTES: u64 = 4 << 20;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: sdk::Response,
    /// Ask the client to close the connection after this answer (an error
    /// sent before the request body was read).
    pub close: bool,
    /// How the body is written: Coder's JSON almost everywhere.
    pub format: Format,
}

/// How an [`ApiError`] is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `codersdk.Response` JSON.
    Json,
    /// Coder's static HTML error page (`site.RenderStaticErrorPage`), as the
    /// workspace-apps proxy answers the web terminal: `body.message` is the
    /// title, `body.detail` the description.
    Page,
    /// Go's `http.Error`: `body.message` as one line of plain text.
    Text,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: sdk::Response {
                message: message.into(),
                detail: None,
                validations: Vec::new(),
            },
            close: false,
            format: Format::Json,
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> ApiError {
        self.body.detail = Some(detail.into());
        self
    }

    pub fn validation(mut self, field: impl Into<String>, detail: impl Into<String>) -> ApiError {
        self.body.validations.push(sdk::ValidationError {
            field: field.into(),
            detail: detail.into(),
        });
        self
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    pub fn payload_too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    pub fn too_many_requests(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, message)
    }

    /// `GET /bin/{name}`: an `If-Match` or `If-Unmodified-Since` that does
    /// not hold (Go's `http.ServeContent` answers 412 with no body).
    pub fn precondition_failed() -> ApiError {
        ApiError::new(StatusCode::PRECONDITION_FAILED, "Precondition failed.")
    }

    /// `GET /bin/{name}`: a `Range` no part of which is in the file, or one
    /// that does not parse (416 for both, as Go's `http.ServeContent`).
    pub fn range_not_satisfiable(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "Requested range not satisfiable.",
        )
        .detail(detail)
    }

    /// A long wait (the reinit stream before its first event, an
    /// external-auth `listen`) ended because the server is shutting down.
    pub fn shutting_down() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The server is shutting down; try again shortly.",
        )
    }

    /// Coder's `httpapi.Forbidden`: e.g. an agent whose `api_key_scope` is
    /// `no_user_data` asking for its owner's secrets.
    pub fn forbidden() -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "Forbidden.").detail(
            "You don't have permission to view this content. If you believe this is a mistake, please contact your administrator or try signing in with different credentials.",
        )
    }

    /// A server-side failure: the cause goes to the log, the client gets
    /// `message` and nothing that could leak internals.
    pub fn internal(message: impl Into<String>, cause: &dyn std::fmt::Display) -> ApiError {
        let message = message.into();
        tracing::error!(error = %cause, "{message}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// A workspace agent that could not be reached, or did not answer as an
    /// agent does: 500 with coderd's message and, as coderd, the cause as the
    /// detail (it names the agent's side, nothing of the server's).
    pub fn agent_failed(message: impl Into<String>, cause: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message).detail(cause.to_string())
    }

    /// The agent's own call ran out of time (coderd: the request's context
    /// ended): 408 with `Request timed out.`.
    pub fn agent_timed_out(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::REQUEST_TIMEOUT, message).detail("Request timed out.")
    }

    /// An error the agent answered (`codersdk.Error`), passed on with the
    /// agent's status and `codersdk.Response`, as coderd does.
    pub fn from_agent(status: u16, body: sdk::Response) -> ApiError {
        ApiError {
            body,
            ..ApiError::new(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "",
            )
        }
    }

    /// The web terminal's `WriteWorkspaceApp404` page: no such agent, or the
    /// caller may not reach it.
    pub fn app_not_found() -> ApiError {
        ApiError::page(
            StatusCode::NOT_FOUND,
            "Application Not Found",
            "The application or workspace you are trying to access does not exist or you do not have permission to access it.",
        )
    }

    /// The web terminal's `WriteWorkspaceAppOffline` page (the agent is not
    /// connected).
    pub fn app_unavailable(description: impl Into<String>) -> ApiError {
        ApiError::page(
            StatusCode::NOT_FOUND,
            "Application Unavailable",
            description,
        )
    }

    /// The web terminal's `WriteWorkspaceApp500` page; the cause goes to the log.
    pub fn app_internal(cause: &dyn std::fmt::Display) -> ApiError {
        tracing::warn!(error = %cause, "workspace app auth server error");
        ApiError::page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
            "An internal server error occurred.",
        )
    }

    fn page(status: StatusCode, title: &str, description: impl Into<String>) -> ApiError {
        ApiError {
            format: Format::Page,
            ..ApiError::new(status, title).detail(description)
        }
    }

    /// A WebSocket from a page of another site (coder/websocket's
    /// `authenticateOrigin`): 403 in plain text, as its `http.Error`.
    pub fn websocket_origin(why: impl Into<String>) -> ApiError {
        ApiError {
            format: Format::Text,
            ..ApiError::new(StatusCode::FORBIDDEN, why)
        }
    }
}

/// A failed dial: coderd's 500 for `AgentConn`, the reason as the detail.
impl From<crate::peer::DialError> for ApiError {
    fn from(e: crate::peer::DialError) -> ApiError {
        ApiError::agent_failed("Internal error dialing workspace agent.", e)
    }
}

/// An agent binary that is not served: 404 as coderd's `/bin/` (which also
/// answers 404 for names with a slash); a directory or file that cannot be
/// read is the server's fault, logged.
impl From<crate::agent_binaries::OpenError> for ApiError {
    fn from(e: crate::agent_binaries::OpenError) -> ApiError {
        use crate::agent_binaries::OpenError;
        let not_found = || ApiError::not_found("Agent binary not found.");
        match e {
            OpenError::InvalidName(why) => not_found().detail(format!(
                "Not a binary name: {why}. Ask for a file of agent_binaries.dir by its name, e.g. /bin/coder-linux-amd64."
            )),
            OpenError::NotFound => {
                not_found().detail("agent_binaries.dir holds no file of that name.")
            }
            OpenError::Outside => {
                tracing::warn!(
                    "a file in agent_binaries.dir is a symlink that leads out of the directory; it is not served"
                );
                not_found().detail("agent_binaries.dir holds no file of that name.")
            }
            OpenError::Dir(e) => ApiError::internal(
                "The agent binaries directory cannot be read.",
                &format!("agent_binaries.dir: {e}"),
            ),
            OpenError::Io(e) => {
                ApiError::internal("An agent binary could not be read.", &e)
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound => {
                ApiError::not_found("Resource not found or you do not have access to this resource")
            }
            StoreError::Conflict(msg) => ApiError::new(StatusCode::CONFLICT, msg),
            other => ApiError::internal("An internal server error occurred.", &other),
        }
    }
}

/// An instance-identity sign-in that names no usable agent, as coderd answers it.
impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        match r {
            Refusal::NotFound(m) => ApiError::not_found(m),
            Refusal::Ambiguous(m) => ApiError::conflict(m),
            Refusal::NotLatest(m) => ApiError::bad_request(m),
        }
    }
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        let mut resp = match self.format {
            Format::Json => json_response(self.status, &self.body),
            Format::Page => error_page(self.status, &self.body),
            Format::Text => plain_text(self.status, format!("{}\n", self.body.message)),
        };
        if self.close {
            resp.headers_mut().insert(
                warp::http::header::CONNECTION,
                warp::http::HeaderValue::from_static("close"),
            );
        }
        resp
    }
}

/// JSON the way coderd writes it: `application/json; charset=utf-8` and a
/// trailing newline (Go's `json.Encoder`).
pub fn json_response<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    let mut body = match serde_json::to_vec(value) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "could not encode a response");
            return warp::reply::with_status(
                "{\"message\":\"An internal server error occurred.\"}\n",
                StatusCode::INTERNAL_SERVER_ERROR,
            )
            .into_response();
        }
    };
    body.push(b'\n');
    let mut resp = Response::new(body.into());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

/// Coder's 405 for a route asked with another method, with the `Allow`
/// header naming the methods it answers (RFC 9110 requires one).
pub fn method_not_allowed(allow: &'static str) -> Response {
    let mut resp =
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.").into_response();
    resp.headers_mut().insert(
        warp::http::header::ALLOW,
        warp::http::HeaderValue::from_static(allow),
    );
    resp
}

/// `GET /derp` without an upgrade: 426 as Go's `http.Error` writes it (a
/// plain-text line, not Coder's JSON: `derphttp.Handler` answers it).
pub fn derp_upgrade_required() -> Response {
    plain_text(
        StatusCode::UPGRADE_REQUIRED,
        "DERP requires connection upgrade\n".to_owned(),
    )
}

/// Go's `http.Error`: plain text, `nosniff`.
fn plain_text(status: StatusCode, text: String) -> Response {
    let mut resp = Response::new(text.into());
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        warp::http::header::X_CONTENT_TYPE_OPTIONS,
        warp::http::HeaderValue::from_static("nosniff"),
    );
    resp
}

/// Coder's static error page, small: the status and title as the heading,
/// the description below (`body.detail`), HTML-escaped.
fn error_page(status: StatusCode, body: &sdk::Response) -> Response {
    let heading = format!("{} - {}", status.as_u16(), escape_html(&body.message));
    let description = escape_html(body.detail.as_deref().unwrap_or(""));
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"UTF-8\" />\n<title>{heading}</title>\n</head>\n<body>\n<h1>{heading}</h1>\n<p>{description}</p>\n</body>\n</html>\n"
    );
    let mut resp = Response::new(html.into());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

/// Escapes text for HTML as Go's `html/template` does.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON body already encoded (with its trailing newline).
pub fn json_bytes(status: StatusCode, body: bytes::Bytes) -> Response {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

/// Turns a handler result into a response.
pub fn respond<R: Reply>(result: Result<R, ApiError>) -> Response {
    match result {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    }
}

/// Renders what warp rejected before any handler ran.
pub async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    let err = if rejection.is_not_found() {
        ApiError::not_found("Route not found.")
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::payload_too_large("Request body too large.").detail(format!(
            "Maximum request body size is {MAX_BODY_BYTES} bytes."
        ))
    } else if let Some(e) = rejection.find::<warp::filters::body::BodyDeserializeError>() {
        use std::error::Error as _;
        let detail = e
            .source()
            .map(|s| s.to_string())
            .unwrap_or_else(|| e.to_string());
        ApiError::bad_request("Request body must be valid JSON.").detail(detail)
    } else if rejection
        .find::<warp::reject::UnsupportedMediaType>()
        .is_some()
    {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported content type.",
        )
        .detail("Send the body as application/json.")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        // warp reports a path that exists under another method this way. A
        // route in `routes::ROUTES` never gets here (its 405, with `Allow`, is
        // answered before the routes run); this is for one missing from it.
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.")
    } else if let Some(e) = rejection.find::<warp::reject::InvalidQuery>() {
        ApiError::bad_request("Invalid query parameters.").detail(e.to_string())
    } else if let Some(e) = rejection.find::<warp::reject::MissingHeader>() {
        ApiError::bad_request(format!("Missing header \"{}\".", e.name()))
    } else if let Some(e) = rejection.find::<warp::reject::InvalidHeader>() {
        ApiError::bad_request(format!("Invalid header \"{}\".", e.name()))
    } else {
        ApiError::internal(
            "An internal server error occurred.",
            &format!("{rejection:?}"),
        )
    };
    Ok(err.into_response())
}
