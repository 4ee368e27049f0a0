//! The PostgreSQL engine (`--store postgres://…`): the store's trees as
//! tables of one database that several host processes share. It speaks the
//! PostgreSQL wire protocol only, so a database that speaks it too
//! (CockroachDB, YugabyteDB) can stand in.
//!
//! The store's interface is synchronous (sled answers from memory), while
//! the database is across a socket: the connections live on this backend's
//! own small tokio runtime, and a call waits for its answer there, handing
//! its worker over to the rest of the caller's runtime while it waits
//! (`block_in_place`). Every write outside a transaction commits on its own
//! and is durable when the call returns (PostgreSQL's `synchronous_commit`),
//! so `flush` has nothing left to do. Transactions run `SERIALIZABLE` and are
//! retried when the database reports a serialization failure or deadlock.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

use crate::backend::{prefix_end, Backend, Entry, StoreError, Tree, Txn, Visit};

/// The schema this host creates and understands; each step of
/// [`migrations`] brings the database one version further.
pub const SCHEMA_VERSION: i32 = 2;

/// Serializes schema changes of host processes starting at once.
const MIGRATION_LOCK: i64 = 0x7375_7065_7261_7070; // "superapp"

/// How often a transaction that keeps meeting concurrent ones is tried.
const MAX_ATTEMPTS: u32 = 100;

/// Entries per round trip when a whole tree is read (backups).
const PAGE: i64 = 1_000;

/// How long a call waits for the database (a connection, a statement, a
/// commit) before it is answered `Unavailable`: a database that hangs
/// (a partition, a stalled disk, a frozen server) is told from one that
/// is slow, and a request is answered `503` rather than held for good.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// The table holding `tree`'s entries.
fn table(tree: Tree) -> String {
    format!("superapp_{}", tree.name().replace('-', "_"))
}

/// The statements that change the schema from version `i` to `i + 1`.
fn migrations() -> Vec<String> {
    let create = |trees: &[Tree]| {
        trees
            .iter()
            .map(|t| {
                format!(
                    "CREATE TABLE {} (key bytea PRIMARY KEY, value bytea NOT NULL);",
                    table(*t)
                )
            })
            .collect::<String>()
    };
    // Version 1: one table per tree of the store's first format (the first
    // 26 of `Tree::ALL`). A tree added later gets a step of its own, so
    // that existing databases get it too.
    let v1 = create(&Tree::ALL[..26]);
    // Version 2: the rate windows shared by host processes.
    let v2 = create(&[Tree::Windows]);
    vec![v1, v2]
}

/// The statements of one tree, built once.
struct TreeSql {
    get: String,
    put: String,
    delete: String,
    /// `[reverse][bounded]`: entries from a lower bound, up to an upper
    /// bound when there is one, in either order.
    scan: [[String; 2]; 2],
}

impl TreeSql {
    fn new(tree: Tree) -> TreeSql {
        let t = table(tree);
        let scan = |order: &str, bounded: bool| {
            let upper = if bounded { " AND key < $2" } else { "" };
            let limit = if bounded { "$3" } else { "$2" };
            format!("SELECT key, value FROM {t} WHERE key >= $1{upper} ORDER BY key {order} LIMIT {limit}")
        };
        TreeSql {
            get: format!("SELECT value FROM {t} WHERE key = $1"),
            put: format!(
                "INSERT INTO {t} (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
            ),
            delete: format!("DELETE FROM {t} WHERE key = $1"),
            scan: [
                [scan("ASC", false), scan("ASC", true)],
                [scan("DESC", false), scan("DESC", true)],
            ],
        }
    }
}

/// A statement's parameters, owned so the work can move to the runtime.
enum Params {
    Key(Vec<u8>),
    KeyValue(Vec<u8>, Vec<u8>),
    /// Lower bound, upper bound (exclusive), limit.
    Range(Vec<u8>, Option<Vec<u8>>, i64),
}

