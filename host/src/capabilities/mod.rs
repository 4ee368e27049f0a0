//! The host side of every capability, one module each. A module links its
//! WIT interface and owns its checks; this file holds what they share: the
//! per-instance state and the services behind the capabilities.

pub mod clock;
pub mod documents;
pub mod identity;
pub mod log;
pub mod notify;
pub mod payments;
pub mod profile;
pub mod random;
pub mod shared_storage;
pub mod storage;

mod services;

use std::sync::Arc;

pub use services::{
    BoxFuture, ConsentGate, ConsentState, DevConsent, DevNotifier, DevProfiles, DocumentDesk,
    NoDocuments, NoPayments, Notifier, PaymentDesk, ProfileDirectory, ProfileInfo, Pseudonyms,
    Services,
};

use crate::bindings::superapp::plugin::types::Error;
use crate::contract::{Capability, Consent};
use crate::manifest::Manifest;
use crate::runtime::Meter;
use crate::store::KvError;

/// The data of one store: one instance, one user, one event.
pub struct HostState {
    pub(crate) app: Arc<Manifest>,
    /// The host's internal user id (never shown to the mini-program).
    pub(crate) user: String,
    pub(crate) services: Arc<Services>,
    pub(crate) meter: Meter,
    /// The message the guest's panic hook reported, if it panicked.
    pub(crate) panic_message: Option<String>,
    pub(crate) log_lines: u32,
    /// Notifications sent during this event.
    pub(crate) notifications: u32,
}

impl HostState {
    pub(crate) fn new(
        app: Arc<Manifest>,
        user: String,
        services: Arc<Services>,
        meter: Meter,
    ) -> Self {
        HostState {
            app,
            user,
            services,
            meter,
            panic_message: None,
            log_lines: 0,
            notifications: 0,
        }
    }

    /// The check every capability call makes first: the manifest declares
    /// it, and the user has agreed where the capability needs agreement.
    /// The linker already holds only declared capabilities; this is the
    /// second line, and the place where consent is read at call time.
    /// The storage quota of this app: its manifest's, capped by the host's.
    pub(crate) fn quota(&self) -> crate::store::Quota {
        let host = self.services.quota;
        crate::store::Quota {
            total_bytes: self.app.limits.storage_bytes.min(host.total_bytes),
            ..host
        }
    }

    pub(crate) fn require(&self, capability: Capability) -> Result<(), Error> {
        self.require_with(capability, None)
    }

    /// [`require`](Self::require) for a call with arguments, whose digest
    /// goes into the audit record of a consent-gated call.
    pub(crate) fn require_with(
        &self,
        capability: Capability,
        args: Option<&[u8]>,
    ) -> Result<(), Error> {
        if !self.app.declares(capability) {
            return Err(Error::Denied(format!(
                "`{capability}` is not declared in plugin.toml"
            )));
        }
        if capability.consent() == Consent::None {
            return Ok(());
        }
        match self.services.consent.check(&self.user, &self.app, capability, args) {
            ConsentState::Granted => Ok(()),
            ConsentState::Denied => Err(Error::Denied(format!("the user has not allowed `{capability}`"))),
            ConsentState::Required => Err(Error::ConsentRequired(format!(
                "the user has been asked to allow `{capability}`; the answer arrives as a consent event"
            ))),
        }
    }
}

impl From<KvError> for Error {
    fn from(e: KvError) -> Self {
        match e {
            KvError::QuotaExceeded(m) => Error::QuotaExceeded(m),
            KvError::Invalid(m) => Error::Invalid(m),
            KvError::Backend(m) => {
                // The detail goes to the host's log, not to the guest.
                tracing::error!(error = %m, "storage backend failed");
                Error::Unavailable("storage is temporarily unavailable".into())
            }
        }
    }
}
