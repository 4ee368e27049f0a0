//! The store's contract, run against every engine: in memory, sled, and a
//! real PostgreSQL server this test starts itself. Each test is written
//! once and instantiated per engine (the `engines!` list at the end), so
//! the engines cannot drift apart. The key-value namespaces of the storage
//! capabilities are tested over each engine too (and `MemoryKv`, the
//! plain reference).

use std::sync::Arc;

use superapp_store::{
    Abort, KvBackend, KvError, MemoryBackend, MemoryKv, Namespace, Quota, Store, StoreError,
    StoreKv, Tree, Usage, ENTRY_OVERHEAD,
};

#[path = "../../../tests/support/postgres.rs"]
mod postgres;

/// One engine under test, able to open a second handle on the same data:
/// a restart on sled, a second host process on PostgreSQL.
enum Engine {
    Memory(Arc<MemoryBackend>),
    Sled(tempfile::TempDir),
    Postgres(String),
}

impl Engine {
    fn memory() -> Engine {
        Engine::Memory(Arc::new(MemoryBackend::new()))
    }

    fn sled() -> Engine {
        Engine::Sled(tempfile::tempdir().unwrap())
    }

    fn postgres() -> Engine {
        Engine::Postgres(postgres::shared().database())
    }

    /// A store on this engine's data. On sled only one may be open at a
    /// time (the directory is locked), so a test drops one before the next.
    fn open(&self) -> Arc<Store> {
        match self {
            Engine::Memory(backend) => Store::with_backend(backend.clone()).unwrap(),
            Engine::Sled(dir) => Store::open(dir.path()).unwrap(),
            Engine::Postgres(url) => Store::connect(url, 8).unwrap(),
        }
    }

    /// Whether two stores can be open on the data at once (two nodes).
    fn shared(&self) -> bool {
        !matches!(self, Engine::Sled(_))
    }
}

fn put(store: &Store, tree: Tree, key: &[u8], value: &[u8]) {
    store.put_raw(tree, key, value).unwrap();
}

