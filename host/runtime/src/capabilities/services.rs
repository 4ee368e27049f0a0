//! The services behind the capabilities, shared by every instance. Each sits
//! behind the port its capability folder defines, so the dev loop runs on
//! in-memory or stand-in versions and the server on the durable ones.

use std::collections::BTreeSet;
use std::sync::Arc;

use superapp_core::Capability;
use superapp_services::identity::Pseudonyms;
use superapp_store::{KvBackend, MemoryKv, Quota};

use super::documents::{DocumentDesk, NoDocuments};
use super::gate::{ConsentGate, DevConsent};
use super::http::{HttpGateway, NoHttp};
use super::notify::{DevNotifier, Notifier};
use super::payments::{NoPayments, PaymentDesk};
use super::profile::{DevProfiles, ProfileDirectory};

/// Everything the capabilities need from the host, shared by all instances.
pub struct Services {
    pub kv: Arc<dyn KvBackend>,
    /// The host's cap on per-namespace storage.
    pub quota: Quota,
    pub pseudonyms: Pseudonyms,
    pub consent: Arc<dyn ConsentGate>,
    pub profiles: Arc<dyn ProfileDirectory>,
    pub notifier: Arc<dyn Notifier>,
    pub payments: Arc<dyn PaymentDesk>,
    pub documents: Arc<dyn DocumentDesk>,
    pub http: Arc<dyn HttpGateway>,
    /// Each app's budget for the host's log.
    pub logs: super::log::LogBudgets,
    /// Each user's allowance of app data writes.
    pub storage_writes: Arc<super::storage::WriteBudgets>,
}

/// The dev loop's key for per-app pseudonyms (not secret: nothing in the
/// dev loop is a real user).
pub const DEV_PSEUDONYM_SECRET: &[u8] = b"superapp dev-loop pseudonym secret";

impl Services {
    /// Everything in memory, every consent granted except `denied`: the
    /// provider's dev loop and tests.
    pub fn in_memory(denied: BTreeSet<Capability>) -> Services {
        Services {
            kv: Arc::new(MemoryKv::new()),
            quota: Quota::default(),
            pseudonyms: Pseudonyms::new(DEV_PSEUDONYM_SECRET),
            consent: Arc::new(DevConsent { denied }),
            profiles: Arc::new(DevProfiles),
            notifier: Arc::new(DevNotifier::default()),
            payments: Arc::new(NoPayments),
            documents: Arc::new(NoDocuments),
            http: Arc::new(NoHttp),
            logs: Default::default(),
            storage_writes: Default::default(),
        }
    }
}

/// A boxed future, for the async methods of the ports.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
