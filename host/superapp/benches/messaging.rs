//! Messaging benchmark against the real server binary on loopback: durable
//! messages/s sent by HTTP requests and over WebSockets, send→WebSocket
//! delivery latency with 100 connected members, and the memory cost of idle
//! WebSocket connections. Prints a table.
//!
//! Run with `cargo bench -p superapp --bench messaging`.
//! `SUPERAPP_BENCH_SECONDS` (default 5) sets the throughput run length,
//! `SUPERAPP_BENCH_ROUNDS` (default 3) the runs whose median is shown,
//! `SUPERAPP_BENCH_IDLE` (default 10000) the idle connection count,
//! `SUPERAPP_BENCH_SENDERS` (default 64) the concurrent senders,
//! `SUPERAPP_BENCH_ONLY` (say `WebSocket`) runs only the throughput
//! measures whose name contains it (for a profile of one of them).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

// The black-box tests' server harness: the real binary on an ephemeral
// loopback port, with fast password hashing.
#[allow(dead_code)]
#[path = "../../../tests/server/common.rs"]
mod common;

mod load;
mod stats;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn post(
    http: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut req = http.post(url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn ws(
    base: &str,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut req = format!("{}/ws", base.replacen("http://", "ws://", 1))
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket")
        .0
}

/// The median of `rounds` runs of `run` (given a run's length in seconds,
/// the rate it measured), after a one-second warm-up, and every run; then
/// the CPU time per message of the server (`pid`) and of this load
/// generator (`stats::cpu_split`).
async fn median_rate<F: std::future::Future<Output = f64>>(
    pid: u32,
    secs: u64,
    rounds: usize,
    run: impl Fn(u64) -> F,
) -> String {
    run(1).await;
    let mut rates = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..rounds {
        let meter = stats::CpuMeter::start(pid);
        let rate = run(secs).await;
        // A run's messages: its rate over its length (connecting is not
        // timed, and costs little beside it).
        cpu.push(meter.per(rate * secs as f64));
        rates.push(rate);
    }
    format!(
        "{}; CPU per message, server / load generator (ratio): {}",
        stats::median_of_runs(rates),
        stats::cpu_split(&cpu)
    )
}

/// Durable messages/s: `senders` clients, each on its own connection,
/// send into `conversations` (round robin) as fast as answers come back.
async fn throughput(
    base: &str,
    token: &str,
    conversations: &[String],
    secs: u64,
    senders: usize,
) -> f64 {
    let api = &base[base.find("/api/").expect("an /api/ base")..];
    let mut conns = Vec::new();
    for _ in 0..senders {
        conns.push(load::Conn::open(base).await);
    }
    // Client ids unique across runs: a repeated one would be a replay.
    static RUN: AtomicU64 = AtomicU64::new(0);
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (t, mut conn) in conns.into_iter().enumerate() {
        let (token, done) = (token.to_string(), done.clone());
        let path = format!(
            "{api}/conversations/{}/messages",
            conversations[t % conversations.len()]
        );
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < deadline {
                let body = json!({"client_id": format!("{run}-{t}-{i}"), "text": "throughput"});
                let (status, answer) = conn
                    .post(&path, &token, serde_json::to_vec(&body).unwrap().into())
                    .await;
                assert_eq!(status, 201, "{}", String::from_utf8_lossy(&answer));
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Durable messages/s over WebSockets: one connection per `(token,
/// conversation)` of `senders`, each keeping `window` sends unacknowledged
/// as long as the run lasts (1: the next send waits for the previous
/// acknowledgement, as over HTTP).
async fn ws_throughput(base: &str, senders: &[(String, String)], window: usize, secs: u64) -> f64 {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let mut sockets = Vec::new();
    for (token, _) in senders {
        sockets.push(ws(base, token).await);
    }
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (t, (socket, (_, conversation))) in sockets.into_iter().zip(senders).enumerate() {
        let (done, conversation) = (done.clone(), conversation.clone());
        tasks.push(tokio::spawn(async move {
            let (mut sink, mut stream) = socket.split();
            let frame = |i: u64| {
                WsMessage::Text(
                    json!({"type": "send", "conversation_id": conversation, "client_id": format!("ws{run}-{t}-{i}"), "text": "throughput"})
                        .to_string()
                        .into(),
                )
            };
            let (mut sent, mut acked) = (0u64, 0u64);
            while sent < window as u64 {
                sink.send(frame(sent)).await.expect("send");
                sent += 1;
            }
            while acked < sent {
                match stream.next().await {
                    Some(Ok(WsMessage::Text(t))) => {
                        assert!(t.contains("\"type\":\"sent\""), "{t}");
                        acked += 1;
                        done.fetch_add(1, Ordering::Relaxed);
                        if Instant::now() < deadline {
                            sink.send(frame(sent)).await.expect("send");
                            sent += 1;
                        }
                    }
                    Some(Ok(_)) => {}
                    other => panic!("sender stopped: {other:?}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let secs: u64 = stats::env_or("SUPERAPP_BENCH_SECONDS", 5);
    let idle: usize = stats::env_or("SUPERAPP_BENCH_IDLE", 10_000);
    let senders: usize = stats::env_or("SUPERAPP_BENCH_SENDERS", 64);
    let rounds: usize = stats::env_or("SUPERAPP_BENCH_ROUNDS", 3).max(1);
    let tmp = tempfile::tempdir().unwrap();
    // Every client here is one loopback address, and the idle connections
    // are one user's: lift the per-client and per-user caps (and the total)
    // above the idle connections this bench holds.
    let cap = (idle + 1_000).to_string();
    let server = common::Server::start_in(
        &tmp.path().join("data"),
        &[
            ("SUPERAPP_MAX_CONNECTIONS", cap.as_str()),
            ("SUPERAPP_MAX_CONNECTIONS_PER_CLIENT", cap.as_str()),
            ("SUPERAPP_MAX_LIVE_CONNECTIONS_PER_USER", cap.as_str()),
        ],
    );
    let base = server.base.clone();
    let pid = server.pid();
    let http = common::http_client();
    let mut rows: Vec<(String, String)> = Vec::new();

    // Users: one sender and 100 members.
    let sender = load::signed_up(&http, &base, "sender").await;
    let mut members = Vec::new();
    for i in 0..100 {
        members.push((
            format!("member{i}"),
            load::signed_up(&http, &base, &format!("member{i}")).await,
        ));
    }

    // Throughput: concurrent senders over 64 direct conversations, then into one group.
    let mut directs = Vec::new();
    for (name, _) in members.iter().take(64) {
        let (_, c) = post(
            &http,
            format!("{base}/conversations"),
            Some(&sender),
            json!({"kind": "direct", "with": name}),
        )
        .await;
        directs.push(c["id"].as_str().unwrap().to_string());
    }
    let only: String = stats::env_or("SUPERAPP_BENCH_ONLY", String::new());
    let wanted = |name: &str| name.contains(only.as_str());
    let name = format!("durable messages/s, {senders} senders over 64 conversations");
    if wanted(&name) {
        let spread = median_rate(pid, secs, rounds, |secs| {
            throughput(&base, &sender, &directs, secs, senders)
        })
        .await;
        rows.push((name, spread));
    }
    let names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
    let (_, group) = post(
        &http,
        format!("{base}/conversations"),
        Some(&sender),
        json!({"kind": "group", "title": "bench", "members": names}),
    )
    .await;
    let group = group["id"].as_str().unwrap().to_string();
    // The same over WebSockets. Over 64 conversations: each member sends
    // into its direct conversation with the sender from its own connection
    // (its only session, which gets acknowledgements, not pushes; nobody
    // else is connected, as in the HTTP runs). Into one conversation: one
    // connection with 64 sends in flight (64 connected members would turn
    // this into a fan-out measure).
    let ws_senders: Vec<(String, String)> = members
        .iter()
        .zip(&directs)
        .map(|((_, token), c)| (token.clone(), c.clone()))
        .collect();
    let name =
        "durable messages/s over WebSockets, 64 senders (one in flight each) over 64 conversations";
    if wanted(name) {
        let ws_spread = median_rate(pid, secs, rounds, |secs| {
            ws_throughput(&base, &ws_senders, 1, secs)
        })
        .await;
        rows.push((name.to_string(), ws_spread));
    }
    let name = "durable messages/s over a WebSocket, one connection with 64 in flight, into one conversation";
    if wanted(name) {
        let one = [(sender.clone(), group.clone())];
        let ws_hot = median_rate(pid, secs, rounds, |secs| {
            ws_throughput(&base, &one, 64, secs)
        })
        .await;
        rows.push((name.to_string(), ws_hot));
    }
    let name = format!("durable messages/s, {senders} senders into one conversation");
    if wanted(&name) {
        let group = std::slice::from_ref(&group);
        let hot = median_rate(pid, secs, rounds, |secs| {
            throughput(&base, &sender, group, secs, senders)
        })
        .await;
        rows.push((name, hot));
    }

    // Delivery latency: every member connected; the send time travels in the text.
    let origin = Instant::now();
    let mut receivers = Vec::new();
    let count = 1_000usize;
    for (_, token) in &members {
        let mut socket = ws(&base, token).await;
        receivers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(count);
            while latencies.len() < count {
                match tokio::time::timeout(Duration::from_secs(30), socket.next()).await {
                    Ok(Some(Ok(WsMessage::Text(t)))) => {
                        let frame: Value = serde_json::from_str(&t).unwrap();
                        let Some(sent) = frame["message"]["text"]
                            .as_str()
                            .and_then(|s| s.strip_prefix("t="))
                        else {
                            continue;
                        };
                        let sent: u64 = sent.parse().unwrap();
                        let now = origin.elapsed().as_nanos() as u64;
                        latencies.push(Duration::from_nanos(now.saturating_sub(sent)));
                    }
                    Ok(Some(Ok(_))) => {}
                    other => panic!("receiver stopped: {other:?}"),
                }
            }
            latencies
        }));
    }
    for i in 0..count {
        let sent = origin.elapsed().as_nanos();
        let url = format!("{base}/conversations/{group}/messages");
        let (status, _) = post(
            &http,
            url,
            Some(&sender),
            json!({"client_id": format!("lat-{i}"), "text": format!("t={sent}")}),
        )
        .await;
        assert_eq!(status, 201);
    }
    let mut all = Vec::new();
    for r in receivers {
        all.extend(r.await.unwrap());
    }
    all.sort();
    rows.push((
        format!("send→push latency p50, 100 members, {count} messages"),
        stats::millis(stats::percentile(&all, 0.50)),
    ));
    rows.push((
        format!("send→push latency p99, 100 members, {count} messages"),
        stats::millis(stats::percentile(&all, 0.99)),
    ));

    // Idle connections: server memory per held WebSocket.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid);
    let mut held = Vec::with_capacity(idle);
    for _ in 0..idle {
        held.push(ws(&base, &sender).await);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(pid);
    let (status, _) = post(
        &http,
        format!("{base}/conversations/{group}/messages"),
        Some(&sender),
        json!({"client_id": "after-idle", "text": "still here"}),
    )
    .await;
    assert_eq!(
        status, 201,
        "the server still answers with {idle} idle connections"
    );
    rows.push((
        "idle WebSocket connections held".to_string(),
        format!("{}", held.len()),
    ));
    rows.push((
        "server RSS before / after".into(),
        format!("{} / {} MiB", before / 1024, after / 1024),
    ));
    rows.push((
        "memory per idle connection".into(),
        format!(
            "{:.1} KiB",
            (after.saturating_sub(before)) as f64 / idle as f64
        ),
    ));
    drop(held);

    println!();
    println!(
        "superapp messaging benchmark (release server on loopback; client in the same machine)"
    );
    println!("| measure | value |");
    println!("| --- | --- |");
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
}
