//! Soak benchmark: the release server on loopback under a steady mix of
//! chat messages, app events, payments (an app's sheet confirmed with the
//! password) and wallet transfers from many users, for minutes. Every
//! interval it prints the operations done, the errors (any answer but the
//! expected one, or a failed request), p50 and p99 latency and the
//! server's resident memory; at the end, the same over the whole run.
//!
//! After the mix, a phase of reads only (`SUPERAPP_SOAK_READ_SECS`, default
//! 60: wallet, access log, directory) shows whether memory is held per
//! request or follows the data, which the mix keeps growing; at the end the
//! size of a backup (the live data, taken through the operator API) is
//! printed beside the data directory's size on disk.
//!
//! Run with `cargo bench -p superapp --bench soak`. `SUPERAPP_SOAK_SECS`
//! (default 600) sets the length of the mix, `SUPERAPP_SOAK_WORKERS` (default 32) the
//! concurrent clients, `SUPERAPP_SOAK_INTERVAL` (default 30) the report
//! period in seconds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

#[allow(dead_code)]
#[path = "../../../tests/server/common.rs"]
mod common;
mod stats;
use stats::{millis, percentile};

const PROBE: &str = "dev.superapp.testing.probe";
const HELLO: &str = "dev.superapp.hello";

fn env_num(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Bytes under `dir`, recursively.
fn disk_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => disk_bytes(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Chat,
    Event,
    Payment,
    Transfer,
    /// The read-only phase: bounded reads that write nothing.
    Read,
}

impl Op {
    const ALL: [Op; 5] = [Op::Chat, Op::Event, Op::Payment, Op::Transfer, Op::Read];
    fn name(self) -> &'static str {
        match self {
            Op::Chat => "chat",
            Op::Event => "event",
            Op::Payment => "payment",
            Op::Transfer => "transfer",
            Op::Read => "read",
        }
    }
}

#[derive(Default)]
struct Window {
    samples: Vec<(Op, Duration)>,
    errors: Vec<String>,
}

struct User {
    name: String,
    token: String,
    peer: String,
    chat: String,
}

