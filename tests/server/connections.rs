//! Connection hygiene: slow and idle sockets are closed, and no client (nor
//! all clients together) can hold more connections than the caps allow.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::common::*;

fn addr(server: &Server) -> SocketAddr {
    server
        .base
        .trim_start_matches("http://")
        .trim_end_matches("/api/v1")
        .parse()
        .unwrap()
}

/// Connect from a chosen loopback address (all of 127/8 is local on Linux).
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Wait until the server closes `stream` (EOF or reset); what it sent.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + within;
    loop {
        let left = end.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&seen).into_owned()),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

async fn get_health(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /api/v1/openapi.json HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 64];
    let n = stream.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn slow_and_idle_connections_are_closed() {
    let server = Server::start(&[
        ("SUPERAPP_HEADER_TIMEOUT_SECS", "1"),
        ("SUPERAPP_HEARTBEAT_SECS", "1"),
        ("SUPERAPP_IDLE_TIMEOUT_SECS", "2"),
    ]);
    let to = addr(&server);
    let patience = Duration::from_secs(10);

    // Sends nothing at all.
    let mut silent = TcpStream::connect(to).await.unwrap();
    // Trickles a header line every 300 ms, never finishing the request.
    let mut trickle = TcpStream::connect(to).await.unwrap();
    let trickler = tokio::spawn(async move {
        let _ = trickle
            .write_all(b"GET /api/v1/openapi.json HTTP/1.1\r\n")
            .await;
        for i in 0..40 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if trickle
                .write_all(format!("x-slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
        closed_by_server(&mut trickle, Duration::from_secs(10)).await
    });
    // Keeps the connection after one answered request, then goes quiet.
    let mut kept = TcpStream::connect(to).await.unwrap();
    assert!(get_health(&mut kept).await.starts_with("HTTP/1.1 200"));

    assert!(
        closed_by_server(&mut silent, patience).await.is_some(),
        "a silent socket stays open"
    );
    assert!(
        closed_by_server(&mut kept, patience).await.is_some(),
        "an idle keep-alive connection stays open"
    );
    assert!(
        trickler.await.unwrap().is_some(),
        "a socket trickling headers stays open"
    );
    // Others are served all along.
    let mut fresh = TcpStream::connect(to).await.unwrap();
    assert!(get_health(&mut fresh).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn connections_are_capped_per_client_and_in_all() {
    let server = Server::start(&[
        ("SUPERAPP_MAX_CONNECTIONS", "12"),
        ("SUPERAPP_MAX_CONNECTIONS_PER_CLIENT", "8"),
    ]);
    let to = addr(&server);
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut s = connect_from("127.0.0.1", to).await;
        assert!(get_health(&mut s).await.starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    // The ninth from the same address is told why and closed.
    let mut over = connect_from("127.0.0.1", to).await;
    let said = closed_by_server(&mut over, Duration::from_secs(10))
        .await
        .expect("closed");
    assert!(said.starts_with("HTTP/1.1 503"), "{said}");
    assert!(said.contains("retry-after: 1"), "{said}");
    assert!(said.contains(r#""code":"too-many-connections""#), "{said}");

    // Another address still gets in, up to the overall cap.
    for _ in 0..4 {
        let mut s = connect_from("127.0.0.2", to).await;
        assert!(get_health(&mut s).await.starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    let mut over = connect_from("127.0.0.3", to).await;
    let said = closed_by_server(&mut over, Duration::from_secs(10))
        .await
        .expect("closed");
    assert!(said.starts_with("HTTP/1.1 503"), "{said}");

    // Closing connections gives their places back.
    held.truncate(6);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut s = connect_from("127.0.0.3", to).await;
    assert!(get_health(&mut s).await.starts_with("HTTP/1.1 200"));
    let mut s = connect_from("127.0.0.1", to).await;
    assert!(get_health(&mut s).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn one_user_holds_at_most_the_live_connections_allowed_even_when_racing() {
    use futures_util::{SinkExt, StreamExt};
    use serde_json::json;
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    let server = Server::start(&[("SUPERAPP_MAX_LIVE_CONNECTIONS_PER_USER", "3")]);
    let alice = Client::signed_up(&server, "alice").await;
    let bob = Client::signed_up(&server, "bob").await;
    let token = alice.token.clone().unwrap();

    let open = |token: String| {
        let server = &server;
        async move { ws_handshake(server, &[("authorization", format!("Bearer {token}"))]).await }
    };
    // Whether `ws` is still open: it answers a ping, or it was closed with
    // 1008.
    let alive = |mut ws: Ws| async move {
        ws.send(WsMessage::Ping(Default::default())).await.ok()?;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                Ok(Some(Ok(WsMessage::Pong(_)))) => return Some(ws),
                Ok(Some(Ok(WsMessage::Close(Some(f))))) => {
                    assert_eq!(u16::from(f.code), 1008, "{f:?}");
                    return None;
                }
                Ok(Some(Ok(_))) => continue,
                other => panic!("neither a pong nor a close: {other:?}"),
            }
        }
    };

    // Twelve handshakes at once: three stay, the rest are refused before
    // the upgrade or closed right after it.
    let tries = futures_util::future::join_all((0..12).map(|_| open(token.clone()))).await;
    let mut held = Vec::new();
    for t in tries {
        match t {
            Ok(ws) => held.extend(alive(ws).await),
            Err(refused) => assert_eq!(refused, (429, json!("too-many-live-connections"))),
        }
    }
    assert_eq!(held.len(), 3, "live connections kept");
    assert_eq!(
        open(token.clone()).await.err(),
        Some((429, json!("too-many-live-connections")))
    );
    // Another user is not held back, and a closed connection gives its
    // place back.
    let bobs = open(bob.token.clone().unwrap())
        .await
        .expect("bob connects");
    assert!(alive(bobs).await.is_some());
    held.pop().unwrap().close(None).await.unwrap();
    let mut again = None;
    for _ in 0..50 {
        if let Ok(ws) = open(token.clone()).await {
            again = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(alive(again.expect("a place came free")).await.is_some());
}
