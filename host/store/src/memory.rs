//! An in-memory key-value backend: the provider's dev loop
//! (`superapp plugin run`) and tests use it.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Mutex;

use crate::kv::{
    check_write, parse_counter, usage_after, KvBackend, KvError, Namespace, Quota, Usage,
};

#[derive(Default)]
struct Space {
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
    usage: Option<Usage>,
}

impl Space {
    fn usage(&self) -> Usage {
        self.usage.unwrap_or(Usage { bytes: 0, keys: 0 })
    }

    fn put(&mut self, key: &[u8], new: Option<&[u8]>, quota: &Quota) -> Result<(), KvError> {
        let old = self.entries.get(key).map(Vec::as_slice);
        let usage = usage_after(
            self.usage(),
            key,
            old.map(<[u8]>::len),
            new.map(<[u8]>::len),
            quota,
        )?;
        match new {
            Some(v) => self.entries.insert(key.to_vec(), v.to_vec()),
            None => self.entries.remove(key),
        };
        self.usage = Some(usage);
        Ok(())
    }
}

/// All namespaces in one map behind one lock: simple, and every operation
/// is trivially atomic.
#[derive(Default)]
pub struct MemoryKv {
    spaces: Mutex<HashMap<Namespace, Space>>,
}

impl MemoryKv {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, ns: &Namespace, f: impl FnOnce(&mut Space) -> R) -> R {
        // A poisoned lock only means another thread panicked mid-call; every
        // mutation above is applied whole or not at all, so the data is intact.
        let mut spaces = self.spaces.lock().unwrap_or_else(|p| p.into_inner());
        f(spaces.entry(ns.clone()).or_default())
    }
}

impl KvBackend for MemoryKv {
    fn get(&self, ns: &Namespace, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.with(ns, |s| s.entries.get(key).cloned()))
    }

    fn set(&self, ns: &Namespace, key: &[u8], value: &[u8], quota: &Quota) -> Result<(), KvError> {
        check_write(key, Some(value), quota)?;
        self.with(ns, |s| s.put(key, Some(value), quota))
    }

    fn delete(&self, ns: &Namespace, key: &[u8]) -> Result<bool, KvError> {
        self.with(ns, |s| {
            let existed = s.entries.contains_key(key);
            s.put(key, None, &Quota::default())?;
            Ok(existed)
        })
    }

    fn list_keys(
        &self,
        ns: &Namespace,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, KvError> {
        Ok(self.with(ns, |s| {
            let start = match start_after {
                Some(after) if after >= prefix => Bound::Excluded(after.to_vec()),
                _ => Bound::Included(prefix.to_vec()),
            };
            s.entries
                .range((start, Bound::Unbounded))
                .map(|(k, _)| k)
                .take_while(|k| k.starts_with(prefix))
                .take(limit)
                .cloned()
                .collect()
        }))
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
        self.with(ns, |s| {
            if s.entries.get(key).map(Vec::as_slice) != expected {
                return Ok(false);
            }
            s.put(key, new, quota)?;
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
        self.with(ns, |s| {
            let current = parse_counter(s.entries.get(key).map(Vec::as_slice))?;
            let next = current
                .checked_add(delta)
                .ok_or_else(|| KvError::Invalid("counter would overflow".into()))?;
            s.put(key, Some(next.to_string().as_bytes()), quota)?;
            Ok(next)
        })
    }

    fn usage(&self, ns: &Namespace) -> Result<Usage, KvError> {
        Ok(self.with(ns, |s| s.usage()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::ENTRY_OVERHEAD;

    fn user(app: &str, user: &str) -> Namespace {
        Namespace::User {
            app: app.into(),
            user: user.into(),
        }
    }

    #[test]
    fn namespaces_are_isolated() {
        let kv = MemoryKv::new();
        let q = Quota::default();
        kv.set(&user("a", "u1"), b"k", b"1", &q).unwrap();
        assert_eq!(kv.get(&user("a", "u2"), b"k").unwrap(), None);
        assert_eq!(kv.get(&user("b", "u1"), b"k").unwrap(), None);
        assert_eq!(
            kv.get(&Namespace::App { app: "a".into() }, b"k").unwrap(),
            None
        );
        assert_eq!(kv.get(&user("a", "u1"), b"k").unwrap(), Some(b"1".to_vec()));
    }

    #[test]
    fn quota_refuses_and_writes_nothing() {
        let kv = MemoryKv::new();
        let q = Quota {
            total_bytes: ENTRY_OVERHEAD + 10,
            max_key_bytes: 4,
            max_value_bytes: 8,
        };
        let ns = user("a", "u");
        kv.set(&ns, b"k", b"12345", &q).unwrap(); // 6 bytes and the overhead
        assert!(matches!(
            kv.set(&ns, b"j", b"12345", &q),
            Err(KvError::QuotaExceeded(_))
        ));
        assert_eq!(kv.get(&ns, b"j").unwrap(), None);
        // Replacing a value with a smaller one is always allowed.
        kv.set(&ns, b"k", b"1", &q).unwrap();
        assert_eq!(
            kv.usage(&ns).unwrap(),
            Usage {
                bytes: 2 + ENTRY_OVERHEAD,
                keys: 1
            }
        );
        assert!(matches!(
            kv.set(&ns, b"k", b"123456789", &q),
            Err(KvError::QuotaExceeded(_))
        ));
        assert!(matches!(
            kv.set(&ns, b"toolong", b"1", &q),
            Err(KvError::Invalid(_))
        ));
        assert!(matches!(
            kv.set(&ns, b"", b"1", &q),
            Err(KvError::Invalid(_))
        ));
    }

    /// Entries count their bookkeeping too: many keys with empty values
    /// fill a quota as surely as a few large values.
    #[test]
    fn empty_values_still_count_against_the_quota() {
        let kv = MemoryKv::new();
        let q = Quota {
            total_bytes: 10 * (ENTRY_OVERHEAD + 2),
            ..Quota::default()
        };
        let ns = user("a", "u");
        for i in 0..10 {
            kv.set(&ns, format!("k{i}").as_bytes(), b"", &q).unwrap();
        }
        assert!(matches!(
            kv.set(&ns, b"k10", b"", &q),
            Err(KvError::QuotaExceeded(_))
        ));
        assert_eq!(kv.usage(&ns).unwrap().keys, 10);
    }

    #[test]
    fn list_cas_and_increment() {
        let kv = MemoryKv::new();
        let q = Quota::default();
        let ns = Namespace::App { app: "a".into() };
        for k in ["slot/1", "slot/2", "slot/3", "other"] {
            kv.set(&ns, k.as_bytes(), b"x", &q).unwrap();
        }
        let keys = kv.list_keys(&ns, b"slot/", Some(b"slot/1"), 10).unwrap();
        assert_eq!(keys, vec![b"slot/2".to_vec(), b"slot/3".to_vec()]);
        assert!(!kv
            .compare_and_swap(&ns, b"slot/1", None, Some(b"me"), &q)
            .unwrap());
        assert!(kv
            .compare_and_swap(&ns, b"slot/1", Some(b"x"), Some(b"me"), &q)
            .unwrap());
        assert_eq!(kv.increment(&ns, b"n", 5, &q).unwrap(), 5);
        assert_eq!(kv.increment(&ns, b"n", -2, &q).unwrap(), 3);
        assert!(matches!(
            kv.increment(&ns, b"slot/1", 1, &q),
            Err(KvError::Invalid(_))
        ));
    }
}
