//! The backend's rules through its router: who the patient is comes only
//! from the host's assertion, a slot is held once, and money is believed
//! only from signed callbacks, each applied once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};
use superapp_sdk::assertion::{self, Assertion};
use superapp_sdk::callbacks::{self, Notification};
use superapp_sdk::clock;
use superapp_sdk::credentials::{encode_payload, Signed};
use tower::ServiceExt;

use super::*;

const ORIGIN: &str = "https://booking.cityhospital.example";
const MONDAY: &str = "2026-12-07";

struct World {
    host: SigningKey,
    now: Arc<AtomicU64>,
    app: Router,
}

fn world() -> World {
    let host = SigningKey::from_bytes(&[3; 32]);
    let start = clock::days_from_civil(2026, 12, 1) as u64 * 86_400 + 10 * 3_600;
    let now = Arc::new(AtomicU64::new(start));
    let clock = now.clone();
    let hospital = Hospital::new(
        Config {
            host_key: host.verifying_key().to_bytes(),
            origin: ORIGIN.into(),
            fee: 4_500,
        },
        Box::new(move || clock.load(Ordering::SeqCst)),
    );
    World {
        host,
        now,
        app: router(Arc::new(hospital)),
    }
}

impl World {
    fn assertion(&self, sub: &str, aud: &str) -> String {
        let a = Assertion::new(
            "dev.superapp.hospital-booking",
            sub,
            aud,
            self.now.load(Ordering::SeqCst),
        );
        let payload = encode_payload(&a);
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(self.host.sign(payload.as_bytes()).to_bytes());
        assertion::encode(&Signed { payload, signature })
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        patient: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json");
        if let Some(p) = patient {
            req = req.header(assertion::HEADER, self.assertion(p, ORIGIN));
        }
        self.send(req.body(Body::from(body.to_string())).unwrap())
            .await
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// A callback as the host sends it, signed with `key`.
    async fn callback(&self, key: &SigningKey, n: &Notification) -> (StatusCode, Value) {
        let body = serde_json::to_vec(n).unwrap();
        let t = self.now.load(Ordering::SeqCst);
        let sig = key
            .sign(&callbacks::signing_input(&n.id, t, &body))
            .to_bytes();
        let req = Request::builder()
            .method("POST")
            .uri("/superapp/callbacks")
            .header(callbacks::HEADER, callbacks::header(&n.id, t, &sig))
            .body(Body::from(body))
            .unwrap();
        self.send(req).await
    }
}

fn settled(id: &str, user: &str, hold: &str, amount: u64) -> Notification {
    Notification {
        id: id.into(),
        kind: "payment.settled".into(),
        app: "dev.superapp.hospital-booking".into(),
        user: user.into(),
        order: format!("order-{id}"),
        amount,
        currency: "EUR".into(),
        refunded: 0,
        reference: hold.into(),
        at: 0,
    }
}

#[tokio::test]
async fn the_patient_is_whoever_the_hosts_assertion_names() {
    let w = world();
    let (status, _) = w.call("GET", "/api/doctors", None, json!(null)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // An assertion for another backend is no good here.
    let req = Request::builder()
        .uri("/api/doctors")
        .header(
            assertion::HEADER,
            w.assertion("p1", "https://other.example"),
        )
        .body(Body::empty())
        .unwrap();
    assert_eq!(w.send(req).await.0, StatusCode::UNAUTHORIZED);
    let (status, doctors) = w.call("GET", "/api/doctors", Some("p1"), json!(null)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doctors["doctors"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_slot_is_held_once_and_booked_only_by_a_signed_payment() {
    let w = world();
    let slots = format!("/api/doctors/dr-osei/slots?day={MONDAY}");
    let (_, free) = w.call("GET", &slots, Some("p1"), json!(null)).await;
    assert_eq!(free["free"][0], "09:00");
    let want = json!({"doctor": "dr-osei", "day": MONDAY, "time": "09:00"});
    let (status, hold) = w.call("POST", "/api/holds", Some("p1"), want.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    let hold_id = hold["id"].as_str().unwrap().to_string();
    let (status, _) = w.call("POST", "/api/holds", Some("p2"), want).await;
    assert_eq!(status, StatusCode::CONFLICT, "held slots are not free");
    let (_, free) = w.call("GET", &slots, Some("p2"), json!(null)).await;
    assert_eq!(free["free"][0], "09:30");

    // A callback signed by anyone but the host changes nothing.
    let forger = SigningKey::from_bytes(&[4; 32]);
    let (status, _) = w
        .callback(&forger, &settled("d1", "p1", &hold_id, 4_500))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, mine) = w
        .call("GET", "/api/appointments", Some("p1"), json!(null))
        .await;
    assert_eq!(mine["appointments"], json!([]));

    // The host's callback books it, once however often it is delivered.
    let (status, applied) = w
        .callback(&w.host, &settled("d1", "p1", &hold_id, 4_500))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(applied["appointment"]["state"], "booked");
    let (_, again) = w
        .callback(&w.host, &settled("d1", "p1", &hold_id, 4_500))
        .await;
    assert_eq!(again["applied"], false);
    let (_, mine) = w
        .call("GET", "/api/appointments", Some("p1"), json!(null))
        .await;
    assert_eq!(mine["appointments"][0]["order"], "order-d1");
    let (_, theirs) = w
        .call("GET", "/api/appointments", Some("p2"), json!(null))
        .await;
    assert_eq!(
        theirs["appointments"],
        json!([]),
        "only one's own appointments"
    );

    // Cancelled more than a day ahead: the whole fee back.
    let cancel = format!("/api/appointments/{hold_id}/cancel");
    let (status, _) = w.call("POST", &cancel, Some("p2"), json!(null)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not p2's to cancel");
    let (status, cancelled) = w.call("POST", &cancel, Some("p1"), json!(null)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cancelled["refund"], 4_500);
}

#[tokio::test]
async fn a_payment_for_a_hold_that_ran_out_and_was_taken_is_owed_back() {
    let w = world();
    let want = json!({"doctor": "dr-osei", "day": MONDAY, "time": "10:00"});
    let (_, first) = w.call("POST", "/api/holds", Some("p1"), want.clone()).await;
    w.now.fetch_add(HOLD_SECS + 1, Ordering::SeqCst);
    let (status, second) = w.call("POST", "/api/holds", Some("p2"), want).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the run-out hold freed the slot"
    );
    let (_, booked) = w
        .callback(
            &w.host,
            &settled("d2", "p2", second["id"].as_str().unwrap(), 4_500),
        )
        .await;
    assert_eq!(booked["appointment"]["state"], "booked");
    let (_, late) = w
        .callback(
            &w.host,
            &settled("d3", "p1", first["id"].as_str().unwrap(), 4_500),
        )
        .await;
    assert_eq!(late["refund_due"], 4_500, "{late}");
    let (_, mine) = w
        .call("GET", "/api/appointments", Some("p1"), json!(null))
        .await;
    assert_eq!(mine["appointments"], json!([]));
}
