//! The hospital-booking mini-program end to end, through the host's HTTP
//! API with real users, the real store and the real payment and document
//! sheets: the slot race, holds that expire, insurance, cancellations
//! refunded by the rule, and money that adds up.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::apps::{serve_with, setup, Setup};
use crate::city::merchant_refund;
use crate::common::*;
use crate::documents::ok;
use crate::payments::{balance, confirm_and_crash, topup, wallet_cli, ONE_INSTANCE};

pub(crate) const HOSPITAL: &str = "dev.superapp.hospital-booking";

/// Stop the server, give each user money (and `insured` users a
/// health-insurance policy from a registered issuer, `gov.health`, whose
/// public key is then in `issuer.pub` beside the data directory and its
/// key in `issuer.json`), start it again and sign everyone in.
pub(crate) async fn restart_with(
    s: &Setup,
    server: Server,
    users: &[&str],
    insured: &[&str],
    env: &[(&str, &str)],
) -> (Server, Vec<Client>) {
    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    assert!(status.success());
    for user in users {
        topup(&s.data, user, 10_000);
    }
    if !insured.is_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let key = s.data.with_file_name("issuer.json");
        let key = key.to_str().unwrap();
        let public = ok(&["issuer", "keygen", "--id", "gov.health", "--out", key]);
        std::fs::write(s.data.with_file_name("issuer.pub"), public.trim()).unwrap();
        let data = s.data.to_str().unwrap();
        ok(&[
            "issuer",
            "add",
            "--id",
            "gov.health",
            "--name",
            "National Health Insurance",
            "--public-key",
            public.trim(),
            "--data-dir",
            data,
        ]);
        let claims = tmp.path().join("claims.json");
        std::fs::write(
            &claims,
            r#"{"insurer": "AOK Nordwest", "policy-number": "P-4711", "valid-until": "2099-12-31"}"#,
        )
        .unwrap();
        for user in insured {
            ok(&[
                "issuer",
                "issue",
                "--key",
                key,
                "--user",
                user,
                "--type",
                "health-insurance",
                "--claims",
                claims.to_str().unwrap(),
                "--data-dir",
                data,
            ]);
        }
    }
    let server = serve_with(s, env);
    let mut clients = Vec::new();
    for user in users {
        let mut c = Client::new(&server);
        c.token = Some(c.login(user, &format!("{user}-password")).await);
        clients.push(c);
    }
    (server, clients)
}

/// Patients signed up on a fresh server, with money.
async fn hospital(
    users: &[&str],
    insured: &[&str],
    env: &[(&str, &str)],
) -> (Setup, Server, Vec<Client>) {
    hospital_beside(&[], users, insured, env).await
}

/// The same, with `others` of the bundled plugins installed beside it.
async fn hospital_beside(
    others: &[&str],
    users: &[&str],
    insured: &[&str],
    env: &[(&str, &str)],
) -> (Setup, Server, Vec<Client>) {
    let s = setup(&[&["hospital-booking"], others].concat());
    let server = serve_with(&s, env);
    for user in users {
        Client::signed_up(&server, user).await;
    }
    let (server, clients) = restart_with(&s, server, users, insured, env).await;
    (s, server, clients)
}

pub(crate) async fn act(c: &Client, name: &str, value: Option<&str>, fields: Value) -> Value {
    c.act(HOSPITAL, name, value, fields).await
}

fn walk<'a>(node: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(node);
    for child in node["children"].as_array().into_iter().flatten() {
        walk(child, out);
    }
}

pub(crate) fn nodes(view: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    walk(&view["view"]["body"], &mut out);
    out
}

