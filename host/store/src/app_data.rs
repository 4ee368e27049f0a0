//! The storage capabilities' key-value namespaces on the durable store.
//! One tree holds every namespace's entries, each under the namespace's
//! prefix. A write is one single-key write, no transaction: sled seals its
//! log on every transaction, which cost an extra disk write per event.
//!
//! A namespace's usage (bytes and keys, for its quota) is not stored: it is
//! counted from the namespace's entries the first time the namespace is
//! used after start, then kept in memory and updated under the namespace's
//! lock with every write. So it can never drift from the data, whatever a
//! crash cut short, and the quota check and the write are one step for
//! every writer of the namespace (the store belongs to one process).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::kv::{
    check_write, parse_counter, usage_after, KvBackend, KvError, Namespace, Quota, Usage,
};
use crate::{Store, StoreError, Tree};

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

    /// Run `write` holding `ns`'s lock, with its usage (counted first if
    /// need be) to update. A store error forgets the usage, so it is
    /// counted again from what is really there.
    fn locked<R>(
        &self,
        ns: &Namespace,
        write: impl FnOnce(&Store, &mut Usage) -> Result<R, KvError>,
    ) -> Result<R, KvError> {
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
            None => self.count(&prefix)?,
        };
        let mut usage = before;
        let result = write(&self.store, &mut usage);
        *counted = match &result {
            Ok(_) => Some(usage),
            Err(KvError::Backend(_)) => None,
            Err(_) => Some(before),
        };
        result
    }

    /// A namespace's usage, from its entries.
    fn count(&self, prefix: &[u8]) -> Result<Usage, KvError> {
        let entries = self
            .store
            .scan(Tree::AppData, prefix, None, usize::MAX, false)
            .map_err(store_error)?;
        Ok(entries
            .iter()
            .fold(Usage { bytes: 0, keys: 0 }, |u, (k, v)| Usage {
                bytes: u.bytes + (k.len() - prefix.len() + v.len()) as u64,
                keys: u.keys + 1,
            }))
    }

    /// Replace the value at `key` (or remove it, `new == None`) within the
    /// quota, updating `usage`.
    fn replace(
        store: &Store,
        usage: &mut Usage,
        ns: &Namespace,
        key: &[u8],
        old: Option<&[u8]>,
        new: Option<&[u8]>,
        quota: &Quota,
    ) -> Result<(), KvError> {
        let next = usage_after(*usage, key, old, new, quota)?;
        let dk = data_key(ns, key);
        match new {
            Some(v) => store.put_raw(Tree::AppData, &dk, v),
            None => store.remove(Tree::AppData, &dk),
        }
        .map_err(store_error)?;
        *usage = next;
        Ok(())
    }

    fn current(store: &Store, ns: &Namespace, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        store
            .get_raw(Tree::AppData, &data_key(ns, key))
            .map_err(store_error)
    }
}

impl KvBackend for StoreKv {
    fn get(&self, ns: &Namespace, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        StoreKv::current(&self.store, ns, key)
    }

    fn set(&self, ns: &Namespace, key: &[u8], value: &[u8], quota: &Quota) -> Result<(), KvError> {
        check_write(key, Some(value), quota)?;
        self.locked(ns, |store, usage| {
            let old = StoreKv::current(store, ns, key)?;
            StoreKv::replace(store, usage, ns, key, old.as_deref(), Some(value), quota)
        })
    }

