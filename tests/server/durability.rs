//! Every acknowledged message survives kill -9, with gapless unique seqs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;

use crate::common::*;

#[tokio::test]
async fn kill_9_during_a_burst_loses_no_acknowledged_message() {
    burst_kill_9_and_restart(&[]).await;
}

/// Eight senders burst into one conversation of a server started with
/// `env`; it is killed mid-flight and started again on the same data:
/// every acknowledged message is there, at its seq, and seqs are gapless.
pub(crate) async fn burst_kill_9_and_restart(env: &[(&str, &str)]) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start_in(&dir, env);
    let alice = Client::signed_up(&server, "alice").await;
    let _bob = Client::signed_up(&server, "bob").await;
    let c = alice.direct_with("bob").await;

    // client id -> seq, for every send the server acknowledged.
    let acked: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let mut senders = Vec::new();
    for t in 0..8 {
        let (alice, c, acked) = (alice.clone(), c.clone(), acked.clone());
        senders.push(tokio::spawn(async move {
            for i in 0.. {
                let id = format!("t{t}-{i}");
                let resp = alice
                    .http
                    .post(format!("{}/conversations/{c}/messages", alice.base))
                    .bearer_auth(alice.token.as_ref().unwrap())
                    .json(&serde_json::json!({"client_id": id, "text": "burst"}))
                    .send()
                    .await;
                let Ok(resp) = resp else { return };
                if resp.status() != StatusCode::CREATED {
                    return;
                }
                let Ok(body) = resp.json::<serde_json::Value>().await else {
                    return;
                };
                acked
                    .lock()
                    .unwrap()
                    .insert(id, body["seq"].as_u64().unwrap());
            }
        }));
    }
    // Let the burst run, then pull the plug mid-flight.
    while acked.lock().unwrap().len() < 300 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill9();
    for s in senders {
        s.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let restarted = Server::start_in(&dir, env);
    let mut alice = Client::new(&restarted);
    alice.token = Some(alice.login("alice", "alice-password").await);
    let stored = alice.messages(&c, 0).await;
    let seqs: Vec<u64> = stored.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=stored.len() as u64).collect::<Vec<_>>(),
        "seqs are gapless and unique"
    );
    let by_id: HashMap<&str, u64> = stored
        .iter()
        .map(|m| (m["client_id"].as_str().unwrap(), m["seq"].as_u64().unwrap()))
        .collect();
    assert_eq!(by_id.len(), stored.len(), "no client id stored twice");
    for (id, seq) in &acked {
        assert_eq!(
            by_id.get(id.as_str()),
            Some(seq),
            "acknowledged message {id} lost or moved"
        );
    }
    assert!(stored.len() >= acked.len());
}

/// A full disk (here a limit on the size of the files the server writes,
/// past which a write fails as on a full disk): writes are refused with
/// 503 `store-unavailable` and Retry-After, never a 500; the host stops by
/// itself and says why (what it took in memory may not be on disk, so it
/// must open its store again); started again with space, it goes on from
/// what is on disk: every acknowledged message at its seq, seqs gapless,
/// and the refused send, retried, stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_and_stops_the_host_and_a_restart_loses_nothing_acknowledged() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // SIGXFSZ ignored (kept through exec): a write past the limit fails
    // with EFBIG instead of killing the process.
    let limited = tmp.path().join("limited");
    std::fs::write(
        &limited,
        "#!/bin/sh\ntrap '' XFSZ\nexec prlimit --fsize=\"$FILE_SIZE_LIMIT\" \"$SUPERAPP_BINARY\" \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&limited, std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = tmp.path().join("server.log");
    let mut server = Server::spawn_binary(
        &limited,
        &data,
        &[],
        &[
            ("FILE_SIZE_LIMIT", "3145728"),
            ("SUPERAPP_BINARY", env!("CARGO_BIN_EXE_superapp")),
        ],
        std::process::Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    let alice = Client::signed_up(&server, "alice").await;
    Client::signed_up(&server, "bob").await;
    let chat = alice.direct_with("bob").await;
    let text = "a full disk ".repeat(150);
    let mut acked = Vec::new();
    let refused = loop {
        let id = format!("m{}", acked.len());
        let resp = alice
            .http
            .post(format!("{}/conversations/{chat}/messages", alice.base))
            .bearer_auth(alice.token.as_deref().unwrap())
            .json(&serde_json::json!({"client_id": id, "text": text}))
            .send()
            .await
            .unwrap();
        if resp.status() != StatusCode::CREATED {
            let status = resp.status();
            let retry_after = resp.headers().get("retry-after").cloned();
            let body: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
            assert_eq!(body["error"]["code"], "store-unavailable", "{body}");
            assert!(retry_after.is_some(), "no Retry-After");
            break id;
        }
        let body: serde_json::Value = resp.json().await.unwrap();
        acked.push((id, body["seq"].as_u64().unwrap()));
        assert!(acked.len() < 20_000, "the limit was never reached");
    };
    assert!(acked.len() > 10, "only {} messages went in", acked.len());
    let status = server
        .exited_within(Duration::from_secs(30))
        .expect("the host stops by itself once its store takes no more writes");
    assert!(!status.success(), "{status}");
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("the store could not write to disk"), "{said}");

    let restarted = Server::start_in(&data, &[]);
    let mut alice = Client::new(&restarted);
    alice.token = Some(alice.login("alice", "alice-password").await);
    let stored = alice.messages(&chat, 0).await;
    let seqs: Vec<u64> = stored.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=stored.len() as u64).collect::<Vec<_>>());
    let by_id: HashMap<&str, u64> = stored
        .iter()
        .map(|m| (m["client_id"].as_str().unwrap(), m["seq"].as_u64().unwrap()))
        .collect();
    for (id, seq) in &acked {
        assert_eq!(
            by_id.get(id.as_str()),
            Some(seq),
            "acknowledged {id} lost or moved"
        );
    }
    // The refused send may or may not have landed; retried, it is there once.
    let (status, body) = alice.send(&chat, &refused, &text).await;
    assert!(status.is_success(), "{status} {body}");
    let again = alice.messages(&chat, 0).await;
    let copies = again
        .iter()
        .filter(|m| m["client_id"] == refused.as_str())
        .count();
    assert_eq!(copies, 1);
    assert_eq!(again.len(), acked.len() + 1);
}
