//! The server over `tokio::io::duplex`, driven by hand-written client bytes
//! (CONNECTIVITY.md §1.3) and by a client made of the wire module's writer
//! and decoder.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::wire::{
    Decoder, Id, Kind, MAX_PACKET_SIZE, Packet, WireError, write_packet, write_varint,
};
use super::*;

const GET_MANIFEST: &str = "/coder.agent.v2.Agent/GetManifest";
const FAILS: &str = "/test.v1.T/Fails";
const NUMBERS: &str = "/test.v1.T/Numbers";
const ECHO: &str = "/test.v1.T/Echo";

/// Fails the test instead of hanging it.
async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("timed out")
}

/// A router with a few methods; the state is a tag the unary method echoes.
fn router() -> Router<&'static str> {
    Router::new()
        .unary(
            GET_MANIFEST,
            |state: &'static str, call: Call, request: Bytes| async move {
                // Echoes the state, the rpc name, the request and the metadata.
                let md: Vec<String> = call
                    .metadata
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                Ok::<_, RpcError>(
                    format!("{state}|{}|{}|{}", call.rpc, request.len(), md.join(",")).into_bytes(),
                )
            },
        )
        .unary(FAILS, |_, _, _| async {
            Err::<Bytes, _>(RpcError::new(5, "not found"))
        })
        .server_stream(NUMBERS, |_, _, request: Bytes, tx: Sender| async move {
            // The request is one byte: how many messages.
            let n = request.first().copied().unwrap_or(0);
            for i in 0..n {
                tx.send(vec![i]).await?;
            }
            Ok(())
        })
        .bidi(ECHO, |_, _, mut rx: Receiver, tx: Sender| async move {
            while let Some(message) = rx.recv().await {
                tx.send(message).await?;
            }
            Ok(())
        })
}

fn start<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    state: S,
) -> (Client, JoinHandle<Result<(), ServeError>>) {
    let (client, server) = tokio::io::duplex(256 << 10);
    let router = Arc::new(router);
    let task = tokio::spawn(async move { serve(server, &router, state).await });
    (
        Client {
            io: client,
            decoder: Decoder::new(),
        },
        task,
    )
}

struct Client {
    io: DuplexStream,
    decoder: Decoder,
}

impl Client {
    async fn raw(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.unwrap();
    }

    async fn send(&mut self, stream: u64, message: u64, kind: Kind, data: &[u8]) {
        let mut bytes = Vec::new();
        write_packet(
            &mut bytes,
            Id::new(stream, message),
            kind,
            kind == Kind::Cancel,
            data,
        );
        self.raw(&bytes).await;
    }

    /// The server's next packet, `None` once it has shut its side.
    async fn recv(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = self.decoder.decode().unwrap() {
                return Some(p);
            }
            if self.io.read_buf(self.decoder.buffer_mut()).await.unwrap() == 0 {
                assert!(self.decoder.at_boundary(), "server stopped inside a packet");
                return None;
            }
        }
    }

    async fn expect(&mut self, stream: u64, message: u64, kind: Kind, data: &[u8]) {
        let p = self.recv().await.expect("a packet");
        assert_eq!(
            (p.id, p.kind, p.data.as_ref()),
            (Id::new(stream, message), kind, data),
            "{:?}",
            String::from_utf8_lossy(&p.data)
        );
    }

    async fn expect_error(&mut self, stream: u64, message: u64) -> RpcError {
        let p = self.recv().await.expect("a packet");
        assert_eq!((p.id, p.kind), (Id::new(stream, message), Kind::Error));
        RpcError::decode(&p.data)
    }

    /// Shuts the client's side and waits for the server to end.
    async fn close(mut self, task: JoinHandle<Result<(), ServeError>>) -> Result<(), ServeError> {
        let _ = self.io.shutdown().await;
        let result = task.await.unwrap();
        assert_eq!(self.recv().await, None, "the server shut its side");
        result
    }
}

/// Invoke, request, CloseSend for a request-taking method.
async fn call(c: &mut Client, stream: u64, rpc: &str, request: &[u8]) {
    c.send(stream, 1, Kind::Invoke, rpc.as_bytes()).await;
    c.send(stream, 2, Kind::Message, request).await;
    c.send(stream, 3, Kind::CloseSend, b"").await;
}

