//! The client side of a workspace agent's own HTTP API (port 4, `/api/v0/...`;
//! CONNECTIVITY.md §2.1), over one connection the dialer opened to the agent
//! (`peer::PeerStream`, or any byte stream in tests): one HTTP/1.1 request
//! per connection, as coderd's `AgentConn` (keep-alives off), or the agent's
//! own WebSocket (`/api/v0/containers/watch`). Also how coderd reads an
//! agent's refusal (`codersdk.ReadBodyAsError`), so that it can be passed on.
//!
//! Statuses here are the agent's, received as numbers; what the server
//! answers is decided by the routes that call this.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};
use warp::http::{Method, Request, header};

use crate::sdk;

/// The largest answer read from an agent (a container list with many
/// devcontainers stays far below it).
const MAX_BODY: usize = 4 << 20;

/// The agent's watch socket reads messages up to this size (coderd raises
/// its limit to 4 MiB for the same reason).
const MAX_MESSAGE: usize = 4 << 20;

/// The `Host` of requests to the agent (its router does not look at it).
const HOST: &str = "localhost";

/// An agent's answer, read whole.
#[derive(Debug)]
pub(super) struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Bytes,
}

/// Sends one bodiless request on `io` and reads the answer. The error is
/// the reason, worded as coderd's (`do request: ...`).
pub(super) async fn call<S>(io: S, method: Method, path: &str) -> Result<Reply, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, HOST)
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("new http api request to {path:?}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("do request: {e}"))?;
    let exchange = async move {
        let resp = sender
            .send_request(request)
            .await
            .map_err(|e| format!("do request: {e}"))?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("read body: {e}"))?
            .to_bytes();
        Ok(Reply {
            status,
            content_type,
            body,
        })
    };
    // The connection is driven beside the exchange; once it ends (the answer
    // read, or the agent gone) the exchange finishes on its own.
    let driver = async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "agent http connection ended");
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        reply = exchange => reply,
        () = driver => unreachable!("the driver never finishes"),
    }
}

/// Opens the agent's WebSocket at `path` on `io` (text messages of JSON, no
/// compression). The error is the reason the handshake failed.
pub(super) async fn websocket<S>(io: S, path: &str) -> Result<yawc::WebSocket<S>, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let url = format!("ws://{HOST}:{}{path}", crate::peer::AGENT_HTTP_PORT)
        .parse()
        .map_err(|e| format!("parse url: {e}"))?;
    let options = yawc::Options::default()
        .with_max_payload_read(MAX_MESSAGE)
        .with_no_delay()
        .without_compression();
    yawc::WebSocket::handshake(url, io, options)
        .await
        .map_err(|e| format!("dial {path}: {e}"))
}

/// The first JSON value of a body, as Go's `json.Decoder` reads it (what
/// follows it is not looked at).
pub(super) fn first_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    match serde_json::Deserializer::from_slice(body)
        .into_iter::<T>()
        .next()
    {
        Some(Ok(value)) => Ok(value),
        Some(Err(e)) => Err(format!("decode body: {e}")),
        None => Err("decode body: EOF".to_owned()),
    }
}

/// `codersdk.Response` as Go decodes it: every field optional.
#[derive(Deserialize)]
struct AgentResponse {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    validations: Option<Vec<sdk::ValidationError>>,
}

/// `s` cut to `max` bytes, with `...` when cut (as coderd shows bodies).
fn truncated(body: &[u8], max: usize) -> String {
    if body.len() > max {
        format!("{}...", String::from_utf8_lossy(&body[..max]))
    } else {
        String::from_utf8_lossy(body).into_owned()
    }
}

