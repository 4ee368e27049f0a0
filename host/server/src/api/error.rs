//! The API's one error type, and the one mapping from every service error to
//! an HTTP status and a stable code. Every failure becomes
//! `{"error":{"code","message"}}`; internal details go to the log, never to
//! the client. The guest's mapping (`superapp-runtime`'s
//! `capabilities/errors.rs`) follows the same rule: the caller's mistake is
//! 400 / `invalid`, a missing thing 404 / `not-found`, somebody else's thing
//! 403 / `denied`, and a host failure 500 or 503 / `unavailable`.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use superapp_runtime::RunError;

use crate::host::HostError;
use superapp_services::consent::ConsentError;
use superapp_services::documents::DocumentError;
use superapp_services::identity::IdentityError;
use superapp_services::ledger::orders::OrderError;
use superapp_services::ledger::LedgerError;
use superapp_services::messaging::MessagingError;
use superapp_services::registry::RegistryError;
use superapp_store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid-request", message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not-found", message)
    }

    /// A live connection signed in by cookie from another origin's page.
    pub fn cross_site() -> Self {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "cross-site",
            "a live connection signed in by cookie must come from this host's own pages",
        )
    }

    /// A user who holds `max` live connections already.
    pub fn too_many_live(max: usize) -> Self {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-live-connections",
                format!("a user may hold {max} live connections here; close one first"),
            )
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub(crate) fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed to handle this request",
        )
    }
}

/// The most of each line of an error's message an answer carries, in
/// bytes.
const MAX_MESSAGE_LINE: usize = 2048;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // A message may quote the request (an id, a field's value): enough
        // of it to see, not the megabyte it may be.
        let message = superapp_core::text::clip_lines(&self.message, MAX_MESSAGE_LINE);
        // Nor may what it quotes turn the message around.
        let message = superapp_core::text::escape_turning(&message);
        let body = json!({ "error": { "code": self.code, "message": message } });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            // The database is away. What failed before its commit wrote
            // nothing; a commit cut off may or may not have landed, so the
            // client retries with the same idempotency key or client id.
            StoreError::Unavailable(_) => {
                tracing::error!(error = %e, "the store is unavailable");
                ApiError {
                    retry_after: Some(1),
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "store-unavailable",
                        "the service cannot reach or write its store right now; try again (a retry with the same idempotency key or client id is safe)",
                    )
                }
            }
            e => ApiError::internal(&e),
        }
    }
}

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::InvalidInput(m) => ApiError::bad_request(m),
            IdentityError::UsernameTaken | IdentityError::UsernameLookAlike(_) => {
                ApiError::new(StatusCode::CONFLICT, "username-taken", e.to_string())
            }
            IdentityError::BadCredentials => {
                ApiError::new(StatusCode::UNAUTHORIZED, "bad-credentials", e.to_string())
            }
            IdentityError::SignUpsThrottled { retry_after_secs } => ApiError {
                retry_after: Some(retry_after_secs),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", e.to_string())
            },
            IdentityError::Throttled { retry_after_secs } => ApiError {
                retry_after: Some(retry_after_secs),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too-many-attempts",
                    e.to_string(),
                )
            },
            IdentityError::Busy => ApiError {
                retry_after: Some(1),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string())
            },
            IdentityError::Unauthenticated(m) => ApiError::unauthenticated(m),
            IdentityError::Store(e) => e.into(),
        }
    }
}

/// A wait as `Retry-After` says it: whole seconds, rounded up and at least
/// one, so a client that waits this long finds its allowance free.
fn whole_seconds(wait: std::time::Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

impl From<MessagingError> for ApiError {
    fn from(e: MessagingError) -> Self {
        match e {
            MessagingError::InvalidInput(m) => ApiError::bad_request(m),
            MessagingError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", e.to_string())
            }
            MessagingError::NotFound => ApiError::not_found(e.to_string()),
            MessagingError::Forbidden(m) => ApiError::forbidden(m),
            MessagingError::NotAMember => ApiError::not_found(e.to_string()),
            MessagingError::ClientIdReused => {
                ApiError::new(StatusCode::CONFLICT, "idempotency-conflict", e.to_string())
            }
            MessagingError::UnknownUser(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown-user",
                e.to_string(),
            ),
            MessagingError::Throttled { retry_after, .. }
            | MessagingError::GroupsThrottled { retry_after } => ApiError {
                retry_after: Some(whole_seconds(retry_after)),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", e.to_string())
            },
            MessagingError::Store(e) => e.into(),
        }
    }
}

impl From<ConsentError> for ApiError {
    fn from(e: ConsentError) -> Self {
        match e {
            ConsentError::NotFound => ApiError::not_found(e.to_string()),
            ConsentError::Answered => {
                ApiError::new(StatusCode::CONFLICT, "already-answered", e.to_string())
            }
            ConsentError::WrongKind => ApiError::bad_request(e.to_string()),
            ConsentError::Store(e) => e.into(),
        }
    }
}

