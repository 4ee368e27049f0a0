//! The payments capability and the wallet: money moves only when the user
//! confirms a host-drawn sheet with their password, and the ledger's sums
//! hold through concurrency and crashes.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::apps::{serve, serve_with, setup, texts, Setup};
use crate::common::*;

pub(crate) const PROBE: &str = "dev.superapp.testing.probe";

/// `superapp wallet …` against a stopped server's data directory.
pub(crate) fn wallet_cli(data: &Path, args: &[&str]) -> (bool, String) {
    let data = data.to_str().unwrap();
    superapp_cli(["wallet"].iter().chain(args).chain(&["--data-dir", data]))
}

/// A fresh idempotency key for each top-up a test makes.
pub(crate) fn fresh_key() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

pub(crate) fn topup(data: &Path, user: &str, amount: u64) {
    let key = fresh_key();
    let (ok, out) = wallet_cli(
        data,
        &[
            "topup",
            user,
            &amount.to_string(),
            "--idempotency-key",
            &key,
        ],
    );
    assert!(ok, "{out}");
}

/// Stop the server, top every user up through the admin CLI, start again
/// and sign the users back in.
pub(crate) async fn with_money(
    s: &Setup,
    server: Server,
    users: &[(&str, u64)],
    env: &[(&str, &str)],
) -> (Server, Vec<Client>) {
    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    assert!(status.success());
    for (user, amount) in users.iter().filter(|(_, a)| *a > 0) {
        topup(&s.data, user, *amount);
    }
    let server = serve_with(s, env);
    let mut clients = Vec::new();
    for (user, _) in users {
        let mut c = Client::new(&server);
        c.token = Some(c.login(user, &format!("{user}-password")).await);
        clients.push(c);
    }
    (server, clients)
}

