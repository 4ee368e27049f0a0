//! The storage capabilities' port: key-value namespaces with quotas, the
//! operations `storage` and `shared-storage` need, and the checks every
//! implementation shares so they all refuse the same inputs.

/// A key-value namespace. Namespaces are structured values, not string
/// prefixes, so no key — however crafted — can name another namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Namespace {
    /// `storage`: one app, one user.
    User { app: String, user: String },
    /// `shared-storage`: one app, all its users.
    App { app: String },
}

/// What each entry counts against a quota beyond its key and value: the
/// store's own bookkeeping of it (its full key, index and log records),
/// so a namespace of many empty values is bounded on disk as much as one
/// of a few large ones.
pub const ENTRY_OVERHEAD: u64 = 128;

/// The bytes one entry counts against its namespace's quota.
pub fn entry_bytes(key: &[u8], value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64 + ENTRY_OVERHEAD
}

/// Size limits of one namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Keys plus values, plus [`ENTRY_OVERHEAD`] per entry, in bytes.
    pub total_bytes: u64,
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
}

/// The longest key an app may write. The embedded store keeps up to 257
/// keys in one index node, and writes a node of more than 128 KiB to a file
/// of its own, which it removes late: with 1 KiB keys, an app filling its
/// namespace made hundreds of such files (a gigabyte in minutes), and with
/// 256-byte keys (and the namespace before them) no node gets that large.
pub const MAX_KEY_BYTES: usize = 256;

impl Default for Quota {
    fn default() -> Self {
        Quota {
            total_bytes: 10 << 20,
            max_key_bytes: MAX_KEY_BYTES,
            max_value_bytes: 1 << 20,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub keys: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("{0}")]
    Invalid(String),
    #[error("storage backend failed: {0}")]
    Backend(String),
}

/// The operations the storage capabilities need. Every write is atomic:
/// either it happens whole, within quota, or nothing changes.
pub trait KvBackend: Send + Sync {
    fn get(&self, ns: &Namespace, key: &[u8]) -> Result<Option<Vec<u8>>, KvError>;
    fn set(&self, ns: &Namespace, key: &[u8], value: &[u8], quota: &Quota) -> Result<(), KvError>;
    fn delete(&self, ns: &Namespace, key: &[u8]) -> Result<bool, KvError>;
    /// Keys with `prefix`, in byte order, strictly after `start_after`.
    fn list_keys(
        &self,
        ns: &Namespace,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, KvError>;
    /// Set (or with `new == None`, delete) only if the current value is `expected`.
    fn compare_and_swap(
        &self,
        ns: &Namespace,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        quota: &Quota,
    ) -> Result<bool, KvError>;
    /// Add `delta` to the decimal integer at `key` (absent is 0).
    fn increment(
        &self,
        ns: &Namespace,
        key: &[u8],
        delta: i64,
        quota: &Quota,
    ) -> Result<i64, KvError>;
    fn usage(&self, ns: &Namespace) -> Result<Usage, KvError>;
}

/// Checks shared by every backend, so they all refuse the same inputs.
pub fn check_write(key: &[u8], value: Option<&[u8]>, quota: &Quota) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(KvError::Invalid("keys must not be empty".into()));
    }
    if key.len() > quota.max_key_bytes {
        return Err(KvError::Invalid(format!(
            "key is {} bytes; the limit is {}",
            key.len(),
            quota.max_key_bytes
        )));
    }
    if let Some(v) = value {
        if v.len() > quota.max_value_bytes {
            return Err(KvError::QuotaExceeded(format!(
                "value is {} bytes; the limit is {} per value",
                v.len(),
                quota.max_value_bytes
            )));
        }
    }
    Ok(())
}

/// The usage after replacing a value of `old` bytes with one of `new`
/// bytes at `key` (`None`: no value), or a quota error.
pub fn usage_after(
    usage: Usage,
    key: &[u8],
    old: Option<usize>,
    new: Option<usize>,
    quota: &Quota,
) -> Result<Usage, KvError> {
    let entry = |v: Option<usize>| v.map_or(0, |v| (key.len() + v) as u64 + ENTRY_OVERHEAD);
    // Saturating: a usage counted some other way (an older record) never
    // wraps around into a namespace that refuses every write.
    let bytes = usage.bytes.saturating_sub(entry(old)) + entry(new);
    let keys = usage.keys.saturating_sub(u64::from(old.is_some())) + u64::from(new.is_some());
    if new.is_some() && bytes > usage.bytes && bytes > quota.total_bytes {
        return Err(KvError::QuotaExceeded(format!(
            "this write would use {bytes} bytes; the quota is {}",
            quota.total_bytes
        )));
    }
    Ok(Usage { bytes, keys })
}

/// Parse a counter value written by `increment`.
pub fn parse_counter(value: Option<&[u8]>) -> Result<i64, KvError> {
    match value {
        None => Ok(0),
        Some(v) => std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(not_a_counter),
    }
}

/// What `increment` says of a value that is not a counter.
pub(crate) fn not_a_counter() -> KvError {
    KvError::Invalid("the value at this key is not a decimal integer".into())
}
