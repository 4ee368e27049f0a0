//! The contract every storage engine implements: record trees, the
//! transaction interface and the store's errors. Engines (`sled_backend.rs`)
//! implement `Backend`; `records.rs` builds the typed store on top.

/// Record kinds, one tree each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tree {
    /// Store metadata: the format version.
    Meta,
    /// user id → user record.
    Users,
    /// lowercase username → user id.
    Usernames,
    /// SHA-256 of a session token → session record.
    Sessions,
    /// conversation id → conversation record (members, last seq).
    Conversations,
    /// user id ‖ conversation id → () : the conversations of a user.
    Memberships,
    /// sorted pair of user ids → direct conversation id.
    DirectPairs,
    /// Messages (conversation ‖ seq → message), and the client-id index
    /// (conversation ‖ sender ‖ client id → seq) that makes sends idempotent.
    Messages,
    /// conversation id ‖ user id → last read seq.
    ReadMarks,
    /// seq (big-endian) → audit entry, hash-chained.
    Audit,
    /// The storage capabilities' namespaces (see `app_data.rs`).
    AppData,
    /// user ‖ app ‖ capability → the user's consent decision.
    Grants,
    /// user ‖ prompt id → a host prompt for that user.
    Prompts,
    /// user ‖ audit seq → () : each user's slice of the audit log.
    AuditByUser,
    /// Ledger account key → account record (balance, posting count).
    Accounts,
    /// Ledger account key ‖ posting seq → one leg of a transfer.
    Postings,
    /// Transfers by id, and idempotency keys (scope ‖ key → transfer id).
    Transfers,
    /// Payment orders by id, their idempotency keys and expiry index.
    Orders,
    /// Document issuers (`i` ‖ id) and their revocations (`r` ‖ issuer ‖ credential).
    Issuers,
    /// user ‖ issuer ‖ credential id → a credential in the user's document
    /// wallet (user ‖ credential id for ones kept before the issuer was in the key).
    Credentials,
    /// Document requests by id.
    DocRequests,
    /// The app registry: publishers (`p` ‖ id), trusted auditor keys
    /// (`a` ‖ key) and releases (`r` ‖ app ‖ version).
    Registry,
    /// Package digest → the package file's bytes (raw, not JSON).
    Packages,
    /// Prompts by time: `h` ‖ user ‖ created ‖ id for every prompt (the
    /// history), `p` ‖ user ‖ created ‖ id for the pending ones.
    PromptIndex,
    /// user ‖ app ‖ audit seq → () : a user's slice of the log for one app.
    AuditByApp,
    /// Provider callbacks waiting to be delivered (`d` ‖ id), and their
    /// retry index by time.
    Deliveries,
    /// Short-lived records: rate windows shared by host processes on one
    /// store (name ‖ 0 ‖ key → the recent events' times: failed logins,
    /// notifications), and the nonces of signed requests already served
    /// (`nonce` ‖ 0 ‖ key ‖ 0 ‖ nonce → when it may be forgotten).
    Windows,
}

impl Tree {
    pub const ALL: [Tree; 27] = [
        Tree::Meta,
        Tree::Users,
        Tree::Usernames,
        Tree::Sessions,
        Tree::Conversations,
        Tree::Memberships,
        Tree::DirectPairs,
        Tree::Messages,
        Tree::ReadMarks,
        Tree::Audit,
        Tree::AppData,
        Tree::Grants,
        Tree::Prompts,
        Tree::AuditByUser,
        Tree::Accounts,
        Tree::Postings,
        Tree::Transfers,
        Tree::Orders,
        Tree::Issuers,
        Tree::Credentials,
        Tree::DocRequests,
        Tree::Registry,
        Tree::Packages,
        Tree::PromptIndex,
        Tree::AuditByApp,
        Tree::Deliveries,
        Tree::Windows,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Tree::Meta => "meta",
            Tree::Users => "users",
            Tree::Usernames => "usernames",
            Tree::Sessions => "sessions",
            Tree::Conversations => "conversations",
            Tree::Memberships => "memberships",
            Tree::DirectPairs => "direct-pairs",
            Tree::Messages => "messages",
            Tree::ReadMarks => "read-marks",
            Tree::Audit => "audit",
            Tree::AppData => "app-data",
            Tree::Grants => "grants",
            Tree::Prompts => "prompts",
            Tree::AuditByUser => "audit-by-user",
            Tree::Accounts => "ledger-accounts",
            Tree::Postings => "ledger-postings",
            Tree::Transfers => "ledger-transfers",
            Tree::Orders => "payment-orders",
            Tree::Issuers => "document-issuers",
            Tree::Credentials => "document-wallet",
            Tree::DocRequests => "document-requests",
            Tree::Registry => "registry",
            Tree::Packages => "registry-packages",
            Tree::PromptIndex => "prompt-index",
            Tree::AuditByApp => "audit-by-app",
            Tree::Deliveries => "provider-deliveries",
            Tree::Windows => "rate-windows",
        }
    }

    pub(crate) fn index(self) -> usize {
        Tree::ALL
            .iter()
            .position(|t| *t == self)
            .expect("every tree is in ALL")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("storage failed: {0}")]
    Backend(String),
    #[error("the store holds format version {found}, but this host supports up to {supported}; upgrade the host")]
    NewerFormat { found: u32, supported: u32 },
    #[error("a stored record is unreadable: {0}")]
    Corrupt(String),
    /// A concurrent transaction touched the same keys; the engine retries.
    #[error("transaction conflict")]
    Conflict,
    /// The store cannot be reached now (a database that is down, restarting
    /// or unreachable). A change that failed before its commit wrote
    /// nothing; one whose commit was cut off may have landed. A retry later
    /// may succeed.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
}

