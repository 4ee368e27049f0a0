//! The storage capabilities' key-value namespaces on the durable store.
//! One tree holds every namespace's entries, each under the namespace's
//! prefix. A write is one single-key write, no transaction: sled seals its
//! log on every transaction, which cost an extra disk write per event.
//!
//! On a store this process owns (sled), a namespace's usage (bytes and
//! keys, for its quota) is not stored: it is counted from the namespace's
//! entries the first time the namespace is used after start, then kept in
//! memory and updated under the namespace's lock with every write. So it
//! can never drift from the data, whatever a crash cut short, and the quota
//! check and the write are one step for every writer of the namespace.
//!
//! On a store several host processes share (PostgreSQL), no process's
//! memory can order the writers: each write is a transaction that reads and
//! updates the namespace's usage record beside its entries, so the
//! database serializes writers of one namespace on every node, and a
//! compare-and-swap or a quota check is decided by the database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::kv::{
    check_write, entry_bytes, parse_counter, usage_after, KvBackend, KvError, Namespace, Quota,
    Usage,
};
use crate::{Abort, Store, StoreError, Tree, Txn};

/// Namespaces whose usage is kept in memory; past this many, those no
/// writer holds are forgotten (and counted again when next used).
const MAX_COUNTED: usize = 65_536;

/// Length-prefixed namespace encoding: no app id or user id, however
/// crafted, can produce another namespace's prefix.
fn namespace_bytes(ns: &Namespace) -> Vec<u8> {
    let mut out = Vec::new();
    let mut part = |tag: u8, s: &str| {
        out.push(tag);
        out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    match ns {
        Namespace::User { app, user } => {
            part(b'a', app);
            part(b'u', user);
        }
        Namespace::App { app } => part(b's', app),
    }
    out
}

fn data_prefix(ns: &Namespace) -> Vec<u8> {
    let mut k = vec![b'd'];
    k.extend(namespace_bytes(ns));
    k
}

fn data_key(ns: &Namespace, key: &[u8]) -> Vec<u8> {
    let mut k = data_prefix(ns);
    k.extend_from_slice(key);
    k
}

/// Where a shared store keeps a namespace's usage. The records under
/// `q` counted only keys and values; those under `Q` count each entry's
/// overhead too ([`crate::ENTRY_OVERHEAD`]), so a store written before is
/// counted anew from its entries at first use rather than trusted.
fn usage_key(ns: &Namespace) -> Vec<u8> {
    let mut k = vec![b'Q'];
    k.extend(namespace_bytes(ns));
    k
}

fn encode_usage(u: Usage) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&u.bytes.to_be_bytes());
    out[8..].copy_from_slice(&u.keys.to_be_bytes());
    out
}

fn decode_usage(bytes: &[u8]) -> Result<Usage, StoreError> {
    let corrupt = || StoreError::Corrupt("a namespace's usage record is not 16 bytes".into());
    let bytes: [u8; 16] = bytes.try_into().map_err(|_| corrupt())?;
    let (b, k) = bytes.split_at(8);
    Ok(Usage {
        bytes: u64::from_be_bytes(b.try_into().map_err(|_| corrupt())?),
        keys: u64::from_be_bytes(k.try_into().map_err(|_| corrupt())?),
    })
}

/// A namespace's usage, from its entries.
fn count(entries: &[(Vec<u8>, Vec<u8>)], prefix: &[u8]) -> Usage {
    entries
        .iter()
        .fold(Usage { bytes: 0, keys: 0 }, |u, (k, v)| Usage {
            bytes: u.bytes + entry_bytes(&k[prefix.len()..], v),
            keys: u.keys + 1,
        })
}

/// What a write goes through: the store itself (single-key writes, on a
/// store this process owns) or a transaction (on a shared one).
enum Writer<'a> {
    Store(&'a Store),
    Txn(&'a dyn Txn),
}

impl Writer<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Writer::Store(s) => s.get_raw(Tree::AppData, key),
            Writer::Txn(t) => t.get(Tree::AppData, key),
        }
    }

    fn set(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        match (self, value) {
            (Writer::Store(s), Some(v)) => s.put_raw(Tree::AppData, key, v),
            (Writer::Store(s), None) => s.remove(Tree::AppData, key),
            (Writer::Txn(t), Some(v)) => t.put(Tree::AppData, key, v),
            (Writer::Txn(t), None) => t.delete(Tree::AppData, key),
        }
    }
}

