//! Runtime benchmark: component compile time, precompiled load time, the
//! first event of a fresh process, the event round trip (fresh instance +
//! `event` + one host call + view validation + teardown) with and without
//! the pooling allocator, and memory: per loaded app, per concurrent event,
//! and a leak check over 100 000 sequential events. Prints tables.
//!
//! Run with `cargo bench -p superapp --bench runtime`. Set
//! `SUPERAPP_BENCH_EVENTS` to change the number of timed events per round
//! (default 10000), `SUPERAPP_BENCH_ROUNDS` the rounds whose median is shown
//! (default 3), `SUPERAPP_BENCH_KEEP_RESIDENT=0,65536,…` to compare pooling
//! reset sizes, `SUPERAPP_BENCH_ON_DEMAND=0` to skip the on-demand
//! allocator and `SUPERAPP_BENCH_LEAK_EVENTS` to change the leak check's
//! length (default 100000).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use superapp_runtime::bindings::superapp::plugin::types::{Action, Event};
use superapp_runtime::{App, Call, Invocation, Runtime, RuntimeConfig, SchedulerConfig, Services};

mod stats;
use stats::{env_or, median, micros, millis, percentile};

/// Set in a child process: measure one cold start against this cache.
const COLD_CHILD: &str = "SUPERAPP_BENCH_COLD_CHILD";
/// The child's component, built by its parent: the child builds nothing.
const COLD_COMPONENT: &str = "SUPERAPP_BENCH_COLD_COMPONENT";

/// This process's resident set, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

fn action(name: &str, value: Option<&str>) -> Call {
    Call::Event(Event::Action(Action {
        name: name.into(),
        value: value.map(str::to_string),
        fields: Vec::new(),
    }))
}

struct Table {
    title: String,
    rows: Vec<(String, String)>,
}

impl Table {
    fn new(title: impl Into<String>) -> Table {
        Table {
            title: title.into(),
            rows: Vec::new(),
        }
    }
    fn row(&mut self, k: impl Into<String>, v: impl Into<String>) {
        self.rows.push((k.into(), v.into()));
    }
    fn print(&self) {
        println!();
        println!("{}", self.title);
        println!("| measure | value |");
        println!("| --- | --- |");
        for (k, v) in &self.rows {
            println!("| {k} | {v} |");
        }
    }
}

/// The child's side of the cold start: a new runtime (engine, pool,
/// ticker), the component loaded from the warm cache by its digest (as the
/// server loads a stored package), one event. Prints the three phases in
/// nanoseconds, then what the CPU's feature detection and one query of the
/// CPU count took. The settings, the async executor, the services, the
/// component's bytes and digest and the CPU's features are had before the
/// clock starts: a host has them all before it runs apps (its store's
/// checksums detect the CPU's features when it opens).
fn cold_child(cache: &Path, manifest: superapp_core::Manifest, bytes: &[u8]) -> anyhow::Result<()> {
    // The first question std answers about the CPU's features runs its
    // whole detection, a dozen CPUID instructions: under a hypervisor that
    // traps each one, tens of microseconds. Loading a precompiled component
    // asks (wasmtime checks the code was built for features this CPU has).
    let started = Instant::now();
    #[cfg(target_arch = "x86_64")]
    std::hint::black_box(std::arch::is_x86_feature_detected!("avx2"));
    let detect = started.elapsed();
    // wasmtime's pool asks this once per sharded structure when it starts.
    let started = Instant::now();
    std::hint::black_box(std::thread::available_parallelism().ok());
    let cpus = started.elapsed();
    let services = Arc::new(Services::in_memory(Default::default()));
    let executor = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let defaults = RuntimeConfig::default();
    let config = RuntimeConfig {
        cache_dir: Some(cache.to_path_buf()),
        pooling: env_or("SUPERAPP_BENCH_POOLING", true),
        scheduler: SchedulerConfig {
            instances: env_or("SUPERAPP_BENCH_POOL", defaults.scheduler.instances),
            ..defaults.scheduler
        },
        ..defaults
    };
    // A host finds the component's digest in its stored package's
    // signature, read with the package.
    let sha256 = superapp_runtime::sha256_hex(bytes);
    let started = Instant::now();
    let rt = Runtime::new(config)?;
    let runtime_ready = started.elapsed();
    let app = rt.load_digested(manifest, bytes, &sha256)?;
    let loaded = started.elapsed();
    let view = executor.block_on(rt.run(
        &app,
        &services,
        &Invocation::new("u"),
        &action("ping", None),
    ));
    let done = started.elapsed();
    anyhow::ensure!(view.is_ok(), "the first event failed: {:?}", view.err());
    println!(
        "{} {} {} {} {}",
        runtime_ready.as_nanos(),
        (loaded - runtime_ready).as_nanos(),
        (done - loaded).as_nanos(),
        detect.as_nanos(),
        cpus.as_nanos()
    );
    Ok(())
}

