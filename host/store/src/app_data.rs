//! The storage capabilities' key-value namespaces on the durable store.
//! One tree holds every namespace's entries, each under the namespace's
//! prefix. A write of a short value is one single-key write, no
//! transaction: sled seals its log on every transaction, which cost an
//! extra disk write per event.
//!
//! A value of at most [`CHUNK`] bytes is kept in its entry; a longer one in
//! chunks of that size under keys of their own, its entry holding only its
//! length and which chunks are its. sled writes a tree node of more than a
//! quarter of a log segment (128 KiB) to a file of its own, and removes a
//! file a rewrite replaced only once the log segment holding the rewrite is
//! full: one user rewriting a 1 MiB value in a loop grew a store by
//! gigabytes. A node holds at most 17 entries, so with values of at most
//! 4 KiB (and keys of at most 1 KiB) no node of app data reaches that size.
//! Chunks are named by a generation never used before for any value, and
//! are written before the entry that names them and removed only after it
//! no longer does: a reader (which reads the entry, then its chunks)
//! notices a value replaced in between and reads again. On a shared store
//! the whole write is one transaction. On sled it is not (sled's
//! transactions hold every other reader and writer of the store while they
//! write, milliseconds for a megabyte): its single-key writes are recovered
//! in order, so the entry is never ahead of its chunks, and an intent
//! written first and removed last tells the next open which chunks a
//! stopped process may have left behind.
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::kv::{
    check_write, not_a_counter, parse_counter, usage_after, KvBackend, KvError, Namespace, Quota,
    Usage, ENTRY_OVERHEAD,
};
use crate::{Abort, Entry, Store, StoreError, Tree, Txn};

/// Namespaces whose usage is kept in memory; past this many, those no
/// writer holds are forgotten (and counted again when next used).
const MAX_COUNTED: usize = 65_536;

/// The longest value kept in its entry, and the size of a longer one's
/// chunks.
pub const CHUNK: usize = 4 << 10;

/// Where entries are: `v` ‖ namespace ‖ key. Format 2 kept every value
/// whole under `d` ‖ namespace ‖ key; [`move_whole_values`] moves them.
const ENTRY: u8 = b'v';
const WHOLE: u8 = b'd';
/// Where chunks are: `c` ‖ length of what follows the entry key's first
/// byte ‖ that ‖ generation ‖ chunk index.
const CHUNKS: u8 = b'c';
/// Where a long value's write outside a transaction keeps its intent.
const INTENT: u8 = b'i';

/// An entry's first byte: the value follows, or a chunked value's length,
/// chunk count and generation do.
const INLINE: u8 = 0;
const CHUNKED: u8 = 1;

/// How often a reader reads a chunked value again that was replaced while
/// it read it before it gives up.
const READ_ATTEMPTS: usize = 64;

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
    let mut k = vec![ENTRY];
    k.extend(namespace_bytes(ns));
    k
}

fn data_key(ns: &Namespace, key: &[u8]) -> Vec<u8> {
    let mut k = data_prefix(ns);
    k.extend_from_slice(key);
    k
}

/// The prefix of the chunks of one generation of the value at `entry`.
/// The length prefix keeps one entry's chunks apart from those of an entry
/// whose key it begins.
fn chunk_prefix(entry: &[u8], generation: u64) -> Vec<u8> {
    let named = &entry[1..];
    let mut k = Vec::with_capacity(named.len() + 13);
    k.push(CHUNKS);
    k.extend_from_slice(&(named.len() as u32).to_be_bytes());
    k.extend_from_slice(named);
    k.extend_from_slice(&generation.to_be_bytes());
    k
}

fn chunk_key(prefix: &[u8], index: u32) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// A chunk generation: counted up from a random start, so that what
/// another process (earlier, or beside this one on a shared store) counts
/// from is 2^64 apart on average, and no clock step can bring one back.
/// [`Writer::replace`] never takes the generation the value it replaces
/// has, which is the one reuse that would matter.
fn next_generation() -> u64 {
    static NEXT: OnceLock<AtomicU64> = OnceLock::new();
    NEXT.get_or_init(|| {
        let mut seed = [0u8; 8];
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed).is_err() {
            // No system randomness: the clock's nanoseconds, as a start.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            seed = (now as u64).to_be_bytes();
        }
        AtomicU64::new(u64::from_be_bytes(seed))
    })
    .fetch_add(1, Ordering::Relaxed)
}

/// What an entry says of its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Inline,
    Chunked { chunks: u32, generation: u64 },
}

/// A value's length and where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    len: usize,
    layout: Layout,
}

fn corrupt(why: &str) -> StoreError {
    StoreError::Corrupt(format!("app data: {why}"))
}