fn store_error(e: StoreError) -> KvError {
    KvError::Backend(e.to_string())
}

/// A namespace's usage once counted; its mutex is the namespace's lock.
type Counted = Arc<Mutex<Option<Usage>>>;

/// `KvBackend` on the durable store. Writes are durable once the store's
/// next flush is done; the caller of a mini-program event awaits it before
/// answering.
pub struct StoreKv {
    store: Arc<Store>,
    usages: Mutex<HashMap<Vec<u8>, Counted>>,
}

impl StoreKv {
    pub fn new(store: Arc<Store>) -> StoreKv {
        StoreKv {
            store,
            usages: Mutex::new(HashMap::new()),
        }
    }

    /// Run `write` as the one writer of `ns`, with its usage to update:
    /// under the namespace's lock (usage counted first if need be) on a
    /// store this process owns, in a transaction on a shared one (where it
    /// may run more than once). A store error forgets the usage, so it is
    /// counted again from what is really there.
    fn locked<R>(
        &self,
        ns: &Namespace,
        write: impl Fn(&Writer, &mut Usage) -> Result<R, KvError>,
    ) -> Result<R, KvError> {
        if self.store.shared() {
            return self.transacted(ns, write);
        }
        let prefix = data_prefix(ns);
        let slot = {
            let mut usages = self.usages.lock().unwrap_or_else(|p| p.into_inner());
            if usages.len() >= MAX_COUNTED && !usages.contains_key(&prefix) {
                usages.retain(|_, counted| Arc::strong_count(counted) > 1);
            }
            usages.entry(prefix.clone()).or_default().clone()
        };
        let mut counted = slot.lock().unwrap_or_else(|p| p.into_inner());
        let before = match *counted {
            Some(usage) => usage,
            None => {
                let entries = self
                    .store
                    .scan(Tree::AppData, &prefix, None, usize::MAX, false)
                    .map_err(store_error)?;
                count(&entries, &prefix)
            }
        };
        let mut usage = before;
        let result = write(&Writer::Store(&self.store), &mut usage);
        *counted = match &result {
            Ok(_) => Some(usage),
            Err(KvError::Backend(_)) => None,
            Err(_) => Some(before),
        };
        result
    }

    /// [`StoreKv::locked`] on a shared store: the usage record and the
    /// entries change in one transaction, or not at all.
    fn transacted<R>(
        &self,
        ns: &Namespace,
        write: impl Fn(&Writer, &mut Usage) -> Result<R, KvError>,
    ) -> Result<R, KvError> {
        let prefix = data_prefix(ns);
        let key = usage_key(ns);
        self.store
            .transact(&[Tree::AppData], |txn| {
                let stored = txn.get(Tree::AppData, &key)?;
                let before = match &stored {
                    Some(bytes) => decode_usage(bytes)?,
                    // Entries written before the record (a restored backup).
                    None => count(
                        &txn.scan(Tree::AppData, &prefix, None, usize::MAX, false)?,
                        &prefix,
                    ),
                };
                let mut usage = before;
                let result = write(&Writer::Txn(txn), &mut usage).map_err(Abort::User)?;
                if stored.is_none() || usage != before {
                    txn.put(Tree::AppData, &key, &encode_usage(usage))?;
                }
                Ok(result)
            })
            .map_err(|abort| match abort {
                Abort::User(e) => e,
                Abort::Store(e) => store_error(e),
            })
    }

    /// Replace the value at `key` (or remove it, `new == None`) within the
    /// quota, updating `usage`.
    fn replace(
        w: &Writer,
        usage: &mut Usage,
        ns: &Namespace,
        key: &[u8],
        old: Option<&[u8]>,
        new: Option<&[u8]>,
        quota: &Quota,
    ) -> Result<(), KvError> {
        let next = usage_after(*usage, key, old, new, quota)?;
        w.set(&data_key(ns, key), new).map_err(store_error)?;
        *usage = next;
        Ok(())
    }

    fn current(w: &Writer, ns: &Namespace, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        w.get(&data_key(ns, key)).map_err(store_error)
    }
}

impl KvBackend for StoreKv {
    fn get(&self, ns: &Namespace, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        StoreKv::current(&Writer::Store(&self.store), ns, key)
    }

