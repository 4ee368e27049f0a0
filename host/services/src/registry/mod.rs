//! The app registry: publishers and their keys (registered by the
//! operator), the auditor keys the host trusts, and every published
//! package by (app, version) with its review state — submitted, then
//! approved or rejected by signed decisions — yanking and staged rollout.
//! Which version a user launches is decided here ([`policy`]); the package
//! bytes are kept here too, by digest, so a host can load any version.
//!
//! Everything that changes the registry is appended to the audit log with
//! who did it. Checks that need wasm (the component's imports against its
//! manifest) are the caller's, before [`Registry::submit`].

pub mod policy;
mod releases;
pub mod report;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use superapp_core::decision::{DecisionError, SignedDecision, Verdict};
use superapp_core::{now_secs, Limits, Manifest, Package, PackageError};
use superapp_store::{txn_get, txn_put, Abort, Store, StoreError, Tree, Txn};

use crate::audit::{Audit, Event};

/// The trees a registry change writes, with its audit entry's.
fn trees() -> Vec<Tree> {
    crate::audit::with(&[Tree::Registry])
}
pub use policy::{rollout_bucket, AutoApprove, Policy, Resolved};
pub use releases::Changed;

/// A publisher: the `publisher` of its manifests, and the keys that may
/// sign its packages and its requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publisher {
    /// Exactly the `publisher` field of its apps' manifests.
    pub id: String,
    /// Shown to users in the directory.
    pub name: String,
    /// Ed25519 public keys, base64url.
    pub keys: Vec<String>,
    pub added_at: u64,
    /// Registered by `serve --apps` for the apps of a directory, with the
    /// host's development key: the one kind of publisher that key is ever
    /// added to later.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub development: bool,
}

/// An auditor key the host trusts to approve packages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auditor {
    pub key: String,
    pub name: String,
    pub added_at: u64,
}

/// Where a release is in review. The latest decision sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Submitted,
    Approved,
    Rejected,
}

/// A declared capability as users and auditors read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredCapability {
    pub name: String,
    pub reason: String,
}

/// Who decided, and the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "kebab-case")]
pub enum DecidedBy {
    /// A trusted auditor, with the decision they signed.
    Auditor {
        name: String,
        signed: Box<SignedDecision>,
    },
    /// The host's auto-approve rule.
    Policy { rule: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub verdict: Verdict,
    pub note: String,
    pub at: u64,
    #[serde(flatten)]
    pub by: DecidedBy,
}

impl Decision {
    /// The auditor's key, when an auditor decided.
    pub fn auditor_key(&self) -> Option<&str> {
        match &self.by {
            DecidedBy::Auditor { signed, .. } => Some(&signed.auditor_key),
            DecidedBy::Policy { .. } => None,
        }
    }

    /// Who decided, for people: the auditor's name and key, or the rule.
    pub fn decider(&self) -> String {
        match &self.by {
            DecidedBy::Auditor { name, signed } => format!("{name} ({})", signed.auditor_key),
            DecidedBy::Policy { rule } => format!("policy: {rule}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Yank {
    pub at: u64,
    pub by: String,
    pub note: String,
}

/// One published version of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub app: String,
    pub version: String,
    /// The package digest decisions are bound to.
    pub digest: String,
    pub publisher: String,
    /// The key that signed the package.
    pub signed_by: String,
    pub name: String,
    pub description: String,
    pub capabilities: Vec<DeclaredCapability>,
    pub limits: Limits,
    /// The package file's size in bytes.
    pub size: u64,
    pub state: State,
    pub submitted_at: u64,
    /// Oldest first; the last one sets `state`.
    pub decisions: Vec<Decision>,
    pub yanked: Option<Yank>,
    /// Percent of users (by pseudonymous id) who get this version while it
    /// is the newest launchable one; `None` is everyone.
    pub rollout: Option<u8>,
}

impl Release {
    pub fn semver(&self) -> semver::Version {
        // Versions come from validated manifests.
        semver::Version::parse(&self.version).unwrap_or(semver::Version::new(0, 0, 0))
    }

    pub fn label(&self) -> String {
        format!("{}@{}", self.app, self.version)
    }

    pub fn last_decision(&self) -> Option<&Decision> {
        self.decisions.last()
    }

    /// Whether `signed` is about this release (app, version, package
    /// digest) with `verdict`; its signature is checked apart.
    fn decided_by(&self, verdict: Verdict, signed: &SignedDecision) -> bool {
        signed.app == self.app
            && signed.version == self.version
            && signed.digest == self.digest
            && signed.verdict == verdict
    }

    /// Whether this record is what its stored package says: that package,
    /// signed by `signed_by`, with the app, version, publisher, name,
    /// description, capabilities (and their reasons) and limits of its
    /// signed manifest, each auditor's decision signed and about it, and a
    /// state its last decision gives. Users and auditors read the record, so a record
    /// changed apart from its package (the store edited offline) shows
    /// here, when the package is loaded. The component is not hashed: its
    /// digest is the signature's, which the precompile cache and the
    /// compiler check it by.
    pub fn check_package(&self, package: &Package) -> Result<(), String> {
        let signature = package
            .verify_but_component()
            .map_err(|e| format!("its stored package fails its signature: {e}"))?;
        if signature.package_digest() != self.digest {
            return Err(format!(
                "its stored package has digest {}, its record {}",
                signature.package_digest(),
                self.digest
            ));
        }
        let m = package.manifest();
        let differs: Vec<&str> = [
            ("signing key", signature.public_key != self.signed_by),
            ("app", m.id != self.app),
            ("version", m.version.to_string() != self.version),
            ("publisher", m.publisher != self.publisher),
            ("name", m.name != self.name),
            ("description", m.description != self.description),
            (
                "capabilities",
                declared_capabilities(m) != self.capabilities,
            ),
            ("limits", m.limits != self.limits),
            (
                "decisions",
                self.decisions.iter().any(|d| match &d.by {
                    DecidedBy::Auditor { signed, .. } => {
                        !(self.decided_by(d.verdict, signed) && signed.signed_by_its_key())
                    }
                    DecidedBy::Policy { .. } => false,
                }),
            ),
            (
                "state",
                self.state
                    != match self.last_decision().map(|d| d.verdict) {
                        None => State::Submitted,
                        Some(Verdict::Approve) => State::Approved,
                        Some(Verdict::Reject) => State::Rejected,
                    },
            ),
        ]
        .into_iter()
        .filter_map(|(field, differs)| differs.then_some(field))
        .collect();
        if differs.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "its record differs from its signed package in: {}",
                differs.join(", ")
            ))
        }
    }
}

