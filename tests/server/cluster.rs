//! Several host processes on one PostgreSQL store and one NATS bus, each
//! started by the test on loopback: what is sent on one node reaches
//! WebSockets on the other, gapless; a logout holds everywhere at once;
//! races decided by the database stay decided whichever node they come
//! through; a node killed mid-burst loses nothing it acknowledged while
//! the other keeps serving; one audit chain verifies over all of it.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::apps::{probe, texts};
use crate::common::*;
use crate::hospital::{buttons, shows, take, HOSPITAL};
use crate::payments::{action, balance, confirm, request, PROBE};
use crate::{nats_server, pg_server};

/// Host processes sharing a fresh database and the test bus.
struct Cluster {
    setup: Setup,
    store: String,
    /// More settings every node gets.
    env: Vec<(String, String)>,
    nodes: Vec<Server>,
    _dirs: tempfile::TempDir,
}

impl Cluster {
    /// `n` nodes serving `plugins`, started one after another.
    fn start(n: usize, plugins: &[&str]) -> Cluster {
        Cluster::start_with(n, setup(plugins), &[])
    }

    /// `n` nodes serving the apps of `setup`, each with `env` besides the
    /// cluster's own settings.
    fn start_with(n: usize, setup: Setup, env: &[(&str, &str)]) -> Cluster {
        let store = pg_server::shared().database();
        let dirs = tempfile::tempdir().unwrap();
        let mut cluster = Cluster {
            setup,
            store,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            nodes: Vec::new(),
            _dirs: dirs,
        };
        for i in 0..n {
            let node = cluster.node(&cluster._dirs.path().join(format!("node{i}")));
            cluster.nodes.push(node);
        }
        cluster
    }

