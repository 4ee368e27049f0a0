//! The durable store: record trees behind the `Backend` trait, typed
//! transactions, and group commit so every acknowledged write is on disk
//! without costing one fsync per write.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::backend::{Abort, Backend, Entry, StoreError, Tree, Txn};
use crate::memory_backend::MemoryBackend;
use crate::postgres_backend::PostgresBackend;
use crate::sled_backend::SledBackend;

/// The on-disk format this host writes. Opening a newer one is refused,
/// and opening an older one upgrades it, so that a host of the earlier
/// version refuses it from then on (its own check of this number).
///
/// 1. The first.
/// 2. The registry remembers removed keys and which publishers `serve
///    --apps` registered, and a session is valid only under its user's
///    current generation. A host of format 1 would ignore all three and
///    bring back what was revoked (a removed key added again, a session
///    ended by a password change answering again).
/// 3. App data values longer than 4 KiB are kept in chunks, and every
///    entry says how its value is kept (`app_data`). A host of format 2
///    would find none of the apps' data.
pub const FORMAT_VERSION: u32 = 3;
pub(crate) const FORMAT_KEY: &[u8] = b"format-version";

fn decode_format(v: &[u8]) -> Result<u32, StoreError> {
    <[u8; 4]>::try_from(v)
        .map(u32::from_be_bytes)
        .map_err(|_| StoreError::Corrupt("format-version is not 4 bytes".into()))
}

/// A request to be told when everything written before it is on disk.
struct Waiter {
    /// Runs after the flush, in the order waiters registered: used to
    /// publish events in the order their writes were made.
    after: Option<Box<dyn FnOnce() + Send>>,
    done: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
}

/// The store: typed access over a `Backend` plus group commit.
pub struct Store {
    pub(crate) backend: Arc<dyn Backend>,
    /// Writes hold it shared; a snapshot holds it alone, so a backup sees
    /// every tree at one instant.
    pub(crate) gate: std::sync::RwLock<()>,
    commits: Mutex<Option<mpsc::Sender<Waiter>>>,
    flusher: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// How long each group-commit flush took, for `/metrics`.
    flush_seconds: Histogram,
    progress: Arc<Progress>,
    /// Set for good when a flush fails (see [`Store::failure`]).
    failed: Arc<Failure>,
}

/// Why the store stopped taking writes: a flush that failed (a full disk,
/// an I/O error). What it had taken in memory may not be on disk, and an
/// embedded engine cannot tell what is, so the store takes no more writes
/// and the process must open it again (restart) to go on from what is on
/// disk, as PostgreSQL stops after a failed `fsync`.
#[derive(Default)]
struct Failure {
    set: std::sync::atomic::AtomicBool,
    why: tokio::sync::watch::Sender<Option<String>>,
}

impl Failure {
    fn record(&self, why: &StoreError) {
        let first = self.why.send_if_modified(|w| {
            let first = w.is_none();
            if first {
                *w = Some(why.to_string());
            }
            first
        });
        self.set.store(true, Ordering::SeqCst);
        if first {
            tracing::error!(error = %why, "the store could not flush its writes to disk: it takes no more, and the host must restart to go on from what is on disk");
        }
    }

    fn check(&self) -> Result<(), StoreError> {
        if !self.set.load(Ordering::Relaxed) {
            return Ok(());
        }
        let why = self.why.borrow().clone().unwrap_or_default();
        Err(StoreError::Unavailable(format!(
            "the store stopped taking writes after a failed flush ({why})"
        )))
    }
}

/// Writes made and writes known durable, as counts: when every write made
/// so far is durable, a caller waiting for durability has nothing to wait
/// for (a request that only read).
#[derive(Default)]
struct Progress {
    /// Bumped after every write call (whether or not it wrote anything).
    written: AtomicU64,
    /// `written` as it was when the last successful flush started.
    durable: AtomicU64,
}

impl Store {
    /// Open (or create) the sled store in `dir` and check its format.
    pub fn open(dir: &std::path::Path) -> Result<Arc<Store>, StoreError> {
        Store::open_with_cache(dir, crate::DEFAULT_CACHE_BYTES)
    }

