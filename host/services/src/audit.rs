//! The tamper-evident audit log: an append-only chain of entries in the
//! store, each holding the SHA-256 of the one before, so editing, removing
//! or reordering any entry breaks every hash after it. Entries record what
//! happened (who, which app and version, which capability, the outcome and a
//! digest of the arguments), never raw personal data.

use std::collections::BTreeMap;
use std::sync::Arc;

use ring::digest::{Context, SHA256};
use serde::{Deserialize, Serialize};
use superapp_core::{now_secs, Capability};
use superapp_store::{decode, txn_get, txn_put, Store, StoreError, Tree, Txn};

/// The `prev` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What to record. `Audit::append` adds the seq, time and chain hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// What happened, e.g. `consent.grant`, `capability.call`, `app.trap`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
    /// `allowed`, `denied`, `granted`, `failed`, …
    pub outcome: String,
    /// Hex SHA-256 of the call's arguments, when there were any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_sha256: Option<String>,
    /// Further non-personal facts (field names, limits, error codes).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
}

impl Event {
    /// Something `user` did with (or that happened to) version `version` of
    /// `app`, with its `outcome`.
    pub fn for_app(kind: &str, user: &str, app: &str, version: &str, outcome: &str) -> Event {
        Event {
            kind: kind.into(),
            user: Some(user.into()),
            app: Some(app.into()),
            version: Some(version.into()),
            outcome: outcome.into(),
            ..Event::default()
        }
    }

    /// The capability involved.
    pub fn with_capability(mut self, capability: Capability) -> Event {
        self.capability = Some(capability.name().into());
        self
    }

    /// One more non-personal fact (a field name, an amount, an error code).
    pub fn with_detail(mut self, key: &str, value: impl Into<String>) -> Event {
        self.details.insert(key.into(), value.into());
        self
    }
}

/// An entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    pub at: u64,
    /// Hash of the previous entry ([`GENESIS`] for the first).
    pub prev: String,
    #[serde(flatten)]
    pub event: Event,
    /// SHA-256 over `prev` and the canonical encoding of everything above.
    pub hash: String,
}

/// The canonical bytes an entry's hash covers: its fields without `hash`,
/// as JSON with the field order of the struct.
fn entry_hash(seq: u64, at: u64, prev: &str, event: &Event) -> String {
    #[derive(Serialize)]
    struct Covered<'a> {
        seq: u64,
        at: u64,
        prev: &'a str,
        #[serde(flatten)]
        event: &'a Event,
    }
    let body = serde_json::to_vec(&Covered {
        seq,
        at,
        prev,
        event,
    })
    .expect("entries serialize");
    let mut ctx = Context::new(&SHA256);
    ctx.update(prev.as_bytes());
    ctx.update(&body);
    hex::encode(ctx.finish())
}

/// Hex SHA-256 of arbitrary bytes: for `Event::args_sha256`.
pub use superapp_core::sha256_hex as digest_hex;

/// Why the chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("entry {seq}: {reason}")]
    Broken { seq: u64, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

fn user_key(user: &str, seq: u64) -> Vec<u8> {
    [user.as_bytes(), b"\0", &seq.to_be_bytes()].concat()
}

fn app_prefix(user: &str, app: &str) -> Vec<u8> {
    [user.as_bytes(), b"\0", app.as_bytes(), b"\0"].concat()
}

/// One page of a user's access log, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page {
    pub entries: Vec<Entry>,
    /// Pass as `before` for the next (older) page; `None` on the last.
    pub next_before: Option<u64>,
}

/// The trees an append writes: a transaction that records an action in the
/// audit log names these beside its own (see [`Audit::append_in`]).
pub const TREES: [Tree; 4] = [Tree::Meta, Tree::Audit, Tree::AuditByUser, Tree::AuditByApp];

/// `trees` and the audit log's: what a transaction that records its action
/// in the log names.
pub fn with(trees: &[Tree]) -> Vec<Tree> {
    let mut all = trees.to_vec();
    all.extend_from_slice(&TREES);
    all
}

