//! Fault injection for tests: a backend whose writes to chosen trees fail,
//! to show that an action and its records commit together or not at all,
//! and whose flushes fail, as on a full disk.

use std::sync::{Arc, Mutex};

use crate::backend::{Backend, Entry, StoreError, Tree, Txn};
use crate::records::Store;
use crate::sled_backend::SledBackend;

/// A sled store in `dir` whose writes to the trees set with
/// [`FailingWrites::fail`] fail, inside and outside transactions.
pub struct FailingWrites {
    inner: SledBackend,
    failing: Mutex<Vec<Tree>>,
    flushes_fail: std::sync::atomic::AtomicBool,
}

impl FailingWrites {
    pub fn open(dir: &std::path::Path) -> Result<(Arc<Store>, Arc<FailingWrites>), StoreError> {
        let backend = Arc::new(FailingWrites {
            inner: SledBackend::open(dir)?,
            failing: Mutex::new(Vec::new()),
            flushes_fail: Default::default(),
        });
        Ok((Store::with_backend(backend.clone())?, backend))
    }

    /// Make writes to `trees` fail from now on (empty: none fail).
    pub fn fail(&self, trees: &[Tree]) {
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = trees.to_vec();
    }

    /// Make flushes fail from now on, as a full disk makes them.
    pub fn fail_flushes(&self) {
        self.flushes_fail
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn check(&self, tree: Tree) -> Result<(), StoreError> {
        if self
            .failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&tree)
        {
            return Err(StoreError::Backend(format!(
                "injected failure writing to {}",
                tree.name()
            )));
        }
        Ok(())
    }
}

struct FailingTxn<'a> {
    inner: &'a dyn Txn,
    backend: &'a FailingWrites,
}

impl Txn for FailingTxn<'_> {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(tree, key)
    }
    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.backend.check(tree)?;
        self.inner.put(tree, key, value)
    }
    fn delete(&self, tree: Tree, key: &[u8]) -> Result<(), StoreError> {
        self.backend.check(tree)?;
        self.inner.delete(tree, key)
    }
}

impl Backend for FailingWrites {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(tree, key)
    }
    fn scan(
        &self,
        tree: Tree,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Entry>, StoreError> {
        self.inner.scan(tree, prefix, after, limit, reverse)
    }
    fn transact(
        &self,
        trees: &[Tree],
        body: &dyn Fn(&dyn Txn) -> Result<(), StoreError>,
    ) -> Result<bool, StoreError> {
        self.inner.transact(trees, &|txn| {
            body(&FailingTxn {
                inner: txn,
                backend: self,
            })
        })
    }
    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.check(tree)?;
        self.inner.put(tree, key, value)
    }
    fn remove(&self, tree: Tree, key: &[u8]) -> Result<(), StoreError> {
        self.check(tree)?;
        self.inner.remove(tree, key)
    }
    fn flush(&self) -> Result<(), StoreError> {
        if self.flushes_fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "disk I/O failed: no space left on device (injected)".into(),
            ));
        }
        self.inner.flush()
    }
    fn for_each(
        &self,
        tree: Tree,
        visit: &mut crate::backend::Visit<'_>,
    ) -> Result<(), StoreError> {
        self.inner.for_each(tree, visit)
    }

    fn shared(&self) -> bool {
        self.inner.shared()
    }
}
