//! The `/me/rpc` client (`rpc_client.rs`) without the server: the crate's
//! own DRPC server (`appliance::rpc::drpc::serve`) behind a tokio-yamux
//! **server** session over a `tokio::io::duplex`, in-process, with a small
//! test router (echo, an error, a server stream, a bidirectional stream).
//! This proves the client's framing (one DRPC connection per yamux stream,
//! the call sequences of CONNECTIVITY.md §1.3) against the same codec the
//! server uses; the codec's own byte vectors are tested in
//! `src/rpc/drpc/tests.rs`.

use std::sync::Arc;
use std::time::Duration;

use appliance::rpc::drpc::{Router, RpcError, serve};
use bytes::Bytes;
use futures_util::StreamExt;

use crate::rpc_client::{CallError, RpcClient};

const ECHO: &str = "/test.Echo/Unary";
const LEN: &str = "/test.Echo/Len";
const BIG: &str = "/test.Echo/Big";
const FAIL: &str = "/test.Echo/Fail";
const COUNT: &str = "/test.Echo/Count";
const CHAT: &str = "/test.Echo/Chat";

/// How long any single step may take.
const STEP: Duration = Duration::from_secs(10);

fn router() -> Router<()> {
    Router::new()
        .unary(ECHO, |(), _call, request: Bytes| async move {
            Ok::<_, RpcError>(request)
        })
        // The length of the request, in decimal.
        .unary(LEN, |(), _call, request: Bytes| async move {
            Ok::<_, RpcError>(request.len().to_string().into_bytes())
        })
        // The request is a decimal size; a message of that many bytes.
        .unary(BIG, |(), _call, request: Bytes| async move {
            let n: usize = std::str::from_utf8(&request)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| RpcError::message("not a size"))?;
            Ok::<_, RpcError>(vec![1u8; n])
        })
        .unary(FAIL, |(), _call, _request| async {
            Err::<Vec<u8>, _>(RpcError::new(7, "no luck"))
        })
        // The request is a decimal count; that many messages "0", "1", ….
        .server_stream(COUNT, |(), _call, request, sender| async move {
            let n: usize = std::str::from_utf8(&request)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| RpcError::message("not a count"))?;
            for i in 0..n {
                sender.send(i.to_string().into_bytes()).await?;
            }
            Ok(())
        })
        // Each message comes back upper-cased; after the client's
        // CloseSend, a last "bye".
        .bidi(CHAT, |(), _call, mut receiver, sender| async move {
            while let Some(m) = receiver.recv().await {
                sender.send(m.to_ascii_uppercase()).await?;
            }
            sender.send(&b"bye"[..]).await?;
            Ok(())
        })
}

/// A client connected to the test router through an in-process yamux
/// server session.
fn pair() -> RpcClient {
    let (client_io, server_io) = tokio::io::duplex(64 << 10);
    let router = Arc::new(router());
    tokio::spawn(async move {
        let mut session =
            tokio_yamux::Session::new_server(server_io, tokio_yamux::Config::default());
        while let Some(Ok(stream)) = session.next().await {
            let router = router.clone();
            tokio::spawn(async move {
                let _ = serve(stream, &router, ()).await;
            });
        }
    });
    RpcClient::over(client_io)
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(STEP, f)
        .await
        .expect("within the step")
}

#[tokio::test]
async fn unary_echoes_small_and_empty_messages() {
    let client = pair();
    let got = within(client.unary(ECHO, b"hello")).await.unwrap();
    assert_eq!(&got[..], b"hello");
    let got = within(client.unary(ECHO, b"")).await.unwrap();
    assert!(got.is_empty(), "an empty message comes back empty");
}

/// Requests larger than a DRPC frame (64 KiB) and than a yamux window
/// (256 KiB): the client takes window updates in while it writes.
#[tokio::test]
async fn large_requests_go_through() {
    let client = pair();
    for size in [100 << 10, 300 << 10, 1 << 20, 3 << 20] {
        let big = vec![7u8; size];
        let got = within(client.unary(LEN, &big)).await.unwrap();
        assert_eq!(got, size.to_string().as_bytes());
    }
}

/// Responses up to one yamux window come through.
#[tokio::test]
async fn responses_up_to_a_window_come_through() {
    let client = pair();
    for size in [100 << 10, 256 << 10] {
        let got = within(client.unary(BIG, size.to_string())).await.unwrap();
        assert_eq!(got.len(), size);
    }
}

