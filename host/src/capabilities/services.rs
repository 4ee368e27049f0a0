//! The services behind the capabilities, each behind a small trait so the
//! dev loop runs on in-memory versions and the server on durable ones.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use ring::hmac;

use crate::bindings::superapp::plugin::payments::OrderStatus;
use crate::bindings::superapp::plugin::types::Error;
use crate::contract::Capability;
use crate::ledger::orders::NewOrder;
use crate::manifest::Manifest;
use crate::messaging::Card;
use crate::store::{KvBackend, MemoryKv, Quota};

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
}

impl Services {
    /// Everything in memory, every consent granted except `denied`: the
    /// provider's dev loop and tests.
    pub fn in_memory(denied: BTreeSet<Capability>) -> Services {
        Services {
            kv: Arc::new(MemoryKv::new()),
            quota: Quota::default(),
            pseudonyms: Pseudonyms::new(b"superapp dev-loop pseudonym secret"),
            consent: Arc::new(DevConsent { denied }),
            profiles: Arc::new(DevProfiles),
            notifier: Arc::new(DevNotifier::default()),
            payments: Arc::new(NoPayments),
            documents: Arc::new(NoDocuments),
        }
    }
}

/// Per-app pseudonymous user ids: HMAC-SHA256 under a host secret of
/// (user id, app id), base64url. Stable per user per app, unlinkable across
/// apps without the secret.
pub struct Pseudonyms {
    key: hmac::Key,
}

