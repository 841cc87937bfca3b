//! The DRPC server for one transport (one yamux stream in production): reads
//! packets, runs the method each Invoke names, writes its answer. One stream
//! at a time, as drpc's manager does; a later Invoke with a higher stream id
//! soft-cancels the current one.
//!
//! Methods are registered by name on a [`Router`] with the state type `S`
//! they are called with (cloned for each call), in three shapes:
//! - unary: request bytes to response bytes, or an [`RpcError`];
//! - server streaming: request bytes and a [`Sender`]; returning ends the
//!   stream (CloseSend, or Error);
//! - bidirectional: a [`Receiver`] (ends when the client sends CloseSend) and
//!   a [`Sender`].
//!
//! What goes out for each call (drpc, CONNECTIVITY.md §1.3): Message packets,
//! then CloseSend, or an Error packet with a code; the server's message ids
//! on a stream count from 1. An unknown method is answered with Error code 12
//! (Unimplemented) and the transport stays usable. A handler is dropped (its
//! future no longer polled) when the client sends Cancel, Close or Error,
//! invokes a later stream, or goes away. Only bytes that break the protocol
//! end the transport ([`ServeError`]); nothing a peer sends makes it panic.
//! Writes are awaited in the loop, so a peer that stops reading stalls only
//! its own transport.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::metadata::Metadata;
use super::wire::{Body, Decoder, Id, Kind, MAX_PACKET_SIZE, Packet, RpcError, WireError};

/// How much room a read starts with, and how far the room grows while reads
/// keep filling it (a large packet arriving). An idle transport waits for
/// its next read with the smallest room: a connected agent keeps two calls
/// open for hours (Coordinate, StreamDERPMaps), so every byte held by a quiet
/// transport is held once per agent.
const READ_MIN: usize = 512;
const READ_MAX: usize = 64 << 10;

/// What may be read ahead while a write waits (a whole packet and a frame
/// header more).
const MAX_STASH: usize = MAX_PACKET_SIZE + 64;

/// The write buffer is given back after a packet larger than this.
const KEEP_WRITE_BUFFER: usize = 256 << 10;

/// What a method knows about its call besides the messages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Call {
    /// The RPC name, e.g. `/coder.agent.v2.Agent/GetManifest`.
    pub rpc: String,
    /// The InvokeMetadata sent with the Invoke, if any.
    pub metadata: Metadata,
}

/// A stream's messages were no longer wanted: the client cancelled, closed or
/// went away, or the call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the drpc stream is closed")]
pub struct StreamClosed;

impl From<StreamClosed> for RpcError {
    fn from(e: StreamClosed) -> RpcError {
        RpcError::message(e.to_string())
    }
}

/// Sends messages to the client of a streaming call. Each is written as one
/// Message packet, in order, before the call's CloseSend or Error. Waits
/// while the previous message is still being written.
#[derive(Debug, Clone)]
pub struct Sender {
    tx: mpsc::Sender<Bytes>,
}

impl Sender {
    /// Queues one encoded message. A message over 4 MiB is not sent: the
    /// call ends with an Error instead, as the client would refuse it.
    pub async fn send(&self, message: impl Into<Bytes>) -> Result<(), StreamClosed> {
        self.tx.send(message.into()).await.map_err(|_| StreamClosed)
    }
}

/// The client's messages on a bidirectional call.
#[derive(Debug)]
pub struct Receiver {
    rx: mpsc::Receiver<Bytes>,
}

impl Receiver {
    /// The next message; `None` once the client has sent CloseSend.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }
}

/// A running call: resolves to the final message to send (unary), or none.
type Task = Pin<Box<dyn Future<Output = Result<Option<Bytes>, RpcError>> + Send>>;

type RequestFn<S> = Arc<dyn Fn(S, Call, Bytes, Sender) -> Task + Send + Sync>;
type BidiFn<S> = Arc<dyn Fn(S, Call, Receiver, Sender) -> Task + Send + Sync>;

enum Method<S> {
    /// Unary and server streaming: started by the first request message.
    Request(RequestFn<S>),
    /// Started by the Invoke.
    Bidi(BidiFn<S>),
}

impl<S> Clone for Method<S> {
    fn clone(&self) -> Self {
        match self {
            Method::Request(f) => Method::Request(f.clone()),
            Method::Bidi(f) => Method::Bidi(f.clone()),
        }
    }
}

