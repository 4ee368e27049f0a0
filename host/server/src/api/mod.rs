//! The HTTP API under `/api/v1`: axum routes, middleware (request ids in
//! tracing spans, body limits, timeouts, JSON errors) and shared state.

mod accounts;
mod apps;
mod auth;
mod consent;
mod conversations;
mod documents;
mod error;
mod merchant;
mod operator;
mod ops;
mod principal;
mod registry;
mod wallet;
mod ws;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Request, StatusCode};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

pub use auth::{SECURE_SESSION_COOKIE, SESSION_COOKIE};
pub use error::{ApiError, BodyLimit};
pub(crate) use wallet::every_second;
pub use wallet::{deliver_callbacks, expire_orders, sweep_throttles};
pub use ws::CLOSE_LAGGING;

use crate::config::ApiConfig;
use crate::host::Host;

/// The OpenAPI document served at `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// What every handler shares: the host and the API's own settings.
pub struct ServerState {
    pub host: Host,
    pub config: ApiConfig,
    /// Flips to `true` when the server starts shutting down.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Nonces of signed registry requests already served.
    pub nonces: principal::Nonces,
    /// Set once the stored apps are prepared (compiled or found
    /// precompiled): until then the host is live but not ready.
    pub apps_prepared: std::sync::atomic::AtomicBool,
}

