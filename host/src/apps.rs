//! Mini-programs served to signed-in users: the installed apps, loaded and
//! checked at startup from an apps directory (one subdirectory per app with
//! its `plugin.toml` and its component), and the services their
//! capabilities use on the server.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context as _};

use crate::audit::Audit;
use crate::bindings::superapp::plugin::types::Error as WitError;
use crate::capabilities::{
    BoxFuture, Notifier, ProfileDirectory, ProfileInfo, Pseudonyms, Services,
};
use crate::consent::Consent;
use crate::documents::requests::Requests;
use crate::documents::{Documents, HostKey};
use crate::identity::Identity;
use crate::identity::Throttle;
use crate::ledger::orders::Orders;
use crate::ledger::Ledger;
use crate::manifest::Manifest;
use crate::messaging::{Card, Messaging};
use crate::runtime::{App, Runtime, RuntimeConfig};
use crate::store::{Quota, Store, StoreKv};

/// Display names from the account store.
struct AccountProfiles(Arc<Identity>);

impl ProfileDirectory for AccountProfiles {
    fn profile(&self, user: &str) -> Option<ProfileInfo> {
        let user = self.0.user(user).ok().flatten()?;
        Some(ProfileInfo {
            display_name: user.display_name,
            verification: 0,
        })
    }
}

/// Service-account messages through the messaging path (pushes included),
/// at most `NOTIFY_PER_HOUR` per user per app.
struct ChatNotifier {
    messaging: Arc<Messaging>,
    consent: Arc<Consent>,
    window: Throttle,
}

/// Notifications one app may send one user per hour.
pub const NOTIFY_PER_HOUR: u32 = 10;

impl Notifier for ChatNotifier {
    fn send<'a>(
        &'a self,
        user: &'a str,
        app: &'a Manifest,
        text: &'a str,
    ) -> BoxFuture<'a, Result<(), WitError>> {
        Box::pin(async move {
            let key = format!("{user}\0{}", app.id);
            if self.window.check(&key).is_err() {
                return Err(WitError::QuotaExceeded(format!(
                    "at most {NOTIFY_PER_HOUR} notifications per hour"
                )));
            }
            self.window.record(&key);
            self.messaging
                .notify(user, &app.id, &app.name, text)
                .await
                .map(|_| ())
                .map_err(|e| {
                    tracing::error!(app = %app.id, error = %e, "notification delivery failed");
                    WitError::Unavailable("notifications are temporarily unavailable".into())
                })
        })
    }

    fn share_card<'a>(
        &'a self,
        user: &'a str,
        app: &'a Manifest,
        card: Card,
    ) -> BoxFuture<'a, Result<(), WitError>> {
        Box::pin(async move {
            self.consent.ask_share(user, app, card).map_err(|e| {
                tracing::error!(app = %app.id, error = %e, "cannot create a share prompt");
                WitError::Unavailable("sharing is temporarily unavailable".into())
            })
        })
    }
}

pub struct Apps {
    pub runtime: Runtime,
    pub consent: Arc<Consent>,
    pub audit: Arc<Audit>,
    pub services: Arc<Services>,
    pub store: Arc<Store>,
    pub ledger: Arc<Ledger>,
    pub orders: Arc<Orders>,
    pub documents: Arc<Documents>,
    pub requests: Arc<Requests>,
    pub host_key: Arc<HostKey>,
    apps: BTreeMap<String, App>,
}

/// What the server configures about apps and their services.
#[derive(Debug, Clone)]
pub struct AppsConfig {
    /// How long a payment sheet waits for the user.
    pub order_ttl: std::time::Duration,
}

impl Default for AppsConfig {
    fn default() -> Self {
        AppsConfig {
            order_ttl: crate::ledger::orders::DEFAULT_TTL,
        }
    }
}

impl Apps {
    /// Load every app under `dir` (if given). A broken app stops the start,
    /// with its name in the message: better than serving half the apps.
    pub fn load(
        dir: Option<&Path>,
        data_dir: &Path,
        store: Arc<Store>,
        identity: Arc<Identity>,
        messaging: Arc<Messaging>,
        secret: &[u8],
        config: &AppsConfig,
    ) -> anyhow::Result<Apps> {
        let audit = Arc::new(Audit::open(store.clone())?);
        let consent = Arc::new(Consent::new(store.clone(), audit.clone()));
        let ledger = Arc::new(Ledger::new(store.clone()));
        let orders = Arc::new(Orders::new(store.clone(), audit.clone(), config.order_ttl));
        let documents = Arc::new(Documents::new(store.clone()));
        let host_key = Arc::new(HostKey::load_or_create(data_dir)?);
        let requests = Arc::new(Requests::new(
            store.clone(),
            audit.clone(),
            documents.clone(),
            host_key.clone(),
        ));
        let runtime = Runtime::new(RuntimeConfig {
            cache_dir: Some(data_dir.join("cache")),
            ..RuntimeConfig::default()
        })?;
        let services = Arc::new(Services {
            kv: Arc::new(StoreKv::new(store.clone())),
            quota: Quota::default(),
            pseudonyms: Pseudonyms::new(secret),
            consent: consent.clone(),
            profiles: Arc::new(AccountProfiles(identity)),
            notifier: Arc::new(ChatNotifier {
                messaging,
                consent: consent.clone(),
                window: Throttle::new(NOTIFY_PER_HOUR, std::time::Duration::from_secs(3600)),
            }),
            payments: orders.clone(),
            documents: requests.clone(),
        });
        let mut apps = BTreeMap::new();
        if let Some(dir) = dir {
            let mut entries: Vec<_> = std::fs::read_dir(dir)
                .with_context(|| format!("cannot read the apps directory {}", dir.display()))?
                .collect::<Result<_, _>>()?;
            entries.sort_by_key(|e| e.path());
            for entry in entries.into_iter().filter(|e| e.path().is_dir()) {
                let app_dir = entry.path();
                let app = load_one(&runtime, &app_dir)
                    .with_context(|| format!("app {}", app_dir.display()))?;
                let id = app.manifest().id.clone();
                if apps.insert(id.clone(), app).is_some() {
                    bail!("two apps in {} have the id {id}", dir.display());
                }
                tracing::info!(app = %id, "loaded");
            }
        }
        Ok(Apps {
            runtime,
            consent,
            audit,
            services,
            store,
            ledger,
            orders,
            documents,
            requests,
            host_key,
            apps,
        })
    }

    pub fn get(&self, id: &str) -> Option<&App> {
        self.apps.get(id)
    }

    pub fn all(&self) -> impl Iterator<Item = &App> {
        self.apps.values()
    }
}

/// An app directory holds `plugin.toml` and exactly one `.wasm` component.
fn load_one(runtime: &Runtime, dir: &Path) -> anyhow::Result<App> {
    let components: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .collect();
    let [component] = components.as_slice() else {
        bail!(
            "expected exactly one .wasm component, found {}",
            components.len()
        );
    };
    Ok(runtime.load_files(&dir.join("plugin.toml"), component)?)
}