/// An agent's refusal read as `codersdk.ReadBodyAsError` reads it: its
/// `codersdk.Response`, or one describing what came instead (not JSON, an
/// empty body, no message). `Err` when the body claims JSON but is none
/// (coderd then answers with its own 500 and this as the detail).
pub(super) fn agent_error(reply: &Reply) -> Result<sdk::Response, String> {
    let mime = reply
        .content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "application/json" {
        let detail = if reply.body.is_empty() {
            "no response body".to_owned()
        } else {
            truncated(&reply.body, 2048)
        };
        return Ok(sdk::Response {
            message: format!("unexpected non-JSON response {:?}", reply.content_type),
            detail: Some(detail),
            validations: Vec::new(),
        });
    }
    if reply.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(sdk::Response {
            message: "empty response body".to_owned(),
            detail: None,
            validations: Vec::new(),
        });
    }
    let mut got = decode_response(&reply.body).map_err(|e| format!("decode {e}"))?;
    if got.message.is_empty() {
        got.message = format!(
            "unexpected status code {}, response has no message",
            reply.status
        );
        got.detail = Some(truncated(&reply.body, 1024));
    }
    Ok(got)
}

/// A `codersdk.Response` as Go decodes one: every field may be missing or
/// null. The error is the decoder's (`body: ...`).
pub(super) fn decode_response(body: &[u8]) -> Result<sdk::Response, String> {
    let got: AgentResponse = first_json(body).map_err(|e| e.replacen("decode ", "", 1))?;
    Ok(sdk::Response {
        message: got.message.unwrap_or_default(),
        detail: got.detail.filter(|d| !d.is_empty()),
        validations: got.validations.unwrap_or_default(),
    })
}

/// A refusal as coderd words it in a detail (`codersdk.Error.Error()`).
pub(super) fn describe(method: &Method, path: &str, reply: &Reply) -> String {
    let mut out = format!(
        "{method} http://{HOST}:{}{path}: unexpected status code {}",
        crate::peer::AGENT_HTTP_PORT,
        reply.status
    );
    match agent_error(reply) {
        Ok(r) => {
            out.push_str(&format!(": {}", r.message));
            if let Some(d) = r.detail {
                out.push_str(&format!("\n\tError: {d}"));
            }
            for v in r.validations {
                out.push_str(&format!("\n\t{}: {}", v.field, v.detail));
            }
        }
        Err(e) => out.push_str(&format!(": {e}")),
    }
    out
}

/// A fake agent for the routes' tests.
#[cfg(test)]
pub(super) mod fake {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio::task::JoinHandle;