fn decode_head(entry: &[u8]) -> Result<Head, StoreError> {
    match entry.split_first() {
        Some((&INLINE, value)) => Ok(Head {
            len: value.len(),
            layout: Layout::Inline,
        }),
        Some((&CHUNKED, rest)) => {
            let parse = || {
                let (len, rest) = rest.split_first_chunk::<8>()?;
                let (chunks, rest) = rest.split_first_chunk::<4>()?;
                let generation: [u8; 8] = rest.try_into().ok()?;
                let len = usize::try_from(u64::from_be_bytes(*len)).ok()?;
                let chunks = u32::from_be_bytes(*chunks);
                (len.div_ceil(CHUNK) == chunks as usize && len > CHUNK).then_some(Head {
                    len,
                    layout: Layout::Chunked {
                        chunks,
                        generation: u64::from_be_bytes(generation),
                    },
                })
            };
            parse().ok_or_else(|| corrupt("a chunked value's entry is malformed"))
        }
        _ => Err(corrupt("an entry has an unknown layout")),
    }
}

fn encode_chunked(len: usize, chunks: u32, generation: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(21);
    out.push(CHUNKED);
    out.extend_from_slice(&(len as u64).to_be_bytes());
    out.extend_from_slice(&chunks.to_be_bytes());
    out.extend_from_slice(&generation.to_be_bytes());
    out
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
fn count(entries: &[Entry], prefix: &[u8]) -> Result<Usage, StoreError> {
    entries
        .iter()
        .try_fold(Usage { bytes: 0, keys: 0 }, |u, (k, v)| {
            let key = k.len() - prefix.len();
            Ok(Usage {
                bytes: u.bytes + (key + decode_head(v)?.len) as u64 + ENTRY_OVERHEAD,
                keys: u.keys + 1,
            })
        })
}

/// What a write goes through: the store itself (single-key writes, on a
/// store this process owns) or a transaction (on a shared one, and to move
/// the values of an earlier format).
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

    /// Every entry under `prefix`, at most `limit`. Only transactions of a
    /// shared store read chunks (sled's cannot scan): on sled, values are
    /// read outside the writer's transaction.
    fn scan(&self, prefix: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError> {
        match self {
            Writer::Store(s) => s.scan(Tree::AppData, prefix, None, limit, false),
            Writer::Txn(t) => t.scan(Tree::AppData, prefix, None, limit, false),
        }
    }

    /// The value at `entry` (an entry's key) and its head.
    fn read(&self, entry: &[u8]) -> Result<Option<(Vec<u8>, Head)>, StoreError> {
        let mut before: Option<Vec<u8>> = None;
        for _ in 0..READ_ATTEMPTS {
            let Some(mut stored) = self.get(entry)? else {
                return Ok(None);
            };
            let head = decode_head(&stored)?;
            let Layout::Chunked { chunks, generation } = head.layout else {
                stored.remove(0);
                return Ok(Some((stored, head)));
            };
            if let Some(value) = self.chunks(entry, head.len, chunks, generation)? {
                return Ok(Some((value, head)));
            }
            // Chunks that do not match an entry read twice alike are lost,
            // not replaced meanwhile (a generation is never used again).
            if before.as_deref() == Some(&stored[..]) {
                return Err(corrupt("a value's chunks are missing"));
            }
            before = Some(stored);
        }
        Err(StoreError::Backend(
            "a value kept changing while it was read".into(),
        ))
    }

    /// A chunked value, or `None` if its chunks are not all there (being
    /// removed by the writer that replaced it).
    fn chunks(
        &self,
        entry: &[u8],
        len: usize,
        chunks: u32,
        generation: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let prefix = chunk_prefix(entry, generation);
        let found = self.scan(&prefix, chunks as usize)?;
        if found.len() != chunks as usize {
            return Ok(None);
        }
        let mut value = Vec::with_capacity(len);
        for (index, (key, chunk)) in (0u32..).zip(&found) {
            if key[prefix.len()..] != index.to_be_bytes() {
                return Ok(None);
            }
            value.extend_from_slice(chunk);
        }
        Ok((value.len() == len).then_some(value))
    }

    /// Put `new` (or nothing) at `entry` in place of the value `old`
    /// describes: one single-key write for short values; for long ones, on
    /// the store itself, ordered single-key writes under an intent; in a
    /// transaction, all of it there.
    fn replace(
        &self,
        entry: &[u8],
        old: Option<Head>,
        new: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let old_chunks = match old.map(|h| h.layout) {
            Some(Layout::Chunked { chunks, generation }) => Some((chunks, generation)),
            _ => None,
        };
        let long = new.is_some_and(|v| v.len() > CHUNK);
        let mut generation = next_generation();
        while old_chunks.is_some_and(|(_, old)| old == generation) {
            generation = next_generation();
        }
        match self {
            // Not in a transaction: sled's holds every other reader and
            // writer of the whole store while it writes (milliseconds for a
            // megabyte). The writes go in an order safe at every step
            // (sled recovers a prefix of them), under an intent that a
            // restart finishes ([`finish_interrupted_writes`]).
            Writer::Store(store) if old_chunks.is_some() || long => {
                let intent = intent_key(entry);
                // A write of this key that failed after its entry left its
                // intent: finish it first, or its chunks would be named by
                // nothing once this write's intent takes its place.
                if let Some(left) = store.get_raw(Tree::AppData, &intent)? {
                    if let Err(e) = finish_intent(store, &intent, &left) {
                        tracing::warn!(error = %e, "cannot finish an earlier app data write; its chunks stay as garbage");
                    }
                }
                let generations = [old_chunks.map(|(_, g)| g), long.then_some(generation)];
                store.put_raw(Tree::AppData, &intent, &encode_intent(generations))?;
                self.put_value(entry, old_chunks, new, generation)?;
                if let Err(e) = store.remove(Tree::AppData, &intent) {
                    written_but(e, "its intent");
                }
                Ok(())
            }
            _ => self.put_value(entry, old_chunks, new, generation),
        }
    }

    /// Write `new` at `entry` (long values in chunks of `generation`), then
    /// remove the old value's chunks: the entry never names chunks that
    /// are not all written, and chunks go only once no entry names them.
    fn put_value(
        &self,
        entry: &[u8],
        old_chunks: Option<(u32, u64)>,
        new: Option<&[u8]>,
        generation: u64,
    ) -> Result<(), StoreError> {
        let stored = match new {
            None => None,
            Some(value) if value.len() <= CHUNK => {
                let mut stored = Vec::with_capacity(value.len() + 1);
                stored.push(INLINE);
                stored.extend_from_slice(value);
                Some(stored)
            }
            Some(value) => {
                let prefix = chunk_prefix(entry, generation);
                let mut chunks = 0;
                for (index, chunk) in (0u32..).zip(value.chunks(CHUNK)) {
                    self.set(&chunk_key(&prefix, index), Some(chunk))?;
                    chunks = index + 1;
                }
                Some(encode_chunked(value.len(), chunks, generation))
            }
        };
        self.set(entry, stored.as_deref())?;
        if let Some((chunks, generation)) = old_chunks {
            let prefix = chunk_prefix(entry, generation);
            for index in 0..chunks {
                if let Err(e) = self.set(&chunk_key(&prefix, index), None) {
                    return match self {
                        // All or nothing: the transaction fails whole.
                        Writer::Txn(_) => Err(e),
                        // The new value is in place: the write happened.
                        // Its intent stays, and what it names is removed
                        // at the next write of this key or the next open.
                        Writer::Store(_) => {
                            written_but(e, "the chunks it replaced");
                            Ok(())
                        }
                    };
                }
            }
        }
        Ok(())
    }
}

/// A long value's write outside a transaction failed after its entry was
/// written: the value is in place, only tidying up is left (to its intent).
fn written_but(e: StoreError, tidying: &str) {
    tracing::warn!(
        error = %e,
        "an app data value is written; removing {tidying} failed and is left to the next write of its key or the next start"
    );
}

/// Where a write of a long value outside a transaction records what it is
/// doing until it is done: `i` ‖ the entry's key after its first byte.
fn intent_key(entry: &[u8]) -> Vec<u8> {
    let mut k = entry.to_vec();
    k[0] = INTENT;
    k
}

/// The chunk generations a write may leave behind: the value's old one and
/// its new one (a flag byte, then each present one).
fn encode_intent(generations: [Option<u64>; 2]) -> Vec<u8> {
    let mut out = vec![0u8];
    for (bit, generation) in generations.iter().enumerate() {
        if let Some(g) = generation {
            out[0] |= 1 << bit;
            out.extend_from_slice(&g.to_be_bytes());
        }
    }
    out
}

fn decode_intent(value: &[u8]) -> Result<Vec<u64>, StoreError> {
    let malformed = || corrupt("a write's intent is malformed");
    let (&flags, mut rest) = value.split_first().ok_or_else(malformed)?;
    let mut generations = Vec::new();
    for bit in 0..2 {
        if flags & (1 << bit) != 0 {
            let (g, after) = rest.split_first_chunk::<8>().ok_or_else(malformed)?;
            generations.push(u64::from_be_bytes(*g));
            rest = after;
        }
    }
    Ok(generations)
}

/// Finish the writes of long values a stopped process left half done: of
/// the generations each intent names, remove the chunks of every one its
/// entry does not name (the new value's, if the entry was not written yet;
/// the old value's, if it was), then the intent. Run at open, before any
/// write, on a store this process owns, and after a restore (a backup
/// taken in the middle of such a write holds its intent). How many were
/// finished; one that cannot be (damaged) is logged and left.
pub(crate) fn finish_interrupted_writes(store: &Store) -> Result<usize, StoreError> {
    let intents = store.scan(Tree::AppData, &[INTENT], None, usize::MAX, false)?;
    let mut finished = 0;
    for (key, value) in &intents {
        // One that cannot be finished (damaged) stays; the others go on.
        match finish_intent(store, key, value) {
            Ok(()) => finished += 1,
            Err(e) => {
                tracing::warn!(error = %e, "cannot finish an app data write a stop cut short; its chunks stay as garbage")
            }
        }
    }
    Ok(finished)
}

/// Finish one write's intent (`key`, `value`): remove the chunks of each
/// generation it names that its entry does not, then the intent.
fn finish_intent(store: &Store, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
    let mut entry = key.to_vec();
    entry[0] = ENTRY;
    let named = match store.get_raw(Tree::AppData, &entry)? {
        Some(stored) => match decode_head(&stored)?.layout {
            Layout::Chunked { generation, .. } => Some(generation),
            Layout::Inline => None,
        },
        None => None,
    };
    for generation in decode_intent(value)? {
        if named == Some(generation) {
            continue;
        }
        let prefix = chunk_prefix(&entry, generation);
        for (chunk, _) in store.scan(Tree::AppData, &prefix, None, usize::MAX, false)? {
            store.remove(Tree::AppData, &chunk)?;
        }
    }
    store.remove(Tree::AppData, key)
}

/// Move the values format 2 kept whole in their entries to entries of
/// format 3 (chunked if long), a few at a time, each few in one
/// transaction that reads them again: a move cut short is taken up where it
/// stopped, and hosts opening a shared store at once do not move one twice.
/// How many moved.
pub(crate) fn move_whole_values(store: &Store) -> Result<u64, StoreError> {
    let mut moved = 0;
    loop {
        let page = store.scan(Tree::AppData, &[WHOLE], None, 16, false)?;
        if page.is_empty() {
            return Ok(moved);
        }
        moved += store
            .transact(&[Tree::AppData], |t| {
                let mut moved = 0;
                for (whole, _) in &page {
                    let Some(value) = t.get(Tree::AppData, whole)? else {
                        continue;
                    };
                    let mut entry = whole.clone();
                    entry[0] = ENTRY;
                    // An entry of this format already there was written
                    // after the move began (by a node of this version
                    // beside one of the earlier): it is the newer value.
                    if t.get(Tree::AppData, &entry)?.is_none() {
                        Writer::Txn(t).put_value(&entry, None, Some(&value), next_generation())?;
                    }
                    t.delete(Tree::AppData, whole)?;
                    moved += 1;
                }
                Ok::<_, Abort<()>>(moved)
            })
            .map_err(Abort::into_store)?;
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
                count(&entries, &prefix).map_err(store_error)?
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
                    )?,
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

    /// Replace the value `old` describes at `key` with `new` (or remove it,
    /// `new == None`) within the quota, updating `usage`.
    fn replace(
        w: &Writer,
        usage: &mut Usage,
        ns: &Namespace,
        key: &[u8],
        old: Option<Head>,
        new: Option<&[u8]>,
        quota: &Quota,
    ) -> Result<(), KvError> {
        let next = usage_after(*usage, key, old.map(|h| h.len), new.map(<[u8]>::len), quota)?;
        w.replace(&data_key(ns, key), old, new)
            .map_err(store_error)?;
        *usage = next;
        Ok(())
    }

    /// The entry at `key` as stored, and its head, without reading its
    /// chunks.
    fn entry(w: &Writer, ns: &Namespace, key: &[u8]) -> Result<Option<(Vec<u8>, Head)>, KvError> {
        let Some(stored) = w.get(&data_key(ns, key)).map_err(store_error)? else {
            return Ok(None);
        };
        let head = decode_head(&stored).map_err(store_error)?;
        Ok(Some((stored, head)))
    }

    /// The value of an entry read by a writer of its namespace, whom
    /// nobody else's write can overtake.
    fn value(
        w: &Writer,
        ns: &Namespace,
        key: &[u8],
        mut stored: Vec<u8>,
        head: Head,
    ) -> Result<Vec<u8>, KvError> {
        let Layout::Chunked { chunks, generation } = head.layout else {
            stored.remove(0);
            return Ok(stored);
        };
        w.chunks(&data_key(ns, key), head.len, chunks, generation)
            .map_err(store_error)?
            .ok_or_else(|| store_error(corrupt("a value's chunks are missing")))
    }
}

impl KvBackend for StoreKv {
    fn get(&self, ns: &Namespace, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        let value = Writer::Store(&self.store).read(&data_key(ns, key));
        Ok(value.map_err(store_error)?.map(|(value, _)| value))
    }

    fn set(&self, ns: &Namespace, key: &[u8], value: &[u8], quota: &Quota) -> Result<(), KvError> {
        check_write(key, Some(value), quota)?;
        self.locked(ns, |w, usage| {
            let old = StoreKv::entry(w, ns, key)?.map(|(_, head)| head);
            StoreKv::replace(w, usage, ns, key, old, Some(value), quota)
        })
    }

    fn delete(&self, ns: &Namespace, key: &[u8]) -> Result<bool, KvError> {
        self.locked(ns, |w, usage| {
            let Some((_, old)) = StoreKv::entry(w, ns, key)? else {
                return Ok(false);
            };
            StoreKv::replace(w, usage, ns, key, Some(old), None, &Quota::default())?;
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
            // A value of another length differs without reading it: a
            // swap expecting nothing or a short value never makes the store
            // read a long one.
            let old = match (StoreKv::entry(w, ns, key)?, expected) {
                (None, None) => None,
                (Some((stored, head)), Some(expected)) if head.len == expected.len() => {
                    if StoreKv::value(w, ns, key, stored, head)? != expected {
                        return Ok(false);
                    }
                    Some(head)
                }
                _ => return Ok(false),
            };
            StoreKv::replace(w, usage, ns, key, old, new, quota)?;
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
            // A counter is short: a chunked value is not one, and is not
            // read to find that out.
            let (current, old) = match StoreKv::entry(w, ns, key)? {
                None => (None, None),
                Some((_, head)) if head.layout != Layout::Inline => return Err(not_a_counter()),
                Some((stored, head)) => {
                    (Some(StoreKv::value(w, ns, key, stored, head)?), Some(head))
                }
            };
            let next = parse_counter(current.as_deref())?
                .checked_add(delta)
                .ok_or_else(|| KvError::Invalid("counter would overflow".into()))?;
            let text = next.to_string();
            StoreKv::replace(w, usage, ns, key, old, Some(text.as_bytes()), quota)?;
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
    use crate::{MemoryBackend, MAX_KEY_BYTES};

    fn user() -> Namespace {
        Namespace::User {
            app: "app".into(),
            user: "u".into(),
        }
    }

    /// `len` bytes no other call with another `seed` returns.
    fn long(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
    }

    fn chunk_entries(store: &Store) -> usize {
        store
            .scan(Tree::AppData, &[CHUNKS], None, usize::MAX, false)
            .unwrap()
            .len()
    }

    /// One user rewriting a 1 MiB value: on sled, no node of app data is
    /// large enough to become a file of its own, so no file is left
    /// behind for sled to remove later (it grew a store by gigabytes).
    #[test]
    fn rewriting_a_long_value_makes_no_blob_files() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = || std::fs::read_dir(dir.path().join("blobs")).map_or(0, |d| d.count());
        let store = Store::open(dir.path()).unwrap();
        let kv = StoreKv::new(store.clone());
        let ns = user();
        for round in 0..40u8 {
            kv.set(&ns, b"big", &long(1 << 20, round), &Quota::default())
                .unwrap();
            store.backend.flush().unwrap();
        }
        assert_eq!(blobs(), 0, "blob files for app data");
        assert_eq!(kv.get(&ns, b"big").unwrap(), Some(long(1 << 20, 39)));
        assert_eq!(chunk_entries(&store), 256, "one value's chunks, no more");
        let intents = store.scan(Tree::AppData, &[INTENT], None, 10, false);
        assert!(intents.unwrap().is_empty(), "an intent left behind");
        drop((kv, store));
        let kv = StoreKv::new(Store::open(dir.path()).unwrap());
        assert_eq!(kv.get(&ns, b"big").unwrap(), Some(long(1 << 20, 39)));
        assert_eq!(kv.usage(&ns).unwrap().bytes, 3 + (1 << 20) + ENTRY_OVERHEAD);
    }

    /// A process stopped in the middle of writing a long value, before or
    /// after its entry: the next open removes the chunks no entry names and
    /// the intent, and the value read is whole (the old one, or the new).
    #[test]
    fn a_long_write_a_stop_cut_short_is_finished_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let ns = user();
        let (old, new) = (long(3 * CHUNK, 1), long(2 * CHUNK + 1, 2));
        let entry = data_key(&ns, b"k");
        let leftover = |store: &Store, generation: u64, value: &[u8]| {
            let prefix = chunk_prefix(&entry, generation);
            for (index, chunk) in (0u32..).zip(value.chunks(CHUNK)) {
                store
                    .put_raw(Tree::AppData, &chunk_key(&prefix, index), chunk)
                    .unwrap();
            }
        };
        let named = |store: &Store| {
            let stored = store.get_raw(Tree::AppData, &entry).unwrap().unwrap();
            match decode_head(&stored).unwrap().layout {
                Layout::Chunked { generation, .. } => generation,
                Layout::Inline => panic!("not chunked"),
            }
        };
        {
            let store = Store::open(dir.path()).unwrap();
            StoreKv::new(store.clone())
                .set(&ns, b"k", &old, &Quota::default())
                .unwrap();
            // Stopped before the entry: the intent and part of the new
            // value's chunks.
            let current = named(&store);
            let intent = encode_intent([Some(current), Some(current + 1_000)]);
            store
                .put_raw(Tree::AppData, &intent_key(&entry), &intent)
                .unwrap();
            leftover(&store, current + 1_000, &new[..CHUNK + 5]);
            store.backend.flush().unwrap();
        }
        {
            let store = Store::open(dir.path()).unwrap();
            let kv = StoreKv::new(store.clone());
            assert_eq!(kv.get(&ns, b"k").unwrap(), Some(old.clone()));
            assert_eq!(chunk_entries(&store), 3, "the old value's chunks only");
            // Stopped after the entry: the old value's chunks still there.
            kv.set(&ns, b"k", &new, &Quota::default()).unwrap();
            let intent = encode_intent([Some(7), Some(named(&store))]);
            store
                .put_raw(Tree::AppData, &intent_key(&entry), &intent)
                .unwrap();
            leftover(&store, 7, &old);
            store.backend.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let kv = StoreKv::new(store.clone());
        assert_eq!(kv.get(&ns, b"k").unwrap(), Some(new));
        assert_eq!(chunk_entries(&store), 3, "the new value's chunks only");
        let intents = store.scan(Tree::AppData, &[INTENT], None, 10, false);
        assert!(intents.unwrap().is_empty());
    }

    /// A long write whose tidying up fails after its entry is written has
    /// happened (it says so, and reads back); what it left, its intent
    /// names, and the next write of the key removes it, with no chunk left
    /// that nothing names.
    #[test]
    fn a_write_that_fails_after_its_entry_is_done_and_tidied_by_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let (store, faults) = crate::faults::FailingWrites::open(dir.path()).unwrap();
        let kv = StoreKv::new(store.clone());
        let ns = user();
        let (first, second) = (long(3 * CHUNK, 1), long(5 * CHUNK, 2));
        kv.set(&ns, b"k", &first, &Quota::default()).unwrap();
        faults.fail_removals(true);
        kv.set(&ns, b"k", &second, &Quota::default())
            .expect("the value is in place: the write happened");
        faults.fail_removals(false);
        assert_eq!(kv.get(&ns, b"k").unwrap(), Some(second.clone()));
        assert_eq!(chunk_entries(&store), 3 + 5, "the replaced chunks stay");
        assert_eq!(
            store
                .scan(Tree::AppData, &[INTENT], None, 10, false)
                .unwrap()
                .len(),
            1
        );
        // The next write of the key (a short value) finishes that intent
        // before it writes its own.
        kv.set(&ns, b"k", b"short", &Quota::default()).unwrap();
        assert_eq!(kv.get(&ns, b"k").unwrap(), Some(b"short".to_vec()));
        assert_eq!(chunk_entries(&store), 0, "chunks no entry names");
        assert!(store
            .scan(Tree::AppData, &[INTENT], None, 10, false)
            .unwrap()
            .is_empty());
        assert_eq!(kv.usage(&ns).unwrap().bytes, 1 + 5 + ENTRY_OVERHEAD);
    }

    /// A backup taken between the ordered writes of a long value holds
    /// its intent and chunks nothing names: the restore finishes it.
    #[test]
    fn a_backup_caught_in_a_long_write_is_restored_without_its_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let kv = StoreKv::new(store.clone());
        let ns = user();
        let value = long(2 * CHUNK + 3, 4);
        kv.set(&ns, b"k", &value, &Quota::default()).unwrap();
        // As the snapshot would find a write of a new value halfway.
        let entry = data_key(&ns, b"k");
        store
            .put_raw(
                Tree::AppData,
                &intent_key(&entry),
                &encode_intent([None, Some(99)]),
            )
            .unwrap();
        store
            .put_raw(
                Tree::AppData,
                &chunk_key(&chunk_prefix(&entry, 99), 0),
                &[0; CHUNK],
            )
            .unwrap();
        let mut copy = Vec::new();
        store.snapshot(&mut copy).unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        for target in [
            Store::open(elsewhere.path()).unwrap(),
            Store::with_backend(Arc::new(MemoryBackend::new())).unwrap(),
        ] {
            target.restore(&copy[..]).unwrap();
            assert_eq!(
                StoreKv::new(target.clone()).get(&ns, b"k").unwrap(),
                Some(value.clone())
            );
            assert_eq!(chunk_entries(&target), 3, "only the value's chunks");
            assert!(target
                .scan(Tree::AppData, &[INTENT], None, 10, false)
                .unwrap()
                .is_empty());
        }
    }

    /// Namespaces filled with the longest keys allowed: no node of app
    /// data (an index node holds up to 257 keys) becomes a blob file. With
    /// keys of 1 KiB, as once allowed, the same made hundreds.
    #[test]
    fn filling_namespaces_with_the_longest_keys_makes_no_blob_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let kv = StoreKv::new(store.clone());
        let q = Quota::default();
        let refused = kv.set(&user(), &[b'k'; MAX_KEY_BYTES + 1], b"", &q);
        assert!(matches!(refused, Err(KvError::Invalid(_))), "{refused:?}");
        for u in 0..4 {
            let ns = Namespace::User {
                app: "a-rather-long-app-id.example.publisher".into(),
                user: format!("a-pseudonymous-user-id-of-some-length-{u}"),
            };
            for i in 0..1700u32 {
                let mut key = vec![b'f'; MAX_KEY_BYTES - 4];
                key.extend_from_slice(&i.to_be_bytes());
                kv.set(&ns, &key, b"v", &q).unwrap();
            }
        }
        store.backend.flush().unwrap();
        let blobs = std::fs::read_dir(dir.path().join("blobs")).map_or(0, |d| d.count());
        assert_eq!(blobs, 0);
    }

    /// Readers of a value a writer keeps replacing (long, longer, short,
    /// gone) see one whole value each time, never a mix or a gap.
    #[test]
    fn readers_see_whole_values_while_a_writer_replaces_them() {
        let dir = tempfile::tempdir().unwrap();
        let kv = StoreKv::new(Store::open(dir.path()).unwrap());
        let ns = user();
        let values = [
            long(300_000, 1),
            long(200_000, 2),
            b"short".to_vec(),
            long(CHUNK + 1, 3),
        ];
        kv.set(&ns, b"k", &values[0], &Quota::default()).unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let mut reads = 0;
                        while !done.load(Ordering::Relaxed) {
                            let read = kv.get(&ns, b"k").unwrap();
                            let whole = read.as_ref().is_none_or(|v| values.contains(v));
                            assert!(whole, "a read of {:?} bytes", read.map(|v| v.len()));
                            reads += 1;
                        }
                        reads
                    })
                })
                .collect();
            for round in 0..200 {
                match round % 5 {
                    4 => assert!(kv.delete(&ns, b"k").unwrap()),
                    i => kv.set(&ns, b"k", &values[i], &Quota::default()).unwrap(),
                }
            }
            done.store(true, Ordering::Relaxed);
            for r in readers {
                assert!(r.join().unwrap() > 0);
            }
        });
    }

    /// A store of format 2 kept values whole under the old prefix: opening
    /// it moves each (chunking the long), and a copy of one restored into
    /// a new store is moved the same way.
    #[test]
    fn values_kept_whole_by_format_2_are_moved_at_open_and_restore() {
        let ns = user();
        let values = [
            (b"short".to_vec(), b"abc".to_vec()),
            (b"long".to_vec(), long(100_000, 7)),
        ];
        // A key a node of format 3 wrote beside the old value of a node
        // of format 2 still running: the newer entry stays.
        let (beside, newer) = (
            Namespace::User {
                app: "app".into(),
                user: "v".into(),
            },
            b"newer".to_vec(),
        );
        let dir = tempfile::tempdir().unwrap();
        let snapshot = {
            let store = Store::open(dir.path()).unwrap();
            for (ns, key, value) in values.iter().map(|(k, v)| (&ns, k, v)).chain([(
                &beside,
                &b"k".to_vec(),
                &b"older".to_vec(),
            )]) {
                let mut whole = vec![WHOLE];
                whole.extend(namespace_bytes(ns));
                whole.extend_from_slice(key);
                store.put_raw(Tree::AppData, &whole, value).unwrap();
            }
            let mut entry = vec![INLINE];
            entry.extend_from_slice(&newer);
            store
                .put_raw(Tree::AppData, &data_key(&beside, b"k"), &entry)
                .unwrap();
            store
                .put_raw(Tree::Meta, crate::records::FORMAT_KEY, &2u32.to_be_bytes())
                .unwrap();
            let mut copy = Vec::new();
            store.snapshot(&mut copy).unwrap();
            store.backend.flush().unwrap();
            copy
        };
        let check = |store: Arc<Store>| {
            assert_eq!(
                store.recorded_format().unwrap(),
                Some(crate::FORMAT_VERSION)
            );
            let whole = store
                .scan(Tree::AppData, &[WHOLE], None, 10, false)
                .unwrap();
            assert!(
                whole.is_empty(),
                "{} entries left under the old prefix",
                whole.len()
            );
            let kv = StoreKv::new(store.clone());
            for (key, value) in &values {
                assert_eq!(kv.get(&ns, key).unwrap().as_ref(), Some(value));
            }
            assert_eq!(kv.get(&beside, b"k").unwrap(), Some(newer.clone()));
            assert_eq!(chunk_entries(&store), 100_000usize.div_ceil(CHUNK));
            let mut keys = kv.list_keys(&ns, b"", None, 10).unwrap();
            keys.sort();
            assert_eq!(keys, vec![b"long".to_vec(), b"short".to_vec()]);
            assert_eq!(
                kv.usage(&ns).unwrap().bytes,
                (5 + 3 + 4 + 100_000) + 2 * ENTRY_OVERHEAD
            );
        };
        check(Store::open(dir.path()).unwrap());
        let restored = Store::with_backend(Arc::new(MemoryBackend::new())).unwrap();
        restored.restore(&snapshot[..]).unwrap();
        check(restored);
    }

    /// The stores earlier releases wrote (the upgrade test's recordings),
    /// of formats that kept values whole: every value their apps kept is
    /// read back the same after the move, under the same namespace and key.
    #[test]
    fn a_recorded_store_of_an_earlier_format_keeps_every_app_data_value() {
        use crate::backend::Backend;
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/upgrade");
        let mut recordings: Vec<_> = std::fs::read_dir(fixtures)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "tar"))
            .collect();
        recordings.sort();
        let mut checked = 0;
        for recording in recordings {
            let tmp = tempfile::tempdir().unwrap();
            tar::Archive::new(std::fs::File::open(&recording).unwrap())
                .unpack(tmp.path())
                .unwrap();
            let dir = tmp.path().join("data/store");
            let backend = crate::sled_backend::SledBackend::open(&dir).unwrap();
            let format = backend.get(Tree::Meta, crate::records::FORMAT_KEY).unwrap();
            let format = u32::from_be_bytes(format.unwrap().try_into().unwrap());
            if format > 2 {
                continue;
            }
            let whole = backend
                .scan(Tree::AppData, &[WHOLE], None, usize::MAX, false)
                .unwrap();
            assert!(!whole.is_empty(), "{recording:?} holds no app data");
            drop(backend);
            let store = Store::open(&dir).unwrap();
            assert!(store
                .scan(Tree::AppData, &[WHOLE], None, 1, false)
                .unwrap()
                .is_empty());
            for (key, value) in whole {
                let mut entry = key.clone();
                entry[0] = ENTRY;
                let read = Writer::Store(&store).read(&entry).unwrap();
                assert_eq!(read.map(|(v, _)| v), Some(value), "{recording:?}");
                checked += 1;
            }
        }
        assert!(
            checked > 0,
            "no recording of an earlier format with app data"
        );
    }

    /// An entry whose chunks are gone is reported as damaged, not read as
    /// a shorter value or retried for ever.
    #[test]
    fn a_value_whose_chunks_are_lost_is_an_error() {
        let store = Store::in_memory().unwrap();
        let kv = StoreKv::new(store.clone());
        let ns = user();
        kv.set(&ns, b"k", &long(3 * CHUNK, 0), &Quota::default())
            .unwrap();
        let (first, _) = store
            .scan(Tree::AppData, &[CHUNKS], None, 1, false)
            .unwrap()
            .remove(0);
        store.remove(Tree::AppData, &first).unwrap();
        let Err(KvError::Backend(why)) = kv.get(&ns, b"k") else {
            panic!("a value with a chunk missing was read");
        };
        assert!(why.contains("chunks are missing"), "{why}");
        // What a long value's length decides is decided without reading
        // its chunks: a swap expecting nothing or a shorter value, and an
        // increment (a counter is never that long).
        let q = Quota::default();
        assert_eq!(
            kv.compare_and_swap(&ns, b"k", None, Some(b"x"), &q),
            Ok(false)
        );
        assert_eq!(
            kv.compare_and_swap(&ns, b"k", Some(b"y"), None, &q),
            Ok(false)
        );
        assert!(matches!(
            kv.increment(&ns, b"k", 1, &q),
            Err(KvError::Invalid(_))
        ));
        let same_length = long(3 * CHUNK, 0);
        let swapped = kv.compare_and_swap(&ns, b"k", Some(&same_length), None, &q);
        assert!(matches!(swapped, Err(KvError::Backend(_))), "{swapped:?}");
    }

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
                .put_raw(Tree::AppData, &data_key(&ns, key), b"\0abc")
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
