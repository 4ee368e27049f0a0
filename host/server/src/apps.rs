//! Mini-programs served to signed-in users: the installed apps, loaded and
//! checked at startup from an apps directory (one subdirectory per app with
//! its `plugin.toml` and its component), and the services their
//! capabilities use on the server.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context as _};

use superapp_runtime::capabilities::notify::ChatNotifier;
use superapp_runtime::{App, Runtime, RuntimeConfig, Services};
use superapp_services::audit::Audit;
use superapp_services::consent::Consent;
use superapp_services::documents::requests::Requests;
use superapp_services::documents::{Documents, HostKey};
use superapp_services::identity::{Identity, Pseudonyms};
use superapp_services::ledger::orders::Orders;
use superapp_services::ledger::Ledger;
use superapp_services::messaging::Messaging;
use superapp_store::{Quota, Store, StoreKv};

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
            order_ttl: superapp_services::ledger::orders::DEFAULT_TTL,
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
            profiles: identity,
            notifier: Arc::new(ChatNotifier::new(messaging, consent.clone())),
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
