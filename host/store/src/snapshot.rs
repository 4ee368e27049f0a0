//! A consistent copy of the whole store, and bringing one back.
//!
//! [`Store::snapshot`] holds the store's write gate alone while it writes
//! every tree to a stream, so the copy is the store at one instant: no
//! transaction is half in it. [`Store::restore`] writes such a stream into
//! an empty store. The stream is self-describing and checked as it is read:
//! a magic line, the format version, then per tree its name and its
//! entries, then a SHA-256 over everything before it.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use ring::digest::{Context, SHA256};

use crate::backend::{StoreError, Tree};
use crate::records::{Store, FORMAT_VERSION};

const MAGIC: &[u8] = b"superapp-store-snapshot\n";
const TREE: u8 = 1;
const ENTRY: u8 = 2;
const END: u8 = 0;

/// What a snapshot holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Entries per tree, by tree name.
    pub entries: BTreeMap<String, u64>,
    pub bytes: u64,
    /// Hex SHA-256 of the stream (also its last 32 bytes).
    pub sha256: String,
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("snapshot: {e}"))
}

struct Hashing<W> {
    inner: W,
    ctx: Context,
    bytes: u64,
}

impl<W: Write> Hashing<W> {
    fn put(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.ctx.update(data);
        self.bytes += data.len() as u64;
        self.inner.write_all(data).map_err(io)
    }
}

impl Store {
    /// Write a consistent copy of every tree to `out`. Writes wait while it
    /// runs (reads do not): write it to local disk, not a slow network.
    pub fn snapshot(&self, out: impl Write) -> Result<SnapshotInfo, StoreError> {
        let _alone = self.gate.write().unwrap_or_else(|p| p.into_inner());
        let mut w = Hashing {
            inner: out,
            ctx: Context::new(&SHA256),
            bytes: 0,
        };
        let mut info = SnapshotInfo::default();
        w.put(MAGIC)?;
        w.put(&FORMAT_VERSION.to_be_bytes())?;
        for tree in Tree::ALL {
            let name = tree.name().as_bytes();
            w.put(&[TREE])?;
            w.put(&(name.len() as u16).to_be_bytes())?;
            w.put(name)?;
            let mut count = 0u64;
            self.backend.for_each(tree, &mut |k, v| {
                w.put(&[ENTRY])?;
                w.put(&(k.len() as u32).to_be_bytes())?;
                w.put(k)?;
                w.put(&(v.len() as u32).to_be_bytes())?;
                w.put(v)?;
                count += 1;
                Ok(())
            })?;
            info.entries.insert(tree.name().to_string(), count);
        }
        w.put(&[END])?;
        let digest = w.ctx.clone().finish();
        w.inner.write_all(digest.as_ref()).map_err(io)?;
        w.inner.flush().map_err(io)?;
        info.bytes = w.bytes + 32;
        info.sha256 = hex::encode(digest.as_ref());
        Ok(info)
    }

    /// Write a snapshot into this store, which must hold nothing but its
    /// format marker. Nothing is kept unless the whole stream checks out.
    pub fn restore(&self, input: impl Read) -> Result<SnapshotInfo, StoreError> {
        let mut holding = 0;
        for tree in Tree::ALL {
            self.backend.for_each(tree, &mut |_, _| {
                holding += 1;
                Ok(())
            })?;
        }
        if holding > 1 {
            return Err(StoreError::Backend(
                "restore needs an empty store; this one holds data".into(),
            ));
        }
        // Read and check the whole stream first; write only a good one.
        let mut batches: Vec<(Tree, Vec<crate::backend::Entry>)> = Vec::new();
        let info = read(input, &mut |tree, key, value| match batches.last_mut() {
            Some((t, entries)) if *t == tree => entries.push((key, value)),
            _ => batches.push((tree, vec![(key, value)])),
        })?;
        let alone = self.gate.write().unwrap_or_else(|p| p.into_inner());
        for (tree, entries) in batches {
            for (k, v) in entries {
                self.backend.put(tree, &k, &v)?;
            }
        }
        self.backend.flush()?;
        drop(alone);
        // A copy of an earlier format is brought to this host's, as opening
        // such a store would.
        if let Some(found) = self.recorded_format()?.filter(|f| *f < FORMAT_VERSION) {
            self.upgrade(found)?;
        }
        // A backup can be taken between the ordered writes of a long app
        // data value on sled: what its intent names is finished here, on
        // whichever store it is restored to.
        let finished = crate::app_data::finish_interrupted_writes(self)?;
        if finished > 0 {
            tracing::info!(
                writes = finished,
                "finished app data writes the backup caught halfway"
            );
        }
        Ok(info)
    }
}

