//! Server configuration: defaults, then a TOML file, then `SUPERAPP_*`
//! environment variables, then command-line flags, each overriding the last.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::Deserialize;

use crate::apps::AppsConfig;
use crate::listener::ConnectionLimits;
use superapp_core::Capability;
use superapp_runtime::{CompileBudget, SchedulerConfig};
use superapp_services::egress::EgressConfig;
use superapp_services::identity::IdentityConfig;
use superapp_services::messaging::{MessagingConfig, SendRate};
use superapp_services::registry::{AutoApprove, Policy};

/// The config file's keys. Every key can also be set with an environment
/// variable: `SUPERAPP_` + the key in upper case with `_` for `-`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub apps_dir: Option<PathBuf>,
    pub password_iterations: Option<u32>,
    pub session_ttl_secs: Option<u64>,
    pub login_max_failures_per_user: Option<u32>,
    pub login_max_failures_per_account: Option<u32>,
    pub login_max_failures_per_client: Option<u32>,
    pub login_window_secs: Option<u64>,
    /// Password hashes that run at once (default: half the cores).
    pub password_hash_slots: Option<usize>,
    /// Sign-ups one client address may make an hour (default 100).
    pub signups_per_client: Option<u32>,
    pub max_body_bytes: Option<usize>,
    pub request_timeout_secs: Option<u64>,
    /// Open connections over all clients, and from one client address.
    pub max_connections: Option<usize>,
    pub max_connections_per_client: Option<usize>,
    /// Time to send a request's headers (also the keep-alive idle time).
    pub header_timeout_secs: Option<u64>,
    /// A connection that moves no byte either way for this long is closed.
    pub idle_timeout_secs: Option<u64>,
    pub max_message_bytes: Option<usize>,
    /// Chat messages one user may send a second (bursts of five seconds'
    /// worth); default 10.
    pub chat_rate_per_user: Option<u32>,
    /// App launches and actions one user may start a second (bursts of
    /// five seconds' worth); default 20.
    pub app_events_per_user: Option<u32>,
    /// The store's page cache, in MiB (default 128).
    pub store_cache_mib: Option<u64>,
    /// Where the records live: unset for the embedded store in the data
    /// directory, or `postgres://user:password@host:port/database` for a
    /// database several host processes share.
    pub store: Option<String>,
    /// Connections to that database this process keeps (default 16).
    pub store_connections: Option<usize>,
    /// `nats://host:port` (several separated by commas): the bus that
    /// carries live pushes between host processes sharing one store.
    pub bus: Option<String>,
    pub ws_queue: Option<usize>,
    /// Live connections (WebSockets) one user may hold in this process.
    pub max_live_connections_per_user: Option<usize>,
    pub heartbeat_secs: Option<u64>,
    pub cookie_secure: Option<bool>,
    pub payment_ttl_secs: Option<u64>,
    pub document_ttl_secs: Option<u64>,
    /// Events that execute at once (default: the number of cores).
    pub event_slots: Option<usize>,
    /// Events alive at once, running or waiting on a host call (default
    /// 64): the sandbox's instance pool.
    pub event_instances: Option<usize>,
    /// Events of one app alive at once (default 16).
    pub event_instances_per_app: Option<usize>,
    /// Events admitted at once (running or waiting), over all apps.
    pub max_pending_events: Option<usize>,
    /// Events of one app admitted at once.
    pub max_pending_events_per_app: Option<usize>,
    /// Longest wait for a free slot before an event is refused with 503.
    pub max_event_wait_ms: Option<u64>,
    /// Longest a component may take to compile (default 25 s); one that
    /// takes longer is refused.
    pub compile_timeout_secs: Option<u64>,
    /// Most memory compiling a component may take, in MiB (default 2048).
    pub compile_memory_mib: Option<u64>,
    /// Capabilities whose packages need a trusted auditor's approval.
    pub sensitive_capabilities: Option<Vec<String>>,
    /// `non-sensitive` (default) or `never`.
    pub auto_approve: Option<String>,
    /// Approve what `--apps` publishes with a development auditor key.
    pub dev_approve: Option<bool>,
    /// Seed demo users, money and documents (`serve --demo`).
    pub demo: Option<bool>,
    /// `host:port` pairs apps may reach over plain http (https otherwise).
    pub http_plain_origins: Option<Vec<String>>,
    /// Host names apps' requests may resolve to internal addresses.
    pub http_private_hosts: Option<Vec<String>>,
    /// Reverse proxies (addresses or networks) whose `X-Forwarded-For`
    /// names the client; every other peer is the client itself.
    pub trusted_proxies: Option<Vec<String>>,
    /// Names resolved from this table instead of DNS, as `/etc/hosts` does.
    pub http_hosts: Option<std::collections::BTreeMap<String, Vec<String>>>,
    pub http_max_request_bytes: Option<usize>,
    pub http_max_response_bytes: Option<usize>,
    pub http_timeout_ms: Option<u64>,
    pub http_max_concurrent_per_app: Option<usize>,
    pub http_rate_per_app: Option<u32>,
}

