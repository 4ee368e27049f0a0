//! Changing releases: publishing a package, auditors' decisions, yanking
//! and staged rollout. Each change is one store transaction, then one
//! audit entry naming who made it.

use superapp_core::decision::{SignedDecision, Verdict};
use superapp_core::signed_request::MAX_SKEW_SECS;
use superapp_core::{now_secs, Package};
use superapp_store::{txn_get, txn_put, Abort, Tree};

use crate::audit::Event;

/// The trees publishing writes (with its audit entries' from `audit::with`).
const PUBLISH_TREES: [Tree; 2] = [Tree::Registry, Tree::Packages];

use super::{
    declared_capabilities, release_key, Actor, DecidedBy, Decision, Registry, RegistryError,
    Release, State, Yank,
};

fn owner_key(app: &str) -> Vec<u8> {
    format!("o\0{app}").into_bytes()
}

/// The outcome of a change that may already have been made.
#[derive(Debug, Clone)]
pub struct Changed {
    pub release: Release,
    /// `false` when the request repeated what was already so.
    pub changed: bool,
}

impl Registry {
    /// Publish a signed package as `actor`. The package's signature must
    /// verify under a key of the publisher its manifest names, and a
    /// publisher may only publish its own apps. Publishing the same bytes
    /// again is a no-op; other bytes under a published version are refused.
    /// A package the auto-approve rule covers is approved at once.
    pub fn submit(&self, package: &Package, actor: &Actor) -> Result<Changed, RegistryError> {
        let signature = package.verify()?;
        let m = package.manifest();
        m.check_publishable()
            .map_err(|e| RegistryError::Invalid(e.to_string()))?;
        let publisher = self
            .publisher(&m.publisher)?
            .ok_or_else(|| RegistryError::UnknownPublisher(m.publisher.clone()))?;
        if !publisher.keys.contains(&signature.public_key) {
            return Err(RegistryError::NotPublisherKey {
                publisher: publisher.id,
                key: signature.public_key.clone(),
            });
        }
        if let Some(from) = self.removed_from(&signature.public_key)? {
            return Err(RegistryError::RemovedKey {
                key: signature.public_key.clone(),
                publisher: from,
            });
        }
        if let Actor::Publisher(id) = actor {
            if *id != publisher.id {
                return Err(RegistryError::Forbidden(format!(
                    "you publish as `{id}`, but this package is publisher `{}`'s",
                    publisher.id
                )));
            }
        }
        self.check_name_free(&m.id, &m.name)?;
        let version = m.version.to_string();
        let digest = package.digest();
        let now = now_secs();
        let bytes = package.to_bytes();
        let mut release = Release {
            app: m.id.clone(),
            version: version.clone(),
            digest: digest.clone(),
            publisher: publisher.id.clone(),
            signed_by: signature.public_key.clone(),
            name: m.name.clone(),
            description: m.description.clone(),
            capabilities: declared_capabilities(m),
            limits: m.limits,
            size: bytes.len() as u64,
            state: State::Submitted,
            submitted_at: now,
            decisions: Vec::new(),
            yanked: None,
            rollout: None,
        };
        if let Some(rule) = self.policy.auto_approval(m) {
            release.decisions.push(Decision {
                verdict: Verdict::Approve,
                note: rule.clone(),
                at: now,
                by: DecidedBy::Policy { rule },
            });
            release.state = State::Approved;
        }
        let key = release_key(&m.id, &version);
        let stored = self
            .store
            .transact(&crate::audit::with(&PUBLISH_TREES), |t| {
                let owner: Option<String> = txn_get(t, Tree::Registry, &owner_key(&m.id))?;
                if let Some(owner) = owner.filter(|o| *o != publisher.id) {
                    return Err(Abort::User(RegistryError::Forbidden(format!(
                        "app `{}` belongs to publisher `{owner}`",
                        m.id
                    ))));
                }
                if let Some(existing) = txn_get::<Release>(t, Tree::Registry, &key)? {
                    if existing.digest == digest {
                        return Ok(Changed {
                            release: existing,
                            changed: false,
                        });
                    }
                    return Err(Abort::User(RegistryError::Conflict(format!(
                        "{} is already published with digest {}; publish a new version",
                        existing.label(),
                        existing.digest
                    ))));
                }
                txn_put(t, Tree::Registry, &owner_key(&m.id), &publisher.id)?;
                txn_put(t, Tree::Registry, &key, &release)?;
                t.put(Tree::Packages, digest.as_bytes(), &bytes)?;
                let at = Some((m.id.as_str(), version.as_str()));
                self.audit.append_in(
                    t,
                    self.record("registry.publish", actor, at, "submitted")
                        .with_detail("digest", &digest)
                        .with_detail("signed-by", &signature.public_key),
                )?;
                if let Some(d) = release.last_decision() {
                    self.audit.append_in(
                        t,
                        self.record("registry.decision", actor, at, d.verdict.name())
                            .with_detail("digest", &digest)
                            .with_detail("by", d.decider()),
                    )?;
                }
                Ok(Changed {
                    release: release.clone(),
                    changed: true,
                })
            })
            .map_err(Abort::flatten)?;
        if stored.changed {
            self.forget(Some(&m.id));
        }
        Ok(stored)
    }