impl ServerState {
    pub fn new(
        host: Host,
        config: ApiConfig,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<ServerState, superapp_store::StoreError> {
        Ok(ServerState {
            nonces: principal::Nonces::open(host.store.clone(), superapp_core::now_secs())?,
            host,
            config,
            shutdown,
            apps_prepared: std::sync::atomic::AtomicBool::new(false),
        })
    }
}

pub type AppState = Arc<ServerState>;

/// Routes are added through this so the list of (method, path) is known:
/// a test checks it against the OpenAPI document.
struct Routes {
    router: Router<AppState>,
    list: Vec<(Method, &'static str)>,
}

impl Routes {
    fn add(mut self, method: Method, path: &'static str, handler: MethodRouter<AppState>) -> Self {
        self.router = self.router.route(&format!("/api/v1{path}"), handler);
        self.list.push((method, path));
        self
    }
}

fn routes() -> Routes {
    use axum::routing::{delete, get, post, put};
    use superapp_core::package::MAX_PACKAGE_BYTES;
    Routes {
        router: Router::new(),
        list: Vec::new(),
    }
    .add(Method::POST, "/accounts", post(accounts::register))
    .add(Method::POST, "/sessions", post(accounts::login))
    .add(
        Method::DELETE,
        "/sessions/current",
        delete(accounts::logout),
    )
    .add(Method::GET, "/me", get(accounts::me))
    .add(
        Method::PUT,
        "/me/security-phrase",
        put(accounts::set_phrase),
    )
    .add(Method::PUT, "/me/password", put(accounts::set_password))
    .add(Method::PUT, "/me/group-adds", put(accounts::set_group_adds))
    .add(Method::GET, "/conversations", get(conversations::list))
    .add(Method::POST, "/conversations", post(conversations::create))
    .add(Method::GET, "/conversations/{id}", get(conversations::get))
    .add(
        Method::GET,
        "/conversations/{id}/members",
        get(conversations::members),
    )
    .add(
        Method::POST,
        "/conversations/{id}/members",
        post(conversations::add_member),
    )
    .add(
        Method::DELETE,
        "/conversations/{id}/members/{user}",
        delete(conversations::remove_member),
    )
    .add(
        Method::GET,
        "/conversations/{id}/messages",
        get(conversations::sync),
    )
    .add(
        Method::POST,
        "/conversations/{id}/messages",
        post(conversations::send),
    )
    .add(
        Method::POST,
        "/conversations/{id}/read",
        post(conversations::read),
    )
    .add(Method::GET, "/ws", get(ws::upgrade))
    .add(Method::GET, "/apps", get(apps::list))
    .add(Method::POST, "/apps/{app}/launch", post(apps::launch))
    .add(Method::POST, "/apps/{app}/events", post(apps::event))
    .add(Method::GET, "/qr", get(apps::qr))
    .add(Method::GET, "/prompts", get(consent::prompts))
    .add(
        Method::GET,
        "/prompts/history",
        get(consent::prompt_history),
    )
    .add(
        Method::POST,
        "/prompts/{id}/approve",
        post(consent::approve),
    )
    .add(Method::POST, "/prompts/{id}/deny", post(consent::deny))
    .add(Method::GET, "/me/grants", get(consent::grants))
    .add(
        Method::DELETE,
        "/me/grants/{app}/{capability}",
        delete(consent::revoke),
    )
    .add(Method::GET, "/me/access-log", get(consent::access_log))
    .add(Method::GET, "/wallet", get(wallet::balances))
    .add(
        Method::GET,
        "/wallet/transactions",
        get(wallet::transactions),
    )
    .add(Method::POST, "/wallet/transfers", post(wallet::transfer))
    .add(Method::GET, "/me/documents", get(documents::wallet))
    .add(
        Method::POST,
        "/credentials",
        post(documents::submit_credential),
    )
    .add(
        Method::POST,
        "/revocations",
        post(documents::submit_revocation),
    )
    .add(Method::GET, "/issuers", get(documents::issuers))
    .add(
        Method::GET,
        "/issuers/{id}/revoked",
        get(documents::revoked),
    )
    .add(Method::GET, "/host-key", get(documents::host_key))
    .add(Method::GET, "/merchant/accounts", get(merchant::accounts))
    .add(Method::GET, "/merchant/orders/{id}", get(merchant::order))
    .add(
        Method::POST,
        "/merchant/orders/{id}/refund",
        post(merchant::refund),
    )
    .add(
        Method::GET,
        "/registry/publishers",
        get(registry::publishers),
    )
    .add(
        Method::POST,
        "/registry/publishers",
        post(registry::add_publisher),
    )
    .add(
        Method::POST,
        "/registry/publishers/{id}/keys",
        post(registry::add_publisher_key),
    )
    .add(
        Method::DELETE,
        "/registry/publishers/{id}/keys/{key}",
        delete(registry::remove_publisher_key),
    )
    .add(Method::GET, "/registry/auditors", get(registry::auditors))
    .add(
        Method::POST,
        "/registry/auditors",
        post(registry::trust_auditor),
    )
    .add(
        Method::DELETE,
        "/registry/auditors/{key}",
        delete(registry::distrust_auditor),
    )
    .add(
        Method::POST,
        "/registry/packages",
        post(registry::publish).layer((
            DefaultBodyLimit::max(MAX_PACKAGE_BYTES),
            axum::Extension(BodyLimit(MAX_PACKAGE_BYTES)),
        )),
    )
    .add(Method::GET, "/registry/apps", get(registry::apps))
    .add(Method::GET, "/registry/apps/{app}", get(registry::app))
    .add(
        Method::GET,
        "/registry/apps/{app}/report",
        get(registry::report),
    )
    .add(
        Method::GET,
        "/registry/apps/{app}/versions/{version}",
        get(registry::release),
    )
    .add(
        Method::GET,
        "/registry/apps/{app}/versions/{version}/package",
        get(registry::package),
    )
    .add(
        Method::POST,
        "/registry/apps/{app}/versions/{version}/decisions",
        post(registry::decide),
    )
    .add(
        Method::POST,
        "/registry/apps/{app}/versions/{version}/yank",
        post(registry::yank),
    )
    .add(
        Method::PUT,
        "/registry/apps/{app}/versions/{version}/rollout",
        put(registry::rollout),
    )
    .add(Method::GET, "/audit/entries", get(registry::audit_entries))
    .add(Method::POST, "/operator/topups", post(operator::topup))
    .add(
        Method::POST,
        "/operator/issuers",
        post(operator::add_issuer),
    )
    .add(Method::GET, "/operator/ledger", get(operator::ledger))
    .add(Method::GET, "/operator/backup", get(operator::backup))
    .add(Method::GET, "/openapi.json", on(MethodFilter::GET, openapi))
}

async fn openapi() -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// The whole API with its middleware.
///
/// The middleware is one tower stack handed to `Router::layer` once: every
/// `Router::layer` call wraps each route in another boxed service, which
/// costs a clone, an allocation and a move of the future per request, so
/// nine separate calls cost nine of each.
pub fn router(state: AppState) -> Router {
    let config = state.config.clone();
    let middleware = tower::ServiceBuilder::new()
        // Outermost, so every response gets them, errors and timeouts too.
        .layer(axum::middleware::map_response(crate::shell::security_headers))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        // 5xx answers are not logged one by one: an app's failure is in the
        // audit log, an overload in the metrics, an internal error is logged
        // where it happens; a line per refusal would flood the log under load.
        .layer(
            TraceLayer::new_for_http()
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG))
                .make_span_with(|req: &Request<_>| {
                    let id = req
                        .extensions()
                        .get::<RequestId>()
                        .and_then(|id| id.header_value().to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                }),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ))
        .layer(axum::Extension(BodyLimit(config.max_body_bytes)))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(axum::middleware::map_response_with_state(
            config.max_body_bytes,
            error::json_errors,
        ));
    routes()
        .router
        .merge(crate::shell::router())
        .route("/healthz", axum::routing::get(ops::live))
        .route("/readyz", axum::routing::get(ops::ready))
        .route("/metrics", axum::routing::get(ops::metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ))
        .fallback(not_found)
        .layer(middleware)
        .with_state(state)
}

/// Every (method, path) the router serves, relative to `/api/v1`.
pub fn route_list() -> Vec<(Method, &'static str)> {
    routes().list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_in_the_openapi_document_and_nothing_else() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let mut documented: Vec<(String, String)> = paths
            .iter()
            .flat_map(|(path, ops)| {
                ops.as_object()
                    .unwrap()
                    .keys()
                    .map(move |m| (m.to_uppercase(), path.clone()))
            })
            .collect();
        let mut served: Vec<(String, String)> = route_list()
            .into_iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        documented.sort();
        served.sort();
        assert_eq!(served, documented);
    }
}
