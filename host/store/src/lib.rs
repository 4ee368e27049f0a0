//! Storage behind small traits: the durable record store (`Store`, on sled
//! by default, on PostgreSQL for several host processes, in memory for
//! tests) and the key-value namespaces of the storage capabilities
//! (`KvBackend`). Only `sled_backend.rs` touches sled and only
//! `postgres_backend.rs` the database; nothing here knows of wasm, HTTP or
//! the services built on top.

mod app_data;
mod backend;
pub mod deadlines;
pub mod faults;
mod kv;
mod memory;
mod memory_backend;
mod postgres_backend;
mod records;
mod sled_backend;
mod snapshot;
pub mod waits;

pub use app_data::StoreKv;
pub use backend::{Abort, Backend, Entry, StoreError, Tree, Txn};
pub use kv::{
    check_write, entry_bytes, parse_counter, usage_after, KvBackend, KvError, Namespace, Quota,
    Usage, ENTRY_OVERHEAD, MAX_KEY_BYTES,
};
pub use memory::MemoryKv;
pub use memory_backend::MemoryBackend;
pub use postgres_backend::{blocking, PostgresBackend, SCHEMA_VERSION as POSTGRES_SCHEMA_VERSION};
pub use records::{decode, encode, txn_get, txn_put, Store, FORMAT_VERSION};
pub use snapshot::{check as check_snapshot, SnapshotInfo};

/// The store's page cache unless configured: enough for a busy host's hot
/// records, bounded so memory stays flat as data grows.
pub const DEFAULT_CACHE_BYTES: u64 = 128 << 20;
