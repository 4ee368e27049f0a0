//! The one mapping from the services' errors to the guest's typed `error`.
//! The HTTP API maps the same errors in `superapp-server`'s `api/error.rs`;
//! both follow one rule, written down in ARCHITECTURE.md: the caller's own
//! mistake is `invalid`, a missing thing `not-found`, somebody else's thing
//! `denied` (403 over HTTP), and a host failure `unavailable` (503), whose
//! detail goes to the host's log and never to the app.

use superapp_services::documents::DocumentError;
use superapp_services::ledger::orders::OrderError;
use superapp_services::ledger::LedgerError;
use superapp_store::KvError;

use crate::bindings::superapp::plugin::types::Error;

/// The service behind a capability failed in a way that is not the app's
/// fault: the detail goes to the host's log, and the guest hears only that
/// the service is temporarily unavailable.
pub(crate) fn unavailable(service: &str, error: &dyn std::fmt::Display) -> Error {
    tracing::error!(%error, "the {service} service failed");
    Error::Unavailable(format!("the {service} service is temporarily unavailable"))
}

impl From<KvError> for Error {
    fn from(e: KvError) -> Self {
        match e {
            KvError::QuotaExceeded(m) => Error::QuotaExceeded(m),
            KvError::Invalid(m) => Error::Invalid(m),
            KvError::Backend(m) => unavailable("storage", &m),
        }
    }
}

impl From<OrderError> for Error {
    fn from(e: OrderError) -> Self {
        match e {
            OrderError::Invalid(_)
            | OrderError::KeyReused
            | OrderError::NotPending
            | OrderError::NotPaid
            | OrderError::RefundTooLarge { .. } => Error::Invalid(e.to_string()),
            OrderError::NotFound => Error::NotFound(e.to_string()),
            OrderError::NotYours => Error::Denied(e.to_string()),
            // The merchant's balance is the provider's business, not the
            // app's mistake: it may try again later.
            OrderError::Ledger(LedgerError::InsufficientFunds { .. }) => {
                Error::Unavailable("the merchant account cannot cover this refund now".into())
            }
            OrderError::Ledger(e) => Error::Invalid(e.to_string()),
            OrderError::Store(e) => unavailable("payments", &e),
        }
    }
}

impl From<DocumentError> for Error {
    fn from(e: DocumentError) -> Self {
        match e {
            DocumentError::Store(e) => unavailable("documents", &e),
            DocumentError::UnknownIssuer(_) | DocumentError::NotFound => {
                Error::NotFound(e.to_string())
            }
            other => Error::Invalid(other.to_string()),
        }
    }
}
