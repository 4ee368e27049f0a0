//! Scale-out benchmark: durable messages/s and app events/s through one,
//! two and three host processes on one PostgreSQL store and one NATS bus
//! (both started here, on loopback and temporary directories), beside one
//! process on the embedded sled store. The load's connections are spread
//! round robin over the nodes. Prints one table.
//!
//! Run with `cargo bench -p superapp --bench cluster` (PostgreSQL and
//! nats-server from `scripts/service-deps.sh`).
//! `SUPERAPP_BENCH_SECONDS` (default 5) sets each run's length,
//! `SUPERAPP_BENCH_ROUNDS` (default 3) the runs whose median is shown,
//! `SUPERAPP_BENCH_NODES` (default 3) the most nodes tried.
//!
//! Everything here shares the machine's cores: the load generator, every
//! host process, PostgreSQL and NATS. On a small machine more nodes cannot
//! add throughput; what the table shows there is what the distributed
//! engines cost against the embedded one, and that adding nodes does not
//! collapse it.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[allow(dead_code)]
#[path = "../../../tests/server/common.rs"]
mod common;
#[path = "../../../tests/support/nats.rs"]
mod nats_server;
#[path = "../../../tests/support/postgres.rs"]
mod pg_server;

mod load;
mod stats;
use stats::env_or;

const HELLO: &str = "dev.superapp.hello";
const API: &str = "/api/v1";
/// Concurrent connections of each load.
const CONNECTIONS: usize = 64;

