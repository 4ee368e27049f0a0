//! Fairness benchmark: a light app's latency and a heavy app's outcomes
//! while the heavy app saturates the cores, with the host's scheduler and
//! with every event let in at once (how the host ran before it had one).
//! Prints a table.
//!
//! Run with `cargo bench -p superapp --bench fairness`. Set
//! `SUPERAPP_BENCH_SECS` to change how long each loaded phase lasts
//! (default 10), `SUPERAPP_BENCH_HEAVY_USERS` the number of concurrent heavy
//! users (default 32) and `SUPERAPP_BENCH_HEAVY_MS` the heavy event's running
//! time alone (default 250; its limit is 500 ms).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use superapp_runtime::bindings::superapp::plugin::types::{Action, Event};
use superapp_runtime::{
    App, Call, Invocation, Limit, RunError, Runtime, RuntimeConfig, SchedulerConfig, Services,
};

mod stats;
use stats::{median, millis, percentile};

fn env_num(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn action(name: &str, value: u64) -> Call {
    Call::Event(Event::Action(Action {
        name: name.into(),
        value: Some(value.to_string()),
        fields: Vec::new(),
    }))
}

#[derive(Default)]
struct Outcomes {
    ok: AtomicU64,
    time_limit: AtomicU64,
    refused: AtomicU64,
    other: AtomicU64,
}

impl Outcomes {
    fn count(&self, result: &Result<superapp_runtime::view::View, RunError>) {
        let counter = match result {
            Ok(_) => &self.ok,
            Err(RunError::Overloaded { .. }) => &self.refused,
            Err(RunError::Limit {
                limit: Limit::Time { .. },
                ..
            }) => &self.time_limit,
            Err(_) => &self.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn summary(&self) -> String {
        format!(
            "{} ok, {} over the time limit, {} refused (503), {} other",
            self.ok.load(Ordering::Relaxed),
            self.time_limit.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.other.load(Ordering::Relaxed)
        )
    }
}

struct Bench {
    rt: Arc<Runtime>,
    app: Arc<App>,
    services: Arc<Services>,
}

impl Bench {
    async fn run(&self, user: &str, call: &Call) -> Result<superapp_runtime::view::View, RunError> {
        self.rt
            .run(&self.app, &self.services, &Invocation::new(user), call)
            .await
    }
}

fn main() -> anyhow::Result<()> {
    // The repository root, two levels above this crate.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap();
    let secs = env_num("SUPERAPP_BENCH_SECS", 10);
    let heavy_users = env_num("SUPERAPP_BENCH_HEAVY_USERS", 32);
    let heavy_ms = env_num("SUPERAPP_BENCH_HEAVY_MS", 250);
    let dir = repo.join("plugins/testing/busy");
    let built = superapp_cli::plugin_build::build(&dir, None, false)?;
    let bytes = std::fs::read(&built.component)?;
    let heavy_manifest = superapp_core::Manifest::load(&dir.join("plugin.toml"))?;
    // The light app is the same component under another id: the scheduler
    // tells apps apart by id.
    let mut light_manifest = heavy_manifest.clone();
    light_manifest.id = "dev.superapp.testing.light".into();

    let executor = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut rows: Vec<(String, String, String)> = Vec::new();

    let variants = [
        ("scheduled", SchedulerConfig::default()),
        (
            "all at once",
            SchedulerConfig {
                slots: 100_000,
                instances: 1_000,
                instances_per_app: 1_000,
                max_pending: 100_000,
                max_pending_per_app: 100_000,
                ..SchedulerConfig::default()
            },
        ),
    ];
    let mut calibrated = None;
    for (name, scheduler) in variants {
        let rt = Arc::new(Runtime::new(RuntimeConfig {
            scheduler,
            ..RuntimeConfig::default()
        })?);
        let services = Arc::new(Services::in_memory(Default::default()));
        let heavy = Arc::new(Bench {
            app: Arc::new(rt.load(heavy_manifest.clone(), &bytes)?),
            rt: rt.clone(),
            services: services.clone(),
        });
        let light = Arc::new(Bench {
            app: Arc::new(rt.load(light_manifest.clone(), &bytes)?),
            rt: rt.clone(),
            services,
        });
        let ping = action("ping", 0);

        executor.block_on(async {
            // Calibrate the heavy event once: `heavy_ms` of work alone.
            let rounds = match calibrated {
                Some(r) => r,
                None => {
                    let probe = 2_000;
                    let t = Instant::now();
                    heavy.run("calibrate", &action("work", probe)).await.ok();
                    let r =
                        (probe as f64 * heavy_ms as f64 / (t.elapsed().as_secs_f64() * 1e3)) as u64;
                    calibrated = Some(r.max(1));
                    r.max(1)
                }
            };
            let work = action("work", rounds);

            let mut alone = Vec::new();
            for _ in 0..2_000 {
                let t = Instant::now();
                light.run("light-user", &ping).await.expect("light event");
                alone.push(t.elapsed());
            }
            alone.sort();
            let mut heavy_alone = Vec::new();
            for _ in 0..3 {
                let t = Instant::now();
                heavy.run("solo", &work).await.expect("heavy event alone");
                heavy_alone.push(t.elapsed());
            }
            let heavy_alone = median(heavy_alone);

            // Saturate: heavy users back to back (a refused one waits its
            // Retry-After), while one light user acts every 2 ms.
            let stop = Arc::new(AtomicBool::new(false));
            let outcomes = Arc::new(Outcomes::default());
            let mut tasks = Vec::new();
            for u in 0..heavy_users {
                let (heavy, stop, outcomes, work) =
                    (heavy.clone(), stop.clone(), outcomes.clone(), work.clone());
                tasks.push(tokio::spawn(async move {
                    let user = format!("heavy-{u}");
                    while !stop.load(Ordering::Relaxed) {
                        let result = heavy.run(&user, &work).await;
                        outcomes.count(&result);
                        if let Err(RunError::Overloaded { reason, .. }) = &result {
                            let wait = Duration::from_secs(reason.retry_after_secs());
                            tokio::time::sleep(wait).await;
                        }
                    }
                }));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            // The light user is a task on the same executor, as a request
            // handler in the server is.
            let light_user = {
                let light = light.clone();
                tokio::spawn(async move {
                    let mut loaded = Vec::new();
                    let mut failures = 0u64;
                    let end = Instant::now() + Duration::from_secs(secs);
                    // Each event is due 2 ms after the last one ended; its
                    // latency runs from then, so a late wake-up counts too.
                    let pause = Duration::from_millis(2);
                    let mut due = Instant::now();
                    while Instant::now() < end {
                        if light.run("light-user", &ping).await.is_err() {
                            failures += 1;
                        }
                        let done = Instant::now();
                        loaded.push(done - due);
                        due = done + pause;
                        tokio::time::sleep_until(due.into()).await;
                    }
                    (loaded, failures)
                })
            };
            let (mut loaded, light_failures) = light_user.await.expect("light user");
            stop.store(true, Ordering::Relaxed);
            for t in tasks {
                let _ = t.await;
            }
            loaded.sort();

            // Memory pressure: 64 events of 12 MiB at once.
            let memory = Arc::new(Outcomes::default());
            let started = Instant::now();
            let touches = (0..64).map(|i| {
                let (heavy, memory) = (heavy.clone(), memory.clone());
                tokio::spawn(async move {
                    let result = heavy.run(&format!("touch-{i}"), &action("touch", 12)).await;
                    memory.count(&result);
                })
            });
            for t in futures_util::future::join_all(touches).await {
                let _ = t;
            }
            let memory_wall = started.elapsed();

            let add = |rows: &mut Vec<(String, String, String)>, k: &str, v: String| {
                rows.push((name.to_string(), k.to_string(), v));
            };
            add(
                &mut rows,
                "light event alone: p50 / p99",
                format!(
                    "{} / {}",
                    millis(percentile(&alone, 0.5)),
                    millis(percentile(&alone, 0.99))
                ),
            );
            add(
                &mut rows,
                "heavy event alone (median of 3)",
                millis(heavy_alone),
            );
            add(
                &mut rows,
                &format!("light event under {heavy_users} heavy users: p50 / p99 / max"),
                format!(
                    "{} / {} / {} ({} events, {} failed)",
                    millis(percentile(&loaded, 0.5)),
                    millis(percentile(&loaded, 0.99)),
                    millis(percentile(&loaded, 1.0)),
                    loaded.len(),
                    light_failures
                ),
            );
            add(&mut rows, "heavy events meanwhile", outcomes.summary());
            add(
                &mut rows,
                "64 events of 12 MiB at once",
                format!("{} in {}", memory.summary(), millis(memory_wall)),
            );
        });
    }

    println!();
    println!(
        "superapp fairness benchmark ({cores} cores, {secs} s loaded per variant; \
         heavy app limit 500 ms; \"all at once\" = no run-slot limit)"
    );
    println!("| scheduler | measure | value |");
    println!("| --- | --- | --- |");
    for (variant, k, v) in rows {
        println!("| {variant} | {k} | {v} |");
    }
    Ok(())
}
