//! Live delivery over WebSocket.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::json;
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
    assert_eq!(close_code(&mut ws, Duration::from_secs(5)).await, 1001);
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

/// Send `frame` over `ws` as JSON text.
async fn ws_send(ws: &mut Ws, frame: serde_json::Value) {
    ws.send(WsMessage::Text(frame.to_string().into()))
        .await
        .unwrap();
}

/// The next frame of `ws` whose type is `kind` (pushes of other types are
/// skipped), or a panic after `wait`.
async fn next_of(ws: &mut Ws, kind: &str, wait: Duration) -> serde_json::Value {
    loop {
        let frame = next_message(ws, wait)
            .await
            .unwrap_or_else(|| panic!("no {kind} frame"));
        if frame["type"] == kind || frame["type"] == "error" && kind != "message" {
            return frame;
        }
    }
}

#[tokio::test]
async fn sends_over_the_websocket_are_stored_in_order_and_acknowledged_once_durable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start_in(&dir, &[]);
    let alice = Client::signed_up(&server, "alice").await;
    let bob = Client::signed_up(&server, "bob").await;
    let c = alice.direct_with("bob").await;
    let mut alice_ws = ws_connect(&server, alice.token.as_ref().unwrap()).await;
    let mut bob_ws = ws_connect(&server, bob.token.as_ref().unwrap()).await;
    let mut alice_laptop = ws_connect(&server, &alice.login("alice", "alice-password").await).await;
    let alice_id = alice.get("/me").await.1["id"].clone();

    // Pipelined: every send goes out before any acknowledgement is read.
    // More than a connection may have in flight: the server stops reading
    // past that and goes on once acknowledgements are out.
    let total = 100u64;
    for i in 0..total {
        ws_send(
            &mut alice_ws,
            json!({"type": "send", "conversation_id": c, "client_id": format!("w{i}"), "text": format!("over the socket {i}")}),
        )
        .await;
    }
    for i in 0..total {
        let ack = next_of(&mut alice_ws, "sent", Duration::from_secs(10)).await;
        assert_eq!(ack["type"], "sent", "{ack}");
        assert_eq!(ack["client_id"], format!("w{i}"), "acknowledged in order");
        assert_eq!(ack["created"], true);
        assert_eq!(
            ack["message"]["seq"].as_u64(),
            Some(i + 1),
            "stored in order"
        );
        assert_eq!(ack["message"]["sender"], alice_id);
    }
    // Every other session gets the pushes; the sending one got the
    // acknowledgements instead.
    for ws in [&mut bob_ws, &mut alice_laptop] {
        for i in 0..total {
            let push = next_of(ws, "message", Duration::from_secs(10)).await;
            assert_eq!(push["message"]["seq"].as_u64(), Some(i + 1));
            assert_eq!(push["message"]["text"], format!("over the socket {i}"));
        }
    }
    assert!(
        next_message(&mut alice_ws, Duration::from_millis(300))
            .await
            .is_none(),
        "no echo to the sending session"
    );

    // A repeated client id is stored once, over either path; with other
    // text it is not a retry, and is refused.
    ws_send(
        &mut alice_ws,
        json!({"type": "send", "conversation_id": c, "client_id": "w3", "text": "over the socket 3"}),
    )
    .await;
    let ack = next_of(&mut alice_ws, "sent", Duration::from_secs(5)).await;
    assert_eq!(ack["created"], false, "{ack}");
    assert_eq!(ack["message"]["seq"].as_u64(), Some(4));
    assert_eq!(ack["message"]["text"], "over the socket 3");
    ws_send(
        &mut alice_ws,
        json!({"type": "send", "conversation_id": c, "client_id": "w3", "text": "again"}),
    )
    .await;
    let refused = next_of(&mut alice_ws, "error", Duration::from_secs(5)).await;
    assert_eq!(refused["status"], 409, "{refused}");
    assert_eq!(refused["client_id"], "w3", "{refused}");
    let (status, body) = alice.send(&c, "w5", "over the socket 5").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["seq"].as_u64(), Some(6));

    // Acknowledged means durable: all of it is there after kill -9.
    server.kill9();
    let restarted = Server::start_in(&dir, &[]);
    let mut alice = Client::new(&restarted);
    alice.token = Some(alice.login("alice", "alice-password").await);
    let stored = alice.messages(&c, 0).await;
    assert_eq!(stored.len() as u64, total);
    for (i, m) in stored.iter().enumerate() {
        assert_eq!(m["client_id"], format!("w{i}"));
    }
}