/// The methods a server answers, by RPC name. Built once, shared by every
/// transport; `S` is what each call gets (a handle, the agent it serves).
/// Registering a name twice keeps the later method.
pub struct Router<S> {
    methods: HashMap<String, Method<S>>,
}

impl<S> Default for Router<S> {
    fn default() -> Self {
        Router {
            methods: HashMap::new(),
        }
    }
}

impl<S: Send + 'static> Router<S> {
    pub fn new() -> Router<S> {
        Router::default()
    }

    /// A unary method: `handler(state, call, request)` returns the encoded
    /// response (anything that becomes `Bytes`: a `Vec<u8>` from prost's
    /// `encode_to_vec`, or `Bytes`) or an error with a code.
    pub fn unary<F, Fut, R>(mut self, rpc: &str, handler: F) -> Self
    where
        F: Fn(S, Call, Bytes) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, RpcError>> + Send + 'static,
        R: Into<Bytes>,
    {
        let f: RequestFn<S> = Arc::new(move |state, call, request, _sender| {
            let fut = handler(state, call, request);
            Box::pin(async move { fut.await.map(|r| Some(r.into())) })
        });
        self.methods.insert(rpc.to_string(), Method::Request(f));
        self
    }

    /// A server-streaming method: `handler(state, call, request, sender)`
    /// sends any number of messages; returning `Ok` ends the stream with
    /// CloseSend, `Err` with an Error packet.
    pub fn server_stream<F, Fut>(mut self, rpc: &str, handler: F) -> Self
    where
        F: Fn(S, Call, Bytes, Sender) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), RpcError>> + Send + 'static,
    {
        let f: RequestFn<S> = Arc::new(move |state, call, request, sender| {
            let fut = handler(state, call, request, sender);
            Box::pin(async move { fut.await.map(|()| None) })
        });
        self.methods.insert(rpc.to_string(), Method::Request(f));
        self
    }

    /// A bidirectional method: `handler(state, call, receiver, sender)`,
    /// started by the Invoke. Returning ends the server's side as for a
    /// server stream; the client's CloseSend ends the receiver only.
    pub fn bidi<F, Fut>(mut self, rpc: &str, handler: F) -> Self
    where
        F: Fn(S, Call, Receiver, Sender) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), RpcError>> + Send + 'static,
    {
        let f: BidiFn<S> = Arc::new(move |state, call, receiver, sender| {
            let fut = handler(state, call, receiver, sender);
            Box::pin(async move { fut.await.map(|()| None) })
        });
        self.methods.insert(rpc.to_string(), Method::Bidi(f));
        self
    }

    /// Whether a method has this name.
    pub fn has(&self, rpc: &str) -> bool {
        self.methods.contains_key(rpc)
    }
}