    /// Users know an app by its name: a new app, or one taking a new
    /// name, may not go by a name that passes for another app's (case,
    /// accents, look-alike letters; `superapp_core::text::look_alike`). An
    /// app keeping its name is never refused, whatever was published
    /// before the rule.
    fn check_name_free(&self, app: &str, name: &str) -> Result<(), RegistryError> {
        if self
            .releases(app)?
            .first()
            .is_some_and(|newest| newest.name == name)
        {
            return Ok(());
        }
        for other in self.apps()? {
            if other == app {
                continue;
            }
            if let Some(newest) = self.releases(&other)?.first() {
                if superapp_core::text::look_alike(&newest.name, name) {
                    return Err(RegistryError::Conflict(format!(
                        "app `{other}` of publisher `{}` is named `{}`, which users would take `{name}` for; choose another name",
                        newest.publisher, newest.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// Record an auditor's signed decision. The key must be trusted, the
    /// signature valid, and the digest the release's own; a decision older
    /// than the release's latest one is refused (no replaying an old
    /// approval over a rejection), as is an approval signed in the same
    /// second as a rejection, and the same verdict by the same auditor on
    /// the same digest again changes nothing.
    pub fn decide(&self, signed: &SignedDecision) -> Result<Changed, RegistryError> {
        signed.verify()?;
        let untrusted = || RegistryError::UntrustedAuditor(signed.auditor_key.clone());
        let auditor = self.auditor(&signed.auditor_key)?.ok_or_else(untrusted)?;
        // A removed key is trusted for nothing, whatever holds it.
        if !self.is_trusted(&signed.auditor_key)? {
            return Err(untrusted());
        }
        let now = now_secs();
        if signed.signed_at > now + MAX_SKEW_SECS {
            return Err(RegistryError::Invalid(
                "the decision is signed in the future; check the auditor's clock".into(),
            ));
        }
        let key = release_key(&signed.app, &signed.version);
        let result = self
            .store
            .transact(&super::trees(), |t| {
                let mut release: Release = txn_get(t, Tree::Registry, &key)?.ok_or_else(|| {
                    Abort::User(RegistryError::UnknownVersion {
                        app: signed.app.clone(),
                        version: signed.version.clone(),
                    })
                })?;
                if release.digest != signed.digest {
                    return Err(Abort::User(RegistryError::Conflict(format!(
                        "the decision is for digest {}, but {} has digest {}: it is not the package that was reviewed",
                        signed.digest,
                        release.label(),
                        release.digest
                    ))));
                }
                if let Some(last) = release.last_decision() {
                    if last.verdict == signed.verdict
                        && last.auditor_key() == Some(signed.auditor_key.as_str())
                    {
                        return Ok(Changed {
                            release,
                            changed: false,
                        });
                    }
                }
                // When a decision was made: as signed, but never later
                // than the host received it, so that one dated ahead (as
                // far as the allowed clock skew) cannot stand against a
                // colleague's later answer until the clock catches up.
                let made = signed.signed_at.min(now);
                let signed_before = || {
                    release.decisions.iter().filter_map(|d| match &d.by {
                        DecidedBy::Auditor { signed, .. } => {
                            Some((signed.signed_at.min(d.at), signed.verdict))
                        }
                        DecidedBy::Policy { .. } => None,
                    })
                };
                let newest_signed = signed_before().map(|(at, _)| at).max();
                // Made in the same second as a rejection, an approval
                // cannot say which came last: the rejection stands.
                let tied_with_rejection = signed.verdict == Verdict::Approve
                    && signed_before().any(|(at, verdict)| at == made && verdict == Verdict::Reject);
                if newest_signed.is_some_and(|t| made < t) || tied_with_rejection {
                    return Err(Abort::User(RegistryError::Conflict(format!(
                        "{} has a newer decision than this one (or a rejection signed in the same second); sign a new one",
                        release.label()
                    ))));
                }
                release.decisions.push(Decision {
                    verdict: signed.verdict,
                    note: signed.note.clone(),
                    at: now,
                    by: DecidedBy::Auditor {
                        name: auditor.name.clone(),
                        signed: Box::new(signed.clone()),
                    },
                });
                release.state = match signed.verdict {
                    Verdict::Approve => State::Approved,
                    Verdict::Reject => State::Rejected,
                };
                txn_put(t, Tree::Registry, &key, &release)?;
                self.audit.append_in(
                    t,
                    self.record(
                        "registry.decision",
                        &super::Actor::Auditor(signed.auditor_key.clone()),
                        Some((&signed.app, &signed.version)),
                        signed.verdict.name(),
                    )
                    .with_detail("digest", &signed.digest)
                    .with_detail("by", format!("{} ({})", auditor.name, auditor.key))
                    .with_detail(
                        "note-sha256",
                        superapp_core::sha256_hex(signed.note.as_bytes()),
                    ),
                )?;
                Ok(Changed {
                    release,
                    changed: true,
                })
            })
            .map_err(Abort::flatten)?;
        if result.changed {
            self.forget(Some(&signed.app));
        }
        Ok(result)
    }

    /// Change one release in a transaction, if `actor` may; `apply`
    /// returns whether it changed anything, and a change is recorded as
    /// `event` in the same transaction.
    fn update(
        &self,
        app: &str,
        version: &str,
        actor: &Actor,
        event: Event,
        apply: impl Fn(&mut Release) -> Result<bool, RegistryError>,
    ) -> Result<Changed, RegistryError> {
        let key = release_key(app, version);
        let changed = self
            .store
            .transact(&super::trees(), |t| {
                let mut release: Release = txn_get(t, Tree::Registry, &key)?.ok_or_else(|| {
                    Abort::User(RegistryError::UnknownVersion {
                        app: app.into(),
                        version: version.into(),
                    })
                })?;
                match actor {
                    Actor::Operator | Actor::Development => {}
                    Actor::Publisher(id) if *id == release.publisher => {}
                    _ => {
                        return Err(Abort::User(RegistryError::Forbidden(format!(
                            "only the operator or publisher `{}` may change {}",
                            release.publisher,
                            release.label()
                        ))))
                    }
                }
                let changed = apply(&mut release).map_err(Abort::User)?;
                if changed {
                    txn_put(t, Tree::Registry, &key, &release)?;
                    self.audit.append_in(t, event.clone())?;
                }
                Ok(Changed { release, changed })
            })
            .map_err(Abort::flatten)?;
        if changed.changed {
            self.forget(Some(app));
        }
        Ok(changed)
    }

    /// Yank a version (`yanked`) or restore it: users of a yanked version
    /// fall back to the newest launchable version before it.
    pub fn yank(
        &self,
        app: &str,
        version: &str,
        yanked: bool,
        note: &str,
        actor: &Actor,
    ) -> Result<Changed, RegistryError> {
        let note = note.trim();
        if note.len() > superapp_core::decision::MAX_NOTE {
            return Err(RegistryError::Invalid("the note is too long".into()));
        }
        if note.chars().any(superapp_core::text::disallowed_in_note) {
            return Err(RegistryError::Invalid(
                "the note has control or text-direction characters (only line breaks and tabs)"
                    .into(),
            ));
        }
        let kind = if yanked {
            "registry.yank"
        } else {
            "registry.unyank"
        };
        let event = self
            .record(kind, actor, Some((app, version)), "done")
            .with_detail("note", note);
        self.update(app, version, actor, event, |r| {
            // The operator's yank takes over a publisher's, so that only the
            // operator can undo the takedown.
            let taken_over = yanked
                && matches!(actor, Actor::Operator)
                && r.yanked.as_ref().is_some_and(|y| y.by != actor.name());
            Ok(match (yanked, r.yanked.is_some() && !taken_over) {
                (true, false) => {
                    r.yanked = Some(Yank {
                        at: now_secs(),
                        by: actor.name(),
                        note: note.into(),
                    });
                    true
                }
                (false, true) => {
                    // The operator's takedown is the operator's to undo: a
                    // publisher restores only a version it yanked itself.
                    let by = r.yanked.as_ref().map(|y| y.by.as_str());
                    if matches!(actor, Actor::Publisher(_)) && by != Some(actor.name().as_str()) {
                        return Err(RegistryError::Forbidden(format!(
                            "this version was yanked by {}; only they can restore it",
                            by.unwrap_or("someone else")
                        )));
                    }
                    r.yanked = None;
                    true
                }
                _ => false,
            })
        })
    }

    /// Let `percent` of users (chosen stably by pseudonymous id) get this
    /// version while it is the newest launchable one; 100 is everyone.
    pub fn set_rollout(
        &self,
        app: &str,
        version: &str,
        percent: u8,
        actor: &Actor,
    ) -> Result<Changed, RegistryError> {
        if percent > 100 {
            return Err(RegistryError::Invalid(
                "a rollout is a percentage from 0 to 100".into(),
            ));
        }
        let rollout = (percent < 100).then_some(percent);
        let event = self
            .record("registry.rollout", actor, Some((app, version)), "done")
            .with_detail("percent", percent.to_string());
        self.update(app, version, actor, event, |r| {
            let changed = r.rollout != rollout;
            r.rollout = rollout;
            Ok(changed)
        })
    }
}
