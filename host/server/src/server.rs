//! `superapp serve`: open the host (store, services, runtime, apps), build the API, listen,
//! and shut down gracefully on SIGINT/SIGTERM or when the store stops
//! taking writes (stop accepting, close live
//! connections, drain requests, flush the store).

use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::watch;

use crate::api::{self, ServerState};
use crate::config::ServerConfig;
use crate::host::Host;

pub async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    let listener = bind(&config).await?;
    serve_on(listener, config).await
}

/// The listening socket `config` asks for: bound before the host opens, for
/// a caller that must know the address it serves on (a port of 0 is one
/// the system picks).
pub async fn bind(config: &ServerConfig) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))
}

/// [`serve`] on a socket already bound ([`bind`]).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    config: ServerConfig,
) -> anyhow::Result<()> {
    let host = Host::open(&config)?;
    let mut queue = None;
    if let crate::config::BusLocation::Nats { urls } = &config.bus {
        let namespace = &host.bus_namespace;
        let relay =
            crate::bus::NatsRelay::connect(urls, namespace, host.messaging.hub(), &host.identity)
                .await?;
        queue = Some(crate::work::WorkQueue::open(relay.client(), namespace).await?);
        tracing::info!(
            servers = urls.len(),
            "live pushes and due work travel between host processes on the bus"
        );
    } else if host.store.shared() {
        // Right for one process on a database; a node meant to join others
        // whose bus setting went missing (an empty variable) would serve
        // without their pushes, so say so.
        tracing::warn!(
            "the store is shared but no bus is set (`--bus`): run this host alone on it; beside other host processes, its users would get no live pushes from theirs, nor theirs from it, and due work would be done by each on its own"
        );
    }
    if config.demo {
        host.seed_demo(&config.data_dir)
            .await
            .context("cannot seed the demo")?;
    }
    let store = host.store.clone();
    let mut failures = store.failures();
    let (stop, shutdown) = watch::channel(false);
    let state = Arc::new(
        ServerState::new(host, config.api.clone(), shutdown)
            .context("cannot read when signed requests began to be remembered")?,
    );
    // Due work: on the bus's queue when there is one (one process runs
    // each job), otherwise this process sweeps for itself.
    let mut background = vec![tokio::spawn(api::sweep_throttles(state.clone()))];
    match queue {
        Some(queue) => background.push(tokio::spawn(queue.run(state.clone()))),
        None => {
            background.push(tokio::spawn(api::expire_orders(state.clone())));
            background.push(tokio::spawn(api::deliver_callbacks(state.clone())));
        }
    }
    let connections = state.host.metrics.connections.clone();
    let preloading = state.clone();
    let app = api::router(state);

    // Apps are prepared beside serving: compiling them (after an upgrade,
    // or with the precompile cache gone) must not keep the host from
    // answering. It is live meanwhile, and ready (`/readyz`) once done.
    tokio::task::spawn_blocking(move || {
        preloading.host.preload();
        preloading
            .apps_prepared
            .store(true, std::sync::atomic::Ordering::Release);
    });
    let addr = listener.local_addr()?;
    // Tests and scripts read this line to find the port. Whoever started
    // the server may have closed its stdout: that must not stop the server.
    let mut banner = format!("listening on http://{addr}\n");
    if config.demo {
        banner.push_str(&format!(
            "demo: open http://{addr}/ in a browser and sign in as\n"
        ));
        for user in &crate::host::DEMO_USERS {
            banner.push_str(&format!(
                "  {} / {} (security phrase \"{}\")\n",
                user.username,
                crate::host::DEMO_PASSWORD,
                user.phrase
            ));
        }
    }
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(banner.as_bytes()).and_then(|()| out.flush());
    }
    tracing::info!(%addr, data_dir = %config.data_dir.display(), version = crate::VERSION, "serving");
    let offset = superapp_core::ids::clock_offset_secs();
    if offset != 0 {
        tracing::warn!(
            offset_secs = offset,
            "{} shifts this host's clock: for tests and demonstrations only",
            superapp_core::ids::CLOCK_OFFSET_ENV
        );
    }

    crate::listener::serve(
        listener,
        app,
        config.connections,
        config.trusted_proxies.clone(),
        connections,
        async move {
            tokio::select! {
                () = shutdown_signal() => tracing::info!("shutting down"),
                why = store_failed(&mut failures) => tracing::error!(
                    error = %why,
                    "shutting down: the store takes no more writes, and a restart goes on from what is on disk"
                ),
            }
            let _ = stop.send(true);
        },
    )
    .await;
    for task in background {
        let _ = task.await;
    }
    if let Some(why) = store.failure() {
        anyhow::bail!(
            "the store could not write to disk ({why}); the host stopped so that a restart goes on from what is on disk (free space or fix the disk, then start it again)"
        );
    }
    store.close()?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves with the reason once the store has stopped taking writes (a
/// flush failed: see `Store::failure`).
async fn store_failed(failures: &mut watch::Receiver<Option<String>>) -> String {
    loop {
        if let Some(why) = failures.borrow_and_update().clone() {
            return why;
        }
        if failures.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
