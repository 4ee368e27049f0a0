//! Provider callbacks against a real backend on a loopback port: a settled
//! payment and a refund each reach the callback URL signed by the host, a
//! delivery the backend refused is retried under the same id, and a
//! backend that skips ids it has seen counts each event once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxStatus};
use axum::routing::post;
use reqwest::StatusCode;
use serde_json::json;

use crate::apps::texts;
use crate::common::*;
use crate::http::start;

const PROBE: &str = "dev.superapp.testing.probe";

/// What the backend saw: every attempt (header, body), and the refusals
/// it still has to give (it is "down" for that many attempts).
#[derive(Default)]
struct Inbox {
    attempts: Vec<(String, Vec<u8>)>,
    refuse: usize,
}

async fn backend(refuse: usize) -> (u16, Arc<Mutex<Inbox>>) {
    backend_on(0, refuse).await
}

/// The backend on `port` (0: any free one).
async fn backend_on(port: u16, refuse: usize) -> (u16, Arc<Mutex<Inbox>>) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let inbox = Arc::new(Mutex::new(Inbox {
        refuse,
        ..Inbox::default()
    }));
    let app = axum::Router::new()
        .route(
            "/callbacks",
            post(
                |State(inbox): State<Arc<Mutex<Inbox>>>,
                 headers: HeaderMap,
                 body: axum::body::Bytes| async move {
                    let header = headers
                        .get("superapp-signature")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let mut inbox = inbox.lock().unwrap();
                    inbox.attempts.push((header, body.to_vec()));
                    if inbox.refuse > 0 {
                        inbox.refuse -= 1;
                        return AxStatus::SERVICE_UNAVAILABLE;
                    }
                    AxStatus::OK
                },
            ),
        )
        .with_state(inbox.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, inbox)
}

/// Wait until `done` holds for the inbox (deliveries are sent every second).
async fn until(inbox: &Arc<Mutex<Inbox>>, what: &str, done: impl Fn(&Inbox) -> bool) {
    let started = Instant::now();
    while !done(&inbox.lock().unwrap()) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "waited for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Money for `user`, through the operator API.
async fn fund(server: &Server, user: &str) {
    let topup = http_client()
        .post(format!("{}/operator/topups", server.base))
        .bearer_auth(server.operator_token())
        .json(&json!({"user": user, "amount": 10_000, "idempotency_key": format!("cb-{user}")}))
        .send()
        .await
        .unwrap();
    assert_eq!(topup.status(), StatusCode::CREATED);
}

/// Alice pays `amount` through the probe, confirming with her password;
/// the order id.
async fn pay(alice: &Client, amount: &str, key: &str) -> String {
    let v = alice
        .act(
            PROBE,
            "payments",
            None,
            json!({"amount": amount, "idempotency-key": key, "description": "Visit"}),
        )
        .await;
    let said = texts(&v)[0].clone();
    let order = said
        .strip_prefix("ok: \"")
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{said}"))
        .to_string();
    let (_, prompts) = alice.get("/prompts").await;
    alice
        .approve(&prompts[0], json!({"password": "alice-password"}))
        .await;
    order
}

#[tokio::test]
async fn a_backend_that_was_down_gets_the_delivery_when_it_comes_up() {
    // A port with nothing listening on it yet: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_s, server) = start(port).await;
    let alice = Client::signed_up(&server, "alice").await;
    fund(&server, "alice").await;
    let order = pay(&alice, "700", "while-down").await;
    // Let at least one attempt fail against the closed port.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (_, inbox) = backend_on(port, 0).await;
    until(&inbox, "the delivery after the backend came up", |i| {
        !i.attempts.is_empty()
    })
    .await;
    let (header, body) = inbox.lock().unwrap().attempts[0].clone();
    let (_, key) = alice.get("/host-key").await;
    let key = superapp_sdk::credentials::public_key(key["public_key"].as_str().unwrap()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let n = superapp_sdk::callbacks::verify(&header, &body, &key, now).unwrap();
    assert_eq!((n.order.as_str(), n.amount), (order.as_str(), 700));
    let (_, log) = alice
        .get(&format!("/me/access-log?app={PROBE}&limit=100"))
        .await;
    let failed = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "callback.deliver" && e["outcome"] == "failed, will retry");
    assert!(failed, "the refused attempt is on record: {log}");
}

#[tokio::test]
async fn payments_and_refunds_reach_the_backend_signed_retried_and_once_each() {
    let (port, inbox) = backend(1).await;
    let (_s, server) = start(port).await;
    let alice = Client::signed_up(&server, "alice").await;
    fund(&server, "alice").await;

    // Alice pays 1500 through the probe, confirming with her password.
    let order = pay(&alice, "1500", "visit-7").await;

    // The backend was down for the first attempt; the retry took it.
    until(&inbox, "a delivered payment", |i| i.attempts.len() >= 2).await;
    let (_, key) = alice.get("/host-key").await;
    let key = superapp_sdk::credentials::public_key(key["public_key"].as_str().unwrap()).unwrap();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let verified = |i: &Inbox| -> Vec<superapp_sdk::callbacks::Notification> {
        i.attempts
            .iter()
            .map(|(h, b)| superapp_sdk::callbacks::verify(h, b, &key, now()).unwrap())
            .collect()
    };
    let seen = verified(&inbox.lock().unwrap());
    assert_eq!(
        seen[0].id, seen[1].id,
        "a retry carries the same delivery id"
    );
    let paid = &seen[1];
    assert_eq!(
        (
            paid.kind.as_str(),
            paid.app.as_str(),
            paid.order.as_str(),
            paid.amount
        ),
        ("payment.settled", PROBE, order.as_str(), 1500)
    );
    assert_eq!(paid.reference, "visit-7");
    assert_eq!(
        format!("ok: {:?}", paid.user),
        crate::apps::probe(&alice, "identity", None).await,
        "the backend knows the user by the app's pseudonym"
    );

    // A refund from the app is announced too.
    let v = alice
        .act(
            PROBE,
            "refund",
            Some(&order),
            json!({"amount": "500", "idempotency-key": "goodwill"}),
        )
        .await;
    assert_eq!(texts(&v)[0], "ok: ()");
    until(&inbox, "a delivered refund", |i| i.attempts.len() >= 3).await;

    // A backend that applies each id once counts each event once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = verified(&inbox.lock().unwrap());
    let mut applied: BTreeMap<String, superapp_sdk::callbacks::Notification> = BTreeMap::new();
    for n in seen {
        applied.entry(n.id.clone()).or_insert(n);
    }
    let mut kinds: Vec<(String, u64)> = applied
        .values()
        .map(|n| (n.kind.clone(), n.amount))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ("payment.refunded".to_string(), 500),
            ("payment.settled".to_string(), 1500)
        ]
    );
    let refund = applied
        .values()
        .find(|n| n.kind == "payment.refunded")
        .unwrap();
    assert_eq!(refund.refunded, 500);

    // Each attempt is in alice's access log.
    let (_, log) = alice
        .get(&format!("/me/access-log?app={PROBE}&limit=100"))
        .await;
    let outcomes: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "callback.deliver")
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| **o == "delivered").count(),
        2,
        "{outcomes:?}"
    );
    assert!(outcomes.contains(&"failed, will retry"), "{outcomes:?}");
}