/// What a statement is run for.
#[derive(Clone, Copy)]
enum Want {
    /// Rows affected.
    Nothing,
    /// The first column of at most one row.
    Value,
    /// Key and value of every row.
    Entries,
}

enum Answer {
    Nothing,
    Value(Option<Vec<u8>>),
    Entries(Vec<Entry>),
}

pub struct PostgresBackend {
    runtime: Option<tokio::runtime::Runtime>,
    pool: Pool,
    sql: Vec<TreeSql>,
    breaker: Arc<Breaker>,
}

/// After the database answered nothing at all for [`ANSWER_WITHIN`] (a
/// call waited that long and no other call was answered meanwhile: a
/// frozen server, a partition), calls are answered `Unavailable` at once
/// rather than each waiting its whole wait behind the last (a WebSocket's
/// queued sends, every request of a busy node), while a probe of its own
/// asks the database every [`PROBE_EVERY`]; its answer, or any call's,
/// closes it. A call stuck behind a lock while others are answered trips
/// nothing.
struct Breaker {
    /// Whether the database answered nothing for a whole wait, and has not
    /// answered since.
    open: std::sync::atomic::AtomicBool,
    /// When a call was last answered, in milliseconds since `epoch`.
    answered: std::sync::atomic::AtomicU64,
    epoch: std::time::Instant,
    /// What the probe asks through.
    pool: Pool,
}

/// How often the probe asks a database that did not answer, and how long
/// it waits for each answer.
const PROBE_EVERY: Duration = Duration::from_secs(1);
const PROBE_WITHIN: Duration = Duration::from_secs(2);