/// Most entries one page of a user's access log holds.
pub const MAX_PAGE: usize = 1000;

/// Where the newest entry's seq and hash are kept, read and written in the
/// appending transaction, so concurrent appends serialize in the store.
const HEAD_KEY: &[u8] = b"audit-head";

/// Set once the per-app index covers every entry.
const APP_INDEX_KEY: &[u8] = b"audit-app-index";

/// The end of a chain: its newest entry's seq and hash (0 and [`GENESIS`]
/// for an empty one). The store keeps it beside the log; an auditor keeps
/// one as a checkpoint, to find a history rewritten since
/// ([`ChainVerifier::extending`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
}

/// Appends to the chain. Every append is part of a store transaction: the
/// action's own, so an action and its record are written together or not at
/// all (`append_in`), or one of its own (`append`).
pub struct Audit {
    store: Arc<Store>,
}

impl Audit {
    /// Open the chain. A store written before the head was kept gets it
    /// from its newest entry.
    pub fn open(store: Arc<Store>) -> Result<Audit, StoreError> {
        if store.get::<Head>(Tree::Meta, HEAD_KEY)?.is_none() {
            let head = match store.scan(Tree::Audit, b"", None, 1, true)?.first() {
                Some((_, v)) => {
                    let e: Entry = decode(Tree::Audit, v)?;
                    Head {
                        seq: e.seq,
                        hash: e.hash,
                    }
                }
                None => Head {
                    seq: 0,
                    hash: GENESIS.to_string(),
                },
            };
            store
                .transact(&[Tree::Meta], |t| {
                    Ok::<_, superapp_store::Abort<()>>(txn_put(t, Tree::Meta, HEAD_KEY, &head)?)
                })
                .map_err(superapp_store::Abort::into_store)?;
        }
        if store.get::<bool>(Tree::Meta, APP_INDEX_KEY)?.is_none() {
            // Index the entries written before the per-app index existed.
            let mut after = 0;
            loop {
                let page = read(&store, after, 1024)?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                store
                    .transact(&TREES, |t| {
                        for entry in &page {
                            index(t, entry)?;
                        }
                        Ok::<_, superapp_store::Abort<()>>(())
                    })
                    .map_err(superapp_store::Abort::into_store)?;
            }
            store
                .transact(&[Tree::Meta], |t| {
                    Ok::<_, superapp_store::Abort<()>>(txn_put(
                        t,
                        Tree::Meta,
                        APP_INDEX_KEY,
                        &true,
                    )?)
                })
                .map_err(superapp_store::Abort::into_store)?;
        }
        Ok(Audit { store })
    }

    /// Append an entry inside the transaction `t`, which must include
    /// [`TREES`]. It commits with the rest of `t` or not at all, and is
    /// durable once the store's next flush is done (`Store::durable`).
    pub fn append_in(&self, t: &dyn Txn, event: Event) -> Result<Entry, StoreError> {
        let head: Head = txn_get(t, Tree::Meta, HEAD_KEY)?.unwrap_or(Head {
            seq: 0,
            hash: GENESIS.to_string(),
        });
        let seq = head.seq + 1;
        let at = now_secs();
        let hash = entry_hash(seq, at, &head.hash, &event);
        let entry = Entry {
            seq,
            at,
            prev: head.hash,
            event,
            hash,
        };
        txn_put(t, Tree::Audit, &key(seq), &entry)?;
        index(t, &entry)?;
        txn_put(
            t,
            Tree::Meta,
            HEAD_KEY,
            &Head {
                seq,
                hash: entry.hash.clone(),
            },
        )?;
        Ok(entry)
    }

    /// Append an entry in a transaction of its own: for a record whose
    /// action writes nothing (a capability call, a failed event). The caller
    /// treats an error as the action's failure.
    pub fn append(&self, event: Event) -> Result<Entry, StoreError> {
        self.store
            .transact(&TREES, |t| {
                Ok::<_, superapp_store::Abort<()>>(self.append_in(t, event.clone())?)
            })
            .map_err(superapp_store::Abort::into_store)
    }

