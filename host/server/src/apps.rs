//! The installed mini-programs of a server: loaded and checked at startup
//! from an apps directory (one subdirectory per app with its `plugin.toml`
//! and its component).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context as _};

use superapp_runtime::{App, Runtime};

/// The installed apps, by id.
pub struct Apps {
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
    pub fn load(dir: Option<&Path>, runtime: &Runtime) -> anyhow::Result<Apps> {
        let mut apps = BTreeMap::new();
        if let Some(dir) = dir {
            let mut entries: Vec<_> = std::fs::read_dir(dir)
                .with_context(|| format!("cannot read the apps directory {}", dir.display()))?
                .collect::<Result<_, _>>()?;
            entries.sort_by_key(|e| e.path());
            for entry in entries.into_iter().filter(|e| e.path().is_dir()) {
                let app_dir = entry.path();
                let app = load_one(runtime, &app_dir)
                    .with_context(|| format!("app {}", app_dir.display()))?;
                let id = app.manifest().id.clone();
                if apps.insert(id.clone(), app).is_some() {
                    bail!("two apps in {} have the id {id}", dir.display());
                }
                tracing::info!(app = %id, "loaded");
            }
        }
        Ok(Apps { apps })
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
