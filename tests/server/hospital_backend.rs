//! The hospital app's backend build end to end: the real host, the
//! hospital's own booking system (examples/hospital-backend) on a loopback
//! port, and patients in the real sheets. The schedule, the holds and the
//! bookings live in the backend, which knows each patient only by the
//! host's signed assertion, checks the insurance presentation itself and
//! makes a booking final on the host's signed payment callback.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::response::IntoResponse as _;

use serde_json::json;

use crate::apps::{serve_with, setup};
use crate::common::*;
use crate::hospital::{
    act, badges, buttons, pairs, pay, prompt, restart_with, shows, take, weber_slot, HOSPITAL,
};
use crate::payments::balance;
use hospital_backend::{Booking, BookingState, Hospital};

/// Wait (up to 20 s) until the backend's booking `reference` passes `test`.
async fn booking_when(
    hospital: &Hospital,
    reference: &str,
    test: impl Fn(&Booking) -> bool,
) -> Booking {
    for _ in 0..200 {
        if let Some(b) = hospital
            .bookings()
            .into_iter()
            .find(|b| b.reference == reference)
        {
            if test(&b) {
                return b;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "booking {reference} never got there: {:?}",
        hospital.bookings()
    );
}

/// The host with the hospital app's backend build, the hospital's system
/// on a loopback port (its `/paid` answers 503 once while `fail_paid` is
/// set, and every request 503 while `down` is), and alice (insured) and bob
/// signed in with money.
struct World {
    s: crate::apps::Setup,
    server: Server,
    clients: Vec<Client>,
    hospital: Arc<Hospital>,
    origin: String,
    down: Arc<AtomicBool>,
}

async fn world(fail_paid: Arc<AtomicBool>) -> World {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let origin = format!("http://booking.test:{port}");

    // The backend build, listing this backend (and its callback URL).
    let s = setup(&[]);
    install_build(
        &s.apps,
        "hospital-booking",
        &["backend"],
        "plugin.backend.toml",
    );
    let manifest = s.apps.join("hospital-booking/plugin.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(
        !text.contains("shared-storage"),
        "the backend build keeps no schedule of its own"
    );
    std::fs::write(
        &manifest,
        text.replace("https://booking.cityhospital.example", &origin),
    )
    .unwrap();
    let plain = format!("booking.test:{port}");
    let env = [
        ("SUPERAPP_HTTP_PLAIN_ORIGINS", plain.as_str()),
        ("SUPERAPP_HTTP_PRIVATE_HOSTS", "booking.test"),
        ("SUPERAPP_HTTP_HOSTS", "booking.test=127.0.0.1"),
    ];
    let server = serve_with(&s, &env);
    for user in ["alice", "bob"] {
        Client::signed_up(&server, user).await;
    }
    let (server, clients) = restart_with(&s, server, &["alice", "bob"], &["alice"], &env).await;

    // The hospital trusts this host's key and the insurer's.
    let (_, host_key) = clients[0].get("/host-key").await;
    let key = |b64: &str| superapp_sdk::credentials::public_key(b64).unwrap();
    let insurer = std::fs::read_to_string(s.data.with_file_name("issuer.pub")).unwrap();
    let hospital = Arc::new(
        Hospital::open(
            hospital_backend::Config {
                host_key: key(host_key["public_key"].as_str().unwrap()),
                origin: origin.clone(),
                app: HOSPITAL.into(),
                insurers: vec![("gov.health".into(), key(&insurer))],
                books: Some(s.data.with_file_name("hospital-books.json")),
            },
            Box::new(hospital_backend::system_now),
        )
        .unwrap(),
    );
    let down = Arc::new(AtomicBool::new(false));
    let is_down = down.clone();
    let router = hospital_backend::router(hospital.clone()).layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let (fail, is_down) = (fail_paid.clone(), is_down.clone());
            async move {
                if is_down.load(Ordering::SeqCst) {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
                }
                if req.uri().path().ends_with("/paid") && fail.swap(false, Ordering::SeqCst) {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
                }
                next.run(req).await
            }
        },
    ));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    World {
        s,
        server,
        clients,
        hospital,
        origin,
        down,
    }
}