    /// Entries with seq > `after`, oldest first, at most `limit`.
    pub fn entries(&self, after: u64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        read(&self.store, after, limit)
    }

    /// A page of one user's entries (about one app, if `app` is given),
    /// newest first, older than seq `before`, at most `limit` (up to
    /// [`MAX_PAGE`]): their access log. Read from an index, so a page costs
    /// its own length however long the log is.
    pub fn for_user(
        &self,
        user: &str,
        app: Option<&str>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let (tree, prefix) = match app {
            Some(app) => (Tree::AuditByApp, app_prefix(user, app)),
            None => (Tree::AuditByUser, [user.as_bytes(), b"\0"].concat()),
        };
        let cursor = before.map(|seq| [prefix.as_slice(), &seq.to_be_bytes()].concat());
        // One more than asked for tells whether there is a next page.
        let keys = self
            .store
            .scan(tree, &prefix, cursor.as_deref(), limit + 1, true)?;
        let more = keys.len() > limit;
        let mut entries = Vec::new();
        for (k, _) in keys.into_iter().take(limit) {
            let Some(seq) = k
                .get(prefix.len()..)
                .and_then(|s| <[u8; 8]>::try_from(s).ok())
            else {
                continue;
            };
            if let Some(entry) = self.store.get::<Entry>(Tree::Audit, &seq)? {
                entries.push(entry);
            }
        }
        let next_before = more.then(|| entries.last().map(|e| e.seq)).flatten();
        Ok(Page {
            entries,
            next_before,
        })
    }
}

/// Index an entry by user, and by user and app.
fn index(t: &dyn Txn, entry: &Entry) -> Result<(), StoreError> {
    if let Some(user) = &entry.event.user {
        txn_put(t, Tree::AuditByUser, &user_key(user, entry.seq), &())?;
        if let Some(app) = &entry.event.app {
            let k = [app_prefix(user, app).as_slice(), &entry.seq.to_be_bytes()].concat();
            txn_put(t, Tree::AuditByApp, &k, &())?;
        }
    }
    Ok(())
}

fn read(store: &Store, after: u64, limit: usize) -> Result<Vec<Entry>, StoreError> {
    store
        .scan(Tree::Audit, b"", Some(&key(after)), limit, false)?
        .iter()
        .map(|(_, v)| decode(Tree::Audit, v))
        .collect()
}

/// Checks a chain entry by entry, oldest first: seqs run 1, 2, 3, … and
/// every entry's `prev` and `hash` match. Used on the store directly and on
/// pages fetched from a running server's API.
///
/// A chain agrees with itself however it was made, so whoever can write the
/// whole log can also replace it with another history that verifies. A
/// checkpoint, a head recorded at an earlier check and kept apart from the
/// log, finds that: the chain must still hold the checkpoint's entry with
/// the same hash, and, since each hash covers every entry before it, then
/// everything up to it is as it was.
#[derive(Debug)]
pub struct ChainVerifier {
    expected_prev: String,
    next: u64,
    checkpoint: Option<Head>,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier {
            expected_prev: GENESIS.to_string(),
            next: 1,
            checkpoint: None,
        }
    }
}

impl ChainVerifier {
    /// A verifier that also requires the chain to extend `checkpoint`.
    pub fn extending(checkpoint: Option<Head>) -> ChainVerifier {
        ChainVerifier {
            checkpoint: checkpoint.filter(|c| c.seq > 0),
            ..ChainVerifier::default()
        }
    }

    /// The seq of the last entry checked (0 before the first).
    pub fn checked(&self) -> u64 {
        self.next - 1
    }

    /// The chain's end once every entry was pushed: its head, or an error
    /// if it ends before the checkpoint's entry.
    pub fn finish(self) -> Result<Head, ChainError> {
        if let Some(c) = &self.checkpoint {
            if self.checked() < c.seq {
                return Err(ChainError::Broken {
                    seq: self.next,
                    reason: format!(
                        "the log ends at entry {}, before the checkpoint's entry {} (entries were removed or the log rewritten)",
                        self.checked(),
                        c.seq
                    ),
                });
            }
        }
        Ok(Head {
            seq: self.checked(),
            hash: self.expected_prev,
        })
    }