impl From<DocumentError> for ApiError {
    fn from(e: DocumentError) -> Self {
        match e {
            DocumentError::NotFound
            | DocumentError::UnknownIssuer(_)
            | DocumentError::UnknownUser(_) => ApiError::not_found(e.to_string()),
            DocumentError::NotPending => {
                ApiError::new(StatusCode::CONFLICT, "already-answered", e.to_string())
            }
            DocumentError::IssuerExists(_)
            | DocumentError::IssuerTwin { .. }
            | DocumentError::HeldAlready(_) => {
                ApiError::new(StatusCode::CONFLICT, "exists", e.to_string())
            }
            DocumentError::Verify(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid-credential", e.to_string())
            }
            DocumentError::Invalid(m) => ApiError::bad_request(m),
            DocumentError::Store(e) => e.into(),
        }
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Invalid(m) => ApiError::bad_request(m),
            LedgerError::InsufficientFunds { .. } => {
                ApiError::new(StatusCode::CONFLICT, "insufficient-funds", e.to_string())
            }
            LedgerError::IdempotencyConflict => {
                ApiError::new(StatusCode::CONFLICT, "idempotency-conflict", e.to_string())
            }
            LedgerError::Store(e) => e.into(),
        }
    }
}

impl From<OrderError> for ApiError {
    fn from(e: OrderError) -> Self {
        match e {
            OrderError::NotFound => ApiError::not_found(e.to_string()),
            OrderError::NotPending => {
                ApiError::new(StatusCode::CONFLICT, "already-answered", e.to_string())
            }
            // Another publisher's order: the same refusal the guest gets.
            OrderError::NotYours => ApiError::forbidden(e.to_string()),
            OrderError::Ledger(e) => e.into(),
            OrderError::Store(e) => e.into(),
            OrderError::KeyReused => {
                ApiError::new(StatusCode::CONFLICT, "idempotency-conflict", e.to_string())
            }
            OrderError::Invalid(_) | OrderError::NotPaid | OrderError::RefundTooLarge { .. } => {
                ApiError::bad_request(e.to_string())
            }
        }
    }
}

impl From<RunError> for ApiError {
    fn from(e: RunError) -> Self {
        let retry_after = match &e {
            // The host is at capacity: nothing ran, the client may retry.
            RunError::Overloaded { reason, .. } => Some(reason.retry_after_secs()),
            // The host's storage kept the event waiting: the host's fault.
            RunError::HostDelayed { .. } => Some(1),
            _ => None,
        };
        if retry_after.is_some() {
            return ApiError {
                retry_after,
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.code(), e.to_string())
            };
        }
        // The app found the event made no sense (an unknown action, a
        // value it cannot read): the request's fault.
        if e.is_bad_request() {
            return ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string());
        }
        // The app failed, not the request or the host: a gateway error,
        // with the app's error code and a message that names app and limit.
        ApiError::new(StatusCode::BAD_GATEWAY, e.code(), e.to_string())
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let message = e.to_string();
        match e {
            RegistryError::Invalid(_) | RegistryError::Decision(_) => {
                ApiError::bad_request(message)
            }
            RegistryError::Package(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid-package", message)
            }
            RegistryError::UnknownPublisher(_) | RegistryError::NotPublisherKey { .. } => {
                ApiError::new(StatusCode::FORBIDDEN, "unknown-publisher", message)
            }
            RegistryError::UntrustedAuditor(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "untrusted-auditor", message)
            }
            RegistryError::Forbidden(_) => ApiError::forbidden(message),
            RegistryError::NotLaunchable(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "not-approved", message)
            }
            RegistryError::UnknownApp(_) | RegistryError::UnknownVersion { .. } => {
                ApiError::not_found(message)
            }
            RegistryError::PublisherExists(_)
            | RegistryError::Conflict(_)
            | RegistryError::RemovedKey { .. } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            RegistryError::Store(e) => e.into(),
        }
    }
}

impl From<HostError> for ApiError {
    fn from(e: HostError) -> Self {
        match e {
            HostError::NoApp(_) | HostError::NotFound(_) => ApiError::not_found(e.to_string()),
            HostError::Invalid(m) => ApiError::bad_request(m),
            HostError::AppUnavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "app-unavailable",
                e.to_string(),
            ),
            HostError::Run(e) => e.into(),
            HostError::Throttled { retry_after, .. } => ApiError {
                retry_after: Some(whole_seconds(retry_after)),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", e.to_string())
            },
            // Not 401: the session is fine, the confirmation is not.
            HostError::WrongPassword => {
                ApiError::new(StatusCode::FORBIDDEN, "wrong-password", e.to_string())
            }
            HostError::OrderExpired => {
                ApiError::new(StatusCode::CONFLICT, "order-expired", e.to_string())
            }
            HostError::Identity(e) => e.into(),
            HostError::Messaging(e) => e.into(),
            HostError::Consent(e) => e.into(),
            HostError::Ledger(e) => e.into(),
            HostError::Order(e) => e.into(),
            HostError::Document(e) => e.into(),
            HostError::Registry(e) => e.into(),
            HostError::Store(e) => e.into(),
        }
    }
}

