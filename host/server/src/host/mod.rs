//! The host's use cases, without HTTP: the one place where the store, the
//! services, the runtime and the installed apps are built (`Host::open`),
//! and the workflows that cross them — launch an app, send it an action,
//! answer a prompt and tell the app, expire payment sheets. The HTTP
//! handlers parse, authorize and call these thinly; tests can call them
//! directly.
//!
//! Durability lives here: a workflow that writes awaits the store's flush
//! before it returns, so whatever calls it may acknowledge at once.
//! (Identity and messaging flush inside their own services.)

mod apps;
mod backup;
mod callbacks;
mod demo;
mod prompts;
mod registry;
mod wallet;
mod work;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use superapp_runtime::capabilities::http::Gateway;
use superapp_runtime::capabilities::notify::ChatNotifier;
use superapp_runtime::{App, RunError, Runtime, RuntimeConfig, Services};
use superapp_services::audit::Audit;
use superapp_services::callbacks::Callbacks;
use superapp_services::consent::{Consent, ConsentError};
use superapp_services::documents::requests::Requests;
use superapp_services::documents::{DocumentError, Documents, HolderKeys, HostKey};
use superapp_services::egress::Egress;
use superapp_services::identity::{Identity, IdentityError, Pseudonyms, Secrets};
use superapp_services::ledger::orders::{OrderError, Orders};
use superapp_services::ledger::{Ledger, LedgerError};
use superapp_services::messaging::{Hub, Messaging, MessagingError};
use superapp_services::registry::{Registry, RegistryError};
use superapp_store::{Quota, Store, StoreError, StoreKv};

pub use backup::{restorable, BackupManifest, BACKUP_FORMAT, FILES, MANIFEST, RESTORING, SNAPSHOT};
pub use demo::{demo_issuer_key, DemoUser, DEMO_INSURER, DEMO_PASSWORD, DEMO_USERS};
pub use prompts::{Answer, Answered};
pub use wallet::{Transfer, TransferDone};
pub use work::{Job, AT_ONCE};

use crate::config::{ServerConfig, StoreLocation};

/// Why a workflow did not complete. Each variant wraps the service error
/// that stopped it, except the few refusals that only a workflow can make;
/// `api/error.rs` maps all of them to HTTP.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("no app `{0}`")]
    NoApp(String),
    /// The app failed (trap, limit, bad view): it was recorded in the audit log.
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// A stored release the registry offers does not load (its package
    /// missing, damaged or no longer accepted): the host's fault, told in
    /// its log, not the caller's.
    #[error("{0} cannot be opened now: its stored package does not load (the operator is told)")]
    AppUnavailable(String),
    /// The user starts app events faster than `app-events-per-user`
    /// allows; nothing ran.
    #[error("too many app launches and actions: a user may start {per_second} a second (after a pause, {burst} at once); the next may go in {} ms", retry_after.as_millis())]
    Throttled {
        per_second: u32,
        burst: u32,
        retry_after: std::time::Duration,
    },
    /// The step-up password was wrong; nothing moved.
    #[error("the password is wrong; no money moved")]
    WrongPassword,
    /// The payment sheet expired before the user answered.
    #[error("this payment request expired; nothing was paid")]
    OrderExpired,
    #[error(transparent)]
    Identity(IdentityError),
    #[error(transparent)]
    Messaging(#[from] MessagingError),
    #[error(transparent)]
    Consent(#[from] ConsentError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Order(#[from] OrderError),
    #[error(transparent)]
    Document(#[from] DocumentError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<IdentityError> for HostError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::BadCredentials => HostError::WrongPassword,
            other => HostError::Identity(other),
        }
    }
}