    /// Check the next entry.
    pub fn push(&mut self, entry: &Entry) -> Result<(), ChainError> {
        let broken = |reason: String| ChainError::Broken {
            seq: self.next,
            reason,
        };
        if entry.seq != self.next {
            return Err(broken(format!("the next entry claims seq {}", entry.seq)));
        }
        if entry.prev != self.expected_prev {
            return Err(broken(
                "its previous-hash does not match the entry before it".into(),
            ));
        }
        if entry_hash(entry.seq, entry.at, &entry.prev, &entry.event) != entry.hash {
            return Err(broken("its contents do not match its hash (edited)".into()));
        }
        if let Some(c) = self.checkpoint.as_ref().filter(|c| c.seq == entry.seq) {
            if c.hash != entry.hash {
                return Err(broken(
                    "it differs from the checkpoint's entry: the log was rewritten up to here"
                        .into(),
                ));
            }
        }
        self.expected_prev = entry.hash.clone();
        self.next += 1;
        Ok(())
    }
}

/// Check the whole chain in the store, and that it extends `checkpoint`
/// if one is given. Returns its head (whose seq is the number of entries),
/// or the first broken entry.
pub fn verify(store: &Store, checkpoint: Option<Head>) -> Result<Head, ChainError> {
    const PAGE: usize = 1024;
    let mut chain = ChainVerifier::extending(checkpoint);
    loop {
        let raw = store.scan(Tree::Audit, b"", Some(&key(chain.checked())), PAGE, false)?;
        if raw.is_empty() {
            // The newest entries removed leave a chain that agrees with
            // itself: the head the store keeps beside it says where it ends.
            if let Some(head) = store.get::<Head>(Tree::Meta, HEAD_KEY)? {
                if head.seq != chain.checked() || head.hash != chain.expected_prev {
                    return Err(ChainError::Broken {
                        seq: chain.checked() + 1,
                        reason: format!(
                            "the chain ends at entry {} but the store's head is entry {} (entries were removed or rewritten)",
                            chain.checked(),
                            head.seq
                        ),
                    });
                }
            }
            return chain.finish();
        }
        for (k, v) in &raw {
            let seq = chain.checked() + 1;
            if k.as_slice() != key(seq) {
                return Err(ChainError::Broken {
                    seq,
                    reason: "missing: the next stored entry has a later seq".into(),
                });
            }
            let entry: Entry = serde_json::from_slice(v).map_err(|e| ChainError::Broken {
                seq,
                reason: format!("unreadable: {e}"),
            })?;
            chain.push(&entry)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str) -> Event {
        Event {
            kind: kind.into(),
            outcome: "allowed".into(),
            user: Some("u1".into()),
            ..Event::default()
        }
    }

    #[test]
    fn appends_chain_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let audit = Audit::open(store.clone()).unwrap();
        let a = audit.append(event("one")).unwrap();
        let b = audit.append(event("two")).unwrap();
        assert_eq!((a.seq, a.prev.as_str()), (1, GENESIS));
        assert_eq!(b.prev, a.hash);
        let reopened = Audit::open(store.clone()).unwrap();
        let c = reopened.append(event("three")).unwrap();
        assert_eq!((c.seq, c.prev), (3, b.hash));
        assert_eq!(verify(&store, None).map(|h| h.seq), Ok(3));
        assert_eq!(reopened.entries(1, 10).unwrap().len(), 2);
    }

    #[test]
    fn edits_removals_and_rewrites_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let audit = Audit::open(store.clone()).unwrap();
        for i in 0..5 {
            audit.append(event(&format!("e{i}"))).unwrap();
        }
        let mut third: Entry = store.get(Tree::Audit, &key(3)).unwrap().unwrap();
        let original = third.clone();

        third.event.outcome = "denied".into();
        store.put(Tree::Audit, &key(3), &third).unwrap();
        assert!(
            matches!(verify(&store, None), Err(ChainError::Broken { seq: 3, ref reason }) if reason.contains("edited"))
        );

        // Rewriting the entry's own hash just moves the break to the next one.
        third.hash = entry_hash(third.seq, third.at, &third.prev, &third.event);
        store.put(Tree::Audit, &key(3), &third).unwrap();
        assert!(
            matches!(verify(&store, None), Err(ChainError::Broken { seq: 4, ref reason }) if reason.contains("previous-hash"))
        );

        store.put(Tree::Audit, &key(3), &original).unwrap();
        assert_eq!(verify(&store, None).map(|h| h.seq), Ok(5));
        store
            .transact(&[Tree::Audit], |t| {
                Ok::<_, superapp_store::Abort<()>>(t.delete(Tree::Audit, &key(2))?)
            })
            .unwrap();
        assert!(
            matches!(verify(&store, None), Err(ChainError::Broken { seq: 2, ref reason }) if reason.contains("missing"))
        );
    }

    #[test]
    fn a_history_rewritten_or_shortened_since_a_checkpoint_is_found() {
        let chain = |events: &[&str]| {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            let audit = Audit::open(store.clone()).unwrap();
            for e in events {
                audit.append(event(e)).unwrap();
            }
            (dir, store)
        };
        let (_a, first) = chain(&["e0", "e1", "e2"]);
        let checkpoint = verify(&first, None).unwrap();
        assert_eq!(checkpoint.seq, 3);
        // The same log grown since: it extends the checkpoint.
        Audit::open(first.clone())
            .unwrap()
            .append(event("e3"))
            .unwrap();
        let grown = verify(&first, Some(checkpoint.clone())).unwrap();
        assert_eq!(grown.seq, 4);
        // Another history, consistent with itself and its own head: only the
        // checkpoint tells it apart.
        let (_b, other) = chain(&["e0", "e1", "forged", "e3"]);
        assert_eq!(verify(&other, None).map(|h| h.seq), Ok(4));
        assert!(
            matches!(verify(&other, Some(checkpoint.clone())), Err(ChainError::Broken { seq: 3, ref reason }) if reason.contains("rewritten")),
            "{:?}",
            verify(&other, Some(checkpoint.clone()))
        );
        let (_c, shorter) = chain(&["e0", "e1"]);
        assert!(
            matches!(verify(&shorter, Some(checkpoint.clone())), Err(ChainError::Broken { seq: 3, ref reason }) if reason.contains("before the checkpoint's entry 3")),
            "{:?}",
            verify(&shorter, Some(checkpoint))
        );
    }

    #[test]
    fn removing_the_newest_entries_is_found_against_the_head() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let audit = Audit::open(store.clone()).unwrap();
        for i in 0..5 {
            audit.append(event(&format!("e{i}"))).unwrap();
        }
        assert_eq!(verify(&store, None).map(|h| h.seq), Ok(5));
        store
            .transact(&[Tree::Audit], |t| {
                Ok::<_, superapp_store::Abort<()>>(t.delete(Tree::Audit, &key(5))?)
            })
            .unwrap();
        assert!(
            matches!(verify(&store, None), Err(ChainError::Broken { seq: 5, ref reason }) if reason.contains("head is entry 5")),
            "{:?}",
            verify(&store, None)
        );
    }
}