/// Open the app for the first time and allow it to reach the hospital.
async fn allow(c: &Client) {
    let (_, first) = c.post(&format!("/apps/{HOSPITAL}/launch"), json!({})).await;
    assert!(shows(&first, "Allow City Hospital"), "{first}");
    let consent = prompt(c, "consent").await;
    assert_eq!(consent["capability"], "http");
    let home = c.approve(&consent, json!({})).await;
    assert!(shows(&home, "General medicine"), "{home}");
}

#[tokio::test]
async fn the_backend_build_books_through_the_hospitals_own_system() {
    let w = world(Arc::default()).await;
    let (alice, bob, hospital, origin) = (&w.clients[0], &w.clients[1], &w.hospital, &w.origin);

    // The first launch asks alice, in the host's dialog, to let the app
    // contact the hospital's system, naming it.
    let (_, first) = alice
        .post(&format!("/apps/{HOSPITAL}/launch"), json!({}))
        .await;
    assert!(shows(&first, "Allow City Hospital"), "{first}");
    let consent = prompt(alice, "consent").await;
    assert_eq!(consent["capability"], "http");
    assert!(consent.to_string().contains(origin.as_str()), "{consent}");
    let home = alice.approve(&consent, json!({})).await;
    assert!(shows(&home, "General medicine"), "{home}");

    // She picks Dr. Weber at least two days ahead: the times come from
    // the backend's schedule.
    let slot = weber_slot(alice, 2).await;
    let held = take(alice, &slot).await;
    assert_eq!(badges(&held), ["Held for you"], "{held}");
    let reference = pairs(&held)["Reference"].clone();
    assert_eq!(pairs(&held)["Fee"], "EUR 40.00");
    let at_backend = booking_when(hospital, &reference, |_| true).await;
    assert_eq!(at_backend.state, BookingState::Held);
    assert!(
        !at_backend.patient.is_empty() && !at_backend.patient.contains("alice"),
        "the backend knows a pseudonym, not the name: {}",
        at_backend.patient
    );

    // The backend keeps the time for her: bob cannot take it.
    let launch = bob
        .post(&format!("/apps/{HOSPITAL}/launch"), json!({}))
        .await
        .1;
    let consent = prompt(bob, "consent").await;
    assert!(shows(&launch, "Allow City Hospital"));
    bob.approve(&consent, json!({})).await;
    assert!(shows(&take(bob, &slot).await, "just taken"));

    // Her policy goes from the host straight to the hospital's system,
    // which checks it and then asks only the co-payment.
    act(alice, "insurance", Some(&reference), json!({})).await;
    let sheet = prompt(alice, "document").await;
    assert_eq!(
        sheet["document"]["deliver_to"],
        origin.as_str(),
        "the sheet says the policy goes to the hospital's system"
    );
    let insured = alice.approve(&sheet, json!({})).await;
    assert_eq!(pairs(&insured)["Co-payment"], "EUR 10.00", "{insured}");
    let at_backend = booking_when(hospital, &reference, |_| true).await;
    assert_eq!(at_backend.fee, 1_000);
    assert_eq!(
        at_backend
            .insurance
            .as_ref()
            .map(|i| i.policy_number.as_str()),
        Some("P-4711")
    );

    // Paid: booked as before, and final at the backend once the host's
    // signed callback arrives, counted once.
    let paid = pay(alice, "alice", &reference).await;
    assert!(shows(&paid, "Paid and booked"), "{paid}");
    assert_eq!(balance(alice).await, 10_000 - 1_000);
    let booked = booking_when(hospital, &reference, |b| b.state == BookingState::Booked).await;
    assert_eq!(booked.paid, 1_000);
    let department = act(bob, "department", Some("general"), json!({})).await;
    assert!(buttons(&department, "take").iter().all(|(_, v)| *v != slot));

    // Cancelled days ahead: all of it back, the refund on the backend's
    // books by callback, and the time free for bob.
    let done = act(alice, "cancel-confirm", Some(&reference), json!({})).await;
    assert_eq!(badges(&done), ["Cancelled"], "{done}");
    assert_eq!(balance(alice).await, 10_000);
    let cancelled = booking_when(hospital, &reference, |b| b.refunded == 1_000).await;
    assert_eq!(cancelled.state, BookingState::Cancelled);
    assert_eq!(cancelled.paid, 1_000, "no delivery was applied twice");
    let bobs = take(bob, &slot).await;
    assert_eq!(badges(&bobs), ["Held for you"], "{bobs}");

    // The hospital reads its insurer's revocations from the host: none,
    // then alice's policy once the insurer revokes it.
    let host = w.server.base.trim_end_matches("/api/v1");
    let client = hospital_backend::http_client().unwrap();
    hospital.read_revocations(&client, host).await.unwrap();
    assert!(hospital.revoked("gov.health").is_empty());
    let (_, wallet) = alice.get("/me/documents").await;
    let policy = wallet["documents"][0]["id"].as_str().unwrap().to_string();
    let key = w.s.data.with_file_name("issuer.json");
    let revoke = [
        "issuer",
        "revoke",
        "--key",
        key.to_str().unwrap(),
        "--credential",
        &policy,
        "--server",
        host,
    ];
    crate::documents::ok(&revoke);
    hospital.read_revocations(&client, host).await.unwrap();
    assert_eq!(hospital.revoked("gov.health"), [policy]);
}