fn keys(entries: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<Vec<u8>> {
    entries.into_iter().map(|(k, _)| k).collect()
}

fn every_tree_keeps_what_was_written(engine: Engine) {
    let store = engine.open();
    for tree in Tree::ALL {
        let key = format!("key-of-{}", tree.name());
        put(&store, tree, key.as_bytes(), tree.name().as_bytes());
    }
    drop(store);
    let store = engine.open();
    for tree in Tree::ALL {
        let key = format!("key-of-{}", tree.name());
        assert_eq!(
            store.get_raw(tree, key.as_bytes()).unwrap().as_deref(),
            Some(tree.name().as_bytes()),
            "tree {}",
            tree.name()
        );
    }
    store.remove(Tree::Users, b"key-of-users").unwrap();
    assert_eq!(store.get_raw(Tree::Users, b"key-of-users").unwrap(), None);
    // Removing what is not there is no error.
    store.remove(Tree::Users, b"key-of-users").unwrap();
    // Trees are apart: the same key in another tree is another entry.
    assert_eq!(
        store.get_raw(Tree::Sessions, b"key-of-users").unwrap(),
        None
    );
}

fn scans_keep_to_the_prefix_cursor_limit_and_order(engine: Engine) {
    let store = engine.open();
    let all: Vec<&[u8]> = vec![
        b"a",
        b"b\x00",
        b"b\x01",
        b"b\x01\xff",
        b"b\xff",
        b"b\xff\xff",
        b"c",
        b"\xff",
        b"\xff\xff",
    ];
    // Written out of order.
    for k in all.iter().rev() {
        put(&store, Tree::Messages, k, b"v");
    }
    let scan = |prefix: &[u8], after: Option<&[u8]>, limit: usize, reverse: bool| {
        keys(
            store
                .scan(Tree::Messages, prefix, after, limit, reverse)
                .unwrap(),
        )
    };
    let owned = |ks: &[&[u8]]| ks.iter().map(|k| k.to_vec()).collect::<Vec<_>>();
    assert_eq!(scan(b"", None, 100, false), owned(&all));
    assert_eq!(
        scan(b"b", None, 100, false),
        owned(&[b"b\x00", b"b\x01", b"b\x01\xff", b"b\xff", b"b\xff\xff"])
    );
    assert_eq!(
        scan(b"b", Some(b"b\x01"), 2, false),
        owned(&[b"b\x01\xff", b"b\xff"])
    );
    assert_eq!(scan(b"b", None, 2, true), owned(&[b"b\xff\xff", b"b\xff"]));
    assert_eq!(
        scan(b"b", Some(b"b\xff"), 10, true),
        owned(&[b"b\x01\xff", b"b\x01", b"b\x00"])
    );
    // A prefix of 0xff bytes has no end key: the scan runs to the tree's end.
    assert_eq!(
        scan(b"\xff", None, 10, false),
        owned(&[b"\xff", b"\xff\xff"])
    );
    assert_eq!(
        scan(b"\xff", None, 10, true),
        owned(&[b"\xff\xff", b"\xff"])
    );
    // A cursor before the prefix, or past it, and a zero limit.
    assert_eq!(scan(b"c", Some(b"a"), 10, false), owned(&[b"c"]));
    assert_eq!(scan(b"b", Some(b"c"), 10, false), Vec::<Vec<u8>>::new());
    assert_eq!(scan(b"b", Some(b"zz"), 1, true), owned(&[b"b\xff\xff"]));
    assert_eq!(scan(b"", None, 0, false), Vec::<Vec<u8>>::new());
    assert_eq!(scan(b"nothing", None, 10, false), Vec::<Vec<u8>>::new());
    // A backup's walk sees every entry in order.
    let mut walked = Vec::new();
    store
        .for_each_entry(Tree::Messages, &mut |k, _| {
            walked.push(k.to_vec());
            Ok(())
        })
        .unwrap();
    assert_eq!(walked, owned(&all));
}

fn transactions_are_all_or_nothing(engine: Engine) {
    let store = engine.open();
    put(&store, Tree::Accounts, b"alice", b"10");
    // Reads inside see the transaction's own writes; both trees change.
    let seen = store
        .transact::<_, ()>(&[Tree::Accounts, Tree::Postings], |txn| {
            txn.put(Tree::Accounts, b"alice", b"7")?;
            txn.put(Tree::Postings, b"alice-1", b"-3")?;
            txn.delete(Tree::Accounts, b"nobody")?;
            Ok(txn.get(Tree::Accounts, b"alice")?)
        })
        .unwrap();
    assert_eq!(seen.as_deref(), Some(&b"7"[..]));
    assert_eq!(
        store.get_raw(Tree::Accounts, b"alice").unwrap().as_deref(),
        Some(&b"7"[..])
    );
    assert_eq!(
        store
            .get_raw(Tree::Postings, b"alice-1")
            .unwrap()
            .as_deref(),
        Some(&b"-3"[..])
    );
    // An abort with the caller's reason writes nothing and returns it.
    let aborted = store.transact::<(), &str>(&[Tree::Accounts, Tree::Postings], |txn| {
        txn.put(Tree::Accounts, b"alice", b"0")?;
        txn.put(Tree::Postings, b"alice-2", b"-7")?;
        Err(Abort::User("insufficient funds"))
    });
    assert!(matches!(aborted, Err(Abort::User("insufficient funds"))));
    assert_eq!(
        store.get_raw(Tree::Accounts, b"alice").unwrap().as_deref(),
        Some(&b"7"[..])
    );
    assert_eq!(store.get_raw(Tree::Postings, b"alice-2").unwrap(), None);
    // A tree the transaction did not name is refused, and nothing is written.
    let stray = store.transact::<(), ()>(&[Tree::Accounts], |txn| {
        txn.put(Tree::Accounts, b"alice", b"1")?;
        txn.put(Tree::Users, b"alice", b"x")?;
        Ok(())
    });
    assert!(
        matches!(stray, Err(Abort::Store(StoreError::Backend(_)))),
        "{stray:?}"
    );
    assert_eq!(
        store.get_raw(Tree::Accounts, b"alice").unwrap().as_deref(),
        Some(&b"7"[..])
    );
    assert_eq!(store.get_raw(Tree::Users, b"alice").unwrap(), None);
}

/// Read-modify-write transactions from many threads, and on engines that
/// allow it from two stores at once (two nodes), lose no update.
fn concurrent_transactions_lose_no_update(engine: Engine) {
    let stores: Vec<Arc<Store>> = if engine.shared() {
        vec![engine.open(), engine.open()]
    } else {
        vec![engine.open()]
    };
    const THREADS: usize = 8;
    const EACH: u64 = 25;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let store = stores[t % stores.len()].clone();
            s.spawn(move || {
                for _ in 0..EACH {
                    store
                        .transact::<_, ()>(&[Tree::Accounts], |txn| {
                            let n = txn
                                .get(Tree::Accounts, b"counter")?
                                .map(|v| u64::from_be_bytes(v.try_into().unwrap()))
                                .unwrap_or(0);
                            txn.put(Tree::Accounts, b"counter", &(n + 1).to_be_bytes())?;
                            Ok(())
                        })
                        .unwrap();
                }
            });
        }
    });
    let n = stores[0]
        .get_raw(Tree::Accounts, b"counter")
        .unwrap()
        .unwrap();
    assert_eq!(
        u64::from_be_bytes(n.try_into().unwrap()),
        THREADS as u64 * EACH
    );
}