/// Every audited action commits with its audit entry or not at all: with
/// writes to the audit tree failing, the action fails and leaves nothing.
#[cfg(test)]
mod atomicity {
    use std::sync::Arc;
    use std::time::Duration;

    use superapp_core::{Capability, ConsentLevel, Manifest};
    use superapp_store::faults::FailingWrites;
    use superapp_store::Tree;

    use super::{verify, Audit};
    use crate::consent::{Consent, ConsentState, Decision};
    use crate::ledger::orders::{NewOrder, OrderError, OrderState, Orders};
    use crate::ledger::{AccountRef, Ledger};

    fn app() -> Manifest {
        Manifest::parse(
            "id = \"org.example.shop\"\nname = \"Shop\"\nversion = \"1.0.0\"\npublisher = \"Example\"\ndescription = \"d\"\n[capabilities.profile]\nreason = \"r\"\n[capabilities.payments]\nreason = \"r\"\n",
        )
        .unwrap()
    }

    #[test]
    fn consent_answers_and_revocations_commit_with_their_entry() {
        let dir = tempfile::tempdir().unwrap();
        let (store, faults) = FailingWrites::open(dir.path()).unwrap();
        let audit = Arc::new(Audit::open(store.clone()).unwrap());
        let consent = Consent::new(store.clone(), audit.clone());
        let app = app();
        // The first call asks; the prompt waits for the user.
        let state = consent.check(
            "u1",
            &app,
            Capability::Profile,
            ConsentLevel::OncePerApp,
            None,
        );
        assert_eq!(state, ConsentState::Required);
        let prompt = consent.pending("u1").unwrap().remove(0);

        faults.fail(&[Tree::Audit]);
        assert!(consent.answer("u1", &prompt.id, true).is_err());
        assert!(
            consent.grants("u1").unwrap().is_empty(),
            "a grant without its record"
        );
        assert_eq!(
            consent.pending("u1").unwrap().len(),
            1,
            "the prompt is still open"
        );
        // A capability call that cannot be recorded is refused.
        assert_eq!(
            consent.check(
                "u1",
                &app,
                Capability::Payments,
                ConsentLevel::EveryUse,
                None
            ),
            ConsentState::Denied
        );

        faults.fail(&[]);
        consent.answer("u1", &prompt.id, true).unwrap();
        assert_eq!(consent.grants("u1").unwrap()[0].decision, Decision::Granted);

        faults.fail(&[Tree::AuditByUser]);
        assert!(consent
            .revoke("u1", "org.example.shop", Capability::Profile, false)
            .is_err());
        assert_eq!(consent.grants("u1").unwrap()[0].decision, Decision::Granted);
        faults.fail(&[]);
        assert_eq!(
            verify(&store, None).map(|h| h.seq),
            Ok(2),
            "the request's call and the grant"
        );
    }