/// Larger responses stall in the server, not in the client: tokio-yamux
/// takes in a stream's window updates only while the stream is read, and
/// `drpc::serve` does not read while it writes, so after the first window
/// update (one wake-up registered by its last read) a response over about
/// 512 KiB never ends.
#[tokio::test]
async fn large_responses_come_through() {
    let client = pair();
    for size in [600 << 10, 3 << 20] {
        let got = within(client.unary(BIG, size.to_string())).await.unwrap();
        assert_eq!(got.len(), size);
    }
}

#[tokio::test]
async fn errors_carry_the_code_and_unknown_methods_are_unimplemented() {
    let client = pair();
    let err = within(client.unary(FAIL, b"")).await.unwrap_err();
    assert_eq!(
        err,
        CallError {
            code: 7,
            message: "no luck".into()
        }
    );
    let err = within(client.unary("/test.Echo/Nope", b""))
        .await
        .unwrap_err();
    assert!(err.is_unimplemented(), "{err}");
    // The session is still usable.
    let got = within(client.unary(ECHO, b"still here")).await.unwrap();
    assert_eq!(&got[..], b"still here");
}

#[tokio::test]
async fn many_calls_at_once_each_on_its_own_stream() {
    let client = Arc::new(pair());
    let mut calls = Vec::new();
    for i in 0..200 {
        let client = client.clone();
        calls.push(tokio::spawn(async move {
            let body = format!("call {i}");
            let got = client.unary(ECHO, body.as_bytes()).await.unwrap();
            assert_eq!(got, body.as_bytes());
        }));
    }
    for call in calls {
        within(call).await.unwrap();
    }
}

#[tokio::test]
async fn server_stream_delivers_every_message_then_ends() {
    let client = pair();
    let mut incoming = within(client.server_stream(COUNT, b"50")).await.unwrap();
    for i in 0..50 {
        let m = within(incoming.recv()).await.expect("a message").unwrap();
        assert_eq!(m, i.to_string().as_bytes());
    }
    assert!(within(incoming.recv()).await.is_none(), "ends after 50");

    let mut incoming = within(client.server_stream(COUNT, b"x")).await.unwrap();
    let err = within(incoming.recv())
        .await
        .expect("an error")
        .unwrap_err();
    assert_eq!(err.code, 0);
    assert_eq!(err.message, "not a count");
    assert!(within(incoming.recv()).await.is_none());
}

#[tokio::test]
async fn bidi_streams_both_ways_and_closesend_ends_the_client_side() {
    let client = pair();
    let (outgoing, mut incoming) = within(client.bidi(CHAT)).await.unwrap();
    for word in ["one", "two", "three"] {
        within(outgoing.send_bytes(word.as_bytes().to_vec()))
            .await
            .unwrap();
        let m = within(incoming.recv()).await.expect("a reply").unwrap();
        assert_eq!(m, word.to_ascii_uppercase().as_bytes());
    }
    drop(outgoing);
    let m = within(incoming.recv()).await.expect("bye").unwrap();
    assert_eq!(&m[..], b"bye");
    assert!(within(incoming.recv()).await.is_none(), "the server ended");
    // Streams come and go; the session stays.
    let got = within(client.unary(ECHO, b"after")).await.unwrap();
    assert_eq!(&got[..], b"after");
}

#[tokio::test]
async fn a_dropped_receiver_hangs_up_and_the_session_survives() {
    let client = pair();
    let (outgoing, incoming) = within(client.bidi(CHAT)).await.unwrap();
    drop(incoming);
    // The stream task notices and ends; sending then fails.
    let gone = within(async {
        loop {
            if outgoing.send_bytes(&b"x"[..]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let () = gone;
    let got = within(client.unary(ECHO, b"ok")).await.unwrap();
    assert_eq!(&got[..], b"ok");
    assert!(!client.is_closed());
}

#[tokio::test]
async fn closed_resolves_when_the_server_side_goes_away() {
    let (client_io, server_io) = tokio::io::duplex(64 << 10);
    let client = RpcClient::over(client_io);
    drop(server_io);
    within(client.closed()).await;
    assert!(client.is_closed());
    let err = within(client.unary(ECHO, b"")).await.unwrap_err();
    assert_eq!(err.code, CallError::TRANSPORT, "{err}");
}
