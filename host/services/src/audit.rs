//! The tamper-evident audit log: an append-only chain of entries in the
//! store, each holding the SHA-256 of the one before, so editing, removing
//! or reordering any entry breaks every hash after it. Entries record what
//! happened (who, which app and version, which capability, the outcome and a
//! digest of the arguments), never raw personal data.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use ring::digest::{Context, SHA256};
use serde::{Deserialize, Serialize};
use superapp_core::{now_secs, Capability};
use superapp_store::{decode, Store, StoreError, Tree};

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
    let mut k = user.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Appends to the chain. One per store: appends are serialized here.
pub struct Audit {
    store: Arc<Store>,
    /// Seq and hash of the newest entry.
    head: Mutex<(u64, String)>,
}

impl Audit {
    /// Open the chain, reading its newest entry.
    pub fn open(store: Arc<Store>) -> Result<Audit, StoreError> {
        let head = match store.scan(Tree::Audit, b"", None, 1, true)?.first() {
            Some((_, v)) => {
                let e: Entry = decode(Tree::Audit, v)?;
                (e.seq, e.hash)
            }
            None => (0, GENESIS.to_string()),
        };
        Ok(Audit {
            store,
            head: Mutex::new(head),
        })
    }

    /// Append an entry. It is durable once the store's next flush is done
    /// (`Store::durable`), which callers await before they answer.
    pub fn append(&self, event: Event) -> Result<Entry, StoreError> {
        let mut head = self.head.lock().unwrap_or_else(|p| p.into_inner());
        let seq = head.0 + 1;
        let at = now_secs();
        let hash = entry_hash(seq, at, &head.1, &event);
        let entry = Entry {
            seq,
            at,
            prev: head.1.clone(),
            event,
            hash,
        };
        self.store.put(Tree::Audit, &key(seq), &entry)?;
        if let Some(user) = &entry.event.user {
            self.store
                .put(Tree::AuditByUser, &user_key(user, seq), &())?;
        }
        *head = (seq, entry.hash.clone());
        Ok(entry)
    }

    /// Append where the action being recorded has already happened and must
    /// not fail because of the log: a failure goes to the host's error log.
    pub fn record(&self, event: Event) {
        if let Err(e) = self.append(event) {
            tracing::error!(error = %e, "cannot append to the audit log");
        }
    }

    /// Entries with seq > `after`, oldest first, at most `limit`.
    pub fn entries(&self, after: u64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        read(&self.store, after, limit)
    }

    /// One user's entries, newest first, at most `limit`: their privacy report.
    pub fn for_user(&self, user: &str, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let mut prefix = user.as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for (k, _) in self
            .store
            .scan(Tree::AuditByUser, &prefix, None, limit, true)?
        {
            let Some(seq) = k
                .get(prefix.len()..)
                .and_then(|s| <[u8; 8]>::try_from(s).ok())
            else {
                continue;
            };
            if let Some(entry) = self.store.get::<Entry>(Tree::Audit, &seq)? {
                out.push(entry);
            }
        }
        Ok(out)
    }
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
#[derive(Debug)]
pub struct ChainVerifier {
    expected_prev: String,
    next: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier {
            expected_prev: GENESIS.to_string(),
            next: 1,
        }
    }
}

impl ChainVerifier {
    /// The seq of the last entry checked (0 before the first).
    pub fn checked(&self) -> u64 {
        self.next - 1
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
        self.expected_prev = entry.hash.clone();
        self.next += 1;
        Ok(())
    }
}

/// Check the whole chain in the store. Returns the number of entries, or
/// the first broken one.
pub fn verify(store: &Store) -> Result<u64, ChainError> {
    const PAGE: usize = 1024;
    let mut chain = ChainVerifier::default();
    loop {
        let raw = store.scan(Tree::Audit, b"", Some(&key(chain.checked())), PAGE, false)?;
        if raw.is_empty() {
            return Ok(chain.checked());
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
        assert_eq!(verify(&store), Ok(3));
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
            matches!(verify(&store), Err(ChainError::Broken { seq: 3, ref reason }) if reason.contains("edited"))
        );

        // Rewriting the entry's own hash just moves the break to the next one.
        third.hash = entry_hash(third.seq, third.at, &third.prev, &third.event);
        store.put(Tree::Audit, &key(3), &third).unwrap();
        assert!(
            matches!(verify(&store), Err(ChainError::Broken { seq: 4, ref reason }) if reason.contains("previous-hash"))
        );

        store.put(Tree::Audit, &key(3), &original).unwrap();
        assert_eq!(verify(&store), Ok(5));
        store
            .transact(&[Tree::Audit], |t| {
                Ok::<_, superapp_store::Abort<()>>(t.delete(Tree::Audit, &key(2))?)
            })
            .unwrap();
        assert!(
            matches!(verify(&store), Err(ChainError::Broken { seq: 2, ref reason }) if reason.contains("missing"))
        );
    }
}
