//! Errors of loading and running mini-programs. Every run error names the
//! app and version, and for a limit, which limit.

use serde::Serialize;

use crate::bindings::superapp::plugin::types::{AppError, Error as CapError};
use crate::contract::ImportError;
use crate::scheduler::Overload;
use crate::view::ViewError;
use superapp_core::ManifestError;

/// Why a component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("not a valid component: {0}")]
    Compile(String),
    #[error("{}", join(.0))]
    Imports(Vec<ImportError>),
    #[error("the component cannot be linked: {0}")]
    Link(String),
    #[error("the component's SHA-256 is {actual}, not the {claimed} it was loaded as")]
    Digest { claimed: String, actual: String },
}

fn join(errors: &[ImportError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The limit an event ran into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "limit", rename_all = "kebab-case")]
pub enum Limit {
    Memory {
        limit_bytes: u64,
        requested_bytes: u64,
    },
    Table {
        limit_elements: u64,
        requested_elements: u64,
    },
    Time {
        limit_ms: u64,
    },
    View {
        detail: String,
    },
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Memory {
                limit_bytes,
                requested_bytes,
            } => {
                write!(
                    f,
                    "memory limit of {limit_bytes} bytes exceeded (asked for {requested_bytes})"
                )
            }
            Limit::Table {
                limit_elements,
                requested_elements,
            } => {
                write!(f, "table limit of {limit_elements} elements exceeded (asked for {requested_elements})")
            }
            Limit::Time { limit_ms } => write!(f, "time limit of {limit_ms} ms exceeded"),
            Limit::View { detail } => write!(f, "view limit exceeded: {detail}"),
        }
    }
}

/// Why an event did not produce a view. The host and other apps carry on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RunError {
    #[error("{app}: {limit}")]
    Limit { app: String, limit: Limit },
    #[error("{app} panicked: {message}")]
    Panic { app: String, message: String },
    #[error("{app} trapped: {reason}")]
    Trap { app: String, reason: String },
    #[error("{app} returned an error: {}", describe_app_error(.error))]
    App { app: String, error: AppError },
    #[error("{app} returned an invalid view: {error}")]
    InvalidView { app: String, error: ViewError },
    #[error("{app} could not be started: {reason}")]
    Instantiate { app: String, reason: String },
    /// Refused before it ran: the host is at capacity. Nothing happened.
    #[error("{app} is busy ({reason}); nothing ran, try again in a moment")]
    Overloaded { app: String, reason: Overload },
    /// Stopped because the host's own calls (its store, under load) kept
    /// it waiting longer than [`RuntimeConfig::host_delay`](crate::RuntimeConfig::host_delay):
    /// the host's fault, not the app's. What its host calls did before
    /// stands, as after any failed event.
    #[error("{app} was stopped after the host kept it waiting {} ms (the host's storage is slow); try again in a moment", .waited.as_millis())]
    HostDelayed {
        app: String,
        waited: std::time::Duration,
    },
}

impl RunError {
    /// A stable machine-readable code for APIs and the CLI.
    pub fn code(&self) -> &'static str {
        match self {
            RunError::Limit { .. } => "limit-exceeded",
            RunError::Panic { .. } => "app-panicked",
            RunError::Trap { .. } => "app-trapped",
            RunError::App { .. } => "app-error",
            RunError::InvalidView { .. } => "invalid-view",
            RunError::Instantiate { .. } => "instantiate-failed",
            RunError::Overloaded { .. } => "overloaded",
            RunError::HostDelayed { .. } => "host-delayed",
        }
    }

    /// Whether the app refused the event as making no sense to it (its
    /// `bad-request`): the request's fault, not the app's nor the host's.
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            RunError::App {
                error: AppError::BadRequest(_),
                ..
            }
        )
    }

    /// The limit hit, if this is a limit error.
    pub fn limit(&self) -> Option<&Limit> {
        match self {
            RunError::Limit { limit, .. } => Some(limit),
            _ => None,
        }
    }
}

/// The longest message of an app's error the host passes on, in bytes:
/// it is shown to the user (as the view limits bound what an app shows),
/// and answered to their client.
pub const MAX_APP_ERROR_MESSAGE: usize = 1024;

/// `e` with its message cut to [`MAX_APP_ERROR_MESSAGE`] (at a character
/// boundary, marked with an ellipsis).
pub(crate) fn bounded_app_error(e: AppError) -> AppError {
    fn cut(m: String) -> String {
        match superapp_core::text::clip(&m, MAX_APP_ERROR_MESSAGE) {
            std::borrow::Cow::Borrowed(_) => m,
            std::borrow::Cow::Owned(cut) => cut,
        }
    }
    match e {
        AppError::BadRequest(m) => AppError::BadRequest(cut(m)),
        AppError::Failed(m) => AppError::Failed(cut(m)),
        AppError::Capability(c) => AppError::Capability(match c {
            CapError::Denied(m) => CapError::Denied(cut(m)),
            CapError::ConsentRequired(m) => CapError::ConsentRequired(cut(m)),
            CapError::QuotaExceeded(m) => CapError::QuotaExceeded(cut(m)),
            CapError::Invalid(m) => CapError::Invalid(cut(m)),
            CapError::NotFound(m) => CapError::NotFound(cut(m)),
            CapError::Unavailable(m) => CapError::Unavailable(cut(m)),
        }),
    }
}

pub fn describe_app_error(e: &AppError) -> String {
    match e {
        AppError::BadRequest(m) => format!("bad request: {m}"),
        AppError::Failed(m) => format!("failed: {m}"),
        AppError::Capability(c) => format!("capability error: {}", describe_cap_error(c)),
    }
}

pub fn describe_cap_error(e: &CapError) -> String {
    match e {
        CapError::Denied(m) => format!("denied: {m}"),
        CapError::ConsentRequired(m) => format!("consent required: {m}"),
        CapError::QuotaExceeded(m) => format!("quota exceeded: {m}"),
        CapError::Invalid(m) => format!("invalid: {m}"),
        CapError::NotFound(m) => format!("not found: {m}"),
        CapError::Unavailable(m) => format!("unavailable: {m}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// However long an app's error message, what the host passes on is
    /// bounded, cut between characters; a short one is kept whole.
    #[test]
    fn an_apps_error_message_is_bounded() {
        let long = "é".repeat(10 * MAX_APP_ERROR_MESSAGE);
        let AppError::Failed(cut) = bounded_app_error(AppError::Failed(long)) else {
            panic!("the kind changed");
        };
        assert!(cut.len() <= MAX_APP_ERROR_MESSAGE + '…'.len_utf8());
        assert!(cut.ends_with('…') && cut.starts_with("éé"));
        let inner = AppError::Capability(CapError::Denied("x".repeat(5000)));
        let AppError::Capability(CapError::Denied(cut)) = bounded_app_error(inner) else {
            panic!("the kind changed");
        };
        assert_eq!(cut.len(), MAX_APP_ERROR_MESSAGE + '…'.len_utf8());
        let short = AppError::BadRequest("no such slot".into());
        assert!(matches!(bounded_app_error(short), AppError::BadRequest(m) if m == "no such slot"));
    }
}