/// Where the host's records live.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// The embedded store (sled) in `<data dir>/store`, owned by this process.
    Embedded,
    /// A PostgreSQL database (its URL, and the connections to keep).
    Postgres { url: String, connections: usize },
}

impl std::fmt::Debug for StoreLocation {
    // The URL may carry a password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Embedded => f.write_str("Embedded"),
            StoreLocation::Postgres { connections, .. } => {
                write!(f, "Postgres {{ connections: {connections}, .. }}")
            }
        }
    }
}

impl StoreLocation {
    /// The `store` setting (with `store-connections`): no URL is the
    /// embedded store, a postgres:// URL a database; anything else is refused.
    pub fn parse(url: Option<String>, connections: Option<usize>) -> anyhow::Result<StoreLocation> {
        let connections = match connections {
            Some(0) => bail!("store-connections must be at least 1"),
            Some(n) => n,
            None => 16,
        };
        match url.as_deref().map(str::trim) {
            None | Some("") => Ok(StoreLocation::Embedded),
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                Ok(StoreLocation::Postgres {
                    url: u.to_string(),
                    connections,
                })
            }
            Some(_) => bail!(
                "store: expected a postgres:// URL, or no setting for the embedded store in the data directory"
            ),
        }
    }
}

/// What carries live pushes to the host's other processes.
#[derive(Clone, PartialEq, Eq)]
pub enum BusLocation {
    /// Nothing: one host process.
    None,
    /// NATS servers (their URLs; credentials may be in them).
    Nats { urls: Vec<String> },
}

impl std::fmt::Debug for BusLocation {
    // A URL may carry a password or token: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BusLocation::None => f.write_str("None"),
            BusLocation::Nats { urls } => write!(f, "Nats {{ servers: {}, .. }}", urls.len()),
        }
    }
}

impl BusLocation {
    fn parse(urls: Option<String>, store: &StoreLocation) -> anyhow::Result<BusLocation> {
        let Some(urls) = urls.filter(|u| !u.trim().is_empty()) else {
            return Ok(BusLocation::None);
        };
        let urls: Vec<String> = urls.split(',').map(|u| u.trim().to_string()).collect();
        if let Some(bad) = urls.iter().find(|u| !u.starts_with("nats://")) {
            let shown = bad.split("://").next().unwrap_or_default();
            bail!("bus: expected nats:// URLs separated by commas, got a `{shown}` one");
        }
        if *store == StoreLocation::Embedded {
            bail!(
                "bus: host processes that share a bus must share a store too; set store to a postgres:// URL"
            );
        }
        Ok(BusLocation::Nats { urls })
    }
}

/// Everything `serve` needs, resolved.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Installed mini-programs: one subdirectory per app.
    pub apps_dir: Option<PathBuf>,
    /// Seed the demo's users, money and documents at start.
    pub demo: bool,
    pub identity: IdentityConfig,
    pub messaging: MessagingConfig,
    pub api: ApiConfig,
    pub ws_queue: usize,
    /// The store's page cache, in bytes.
    pub store_cache_bytes: u64,
    /// Which engine holds the records.
    pub store: StoreLocation,
    pub bus: BusLocation,
    pub connections: ConnectionLimits,
    pub apps: AppsConfig,
    pub registry: RegistryConfig,
    /// Apps' requests to their backends (the `http` capability).
    pub egress: EgressConfig,
    /// Reverse proxies trusted to name their clients.
    pub trusted_proxies: crate::proxies::TrustedProxies,
}

