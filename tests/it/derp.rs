//! `GET /derp` and `GET /derp/latency-check`: the embedded DERP relay, driven
//! by DERP clients written here (frames by hand, NaCl box from crypto_box)
//! over a raw TCP upgrade and over a WebSocket with the `derp` subprotocol.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crypto_box::aead::Aead;
use crypto_box::{Nonce, PublicKey, SalsaBox, SecretKey};
use tungstenite::Message;
use tungstenite::client::IntoClientRequest;

use crate::harness::TestServer;

const SERVER_KEY: u8 = 0x01;
const CLIENT_INFO: u8 = 0x02;
const SERVER_INFO: u8 = 0x03;
const SEND_PACKET: u8 = 0x04;
const RECV_PACKET: u8 = 0x05;
const KEEP_ALIVE: u8 = 0x06;
const PEER_GONE: u8 = 0x08;
const MAGIC: [u8; 8] = [0x44, 0x45, 0x52, 0x50, 0xf0, 0x9f, 0x94, 0x91];

fn frame(kind: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = vec![kind];
    out.extend_from_slice(&(len as u32).to_be_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A byte stream the client speaks DERP over.
trait Wire {
    fn send(&mut self, bytes: &[u8]);
    /// Exactly `n` more bytes.
    fn take_exact(&mut self, n: usize) -> Vec<u8>;
}

impl Wire for TcpStream {
    fn send(&mut self, bytes: &[u8]) {
        self.write_all(bytes).unwrap();
    }
    fn take_exact(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        self.read_exact(&mut buf).unwrap();
        buf
    }
}

/// A WebSocket whose binary messages are one byte stream.
struct WsWire {
    ws: tungstenite::WebSocket<TcpStream>,
    pending: Vec<u8>,
    /// The largest binary message received.
    largest: usize,
}

impl Wire for WsWire {
    fn send(&mut self, bytes: &[u8]) {
        self.ws.send(Message::binary(bytes.to_vec())).unwrap();
    }
    fn take_exact(&mut self, n: usize) -> Vec<u8> {
        while self.pending.len() < n {
            match self.ws.read().unwrap() {
                Message::Binary(b) => {
                    self.largest = self.largest.max(b.len());
                    self.pending.extend_from_slice(&b);
                }
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("unexpected message {other:?}"),
            }
        }
        self.pending.drain(..n).collect()
    }
}

struct Client<W> {
    wire: W,
    public: [u8; 32],
    server_key: [u8; 32],
}

impl<W: Wire> Client<W> {
    /// ServerKey in, ClientInfo out, ServerInfo in.
    fn handshake(mut wire: W) -> Client<W> {
        let (kind, body) = read_frame(&mut wire);
        assert_eq!(kind, SERVER_KEY);
        assert_eq!(&body[..8], &MAGIC);
        let server_key: [u8; 32] = body[8..40].try_into().unwrap();
        let secret = SecretKey::from(rand::random::<[u8; 32]>());
        let public = secret.public_key().to_bytes();
        let sealer = SalsaBox::new(&PublicKey::from(server_key), &secret);
        let nonce: [u8; 24] = rand::random();
        let sealed = sealer
            .encrypt(
                Nonce::from_slice(&nonce),
                &br#"{"version":2,"CanAckPings":true}"#[..],
            )
            .unwrap();
        wire.send(&frame(CLIENT_INFO, &[&public, &nonce, &sealed]));
        let (kind, body) = read_frame(&mut wire);
        assert_eq!(kind, SERVER_INFO);
        let info = sealer
            .decrypt(Nonce::from_slice(&body[..24]), &body[24..])
            .unwrap();
        assert_eq!(info, br#"{"version":2}"#);
        Client {
            wire,
            public,
            server_key,
        }
    }

    fn send_packet(&mut self, dst: &[u8; 32], data: &[u8]) {
        self.wire.send(&frame(SEND_PACKET, &[dst, data]));
    }

    /// The next frame other than a KeepAlive.
    fn next(&mut self) -> (u8, Vec<u8>) {
        loop {
            let f = read_frame(&mut self.wire);
            if f.0 != KEEP_ALIVE {
                return f;
            }
        }
    }
}

fn read_frame(wire: &mut impl Wire) -> (u8, Vec<u8>) {
    let header = wire.take_exact(5);
    let len = u32::from_be_bytes(header[1..5].try_into().unwrap()) as usize;
    (header[0], wire.take_exact(len))
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// The plain upgrade: the response head, read byte by byte so that no DERP
/// byte after it is consumed.
fn upgrade(addr: SocketAddr, upgrade: &str) -> (TcpStream, String) {
    let mut s = connect(addr);
    write!(
        s,
        "GET /derp HTTP/1.1\r\nHost: coder.example\r\nUpgrade: {upgrade}\r\nConnection: Upgrade\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.extend(s.take_exact(1));
    }
    (s, String::from_utf8(head).unwrap())
}

/// The head must be Go's 101 byte for byte, except that hyper adds its
/// `Date` header last (Go writes none on a hijacked connection).
fn assert_go_101(head: &str, key: &[u8; 32]) {
    let want = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: Upgrade\r\nDerp-Version: 2\r\nDerp-Public-Key: {}\r\n",
        hex(key)
    );
    let rest = head
        .strip_prefix(&want)
        .unwrap_or_else(|| panic!("{head:?} does not start with {want:?}"));
    assert!(
        rest == "\r\n" || (rest.starts_with("Date: ") && rest.ends_with(" GMT\r\n\r\n")),
        "after the DERP headers: {rest:?}"
    );
}

#[test]
fn the_plain_upgrade_is_gos_101_then_a_relay_between_two_clients() {
    let server = TestServer::start();
    let (a_stream, head) = upgrade(server.addr, "DERP");
    let mut a = Client::handshake(a_stream);
    assert_go_101(&head, &a.server_key);
    // The header's value is case-insensitive, as in Go.
    let (b_stream, _) = upgrade(server.addr, "derp");
    let mut b = Client::handshake(b_stream);
    assert_eq!(b.server_key, a.server_key);

    a.send_packet(&b.public, b"wireguard bytes");
    let (kind, body) = b.next();
    assert_eq!(kind, RECV_PACKET);
    assert_eq!(&body[..32], &a.public, "the source is the sender's own key");
    assert_eq!(&body[32..], b"wireguard bytes");
    b.send_packet(&a.public, b"and back");
    let (kind, body) = a.next();
    assert_eq!(
        (kind, &body[..32], &body[32..]),
        (RECV_PACKET, &b.public[..], &b"and back"[..])
    );

    // a leaves: b, which a sent to, is told.
    drop(a);
    let (kind, body) = b.next();
    assert_eq!(kind, PEER_GONE);
    assert_eq!(body.len(), 33);
}

#[test]
fn the_websocket_path_echoes_the_derp_subprotocol_and_relays() {
    let server = TestServer::start();
    let mut req = format!("ws://{}/derp", server.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "derp".parse().unwrap());
    let (ws, resp) = tungstenite::client(req, connect(server.addr)).unwrap();
    assert_eq!(resp.status(), 101);
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap()),
        Some("derp")
    );
    assert!(
        resp.headers().get("sec-websocket-extensions").is_none(),
        "no compression"
    );
    let mut w = Client::handshake(WsWire {
        ws,
        pending: Vec::new(),
        largest: 0,
    });
    let (tcp, _) = upgrade(server.addr, "DERP");
    let mut t = Client::handshake(tcp);
    w.send_packet(&t.public, b"over websocket");
    let (kind, body) = t.next();
    assert_eq!(
        (kind, &body[..32], &body[32..]),
        (RECV_PACKET, &w.public[..], &b"over websocket"[..])
    );
    t.send_packet(&w.public, b"over tcp");
    let (kind, body) = w.next();
    assert_eq!(
        (kind, &body[..32], &body[32..]),
        (RECV_PACKET, &t.public[..], &b"over tcp"[..])
    );
    // A packet of the largest size arrives whole, in messages a client with
    // coder/websocket's default read limit (32 KiB per message) accepts.
    for size in [1 << 10, 16 << 10, 33 << 10, 64 << 10] {
        let big: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        t.send_packet(&w.public, &big);
        let (kind, body) = w.next();
        assert_eq!(kind, RECV_PACKET);
        assert_eq!((&body[..32], body.len() - 32), (&t.public[..], big.len()));
        assert!(body[32..] == big[..], "the packet's bytes");
    }
    assert!(
        w.wire.largest <= 32 << 10,
        "a message of {} bytes: over coder/websocket's 32 KiB read limit",
        w.wire.largest
    );
}

#[test]
fn without_an_upgrade_426_and_latency_check_200() {
    let server = TestServer::start();
    let resp = server.get("/derp", None);
    assert_eq!(resp.status, 426);
    assert_eq!(resp.body, "DERP requires connection upgrade\n");
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let resp = server.get("/derp/latency-check", None);
    assert_eq!((resp.status, resp.body.as_str()), (200, ""));
    // An upgrade to something else is no DERP either.
    let (_, head) = upgrade(server.addr, "foo");
    assert!(head.starts_with("HTTP/1.1 426 "), "{head}");
}

#[test]
fn the_relay_key_survives_a_restart() {
    let server = TestServer::start();
    let (s, _) = upgrade(server.addr, "DERP");
    let before = Client::handshake(s).server_key;
    let sandbox = server.sandbox().clone();
    server.stop();
    let server = TestServer::start_in(sandbox, &[]);
    let (s, head) = upgrade(server.addr, "DERP");
    let after = Client::handshake(s).server_key;
    assert_eq!(before, after);
    assert_go_101(&head, &after);
}