/// A transaction's scans see its own writes over the stored entries: what
/// it put in the range, not what it deleted, still at most `limit` and in
/// order either way (on engines whose transactions scan).
fn scans_inside_a_transaction_see_its_writes(engine: Engine) {
    if !engine.shared() {
        return;
    }
    let store = engine.open();
    for k in ["m/1", "m/2", "m/3", "m/4", "n/1"] {
        put(&store, Tree::Messages, k.as_bytes(), b"stored");
    }
    let seen = store
        .transact::<_, ()>(&[Tree::Messages], |txn| {
            txn.delete(Tree::Messages, b"m/1")?;
            txn.delete(Tree::Messages, b"m/2")?;
            txn.put(Tree::Messages, b"m/3", b"mine")?;
            txn.put(Tree::Messages, b"m/5", b"mine")?;
            txn.put(Tree::Messages, b"n/0", b"mine")?;
            let first_two = txn.scan(Tree::Messages, b"m/", None, 2, false)?;
            let all = txn.scan(Tree::Messages, b"m/", None, 10, false)?;
            let last_two = txn.scan(Tree::Messages, b"m/", None, 2, true)?;
            let after_three = txn.scan(Tree::Messages, b"m/", Some(b"m/3"), 10, false)?;
            Ok([first_two, all, last_two, after_three])
        })
        .unwrap();
    let [first_two, all, last_two, after_three] = seen;
    assert_eq!(
        first_two,
        [
            (b"m/3".to_vec(), b"mine".to_vec()),
            (b"m/4".to_vec(), b"stored".to_vec())
        ]
    );
    assert_eq!(
        keys(all),
        [b"m/3".to_vec(), b"m/4".to_vec(), b"m/5".to_vec()]
    );
    assert_eq!(keys(last_two), [b"m/5".to_vec(), b"m/4".to_vec()]);
    assert_eq!(keys(after_three), [b"m/4".to_vec(), b"m/5".to_vec()]);
    let stored = store.scan(Tree::Messages, b"", None, 10, false).unwrap();
    assert_eq!(
        keys(stored),
        ["m/3", "m/4", "m/5", "n/0", "n/1"].map(|k| k.as_bytes().to_vec())
    );
}

/// Transactions that write the same rows in opposite orders (a transfer
/// from A to B beside one from B to A), from two stores where the engine
/// allows it, all commit and lose no update.
fn transactions_writing_the_same_rows_in_opposite_orders_all_commit(engine: Engine) {
    let stores: Vec<Arc<Store>> = if engine.shared() {
        vec![engine.open(), engine.open()]
    } else {
        vec![engine.open()]
    };
    const EACH: u64 = 20;
    let add = |txn: &dyn superapp_store::Txn, key: &[u8], by: i64| {
        let n = txn
            .get(Tree::Accounts, key)?
            .map(|v| i64::from_be_bytes(v.try_into().unwrap()))
            .unwrap_or(0);
        txn.put(Tree::Accounts, key, &(n + by).to_be_bytes())
    };
    std::thread::scope(|s| {
        for t in 0..6 {
            let store = stores[t % stores.len()].clone();
            s.spawn(move || {
                let (from, to): (&[u8], &[u8]) = if t % 2 == 0 {
                    (b"a", b"b")
                } else {
                    (b"b", b"a")
                };
                for _ in 0..EACH {
                    store
                        .transact::<_, ()>(&[Tree::Accounts], |txn| {
                            add(txn, from, -1)?;
                            add(txn, to, 1)?;
                            Ok(())
                        })
                        .unwrap();
                }
            });
        }
    });
    let balance = |key: &[u8]| {
        let v = stores[0].get_raw(Tree::Accounts, key).unwrap().unwrap();
        i64::from_be_bytes(v.try_into().unwrap())
    };
    // Three threads each way: every move undone by one the other way.
    assert_eq!((balance(b"a"), balance(b"b")), (0, 0));
}

