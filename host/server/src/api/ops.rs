//! Routes for whoever runs the host: liveness, readiness and metrics. They
//! live at the root, beside `/api/v1`, where probes and scrapers expect them.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::error::ApiError;
use super::principal::OperatorToken;
use super::AppState;

/// The process is up and answering.
pub async fn live() -> Response {
    axum::Json(json!({ "status": "live" })).into_response()
}

/// The host can take traffic: not shutting down, and its store answers.
pub async fn ready(State(state): State<AppState>) -> Result<Response, ApiError> {
    if *state.shutdown.borrow() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "the server is shutting down",
        ));
    }
    if !state
        .apps_prepared
        .load(std::sync::atomic::Ordering::Acquire)
    {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "the stored apps are still being prepared",
        ));
    }
    if let Err(e) = state.host.store.check() {
        tracing::error!(error = %e, "readiness: the store does not answer");
        let why = match state.host.store.failure() {
            Some(_) => {
                "the store takes no more writes (a flush to disk failed): the host is stopping"
            }
            None => "the store does not answer",
        };
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            why,
        ));
    }
    // One app that does not load keeps the rest serving: the node stays
    // ready, and says which. So does a bus that is away (the store is the
    // record; pushes to other nodes wait for it).
    let mut ready = json!({ "status": "ready" });
    let unloadable = state.host.unloadable();
    if !unloadable.is_empty() {
        ready["apps_unavailable"] = json!(unloadable);
    }
    let hub = state.host.messaging.hub();
    if hub.relayed() {
        ready["bus"] = json!(if hub.hears_ended_sessions() {
            "connected"
        } else {
            "away"
        });
    }
    Ok(axum::Json(ready).into_response())
}

/// Prometheus metrics, for the operator (`Authorization: Bearer` with the
/// operator token, as a scrape job can send).
pub async fn metrics(State(state): State<AppState>, _operator: OperatorToken) -> Response {
    let host = &state.host;
    let body = host.metrics.render(
        host.runtime.scheduler().load(),
        host.messaging.hub().sessions(),
    );
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
