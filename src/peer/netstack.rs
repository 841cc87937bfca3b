//! The peer's userspace TCP/IP stack: one smoltcp interface (IPv6, MTU 1280
//! as Tailscale's, medium IP: packets in and out are bare IP packets) with
//! the peer's own address. IP packets the tunnels decrypt go in with
//! [`Stack::deliver`]; the packets it sends come out of [`Stack::run`] to a
//! callback that routes them to a tunnel by destination address.
//!
//! One task polls the interface whenever a packet arrives, a socket is read
//! or written, or smoltcp's own timer (retransmits, delayed ACKs) is due.
//! [`PeerStream`] is one TCP connection as tokio's `AsyncRead` +
//! `AsyncWrite`, woken through smoltcp's socket wakers.

use std::collections::VecDeque;
use std::net::Ipv6Addr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Tailscale's MTU for the tunnel.
pub const MTU: usize = 1280;
/// Per-connection buffers: the receive buffer is the window the agent may
/// fill before we read (window scaling is used above 64 KiB).
const RX_BUFFER: usize = 512 << 10;
const TX_BUFFER: usize = 256 << 10;
/// Packets waiting for the stack before new ones are dropped.
const RX_QUEUE: usize = 4096;
/// A connection whose data is not acknowledged for this long is dropped.
const TCP_TIMEOUT: Duration = Duration::from_secs(60);

/// The interface, its sockets and its packet queues, under one lock.
struct Inner {
    iface: Interface,
    sockets: SocketSet<'static>,
    device: Queues,
    next_port: u16,
    /// Sockets whose stream was dropped: removed once closed.
    orphans: Vec<SocketHandle>,
}

/// The stack, shared by the poll task and every stream.
pub struct Stack {
    inner: Mutex<Inner>,
    wake: Notify,
    epoch: std::time::Instant,
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Stack {
    /// A stack with address `addr` (a /128 under `fd7a:115c:a1e0::/48`; the
    /// whole /48 counts as on-link, so agents need no route).
    pub fn new(addr: Ipv6Addr) -> Arc<Stack> {
        let epoch = std::time::Instant::now();
        let mut device = Queues::default();
        let config = Config::new(HardwareAddress::Ip);
        let mut iface = Interface::new(config, &mut device, SmolInstant::from_micros(0));
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv6(addr), 48));
        });
        let _ = iface.routes_mut().add_default_ipv6_route(addr);
        Arc::new(Stack {
            inner: Mutex::new(Inner {
                iface,
                sockets: SocketSet::new(Vec::new()),
                device,
                next_port: 49152,
                orphans: Vec::new(),
            }),
            wake: Notify::new(),
            epoch,
        })
    }

    fn now(&self) -> SmolInstant {
        SmolInstant::from_micros(
            i64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(i64::MAX),
        )
    }

    /// Hands the stack an IP packet from a tunnel.
    pub fn deliver(&self, packet: Vec<u8>) {
        {
            let mut inner = lock(&self.inner);
            if inner.device.rx.len() >= RX_QUEUE {
                return;
            }
            inner.device.rx.push_back(packet);
        }
        self.wake.notify_one();
    }

    /// Polls the interface until `shutdown`, giving each packet it sends to
    /// `send` (outside the lock).
    pub async fn run(self: Arc<Stack>, shutdown: CancellationToken, mut send: impl FnMut(Vec<u8>)) {
        let mut out = Vec::new();
        loop {
            let delay = {
                let mut inner = lock(&self.inner);
                let now = self.now();
                let Inner {
                    iface,
                    sockets,
                    device,
                    orphans,
                    ..
                } = &mut *inner;
                // One poll handles every queued packet and every socket's
                // egress; repeat while it changes something, bounded.
                for _ in 0..64 {
                    let changed = iface.poll(now, device, sockets);
                    if matches!(changed, smoltcp::iface::PollResult::None) && device.rx.is_empty() {
                        break;
                    }
                }
                orphans.retain(|h| {
                    let s = sockets.get::<tcp::Socket>(*h);
                    let done = matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait);
                    if done {
                        sockets.remove(*h);
                    }
                    !done
                });
                std::mem::swap(&mut out, &mut device.tx);
                iface.poll_delay(now, sockets)
            };
            for packet in out.drain(..) {
                send(packet);
            }
            let delay = delay.map_or(Duration::from_secs(1), |d| {
                Duration::from_micros(d.total_micros())
            });
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Opens a TCP connection to `[addr]:port`; resolves once it is
    /// established (or refused).
    pub async fn connect(
        self: &Arc<Stack>,
        addr: Ipv6Addr,
        port: u16,
    ) -> Result<PeerStream, String> {
        let handle = {
            let mut inner = lock(&self.inner);
            let mut socket = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; RX_BUFFER]),
                tcp::SocketBuffer::new(vec![0; TX_BUFFER]),
            );
            socket.set_nagle_enabled(false);
            socket.set_timeout(Some(smoltcp::time::Duration::from_secs(
                TCP_TIMEOUT.as_secs(),
            )));
            let local_port = inner.next_port;
            inner.next_port = if local_port == u16::MAX {
                49152
            } else {
                local_port + 1
            };
            let Inner { iface, sockets, .. } = &mut *inner;
            socket
                .connect(
                    iface.context(),
                    IpEndpoint::new(IpAddress::Ipv6(addr), port),
                    local_port,
                )
                .map_err(|e| format!("connect: {e}"))?;
            sockets.add(socket)
        };
        self.wake.notify_one();
        let stream = PeerStream {
            stack: self.clone(),
            handle,
        };
        std::future::poll_fn(|cx| {
            let mut inner = lock(&stream.stack.inner);
            let s = inner.sockets.get_mut::<tcp::Socket>(handle);
            match s.state() {
                tcp::State::Established | tcp::State::CloseWait => Poll::Ready(Ok(())),
                tcp::State::SynSent | tcp::State::SynReceived => {
                    s.register_send_waker(cx.waker());
                    s.register_recv_waker(cx.waker());
                    Poll::Pending
                }
                _ => Poll::Ready(Err(format!("connection to port {port} refused"))),
            }
        })
        .await?;
        Ok(stream)
    }

    /// Resets every connection to `addr` (its agent went away).
    pub fn abort_to(&self, addr: Ipv6Addr) {
        {
            let mut inner = lock(&self.inner);
            for (_, s) in inner.sockets.iter_mut() {
                let smoltcp::socket::Socket::Tcp(s) = s;
                if s.remote_endpoint().map(|e| e.addr) == Some(IpAddress::Ipv6(addr)) {
                    s.abort();
                }
            }
        }
        self.wake.notify_one();
    }

    /// How many connections to `addr` are open (the tunnel is in use).
    pub fn connections_to(&self, addr: Ipv6Addr) -> usize {
        let inner = lock(&self.inner);
        inner
            .sockets
            .iter()
            .filter(|(_, s)| {
                let smoltcp::socket::Socket::Tcp(s) = s;
                s.remote_endpoint().map(|e| e.addr) == Some(IpAddress::Ipv6(addr))
            })
            .count()
    }
}

