//! The HTTP server: hyper-util's connection builder (HTTP/1.1 with upgrades,
//! and plaintext HTTP/2) with the routing table as its service, under the
//! limits of `[http]`:
//!
//! - a request head must arrive within `header_read_timeout` of the
//!   connection being ready for it (hyper's HTTP/1 timer; for the first bytes,
//!   before the protocol is known, and for HTTP/2, the idle watch below);
//! - a connection with no request in progress is closed after `idle_timeout`;
//! - at most `max_connections` sockets are open, WebSockets included (a slot
//!   is part of the socket and freed when it closes); at the cap the accept
//!   loop waits, so new connections queue in the kernel's listen backlog at
//!   no cost here;
//! - on shutdown (`App::shutdown`) the listener closes, connections with
//!   nothing in progress close at once, the others after their request, and
//!   whatever is still open after `shutdown_timeout` is cut.

use std::convert::Infallible;
use std::future::pending;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use crate::app::App;
use crate::config::HttpConfig;

/// How long a connection told to close (idle, or shutting down with nothing
/// in progress) may take to say goodbye (an HTTP/2 GOAWAY) before it is
/// dropped; only a request head still arriving needs it all.
const GOODBYE: Duration = Duration::from_millis(200);

/// How often reaching the connection cap is logged, at most.
const CAP_WARNING_EVERY: Duration = Duration::from_secs(60);

/// The client's address, put on every request (warp's own `addr::remote`
/// only works under warp's server).
#[derive(Clone, Copy, Debug)]
struct ClientAddr(SocketAddr);

/// The address of the client that sent the request.
pub(super) fn remote_addr()
-> impl Filter<Extract = (Option<SocketAddr>,), Error = Infallible> + Clone {
    warp::ext::optional::<ClientAddr>().map(|addr: Option<ClientAddr>| addr.map(|a| a.0))
}

/// Serves `routes(app)` on `listener` until `app.shutdown` is cancelled, then
/// stops accepting and returns once every connection has closed or
/// `http.shutdown_timeout` has passed (cutting those still open).
pub(crate) async fn serve(listener: TcpListener, app: &App) {
    let limits = app.config.http.clone();
    let max = limits.max_connections;
    let slots = Arc::new(Semaphore::new(max as usize));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // Header names as Go's net/http writes them (`Content-Type`), so
        // the DERP upgrade's 101 is byte for byte coderd's.
        .title_case_headers(true);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let routes = super::routes(app);
    let shutdown = app.shutdown.clone();
    let mut connections = JoinSet::new();
    let mut warned_at: Option<Instant> = None;
    loop {
        // A slot first: at the cap, nothing is accepted until one frees.
        let slot = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            slot = take_slot(&slots, max, &mut warned_at) => slot,
        };
        let (stream, peer) = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        () = accept_failed(e) => continue,
                    }
                }
            },
        };
        // No Nagle delay, as Go's net package sets on every TCP connection:
        // the DERP relay and the WebSocket streams write small frames
        // back to back, and Nagle would hold the second until the peer's
        // delayed ACK (40 ms): an SSH keystroke through the relay took 44 ms.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY");
        }
        // Forget connections that have ended.
        while connections.try_join_next().is_some() {}
        connections.spawn(connection(
            builder.clone(),
            routes.clone(),
            Slot {
                stream,
                _slot: slot,
            },
            peer,
            limits.clone(),
            shutdown.clone(),
        ));
    }
    drop(listener);
    drain(connections, &slots, max, &limits).await;
}

/// A slot for one more connection, waiting (and saying so) at the cap.
async fn take_slot(
    slots: &Arc<Semaphore>,
    max: u32,
    warned_at: &mut Option<Instant>,
) -> OwnedSemaphorePermit {
    if let Ok(slot) = slots.clone().try_acquire_owned() {
        return slot;
    }
    if warned_at.is_none_or(|t| t.elapsed() >= CAP_WARNING_EVERY) {
        *warned_at = Some(Instant::now());
        tracing::warn!(
            max_connections = max,
            "connection limit reached: {max} connections are open; new ones wait to be accepted until one closes (http.max_connections)"
        );
    }
    match slots.clone().acquire_owned().await {
        Ok(slot) => slot,
        // The semaphore is never closed.
        Err(_) => pending().await,
    }
}

