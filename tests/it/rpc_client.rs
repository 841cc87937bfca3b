//! A client for `GET /api/v2/workspaceagents/me/rpc`, speaking the agent's
//! side of the four layers (CONNECTIVITY.md §1.1–§1.3): a WebSocket whose
//! binary messages are one byte stream (every write one message, reads
//! concatenate payloads, 4 MiB message limit), a tokio-yamux **client**
//! session (`Config::default()`, equal to hashicorp's `DefaultConfig`) kept
//! polled by a spawned task, and one DRPC call per yamux stream (stream id 1,
//! the client's message ids counting from 1), as coder's agent does.
//!
//! - [`RpcClient::connect`] dials a server; a refusal before the upgrade is
//!   [`ConnectError::Refused`] with the status and body. [`RpcClient::over`]
//!   runs the same client over any byte stream (in-process tests).
//! - [`RpcClient::unary`], [`RpcClient::server_stream`] and
//!   [`RpcClient::bidi`] take RPC names and encoded messages; typed helpers
//!   ([`RpcClient::get_manifest`], [`RpcClient::update_lifecycle`], …)
//!   encode and decode the crate's prost types.
//! - An Error packet is a [`CallError`] with the server's code; a broken
//!   transport is a [`CallError`] with code [`CallError::TRANSPORT`].
//! - Dropping the client drops the session and its TCP connection at once
//!   (an agent that vanished); [`RpcClient::close`] ends it with a yamux
//!   go-away first.
//!
//! Included by the `it` test crate and by `examples/rpc_load.rs`
//! (`#[path = "../tests/it/rpc_client.rs"] mod rpc_client;`), so it uses
//! nothing of either but the `appliance` library and the package's
//! dependencies.

// Not every helper is used by every crate that includes this file.
#![allow(dead_code)]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use appliance::rpc::drpc::wire::{self, Body, Decoder, Id, Kind, Packet};
use appliance::rpc::proto::methods::{agent as rpc_agent, tailnet as rpc_tailnet};
use appliance::rpc::proto::{Timestamp, agent, tailnet};
use bytes::{Bytes, BytesMut};
use futures_util::{Sink, Stream, StreamExt};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use uuid::Uuid;

/// The WebSocket read limit both sides set (coder: 4 MiB).
pub const MAX_MESSAGE: usize = 4 << 20;

/// A write becomes one binary message of at most this many bytes.
const MAX_WRITE: usize = 1 << 20;

/// The agent's API version today (`coder agent` dials 2.10).
pub const AGENT_VERSION: &str = "2.10";

/// How many messages of a stream wait in the channel to the caller.
const STREAM_BUFFER: usize = 16;

/// Why a connection was not made.
#[derive(Debug)]
pub enum ConnectError {
    /// The server answered the upgrade request with an HTTP status.
    Refused { status: u16, body: String },
    /// Anything else: the URL, TCP, the WebSocket handshake.
    Other(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Refused { status, body } => write!(f, "refused: {status} {body}"),
            ConnectError::Other(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ConnectError {}

impl From<tungstenite::Error> for ConnectError {
    fn from(e: tungstenite::Error) -> ConnectError {
        match e {
            tungstenite::Error::Http(resp) => ConnectError::Refused {
                status: resp.status().as_u16(),
                body: resp
                    .body()
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default(),
            },
            other => ConnectError::Other(other.to_string()),
        }
    }
}

/// A call that failed: the server's Error packet (its code, 0 when it gave
/// none, and message), or the transport ([`CallError::TRANSPORT`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    pub code: u64,
    pub message: String,
}

impl CallError {
    /// The code of an error that is not the server's: the session or the
    /// stream broke, or the server broke the protocol.
    pub const TRANSPORT: u64 = u64::MAX;

    fn transport(message: impl std::fmt::Display) -> CallError {
        CallError {
            code: CallError::TRANSPORT,
            message: message.to_string(),
        }
    }

    /// Whether the server answered Unimplemented (code 12).
    pub fn is_unimplemented(&self) -> bool {
        self.code == wire::UNIMPLEMENTED
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.code == CallError::TRANSPORT {
            write!(f, "transport: {}", self.message)
        } else {
            write!(f, "{} (drpc code {})", self.message, self.code)
        }
    }
}

impl std::error::Error for CallError {}

/// The URL of `/me/rpc` under `base_url` (`http://host:port`); an empty
/// `version` and a `None` role leave the parameter out.
pub fn rpc_url(base_url: &str, version: &str, role: Option<&str>) -> String {
    let base = base_url.trim_end_matches('/');
    let base = if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        base.to_string()
    };
    let mut query = Vec::new();
    if !version.is_empty() {
        query.push(format!("version={version}"));
    }
    if let Some(role) = role {
        query.push(format!("role={role}"));
    }
    let mut url = format!("{base}/api/v2/workspaceagents/me/rpc");
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query.join("&"));
    }
    url
}