    /// A node on its own data directory (the precompile cache and a copy
    /// of the operator token are all it keeps there).
    fn node(&self, data_dir: &Path) -> Server {
        let bus = nats_server::shared().url();
        let mut env = vec![
            ("SUPERAPP_DEV_APPROVE", "true"),
            ("SUPERAPP_APPS_DIR", self.setup.apps.to_str().unwrap()),
            ("SUPERAPP_STORE", self.store.as_str()),
            ("SUPERAPP_BUS", bus.as_str()),
            // Many clients of this one loopback address at once.
            ("SUPERAPP_MAX_CONNECTIONS_PER_CLIENT", "4096"),
        ];
        env.extend(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        Server::start_in(data_dir, &env)
    }

    /// `name`'s session on node `i` (signed in there).
    async fn on(&self, i: usize, name: &str) -> Client {
        let mut c = Client::new(&self.nodes[i]);
        c.token = Some(c.login(name, &format!("{name}-password")).await);
        c
    }

    /// `superapp ARGS… --store URL`, on the shared store while the nodes run.
    fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_superapp"))
            .args(args)
            .args(["--store", &self.store])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// Every message frame `ws` receives until it has seen `want` distinct
/// seqs of `conversation` or nothing arrives for two seconds.
async fn seqs_pushed(ws: &mut Ws, conversation: &str, want: usize) -> BTreeSet<u64> {
    let mut seen = BTreeSet::new();
    while seen.len() < want {
        let Some(frame) = next_message(ws, Duration::from_secs(2)).await else {
            break;
        };
        if frame["type"] == "message" && frame["message"]["conversation_id"] == conversation {
            seen.insert(frame["message"]["seq"].as_u64().unwrap());
        }
    }
    seen
}

/// Send from `from` until `ws` (connected to another node) has a push of
/// it: the bus subscription for `ws`'s user is then in place.
async fn until_pushed(from: &Client, conversation: &str, ws: &mut Ws) {
    for attempt in 0..50 {
        let (s, body) = from
            .send(conversation, &format!("warm-{attempt}"), "hello")
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        if !seqs_pushed(ws, conversation, 1).await.is_empty() {
            return;
        }
    }
    panic!("no push crossed the bus");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_burst_from_both_nodes_is_gapless_and_pushed_to_both() {
    let c = Cluster::start(2, &[]);
    let alice = Client::signed_up(&c.nodes[0], "alice").await;
    let bob = Client::signed_up(&c.nodes[1], "bob").await;
    let chat = alice.direct_with("bob").await;
    // Each has a WebSocket on the other's node.
    let mut alice_ws = ws_connect(&c.nodes[1], alice.token.as_deref().unwrap()).await;
    let mut bob_ws = ws_connect(&c.nodes[0], bob.token.as_deref().unwrap()).await;
    until_pushed(&alice, &chat, &mut alice_ws).await;
    until_pushed(&bob, &chat, &mut bob_ws).await;
    let before = alice.messages(&chat, 0).await.len() as u64;
    seqs_pushed(&mut alice_ws, &chat, 100).await;
    seqs_pushed(&mut bob_ws, &chat, 100).await;

    let per_side = 100;
    let chat_ref = &chat;
    let sends = (0..per_side).flat_map(|i| {
        [(&alice, format!("a{i}")), (&bob, format!("b{i}"))]
            .map(|(who, id)| async move { who.send(chat_ref, &id, &id).await })
    });
    for (status, body) in join_all(sends).await {
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let all = 2 * per_side;
    let stored = bob.messages(&chat, before).await;
    let seqs: Vec<u64> = stored.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    let expected: Vec<u64> = (before + 1..=before + all as u64).collect();
    assert_eq!(seqs, expected, "one gapless sequence over both nodes");
    assert_eq!(
        alice.messages(&chat, before).await,
        stored,
        "both nodes read the same log"
    );
    // Every message reached both WebSockets: half of them over the bus.
    let expected: BTreeSet<u64> = expected.into_iter().collect();
    assert_eq!(seqs_pushed(&mut alice_ws, &chat, all).await, expected);
    assert_eq!(seqs_pushed(&mut bob_ws, &chat, all).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_node_holds_on_the_other_at_once() {
    let c = Cluster::start(2, &[]);
    let on_a = Client::signed_up(&c.nodes[0], "carol").await;
    let mut on_b = Client::new(&c.nodes[1]);
    on_b.token = on_a.token.clone();
    let (s, me) = on_b.get("/me").await;
    assert_eq!(s, StatusCode::OK, "a session made on A works on B: {me}");
    // Its WebSocket on B closes at once (the heartbeat, 20 s, would close
    // it only later), as does another session's on a password change.
    let mut live_b = ws_connect(&c.nodes[1], on_a.token.as_deref().unwrap()).await;
    let other = c.on(1, "carol").await;
    let mut other_b = ws_connect(&c.nodes[1], other.token.as_deref().unwrap()).await;
    // Subscriptions on the bus are made as sockets open; one sent push
    // through A shows they hold.
    let dave = Client::signed_up(&c.nodes[0], "dave").await;
    let chat = dave.direct_with("carol").await;
    dave.send(&chat, "m1", "hello").await;
    for ws in [&mut live_b, &mut other_b] {
        assert!(next_message(ws, Duration::from_secs(10)).await.is_some());
    }
    let soon = Duration::from_secs(5);
    let (s, _) = on_a.call(Method::DELETE, "/sessions/current", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(crate::live::close_code(&mut live_b, soon).await, 4001);
    let (s, body) = on_b.get("/me").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    let third = c.on(0, "carol").await;
    let (s, body) = third
        .call(
            Method::PUT,
            "/me/password",
            Some(
                json!({"current_password": "carol-password", "new_password": "carol-new-password"}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(crate::live::close_code(&mut other_b, soon).await, 4001);
    // The operator's token is the same on every node.
    let tokens: Vec<String> = c.nodes.iter().map(Server::operator_token).collect();
    assert_eq!(tokens[0], tokens[1]);
}

/// What one node changes about who may do what holds on the other at once:
/// a member who left a group on A (whose node B had read the group before)
/// is refused there, and a password changed on A ends the other sessions
/// on B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_a_group_and_a_password_change_on_one_node_hold_on_the_other() {
    let c = Cluster::start(2, &[]);
    let alice = Client::signed_up(&c.nodes[0], "alice").await;
    let bob_a = Client::signed_up(&c.nodes[0], "bob").await;
    let mut bob_b = Client::new(&c.nodes[1]);
    bob_b.token = Some(bob_b.login("bob", "bob-password").await);
    let (s, group) = alice
        .post(
            "/conversations",
            json!({"kind": "group", "title": "Team", "members": ["bob"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{group}");
    let g = group["id"].as_str().unwrap().to_string();
    let (s, _) = bob_b.send(&g, "b1", "hello from B").await;
    assert_eq!(s, StatusCode::CREATED, "B knows the group now");
    let bob_id = bob_a.get("/me").await.1["id"].as_str().unwrap().to_string();
    let (s, _) = bob_a
        .call(
            Method::DELETE,
            &format!("/conversations/{g}/members/{bob_id}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = bob_b.send(&g, "b2", "still here?").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "B sees that bob left");
    // The record of his leaving takes the next seq after what B stored.
    let (s, _) = alice.send(&g, "a1", "bye bob").await;
    assert_eq!(s, StatusCode::CREATED);
    let history = alice.messages(&g, 0).await;
    let seqs: Vec<_> = history.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3], "{history:?}");
    assert_eq!(history[1]["notice"]["kind"], "left", "{history:?}");

    let (s, body) = bob_a
        .call(
            Method::PUT,
            "/me/password",
            Some(json!({"current_password": "bob-password", "new_password": "bob-new-password"})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(bob_a.get("/me").await.0, StatusCode::OK);
    assert_eq!(bob_b.get("/me").await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_patients_on_two_nodes_race_for_one_slot_and_exactly_one_holds_it() {
    let c = Cluster::start(2, &["hospital-booking"]);
    let mut patients = Vec::new();
    for i in 0..20 {
        patients.push(Client::signed_up(&c.nodes[i % 2], &format!("patient{i}")).await);
    }
    let launch = format!("/apps/{HOSPITAL}/launch");
    for (status, view) in join_all(patients.iter().map(|p| p.post(&launch, json!({})))).await {
        assert_eq!(status, StatusCode::OK, "{view}");
    }
    let department = patients[1]
        .act(HOSPITAL, "department", Some("general"), json!({}))
        .await;
    let slot = buttons(&department, "take")[0].1.clone();
    let tries = join_all(patients.iter().map(|p| take(p, &slot))).await;
    let winners: Vec<usize> = (0..tries.len())
        .filter(|&i| shows(&tries[i], "Confirm your appointment"))
        .collect();
    assert_eq!(winners.len(), 1, "exactly one patient holds the slot");
    let losers = tries
        .iter()
        .filter(|v| shows(v, "just taken by another patient"))
        .count();
    assert_eq!(losers, 19);
}

/// `wallet ARGS --server NODE --token-file NODE/operator.token`.
fn wallet_on(node: &Server, args: &[&str]) -> (bool, String) {
    let token = node.data_dir.join("operator.token");
    let server = node.base.trim_end_matches("/api/v1");
    let tail = ["--server", server, "--token-file", token.to_str().unwrap()];
    superapp_cli(["wallet"].iter().chain(args).chain(&tail))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_from_one_wallet_through_both_nodes_never_overdraw_it() {
    let c = Cluster::start(2, &[]);
    let dave = Client::signed_up(&c.nodes[0], "dave").await;
    Client::signed_up(&c.nodes[1], "erin").await;
    let (ok, out) = wallet_on(
        &c.nodes[1],
        &["topup", "dave", "10000", "--idempotency-key", "cluster-1"],
    );
    assert!(ok, "{out}");
    let erin = c.on(1, "erin").await;
    let dave_b = c.on(1, "dave").await;
    // Forty transfers of 500 from a balance of 10 000, half through each node.
    let transfers = (0..40).map(|i| {
        let from = if i % 2 == 0 { &dave } else { &dave_b };
        from.post(
            "/wallet/transfers",
            json!({"to": "erin", "amount": 500, "currency": "EUR",
                   "idempotency_key": format!("t{i}"), "password": "dave-password"}),
        )
    });
    let answers = join_all(transfers).await;
    let paid = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    for (status, body) in &answers {
        assert!(
            *status == StatusCode::CREATED || body["error"]["code"] == "insufficient-funds",
            "{status} {body}"
        );
    }
    assert_eq!(paid, 20, "exactly the balance was spent");
    assert_eq!(balance(&dave).await, 0);
    assert_eq!(balance(&erin).await, 10_000);
    let (ok, report) = wallet_on(&c.nodes[0], &["check"]);
    assert!(ok, "{report}");
    assert!(report.contains("EUR: issued 10000, held 10000"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_node_mid_burst_loses_nothing_acknowledged_and_the_other_serves_on() {
    let mut c = Cluster::start(2, &[]);
    let frank = Client::signed_up(&c.nodes[0], "frank").await;
    Client::signed_up(&c.nodes[1], "grace").await;
    Client::signed_up(&c.nodes[1], "heidi").await;
    let grace = c.on(1, "grace").await;
    let chat = frank.direct_with("grace").await;
    let (ok, out) = wallet_on(
        &c.nodes[0],
        &[
            "topup",
            "frank",
            "1000000",
            "--idempotency-key",
            "cluster-2",
        ],
    );
    assert!(ok, "{out}");

    // Eight senders per node, each sending until its node stops answering
    // (or, on the surviving node, for 400 messages); every acknowledged
    // client id is remembered. Transfers run beside them through node A.
    let answered = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for (node, who) in [(0usize, &frank), (1, &grace)] {
        for s in 0..8 {
            let (who, chat, answered) = (who.clone(), chat.clone(), answered.clone());
            senders.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..50 {
                    let id = format!("n{node}-s{s}-{i}");
                    let sent = who
                        .http
                        .post(format!("{}/conversations/{chat}/messages", who.base))
                        .bearer_auth(who.token.as_deref().unwrap())
                        .json(&json!({"client_id": id, "text": id}))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == StatusCode::CREATED => {
                            acked.push(id);
                            answered.fetch_add(1, Ordering::SeqCst);
                        }
                        // Cut off by the kill: node A's senders stop here.
                        _ => break,
                    }
                }
                acked
            }));
        }
    }
    let payer = frank.clone();
    let payments = tokio::spawn(async move {
        let mut acked = 0u64;
        for i in 0..200 {
            let sent = payer
                .http
                .post(format!("{}/wallet/transfers", payer.base))
                .bearer_auth(payer.token.as_deref().unwrap())
                .json(&json!({"to": "grace", "amount": 10, "currency": "EUR",
                              "idempotency_key": format!("p{i}"), "password": "frank-password"}))
                .send()
                .await;
            match sent {
                Ok(r) if r.status() == StatusCode::CREATED => acked += 10,
                _ => break,
            }
        }
        acked
    });
    // The operator tops heidi up through both nodes at once: audit entries
    // from both processes interleave on the one chain.
    let mut toppers = Vec::new();
    for node in 0..2 {
        let mut operator = Client::new(&c.nodes[node]);
        operator.token = Some(
            std::fs::read_to_string(c.nodes[node].data_dir.join("operator.token"))
                .unwrap()
                .trim()
                .to_string(),
        );
        toppers.push(tokio::spawn(async move {
            let mut acked = 0u64;
            for i in 0..100 {
                let sent = operator
                    .http
                    .post(format!("{}/operator/topups", operator.base))
                    .bearer_auth(operator.token.as_deref().unwrap())
                    .json(&json!({"user": "heidi", "amount": 1, "currency": "EUR",
                                  "idempotency_key": format!("n{node}-{i}")}))
                    .send()
                    .await;
                // Cut off by the kill: node A's top-ups stop here.
                if !matches!(sent, Ok(r) if r.status() == StatusCode::CREATED) {
                    break;
                }
                acked += 1;
            }
            acked
        }));
    }
    while answered.load(Ordering::SeqCst) < 150 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let killed = c.nodes.remove(0);
    tokio::task::spawn_blocking(move || killed.kill9())
        .await
        .unwrap();
    let mut acked = Vec::new();
    for s in senders {
        acked.extend(s.await.unwrap());
    }
    let paid = payments.await.unwrap();
    let topped_a = toppers.remove(0).await.unwrap();
    let topped_b = toppers.remove(0).await.unwrap();
    assert_eq!(topped_b, 100, "the surviving node answered every top-up");
    let from_b = acked.iter().filter(|id| id.starts_with("n1-")).count();
    assert_eq!(from_b, 8 * 50, "the surviving node answered every send");
    assert!(
        acked.iter().filter(|id| id.starts_with("n0-")).count() < 8 * 50,
        "node A was killed in the burst, not after it"
    );

    // Node B holds every acknowledged message, in one gapless sequence.
    let stored = grace.messages(&chat, 0).await;
    let seqs: Vec<u64> = stored.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=stored.len() as u64).collect::<Vec<_>>());
    let ids: BTreeSet<&str> = stored.iter().map(|m| m["text"].as_str().unwrap()).collect();
    for id in &acked {
        assert!(ids.contains(id.as_str()), "acknowledged {id} was lost");
    }
    // Every acknowledged transfer arrived; the ledger balances.
    assert!(balance(&grace).await >= paid as i64);
    let (ok, report) = wallet_on(&c.nodes[0], &["check"]);
    assert!(ok, "{report}");
    let issued = 1_000_000 + topped_a + topped_b;
    assert!(
        report.contains(&format!("EUR: issued {issued}, held {issued}"))
            || report.contains(&format!("EUR: issued {}, held {}", issued + 1, issued + 1)),
        "{report}"
    );

    // One audit chain, with the entries of both nodes, verifies end to end.
    let (ok, report, errors) = c.cli(&["audit", "verify-log", "--json"]);
    assert!(ok, "{report}{errors}");
    let verdict: Value = serde_json::from_str(report.trim()).unwrap();
    assert_eq!(verdict["ok"], true, "{verdict}");
    // The first top-up, every acknowledged one from either node, and any
    // node A committed but could not answer.
    let entries = verdict["entries"].as_u64().unwrap();
    assert!(entries > 1 + topped_b, "{verdict}");
    assert!(topped_a > 0 && topped_b > 0, "{topped_a} {topped_b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_raised_on_one_node_are_answered_on_the_other_and_revocation_holds_everywhere() {
    let c = Cluster::start(2, &["testing/probe"]);
    let on_a = Client::signed_up(&c.nodes[0], "ivan").await;
    let on_b = c.on(1, "ivan").await;

    // A consent prompt raised by an event on A is listed and answered on B;
    // the app hears the answer there, and A's next call is allowed.
    assert!(probe(&on_a, "profile", None)
        .await
        .starts_with("err: consent-required"));
    let (_, prompts) = on_b.get("/prompts").await;
    let prompts = prompts.as_array().unwrap().clone();
    assert_eq!(prompts.len(), 1, "{prompts:?}");
    assert_eq!(prompts[0]["capability"], "profile");
    let id = prompts[0]["id"].as_str().unwrap();
    let (status, answered) = on_b
        .post(&format!("/prompts/{id}/approve"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{answered}");
    assert!(texts(&answered)[0].contains("granted: true"), "{answered}");
    let (status, _) = on_a.post(&format!("/prompts/{id}/deny"), json!({})).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "answered once, on either node"
    );
    assert_eq!(probe(&on_a, "profile", None).await, "ok: \"IVAN\"");

    // Revoked on B: the very next call on A is denied, without asking.
    let grant = format!("/me/grants/{PROBE}/profile");
    let (status, _) = on_b.call(Method::DELETE, &grant, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(probe(&on_a, "profile", None)
        .await
        .starts_with("err: denied"));
    assert!(on_a.get("/prompts").await.1.as_array().unwrap().is_empty());

    // A payment sheet raised on A is confirmed on B with the password; the
    // app on A sees the order paid, and the money moved once.
    let (ok, out) = wallet_on(
        &c.nodes[1],
        &["topup", "ivan", "5000", "--idempotency-key", "cluster-3"],
    );
    assert!(ok, "{out}");
    let order = request(&on_a, PROBE, 1_200, "visit-a").await;
    let (_, sheets) = on_b.get("/prompts").await;
    assert_eq!(sheets[0]["id"], order.as_str(), "{sheets}");
    let (status, body) = confirm(&on_b, &order, "ivan-password").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["order"]["state"], "paid");
    let (status, _) = confirm(&on_a, &order, "ivan-password").await;
    assert_eq!(status, StatusCode::CONFLICT, "paid once");
    assert_eq!(
        action(&on_a, PROBE, "payment-status", Some(&order), json!({})).await,
        "ok: OrderStatus::Settled(PaymentOutcome::Paid)"
    );
    assert_eq!(balance(&on_a).await, 3_800);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_throttles_notification_and_chat_limits_count_on_every_node() {
    let c = Cluster::start_with(
        2,
        setup(&["testing/probe"]),
        &[("SUPERAPP_CHAT_RATE_PER_USER", "10")],
    );
    let judy = Client::signed_up(&c.nodes[0], "judy").await;
    Client::signed_up(&c.nodes[1], "kim").await;

    // Five wrong passwords for kim, alternating between the nodes, lock
    // her account on both: even the right password waits.
    let anon = [Client::new(&c.nodes[0]), Client::new(&c.nodes[1])];
    for i in 0..5 {
        let (status, body) = anon[i % 2]
            .post(
                "/sessions",
                json!({"username": "kim", "password": format!("guess-{i}")}),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    for node in &anon {
        let (status, body) = node
            .post(
                "/sessions",
                json!({"username": "kim", "password": "kim-password"}),
            )
            .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert_eq!(body["error"]["code"], "too-many-attempts");
    }

    // Ten notifications an hour per user and app, whichever node runs the
    // event: five through each node, then none more on either.
    assert!(probe(&judy, "notify", Some("first"))
        .await
        .starts_with("err: consent-required"));
    let (_, prompts) = judy.get("/prompts").await;
    let id = prompts[0]["id"].as_str().unwrap();
    let (status, _) = judy
        .post(&format!("/prompts/{id}/approve"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let judy_b = c.on(1, "judy").await;
    let sent = join_all((0..10).map(|i| {
        let who = if i % 2 == 0 { &judy } else { &judy_b };
        probe(who, "notify", Some("your slot"))
    }))
    .await;
    assert!(sent.iter().all(|r| r == "ok: ()"), "{sent:?}");
    for who in [&judy, &judy_b] {
        assert!(probe(who, "notify", Some("one too many"))
            .await
            .starts_with("err: quota-exceeded"));
    }

    // Ten chat sends a second, fifty at once: sends alternating between
    // the nodes share one allowance (each node alone allowed fifty).
    let chat = judy.direct_with("kim").await;
    let started = std::time::Instant::now();
    let mut accepted = 0;
    for i in 0..70 {
        let who = if i % 2 == 0 { &judy } else { &judy_b };
        let (status, body) = who.send(&chat, &format!("burst-{i}"), "hi").await;
        match status {
            StatusCode::CREATED => accepted += 1,
            StatusCode::TOO_MANY_REQUESTS => assert_eq!(body["error"]["code"], "rate-limited"),
            other => panic!("{other}: {body}"),
        }
    }
    let refilled = (started.elapsed().as_secs_f64() * 10.0).ceil() as usize;
    assert!(
        accepted <= 50 + refilled,
        "{accepted} sends in {:?}",
        started.elapsed()
    );
    assert!(accepted >= 50, "{accepted}");
}

/// A provider backend that takes a while over each callback and counts
/// the attempts per delivery id.
async fn slow_backend() -> (
    u16,
    Arc<std::sync::Mutex<std::collections::BTreeMap<String, usize>>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let counted = seen.clone();
    let app = axum::Router::new().route(
        "/callbacks",
        axum::routing::post(move |body: axum::body::Bytes| {
            let counted = counted.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(400)).await;
                let n: Value = serde_json::from_slice(&body).unwrap_or_default();
                let id = n["id"].as_str().unwrap_or("?").to_string();
                *counted.lock().unwrap().entry(id).or_insert(0) += 1;
                axum::http::StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_work_is_done_once_by_one_node_through_the_work_queue() {
    let (port, seen) = slow_backend().await;
    let setup = setup(&["testing/probe"]);
    let manifest = setup.apps.join("probe/plugin.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        format!("{text}\n[callbacks]\nurl = \"http://backend.test:{port}/callbacks\"\n"),
    )
    .unwrap();
    let origin = format!("backend.test:{port}");
    let c = Cluster::start_with(
        2,
        setup,
        &[
            ("SUPERAPP_HTTP_PLAIN_ORIGINS", origin.as_str()),
            ("SUPERAPP_HTTP_PRIVATE_HOSTS", "backend.test"),
            ("SUPERAPP_HTTP_HOSTS", "backend.test=127.0.0.1"),
            ("SUPERAPP_PAYMENT_TTL_SECS", "2"),
        ],
    );
    // Six users, three on each node: each pays twice (two callbacks each)
    // and leaves a third sheet to expire.
    let mut users = Vec::new();
    for i in 0..6 {
        let name = format!("user{i}");
        let user = Client::signed_up(&c.nodes[i % 2], &name).await;
        let (ok, out) = wallet_on(
            &c.nodes[i % 2],
            &[
                "topup",
                &name,
                "1000",
                "--idempotency-key",
                &format!("q{i}"),
            ],
        );
        assert!(ok, "{out}");
        users.push(user);
    }
    let mut expiring = Vec::new();
    for (i, user) in users.iter().enumerate() {
        for k in 0..2 {
            let order = request(user, PROBE, 100, &format!("pay-{k}")).await;
            let (status, body) = confirm(user, &order, &format!("user{i}-password")).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        expiring.push(request(user, PROBE, 100, "let-it-expire").await);
    }

    // Every callback reaches the backend, each once: no two nodes sent the
    // same delivery, though both sweep every second and the backend is slow.
    let started = std::time::Instant::now();
    while seen.lock().unwrap().len() < 12 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{:?}",
            seen.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Each app hears of its expired sheet; each sheet expired once.
    for (user, order) in users.iter().zip(&expiring) {
        let mut last = String::new();
        for _ in 0..100 {
            last = action(user, PROBE, "last-event", None, json!({})).await;
            if last.contains(order.as_str()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            last.contains(order.as_str()) && last.contains("Expired"),
            "{last}"
        );
        let (_, log) = user
            .get(&format!("/me/access-log?app={PROBE}&limit=100"))
            .await;
        let expiries = log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "payment.expire")
            .count();
        assert_eq!(expiries, 1, "{log}");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 12, "{seen:?}");
    assert!(
        seen.values().all(|n| *n == 1),
        "a delivery was sent twice: {seen:?}"
    );
}

#[test]
fn a_bus_that_cannot_work_stops_the_start_with_a_readable_message() {
    let store = pg_server::shared().database();
    let on_store = |bus: &str| {
        crate::postgres::refused_start(&[("SUPERAPP_STORE", store.as_str()), ("SUPERAPP_BUS", bus)])
    };
    let err =
        crate::postgres::refused_start(&[("SUPERAPP_BUS", nats_server::shared().url().as_str())]);
    assert!(err.contains("store"), "a bus needs a shared store: {err}");
    let err = on_store("redis://127.0.0.1:6379");
    assert!(err.contains("nats://"), "{err}");
    // Nothing listens on port 1 of loopback; the credentials are not echoed.
    let err = on_store("nats://app:s3cret-word@127.0.0.1:1");
    assert!(err.contains("cannot connect to the bus"), "{err}");
    assert!(!err.contains("s3cret-word"), "{err}");
    // A NATS server without JetStream cannot hold the work queue.
    let plain = nats_server::Nats::start_with(false);
    let err = on_store(&plain.url());
    assert!(err.contains("JetStream"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_published_through_one_node_opens_on_the_other_and_a_yank_holds_on_both() {
    use crate::registry::{cli, files, ok, version_for, APP};
    let (f, component) = files();
    let c = Cluster::start(2, &[]);
    let url = |i: usize| c.nodes[i].base.trim_end_matches("/api/v1").to_string();
    let operator = |i: usize, args: &[&str]| {
        let token = c.nodes[i].data_dir.join("operator.token");
        let mut all = args.to_vec();
        let server = url(i);
        all.extend(["--server", &server, "--token-file", token.to_str().unwrap()]);
        cli(&all)
    };
    let publisher = f.key("publisher.pem");
    let package = f.path("v1.pkg");
    f.package(&component, "1.0.0", &[], &f.path("publisher.pem"), &package);
    // The publisher is registered through node B and publishes through A.
    ok(&operator(
        1,
        &[
            "registry",
            "add-publisher",
            "--id",
            "clinic",
            "--name",
            "City Clinic",
            "--key",
            &publisher,
        ],
    ));
    let out = ok(&cli(&[
        "plugin",
        "publish",
        &package,
        "--server",
        &url(0),
        "--key",
        &f.path("publisher.pem"),
    ]));
    assert!(out.contains("users can open it now"), "{out}");

    // Node B never saw the upload: it compiles the component when a user
    // first opens it there.
    let on_b = Client::signed_up(&c.nodes[1], "lena").await;
    assert_eq!(version_for(&on_b).await.as_deref(), Some("1.0.0"));
    let (status, view) = on_b.post(&format!("/apps/{APP}/launch"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{view}");

    // Yanked through A: neither node opens it any more.
    let spec = format!("{APP}@1.0.0");
    ok(&operator(
        0,
        &["registry", "yank", &spec, "--note", "broken"],
    ));
    let on_a = c.on(0, "lena").await;
    for who in [&on_a, &on_b] {
        assert_eq!(version_for(who).await, None);
        let (status, body) = who.post(&format!("/apps/{APP}/launch"), json!({})).await;
        assert!(status.is_client_error(), "{status} {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_bus_is_away_nodes_keep_serving_and_pushes_cross_again_when_it_is_back() {
    // Both nodes reach the bus through a cable the test cuts.
    let nats = nats_server::shared();
    let cable = crate::cable::Cable::to(nats.port).await;
    let bus = format!("nats://127.0.0.1:{}", cable.port);
    let c = Cluster::start_with(2, setup(&[]), &[("SUPERAPP_BUS", bus.as_str())]);
    let alice = Client::signed_up(&c.nodes[0], "mia").await;
    let bob = Client::signed_up(&c.nodes[1], "noah").await;
    let chat = alice.direct_with("noah").await;
    let mut bob_ws = ws_connect(&c.nodes[1], bob.token.as_deref().unwrap()).await;
    until_pushed(&alice, &chat, &mut bob_ws).await;

    cable.cut();
    let started = std::time::Instant::now();
    while readyz(&c.nodes[1]).await["bus"] != "away" {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "/readyz never said the bus was away"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The store is the record: both nodes take messages, and a node still
    // pushes to its own connections.
    let mut alice_ws = ws_connect(&c.nodes[0], alice.token.as_deref().unwrap()).await;
    for i in 0..5 {
        let (status, body) = alice.send(&chat, &format!("away-a{i}"), "while away").await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = bob.send(&chat, &format!("away-b{i}"), "while away").await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    assert!(
        seqs_pushed(&mut alice_ws, &chat, 5).await.len() >= 5,
        "alice's own node pushed her own messages"
    );
    // Back: the nodes reconnect by themselves and pushes cross again; the
    // messages sent meanwhile are all in the store, in one sequence.
    // Bob's own messages were pushed to him by his node: drained first.
    seqs_pushed(&mut bob_ws, &chat, usize::MAX).await;
    cable.restore();
    let started = std::time::Instant::now();
    loop {
        let (status, _) = alice
            .send(
                &chat,
                &format!("back-{}", started.elapsed().as_millis()),
                "back",
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let crossed = next_message(&mut bob_ws, Duration::from_secs(1))
            .await
            .is_some_and(|frame| frame["message"]["text"] == "back");
        if crossed {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no push crossed after the bus came back"
        );
    }
    let stored = bob.messages(&chat, 0).await;
    let seqs: Vec<u64> = stored.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=stored.len() as u64).collect::<Vec<_>>());
    let away = stored.iter().filter(|m| m["text"] == "while away").count();
    assert_eq!(away, 10);
}

/// With the bus away, a node cannot hear of a logout on another: it checks
/// the session before every push instead, so a session ended on node A
/// gets nothing more on node B and its socket there closes with 4001 at
/// the next push, not at the heartbeat. The bus here hangs rather than
/// going away (its bytes are held, as from a stopped server or a
/// partition that drops packets): unanswered pings make it away within
/// seconds, and `/readyz` says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_bus_hangs_a_session_ended_on_one_node_gets_no_push_on_the_other() {
    let nats = nats_server::shared();
    let cable = crate::cable::Cable::to(nats.port).await;
    let bus = format!("nats://127.0.0.1:{}", cable.port);
    let c = Cluster::start_with(2, setup(&[]), &[("SUPERAPP_BUS", bus.as_str())]);
    let mia = Client::signed_up(&c.nodes[0], "mia").await;
    let noah = Client::signed_up(&c.nodes[1], "noah").await;
    let chat = noah.direct_with("mia").await;
    let stolen = c.on(1, "mia").await;
    let mut stolen_ws = ws_connect(&c.nodes[1], stolen.token.as_deref().unwrap()).await;
    let ready = |node: usize| {
        let node = &c.nodes[node];
        async move {
            readyz(node).await["bus"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        }
    };
    assert_eq!(ready(1).await, "connected");

    cable.stall();
    let started = std::time::Instant::now();
    while ready(1).await != "away" {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "a hung bus was not noticed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Mia ends the stolen session from node A; node B hears nothing of it.
    let mut by_a = Client::new(&c.nodes[0]);
    by_a.token = stolen.token.clone();
    let (s, _) = by_a.call(Method::DELETE, "/sessions/current", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = noah.send(&chat, "after-logout", "private").await;
    assert_eq!(s, StatusCode::CREATED);
    // Closed, with nothing of the message before the close.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let code = loop {
        match tokio::time::timeout_at(deadline, stolen_ws.next()).await {
            Ok(Some(Ok(WsMessage::Close(frame)))) => break frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(WsMessage::Text(text)))) => {
                assert!(!text.contains("private"), "pushed after the logout: {text}")
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, Some(4001));
    // Mia's own session, on node A, is untouched.
    assert_eq!(mia.get("/me").await.0, StatusCode::OK);
    cable.resume();
}

/// `--demo` on every node of one store: the demo's issuers have one key,
/// made by the first node, and each node's data directory holds a copy
/// (in a folder only the host's user opens) that works against any node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_on_several_nodes_shares_one_key_per_issuer() {
    use std::os::unix::fs::PermissionsExt as _;
    let store = pg_server::shared().database();
    let bus = nats_server::shared().url();
    let plugins = repo().join("plugins");
    let dirs = tempfile::tempdir().unwrap();
    let env = [
        ("SUPERAPP_STORE", store.as_str()),
        ("SUPERAPP_BUS", bus.as_str()),
    ];
    let args = ["--demo", "--plugins", plugins.to_str().unwrap()];
    let nodes: Vec<(std::path::PathBuf, Server)> = (0..2)
        .map(|i| {
            let dir = dirs.path().join(format!("node{i}"));
            let server = Server::start_with(&dir, &args, &env);
            (dir, server)
        })
        .collect();
    let file = "demo-issuers/gov.civil-registry.json";
    let keys: Vec<Vec<u8>> = nodes
        .iter()
        .map(|(dir, _)| std::fs::read(dir.join(file)).unwrap())
        .collect();
    assert_eq!(keys[0], keys[1], "one key per issuer");
    for (dir, _) in &nodes {
        let folder = std::fs::metadata(dir.join("demo-issuers")).unwrap();
        assert_eq!(folder.permissions().mode() & 0o777, 0o700);
        // Signed with this node's copy, a revocation is taken by the
        // other node as by this one.
        for (_, target) in &nodes {
            let url = target.base.trim_end_matches("/api/v1").to_string();
            let key = dir.join(file);
            let (ok, out) = superapp_cli([
                "issuer",
                "revoke",
                "--credential",
                "some-credential",
                "--key",
                key.to_str().unwrap(),
                "--server",
                &url,
            ]);
            assert!(ok, "{out}");
        }
    }
}
