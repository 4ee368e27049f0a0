//! Deadline indexes: records that expire (payment sheets, document
//! requests) are indexed in their own tree under `x\0`, the deadline
//! (big-endian, so entries sort by time) and the record's id. A sweeper
//! reads what is due, oldest first. Record keys in such a tree must never
//! begin with `x\0`.

use crate::{Store, StoreError, Tree};

const PREFIX: &[u8] = b"x\0";

/// The index entry of record `id`, due at `at` (Unix seconds).
pub fn deadline_key(at: u64, id: &str) -> Vec<u8> {
    let mut k = PREFIX.to_vec();
    k.extend_from_slice(&at.to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

/// Up to `limit` index entries of `tree` due at `now`, oldest first, as
/// (deadline, record id); [`deadline_key`] of the two is the entry.
pub fn due(
    store: &Store,
    tree: Tree,
    now: u64,
    limit: usize,
) -> Result<Vec<(u64, String)>, StoreError> {
    Ok(store
        .scan(tree, PREFIX, None, limit, false)?
        .into_iter()
        .map_while(|(k, _)| {
            let at = u64::from_be_bytes(k.get(2..10)?.try_into().ok()?);
            let id = String::from_utf8_lossy(&k[10..]).into_owned();
            (at <= now).then_some((at, id))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_due_in_deadline_order_and_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .transact(&[Tree::Orders], |t| {
                for (at, id) in [(300, "late"), (100, "first"), (200, "second")] {
                    t.put(Tree::Orders, &deadline_key(at, id), b"")?;
                }
                t.put(Tree::Orders, b"o\0record", b"{}")?;
                Ok::<_, crate::Abort<()>>(())
            })
            .unwrap();
        let ids = |now| -> Vec<String> {
            due(&store, Tree::Orders, now, 10)
                .unwrap()
                .into_iter()
                .map(|(_, id)| id)
                .collect()
        };
        assert!(ids(99).is_empty());
        assert_eq!(ids(200), ["first", "second"]);
        assert_eq!(ids(1_000), ["first", "second", "late"]);
        assert_eq!(due(&store, Tree::Orders, 1_000, 1).unwrap().len(), 1);
    }
}
