//! The sled engine: the only code in the host that touches sled.

use std::path::Path;

use sled::transaction::{
    ConflictableTransactionError, TransactionError, Transactional, TransactionalTree,
};

use crate::backend::{prefix_end, Backend, Entry, StoreError, Tree, Txn};

/// How long an open waits for a lock that a just-closed store in this
/// process may still hold.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// See [`SledBackend::commit_gather`].
const COMMIT_GATHER: std::time::Duration = std::time::Duration::from_micros(200);

pub struct SledBackend {
    db: sled::Db,
    trees: Vec<sled::Tree>,
    files: Files,
}

/// What a flush must sync beyond what sled itself does. sled writes its log
/// buffers with `sync_file_range`, which puts the data on the device but
/// neither flushes the device's write cache nor records the file's new
/// length, and it writes a value too large for a log segment (a package, a
/// document) to a file of its own under `blobs/` without syncing it at all.
/// Both survive a killed process but not a lost machine, so every flush also
/// syncs the log file and any blob written since the last flush.
struct Files {
    log: std::fs::File,
    blobs: std::path::PathBuf,
    /// When the blobs were last synced, and the blob folder's modification
    /// time then: while that time stays the same, no blob was added.
    synced: std::sync::Mutex<Option<(std::time::SystemTime, std::time::SystemTime)>>,
}

/// How far before the last sync a blob's modification time may lie and the
/// blob still be synced again: covers coarse file-system clocks.
const BLOB_CLOCK_SLACK: std::time::Duration = std::time::Duration::from_secs(2);

impl Files {
    fn open(dir: &Path) -> Result<Files, StoreError> {
        let log = std::fs::File::open(dir.join("db")).map_err(|e| {
            StoreError::Backend(format!(
                "cannot open the store's log in {}: {e}",
                dir.display()
            ))
        })?;
        Ok(Files {
            log,
            blobs: dir.join("blobs"),
            synced: std::sync::Mutex::new(None),
        })
    }

    fn sync(&self) -> Result<(), StoreError> {
        let io = |e: std::io::Error| StoreError::Backend(format!("cannot sync the store: {e}"));
        self.log.sync_data().map_err(io)?;
        let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        let changed = match std::fs::metadata(&self.blobs) {
            Ok(meta) => meta.modified().map_err(io)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(e)),
        };
        if synced.is_some_and(|(_, seen)| seen == changed) {
            return Ok(());
        }
        let now = std::time::SystemTime::now();
        let since = synced.and_then(|(at, _)| at.checked_sub(BLOB_CLOCK_SLACK));
        sync_files_since(&self.blobs, since).map_err(io)?;
        *synced = Some((now, changed));
        Ok(())
    }
}

/// Sync every file in `dir` modified at or after `since` (all of them
/// without it), then the folder itself, so new files keep their names.
/// Returns how many files were synced. A file removed meanwhile is skipped.
fn sync_files_since(dir: &Path, since: Option<std::time::SystemTime>) -> std::io::Result<usize> {
    let mut count = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        if !meta.is_file() || since.is_some_and(|t| meta.modified().is_ok_and(|m| m < t)) {
            continue;
        }
        file.sync_all()?;
        count += 1;
    }
    std::fs::File::open(dir)?.sync_all()?;
    Ok(count)
}

/// sled reports a held lock as an `Other` I/O error naming it, with the
/// lock call's own error (`WouldBlock` when another holder has it; other
/// failures, such as a file system without locks, are not waited on).
fn is_lock_held(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if {
        let text = io.to_string();
        text.contains("could not acquire lock") && text.contains("WouldBlock")
    })
}

/// sled's errors as the store's: an I/O error (a full disk, a failing
/// device) is the store being unavailable, which a retry later may get
/// past (a write that failed wrote nothing durable); the rest are faults.
fn backend_error(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(io) => StoreError::Unavailable(format!("disk I/O failed: {io}")),
        e => StoreError::Backend(e.to_string()),
    }
}

impl SledBackend {
    pub fn open(dir: &Path) -> Result<SledBackend, StoreError> {
        SledBackend::open_with(dir, crate::DEFAULT_CACHE_BYTES)
    }

