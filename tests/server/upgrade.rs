//! A data directory an earlier release wrote opens with this host and reads
//! the same. Each recording under `tests/fixtures/upgrade` holds such a
//! directory (made by `scripts/upgrade-fixture.sh` with that release's own
//! build, driven by the recorder below), what each user and the operator
//! read from it before the stop, and the keys the recorder made; the test
//! serves it with this build, reads it again, signs with those keys, keeps
//! using it, and checks the ledger and the audit log offline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::*;
use crate::hospital::{buttons, pairs, prompt, shows, take, weber_slot, HOSPITAL};
use crate::payments::{balance, wallet_cli};

const CITY: &str = "dev.superapp.city-payments";
const WALLET: &str = "dev.superapp.document-wallet";
/// The demo users' password.
const DEMO_PASSWORD: &str = "demo-password";

/// What each user reads, recorded before the stop and compared after.
const USER_READS: [&str; 9] = [
    "/me",
    "/apps",
    "/conversations",
    "/wallet",
    "/wallet/transactions?currency=EUR",
    "/me/documents",
    "/me/grants",
    "/me/access-log",
    "/prompts/history",
];

#[tokio::test]
async fn every_recorded_data_directory_of_an_earlier_release_opens_and_reads_the_same() {
    let folder = repo().join("tests/fixtures/upgrade");
    let mut recordings: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tar"))
        .collect();
    recordings.sort();
    assert!(!recordings.is_empty(), "no recording in {folder:?}");
    for recording in recordings {
        opens_and_reads_the_same(&recording).await;
    }
}

async fn opens_and_reads_the_same(recording: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    tar::Archive::new(std::fs::File::open(recording).unwrap())
        .unpack(tmp.path())
        .unwrap();
    let expected: Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("expect.json")).unwrap()).unwrap();
    let release = expected["release"].as_str().unwrap();
    let data = tmp.path().join("data");

    // Served as that release left it: its apps, its users, no demo set-up.
    let server = Server::start_in(&data, &[]);
    let mut users = BTreeMap::new();
    for (user, recorded) in expected["users"].as_object().unwrap() {
        let client = signed_in(&server, user, recorded["password"].as_str().unwrap()).await;
        for (path, before) in recorded["reads"].as_object().unwrap() {
            let (status, now) = client.get(path).await;
            assert_eq!(status, StatusCode::OK, "{release}, {user}, {path}: {now}");
            holds(before, &now, &format!("{release}, {user}, {path}"));
        }
        users.insert(user.clone(), client);
    }
    let mut operator = Client::new(&server);
    operator.token = Some(server.operator_token());
    for (path, before) in expected["operator"].as_object().unwrap() {
        let (status, now) = operator.get(path).await;
        assert_eq!(status, StatusCode::OK, "{release}, operator, {path}: {now}");
        holds(before, &now, &format!("{release}, operator, {path}"));
    }
    // A session that release ended stays ended.
    for token in expected["ended_sessions"].as_array().unwrap() {
        let mut stale = Client::new(&server);
        stale.token = Some(token.as_str().unwrap().to_string());
        let (status, body) = stale.get("/me").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{release}: {body}");
    }

    // Keys keep their roles: the publisher's signs for it, the distrusted
    // auditor's for nobody.
    let key = |role: &str| {
        let path = tmp.path().join(expected["keys"][role].as_str().unwrap());
        path.to_str().unwrap().to_string()
    };
    let balance_with = |key: String| {
        let base = server.base.clone();
        tokio::task::spawn_blocking(move || {
            superapp_cli(["merchant", "balance", "--server", &base, "--key", &key])
        })
    };
    let (ok, out) = balance_with(key("publisher")).await.unwrap();
    assert!(ok, "{release}: the publisher's key: {out}");
    let (ok, out) = balance_with(key("distrusted_auditor")).await.unwrap();
    assert!(
        !ok && out.contains("neither a registered publisher's nor a trusted auditor's"),
        "{release}: the distrusted auditor's key: {out}"
    );

    // Kept in use: each conversation numbers on from where it stopped, and
    // the app that release published takes the next payment.
    let alice = &users["alice"];
    for (conversation, count) in expected["conversations"].as_object().unwrap() {
        let (status, sent) = alice
            .send(
                conversation,
                &format!("after-{release}"),
                "after the upgrade",
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{release}: {sent}");
        assert_eq!(sent["seq"].as_u64(), Some(count.as_u64().unwrap() + 1));
    }
    let before = balance(alice).await;
    let paid = pay_first_bill(alice, DEMO_PASSWORD).await;
    assert_eq!(balance(alice).await, before - paid, "{release}");
    assert!(server.terminate().success());

    // Offline, the ledger's sums and the audit chain hold across versions.
    let (ok, out) = wallet_cli(&data, &["check"]);
    assert!(ok, "{release}: wallet check: {out}");
    let (ok, out) = superapp_cli(["audit", "verify-log", "--data-dir", data.to_str().unwrap()]);
    assert!(ok, "{release}: audit verify-log: {out}");
}