/// Two members sending at once over their sockets: each socket gets its
/// own acknowledgements and the other's messages interleaved in seq order,
/// every seq once (an acknowledgement waits for its place in the stream of
/// pushes, rather than racing it).
#[tokio::test]
async fn acknowledgements_and_pushes_reach_a_socket_in_seq_order() {
    let server = Server::start(&[]);
    let alice = Client::signed_up(&server, "alice").await;
    let bob = Client::signed_up(&server, "bob").await;
    let c = alice.direct_with("bob").await;
    let mut alice_ws = ws_connect(&server, alice.token.as_ref().unwrap()).await;
    let mut bob_ws = ws_connect(&server, bob.token.as_ref().unwrap()).await;
    let each = 40u64;
    for round in 0..4 {
        for i in 0..each / 4 {
            for (who, ws) in [("a", &mut alice_ws), ("b", &mut bob_ws)] {
                ws_send(
                    ws,
                    json!({"type": "send", "conversation_id": c, "client_id": format!("{who}{round}-{i}"), "text": "hi"}),
                )
                .await;
            }
        }
    }
    for (who, ws) in [("alice", &mut alice_ws), ("bob", &mut bob_ws)] {
        let mut seen = Vec::new();
        while (seen.len() as u64) < 2 * each {
            let frame = next_message(ws, Duration::from_secs(10))
                .await
                .unwrap_or_else(|| panic!("{who}: {} frames, then none", seen.len()));
            assert!(
                frame["type"] == "sent" || frame["type"] == "message",
                "{who}: {frame}"
            );
            seen.push(frame["message"]["seq"].as_u64().unwrap());
        }
        let expected: Vec<u64> = (1..=2 * each).collect();
        assert_eq!(seen, expected, "{who}'s socket");
    }
}