/// The registry's policy, and what `serve --apps DIR` does for development.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    pub policy: Policy,
    /// Sign approvals of the apps directory's packages with a development
    /// auditor key that this host trusts. Never in production.
    pub dev_approve: bool,
}

/// The HTTP API's own settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub heartbeat: Duration,
    /// Mark the session cookie `Secure` (set when served over HTTPS).
    pub cookie_secure: bool,
    /// Live connections (WebSockets) one user may hold in this process.
    pub max_live_per_user: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_body_bytes: 64 << 10,
            request_timeout: Duration::from_secs(30),
            heartbeat: Duration::from_secs(20),
            cookie_secure: false,
            max_live_per_user: 64,
        }
    }
}

/// A comma-separated list from `SUPERAPP_*`.
fn env_list(key: &str, slot: &mut Option<Vec<String>>) -> anyhow::Result<()> {
    let mut raw: Option<String> = None;
    env_value(key, &mut raw)?;
    if let Some(raw) = raw {
        *slot = Some(
            raw.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        );
    }
    Ok(())
}

fn env_value<T: std::str::FromStr>(key: &str, slot: &mut Option<T>) -> anyhow::Result<()>
where
    T::Err: std::fmt::Display,
{
    let var = format!("SUPERAPP_{}", key.to_uppercase().replace('-', "_"));
    if let Ok(raw) = std::env::var(&var) {
        *slot = Some(
            raw.parse()
                .map_err(|e| anyhow::anyhow!("{var}={raw}: {e}"))?,
        );
    }
    Ok(())
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        // A config file is a few kilobytes; a megabyte is plenty.
        let text = superapp_core::files::read_text_at_most(path, 1 << 20)
            .with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))
    }

    /// Apply `SUPERAPP_*` environment overrides.
    pub fn apply_env(&mut self) -> anyhow::Result<()> {
        env_value("listen", &mut self.listen)?;
        env_value("data-dir", &mut self.data_dir)?;
        env_value("apps-dir", &mut self.apps_dir)?;
        env_value("password-iterations", &mut self.password_iterations)?;
        env_value("session-ttl-secs", &mut self.session_ttl_secs)?;
        env_value(
            "login-max-failures-per-user",
            &mut self.login_max_failures_per_user,
        )?;
        env_value(
            "login-max-failures-per-account",
            &mut self.login_max_failures_per_account,
        )?;
        env_value(
            "login-max-failures-per-client",
            &mut self.login_max_failures_per_client,
        )?;
        env_value("login-window-secs", &mut self.login_window_secs)?;
        env_value("password-hash-slots", &mut self.password_hash_slots)?;
        env_value("signups-per-client", &mut self.signups_per_client)?;
        env_value("max-body-bytes", &mut self.max_body_bytes)?;
        env_value("request-timeout-secs", &mut self.request_timeout_secs)?;
        env_value("max-connections", &mut self.max_connections)?;
        env_value(
            "max-connections-per-client",
            &mut self.max_connections_per_client,
        )?;
        env_value("header-timeout-secs", &mut self.header_timeout_secs)?;
        env_value("idle-timeout-secs", &mut self.idle_timeout_secs)?;
        env_value("max-message-bytes", &mut self.max_message_bytes)?;
        env_value("chat-rate-per-user", &mut self.chat_rate_per_user)?;
        env_value("app-events-per-user", &mut self.app_events_per_user)?;
        env_value("store-cache-mib", &mut self.store_cache_mib)?;
        env_value("store", &mut self.store)?;
        env_value("store-connections", &mut self.store_connections)?;
        env_value("bus", &mut self.bus)?;
        env_value("ws-queue", &mut self.ws_queue)?;
        env_value(
            "max-live-connections-per-user",
            &mut self.max_live_connections_per_user,
        )?;
        env_value("heartbeat-secs", &mut self.heartbeat_secs)?;
        env_value("cookie-secure", &mut self.cookie_secure)?;
        env_value("payment-ttl-secs", &mut self.payment_ttl_secs)?;
        env_value("document-ttl-secs", &mut self.document_ttl_secs)?;
        env_value("event-slots", &mut self.event_slots)?;
        env_value("event-instances", &mut self.event_instances)?;
        env_value("event-instances-per-app", &mut self.event_instances_per_app)?;
        env_value("max-pending-events", &mut self.max_pending_events)?;
        env_value(
            "max-pending-events-per-app",
            &mut self.max_pending_events_per_app,
        )?;
        env_value("max-event-wait-ms", &mut self.max_event_wait_ms)?;
        env_value("compile-timeout-secs", &mut self.compile_timeout_secs)?;
        env_value("compile-memory-mib", &mut self.compile_memory_mib)?;
        env_value("auto-approve", &mut self.auto_approve)?;
        env_value("dev-approve", &mut self.dev_approve)?;
        env_value("demo", &mut self.demo)?;
        env_value("http-max-request-bytes", &mut self.http_max_request_bytes)?;
        env_value("http-max-response-bytes", &mut self.http_max_response_bytes)?;
        env_value("http-timeout-ms", &mut self.http_timeout_ms)?;
        env_value(
            "http-max-concurrent-per-app",
            &mut self.http_max_concurrent_per_app,
        )?;
        env_value("http-rate-per-app", &mut self.http_rate_per_app)?;
        env_list("http-plain-origins", &mut self.http_plain_origins)?;
        env_list("http-private-hosts", &mut self.http_private_hosts)?;
        env_list("trusted-proxies", &mut self.trusted_proxies)?;
        let mut pairs = None;
        env_list("http-hosts", &mut pairs)?;
        if let Some(pairs) = pairs {
            let mut table = std::collections::BTreeMap::<String, Vec<String>>::new();
            for pair in pairs {
                let (name, ip) = pair.split_once('=').with_context(|| {
                    format!("SUPERAPP_HTTP_HOSTS: `{pair}` is not NAME=ADDRESS")
                })?;
                table
                    .entry(name.trim().into())
                    .or_default()
                    .push(ip.trim().into());
            }
            self.http_hosts = Some(table);
        }
        let mut list: Option<String> = None;
        env_value("sensitive-capabilities", &mut list)?;
        if let Some(list) = list {
            self.sensitive_capabilities = Some(
                list.split(',')
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty())
                    .collect(),
            );
        }
        Ok(())
    }

    pub fn resolve(mut self) -> anyhow::Result<ServerConfig> {
        let registry = self.registry_config()?;
        let egress = self.egress_config()?;
        let store = StoreLocation::parse(self.store.take(), self.store_connections)?;
        let listen_raw = self.listen.unwrap_or_else(|| "127.0.0.1:8080".to_string());
        let listen: SocketAddr = listen_raw.parse().with_context(|| {
            format!("listen: `{listen_raw}` is not an address like 127.0.0.1:8080")
        })?;
        let identity_defaults = IdentityConfig::default();
        let password_iterations = match self.password_iterations {
            // Past about 17 times the default a login takes seconds of a core.
            Some(n) => NonZeroU32::new(n)
                .filter(|n| n.get() <= 10_000_000)
                .with_context(|| {
                    format!("password-iterations must be between 1 and 10000000, not {n}")
                })?,
            None => identity_defaults.password_iterations,
        };
        // Times and sizes within what makes sense for each, so none can
        // overflow the arithmetic it ends up in (an instant plus u64::MAX
        // seconds) or lock everyone out by wrapping around.
        let within = |key: &str, v: Option<u64>, max: u64| -> anyhow::Result<Option<u64>> {
            match v {
                Some(n) if n == 0 || n > max => {
                    bail!("{key} must be between 1 and {max}, not {n}")
                }
                v => Ok(v),
            }
        };
        let failures = |key: &str, v: Option<u32>| -> anyhow::Result<Option<u32>> {
            match v {
                Some(n) if n == 0 || n > 10_000 => {
                    bail!("{key} must be between 1 and 10000, not {n}")
                }
                v => Ok(v),
            }
        };
        const HOUR: u64 = 3600;
        const DAY: u64 = 24 * HOUR;
        const MAX_MIB: u64 = 1 << 20;
        let sized = |key: &str,
                     v: Option<usize>,
                     range: std::ops::RangeInclusive<usize>|
         -> anyhow::Result<Option<usize>> {
            match v {
                Some(n) if !range.contains(&n) => bail!(
                    "{key} must be between {} and {}, not {n}",
                    range.start(),
                    range.end()
                ),
                v => Ok(v),
            }
        };
        // Counts: at least one, and at most a million (the sandbox's
        // instances and the event slots far fewer, since each is reserved
        // or made at start).
        const MAX_COUNT: usize = 1 << 20;
        let count = |key: &str, v: Option<usize>| sized(key, v, 1..=MAX_COUNT);
        let api_defaults = ApiConfig::default();
        let heartbeat = within("heartbeat-secs", self.heartbeat_secs, HOUR)?
            .map_or(api_defaults.heartbeat, Duration::from_secs);
        let conn_defaults = ConnectionLimits::default();
        let connections = ConnectionLimits {
            max_connections: count("max-connections", self.max_connections)?
                .unwrap_or(conn_defaults.max_connections),
            max_per_client: count(
                "max-connections-per-client",
                self.max_connections_per_client,
            )?
            .unwrap_or(conn_defaults.max_per_client),
            header_timeout: within("header-timeout-secs", self.header_timeout_secs, HOUR)?
                .map_or(conn_defaults.header_timeout, Duration::from_secs),
            idle_timeout: within("idle-timeout-secs", self.idle_timeout_secs, DAY)?
                .map_or(conn_defaults.idle_timeout, Duration::from_secs),
            ..conn_defaults
        };
        if connections.idle_timeout <= heartbeat {
            bail!(
                "idle-timeout-secs ({}) must be longer than heartbeat-secs ({}), or idle WebSockets are closed",
                connections.idle_timeout.as_secs(),
                heartbeat.as_secs()
            );
        }
        let apps_defaults = AppsConfig::default();
        let sched = apps_defaults.scheduler;
        let scheduler = SchedulerConfig {
            slots: sized("event-slots", self.event_slots, 1..=4096)?.unwrap_or(sched.slots),
            instances: sized("event-instances", self.event_instances, 1..=1 << 16)?
                .unwrap_or(sched.instances),
            instances_per_app: count("event-instances-per-app", self.event_instances_per_app)?
                .unwrap_or(sched.instances_per_app),
            max_pending: count("max-pending-events", self.max_pending_events)?
                .unwrap_or(sched.max_pending),
            max_pending_per_app: count(
                "max-pending-events-per-app",
                self.max_pending_events_per_app,
            )?
            .unwrap_or(sched.max_pending_per_app),
            max_wait: within("max-event-wait-ms", self.max_event_wait_ms, 600_000)?
                .map_or(sched.max_wait, Duration::from_millis),
            slice: sched.slice,
        };
        if scheduler.max_pending_per_app > scheduler.max_pending {
            bail!(
                "max-pending-events-per-app ({}) must not exceed max-pending-events ({})",
                scheduler.max_pending_per_app,
                scheduler.max_pending
            );
        }
        if scheduler.instances_per_app > scheduler.instances {
            bail!(
                "event-instances-per-app ({}) must not exceed event-instances ({})",
                scheduler.instances_per_app,
                scheduler.instances
            );
        }
        let messaging_defaults = MessagingConfig::default();
        Ok(ServerConfig {
            listen,
            data_dir: self
                .data_dir
                .unwrap_or_else(|| PathBuf::from("./superapp-data")),
            apps_dir: self.apps_dir,
            demo: self.demo.unwrap_or(false),
            identity: IdentityConfig {
                password_iterations,
                session_ttl: within("session-ttl-secs", self.session_ttl_secs, 400 * DAY)?
                    .map_or(identity_defaults.session_ttl, Duration::from_secs),
                // Zero would lock an account (or everyone behind an
                // address) out at the first wrong password.
                max_failures_per_user: failures(
                    "login-max-failures-per-user",
                    self.login_max_failures_per_user,
                )?
                .unwrap_or(identity_defaults.max_failures_per_user),
                max_failures_per_account: failures(
                    "login-max-failures-per-account",
                    self.login_max_failures_per_account,
                )?
                .unwrap_or(identity_defaults.max_failures_per_account),
                max_failures_per_client: failures(
                    "login-max-failures-per-client",
                    self.login_max_failures_per_client,
                )?
                .unwrap_or(identity_defaults.max_failures_per_client),
                failure_window: within("login-window-secs", self.login_window_secs, 30 * DAY)?
                    .map_or(identity_defaults.failure_window, Duration::from_secs),
                hash_slots: match sized("password-hash-slots", self.password_hash_slots, 1..=1024)?
                {
                    None => identity_defaults.hash_slots,
                    Some(n) => {
                        std::num::NonZeroUsize::new(n).unwrap_or(std::num::NonZeroUsize::MIN)
                    }
                },
                max_signups_per_client: match self.signups_per_client {
                    None => identity_defaults.max_signups_per_client,
                    Some(n) if n == 0 || n > 1 << 20 => {
                        bail!(
                            "signups-per-client must be between 1 and {}, not {n}",
                            1 << 20
                        )
                    }
                    Some(n) => n,
                },
            },
            messaging: MessagingConfig {
                max_message_bytes: sized("max-message-bytes", self.max_message_bytes, 1..=1 << 20)?
                    .unwrap_or(messaging_defaults.max_message_bytes),
                send_rate: match self.chat_rate_per_user {
                    None => messaging_defaults.send_rate,
                    Some(n) => SendRate::per_second(NonZeroU32::new(n).ok_or_else(|| {
                        anyhow::anyhow!("chat-rate-per-user must be greater than 0")
                    })?),
                },
                ..messaging_defaults
            },
            api: ApiConfig {
                max_body_bytes: sized("max-body-bytes", self.max_body_bytes, 1 << 10..=1 << 30)?
                    .unwrap_or(api_defaults.max_body_bytes),
                request_timeout: within("request-timeout-secs", self.request_timeout_secs, HOUR)?
                    .map_or(api_defaults.request_timeout, Duration::from_secs),
                heartbeat,
                cookie_secure: self.cookie_secure.unwrap_or(api_defaults.cookie_secure),
                max_live_per_user: sized(
                    "max-live-connections-per-user",
                    self.max_live_connections_per_user,
                    1..=1 << 16,
                )?
                .unwrap_or(api_defaults.max_live_per_user),
            },
            ws_queue: sized("ws-queue", self.ws_queue, 1..=1 << 20)?.unwrap_or(256),
            store_cache_bytes: within("store-cache-mib", self.store_cache_mib, MAX_MIB)?
                .map_or(superapp_store::DEFAULT_CACHE_BYTES, |mib| mib << 20),
            bus: BusLocation::parse(self.bus.take(), &store)?,
            store,
            connections,
            apps: AppsConfig {
                order_ttl: within("payment-ttl-secs", self.payment_ttl_secs, 30 * DAY)?
                    .map_or(apps_defaults.order_ttl, Duration::from_secs),
                document_ttl: within("document-ttl-secs", self.document_ttl_secs, 30 * DAY)?
                    .map_or(apps_defaults.document_ttl, Duration::from_secs),
                scheduler,
                compile_budget: CompileBudget {
                    time: within("compile-timeout-secs", self.compile_timeout_secs, HOUR)?
                        .map_or(apps_defaults.compile_budget.time, Duration::from_secs),
                    memory_bytes: within("compile-memory-mib", self.compile_memory_mib, MAX_MIB)?
                        .map_or(apps_defaults.compile_budget.memory_bytes, |mib| mib << 20),
                },
                compile_worker: None,
                events_per_user: match self.app_events_per_user {
                    None => apps_defaults.events_per_user,
                    Some(n) => NonZeroU32::new(n).ok_or_else(|| {
                        anyhow::anyhow!("app-events-per-user must be greater than 0")
                    })?,
                },
            },
            registry,
            egress,
            trusted_proxies: crate::proxies::TrustedProxies::parse(
                self.trusted_proxies.as_deref().unwrap_or_default(),
            )?,
        })
    }

    fn egress_config(&self) -> anyhow::Result<EgressConfig> {
        let d = EgressConfig::default();
        let lower = |v: &Option<Vec<String>>| -> std::collections::BTreeSet<String> {
            v.iter()
                .flatten()
                .map(|s| s.trim().to_ascii_lowercase())
                .collect()
        };
        let plain_http = lower(&self.http_plain_origins);
        if let Some(pair) = plain_http
            .iter()
            .find(|p| !superapp_services::egress::is_host_port(p))
        {
            bail!("http-plain-origins: `{pair}` is not HOST:PORT");
        }
        let mut hosts = std::collections::BTreeMap::new();
        for (name, ips) in self.http_hosts.iter().flatten() {
            let ips = ips
                .iter()
                .map(|ip| {
                    ip.parse().with_context(|| {
                        format!("http-hosts: `{ip}` (for {name}) is not an IP address")
                    })
                })
                .collect::<anyhow::Result<Vec<std::net::IpAddr>>>()?;
            hosts.insert(name.trim().to_ascii_lowercase(), ips);
        }
        let count = |key: &str, v: Option<usize>, default: usize| -> anyhow::Result<usize> {
            match v {
                Some(n) if n == 0 || n > 1 << 30 => {
                    bail!("{key} must be between 1 and {}, not {n}", 1 << 30)
                }
                Some(n) => Ok(n),
                None => Ok(default),
            }
        };
        Ok(EgressConfig {
            plain_http,
            private_hosts: lower(&self.http_private_hosts),
            hosts,
            max_request_bytes: count(
                "http-max-request-bytes",
                self.http_max_request_bytes,
                d.max_request_bytes,
            )?,
            max_response_bytes: count(
                "http-max-response-bytes",
                self.http_max_response_bytes,
                d.max_response_bytes,
            )?,
            timeout: match self.http_timeout_ms {
                Some(ms) if ms == 0 || ms > 600_000 => {
                    bail!("http-timeout-ms must be between 1 and 600000, not {ms}")
                }
                Some(ms) => Duration::from_millis(ms),
                None => d.timeout,
            },
            max_redirects: d.max_redirects,
            per_app_concurrency: count(
                "http-max-concurrent-per-app",
                self.http_max_concurrent_per_app,
                d.per_app_concurrency,
            )?,
            per_app_rate: match self.http_rate_per_app {
                Some(0) => bail!("http-rate-per-app must be greater than 0"),
                Some(n) => n,
                None => d.per_app_rate,
            },
        })
    }

    fn registry_config(&self) -> anyhow::Result<RegistryConfig> {
        let mut policy = Policy::default();
        if let Some(names) = &self.sensitive_capabilities {
            policy.sensitive = names
                .iter()
                .map(|n| {
                    Capability::from_name(n).with_context(|| {
                        format!(
                            "sensitive-capabilities: unknown capability `{n}` (known: {})",
                            Capability::known_names()
                        )
                    })
                })
                .collect::<anyhow::Result<_>>()?;
        }
        policy.auto_approve = match self.auto_approve.as_deref() {
            None | Some("non-sensitive") => AutoApprove::NonSensitive,
            Some("never") => AutoApprove::Never,
            Some(other) => {
                bail!("auto-approve: `{other}` is neither `non-sensitive` nor `never`")
            }
        };
        Ok(RegistryConfig {
            policy,
            dev_approve: self.dev_approve.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_keys_are_strict_and_values_checked() {
        let bad: Result<FileConfig, _> = toml::from_str("listen = \"127.0.0.1:1\"\nport = 3");
        assert!(bad.unwrap_err().to_string().contains("port"));
        let c: FileConfig = toml::from_str("password-iterations = 0").unwrap();
        assert!(c
            .resolve()
            .unwrap_err()
            .to_string()
            .contains("password-iterations"));
        let c: FileConfig = toml::from_str("listen = \"localhost\"").unwrap();
        assert!(c.resolve().unwrap_err().to_string().contains("listen"));
        let c: FileConfig =
            toml::from_str("max-message-bytes = 100\nheartbeat-secs = 5\nchat-rate-per-user = 3")
                .unwrap();
        let r = c.resolve().unwrap();
        assert_eq!(r.messaging.max_message_bytes, 100);
        assert_eq!(
            (
                r.messaging.send_rate.per_second.get(),
                r.messaging.send_rate.burst.get()
            ),
            (3, 15)
        );
        let d = toml::from_str::<FileConfig>("").unwrap().resolve().unwrap();
        let d = d.messaging.send_rate;
        assert_eq!((d.per_second.get(), d.burst.get()), (10, 50), "the default");
        assert_eq!(r.api.heartbeat, Duration::from_secs(5));
        assert_eq!(r.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(r.registry.policy, Policy::default());
        let c: FileConfig =
            toml::from_str("sensitive-capabilities = [\"payments\"]\nauto-approve = \"never\"")
                .unwrap();
        let p = c.resolve().unwrap().registry.policy;
        assert_eq!(
            (p.sensitive, p.auto_approve),
            (vec![Capability::Payments], AutoApprove::Never)
        );
        let c: FileConfig = toml::from_str(
            "http-plain-origins = [\"Backend.Example:8080\"]\nhttp-hosts = { \"backend.example\" = [\"10.0.0.5\"] }\nhttp-timeout-ms = 2500",
        )
        .unwrap();
        let e = c.resolve().unwrap().egress;
        assert!(e.plain_http.contains("backend.example:8080"));
        assert_eq!(
            e.hosts["backend.example"],
            ["10.0.0.5".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(e.timeout, Duration::from_millis(2500));
        assert!(
            e.private_hosts.is_empty(),
            "no host may be internal unless named"
        );
        for bad in [
            "sensitive-capabilities = [\"money\"]",
            "auto-approve = \"always\"",
            "http-plain-origins = [\"backend.example\"]",
            "http-hosts = { \"a.example\" = [\"not-an-ip\"] }",
            "http-rate-per-app = 0",
            "chat-rate-per-user = 0",
            "password-hash-slots = 0",
            "signups-per-client = 0",
            "max-live-connections-per-user = 0",
            "event-instances = 0",
            "event-instances = 8\nevent-instances-per-app = 9",
            "login-max-failures-per-user = 0",
            "login-max-failures-per-client = 0",
            "event-instances = 18446744073709551615",
            "event-slots = 18446744073709551615",
            "max-connections = 18446744073709551615",
            "max-pending-events = 100\nmax-pending-events-per-app = 101",
            "password-hash-slots = 18446744073709551615",
        ] {
            let c: FileConfig = toml::from_str(bad).unwrap();
            assert!(c.resolve().is_err(), "{bad}");
        }
        // Past its range, a time or size stops the start with its name,
        // rather than overflowing an instant or wrapping an expiry.
        let huge = u64::MAX;
        for key in [
            "idle-timeout-secs",
            "header-timeout-secs",
            "heartbeat-secs",
            "session-ttl-secs",
            "login-window-secs",
            "request-timeout-secs",
            "payment-ttl-secs",
            "document-ttl-secs",
            "max-event-wait-ms",
            "compile-timeout-secs",
            "compile-memory-mib",
            "store-cache-mib",
            "http-timeout-ms",
            "max-body-bytes",
            "max-message-bytes",
            "ws-queue",
            "http-max-response-bytes",
            "password-iterations",
        ] {
            let huge = if key == "password-iterations" {
                u64::from(u32::MAX)
            } else {
                huge
            };
            for value in [huge, 0] {
                let c: FileConfig = toml::from_str(&format!("{key} = {value}")).unwrap();
                let e = c.resolve().unwrap_err().to_string();
                assert!(
                    e.starts_with(&format!("{key} must be between")),
                    "{key} = {value}: {e}"
                );
            }
        }
        let c: FileConfig = toml::from_str("max-body-bytes = 100").unwrap();
        assert!(c.resolve().is_err(), "too small for any request");
        let c: FileConfig =
            toml::from_str("session-ttl-secs = 34560000\nidle-timeout-secs = 86400").unwrap();
        let r = c.resolve().unwrap();
        assert_eq!(r.identity.session_ttl, Duration::from_secs(400 * 86_400));
        let c: FileConfig =
            toml::from_str("event-instances = 200\nevent-instances-per-app = 50").unwrap();
        let s = c.resolve().unwrap().apps.scheduler;
        assert_eq!((s.instances, s.instances_per_app), (200, 50));
    }
}
