//! The host side of every capability, one folder each. A folder links its
//! WIT interface, checks the call, owns its per-instance state and limits,
//! and holds the port to the service behind it with that port's dev-loop and
//! server implementations. This file holds what they share: the state of
//! one instance, the check every call makes first, and [`registration`],
//! the registry that maps each capability to its folder.

pub mod clock;
pub mod documents;
mod errors;
pub mod gate;
pub mod http;
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

use superapp_core::{Capability, ConsentLevel, Manifest};
use wasmtime::component::Linker;

pub(crate) use errors::unavailable;
pub use gate::{ConsentGate, ConsentState, DevConsent};
pub use services::{BoxFuture, Services, DEV_PSEUDONYM_SECRET};

use crate::bindings::superapp::plugin::types::Error;
use crate::limits::Meter;

/// What a capability's folder declares about it: how much consent a call
/// needs, and how to add its host functions to an app's linker.
#[derive(Clone, Copy)]
pub struct Registration {
    pub consent: ConsentLevel,
    pub link: fn(&mut Linker<HostState>) -> wasmtime::Result<()>,
}

/// The registry: each capability's folder. The match is exhaustive, so a
/// new capability does not compile until its folder is registered here;
/// the static import check reads the same enum, so the check and the
/// linker cannot disagree.
pub fn registration(capability: Capability) -> Registration {
    match capability {
        Capability::Log => log::REGISTRATION,
        Capability::Identity => identity::REGISTRATION,
        Capability::Profile => profile::REGISTRATION,
        Capability::Storage => storage::REGISTRATION,
        Capability::SharedStorage => shared_storage::REGISTRATION,
        Capability::Notify => notify::REGISTRATION,
        Capability::Payments => payments::REGISTRATION,
        Capability::Documents => documents::REGISTRATION,
        Capability::Clock => clock::REGISTRATION,
        Capability::Random => random::REGISTRATION,
        Capability::Http => http::REGISTRATION,
    }
}

/// How much consent a call of `capability` needs.
pub fn consent_level(capability: Capability) -> ConsentLevel {
    registration(capability).consent
}

/// Add `capability`'s host functions to `linker`.
pub fn link(capability: Capability, linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    (registration(capability).link)(linker)
}

/// The data of one store: one instance, one user, one event.
pub struct HostState {
    pub(crate) app: Arc<Manifest>,
    /// The host's internal user id (never shown to the mini-program).
    pub(crate) user: String,
    pub(crate) services: Arc<Services>,
    pub(crate) meter: Meter,
    /// The message the guest's panic hook reported, if it panicked.
    pub(crate) panic_message: Option<String>,
    pub(crate) log: log::State,
    pub(crate) notify: notify::State,
    /// The capability the current host call passed its check for: the
    /// call hook times capability calls, not the runtime's own libcalls.
    pub(crate) calling: std::cell::Cell<Option<Capability>>,
    /// Set by a call that moved much data through the store (a large value
    /// or listing): its waits are the app's own, never excused.
    pub(crate) heavy: std::cell::Cell<bool>,
    /// Calls this event made of capabilities that need the user's
    /// agreement: each is checked and recorded in the audit log.
    pub(crate) gated_calls: std::cell::Cell<u32>,
    /// The calls (capability and the digest of their arguments) the user's
    /// standing agreement already allowed in this event: the same call
    /// again in the same event is neither checked nor recorded again.
    pub(crate) allowed: std::cell::RefCell<std::collections::HashSet<(Capability, Option<String>)>>,
    /// The event's running-time clock and how long a host call that waits
    /// on the network may take in all (the limit less a reserve for the
    /// app to answer); set only for apps that declare `http`.
    pub(crate) deadline: Option<(Arc<crate::scheduler::Turn>, std::time::Duration)>,
    /// See [`Invocation::may_ask`](crate::Invocation::may_ask).
    pub(crate) may_ask: bool,
    /// Sheets (payments, document requests, cards to share) this event put
    /// before the user.
    pub(crate) asked: u32,
    /// Set when the host's own delays in host calls added up past the
    /// runtime's bound: the event is stopped as the host's failure.
    pub(crate) host_delayed: Option<std::time::Duration>,
}