/// Run `n` events one after another; their round-trip times, sorted.
fn timed_events(
    executor: &tokio::runtime::Runtime,
    rt: &Runtime,
    app: &App,
    services: &Arc<Services>,
    call: &Call,
    n: usize,
) -> Vec<Duration> {
    let invocation = Invocation::new("bench-user");
    let mut samples = Vec::with_capacity(n);
    executor.block_on(async {
        for _ in 0..n {
            let t = Instant::now();
            let view = rt.run(app, services, &invocation, call).await;
            samples.push(t.elapsed());
            assert!(view.is_ok(), "{:?}", view.err());
        }
    });
    samples.sort();
    samples
}

fn main() -> anyhow::Result<()> {
    // The repository root, two levels above this crate.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap();
    let events: usize = env_or("SUPERAPP_BENCH_EVENTS", 10_000);
    let rounds: usize = env_or("SUPERAPP_BENCH_ROUNDS", 3).max(1);
    let leak_events: usize = env_or("SUPERAPP_BENCH_LEAK_EVENTS", 100_000);
    let manifest = superapp_core::Manifest::load(&repo.join("plugins/hello/plugin.toml"))?;
    if let (Ok(cache), Ok(component)) = (std::env::var(COLD_CHILD), std::env::var(COLD_COMPONENT)) {
        return cold_child(Path::new(&cache), manifest, &std::fs::read(component)?);
    }
    let plugin = |name: &str| -> anyhow::Result<(superapp_core::Manifest, PathBuf)> {
        let dir = repo.join("plugins").join(name);
        let built = superapp_cli::plugin_build::build(&dir, None, false)?;
        Ok((
            superapp_core::Manifest::load(&dir.join("plugin.toml"))?,
            built.component,
        ))
    };
    let hello = |name: &str| -> anyhow::Result<(superapp_core::Manifest, Vec<u8>)> {
        let (manifest, component) = plugin(name)?;
        Ok((manifest, std::fs::read(component)?))
    };
    let (_, component) = plugin("hello")?;
    let bytes = std::fs::read(&component)?;

    let mut load_table = Table::new("superapp runtime benchmark: loading (hello)");
    load_table.row("component size", format!("{} KiB", bytes.len() / 1024));

    // Compile from scratch (no cache), median of 5.
    let plain = Runtime::new(RuntimeConfig::default())?;
    let compile = median(
        (0..5)
            .map(|_| {
                let t = Instant::now();
                plain.compile(&bytes).expect("compiles");
                t.elapsed()
            })
            .collect(),
    );
    load_table.row("compile (Component::new), median of 5", millis(compile));
    drop(plain);

    // Load precompiled from the on-disk cache.
    let cache = tempfile::tempdir()?;
    let cached = Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    })?;
    cached.compile(&bytes)?;
    let load = median(
        (0..50)
            .map(|_| {
                let t = Instant::now();
                cached.compile(&bytes).expect("loads");
                t.elapsed()
            })
            .collect(),
    );
    load_table.row("load precompiled from cache, median of 50", millis(load));

    // The first event of a fresh process, the cache warm: 20 child
    // processes, each timing its own runtime start, load and first event.
    // Each child's three phases, then its CPU feature detection and one
    // query of the CPU count (both outside the phases).
    let cold = |pool: Option<u32>| -> anyhow::Result<[u64; 5]> {
        let mut child = std::process::Command::new(std::env::current_exe()?);
        child
            .env(COLD_CHILD, cache.path())
            .env(COLD_COMPONENT, &component);
        if let Some(pool) = pool {
            child.env("SUPERAPP_BENCH_POOL", pool.to_string());
        }
        let out = child.output()?;
        anyhow::ensure!(
            out.status.success(),
            "cold-start child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().last().unwrap_or_default();
        let ns: Vec<u64> = line.split(' ').filter_map(|v| v.parse().ok()).collect();
        let ns: [u64; 5] = ns
            .try_into()
            .map_err(|_| anyhow::anyhow!("cold-start child printed {line:?}"))?;
        Ok(ns)
    };
    let mut phases: [Vec<Duration>; 4] = Default::default();
    let (mut detect, mut cpus) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let ns = cold(None)?;
        for (i, v) in ns[..3].iter().enumerate() {
            phases[i].push(Duration::from_nanos(*v));
        }
        phases[3].push(Duration::from_nanos(ns[..3].iter().sum()));
        detect.push(Duration::from_nanos(ns[3]));
        cpus.push(Duration::from_nanos(ns[4]));
    }
    // What the pool's size costs at start (each slot reserves a linear
    // memory, tables and a guarded fiber stack).
    for pool in [1u32, 64, 256] {
        // Two children first, not counted: right after processes with
        // another pool exit, the kernel is still tearing down their
        // reservations, which the next start would pay for.
        for _ in 0..2 {
            cold(Some(pool))?;
        }
        let mut starts: Vec<Duration> = (0..10)
            .map(|_| cold(Some(pool)).map(|ns| Duration::from_nanos(ns[0])))
            .collect::<anyhow::Result<_>>()?;
        starts.sort();
        load_table.row(
            format!("cold start, runtime start with a pool of {pool}: median of 10"),
            millis(percentile(&starts, 0.5)),
        );
    }
    let names = [
        "runtime start (engine, instance pool of the default size, ticker)",
        "load from the warm cache, by the package's digest",
        "first event",
        "total in a fresh process (settings, executor, services, package ready): runtime start to first view",
    ];
    let machine = [
        "before the clock, the CPU's feature detection (std's, a dozen CPUID instructions), which a host has done when it opened its store",
        "before the clock, one query of the CPU count (std's available_parallelism), which wasmtime's pool makes four times in its runtime start",
    ];
    for (name, mut samples) in names
        .iter()
        .chain(&machine)
        .zip(phases.into_iter().chain([detect, cpus]))
    {
        samples.sort();
        load_table.row(
            format!("cold start, {name}: median / max of 20"),
            format!(
                "{} / {}",
                millis(percentile(&samples, 0.5)),
                millis(percentile(&samples, 1.0))
            ),
        );
    }
    drop(cached);

    let ping = action("ping", None);
    let executor = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let keep: Vec<usize> = std::env::var("SUPERAPP_BENCH_KEEP_RESIDENT")
        .ok()
        .map(|s| s.split(',').filter_map(|v| v.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![RuntimeConfig::default().keep_resident]);
    let on_demand = std::env::var("SUPERAPP_BENCH_ON_DEMAND").map_or(true, |v| v != "0");
    let variants: Vec<(bool, usize)> = keep
        .iter()
        .map(|&k| (true, k))
        .chain(on_demand.then_some((false, 0)))
        .collect();
    let mut round_trip = Table::new(format!(
        "superapp runtime benchmark: event round trip (hello `ping`: one identity call; \
         {events} events per round, median of {rounds} rounds)"
    ));
    for (pooling, keep_resident) in variants {
        let rt = Runtime::new(RuntimeConfig {
            pooling,
            keep_resident,
            ..RuntimeConfig::default()
        })?;
        let app = rt.load(manifest.clone(), &bytes)?;
        let services = Arc::new(Services::in_memory(Default::default()));
        timed_events(&executor, &rt, &app, &services, &ping, 1_000);
        let (mut p50, mut p99, mut mean) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let samples = timed_events(&executor, &rt, &app, &services, &ping, events);
            p50.push(percentile(&samples, 0.50));
            p99.push(percentile(&samples, 0.99));
            mean.push(samples.iter().sum::<Duration>() / samples.len() as u32);
        }
        let label = if pooling {
            format!("pooling, keep-resident {} KiB", keep_resident >> 10)
        } else {
            "on-demand".to_string()
        };
        let spread = |mut v: Vec<Duration>| {
            v.sort();
            format!(
                "{} (rounds: {})",
                micros(median(v.clone())),
                v.iter().map(|d| micros(*d)).collect::<Vec<_>>().join(", ")
            )
        };
        round_trip.row(format!("{label}: p50"), spread(p50));
        round_trip.row(format!("{label}: p99"), spread(p99));
        round_trip.row(format!("{label}: mean"), spread(mean));
    }

    let memory = memory_tables(&manifest, &bytes, &executor, leak_events, hello)?;

    load_table.print();
    round_trip.print();
    for table in memory {
        table.print();
    }
    Ok(())
}

