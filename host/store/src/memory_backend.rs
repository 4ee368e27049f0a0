//! An engine in memory: the store's contract with nothing behind it, for
//! tests of what is built on the store and as the plainest reading of the
//! contract the disk and database engines are tested against.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::RwLock;

use crate::backend::{prefix_end, Backend, Entry, StoreError, Tree, Txn, Visit};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;
/// A transaction's writes: `None` removes the key.
type Writes = HashMap<(Tree, Vec<u8>), Option<Vec<u8>>>;

#[derive(Default)]
pub struct MemoryBackend {
    trees: RwLock<HashMap<Tree, Map>>,
}

impl MemoryBackend {
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }
}

/// Entries of `map` under `prefix` after `after`, in order, at most `limit`.
fn scan_map(
    map: Option<&Map>,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: usize,
    reverse: bool,
) -> Vec<Entry> {
    let Some(map) = map else {
        return Vec::new();
    };
    let in_range = |k: &[u8]| {
        k.starts_with(prefix)
            && match after {
                Some(a) if reverse => k < a,
                Some(a) => k > a,
                None => true,
            }
    };
    let upper = match prefix_end(prefix) {
        Some(end) => Bound::Excluded(end),
        None => Bound::Unbounded,
    };
    let range = map.range::<Vec<u8>, _>((Bound::Included(prefix.to_vec()), upper));
    let pick = |(k, v): (&Vec<u8>, &Vec<u8>)| in_range(k).then(|| (k.clone(), v.clone()));
    if reverse {
        range.rev().filter_map(pick).take(limit).collect()
    } else {
        range.filter_map(pick).take(limit).collect()
    }
}

impl Backend for MemoryBackend {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let trees = self.trees.read().unwrap_or_else(|p| p.into_inner());
        Ok(trees.get(&tree).and_then(|m| m.get(key)).cloned())
    }

    fn scan(
        &self,
        tree: Tree,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Entry>, StoreError> {
        let trees = self.trees.read().unwrap_or_else(|p| p.into_inner());
        Ok(scan_map(trees.get(&tree), prefix, after, limit, reverse))
    }

    fn transact(
        &self,
        names: &[Tree],
        body: &dyn Fn(&dyn Txn) -> Result<(), StoreError>,
    ) -> Result<bool, StoreError> {
        // One transaction at a time: serializable by construction.
        let mut trees = self.trees.write().unwrap_or_else(|p| p.into_inner());
        let txn = MemoryTxn {
            names,
            base: &trees,
            writes: RefCell::new(HashMap::new()),
        };
        if body(&txn).is_err() {
            return Ok(false);
        }
        let writes = txn.writes.into_inner();
        for ((tree, key), value) in writes {
            let map = trees.entry(tree).or_default();
            match value {
                Some(v) => map.insert(key, v),
                None => map.remove(&key),
            };
        }
        Ok(true)
    }

    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut trees = self.trees.write().unwrap_or_else(|p| p.into_inner());
        trees
            .entry(tree)
            .or_default()
            .insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn remove(&self, tree: Tree, key: &[u8]) -> Result<(), StoreError> {
        let mut trees = self.trees.write().unwrap_or_else(|p| p.into_inner());
        if let Some(map) = trees.get_mut(&tree) {
            map.remove(key);
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn for_each(&self, tree: Tree, visit: &mut Visit<'_>) -> Result<(), StoreError> {
        let entries = self.scan(tree, b"", None, usize::MAX, false)?;
        for (k, v) in &entries {
            visit(k, v)?;
        }
        Ok(())
    }

    /// Several `Store`s may be opened on one memory engine, as several
    /// host processes share one database: code on top takes the paths it
    /// would take on PostgreSQL, which tests can then run without one.
    fn shared(&self) -> bool {
        true
    }
}

/// A transaction: the trees as they were, and its own writes on top.
struct MemoryTxn<'a> {
    names: &'a [Tree],
    base: &'a HashMap<Tree, Map>,
    writes: RefCell<Writes>,
}

impl MemoryTxn<'_> {
    fn check(&self, tree: Tree) -> Result<(), StoreError> {
        if self.names.contains(&tree) {
            Ok(())
        } else {
            Err(StoreError::Backend(format!(
                "tree `{}` is not part of this transaction",
                tree.name()
            )))
        }
    }

    fn write(&self, tree: Tree, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        self.check(tree)?;
        self.writes
            .borrow_mut()
            .insert((tree, key.to_vec()), value.map(<[u8]>::to_vec));
        Ok(())
    }
}

impl Txn for MemoryTxn<'_> {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.check(tree)?;
        if let Some(written) = self.writes.borrow().get(&(tree, key.to_vec())) {
            return Ok(written.clone());
        }
        Ok(self.base.get(&tree).and_then(|m| m.get(key)).cloned())
    }

    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.write(tree, key, Some(value))
    }

    fn delete(&self, tree: Tree, key: &[u8]) -> Result<(), StoreError> {
        self.write(tree, key, None)
    }

    fn scan(
        &self,
        tree: Tree,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Entry>, StoreError> {
        self.check(tree)?;
        // The tree as this transaction sees it: what was there, with its
        // own writes under the prefix laid over.
        let mut view: Map = scan_map(self.base.get(&tree), prefix, after, usize::MAX, reverse)
            .into_iter()
            .collect();
        let past = |k: &[u8]| match after {
            Some(a) if reverse => k >= a,
            Some(a) => k <= a,
            None => false,
        };
        for ((t, k), v) in self.writes.borrow().iter() {
            if *t != tree || !k.starts_with(prefix) || past(k) {
                continue;
            }
            match v {
                Some(v) => view.insert(k.clone(), v.clone()),
                None => view.remove(k),
            };
        }
        Ok(if reverse {
            view.into_iter().rev().take(limit).collect()
        } else {
            view.into_iter().take(limit).collect()
        })
    }
}