impl Breaker {
    fn new(pool: Pool) -> Breaker {
        Breaker {
            open: Default::default(),
            answered: Default::default(),
            epoch: std::time::Instant::now(),
            pool,
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Whether a call may go to the database now.
    fn admit(&self) -> Result<(), StoreError> {
        if !self.open.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        Err(StoreError::Unavailable(format!(
            "PostgreSQL answered nothing for {} s; it is asked again every second",
            ANSWER_WITHIN.as_secs()
        )))
    }

    /// A call that began at `started` got no answer in time: the breaker
    /// opens, and its probe starts, if no other call was answered since.
    /// (Called on the database's runtime.)
    fn unanswered(self: &Arc<Self>, started: u64) {
        use std::sync::atomic::Ordering::SeqCst;
        if self.answered.load(SeqCst) > started || self.open.swap(true, SeqCst) {
            return;
        }
        tracing::warn!(
            "PostgreSQL answered nothing for {} s: requests are answered 503 at once until it answers again",
            ANSWER_WITHIN.as_secs()
        );
        let breaker = self.clone();
        tokio::spawn(async move {
            while breaker.open.load(SeqCst) {
                tokio::time::sleep(PROBE_EVERY).await;
                let probe = async {
                    let client = breaker.pool.get().await.ok()?;
                    let asked = tokio::time::timeout(PROBE_WITHIN, client.simple_query("SELECT 1"));
                    match asked.await {
                        Ok(answer) => answer.ok(),
                        // Its question still in it: not for the pool.
                        Err(_) => {
                            drop(Object::take(client));
                            None
                        }
                    }
                };
                if let Ok(Some(_)) = tokio::time::timeout(PROBE_WITHIN, probe).await {
                    breaker.answered();
                }
            }
        });
    }

    fn answered(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        self.answered.store(self.now(), SeqCst);
        if self.open.swap(false, SeqCst) {
            tracing::info!("PostgreSQL answers again");
        }
    }

    /// What came back from a round trip that began at `started`: the
    /// database answered (rows, or an error of its own), or the connection
    /// failed on the way, which counts as no answer.
    fn heard<T>(
        self: &Arc<Self>,
        started: u64,
        back: Result<T, tokio_postgres::Error>,
    ) -> Result<T, tokio_postgres::Error> {
        match &back {
            Err(e) if e.as_db_error().is_none() => self.unanswered(started),
            _ => self.answered(),
        }
        back
    }
}

/// Run `work`, which blocks the thread (a database round trip, compiling
/// a component), without stalling the other tasks of the caller's tokio
/// runtime when it is one that can spare the worker; inline elsewhere
/// (single-threaded runtimes, plain threads).
pub fn blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

fn db_error(e: tokio_postgres::Error) -> StoreError {
    match e.code() {
        Some(c)
            if *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED
                // A statement after a failed one: the transaction is lost,
                // and trying it again is the way on.
                || *c == SqlState::IN_FAILED_SQL_TRANSACTION =>
        {
            StoreError::Conflict
        }
        // The server is shutting down or starting, or the connection is
        // gone: the database is away, not the request wrong. So is a
        // statement cancelled (the host's cancel of one it gave up on, or
        // the database's own `statement_timeout`) or a lock not had in
        // time (its `lock_timeout`).
        Some(c)
            if *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || *c == SqlState::QUERY_CANCELED
                || *c == SqlState::LOCK_NOT_AVAILABLE =>
        {
            StoreError::Unavailable(format!("PostgreSQL: {}", error_text(&e)))
        }
        None if e.is_closed()
            || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()) =>
        {
            StoreError::Unavailable(format!("PostgreSQL: {}", error_text(&e)))
        }
        _ => StoreError::Backend(format!("PostgreSQL: {}", error_text(&e))),
    }
}

/// The database's own message where there is one (tokio-postgres's
/// `Display` of a server error is only "db error"), else the error with
/// its cause ("error connecting to server" says nothing of why). Neither
/// carries the URL, so no password.
fn error_text(e: &tokio_postgres::Error) -> String {
    match (e.as_db_error(), std::error::Error::source(e)) {
        (Some(db), _) => format!("{}: {}", db.code().code(), db.message()),
        (None, Some(cause)) => format!("{e}: {cause}"),
        (None, None) => e.to_string(),
    }
}

/// Why a connection string did not parse, without repeating any of it (it
/// may hold a password): tokio-postgres names the option whose value is
/// wrong or unknown, which is shown; its other reasons quote a character
/// of the string and its position, and are left out.
fn url_error_text(e: &tokio_postgres::Error) -> String {
    let cause = std::error::Error::source(e).map(|c| c.to_string());
    match cause {
        Some(c)
            if c.starts_with("invalid value for option `")
                || c.starts_with("unknown option `")
                || c == "unexpected EOF"
                || c == "unterminated parameter" =>
        {
            format!("{e}: {c}")
        }
        _ => format!("{e} (expected postgres://user:password@host:port/database?option=value)"),
    }
}

/// How long a read of packages may take (a backup reads a thousand of up
/// to 32 MiB at a time) before it counts as unanswered.
const READ_WITHIN: Duration = Duration::from_secs(120);

/// Ask the server to stop the statement running on `client`, which the
/// host stopped waiting for: it then frees what the statement holds (a
/// lock waited for, a connection slot) at once, and its answer, an error,
/// lets the connection close. Bounded, in the background.
fn cancel(client: &Object) {
    let token = client.cancel_token();
    tokio::spawn(tokio::time::timeout(ANSWER_WITHIN, async move {
        let _ = token.cancel_query(NoTls).await;
    }));
}

/// The database did not answer in time.
fn no_answer() -> StoreError {
    StoreError::Unavailable("PostgreSQL did not answer in time".into())
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        // Refused credentials or a database that does not exist will not
        // mend by waiting: a configuration error, not an outage.
        deadpool_postgres::PoolError::Backend(e)
            if e.code().is_some_and(|c| {
                let class = &c.code()[..2];
                class == "28" || class == "3D"
            }) =>
        {
            StoreError::Backend(format!("cannot connect to PostgreSQL: {}", error_text(&e)))
        }
        deadpool_postgres::PoolError::Backend(e) => {
            StoreError::Unavailable(format!("cannot connect to PostgreSQL: {}", error_text(&e)))
        }
        other => StoreError::Unavailable(format!("PostgreSQL connection pool: {other}")),
    }
}

