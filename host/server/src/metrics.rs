//! `/metrics`: one registry in the Prometheus (OpenMetrics) text format,
//! names prefixed `superapp_`. The sandbox's series (events by app and
//! outcome, running time, limit breaches, capability-call latency, the event
//! queue), the store's flush latency and the messages stored are registered
//! from the parts that own them; HTTP requests, open connections and
//! WebSockets are counted here.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use superapp_runtime::{Load, RuntimeMetrics};

use crate::api::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    /// The route's template (`/api/v1/apps/{app}/events`), never the raw
    /// path, so ids do not become series.
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

fn request_buckets() -> Histogram {
    // 50 µs to about 13 s.
    Histogram::new(exponential_buckets(5e-5, 4.0, 10))
}

pub struct Metrics {
    registry: Registry,
    runtime: std::sync::Arc<RuntimeMetrics>,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Open connections (the accept loop keeps it current).
    pub connections: Gauge,
    websockets: Gauge,
}

/// What the host's parts own and this registry reads.
pub struct Sources {
    pub runtime: std::sync::Arc<RuntimeMetrics>,
    pub flush_seconds: Histogram,
    pub messages: Counter,
}

impl Metrics {
    pub fn new(sources: Sources) -> Metrics {
        let requests = Family::<RequestLabels, Counter>::default();
        let request_seconds =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                request_buckets,
            );
        let connections = Gauge::default();
        let websockets = Gauge::default();
        let mut registry = Registry::with_prefix("superapp");
        sources.runtime.register(&mut registry);
        registry.register_with_unit(
            "store_flush",
            "Latency of the store's group-commit flushes",
            Unit::Seconds,
            sources.flush_seconds,
        );
        registry.register(
            "messages",
            "Chat messages stored, from users and apps",
            sources.messages,
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route and status",
            requests.clone(),
        );
        registry.register_with_unit(
            "http_request",
            "Time to answer HTTP requests, by route",
            Unit::Seconds,
            request_seconds.clone(),
        );
        registry.register(
            "connections",
            "Open client connections",
            connections.clone(),
        );
        registry.register("websockets", "Open WebSocket sessions", websockets.clone());
        Metrics {
            registry,
            runtime: sources.runtime,
            requests,
            request_seconds,
            connections,
            websockets,
        }
    }

    /// The text exposition, with the gauges read now.
    pub fn render(&self, queue: Load, websockets: usize) -> String {
        self.runtime.set_queue(queue);
        self.websockets.set(websockets as i64);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    fn observe(&self, method: &str, route: &str, status: u16, started: Instant) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                route: route.to_string(),
                status,
            })
            .inc();
        self.request_seconds
            .get_or_create(&RouteLabels {
                route: route.to_string(),
            })
            .observe(started.elapsed().as_secs_f64());
    }
}

/// Middleware (a route layer, so the route is known): count and time every
/// request by its route template.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let response = next.run(request).await;
    state
        .host
        .metrics
        .observe(&method, &route, response.status().as_u16(), started);
    response
}
