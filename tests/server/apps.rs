//! Mini-programs served by `superapp serve --apps DIR` to signed-in users.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use superapp_services::identity::Pseudonyms;

use crate::common::*;

pub(crate) use crate::common::{serve, serve_with, setup, Setup};

pub(crate) fn texts(view: &Value) -> Vec<String> {
    fn walk(node: &Value, out: &mut Vec<String>) {
        if let Some(t) = node.get("text").and_then(Value::as_str) {
            out.push(t.to_string());
        }
        for child in node
            .get("children")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            walk(child, out);
        }
    }
    let mut out = Vec::new();
    walk(&view["view"]["body"], &mut out);
    out
}

#[tokio::test]
async fn hello_runs_per_user_and_its_storage_survives_a_restart() {
    let s = setup(&["hello"]);
    let server = serve(&s);
    let alice = Client::signed_up(&server, "alice").await;
    let bob = Client::signed_up(&server, "bob").await;

    let (status, apps) = alice.get("/apps").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(apps[0]["id"], "dev.superapp.hello");
    let caps: Vec<&str> = apps[0]["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(caps, ["log", "identity", "storage"]);

    let (status, first) = alice
        .post("/apps/dev.superapp.hello/launch", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(texts(&first)[0], "Hello!");
    let (status, named) = alice
        .post(
            "/apps/dev.superapp.hello/events",
            json!({"name": "save-name", "fields": {"name": "Ada"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{named}");
    assert_eq!(texts(&named)[0], "Hello, Ada!");
    let (_, bobs) = bob.post("/apps/dev.superapp.hello/launch", json!({})).await;
    assert_eq!(
        texts(&bobs)[0],
        "Hello!",
        "bob does not see alice's storage"
    );

    let (_, ping) = alice
        .post("/apps/dev.superapp.hello/events", json!({"name": "ping"}))
        .await;
    let pseudonym = texts(&ping)[0].clone();
    let (_, me) = alice.get("/me").await;
    let secret = std::fs::read(s.data.join("host-secret")).unwrap();
    assert_eq!(
        pseudonym,
        Pseudonyms::new(&secret).for_app(me["id"].as_str().unwrap(), "dev.superapp.hello")
    );
    let (_, bob_ping) = bob
        .post("/apps/dev.superapp.hello/events", json!({"name": "ping"}))
        .await;
    assert_ne!(texts(&bob_ping)[0], pseudonym);

    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    assert!(status.success());
    let server = serve(&s);
    let mut alice = Client::new(&server);
    alice.token = Some(alice.login("alice", "alice-password").await);
    let (_, again) = alice
        .post("/apps/dev.superapp.hello/launch", json!({}))
        .await;
    let lines = texts(&again);
    assert_eq!(lines[0], "Hello, Ada!");
    assert_eq!(lines[1], "You have opened this app 2 times.");
    let (_, ping) = alice
        .post("/apps/dev.superapp.hello/events", json!({"name": "ping"}))
        .await;
    assert_eq!(
        texts(&ping)[0],
        pseudonym,
        "the pseudonym is stable across restarts"
    );
}

pub(crate) async fn probe(client: &Client, name: &str, value: Option<&str>) -> String {
    let (status, v) = client
        .post(
            "/apps/dev.superapp.testing.probe/events",
            json!({"name": name, "value": value, "fields": {"key": "k"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    texts(&v)[0].clone()
}

#[tokio::test]
async fn consent_prompts_grants_revocation_and_the_access_log() {
    let s = setup(&["testing/probe"]);
    let server = serve(&s);
    let alice = Client::signed_up(&server, "alice").await;
    let bob = Client::signed_up(&server, "bob").await;

    // No decision yet: the call waits for consent and the host asks, once.
    assert!(probe(&alice, "profile", None)
        .await
        .starts_with("err: consent-required"));
    assert!(probe(&alice, "profile", None)
        .await
        .starts_with("err: consent-required"));
    let (_, prompts) = alice.get("/prompts").await;
    let prompts = prompts.as_array().unwrap().clone();
    assert_eq!(prompts.len(), 1, "{prompts:?}");
    assert_eq!(
        (
            prompts[0]["capability"].as_str(),
            prompts[0]["reason"].as_str()
        ),
        (Some("profile"), Some("Probe."))
    );
    let id = prompts[0]["id"].as_str().unwrap().to_string();

    // Only alice can answer alice's prompt.
    let (status, _) = bob.post(&format!("/prompts/{id}/approve"), json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, answered) = alice
        .post(&format!("/prompts/{id}/approve"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{answered}");
    let heard = texts(&answered)[0].clone();
    assert!(
        heard.contains("Consent") && heard.contains("granted: true"),
        "the app heard the answer: {heard}"
    );
    let (status, _) = alice.post(&format!("/prompts/{id}/deny"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "a prompt is answered once");
    assert_eq!(probe(&alice, "profile", None).await, "ok: \"ALICE\"");
    assert!(
        probe(&bob, "profile", None)
            .await
            .starts_with("err: consent-required"),
        "consent is per user"
    );

    let (_, grants) = alice.get("/me/grants").await;
    assert_eq!(grants[0]["capability"], "profile");
    assert_eq!(grants[0]["decision"], "granted");

    // Revoking takes effect on the next call, which is denied without asking.
    let grant = "/me/grants/dev.superapp.testing.probe/profile";
    let (status, _) = alice.call(reqwest::Method::DELETE, grant, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(probe(&alice, "profile", None)
        .await
        .starts_with("err: denied"));
    let (_, grants) = alice.get("/me/grants").await;
    assert_eq!(grants[0]["decision"], "denied");
    let (_, prompts) = alice.get("/prompts").await;
    assert!(prompts.as_array().unwrap().is_empty());
    // Deleting the denial forgets it: the next call asks again, and a new
    // denial sticks.
    let (status, _) = alice.call(reqwest::Method::DELETE, grant, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = alice.call(reqwest::Method::DELETE, grant, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(probe(&alice, "profile", None)
        .await
        .starts_with("err: consent-required"));
    let (_, prompts) = alice.get("/prompts").await;
    let id = prompts[0]["id"].as_str().unwrap().to_string();
    let (_, answered) = alice.post(&format!("/prompts/{id}/deny"), json!({})).await;
    assert!(texts(&answered)[0].contains("granted: false"));
    assert!(probe(&alice, "profile", None)
        .await
        .starts_with("err: denied"));
    assert!(probe(&alice, "profile", None)
        .await
        .starts_with("err: denied"));
    let (_, prompts) = alice.get("/prompts").await;
    assert!(
        prompts.as_array().unwrap().is_empty(),
        "a remembered denial does not ask again"
    );

    // Storage needs no consent.
    assert_eq!(probe(&alice, "storage-set", Some("v")).await, "ok: ()");

    // The privacy report shows every consent-gated call and decision, newest first.
    let (_, log) = alice
        .get("/me/access-log?app=dev.superapp.testing.probe")
        .await;
    let kinds: Vec<String> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["kind"].as_str().unwrap(),
                e["outcome"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "capability.call denied",
            "capability.call denied",
            "consent.deny denied",
            "capability.call consent-required",
            "consent.reset reset",
            "capability.call denied",
            "consent.revoke revoked",
            "capability.call allowed",
            "consent.grant granted",
            "capability.call consent-required",
            "capability.call consent-required",
        ]
    );
    let (_, bobs) = bob.get("/me/access-log").await;
    assert_eq!(
        bobs["entries"].as_array().unwrap().len(),
        1,
        "each user sees their own slice"
    );

    // The whole chain verifies once the server has stopped.
    assert!(tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap()
        .success());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_superapp"))
        .args(["audit", "verify-log", "--data-dir"])
        .arg(&s.data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("entries form an unbroken chain"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn a_hostile_app_fails_alone_and_bad_requests_are_refused() {
    let s = setup(&["hello", "testing/memory-bomb"]);
    let server = serve(&s);
    let alice = Client::signed_up(&server, "alice").await;
    // An error that quotes the request shows a direction override as an
    // escape, so it cannot turn the message around.
    let (status, err) = alice.post("/apps/%E2%80%AEevil/launch", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("\\u{202e}evil") && !message.contains('\u{202E}'),
        "{message}"
    );
    let (status, err) = alice
        .post("/apps/dev.superapp.testing.memory-bomb/launch", json!({}))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(err["error"]["code"], "limit-exceeded");
    // An event the app finds makes no sense is the request's fault: a
    // 400 with the app's words, not a gateway error.
    for (name, fields) in [
        ("no-such-action", json!({})),
        ("save-name", json!({"name": "x".repeat(500)})),
    ] {
        let (status, err) = alice
            .post(
                "/apps/dev.superapp.hello/events",
                json!({"name": name, "fields": fields}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {err}");
        assert_eq!(err["error"]["code"], "app-error");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("bad request"),
            "{err}"
        );
    }
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("memory limit"),
        "{err}"
    );
    let (status, _) = alice
        .post("/apps/dev.superapp.hello/launch", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, _) = alice.post("/apps/no.such.app/launch", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = alice
        .post(
            "/apps/dev.superapp.hello/events",
            json!({"name": "javascript:alert(1)"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = alice
        .post(
            "/apps/dev.superapp.hello/events",
            json!({"type": "consent", "capability": "profile"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "clients cannot send host events"
    );
    let (status, _) = Client::new(&server)
        .post("/apps/dev.superapp.hello/launch", json!({}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[test]
fn the_server_refuses_to_start_with_an_app_that_fails_its_check() {
    let s = setup(&["testing/undeclared-payments"]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_superapp"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&s.data)
        .arg("--apps")
        .arg(&s.apps)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("undeclared-payments") && err.contains("[capabilities.payments]"),
        "{err}"
    );
}

#[tokio::test]
async fn fifty_users_racing_a_compare_and_swap_one_wins() {
    let s = setup(&["testing/probe"]);
    let server = serve(&s);
    let mut clients = Vec::new();
    for i in 0..50 {
        clients.push(Client::signed_up(&server, &format!("racer{i}")).await);
    }
    let races = clients.into_iter().enumerate().map(|(i, c)| {
        tokio::spawn(async move {
            let (status, v) = c
                .post("/apps/dev.superapp.testing.probe/events", json!({"name": "shared-cas", "value": format!("racer{i}"), "fields": {"key": "slot-9am"}}))
                .await;
            assert_eq!(status, StatusCode::OK, "{v}");
            texts(&v)[0].clone()
        })
    });
    let mut wins = 0;
    for race in races.collect::<Vec<_>>() {
        match race.await.unwrap().as_str() {
            "ok: true" => wins += 1,
            "ok: false" => {}
            other => panic!("unexpected answer {other}"),
        }
    }
    assert_eq!(wins, 1);
}

#[tokio::test]
async fn notify_writes_from_the_service_account_and_is_rate_limited() {
    let s = setup(&["testing/probe"]);
    let server = serve(&s);
    let alice = Client::signed_up(&server, "alice").await;
    let mut ws = ws_connect(&server, alice.token.as_ref().unwrap()).await;
    assert!(probe(&alice, "notify", Some("first"))
        .await
        .starts_with("err: consent-required"));
    let (_, prompts) = alice.get("/prompts").await;
    let id = prompts[0]["id"].as_str().unwrap().to_string();
    assert_eq!(prompts[0]["capability"], "notify");
    alice
        .post(&format!("/prompts/{id}/approve"), json!({}))
        .await;
    assert_eq!(
        probe(&alice, "notify", Some("Your 9:00 slot is booked")).await,
        "ok: ()"
    );

    // The audit log names the call and a digest of its text, not the text.
    let (_, log) = alice.get("/me/access-log").await;
    let call = &log["entries"][0];
    assert_eq!(
        (call["kind"].as_str(), call["outcome"].as_str()),
        (Some("capability.call"), Some("allowed"))
    );
    assert_eq!(
        call["args_sha256"],
        superapp_services::audit::digest_hex(b"Your 9:00 slot is booked").as_str()
    );
    assert!(!log.to_string().contains("slot is booked"));
    let frame = next_message(&mut ws, std::time::Duration::from_secs(5))
        .await
        .expect("a push");
    assert_eq!(frame["message"]["text"], "Your 9:00 slot is booked");
    assert_eq!(frame["message"]["sender"], "app:dev.superapp.testing.probe");
    let (_, list) = alice.get("/conversations").await;
    assert_eq!(list[0]["kind"], "service");
    assert_eq!(list[0]["title"], "Capability probe");
    assert_eq!(list[0]["unread"], 1);
    let c = list[0]["id"].as_str().unwrap().to_string();
    let (status, body) = alice.send(&c, "reply", "can I write here?").await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "users read service conversations, they do not write into them: {body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("only its app writes"),
        "{body}"
    );
    // Someone who cannot read it learns nothing of it.
    let bob = Client::signed_up(&server, "bob").await;
    let (status, _) = bob.send(&c, "reply", "and I?").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    for i in 2..=10 {
        assert_eq!(
            probe(&alice, "notify", Some("again")).await,
            "ok: ()",
            "notification {i}"
        );
    }
    assert!(probe(&alice, "notify", Some("one too many"))
        .await
        .starts_with("err: quota-exceeded"));
    assert_eq!(alice.messages(&c, 0).await.len(), 10);
}

#[tokio::test]
async fn share_card_goes_through_a_host_prompt_into_a_chat_the_user_picks() {
    let s = setup(&["testing/probe"]);
    let server = serve(&s);
    let alice = Client::signed_up(&server, "alice").await;
    let bob = Client::signed_up(&server, "bob").await;
    let carol = Client::signed_up(&server, "carol").await;
    let chat = alice.direct_with("bob").await;
    let carols = carol.direct_with("bob").await;

    // notify needs consent first; then sharing asks which chat.
    assert!(probe(&alice, "share-card", None)
        .await
        .starts_with("err: consent-required"));
    let (_, prompts) = alice.get("/prompts").await;
    alice
        .post(
            &format!("/prompts/{}/approve", prompts[0]["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(probe(&alice, "share-card", None).await, "ok: ()");
    let (_, prompts) = alice.get("/prompts").await;
    assert_eq!(prompts[0]["kind"], "share-card");
    assert_eq!(prompts[0]["card"]["app_id"], "dev.superapp.hello");
    let id = prompts[0]["id"].as_str().unwrap().to_string();

    let (status, _) = alice
        .post(&format!("/prompts/{id}/approve"), json!({}))
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "approving a share names the chat"
    );
    let (status, _) = alice
        .post(
            &format!("/prompts/{id}/approve"),
            json!({"conversation_id": carols}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "only into the user's own chats"
    );
    let (status, answered) = alice
        .post(
            &format!("/prompts/{id}/approve"),
            json!({"conversation_id": chat}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answered}");
    assert!(
        texts(&answered)[0].contains("CardShared(true)"),
        "{answered}"
    );

    let messages = bob.messages(&chat, 0).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["card"]["app_id"], "dev.superapp.hello");
    assert_eq!(messages[0]["text"], "Hello");
    assert_eq!(messages[0]["sender"], alice.get("/me").await.1["id"]);

    // Opening a card launches an app with the card's parameters (the probe
    // shows what it was launched with).
    let (status, opened) = bob
        .post(
            "/apps/dev.superapp.testing.probe/launch",
            json!({"params": [["slot", "9am"], ["clinic", "north"]]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{opened}");
    assert_eq!(
        texts(&opened)[0],
        r#"ready [("slot", "9am"), ("clinic", "north")]"#
    );

    // Declining delivers card-shared(false) and posts nothing.
    assert_eq!(probe(&alice, "share-card", None).await, "ok: ()");
    let (_, prompts) = alice.get("/prompts").await;
    let (_, declined) = alice
        .post(
            &format!("/prompts/{}/deny", prompts[0]["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert!(texts(&declined)[0].contains("CardShared(false)"));
    assert_eq!(bob.messages(&chat, 0).await.len(), 1);
}

/// Past an app's share of the queue, a user's event is refused at once with
/// 503, a JSON error and `Retry-After`, instead of piling up; another app
/// is served meanwhile, and once the burst is over the app serves again.
#[tokio::test]
async fn overload_is_refused_with_503_and_retry_after() {
    let s = setup(&["hello", "testing/busy"]);
    let server = serve_with(
        &s,
        &[
            ("SUPERAPP_EVENT_SLOTS", "1"),
            ("SUPERAPP_MAX_PENDING_EVENTS_PER_APP", "2"),
        ],
    );
    let alice = Client::signed_up(&server, "alice").await;
    let busy = "dev.superapp.testing.busy";
    // One event of about 150 ms on this machine.
    let rounds = alice.busy_rounds(150).await;

    let burst: Vec<_> = (0..6)
        .map(|_| {
            let (alice, rounds) = (alice.clone(), rounds.clone());
            tokio::spawn(async move {
                let resp = alice
                    .raw(
                        Method::POST,
                        &format!("/apps/{busy}/events"),
                        Some(
                            serde_json::to_vec(&json!({"name": "work", "value": rounds})).unwrap(),
                        ),
                        "application/json",
                    )
                    .await;
                let retry = resp
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_string());
                let status = resp.status();
                let body: Value = resp.json().await.unwrap();
                (status, retry, body)
            })
        })
        .collect();
    let (status, _) = alice
        .post("/apps/dev.superapp.hello/launch", json!({}))
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "another app is served during the burst"
    );
    let (mut served, mut refused) = (0, 0);
    for task in burst {
        let (status, retry, body) = task.await.unwrap();
        match status {
            StatusCode::OK => served += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                refused += 1;
                assert_eq!(retry.as_deref(), Some("1"), "{body}");
                assert_eq!(body["error"]["code"], "overloaded", "{body}");
                let message = body["error"]["message"].as_str().unwrap();
                assert!(
                    message.contains("busy") && message.contains(busy),
                    "{message}"
                );
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(
        served >= 2 && refused >= 1,
        "{served} served, {refused} refused"
    );
    // Nothing stays counted: the app serves again.
    alice.act(busy, "work", Some("1"), json!({})).await;
}

/// One user's launches and actions are limited (`app-events-per-user`,
/// here 1 a second with a burst of 5): past it, 429 `rate-limited` with
/// Retry-After and nothing run, while another user is served as before.
#[tokio::test]
async fn one_users_launches_and_actions_are_rate_limited_and_others_go_on() {
    let s = setup(&["hello"]);
    let server = serve_with(&s, &[("SUPERAPP_APP_EVENTS_PER_USER", "1")]);
    let alice = Client::signed_up(&server, "alice").await;
    let bob = Client::signed_up(&server, "bob").await;
    let hello = "/apps/dev.superapp.hello/launch";
    let mut served = 0;
    let refused = loop {
        let resp = alice
            .raw(
                Method::POST,
                hello,
                Some(b"{}".to_vec()),
                "application/json",
            )
            .await;
        if resp.status() != StatusCode::OK {
            break resp;
        }
        served += 1;
        assert!(served <= 5, "the burst is 5");
    };
    assert_eq!(served, 5);
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry = refused.headers().get("retry-after").cloned();
    assert_eq!(retry.as_ref().and_then(|v| v.to_str().ok()), Some("1"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate-limited", "{body}");
    // An action counts too.
    let (status, body) = alice
        .post(
            "/apps/dev.superapp.hello/events",
            json!({"name": "save-name", "fields": {"name": "Ada"}}),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    // Bob has his own allowance.
    for _ in 0..5 {
        assert_eq!(bob.post(hello, json!({})).await.0, StatusCode::OK);
    }
    // After the wait, alice is served again.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(alice.post(hello, json!({})).await.0, StatusCode::OK);
}

/// The access log and the prompt history come a page at a time, newest
/// first, each page continuing exactly where the last one stopped.
#[tokio::test]
async fn the_access_log_and_prompt_history_are_paginated() {
    let s = setup(&["hello", "testing/probe"]);
    let server = serve(&s);
    let alice = Client::signed_up(&server, "alice").await;
    let probe = "dev.superapp.testing.probe";
    for i in 0..5 {
        // Each payment request is a recorded capability call, a recorded
        // order and a pending sheet.
        alice
            .act(
                probe,
                "payments",
                None,
                json!({"idempotency-key": format!("k{i}")}),
            )
            .await;
        let (status, _) = alice
            .post("/apps/dev.superapp.hello/launch", json!({}))
            .await;
        assert_eq!(status, StatusCode::OK);
    }

    let (_, all) = alice.get("/me/access-log?limit=1000").await;
    let all: Vec<u64> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert!(all.len() >= 10, "{all:?}");
    assert!(all.windows(2).all(|w| w[0] > w[1]), "newest first: {all:?}");
    let mut walked = Vec::new();
    let mut path = "/me/access-log?limit=3".to_string();
    loop {
        let (status, page) = alice.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let entries = page["entries"].as_array().unwrap();
        assert!(entries.len() <= 3);
        walked.extend(entries.iter().map(|e| e["seq"].as_u64().unwrap()));
        match page["next_before"].as_u64() {
            Some(before) => path = format!("/me/access-log?limit=3&before={before}"),
            None => break,
        }
    }
    assert_eq!(walked, all, "the pages are the log, once each, in order");

    // One app's slice, from its own index.
    let (_, probes) = alice
        .get(&format!("/me/access-log?app={probe}&limit=4"))
        .await;
    let entries = probes["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    assert!(entries.iter().all(|e| e["app"] == probe), "{probes}");
    let before = probes["next_before"].as_u64().expect("more than one page");
    let (_, older) = alice
        .get(&format!(
            "/me/access-log?app={probe}&limit=1000&before={before}"
        ))
        .await;
    assert!(older["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["app"] == probe && e["seq"].as_u64().unwrap() < before));
    assert!(older["next_before"].is_null());

    // The prompt history: five payment sheets, newest first, two a page.
    let (_, pending) = alice.get("/prompts").await;
    assert_eq!(pending.as_array().unwrap().len(), 5);
    let mut ids = Vec::new();
    let mut path = "/prompts/history?limit=2".to_string();
    loop {
        let (status, page) = alice.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        ids.extend(
            page["prompts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_str().unwrap().to_string()),
        );
        match page["next_before"].as_str() {
            Some(cursor) => path = format!("/prompts/history?limit=2&before={cursor}"),
            None => break,
        }
    }
    let mut oldest_first: Vec<String> = pending
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    oldest_first.reverse();
    assert_eq!(ids, oldest_first);
    // Answering one takes it out of the pending list, not the history.
    let (status, _) = alice
        .post(&format!("/prompts/{}/deny", ids[0]), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, pending) = alice.get("/prompts").await;
    assert_eq!(pending.as_array().unwrap().len(), 4);
    let (_, page) = alice.get("/prompts/history?limit=1").await;
    assert_eq!(page["prompts"][0]["id"], ids[0].as_str());
    assert_eq!(page["prompts"][0]["status"], "denied");

    let (status, err) = alice.get("/prompts/history?before=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    let (status, _) = alice.get("/me/access-log?before=-1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Nobody else's pages.
    let bob = Client::signed_up(&server, "bob").await;
    let (_, theirs) = bob.get("/prompts/history").await;
    assert!(theirs["prompts"].as_array().unwrap().is_empty());
}

/// What an app asks for with a field of its own.
async fn probe_with(client: &Client, name: &str, value: Option<&str>, fields: Value) -> String {
    let (status, v) = client
        .post(
            "/apps/dev.superapp.testing.probe/events",
            json!({"name": name, "value": value, "fields": fields}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    texts(&v)[0].clone()
}

/// Words an app puts into the host's own dialogs and chats (a payment's
/// description, a document request's purpose and verifier, a card's title,
/// a notification) cannot carry a direction override that would turn the
/// host's sentence around them: each is refused as `invalid`, and nothing
/// is asked of the user.
#[tokio::test]
async fn an_app_cannot_turn_the_hosts_dialogs_around_with_direction_overrides() {
    let s = setup(&["testing/probe"]);
    let server = serve(&s);
    let alice = Client::signed_up(&server, "alice").await;
    // Consent to notify first, so the text itself is what is judged.
    assert!(probe(&alice, "notify", Some("first"))
        .await
        .starts_with("err: consent-required"));
    let (_, prompts) = alice.get("/prompts").await;
    let id = prompts[0]["id"].as_str().unwrap().to_string();
    alice
        .post(&format!("/prompts/{id}/approve"), json!({}))
        .await;
    let turned = "Refund \u{202E}21.36 RUE uoy ot";
    let answers = [
        probe_with(
            &alice,
            "payments",
            None,
            json!({"description": turned, "idempotency-key": "bidi"}),
        )
        .await,
        probe_with(&alice, "documents", None, json!({"purpose": turned})).await,
        probe_with(
            &alice,
            "documents-present",
            None,
            json!({"audience": format!("City {turned}")}),
        )
        .await,
        probe_with(&alice, "share-card", None, json!({"title": turned})).await,
        probe_with(&alice, "notify", Some(turned), json!({})).await,
    ];
    for answer in &answers {
        assert!(answer.starts_with("err: invalid"), "{answer}");
    }
    // Nor words that show as nothing: the sheet would read "For" and then
    // nothing at all.
    let blank = "\u{200B}\u{200E}";
    let answers = [
        probe_with(
            &alice,
            "payments",
            None,
            json!({"description": blank, "idempotency-key": "blank"}),
        )
        .await,
        probe_with(&alice, "documents", None, json!({"purpose": blank})).await,
        probe_with(&alice, "share-card", None, json!({"title": blank})).await,
        probe_with(&alice, "notify", Some(blank), json!({})).await,
    ];
    for answer in &answers {
        assert!(answer.starts_with("err: invalid"), "{answer}");
    }
    // Nor marks stacked over the sheet's other lines (joiners between them
    // do not start a new stack).
    let stacked = format!("Bill{}", "\u{0336}\u{200D}".repeat(40));
    let answers = [
        probe_with(
            &alice,
            "payments",
            None,
            json!({"description": stacked, "idempotency-key": "marks"}),
        )
        .await,
        probe_with(&alice, "documents", None, json!({"purpose": stacked})).await,
        probe_with(
            &alice,
            "documents-present",
            None,
            json!({"audience": stacked}),
        )
        .await,
    ];
    for answer in &answers {
        assert!(answer.starts_with("err: invalid"), "{answer}");
    }
    let (_, prompts) = alice.get("/prompts").await;
    assert_eq!(prompts, json!([]), "nothing was put before the user");
    // The same words without the override go through.
    let plain = probe_with(
        &alice,
        "payments",
        None,
        json!({"description": "Refund to you", "idempotency-key": "plain"}),
    )
    .await;
    assert!(plain.starts_with("ok: "), "{plain}");
    assert_eq!(
        probe(
            &alice,
            "notify",
            Some("\u{05E9}\u{05DC}\u{05D5}\u{05DD} \u{2067}world\u{2069}")
        )
        .await,
        "ok: ()",
        "right-to-left text and isolates are welcome"
    );
}

/// A stored package damaged offline is the host's fault, not the user's:
/// launching its app answers 503 `app-unavailable` (no hashes or paths),
/// and every other app goes on.
#[tokio::test]
async fn a_stored_package_that_no_longer_loads_answers_503_and_others_go_on() {
    use superapp_store::{Abort, Store, Tree};
    let s = hello_and_probe_opened_then_stopped().await;
    {
        let store = Store::open(&s.data.join("store")).unwrap();
        let hello: Vec<Vec<u8>> = store
            .scan(Tree::Packages, b"", None, usize::MAX, false)
            .unwrap()
            .into_iter()
            .filter(|(_, v)| {
                let id = b"id = \"dev.superapp.hello\"";
                v.windows(id.len()).any(|w| w == id)
            })
            .map(|(k, _)| k)
            .collect();
        assert_eq!(hello.len(), 1);
        store
            .transact(&[Tree::Packages], |t| {
                t.put(Tree::Packages, &hello[0], b"not a package")?;
                Ok::<_, Abort<()>>(())
            })
            .unwrap();
        store.close().unwrap();
    }
    // Nothing precompiled to fall back on, and served from the registry
    // alone (not published again from the apps directory).
    std::fs::remove_dir_all(s.data.join("cache")).unwrap();
    let server = Server::start_in(&s.data, &[]);
    let (alice, body) = hello_is_unavailable_to_alice(&server).await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("dev.superapp.hello") && !message.contains("sha256"),
        "{message}"
    );
    assert_eq!(probe(&alice, "clock", None).await.get(..3), Some("ok:"));
    // The node stays ready for everything else, and says what does not load.
    let ready = readyz(&server).await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(
        ready["apps_unavailable"],
        json!(["dev.superapp.hello@0.1.0"])
    );
}

/// Users read an app's name and reasons from its registry record; a record
/// changed offline apart from its signed package (a reason rewritten) is
/// caught when the package is loaded, though its precompiled code is still
/// in the cache: the app answers 503 `app-unavailable` and leaves the
/// directory; the others go on.
#[tokio::test]
async fn a_release_record_changed_apart_from_its_signed_package_is_not_served() {
    use superapp_store::{Abort, Store, Tree};
    let s = hello_and_probe_opened_then_stopped().await;
    {
        let store = Store::open(&s.data.join("store")).unwrap();
        let key = b"r\0dev.superapp.hello\x000.1.0";
        let record = store.get_raw(Tree::Registry, key).unwrap().unwrap();
        let honest = "Remembers your name and how often you visited.";
        let text = String::from_utf8(record).unwrap();
        assert!(text.contains(honest), "{text}");
        let edited = text.replace(honest, "Never stores anything about you.");
        store
            .transact(&[Tree::Registry], |t| {
                t.put(Tree::Registry, key, edited.as_bytes())?;
                Ok::<_, Abort<()>>(())
            })
            .unwrap();
        store.close().unwrap();
    }
    let log = s.data.with_file_name("served.log");
    let server = Server::spawn_binary(
        std::path::Path::new(env!("CARGO_BIN_EXE_superapp")),
        &s.data,
        &[],
        &[],
        std::process::Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    let (alice, _) = hello_is_unavailable_to_alice(&server).await;
    only_the_probe_is_listed_and_opens(&alice).await;
    assert!(server.terminate().success());
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("differs from its signed package in: capabilities"),
        "{log}"
    );
}

/// A stopped server's data directory with hello and the probe published
/// and listed, hello opened once by alice (password `alice-password`).
async fn hello_and_probe_opened_then_stopped() -> Setup {
    let s = setup(&["hello", "testing/probe"]);
    let server = serve(&s);
    let alice = Client::signed_up(&server, "alice").await;
    let (status, _) = alice
        .post("/apps/dev.superapp.hello/launch", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, apps) = alice.get("/apps").await;
    assert_eq!(apps.as_array().unwrap().len(), 2, "{apps}");
    assert!(server.terminate().success());
    s
}

/// alice, signed in again, and the 503 `app-unavailable` her launch of
/// hello answers.
async fn hello_is_unavailable_to_alice(server: &Server) -> (Client, Value) {
    let mut alice = Client::new(server);
    alice.token = Some(alice.login("alice", "alice-password").await);
    let (status, body) = alice
        .post("/apps/dev.superapp.hello/launch", json!({}))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "app-unavailable");
    (alice, body)
}

/// A release record that no longer reads keeps its own app out, not the
/// directory: the others are listed and open, the app answers 503
/// `app-unavailable`, and `/readyz` names it.
#[tokio::test]
async fn an_unreadable_release_record_keeps_only_its_own_app_out() {
    use superapp_store::{Abort, Store, Tree};
    let s = hello_and_probe_opened_then_stopped().await;
    {
        let store = Store::open(&s.data.join("store")).unwrap();
        store
            .transact(&[Tree::Registry], |t| {
                t.put(Tree::Registry, b"r\0dev.superapp.hello\x000.1.0", b"{junk")?;
                Ok::<_, Abort<()>>(())
            })
            .unwrap();
        store.close().unwrap();
    }
    let server = Server::start_in(&s.data, &[]);
    let (alice, _) = hello_is_unavailable_to_alice(&server).await;
    only_the_probe_is_listed_and_opens(&alice).await;
    let ready = readyz(&server).await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["apps_unavailable"], json!(["dev.superapp.hello"]));
}

/// The directory lists the probe alone (hello is out), and it opens.
async fn only_the_probe_is_listed_and_opens(alice: &Client) {
    let (status, apps) = alice.get("/apps").await;
    assert_eq!(status, StatusCode::OK, "{apps}");
    let ids: Vec<&str> = apps
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert!(ids.len() == 1 && ids[0].contains("probe"), "{apps}");
    assert_eq!(probe(alice, "clock", None).await.get(..3), Some("ok:"));
}