/// One agent's `/me/rpc` session.
pub struct RpcClient {
    control: tokio_yamux::Control,
    session: JoinHandle<()>,
    closed: watch::Receiver<bool>,
}

impl Drop for RpcClient {
    fn drop(&mut self) {
        self.session.abort();
    }
}

impl RpcClient {
    /// Dials `/me/rpc` with the agent token in `Coder-Session-Token`.
    /// `version` empty: no `version` parameter (the server takes 2.0).
    pub async fn connect(
        base_url: &str,
        agent_token: &str,
        version: &str,
        role: Option<&str>,
    ) -> Result<RpcClient, ConnectError> {
        RpcClient::connect_url(&rpc_url(base_url, version, role), agent_token).await
    }

    /// Dials any route of the same stack (`/coordinate`, `/tailnet`: a
    /// `ws://` URL) with `token` in `Coder-Session-Token`.
    pub async fn connect_url(url: &str, token: &str) -> Result<RpcClient, ConnectError> {
        let mut request = url.into_client_request()?;
        let token = HeaderValue::from_str(token).map_err(|e| ConnectError::Other(e.to_string()))?;
        request.headers_mut().insert("Coder-Session-Token", token);
        // Small buffers: a load generator holds thousands of these.
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE))
            .read_buffer_size(4 << 10)
            .write_buffer_size(0);
        let (ws, _) =
            tokio_tungstenite::connect_async_with_config(request, Some(config), true).await?;
        Ok(RpcClient::over(WsBytes::new(ws)))
    }

    /// A client over a byte stream already carrying the yamux session (the
    /// agent's side). Must be called inside a tokio runtime.
    pub fn over<T>(io: T) -> RpcClient
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut session = tokio_yamux::Session::new_client(io, tokio_yamux::Config::default());
        let control = session.control();
        let (closed_tx, closed) = watch::channel(false);
        let session = tokio::spawn(async move {
            // The server never opens streams; polling drives the session.
            while let Some(next) = session.next().await {
                match next {
                    Ok(stream) => drop(stream),
                    Err(_) => break,
                }
            }
            let _ = closed_tx.send(true);
        });
        RpcClient {
            control,
            session,
            closed,
        }
    }

    /// Whether the session has ended (the server closed it, or it broke).
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow() || self.session.is_finished()
    }

    /// Resolves once the session has ended.
    pub async fn closed(&self) {
        let mut closed = self.closed.clone();
        let _ = closed.wait_for(|c| *c).await;
    }

    /// Ends the session with a yamux go-away, then drops it.
    pub async fn close(self) {
        let mut control = self.control.clone();
        let _ = tokio::time::timeout(Duration::from_secs(5), control.close()).await;
    }

    async fn open(&self, rpc: &str) -> Result<CallStream, CallError> {
        let mut control = self.control.clone();
        let io = control
            .open_stream()
            .await
            .map_err(|e| CallError::transport(format!("opening a yamux stream for {rpc}: {e}")))?;
        Ok(CallStream::new(io))
    }

    /// One unary call: Invoke, Message, CloseSend in one write; the answer
    /// is the server's Message (then CloseSend), or its Error.
    pub async fn unary(&self, rpc: &str, request: impl AsRef<[u8]>) -> Result<Bytes, CallError> {
        let mut call = self.open(rpc).await?;
        call.queue(Kind::Invoke, false, rpc.as_bytes());
        call.queue(Kind::Message, false, request.as_ref());
        call.queue(Kind::CloseSend, false, &[]);
        call.flush().await?;
        let mut response = None;
        let outcome = loop {
            let Some(packet) = call.recv().await? else {
                break Ok(());
            };
            match packet.body() {
                Ok(Body::Message(m)) if response.is_none() => response = Some(m),
                Ok(Body::Message(_)) => {
                    break Err(CallError::transport("a second message on a unary call"));
                }
                Ok(Body::Error(e)) => {
                    break Err(CallError {
                        code: e.code,
                        message: e.message,
                    });
                }
                Ok(Body::CloseSend | Body::Close) => break Ok(()),
                Ok(Body::Ignored) => {}
                Ok(other) => break Err(CallError::transport(format!("unexpected {other:?}"))),
                Err(e) => break Err(CallError::transport(e)),
            }
        };
        call.finish().await;
        outcome?;
        response.ok_or_else(|| CallError::transport(format!("{rpc}: no response before the end")))
    }

    /// A server-streaming call: Invoke, Message, CloseSend; then the
    /// server's messages until its CloseSend (the receiver ends), or its
    /// Error (the last item). Dropping the receiver hangs up the stream.
    pub async fn server_stream(
        &self,
        rpc: &str,
        request: impl AsRef<[u8]>,
    ) -> Result<Incoming, CallError> {
        let mut call = self.open(rpc).await?;
        call.queue(Kind::Invoke, false, rpc.as_bytes());
        call.queue(Kind::Message, false, request.as_ref());
        call.queue(Kind::CloseSend, false, &[]);
        call.flush().await?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(pump(call, None, tx));
        Ok(Incoming { rx })
    }

    /// A bidirectional call: Invoke, then messages both ways. Dropping the
    /// [`Outgoing`] sends CloseSend; the [`Incoming`] ends with the server's
    /// CloseSend or Error; dropping it hangs up the stream.
    pub async fn bidi(&self, rpc: &str) -> Result<(Outgoing, Incoming), CallError> {
        let mut call = self.open(rpc).await?;
        call.queue(Kind::Invoke, false, rpc.as_bytes());
        call.flush().await?;
        let (out_tx, out_rx) = mpsc::channel(STREAM_BUFFER);
        let (in_tx, in_rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(pump(call, Some(out_rx), in_tx));
        Ok((Outgoing { tx: out_tx }, Incoming { rx: in_rx }))
    }

    /// A unary call with prost messages.
    pub async fn call<Req, Resp>(&self, rpc: &str, request: &Req) -> Result<Resp, CallError>
    where
        Req: prost::Message,
        Resp: prost::Message + Default,
    {
        let bytes = self.unary(rpc, request.encode_to_vec()).await?;
        Resp::decode(bytes)
            .map_err(|e| CallError::transport(format!("{rpc}: undecodable response: {e}")))
    }

    pub async fn get_manifest(&self) -> Result<agent::Manifest, CallError> {
        self.call(rpc_agent::GET_MANIFEST, &agent::GetManifestRequest {})
            .await
    }

    pub async fn get_service_banner(&self) -> Result<agent::ServiceBanner, CallError> {
        self.call(
            rpc_agent::GET_SERVICE_BANNER,
            &agent::GetServiceBannerRequest {},
        )
        .await
    }

    pub async fn get_announcement_banners(
        &self,
    ) -> Result<agent::GetAnnouncementBannersResponse, CallError> {
        self.call(
            rpc_agent::GET_ANNOUNCEMENT_BANNERS,
            &agent::GetAnnouncementBannersRequest {},
        )
        .await
    }

    pub async fn get_resources_monitoring_configuration(
        &self,
    ) -> Result<agent::GetResourcesMonitoringConfigurationResponse, CallError> {
        self.call(
            rpc_agent::GET_RESOURCES_MONITORING_CONFIGURATION,
            &agent::GetResourcesMonitoringConfigurationRequest {},
        )
        .await
    }

    pub async fn update_startup(
        &self,
        version: &str,
        expanded_directory: &str,
        subsystems: &[agent::startup::Subsystem],
    ) -> Result<agent::Startup, CallError> {
        let startup = agent::Startup {
            version: version.to_string(),
            expanded_directory: expanded_directory.to_string(),
            subsystems: subsystems.iter().map(|s| *s as i32).collect(),
        };
        self.call(
            rpc_agent::UPDATE_STARTUP,
            &agent::UpdateStartupRequest {
                startup: Some(startup),
            },
        )
        .await
    }

    /// UpdateLifecycle with `changed_at` now.
    pub async fn update_lifecycle(
        &self,
        state: agent::lifecycle::State,
    ) -> Result<agent::Lifecycle, CallError> {
        let lifecycle = agent::Lifecycle {
            state: state as i32,
            changed_at: Some(now()),
        };
        self.call(
            rpc_agent::UPDATE_LIFECYCLE,
            &agent::UpdateLifecycleRequest {
                lifecycle: Some(lifecycle),
            },
        )
        .await
    }

    /// UpdateStats; `None` is the agent's first call, asking for the
    /// interval only.
    pub async fn update_stats(
        &self,
        stats: Option<agent::Stats>,
    ) -> Result<agent::UpdateStatsResponse, CallError> {
        self.call(
            rpc_agent::UPDATE_STATS,
            &agent::UpdateStatsRequest { stats },
        )
        .await
    }

    /// BatchCreateLogs of `lines` (created now) for `source` (`None`: the
    /// external source, an empty id).
    pub async fn batch_create_logs(
        &self,
        source: Option<Uuid>,
        lines: &[(&str, agent::log::Level)],
    ) -> Result<agent::BatchCreateLogsResponse, CallError> {
        let at = now();
        let request = agent::BatchCreateLogsRequest {
            log_source_id: source.map(|s| s.as_bytes().to_vec()).unwrap_or_default(),
            logs: lines
                .iter()
                .map(|(output, level)| agent::Log {
                    created_at: Some(at),
                    output: (*output).to_string(),
                    level: *level as i32,
                })
                .collect(),
        };
        self.call(rpc_agent::BATCH_CREATE_LOGS, &request).await
    }

    /// BatchUpdateMetadata: `(key, value)` pairs collected now.
    pub async fn batch_update_metadata(
        &self,
        items: &[(&str, &str)],
    ) -> Result<agent::BatchUpdateMetadataResponse, CallError> {
        let at = now();
        let request = agent::BatchUpdateMetadataRequest {
            metadata: items
                .iter()
                .map(
                    |(key, value)| agent::batch_update_metadata_request::Metadata {
                        key: (*key).to_string(),
                        result: Some(agent::workspace_agent_metadata::Result {
                            collected_at: Some(at),
                            value: (*value).to_string(),
                            ..Default::default()
                        }),
                    },
                )
                .collect(),
        };
        self.call(rpc_agent::BATCH_UPDATE_METADATA, &request).await
    }

    /// BatchUpdateAppHealths: `(app id, health)` pairs.
    pub async fn batch_update_app_healths(
        &self,
        updates: &[(Uuid, agent::AppHealth)],
    ) -> Result<agent::BatchUpdateAppHealthResponse, CallError> {
        let request = agent::BatchUpdateAppHealthRequest {
            updates: updates
                .iter()
                .map(
                    |(id, health)| agent::batch_update_app_health_request::HealthUpdate {
                        id: id.as_bytes().to_vec(),
                        health: *health as i32,
                    },
                )
                .collect(),
        };
        self.call(rpc_agent::BATCH_UPDATE_APP_HEALTHS, &request)
            .await
    }

    /// Tailnet StreamDERPMaps: the server's DERP maps as they come.
    pub async fn stream_derp_maps(&self) -> Result<Incoming, CallError> {
        self.server_stream(
            rpc_tailnet::STREAM_DERP_MAPS,
            tailnet::StreamDerpMapsRequest {}.encode_to_vec(),
        )
        .await
    }

    /// Tailnet Coordinate: send [`tailnet::CoordinateRequest`]s, receive
    /// [`tailnet::CoordinateResponse`]s.
    pub async fn coordinate(&self) -> Result<(Outgoing, Incoming), CallError> {
        self.bidi(rpc_tailnet::COORDINATE).await
    }
}