    #[test]
    fn a_payment_that_cannot_be_recorded_moves_no_money() {
        let dir = tempfile::tempdir().unwrap();
        let (store, faults) = FailingWrites::open(dir.path()).unwrap();
        let audit = Arc::new(Audit::open(store.clone()).unwrap());
        let ledger = Ledger::new(store.clone(), audit.clone());
        ledger.topup("u1", 1_000, "EUR", "t1", "test").unwrap();
        let orders = Orders::new(store.clone(), audit, Duration::from_secs(600));
        let new = NewOrder {
            amount: 250,
            currency: "EUR".into(),
            description: "a visit".into(),
            idempotency_key: "k1".into(),
            expires_in: None,
        };
        faults.fail(&[Tree::Audit]);
        assert!(matches!(
            orders.request("u1", &app(), &new),
            Err(OrderError::Store(_))
        ));
        faults.fail(&[]);
        let order = orders.request("u1", &app(), &new).unwrap();

        faults.fail(&[Tree::Audit]);
        assert!(orders.confirm("u1", &order.id).is_err());
        let balance = |ledger: &Ledger| {
            ledger
                .account(&AccountRef::user("u1", "EUR"))
                .unwrap()
                .unwrap()
                .balance
        };
        assert_eq!(balance(&ledger), 1_000, "paid without a record");
        assert_eq!(
            orders.get(&order.id).unwrap().unwrap().state,
            OrderState::Pending
        );

        faults.fail(&[]);
        let paid = orders.confirm("u1", &order.id).unwrap();
        assert_eq!(paid.state, OrderState::Paid);
        assert_eq!(balance(&ledger), 750);
        assert_eq!(
            verify(&store, None).map(|h| h.seq),
            Ok(3),
            "the top-up, the request and the payment, nothing else"
        );
    }
}