    /// A fake agent on the other end of a pipe: reads one request head,
    /// answers `answer` verbatim, and hands back the head it read.
    pub fn agent(answer: impl Into<Vec<u8>>) -> (DuplexStream, JoinHandle<String>) {
        let answer = answer.into();
        let (ours, mut theirs) = tokio::io::duplex(64 << 10);
        let task = tokio::spawn(async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = theirs.read(&mut buf).await.expect("read the request");
                assert!(n > 0, "the client closed before its request head ended");
                head.extend_from_slice(&buf[..n]);
            }
            theirs.write_all(&answer).await.expect("answer");
            theirs.shutdown().await.expect("close");
            String::from_utf8(head).expect("a text head")
        });
        (ours, task)
    }

    /// An HTTP/1.1 answer with a JSON body.
    pub fn json(status: &str, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{self, agent as fake_agent};
    use super::*;

    #[tokio::test]
    async fn one_request_one_answer() {
        let (io, agent) = fake_agent(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"ports\":[]}",
        );
        let reply = call(io, Method::GET, "/api/v0/listening-ports")
            .await
            .expect("an answer");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.content_type, "application/json");
        assert_eq!(&reply.body[..], b"{\"ports\":[]}");
        let head = agent.await.expect("the fake agent");
        assert!(
            head.starts_with("GET /api/v0/listening-ports HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase().contains("host: localhost"),
            "{head}"
        );
    }

    #[tokio::test]
    async fn a_body_until_the_connection_closes_is_read_whole() {
        let (io, _agent) = fake_agent(
            b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"message\":\"Dev Container feature not enabled.\",\"detail\":\"To enable this feature, set CODER_AGENT_DEVCONTAINERS_ENABLE=true in your template.\"}\n",
        );
        let reply = call(io, Method::DELETE, "/api/v0/containers/devcontainers/x")
            .await
            .expect("an answer");
        assert_eq!(reply.status, 403);
        let err = agent_error(&reply).expect("a codersdk.Response");
        assert_eq!(err.message, "Dev Container feature not enabled.");
        assert_eq!(
            err.detail.as_deref(),
            Some(
                "To enable this feature, set CODER_AGENT_DEVCONTAINERS_ENABLE=true in your template."
            )
        );
    }

    #[tokio::test]
    async fn an_agent_that_hangs_up_is_an_error() {
        let (io, theirs) = tokio::io::duplex(1024);
        drop(theirs);
        let err = call(io, Method::GET, "/api/v0/containers")
            .await
            .expect_err("no answer");
        assert!(err.starts_with("do request: "), "{err}");
    }

    #[tokio::test]
    async fn the_agents_websocket_opens_over_any_stream() {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::{Message, handshake::server};

        let (ours, theirs) = tokio::io::duplex(64 << 10);
        let agent = tokio::spawn(async move {
            let mut path = String::new();
            // tungstenite's callback type, not ours.
            #[allow(clippy::result_large_err)]
            let check = |req: &server::Request, resp: server::Response| {
                path = req.uri().to_string();
                Ok(resp)
            };
            let mut ws = tokio_tungstenite::accept_hdr_async(theirs, check)
                .await
                .expect("accept");
            ws.send(Message::text("{\"containers\":[]}"))
                .await
                .expect("send");
            ws.close(None).await.expect("close");
            path
        });
        let mut ws = websocket(ours, "/api/v0/containers/watch")
            .await
            .expect("the agent's socket");
        let first = ws.next().await.expect("a message");
        assert_eq!(first.opcode(), yawc::frame::OpCode::Text);
        assert_eq!(&first.into_payload()[..], b"{\"containers\":[]}");
        assert_eq!(agent.await.expect("agent"), "/api/v0/containers/watch");

        let (io, _) = fake_agent(fake::json(
            "403 Forbidden",
            "{\"message\":\"Dev Container feature not enabled.\"}",
        ));
        let e = websocket(io, "/api/v0/containers/watch")
            .await
            .err()
            .expect("refused");
        assert!(e.contains("403"), "{e}");
    }

    fn reply(status: u16, content_type: &str, body: &str) -> Reply {
        Reply {
            status,
            content_type: content_type.to_owned(),
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    #[test]
    fn refusals_read_as_coder_reads_them() {
        let r = agent_error(&reply(500, "text/plain; charset=utf-8", "boom\n")).expect("an error");
        assert_eq!(
            r.message,
            "unexpected non-JSON response \"text/plain; charset=utf-8\""
        );
        assert_eq!(r.detail.as_deref(), Some("boom\n"));
        let r = agent_error(&reply(503, "", "")).expect("an error");
        assert_eq!(r.detail.as_deref(), Some("no response body"));
        let r = agent_error(&reply(500, "application/json", "  \n")).expect("an error");
        assert_eq!(r.message, "empty response body");
        let r =
            agent_error(&reply(404, "application/json", "{\"detail\":\"x\"}")).expect("an error");
        assert_eq!(
            r.message,
            "unexpected status code 404, response has no message"
        );
        assert_eq!(r.detail.as_deref(), Some("{\"detail\":\"x\"}"));
        let r = agent_error(&reply(
            409,
            "application/json",
            "{\"message\":\"m\",\"detail\":null,\"validations\":[{\"field\":\"f\",\"detail\":\"d\"}]} trailing",
        ))
        .expect("an error");
        assert_eq!(r.message, "m");
        assert_eq!(r.detail, None);
        assert_eq!(r.validations.len(), 1);
        let e = agent_error(&reply(500, "application/json", "{\"message\":1}"))
            .expect_err("not a response");
        assert!(e.starts_with("decode body: "), "{e}");
        let long = "x".repeat(3000);
        let r = agent_error(&reply(500, "text/html", &long)).expect("an error");
        assert_eq!(r.detail.as_deref().map(str::len), Some(2048 + 3));
    }

    #[test]
    fn descriptions_name_the_call_and_the_refusal() {
        let got = describe(
            &Method::GET,
            "/api/v0/listening-ports",
            &reply(
                500,
                "application/json",
                "{\"message\":\"Could not scan for listening ports.\",\"detail\":\"permission denied\"}",
            ),
        );
        assert_eq!(
            got,
            "GET http://localhost:4/api/v0/listening-ports: unexpected status code 500: Could not scan for listening ports.\n\tError: permission denied"
        );
    }
}