/// Appenders that each read the last key under a prefix and write the one
/// after it (how a conversation's next seq is assigned on a shared store)
/// never both commit the same key, from two stores at once where the
/// engine allows it.
fn appends_after_the_last_key_never_collide(engine: Engine) {
    let stores = [engine.open(), engine.open()];
    std::thread::scope(|s| {
        for t in 0..8 {
            let store = stores[t % 2].clone();
            s.spawn(move || {
                for i in 0..10 {
                    store
                        .transact::<_, ()>(&[Tree::Messages], |txn| {
                            let last = txn.scan(Tree::Messages, b"c1/", None, 1, true)?;
                            let n = last
                                .first()
                                .map(|(k, _)| u32::from_be_bytes(k[3..].try_into().unwrap()))
                                .unwrap_or(0);
                            let mut key = b"c1/".to_vec();
                            key.extend((n + 1).to_be_bytes());
                            txn.put(Tree::Messages, &key, format!("{t}-{i}").as_bytes())?;
                            Ok(())
                        })
                        .unwrap();
                }
            });
        }
    });
    let all = stores[0]
        .scan(Tree::Messages, b"c1/", None, 1000, false)
        .unwrap();
    let values: std::collections::HashSet<Vec<u8>> = all.iter().map(|(_, v)| v.clone()).collect();
    assert_eq!(all.len(), 80, "every append has its own key");
    assert_eq!(values.len(), 80, "no append overwrote another");
    let last = u32::from_be_bytes(all[79].0[3..].try_into().unwrap());
    assert_eq!(last, 80, "the keys are gapless");
}

fn a_store_of_a_newer_format_is_refused(engine: Engine) {
    let store = engine.open();
    put(&store, Tree::Meta, b"format-version", &99u32.to_be_bytes());
    drop(store);
    let refused = match &engine {
        Engine::Memory(backend) => Store::with_backend(backend.clone()).map(|_| ()),
        Engine::Sled(dir) => Store::open(dir.path()).map(|_| ()),
        Engine::Postgres(url) => Store::connect(url, 2).map(|_| ()),
    };
    assert!(
        matches!(refused, Err(StoreError::NewerFormat { found: 99, .. })),
        "{refused:?}"
    );
}

fn quota() -> Quota {
    Quota {
        // Room for two entries of these tests' sizes.
        total_bytes: 20 + 2 * ENTRY_OVERHEAD,
        max_key_bytes: 8,
        max_value_bytes: 16,
    }
}

/// The storage capabilities' contract on one `KvBackend`.
fn namespaces_are_apart_and_quota_holds(kv: &dyn KvBackend) {
    let q = quota();
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
    assert!(kv.list_keys(&two, b"", None, 10).unwrap().is_empty());
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
            bytes: 2 + 12 + 2 * ENTRY_OVERHEAD,
            keys: 2
        }
    );
    // Replacing a value counts the difference.
    kv.set(&one, b"k2", &[0; 4], &q).unwrap();
    assert_eq!(
        kv.usage(&one).unwrap(),
        Usage {
            bytes: 2 + 6 + 2 * ENTRY_OVERHEAD,
            keys: 2
        }
    );
    assert!(kv.delete(&one, b"k2").unwrap());
    assert!(!kv.delete(&one, b"k2").unwrap());
    assert_eq!(
        kv.usage(&one).unwrap(),
        Usage {
            bytes: 2 + ENTRY_OVERHEAD,
            keys: 1
        }
    );
    let shared = Namespace::App { app: "ab".into() };
    assert!(kv
        .compare_and_swap(&shared, b"slot", None, Some(b"me"), &q)
        .unwrap());
    assert!(!kv
        .compare_and_swap(&shared, b"slot", None, Some(b"you"), &q)
        .unwrap());
    assert!(!kv
        .compare_and_swap(&shared, b"slot", Some(b"you"), None, &q)
        .unwrap());
    assert_eq!(
        kv.get(&shared, b"slot").unwrap().as_deref(),
        Some(&b"me"[..])
    );
    assert_eq!(kv.increment(&shared, b"n", 3, &q).unwrap(), 3);
    assert_eq!(kv.increment(&shared, b"n", -5, &q).unwrap(), -2);
    assert_eq!(
        kv.list_keys(&shared, b"", None, 10).unwrap(),
        vec![b"n".to_vec(), b"slot".to_vec()]
    );
    assert_eq!(
        kv.list_keys(&shared, b"", Some(b"n"), 10).unwrap(),
        vec![b"slot".to_vec()]
    );
    assert!(kv
        .compare_and_swap(&shared, b"slot", Some(b"me"), None, &q)
        .unwrap());
    assert_eq!(kv.get(&shared, b"slot").unwrap(), None);
}