/// A key-ordered entry.
pub type Entry = (Vec<u8>, Vec<u8>);

/// What [`Backend::for_each`] calls with each key and value.
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), StoreError> + 'a;

/// Operations inside a transaction. Reads see the transaction's own writes.
pub trait Txn {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    fn delete(&self, tree: Tree, key: &[u8]) -> Result<(), StoreError>;
    /// Entries whose key starts with `prefix`, after `after`, in key order
    /// (or reverse order), at most `limit`, as this transaction sees them;
    /// a transaction that writes into what it scanned conflicts with one
    /// that did the same concurrently. Engines whose
    /// transactions cannot range over keys (sled) refuse; only code that
    /// runs on a [shared](Backend::shared) store needs it.
    fn scan(
        &self,
        tree: Tree,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Entry>, StoreError> {
        let _ = (prefix, after, limit, reverse);
        Err(StoreError::Backend(format!(
            "this engine cannot scan `{}` inside a transaction",
            tree.name()
        )))
    }
}

/// The first key after every key that starts with `prefix`, if any.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Why a transaction body stopped.
#[derive(Debug)]
pub enum Abort<E> {
    /// The caller's own reason; nothing was written.
    User(E),
    Store(StoreError),
}

impl<E> From<StoreError> for Abort<E> {
    fn from(e: StoreError) -> Self {
        Abort::Store(e)
    }
}

impl Abort<()> {
    /// The store's error, for a body that never aborts with a reason of its own.
    pub fn into_store(self) -> StoreError {
        match self {
            Abort::Store(e) => e,
            Abort::User(()) => StoreError::Backend("the transaction was aborted".into()),
        }
    }
}

impl<E: From<StoreError>> Abort<E> {
    /// One error again: the caller's own, or the store's wrapped in it.
    pub fn flatten(self) -> E {
        match self {
            Abort::User(e) => e,
            Abort::Store(e) => e.into(),
        }
    }
}

/// `impl From<Abort<E>> for E` for a service error that wraps
/// [`StoreError`], so `?` on [`Store::transact`](crate::Store::transact)
/// yields the service's own error. Coherence rules out a blanket impl.
#[macro_export]
macro_rules! abort_into {
    ($error:ty) => {
        impl From<$crate::Abort<$error>> for $error {
            fn from(abort: $crate::Abort<$error>) -> Self {
                abort.flatten()
            }
        }
    };
}

/// What a storage engine provides. Only implementations of this trait touch
/// the engine; a multi-node deployment swaps in another one.
pub trait Backend: Send + Sync {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Entries whose key starts with `prefix`, after `after` (exclusive), in
    /// key order (or reverse order), at most `limit`.
    fn scan(
        &self,
        tree: Tree,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Entry>, StoreError>;
    /// Run `body` atomically across `trees`, the only trees it may touch.
    /// The engine may run it more than once on conflict, so it must only
    /// act through the `Txn`. Returns `Ok(false)` if the body aborted.
    fn transact(
        &self,
        trees: &[Tree],
        body: &dyn Fn(&dyn Txn) -> Result<(), StoreError>,
    ) -> Result<bool, StoreError>;
    /// Write one key, outside any transaction: the cheap path. A backend
    /// must recover writes in the order they were made (after a crash, a
    /// prefix of them survives), which callers may rely on to order
    /// dependent single-key writes.
    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    /// Remove one key, outside any transaction, ordered like [`Backend::put`].
    fn remove(&self, tree: Tree, key: &[u8]) -> Result<(), StoreError>;
    /// Make every write so far durable.
    fn flush(&self) -> Result<(), StoreError>;
    /// Visit every entry of `tree` in key order, streaming (for backups).
    fn for_each(&self, tree: Tree, visit: &mut Visit<'_>) -> Result<(), StoreError>;
    /// Whether other processes write this store too (a database several
    /// host processes share). Then nothing may be decided from what this
    /// process holds in memory: only transactions order writers.
    fn shared(&self) -> bool {
        false
    }
    /// How long a group commit that has seen concurrent writers waits for
    /// more before it flushes (see `records::group_commit`): worth it only
    /// where a flush costs work of its own, so none by default.
    fn commit_gather(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}
