//! Server benchmark for mini-program traffic: app events/s and launches/s
//! through the real server binary on loopback, and launch latency at 200
//! connections. Every answer is durable before it is sent (the server
//! flushes what the event wrote, and the access log, before answering).
//! Prints a table.
//!
//! Run with `cargo bench -p superapp --bench events`.
//! `SUPERAPP_BENCH_SECONDS` (default 5) sets each run's length,
//! `SUPERAPP_BENCH_ROUNDS` (default 3) the runs whose median is shown,
//! `SUPERAPP_BENCH_ONLY` (say `events` or `launches`) runs only the measures
//! whose name contains it (for a profile of one kind of request).
//!
//! Beside rates and latencies it prints the CPU time the server and this
//! load generator spent per request, and their ratio: the load generator's
//! work per request is the same whatever the server does, so the ratio
//! compares two builds of the server even when this shared machine's speed
//! drifts between their runs (as it does, by up to a quarter within
//! minutes, moving rates and CPU times alike).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

// The black-box tests' server harness: the real binary on an ephemeral
// loopback port, with fast password hashing.
#[allow(dead_code)]
#[path = "../../../tests/server/common.rs"]
mod common;

mod load;
mod stats;
use stats::{cpu_split, env_or, median, millis, percentile, CpuMeter};

const HELLO: &str = "dev.superapp.hello";
/// Where the server's API is (`common::Server::base` ends in it).
const API: &str = "/api/v1";

/// What one run measured.
struct Run {
    per_sec: f64,
    latencies: Vec<Duration>,
    /// The server's CPU time (all its threads) per answered request: less
    /// noisy than the rate on a shared machine, so it tells a change to the
    /// server's work per request apart from a change in the machine.
    server_cpu: Duration,
    /// This load generator's CPU time per request, on the same cores.
    client_cpu: Duration,
}

/// `connections` clients, each its own user on its own connection, send
/// `method path` with `body` as fast as answers come back, for `secs`.
async fn drive(
    server_pid: u32,
    base: &str,
    tokens: &[String],
    connections: usize,
    (method, path, body): &(hyper::Method, String, Value),
    secs: u64,
) -> Run {
    let body = if body.is_null() {
        bytes::Bytes::new()
    } else {
        bytes::Bytes::from(serde_json::to_vec(body).expect("json"))
    };
    let mut conns = Vec::new();
    for _ in 0..connections {
        conns.push(load::Conn::open(base).await);
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    let cpu = CpuMeter::start(server_pid);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, mut conn) in conns.into_iter().enumerate() {
        let (method, path, token, body) = (
            method.clone(),
            path.clone(),
            tokens[c % tokens.len()].clone(),
            body.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let (status, answer) = conn
                    .send(method.clone(), &path, Some(&token), body.clone())
                    .await;
                assert!(
                    (200..300).contains(&status),
                    "{status}: {}",
                    String::from_utf8_lossy(&answer)
                );
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("client task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (server_cpu, client_cpu) = cpu.per(latencies.len() as f64);
    latencies.sort();
    Run {
        per_sec: latencies.len() as f64 / elapsed,
        latencies,
        server_cpu,
        client_cpu,
    }
}

#[tokio::main]
async fn main() {
    let secs: u64 = env_or("SUPERAPP_BENCH_SECONDS", 5);
    let rounds: usize = env_or("SUPERAPP_BENCH_ROUNDS", 3).max(1);
    let only: String = env_or("SUPERAPP_BENCH_ONLY", String::new());
    let setup = common::setup(&["hello"]);
    // One app takes the whole queue here (the default lets one app fill a
    // quarter of it, for fairness among many): a single-app load.
    let server = common::serve_with(&setup, &[("SUPERAPP_MAX_PENDING_EVENTS_PER_APP", "256")]);
    let base = server.base.clone();
    let pid = server.pid();
    let http = common::http_client();
    let mut tokens = Vec::new();
    for i in 0..200 {
        tokens.push(load::signed_up(&http, &base, &format!("user{i}")).await);
    }
    let post = hyper::Method::POST;
    let event = (
        post.clone(),
        format!("{API}/apps/{HELLO}/events"),
        json!({"name": "ping"}),
    );
    let launch = (post, format!("{API}/apps/{HELLO}/launch"), json!({}));
    // What the HTTP stack and this client do without any work behind them:
    // the liveness probe (no session, no store, no sandbox).
    let probe = (hyper::Method::GET, "/healthz".to_string(), Value::Null);
    // Warm-up: every user's session cached, the app's pool slots touched.
    drive(pid, &base, &tokens, 64, &event, 1).await;
    drive(pid, &base, &tokens, 64, &launch, 1).await;

    let mut rows: Vec<(String, String)> = Vec::new();
    for (name, request, connections) in [
        ("liveness probe (the HTTP stack alone)", &probe, 64usize),
        ("events (hello `ping`: one host call)", &event, 64),
        (
            "launches (hello: two reads, one durable write)",
            &launch,
            64,
        ),
        (
            "launches (hello: two reads, one durable write)",
            &launch,
            200,
        ),
    ] {
        if !name.contains(only.as_str()) {
            continue;
        }
        let mut rates = Vec::new();
        let mut p50 = Vec::new();
        let mut p99 = Vec::new();
        let mut cpu = Vec::new();
        for _ in 0..rounds {
            let run = drive(pid, &base, &tokens, connections, request, secs).await;
            rates.push(run.per_sec);
            p50.push(percentile(&run.latencies, 0.50));
            p99.push(percentile(&run.latencies, 0.99));
            cpu.push((run.server_cpu, run.client_cpu));
        }
        rates.sort_by(f64::total_cmp);
        let rate = rates[rates.len() / 2];
        rows.push((
            format!("{name}/s, {connections} connections"),
            format!(
                "{rate:.0} (runs: {})",
                rates
                    .iter()
                    .map(|r| format!("{r:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
        rows.push((
            format!("{name}, {connections} connections: p50 / p99"),
            format!("{} / {}", millis(median(p50)), millis(median(p99))),
        ));
        rows.push((
            format!("{name}, {connections} connections: CPU per request, server / load generator (ratio)"),
            cpu_split(&cpu),
        ));
    }

    println!();
    println!(
        "superapp events benchmark (release server on loopback, {secs} s per run, median of {rounds} runs)"
    );
    println!("| measure | value |");
    println!("| --- | --- |");
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
    drop(server);
}