async fn call(
    http: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<(StatusCode, Value), String> {
    let mut req = match &body {
        Some(b) => http.post(&url).json(b),
        None => http.get(&url),
    };
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    let value = resp.json().await.unwrap_or(Value::Null);
    Ok((status, value))
}

fn expect(got: Result<(StatusCode, Value), String>, want: StatusCode) -> Result<Value, String> {
    match got {
        Ok((s, v)) if s == want => Ok(v),
        Ok((s, v)) => Err(format!("{s}: {v}")),
        Err(e) => Err(e),
    }
}

/// One operation of the mix; `n` makes keys unique.
async fn run(http: &reqwest::Client, base: &str, u: &User, op: Op, n: u64) -> Result<(), String> {
    let t = Some(u.token.as_str());
    match op {
        Op::Chat => {
            let body =
                json!({"client_id": format!("{}-{n}", u.name), "text": format!("message {n}")});
            let url = format!("{base}/conversations/{}/messages", u.chat);
            expect(call(http, url, t, Some(body)).await, StatusCode::CREATED)?;
        }
        Op::Event => {
            let url = format!("{base}/apps/{HELLO}/launch");
            expect(call(http, url, t, Some(json!({}))).await, StatusCode::OK)?;
        }
        Op::Payment => {
            let fields = json!({"amount": "100", "idempotency-key": format!("{}-{n}", u.name),
                                "description": "soak"});
            let url = format!("{base}/apps/{PROBE}/events");
            let body = json!({"name": "payments", "fields": fields});
            let view = expect(call(http, url, t, Some(body)).await, StatusCode::OK)?;
            let said = view["view"].to_string();
            let order = said
                .split("ok: \\\"")
                .nth(1)
                .and_then(|s| s.split("\\\"").next())
                .ok_or_else(|| format!("no order in {said}"))?
                .to_string();
            let url = format!("{base}/prompts/{order}/approve");
            let body = json!({"password": format!("{}-password", u.name)});
            let paid = expect(call(http, url, t, Some(body)).await, StatusCode::OK)?;
            if paid["order"]["state"] != "paid" {
                return Err(format!("not paid: {paid}"));
            }
        }
        Op::Transfer => {
            let body = json!({"to": u.peer, "amount": 50, "currency": "EUR",
                              "idempotency_key": format!("{}-{n}", u.name),
                              "password": format!("{}-password", u.name)});
            let url = format!("{base}/wallet/transfers");
            expect(call(http, url, t, Some(body)).await, StatusCode::CREATED)?;
        }
        Op::Read => {
            let path = match n % 3 {
                0 => "/wallet".to_string(),
                1 => "/me/access-log?limit=20".to_string(),
                _ => "/apps".to_string(),
            };
            expect(
                call(http, format!("{base}{path}"), t, None).await,
                StatusCode::OK,
            )?;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let secs = env_num("SUPERAPP_SOAK_SECS", 600);
    let read_secs = env_num("SUPERAPP_SOAK_READ_SECS", 60);
    let workers = env_num("SUPERAPP_SOAK_WORKERS", 32) as usize;
    let interval = Duration::from_secs(env_num("SUPERAPP_SOAK_INTERVAL", 30));
    let s = common::setup(&["hello", "testing/probe"]);
    let server = common::serve_with(&s, &[("SUPERAPP_MAX_CONNECTIONS_PER_CLIENT", "4096")]);
    let base = server.base.clone();
    let pid = server.pid();
    let http = common::http_client();
    let operator = server.operator_token();

    // Users in pairs: each chats with and pays its peer.
    let count = workers.max(2);
    let names: Vec<String> = (0..count).map(|i| format!("soak{i}")).collect();
    let mut tokens = Vec::new();
    for n in &names {
        let body = json!({"username": n, "password": format!("{n}-password"), "display_name": n});
        expect(
            call(&http, format!("{base}/accounts"), None, Some(body)).await,
            StatusCode::CREATED,
        )
        .expect("sign up");
        let body = json!({"username": n, "password": format!("{n}-password")});
        let session = expect(
            call(&http, format!("{base}/sessions"), None, Some(body)).await,
            StatusCode::CREATED,
        )
        .expect("sign in");
        tokens.push(session["token"].as_str().expect("a token").to_string());
        let body =
            json!({"user": n, "amount": 100_000_000, "idempotency_key": format!("soak-{n}")});
        expect(
            call(
                &http,
                format!("{base}/operator/topups"),
                Some(&operator),
                Some(body),
            )
            .await,
            StatusCode::CREATED,
        )
        .expect("top-up");
    }
    let mut users = Vec::new();
    for i in 0..count {
        let peer = names[(i + 1) % count].clone();
        let body = json!({"kind": "direct", "with": peer});
        let c = call(
            &http,
            format!("{base}/conversations"),
            Some(&tokens[i]),
            Some(body),
        )
        .await
        .expect("a conversation");
        users.push(Arc::new(User {
            name: names[i].clone(),
            token: tokens[i].clone(),
            peer,
            chat: c.1["id"].as_str().expect("a conversation id").to_string(),
        }));
    }

    let window = Arc::new(Mutex::new(Window::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let reading = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (http, base, user, window, stop, reading) = (
            http.clone(),
            base.clone(),
            users[w % count].clone(),
            window.clone(),
            stop.clone(),
            reading.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                // 50 % chat, 30 % events, 10 % payments, 10 % transfers.
                let op = match (n * 7 + w as u64) % 10 {
                    _ if reading.load(Ordering::Relaxed) => Op::Read,
                    0..=4 => Op::Chat,
                    5..=7 => Op::Event,
                    8 => Op::Payment,
                    _ => Op::Transfer,
                };
                let t = Instant::now();
                let result = run(&http, &base, &user, op, n).await;
                let took = t.elapsed();
                let mut w = window.lock().unwrap();
                w.samples.push((op, took));
                if let Err(e) = result {
                    w.errors.push(format!("{}: {e}", op.name()));
                }
            }
        }));
    }

    println!();
    println!(
        "superapp soak ({workers} clients, {secs} s of the mix, then {read_secs} s of reads; report every {} s)",
        interval.as_secs()
    );
    println!("| t (s) | phase | ops/s | errors | p50 | p99 | server RSS | data on disk |");
    println!("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let data_dir = server.data_dir.clone();
    let mut rows: Vec<(u64, f64, usize, Duration, Duration, f64)> = Vec::new();
    let mut all: Vec<(Op, Duration)> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let mix_end = started + Duration::from_secs(secs);
    let end = mix_end + Duration::from_secs(read_secs);
    while Instant::now() < end {
        let next = if Instant::now() < mix_end {
            mix_end
        } else {
            end
        };
        tokio::time::sleep(interval.min(next - Instant::now())).await;
        let phase = if reading.load(Ordering::Relaxed) {
            "reads"
        } else {
            "mix"
        };
        if Instant::now() >= mix_end {
            reading.store(true, Ordering::Relaxed);
        }
        let taken = std::mem::take(&mut *window.lock().unwrap());
        let mut lat: Vec<Duration> = taken.samples.iter().map(|(_, d)| *d).collect();
        lat.sort();
        let row = (
            started.elapsed().as_secs(),
            lat.len() as f64 / interval.as_secs_f64(),
            taken.errors.len(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            rss_mib(pid),
        );
        println!(
            "| {} | {phase} | {:.0} | {} | {} | {} | {:.1} MiB | {:.0} MiB |",
            row.0,
            row.1,
            row.2,
            millis(row.3),
            millis(row.4),
            row.5,
            disk_bytes(&data_dir) as f64 / (1 << 20) as f64
        );
        rows.push(row);
        all.extend(taken.samples);
        errors.extend(taken.errors);
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }

    println!();
    println!("| operation | count | p50 | p99 |");
    println!("| --- | ---: | ---: | ---: |");
    for op in Op::ALL {
        let mut lat: Vec<Duration> = all
            .iter()
            .filter(|(o, _)| *o == op)
            .map(|(_, d)| *d)
            .collect();
        lat.sort();
        println!(
            "| {} | {} | {} | {} |",
            op.name(),
            lat.len(),
            millis(percentile(&lat, 0.5)),
            millis(percentile(&lat, 0.99))
        );
    }
    let warm = rows.get(1).or(rows.first()).map_or(0.0, |r| r.5);
    let last = rows.last().map_or(0.0, |r| r.5);
    println!();
    println!(
        "{} operations, {} errors; server RSS {:.1} MiB after warm-up, {:.1} MiB at the end",
        all.len(),
        errors.len(),
        warm,
        last
    );
    for e in errors.iter().take(10) {
        println!("error: {e}");
    }
    let check = call(
        &http,
        format!("{base}/operator/ledger"),
        Some(&operator),
        None,
    )
    .await;
    match check {
        Ok((StatusCode::OK, r)) if r["ok"] == true => println!("ledger check: ok"),
        other => println!("ledger check: FAILED {other:?}"),
    }
    // The live data: a backup holds every record once, without the store's
    // log-structured overhead.
    let backup = http
        .get(format!("{base}/operator/backup"))
        .bearer_auth(&operator)
        .send()
        .await;
    match backup {
        Ok(r) if r.status() == StatusCode::OK => match r.bytes().await {
            Ok(b) => println!(
                "live data (a backup's size): {:.0} MiB; data directory on disk: {:.0} MiB",
                b.len() as f64 / (1 << 20) as f64,
                disk_bytes(&data_dir) as f64 / (1 << 20) as f64
            ),
            Err(e) => println!("backup: {e}"),
        },
        other => println!("backup: FAILED {other:?}"),
    }
}