impl PostgresBackend {
    /// Connect to the database at `url` (`postgres://user:password@host:port/db`),
    /// keeping up to `pool_size` connections, and create or migrate the
    /// schema. A database whose schema is newer than this host's is refused.
    pub fn connect(url: &str, pool_size: usize) -> Result<PostgresBackend, StoreError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            StoreError::Backend(format!("not a PostgreSQL URL: {}", url_error_text(&e)))
        })?;
        // A connection whose bytes go unacknowledged (a partition) is
        // closed by the kernel rather than kept, unless the URL says.
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(ANSWER_WITHIN);
        }

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("superapp-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend(format!("cannot start the database runtime: {e}")))?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .create_timeout(Some(Duration::from_secs(10)))
            .wait_timeout(Some(ANSWER_WITHIN))
            .build()
            .map_err(|e| StoreError::Backend(format!("PostgreSQL connection pool: {e}")))?;
        let breaker = Arc::new(Breaker::new(pool.clone()));
        let backend = PostgresBackend {
            runtime: Some(runtime),
            pool,
            sql: Tree::ALL.iter().map(|t| TreeSql::new(*t)).collect(),
            breaker,
        };
        // Unbounded: a host starting beside another waits for that one's
        // migration, however long it takes.
        backend.run_unbounded(migrate(backend.pool.clone()))?;
        Ok(backend)
    }

    /// [`PostgresBackend::run_unbounded`] of a call the [`Breaker`] lets
    /// through. The call bounds its own wait, and tells the breaker what
    /// came of each round trip to the database (taking a pooled connection
    /// is none).
    fn admitted<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.breaker.admit()?;
        self.run_unbounded(work)
    }

    /// Run `work` on the database runtime and wait for its result.
    fn run_unbounded<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| StoreError::Backend("the store is closed".into()))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = tx.send(work.await);
        });
        crate::waits::waiting(|| rx.recv())
            .map_err(|_| StoreError::Backend("the database task stopped".into()))?
    }

    /// Run one statement on `client` (a transaction's) or a pooled connection.
    fn statement(
        &self,
        client: Option<Arc<Object>>,
        sql: &str,
        params: Params,
        want: Want,
        long: bool,
    ) -> Result<Answer, StoreError> {
        let pool = self.pool.clone();
        let sql = sql.to_string();
        let within = if long { READ_WITHIN } else { ANSWER_WITHIN };
        // A pooled connection whose statement got no answer is closed, not
        // handed on with the statement still in it (a transaction's is
        // closed by `transact`).
        let breaker = self.breaker.clone();
        let started = breaker.now();
        self.admitted(async move {
            let deadline = tokio::time::Instant::now() + within;
            let pooled = client.is_none();
            let client = match client {
                Some(c) => c,
                None => Arc::new(
                    tokio::time::timeout_at(deadline, pool.get())
                        .await
                        .map_err(|_| {
                            breaker.unanswered(started);
                            no_answer()
                        })?
                        .map_err(pool_error)?,
                ),
            };
            let query = async {
                let stmt = client.prepare_cached(&sql).await?;
                match &params {
                    Params::Key(k) => client.query(&stmt, &[k]).await,
                    Params::KeyValue(k, v) => client.query(&stmt, &[k, v]).await,
                    Params::Range(lo, Some(hi), limit) => {
                        client.query(&stmt, &[lo, hi, limit]).await
                    }
                    Params::Range(lo, None, limit) => client.query(&stmt, &[lo, limit]).await,
                }
            };
            let rows = match tokio::time::timeout_at(deadline, query).await {
                Ok(rows) => breaker.heard(started, rows).map_err(db_error)?,
                Err(_) => {
                    breaker.unanswered(started);
                    cancel(&client);
                    if pooled {
                        Self::discard(client);
                    }
                    return Err(no_answer());
                }
            };
            Ok(match want {
                Want::Nothing => Answer::Nothing,
                Want::Value => Answer::Value(rows.first().map(|r| r.get::<_, Vec<u8>>(0))),
                Want::Entries => Answer::Entries(
                    rows.iter()
                        .map(|r| (r.get::<_, Vec<u8>>(0), r.get::<_, Vec<u8>>(1)))
                        .collect(),
                ),
            })
        })
    }

    fn get_with(
        &self,
        client: Option<Arc<Object>>,
        tree: Tree,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let sql = &self.sql[tree.index()].get;
        match self.statement(client, sql, Params::Key(key.to_vec()), Want::Value, false)? {
            Answer::Value(v) => Ok(v),
            _ => unreachable!("a value was asked for"),
        }
    }

    fn put_with(
        &self,
        client: Option<Arc<Object>>,
        tree: Tree,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), StoreError> {
        let sql = &self.sql[tree.index()].put;
        let params = Params::KeyValue(key.to_vec(), value.to_vec());
        self.statement(client, sql, params, Want::Nothing, false)
            .map(|_| ())
    }

    fn delete_with(
        &self,
        client: Option<Arc<Object>>,
        tree: Tree,
        key: &[u8],
    ) -> Result<(), StoreError> {
        let sql = &self.sql[tree.index()].delete;
        self.statement(client, sql, Params::Key(key.to_vec()), Want::Nothing, false)
            .map(|_| ())
    }

    /// Entries of `tree` from `lower` (inclusive) to `upper` (exclusive).
    fn range(
        &self,
        client: Option<Arc<Object>>,
        tree: Tree,
        lower: Vec<u8>,
        upper: Option<Vec<u8>>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Entry>, StoreError> {
        if limit == 0 || upper.as_ref().is_some_and(|u| *u <= lower) {
            return Ok(Vec::new());
        }
        let sql = &self.sql[tree.index()].scan[usize::from(reverse)][usize::from(upper.is_some())];
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // A page of packages (a backup's) may carry gigabytes.
        let long = tree == Tree::Packages;
        match self.statement(
            client,
            sql,
            Params::Range(lower, upper, limit),
            Want::Entries,
            long,
        )? {
            Answer::Entries(e) => Ok(e),
            _ => unreachable!("entries were asked for"),
        }
    }

    /// Run a command without results (`BEGIN`, `COMMIT`) on a transaction's connection.
    fn command(&self, client: &Arc<Object>, sql: &'static str) -> Result<(), StoreError> {
        let client = client.clone();
        let breaker = self.breaker.clone();
        let started = breaker.now();
        self.admitted(async move {
            match tokio::time::timeout(ANSWER_WITHIN, client.batch_execute(sql)).await {
                Ok(done) => breaker.heard(started, done).map_err(db_error),
                Err(_) => {
                    breaker.unanswered(started);
                    cancel(&client);
                    Err(no_answer())
                }
            }
        })
    }

    /// End a transaction that did not commit. A connection whose state is
    /// unknown afterwards is closed rather than handed to the next caller.
    fn abandon(&self, client: Arc<Object>) {
        if self.command(&client, "ROLLBACK").is_err() {
            Self::discard(client);
        }
    }

    /// Take a connection whose statement got no answer out of the pool,
    /// so no later caller waits behind it: it closes once the statement's
    /// answer (the cancel's error, or whatever a thawed server sends)
    /// arrives, and the server then ends its session and any transaction.
    fn discard(client: Arc<Object>) {
        match Arc::into_inner(client) {
            Some(object) => drop(Object::take(object)),
            // Never so: a statement's hold on its connection ends with it.
            None => tracing::warn!(
                "a PostgreSQL connection without an answer is still in use; it goes back to the pool"
            ),
        }
    }

    /// One attempt of a transaction: `Ok(committed)`, or the error that
    /// ended it (`Conflict` to try again) and whether the transaction may
    /// still be open on the connection.
    fn attempt(
        &self,
        client: &Arc<Object>,
        names: &[Tree],
        body: &dyn Fn(&dyn Txn) -> Result<(), StoreError>,
    ) -> Result<bool, Failed> {
        let open = |error| Failed { error, open: true };
        self.command(client, "BEGIN ISOLATION LEVEL SERIALIZABLE")
            .map_err(open)?;
        let txn = PgTxn {
            backend: self,
            names,
            client: client.clone(),
            failed: RefCell::new(None),
            writes: RefCell::new(BTreeMap::new()),
        };
        let result = body(&txn).and_then(|()| txn.apply());
        // The database refused a statement the body went on from: the
        // transaction is lost whatever the body concluded.
        if let Some(e) = txn.failed.borrow_mut().take() {
            return Err(open(e));
        }
        match result {
            // A COMMIT that fails ends the transaction (a serialization
            // failure rolls it back): no ROLLBACK follows, which the
            // database would answer with a warning.
            Ok(()) => match self.command(client, "COMMIT") {
                Ok(()) => Ok(true),
                Err(error) => Err(Failed { error, open: false }),
            },
            Err(StoreError::Conflict) => Err(open(StoreError::Conflict)),
            Err(_) => {
                self.command(client, "ROLLBACK").map_err(open)?;
                Ok(false)
            }
        }
    }
}

