//! Backends for tests: one whose writes to chosen trees fail, to show
//! that an action and its records commit together or not at all, and whose
//! flushes fail, as on a full disk; and one that counts what reaches the
//! engine, to show what work a path spares it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::backend::{Backend, Entry, StoreError, Tree, Txn};
use crate::records::Store;
use crate::sled_backend::SledBackend;

/// A sled store in `dir` whose writes to the trees set with
/// [`FailingWrites::fail`] fail, inside and outside transactions.
pub struct FailingWrites {
    inner: SledBackend,
    failing: Mutex<Vec<Tree>>,
    flushes_fail: AtomicBool,
    removals_fail: AtomicBool,
}

impl FailingWrites {
    pub fn open(dir: &std::path::Path) -> Result<(Arc<Store>, Arc<FailingWrites>), StoreError> {
        let backend = Arc::new(FailingWrites {
            inner: SledBackend::open(dir)?,
            failing: Mutex::new(Vec::new()),
            flushes_fail: Default::default(),
            removals_fail: Default::default(),
        });
        Ok((Store::with_backend(backend.clone())?, backend))
    }

    /// Make writes to `trees` fail from now on (empty: none fail).
    pub fn fail(&self, trees: &[Tree]) {
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = trees.to_vec();
    }

    /// Make flushes fail from now on, as a full disk makes them.
    pub fn fail_flushes(&self) {
        self.flushes_fail.store(true, Ordering::SeqCst);
    }

    /// Make removals outside transactions fail (`true`) or not, while
    /// puts go through: a write that fails halfway.
    pub fn fail_removals(&self, fail: bool) {
        self.removals_fail.store(fail, Ordering::SeqCst);
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
        if self.removals_fail.load(Ordering::SeqCst) {
            return Err(StoreError::Backend(format!(
                "injected failure removing from {}",
                tree.name()
            )));
        }
        self.inner.remove(tree, key)
    }
    fn flush(&self) -> Result<(), StoreError> {
        if self.flushes_fail.load(Ordering::SeqCst) {
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

/// Another backend, with a count of the calls that reach it: reads (gets
/// and scans), writes outside transactions, transactions (each counted
/// once, however often the engine retries its body) and flushes.
pub struct Counted {
    inner: Arc<dyn Backend>,
    reads: AtomicU64,
    writes: AtomicU64,
    transactions: AtomicU64,
    flushes: AtomicU64,
    flush_delay: std::time::Duration,
}

/// What reached a [`Counted`] backend so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Calls {
    pub reads: u64,
    pub writes: u64,
    pub transactions: u64,
    pub flushes: u64,
}

impl Counted {
    pub fn new(inner: Arc<dyn Backend>) -> Arc<Counted> {
        Arc::new(Counted {
            inner,
            reads: Default::default(),
            writes: Default::default(),
            transactions: Default::default(),
            flushes: Default::default(),
            flush_delay: std::time::Duration::ZERO,
        })
    }

    /// The same, with every flush taking `delay` longer (so that
    /// concurrent writers pile up behind it). Before the store opens.
    pub fn with_slow_flushes(self: Arc<Counted>, delay: std::time::Duration) -> Arc<Counted> {
        let mut counted = Arc::into_inner(self).expect("not yet shared");
        counted.flush_delay = delay;
        Arc::new(counted)
    }

    pub fn calls(&self) -> Calls {
        let load = |n: &AtomicU64| n.load(Ordering::SeqCst);
        Calls {
            reads: load(&self.reads),
            writes: load(&self.writes),
            transactions: load(&self.transactions),
            flushes: load(&self.flushes),
        }
    }

    fn count(n: &AtomicU64) {
        n.fetch_add(1, Ordering::SeqCst);
    }
}

impl Backend for Counted {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Counted::count(&self.reads);
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
        Counted::count(&self.reads);
        self.inner.scan(tree, prefix, after, limit, reverse)
    }
    fn transact(
        &self,
        trees: &[Tree],
        body: &dyn Fn(&dyn Txn) -> Result<(), StoreError>,
    ) -> Result<bool, StoreError> {
        Counted::count(&self.transactions);
        self.inner.transact(trees, body)
    }
    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        Counted::count(&self.writes);
        self.inner.put(tree, key, value)
    }
    fn remove(&self, tree: Tree, key: &[u8]) -> Result<(), StoreError> {
        Counted::count(&self.writes);
        self.inner.remove(tree, key)
    }
    fn flush(&self) -> Result<(), StoreError> {
        Counted::count(&self.flushes);
        std::thread::sleep(self.flush_delay);
        self.inner.flush()
    }
    fn for_each(
        &self,
        tree: Tree,
        visit: &mut crate::backend::Visit<'_>,
    ) -> Result<(), StoreError> {
        Counted::count(&self.reads);
        self.inner.for_each(tree, visit)
    }
    fn shared(&self) -> bool {
        self.inner.shared()
    }
    fn commit_gather(&self) -> std::time::Duration {
        self.inner.commit_gather()
    }
}