/// Host RSS per loaded app and per concurrent event, and the leak check.
fn memory_tables(
    manifest: &superapp_core::Manifest,
    bytes: &[u8],
    executor: &tokio::runtime::Runtime,
    leak_events: usize,
    build: impl Fn(&str) -> anyhow::Result<(superapp_core::Manifest, Vec<u8>)>,
) -> anyhow::Result<Vec<Table>> {
    let cache = tempfile::tempdir()?;
    let rt = Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        scheduler: SchedulerConfig {
            slots: 64,
            instances_per_app: 64,
            ..SchedulerConfig::default()
        },
        ..RuntimeConfig::default()
    })?;
    rt.compile(bytes)?;
    let services = Arc::new(Services::in_memory(Default::default()));

    // Loaded apps: each load deserializes its own copy of the compiled code
    // and links it, as the server does for every published app.
    let mut apps_table = Table::new(
        "superapp runtime benchmark: memory per loaded app (hello, precompiled; host RSS)",
    );
    let base = rss_kib();
    apps_table.row("runtime started, no app", mib(base as f64));
    let mut apps = Vec::new();
    for target in [1usize, 10, 100] {
        while apps.len() < target {
            let mut m = manifest.clone();
            m.id = format!("{}.copy{}", manifest.id, apps.len());
            apps.push(rt.load(m, bytes)?);
        }
        // One event each, so every app's code and first instance are warm.
        executor.block_on(async {
            for app in &apps {
                let ran = rt
                    .run(app, &services, &Invocation::new("u"), &action("ping", None))
                    .await;
                assert!(ran.is_ok(), "{:?}", ran.err());
            }
        });
        let now = rss_kib();
        apps_table.row(
            format!("{target} loaded app(s)"),
            format!(
                "{} ({:.0} KiB per app)",
                mib(now as f64),
                (now.saturating_sub(base)) as f64 / target as f64
            ),
        );
    }
    drop(apps);

    // Concurrent events: 64 busy events at once, each yielding its core
    // every tick, so all 64 instances are alive together.
    let (busy_manifest, busy_bytes) = build("testing/busy")?;
    let busy = rt.load(busy_manifest, &busy_bytes)?;
    let threaded = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let concurrent = 64usize;
    let run_busy = |amount: &'static str| {
        let rt = &rt;
        let busy = &busy;
        let services = &services;
        async move {
            let work = action("work", Some(amount));
            let runs = (0..concurrent).map(|i| {
                let work = work.clone();
                async move {
                    rt.run(busy, services, &Invocation::new(format!("u{i}")), &work)
                        .await
                }
            });
            futures_util::future::join_all(runs).await
        }
    };
    let before = rss_kib();
    // Warm-up: the same load once, so every slot and fiber stack it uses
    // has been touched (a pool slot keeps its pages for the next event).
    for r in threaded.block_on(run_busy("1000")) {
        assert!(r.is_ok(), "{:?}", r.err());
    }
    let idle = rss_kib();
    let peak = std::sync::atomic::AtomicU64::new(idle);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(rss_kib(), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        for r in threaded.block_on(run_busy("1000")) {
            assert!(r.is_ok(), "{:?}", r.err());
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let peak = peak.into_inner();
    let mut events_table = Table::new(format!(
        "superapp runtime benchmark: memory per concurrent event ({concurrent} busy events alive at once)"
    ));
    let per = |kib: u64| format!("{:.0} KiB", kib as f64 / concurrent as f64);
    events_table.row("host RSS before any busy event", mib(before as f64));
    events_table.row(
        format!("host RSS after {concurrent} at once ended (pool slots keep their pages)"),
        mib(idle as f64),
    );
    events_table.row(
        format!("host RSS, peak with {concurrent} events"),
        mib(peak as f64),
    );
    events_table.row(
        "per concurrent event, kept resident by its pool slot",
        per(idle.saturating_sub(before)),
    );
    events_table.row(
        "per concurrent event, peak over that",
        per(peak.saturating_sub(idle)),
    );

    // Leak check: sequential events, RSS sampled every tenth of the run.
    let app = rt.load(manifest.clone(), bytes)?;
    let ping = action("ping", None);
    let step = (leak_events / 10).max(1);
    let mut leak_table = Table::new(format!(
        "superapp runtime benchmark: leak check ({leak_events} sequential hello events, one process)"
    ));
    let mut samples = Vec::new();
    executor.block_on(async {
        for i in 1..=leak_events {
            let ran = rt
                .run(
                    &app,
                    &services,
                    &Invocation::new(format!("user-{}", i % 1000)),
                    &ping,
                )
                .await;
            assert!(ran.is_ok(), "{:?}", ran.err());
            if i % step == 0 {
                samples.push((i, rss_kib()));
            }
        }
    });
    for (i, kib) in &samples {
        leak_table.row(format!("RSS after {i} events"), mib(*kib as f64));
    }
    // Warm-up is the first three tenths (the allocator settles, returning
    // what the runtime's start left behind); then RSS should not move.
    let settled = &samples[samples.len().min(3)..];
    if let (Some(first), Some(last)) = (settled.first(), settled.last()) {
        let low = settled.iter().map(|s| s.1).min().unwrap_or(0);
        let high = settled.iter().map(|s| s.1).max().unwrap_or(0);
        leak_table.row(
            format!("after {} events: RSS range / growth to the end", first.0),
            format!(
                "{} – {} / {:+.0} KiB",
                mib(low as f64),
                mib(high as f64),
                last.1 as f64 - first.1 as f64
            ),
        );
    }
    Ok(vec![apps_table, events_table, leak_table])
}