/// Now, as a protobuf Timestamp.
pub fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

/// The messages a streaming call receives.
pub struct Incoming {
    rx: mpsc::Receiver<Result<Bytes, CallError>>,
}

impl Incoming {
    /// The next message; an `Err` is the server's Error (or a broken
    /// transport) and is the last item; `None` once the server ended the
    /// stream.
    pub async fn recv(&mut self) -> Option<Result<Bytes, CallError>> {
        self.rx.recv().await
    }

    /// [`Incoming::recv`], decoded as `M`.
    pub async fn next<M: prost::Message + Default>(&mut self) -> Option<Result<M, CallError>> {
        Some(self.recv().await?.and_then(|b| {
            M::decode(b).map_err(|e| CallError::transport(format!("undecodable message: {e}")))
        }))
    }

    /// [`Incoming::recv`] waiting at most `limit`: `Err(())` when nothing
    /// came in time (the stream stays usable).
    pub async fn recv_within(
        &mut self,
        limit: Duration,
    ) -> Result<Option<Result<Bytes, CallError>>, ()> {
        tokio::time::timeout(limit, self.recv())
            .await
            .map_err(|_| ())
    }
}

/// The sending half of a bidirectional call; dropping it sends CloseSend.
#[derive(Clone)]
pub struct Outgoing {
    tx: mpsc::Sender<Bytes>,
}

