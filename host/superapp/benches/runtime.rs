//! Runtime benchmark: component compile time, precompiled load time, and the
//! event round trip (fresh instance + `event` + one host call + teardown)
//! with and without the pooling allocator. Prints a table.
//!
//! Run with `cargo bench -p superapp --bench runtime`. Set
//! `SUPERAPP_BENCH_EVENTS` to change the number of timed events (default 10000),
//! `SUPERAPP_BENCH_KEEP_RESIDENT=0,65536,…` to compare pooling reset sizes, and
//! `SUPERAPP_BENCH_ON_DEMAND=0` to skip the on-demand allocator.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use superapp_runtime::bindings::superapp::plugin::types::{Action, Event};
use superapp_runtime::Services;
use superapp_runtime::{Call, Invocation, Runtime, RuntimeConfig};

mod stats;
use stats::{median, micros, millis, percentile};

fn main() -> anyhow::Result<()> {
    // The repository root, two levels above this crate.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap();
    let events: usize = std::env::var("SUPERAPP_BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let built = superapp_cli::plugin_build::build(&repo.join("plugins/hello"), None, false)?;
    let bytes = std::fs::read(&built.component)?;
    let manifest_path = repo.join("plugins/hello/plugin.toml");
    let manifest = superapp_core::Manifest::load(&manifest_path)?;

    let mut rows: Vec<(String, String)> = Vec::new();
    rows.push((
        "component size".into(),
        format!("{} KiB", bytes.len() / 1024),
    ));

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
    rows.push((
        "compile (Component::new), median of 5".into(),
        millis(compile),
    ));

    // Load precompiled from the on-disk cache (read + verify + deserialize).
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
    rows.push((
        "load precompiled from cache, median of 50".into(),
        millis(load),
    ));

    let ping = Call::Event(Event::Action(Action {
        name: "ping".into(),
        value: None,
        fields: Vec::new(),
    }));
    let executor = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let keep: Vec<usize> = std::env::var("SUPERAPP_BENCH_KEEP_RESIDENT")
        .ok()
        .map(|s| s.split(',').filter_map(|v| v.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![RuntimeConfig::default().keep_resident]);
    let on_demand = std::env::var("SUPERAPP_BENCH_ON_DEMAND").map_or(true, |v| v != "0");
    let variants = keep
        .iter()
        .map(|&k| (true, k))
        .chain(on_demand.then_some((false, 0)));
    for (pooling, keep_resident) in variants {
        let rt = Runtime::new(RuntimeConfig {
            pooling,
            keep_resident,
            ..RuntimeConfig::default()
        })?;
        let app = rt.load(manifest.clone(), &bytes)?;
        let services = Arc::new(Services::in_memory(Default::default()));
        let invocation = Invocation::new("bench-user");
        let mut samples = Vec::with_capacity(events);
        executor.block_on(async {
            for _ in 0..1_000 {
                rt.run(&app, &services, &invocation, &ping)
                    .await
                    .expect("warm-up event");
            }
            for _ in 0..events {
                let t = Instant::now();
                let view = rt.run(&app, &services, &invocation, &ping).await;
                samples.push(t.elapsed());
                assert!(view.is_ok());
            }
        });
        samples.sort();
        let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
        let label = if pooling {
            format!("pooling, keep-resident {} KiB", keep_resident >> 10)
        } else {
            "on-demand".to_string()
        };
        rows.push((
            format!("event round trip, {label}: p50"),
            micros(percentile(&samples, 0.50)),
        ));
        rows.push((
            format!("event round trip, {label}: p99"),
            micros(percentile(&samples, 0.99)),
        ));
        rows.push((format!("event round trip, {label}: mean"), micros(mean)));
    }

    println!();
    println!("superapp runtime benchmark ({events} events per allocator, hello `ping`: one identity call)");
    println!("| measure | value |");
    println!("| --- | --- |");
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
    Ok(())
}