/// How an attempt of a transaction failed.
struct Failed {
    error: StoreError,
    /// Whether the transaction may still be open on its connection (and
    /// wants a ROLLBACK before the connection is used again).
    open: bool,
}

/// Create the schema, or bring it to [`SCHEMA_VERSION`], holding an
/// advisory lock so that host processes starting together take turns.
async fn migrate(pool: Pool) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    // A host starting beside another waits for its migration, however
    // long.
    client
        .batch_execute("SET statement_timeout = 0; SET lock_timeout = 0")
        .await
        .map_err(db_error)?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db_error)?;
    let result = async {
        // Created only where missing: `IF NOT EXISTS` alone would have
        // the server send a notice to every process that starts.
        let exists: bool = client
            .query_one("SELECT to_regclass('superapp_schema') IS NOT NULL", &[])
            .await
            .map_err(db_error)?
            .get(0);
        if !exists {
            client
                .batch_execute(
                    "CREATE TABLE IF NOT EXISTS superapp_schema (
                        id smallint PRIMARY KEY CHECK (id = 1),
                        version integer NOT NULL
                    )",
                )
                .await
                .map_err(db_error)?;
        }
        let found: i32 = client
            .query_opt("SELECT version FROM superapp_schema WHERE id = 1", &[])
            .await
            .map_err(db_error)?
            .map(|row| row.get(0))
            .unwrap_or(0);
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerFormat {
                found: found as u32,
                supported: SCHEMA_VERSION as u32,
            });
        }
        let steps = migrations();
        for (version, step) in steps.iter().enumerate().skip(found.max(0) as usize) {
            let next = version as i32 + 1;
            let tx = client.transaction().await.map_err(db_error)?;
            tx.batch_execute(step).await.map_err(db_error)?;
            tx.execute(
                "INSERT INTO superapp_schema (id, version) VALUES (1, $1)
                 ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version",
                &[&next],
            )
            .await
            .map_err(db_error)?;
            tx.commit().await.map_err(db_error)?;
            tracing::info!(version = next, "PostgreSQL schema migrated");
        }
        Ok(())
    }
    .await;
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    // Not pooled: its statements are unbounded, and a lock it failed to
    // give back lives as long as its session.
    drop(Object::take(client));
    result
}

