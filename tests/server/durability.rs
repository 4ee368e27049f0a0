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
