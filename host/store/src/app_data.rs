//! The storage capabilities' key-value namespaces on the durable store.
//! One tree holds every namespace: data entries under `d`, and one usage
//! record per namespace under `u`, updated in the same transaction as the
//! data so the quota can never drift.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::kv::{
    check_write, parse_counter, usage_after, KvBackend, KvError, Namespace, Quota, Usage,
};
use crate::{txn_get, txn_put, Abort, Store, StoreError, Tree, Txn};

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

fn usage_key(ns: &Namespace) -> Vec<u8> {
    let mut k = vec![b'u'];
    k.extend(namespace_bytes(ns));
    k
}

#[derive(Serialize, Deserialize)]
struct StoredUsage {
    bytes: u64,
    keys: u64,
}

fn store_error(e: StoreError) -> KvError {
    KvError::Backend(e.to_string())
}

fn abort_error(e: Abort<KvError>) -> KvError {
    match e {
        Abort::User(e) => e,
        Abort::Store(e) => store_error(e),
    }
}

/// `KvBackend` on the durable store. Writes are durable once the store's
/// next flush is done; the caller of a mini-program event awaits it before
/// answering.
pub struct StoreKv {
    store: Arc<Store>,
}

impl StoreKv {
    pub fn new(store: Arc<Store>) -> StoreKv {
        StoreKv { store }
    }

    /// Replace the value at `key` (or delete it, `new == None`) with usage
    /// accounting, inside a transaction.
    fn put(
        txn: &dyn Txn,
        ns: &Namespace,
        key: &[u8],
        new: Option<&[u8]>,
        quota: &Quota,
    ) -> Result<(), Abort<KvError>> {
        let dk = data_key(ns, key);
        let uk = usage_key(ns);
        let old = txn.get(Tree::AppData, &dk)?;
        let usage = txn_get::<StoredUsage>(txn, Tree::AppData, &uk)?.map_or(
            Usage { bytes: 0, keys: 0 },
            |u| Usage {
                bytes: u.bytes,
                keys: u.keys,
            },
        );
        let next = usage_after(usage, key, old.as_deref(), new, quota).map_err(Abort::User)?;
        match new {
            Some(v) => txn.put(Tree::AppData, &dk, v)?,
            None => txn.delete(Tree::AppData, &dk)?,
        }
        txn_put(
            txn,
            Tree::AppData,
            &uk,
            &StoredUsage {
                bytes: next.bytes,
                keys: next.keys,
            },
        )?;
        Ok(())
    }
}

impl KvBackend for StoreKv {
    fn get(&self, ns: &Namespace, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        self.store
            .get_raw(Tree::AppData, &data_key(ns, key))
            .map_err(store_error)
    }

    fn set(&self, ns: &Namespace, key: &[u8], value: &[u8], quota: &Quota) -> Result<(), KvError> {
        check_write(key, Some(value), quota)?;
        self.store
            .transact(&[Tree::AppData], |txn| {
                StoreKv::put(txn, ns, key, Some(value), quota)
            })
            .map_err(abort_error)
    }

    fn delete(&self, ns: &Namespace, key: &[u8]) -> Result<bool, KvError> {
        self.store
            .transact(&[Tree::AppData], |txn| {
                let existed = txn.get(Tree::AppData, &data_key(ns, key))?.is_some();
                if existed {
                    StoreKv::put(txn, ns, key, None, &Quota::default())?;
                }
                Ok(existed)
            })
            .map_err(abort_error)
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
        self.store
            .transact(&[Tree::AppData], |txn| {
                let current = txn.get(Tree::AppData, &data_key(ns, key))?;
                if current.as_deref() != expected {
                    return Ok(false);
                }
                StoreKv::put(txn, ns, key, new, quota)?;
                Ok(true)
            })
            .map_err(abort_error)
    }

    fn increment(
        &self,
        ns: &Namespace,
        key: &[u8],
        delta: i64,
        quota: &Quota,
    ) -> Result<i64, KvError> {
        check_write(key, None, quota)?;
        self.store
            .transact(&[Tree::AppData], |txn| {
                let current = parse_counter(txn.get(Tree::AppData, &data_key(ns, key))?.as_deref())
                    .map_err(Abort::User)?;
                let next = current.checked_add(delta).ok_or_else(|| {
                    Abort::User(KvError::Invalid("counter would overflow".into()))
                })?;
                StoreKv::put(txn, ns, key, Some(next.to_string().as_bytes()), quota)?;
                Ok(next)
            })
            .map_err(abort_error)
    }

    fn usage(&self, ns: &Namespace) -> Result<Usage, KvError> {
        Ok(self
            .store
            .get::<StoredUsage>(Tree::AppData, &usage_key(ns))
            .map_err(store_error)?
            .map_or(Usage { bytes: 0, keys: 0 }, |u| Usage {
                bytes: u.bytes,
                keys: u.keys,
            }))
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
}