/// The bounds of a scan of `prefix` after `after`, as a lower bound
/// (inclusive) and an upper one (exclusive, none for the end of the tree).
fn bounds(prefix: &[u8], after: Option<&[u8]>, reverse: bool) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut lower = prefix.to_vec();
    let mut upper = prefix_end(prefix);
    match after {
        Some(a) if !reverse => {
            // The first key after `a` is `a` followed by a zero byte.
            let mut next = a.to_vec();
            next.push(0);
            if next > lower {
                lower = next;
            }
        }
        Some(a) if upper.as_deref().is_none_or(|u| a < u) => upper = Some(a.to_vec()),
        _ => {}
    }
    (lower, upper)
}

impl Backend for PostgresBackend {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_with(None, tree, key)
    }

    fn scan(
        &self,
        tree: Tree,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Entry>, StoreError> {
        let (lower, upper) = bounds(prefix, after, reverse);
        self.range(None, tree, lower, upper, limit, reverse)
    }

    fn transact(
        &self,
        names: &[Tree],
        body: &dyn Fn(&dyn Txn) -> Result<(), StoreError>,
    ) -> Result<bool, StoreError> {
        for attempt in 1..=MAX_ATTEMPTS {
            let pool = self.pool.clone();
            let breaker = self.breaker.clone();
            let started = breaker.now();
            let client = Arc::new(self.admitted(async move {
                match tokio::time::timeout(ANSWER_WITHIN, pool.get()).await {
                    Ok(got) => got.map_err(pool_error),
                    Err(_) => {
                        breaker.unanswered(started);
                        Err(no_answer())
                    }
                }
            })?);
            match self.attempt(&client, names, body) {
                Ok(committed) => return Ok(committed),
                Err(Failed {
                    error: StoreError::Conflict,
                    open,
                }) => {
                    if open {
                        self.abandon(client);
                    }
                    // Spread the retries of transactions that met each
                    // other, so they do not meet again.
                    if attempt > 1 {
                        let jitter = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.subsec_nanos() % 1_000)
                            .unwrap_or(0);
                        let micros = (50u64 << attempt.min(8)) + u64::from(jitter);
                        // Off the caller's async worker, like every wait
                        // for the database: its other tasks run meanwhile.
                        // Not counted as a wait on the store: a conflict
                        // may be of the caller's own making (a hot key).
                        blocking(|| std::thread::sleep(Duration::from_micros(micros)));
                    }
                }
                Err(Failed {
                    error: e @ StoreError::Unavailable(_),
                    ..
                }) => {
                    Self::discard(client);
                    return Err(e);
                }
                Err(Failed { error, open }) => {
                    if open {
                        self.abandon(client);
                    }
                    return Err(error);
                }
            }
        }
        Err(StoreError::Backend(format!(
            "a transaction met concurrent ones {MAX_ATTEMPTS} times in a row; try again"
        )))
    }

    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.put_with(None, tree, key, value)
    }

    fn remove(&self, tree: Tree, key: &[u8]) -> Result<(), StoreError> {
        self.delete_with(None, tree, key)
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Every write committed before its call returned.
        Ok(())
    }

    fn for_each(&self, tree: Tree, visit: &mut Visit<'_>) -> Result<(), StoreError> {
        let mut lower = Vec::new();
        loop {
            let page = self.range(None, tree, lower.clone(), None, PAGE as usize, false)?;
            for (k, v) in &page {
                visit(k, v)?;
            }
            match page.last() {
                Some((k, _)) if page.len() == PAGE as usize => {
                    lower = k.clone();
                    lower.push(0);
                }
                _ => return Ok(()),
            }
        }
    }

    fn shared(&self) -> bool {
        true
    }
}