/// Check a snapshot stream whole (its framing and its checksum) without
/// writing it anywhere: what it holds, as [`Store::restore`] would report.
pub fn check(input: impl Read) -> Result<SnapshotInfo, StoreError> {
    read(input, &mut |_, _, _| {})
}

/// Read a snapshot stream, handing each entry to `entry`, and check its
/// checksum at the end; entries are counted per tree.
fn read(
    input: impl Read,
    entry: &mut dyn FnMut(Tree, Vec<u8>, Vec<u8>),
) -> Result<SnapshotInfo, StoreError> {
    let mut r = Reader {
        inner: input,
        ctx: Context::new(&SHA256),
        bytes: 0,
    };
    let mut magic = vec![0; MAGIC.len()];
    r.take(&mut magic)?;
    if magic != MAGIC {
        return Err(corrupt("not a superapp store snapshot"));
    }
    let version = u32::from_be_bytes(r.array()?);
    if version > FORMAT_VERSION {
        return Err(StoreError::NewerFormat {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let mut entries = BTreeMap::new();
    let mut current = None;
    loop {
        match r.array::<1>()?[0] {
            END => break,
            TREE => {
                let len = u16::from_be_bytes(r.array()?) as usize;
                let name = String::from_utf8(r.vec(len)?)
                    .map_err(|_| corrupt("a tree name is not UTF-8"))?;
                let tree = Tree::ALL
                    .into_iter()
                    .find(|t| t.name() == name)
                    .ok_or_else(|| corrupt(&format!("unknown tree `{name}`")))?;
                entries.entry(name).or_insert(0u64);
                current = Some(tree);
            }
            ENTRY => {
                let Some(tree) = current else {
                    return Err(corrupt("an entry before any tree"));
                };
                let klen = u32::from_be_bytes(r.array()?) as usize;
                let key = r.vec(klen)?;
                let vlen = u32::from_be_bytes(r.array()?) as usize;
                let value = r.vec(vlen)?;
                *entries.entry(tree.name().to_string()).or_insert(0) += 1;
                entry(tree, key, value);
            }
            other => return Err(corrupt(&format!("unexpected record type {other}"))),
        }
    }
    let digest = r.ctx.clone().finish();
    let mut stated = [0u8; 32];
    r.inner
        .read_exact(&mut stated)
        .map_err(|_| corrupt("truncated"))?;
    if stated != digest.as_ref() {
        return Err(corrupt("its checksum does not match (damaged or edited)"));
    }
    Ok(SnapshotInfo {
        entries,
        bytes: r.bytes + 32,
        sha256: hex::encode(digest.as_ref()),
    })
}

fn corrupt(why: &str) -> StoreError {
    StoreError::Corrupt(format!("snapshot: {why}"))
}

/// Entries are capped so a damaged length cannot ask for gigabytes.
const MAX_FIELD: usize = 256 << 20;

struct Reader<R> {
    inner: R,
    ctx: Context,
    bytes: u64,
}

impl<R: Read> Reader<R> {
    fn take(&mut self, buf: &mut [u8]) -> Result<(), StoreError> {
        self.inner
            .read_exact(buf)
            .map_err(|_| corrupt("truncated"))?;
        self.ctx.update(buf);
        self.bytes += buf.len() as u64;
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let mut buf = [0u8; N];
        self.take(&mut buf)?;
        Ok(buf)
    }

    fn vec(&mut self, len: usize) -> Result<Vec<u8>, StoreError> {
        if len > MAX_FIELD {
            return Err(corrupt("a field is implausibly long"));
        }
        let mut buf = vec![0; len];
        self.take(&mut buf)?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Abort;

    fn fill(store: &Store) {
        for i in 0..50u32 {
            store
                .transact(&[Tree::Users, Tree::Usernames], |t| {
                    t.put(Tree::Users, &i.to_be_bytes(), b"user")?;
                    t.put(
                        Tree::Usernames,
                        format!("u{i}").as_bytes(),
                        &i.to_be_bytes(),
                    )?;
                    Ok::<_, Abort<()>>(())
                })
                .unwrap();
        }
        store.put(Tree::Packages, b"digest", &"bytes").unwrap();
    }

    /// A snapshot carries the format of the store it came from: a host of
    /// an earlier format refuses it, as it refuses the store itself.
    #[test]
    fn a_snapshot_of_a_newer_format_is_refused() {
        let store = Store::in_memory().unwrap();
        fill(&store);
        let mut bytes = Vec::new();
        store.snapshot(&mut bytes).unwrap();
        let at = MAGIC.len();
        assert_eq!(bytes[at..at + 4], FORMAT_VERSION.to_be_bytes());
        bytes[at..at + 4].copy_from_slice(&(FORMAT_VERSION + 1).to_be_bytes());
        assert!(matches!(
            check(bytes.as_slice()),
            Err(StoreError::NewerFormat { found, supported })
                if (found, supported) == (FORMAT_VERSION + 1, FORMAT_VERSION)
        ));
        let empty = Store::in_memory().unwrap();
        assert!(matches!(
            empty.restore(bytes.as_slice()),
            Err(StoreError::NewerFormat { .. })
        ));
    }

    #[test]
    fn a_snapshot_restores_into_an_empty_store_and_nothing_else() {
        let a = tempfile::tempdir().unwrap();
        let source = Store::open(a.path()).unwrap();
        fill(&source);
        let mut bytes = Vec::new();
        let info = source.snapshot(&mut bytes).unwrap();
        assert_eq!(info.entries["users"], 50);
        assert_eq!(info.entries["usernames"], 50);
        assert_eq!(info.bytes, bytes.len() as u64);

        let b = tempfile::tempdir().unwrap();
        let copy = Store::open(b.path()).unwrap();
        let restored = copy.restore(bytes.as_slice()).unwrap();
        assert_eq!(restored, info);
        for tree in Tree::ALL {
            assert_eq!(
                source.scan(tree, b"", None, usize::MAX, false).unwrap(),
                copy.scan(tree, b"", None, usize::MAX, false).unwrap(),
                "{}",
                tree.name()
            );
        }
        // Not over data.
        assert!(copy.restore(bytes.as_slice()).is_err());

        // A damaged or truncated stream writes nothing.
        let c = tempfile::tempdir().unwrap();
        let third = Store::open(c.path()).unwrap();
        let mut damaged = bytes.clone();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 1;
        assert!(third.restore(damaged.as_slice()).is_err());
        assert!(third.restore(&bytes[..bytes.len() - 10]).is_err());
        assert!(third.restore(&b"not a snapshot at all"[..]).is_err());
        assert!(third
            .scan(Tree::Users, b"", None, 10, false)
            .unwrap()
            .is_empty());
        third.restore(bytes.as_slice()).unwrap();
    }

    #[test]
    fn writes_wait_for_a_snapshot_and_none_is_half_in_it() {
        let a = tempfile::tempdir().unwrap();
        let store = Store::open(a.path()).unwrap();
        let writer = {
            let store = store.clone();
            std::thread::spawn(move || {
                // Each transaction writes the same key into two trees.
                for i in 0..2000u32 {
                    store
                        .transact(&[Tree::Users, Tree::Usernames], |t| {
                            t.put(Tree::Users, &i.to_be_bytes(), b"x")?;
                            t.put(Tree::Usernames, &i.to_be_bytes(), b"x")?;
                            Ok::<_, Abort<()>>(())
                        })
                        .unwrap();
                }
            })
        };
        for _ in 0..20 {
            let info = store.snapshot(std::io::sink()).unwrap();
            assert_eq!(info.entries["users"], info.entries["usernames"], "{info:?}");
        }
        writer.join().unwrap();
    }
}