    /// Open with a page cache of about `cache_bytes` (sled's own default is
    /// 1 GiB, more than a host should hold by default).
    pub fn open_with(dir: &Path, cache_bytes: u64) -> Result<SledBackend, StoreError> {
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            // Durability comes from explicit group-commit flushes, not a timer.
            .flush_every_ms(None);
        // sled's lock on the directory outlives a dropped `Db` for a moment:
        // its background writer threads still hold the file while they
        // finish. Reopening right after a close (a restart in-process, a CLI
        // command right after the server stopped) waits for them; a lock
        // still held after that belongs to another live process.
        let started = std::time::Instant::now();
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                Err(e) if is_lock_held(&e) && started.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) if is_lock_held(&e) => {
                    return Err(StoreError::Backend(format!(
                        "cannot open the store in {}: another process holds it (is a server running on this data directory?): {e}",
                        dir.display()
                    )));
                }
                Err(e) => {
                    return Err(StoreError::Backend(format!(
                        "cannot open the store in {}: {e}",
                        dir.display()
                    )))
                }
            }
        };
        let trees = Tree::ALL
            .iter()
            .map(|t| db.open_tree(t.name()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend_error)?;
        let files = Files::open(dir)?;
        Ok(SledBackend { db, trees, files })
    }

    fn tree(&self, tree: Tree) -> &sled::Tree {
        &self.trees[tree.index()]
    }
}

struct SledTxn<'a> {
    names: &'a [Tree],
    trees: &'a [TransactionalTree],
}

impl SledTxn<'_> {
    fn tree(&self, tree: Tree) -> Result<&TransactionalTree, StoreError> {
        let i = self.names.iter().position(|t| *t == tree).ok_or_else(|| {
            StoreError::Backend(format!(
                "tree `{}` is not part of this transaction",
                tree.name()
            ))
        })?;
        Ok(&self.trees[i])
    }
}

/// Inside sled's closure every error must be a conflictable one; a storage
/// error is carried out as an abort and turned back into a `StoreError`.
fn txn_error(e: sled::transaction::UnabortableTransactionError) -> StoreError {
    match e {
        sled::transaction::UnabortableTransactionError::Conflict => StoreError::Conflict,
        other => StoreError::Backend(other.to_string()),
    }
}

impl Txn for SledTxn<'_> {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.tree(tree)?
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(txn_error)
    }

    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.tree(tree)?
            .insert(key, value)
            .map(|_| ())
            .map_err(txn_error)
    }

    fn delete(&self, tree: Tree, key: &[u8]) -> Result<(), StoreError> {
        self.tree(tree)?.remove(key).map(|_| ()).map_err(txn_error)
    }
}