/// A flag set when the value is dropped: shows a handler was dropped.
struct DropGuard(Option<oneshot::Sender<()>>);
impl Drop for DropGuard {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

#[tokio::test]
async fn unary_call_with_the_documented_bytes() {
    within(async {
        let (mut c, task) = start(router(), "st");
        // CONNECTIVITY.md §1.3, byte for byte.
        let mut client = vec![0x03, 0x01, 0x01, 0x21];
        client.extend_from_slice(GET_MANIFEST.as_bytes());
        client.extend_from_slice(&[0x05, 0x01, 0x02, 0x00, 0x0D, 0x01, 0x03, 0x00]);
        c.raw(&client).await;
        let body = format!("st|{GET_MANIFEST}|0|");
        let mut expected = vec![0x05, 0x01, 0x01, body.len() as u8];
        expected.extend_from_slice(body.as_bytes());
        expected.extend_from_slice(&[0x0D, 0x01, 0x02, 0x00]);
        let mut got = vec![0; expected.len()];
        c.io.read_exact(&mut got).await.unwrap();
        assert_eq!(got, expected);
        // A bare EOF after the response ends the transport cleanly.
        c.close(task).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_trailing_close_and_a_second_call_on_the_same_transport() {
    within(async {
        let (mut c, task) = start(router(), "st");
        call(&mut c, 1, GET_MANIFEST, b"abc").await;
        c.expect(
            1,
            1,
            Kind::Message,
            format!("st|{GET_MANIFEST}|3|").as_bytes(),
        )
        .await;
        c.expect(1, 2, Kind::CloseSend, b"").await;
        c.send(1, 4, Kind::Close, b"").await;
        // Stream 3 (ids may skip): message ids restart at 1.
        call(&mut c, 3, GET_MANIFEST, b"").await;
        c.expect(
            3,
            1,
            Kind::Message,
            format!("st|{GET_MANIFEST}|0|").as_bytes(),
        )
        .await;
        c.expect(3, 2, Kind::CloseSend, b"").await;
        c.close(task).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_unary_error_carries_its_code() {
    within(async {
        let (mut c, task) = start(router(), "st");
        call(&mut c, 1, FAILS, b"").await;
        let mut expected = vec![0x07, 0x01, 0x01, 17, 0, 0, 0, 0, 0, 0, 0, 5];
        expected.extend_from_slice(b"not found");
        let mut got = vec![0; expected.len()];
        c.io.read_exact(&mut got).await.unwrap();
        assert_eq!(got, expected);
        c.close(task).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn an_unknown_method_is_code_12_and_the_transport_stays_usable() {
    within(async {
        let (mut c, task) = start(router(), "st");
        let push = "/coder.agent.v2.Agent/PushContextState";
        call(&mut c, 1, push, b"\x08\x01").await;
        let e = c.expect_error(1, 1).await;
        assert_eq!(e.code, UNIMPLEMENTED);
        assert_eq!(e.code, 12);
        assert!(e.message.contains(push), "{}", e.message);
        // The client's Message and CloseSend for stream 1 were dropped; the
        // next stream is served.
        call(&mut c, 2, GET_MANIFEST, b"").await;
        c.expect(
            2,
            1,
            Kind::Message,
            format!("st|{GET_MANIFEST}|0|").as_bytes(),
        )
        .await;
        c.expect(2, 2, Kind::CloseSend, b"").await;
        c.close(task).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_server_stream_sends_its_messages_then_close_send() {
    within(async {
        let (mut c, task) = start(router(), "st");
        call(&mut c, 1, NUMBERS, &[4]).await;
        for i in 0..4u8 {
            c.expect(1, u64::from(i) + 1, Kind::Message, &[i]).await;
        }
        c.expect(1, 5, Kind::CloseSend, b"").await;
        // Zero messages: CloseSend alone, with message id 1.
        call(&mut c, 2, NUMBERS, &[]).await;
        c.expect(2, 1, Kind::CloseSend, b"").await;
        c.close(task).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn large_messages_are_split_into_frames_both_ways() {
    within(async {
        let (mut c, task) = start(router(), "st");
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        c.send(1, 1, Kind::Invoke, ECHO.as_bytes()).await;
        c.send(1, 2, Kind::Message, &big).await;
        // Read the raw frames of the echo: 64 KiB each, done on the last.
        let mut frames = 0;
        let mut data = Vec::new();
        loop {
            let mut header = vec![0u8; 1];
            c.io.read_exact(&mut header).await.unwrap();
            let mut rest = [0u8; 8];
            // stream 1, message 1, then the length (up to 3 bytes here).
            c.io.read_exact(&mut rest[..2]).await.unwrap();
            assert_eq!(&rest[..2], &[1, 1]);
            let mut len = 0u64;
            for shift in 0.. {
                let b = c.io.read_u8().await.unwrap();
                len |= u64::from(b & 0x7f) << (7 * shift);
                if b < 0x80 {
                    break;
                }
            }
            assert!(len as usize <= wire::FRAME_SPLIT);
            let mut chunk = vec![0; len as usize];
            c.io.read_exact(&mut chunk).await.unwrap();
            data.extend_from_slice(&chunk);
            frames += 1;
            assert_eq!(header[0] & !1, 0x04, "Message frames");
            if header[0] & 1 == 1 {
                break;
            }
        }
        assert_eq!(frames, 4);
        assert_eq!(data, big);
        c.send(1, 3, Kind::CloseSend, b"").await;
        c.expect(1, 2, Kind::CloseSend, b"").await;
        c.close(task).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn messages_sent_before_an_error_go_out_before_it() {
    within(async {
        let router = Router::new().server_stream(NUMBERS, |_: (), _, _, tx: Sender| async move {
            tx.send(Bytes::from_static(b"a")).await?;
            tx.send(Bytes::from_static(b"b")).await?;
            Err(RpcError::new(9, "gave up"))
        });
        let (mut c, task) = start(router, ());
        call(&mut c, 1, NUMBERS, b"").await;
        c.expect(1, 1, Kind::Message, b"a").await;
        c.expect(1, 2, Kind::Message, b"b").await;
        assert_eq!(c.expect_error(1, 3).await, RpcError::new(9, "gave up"));
        c.close(task).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn bidirectional_echo_ended_by_the_client() {
    within(async {
        let (mut c, task) = start(router(), "st");
        c.send(1, 1, Kind::Invoke, ECHO.as_bytes()).await;
        c.send(1, 2, Kind::Message, b"one").await;
        c.expect(1, 1, Kind::Message, b"one").await;
        c.send(1, 3, Kind::Message, b"").await;
        c.expect(1, 2, Kind::Message, b"").await;
        c.send(1, 4, Kind::Message, b"three").await;
        c.expect(1, 3, Kind::Message, b"three").await;
        // The client's CloseSend ends the receiver; the handler returns.
        c.send(1, 5, Kind::CloseSend, b"").await;
        c.expect(1, 4, Kind::CloseSend, b"").await;
        c.close(task).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn bidirectional_stream_ended_by_the_server() {
    within(async {
        let router =
            Router::new().bidi(ECHO, |_: (), _, mut rx: Receiver, tx: Sender| async move {
                let first = rx.recv().await.unwrap_or_default();
                tx.send(first).await?;
                tx.send(Bytes::from_static(b"bye")).await?;
                Ok(())
            });
        let (mut c, task) = start(router, ());
        c.send(1, 1, Kind::Invoke, ECHO.as_bytes()).await;
        c.send(1, 2, Kind::Message, b"hi").await;
        c.expect(1, 1, Kind::Message, b"hi").await;
        c.expect(1, 2, Kind::Message, b"bye").await;
        c.expect(1, 3, Kind::CloseSend, b"").await;
        // Late client messages are dropped; its CloseSend ends the stream.
        c.send(1, 3, Kind::Message, b"late").await;
        c.send(1, 4, Kind::CloseSend, b"").await;
        c.close(task).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_handler_that_reads_late_holds_the_reader_back_not_the_writer() {
    within(async {
        // Sends first, then counts what the client sent.
        let router =
            Router::new().bidi(ECHO, |_: (), _, mut rx: Receiver, tx: Sender| async move {
                tx.send(Bytes::from_static(b"a")).await?;
                tx.send(Bytes::from_static(b"b")).await?;
                let mut n = 0u8;
                while rx.recv().await.is_some() {
                    n += 1;
                }
                tx.send(vec![n]).await?;
                Ok(())
            });
        let (mut c, task) = start(router, ());
        c.send(1, 1, Kind::Invoke, ECHO.as_bytes()).await;
        for i in 0..5 {
            c.send(1, 2 + i, Kind::Message, b"m").await;
        }
        c.send(1, 7, Kind::CloseSend, b"").await;
        c.expect(1, 1, Kind::Message, b"a").await;
        c.expect(1, 2, Kind::Message, b"b").await;
        c.expect(1, 3, Kind::Message, &[5]).await;
        c.expect(1, 4, Kind::CloseSend, b"").await;
        c.close(task).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_handler_that_stops_listening_does_not_stall_the_transport() {
    within(async {
        let router = Router::new()
            .bidi(ECHO, |_: (), _, rx: Receiver, _tx: Sender| async move {
                drop(rx);
                std::future::pending::<()>().await;
                Ok(())
            })
            .unary(GET_MANIFEST, |_: (), _, _| async {
                Ok::<_, RpcError>(Bytes::new())
            });
        assert!(router.has(ECHO) && router.has(GET_MANIFEST) && !router.has(FAILS));
        let (mut c, task) = start(router, ());
        c.send(1, 1, Kind::Invoke, ECHO.as_bytes()).await;
        for i in 0..10 {
            c.send(1, 2 + i, Kind::Message, b"ignored").await;
        }
        c.send(1, 12, Kind::Close, b"").await;
        call(&mut c, 2, GET_MANIFEST, b"").await;
        c.expect(2, 1, Kind::Message, b"").await;
        c.expect(2, 2, Kind::CloseSend, b"").await;
        c.close(task).await.unwrap();
    })
    .await;
}

/// A server stream that sends one message, then waits forever; `dropped`
/// fires when the server drops it.
fn waiting_stream() -> (Router<()>, mpsc::UnboundedReceiver<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let router = Router::new()
        .server_stream(NUMBERS, move |_: (), _, _, sender: Sender| {
            let (guard_tx, guard_rx) = oneshot::channel();
            let tx = tx.clone();
            tokio::spawn(async move {
                if guard_rx.await.is_ok() {
                    let _ = tx.send(());
                }
            });
            async move {
                let _guard = DropGuard(Some(guard_tx));
                sender.send(Bytes::from_static(b"first")).await?;
                std::future::pending::<()>().await;
                Ok(())
            }
        })
        .unary(GET_MANIFEST, |_: (), _, _| async {
            Ok::<_, RpcError>(b"ok".to_vec())
        });
    (router, rx)
}

#[tokio::test]
async fn cancel_mid_stream_drops_the_handler() {
    within(async {
        let (router, mut dropped) = waiting_stream();
        let (mut c, task) = start(router, ());
        call(&mut c, 1, NUMBERS, b"").await;
        c.expect(1, 1, Kind::Message, b"first").await;
        // Soft cancel: 0x89 (control bit, kind 4, done).
        c.raw(&[0x89, 0x01, 0x04, 0x00]).await;
        dropped.recv().await.unwrap();
        // Nothing more on stream 1; stream 2 is served.
        call(&mut c, 2, GET_MANIFEST, b"").await;
        c.expect(2, 1, Kind::Message, b"ok").await;
        c.expect(2, 2, Kind::CloseSend, b"").await;
        c.close(task).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn close_and_error_from_the_client_drop_the_handler() {
    within(async {
        let (router, mut dropped) = waiting_stream();
        let (mut c, task) = start(router, ());
        call(&mut c, 1, NUMBERS, b"").await;
        c.expect(1, 1, Kind::Message, b"first").await;
        c.send(1, 4, Kind::Close, b"").await;
        dropped.recv().await.unwrap();
        call(&mut c, 2, NUMBERS, b"").await;
        c.expect(2, 1, Kind::Message, b"first").await;
        c.send(
            2,
            4,
            Kind::Error,
            &RpcError::message("client gave up").encode(),
        )
        .await;
        dropped.recv().await.unwrap();
        c.close(task).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_later_invoke_soft_cancels_the_current_stream() {
    within(async {
        let (router, mut dropped) = waiting_stream();
        let (mut c, task) = start(router, ());
        call(&mut c, 1, NUMBERS, b"").await;
        c.expect(1, 1, Kind::Message, b"first").await;
        // No Cancel: the Invoke of stream 2 cancels stream 1.
        call(&mut c, 2, GET_MANIFEST, b"").await;
        dropped.recv().await.unwrap();
        c.expect(2, 1, Kind::Message, b"ok").await;
        c.expect(2, 2, Kind::CloseSend, b"").await;
        // So does InvokeMetadata of a later stream.
        call(&mut c, 3, NUMBERS, b"").await;
        c.expect(3, 1, Kind::Message, b"first").await;
        c.send(4, 1, Kind::InvokeMetadata, b"").await;
        dropped.recv().await.unwrap();
        c.close(task).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn eof_while_a_handler_runs_drops_it_and_ends_cleanly() {
    within(async {
        let (router, mut dropped) = waiting_stream();
        let (mut c, task) = start(router, ());
        call(&mut c, 1, NUMBERS, b"").await;
        c.expect(1, 1, Kind::Message, b"first").await;
        c.close(task).await.unwrap();
        dropped.recv().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn invoke_metadata_reaches_the_call() {
    within(async {
        let (mut c, task) = start(router(), "st");
        let mut md = Metadata::new();
        md.insert("authorization".into(), "x".into());
        md.insert("k".into(), "v".into());
        c.send(1, 1, Kind::InvokeMetadata, &metadata::encode(&md))
            .await;
        c.send(1, 2, Kind::Invoke, GET_MANIFEST.as_bytes()).await;
        c.send(1, 3, Kind::Message, b"").await;
        c.send(1, 4, Kind::CloseSend, b"").await;
        c.expect(
            1,
            1,
            Kind::Message,
            format!("st|{GET_MANIFEST}|0|authorization=x,k=v").as_bytes(),
        )
        .await;
        c.expect(1, 2, Kind::CloseSend, b"").await;
        // Metadata of stream 2 does not reach the Invoke of stream 3.
        c.send(2, 1, Kind::InvokeMetadata, &metadata::encode(&md))
            .await;
        call(&mut c, 3, GET_MANIFEST, b"").await;
        c.expect(
            3,
            1,
            Kind::Message,
            format!("st|{GET_MANIFEST}|0|").as_bytes(),
        )
        .await;
        c.expect(3, 2, Kind::CloseSend, b"").await;
        c.close(task).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn close_send_before_the_request_is_an_error_for_that_call_only() {
    within(async {
        let (mut c, task) = start(router(), "st");
        c.send(1, 1, Kind::Invoke, GET_MANIFEST.as_bytes()).await;
        c.send(1, 2, Kind::CloseSend, b"").await;
        let e = c.expect_error(1, 1).await;
        assert_eq!(e.code, 0);
        // Unknown control packets are ignored, on the stream and outside it.
        let mut ignored = Vec::new();
        write_packet(&mut ignored, Id::new(1, 3), Kind::Unknown(20), true, b"");
        write_packet(&mut ignored, Id::new(2, 1), Kind::Unknown(21), true, b"x");
        c.raw(&ignored).await;
        call(&mut c, 3, FAILS, b"").await;
        assert_eq!(c.expect_error(3, 1).await, RpcError::new(5, "not found"));
        c.close(task).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn messages_too_large_for_the_client_become_errors() {
    within(async {
        let huge = || vec![0u8; MAX_PACKET_SIZE + 1];
        let router = Router::new()
            .unary(GET_MANIFEST, move |_: (), _, _| async move {
                Ok::<_, RpcError>(huge())
            })
            .server_stream(NUMBERS, move |_: (), _, _, tx: Sender| async move {
                tx.send(vec![1]).await?;
                tx.send(huge()).await?;
                std::future::pending::<()>().await;
                Ok(())
            })
            .server_stream(FAILS, move |_: (), _, _, tx: Sender| async move {
                // Queued, then the handler returns at once.
                let _ = tokio::spawn({
                    let tx = tx.clone();
                    async move { tx.send(huge()).await }
                })
                .await;
                Ok(())
            });
        let (mut c, task) = start(router, ());
        call(&mut c, 1, GET_MANIFEST, b"").await;
        let e = c.expect_error(1, 1).await;
        assert!(e.message.contains("exceeds"), "{}", e.message);
        call(&mut c, 2, NUMBERS, b"").await;
        c.expect(2, 1, Kind::Message, &[1]).await;
        assert!(c.expect_error(2, 2).await.message.contains("exceeds"));
        call(&mut c, 3, FAILS, b"").await;
        assert!(c.expect_error(3, 1).await.message.contains("exceeds"));
        c.close(task).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_sender_outliving_its_call_reports_stream_closed() {
    within(async {
        let (kept_tx, mut kept_rx) = mpsc::unbounded_channel();
        let router = Router::new().server_stream(NUMBERS, move |_: (), _, _, tx: Sender| {
            let _ = kept_tx.send(tx);
            async { Ok(()) }
        });
        let (mut c, task) = start(router, ());
        call(&mut c, 1, NUMBERS, b"").await;
        c.expect(1, 1, Kind::CloseSend, b"").await;
        let tx = kept_rx.recv().await.unwrap();
        c.send(1, 4, Kind::Close, b"").await;
        // Once the next stream starts, the old call's receiver is gone.
        call(&mut c, 2, NUMBERS, b"").await;
        c.expect(2, 1, Kind::CloseSend, b"").await;
        assert_eq!(tx.send(Bytes::new()).await, Err(StreamClosed));
        assert_eq!(RpcError::from(StreamClosed).code, 0);
        drop(kept_rx);
        c.close(task).await.unwrap();
    })
    .await;
}

/// Runs `bytes` as the whole client side, then EOF.
async fn serve_bytes(bytes: &[u8]) -> Result<(), ServeError> {
    let (mut c, task) = start(router(), "st");
    c.raw(bytes).await;
    // The server may have given up already.
    let _ = c.io.shutdown().await;
    // Drain whatever the server answers so it never blocks on writing.
    let mut sink = Vec::new();
    c.io.read_to_end(&mut sink).await.unwrap();
    task.await.unwrap()
}

#[tokio::test]
async fn an_oversized_packet_ends_the_transport_at_once() {
    within(async {
        // Only the header: refused without waiting for 4 MiB of data.
        let (mut c, task) = start(router(), "st");
        let mut header = vec![0x03, 0x01, 0x01];
        write_varint(&mut header, MAX_PACKET_SIZE as u64 + 1);
        c.raw(&header).await;
        let result = task.await.unwrap();
        assert!(
            matches!(result, Err(ServeError::Wire(WireError::TooLarge))),
            "{result:?}"
        );
        assert_eq!(c.recv().await, None, "the server shut its side");

        // Over two frames of an open call.
        let (mut c, task) = start(router(), "st");
        c.send(1, 1, Kind::Invoke, ECHO.as_bytes()).await;
        let half = vec![0u8; MAX_PACKET_SIZE / 2 + 1];
        let mut frames = Vec::new();
        wire::write_frame(
            &mut frames,
            Id::new(1, 2),
            Kind::Message,
            false,
            false,
            &half,
        );
        wire::write_frame(
            &mut frames,
            Id::new(1, 2),
            Kind::Message,
            true,
            false,
            &half,
        );
        // The server gives up before all of it is written.
        let _ = c.io.write_all(&frames).await;
        let result = task.await.unwrap();
        assert!(matches!(result, Err(ServeError::Wire(WireError::TooLarge))));
        assert_eq!(
            result.unwrap_err().to_string(),
            format!("drpc protocol error: packet larger than {MAX_PACKET_SIZE} bytes")
        );
    })
    .await;
}

#[tokio::test]
async fn protocol_errors_end_the_transport() {
    within(async {
        // A Message for a stream never invoked.
        let r = serve_bytes(&[0x05, 0x01, 0x01, 0x00]).await;
        assert!(
            matches!(
                r,
                Err(ServeError::NotInvoked {
                    stream: 1,
                    kind: Kind::Message
                })
            ),
            "{r:?}"
        );
        // An Invoke on the open stream.
        let mut b = Vec::new();
        write_packet(&mut b, Id::new(1, 1), Kind::Invoke, false, ECHO.as_bytes());
        write_packet(&mut b, Id::new(1, 2), Kind::Invoke, false, ECHO.as_bytes());
        assert!(matches!(
            serve_bytes(&b).await,
            Err(ServeError::InvokeOnOpenStream(1))
        ));
        // InvokeMetadata on the open stream.
        let mut b = Vec::new();
        write_packet(&mut b, Id::new(1, 1), Kind::Invoke, false, ECHO.as_bytes());
        write_packet(&mut b, Id::new(1, 2), Kind::InvokeMetadata, false, b"");
        assert!(matches!(
            serve_bytes(&b).await,
            Err(ServeError::InvokeOnOpenStream(1))
        ));
        // An unknown kind without the control bit.
        let mut b = Vec::new();
        write_packet(&mut b, Id::new(1, 1), Kind::Invoke, false, ECHO.as_bytes());
        write_packet(&mut b, Id::new(1, 2), Kind::Unknown(30), false, b"");
        assert!(matches!(
            serve_bytes(&b).await,
            Err(ServeError::Wire(WireError::UnknownKind(30)))
        ));
        // Ids going backwards.
        let mut b = Vec::new();
        write_packet(&mut b, Id::new(2, 1), Kind::Invoke, false, ECHO.as_bytes());
        write_packet(&mut b, Id::new(1, 9), Kind::Message, false, b"");
        assert!(matches!(
            serve_bytes(&b).await,
            Err(ServeError::Wire(WireError::IdRegression { .. }))
        ));
        // Broken metadata.
        assert!(matches!(
            serve_bytes(&[0x0F, 0x01, 0x01, 0x01, 0x0a]).await,
            Err(ServeError::Wire(WireError::Metadata(_)))
        ));
        // EOF inside a frame.
        let r = serve_bytes(&[0x03, 0x01, 0x01, 0x05, b'/']).await;
        assert!(matches!(r, Err(ServeError::Truncated)), "{r:?}");
        assert_eq!(
            r.unwrap_err().to_string(),
            "drpc transport closed inside a packet"
        );
        // Nothing at all is a clean end.
        serve_bytes(b"").await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn garbage_bytes_end_the_transport_without_a_panic() {
    within(async {
        let mut fixed: Vec<Vec<u8>> = vec![
            vec![0xff; 64],
            vec![0x00; 16],
            b"GET /api/v2/workspaceagents/me/rpc HTTP/1.1\r\n\r\n".to_vec(),
        ];
        // xorshift, so every run sees the same bytes.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..300 {
            let len = 1 + (next() % 200) as usize;
            fixed.push((0..len).map(|_| next() as u8).collect());
        }
        let mut errors = 0;
        for bytes in &fixed {
            // A panic in the server would surface as a JoinError here.
            if serve_bytes(bytes).await.is_err() {
                errors += 1;
            }
        }
        assert!(
            errors >= fixed.len() * 9 / 10,
            "{errors} of {}",
            fixed.len()
        );
    })
    .await;
}

#[tokio::test]
async fn a_transport_error_is_reported() {
    within(async {
        // The client vanishes while the server writes a large answer.
        let router = Router::new().unary(GET_MANIFEST, |_: (), _, _| async {
            Ok::<_, RpcError>(vec![0u8; 1 << 20])
        });
        let (client, server) = tokio::io::duplex(1024);
        let router = Arc::new(router);
        let task = tokio::spawn(async move { serve(server, &router, ()).await });
        let mut c = Client {
            io: client,
            decoder: Decoder::new(),
        };
        call(&mut c, 1, GET_MANIFEST, b"").await;
        let mut some = [0u8; 16];
        c.io.read_exact(&mut some).await.unwrap();
        drop(c);
        let r = task.await.unwrap();
        assert!(matches!(r, Err(ServeError::Io(_))), "{r:?}");
    })
    .await;
}