impl Outgoing {
    /// Queues one encoded message; `Err` once the stream is gone.
    pub async fn send_bytes(&self, message: impl Into<Bytes>) -> Result<(), CallError> {
        self.tx
            .send(message.into())
            .await
            .map_err(|_| CallError::transport("the stream is closed"))
    }

    /// Queues one prost message.
    pub async fn send(&self, message: &impl prost::Message) -> Result<(), CallError> {
        self.send_bytes(message.encode_to_vec()).await
    }
}

/// Runs a streaming call: writes what `out` gives (CloseSend when it ends),
/// hands the server's messages to `inbox` until the server ends the stream,
/// the caller drops the receiver, or the transport breaks.
async fn pump(
    mut call: CallStream,
    mut out: Option<mpsc::Receiver<Bytes>>,
    inbox: mpsc::Sender<Result<Bytes, CallError>>,
) {
    loop {
        let sending = out.is_some();
        tokio::select! {
            message = async { out.as_mut()?.recv().await }, if sending => {
                match message {
                    Some(m) => call.queue(Kind::Message, false, &m),
                    None => {
                        call.queue(Kind::CloseSend, false, &[]);
                        out = None;
                    }
                }
                if let Err(e) = call.flush().await {
                    let _ = inbox.send(Err(e)).await;
                    break;
                }
            }
            packet = call.recv() => {
                let body = match packet {
                    Ok(None) => break,
                    Ok(Some(p)) => p.body().map_err(CallError::transport),
                    Err(e) => Err(e),
                };
                match body {
                    Ok(Body::Message(m)) => {
                        if inbox.send(Ok(m)).await.is_err() {
                            break;
                        }
                    }
                    Ok(Body::Error(e)) => {
                        let _ = inbox
                            .send(Err(CallError { code: e.code, message: e.message }))
                            .await;
                        break;
                    }
                    Ok(Body::CloseSend | Body::Close | Body::Cancel) => break,
                    Ok(Body::Ignored) => {}
                    Ok(other) => {
                        let _ = inbox
                            .send(Err(CallError::transport(format!("unexpected {other:?}"))))
                            .await;
                        break;
                    }
                    Err(e) => {
                        let _ = inbox.send(Err(e)).await;
                        break;
                    }
                }
            }
            () = inbox.closed() => break,
        }
    }
    call.finish().await;
}