/// Why a transport was given up. After any of these the transport should be
/// closed; none is a panic.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("drpc protocol error: {0}")]
    Wire(#[from] WireError),
    #[error("drpc protocol error: invoke on stream {0}, which is already open")]
    InvokeOnOpenStream(u64),
    #[error("drpc protocol error: {kind:?} packet for stream {stream}, which was never invoked")]
    NotInvoked { stream: u64, kind: Kind },
    #[error("drpc transport closed inside a packet")]
    Truncated,
    #[error("drpc transport: {0}")]
    Io(#[from] std::io::Error),
}

/// A call whose handler runs.
struct Running {
    task: Task,
    /// Messages the handler sends; `None` once every sender is gone.
    out: Option<mpsc::Receiver<Bytes>>,
    /// Where the client's messages go (bidirectional only); `None` after
    /// the client's CloseSend or when the handler stopped listening.
    inbox: Option<mpsc::Sender<Bytes>>,
    /// A client message waiting for room in the inbox; the transport is
    /// not read meanwhile (backpressure, as drpc's packet buffer).
    pending: Option<Bytes>,
}

enum Phase<S> {
    /// Unary or server streaming, waiting for the request message.
    AwaitingRequest(Call, RequestFn<S>),
    Running(Running),
    /// The server has sent its last packet, or the call was cancelled: the
    /// client's remaining packets for this stream are dropped.
    Finished,
}

/// The current stream: the one with the highest id invoked so far.
struct Stream<S> {
    id: u64,
    /// The server's last message id on this stream.
    sent: u64,
    phase: Phase<S>,
}

/// The transport with its decoder and write buffer.
struct Conn<T> {
    io: T,
    decoder: Decoder,
    wbuf: Vec<u8>,
    /// The room the next read gets (between READ_MIN and READ_MAX).
    read_room: usize,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Conn<T> {
    /// The next packet, or `None` at a clean end of input. Cancel-safe: all
    /// state is in the decoder, and the only await is one read.
    async fn read_packet(&mut self) -> Result<Option<Packet>, ServeError> {
        loop {
            if let Some(packet) = self.decoder.decode()? {
                return Ok(Some(packet));
            }
            let room = self.read_room;
            self.decoder.release_if_idle(READ_MAX);
            let buf = self.decoder.buffer_mut();
            buf.reserve(room);
            let n = self.io.read_buf(buf).await?;
            // Double while reads fill the room, shrink back when they do not.
            self.read_room = if n >= room {
                (room * 2).min(READ_MAX)
            } else {
                READ_MIN
            };
            if n == 0 {
                return if self.decoder.at_boundary() {
                    Ok(None)
                } else {
                    Err(ServeError::Truncated)
                };
            }
        }
    }

    /// Writes one packet (split into frames) and flushes, reading meanwhile.
    ///
    /// The read side is polled while a write waits: a transport may deliver
    /// its flow control on reads (tokio-yamux takes a stream's window updates
    /// only in `poll_read`), so a large response would otherwise wait forever
    /// for a window that never opens. What arrives meanwhile is kept in the
    /// decoder, at most [`MAX_STASH`] bytes; past that the read side waits.
    async fn write(&mut self, id: Id, kind: Kind, data: &[u8]) -> std::io::Result<()> {
        self.wbuf.clear();
        super::wire::write_packet(&mut self.wbuf, id, kind, false, data);
        let mut pos = 0;
        let mut read_open = true;
        let result = std::future::poll_fn(|cx| {
            use std::task::Poll;
            while read_open && self.decoder.buffered() < MAX_STASH {
                let mut chunk = [0u8; 4096];
                let mut rb = tokio::io::ReadBuf::new(&mut chunk);
                match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) if rb.filled().is_empty() => read_open = false,
                    Poll::Ready(Ok(())) => self.decoder.extend(rb.filled()),
                    // The read loop meets the error (or the end) again next.
                    Poll::Ready(Err(_)) => read_open = false,
                    Poll::Pending => break,
                }
            }
            while pos < self.wbuf.len() {
                match Pin::new(&mut self.io).poll_write(cx, &self.wbuf[pos..]) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                    }
                    Poll::Ready(Ok(n)) => pos += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            Pin::new(&mut self.io).poll_flush(cx)
        })
        .await;
        if self.wbuf.capacity() > KEEP_WRITE_BUFFER {
            self.wbuf = Vec::new();
        }
        result
    }
}

/// The error that replaces a message too large for the client to accept.
fn too_large(len: usize) -> RpcError {
    RpcError::message(format!(
        "message of {len} bytes exceeds the {MAX_PACKET_SIZE} byte limit"
    ))
}

impl<S> Stream<S> {
    fn next_id(&mut self) -> Id {
        self.sent += 1;
        Id::new(self.id, self.sent)
    }

    /// Writes one Message. One too large for the client is not written; the
    /// error to end the call with is returned instead.
    async fn write_message<T>(
        &mut self,
        conn: &mut Conn<T>,
        message: &[u8],
    ) -> std::io::Result<Result<(), RpcError>>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        if message.len() > MAX_PACKET_SIZE {
            return Ok(Err(too_large(message.len())));
        }
        let id = self.next_id();
        conn.write(id, Kind::Message, message).await?;
        Ok(Ok(()))
    }

    /// Ends the call: the messages the handler queued before it returned
    /// (whatever the outcome: they were sent before it), then the final
    /// message and CloseSend, or the Error.
    async fn finish<T>(
        &mut self,
        conn: &mut Conn<T>,
        mut outcome: Result<Option<Bytes>, RpcError>,
    ) -> std::io::Result<()>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        let phase = std::mem::replace(&mut self.phase, Phase::Finished);
        if let Phase::Running(Running {
            out: Some(mut out), ..
        }) = phase
        {
            while let Ok(message) = out.try_recv() {
                if let Err(e) = self.write_message(conn, &message).await? {
                    outcome = Err(e);
                    break;
                }
            }
        }
        if let Ok(Some(message)) = &outcome
            && let Err(e) = self.write_message(conn, message).await?
        {
            outcome = Err(e);
        }
        let id = self.next_id();
        match outcome {
            Ok(_) => conn.write(id, Kind::CloseSend, &[]).await,
            Err(error) => conn.write(id, Kind::Error, &error.encode()).await,
        }
    }
}

