//! Consent: the user's decisions per (user, app, capability), and the host
//! prompts that ask for them. A call to a consent-gated capability without
//! a decision creates a prompt and answers `consent-required`; the user
//! approves or denies in the host's own UI, and the app hears the answer as
//! a `consent` event. A denial is remembered until the user resets it.
//! Prompts are host data: nothing a mini-program returns can create, alter
//! or answer one.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::audit::{self, Audit, Event};
use crate::messaging::Card;
use crate::prompts::{self, prompt_key};
pub use crate::prompts::{
    DocumentSheet, PaymentSheet, Prompt, PromptBody, PromptKind, PromptStatus,
};
use superapp_core::{new_id, now_secs, Capability, ConsentLevel, Manifest};
use superapp_store::{txn_get, txn_put, Abort, Store, StoreError, Tree};

/// The answer to "may this app use this capability for this user now?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentState {
    Granted,
    Denied,
    /// Not answered yet: the user has been asked.
    Required,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    Granted,
    Denied,
}

/// A user's standing decision for one capability of one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub app: String,
    pub capability: Capability,
    pub decision: Decision,
    /// The app version the user decided for.
    pub version: String,
    pub decided_at: u64,
    /// For `http`: the origins the user agreed the app may contact. A
    /// version that lists another one asks again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<String>,
}

impl Grant {
    /// Does this grant cover everything `app` asks of `capability`? Only
    /// `http` asks for more within one capability: its origins.
    fn covers(&self, app: &Manifest, capability: Capability) -> bool {
        capability != Capability::Http
            || app
                .origins()
                .iter()
                .all(|o| self.origins.contains(&o.to_string()))
    }
}

fn key(parts: &[&str]) -> Vec<u8> {
    parts.join("\0").into_bytes()
}

#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    #[error("no such prompt")]
    NotFound,
    #[error("this prompt was already answered")]
    Answered,
    #[error("payment and document sheets are answered through their own requests")]
    WrongKind,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Consent {
    store: Arc<Store>,
    audit: Arc<Audit>,
}

impl Consent {
    pub fn new(store: Arc<Store>, audit: Arc<Audit>) -> Consent {
        Consent { store, audit }
    }

    pub fn grants(&self, user: &str) -> Result<Vec<Grant>, ConsentError> {
        let prefix = key(&[user, ""]);
        Ok(self
            .store
            .scan(Tree::Grants, &prefix, None, usize::MAX, false)?
            .iter()
            .map(|(_, v)| superapp_store::decode(Tree::Grants, v))
            .collect::<Result<_, _>>()?)
    }

    /// The user changes a decision: a grant becomes a denial (revocation,
    /// effective on the next call), and deleting a denial forgets it (the
    /// next call asks again). With `forget`, any decision is forgotten at
    /// once: a revoked grant then asks again on the next call. Returns what
    /// the decision was, or `None` if there was none.
    pub fn revoke(
        &self,
        user: &str,
        app: &str,
        capability: Capability,
        forget: bool,
    ) -> Result<Option<Decision>, ConsentError> {
        let k = key(&[user, app, capability.name()]);
        // The change and its audit entry are one transaction.
        let trees = audit::with(&[Tree::Grants]);
        self.store
            .transact(&trees, |t| {
                let Some(mut grant) = txn_get::<Grant>(t, Tree::Grants, &k)? else {
                    return Ok(None);
                };
                let was = grant.decision;
                let (kind, outcome) = if was == Decision::Granted && !forget {
                    grant.decision = Decision::Denied;
                    grant.decided_at = now_secs();
                    txn_put(t, Tree::Grants, &k, &grant)?;
                    ("consent.revoke", "revoked")
                } else {
                    t.delete(Tree::Grants, &k)?;
                    if was == Decision::Granted {
                        ("consent.revoke", "revoked, ask again")
                    } else {
                        ("consent.reset", "reset")
                    }
                };
                let event = Event::for_app(kind, user, app, &grant.version, outcome)
                    .with_capability(capability);
                self.audit.append_in(t, event)?;
                Ok(Some(was))
            })
            .map_err(Abort::flatten)
    }

    /// Whether `user` refused `app` the use of `capability` (a recorded
    /// denial, as a revoked grant leaves).
    pub fn refused(
        &self,
        user: &str,
        app: &str,
        capability: Capability,
    ) -> Result<bool, ConsentError> {
        let k = key(&[user, app, capability.name()]);
        Ok(self
            .store
            .get::<Grant>(Tree::Grants, &k)?
            .is_some_and(|g| g.decision == Decision::Denied))
    }

    /// The user's pending prompts, oldest first (read from their index).
    pub fn pending(&self, user: &str) -> Result<Vec<Prompt>, ConsentError> {
        Ok(prompts::pending(&self.store, user)?)
    }