    fn delete(&self, ns: &Namespace, key: &[u8]) -> Result<bool, KvError> {
        self.locked(ns, |store, usage| {
            let Some(old) = StoreKv::current(store, ns, key)? else {
                return Ok(false);
            };
            StoreKv::replace(store, usage, ns, key, Some(&old), None, &Quota::default())?;
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
        self.locked(ns, |store, usage| {
            let current = StoreKv::current(store, ns, key)?;
            if current.as_deref() != expected {
                return Ok(false);
            }
            StoreKv::replace(store, usage, ns, key, current.as_deref(), new, quota)?;
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
        self.locked(ns, |store, usage| {
            let current = StoreKv::current(store, ns, key)?;
            let next = parse_counter(current.as_deref())?
                .checked_add(delta)
                .ok_or_else(|| KvError::Invalid("counter would overflow".into()))?;
            let text = next.to_string();
            StoreKv::replace(
                store,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_cannot_collide_and_quota_holds() {
        let dir = tempfile::tempdir().unwrap();
        let kv = StoreKv::new(Store::open(dir.path()).unwrap());
        let q = Quota {
            total_bytes: 20,
            max_key_bytes: 8,
            max_value_bytes: 16,
        };
        // "ab" + user "c" vs "a" + user "bc": different namespaces.
        let one = Namespace::User {
            app: "ab".into(),
            user: "c".into(),
        };
        let two = Namespace::User {
            app: "a".into(),
            user: "bc".into(),
        };
        kv.set(&one, b"k", b"1", &q).unwrap();
        assert_eq!(kv.get(&two, b"k").unwrap(), None);
        assert_eq!(
            kv.list_keys(&two, b"", None, 10).unwrap(),
            Vec::<Vec<u8>>::new()
        );
        assert!(matches!(
            kv.set(&one, b"big", &[0; 17], &q),
            Err(KvError::QuotaExceeded(_))
        ));
        kv.set(&one, b"k2", &[0; 10], &q).unwrap();
        assert!(matches!(
            kv.set(&one, b"k3", &[0; 10], &q),
            Err(KvError::QuotaExceeded(_))
        ));
        assert_eq!(kv.get(&one, b"k3").unwrap(), None);
        assert_eq!(
            kv.usage(&one).unwrap(),
            Usage {
                bytes: 2 + 12,
                keys: 2
            }
        );
        assert!(kv.delete(&one, b"k2").unwrap());
        assert_eq!(kv.usage(&one).unwrap(), Usage { bytes: 2, keys: 1 });
        let shared = Namespace::App { app: "ab".into() };
        assert!(kv
            .compare_and_swap(&shared, b"slot", None, Some(b"me"), &q)
            .unwrap());
        assert!(!kv
            .compare_and_swap(&shared, b"slot", None, Some(b"you"), &q)
            .unwrap());
        assert_eq!(kv.increment(&shared, b"n", 3, &q).unwrap(), 3);
        assert_eq!(
            kv.list_keys(&shared, b"", None, 10).unwrap(),
            vec![b"n".to_vec(), b"slot".to_vec()]
        );
        assert_eq!(
            kv.list_keys(&shared, b"", Some(b"n"), 10).unwrap(),
            vec![b"slot".to_vec()]
        );
    }

    /// Concurrent writers of one namespace cannot overrun its quota
    /// together, and the usage a new process counts from the data is the
    /// usage the writes left.
    #[test]
    fn concurrent_writers_share_one_quota_and_usage_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let q = Quota {
            total_bytes: 100,
            max_key_bytes: 8,
            max_value_bytes: 16,
        };
        let ns = Namespace::User {
            app: "app".into(),
            user: "u".into(),
        };
        {
            let kv = Arc::new(StoreKv::new(Store::open(dir.path()).unwrap()));
            let written: usize = std::thread::scope(|s| {
                let handles: Vec<_> = (0..20)
                    .map(|i| {
                        let (kv, ns, q) = (kv.clone(), ns.clone(), q);
                        // Each entry is 2 key bytes + 8 value bytes.
                        s.spawn(move || {
                            kv.set(&ns, format!("{i:02}").as_bytes(), &[7; 8], &q)
                                .is_ok()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| usize::from(h.join().unwrap()))
                    .sum()
            });
            assert_eq!(written, 10, "exactly the quota's worth of writes succeed");
            assert_eq!(
                kv.usage(&ns).unwrap(),
                Usage {
                    bytes: 100,
                    keys: 10
                }
            );
            let first = kv.list_keys(&ns, b"", None, 1).unwrap().remove(0);
            assert!(kv.delete(&ns, &first).unwrap());
        }
        let kv = StoreKv::new(Store::open(dir.path()).unwrap());
        assert_eq!(kv.usage(&ns).unwrap(), Usage { bytes: 90, keys: 9 });
        kv.set(&ns, b"zz", &[1; 8], &q).unwrap();
        assert!(matches!(
            kv.set(&ns, b"yy", &[1; 8], &q),
            Err(KvError::QuotaExceeded(_))
        ));
    }
}