impl Pseudonyms {
    pub fn new(secret: &[u8]) -> Self {
        Pseudonyms {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    pub fn for_app(&self, user: &str, app: &str) -> String {
        // Length-prefix the user id so ("ab", "c") and ("a", "bc") differ.
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(&(user.len() as u64).to_be_bytes());
        ctx.update(user.as_bytes());
        ctx.update(app.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(ctx.sign().as_ref())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentState {
    Granted,
    Denied,
    /// Not answered yet: the gate has asked the user.
    Required,
}

/// Answers "may this app use this capability for this user now?".
pub trait ConsentGate: Send + Sync {
    /// `args` is the call's arguments (hashed into the audit record, never
    /// stored as such), when the call has any.
    fn check(
        &self,
        user: &str,
        app: &Manifest,
        capability: Capability,
        args: Option<&[u8]>,
    ) -> ConsentState;
}

/// The dev loop's gate: the provider is the user and allows everything
/// except what they chose to deny (`plugin run --deny CAP`).
pub struct DevConsent {
    pub denied: BTreeSet<Capability>,
}

impl ConsentGate for DevConsent {
    fn check(
        &self,
        _user: &str,
        _app: &Manifest,
        capability: Capability,
        _args: Option<&[u8]>,
    ) -> ConsentState {
        if self.denied.contains(&capability) {
            ConsentState::Denied
        } else {
            ConsentState::Granted
        }
    }
}

/// What the host knows about a user's public profile.
pub struct ProfileInfo {
    pub display_name: String,
    /// 0 none, 1 phone, 2 government id.
    pub verification: u8,
}

pub trait ProfileDirectory: Send + Sync {
    fn profile(&self, user: &str) -> Option<ProfileInfo>;
}

/// The dev loop's users: the display name is the user name.
pub struct DevProfiles;

impl ProfileDirectory for DevProfiles {
    fn profile(&self, user: &str) -> Option<ProfileInfo> {
        Some(ProfileInfo {
            display_name: user.to_string(),
            verification: 0,
        })
    }
}

/// A boxed future, for the async methods of the service traits.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Delivers service-account messages into a user's chat list. The error is
/// what the mini-program sees.
pub trait Notifier: Send + Sync {
    fn send<'a>(
        &'a self,
        user: &'a str,
        app: &'a Manifest,
        text: &'a str,
    ) -> BoxFuture<'a, Result<(), Error>>;
    /// Ask the user, in a host prompt, which chat to share `card` into.
    fn share_card<'a>(
        &'a self,
        user: &'a str,
        app: &'a Manifest,
        card: Card,
    ) -> BoxFuture<'a, Result<(), Error>>;
}

/// Takes payment orders for the `payments` capability. The error is what
/// the mini-program sees.
pub trait PaymentDesk: Send + Sync {
    /// Create a pending order and its payment sheet; returns the order id.
    fn request(&self, user: &str, app: &Manifest, order: NewOrder) -> Result<String, Error>;
    fn status(&self, app: &Manifest, order_id: &str) -> Result<OrderStatus, Error>;
    fn refund(&self, app: &Manifest, order_id: &str, amount: u64) -> Result<(), Error>;
}

/// Where no ledger exists (the provider's dev loop): every payment call
/// answers `unavailable`, so an app's handling of that can be tried.
pub struct NoPayments;

impl PaymentDesk for NoPayments {
    fn request(&self, _: &str, _: &Manifest, _: NewOrder) -> Result<String, Error> {
        Err(no_ledger())
    }
    fn status(&self, _: &Manifest, _: &str) -> Result<OrderStatus, Error> {
        Err(no_ledger())
    }
    fn refund(&self, _: &Manifest, _: &str, _: u64) -> Result<(), Error> {
        Err(no_ledger())
    }
}

fn no_ledger() -> Error {
    Error::Unavailable("payments need the host's ledger: try them on `superapp serve`".into())
}

/// Takes document disclosure requests for the `documents` capability.
pub trait DocumentDesk: Send + Sync {
    /// Put a sheet asking for `fields` of a `credential_type` credential in
    /// front of the user; returns the request id.
    fn request(
        &self,
        user: &str,
        app: &Manifest,
        credential_type: &str,
        fields: &[String],
        purpose: &str,
    ) -> Result<String, Error>;
}

/// Where no document wallet exists (the provider's dev loop).
pub struct NoDocuments;

impl DocumentDesk for NoDocuments {
    fn request(
        &self,
        _: &str,
        _: &Manifest,
        _: &str,
        _: &[String],
        _: &str,
    ) -> Result<String, Error> {
        Err(Error::Unavailable(
            "documents need the host's wallet: try them on `superapp serve`".into(),
        ))
    }
}

/// The dev loop's notifier: keeps messages and prints them to stderr.
#[derive(Default)]
pub struct DevNotifier {
    pub sent: Mutex<Vec<(String, String, String)>>,
}

impl Notifier for DevNotifier {
    fn send<'a>(
        &'a self,
        user: &'a str,
        app: &'a Manifest,
        text: &'a str,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            eprintln!("notify [{} -> {user}]: {text}", app.label());
            self.sent.lock().unwrap_or_else(|p| p.into_inner()).push((
                user.to_string(),
                app.id.clone(),
                text.to_string(),
            ));
            Ok(())
        })
    }

    fn share_card<'a>(
        &'a self,
        user: &'a str,
        app: &'a Manifest,
        card: Card,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            eprintln!(
                "share card [{} -> {user}]: {} {:?}",
                app.label(),
                card.title,
                card.params
            );
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_per_app_and_differ_across_apps() {
        let p = Pseudonyms::new(b"secret");
        assert_eq!(
            p.for_app("alice", "org.a.app"),
            p.for_app("alice", "org.a.app")
        );
        assert_ne!(
            p.for_app("alice", "org.a.app"),
            p.for_app("alice", "org.b.app")
        );
        assert_ne!(
            p.for_app("alice", "org.a.app"),
            p.for_app("bob", "org.a.app")
        );
        assert_ne!(p.for_app("ab", "c.x"), p.for_app("a", "bc.x"));
        assert_ne!(
            Pseudonyms::new(b"other").for_app("alice", "org.a.app"),
            p.for_app("alice", "org.a.app")
        );
        assert_eq!(p.for_app("alice", "org.a.app").len(), 43);
    }
}