    /// A page of the user's prompts, answered or not, newest first.
    pub fn history(
        &self,
        user: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<prompts::HistoryPage, ConsentError> {
        Ok(prompts::history(&self.store, user, before, limit)?)
    }

    /// Answer a prompt: record the decision and return the prompt, whose
    /// app then receives the answer as a `consent` event.
    pub fn answer(
        &self,
        user: &str,
        prompt_id: &str,
        approve: bool,
    ) -> Result<Prompt, ConsentError> {
        let pk = prompt_key(user, prompt_id);
        // The prompt's answer, the standing decision and the audit entry are
        // one transaction.
        let trees = audit::with(&[Tree::Prompts, Tree::PromptIndex, Tree::Grants]);
        self.store
            .transact(&trees, |t| {
                let mut prompt = txn_get::<Prompt>(t, Tree::Prompts, &pk)?
                    .ok_or(Abort::User(ConsentError::NotFound))?;
                if prompt.status != PromptStatus::Pending {
                    return Err(Abort::User(ConsentError::Answered));
                }
                if matches!(prompt.kind(), PromptKind::Payment | PromptKind::Document) {
                    return Err(Abort::User(ConsentError::WrongKind));
                }
                prompt.status = if approve {
                    PromptStatus::Approved
                } else {
                    PromptStatus::Denied
                };
                prompts::save(t, user, &prompt)?;
                let (kind, outcome) = if prompt.kind() == PromptKind::ShareCard {
                    // A share is a one-off answer, not a standing decision.
                    ("card.share", if approve { "shared" } else { "declined" })
                } else {
                    let grant = Grant {
                        app: prompt.app.clone(),
                        capability: prompt.capability,
                        decision: if approve {
                            Decision::Granted
                        } else {
                            Decision::Denied
                        },
                        version: prompt.version.clone(),
                        decided_at: now_secs(),
                        origins: prompt.origins.clone(),
                    };
                    let gk = key(&[user, &prompt.app, prompt.capability.name()]);
                    txn_put(t, Tree::Grants, &gk, &grant)?;
                    if approve {
                        ("consent.grant", "granted")
                    } else {
                        ("consent.deny", "denied")
                    }
                };
                let event = Event::for_app(kind, user, &prompt.app, &prompt.version, outcome)
                    .with_capability(prompt.capability);
                self.audit.append_in(t, event)?;
                Ok(prompt)
            })
            .map_err(Abort::flatten)
    }

    /// One of the user's prompts.
    pub fn prompt(&self, user: &str, prompt_id: &str) -> Result<Prompt, ConsentError> {
        self.store
            .get::<Prompt>(Tree::Prompts, &prompt_key(user, prompt_id))?
            .ok_or(ConsentError::NotFound)
    }

    /// Ask the user to pick a chat for `card`; the answer reaches the app as
    /// a `card-shared` event.
    pub fn ask_share(&self, user: &str, app: &Manifest, card: Card) -> Result<(), StoreError> {
        let prompt = Prompt::new(
            new_id(),
            app,
            Capability::Notify,
            PromptBody::ShareCard(card),
            now_secs(),
        );
        self.store
            .transact(&[Tree::Prompts, Tree::PromptIndex], |t| {
                Ok::<_, Abort<()>>(prompts::save(t, user, &prompt)?)
            })
            .map_err(Abort::into_store)
    }

    /// A pending prompt for this (user, app, capability), if one exists.
    fn pending_for(
        &self,
        user: &str,
        app: &str,
        capability: Capability,
    ) -> Result<bool, StoreError> {
        Ok(prompts::pending(&self.store, user)?
            .iter()
            .any(|p| p.kind() == PromptKind::Consent && p.app == app && p.capability == capability))
    }

    fn ask(&self, user: &str, app: &Manifest, capability: Capability) -> Result<(), StoreError> {
        if self.pending_for(user, &app.id, capability)? {
            return Ok(());
        }
        let prompt = Prompt::new(new_id(), app, capability, PromptBody::Consent, now_secs());
        self.store
            .transact(&[Tree::Prompts, Tree::PromptIndex], |t| {
                Ok::<_, Abort<()>>(prompts::save(t, user, &prompt)?)
            })
            .map_err(Abort::into_store)
    }

    /// May this app use `capability`, which needs `level` of consent, for
    /// this user now? Reads the standing
    /// decision at the moment of the call, asks the user when there is none,
    /// and records the call (with a digest of `args`) in the audit log.
    /// Fails closed: without a readable record, nothing is granted.
    pub fn check(
        &self,
        user: &str,
        app: &Manifest,
        capability: Capability,
        level: ConsentLevel,
        args: Option<&[u8]>,
    ) -> ConsentState {
        let k = key(&[user, &app.id, capability.name()]);
        let every_use = level == ConsentLevel::EveryUse;
        let state = match self.store.get::<Grant>(Tree::Grants, &k) {
            Ok(Some(g)) if g.decision == Decision::Granted && g.covers(app, capability) => {
                ConsentState::Granted
            }
            // Granted for less than this version asks for (a new origin):
            // ask again, never inherit.
            Ok(Some(g)) if g.decision == Decision::Granted => match self.ask(user, app, capability)
            {
                Ok(()) => ConsentState::Required,
                Err(e) => {
                    tracing::error!(error = %e, "cannot create a consent prompt");
                    ConsentState::Denied
                }
            },
            Ok(Some(_)) => ConsentState::Denied,
            // Each use is confirmed in its own sheet, so the call itself
            // needs no standing grant (a recorded denial still blocks it).
            Ok(None) if every_use => ConsentState::Granted,
            Ok(None) => match self.ask(user, app, capability) {
                Ok(()) => ConsentState::Required,
                Err(e) => {
                    tracing::error!(error = %e, "cannot create a consent prompt");
                    ConsentState::Denied
                }
            },
            Err(e) => {
                // Fail closed: without the record, nothing is granted.
                tracing::error!(error = %e, "cannot read a consent decision");
                ConsentState::Denied
            }
        };
        let outcome = match state {
            ConsentState::Granted => "allowed",
            ConsentState::Denied => "denied",
            ConsentState::Required => "consent-required",
        };
        let version = app.version.to_string();
        let mut call = Event::for_app("capability.call", user, &app.id, &version, outcome)
            .with_capability(capability);
        call.args_sha256 = args.map(crate::audit::digest_hex);
        // No record, no call: fail closed.
        if let Err(e) = self.audit.append(call) {
            tracing::error!(error = %e, "cannot record a capability call in the audit log");
            return ConsentState::Denied;
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(version: &str, caps: &[&str]) -> Manifest {
        let mut text = format!(
            "id = \"org.example.clinic\"\nname = \"Clinic\"\nversion = \"{version}\"\npublisher = \"Example\"\ndescription = \"d\"\n"
        );
        for c in caps {
            text.push_str(&format!("[capabilities.{c}]\nreason = \"because\"\n"));
        }
        Manifest::parse(&text).unwrap()
    }

    #[test]
    fn a_new_version_asking_for_more_asks_again_only_for_the_new_capability() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let consent = Consent::new(store.clone(), Arc::new(Audit::open(store).unwrap()));
        let v1 = manifest("1.0.0", &["profile"]);
        assert_eq!(
            consent.check(
                "u",
                &v1,
                Capability::Profile,
                ConsentLevel::OncePerApp,
                None
            ),
            ConsentState::Required
        );
        let prompt = consent.pending("u").unwrap().remove(0);
        consent.answer("u", &prompt.id, true).unwrap();
        assert_eq!(
            consent.check(
                "u",
                &v1,
                Capability::Profile,
                ConsentLevel::OncePerApp,
                None
            ),
            ConsentState::Granted
        );

        let v2 = manifest("2.0.0", &["profile", "notify"]);
        assert_eq!(
            consent.check(
                "u",
                &v2,
                Capability::Profile,
                ConsentLevel::OncePerApp,
                None
            ),
            ConsentState::Granted,
            "kept"
        );
        assert_eq!(
            consent.check("u", &v2, Capability::Notify, ConsentLevel::OncePerApp, None),
            ConsentState::Required,
            "never inherited"
        );
        let pending = consent.pending("u").unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(
            (pending[0].capability, pending[0].version.as_str()),
            (Capability::Notify, "2.0.0")
        );
        assert!(matches!(
            consent.answer("other-user", &pending[0].id, true),
            Err(ConsentError::NotFound)
        ));
    }

    fn with_origins(version: &str, origins: &[&str]) -> Manifest {
        let list = origins
            .iter()
            .map(|o| format!("\"{o}\""))
            .collect::<Vec<_>>()
            .join(", ");
        Manifest::parse(&format!(
            "id = \"org.example.clinic\"\nname = \"Clinic\"\nversion = \"{version}\"\npublisher = \"Example\"\ndescription = \"d\"\n[capabilities.http]\nreason = \"Bookings.\"\norigins = [{list}]\n"
        ))
        .unwrap()
    }

    #[test]
    fn a_new_origin_asks_again_and_fewer_origins_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let consent = Consent::new(store.clone(), Arc::new(Audit::open(store).unwrap()));
        let check =
            |m: &Manifest| consent.check("u", m, Capability::Http, ConsentLevel::OncePerApp, None);
        let v1 = with_origins("1.0.0", &["https://a.example.org", "https://b.example.org"]);
        assert_eq!(check(&v1), ConsentState::Required);
        let prompt = consent.pending("u").unwrap().remove(0);
        assert_eq!(
            prompt.origins,
            ["https://a.example.org", "https://b.example.org"]
        );
        consent.answer("u", &prompt.id, true).unwrap();
        assert_eq!(check(&v1), ConsentState::Granted);
        let fewer = with_origins("1.1.0", &["https://a.example.org"]);
        assert_eq!(check(&fewer), ConsentState::Granted, "a subset is covered");

        let more = with_origins(
            "2.0.0",
            &["https://a.example.org", "https://tracker.example.net"],
        );
        assert_eq!(
            check(&more),
            ConsentState::Required,
            "a new origin is never inherited"
        );
        let prompt = consent.pending("u").unwrap().remove(0);
        assert_eq!(
            prompt.origins,
            ["https://a.example.org", "https://tracker.example.net"]
        );
        consent.answer("u", &prompt.id, true).unwrap();
        assert_eq!(check(&more), ConsentState::Granted);
        assert_eq!(
            check(&v1),
            ConsentState::Required,
            "the grant now covers what the user last agreed to"
        );
    }
}