impl Backend for SledBackend {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.tree(tree)
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(backend_error)
    }

    fn scan(
        &self,
        tree: Tree,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Entry>, StoreError> {
        use std::ops::Bound;
        // Seek straight to the cursor: a page costs its own length, not the
        // entries before it.
        let end = prefix_end(prefix);
        let lower = match after {
            Some(a) if !reverse && a >= prefix => Bound::Excluded(a.to_vec()),
            _ => Bound::Included(prefix.to_vec()),
        };
        let upper = match (after, &end) {
            (Some(a), Some(e)) if reverse && a < e.as_slice() => Bound::Excluded(a.to_vec()),
            (Some(a), None) if reverse => Bound::Excluded(a.to_vec()),
            (_, Some(e)) => Bound::Excluded(e.clone()),
            (_, None) => Bound::Unbounded,
        };
        let empty = match (&lower, &upper) {
            (Bound::Included(l) | Bound::Excluded(l), Bound::Excluded(u)) => l >= u,
            _ => false,
        };
        let mut out = Vec::new();
        if empty || limit == 0 {
            return Ok(out);
        }
        let iter = self.tree(tree).range::<Vec<u8>, _>((lower, upper));
        let mut push = |item: sled::Result<(sled::IVec, sled::IVec)>| -> Result<bool, StoreError> {
            let (k, v) = item.map_err(backend_error)?;
            if k.starts_with(prefix) {
                out.push((k.to_vec(), v.to_vec()));
            }
            Ok(out.len() < limit)
        };
        if reverse {
            for item in iter.rev() {
                if !push(item)? {
                    break;
                }
            }
        } else {
            for item in iter {
                if !push(item)? {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn transact(
        &self,
        names: &[Tree],
        body: &dyn Fn(&dyn Txn) -> Result<(), StoreError>,
    ) -> Result<bool, StoreError> {
        // Only the named trees take part: sled stages and locks every tree
        // of a transaction, so fewer trees make a cheaper commit.
        let selected: Vec<sled::Tree> = names.iter().map(|t| self.tree(*t).clone()).collect();
        let result = selected
            .as_slice()
            .transaction(|trees: &Vec<TransactionalTree>| {
                body(&SledTxn { names, trees }).map_err(|e| match e {
                    // A conflict makes sled run the body again.
                    StoreError::Conflict => ConflictableTransactionError::Conflict,
                    other => ConflictableTransactionError::Abort(other),
                })
            });
        match result {
            Ok(()) => Ok(true),
            Err(TransactionError::Abort(_)) => Ok(false),
            Err(TransactionError::Storage(e)) => Err(backend_error(e)),
        }
    }

    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        // sled's log is sequential and recovery replays a prefix of it,
        // which gives the ordering `Backend::put` promises.
        self.tree(tree)
            .insert(key, value)
            .map(|_| ())
            .map_err(backend_error)
    }

    fn remove(&self, tree: Tree, key: &[u8]) -> Result<(), StoreError> {
        self.tree(tree)
            .remove(key)
            .map(|_| ())
            .map_err(backend_error)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(backend_error)?;
        self.files.sync()
    }

    /// A flush here is a log write handed to sled's I/O thread pool, an
    /// `fdatasync` and the blob folder's check, whatever it covers: under a
    /// load of concurrent writers, gathering them for 200 µs more makes each
    /// flush cover more (launches at 64 connections, seven alternating pairs
    /// of runs: server CPU per launch 2–14 % lower against the load
    /// generator's in every pair, and more launches/s in every pair).
    fn commit_gather(&self) -> std::time::Duration {
        COMMIT_GATHER
    }

    fn for_each(
        &self,
        tree: Tree,
        visit: &mut crate::backend::Visit<'_>,
    ) -> Result<(), StoreError> {
        for item in self.tree(tree).iter() {
            let (k, v) = item.map_err(backend_error)?;
            visit(&k, &v)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_flush_syncs_the_blobs_written_since_the_last_one() {
        let dir = tempfile::tempdir().unwrap();
        let now = std::time::SystemTime::now();
        for name in ["old", "new-1", "new-2"] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        std::fs::create_dir(dir.path().join("folder")).unwrap();
        std::fs::File::options()
            .write(true)
            .open(dir.path().join("old"))
            .unwrap()
            .set_modified(now - std::time::Duration::from_secs(3600))
            .unwrap();
        let since = now - std::time::Duration::from_secs(10);
        assert_eq!(super::sync_files_since(dir.path(), Some(since)).unwrap(), 2);
        assert_eq!(super::sync_files_since(dir.path(), None).unwrap(), 3);
    }

    #[test]
    fn a_value_too_large_for_the_log_survives_a_flush_and_reopen() {
        use crate::backend::{Backend, Tree};
        let dir = tempfile::tempdir().unwrap();
        // Past a quarter of sled's 512 KiB segment, a node is a blob file.
        let big: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        {
            let b = super::SledBackend::open(dir.path()).unwrap();
            b.put(Tree::Meta, b"package", &big).unwrap();
            b.flush().unwrap();
            let blobs = std::fs::read_dir(dir.path().join("blobs")).unwrap().count();
            assert!(blobs > 0, "the value went to a blob file");
            b.put(Tree::Meta, b"small", b"x").unwrap();
            b.flush().unwrap();
        }
        let b = super::SledBackend::open(dir.path()).unwrap();
        assert_eq!(b.get(Tree::Meta, b"package").unwrap(), Some(big));
        assert_eq!(b.get(Tree::Meta, b"small").unwrap(), Some(b"x".to_vec()));
    }

    #[test]
    fn blob_files_a_rewrite_replaced_are_gone_after_a_restart() {
        use crate::backend::{Backend, Tree};
        let dir = tempfile::tempdir().unwrap();
        let blobs = || std::fs::read_dir(dir.path().join("blobs")).unwrap().count();
        let value = |round: u32| -> Vec<u8> {
            (0..600_000u32).map(|i| ((i + round) % 251) as u8).collect()
        };
        let b = super::SledBackend::open(dir.path()).unwrap();
        b.put(Tree::Meta, b"kept", &value(1000)).unwrap();
        for round in 0u32..60 {
            b.put(Tree::AppData, b"big", &value(round)).unwrap();
            b.flush().unwrap();
        }
        // sled removes a replaced blob only once the log segment that
        // replaced it is full: a process stopped before leaves them.
        assert!(blobs() > 10, "{} blob files", blobs());
        drop(b);
        for _ in 0..2 {
            let b = super::SledBackend::open(dir.path()).unwrap();
            let left = blobs();
            assert!(left <= 4, "{left} blob files for two values");
            assert_eq!(b.get(Tree::AppData, b"big").unwrap(), Some(value(59)));
            assert_eq!(b.get(Tree::Meta, b"kept").unwrap(), Some(value(1000)));
        }
    }

    #[test]
    fn a_store_reopens_right_after_a_close_but_not_while_another_holds_it() {
        use crate::backend::{Backend, Tree};
        let dir = tempfile::tempdir().unwrap();
        for i in 0u32..20 {
            let b = super::SledBackend::open(dir.path()).unwrap();
            b.put(Tree::Meta, b"round", &i.to_be_bytes()).unwrap();
            b.flush().unwrap();
        }
        let held = super::SledBackend::open(dir.path()).unwrap();
        assert_eq!(
            held.get(Tree::Meta, b"round").unwrap(),
            Some(19u32.to_be_bytes().to_vec())
        );
        let Err(e) = super::SledBackend::open(dir.path()) else {
            panic!("a second open of a held store succeeded");
        };
        assert!(e.to_string().contains("another process holds it"), "{e}");
    }

    #[test]
    fn scans_seek_to_the_cursor_within_the_prefix() {
        use crate::backend::{Backend, Tree};
        let dir = tempfile::tempdir().unwrap();
        let b = super::SledBackend::open(dir.path()).unwrap();
        for k in [
            &b"a\x01"[..],
            b"b\x00",
            b"b\x01",
            b"b\x02",
            b"b\xff",
            b"c\x00",
        ] {
            b.put(Tree::Meta, k, b"").unwrap();
        }
        let keys = |after: Option<&[u8]>, limit, reverse| -> Vec<Vec<u8>> {
            b.scan(Tree::Meta, b"b", after, limit, reverse)
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        let k = |s: &[u8]| s.to_vec();
        assert_eq!(
            keys(None, 10, false),
            [k(b"b\x00"), k(b"b\x01"), k(b"b\x02"), k(b"b\xff")]
        );
        assert_eq!(keys(Some(b"b\x01"), 10, false), [k(b"b\x02"), k(b"b\xff")]);
        assert_eq!(keys(Some(b"b\x01"), 10, true), [k(b"b\x00")]);
        assert_eq!(keys(None, 2, true), [k(b"b\xff"), k(b"b\x02")]);
        // Cursors outside the prefix's range.
        assert_eq!(keys(Some(b"a"), 1, false), [k(b"b\x00")]);
        assert!(keys(Some(b"a"), 10, true).is_empty());
        assert!(keys(Some(b"c"), 10, false).is_empty());
        assert_eq!(keys(Some(b"c"), 1, true), [k(b"b\xff")]);
        assert!(keys(None, 0, false).is_empty());
        // An all-0xff prefix has no end key.
        b.put(Tree::Meta, b"\xff\xff\x01", b"").unwrap();
        let top = b
            .scan(Tree::Meta, b"\xff\xff", Some(b"\xff\xff\x02"), 10, true)
            .unwrap();
        assert_eq!(top.len(), 1);
    }

    /// The architecture invariant: no other file of the host names sled, and
    /// no other crate of the host depends on it.
    #[test]
    fn only_this_file_touches_sled() {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    if !path.ends_with("target") {
                        walk(&path, out);
                    }
                } else if path.extension().is_some_and(|e| e == "rs")
                    || path.ends_with("Cargo.toml")
                {
                    out.push(path);
                }
            }
        }
        // Every crate of the host: the parent of this crate's folder.
        let host = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap();
        let mut files = Vec::new();
        walk(host, &mut files);
        assert!(files.len() > 50, "found only {} files", files.len());
        let offenders: Vec<_> = files
            .iter()
            .filter(|p| !p.ends_with("store/src/sled_backend.rs"))
            .filter(|p| !p.ends_with("store/Cargo.toml"))
            .filter(|p| {
                let text = std::fs::read_to_string(p).unwrap();
                text.contains("sled::") || text.contains("\nsled")
            })
            .collect();
        assert!(
            offenders.is_empty(),
            "sled used outside store/sled_backend.rs: {offenders:?}"
        );
    }
}
