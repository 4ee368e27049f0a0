//! `superapp serve`: open the store, build the services and the API, listen,
//! and shut down gracefully on SIGINT/SIGTERM (stop accepting, close live
//! connections, drain requests, flush the store).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::watch;

use crate::api::{self, Inner};
use crate::apps::Apps;
use crate::config::ServerConfig;
use superapp_services::identity::{load_or_create_secret, Identity};
use superapp_services::messaging::{Hub, Messaging};
use superapp_store::Store;

pub async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    let secret = load_or_create_secret(&config.data_dir)?;
    let store = Store::open(&config.data_dir.join("store"))?;
    let hub = Arc::new(Hub::new(config.ws_queue));
    let identity = Arc::new(Identity::new(store.clone(), config.identity.clone()));
    let messaging = Arc::new(Messaging::new(store.clone(), hub, config.messaging.clone()));
    let apps = Apps::load(
        config.apps_dir.as_deref(),
        &config.data_dir,
        store.clone(),
        identity.clone(),
        messaging.clone(),
        &secret,
        &config.apps,
    )?;
    let (stop, shutdown) = watch::channel(false);
    let state = Arc::new(Inner {
        apps,
        identity,
        messaging,
        config: config.api.clone(),
        shutdown,
    });
    let sweeper = tokio::spawn(api::expire_orders(state.clone()));
    let app = api::router(state);

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    // Tests and scripts read this line to find the port.
    println!("listening on http://{addr}");
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "serving");

    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
    })
    .await
    .context("the server failed")?;
    let _ = sweeper.await;
    store.close()?;
    tracing::info!("stopped");
    Ok(())
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