/// Everything one host process serves with.
pub struct Host {
    pub store: Arc<Store>,
    pub identity: Arc<Identity>,
    pub messaging: Arc<Messaging>,
    pub audit: Arc<Audit>,
    pub consent: Arc<Consent>,
    pub ledger: Arc<Ledger>,
    pub orders: Arc<Orders>,
    pub documents: Arc<Documents>,
    pub requests: Arc<Requests>,
    pub host_key: Arc<HostKey>,
    /// Provider callbacks waiting to be delivered, and the egress they go out through.
    pub callbacks: Arc<Callbacks>,
    egress: Arc<Egress>,
    pub runtime: Runtime,
    /// What the capabilities reach, shared by every instance.
    pub services: Arc<Services>,
    /// Publishers, auditors, every published version and its review.
    pub registry: Arc<Registry>,
    /// Prepared apps by package digest.
    loaded: Mutex<HashMap<String, Arc<App>>>,
    /// Releases whose stored package did not load the last time it was
    /// tried (`readyz` names them).
    unloadable: Mutex<std::collections::BTreeSet<String>>,
    /// SHA-256 of the operator's token (see [`OPERATOR_TOKEN`]).
    operator_token_sha256: String,
    /// Everything `/metrics` shows.
    pub metrics: crate::metrics::Metrics,
    /// Where the store and the keys live.
    pub data_dir: std::path::PathBuf,
    /// The deployment's name on the bus: the same on every process of one
    /// store (derived from the host secret they share, which it does not
    /// reveal), different for another deployment on the same NATS server.
    pub bus_namespace: String,
    /// How fast each user may launch apps and act in them (per process).
    events: governor::DefaultKeyedRateLimiter<String>,
    /// The rate `events` was made with, as a refusal states it.
    events_per_second: std::num::NonZeroU32,
}

/// 16 hex digits naming a deployment on the bus (see [`Host::bus_namespace`]).
fn bus_namespace(secret: &[u8]) -> String {
    let mut input = b"superapp bus namespace\0".to_vec();
    input.extend_from_slice(secret);
    superapp_services::audit::digest_hex(&input)[..16].to_string()
}

/// The host's private file holding the operator's API token (on a shared
/// store, each node's data directory holds a copy).
pub const OPERATOR_TOKEN: &str = "operator.token";

/// Make the data directory `dir` (and any folder above it that is missing)
/// readable by the host's user only.
pub fn create_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| anyhow::anyhow!("cannot create the data directory {}: {e}", dir.display()))
}