#[tokio::test]
async fn a_bad_send_over_the_websocket_gets_the_http_routes_error_and_the_connection_stays() {
    let server = Server::start(&[("SUPERAPP_MAX_MESSAGE_BYTES", "100")]);
    let alice = Client::signed_up(&server, "alice").await;
    let _bob = Client::signed_up(&server, "bob").await;
    let carol = Client::signed_up(&server, "carol").await;
    let c = alice.direct_with("bob").await;
    let mut carol_ws = ws_connect(&server, carol.token.as_ref().unwrap()).await;
    let cases = [
        // Somebody else's conversation: the same answer as over HTTP.
        (
            json!({"type": "send", "conversation_id": c, "client_id": "x1", "text": "let me in"}),
            json!("x1"),
        ),
        (
            json!({"type": "send", "conversation_id": "no-such", "client_id": "x2", "text": "hi"}),
            json!("x2"),
        ),
        (
            json!({"type": "send", "conversation_id": c, "client_id": "x3", "text": "x".repeat(101)}),
            json!("x3"),
        ),
        (
            json!({"type": "send", "conversation_id": c, "client_id": "", "text": "hi"}),
            json!(""),
        ),
        // A client_id no send may carry is refused, not echoed back.
        (
            json!({"type": "send", "conversation_id": c, "client_id": "k".repeat(20_000), "text": "hi"}),
            json!(null),
        ),
    ];
    for (frame, client_id) in cases {
        let path = format!(
            "/conversations/{}/messages",
            frame["conversation_id"].as_str().unwrap()
        );
        let (http_status, http_body) = carol
            .post(
                &path,
                json!({"client_id": frame["client_id"], "text": frame["text"]}),
            )
            .await;
        ws_send(&mut carol_ws, frame).await;
        let answer = next_of(&mut carol_ws, "error", Duration::from_secs(5)).await;
        assert_eq!(answer["type"], "error", "{answer}");
        assert_eq!(answer["client_id"], client_id);
        assert!(answer.to_string().len() < 1024, "{answer}");
        assert_eq!(
            answer["status"].as_u64(),
            Some(http_status.as_u16() as u64),
            "{answer}"
        );
        assert_eq!(
            answer["error"]["code"], http_body["error"]["code"],
            "{answer}"
        );
    }
    // Frames that are not sends at all.
    for bad in [
        "not json".to_string(),
        json!({"type": "send", "conversation_id": c}).to_string(),
        json!({"type": "delete-everything"}).to_string(),
        json!({"type": "send", "conversation_id": c, "client_id": "y", "text": "t", "sender": "alice"}).to_string(),
    ] {
        carol_ws.send(WsMessage::Text(bad.clone().into())).await.unwrap();
        let answer = next_of(&mut carol_ws, "error", Duration::from_secs(5)).await;
        assert_eq!(answer["status"].as_u64(), Some(400), "{bad}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid-request");
        assert!(answer["client_id"].is_null());
    }
    carol_ws
        .send(WsMessage::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    let answer = next_of(&mut carol_ws, "error", Duration::from_secs(5)).await;
    assert_eq!(answer["status"].as_u64(), Some(400), "{answer}");
    // Nothing of that was stored, and the connection still works.
    assert!(alice.messages(&c, 0).await.is_empty());
    let own = carol.direct_with("alice").await;
    ws_send(
        &mut carol_ws,
        json!({"type": "send", "conversation_id": own, "client_id": "ok", "text": "hello"}),
    )
    .await;
    let ack = next_of(&mut carol_ws, "sent", Duration::from_secs(5)).await;
    assert_eq!(ack["type"], "sent", "{ack}");

    // A frame larger than a request body may be ends the connection with
    // 1009 (message too big), and stores nothing; a new connection works.
    let huge = json!({"type": "send", "conversation_id": own, "client_id": "huge", "text": "x".repeat(80 << 10)});
    let _ = carol_ws
        .send(WsMessage::Text(huge.to_string().into()))
        .await;
    assert_eq!(
        close_code(&mut carol_ws, Duration::from_secs(5)).await,
        1009
    );
    let mut again = ws_connect(&server, carol.token.as_ref().unwrap()).await;
    ws_send(
        &mut again,
        json!({"type": "send", "conversation_id": own, "client_id": "ok2", "text": "hello again"}),
    )
    .await;
    let ack = next_of(&mut again, "sent", Duration::from_secs(5)).await;
    assert_eq!(ack["message"]["seq"].as_u64(), Some(2), "{ack}");
}

#[tokio::test]
async fn a_websocket_closes_when_its_session_ends() {
    // Heartbeats far apart: only the logout itself can close in time.
    let server = Server::start(&[("SUPERAPP_HEARTBEAT_SECS", "30")]);
    let alice = Client::signed_up(&server, "alice").await;
    let bob = Client::signed_up(&server, "bob").await;
    let c = alice.direct_with("bob").await;
    let mut sending = ws_connect(&server, alice.token.as_ref().unwrap()).await;
    let mut listening = ws_connect(&server, alice.token.as_ref().unwrap()).await;
    let mut bobs = ws_connect(&server, bob.token.as_ref().unwrap()).await;
    let (s, _) = alice
        .call(reqwest::Method::DELETE, "/sessions/current", None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // Bob writes right after: alice's ended session must not hear it.
    bob.send(&c, "after", "are you there?").await;

    // A send after the logout is refused by closing the connection...
    ws_send(
        &mut sending,
        json!({"type": "send", "conversation_id": c, "client_id": "late", "text": "after logout"}),
    )
    .await;
    assert_eq!(close_code(&mut sending, Duration::from_secs(5)).await, 4001);
    // ...and a connection that only listens is closed at once, with no
    // message pushed after the logout.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let code = loop {
        match tokio::time::timeout_at(deadline, listening.next()).await {
            Ok(Some(Ok(WsMessage::Close(frame)))) => {
                break u16::from(frame.expect("a close frame with a code").code)
            }
            Ok(Some(Ok(WsMessage::Text(text)))) => {
                assert!(
                    !text.contains("are you there"),
                    "pushed after the logout: {text}"
                )
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, 4001);
    // Bob's own session goes on.
    let pushed = next_of(&mut bobs, "message", Duration::from_secs(5)).await;
    assert_eq!(pushed["message"]["text"], "are you there?", "{pushed}");
    let mut alice = alice;
    alice.token = Some(alice.login("alice", "alice-password").await);
    let stored = alice.messages(&c, 0).await;
    assert_eq!(stored.len(), 1, "only bob's, not the late send: {stored:?}");
}

/// The code of the close frame `ws` gets within `wait`.
pub(crate) async fn close_code(ws: &mut Ws, wait: Duration) -> u16 {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(WsMessage::Close(frame)))) => {
                return u16::from(frame.expect("a close frame with a code").code)
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_user_sending_past_the_chat_rate_gets_429_with_retry_after_and_nothing_is_stored() {
    // One message a second, so a burst of five.
    let server = Server::start(&[("SUPERAPP_CHAT_RATE_PER_USER", "1")]);
    let alice = Client::signed_up(&server, "alice").await;
    let bob = Client::signed_up(&server, "bob").await;
    let c = alice.direct_with("bob").await;
    let path = format!("/conversations/{c}/messages");

    // Over HTTP until the first refusal: the burst goes through, and no
    // more than the rate has refilled meanwhile.
    let started = std::time::Instant::now();
    let mut stored = 0u64;
    let refused = loop {
        let body = json!({"client_id": format!("h{stored}"), "text": "quick"});
        let resp = alice
            .raw(
                reqwest::Method::POST,
                &path,
                Some(body.to_string().into_bytes()),
                "application/json",
            )
            .await;
        if resp.status() != StatusCode::CREATED {
            break resp;
        }
        stored += 1;
        assert!(stored < 60, "never refused");
    };
    let refill = started.elapsed().as_secs();
    let refused_at = std::time::Instant::now();
    assert!(
        (5..=6 + refill).contains(&stored),
        "{stored} sends went through in {refill} s"
    );
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate-limited", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1 a second"),
        "{body}"
    );
    assert_eq!(
        alice.messages(&c, 0).await.len() as u64,
        stored,
        "the refused send left nothing"
    );
    // A malformed send is refused as such even past the limit, and is not
    // counted against it.
    let (status, body) = alice
        .post(&path, json!({"client_id": "blank", "text": "  "}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // The limit is per user: bob is not held back by alice.
    assert_eq!(bob.send(&c, "b1", "me too").await.0, StatusCode::CREATED);

    // Over the WebSocket the same refusal comes as an error frame for that
    // send: of ten pipelined sends, at most what refilled is stored.
    let mut ws = ws_connect(&server, alice.token.as_ref().unwrap()).await;
    for i in 0..10 {
        ws_send(
            &mut ws,
            json!({"type": "send", "conversation_id": c, "client_id": format!("w{i}"), "text": "socket"}),
        )
        .await;
    }
    let mut acked = 0u64;
    for i in 0..10 {
        let frame = next_of(&mut ws, "sent", Duration::from_secs(10)).await;
        assert_eq!(frame["client_id"], format!("w{i}"), "answered in order");
        if frame["type"] == "sent" {
            acked += 1;
            continue;
        }
        assert_eq!(frame["status"], 429, "{frame}");
        assert_eq!(frame["error"]["code"], "rate-limited", "{frame}");
        assert!(frame["retry_after_secs"].as_u64().unwrap() >= 1, "{frame}");
    }
    // Since the refusal, the allowance has refilled by one a second.
    let refill = refused_at.elapsed().as_secs();
    assert!(
        acked <= refill + 1,
        "{acked} of 10 stored {refill} s after the refusal"
    );
    assert_eq!(
        alice.messages(&c, 0).await.len() as u64,
        stored + 1 + acked,
        "only acknowledged sends were stored"
    );
    // Operators see the refusals: one over HTTP, the rest over the socket.
    let metrics = server.metrics().await;
    let throttled: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("superapp_chat_sends_throttled_total "))
        .unwrap_or_else(|| panic!("no throttle counter in {metrics}"))
        .parse()
        .unwrap();
    assert_eq!(throttled, 1 + 10 - acked, "{metrics}");

    // Waiting out Retry-After frees the allowance again; a retry of an
    // earlier send is answered with what was stored, not a second copy.
    tokio::time::sleep(Duration::from_secs(retry_after) + Duration::from_millis(50)).await;
    let (status, again) = alice.send(&c, "h0", "quick").await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["seq"], 1);
    assert_eq!(alice.messages(&c, 0).await.len() as u64, stored + 1 + acked);
}

/// A socket that goes on sending far past the limit, ignoring every
/// refusal, is closed with 1008 once 200 of its frames were refused within
/// ten seconds, whatever they were refused for (over the limit, a
/// conversation it is not in) and though some sends were stored between
/// them; fewer refusals leave it open.
#[tokio::test]
async fn a_socket_that_floods_past_the_limit_is_closed_and_one_that_does_not_is_not() {
    let server = Server::start(&[("SUPERAPP_CHAT_RATE_PER_USER", "1")]);
    let alice = Client::signed_up(&server, "alice").await;
    Client::signed_up(&server, "bob").await;
    let c = alice.direct_with("bob").await;
    let send = |to: &str, i: usize| json!({"type": "send", "conversation_id": to, "client_id": format!("f{i}"), "text": "flood"});

    // 150 refusals: still open, and answering.
    let mut ws = ws_connect(&server, alice.token.as_ref().unwrap()).await;
    for i in 0..155 {
        ws_send(&mut ws, send(&c, i)).await;
    }
    for _ in 0..155 {
        next_of(&mut ws, "sent", Duration::from_secs(10)).await;
    }
    ws_send(&mut ws, send(&c, 999)).await;
    let frame = next_of(&mut ws, "sent", Duration::from_secs(10)).await;
    assert_eq!(frame["client_id"], "f999", "still open: {frame}");
    drop(ws);

    // A flood over the limit and into a conversation it is not in, with a
    // send stored in the middle: closed with 1008, after the answers owed.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut flood = ws_connect(&server, alice.token.as_ref().unwrap()).await;
    let mut sent = 0;
    for i in 0..260 {
        let to = if i % 2 == 0 {
            c.as_str()
        } else {
            "not-a-conversation"
        };
        if flood
            .send(WsMessage::Text(send(to, 5000 + i).to_string().into()))
            .await
            .is_err()
        {
            break;
        }
        sent += 1;
    }
    let (mut stored, mut refused) = (0, 0);
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), flood.next()).await {
            Ok(Some(Ok(WsMessage::Text(text)))) => {
                let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
                if frame["type"] == "sent" {
                    stored += 1;
                } else {
                    refused += 1;
                }
            }
            Ok(Some(Ok(WsMessage::Close(frame)))) => break frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, Some(1008));
    assert!(stored >= 1, "a send was stored between the refusals");
    assert!(
        (200..=sent).contains(&refused),
        "{refused} refusals of {sent} frames before the close"
    );
}