    fn set(&self, ns: &Namespace, key: &[u8], value: &[u8], quota: &Quota) -> Result<(), KvError> {
        check_write(key, Some(value), quota)?;
        self.locked(ns, |w, usage| {
            let old = StoreKv::current(w, ns, key)?;
            StoreKv::replace(w, usage, ns, key, old.as_deref(), Some(value), quota)
        })
    }

    fn delete(&self, ns: &Namespace, key: &[u8]) -> Result<bool, KvError> {
        self.locked(ns, |w, usage| {
            let Some(old) = StoreKv::current(w, ns, key)? else {
                return Ok(false);
            };
            StoreKv::replace(w, usage, ns, key, Some(&old), None, &Quota::default())?;
            Ok(true)
        })
    }

    fn list_keys(
        &self,
        ns: &Namespace,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, KvError> {
        let base = data_prefix(ns);
        let full_prefix = data_key(ns, prefix);
        let after = start_after.map(|a| data_key(ns, a));
        let entries = self
            .store
            .scan(Tree::AppData, &full_prefix, after.as_deref(), limit, false)
            .map_err(store_error)?;
        Ok(entries
            .into_iter()
            .map(|(k, _)| k[base.len()..].to_vec())
            .collect())
    }

    fn compare_and_swap(
        &self,
        ns: &Namespace,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        quota: &Quota,
    ) -> Result<bool, KvError> {
        check_write(key, new, quota)?;
        self.locked(ns, |w, usage| {
            let current = StoreKv::current(w, ns, key)?;
            if current.as_deref() != expected {
                return Ok(false);
            }
            StoreKv::replace(w, usage, ns, key, current.as_deref(), new, quota)?;
            Ok(true)
        })
    }

    fn increment(
        &self,
        ns: &Namespace,
        key: &[u8],
        delta: i64,
        quota: &Quota,
    ) -> Result<i64, KvError> {
        check_write(key, None, quota)?;
        self.locked(ns, |w, usage| {
            let current = StoreKv::current(w, ns, key)?;
            let next = parse_counter(current.as_deref())?
                .checked_add(delta)
                .ok_or_else(|| KvError::Invalid("counter would overflow".into()))?;
            let text = next.to_string();
            StoreKv::replace(
                w,
                usage,
                ns,
                key,
                current.as_deref(),
                Some(text.as_bytes()),
                quota,
            )?;
            Ok(next)
        })
    }

    fn usage(&self, ns: &Namespace) -> Result<Usage, KvError> {
        self.locked(ns, |_, usage| Ok(*usage))
    }
}

// The namespaces' contract (isolation, quotas, compare-and-swap, concurrent
// writers, usage after a restart) is tested once per engine in
// tests/contract.rs.

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryBackend, ENTRY_OVERHEAD};

    /// A shared store written before entries counted their overhead holds
    /// usage records under the old key: they are not trusted, the usage is
    /// counted anew from the entries, and deleting what was there never
    /// wraps the count around.
    #[test]
    fn usage_recorded_before_the_entry_overhead_is_counted_anew() {
        let store = Store::with_backend(Arc::new(MemoryBackend::new())).unwrap();
        assert!(store.shared());
        let ns = Namespace::User {
            app: "a".into(),
            user: "u".into(),
        };
        // Two entries and the old record of them: 2 × (1 + 3) bytes.
        for key in [b"k", b"j"] {
            store
                .put_raw(Tree::AppData, &data_key(&ns, key), b"abc")
                .unwrap();
        }
        let mut old = vec![b'q'];
        old.extend(namespace_bytes(&ns));
        let record = encode_usage(Usage { bytes: 8, keys: 2 });
        store.put_raw(Tree::AppData, &old, &record).unwrap();

        let kv = StoreKv::new(store);
        let counted = Usage {
            bytes: 2 * (4 + ENTRY_OVERHEAD),
            keys: 2,
        };
        assert_eq!(kv.usage(&ns).unwrap(), counted);
        assert!(kv.delete(&ns, b"k").unwrap());
        assert!(kv.delete(&ns, b"j").unwrap());
        assert_eq!(kv.usage(&ns).unwrap(), Usage { bytes: 0, keys: 0 });
        kv.set(&ns, b"n", b"new", &Quota::default()).unwrap();
        assert_eq!(kv.usage(&ns).unwrap().bytes, 4 + ENTRY_OVERHEAD);
    }
}
