//! The city-payments mini-program end to end: bills created for a new
//! customer, paying one bill and several at once, receipts, history, and a
//! refund the utility company makes from its back office showing up for
//! the citizen.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::apps::{serve, setup};
use crate::common::*;
use crate::documents::cli;
use crate::hospital::{badges, buttons, pairs, prompt, shows};
use crate::payments::{balance, confirm_and_crash, with_money, ONE_INSTANCE};

const CITY: &str = "dev.superapp.city-payments";

async fn act(c: &Client, name: &str, value: Option<&str>, fields: Value) -> Value {
    c.act(CITY, name, value, fields).await
}

/// Confirm the one payment sheet waiting for alice; the app's view after.
async fn confirm(alice: &Client) -> Value {
    let sheet = prompt(alice, "payment").await;
    assert_eq!(sheet["payment"]["merchant"], "City Utilities");
    alice
        .approve(&sheet, json!({"password": "alice-password"}))
        .await
}

fn euros(cents: i64) -> String {
    format!("EUR {}.{:02}", cents / 100, cents % 100)
}

#[tokio::test]
async fn city_payments_pays_bills_keeps_receipts_and_shows_a_provider_refund() {
    let s = setup(&["city-payments"]);
    let server = serve(&s);
    Client::signed_up(&server, "alice").await;
    let (server, clients) = with_money(&s, server, &[("alice", 50_000)], &[]).await;
    let alice = &clients[0];

    // First launch: the customer's bills, one of them overdue.
    let (status, home) = alice.post(&format!("/apps/{CITY}/launch"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{home}");
    let bills = buttons(&home, "pay");
    assert_eq!(bills.len(), 5, "{home}");
    assert!(badges(&home).contains(&"Overdue".to_string()), "{home}");
    let amount = |label: &str| -> i64 {
        let money = label.trim_start_matches("Pay ");
        let (whole, frac) = money.trim_start_matches("EUR ").split_once('.').unwrap();
        whole.parse::<i64>().unwrap() * 100 + frac.parse::<i64>().unwrap()
    };
    // The same bills on the next launch: created once.
    let (_, again) = alice.post(&format!("/apps/{CITY}/launch"), json!({})).await;
    assert_eq!(buttons(&again, "pay"), bills);

    // One bill on its own.
    let (label, first) = bills[0].clone();
    let waiting = act(alice, "pay", Some(&first), json!({})).await;
    assert!(shows(&waiting, "Confirm the payment"));
    let receipt = confirm(alice).await;
    assert!(shows(&receipt, "Paid. Thank you!"), "{receipt}");
    assert_eq!(pairs(&receipt)["Total"], euros(amount(&label)));
    let first_order = pairs(&receipt)["Receipt"].clone();

    // Two more at once: one payment, one receipt naming both.
    let (label_b, b) = bills[1].clone();
    let (label_c, c) = bills[2].clone();
    act(
        alice,
        "pay-selected",
        None,
        json!({ b.clone(): "true", c.clone(): "true" }),
    )
    .await;
    let sheet = prompt(alice, "payment").await;
    let both = amount(&label_b) + amount(&label_c);
    assert_eq!(sheet["payment"]["amount"], both);
    let receipt = confirm(alice).await;
    let lines = pairs(&receipt);
    assert_eq!(lines["Total"], euros(both), "{receipt}");
    assert_eq!(
        lines.len(),
        3 + 2 + 1,
        "receipt, paid to, paid at, two bills, total: {lines:?}"
    );
    let second_order = lines["Receipt"].clone();
    let paid = amount(&label) + both;
    assert_eq!(balance(alice).await, 50_000 - paid);

    // Both receipts are kept; paid bills leave the list of bills to pay.
    let receipts = act(alice, "receipts", None, json!({})).await;
    let opened: Vec<String> = buttons(&receipts, "receipt")
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(opened, [second_order.clone(), first_order.clone()]);
    let home = act(alice, "home", None, json!({})).await;
    assert_eq!(buttons(&home, "pay").len(), 2);
    let history = act(alice, "history", None, json!({})).await;
    assert_eq!(
        badges(&history).iter().filter(|b| *b == "Paid").count(),
        3,
        "{history}"
    );

    // A bill cannot be paid twice.
    let twice = act(alice, "pay", Some(&first), json!({})).await;
    assert!(shows(&twice, "already paid"), "{twice}");

    // The company refunds part of the second payment from its back office,
    // signed with its publisher key. A stranger's key cannot.
    let base = server.base.clone();
    let key = s.data.join("dev-publisher.pem");
    let tmp = tempfile::tempdir().unwrap();
    let stranger = tmp.path().join("stranger.pem");
    let (made, _, err) = cli(&["keys", "generate", "--out", stranger.to_str().unwrap()]);
    assert!(made, "{err}");
    let refund_of = |amount, key| merchant_refund(&base, key, &second_order, amount, "goodwill-1");
    let (refused, _, err) = refund_of("500", &stranger).await;
    assert!(!refused && err.contains("403"), "{err}");
    let (done, out, err) = refund_of("500", &key).await;
    assert!(done, "{err}");
    assert!(out.contains("5.00 refunded in all"), "{out}");
    // Running the same command again refunds nothing more; the same key
    // for another amount is a conflict, and refunds nothing either.
    let (done, out, err) = refund_of("500", &key).await;
    assert!(done, "{err}");
    assert!(out.contains("5.00 refunded in all"), "{out}");
    let (done, _, err) = refund_of("300", &key).await;
    assert!(
        !done && err.contains("409") && err.contains("already used"),
        "{err}"
    );
    // Alice's session is not the company's back office.
    let (status, _) = alice
        .post(
            &format!("/merchant/orders/{second_order}/refund"),
            json!({"amount": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Alice sees it the next time she opens the app, and in her wallet.
    let (_, _) = alice.post(&format!("/apps/{CITY}/launch"), json!({})).await;
    let receipts = act(alice, "receipts", None, json!({})).await;
    assert!(
        badges(&receipts).contains(&"Refunded EUR 5.00".to_string()),
        "{receipts}"
    );
    let receipt = act(alice, "receipt", Some(&second_order), json!({})).await;
    assert_eq!(pairs(&receipt)["Refunded"], "EUR 5.00");
    // The refund is of the payment, not of one of its two bills: both say
    // so, neither claims to be refunded whole.
    let history = act(alice, "history", None, json!({})).await;
    let badges = badges(&history);
    assert_eq!(
        badges.iter().filter(|b| *b == "Partly refunded").count(),
        2,
        "{history}"
    );
    assert!(!badges.contains(&"Refunded".to_string()), "{history}");
    assert_eq!(balance(alice).await, 50_000 - paid + 500);

    let base = server.base.clone();
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        cli(&[
            "merchant",
            "balance",
            "--server",
            &base,
            "--key",
            key.to_str().unwrap(),
        ])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("EUR {}", &euros(paid - 500)[4..])),
        "{out}"
    );
    drop(server);
}

#[tokio::test]
async fn a_declined_bill_can_be_paid_again_and_a_double_payment_refunds_only_its_own_bill() {
    let s = setup(&["city-payments"]);
    let server = serve(&s);
    Client::signed_up(&server, "alice").await;
    let (_server, clients) = with_money(&s, server, &[("alice", 50_000)], &[]).await;
    let alice = &clients[0];
    let (_, home) = alice.post(&format!("/apps/{CITY}/launch"), json!({})).await;
    let bills = buttons(&home, "pay");
    let (_, first) = bills[0].clone();
    let (_, second) = bills[1].clone();

    // Declined, then tapped again: a new sheet, which pays it.
    act(alice, "pay", Some(&first), json!({})).await;
    let sheet = prompt(alice, "payment").await;
    let (_, answer) = alice
        .post(
            &format!("/prompts/{}/deny", sheet["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert!(shows(&answer, "You declined the payment"), "{answer}");
    let again = act(alice, "pay", Some(&first), json!({})).await;
    assert!(shows(&again, "Confirm the payment"), "{again}");
    let retry = prompt(alice, "payment").await;
    assert_ne!(
        retry["id"], sheet["id"],
        "a new sheet, not the declined one"
    );
    let paid = confirm(alice).await;
    assert!(shows(&paid, "Paid. Thank you!"), "{paid}");
    // A double tap while a sheet waits still finds that one sheet.
    act(alice, "pay", Some(&second), json!({})).await;
    act(alice, "pay", Some(&second), json!({})).await;
    let (_, prompts) = alice.get("/prompts").await;
    assert_eq!(prompts.as_array().unwrap().len(), 1, "{prompts}");
    let lone = prompt(alice, "payment").await;

    // The second bill also goes into a payment with a third, and both
    // sheets are confirmed: the second bill's share of the later one goes
    // back, and the third bill stays paid, not refunded.
    let (_, third) = bills[2].clone();
    act(
        alice,
        "pay-selected",
        None,
        json!({ second.clone(): "true", third.clone(): "true" }),
    )
    .await;
    let (_, prompts) = alice.get("/prompts").await;
    let pair = prompts
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] != lone["id"])
        .unwrap()
        .clone();
    alice
        .approve(&lone, json!({"password": "alice-password"}))
        .await;
    let receipt = alice
        .approve(&pair, json!({"password": "alice-password"}))
        .await;
    assert!(
        shows(&receipt, "went back to your wallet at once"),
        "{receipt}"
    );
    assert_eq!(badges(&receipt), ["Paid"], "{receipt}");
    let history = act(alice, "history", None, json!({})).await;
    let badges = badges(&history);
    assert_eq!(
        badges.iter().filter(|b| *b == "Paid").count(),
        3,
        "{history}"
    );
    assert!(!badges.contains(&"Refunded".to_string()), "{history}");
    // The receipts list, too, keeps money given back at once apart from a
    // refund of the payment.
    let receipts = act(alice, "receipts", None, json!({})).await;
    assert!(
        crate::hospital::badges(&receipts)
            .iter()
            .all(|b| b == "Paid"),
        "{receipts}"
    );
}

/// The host tells an app once how a payment ended. When that event is lost
/// after the money moved (here the server dies while the event waits), the
/// app settles the payment from the ledger at its next launch: the bill is
/// paid once, with its receipt, and nothing is charged twice.
#[tokio::test]
async fn a_payment_whose_event_was_lost_is_settled_at_the_next_launch() {
    let s = setup(&["city-payments", "testing/busy"]);
    let server = serve_with(&s, &ONE_INSTANCE);
    Client::signed_up(&server, "alice").await;
    let (server, clients) = with_money(&s, server, &[("alice", 50_000)], &ONE_INSTANCE).await;
    let alice = &clients[0];
    let (_, home) = alice.post(&format!("/apps/{CITY}/launch"), json!({})).await;
    let bills = buttons(&home, "pay");
    let (_, first) = bills[0].clone();
    let waiting = act(alice, "pay", Some(&first), json!({})).await;
    assert!(shows(&waiting, "Confirm the payment"), "{waiting}");
    let sheet = prompt(alice, "payment").await;
    let amount = sheet["payment"]["amount"].as_i64().unwrap();
    confirm_and_crash(server, alice, "alice", &sheet).await;

    let server = serve_with(&s, &ONE_INSTANCE);
    let mut alice = Client::new(&server);
    alice.token = Some(alice.login("alice", "alice-password").await);
    assert_eq!(balance(&alice).await, 50_000 - amount, "the money moved");
    let (status, home) = alice.post(&format!("/apps/{CITY}/launch"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{home}");
    let left: Vec<String> = buttons(&home, "pay").into_iter().map(|(_, v)| v).collect();
    assert_eq!(left.len(), bills.len() - 1, "{home}");
    assert!(!left.contains(&first), "{home}");
    let receipts = act(&alice, "receipts", None, json!({})).await;
    assert_eq!(buttons(&receipts, "receipt").len(), 1, "{receipts}");
    let twice = act(&alice, "pay", Some(&first), json!({})).await;
    assert!(shows(&twice, "already paid"), "{twice}");
    let (_, prompts) = alice.get("/prompts").await;
    assert_eq!(prompts.as_array().unwrap().len(), 0, "{prompts}");
    assert_eq!(balance(&alice).await, 50_000 - amount, "charged once");
}

/// `superapp merchant refund ORDER` against `base`, signed with `key`: whether
/// it succeeded, its output and its errors.
pub(crate) async fn merchant_refund(
    base: &str,
    key: &std::path::Path,
    order: &str,
    amount: &str,
    idempotency_key: &str,
) -> (bool, String, String) {
    let args: Vec<String> = [
        "merchant",
        "refund",
        order,
        "--amount",
        amount,
        "--idempotency-key",
        idempotency_key,
        "--server",
        base,
        "--key",
        key.to_str().unwrap(),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&args)
    })
    .await
    .unwrap()
}