#[tokio::test]
async fn a_client_that_never_reads_its_answers_stops_being_read_and_loses_nothing() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let server = Server::start(&[]);
    let alice = Client::signed_up(&server, "alice").await;
    let _bob = Client::signed_up(&server, "bob").await;
    let c = alice.direct_with("bob").await;

    // A client with a small receive buffer that pipelines sends and reads
    // nothing back, as a hostile or stuck one would.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let authority = server.base.trim_start_matches("http://");
    let addr: std::net::SocketAddr = authority[..authority.find('/').unwrap()].parse().unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let mut req = server.ws_url().into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", alice.token.as_ref().unwrap())
            .parse()
            .unwrap(),
    );
    let (ws, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    let (mut tx, mut rx) = ws.split();
    // Long messages (the default limit is 16 KiB): the few megabytes of
    // answers the kernel's buffers take fill sooner.
    let total = 800u64;
    let text = "x".repeat(16_000);
    let c2 = c.clone();
    let writer = tokio::spawn(async move {
        for i in 0..total {
            let frame = json!({"type": "send", "conversation_id": c2, "client_id": format!("p{i}"), "text": text});
            tx.send(WsMessage::Text(frame.to_string().into()))
                .await
                .unwrap();
        }
        tx
    });

    // The answers back up, and the server stops reading the connection:
    // what it stores comes to a stop well short of what was sent.
    let last_seq = |alice: &Client| {
        let (alice, path) = (alice.clone(), format!("/conversations/{c}"));
        async move { alice.get(&path).await.1["last_seq"].as_u64().unwrap() }
    };
    let started = std::time::Instant::now();
    let (mut stored, mut unchanged) = (0, 0);
    while unchanged < 3 || stored == 0 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = last_seq(&alice).await;
        unchanged = if now == stored { unchanged + 1 } else { 0 };
        stored = now;
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "still storing: {stored}"
        );
    }
    assert!(
        stored > 0 && stored < total / 2,
        "stopped at {stored} of {total}"
    );

    // Reading again lets it go on: every send is answered, in order, and
    // stored once.
    for i in 0..total {
        let frame = loop {
            let next = tokio::time::timeout(Duration::from_secs(30), rx.next())
                .await
                .expect("an answer within 30 s")
                .expect("the connection stays open")
                .unwrap();
            if let WsMessage::Text(t) = next {
                break serde_json::from_str::<serde_json::Value>(&t).unwrap();
            }
        };
        assert_eq!(
            frame["type"],
            "sent",
            "{}",
            &frame.to_string()[..200.min(frame.to_string().len())]
        );
        assert_eq!(frame["client_id"], format!("p{i}"));
        assert_eq!(frame["message"]["seq"].as_u64(), Some(i + 1));
    }
    let _sink = writer.await.unwrap();
    assert_eq!(last_seq(&alice).await, total);
}