/// (label, value) of every button bound to `event`.
pub(crate) fn buttons(view: &Value, event: &str) -> Vec<(String, String)> {
    nodes(view)
        .into_iter()
        .filter(|n| n["type"] == "button" && n["event"] == event)
        .map(|n| {
            (
                n["label"].as_str().unwrap().to_string(),
                n["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Every label and value of the view's key-value lists.
pub(crate) fn pairs(view: &Value) -> HashMap<String, String> {
    nodes(view)
        .into_iter()
        .filter(|n| n["type"] == "key-values")
        .flat_map(|n| n["pairs"].as_array().unwrap().clone())
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

pub(crate) fn badges(view: &Value) -> Vec<String> {
    nodes(view)
        .into_iter()
        .filter(|n| n["type"] == "badge")
        .map(|n| n["text"].as_str().unwrap().to_string())
        .collect()
}

pub(crate) fn shows(view: &Value, text: &str) -> bool {
    view["view"].to_string().contains(text)
}

/// `EUR 40.00` in minor units.
pub(crate) fn cents(money: &str) -> i64 {
    let amount = money.rsplit(' ').next().unwrap();
    let (whole, frac) = amount.split_once('.').unwrap();
    whole.parse::<i64>().unwrap() * 100 + frac.parse::<i64>().unwrap()
}

/// The one prompt of `kind` waiting for `c`.
pub(crate) async fn prompt(c: &Client, kind: &str) -> Value {
    let (_, prompts) = c.get("/prompts").await;
    prompts
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} prompt in {prompts}"))
        .clone()
}

/// Start paying a held appointment and confirm the sheet with the
/// password; returns the view the app drew on hearing it was paid.
pub(crate) async fn pay(c: &Client, user: &str, appointment: &str) -> Value {
    let waiting = act(c, "pay", Some(appointment), json!({})).await;
    assert!(shows(&waiting, "Confirm the payment"), "{waiting}");
    let sheet = prompt(c, "payment").await;
    c.approve(&sheet, json!({"password": format!("{user}-password")}))
        .await
}

/// Take the slot behind a "take" button value; the view it answers.
pub(crate) async fn take(c: &Client, slot: &str) -> Value {
    act(c, "take", Some(slot), json!({})).await
}

#[tokio::test]
async fn twenty_patients_race_for_one_slot_and_exactly_one_books_it() {
    let names: Vec<String> = (0..20).map(|i| format!("patient{i}")).collect();
    let users: Vec<&str> = names.iter().map(String::as_str).collect();
    let (_s, server, patients) = hospital(&users, &[], &[]).await;

    // Everyone opens the app at once: the schedule is seeded exactly once.
    let launch = format!("/apps/{HOSPITAL}/launch");
    let launches = join_all(patients.iter().map(|p| p.post(&launch, json!({})))).await;
    for (status, view) in &launches {
        assert_eq!(*status, StatusCode::OK, "{view}");
        assert!(shows(view, "General medicine"), "{view}");
    }
    let about = act(&patients[0], "about", None, json!({})).await;
    let stats = pairs(&about);
    assert_eq!(stats["Catalog set up"], "1 time(s)", "{about}");
    assert_eq!(stats["Days generated"], "14", "{about}");

    let department = act(&patients[0], "department", Some("general"), json!({})).await;
    let slot = buttons(&department, "take")[0].1.clone();
    let tries = join_all(patients.iter().map(|p| take(p, &slot))).await;
    let winners: Vec<usize> = (0..tries.len())
        .filter(|&i| shows(&tries[i], "Confirm your appointment"))
        .collect();
    assert_eq!(winners.len(), 1, "exactly one patient holds the slot");
    for (i, view) in tries.iter().enumerate() {
        if i != winners[0] {
            assert!(shows(view, "just taken by another patient"), "{view}");
        }
    }

    let winner = &patients[winners[0]];
    let held = &tries[winners[0]];
    assert_eq!(badges(held), ["Held for you"]);
    let reference = pairs(held)["Reference"].clone();
    let paid = pay(winner, users[winners[0]], &reference).await;
    assert!(shows(&paid, "Paid and booked"), "{paid}");
    assert_eq!(badges(&paid), ["Booked"]);

    // Booked is booked: nobody else gets it, and it is gone from the list.
    let loser = &patients[(winners[0] + 1) % patients.len()];
    assert!(shows(&take(loser, &slot).await, "just taken"));
    let department = act(loser, "department", Some("general"), json!({})).await;
    assert!(buttons(&department, "take").iter().all(|(_, v)| *v != slot));

    // The confirmation goes to the patient's chats once they allow it,
    // with a card that opens the appointment.
    let consent = prompt(winner, "consent").await;
    assert_eq!(consent["capability"], "notify");
    winner.approve(&consent, json!({})).await;
    let (_, chats) = winner.get("/conversations").await;
    let service = chats
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "service")
        .unwrap_or_else(|| panic!("no service chat in {chats}"));
    let messages = winner.messages(service["id"].as_str().unwrap(), 0).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(messages[0]["text"].as_str().unwrap().contains(&reference));
    let card = &messages[0]["card"];
    assert_eq!(card["app_id"], HOSPITAL);
    assert_eq!(card["params"], json!([["appointment", reference]]));
    // Opening the card opens the appointment.
    let (status, opened) = winner
        .post(
            &format!("/apps/{HOSPITAL}/launch"),
            json!({"params": [["appointment", reference]]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{opened}");
    assert_eq!(pairs(&opened)["Reference"], reference);
    // Nobody else's card opens it.
    let (_, foreign) = loser
        .post(
            &format!("/apps/{HOSPITAL}/launch"),
            json!({"params": [["appointment", reference]]}),
        )
        .await;
    assert!(shows(&foreign, "No such appointment"), "{foreign}");
    drop(server);
}

/// A payment sheet left open on a time the patient gave up ("Choose
/// another time", or taking another time) still takes the money when
/// confirmed: it books nothing and goes back whole, at once.
#[tokio::test]
async fn a_sheet_confirmed_after_its_hold_was_given_up_is_refunded_whole() {
    let (_s, server, clients) = hospital(&["alice"], &[], &[]).await;
    let alice = &clients[0];
    alice
        .post(&format!("/apps/{HOSPITAL}/launch"), json!({}))
        .await;
    let before = balance(alice).await;
    let slot = weber_slot(alice, 3).await;
    let reference = pairs(&take(alice, &slot).await)["Reference"].clone();
    let waiting = act(alice, "pay", Some(&reference), json!({})).await;
    assert!(shows(&waiting, "Confirm the payment"), "{waiting}");
    let sheet = prompt(alice, "payment").await;
    act(alice, "release", Some(&reference), json!({})).await;
    let after = alice
        .approve(&sheet, json!({"password": "alice-password"}))
        .await;
    assert!(
        shows(
            &after,
            "no longer held for you when the payment came, so it was refunded"
        ),
        "{after}"
    );
    assert_eq!(balance(alice).await, before, "the fee went back whole");
    drop(server);
}

#[tokio::test]
async fn an_unpaid_hold_and_a_declined_payment_free_the_slot_again() {
    // Payment sheets expire after 2 s here, and the order of a hold never
    // outlives the hold.
    let env = [("SUPERAPP_PAYMENT_TTL_SECS", "2")];
    let (_s, server, clients) = hospital(&["alice", "bob"], &[], &env).await;
    let (alice, bob) = (&clients[0], &clients[1]);

    let department = act(alice, "department", Some("cardiology"), json!({})).await;
    let slot = buttons(&department, "take")[0].1.clone();
    let held = take(alice, &slot).await;
    let reference = pairs(&held)["Reference"].clone();
    assert!(shows(&take(bob, &slot).await, "just taken"));
    // Opened again from her appointments, the held time can be paid or
    // given up there.
    let again = act(alice, "appointment", Some(&reference), json!({})).await;
    assert_eq!(buttons(&again, "pay")[0].1, reference, "{again}");
    assert_eq!(buttons(&again, "release").len(), 1, "{again}");

    // Alice starts paying and walks away: the sheet expires, the app hears
    // it and frees the slot, and bob gets it.
    let waiting = act(alice, "pay", Some(&reference), json!({})).await;
    assert!(shows(&waiting, "Confirm the payment"));
    let mut bobs = Value::Null;
    for _ in 0..100 {
        bobs = take(bob, &slot).await;
        if shows(&bobs, "Confirm your appointment") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(shows(&bobs, "Confirm your appointment"), "{bobs}");
    let mine = act(alice, "appointment", Some(&reference), json!({})).await;
    assert_eq!(badges(&mine), ["Not booked"], "{mine}");
    assert!(shows(&mine, "not confirmed in time"), "{mine}");

    // Bob declines the payment sheet: the slot is free for alice again.
    let bobs_ref = pairs(&bobs)["Reference"].clone();
    act(bob, "pay", Some(&bobs_ref), json!({})).await;
    let sheet = prompt(bob, "payment").await;
    let (status, answer) = bob
        .post(
            &format!("/prompts/{}/deny", sheet["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(
        shows(&json!({"view": answer["view"]}), "You declined the payment"),
        "{answer}"
    );
    let again = take(alice, &slot).await;
    assert!(shows(&again, "Confirm your appointment"), "{again}");
    // Nobody paid anything.
    assert_eq!(balance(alice).await, 10_000);
    assert_eq!(balance(bob).await, 10_000);
    drop(server);
}

/// The earliest slot the hospital offers, over every department.
async fn earliest_slot(c: &Client) -> String {
    let mut all = Vec::new();
    for department in ["general", "cardiology", "paediatrics"] {
        let view = act(c, "department", Some(department), json!({})).await;
        all.extend(buttons(&view, "take").into_iter().map(|(_, v)| v));
    }
    // doctor/YYYY-MM-DD/HHMM: order by date and time.
    all.into_iter()
        .min_by_key(|v| v.split_once('/').unwrap().1.to_string())
        .unwrap()
}

/// Seconds from now to an appointment's start, from its details (the
/// hospital's clock runs at UTC+1).
fn seconds_until(details: &HashMap<String, String>) -> i64 {
    let date = details["Date"]
        .rsplit('(')
        .next()
        .unwrap()
        .trim_end_matches(')');
    let mut parts = date.split('-').map(|p| p.parse::<i64>().unwrap());
    let (y, m, d) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let (h, min) = details["Time"].split_once(':').unwrap();
    let days = superapp_sdk::clock::days_from_civil(y, m as u32, d as u32);
    let local = days * 86_400 + h.parse::<i64>().unwrap() * 3600 + min.parse::<i64>().unwrap() * 60;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    local - 3600 - now
}

#[tokio::test]
async fn insurance_lowers_the_fee_cancellations_refund_by_the_rule_and_the_money_adds_up() {
    let (s, server, clients) = hospital(&["alice", "bob"], &["alice"], &[]).await;
    let (alice, bob) = (&clients[0], &clients[1]);

    // Alice books Dr. Weber three days ahead and shares her policy.
    let launch = alice
        .post(&format!("/apps/{HOSPITAL}/launch"), json!({}))
        .await
        .1;
    assert!(shows(&launch, "City Hospital"));
    let slot = weber_slot(alice, 3).await;
    let held = take(alice, &slot).await;
    let reference = pairs(&held)["Reference"].clone();
    assert_eq!(pairs(&held)["Fee"], "EUR 40.00");
    let asked = act(alice, "insurance", Some(&reference), json!({})).await;
    assert!(shows(&asked, "Share your policy"), "{asked}");
    let sheet = prompt(alice, "document").await;
    assert_eq!(
        sheet["document"]["fields"],
        json!(["insurer", "policy-number", "valid-until"])
    );
    assert_eq!(sheet["document"]["issuer"], "National Health Insurance");
    let insured = alice.approve(&sheet, json!({})).await;
    assert_eq!(pairs(&insured)["Co-payment"], "EUR 10.00", "{insured}");
    assert_eq!(pairs(&insured)["Insurance"], "AOK Nordwest · P-4711");
    let paid = pay(alice, "alice", &reference).await;
    assert!(shows(&paid, "Paid and booked"), "{paid}");
    assert_eq!(balance(alice).await, 10_000 - 1_000);

    // Bob has no policy: declining the sheet keeps the full fee.
    let earliest = earliest_slot(bob).await;
    let held = take(bob, &earliest).await;
    let bobs_ref = pairs(&held)["Reference"].clone();
    let fee = cents(&pairs(&held)["Fee"]);
    act(bob, "insurance", Some(&bobs_ref), json!({})).await;
    let sheet = prompt(bob, "document").await;
    assert!(sheet["document"]["issuer"].is_null(), "bob holds no policy");
    let (_, answer) = bob
        .post(
            &format!("/prompts/{}/deny", sheet["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    let full = json!({"view": answer["view"]});
    assert!(shows(&full, "the full fee applies"), "{full}");
    assert_eq!(cents(&pairs(&full)["Fee"]), fee);
    let paid = pay(bob, "bob", &bobs_ref).await;
    assert!(shows(&paid, "Paid and booked"), "{paid}");
    assert_eq!(balance(bob).await, 10_000 - fee);

    // Cancelling: alice is days ahead and gets everything back; bob's
    // appointment is the hospital's earliest, always less than a day away
    // (some doctor starts every morning), and gets half.
    let offer = act(alice, "cancel", Some(&reference), json!({})).await;
    assert!(shows(&offer, "Cancel and refund EUR 10.00"), "{offer}");
    let done = act(alice, "cancel-confirm", Some(&reference), json!({})).await;
    assert!(shows(&done, "EUR 10.00 was refunded"), "{done}");
    assert_eq!(badges(&done), ["Cancelled"]);
    assert_eq!(balance(alice).await, 10_000);
    let until = seconds_until(&pairs(&held));
    assert!(until < 86_400, "the earliest slot is {until} s away");
    let half = fee / 2;
    let done = act(bob, "cancel-confirm", Some(&bobs_ref), json!({})).await;
    assert_eq!(badges(&done), ["Cancelled"], "{done}");
    assert_eq!(balance(bob).await, 10_000 - fee + half);
    // A second cancel refunds nothing more.
    let again = act(bob, "cancel-confirm", Some(&bobs_ref), json!({})).await;
    assert!(shows(&again, "already cancelled"), "{again}");
    assert_eq!(balance(bob).await, 10_000 - fee + half);
    // The cancelled slot is free again.
    assert!(shows(
        &take(alice, &earliest).await,
        "Confirm your appointment"
    ));

    // Fees paid minus refunds is exactly what the hospital holds.
    let token = std::fs::read_to_string(s.data.join("operator.token")).unwrap();
    let operator = Client {
        token: Some(token.trim().to_string()),
        ..Client::new(&server)
    };
    let (status, merchant) = operator
        .get("/merchant/accounts?publisher=City%20Hospital")
        .await;
    assert_eq!(status, StatusCode::OK, "{merchant}");
    let held_by_hospital = merchant["accounts"][0]["balance"].as_i64().unwrap();
    // A publisher the registry does not know has no merchant side to show.
    let (status, body) = operator.get("/merchant/accounts?publisher=nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // Alice paid 10.00 and got all of it back; bob paid the fee and got half.
    let kept: i64 = [1_000 - 1_000, fee - half].iter().sum();
    assert_eq!(held_by_hospital, kept);
    assert!(server.terminate().success());
    let (balanced, out) = wallet_cli(&s.data, &["check"]);
    assert!(balanced && out.contains("ok: the ledger balances"), "{out}");
}

#[tokio::test]
async fn a_sheet_paid_after_the_policy_lowered_the_fee_gives_the_difference_back() {
    let (s, server, clients) = hospital(&["alice"], &["alice"], &[]).await;
    let alice = &clients[0];
    let (_, reference, full, copay) = two_sheets(alice).await;

    // She confirms both: the old sheet books the time and 30.00 of it goes
    // back; the second is a double payment and goes back whole.
    let booked = alice
        .approve(&full, json!({"password": "alice-password"}))
        .await;
    assert!(shows(&booked, "the difference was refunded"), "{booked}");
    assert_eq!(balance(alice).await, 10_000 - 1_000);
    let twice = alice
        .approve(&copay, json!({"password": "alice-password"}))
        .await;
    assert!(shows(&twice, "You paid twice"), "{twice}");
    assert_eq!(balance(alice).await, 10_000 - 1_000);

    // Cancelling days ahead gives back everything she paid for it.
    let offer = act(alice, "cancel", Some(&reference), json!({})).await;
    assert!(shows(&offer, "Cancel and refund EUR 10.00"), "{offer}");
    act(alice, "cancel-confirm", Some(&reference), json!({})).await;
    assert_eq!(balance(alice).await, 10_000);
    assert!(server.terminate().success());
    let (balanced, out) = wallet_cli(&s.data, &["check"]);
    assert!(balanced, "{out}");
}

#[tokio::test]
async fn a_sheet_confirmed_after_its_appointment_was_cancelled_books_nothing_and_goes_back() {
    let (s, server, clients) = hospital(&["alice"], &["alice"], &[]).await;
    let alice = &clients[0];
    // A full-fee sheet is left open; the co-payment books the time.
    let (slot, reference, full, copay) = two_sheets(alice).await;
    let booked = alice
        .approve(&copay, json!({"password": "alice-password"}))
        .await;
    assert!(shows(&booked, "Paid and booked"), "{booked}");
    act(alice, "cancel-confirm", Some(&reference), json!({})).await;
    assert_eq!(balance(alice).await, 10_000);

    // The old sheet, confirmed now, books nothing and goes back whole.
    let late = alice
        .approve(&full, json!({"password": "alice-password"}))
        .await;
    assert!(shows(&late, "no longer held for you"), "{late}");
    assert_eq!(badges(&late), ["Cancelled"], "{late}");
    assert_eq!(balance(alice).await, 10_000);
    // The time is free for others.
    assert!(shows(&take(alice, &slot).await, "Confirm your appointment"));
    assert!(server.terminate().success());
    let (balanced, out) = wallet_cli(&s.data, &["check"]);
    assert!(balanced, "{out}");
}

/// City Hospital refunds a booked appointment in full from its back office
/// (signed with its publisher key): the app shows it cancelled by the
/// hospital with the money back, frees the time for others, and offers no
/// cancellation that would claim a refund it never made.
#[tokio::test]
async fn an_appointment_the_hospital_refunds_in_full_is_cancelled_and_its_time_freed() {
    let (s, server, clients) = hospital(&["alice", "bob"], &[], &[]).await;
    let (alice, bob) = (&clients[0], &clients[1]);
    let slot = weber_slot(alice, 3).await;
    let held = take(alice, &slot).await;
    let reference = pairs(&held)["Reference"].clone();
    let paid = pay(alice, "alice", &reference).await;
    assert!(shows(&paid, "Paid and booked"), "{paid}");
    assert_eq!(balance(alice).await, 10_000 - 4_000);
    let (_, history) = alice.get("/wallet/transactions?currency=EUR").await;
    let order = history["transactions"][0]["order"]
        .as_str()
        .unwrap()
        .to_string();

    // Part of the fee back is a gesture, not a cancellation.
    let key = s.data.join("dev-publisher.pem");
    let (base, key, order) = (&server.base, &key, &order);
    let refund = move |amount, idempotency| async move {
        let (done, _, err) = merchant_refund(base, key, order, amount, idempotency).await;
        assert!(done, "{err}");
    };
    refund("1000", "goodwill").await;
    let shown = act(alice, "appointment", Some(&reference), json!({})).await;
    assert_eq!(badges(&shown), ["Booked"], "{shown}");

    // The rest: the whole fee is back, and the app says who cancelled.
    refund("3000", "cancelled-by-the-hospital").await;
    assert_eq!(balance(alice).await, 10_000);
    let shown = act(alice, "appointment", Some(&reference), json!({})).await;
    assert_eq!(badges(&shown), ["Cancelled"], "{shown}");
    assert!(
        shows(&shown, "City Hospital cancelled this appointment"),
        "{shown}"
    );
    assert!(shows(&shown, "EUR 40.00 was refunded"), "{shown}");
    assert!(buttons(&shown, "cancel").is_empty(), "{shown}");
    let list = act(alice, "mine", None, json!({})).await;
    assert_eq!(badges(&list), ["Cancelled"], "{list}");
    // A cancel sent anyway (an old screen) refunds nothing and says so.
    let late = act(alice, "cancel-confirm", Some(&reference), json!({})).await;
    assert!(shows(&late, "already cancelled"), "{late}");
    assert_eq!(balance(alice).await, 10_000);
    // The time is free for others.
    assert!(shows(&take(bob, &slot).await, "Confirm your appointment"));
    assert!(server.terminate().success());
    let (balanced, out) = wallet_cli(&s.data, &["check"]);
    assert!(balanced, "{out}");
}

/// The host tells the app once how a payment ended. When that event is lost
/// after the money moved (here the server dies while the event waits), the
/// held time is not given up as unpaid: choosing another time finds the
/// payment and books the appointment, and cancelling it refunds the fee.
#[tokio::test]
async fn a_hold_paid_while_its_event_was_lost_is_booked_not_given_up() {
    let (s, server, alice, reference) = paid_and_crashed().await;
    assert_eq!(balance(&alice).await, 10_000 - 4_000, "the money moved");
    let found = act(&alice, "release", Some(&reference), json!({})).await;
    assert_eq!(badges(&found), ["Booked"], "{found}");
    assert_eq!(balance(&alice).await, 10_000 - 4_000, "kept, not refunded");
    let mine = act(&alice, "appointment", Some(&reference), json!({})).await;
    assert_eq!(badges(&mine), ["Booked"], "{mine}");
    // Cancelling days ahead refunds what was paid, once.
    act(&alice, "cancel-confirm", Some(&reference), json!({})).await;
    assert_eq!(balance(&alice).await, 10_000);
    assert!(server.terminate().success());
    let (balanced, out) = wallet_cli(&s.data, &["check"]);
    assert!(balanced, "{out}");
}

/// The same crash, and the patient only looks: the appointment shows
/// booked, in the list and on its own, not a hold that runs out with the
/// money gone.
#[tokio::test]
async fn a_hold_paid_while_its_event_was_lost_shows_booked_when_looked_at() {
    let (_s, server, alice, reference) = paid_and_crashed().await;
    let list = act(&alice, "mine", None, json!({})).await;
    assert_eq!(badges(&list), ["Booked"], "{list}");
    let mine = act(&alice, "appointment", Some(&reference), json!({})).await;
    assert_eq!(badges(&mine), ["Booked"], "{mine}");
    assert_eq!(balance(&alice).await, 10_000 - 4_000, "paid once, kept");
    drop(server);
}

/// Alice holds a Dr. Weber time, and the server dies while the event that
/// tells the app her confirmed payment went through waits; then it serves
/// again. (setup, server, alice signed in again, booking reference)
async fn paid_and_crashed() -> (Setup, Server, Client, String) {
    let (s, server, clients) =
        hospital_beside(&["testing/busy"], &["alice"], &[], &ONE_INSTANCE).await;
    let alice = &clients[0];
    let slot = weber_slot(alice, 3).await;
    let reference = pairs(&take(alice, &slot).await)["Reference"].clone();
    act(alice, "pay", Some(&reference), json!({})).await;
    let sheet = prompt(alice, "payment").await;
    confirm_and_crash(server, alice, "alice", &sheet).await;

    let server = serve_with(&s, &ONE_INSTANCE);
    let mut alice = Client::new(&server);
    alice.token = Some(alice.login("alice", "alice-password").await);
    (s, server, alice, reference)
}

/// A Dr. Weber slot three days ahead held by `c`, with two payment sheets
/// waiting: the full fee, asked for before `c` shared the policy, and the
/// co-payment after. (slot, booking reference, full sheet, co-payment sheet)
async fn two_sheets(c: &Client) -> (String, String, Value, Value) {
    let slot = weber_slot(c, 3).await;
    let held = take(c, &slot).await;
    let reference = pairs(&held)["Reference"].clone();
    assert_eq!(pairs(&held)["Fee"], "EUR 40.00");
    let waiting = act(c, "pay", Some(&reference), json!({})).await;
    assert!(shows(&waiting, "Confirm the payment"), "{waiting}");
    let full = prompt(c, "payment").await;
    assert_eq!(full["payment"]["amount"], 4_000);
    act(c, "insurance", Some(&reference), json!({})).await;
    let insured = c.approve(&prompt(c, "document").await, json!({})).await;
    assert_eq!(pairs(&insured)["Co-payment"], "EUR 10.00", "{insured}");
    act(c, "pay", Some(&reference), json!({})).await;
    let (_, prompts) = c.get("/prompts").await;
    let copay = prompts
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "payment" && p["payment"]["amount"] == 1_000)
        .unwrap_or_else(|| panic!("no co-payment sheet in {prompts}"))
        .clone();
    (slot, reference, full, copay)
}

/// Dr. Weber's first free time on the first day at least `from` days
/// ahead that has one (the "take" button's value).
pub(crate) async fn weber_slot(c: &Client, from: i64) -> String {
    let doctor = act(c, "doctor", Some("weber"), json!({})).await;
    let picker = nodes(&doctor)
        .into_iter()
        .find(|n| n["type"] == "input" && n["kind"] == "date")
        .expect("a date picker")
        .clone();
    // The picker's first day is today.
    let today = picker["min"].as_str().unwrap().to_string();
    assert!(picker["max"].as_str().unwrap() > today.as_str(), "{picker}");
    for offset in from..14 {
        let date = add_days(&today, offset);
        let view = act(c, "day", None, json!({"doctor": "weber", "date": date})).await;
        if let Some((_, v)) = buttons(&view, "take").first() {
            return v.clone();
        }
    }
    panic!("Dr. Weber works no day from {from} days ahead in the next two weeks");
}

fn add_days(date: &str, days: i64) -> String {
    use superapp_sdk::clock;
    clock::format_date(clock::parse_date(date).unwrap() + days)
}

/// Free times of `doctor` on the first day at least `from` days ahead that
/// has `n` of them.
async fn free_times(c: &Client, doctor: &str, from: i64, n: usize) -> Vec<String> {
    let view = act(c, "doctor", Some(doctor), json!({})).await;
    let today = nodes(&view)
        .into_iter()
        .find(|n| n["type"] == "input" && n["kind"] == "date")
        .unwrap()["min"]
        .as_str()
        .unwrap()
        .to_string();
    for offset in from..14 {
        let date = add_days(&today, offset);
        let view = act(c, "day", None, json!({"doctor": doctor, "date": date})).await;
        let times: Vec<String> = buttons(&view, "take").into_iter().map(|(_, v)| v).collect();
        if times.len() >= n {
            return times;
        }
    }
    panic!("{doctor} has no day with {n} free times");
}

#[tokio::test]
async fn a_hold_nobody_pays_runs_out_after_ten_minutes_and_the_queue_shows_place_and_wait() {
    let (s, server, clients) = hospital(&["alice", "bob"], &[], &[]).await;
    let (alice, bob) = (&clients[0], &clients[1]);
    let times = free_times(alice, "weber", 2, 3).await;
    // Alice and bob book two consecutive times; alice then holds a third
    // and walks away without paying.
    let first = pairs(&take(alice, &times[0]).await)["Reference"].clone();
    assert!(shows(&pay(alice, "alice", &first).await, "Paid and booked"));
    let second = pairs(&take(bob, &times[1]).await)["Reference"].clone();
    assert!(shows(&pay(bob, "bob", &second).await, "Paid and booked"));
    let held = pairs(&take(alice, &times[2]).await)["Reference"].clone();
    assert!(shows(&take(bob, &times[2]).await, "just taken"));

    // Eleven minutes later: the hold ran out, bob gets the time, and alice
    // can no longer pay for it.
    let later = [("SUPERAPP_CLOCK_OFFSET_SECS", "660")];
    let (server, clients) = restart_with(&s, server, &["alice", "bob"], &[], &later).await;
    let (alice, bob) = (&clients[0], &clients[1]);
    assert!(shows(
        &take(bob, &times[2]).await,
        "Confirm your appointment"
    ));
    let late = act(alice, "pay", Some(&held), json!({})).await;
    assert!(shows(&late, "Hold ran out"), "{late}");
    let kinds = prompt_kinds(alice).await;
    assert!(
        !kinds.contains(&"payment".to_string()),
        "no payment sheet for a lost hold: {kinds:?}"
    );

    // On the day, half an hour before alice's time: she is first in the
    // queue, bob second, and each is told how long until their turn.
    let mine = act(alice, "appointment", Some(&first), json!({})).await;
    let until = seconds_until(&pairs(&mine));
    let on_the_day = [("SUPERAPP_CLOCK_OFFSET_SECS", (until - 1800).to_string())];
    let env: Vec<(&str, &str)> = on_the_day.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (server, clients) = restart_with(&s, server, &["alice", "bob"], &[], &env).await;
    let (alice, bob) = (&clients[0], &clients[1]);
    let (_, home) = alice
        .post(&format!("/apps/{HOSPITAL}/launch"), json!({}))
        .await;
    assert!(
        shows(
            &home,
            "you are number 1 in the queue, estimated wait 30 min"
        ),
        "{home}"
    );
    let bobs = act(bob, "appointment", Some(&second), json!({})).await;
    let queue = pairs(&bobs);
    assert_eq!(queue["Your place"], "2", "{bobs}");
    assert_eq!(queue["Estimated wait"], "50 min", "{bobs}");
    drop(server);
}

async fn prompt_kinds(c: &Client) -> Vec<String> {
    let (_, prompts) = c.get("/prompts").await;
    prompts
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap().to_string())
        .collect()
}