/// One DRPC connection on one yamux stream, carrying one call (stream id 1).
struct CallStream {
    io: tokio_yamux::StreamHandle,
    decoder: Decoder,
    /// The client's next message id.
    next: u64,
    wbuf: Vec<u8>,
}

impl CallStream {
    fn new(io: tokio_yamux::StreamHandle) -> CallStream {
        CallStream {
            io,
            decoder: Decoder::new(),
            next: 1,
            wbuf: Vec::new(),
        }
    }

    /// Adds a packet to the write buffer.
    fn queue(&mut self, kind: Kind, control: bool, data: &[u8]) {
        wire::write_packet(&mut self.wbuf, Id::new(1, self.next), kind, control, data);
        self.next += 1;
    }

    /// Writes what was queued. While the stream's send window is shut, the
    /// read side is driven too (what arrives is kept for [`CallStream::recv`]):
    /// tokio-yamux takes in window updates only while the stream is read, so
    /// a write larger than the window (256 KiB) would otherwise never end.
    /// If the server ends the stream meanwhile, the rest is not written and
    /// its answer is left to `recv`.
    async fn flush(&mut self) -> Result<(), CallError> {
        let CallStream {
            io, decoder, wbuf, ..
        } = self;
        let mut written = 0;
        let mut chunk = vec![0u8; 16 << 10];
        let result = std::future::poll_fn(|cx| {
            loop {
                if written == wbuf.len() {
                    return Pin::new(&mut *io).poll_flush(cx);
                }
                match Pin::new(&mut *io).poll_write(cx, &wbuf[written..]) {
                    Poll::Ready(Ok(n)) => written += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        let mut read = ReadBuf::new(&mut chunk);
                        ready!(Pin::new(&mut *io).poll_read(cx, &mut read))?;
                        if read.filled().is_empty() {
                            // The server ended the stream.
                            return Poll::Ready(Ok(()));
                        }
                        decoder.extend(read.filled());
                    }
                }
            }
        })
        .await;
        wbuf.clear();
        result.map_err(|e| CallError::transport(format!("writing to the stream: {e}")))
    }

    /// The server's next packet; `None` at a clean end of the stream.
    /// Cancel safe: bytes read stay in the decoder.
    async fn recv(&mut self) -> Result<Option<Packet>, CallError> {
        loop {
            if let Some(packet) = self.decoder.decode().map_err(CallError::transport)? {
                return Ok(Some(packet));
            }
            let buf: &mut BytesMut = self.decoder.buffer_mut();
            buf.reserve(16 << 10);
            let n = self
                .io
                .read_buf(buf)
                .await
                .map_err(|e| CallError::transport(format!("reading the stream: {e}")))?;
            if n == 0 {
                return if self.decoder.at_boundary() {
                    Ok(None)
                } else {
                    Err(CallError::transport("the stream ended inside a packet"))
                };
            }
        }
    }

    /// Closes the stream (FIN) after the call, as the Go client closes its
    /// DRPC connection.
    async fn finish(mut self) {
        let _ = self.io.shutdown().await;
    }
}

/// A WebSocket as a byte stream, as coder's `websocket.NetConn` makes it:
/// every write is one binary message, reads concatenate message payloads.
/// Pings are answered by tungstenite while reading; a close frame or an
/// error ends the stream.
pub struct WsBytes<S> {
    ws: S,
    pending: Bytes,
    eof: bool,
}

impl<S> WsBytes<S> {
    pub fn new(ws: S) -> WsBytes<S> {
        WsBytes {
            ws,
            pending: Bytes::new(),
            eof: false,
        }
    }
}

impl<S> AsyncRead for WsBytes<S>
where
    S: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                None | Some(Ok(Message::Close(_))) => this.eof = true,
                Some(Ok(m @ (Message::Binary(_) | Message::Text(_)))) => {
                    this.pending = m.into_data();
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
            }
        }
    }
}

impl<S> AsyncWrite for WsBytes<S>
where
    S: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(io::Error::other)?;
        let n = buf.len().min(MAX_WRITE);
        Pin::new(&mut this.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
            .map_err(io::Error::other)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().ws)
            .poll_flush(cx)
            .map_err(io::Error::other)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().ws)
            .poll_close(cx)
            .map_err(io::Error::other)
    }
}