    /// [`Store::open`] with a page cache of about `cache_bytes`.
    pub fn open_with_cache(
        dir: &std::path::Path,
        cache_bytes: u64,
    ) -> Result<Arc<Store>, StoreError> {
        let backend = Arc::new(SledBackend::open_with(dir, cache_bytes)?);
        Store::with_backend(backend)
    }

    /// Connect to the PostgreSQL database at `url` (several host processes
    /// may share it), keeping up to `pool_size` connections.
    pub fn connect(url: &str, pool_size: usize) -> Result<Arc<Store>, StoreError> {
        Store::with_backend(Arc::new(PostgresBackend::connect(url, pool_size)?))
    }

    /// An empty store in memory (tests, tools that need no disk).
    pub fn in_memory() -> Result<Arc<Store>, StoreError> {
        Store::with_backend(Arc::new(MemoryBackend::new()))
    }

    pub fn with_backend(backend: Arc<dyn Backend>) -> Result<Arc<Store>, StoreError> {
        let mut older = None;
        match backend.get(Tree::Meta, FORMAT_KEY)? {
            None => {
                backend.transact(&[Tree::Meta], &|t| {
                    t.put(Tree::Meta, FORMAT_KEY, &FORMAT_VERSION.to_be_bytes())
                })?;
                backend.flush()?;
            }
            Some(v) => {
                let found = decode_format(&v)?;
                if found > FORMAT_VERSION {
                    return Err(StoreError::NewerFormat {
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
                if found < FORMAT_VERSION {
                    older = Some(found);
                }
            }
        }
        let (tx, rx) = mpsc::channel::<Waiter>();
        let flusher_backend = backend.clone();
        let progress = Arc::new(Progress::default());
        let flusher_progress = progress.clone();
        let failed = Arc::new(Failure::default());
        let flusher_failed = failed.clone();
        // 100 µs to about 1.6 s.
        let flush_seconds = Histogram::new(exponential_buckets(1e-4, 4.0, 8));
        let timings = flush_seconds.clone();
        let flusher = std::thread::Builder::new()
            .name("superapp-group-commit".into())
            .spawn(move || {
                group_commit(
                    flusher_backend,
                    rx,
                    timings,
                    &flusher_progress,
                    &flusher_failed,
                )
            })
            .map_err(|e| StoreError::Backend(format!("cannot start the flusher: {e}")))?;
        let store = Arc::new(Store {
            backend,
            gate: std::sync::RwLock::new(()),
            commits: Mutex::new(Some(tx)),
            flusher: Mutex::new(Some(flusher)),
            flush_seconds,
            progress,
            failed,
        });
        if let Some(found) = older {
            store.upgrade(found)?;
        }
        if !store.shared() {
            // A process stopped in the middle of writing a long app data
            // value left chunks no entry names; failing to remove them
            // leaves only that garbage.
            match crate::app_data::finish_interrupted_writes(&store) {
                Ok(0) => {}
                Ok(n) => tracing::info!(writes = n, "finished app data writes a stop cut short"),
                Err(e) => tracing::warn!(
                    error = %e,
                    "cannot finish the app data writes a stop cut short; their chunks stay as garbage"
                ),
            }
        }
        Ok(store)
    }

    /// Bring a store of format `found` to this host's, then record that it
    /// is: until then, a host of the earlier format would still open it.
    pub(crate) fn upgrade(&self, found: u32) -> Result<(), StoreError> {
        // Format 2 kept app data values whole.
        let moved = crate::app_data::move_whole_values(self)?;
        // What else the earlier versions did not record, the services find
        // where it is kept (the registry in the audit log) as they open.
        self.backend.transact(&[Tree::Meta], &|t| {
            t.put(Tree::Meta, FORMAT_KEY, &FORMAT_VERSION.to_be_bytes())
        })?;
        self.backend.flush()?;
        tracing::info!(
            from = found,
            to = FORMAT_VERSION,
            app_data_values_moved = moved,
            "upgraded the store's format: hosts of earlier versions refuse it now"
        );
        Ok(())
    }

    /// The format version the store records.
    pub(crate) fn recorded_format(&self) -> Result<Option<u32>, StoreError> {
        self.backend
            .get(Tree::Meta, FORMAT_KEY)?
            .map(|v| decode_format(&v))
            .transpose()
    }

    /// Group-commit flush latency (a shared handle: register it once).
    pub fn flush_seconds(&self) -> Histogram {
        self.flush_seconds.clone()
    }

    /// Whether other host processes write this store too; see [`Backend::shared`].
    pub fn shared(&self) -> bool {
        self.backend.shared()
    }

    /// Whether the store answers a read and takes writes (for readiness
    /// probes).
    pub fn check(&self) -> Result<(), StoreError> {
        self.failed.check()?;
        self.backend.get(Tree::Meta, FORMAT_KEY).map(|_| ())
    }

    /// Why the store takes no more writes, once a flush has failed: from
    /// then on every write and every wait for durability fails
    /// (`StoreError::Unavailable`), and the process must open the store
    /// again to go on.
    pub fn failure(&self) -> Option<String> {
        self.failed.why.borrow().clone()
    }

    /// Told the failure when it happens (see [`Store::failure`]).
    pub fn failures(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.failed.why.subscribe()
    }

    pub fn get_raw(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.backend.get(tree, key)
    }

    pub fn get<T: DeserializeOwned>(
        &self,
        tree: Tree,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        self.backend
            .get(tree, key)?
            .map(|v| decode(tree, &v))
            .transpose()
    }

    pub fn scan(
        &self,
        tree: Tree,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Entry>, StoreError> {
        self.backend.scan(tree, prefix, after, limit, reverse)
    }

    /// Remove the entries of `tree` under `prefix` whose value `stale`
    /// picks (short-lived records past their time), page by page; each is
    /// read again in the transaction that removes it, so one written anew
    /// since its page was read stays. How many went.
    pub fn remove_stale(
        &self,
        tree: Tree,
        prefix: &[u8],
        stale: impl Fn(&[u8]) -> bool,
    ) -> Result<usize, StoreError> {
        let mut after: Option<Vec<u8>> = None;
        let mut removed = 0;
        loop {
            let page = self.scan(tree, prefix, after.as_deref(), 500, false)?;
            let Some((last, _)) = page.last() else {
                return Ok(removed);
            };
            after = Some(last.clone());
            let picked: Vec<&Vec<u8>> = page
                .iter()
                .filter(|(_, v)| stale(v))
                .map(|(k, _)| k)
                .collect();
            if picked.is_empty() {
                continue;
            }
            removed += self
                .transact(&[tree], |t| {
                    let mut gone = 0;
                    for k in &picked {
                        if t.get(tree, k)?.is_some_and(|v| stale(&v)) {
                            t.delete(tree, k)?;
                            gone += 1;
                        }
                    }
                    Ok::<_, Abort<()>>(gone)
                })
                .map_err(Abort::into_store)?;
        }
    }

    /// Visit every entry of `tree` in key order; see [`Backend::for_each`].
    pub fn for_each_entry(
        &self,
        tree: Tree,
        visit: &mut crate::backend::Visit<'_>,
    ) -> Result<(), StoreError> {
        self.backend.for_each(tree, visit)
    }

    /// Run `body` atomically over `trees`; see [`Backend::transact`].
    /// `Abort::User` rolls back and returns the caller's error.
    pub fn transact<R, E>(
        &self,
        trees: &[Tree],
        body: impl Fn(&dyn Txn) -> Result<R, Abort<E>>,
    ) -> Result<R, Abort<E>> {
        self.failed.check()?;
        let out: Mutex<Option<Result<R, Abort<E>>>> = Mutex::new(None);
        let _writing = self.gate.read().unwrap_or_else(|p| p.into_inner());
        let _bump = self.wrote();
        let committed = self.backend.transact(trees, &|txn| {
            let result = body(txn);
            let failed = match &result {
                Ok(_) => None,
                Err(Abort::Store(e)) => Some(e.clone()),
                Err(Abort::User(_)) => Some(StoreError::Backend("aborted".into())),
            };
            *out.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
            match failed {
                None => Ok(()),
                Some(e) => Err(e),
            }
        });
        let result = out.into_inner().unwrap_or_else(|p| p.into_inner());
        match (committed, result) {
            (Ok(true), Some(Ok(r))) => Ok(r),
            (_, Some(Err(e))) => Err(e),
            (Err(e), _) => Err(Abort::Store(e)),
            (Ok(_), _) => Err(Abort::Store(StoreError::Backend(
                "transaction did not run".into(),
            ))),
        }
    }

    /// See [`Backend::put`].
    pub fn put<T: Serialize>(&self, tree: Tree, key: &[u8], value: &T) -> Result<(), StoreError> {
        self.put_raw(tree, key, &encode(value))
    }

    /// [`Store::put`] of bytes as they are.
    pub fn put_raw(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.failed.check()?;
        let _writing = self.gate.read().unwrap_or_else(|p| p.into_inner());
        let _bump = self.wrote();
        self.backend.put(tree, key, value)
    }

    /// See [`Backend::remove`].
    pub fn remove(&self, tree: Tree, key: &[u8]) -> Result<(), StoreError> {
        self.failed.check()?;
        let _writing = self.gate.read().unwrap_or_else(|p| p.into_inner());
        let _bump = self.wrote();
        self.backend.remove(tree, key)
    }

    /// Wait until every write made before this call is on disk. Concurrent
    /// callers share one flush; when every write so far is durable already
    /// (a caller that only read, on a store nobody is writing), there is
    /// nothing to wait for. The writes counted are those made before this
    /// call, not before the first poll, so the future borrows nothing and
    /// can be awaited later (a WebSocket session acknowledges its sends in
    /// order while it goes on reading).
    pub fn durable(
        &self,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + 'static {
        let p = &self.progress;
        let pending = p.durable.load(Ordering::SeqCst) < p.written.load(Ordering::SeqCst);
        let commit = pending.then(|| self.commit_then(None));
        async move {
            match commit {
                Some(commit) => commit.await,
                None => Ok(()),
            }
        }
    }

    /// Counts a write when dropped, that is after the write call returned,
    /// so a flush that starts after the count moved covers the write.
    fn wrote(&self) -> impl Drop + '_ {
        struct Bump<'a>(&'a AtomicU64);
        impl Drop for Bump<'_> {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        Bump(&self.progress.written)
    }

    /// Register for the next flush now, and run `after` once it is done, in
    /// registration order relative to other callers (so events can be
    /// published in the order their writes were made). The returned future
    /// resolves when the flush is done.
    pub fn commit_then(
        &self,
        after: Option<Box<dyn FnOnce() + Send>>,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + 'static {
        let (done, wait) = tokio::sync::oneshot::channel();
        let sent = {
            let commits = self.commits.lock().unwrap_or_else(|p| p.into_inner());
            match commits.as_ref() {
                Some(tx) => tx.send(Waiter { after, done }).is_ok(),
                None => false,
            }
        };
        async move {
            if !sent {
                return Err(StoreError::Backend("the store is closed".into()));
            }
            let started = std::time::Instant::now();
            let done = wait.await;
            crate::waits::record(started.elapsed());
            done.map_err(|_| StoreError::Backend("the flusher stopped".into()))?
        }
    }

    /// Flush now, on this thread: for startup work and offline tools,
    /// outside the async request path.
    pub fn flush_now(&self) -> Result<(), StoreError> {
        self.backend.flush()
    }

    /// Flush and stop the flusher: the last step of a graceful shutdown.
    pub fn close(&self) -> Result<(), StoreError> {
        drop(
            self.commits
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        if let Some(handle) = self
            .flusher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = handle.join();
        }
        self.backend.flush()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// The flusher: take every waiting request, flush once, answer them all.
/// When the last flush answered more than one request and has just ended,
/// writers are arriving together, so it first waits the backend's gather
/// time for more of them to join (as PostgreSQL's `commit_delay` does when
/// other transactions are active): a lone write, or the first after a quiet
/// spell, is flushed at once.
fn group_commit(
    backend: Arc<dyn Backend>,
    rx: mpsc::Receiver<Waiter>,
    timings: Histogram,
    progress: &Progress,
    failed: &Failure,
) {
    let gather = backend.commit_gather();
    let mut last_batch = 0;
    let mut last_flushed = std::time::Instant::now();
    while let Ok(first) = rx.recv() {
        if let Some(wait) = gather_before_flush(gather, last_batch, last_flushed.elapsed()) {
            std::thread::sleep(wait);
        }
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        last_batch = batch.len();
        let started = std::time::Instant::now();
        let covered = progress.written.load(Ordering::SeqCst);
        // Once one has failed, none counts: what it did not write may be
        // gone while later ones seem to succeed.
        let result = failed.check().and_then(|()| backend.flush());
        match &result {
            Ok(()) => {
                progress.durable.fetch_max(covered, Ordering::SeqCst);
            }
            Err(e) => failed.record(e),
        }
        timings.observe(started.elapsed().as_secs_f64());
        last_flushed = std::time::Instant::now();
        for waiter in batch {
            if result.is_ok() {
                if let Some(after) = waiter.after {
                    after();
                }
            }
            let _ = waiter.done.send(result.clone());
        }
    }
}

/// How long a group commit waits for more writers, given how many requests
/// the previous flush answered and how long ago it ended: only when they
/// came together and are still coming (the previous flush ended less than
/// ten gather times ago).
fn gather_before_flush(
    gather: std::time::Duration,
    last_batch: usize,
    since_last_flush: std::time::Duration,
) -> Option<std::time::Duration> {
    (last_batch > 1 && !gather.is_zero() && since_last_flush < gather * 10).then_some(gather)
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Records are plain data structs; serializing them cannot fail.
    serde_json::to_vec(value).expect("records serialize")
}

pub fn decode<T: DeserializeOwned>(tree: Tree, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{}: {e}", tree.name())))
}

/// Typed helpers inside a transaction.
pub fn txn_get<T: DeserializeOwned>(
    txn: &dyn Txn,
    tree: Tree,
    key: &[u8],
) -> Result<Option<T>, StoreError> {
    txn.get(tree, key)?.map(|v| decode(tree, &v)).transpose()
}

pub fn txn_put<T: Serialize>(
    txn: &dyn Txn,
    tree: Tree,
    key: &[u8],
    value: &T,
) -> Result<(), StoreError> {
    txn.put(tree, key, &encode(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sled store on a fresh directory, counting flushes and making each
    /// one slow enough that concurrent writers pile up behind it.
    fn counting_store() -> (tempfile::TempDir, Arc<crate::faults::Counted>, Arc<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let backend = crate::faults::Counted::new(Arc::new(SledBackend::open(dir.path()).unwrap()))
            .with_slow_flushes(std::time::Duration::from_millis(20));
        let store = Store::with_backend(backend.clone()).unwrap();
        (dir, backend, store)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_share_flushes() {
        let (_dir, backend, store) = counting_store();
        let before = backend.calls().flushes;
        let mut writers = Vec::new();
        for i in 0..100u32 {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                store
                    .transact(&[Tree::Users], |t| {
                        Ok::<_, Abort<()>>(t.put(Tree::Users, &i.to_be_bytes(), b"x")?)
                    })
                    .unwrap();
                store.durable().await.unwrap();
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
        let flushes = backend.calls().flushes - before;
        assert!(
            (1..=10).contains(&flushes),
            "100 writers took {flushes} flushes"
        );
        assert_eq!(
            store
                .scan(Tree::Users, b"", None, 1000, false)
                .unwrap()
                .len(),
            100
        );
    }

    /// A caller that only read waits for no flush once every write is
    /// durable; after a write, the next caller waits for one, and a reader
    /// that comes while the write is not yet durable waits for it too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn durable_flushes_only_when_something_is_not_yet_durable() {
        let (_dir, backend, store) = counting_store();
        store.durable().await.unwrap();
        let flushes = || backend.calls().flushes;
        let settled = flushes();
        for _ in 0..5 {
            store.durable().await.unwrap();
        }
        assert_eq!(flushes(), settled, "reads alone flushed");

        store.put(Tree::Users, b"k", &1u32).unwrap();
        // Someone else's write is not durable yet: this reader waits.
        store.durable().await.unwrap();
        assert_eq!(flushes(), settled + 1);
        store.durable().await.unwrap();
        assert_eq!(flushes(), settled + 1, "nothing new to flush");
        store.remove(Tree::Users, b"k").unwrap();
        store.durable().await.unwrap();
        assert_eq!(flushes(), settled + 2);
    }

    #[test]
    fn a_commit_waits_for_more_writers_only_after_concurrent_ones() {
        use std::time::Duration;
        let gather = Duration::from_micros(200);
        let just = Duration::from_micros(10);
        // The first write, and a write after a flush that answered one
        // request, are flushed at once.
        assert_eq!(super::gather_before_flush(gather, 0, just), None);
        assert_eq!(super::gather_before_flush(gather, 1, just), None);
        // Writers arriving together, the last flush just ended: wait.
        assert_eq!(super::gather_before_flush(gather, 2, just), Some(gather));
        assert_eq!(super::gather_before_flush(gather, 64, just), Some(gather));
        // The first write after a quiet spell, however busy it was before.
        let quiet = Duration::from_millis(5);
        assert_eq!(super::gather_before_flush(gather, 64, quiet), None);
        // A backend whose flush costs nothing never waits.
        let none = Duration::ZERO;
        assert_eq!(super::gather_before_flush(none, 64, just), None);
        assert_eq!(MemoryBackend::new().commit_gather(), none);
    }

    #[test]
    fn an_earlier_format_is_upgraded_so_that_earlier_hosts_refuse_it() {
        let dir = tempfile::tempdir().unwrap();
        let format = |store: &Store| store.get_raw(Tree::Meta, FORMAT_KEY).unwrap().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            assert_eq!(format(&store), FORMAT_VERSION.to_be_bytes());
            store
                .transact(&[Tree::Meta], |t| {
                    Ok::<_, Abort<()>>(t.put(Tree::Meta, FORMAT_KEY, &1u32.to_be_bytes())?)
                })
                .unwrap();
            store.put(Tree::Users, b"kept", &"as it was").unwrap();
            store.close().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(format(&store), FORMAT_VERSION.to_be_bytes());
        assert_eq!(
            store
                .get::<String>(Tree::Users, b"kept")
                .unwrap()
                .as_deref(),
            Some("as it was")
        );
    }

    #[test]
    fn a_newer_format_is_refused_and_an_aborted_transaction_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let r = store.transact(&[Tree::Users], |t| {
                t.put(Tree::Users, b"k", b"v")?;
                Err::<(), _>(Abort::User("changed my mind"))
            });
            assert!(matches!(r, Err(Abort::User("changed my mind"))));
            assert_eq!(store.get_raw(Tree::Users, b"k").unwrap(), None);
            store
                .transact(&[Tree::Meta], |t| {
                    Ok::<_, Abort<()>>(t.put(
                        Tree::Meta,
                        FORMAT_KEY,
                        &(FORMAT_VERSION + 1).to_be_bytes(),
                    )?)
                })
                .unwrap();
            store.close().unwrap();
        }
        match Store::open(dir.path()) {
            Err(StoreError::NewerFormat { found, supported }) => {
                assert_eq!((found, supported), (FORMAT_VERSION + 1, FORMAT_VERSION));
            }
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("a newer format was opened"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn after_a_failed_flush_the_store_takes_no_more_writes() {
        let dir = tempfile::tempdir().unwrap();
        let (store, faults) = crate::faults::FailingWrites::open(dir.path()).unwrap();
        let mut failures = store.failures();
        store.put(Tree::Users, b"a", &1).unwrap();
        store.durable().await.unwrap();
        assert_eq!(store.failure(), None);
        assert!(store.check().is_ok());

        faults.fail_flushes();
        store.put(Tree::Users, b"b", &2).unwrap();
        let failed = store.durable().await.unwrap_err();
        assert!(matches!(failed, StoreError::Unavailable(_)), "{failed}");
        failures.changed().await.unwrap();
        let why = failures.borrow().clone().unwrap();
        assert!(why.contains("no space left"), "{why}");
        // Every write and every readiness check is refused from now on,
        // each kind of write; reads still answer.
        for refused in [
            store.put(Tree::Users, b"c", &3),
            store.remove(Tree::Users, b"a"),
            store
                .transact(&[Tree::Users], |t| {
                    Ok::<_, Abort<()>>(t.put(Tree::Users, b"d", b"4")?)
                })
                .map_err(Abort::into_store),
            store.check(),
        ] {
            assert!(
                matches!(&refused, Err(StoreError::Unavailable(m)) if m.contains("failed flush")),
                "{refused:?}"
            );
        }
        assert_eq!(store.get::<i32>(Tree::Users, b"a").unwrap(), Some(1));
        assert_eq!(store.get::<i32>(Tree::Users, b"c").unwrap(), None);
    }
}