impl Drop for PostgresBackend {
    fn drop(&mut self) {
        // A runtime may not be dropped where blocking is not allowed (the
        // store can be dropped inside the server's own runtime).
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A transaction: every statement on its one connection.
struct PgTxn<'a> {
    backend: &'a PostgresBackend,
    /// The trees the transaction said it would touch: the others are
    /// refused, as the other engines refuse them.
    names: &'a [Tree],
    client: Arc<Object>,
    /// The first error the database reported inside this transaction.
    failed: RefCell<Option<StoreError>>,
    /// The transaction's writes (`None` deletes), by tree and key: sent at
    /// its end in that order, so that transactions writing the same rows
    /// lock them in one order and one waits for the other, never each for
    /// the other (a deadlock PostgreSQL finds only after `deadlock_timeout`,
    /// a second, with both holding their rows meanwhile), and hold their
    /// row locks only for the last round trips. Reads see them first.
    writes: RefCell<Writes>,
}

/// Values (`None`: deleted) by tree index and key.
type Writes = BTreeMap<(usize, Vec<u8>), Option<Vec<u8>>>;

impl PgTxn<'_> {
    fn client(&self, tree: Tree) -> Result<Option<Arc<Object>>, StoreError> {
        if self.names.contains(&tree) {
            Ok(Some(self.client.clone()))
        } else {
            Err(StoreError::Backend(format!(
                "tree `{}` is not part of this transaction",
                tree.name()
            )))
        }
    }