/// Most sheets one event may put before the user.
pub const MAX_ASKS_PER_EVENT: u32 = 3;
/// Most calls of capabilities that need the user's agreement one event may
/// make: each is checked and recorded in the audit log, so a loop of them
/// would fill the log and take the host's time past the app's limit. (The
/// same call again in one event, once allowed, counts and records nothing.)
pub const MAX_GATED_CALLS_PER_EVENT: u32 = 64;
/// A store call that moves more than this (a value written or read, a
/// listing) is heavy: its waits count against the app in full.
pub const HEAVY_BYTES: usize = 64 << 10;
/// Most sheets of one app that may wait for one user at once.
pub const MAX_OPEN_SHEETS: usize = 5;

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
            log: log::State::default(),
            notify: notify::State::default(),
            calling: std::cell::Cell::new(None),
            heavy: std::cell::Cell::new(false),
            gated_calls: std::cell::Cell::new(0),
            allowed: Default::default(),
            deadline: None,
            may_ask: true,
            asked: 0,
            host_delayed: None,
        }
    }

    /// Whether this event may put one more sheet before the user: only
    /// while they use the app, a few per event, and a few of the app's
    /// waiting at once, so that no app buries the user in dialogs.
    pub(crate) fn take_ask(&mut self) -> Result<(), Error> {
        if !self.may_ask {
            return Err(Error::Denied(
                "an app asks the user for a payment, a document or a share only while they use it, not in an event the host sends on its own or about a refusal".into(),
            ));
        }
        if self.asked >= MAX_ASKS_PER_EVENT {
            return Err(Error::QuotaExceeded(format!(
                "at most {MAX_ASKS_PER_EVENT} payment, document or share sheets per event"
            )));
        }
        if self.services.consent.open_sheets(&self.user, &self.app.id) >= MAX_OPEN_SHEETS {
            return Err(Error::QuotaExceeded(format!(
                "{MAX_OPEN_SHEETS} of this app's sheets already wait for the user's answer"
            )));
        }
        self.asked += 1;
        Ok(())
    }

    /// What is left of this event's time; without a scheduler (host calls
    /// made directly, in tests), the event's default limit.
    pub(crate) fn time_left(&self) -> std::time::Duration {
        self.deadline.as_ref().map_or(
            std::time::Duration::from_millis(superapp_core::Limits::default().time_ms),
            |(turn, budget)| budget.saturating_sub(turn.used()),
        )
    }

    /// The check every capability call makes first: the manifest declares
    /// it, and the user has agreed where the capability needs agreement.
    /// The linker already holds only declared capabilities; this is the
    /// second line, and the place where consent is read at call time.
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
        self.require_level(capability, consent_level(capability), args)
    }

    /// [`require_with`](Self::require_with) at a consent level other than
    /// the capability's own, for the one call of a capability that needs
    /// more (listing a user's documents needs a standing grant, while each
    /// disclosure is confirmed in its own sheet).
    pub(crate) fn require_level(
        &self,
        capability: Capability,
        level: ConsentLevel,
        args: Option<&[u8]>,
    ) -> Result<(), Error> {
        self.calling.set(Some(capability));
        if !self.app.declares(capability) {
            return Err(Error::Denied(format!(
                "`{capability}` is not declared in plugin.toml"
            )));
        }
        if level == ConsentLevel::None {
            return Ok(());
        }
        // A standing agreement (not one asked for each use, whose sheet is
        // the user's answer) allows the same call again in this event.
        let standing = level == ConsentLevel::OncePerApp;
        let call = (capability, args.map(superapp_core::sha256_hex));
        if standing && self.allowed.borrow().contains(&call) {
            return Ok(());
        }
        let made = self.gated_calls.get() + 1;
        if made > MAX_GATED_CALLS_PER_EVENT {
            return Err(Error::QuotaExceeded(format!(
                "at most {MAX_GATED_CALLS_PER_EVENT} calls of capabilities that need the user's agreement per event"
            )));
        }
        self.gated_calls.set(made);
        match self
            .services
            .consent
            .check(&self.user, &self.app, capability, level, args)
        {
            ConsentState::Granted => {
                if standing {
                    self.allowed.borrow_mut().insert(call);
                }
                Ok(())
            }
            ConsentState::Denied => Err(Error::Denied(format!("the user has not allowed `{capability}`"))),
            ConsentState::Required => Err(Error::ConsentRequired(format!(
                "the user has been asked to allow `{capability}`; the answer arrives as a consent event"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The levels users are promised (DESIGN.md's capability table).
    #[test]
    fn consent_levels_are_the_ones_users_are_promised() {
        for capability in Capability::all() {
            let expected = match capability {
                Capability::Profile | Capability::Notify | Capability::Http => {
                    ConsentLevel::OncePerApp
                }
                Capability::Payments | Capability::Documents => ConsentLevel::EveryUse,
                _ => ConsentLevel::None,
            };
            assert_eq!(consent_level(capability), expected, "{capability}");
        }
    }
}

/// Host functions called directly, without a guest: each folder's tests
/// build one instance's state for a manifest that declares some
/// capabilities, over the dev loop's in-memory services.
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use superapp_core::{Capability, Manifest};

    use super::{HostState, Services};
    use crate::limits::Meter;

    /// A manifest of `org.example.test` declaring `caps`.
    pub(crate) fn manifest(caps: &[Capability]) -> Arc<Manifest> {
        let mut text = String::from(
            "id = \"org.example.test\"\nname = \"Test\"\nversion = \"1.0.0\"\npublisher = \"Example\"\ndescription = \"d\"\n",
        );
        for c in caps {
            text.push_str(&format!(
                "[capabilities.{}]\nreason = \"tests\"\n",
                c.name()
            ));
        }
        Arc::new(Manifest::parse(&text).unwrap())
    }

    /// Services where the user has refused `denied`.
    pub(crate) fn services(denied: &[Capability]) -> Arc<Services> {
        Arc::new(Services::in_memory(
            denied.iter().copied().collect::<BTreeSet<_>>(),
        ))
    }

    /// One event's state for `user`, declaring `caps`, on `services`.
    pub(crate) fn state(user: &str, caps: &[Capability], services: &Arc<Services>) -> HostState {
        HostState::new(
            manifest(caps),
            user.to_string(),
            services.clone(),
            Meter::new(64 << 20),
        )
    }
}