#[tokio::test]
async fn a_live_connection_signed_in_by_cookie_from_another_sites_page_is_refused() {
    let server = Server::start(&[]);
    let alice = Client::signed_up(&server, "alice").await;
    let _bob = Client::signed_up(&server, "bob").await;
    let c = alice.direct_with("bob").await;
    let cookie = session_cookie(&server, "alice").await;
    let host = server
        .base
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();

    let open = |headers: Vec<(&'static str, String)>| {
        let server = &server;
        async move { ws_handshake(server, &headers).await }
    };
    // A page of another site (or of none) opening it with the user's
    // cookie, also naming its own site as the host where no trusted proxy
    // vouches for that, or sending a second Origin.
    for (origin, more) in [
        ("http://evil.example", vec![]),
        ("null", vec![]),
        (&format!("http://{host}.evil.example")[..], vec![]),
        (
            "https://evil.example",
            vec![("x-forwarded-host", "evil.example".to_string())],
        ),
        (
            "https://evil.example",
            vec![("origin", format!("http://{host}"))],
        ),
    ] {
        let mut headers = vec![("cookie", cookie.clone()), ("origin", origin.to_string())];
        headers.extend(more);
        let refused = open(headers).await;
        assert_eq!(
            refused.err(),
            Some((403, json!("cross-site"))),
            "Origin: {origin}"
        );
    }
    // The host's own page, a client other than a browser (no Origin), and
    // a bearer token all connect.
    let allowed = [
        vec![
            ("cookie", cookie.clone()),
            ("origin", format!("http://{host}")),
        ],
        vec![("cookie", cookie.clone())],
        vec![
            (
                "authorization",
                format!("bearer {}", alice.token.as_ref().unwrap()),
            ),
            ("origin", "http://evil.example".into()),
        ],
    ];
    for (i, headers) in allowed.into_iter().enumerate() {
        let mut ws = open(headers)
            .await
            .unwrap_or_else(|e| panic!("case {i}: {e:?}"));
        ws_send(
            &mut ws,
            json!({"type": "send", "conversation_id": c, "client_id": format!("o{i}"), "text": "hello"}),
        )
        .await;
        let ack = next_of(&mut ws, "sent", Duration::from_secs(10)).await;
        assert_eq!(ack["type"], "sent", "case {i}: {ack}");
    }
    assert_eq!(alice.messages(&c, 0).await.len(), 3);

    // Behind a trusted proxy, the public host it names is the page's.
    let proxied = Server::start(&[("SUPERAPP_TRUSTED_PROXIES", "127.0.0.0/8,::1")]);
    Client::signed_up(&proxied, "carol").await;
    let cookie = session_cookie(&proxied, "carol").await;
    let through_proxy = ws_handshake(
        &proxied,
        &[
            ("cookie", cookie),
            ("origin", "https://chat.example".into()),
            ("x-forwarded-host", "chat.example".into()),
        ],
    )
    .await;
    assert!(through_proxy.is_ok(), "{:?}", through_proxy.err());
}

