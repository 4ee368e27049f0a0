//! Live delivery over WebSocket.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::common::*;

#[tokio::test]
async fn every_session_of_every_member_gets_messages_in_order() {
    let server = Server::start(&[]);
    let alice = Client::signed_up(&server, "alice").await;
    let bob = Client::signed_up(&server, "bob").await;
    let carol = Client::signed_up(&server, "carol").await;
    let c = alice.direct_with("bob").await;
    let bob_phone = ws_connect(&server, bob.token.as_ref().unwrap()).await;
    let bob_laptop_token = bob.login("bob", "bob-password").await;
    let bob_laptop = ws_connect(&server, &bob_laptop_token).await;
    let alice_ws = ws_connect(&server, alice.token.as_ref().unwrap()).await;
    let mut carol_ws = ws_connect(&server, carol.token.as_ref().unwrap()).await;

    // Two senders at once: each connection still sees seq order.
    let (a, b) = (alice.clone(), bob.clone());
    let c1 = c.clone();
    let c2 = c.clone();
    let sa = tokio::spawn(async move {
        for i in 0..25 {
            assert_eq!(
                a.send(&c1, &format!("a{i}"), &format!("from alice {i}"))
                    .await
                    .0,
                StatusCode::CREATED
            );
        }
    });
    let sb = tokio::spawn(async move {
        for i in 0..25 {
            assert_eq!(
                b.send(&c2, &format!("b{i}"), &format!("from bob {i}"))
                    .await
                    .0,
                StatusCode::CREATED
            );
        }
    });
    sa.await.unwrap();
    sb.await.unwrap();

    for mut ws in [bob_phone, bob_laptop, alice_ws] {
        let mut seqs = Vec::new();
        while seqs.len() < 50 {
            let frame = next_message(&mut ws, Duration::from_secs(5))
                .await
                .expect("a pushed message");
            assert_eq!(frame["type"], "message");
            assert_eq!(frame["message"]["conversation_id"], c.as_str());
            seqs.push(frame["message"]["seq"].as_u64().unwrap());
        }
        assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
    }
    assert!(
        next_message(&mut carol_ws, Duration::from_millis(300))
            .await
            .is_none(),
        "carol is not a member"
    );
}

#[tokio::test]
async fn websocket_needs_a_session() {
    let server = Server::start(&[]);
    let err = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
}

#[tokio::test]
async fn a_stalled_client_is_dropped_without_blocking_others() {
    let server = Server::start(&[("SUPERAPP_WS_QUEUE", "8")]);
    let alice = Client::signed_up(&server, "alice").await;
    let bob = Client::signed_up(&server, "bob").await;
    let c = alice.direct_with("bob").await;
    // Bob's stalled device never reads; his other device keeps up.
    let mut stalled = ws_connect(&server, bob.token.as_ref().unwrap()).await;
    let mut active = ws_connect(&server, &bob.login("bob", "bob-password").await).await;
    let text = "x".repeat(12_000);
    let total = 600u64;
    let sender = {
        let (alice, c, text) = (alice.clone(), c.clone(), text.clone());
        tokio::spawn(async move {
            for i in 0..total {
                assert_eq!(
                    alice.send(&c, &format!("m{i}"), &text).await.0,
                    StatusCode::CREATED
                );
            }
        })
    };
    for expected in 1..=total {
        let frame = next_message(&mut active, Duration::from_secs(10))
            .await
            .expect("the active device keeps receiving");
        assert_eq!(frame["message"]["seq"].as_u64(), Some(expected));
    }
    sender.await.unwrap();
    // The stalled device gets what was queued, then a close telling it to resync.
    let mut received = 0u64;
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), stalled.next())
            .await
            .unwrap()
        {
            Some(Ok(WsMessage::Text(_))) => received += 1,
            Some(Ok(WsMessage::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("unexpected end: {other:?}"),
        }
    };
    assert!(received < total, "the stalled client was not dropped");
    assert_eq!(u16::from(close.expect("a close frame").code), 4008);
    // It resyncs by seq and loses nothing.
    assert_eq!(
        bob.messages(&c, received).await.len() as u64,
        total - received
    );
}

#[tokio::test]
async fn sigterm_closes_live_connections_and_exits_cleanly() {
    let server = Server::start(&[]);
    let alice = Client::signed_up(&server, "alice").await;
    let mut ws = ws_connect(&server, alice.token.as_ref().unwrap()).await;
    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    let close = loop {
        match ws.next().await {
            Some(Ok(WsMessage::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(close.unwrap().code), 1001);
}

#[tokio::test]
async fn a_silent_peer_is_closed_after_missed_heartbeats() {
    let server = Server::start(&[("SUPERAPP_HEARTBEAT_SECS", "1")]);
    let alice = Client::signed_up(&server, "alice").await;
    let mut ws = ws_connect(&server, alice.token.as_ref().unwrap()).await;
    // Not reading means not answering pings: after three silent heartbeats
    // the server gives up on the connection. (What the client library
    // reports then depends on its own pending pongs: a close frame, or an
    // error writing them to the closed socket.)
    tokio::time::sleep(Duration::from_millis(4500)).await;
    // Reading now answers pings, so a server that had not given up would
    // keep the connection open past this deadline.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(WsMessage::Close(_)))) | Ok(Some(Err(_))) | Ok(None) => break,
            Ok(Some(Ok(_))) => continue,
            Err(_) => panic!("the server kept a silent peer connected"),
        }
    }
    // Sending to that user now reaches nobody, and the server is fine.
    let _bob = Client::signed_up(&server, "bob").await;
    let c = alice.direct_with("bob").await;
    assert_eq!(
        alice.send(&c, "after", "hello").await.0,
        reqwest::StatusCode::CREATED
    );
}

#[tokio::test]
async fn a_responsive_peer_stays_connected() {
    let server = Server::start(&[("SUPERAPP_HEARTBEAT_SECS", "1")]);
    let alice = Client::signed_up(&server, "alice").await;
    let _bob = Client::signed_up(&server, "bob").await;
    let mut ws = ws_connect(&server, alice.token.as_ref().unwrap()).await;
    // Reading answers pings; after several heartbeats a message still arrives.
    let c = alice.direct_with("bob").await;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(4500);
    while tokio::time::Instant::now() < deadline {
        if let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(200), ws.next()).await {
            assert!(
                matches!(msg, Ok(WsMessage::Ping(_)) | Ok(WsMessage::Pong(_))),
                "{msg:?}"
            );
        }
    }
    alice.send(&c, "late", "still there?").await;
    let frame = next_message(&mut ws, Duration::from_secs(5))
        .await
        .expect("still connected");
    assert_eq!(frame["message"]["text"], "still there?");
}
