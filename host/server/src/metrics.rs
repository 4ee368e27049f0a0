//! `/metrics`: one registry in the Prometheus (OpenMetrics) text format,
//! names prefixed `superapp_`. The sandbox's series (events by app and
//! outcome, running time, limit breaches, capability-call latency, the event
//! queue), the store's flush latency and the messages stored are registered
//! from the parts that own them; HTTP requests, open connections and
//! WebSockets are counted here.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use superapp_runtime::{Load, RuntimeMetrics};

use crate::api::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: Route,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Route,
}

/// The route's template (`/api/v1/apps/{app}/events`), never the raw path,
/// so ids do not become series. It shares the router's own copy of the
/// template: counting a request allocates nothing.
#[derive(Clone, Debug)]
struct Route(Option<MatchedPath>);

impl Route {
    fn as_str(&self) -> &str {
        self.0.as_ref().map_or("unmatched", MatchedPath::as_str)
    }
}

impl PartialEq for Route {
    fn eq(&self, other: &Route) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Route {}

impl std::hash::Hash for Route {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for Route {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// A method's label: the standard methods by name, any other as `other`,
/// so made-up methods cannot add series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn request_buckets() -> Histogram {
    // 50 µs to about 13 s, doubling: a latency objective such as a p99 of
    // 10 ms falls between two bounds close enough to tell it from 13 ms.
    Histogram::new(exponential_buckets(5e-5, 2.0, 19))
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
    pub throttled_sends: Counter,
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
        registry.register(
            "build",
            "This build: its version and the commit it was built from",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION")),
                ("commit", env!("SUPERAPP_BUILD")),
            ]),
        );
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
            "chat_sends_throttled",
            "Chat sends refused by the per-user send limit",
            sources.throttled_sends,
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

    fn observe(&self, method: &'static str, route: Route, status: u16, started: Instant) {
        let seconds = started.elapsed().as_secs_f64();
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route: route.clone(),
                status,
            })
            .inc();
        self.request_seconds
            .get_or_create(&RouteLabels { route })
            .observe(seconds);
    }
}

/// Middleware (a route layer, so the route is known): count and time every
/// request by its route template.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = Route(request.extensions().get::<MatchedPath>().cloned());
    let response = next.run(request).await;
    state
        .host
        .metrics
        .observe(method, route, response.status().as_u16(), started);
    response
}