    fn note<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(e) = &result {
            self.failed.borrow_mut().get_or_insert_with(|| e.clone());
        }
        result
    }

    fn write(&self, tree: Tree, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        self.client(tree)?;
        self.writes
            .borrow_mut()
            .insert((tree.index(), key.to_vec()), value.map(<[u8]>::to_vec));
        Ok(())
    }

    /// Send the writes, in tree and key order.
    fn apply(&self) -> Result<(), StoreError> {
        let writes = std::mem::take(&mut *self.writes.borrow_mut());
        for ((tree, key), value) in writes {
            let (tree, client) = (Tree::ALL[tree], Some(self.client.clone()));
            let sent = match value {
                Some(value) => self.backend.put_with(client, tree, &key, &value),
                None => self.backend.delete_with(client, tree, &key),
            };
            self.note(sent)?;
        }
        Ok(())
    }
}

impl Txn for PgTxn<'_> {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let client = self.client(tree)?;
        if let Some(written) = self.writes.borrow().get(&(tree.index(), key.to_vec())) {
            return Ok(written.clone());
        }
        self.note(self.backend.get_with(client, tree, key))
    }

    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.write(tree, key, Some(value))
    }

    fn delete(&self, tree: Tree, key: &[u8]) -> Result<(), StoreError> {
        self.write(tree, key, None)
    }

    fn scan(
        &self,
        tree: Tree,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Entry>, StoreError> {
        let client = self.client(tree)?;
        let (lower, upper) = bounds(prefix, after, reverse);
        // This transaction's writes in the range, over the stored entries:
        // as many more of those as it deleted there make up for them.
        let writes = self.writes.borrow();
        let within = |key: &[u8]| key >= &lower[..] && upper.as_deref().is_none_or(|u| key < u);
        let mine: Vec<(&Vec<u8>, &Option<Vec<u8>>)> = writes
            .range((tree.index(), lower.clone())..)
            .take_while(|((t, key), _)| *t == tree.index() && within(key))
            .map(|((_, key), value)| (key, value))
            .collect();
        let deleted = mine.iter().filter(|(_, v)| v.is_none()).count();
        let stored = self.note(self.backend.range(
            client,
            tree,
            lower.clone(),
            upper.clone(),
            limit.saturating_add(deleted),
            reverse,
        ))?;
        if mine.is_empty() {
            return Ok(stored);
        }
        let mut seen: BTreeMap<Vec<u8>, Vec<u8>> = stored.into_iter().collect();
        for (key, value) in mine {
            match value {
                Some(v) => seen.insert(key.clone(), v.clone()),
                None => seen.remove(key),
            };
        }
        let entries: Box<dyn Iterator<Item = Entry>> = if reverse {
            Box::new(seen.into_iter().rev())
        } else {
            Box::new(seen.into_iter())
        };
        Ok(entries.take(limit).collect())
    }
}