/// Record this release's data directory: run by `scripts/upgrade-fixture.sh`
/// with the release's own build (`SUPERAPP_FIXTURE_BINARY`) and plugins.
#[tokio::test]
#[ignore = "records a fixture with an earlier release's build: scripts/upgrade-fixture.sh"]
async fn record_a_data_directory_of_this_release() {
    let var = |name: &str| {
        std::env::var(name)
            .unwrap_or_else(|_| panic!("{name} is not set: use scripts/upgrade-fixture.sh"))
    };
    let binary = PathBuf::from(var("SUPERAPP_FIXTURE_BINARY"));
    let plugins = var("SUPERAPP_FIXTURE_PLUGINS");
    let out = PathBuf::from(var("SUPERAPP_FIXTURE_OUT"));
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Server::spawn_binary(
        &binary,
        &data,
        &["--demo", "--plugins", &plugins],
        &[],
        Stdio::inherit(),
    );
    let alice = signed_in(&server, "alice", DEMO_PASSWORD).await;
    let bob = signed_in(&server, "bob", DEMO_PASSWORD).await;

    // Money: a bill paid, and an appointment booked with the insurance
    // policy disclosed and paid.
    pay_first_bill(&alice, DEMO_PASSWORD).await;
    alice
        .post(&format!("/apps/{HOSPITAL}/launch"), json!({}))
        .await;
    let slot = weber_slot(&alice, 3).await;
    let reference = pairs(&take(&alice, &slot).await)["Reference"].clone();
    alice
        .act(HOSPITAL, "insurance", Some(&reference), json!({}))
        .await;
    alice
        .approve(&prompt(&alice, "document").await, json!({}))
        .await;
    alice
        .act(HOSPITAL, "pay", Some(&reference), json!({}))
        .await;
    let booked = alice
        .approve(
            &prompt(&alice, "payment").await,
            json!({"password": DEMO_PASSWORD}),
        )
        .await;
    assert!(shows(&booked, "Paid and booked"), "{booked}");

    // Chat: a direct conversation and a group, partly read.
    let direct = alice.direct_with("bob").await;
    let (status, group) = alice.group("Before the upgrade", &["bob"]).await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    let group = group["id"].as_str().unwrap().to_string();
    let mut conversations = BTreeMap::new();
    for (conversation, lines) in [(&direct, 3), (&group, 2)] {
        for i in 0..lines {
            let (from, text) = if i % 2 == 0 {
                (&alice, "from alice")
            } else {
                (&bob, "from bob")
            };
            let (status, sent) = from.send(conversation, &format!("m{i}"), text).await;
            assert_eq!(status, StatusCode::CREATED, "{sent}");
        }
        conversations.insert(conversation.clone(), json!(lines));
    }
    let (status, read) = bob
        .post(&format!("/conversations/{direct}/read"), json!({"seq": 2}))
        .await;
    assert_eq!(status, StatusCode::OK, "{read}");

    // The wallet may list the documents of both; bob takes that back.
    for user in [&alice, &bob] {
        user.post(&format!("/apps/{WALLET}/launch"), json!({}))
            .await;
        user.approve(&prompt(user, "consent").await, json!({}))
            .await;
    }
    let grant = format!("/me/grants/{WALLET}/documents");
    let (status, body) = bob.call(Method::DELETE, &grant, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    // A session signed out of.
    let other = signed_in(&server, "bob", DEMO_PASSWORD).await;
    let (status, body) = other.call(Method::DELETE, "/sessions/current", None).await;
    assert!(status.is_success(), "{status} {body}");
    let ended = other.token.clone().unwrap();
    assert_eq!(other.get("/me").await.0, StatusCode::UNAUTHORIZED);

    // What everyone reads before the stop.
    let mut users = serde_json::Map::new();
    for (name, client) in [("alice", &alice), ("bob", &bob)] {
        let mut paths: Vec<String> = USER_READS.iter().map(|p| p.to_string()).collect();
        paths.extend(
            conversations
                .keys()
                .map(|c| format!("/conversations/{c}/messages?after=0&limit=500")),
        );
        users.insert(
            name.to_string(),
            json!({"password": DEMO_PASSWORD, "reads": reads(client, &paths).await}),
        );
    }
    // The registry: a publisher of the operator's, and an auditor trusted
    // then distrusted; their keys go into the recording.
    let mut operator = Client::new(&server);
    operator.token = Some(server.operator_token());
    let keys = tmp.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let generate = |name: &str| {
        let out = std::process::Command::new(&binary)
            .args(["keys", "generate", "--out"])
            .arg(keys.join(name))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let (publisher, auditor) = (
        generate("publisher.pem"),
        generate("distrusted-auditor.pem"),
    );
    let (status, body) = operator
        .post(
            "/registry/publishers",
            json!({"id": "acme", "name": "Acme Clinics", "keys": [publisher]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = operator
        .post(
            "/registry/auditors",
            json!({"key": auditor, "name": "Former auditor"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = operator
        .call(
            Method::DELETE,
            &format!("/registry/auditors/{auditor}"),
            None,
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    let operator = reads(
        &operator,
        &[
            "/operator/ledger".to_string(),
            "/registry/publishers".to_string(),
            "/registry/auditors".to_string(),
            "/registry/apps".to_string(),
        ],
    )
    .await;
    assert!(server.terminate().success());

    let expected = json!({
        "release": var("SUPERAPP_FIXTURE_RELEASE"),
        "users": users,
        "operator": operator,
        "ended_sessions": [ended],
        "conversations": conversations,
        "keys": {
            "publisher": "keys/publisher.pem",
            "distrusted_auditor": "keys/distrusted-auditor.pem",
        },
    });
    write_recording(&out, &data, &keys, &expected);
}

/// Answers of `paths` (each must be 200), by path.
async fn reads(client: &Client, paths: &[String]) -> Value {
    let mut answers = serde_json::Map::new();
    for path in paths {
        let (status, body) = client.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        answers.insert(path.clone(), body);
    }
    Value::Object(answers)
}

/// The data directory as `data/` (less what the host rebuilds: the demo's
/// built apps, precompiled code), the keys the recorder made as `keys/` and
/// the expectations as `expect.json`.
fn write_recording(out: &Path, data: &Path, keys: &Path, expected: &Value) {
    let mut tar = tar::Builder::new(std::fs::File::create(out).unwrap());
    // As they are: a key file keeps its 0600.
    tar.mode(tar::HeaderMode::Complete);
    tar.append_dir("data", data).unwrap();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for entry in entries {
        let name = entry.file_name().unwrap().to_str().unwrap();
        if matches!(name, "demo-apps" | "cache") {
            continue;
        }
        let inside = Path::new("data").join(name);
        if entry.is_dir() {
            tar.append_dir_all(&inside, &entry).unwrap();
        } else {
            tar.append_path_with_name(&entry, &inside).unwrap();
        }
    }
    tar.append_dir_all("keys", keys).unwrap();
    let json = serde_json::to_vec_pretty(expected).unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_size(json.len() as u64);
    header.set_mode(0o644);
    tar.append_data(&mut header, "expect.json", json.as_slice())
        .unwrap();
    tar.finish().unwrap();
}

async fn signed_in(server: &Server, user: &str, password: &str) -> Client {
    let mut client = Client::new(server);
    client.token = Some(client.login(user, password).await);
    client
}

/// Pay the first bill city payments offers and confirm it; the amount paid.
async fn pay_first_bill(client: &Client, password: &str) -> i64 {
    let (status, home) = client
        .post(&format!("/apps/{CITY}/launch"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{home}");
    let (_, bill) = buttons(&home, "pay")
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no bill to pay: {home}"));
    client.act(CITY, "pay", Some(&bill), json!({})).await;
    let sheet = prompt(client, "payment").await;
    let amount = sheet["payment"]["amount"].as_i64().unwrap();
    let receipt = client.approve(&sheet, json!({"password": password})).await;
    assert!(shows(&receipt, "Paid. Thank you!"), "{receipt}");
    amount
}

/// Whether `now` still says everything `before` said: the same values,
/// objects with at least the same fields (a later version may add some),
/// lists of the same length, item by item.
fn holds(before: &Value, now: &Value, at: &str) {
    match (before, now) {
        (Value::Object(b), Value::Object(n)) => {
            for (key, value) in b {
                let found = n
                    .get(key)
                    .unwrap_or_else(|| panic!("{at}: {key:?} is gone from {now}"));
                holds(value, found, &format!("{at}.{key}"));
            }
        }
        (Value::Array(b), Value::Array(n)) => {
            assert_eq!(b.len(), n.len(), "{at}: {before} became {now}");
            for (i, (b, n)) in b.iter().zip(n).enumerate() {
                holds(b, n, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(before, now, "{at}"),
    }
}