async fn call(http: &reqwest::Client, url: String, token: Option<&str>, body: Value) -> Value {
    let mut req = http.post(url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("request");
    assert!(resp.status().is_success(), "{}", resp.status());
    resp.json().await.expect("json answer")
}

/// One request of a load: for run `r`, connection `c`'s `i`th request is
/// `path` with `token` and `body` (the three make ids unique, since a
/// message with a client id already used would be a cheap replay).
type Request = dyn Fn(u64, usize, u64) -> (String, String, String) + Send + Sync;

/// [`CONNECTIONS`] clients, spread over `bases`, each sending the request
/// `make` gives it as fast as answers come back for `secs`: answers/s.
async fn drive(bases: &[String], make: Arc<Request>, secs: u64) -> f64 {
    let mut conns = Vec::new();
    for c in 0..CONNECTIONS {
        conns.push(load::Conn::open(&bases[c % bases.len()]).await);
    }
    static RUN: AtomicU64 = AtomicU64::new(0);
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, mut conn) in conns.into_iter().enumerate() {
        let (make, done) = (make.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < deadline {
                let (path, token, body) = make(run, c, i);
                let (status, answer) = conn.post(&path, &token, body.into_bytes().into()).await;
                // Events answer 200; a message 201 (200 would be a replay).
                let fresh = if path.ends_with("/messages") {
                    status == 201
                } else {
                    status == 200
                };
                assert!(fresh, "{status}: {}", String::from_utf8_lossy(&answer));
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// The median of `rounds` runs of `load`, and every run.
async fn measured(bases: &[String], make: Arc<Request>, secs: u64, rounds: usize) -> String {
    let mut rates = Vec::new();
    for _ in 0..rounds {
        rates.push(drive(bases, make.clone(), secs).await);
    }
    stats::median_of_runs(rates)
}

/// The three loads against nodes at `bases` (users made on the first).
async fn row(bases: &[String], secs: u64, rounds: usize) -> [String; 3] {
    let http = common::http_client();
    let sender = load::signed_up(&http, &bases[0], "sender").await;
    let mut users = Vec::new();
    let mut directs = Vec::new();
    for i in 0..CONNECTIONS {
        let name = format!("member{i}");
        users.push(load::signed_up(&http, &bases[0], &name).await);
        let c = call(
            &http,
            format!("{}/conversations", bases[0]),
            Some(&sender),
            json!({"kind": "direct", "with": name}),
        )
        .await;
        directs.push(c["id"].as_str().unwrap().to_string());
    }
    let group = call(
        &http,
        format!("{}/conversations", bases[0]),
        Some(&sender),
        json!({"kind": "group", "title": "bench",
               "members": (0..CONNECTIONS).map(|i| format!("member{i}")).collect::<Vec<_>>()}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();

    let event: Arc<Request> = {
        let users = users.clone();
        let body = json!({"name": "ping"}).to_string();
        Arc::new(move |_, c, _| {
            let path = format!("{API}/apps/{HELLO}/events");
            (path, users[c % users.len()].clone(), body.clone())
        })
    };
    // Each conversation's member writes in it: 64 senders, as many users
    // chat at once. (One user sending into all 64 at once, as this bench
    // did, meets the per-user send limit's record on a shared store in
    // every send's transaction, a hot row no person's sending makes.)
    let spread: Arc<Request> = {
        let (users, directs) = (users.clone(), directs.clone());
        Arc::new(move |r, c, i| {
            let k = c % directs.len();
            let path = format!("{API}/conversations/{}/messages", directs[k]);
            let body = json!({"client_id": format!("s{r}-{c}-{i}"), "text": "bench"}).to_string();
            (path, users[k].clone(), body)
        })
    };
    let hot: Arc<Request> = Arc::new(move |r, c, i| {
        let path = format!("{API}/conversations/{group}/messages");
        let body = json!({"client_id": format!("h{r}-{c}-{i}"), "text": "bench"}).to_string();
        (path, sender.clone(), body)
    });
    // Warm-up: sessions, the app's compiled component on every node.
    drive(bases, event.clone(), 1).await;
    drive(bases, spread.clone(), 1).await;
    [
        measured(bases, event, secs, rounds).await,
        measured(bases, spread, secs, rounds).await,
        measured(bases, hot, secs, rounds).await,
    ]
}

/// Settings every node of a shared store gets.
fn node_env<'a>(apps: &'a Path, store: &'a str, bus: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("SUPERAPP_DEV_APPROVE", "true"),
        ("SUPERAPP_APPS_DIR", apps.to_str().unwrap()),
        ("SUPERAPP_STORE", store),
        ("SUPERAPP_BUS", bus),
        ("SUPERAPP_MAX_CONNECTIONS_PER_CLIENT", "4096"),
        ("SUPERAPP_MAX_PENDING_EVENTS_PER_APP", "256"),
    ]
}

#[tokio::main]
async fn main() {
    let secs: u64 = env_or("SUPERAPP_BENCH_SECONDS", 5);
    let rounds: usize = env_or("SUPERAPP_BENCH_ROUNDS", 3).max(1);
    let most: usize = env_or("SUPERAPP_BENCH_NODES", 3).max(1);
    let mut rows = Vec::new();

    {
        let setup = common::setup(&["hello"]);
        let server = common::serve_with(
            &setup,
            &[
                ("SUPERAPP_MAX_PENDING_EVENTS_PER_APP", "256"),
                ("SUPERAPP_MAX_CONNECTIONS_PER_CLIENT", "4096"),
            ],
        );
        let cells = row(std::slice::from_ref(&server.base), secs, rounds).await;
        rows.push(("1 node, sled (embedded)".to_string(), cells));
    }

    let postgres = pg_server::Postgres::start();
    let nats = nats_server::Nats::start();
    let bus = nats.url();
    for n in 1..=most {
        let setup = common::setup(&["hello"]);
        let store = postgres.database();
        let dirs = tempfile::tempdir().unwrap();
        let env = node_env(&setup.apps, &store, &bus);
        let nodes: Vec<common::Server> = (0..n)
            .map(|i| common::Server::start_in(&dirs.path().join(format!("node{i}")), &env))
            .collect();
        let bases: Vec<String> = nodes.iter().map(|s| s.base.clone()).collect();
        let cells = row(&bases, secs, rounds).await;
        let label = if n == 1 { "node" } else { "nodes" };
        rows.push((format!("{n} {label}, PostgreSQL + NATS"), cells));
    }

    println!();
    println!(
        "superapp scale-out benchmark ({CONNECTIONS} connections spread over the nodes, {secs} s per run, median of {rounds} runs; every answer durable)"
    );
    println!("| setup | events/s (hello `ping`) | messages/s, 64 conversations | messages/s, one conversation |");
    println!("| --- | --- | --- | --- |");
    for (label, [events, spread, hot]) in rows {
        println!("| {label} | {events} | {spread} | {hot} |");
    }
}