/// An accept that failed: the client's own doing is not worth a line; a
/// lack of resources (open files, memory) is, and is given a moment to pass.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        tracing::debug!(error = %e, "a connection went away before it was accepted");
        return;
    }
    tracing::warn!(error = %e, "accepting a connection failed; retrying in 1s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// After the listener closed: waits for every connection (and every upgraded
/// socket, which holds its slot) to end, at most `shutdown_timeout`; then
/// cuts the rest.
async fn drain(mut connections: JoinSet<()>, slots: &Semaphore, max: u32, limits: &HttpConfig) {
    let all_closed = async {
        while connections.join_next().await.is_some() {}
        let _ = slots.acquire_many(max).await;
    };
    if tokio::time::timeout(limits.shutdown_timeout, all_closed)
        .await
        .is_err()
    {
        let cut = max as usize - slots.available_permits();
        connections.shutdown().await;
        tracing::warn!(
            cut,
            "shutdown deadline ({}) passed: cut {cut} connection{} still open (http.shutdown_timeout)",
            crate::config::format_duration(limits.shutdown_timeout),
            if cut == 1 { "" } else { "s" }
        );
    }
}

/// One connection, from accept to close.
async fn connection(
    builder: Arc<auto::Builder<TokioExecutor>>,
    routes: BoxedFilter<(Response,)>,
    socket: Slot,
    peer: SocketAddr,
    limits: HttpConfig,
    shutdown: CancellationToken,
) {
    let activity = Arc::new(Activity::new());
    let routes = TowerToHyperService::new(warp::service(routes));
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ClientAddr(peer));
        let request = InFlight::begin(&requests);
        let answer = hyper::service::Service::call(&routes, req);
        async move {
            let resp = answer.await?;
            Ok::<_, Infallible>(resp.map(|body| Tracked {
                body,
                _request: request,
            }))
        }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(socket), service);
    tokio::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => Some(ended),
        () = idle_too_long(&activity, &limits) => None,
        () = shutdown.cancelled() => {
            if activity.in_flight() > 0 {
                // Let the request finish (streams end on the same signal);
                // the server's deadline bounds the wait.
                conn.as_mut().graceful_shutdown();
                Some(conn.as_mut().await)
            } else {
                None
            }
        }
    };
    let ended = match ended {
        Some(ended) => ended,
        None => {
            // Nothing in progress: HTTP/1 closes at once, HTTP/2 after its
            // GOAWAY; a head still arriving is dropped after a moment.
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(GOODBYE, conn.as_mut()).await {
                Ok(ended) => ended,
                Err(_) => return,
            }
        }
    };
    if let Err(e) = ended {
        // Clients that go away, time out or speak nonsense: routine.
        tracing::debug!(error = %e, "connection ended");
    }
}

/// Resolves once the connection has had nothing in progress for
/// `header_read_timeout` before its first request, or `idle_timeout` after.
///
/// Requests only touch two atomics ([`Activity`]); this task wakes when the
/// limit could have run out, and at least once per the shorter of the two
/// limits, so the check costs nothing per request.
async fn idle_too_long(activity: &Activity, limits: &HttpConfig) {
    loop {
        let limit = if activity.started_any() {
            limits.idle_timeout
        } else {
            limits.header_read_timeout
        };
        let wait = if activity.in_flight() > 0 {
            limit
        } else {
            let idle_for = activity.idle_for();
            if idle_for >= limit {
                return;
            }
            limit - idle_for
        };
        // The limit itself changes with the first request: never sleep past
        // the shorter of the two, so the check follows it.
        let step = limits.idle_timeout.min(limits.header_read_timeout);
        tokio::time::sleep(wait.min(step)).await;
    }
}

/// What a connection's requests are doing: how many are in progress, and
/// when the last one ended (or the connection opened).
struct Activity {
    opened: Instant,
    /// Requests in progress, plus `STARTED` once any request began.
    in_flight: AtomicUsize,
    /// Milliseconds after `opened` when the count last fell to zero.
    idle_since_ms: AtomicU64,
}

/// A high bit of `Activity::in_flight`: some request has begun.
const STARTED: usize = 1 << (usize::BITS - 1);

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
        }
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire) & !STARTED
    }

    fn started_any(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) & STARTED != 0
    }

    fn idle_for(&self) -> Duration {
        let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        self.opened.elapsed().saturating_sub(since)
    }
}

/// A request in progress on its connection, from its head until its
/// response body ends (a stream: until it closes).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: &Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.in_flight.fetch_or(STARTED, Ordering::AcqRel);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        // Stamp first: a watcher that sees the count at zero reads this end.
        let ms = u64::try_from(a.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        a.idle_since_ms.store(ms, Ordering::Release);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in progress.
struct Tracked<B> {
    body: B,
    _request: InFlight,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A socket and its slot under `max_connections`: the slot is freed when the
/// socket closes, also after an upgrade hands it to a WebSocket.
struct Slot {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl AsyncRead for Slot {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Slot {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