fn kv_namespaces_are_apart_and_quota_holds(engine: Engine) {
    namespaces_are_apart_and_quota_holds(&StoreKv::new(engine.open()));
}

/// Twenty bookers of one slot, spread over every store the engine allows
/// at once: exactly one compare-and-swap wins, and writers together never
/// overrun a quota; the usage a fresh handle reads is what the writes left.
fn kv_one_booker_wins_and_writers_share_the_quota(engine: Engine) {
    let handles = if engine.shared() { 2 } else { 1 };
    let kvs: Vec<Arc<StoreKv>> = (0..handles)
        .map(|_| Arc::new(StoreKv::new(engine.open())))
        .collect();
    let slot = Namespace::App {
        app: "hospital".into(),
    };
    let user = Namespace::User {
        app: "app".into(),
        user: "u".into(),
    };
    let q = Quota {
        total_bytes: 10 * (10 + ENTRY_OVERHEAD),
        max_key_bytes: 8,
        max_value_bytes: 16,
    };
    let (winners, written) = std::thread::scope(|s| {
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let (kv, slot, user) = (kvs[i % handles].clone(), slot.clone(), user.clone());
                s.spawn(move || {
                    let me = format!("patient{i}");
                    let won = kv
                        .compare_and_swap(&slot, b"09:00", None, Some(me.as_bytes()), &q)
                        .unwrap();
                    // Each entry is 2 key bytes + 8 value bytes (and the
                    // overhead every entry counts).
                    let wrote = kv.set(&user, format!("{i:02}").as_bytes(), &[7; 8], &q);
                    assert!(
                        matches!(wrote, Ok(()) | Err(KvError::QuotaExceeded(_))),
                        "{wrote:?}"
                    );
                    (usize::from(won), usize::from(wrote.is_ok()))
                })
            })
            .collect();
        tasks
            .into_iter()
            .map(|t| t.join().unwrap())
            .fold((0, 0), |(a, b), (w, k)| (a + w, b + k))
    });
    assert_eq!(winners, 1, "exactly one booker gets the slot");
    assert_eq!(written, 10, "exactly the quota's worth of writes succeed");
    let first = kvs[0].list_keys(&user, b"", None, 1).unwrap().remove(0);
    assert!(kvs[handles - 1].delete(&user, &first).unwrap());
    drop(kvs);
    let kv = StoreKv::new(engine.open());
    assert_eq!(
        kv.usage(&user).unwrap(),
        Usage {
            bytes: 9 * (10 + ENTRY_OVERHEAD),
            keys: 9
        }
    );
    kv.set(&user, b"zz", &[1; 8], &q).unwrap();
    assert!(matches!(
        kv.set(&user, b"yy", &[1; 8], &q),
        Err(KvError::QuotaExceeded(_))
    ));
}