pub(crate) async fn action(
    client: &Client,
    app: &str,
    name: &str,
    value: Option<&str>,
    fields: Value,
) -> String {
    let (status, v) = client
        .post(
            &format!("/apps/{app}/events"),
            json!({"name": name, "value": value, "fields": fields}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    texts(&v)[0].clone()
}

/// Ask for a payment through the probe; returns the order id.
pub(crate) async fn request(client: &Client, app: &str, amount: u64, key: &str) -> String {
    let out = action(
        client,
        app,
        "payments",
        None,
        json!({"amount": amount.to_string(), "idempotency-key": key, "description": "Consultation"}),
    )
    .await;
    out.strip_prefix("ok: \"")
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no order id in {out}"))
        .to_string()
}

async fn refund(client: &Client, app: &str, order: &str, amount: u64) -> String {
    let amount = json!({"amount": amount.to_string()});
    action(client, app, "refund", Some(order), amount).await
}

pub(crate) async fn balance(client: &Client) -> i64 {
    let (status, w) = client.get("/wallet").await;
    assert_eq!(status, StatusCode::OK, "{w}");
    w["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["currency"] == "EUR")
        .map_or(0, |a| a["balance"].as_i64().unwrap())
}

/// Settings under which a payment's event can be held back behind the busy
/// fixture: the server has one instance for events.
pub(crate) const ONE_INSTANCE: [(&str, &str); 2] = [
    ("SUPERAPP_EVENT_INSTANCES", "1"),
    ("SUPERAPP_EVENT_INSTANCES_PER_APP", "1"),
];

/// Confirm `sheet` as `client` (whose password is `<name>-password`), then
/// `kill -9` the server after the money moved durably but before the
/// sheet's app heard how the payment ended: an event of the busy fixture
/// holds the server's only instance ([`ONE_INSTANCE`]), so the payment's
/// event waits behind it when the server dies, and is never delivered. The
/// busy event is given far more work than its time limit (500 ms) lets it
/// do, so it holds the instance for that whole limit however fast the
/// machine runs it: the steps before the kill have that long.
pub(crate) async fn confirm_and_crash(server: Server, client: &Client, name: &str, sheet: &Value) {
    let before = balance(client).await;
    let busy = {
        let (me, body) = (
            client.clone(),
            json!({"name": "work", "value": "1000000000"}),
        );
        tokio::spawn(async move {
            me.post("/apps/dev.superapp.testing.busy/events", body)
                .await
        })
    };
    let alive = r#"superapp_event_queue{state="alive"}"#;
    let mut waited = 0;
    while metric(&server.metrics().await, alive) != Some(1.0) {
        assert!(waited < 5_000, "the busy event never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
        waited += 5;
    }
    let approve = {
        let (me, id) = (client.clone(), sheet["id"].as_str().unwrap().to_string());
        let body = json!({"password": format!("{name}-password")});
        tokio::spawn(async move { me.post(&format!("/prompts/{id}/approve"), body).await })
    };
    while balance(client).await == before {
        assert!(!approve.is_finished(), "the payment did not go through");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The money moved in memory; the app's event is asked for only once it
    // is durable too, and then waits behind the busy one.
    let waiting = r#"superapp_event_queue{state="waiting"}"#;
    while metric(&server.metrics().await, waiting).unwrap_or(0.0) < 1.0 {
        assert!(!approve.is_finished(), "the app heard before the crash");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(
        !approve.is_finished() && !busy.is_finished(),
        "the busy event ended before the crash: the app may have heard"
    );
    server.kill9();
    approve.abort();
    busy.abort();
}

pub(crate) async fn confirm(client: &Client, order: &str, password: &str) -> (StatusCode, Value) {
    client
        .post(
            &format!("/prompts/{order}/approve"),
            json!({"password": password}),
        )
        .await
}

#[tokio::test]
async fn payment_moves_money_only_after_the_user_confirms_with_the_password() {
    let s = setup(&["testing/probe"]);
    let server = serve(&s);
    Client::signed_up(&server, "alice").await;
    let (server, clients) = with_money(&s, server, &[("alice", 10_000)], &[]).await;
    let alice = &clients[0];
    assert_eq!(balance(alice).await, 10_000);

    let order = request(alice, PROBE, 1_500, "visit-1").await;
    // Asking moves nothing: the order waits for the user.
    assert_eq!(balance(alice).await, 10_000);
    let (_, prompts) = alice.get("/prompts").await;
    let prompts = prompts.as_array().unwrap().clone();
    assert_eq!(prompts.len(), 1, "{prompts:?}");
    let sheet = &prompts[0];
    assert_eq!(sheet["kind"], "payment");
    assert_eq!(sheet["id"], order.as_str());
    assert_eq!(sheet["payment"]["merchant"], "superapp tests");
    // The payee as the directory names it (this publisher registered
    // itself under its id).
    assert_eq!(sheet["publisher_name"], "superapp tests");
    assert_eq!(sheet["payment"]["amount"], 1_500);
    assert_eq!(sheet["payment"]["currency"], "EUR");
    assert_eq!(sheet["payment"]["description"], "Consultation");

    // The same key and request is the same order; a different request
    // under that key is refused.
    assert_eq!(request(alice, PROBE, 1_500, "visit-1").await, order);
    let reused = action(
        alice,
        PROBE,
        "payments",
        None,
        json!({"amount": "9999", "idempotency-key": "visit-1", "description": "Consultation"}),
    )
    .await;
    assert!(reused.starts_with("err: invalid"), "{reused}");
    let control = action(
        alice,
        PROBE,
        "refund",
        Some(&order),
        json!({"amount": "1", "idempotency-key": "a\u{0}b"}),
    )
    .await;
    assert!(control.starts_with("err: invalid"), "{control}");
    assert_eq!(alice.get("/prompts").await.1.as_array().unwrap().len(), 1);

    // Step-up: no password, or the wrong one, pays nothing.
    let (status, body) = alice
        .post(&format!("/prompts/{order}/approve"), json!({}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = confirm(alice, &order, "not-the-password").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "wrong-password");
    assert_eq!(balance(alice).await, 10_000);
    assert_eq!(alice.get("/prompts").await.1.as_array().unwrap().len(), 1);

    let (status, body) = confirm(alice, &order, "alice-password").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["order"]["state"], "paid");
    assert_eq!(body["prompt"]["status"], "approved");
    let seen = texts(&json!({"view": body["view"]}))[0].clone();
    assert!(seen.contains(&order) && seen.contains("Paid"), "{seen}");
    assert_eq!(balance(alice).await, 8_500);

    // Confirming again (a double click, a replayed request) pays once.
    let (status, body) = confirm(alice, &order, "alice-password").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(balance(alice).await, 8_500);
    let (_, history) = alice.get("/wallet/transactions?currency=EUR").await;
    let items = history["transactions"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{history}");
    assert_eq!(items[0]["kind"], "payment");
    assert_eq!(items[0]["amount"], -1_500);
    assert_eq!(items[0]["counterparty"]["name"], "superapp tests");
    assert_eq!(items[0]["order"], order.as_str());
    assert_eq!(items[1]["kind"], "topup");

    // The app sees the outcome, and refunds up to what was paid.
    assert_eq!(
        action(alice, PROBE, "payment-status", Some(&order), json!({})).await,
        "ok: OrderStatus::Settled(PaymentOutcome::Paid)"
    );
    assert_eq!(refund(alice, PROBE, &order, 1000).await, "ok: ()");
    assert_eq!(
        action(alice, PROBE, "payment-status", Some(&order), json!({})).await,
        "ok: OrderStatus::Refunded(1000)"
    );
    let over = refund(alice, PROBE, &order, 501).await;
    assert!(over.starts_with("err: invalid"), "{over}");
    assert_eq!(balance(alice).await, 9_500);
    assert_eq!(refund(alice, PROBE, &order, 500).await, "ok: ()");
    assert_eq!(balance(alice).await, 10_000);
    // A retried refund (same key, same amount) refunds nothing more; the
    // same key with another amount is refused.
    assert_eq!(refund(alice, PROBE, &order, 500).await, "ok: ()");
    assert_eq!(balance(alice).await, 10_000);
    let reused = action(
        alice,
        PROBE,
        "refund",
        Some(&order),
        json!({"amount": "400", "idempotency-key": "refund-500"}),
    )
    .await;
    assert!(reused.starts_with("err: invalid"), "{reused}");
    let unknown = action(
        alice,
        PROBE,
        "payment-status",
        Some("no-such-order"),
        json!({}),
    )
    .await;
    assert!(unknown.starts_with("err: not-found"), "{unknown}");

    // The privacy report names every step, with amounts and no password.
    let (_, log) = alice.get(&format!("/me/access-log?app={PROBE}")).await;
    let kinds: Vec<(String, String)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"].as_str().unwrap().starts_with("payment."))
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for expected in [
        ("payment.request", "pending"),
        ("payment.confirm", "wrong-password"),
        ("payment.confirm", "paid"),
        ("payment.refund", "refunded"),
    ] {
        assert!(
            kinds.contains(&(expected.0.to_string(), expected.1.to_string())),
            "{expected:?} missing from {kinds:?}"
        );
    }
    assert!(!log.to_string().contains("alice-password"));
    drop(server);
}

#[tokio::test]
async fn decline_insufficient_funds_and_expiry_reach_the_app() {
    let s = setup(&["testing/probe"]);
    let server = serve(&s);
    Client::signed_up(&server, "alice").await;
    Client::signed_up(&server, "bob").await;
    let ttl = [("SUPERAPP_PAYMENT_TTL_SECS", "2")];
    let (server, clients) = with_money(&s, server, &[("alice", 1_000), ("bob", 0)], &ttl).await;
    let (alice, bob) = (&clients[0], &clients[1]);

    let declined = request(alice, PROBE, 300, "a").await;
    let (status, body) = alice
        .post(&format!("/prompts/{declined}/deny"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["order"]["state"], "declined");
    let seen = texts(&json!({"view": body["view"]}))[0].clone();
    assert!(seen.contains("Declined"), "{seen}");
    assert_eq!(balance(alice).await, 1_000);
    let (status, _) = confirm(alice, &declined, "alice-password").await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a declined order stays declined"
    );

    // Not enough money: nothing moves, and the sheet stays open.
    let broke = request(bob, PROBE, 300, "b").await;
    let (status, body) = confirm(bob, &broke, "bob-password").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "insufficient-funds");
    let told = body["error"]["message"].as_str().unwrap();
    assert!(
        told.contains("EUR 0.00") && told.contains("EUR 3.00 is needed"),
        "amounts as people read them: {told}"
    );
    assert_eq!(bob.get("/prompts").await.1.as_array().unwrap().len(), 1);
    // Another user cannot answer bob's sheet.
    let (status, _) = confirm(alice, &broke, "alice-password").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Unanswered sheets expire and the app is told. The sweeper closes the
    // sheet first and tells the app after the flush, so wait for the event.
    // Told so, the app may not ask again by itself (it tries).
    assert_eq!(
        action(alice, PROBE, "ask-again-on", None, json!({})).await,
        "ok: ()"
    );
    let expiring = request(alice, PROBE, 200, "c").await;
    let mut last = String::new();
    for _ in 0..100 {
        last = action(alice, PROBE, "last-event", None, json!({})).await;
        if last.contains(&expiring) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        last.contains(&expiring) && last.contains("Expired"),
        "{last}"
    );
    let again = action(alice, PROBE, "asked-again", None, json!({})).await;
    assert!(again.contains("err: denied"), "{again}");
    assert!(alice.get("/prompts").await.1.as_array().unwrap().is_empty());
    assert_eq!(
        action(alice, PROBE, "payment-status", Some(&expiring), json!({})).await,
        "ok: OrderStatus::Settled(PaymentOutcome::Expired)"
    );
    let (status, body) = confirm(alice, &expiring, "alice-password").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "order-expired", "{body}");
    assert_eq!(balance(alice).await, 1_000);
    assert!(
        bob.get("/prompts").await.1.as_array().unwrap().is_empty(),
        "bob's expired too"
    );
    drop(server);
}

#[tokio::test]
async fn a_plugin_cannot_refund_or_read_another_publishers_order() {
    let s = setup(&["testing/probe"]);
    // A second app from another publisher: same component, its own manifest.
    let other = s.apps.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let manifest = std::fs::read_to_string(s.apps.join("probe/plugin.toml"))
        .unwrap()
        .replace(PROBE, "dev.superapp.testing.other")
        .replace("name = \"Capability probe\"", "name = \"Another probe\"")
        .replace(
            "publisher = \"superapp tests\"",
            "publisher = \"another publisher\"",
        );
    std::fs::write(other.join("plugin.toml"), manifest).unwrap();
    std::fs::copy(s.apps.join("probe/probe.wasm"), other.join("other.wasm")).unwrap();
    let server = serve(&s);
    Client::signed_up(&server, "alice").await;
    let (server, clients) = with_money(&s, server, &[("alice", 1_000)], &[]).await;
    let alice = &clients[0];
    let order = request(alice, PROBE, 700, "k").await;
    let (status, body) = confirm(alice, &order, "alice-password").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let other = "dev.superapp.testing.other";
    let refund = refund(alice, other, &order, 700).await;
    assert!(refund.starts_with("err: denied"), "{refund}");
    let status = action(alice, other, "payment-status", Some(&order), json!({})).await;
    assert!(status.starts_with("err: denied"), "{status}");
    assert_eq!(balance(alice).await, 300);
    drop(server);
}

/// A small deterministic generator, so a failure can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

/// Fire `count` random transfers among `users` at once; returns how many
/// the server accepted.
async fn burst(
    users: &[Client],
    names: &[String],
    count: usize,
    seed: u64,
    answered: Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<Option<bool>>> {
    let mut rng = Lcg(seed);
    (0..count)
        .map(|i| {
            let from = rng.next(users.len() as u64) as usize;
            let to = (from + 1 + rng.next(users.len() as u64 - 1) as usize) % users.len();
            let amount = 1 + rng.next(3_000);
            let client = users[from].clone();
            let answered = answered.clone();
            let body = json!({
                "to": names[to],
                "amount": amount,
                "currency": "EUR",
                "idempotency_key": format!("{seed}-{i}"),
                "password": format!("{}-password", names[from]),
            });
            tokio::spawn(async move {
                // Not `Client::post`: a request cut off by a crash is an
                // expected outcome here, not a test failure.
                let resp = client
                    .http
                    .post(format!("{}/wallet/transfers", client.base))
                    .bearer_auth(client.token.as_deref().unwrap_or_default())
                    .json(&body)
                    .send()
                    .await
                    .ok()?;
                let status = resp.status();
                let body: Value = resp.json().await.ok()?;
                answered.fetch_add(1, Ordering::SeqCst);
                assert!(
                    status == StatusCode::CREATED || body["error"]["code"] == "insufficient-funds",
                    "{status} {body}"
                );
                Some(status == StatusCode::CREATED)
            })
        })
        .collect()
}

async fn total(users: &[Client]) -> i64 {
    let mut sum = 0;
    for u in users {
        let b = balance(u).await;
        assert!(b >= 0, "a negative balance: {b}");
        sum += b;
    }
    sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transfers_and_a_crash_keep_every_balance_summing_to_what_was_issued() {
    let s = setup(&[]);
    // A thousand users at once, all from this one loopback address.
    let env = [("SUPERAPP_MAX_CONNECTIONS_PER_CLIENT", "4096")];
    let server = serve_with(&s, &env);
    let names: Vec<String> = (0..10).map(|i| format!("user{i}")).collect();
    for n in &names {
        Client::signed_up(&server, n).await;
    }
    let money: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 10_000)).collect();
    let (server, users) = with_money(&s, server, &money, &env).await;
    let issued = 100_000;

    // An idempotent retry pays once.
    let retry = json!({"to": "user1", "amount": 5, "currency": "EUR", "idempotency_key": "once", "password": "user0-password"});
    for _ in 0..2 {
        let (status, body) = users[0].post("/wallet/transfers", retry.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    assert_eq!(balance(&users[0]).await, 9_995);
    // It is in the sender's access log once, in the same transaction
    // (`wallet check` below holds every transfer to its entry); not in the
    // recipient's.
    let sent = |log: &Value| {
        log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "ledger.transfer")
            .cloned()
            .collect::<Vec<_>>()
    };
    let (_, log) = users[0].get("/me/access-log").await;
    let entries = sent(&log);
    assert_eq!(entries.len(), 1, "{log}");
    assert_eq!(entries[0]["outcome"], "sent");
    assert_eq!(entries[0]["details"]["amount"], "5");
    let (_, theirs) = users[1].get("/me/access-log").await;
    assert!(sent(&theirs).is_empty(), "{theirs}");

    let mut accepted = 0;
    for t in burst(&users, &names, 1_000, 7, Default::default()).await {
        accepted += t.await.unwrap().expect("no crash in this burst") as usize;
    }
    assert!(
        accepted > 500,
        "only {accepted} of 1000 transfers went through"
    );
    assert_eq!(total(&users).await, issued);

    // kill -9 in the middle of the next burst.
    let answered = Arc::new(AtomicUsize::new(0));
    let tasks = burst(&users, &names, 1_000, 8, answered.clone()).await;
    while answered.load(Ordering::SeqCst) < 100 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::task::spawn_blocking(move || server.kill9())
        .await
        .unwrap();
    let (mut done, mut cut) = (0, 0);
    for t in tasks {
        // Requests cut off by the kill fail on the client side.
        match t.await.unwrap() {
            Some(_) => done += 1,
            None => cut += 1,
        }
    }
    eprintln!("the kill cut {cut} of 1000 transfers; {done} were answered");
    assert!(cut > 0, "the server was killed after the burst, not in it");
    let (ok, report) = wallet_cli(&s.data, &["check"]);
    assert!(ok, "{report}");
    assert!(
        report.contains(&format!("EUR: issued {issued}, held {issued}")),
        "{report}"
    );

    let server = serve(&s);
    let mut again = Vec::new();
    for n in &names {
        let mut c = Client::new(&server);
        c.token = Some(c.login(n, &format!("{n}-password")).await);
        again.push(c);
    }
    assert_eq!(total(&again).await, issued);
    // A wrong password moves nothing. (Last: it holds the sender's next
    // transfers back for a moment, as it should.)
    let before = balance(&again[0]).await;
    let (status, _) = again[0]
        .post("/wallet/transfers", json!({"to": "user1", "amount": 5, "currency": "EUR", "idempotency_key": "x", "password": "wrong-password"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(balance(&again[0]).await, before);
}

#[test]
fn wallet_topup_refuses_unknown_users_and_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (ok, out) = wallet_cli(&data, &["topup", "alice", "100"]);
    assert!(
        !ok && out.contains("--idempotency-key"),
        "a top-up without a key is refused: {out}"
    );
    let (ok, out) = wallet_cli(&data, &["topup", "nobody", "100", "--idempotency-key", "k"]);
    assert!(!ok && out.contains("no store"), "{out}");
    let server = Server::start_in(&data, &[]);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(Client::signed_up(&server, "alice"));
    // A running server holds the store: the tool says so.
    let (ok, out) = wallet_cli(&data, &["topup", "alice", "100", "--idempotency-key", "k"]);
    assert!(!ok && out.contains("running server"), "{out}");
    assert!(server.terminate().success());
    let (ok, out) = wallet_cli(&data, &["topup", "nobody", "100", "--idempotency-key", "k"]);
    assert!(!ok && out.contains("no user `nobody`"), "{out}");
    let (ok, out) = wallet_cli(
        &data,
        &[
            "topup",
            "alice",
            "100",
            "--currency",
            "eur",
            "--idempotency-key",
            "k",
        ],
    );
    assert!(!ok && out.contains("not a currency code"), "{out}");
    let (ok, out) = wallet_cli(
        &data,
        &["topup", "alice", "12.50", "--idempotency-key", "k"],
    );
    assert!(!ok && out.contains("invalid value"), "{out}");
    let (ok, out) = wallet_cli(
        &data,
        &["topup", "alice", "1250", "--idempotency-key", "t1"],
    );
    assert!(ok && out.contains("balance EUR 12.50"), "{out}");
    let (ok, out) = wallet_cli(
        &data,
        &["topup", "alice", "1250", "--idempotency-key", "t1"],
    );
    assert!(
        ok && out.contains("balance EUR 12.50"),
        "a retried top-up issues once: {out}"
    );
    let (ok, out) = wallet_cli(&data, &["check"]);
    assert!(ok && out.contains("EUR: issued 1250, held 1250"), "{out}");
}

#[tokio::test]
async fn a_stolen_session_cannot_guess_the_password_through_step_up() {
    let server = Server::start(&[]);
    let alice = Client::signed_up(&server, "alice").await;
    Client::signed_up(&server, "bob").await;
    let guess = |password: &str| json!({"to": "bob", "amount": 1, "currency": "EUR", "idempotency_key": "g", "password": password});
    // The step-up counts a session's failures: five wrong guesses lock
    // its confirmations, wherever it sends them from.
    for _ in 0..5 {
        let (status, body) = alice.post("/wallet/transfers", guess("wrong-guess")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    let (status, body) = alice
        .post("/wallet/transfers", guess("alice-password"))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    // Alice herself is not locked out by the thief: she signs in again
    // (and could change her password), and her new session confirms.
    let mut again = Client::new(&server);
    again.token = Some(again.login("alice", "alice-password").await);
    let (status, body) = again
        .post("/wallet/transfers", guess("alice-password"))
        .await;
    assert_ne!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_ne!(status, StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test]
async fn an_app_may_give_the_user_less_time_to_confirm_but_not_less_than_a_minute() {
    let s = setup(&["testing/probe"]);
    let server = serve(&s);
    let alice = Client::signed_up(&server, "alice").await;
    let ask = |expires_in: &'static str, key: &'static str| {
        let alice = alice.clone();
        async move {
            let fields = json!({"amount": "100", "idempotency-key": key, "expires-in": expires_in});
            action(&alice, PROBE, "payments", None, fields).await
        }
    };
    let too_short = ask("10", "short").await;
    assert!(too_short.starts_with("err: invalid"), "{too_short}");
    assert!(alice.get("/prompts").await.1.as_array().unwrap().is_empty());

    let quick = ask("120", "quick").await;
    assert!(quick.starts_with("ok: "), "{quick}");
    let (_, prompts) = alice.get("/prompts").await;
    let sheet = &prompts[0]["payment"];
    let window =
        sheet["expires_at"].as_u64().unwrap() as i64 - prompts[0]["created_at"].as_i64().unwrap();
    assert!((119..=121).contains(&window), "{window} s: {sheet}");
    drop(server);
}

/// A request that may be cut off by a crash: `None` if it was.
async fn try_post(client: &Client, path: &str, body: Value) -> Option<(StatusCode, Value)> {
    let resp = client
        .http
        .post(format!("{}{path}", client.base))
        .bearer_auth(client.token.as_deref().unwrap_or_default())
        .json(&body)
        .send()
        .await
        .ok()?;
    let status = resp.status();
    Some((status, resp.json().await.ok()?))
}

/// Every posting of a user's EUR account, newest first.
async fn postings(client: &Client) -> Vec<Value> {
    let mut all = Vec::new();
    let mut path = "/wallet/transactions?currency=EUR&limit=200".to_string();
    loop {
        let (status, page) = client.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        all.extend(page["transactions"].as_array().unwrap().iter().cloned());
        match page["next_before"].as_u64() {
            Some(before) => {
                path = format!("/wallet/transactions?currency=EUR&limit=200&before={before}")
            }
            None => return all,
        }
    }
}

#[derive(Debug, Clone)]
enum Acked {
    /// A transfer answered 201: (sender, its request body, transfer id).
    Transfer(usize, Value, String),
    /// A payment sheet confirmed with 200 and `paid`: (payer, order id).
    Payment(usize, String),
}

/// kill -9 in the middle of a burst of payments and transfers from many
/// users: after a restart the ledger checks out, every acknowledged payment
/// and transfer is there exactly once, and retrying one applies nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_mid_burst_loses_no_acknowledged_payment_and_applies_none_twice() {
    let s = setup(&["testing/probe"]);
    let env = [("SUPERAPP_MAX_CONNECTIONS_PER_CLIENT", "4096")];
    let server = serve_with(&s, &env);
    let operator = server.operator_token();
    let names: Vec<String> = (0..8).map(|i| format!("payer{i}")).collect();
    let mut users = Vec::new();
    for n in &names {
        users.push(Client::signed_up(&server, n).await);
        let (status, body) = Client {
            token: Some(operator.clone()),
            ..Client::new(&server)
        }
        .post(
            "/operator/topups",
            json!({"user": n, "amount": 20_000, "idempotency_key": format!("seed-{n}")}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let issued = 20_000 * names.len() as i64;

    let acked = Arc::new(std::sync::Mutex::new(Vec::<Acked>::new()));
    let tasks: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, me)| {
            let (me, names, acked) = (me.clone(), names.clone(), acked.clone());
            tokio::spawn(async move {
                let password = format!("{}-password", names[i]);
                for k in 0..40u64 {
                    if k % 2 == 0 {
                        let body = json!({
                            "to": names[(i + 1 + k as usize % 7) % names.len()],
                            "amount": 10 + k, "currency": "EUR",
                            "idempotency_key": format!("{}-t{k}", names[i]),
                            "password": password,
                        });
                        let Some((status, done)) =
                            try_post(&me, "/wallet/transfers", body.clone()).await
                        else {
                            return;
                        };
                        assert_eq!(status, StatusCode::CREATED, "{done}");
                        let id = done["transfer"]
                            .as_str()
                            .unwrap_or_else(|| panic!("{done}"))
                            .to_string();
                        acked.lock().unwrap().push(Acked::Transfer(i, body, id));
                    } else {
                        let fields = json!({"amount": (20 + k).to_string(),
                            "idempotency-key": format!("{}-p{k}", names[i]),
                            "description": "Consultation"});
                        let Some((status, view)) = try_post(
                            &me,
                            &format!("/apps/{PROBE}/events"),
                            json!({"name": "payments", "fields": fields}),
                        )
                        .await
                        else {
                            return;
                        };
                        assert_eq!(status, StatusCode::OK, "{view}");
                        let said = texts(&view)[0].clone();
                        let order = said
                            .strip_prefix("ok: \"")
                            .and_then(|s| s.strip_suffix('"'))
                            .unwrap_or_else(|| panic!("{said}"))
                            .to_string();
                        let Some((status, paid)) = try_post(
                            &me,
                            &format!("/prompts/{order}/approve"),
                            json!({"password": password}),
                        )
                        .await
                        else {
                            return;
                        };
                        assert_eq!(status, StatusCode::OK, "{paid}");
                        assert_eq!(paid["order"]["state"], "paid", "{paid}");
                        acked.lock().unwrap().push(Acked::Payment(i, order));
                    }
                }
            })
        })
        .collect();
    while acked.lock().unwrap().len() < 80 {
        assert!(
            tasks.iter().any(|t| !t.is_finished()),
            "the burst ended before the kill: {:?}",
            acked.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::task::spawn_blocking(move || server.kill9())
        .await
        .unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    eprintln!("{} operations acknowledged before the kill", acked.len());

    let server = serve_with(&s, &env);
    let users: Vec<Client> = users
        .into_iter()
        .map(|c| Client {
            base: server.base.clone(),
            ..c
        })
        .collect();
    let (status, report) = Client {
        token: Some(operator.clone()),
        ..Client::new(&server)
    }
    .get("/operator/ledger")
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["currencies"]["EUR"]["issued"], issued, "{report}");

    let mut history = Vec::new();
    for u in &users {
        history.push(postings(u).await);
    }
    let count = |user: usize, key: &str, value: &str| {
        history[user]
            .iter()
            .filter(|p| p[key].as_str() == Some(value))
            .count()
    };
    for a in &acked {
        match a {
            Acked::Transfer(from, _, id) => {
                assert_eq!(
                    count(*from, "transfer", id),
                    1,
                    "transfer {id} of user {from}"
                )
            }
            Acked::Payment(payer, order) => {
                assert_eq!(
                    count(*payer, "order", order),
                    1,
                    "payment {order} of user {payer}"
                )
            }
        }
    }
    // Retrying what was acknowledged applies nothing again.
    let before: Vec<i64> = futures_util::future::join_all(users.iter().map(balance)).await;
    for a in &acked {
        match a {
            Acked::Transfer(from, body, id) => {
                let (status, again) = users[*from].post("/wallet/transfers", body.clone()).await;
                assert_eq!(status, StatusCode::CREATED, "{again}");
                assert_eq!(
                    again["transfer"],
                    id.as_str(),
                    "a retry is the same transfer"
                );
            }
            Acked::Payment(payer, order) => {
                let password = format!("{}-password", names[*payer]);
                let (status, _) = confirm(&users[*payer], order, &password).await;
                assert_eq!(status, StatusCode::CONFLICT, "a paid sheet is paid once");
            }
        }
    }
    let after: Vec<i64> = futures_util::future::join_all(users.iter().map(balance)).await;
    assert_eq!(before, after);
}

/// No app buries its user in payment sheets: three per event, five of an
/// app's waiting at once, and none asked again in the event that tells it
/// of a refusal (a payment made, it may ask for the next); an order asked
/// for again is no new sheet.
#[tokio::test]
async fn an_app_asks_for_a_few_payments_at_a_time_and_not_again_after_a_no() {
    let s = setup(&["testing/probe"]);
    let server = serve(&s);
    Client::signed_up(&server, "alice").await;
    let (_server, clients) = with_money(&s, server, &[("alice", 1_000)], &[]).await;
    let alice = &clients[0];
    let many = action(alice, PROBE, "payments-many", Some("4"), json!({})).await;
    assert!(
        many.starts_with("made 3, then err: quota-exceeded") && many.contains("per event"),
        "{many}"
    );
    let more = action(
        alice,
        PROBE,
        "payments-many",
        Some("3"),
        json!({"prefix": "more"}),
    )
    .await;
    assert!(
        more.starts_with("made 2, then err: quota-exceeded") && more.contains("already wait"),
        "{more}"
    );
    let (_, waiting) = alice.get("/prompts").await;
    let waiting: Vec<String> = waiting
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(waiting.len(), 5);
    // Asking again for orders made already opens no sheet: not refused,
    // and nothing more waits.
    let repeat = action(
        alice,
        PROBE,
        "payments-many",
        Some("3"),
        json!({"prefix": "many"}),
    )
    .await;
    assert_eq!(repeat, "ok: 3");
    assert_eq!(alice.get("/prompts").await.1.as_array().unwrap().len(), 5);

    // A no is not met with the same question again.
    action(alice, PROBE, "ask-again-on", None, json!({})).await;
    let (status, body) = alice
        .post(&format!("/prompts/{}/deny", waiting[0]), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let again = action(alice, PROBE, "asked-again", None, json!({})).await;
    assert!(again.contains("err: denied"), "{again}");
    assert_eq!(alice.get("/prompts").await.1.as_array().unwrap().len(), 4);
    // A payment made, the app may ask for the next at once.
    let (status, body) = confirm(alice, &waiting[1], "alice-password").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let again = action(alice, PROBE, "asked-again", None, json!({})).await;
    assert!(again.starts_with("ok: \"ok: "), "{again}");
    assert_eq!(alice.get("/prompts").await.1.as_array().unwrap().len(), 4);
}