/// The session cookie `username` (password `USERNAME-password`) signs in
/// with, as `name=value`.
async fn session_cookie(server: &Server, username: &str) -> String {
    login_cookie(server, username).await.1
}

#[tokio::test]
async fn a_frame_that_breaks_the_websocket_protocol_is_answered_with_its_close_code() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start(&[]);
    let alice = Client::signed_up(&server, "alice").await;
    let authority = server.base.trim_start_matches("http://");
    let authority = &authority[..authority.find('/').unwrap()];

    // The close code a raw connection gets after sending `frame`.
    let close_code_after = |frame: Vec<u8>| {
        let token = alice.token.clone().unwrap();
        async move {
            let mut tcp = tokio::net::TcpStream::connect(authority).await.unwrap();
            let handshake = format!(
                "GET /api/v1/ws HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
            );
            tcp.write_all(handshake.as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                assert_eq!(
                    tcp.read(&mut byte).await.unwrap(),
                    1,
                    "closed in the handshake"
                );
                answer.push(byte[0]);
            }
            assert!(
                answer.starts_with(b"HTTP/1.1 101"),
                "{}",
                String::from_utf8_lossy(&answer)
            );
            tcp.write_all(&frame).await.unwrap();
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;
            // The server's close frame: 0x88, a length, then the code.
            let at = rest
                .iter()
                .position(|&b| b == 0x88)
                .unwrap_or_else(|| panic!("no close frame in {rest:?}"));
            u16::from_be_bytes([rest[at + 2], rest[at + 3]])
        }
    };
    // A client's frame without a mask.
    assert_eq!(close_code_after(vec![0x81, 0x02, b'h', b'i']).await, 1002);
    // A reserved opcode, masked.
    assert_eq!(close_code_after(vec![0x83, 0x80, 1, 2, 3, 4]).await, 1002);
    // A masked text frame whose payload is not UTF-8 (0xff, 0xfe).
    let mask = [1u8, 2, 3, 4];
    let payload = [0xffu8 ^ mask[0], 0xfe ^ mask[1]];
    let mut frame = vec![0x81, 0x82];
    frame.extend_from_slice(&mask);
    frame.extend_from_slice(&payload);
    assert_eq!(close_code_after(frame).await, 1007);
    // The client's own close is answered, completing the closing
    // handshake: with its code, or 1002 for a code no one may send.
    let close = |code: u16| {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        let mut frame = vec![0x88, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        frame
    };
    assert_eq!(close_code_after(close(1000)).await, 1000);
    assert_eq!(close_code_after(close(4000)).await, 4000);
    assert_eq!(close_code_after(close(999)).await, 1002);
    // The server goes on.
    assert_eq!(alice.get("/me").await.0, StatusCode::OK);
}

