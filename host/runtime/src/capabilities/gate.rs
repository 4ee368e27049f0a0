//! The consent gate: "may this app use this capability for this user now?",
//! asked by [`HostState::require_with`](super::HostState) before every call
//! of a consent-gated capability. The server answers with the consent
//! service; the provider's dev loop with [`DevConsent`].

use std::collections::BTreeSet;

use superapp_core::{Capability, ConsentLevel, Manifest};
use superapp_services::consent::Consent;
use superapp_services::prompts::PromptKind;

pub use superapp_services::consent::ConsentState;

pub trait ConsentGate: Send + Sync {
    /// `level` is what the capability's folder declares; `args` is the
    /// call's arguments (hashed into the audit record, never stored as
    /// such), when the call has any.
    fn check(
        &self,
        user: &str,
        app: &Manifest,
        capability: Capability,
        level: ConsentLevel,
        args: Option<&[u8]>,
    ) -> ConsentState;

    /// How many of `app`'s sheets (payments, document requests, cards to
    /// share) wait for `user`'s answer.
    fn open_sheets(&self, _user: &str, _app: &str) -> usize {
        0
    }
}

/// The server's gate: the user's recorded decisions, prompts and audit.
impl ConsentGate for Consent {
    fn check(
        &self,
        user: &str,
        app: &Manifest,
        capability: Capability,
        level: ConsentLevel,
        args: Option<&[u8]>,
    ) -> ConsentState {
        Consent::check(self, user, app, capability, level, args)
    }

    fn open_sheets(&self, user: &str, app: &str) -> usize {
        // Unknown when the store cannot say: the sheet's own write fails
        // then too.
        self.pending(user).map_or(0, |pending| {
            pending
                .iter()
                .filter(|p| p.app == app && p.kind() != PromptKind::Consent)
                .count()
        })
    }
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
        _level: ConsentLevel,
        _args: Option<&[u8]>,
    ) -> ConsentState {
        if self.denied.contains(&capability) {
            ConsentState::Denied
        } else {
            ConsentState::Granted
        }
    }
}