/// A manifest's capabilities as its release records them, in its order.
fn declared_capabilities(m: &Manifest) -> Vec<DeclaredCapability> {
    m.declared
        .iter()
        .map(|d| DeclaredCapability {
            name: d.capability.name().into(),
            reason: d.reason.clone(),
        })
        .collect()
}

/// Who changed the registry: recorded in the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The operator, over the API with the operator token or offline.
    Operator,
    /// A publisher, by a request signed with one of its keys.
    Publisher(String),
    /// A trusted auditor, by key.
    Auditor(String),
    /// The host itself publishing a development apps directory.
    Development,
    /// The host itself, correcting what an earlier version left in the
    /// registry as it opens a store that version wrote.
    Upgrade,
}

impl Actor {
    pub fn name(&self) -> String {
        match self {
            Actor::Operator => "operator".into(),
            Actor::Publisher(id) => format!("publisher:{id}"),
            Actor::Auditor(key) => format!("auditor:{key}"),
            Actor::Development => "host:development".into(),
            Actor::Upgrade => "host:upgrade".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Package(#[from] PackageError),
    #[error(transparent)]
    Decision(#[from] DecisionError),
    #[error("no publisher `{0}` is registered (the operator registers publishers)")]
    UnknownPublisher(String),
    #[error("publisher `{0}` is already registered")]
    PublisherExists(String),
    #[error("key {key} is not a key of publisher `{publisher}`")]
    NotPublisherKey { publisher: String, key: String },
    #[error("{0}")]
    Forbidden(String),
    #[error("key {0} is not a trusted auditor key")]
    UntrustedAuditor(String),
    #[error("no app `{0}` in the registry")]
    UnknownApp(String),
    #[error("no version {version} of `{app}` in the registry")]
    UnknownVersion { app: String, version: String },
    #[error("{0}")]
    Conflict(String),
    #[error(
        "key {key} was removed from publisher `{publisher}`, and a removed key is never taken back: make a new one (`superapp keys generate`)"
    )]
    RemovedKey { key: String, publisher: String },
    /// No version of the app may be launched; the message says why.
    #[error("{0}")]
    NotLaunchable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

superapp_store::abort_into!(RegistryError);

fn publisher_key(id: &str) -> Vec<u8> {
    format!("p\0{id}").into_bytes()
}

fn auditor_key(key: &str) -> Vec<u8> {
    format!("a\0{key}").into_bytes()
}

/// A key taken from a publisher (leaked or retired): it is never given a
/// role again, so neither a slip of the operator's nor a start with
/// `--apps` that would add the development key back brings it back.
#[derive(Serialize, Deserialize)]
struct RemovedKey {
    publisher: String,
    removed_at: u64,
}

fn removed_key(key: &str) -> Vec<u8> {
    format!("k\0{key}").into_bytes()
}

/// Refuse `key` if it was ever taken from a publisher.
fn check_not_removed(t: &dyn Txn, key: &str) -> Result<(), Abort<RegistryError>> {
    match txn_get::<RemovedKey>(t, Tree::Registry, &removed_key(key))? {
        None => Ok(()),
        Some(removed) => Err(Abort::User(RegistryError::RemovedKey {
            key: key.into(),
            publisher: removed.publisher,
        })),
    }
}

/// What [`Registry::backfill`] finds in the audit log of an earlier
/// version: removed keys (key, publisher, when), publishers `serve --apps`
/// registered, keys it added to publishers (publisher, key), and auditor
/// keys distrusted (key, when).
#[derive(Default)]
struct Earlier {
    removed: Vec<(String, String, u64)>,
    development: HashSet<String>,
    development_keys: Vec<(String, String)>,
    distrusted: Vec<(String, u64)>,
}

/// Where an auditor key that was distrusted is remembered (when): it
/// never becomes a publisher's key, as a trusted one cannot.
fn distrusted_key(key: &str) -> Vec<u8> {
    format!("d\0{key}").into_bytes()
}

fn release_prefix(app: &str) -> Vec<u8> {
    format!("r\0{app}\0").into_bytes()
}

fn release_key(app: &str, version: &str) -> Vec<u8> {
    format!("r\0{app}\0{version}").into_bytes()
}

/// A public key: base64url of 32 bytes.
pub fn check_public_key(key: &str) -> Result<(), RegistryError> {
    use base64::Engine as _;
    let raw: Option<[u8; 32]> = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(key)
        .ok()
        .and_then(|k| k.try_into().ok());
    match raw {
        Some(raw) if superapp_core::keys::weak_public_key(&raw) => Err(RegistryError::Invalid(
            format!("`{key}` is a weak or invalid Ed25519 public key (off the curve, or one anyone could sign under): generate a key pair"),
        )),
        Some(_) => Ok(()),
        None => Err(RegistryError::Invalid(format!(
            "`{key}` is not an Ed25519 public key (43 characters of base64url)"
        ))),
    }
}

/// Publisher ids and display names: what manifests allow for `publisher`.
/// A party's name or id as people read it beside what it signs: see
/// `superapp_core::text::name_problem`.
fn check_label(what: &str, value: &str) -> Result<(), RegistryError> {
    match superapp_core::text::name_problem(value, 200) {
        None => Ok(()),
        Some(problem) => Err(RegistryError::Invalid(format!("{what} {problem}"))),
    }
}

/// A publisher id is also a path segment of the registry's routes: see
/// `superapp_core::text::id_problem`.
fn check_publisher_id(id: &str) -> Result<(), RegistryError> {
    match superapp_core::text::id_problem(id) {
        None => Ok(()),
        Some(problem) => Err(RegistryError::Invalid(format!("a publisher id {problem}"))),
    }
}

/// The indexes of publisher ids (`P`) and names (`N`) by their skeletons
/// (`superapp_core::text::skeletons`): two that share one would pass for
/// each other. Each entry holds the publisher's id.
fn twin_keys(index: char, text: &str) -> Vec<Vec<u8>> {
    superapp_core::text::skeletons(text)
        .into_iter()
        .map(|s| format!("{index}\0{s}").into_bytes())
        .collect()
}

/// The first publisher already in `index` (see [`twin_keys`]) under one of
/// `text`'s skeletons.
fn indexed_twin(t: &dyn Txn, index: char, text: &str) -> Result<Option<String>, StoreError> {
    for key in twin_keys(index, text) {
        if let Some(other) = txn_get::<String>(t, Tree::Registry, &key)? {
            return Ok(Some(other));
        }
    }
    Ok(None)
}

/// The registry service.
pub struct Registry {
    store: Arc<Store>,
    audit: Arc<Audit>,
    policy: Policy,
    cache: Mutex<Cache>,
    /// Auditors' decisions whose signatures were found to hold (checked
    /// once per process; see [`Registry::decision_holds`]).
    verified: Mutex<HashSet<SignedDecision>>,
}

/// What every launch reads, kept in memory: each app's releases (newest
/// first) and the trusted auditor keys. The store is held by one process,
/// so every registry write passes through this `Registry`, and each write
/// forgets what it changed once it has committed. A read that raced a
/// write does not fill the cache (the generation moved on). On a store
/// shared by several host processes another process may write, so nothing
/// is kept: a yank or a rejection holds on every node at once.
#[derive(Default)]
struct Cache {
    generation: u64,
    releases: HashMap<String, Arc<Vec<Release>>>,
    trusted: Option<Arc<HashSet<String>>>,
}

impl Registry {
    pub fn new(store: Arc<Store>, audit: Arc<Audit>, policy: Policy) -> Registry {
        Registry {
            store,
            audit,
            policy,
            cache: Mutex::default(),
            verified: Mutex::default(),
        }
    }

    /// Whether `signed` is an auditor's decision about `release` as its
    /// record has it: the same app, version and package digest, the
    /// recorded `verdict`, and signed by the key it names. A decision
    /// planted in the store (a made-up signature, another app's) does not
    /// hold.
    pub fn decision_holds(
        &self,
        release: &Release,
        verdict: Verdict,
        signed: &SignedDecision,
    ) -> bool {
        if !release.decided_by(verdict, signed) {
            return false;
        }
        let verified = || self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified().contains(signed) {
            return true;
        }
        let holds = signed.signed_by_its_key();
        if holds {
            verified().insert(signed.clone());
        }
        holds
    }

    /// [`Registry::new`] on a store that may have been written by an
    /// earlier version: what it did not record yet is found in the audit
    /// log, once ([`Registry::backfill`]).
    pub fn open(
        store: Arc<Store>,
        audit: Arc<Audit>,
        policy: Policy,
    ) -> Result<Registry, RegistryError> {
        let registry = Registry::new(store, audit, policy);
        registry.backfill()?;
        Ok(registry)
    }

    /// What an earlier version did not record, found in the audit log
    /// (read once, whatever is left to do), each step once:
    /// [`Registry::remember_removals`], then
    /// [`Registry::take_back_development_keys`].
    fn backfill(&self) -> Result<(), RegistryError> {
        const REMEMBERED: &[u8] = b"m\0backfilled-from-audit-log";
        const TAKEN_BACK: &[u8] = b"m\0development-keys-taken-back";
        const DISTRUSTED: &[u8] = b"m\0distrusted-auditors-remembered";
        let pending = |marker| -> Result<bool, RegistryError> {
            Ok(self.store.get_raw(Tree::Registry, marker)?.is_none())
        };
        let (removals, development_keys, distrusted) = (
            pending(REMEMBERED)?,
            pending(TAKEN_BACK)?,
            pending(DISTRUSTED)?,
        );
        if !removals && !development_keys && !distrusted {
            return Ok(());
        }
        let earlier = self.read_audit_log()?;
        if removals {
            self.remember_removals(&earlier, REMEMBERED)?;
        }
        if development_keys {
            self.take_back_development_keys(&earlier.development_keys, TAKEN_BACK)?;
        }
        if distrusted {
            self.store.transact(&[Tree::Registry], |t| {
                for (key, at) in &earlier.distrusted {
                    txn_put(t, Tree::Registry, &distrusted_key(key), at)?;
                }
                t.put(Tree::Registry, DISTRUSTED, b"1")?;
                Ok::<_, Abort<RegistryError>>(())
            })?;
        }
        Ok(())
    }

    /// One pass over the audit log for what [`Registry::backfill`] needs.
    fn read_audit_log(&self) -> Result<Earlier, RegistryError> {
        let mut earlier = Earlier::default();
        let mut after = 0;
        loop {
            let page = self.audit.entries(after, crate::audit::MAX_PAGE)?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for entry in &page {
                let e = &entry.event;
                let detail = |name: &str| e.details.get(name).cloned();
                let actor = detail("actor");
                let by = |who: &str| actor.as_deref() == Some(who);
                match (e.kind.as_str(), e.outcome.as_str()) {
                    // The development key taken back below is no removed
                    // key: the publishers `serve --apps` registered keep it.
                    ("registry.publisher.key", "removed") if !by("host:upgrade") => {
                        if let (Some(key), Some(publisher)) = (detail("key"), detail("publisher")) {
                            earlier.removed.push((key, publisher, entry.at));
                        }
                    }
                    ("registry.publisher.key", "added") if by("host:development") => {
                        if let (Some(publisher), Some(key)) = (detail("publisher"), detail("key")) {
                            earlier.development_keys.push((publisher, key));
                        }
                    }
                    ("registry.publisher.add", _) if by("host:development") => {
                        earlier.development.extend(detail("publisher"));
                    }
                    ("registry.auditor.distrust", "removed") => {
                        earlier
                            .distrusted
                            .extend(detail("key").map(|k| (k, entry.at)));
                    }
                    _ => {}
                }
            }
        }
        Ok(earlier)
    }

    /// Keys removed before removals were remembered are remembered as
    /// removed (unless a publisher holds one again), and publishers that
    /// `serve --apps` registered are marked as its own.
    fn remember_removals(&self, earlier: &Earlier, done: &[u8]) -> Result<(), RegistryError> {
        let held: HashSet<String> = self
            .publishers()?
            .into_iter()
            .flat_map(|p| p.keys)
            .collect();
        let count = self.store.transact(&[Tree::Registry], |t| {
            let mut count = 0;
            for (key, publisher, at) in &earlier.removed {
                if held.contains(key) {
                    continue;
                }
                let record = RemovedKey {
                    publisher: publisher.clone(),
                    removed_at: *at,
                };
                txn_put(t, Tree::Registry, &removed_key(key), &record)?;
                count += 1;
            }
            for id in &earlier.development {
                let key = publisher_key(id);
                if let Some(mut p) = txn_get::<Publisher>(t, Tree::Registry, &key)? {
                    if !p.development {
                        p.development = true;
                        txn_put(t, Tree::Registry, &key, &p)?;
                    }
                }
            }
            t.put(Tree::Registry, done, b"1")?;
            Ok::<_, Abort<RegistryError>>(count)
        })?;
        if count > 0 {
            tracing::info!(
                count,
                "remembered publisher keys removed before this version"
            );
        }
        Ok(())
    }

    /// An earlier `serve --apps` added the development key (a file in the
    /// data directory) to publishers the operator registered, when an app
    /// in its directory named one; this version never does. Such a key is
    /// taken off the publisher again (unless it is the publisher's only
    /// key), recorded in the audit log, and a warning names the publisher.
    fn take_back_development_keys(
        &self,
        added: &[(String, String)],
        done: &[u8],
    ) -> Result<(), RegistryError> {
        let (taken, only) = self.store.transact(&trees(), |t| {
            let (mut taken, mut only) = (Vec::new(), Vec::new());
            for (id, key) in added {
                let Some(mut p) = txn_get::<Publisher>(t, Tree::Registry, &publisher_key(id))? else {
                    continue;
                };
                if p.development || !p.keys.contains(key) {
                    continue;
                }
                if p.keys.len() == 1 {
                    only.push(id.clone());
                    continue;
                }
                p.keys.retain(|k| k != key);
                txn_put(t, Tree::Registry, &publisher_key(id), &p)?;
                self.audit.append_in(
                    t,
                    self.record("registry.publisher.key", &Actor::Upgrade, None, "removed")
                        .with_detail("publisher", id)
                        .with_detail("key", key)
                        .with_detail(
                            "reason",
                            "the development key, added by an earlier `serve --apps` to a publisher the operator registered",
                        ),
                )?;
                taken.push(id.clone());
            }
            t.put(Tree::Registry, done, b"1")?;
            Ok::<_, Abort<RegistryError>>((taken, only))
        })?;
        for id in taken {
            tracing::warn!(
                publisher = %id,
                "took the development key off a publisher the operator registered (an earlier `serve --apps` had added it); its apps are published with its own keys"
            );
        }
        for id in only {
            tracing::warn!(publisher = %id, "the development key is the only key of a publisher the operator registered (an earlier `serve --apps` added it); add the publisher's own key, then remove this one");
        }
        Ok(())
    }

    /// The publisher `key` was taken from, if it ever was. A host of an
    /// earlier format could have given a removed key a role again (it did
    /// not know the removal): such a key verifies nothing, whoever holds it.
    fn removed_from(&self, key: &str) -> Result<Option<String>, RegistryError> {
        Ok(self
            .store
            .get::<RemovedKey>(Tree::Registry, &removed_key(key))?
            .map(|r| r.publisher))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forget the cached releases of `app` (or, with `None`, the trusted
    /// keys) after a committed write.
    fn forget(&self, app: Option<&str>) {
        let mut cache = self.cache();
        cache.generation += 1;
        match app {
            Some(app) => {
                cache.releases.remove(app);
            }
            None => cache.trusted = None,
        }
    }

    /// `app`'s releases, newest first, from memory when they are there.
    /// Apps with no release are not remembered (ids come from requests).
    pub(crate) fn cached_releases(&self, app: &str) -> Result<Arc<Vec<Release>>, RegistryError> {
        let keep = !self.store.shared();
        let generation = {
            let cache = self.cache();
            if let Some(r) = cache.releases.get(app).filter(|_| keep) {
                return Ok(r.clone());
            }
            cache.generation
        };
        let mut all: Vec<Release> = self.list(&release_prefix(app))?;
        all.sort_by_key(|r| std::cmp::Reverse(r.semver()));
        let all = Arc::new(all);
        let mut cache = self.cache();
        if keep && !all.is_empty() && cache.generation == generation {
            cache.releases.insert(app.to_string(), all.clone());
        }
        Ok(all)
    }

    /// Whether `key` is a trusted auditor key now.
    pub fn is_trusted(&self, key: &str) -> Result<bool, RegistryError> {
        let keep = !self.store.shared();
        let generation = {
            let cache = self.cache();
            if let Some(t) = cache.trusted.as_ref().filter(|_| keep) {
                return Ok(t.contains(key));
            }
            cache.generation
        };
        let mut trusted = HashSet::new();
        for auditor in self.auditors()? {
            if self.removed_from(&auditor.key)?.is_none() {
                trusted.insert(auditor.key);
            }
        }
        let trusted = Arc::new(trusted);
        let mut cache = self.cache();
        if keep && cache.generation == generation {
            cache.trusted = Some(trusted.clone());
        }
        Ok(trusted.contains(key))
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    fn record(&self, kind: &str, actor: &Actor, app: Option<(&str, &str)>, outcome: &str) -> Event {
        let mut event = Event {
            kind: kind.into(),
            outcome: outcome.into(),
            ..Event::default()
        };
        if let Some((app, version)) = app {
            event.app = Some(app.into());
            event.version = Some(version.into());
        }
        event.with_detail("actor", actor.name())
    }

    /// Refuse `key` if it already has a role other than publisher
    /// `publisher`'s: one key is one party, so a key can never act for two
    /// publishers, nor audit what a publisher ships. (These are the
    /// operator's actions, made one at a time, so the check is a read
    /// before the change.) The one exception is the host's development key
    /// (`--apps`, `--demo`), which stands for every publisher whose apps it
    /// publishes from a directory and is never for production.
    fn check_key_free(
        &self,
        key: &str,
        publisher: Option<&str>,
        actor: &Actor,
    ) -> Result<(), RegistryError> {
        if matches!(actor, Actor::Development) {
            return Ok(());
        }
        if let Some(owner) = self.publisher_of_key(key)? {
            if Some(owner.id.as_str()) != publisher {
                return Err(RegistryError::Conflict(format!(
                    "key {key} is already a key of publisher `{}`",
                    owner.id
                )));
            }
        }
        if publisher.is_some() && self.auditors()?.iter().any(|a| a.key == key) {
            return Err(RegistryError::Conflict(format!(
                "key {key} is a trusted auditor key; a publisher needs a key of its own"
            )));
        }
        if publisher.is_some()
            && self
                .store
                .get_raw(Tree::Registry, &distrusted_key(key))?
                .is_some()
        {
            return Err(RegistryError::Conflict(format!(
                "key {key} was a trusted auditor key; a publisher needs a key of its own"
            )));
        }
        Ok(())
    }

    /// Register a publisher with its first keys. Registering the same
    /// publisher again with the same name and keys changes nothing.
    pub fn add_publisher(
        &self,
        id: &str,
        name: &str,
        keys: &[String],
        actor: &Actor,
    ) -> Result<Publisher, RegistryError> {
        // The same registration again changes nothing, whatever rules
        // were in force when it was first made.
        let same_keys = |stored: &[String]| {
            stored.len() == keys.len() && keys.iter().all(|k| stored.contains(k))
        };
        if let Some(existing) = self.publisher(id)? {
            if existing.name == name && same_keys(&existing.keys) {
                return Ok(existing);
            }
            return Err(RegistryError::PublisherExists(id.into()));
        }
        check_publisher_id(id)?;
        check_label("a publisher name", name)?;
        let twin = |other: &str| {
            RegistryError::Conflict(format!(
                "publisher `{other}` is registered already, and `{id}` differs from it only in case, spacing, punctuation or letters that look alike"
            ))
        };
        // Users see the name beside each app: two that read alike would
        // let one publisher pass for another.
        let twin_name = |other: &Publisher| {
            RegistryError::Conflict(format!(
                "publisher `{}` is registered already under the name `{}`, which `{name}` would pass for: users could not tell the two apart",
                other.id, other.name
            ))
        };
        // Publishers registered before the indexes were kept, or kept with
        // the skeletons of an earlier version.
        let publishers = self.publishers()?;
        let look_alike = superapp_core::text::look_alike;
        if let Some(other) = publishers.iter().find(|p| look_alike(&p.id, id)) {
            return Err(twin(&other.id));
        }
        if let Some(other) = publishers.iter().find(|p| look_alike(&p.name, name)) {
            return Err(twin_name(other));
        }
        if keys.is_empty() {
            return Err(RegistryError::Invalid(
                "a publisher needs at least one public key".into(),
            ));
        }
        for (i, key) in keys.iter().enumerate() {
            check_public_key(key)?;
            if keys[..i].contains(key) {
                return Err(RegistryError::Invalid(format!(
                    "key `{key}` is given twice"
                )));
            }
            self.check_key_free(key, Some(id), actor)?;
        }
        let publisher = Publisher {
            id: id.into(),
            name: name.into(),
            keys: keys.to_vec(),
            added_at: now_secs(),
            development: matches!(actor, Actor::Development),
        };
        let stored = self.store.transact(&trees(), |t| {
            if let Some(existing) = txn_get::<Publisher>(t, Tree::Registry, &publisher_key(id))? {
                if existing.name == publisher.name && same_keys(&existing.keys) {
                    return Ok(existing);
                }
                return Err(Abort::User(RegistryError::PublisherExists(id.into())));
            }
            if let Some(other) = indexed_twin(t, 'P', id)? {
                return Err(Abort::User(twin(&other)));
            }
            if let Some(other) = indexed_twin(t, 'N', name)? {
                let other = txn_get::<Publisher>(t, Tree::Registry, &publisher_key(&other))?
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "the name index names a missing publisher `{other}`"
                        ))
                    })?;
                return Err(Abort::User(twin_name(&other)));
            }
            for key in keys {
                check_not_removed(t, key)?;
            }
            txn_put(t, Tree::Registry, &publisher_key(id), &publisher)?;
            for (index, text) in [('P', id), ('N', name)] {
                for key in twin_keys(index, text) {
                    txn_put(t, Tree::Registry, &key, &id)?;
                }
            }
            self.audit.append_in(
                t,
                self.record("registry.publisher.add", actor, None, "added")
                    .with_detail("publisher", id)
                    .with_detail("keys", keys.join(" ")),
            )?;
            Ok(publisher.clone())
        })?;
        Ok(stored)
    }

    /// Add a key to a registered publisher (key rotation); idempotent.
    pub fn add_publisher_key(
        &self,
        id: &str,
        key: &str,
        actor: &Actor,
    ) -> Result<Publisher, RegistryError> {
        check_public_key(key)?;
        self.check_key_free(key, Some(id), actor)?;
        let publisher = self.store.transact(&trees(), |t| {
            let mut p = txn_get::<Publisher>(t, Tree::Registry, &publisher_key(id))?
                .ok_or_else(|| Abort::User(RegistryError::UnknownPublisher(id.into())))?;
            if p.keys.iter().any(|k| k == key) {
                return Ok(p);
            }
            check_not_removed(t, key)?;
            p.keys.push(key.into());
            txn_put(t, Tree::Registry, &publisher_key(id), &p)?;
            self.audit.append_in(
                t,
                self.record("registry.publisher.key", actor, None, "added")
                    .with_detail("publisher", id)
                    .with_detail("key", key),
            )?;
            Ok(p)
        })?;
        Ok(publisher)
    }

    /// Take a key from a publisher (a key leaked or retired): requests
    /// signed with it are refused from now on. Versions it signed stay as
    /// they are (yank those that must go). A publisher keeps at least one
    /// key: add the new one first. `Ok(None)` if the key was not its.
    pub fn remove_publisher_key(
        &self,
        id: &str,
        key: &str,
        actor: &Actor,
    ) -> Result<Option<Publisher>, RegistryError> {
        let publisher = self.store.transact(&trees(), |t| {
            let mut p = txn_get::<Publisher>(t, Tree::Registry, &publisher_key(id))?
                .ok_or_else(|| Abort::User(RegistryError::UnknownPublisher(id.into())))?;
            if !p.keys.iter().any(|k| k == key) {
                return Ok(None);
            }
            if p.keys.len() == 1 {
                return Err(Abort::User(RegistryError::Conflict(format!(
                    "{key} is the only key of publisher `{id}`; add its new key first"
                ))));
            }
            p.keys.retain(|k| k != key);
            txn_put(t, Tree::Registry, &publisher_key(id), &p)?;
            let removed = RemovedKey {
                publisher: id.into(),
                removed_at: now_secs(),
            };
            txn_put(t, Tree::Registry, &removed_key(key), &removed)?;
            self.audit.append_in(
                t,
                self.record("registry.publisher.key", actor, None, "removed")
                    .with_detail("publisher", id)
                    .with_detail("key", key),
            )?;
            Ok(Some(p))
        })?;
        Ok(publisher)
    }

    pub fn publisher(&self, id: &str) -> Result<Option<Publisher>, RegistryError> {
        Ok(self.store.get(Tree::Registry, &publisher_key(id))?)
    }

    pub fn publishers(&self) -> Result<Vec<Publisher>, RegistryError> {
        self.list(b"p\0")
    }

    /// The publisher a key belongs to, if any.
    pub fn publisher_of_key(&self, key: &str) -> Result<Option<Publisher>, RegistryError> {
        Ok(self
            .publishers()?
            .into_iter()
            .find(|p| p.keys.iter().any(|k| k == key)))
    }

    /// The ids of the publishers a key belongs to, in id order, if any:
    /// one, but for the development key (see `check_key_free`).
    pub fn publishers_of_key(&self, key: &str) -> Result<Option<Vec<String>>, RegistryError> {
        if let Some(from) = self.removed_from(key)? {
            tracing::warn!(%key, publisher = %from, "a request is signed with a key removed from a publisher; refused");
            return Ok(None);
        }
        let ids: Vec<String> = self
            .publishers()?
            .into_iter()
            .filter(|p| p.keys.iter().any(|k| k == key))
            .map(|p| p.id)
            .collect();
        Ok((!ids.is_empty()).then_some(ids))
    }

    /// Trust an auditor key; idempotent, and refused (conflict) for a key
    /// trusted already under another name.
    pub fn trust_auditor(
        &self,
        key: &str,
        name: &str,
        actor: &Actor,
    ) -> Result<Auditor, RegistryError> {
        check_public_key(key)?;
        // Trusting a key again under its name changes nothing, whatever
        // rules were in force when it was first trusted.
        if !self
            .auditors()?
            .iter()
            .any(|a| a.key == key && a.name == name)
        {
            check_label("an auditor name", name)?;
        }
        self.check_key_free(key, None, actor)?;
        // Users and auditors read "approved by" a name: a key may go by an
        // auditor's name itself (their next key, as rotating needs) but not
        // by one that only passes for it.
        if let Some(other) = self.auditors()?.into_iter().find(|a| {
            a.key != key && a.name != name && superapp_core::text::look_alike(&a.name, name)
        }) {
            return Err(RegistryError::Conflict(format!(
                "another trusted auditor key is named `{}`, which `{name}` passes for; trust their next key under that name itself",
                other.name
            )));
        }
        let auditor = Auditor {
            key: key.into(),
            name: name.into(),
            added_at: now_secs(),
        };
        let (stored, created) = self.store.transact(&trees(), |t| {
            if let Some(existing) = txn_get::<Auditor>(t, Tree::Registry, &auditor_key(key))? {
                if existing.name != auditor.name {
                    return Err(Abort::User(RegistryError::Conflict(format!(
                        "key {key} is trusted already, as `{}`; distrust it first to trust it under another name",
                        existing.name
                    ))));
                }
                return Ok((existing, false));
            }
            check_not_removed(t, key)?;
            txn_put(t, Tree::Registry, &auditor_key(key), &auditor)?;
            self.audit.append_in(
                t,
                self.record("registry.auditor.trust", actor, None, "trusted")
                    .with_detail("auditor", name)
                    .with_detail("key", key),
            )?;
            Ok((auditor.clone(), true))
        })?;
        if created {
            self.forget(None);
        }
        Ok(stored)
    }

    /// Stop trusting an auditor key. Approvals it signed no longer let
    /// sensitive versions launch. Returns whether the key was trusted.
    pub fn distrust_auditor(&self, key: &str, actor: &Actor) -> Result<bool, RegistryError> {
        let removed = self.store.transact(&trees(), |t| {
            let existed = t.get(Tree::Registry, &auditor_key(key))?.is_some();
            if existed {
                t.delete(Tree::Registry, &auditor_key(key))?;
                txn_put(t, Tree::Registry, &distrusted_key(key), &now_secs())?;
                self.audit.append_in(
                    t,
                    self.record("registry.auditor.distrust", actor, None, "removed")
                        .with_detail("key", key),
                )?;
            }
            Ok::<_, Abort<RegistryError>>(existed)
        })?;
        if removed {
            self.forget(None);
        }
        Ok(removed)
    }

    pub fn auditor(&self, key: &str) -> Result<Option<Auditor>, RegistryError> {
        Ok(self.store.get(Tree::Registry, &auditor_key(key))?)
    }

    pub fn auditors(&self) -> Result<Vec<Auditor>, RegistryError> {
        self.list(b"a\0")
    }

    fn list<T: serde::de::DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<T>, RegistryError> {
        self.store
            .scan(Tree::Registry, prefix, None, usize::MAX, false)?
            .iter()
            .map(|(_, v)| Ok(superapp_store::decode(Tree::Registry, v)?))
            .collect()
    }

    /// Every version of `app`, newest first.
    pub fn releases(&self, app: &str) -> Result<Vec<Release>, RegistryError> {
        Ok(self.cached_releases(app)?.as_ref().clone())
    }

    /// Every app id in the registry, sorted.
    pub fn apps(&self) -> Result<Vec<String>, RegistryError> {
        let mut ids: Vec<String> = self
            .store
            .scan(Tree::Registry, b"r\0", None, usize::MAX, false)?
            .iter()
            .filter_map(|(k, _)| {
                let rest = k.get(2..)?;
                let end = rest.iter().position(|b| *b == 0)?;
                String::from_utf8(rest[..end].to_vec()).ok()
            })
            .collect();
        ids.dedup();
        Ok(ids)
    }

    pub fn release(&self, app: &str, version: &str) -> Result<Release, RegistryError> {
        self.store
            .get(Tree::Registry, &release_key(app, version))?
            .ok_or_else(|| RegistryError::UnknownVersion {
                app: app.into(),
                version: version.into(),
            })
    }

    /// The package file of a release.
    pub fn package_bytes(&self, digest: &str) -> Result<Option<Vec<u8>>, RegistryError> {
        Ok(self.store.get_raw(Tree::Packages, digest.as_bytes())?)
    }
}

#[cfg(test)]
mod tests;