/// Changing a group's members posts a notice to every member: it counts as
/// a send, so adding and removing someone in a loop is held to the chat
/// rate; and a user may create only so many groups (20 at once, then 60 an
/// hour), whatever the rate.
#[tokio::test]
async fn group_changes_count_as_sends_and_group_creation_has_a_limit_of_its_own() {
    // One message a second, so a burst of five.
    let server = Server::start(&[("SUPERAPP_CHAT_RATE_PER_USER", "1")]);
    let alice = Client::signed_up(&server, "alice").await;
    let bob = Client::signed_up(&server, "bob").await;
    let bob_id = bob.get("/me").await.1["id"].as_str().unwrap().to_string();
    let (status, group) = alice.group("Loop", &["bob"]).await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    let id = group["id"].as_str().unwrap().to_string();
    let mut changes = 0;
    let refused = loop {
        let (status, body) = if changes % 2 == 0 {
            alice
                .call(
                    reqwest::Method::DELETE,
                    &format!("/conversations/{id}/members/{bob_id}"),
                    None,
                )
                .await
        } else {
            alice
                .post(
                    &format!("/conversations/{id}/members"),
                    json!({"username": "bob"}),
                )
                .await
        };
        if !status.is_success() {
            break (status, body);
        }
        changes += 1;
        assert!(changes < 30, "never refused");
    };
    assert_eq!(refused.0, StatusCode::TOO_MANY_REQUESTS, "{}", refused.1);
    assert_eq!(refused.1["error"]["code"], "rate-limited");
    assert!((3..=6).contains(&changes), "{changes} changes went through");
    let notices = alice.messages(&id, 0).await.len();
    assert_eq!(
        notices, changes,
        "one notice per change, none for the refused"
    );

    // Group creation, with a chat rate that never binds.
    let server = Server::start(&[]);
    let carol = Client::signed_up(&server, "carol").await;
    let _dan = Client::signed_up(&server, "dan").await;
    let create = |i: usize| {
        let carol = carol.clone();
        async move { carol.group(&format!("g{i}"), &["dan"]).await }
    };
    for i in 0..20 {
        let (status, body) = create(i).await;
        assert_eq!(status, StatusCode::CREATED, "{i}: {body}");
    }
    let (status, body) = create(20).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("20 at once and 60 in any hour"),
        "{body}"
    );
    // The allowance refills one every 90 s: with the 20 at once, 60 in any
    // hour.
    let wait: u64 = body["error"]["message"]
        .as_str()
        .unwrap()
        .rsplit("created in ")
        .next()
        .unwrap()
        .trim_end_matches(" s")
        .parse()
        .unwrap();
    assert!((85..=90).contains(&wait), "{body}");
    // Another user's groups are their own.
    let erin = Client::signed_up(&server, "erin").await;
    let (status, body) = erin.group("mine", &["dan"]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}