/// A payment whose event the app lost after the money moved (the
/// hospital's system was down for that one request) is not undone later:
/// when the patient picks another time, the app finds the order paid and
/// books the first one, and the hospital's system will not release a paid
/// time as if it were a bare hold.
#[tokio::test]
async fn a_paid_time_whose_event_failed_is_booked_not_released() {
    let fail_paid = Arc::new(AtomicBool::new(false));
    let w = world(fail_paid.clone()).await;
    let bob = &w.clients[1];
    allow(bob).await;
    let slot = weber_slot(bob, 2).await;
    let held = take(bob, &slot).await;
    let reference = pairs(&held)["Reference"].clone();
    let fee = crate::hospital::cents(&pairs(&held)["Fee"]);

    fail_paid.store(true, Ordering::SeqCst);
    let paid = pay(bob, "bob", &reference).await;
    assert!(!shows(&paid, "Paid and booked"), "{paid}");
    assert_eq!(balance(bob).await, 10_000 - fee, "the money moved");
    // The host's signed callback still makes it final at the hospital.
    booking_when(&w.hospital, &reference, |b| b.state == BookingState::Booked).await;

    // Picking another time used to give the paid one up.
    let other = weber_slot(bob, 3).await;
    take(bob, &other).await;
    let first = act(bob, "appointment", Some(&reference), json!({})).await;
    assert_eq!(badges(&first), ["Booked"], "{first}");
    let at_backend = booking_when(&w.hospital, &reference, |_| true).await;
    assert_eq!(at_backend.state, BookingState::Booked);
    assert_eq!(
        balance(bob).await,
        10_000 - fee,
        "nothing refunded: it is booked"
    );
}

/// The hospital's system down: what the patient presses shows that it does
/// not answer and that nothing changed, never the capability's error; back
/// up, the same press works.
#[tokio::test]
async fn a_hospital_system_that_does_not_answer_is_a_screen_not_an_error() {
    let w = world(Arc::default()).await;
    let bob = &w.clients[1];
    allow(bob).await;
    w.down.store(true, Ordering::SeqCst);
    for view in [
        act(bob, "department", Some("general"), json!({})).await,
        act(bob, "mine", None, json!({})).await,
    ] {
        assert!(shows(&view, "The hospital is not answering"), "{view}");
        assert!(shows(&view, "look under My appointments"), "{view}");
        assert!(!shows(&view, "503"), "no transport's words: {view}");
    }
    let (status, launched) = bob
        .post(&format!("/apps/{HOSPITAL}/launch"), json!({}))
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{launched}");
    assert!(
        shows(&launched, "The hospital is not answering"),
        "{launched}"
    );
    w.down.store(false, Ordering::SeqCst);
    let department = act(bob, "department", Some("general"), json!({})).await;
    assert!(!buttons(&department, "take").is_empty(), "{department}");
}