/// What woke the loop.
enum Event {
    Packet(Option<Packet>),
    Out(Option<Bytes>),
    Done(Result<Option<Bytes>, RpcError>),
    Delivered,
}

async fn recv_out(out: &mut Option<mpsc::Receiver<Bytes>>) -> Option<Bytes> {
    match out {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Delivers the pending client message into the inbox, dropping it (and the
/// inbox) if the handler no longer listens.
async fn deliver(inbox: &mut Option<mpsc::Sender<Bytes>>, pending: &mut Option<Bytes>) {
    let (Some(tx), Some(_)) = (inbox.as_ref(), pending.as_ref()) else {
        return std::future::pending().await;
    };
    let listening = match tx.reserve().await {
        Ok(permit) => {
            if let Some(message) = pending.take() {
                permit.send(message);
            }
            true
        }
        Err(_) => false,
    };
    if !listening {
        *inbox = None;
        *pending = None;
    }
}

async fn next_event<T, S>(
    conn: &mut Conn<T>,
    stream: Option<&mut Stream<S>>,
) -> Result<Event, ServeError>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let Some(Stream {
        phase: Phase::Running(running),
        ..
    }) = stream
    else {
        return Ok(Event::Packet(conn.read_packet().await?));
    };
    let Running {
        task,
        out,
        inbox,
        pending,
    } = running;
    let reading = pending.is_none();
    tokio::select! {
        outcome = task.as_mut() => Ok(Event::Done(outcome)),
        message = recv_out(out) => Ok(Event::Out(message)),
        () = deliver(inbox, pending) => Ok(Event::Delivered),
        packet = conn.read_packet(), if reading => Ok(Event::Packet(packet?)),
    }
}

/// Serves DRPC on one transport until the client goes away (`Ok`) or breaks
/// the protocol (`Err`), then shuts the transport's write side.
pub async fn serve<T, S>(io: T, router: &Router<S>, state: S) -> Result<(), ServeError>
where
    T: AsyncRead + AsyncWrite + Unpin,
    S: Clone + Send + 'static,
{
    let mut conn = Conn {
        io,
        decoder: Decoder::new(),
        wbuf: Vec::new(),
        read_room: READ_MIN,
    };
    let result = run(&mut conn, router, state).await;
    // The peer may be gone already; there is nothing to tell it then.
    let _ = conn.io.shutdown().await;
    result
}

async fn run<T, S>(conn: &mut Conn<T>, router: &Router<S>, state: S) -> Result<(), ServeError>
where
    T: AsyncRead + AsyncWrite + Unpin,
    S: Clone + Send + 'static,
{
    let mut current: Option<Stream<S>> = None;
    // InvokeMetadata waiting for the Invoke of its stream.
    let mut metadata: Option<(u64, Metadata)> = None;
    loop {
        match next_event(conn, current.as_mut()).await? {
            Event::Packet(None) => return Ok(()),
            Event::Packet(Some(packet)) => {
                let body = packet.body()?;
                let sid = packet.id.stream;
                match current.as_mut() {
                    Some(stream) if stream.id == sid => {
                        on_packet(conn, &state, stream, body).await?;
                    }
                    // The decoder keeps ids rising: this is a later stream.
                    _ => match body {
                        Body::Ignored => {}
                        Body::InvokeMetadata(md) => {
                            current = None;
                            metadata = Some((sid, md));
                        }
                        Body::Invoke(rpc) => {
                            let md = match metadata.take() {
                                Some((id, md)) if id == sid => md,
                                _ => Metadata::new(),
                            };
                            // The previous call is dropped before this one starts.
                            drop(current.take());
                            let call = Call { rpc, metadata: md };
                            current = Some(invoke(conn, router, &state, sid, call).await?);
                        }
                        _ => {
                            return Err(ServeError::NotInvoked {
                                stream: sid,
                                kind: packet.kind,
                            });
                        }
                    },
                }
            }
            Event::Out(message) => {
                if let Some(stream) = current.as_mut() {
                    match message {
                        Some(message) => {
                            if let Err(e) = stream.write_message(conn, &message).await? {
                                // Nothing the handler queued after it goes out.
                                stream.phase = Phase::Finished;
                                stream.finish(conn, Err(e)).await?;
                            }
                        }
                        None => {
                            if let Phase::Running(running) = &mut stream.phase {
                                running.out = None;
                            }
                        }
                    }
                }
            }
            Event::Done(outcome) => {
                if let Some(stream) = current.as_mut() {
                    stream.finish(conn, outcome).await?;
                }
            }
            Event::Delivered => {}
        }
    }
}

/// Starts stream `sid` for `call`: an unknown method is answered at once.
async fn invoke<T, S>(
    conn: &mut Conn<T>,
    router: &Router<S>,
    state: &S,
    sid: u64,
    call: Call,
) -> Result<Stream<S>, ServeError>
where
    T: AsyncRead + AsyncWrite + Unpin,
    S: Clone + Send + 'static,
{
    let mut stream = Stream {
        id: sid,
        sent: 0,
        phase: Phase::Finished,
    };
    match router.methods.get(&call.rpc).cloned() {
        None => {
            let error = RpcError::unimplemented(format!("unknown rpc: {:?}", call.rpc));
            let id = stream.next_id();
            conn.write(id, Kind::Error, &error.encode()).await?;
        }
        Some(Method::Request(f)) => stream.phase = Phase::AwaitingRequest(call, f),
        Some(Method::Bidi(f)) => {
            let (in_tx, in_rx) = mpsc::channel(1);
            let (out_tx, out_rx) = mpsc::channel(1);
            let task = f(
                state.clone(),
                call,
                Receiver { rx: in_rx },
                Sender { tx: out_tx },
            );
            stream.phase = Phase::Running(Running {
                task,
                out: Some(out_rx),
                inbox: Some(in_tx),
                pending: None,
            });
        }
    }
    Ok(stream)
}

/// Starts a unary or server-streaming handler on its request.
fn start_request<S: Clone>(state: &S, call: Call, f: RequestFn<S>, request: Bytes) -> Running {
    let (out_tx, out_rx) = mpsc::channel(1);
    let task = f(state.clone(), call, request, Sender { tx: out_tx });
    Running {
        task,
        out: Some(out_rx),
        inbox: None,
        pending: None,
    }
}

/// A packet for the current stream.
async fn on_packet<T, S>(
    conn: &mut Conn<T>,
    state: &S,
    stream: &mut Stream<S>,
    body: Body,
) -> Result<(), ServeError>
where
    T: AsyncRead + AsyncWrite + Unpin,
    S: Clone,
{
    match body {
        Body::Invoke(_) | Body::InvokeMetadata(_) => {
            return Err(ServeError::InvokeOnOpenStream(stream.id));
        }
        Body::Message(message) => match std::mem::replace(&mut stream.phase, Phase::Finished) {
            Phase::AwaitingRequest(call, f) => {
                stream.phase = Phase::Running(start_request(state, call, f, message));
            }
            // Bidirectional: to the handler. Unary and server streaming
            // take one request; later messages are dropped, as after the end.
            Phase::Running(mut running) => {
                if running.inbox.is_some() {
                    running.pending = Some(message);
                }
                stream.phase = Phase::Running(running);
            }
            Phase::Finished => {}
        },
        Body::CloseSend => match &mut stream.phase {
            Phase::AwaitingRequest(..) => {
                let error = RpcError::message("the client closed before sending its request");
                stream.finish(conn, Err(error)).await?;
            }
            Phase::Running(running) => running.inbox = None,
            Phase::Finished => {}
        },
        // The call is dead: its handler is dropped, nothing is sent.
        Body::Cancel | Body::Close | Body::Error(_) => stream.phase = Phase::Finished,
        Body::Ignored => {}
    }
    Ok(())
}
