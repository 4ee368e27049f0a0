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
use crate::http::{start, start_with};

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

/// An app whose manifest delivers documents to its backend never holds
/// what a user shares: the sandbox hears only that it was shared, the
/// user's sheet says where it goes, and the backend gets the presentation,
/// signed by the host, which verifies with the issuer's and the host's
/// public keys and names the user by the app's pseudonym.
#[tokio::test]
async fn a_document_for_the_backend_reaches_it_signed_and_never_the_app() {
    let (port, inbox) = backend(0).await;
    let (_s, server) = start_with(
        port,
        |m| {
            m.replace(
                "[capabilities.documents]\n",
                "[capabilities.documents]\ndeliver = \"backend\"\n",
            )
        },
        &[],
    )
    .await;
    let mut alice = Client::signed_up(&server, "alice").await;
    alice.token = Some(alice.login("alice", "alice-password").await);

    // An insurer the operator trusts issues alice a card.
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("issuer.json");
    let issuer_pk = crate::documents::ok(&[
        "issuer",
        "keygen",
        "--id",
        "gov.health",
        "--out",
        key.to_str().unwrap(),
    ]);
    let issuer_pk = issuer_pk.trim();
    let added = http_client()
        .post(format!("{}/operator/issuers", server.base))
        .bearer_auth(server.operator_token())
        .json(&json!({"id": "gov.health", "name": "Health Insurance Agency", "public_key": issuer_pk}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::CREATED);
    // Ids that would vanish from a path, or pass for this one, are refused.
    for (id, status) in [
        (".", StatusCode::BAD_REQUEST),
        ("..", StatusCode::BAD_REQUEST),
        ("gov-health", StatusCode::CONFLICT),
        ("gov.hea1th", StatusCode::CONFLICT),
    ] {
        let refused = http_client()
            .post(format!("{}/operator/issuers", server.base))
            .bearer_auth(server.operator_token())
            .json(&json!({"id": id, "name": "Twin", "public_key": issuer_pk}))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), status, "{id}");
    }
    let claims = tmp.path().join("claims.json");
    std::fs::write(
        &claims,
        r#"{"insurer": "AOK", "policy-number": "P-4711", "birth-date": "1990-01-01"}"#,
    )
    .unwrap();
    let card = tmp.path().join("card.json");
    crate::documents::ok(&[
        "issuer",
        "issue",
        "--key",
        key.to_str().unwrap(),
        "--user",
        "alice",
        "--type",
        "insurance-card",
        "--claims",
        claims.to_str().unwrap(),
        "--out",
        card.to_str().unwrap(),
    ]);
    let issuance: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&card).unwrap()).unwrap();
    let (status, body) = alice.post("/credentials", issuance).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // The probe asks; the sheet tells alice where it goes.
    let asked = alice
        .act(
            PROBE,
            "documents",
            None,
            json!({"type": "insurance-card", "fields": "policy-number", "purpose": "Book"}),
        )
        .await;
    let request = texts(&asked)[0]
        .strip_prefix("ok: \"")
        .and_then(|s| s.strip_suffix('"'))
        .unwrap()
        .to_string();
    let (_, prompts) = alice.get("/prompts").await;
    let sheet = prompts
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "document")
        .unwrap()
        .clone();
    assert_eq!(
        sheet["document"]["deliver_to"],
        format!("http://backend.test:{port}")
    );
    let answer = alice.approve(&sheet, json!({})).await;

    // The app heard that it was shared, and nothing of it.
    let seen = texts(&alice.act(PROBE, "last-event", None, json!({})).await)[0].clone();
    assert!(seen.contains(&request) && seen.contains("Shared"), "{seen}");
    assert!(seen.contains("claims: []"), "{seen}");
    assert!(!seen.contains("P-4711"), "the app saw the field: {seen}");
    let envelope = texts(&alice.act(PROBE, "last-envelope", None, json!({})).await)[0].clone();
    assert_eq!(envelope, "ok: ", "no envelope for the app");
    assert!(!answer.to_string().contains("P-4711"));

    // The backend has it, sent before the app was told.
    let attempts = inbox.lock().unwrap().attempts.clone();
    assert_eq!(attempts.len(), 1, "delivered as the sheet was answered");
    let (_, host) = alice.get("/host-key").await;
    let host_key =
        superapp_sdk::credentials::public_key(host["public_key"].as_str().unwrap()).unwrap();
    let now = superapp_core::now_secs();
    let n =
        superapp_sdk::callbacks::verify(&attempts[0].0, &attempts[0].1, &host_key, now).unwrap();
    assert_eq!(
        (n.kind.as_str(), n.reference.as_str()),
        ("document.presented", request.as_str())
    );
    assert_eq!(
        format!("ok: {:?}", n.user),
        texts(&alice.act(PROBE, "identity", None, json!({})).await)[0]
    );
    let presentation = n.presentation.expect("the presentation");
    let trust = superapp_sdk::credentials::Trust {
        issuer_key: superapp_sdk::credentials::public_key(issuer_pk).unwrap(),
        host_key,
        revoked: Vec::new(),
    };
    let expected = superapp_sdk::credentials::Expected {
        audience: PROBE.into(),
        nonce: None,
        max_age_secs: 600,
    };
    let verified =
        superapp_sdk::credentials::verify_presentation(&presentation, &trust, &expected, now)
            .unwrap();
    let shared: Vec<(&str, &str)> = verified
        .claims
        .iter()
        .map(|c| (c.name.as_str(), c.value.as_str()))
        .collect();
    assert_eq!(
        shared,
        [("policy-number", "P-4711")],
        "only what alice approved"
    );
    assert_eq!(verified.binding.user.as_deref(), Some(n.user.as_str()));
}