#[cfg(test)]
impl Stack {
    /// Accepts one connection on `port` (tests: the agent's side).
    pub async fn accept(self: &Arc<Stack>, port: u16) -> PeerStream {
        let handle = {
            let mut inner = lock(&self.inner);
            let mut socket = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; RX_BUFFER]),
                tcp::SocketBuffer::new(vec![0; TX_BUFFER]),
            );
            socket.set_nagle_enabled(false);
            socket.listen(port).expect("listen");
            inner.sockets.add(socket)
        };
        let stream = PeerStream {
            stack: self.clone(),
            handle,
        };
        std::future::poll_fn(|cx| {
            let mut inner = lock(&stream.stack.inner);
            let s = inner.sockets.get_mut::<tcp::Socket>(handle);
            if s.state() == tcp::State::Established {
                Poll::Ready(())
            } else {
                s.register_recv_waker(cx.waker());
                s.register_send_waker(cx.waker());
                Poll::Pending
            }
        })
        .await;
        stream
    }
}

/// One TCP connection to an agent.
pub struct PeerStream {
    stack: Arc<Stack>,
    handle: SocketHandle,
}

impl std::fmt::Debug for PeerStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerStream").finish_non_exhaustive()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let mut inner = lock(&this.stack.inner);
        let s = inner.sockets.get_mut::<tcp::Socket>(this.handle);
        if s.can_recv() {
            let n = s.recv_slice(buf.initialize_unfilled()).unwrap_or_default();
            buf.advance(n);
            drop(inner);
            // The window opened: let the stack tell the agent.
            this.stack.wake.notify_one();
            return Poll::Ready(Ok(()));
        }
        if !s.may_recv() {
            // The agent closed its side (or the connection is gone): EOF.
            return Poll::Ready(Ok(()));
        }
        s.register_recv_waker(cx.waker());
        Poll::Pending
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let mut inner = lock(&this.stack.inner);
        let s = inner.sockets.get_mut::<tcp::Socket>(this.handle);
        if !s.may_send() {
            return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
        }
        if s.can_send() {
            let n = s.send_slice(data).unwrap_or(0);
            if n > 0 {
                drop(inner);
                this.stack.wake.notify_one();
                return Poll::Ready(Ok(n));
            }
        }
        s.register_send_waker(cx.waker());
        Poll::Pending
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        lock(&this.stack.inner)
            .sockets
            .get_mut::<tcp::Socket>(this.handle)
            .close();
        this.stack.wake.notify_one();
        Poll::Ready(Ok(()))
    }
}

impl Drop for PeerStream {
    fn drop(&mut self) {
        {
            let mut inner = lock(&self.stack.inner);
            inner.sockets.get_mut::<tcp::Socket>(self.handle).close();
            inner.orphans.push(self.handle);
        }
        self.stack.wake.notify_one();
    }
}

/// The device: packets in from the tunnels, packets out to them.
#[derive(Default)]
struct Queues {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
}

struct RxToken(Vec<u8>);
struct TxToken<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for RxToken {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(&self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut packet = vec![0; len];
        let r = f(&mut packet);
        self.0.push(packet);
        r
    }
}

impl phy::Device for Queues {
    type RxToken<'a>
        = RxToken
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, _now: SmolInstant) -> Option<(RxToken, TxToken<'_>)> {
        let packet = self.rx.pop_front()?;
        Some((RxToken(packet), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _now: SmolInstant) -> Option<TxToken<'_>> {
        Some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = MTU;
        let mut checksum = ChecksumCapabilities::default();
        checksum.ipv4 = Checksum::Both;
        checksum.tcp = Checksum::Both;
        caps.checksum = checksum;
        caps
    }
}
