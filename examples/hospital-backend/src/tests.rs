//! The backend's rules through its router: who the patient is comes only
//! from the host's assertion, a slot is kept for one patient, money is
//! believed only from signed callbacks (each applied once), and a policy
//! only from a presentation that verifies and was shared by that patient.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use serde::Serialize;
use serde_json::{json, Value};
use superapp_sdk::assertion::{self, Assertion};
use superapp_sdk::callbacks::{self, Notification};
use superapp_sdk::clock;
use superapp_sdk::credentials::{
    self, encode_payload, CredentialPayload, HolderCert, KeyBinding, PresentationEnvelope, Signed,
};
use tower::ServiceExt;

use super::*;

const ORIGIN: &str = "https://booking.cityhospital.example";
const APP: &str = "dev.superapp.hospital-booking";
/// Dr. Weber sees patients on Monday mornings from 08:00, 20 minutes each.
const MONDAY: &str = "2026-12-07";
const EIGHT: u32 = 8 * 60;

struct World {
    host: SigningKey,
    insurer: SigningKey,
    now: Arc<AtomicU64>,
    hospital: Arc<Hospital>,
    app: Router,
}

fn sign<T: Serialize>(key: &SigningKey, value: &T) -> Signed {
    let payload = encode_payload(value);
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(key.sign(payload.as_bytes()).to_bytes());
    Signed { payload, signature }
}

fn world() -> World {
    world_keeping(None)
}

/// A world whose books are kept in `books` (read from it if it is there).
fn world_keeping(books: Option<std::path::PathBuf>) -> World {
    let host = SigningKey::from_bytes(&[3; 32]);
    let insurer = SigningKey::from_bytes(&[5; 32]);
    let start = clock::days_from_civil(2026, 12, 1) as u64 * 86_400 + 10 * 3_600;
    let now = Arc::new(AtomicU64::new(start));
    let clock = now.clone();
    let hospital = Hospital::open(
        Config {
            host_key: host.verifying_key().to_bytes(),
            origin: ORIGIN.into(),
            app: APP.into(),
            insurers: vec![("gov.health".into(), insurer.verifying_key().to_bytes())],
            books,
        },
        Box::new(move || clock.load(Ordering::SeqCst)),
    )
    .unwrap();
    let hospital = Arc::new(hospital);
    World {
        host,
        insurer,
        now,
        app: router(hospital.clone()),
        hospital,
    }
}

impl World {
    fn now(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }

    fn assertion(&self, sub: &str, aud: &str) -> String {
        assertion::encode(&sign(
            &self.host,
            &Assertion::new(APP, sub, aud, self.now()),
        ))
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

    /// `patient`'s bookings as the backend lists them.
    async fn appointments(&self, patient: &str) -> Value {
        self.call("GET", "/api/appointments", Some(patient), json!(null))
            .await
            .1
    }

    async fn hold(&self, patient: &str, reference: &str, at: u32) -> (StatusCode, Value) {
        let want = json!({"reference": reference, "doctor": "weber", "day": MONDAY, "at": at});
        self.call("POST", "/api/holds", Some(patient), want).await
    }

    /// A callback as the host sends it, signed with `key`.
    async fn callback(&self, key: &SigningKey, n: &Notification) -> (StatusCode, Value) {
        let body = serde_json::to_vec(n).unwrap();
        let t = self.now();
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

    /// A health-insurance presentation as the host builds it for `user`
    /// (the app's pseudonymous id), issued by `issuer` as `issuer_id`.
    fn policy(&self, issuer: &SigningKey, issuer_id: &str, user: &str, nonce: &str) -> Value {
        let now = self.now();
        let disclosures: Vec<String> = [
            ("s1", "insurer", "AOK Nordwest"),
            ("s2", "policy-number", "P-4711"),
            ("s3", "valid-until", "2099-12-31"),
        ]
        .iter()
        .map(|(salt, name, value)| credentials::disclosure(salt, name, value))
        .collect();
        let mut digests: Vec<String> = disclosures.iter().map(|d| credentials::digest(d)).collect();
        digests.sort();
        let sub = credentials::subject_binding("alice", "wallet-salt");
        let credential = sign(
            issuer,
            &CredentialPayload {
                v: credentials::VERSION,
                id: "cred-1".into(),
                iss: issuer_id.into(),
                credential_type: "health-insurance".into(),
                sub: sub.clone(),
                iat: now - 86_400,
                exp: now + 365 * 86_400,
                digests,
            },
        );
        let holder_key = SigningKey::from_bytes(&[9; 32]);
        let holder = sign(
            &self.host,
            &HolderCert {
                v: credentials::VERSION,
                sub,
                key: credentials::encode_key(&holder_key.verifying_key().to_bytes()),
                iat: now,
            },
        );
        let binding = sign(
            &holder_key,
            &KeyBinding {
                v: credentials::VERSION,
                aud: APP.into(),
                nonce: nonce.into(),
                iat: now,
                sd_hash: credentials::sd_hash(&credential, &disclosures),
                user: Some(user.into()),
            },
        );
        serde_json::to_value(PresentationEnvelope {
            credential,
            disclosures,
            holder,
            binding,
        })
        .unwrap()
    }
}

fn settled(id: &str, user: &str, reference: &str, amount: u64) -> Notification {
    Notification {
        id: id.into(),
        kind: "payment.settled".into(),
        app: APP.into(),
        user: user.into(),
        order: format!("order-{id}"),
        amount,
        currency: "EUR".into(),
        refunded: 0,
        reference: format!("{reference}-{amount}"),
        at: 0,
        presentation: None,
    }
}

#[tokio::test]
async fn the_patient_is_whoever_the_hosts_assertion_names() {
    let w = world();
    let (status, _) = w.call("GET", "/api/catalog", None, json!(null)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // An assertion for another backend is no good here.
    let req = Request::builder()
        .uri("/api/catalog")
        .header(
            assertion::HEADER,
            w.assertion("p1", "https://other.example"),
        )
        .body(Body::empty())
        .unwrap();
    assert_eq!(w.send(req).await.0, StatusCode::UNAUTHORIZED);
    // Another app on the host that lists this origin gets assertions for
    // it too, naming its own users: they are not the hospital's patients.
    let other = assertion::encode(&sign(
        &w.host,
        &Assertion::new("org.example.squatter", "p9", ORIGIN, w.now()),
    ));
    let req = Request::builder()
        .uri("/api/catalog")
        .header(assertion::HEADER, other)
        .body(Body::empty())
        .unwrap();
    assert_eq!(w.send(req).await.0, StatusCode::FORBIDDEN);
    let mut foreign = settled("d9", "p9", "HB-NONE", 100);
    foreign.app = "org.example.squatter".into();
    assert_eq!(w.callback(&w.host, &foreign).await.0, StatusCode::FORBIDDEN);
    let (status, catalog) = w.call("GET", "/api/catalog", Some("p1"), json!(null)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(catalog["doctors"].as_array().unwrap().len(), 5);
    assert_eq!(catalog["doctors"][0]["id"], "weber");
}

/// A body that is not JSON, or not of the route, is refused with the JSON
/// error body every refusal has.
#[tokio::test]
async fn a_bad_body_is_refused_with_a_json_error() {
    let w = world();
    let with = |content_type: &str, body: &str| {
        Request::builder()
            .method("POST")
            .uri("/api/holds")
            .header("content-type", content_type)
            .header(assertion::HEADER, w.assertion("p1", ORIGIN))
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    for (req, expected) in [
        (with("text/plain", "{}"), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (with("application/json", "{nope"), StatusCode::BAD_REQUEST),
        (
            with("application/json", r#"{"at": "x"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (status, body) = w.send(req).await;
        assert_eq!(status, expected, "{body}");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
}

#[tokio::test]
async fn a_slot_is_kept_for_one_patient_and_booked_only_by_a_signed_payment() {
    let w = world();
    let day = format!("/api/doctors/weber/days/{MONDAY}");
    let (_, free) = w.call("GET", &day, Some("p1"), json!(null)).await;
    assert_eq!(free["free"][0], EIGHT);
    let (status, hold) = w.hold("p1", "HB-ONE", EIGHT).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    assert_eq!(hold["state"], "held");
    assert_eq!(hold["fee"], 4_000);
    let (status, _) = w.hold("p2", "HB-TWO", EIGHT).await;
    assert_eq!(status, StatusCode::CONFLICT, "held slots are not free");
    let (status, _) = w.hold("p2", "HB-ONE", EIGHT + 20).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "nobody takes another's reference"
    );
    let (_, free) = w.call("GET", &day, Some("p2"), json!(null)).await;
    assert_eq!(free["free"][0], EIGHT + 20);
    let (_, next) = w
        .call(
            "GET",
            "/api/doctors/weber/next-free",
            Some("p2"),
            json!(null),
        )
        .await;
    // Tuesday the 1st, 10:00 UTC is 11:00 at the hospital: 11:00 itself
    // has begun, so 11:20 is the next free time.
    assert_eq!(next, json!({"day": "2026-12-01", "at": 11 * 60 + 20}));

    // The app says it was paid: the slot stays p1's, even past the hold.
    let (status, paying) = w
        .call(
            "POST",
            "/api/holds/HB-ONE/paid",
            Some("p1"),
            json!({"order": "o1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{paying}");
    assert_eq!(paying["state"], "paying");
    w.now.fetch_add(HOLD_SECS + 1, Ordering::SeqCst);
    let (status, _) = w.hold("p2", "HB-TWO", EIGHT).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // A callback signed by anyone but the host changes nothing.
    let forger = SigningKey::from_bytes(&[4; 32]);
    let (status, _) = w
        .callback(&forger, &settled("d1", "p1", "HB-ONE", 4_000))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The host's callback books it, once however often it is delivered.
    let (status, applied) = w
        .callback(&w.host, &settled("d1", "p1", "HB-ONE", 4_000))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(applied["refund_due"], Value::Null);
    let (_, again) = w
        .callback(&w.host, &settled("d1", "p1", "HB-ONE", 4_000))
        .await;
    assert_eq!(again["applied"], false);
    let mine = w.appointments("p1").await;
    assert_eq!(mine["appointments"][0]["state"], "booked");
    assert_eq!(mine["appointments"][0]["paid"], 4_000, "counted once");
    let (_, booked) = w.call("GET", &day, Some("p2"), json!(null)).await;
    assert_eq!(booked["booked"], json!([EIGHT]));
    let theirs = w.appointments("p2").await;
    assert_eq!(theirs["appointments"], json!([]), "only one's own");

    // A paid time is not given up as a hold would be (a payment event the
    // app lost must not undo a booking the money bought).
    let (status, _) = w
        .call("POST", "/api/holds/HB-ONE/release", Some("p1"), json!(null))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // A refund callback naming another patient changes nothing.
    let mut refund = settled("d2", "p2", "HB-ONE", 4_000);
    refund.kind = "payment.refunded".into();
    refund.refunded = 4_000;
    w.callback(&w.host, &refund).await;

    // Only its patient can cancel it; then the time is free again.
    let cancel = "/api/appointments/HB-ONE/cancel";
    let (status, _) = w.call("POST", cancel, Some("p2"), json!(null)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not p2's to cancel");
    let (status, cancelled) = w.call("POST", cancel, Some("p1"), json!(null)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cancelled["state"], "cancelled");
    assert_eq!(cancelled["refunded"], 0, "p2's refund was not applied");
    let (status, _) = w.hold("p2", "HB-TWO", EIGHT).await;
    assert_eq!(status, StatusCode::CREATED);
}

/// Restarted on its books file, the backend still knows every booking,
/// hold and applied callback: a booked slot is not offered again, a
/// callback delivered again is not applied twice; and books that do not
/// read stop the start rather than begin empty.
#[tokio::test]
async fn the_books_survive_a_restart() {
    let dir = std::env::temp_dir().join(format!("hospital-books-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("books.json");
    let _ = std::fs::remove_file(&path);
    let w = world_keeping(Some(path.clone()));
    assert_eq!(w.hold("p1", "HB-ONE", EIGHT).await.0, StatusCode::CREATED);
    assert_eq!(
        w.hold("p2", "HB-TWO", EIGHT + 20).await.0,
        StatusCode::CREATED
    );
    let paid = settled("d1", "p1", "HB-ONE", 4_000);
    let (status, answer) = w.callback(&w.host, &paid).await;
    assert_eq!((status, &answer["applied"]), (StatusCode::OK, &json!(true)));

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "patients' records are the hospital's alone"
        );
    }
    let again = world_keeping(Some(path.clone()));
    assert_eq!(
        again.appointments("p1").await["appointments"][0]["state"],
        "booked"
    );
    assert_eq!(
        again.appointments("p2").await["appointments"][0]["state"],
        "held"
    );
    assert_eq!(
        again.hold("p3", "HB-THREE", EIGHT).await.0,
        StatusCode::CONFLICT,
        "a booked time stays taken"
    );
    let (status, answer) = again.callback(&again.host, &paid).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["applied"], false, "{answer}");

    std::fs::write(&path, b"{ not the books").unwrap();
    let broken = Hospital::open(
        Config {
            host_key: [0; 32],
            origin: ORIGIN.into(),
            app: APP.into(),
            insurers: Vec::new(),
            books: Some(path.clone()),
        },
        Box::new(|| 0),
    );
    let Err(e) = broken else {
        panic!("books that do not read were taken for empty ones")
    };
    assert!(format!("{e:#}").contains("cannot read the books"), "{e:#}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_payment_for_a_hold_that_ran_out_and_was_taken_is_owed_back() {
    let w = world();
    w.hold("p1", "HB-ONE", EIGHT).await;
    w.now.fetch_add(HOLD_SECS + 1, Ordering::SeqCst);
    let (status, _) = w.hold("p2", "HB-TWO", EIGHT).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the run-out hold freed the slot"
    );
    let (_, lost) = w
        .call(
            "POST",
            "/api/holds/HB-ONE/paid",
            Some("p1"),
            json!({"order": "o1"}),
        )
        .await;
    assert_eq!(lost["state"], "lost", "the app is told to refund");
    let (_, late) = w
        .callback(&w.host, &settled("d1", "p1", "HB-ONE", 4_000))
        .await;
    assert_eq!(late["refund_due"], 4_000, "{late}");
    let (_, short) = w
        .callback(&w.host, &settled("d2", "p2", "HB-TWO", 1_000))
        .await;
    assert_eq!(short["refund_due"], 1_000, "too little pays for nothing");
    let mut dollars = settled("d3", "p2", "HB-TWO", 4_000);
    dollars.currency = "USD".into();
    let (_, foreign) = w.callback(&w.host, &dollars).await;
    assert_eq!(foreign["refund_due"], 4_000, "other money buys nothing");
    let mine = w.appointments("p2").await;
    assert_eq!(mine["appointments"][0]["state"], "held");
}

/// The hospital's back office refunds a booked time: in part, the booking
/// stands; in whole, the signed callback cancels it and frees the time at
/// once, without waiting for the patient to open the app.
#[tokio::test]
async fn a_booking_the_hospital_refunds_in_full_is_cancelled_and_its_time_freed() {
    let w = world();
    w.hold("p1", "HB-ONE", EIGHT).await;
    let paid = settled("d1", "p1", "HB-ONE", 4_000);
    w.callback(&w.host, &paid).await;
    let refund = |id: &str, total: u64| Notification {
        id: id.into(),
        kind: "payment.refunded".into(),
        amount: 1_000,
        refunded: total,
        ..paid.clone()
    };
    w.callback(&w.host, &refund("r1", 1_000)).await;
    let mine = w.appointments("p1").await;
    assert_eq!(mine["appointments"][0]["state"], "booked", "{mine}");
    assert_eq!(w.hold("p2", "HB-TWO", EIGHT).await.0, StatusCode::CONFLICT);
    // The refund of another order of the booking (a second payment) does
    // not cancel it.
    let other = Notification {
        order: "order-elsewhere".into(),
        ..refund("r2", 4_000)
    };
    w.callback(&w.host, &other).await;
    assert_eq!(
        w.appointments("p1").await["appointments"][0]["state"],
        "booked"
    );
    w.callback(&w.host, &refund("r3", 4_000)).await;
    let mine = w.appointments("p1").await;
    assert_eq!(mine["appointments"][0]["state"], "cancelled", "{mine}");
    assert_eq!(mine["appointments"][0]["refunded"], 4_000);
    assert_eq!(w.hold("p2", "HB-TWO", EIGHT).await.0, StatusCode::CREATED);
}

#[tokio::test]
async fn a_policy_the_host_delivers_for_the_patient_lowers_the_fee_once() {
    let w = world();
    w.hold("p1", "HB-ONE", EIGHT).await;
    let expect = |request: &str| {
        let request = request.to_string();
        let w = &w;
        async move {
            let (status, hold) = w
                .call(
                    "POST",
                    "/api/holds/HB-ONE/insurance",
                    Some("p1"),
                    json!({ "request": request }),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{hold}");
            hold
        }
    };
    let mine = || async {
        let all = w.appointments("p1").await;
        all["appointments"][0].clone()
    };

    // Refused: a policy no accepted insurer signed, one of an insurer the
    // hospital does not take, one shared by another patient, and one the
    // host did not sign the delivery of.
    let refusals = [
        (
            w.policy(&SigningKey::from_bytes(&[6; 32]), "gov.health", "p1", "n1"),
            "issuer",
        ),
        (
            w.policy(&w.insurer, "acme.insurance", "p1", "n2"),
            "does not accept",
        ),
        (
            w.policy(&w.insurer, "gov.health", "p2", "n3"),
            "another patient",
        ),
    ];
    for (i, (policy, why)) in refusals.into_iter().enumerate() {
        let request = format!("req-{i}");
        expect(&request).await;
        let (status, _) = w
            .callback(
                &w.host,
                &presented(&format!("d{i}"), "p1", &request, policy),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let hold = mine().await;
        let problem = hold["policy_problem"].as_str().unwrap_or_default();
        assert!(problem.contains(why), "{problem} should say {why}");
        assert_eq!(hold["fee"], 4_000, "nothing refused lowered it");
    }
    let good = w.policy(&w.insurer, "gov.health", "p1", "n4");
    let forger = SigningKey::from_bytes(&[4; 32]);
    expect("req-good").await;
    let (status, _) = w
        .callback(
            &forger,
            &presented("d-forged", "p1", "req-good", good.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(mine().await["fee"], 4_000);

    // The host's delivery of a good one: the co-payment.
    w.callback(
        &w.host,
        &presented("d-good", "p1", "req-good", good.clone()),
    )
    .await;
    let hold = mine().await;
    assert_eq!(hold["fee"], 1_000, "the co-payment: {hold}");
    assert_eq!(hold["insurance"]["policy_number"], "P-4711");

    // It may come before the app names its hold; it still counts, once.
    w.hold("p1", "HB-TWO", EIGHT + 20).await;
    let fresh = w.policy(&w.insurer, "gov.health", "p1", "n5");
    w.callback(
        &w.host,
        &presented("d-early", "p1", "req-two", fresh.clone()),
    )
    .await;
    let (_, two) = w
        .call(
            "POST",
            "/api/holds/HB-TWO/insurance",
            Some("p1"),
            json!({"request": "req-two"}),
        )
        .await;
    assert_eq!(two["fee"], 1_000, "{two}");
    // The same presentation again, for another hold: refused.
    w.hold("p1", "HB-THREE", EIGHT + 40).await;
    let (_, three) = w
        .call(
            "POST",
            "/api/holds/HB-THREE/insurance",
            Some("p1"),
            json!({"request": "req-three"}),
        )
        .await;
    w.callback(&w.host, &presented("d-replay", "p1", "req-three", fresh))
        .await;
    let all = w.appointments("p1").await;
    let three_now = all["appointments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["reference"] == "HB-THREE")
        .unwrap()
        .clone();
    assert_eq!(three["fee"], 4_000);
    assert_eq!(three_now["fee"], 4_000, "{three_now}");
    assert!(three_now["policy_problem"]
        .as_str()
        .unwrap()
        .contains("already used"));
}

/// The host's status list of `gov.health`, served on loopback as the host
/// serves it, with what it says changed by the test.
async fn status_list(says: Arc<std::sync::Mutex<Value>>) -> String {
    let host = Router::new().route(
        "/api/v1/issuers/gov.health/revoked",
        axum::routing::get(move || {
            let list = says.lock().unwrap().clone();
            async move { axum::Json(list) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, host).await.unwrap() });
    format!("http://{at}/")
}

/// The host's answer for `issuer`'s status list, signed by `key` as listed
/// at `at`.
fn listed(key: &SigningKey, issuer: &str, revoked: &[&str], at: u64) -> Value {
    let list = credentials::StatusList {
        v: credentials::VERSION,
        typ: credentials::STATUS_LIST.into(),
        iss: issuer.into(),
        revoked: revoked.iter().map(|r| r.to_string()).collect(),
        iat: at,
    };
    json!({"issuer": issuer, "revoked": revoked, "at": at, "signed": sign(key, &list)})
}

#[tokio::test]
async fn a_policy_its_insurer_revoked_lowers_no_fee() {
    let w = world();
    let now = || w.now.load(Ordering::SeqCst);
    let says = Arc::new(std::sync::Mutex::new(listed(
        &w.host,
        "gov.health",
        &[],
        now(),
    )));
    let host = status_list(says.clone()).await;
    let client = http_client().unwrap();
    w.hospital.read_revocations(&client, &host).await.unwrap();
    assert!(w.hospital.revoked("gov.health").is_empty());
    // The insurer revokes the policy after the patient shared it, before
    // the host delivered it.
    *says.lock().unwrap() = listed(&w.host, "gov.health", &["cred-1"], now());
    w.hospital.read_revocations(&client, &host).await.unwrap();
    assert_eq!(w.hospital.revoked("gov.health"), ["cred-1"]);
    w.hold("p1", "HB-ONE", EIGHT).await;
    let (status, _) = w
        .call(
            "POST",
            "/api/holds/HB-ONE/insurance",
            Some("p1"),
            json!({"request": "req-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let policy = w.policy(&w.insurer, "gov.health", "p1", "n1");
    let (status, _) = w
        .callback(&w.host, &presented("d1", "p1", "req-1", policy))
        .await;
    assert_eq!(status, StatusCode::OK);
    let hold = w.appointments("p1").await["appointments"][0].clone();
    assert!(
        hold["policy_problem"]
            .as_str()
            .is_some_and(|p| p.contains("revoked")),
        "{hold}"
    );
    assert_eq!(hold["fee"], 4_000);

    // What does not hold: a list of another issuer, one not signed (its
    // unsigned fields say the revocation is gone), one signed by another
    // key, an older list handed on again, no host at all. Each is an error
    // that says so, and the list read before still holds.
    let someone = SigningKey::from_bytes(&[9; 32]);
    let mut unsigned = listed(&w.host, "gov.health", &[], now());
    unsigned.as_object_mut().unwrap().remove("signed");
    let mut tampered = listed(&w.host, "gov.health", &["cred-1"], now());
    tampered["signed"]["payload"] =
        listed(&w.host, "gov.health", &[], now())["signed"]["payload"].clone();
    let refused = [
        (
            listed(&w.host, "acme.insurance", &[], now()),
            "not of `gov.health`",
        ),
        (unsigned, "not signed"),
        (tampered, "signature does not verify"),
        (
            listed(&someone, "gov.health", &[], now()),
            "signature does not verify",
        ),
        (listed(&w.host, "gov.health", &[], now() - 1), "older"),
    ];
    for (answer, why) in refused {
        *says.lock().unwrap() = answer;
        let err = w
            .hospital
            .read_revocations(&client, &host)
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains(why), "{why}: {err:#}");
        assert_eq!(w.hospital.revoked("gov.health"), ["cred-1"]);
    }
    let err = w
        .hospital
        .read_revocations(&client, "http://127.0.0.1:1")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("gov.health"), "{err}");
    assert_eq!(w.hospital.revoked("gov.health"), ["cred-1"]);

    // Lists older than allowed count for nothing: a host that stops
    // answering, or a path that keeps handing on the list it once got,
    // cannot keep a revoked policy counting.
    let listed_at = now();
    *says.lock().unwrap() = listed(&w.host, "gov.health", &[], listed_at);
    w.hospital.read_revocations(&client, &host).await.unwrap();
    w.hospital.require_fresh_revocations(300);
    w.now.fetch_add(301, Ordering::SeqCst);
    let err = w
        .hospital
        .read_revocations(&client, &host)
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("too old"), "{err:#}");
    w.now.fetch_sub(301, Ordering::SeqCst);
    w.now.fetch_add(301, Ordering::SeqCst);
    w.hold("p1", "HB-TWO", EIGHT + 20).await;
    let (status, _) = w
        .call(
            "POST",
            "/api/holds/HB-TWO/insurance",
            Some("p1"),
            json!({"request": "req-2"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let policy = w.policy(&w.insurer, "gov.health", "p1", "n2");
    w.callback(&w.host, &presented("d2", "p1", "req-2", policy))
        .await;
    let all = w.appointments("p1").await;
    let two = all["appointments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["reference"] == "HB-TWO")
        .unwrap()
        .clone();
    assert!(
        two["policy_problem"]
            .as_str()
            .is_some_and(|p| p.contains("cannot check its insurers' revocations")),
        "{two}"
    );
    assert_eq!(two["fee"], 4_000);
}

fn presented(id: &str, user: &str, request: &str, envelope: Value) -> Notification {
    Notification {
        id: id.into(),
        kind: "document.presented".into(),
        app: APP.into(),
        user: user.into(),
        order: String::new(),
        amount: 0,
        currency: String::new(),
        refunded: 0,
        reference: request.into(),
        at: 0,
        presentation: Some(serde_json::from_value(envelope).unwrap()),
    }
}