impl Host {
    /// Open the data directory and build every service, publish the
    /// development apps directory if one is configured, and prepare every
    /// launchable version. A broken app in the apps directory stops the
    /// start, with its name in the message: better than serving half the apps.
    pub fn open(config: &ServerConfig) -> anyhow::Result<Host> {
        let data_dir = &config.data_dir;
        if data_dir.join(RESTORING).exists() {
            anyhow::bail!(
                "{} holds a restore that did not finish ({RESTORING} is there): empty it and restore again",
                data_dir.display()
            );
        }
        // Only the host's user may read what it holds (messages, ledger,
        // keys): made so, and said so when it is not.
        {
            use std::os::unix::fs::PermissionsExt as _;
            create_data_dir(data_dir)?;
            let mode = std::fs::metadata(data_dir)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    data_dir = %data_dir.display(),
                    mode = format!("{mode:o}"),
                    "other users may read the data directory (its messages, ledger and records); `chmod 700` it"
                );
            }
        }
        let store = match &config.store {
            StoreLocation::Embedded => {
                Store::open_with_cache(&data_dir.join("store"), config.store_cache_bytes)?
            }
            StoreLocation::Postgres { url, connections } => Store::connect(url, *connections)
                .map_err(|e| anyhow::anyhow!("cannot open the PostgreSQL store: {e}"))?,
        };
        // Every node on a shared store derives, signs and authorizes alike.
        let secrets = Secrets::for_store(data_dir, &store);
        let secret = secrets.host_secret()?;
        // Stores written before prompts were indexed get their indexes.
        superapp_services::prompts::index_existing(&store)?;
        // And usernames, what they read as.
        Identity::index_existing_usernames(&store)?;
        let hub = Arc::new(Hub::new(config.ws_queue));
        let identity = Arc::new(Identity::new(store.clone(), config.identity.clone()));
        let messaging = Arc::new(Messaging::new(store.clone(), hub, config.messaging.clone()));
        let purging = messaging.resume_purges()?;
        if purging > 0 {
            tracing::info!(
                groups = purging,
                "deleting what groups emptied before the last stop still hold"
            );
        }
        let audit = Arc::new(Audit::open(store.clone())?);
        let consent = Arc::new(Consent::new(store.clone(), audit.clone()));
        let ledger = Arc::new(Ledger::new(store.clone(), audit.clone()));
        let recorded = ledger.audit_earlier_transfers()?;
        if recorded > 0 {
            tracing::info!(
                transfers = recorded,
                "recorded in the audit log the top-ups and transfers made before it covered them"
            );
        }
        let orders = Arc::new(Orders::new(
            store.clone(),
            audit.clone(),
            config.apps.order_ttl,
        ));
        let documents = Arc::new(Documents::new(store.clone()));
        let host_key = Arc::new(HostKey::load_or_create(&secrets)?);
        let requests = Arc::new(Requests::new(
            store.clone(),
            audit.clone(),
            documents.clone(),
            host_key.clone(),
            HolderKeys::new(&secret),
            config.apps.document_ttl,
        ));
        let runtime = Runtime::new(RuntimeConfig {
            cache_dir: Some(data_dir.join("cache")),
            scheduler: config.apps.scheduler,
            compile_worker: config.apps.compile_worker.clone(),
            ..RuntimeConfig::default()
        })?;
        // One egress (one connection pool, one set of per-app budgets) for
        // apps' requests and the host's callbacks.
        let egress = Arc::new(Egress::new(config.egress.clone())?);
        let services = Arc::new(Services {
            kv: Arc::new(StoreKv::new(store.clone())),
            quota: Quota::default(),
            pseudonyms: Pseudonyms::new(&secret),
            consent: consent.clone(),
            profiles: identity.clone(),
            notifier: Arc::new(ChatNotifier::new(
                messaging.clone(),
                consent.clone(),
                &store,
            )),
            payments: orders.clone(),
            documents: requests.clone(),
            http: Arc::new(Gateway {
                egress: egress.clone(),
                host_key: host_key.clone(),
                pseudonyms: Pseudonyms::new(&secret),
                audit: Some(audit.clone()),
            }),
            logs: Default::default(),
            storage_writes: Default::default(),
        });
        let registry = Arc::new(Registry::open(
            store.clone(),
            audit.clone(),
            config.registry.policy.clone(),
        )?);
        let token = secrets.load_or_create(OPERATOR_TOKEN, || {
            Ok(superapp_core::ids::random_token().into_bytes())
        })?;
        if secrets.shared() {
            // The operator's CLI reads the token from a data directory:
            // each node's holds a copy of the one every node accepts.
            let copy = data_dir.join(OPERATOR_TOKEN);
            if std::fs::read(&copy).ok().as_deref() != Some(token.as_slice()) {
                let _ = std::fs::remove_file(&copy);
                superapp_services::identity::load_or_create_private(&copy, || Ok(token.clone()))?;
            }
        }
        let token = String::from_utf8_lossy(&token).trim().to_string();
        if token.is_empty() {
            anyhow::bail!(
                "{} is empty: no one could use the operator API; remove it, and the host makes a new token at start",
                secrets.describe(OPERATOR_TOKEN)
            );
        }
        let metrics = crate::metrics::Metrics::new(crate::metrics::Sources {
            runtime: runtime.metrics().clone(),
            flush_seconds: store.flush_seconds(),
            messages: messaging.sent(),
            throttled_sends: messaging.throttled(),
        });
        let callbacks = Arc::new(Callbacks::new(store.clone(), audit.clone()));
        let host = Host {
            store,
            identity,
            messaging,
            audit,
            consent,
            ledger,
            orders,
            documents,
            requests,
            host_key,
            callbacks,
            egress,
            runtime,
            services,
            registry,
            loaded: Mutex::new(HashMap::new()),
            unloadable: Mutex::default(),
            operator_token_sha256: superapp_core::sha256_hex(token.as_bytes()),
            metrics,
            data_dir: data_dir.to_path_buf(),
            bus_namespace: bus_namespace(&secret),
            events: governor::RateLimiter::keyed(
                governor::Quota::per_second(config.apps.events_per_user).allow_burst(
                    config
                        .apps
                        .events_per_user
                        .saturating_mul(std::num::NonZeroU32::new(5).expect("not 0")),
                ),
            ),
            events_per_second: config.apps.events_per_user,
        };
        if let Some(dir) = &config.apps_dir {
            host.publish_dev_apps(dir, &secrets, config.registry.dev_approve, config.demo)?;
            host.store.flush_now()?;
        }
        Ok(host)
    }

    /// Whether `token` is the operator's.
    pub fn is_operator_token(&self, token: &str) -> bool {
        !token.is_empty()
            && superapp_core::sha256_hex(token.trim().as_bytes()) == self.operator_token_sha256
    }

    /// Wait until everything written so far is on disk.
    async fn flush(&self) -> Result<(), HostError> {
        Ok(self.store.durable().await?)
    }
}

#[cfg(test)]
mod tests;