/// The body limit of the route a request is for, put into the request's
/// extensions beside `DefaultBodyLimit`, so a refusal can name it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

fn size(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

impl ApiError {
    /// A body over the route's limit; nothing of it was used.
    pub fn too_large(limit: Option<BodyLimit>) -> Self {
        let message = match limit {
            Some(BodyLimit(n)) => {
                format!(
                    "the request body is larger than this route's limit of {}",
                    size(n)
                )
            }
            None => "the request body is larger than this route accepts".to_string(),
        };
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", message)
    }

    /// A JSON body that could not be used, in the API's words.
    pub fn from_json(r: JsonRejection, limit: Option<BodyLimit>) -> Self {
        let status = r.status();
        match &r {
            JsonRejection::JsonDataError(e) => ApiError::new(
                status,
                "invalid-json",
                format!("the request body does not fit this route: {}", cause(e)),
            ),
            JsonRejection::JsonSyntaxError(e) => ApiError::new(
                status,
                "invalid-json",
                format!("the request body is not valid JSON: {}", cause(e)),
            ),
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                status,
                "unsupported-media-type",
                "send the body as JSON, with `Content-Type: application/json`",
            ),
            _ if status == StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(limit),
            _ => ApiError::new(
                status,
                "invalid-request",
                "the request body could not be read",
            ),
        }
    }
}

/// The underlying reason of a rejection, without the framework's preamble.
fn cause(e: &dyn std::error::Error) -> String {
    let mut reason = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        reason = s.to_string();
        source = s.source();
    }
    reason
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        let detail = match &r {
            QueryRejection::FailedToDeserializeQueryString(e) => cause(e),
            other => other.body_text(),
        };
        ApiError::bad_request(format!("the query string is invalid: {detail}"))
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        let detail = match &r {
            PathRejection::FailedToDeserializePathParams(e) => cause(e),
            other => other.body_text(),
        };
        ApiError::bad_request(format!("a part of the path is invalid: {detail}"))
    }
}

/// Turn the bodiless or plain-text error responses that middleware produces
/// (timeouts, method not allowed, payload limits) into JSON errors.
pub async fn json_errors(State(limit): State<usize>, response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not-found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method-not-allowed",
            "this route does not accept that method",
        ),
        StatusCode::REQUEST_TIMEOUT => ("timeout", "the request took too long"),
        StatusCode::PAYLOAD_TOO_LARGE => {
            return ApiError::too_large(Some(BodyLimit(limit))).into_response();
        }
        s if s.is_client_error() => ("invalid-request", "the request was refused"),
        _ => ("internal", "the server failed to handle this request"),
    };
    let mut out = ApiError::new(status, code, message).into_response();
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(v) = response.headers().get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn somebody_elses_order_is_forbidden_not_a_bad_request() {
        let e = ApiError::from(OrderError::NotYours);
        assert_eq!((e.status, e.code), (StatusCode::FORBIDDEN, "forbidden"));
        let e = ApiError::from(OrderError::NotFound);
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        let e = ApiError::from(OrderError::NotPending);
        assert_eq!(
            (e.status, e.code),
            (StatusCode::CONFLICT, "already-answered")
        );
    }

    #[test]
    fn a_store_failure_never_shows_its_detail() {
        let e = ApiError::from(DocumentError::Store(StoreError::Backend(
            "disk /var/lib/secret is full".into(),
        )));
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.message.contains("secret"), "{}", e.message);
    }

    #[test]
    fn an_event_the_host_kept_waiting_is_the_hosts_503_not_the_apps_502() {
        let e = ApiError::from(RunError::HostDelayed {
            app: "dev.example.app@1.0.0".into(),
            waited: std::time::Duration::from_secs(11),
        });
        assert_eq!(
            (e.status, e.code, e.retry_after),
            (StatusCode::SERVICE_UNAVAILABLE, "host-delayed", Some(1))
        );
        let e = ApiError::from(RunError::Limit {
            app: "dev.example.app@1.0.0".into(),
            limit: superapp_runtime::Limit::Time { limit_ms: 100 },
        });
        assert_eq!((e.status, e.retry_after), (StatusCode::BAD_GATEWAY, None));
    }
}