/// Values longer than the store keeps in one entry: whole when read, on
/// this handle and a fresh one, counted by their length, replaced and
/// compared whole, and gone with nothing left when deleted.
fn kv_long_values_are_kept_whole(engine: Engine) {
    let q = Quota::default();
    let ns = Namespace::User {
        app: "wallet".into(),
        user: "u".into(),
    };
    let long =
        |len: usize, seed: u8| -> Vec<u8> { (0..len).map(|i| (i % 253) as u8 ^ seed).collect() };
    let (a, b) = (long(q.max_value_bytes, 1), long(70_001, 2));
    let store = engine.open();
    let kv = StoreKv::new(store.clone());
    kv.set(&ns, b"scan", &a, &q).unwrap();
    assert_eq!(kv.get(&ns, b"scan").unwrap().as_ref(), Some(&a));
    assert_eq!(
        kv.list_keys(&ns, b"", None, 10).unwrap(),
        vec![b"scan".to_vec()]
    );
    assert_eq!(
        kv.usage(&ns).unwrap(),
        Usage {
            bytes: 4 + a.len() as u64 + ENTRY_OVERHEAD,
            keys: 1
        }
    );
    assert!(!kv
        .compare_and_swap(&ns, b"scan", Some(&b), Some(b"x"), &q)
        .unwrap());
    assert!(kv
        .compare_and_swap(&ns, b"scan", Some(&a), Some(&b), &q)
        .unwrap());
    drop(kv);
    if !engine.shared() {
        drop(store);
    }
    let fresh = engine.open();
    let kv = StoreKv::new(fresh.clone());
    assert_eq!(kv.get(&ns, b"scan").unwrap().as_ref(), Some(&b));
    assert_eq!(
        kv.usage(&ns).unwrap().bytes,
        4 + b.len() as u64 + ENTRY_OVERHEAD
    );
    kv.set(&ns, b"scan", b"short", &q).unwrap();
    assert_eq!(
        kv.get(&ns, b"scan").unwrap().as_deref(),
        Some(&b"short"[..])
    );
    kv.set(&ns, b"scan", &a, &q).unwrap();
    assert!(kv.delete(&ns, b"scan").unwrap());
    assert_eq!(kv.get(&ns, b"scan").unwrap(), None);
    assert_eq!(kv.usage(&ns).unwrap(), Usage { bytes: 0, keys: 0 });
    let left: Vec<_> = fresh
        .scan(Tree::AppData, b"", None, usize::MAX, false)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| !k.starts_with(b"Q"))
        .collect();
    assert!(left.is_empty(), "{} entries left", left.len());
}

#[test]
fn memory_kv_namespaces_are_apart_and_quota_holds() {
    namespaces_are_apart_and_quota_holds(&MemoryKv::new());
}

// What only stores several processes share must do (sled's transactions
// cannot scan: its store belongs to one process, which orders appends with
// its own locks).
#[test]
fn memory_appends_after_the_last_key_never_collide() {
    appends_after_the_last_key_never_collide(Engine::memory());
}

/// A database left at schema version 1 (before the rate windows) is
/// brought to the current version by the next host that connects, and
/// keeps what it held.
#[test]
fn postgres_an_older_schema_is_migrated_and_keeps_its_records() {
    let url = postgres::shared().database();
    let store = Store::connect(&url, 2).unwrap();
    put(&store, Tree::Users, b"u1", b"alice");
    drop(store);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sql = |statement: &'static str| {
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            let driver = tokio::spawn(connection);
            let rows = client.simple_query(statement).await.unwrap();
            drop(client);
            let _ = driver.await;
            rows.iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(String::from),
                    _ => None,
                })
                .collect::<Vec<_>>()
        })
    };
    sql("DROP TABLE superapp_rate_windows; UPDATE superapp_schema SET version = 1");
    assert_eq!(sql("SELECT version FROM superapp_schema"), ["1"]);

    let store = Store::connect(&url, 2).unwrap();
    assert_eq!(
        sql("SELECT version FROM superapp_schema"),
        [superapp_store::POSTGRES_SCHEMA_VERSION.to_string()]
    );
    put(&store, Tree::Windows, b"w", b"1");
    assert_eq!(store.get_raw(Tree::Windows, b"w").unwrap().unwrap(), b"1");
    assert_eq!(
        store.get_raw(Tree::Users, b"u1").unwrap().unwrap(),
        b"alice"
    );
}

#[test]
fn postgres_appends_after_the_last_key_never_collide() {
    appends_after_the_last_key_never_collide(Engine::postgres());
}

/// Each contract test, once per engine.
macro_rules! engines {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(#[test] fn $test() { super::$test(super::Engine::memory()) })*
        }
        mod sled {
            $(#[test] fn $test() { super::$test(super::Engine::sled()) })*
        }
        mod postgres_engine {
            $(#[test] fn $test() { super::$test(super::Engine::postgres()) })*
        }
    };
}

engines!(
    every_tree_keeps_what_was_written,
    scans_inside_a_transaction_see_its_writes,
    transactions_writing_the_same_rows_in_opposite_orders_all_commit,
    scans_keep_to_the_prefix_cursor_limit_and_order,
    transactions_are_all_or_nothing,
    concurrent_transactions_lose_no_update,
    a_store_of_a_newer_format_is_refused,
    kv_namespaces_are_apart_and_quota_holds,
    kv_one_booker_wins_and_writers_share_the_quota,
    kv_long_values_are_kept_whole,
);
