//! Apps for development: `serve --apps DIR` reads one subdirectory per app
//! (its `plugin.toml` and one `.wasm` component), and the host packs, signs
//! with this data directory's development publisher key, and publishes
//! each to its registry like any provider's package (see
//! `Host::publish_dev_apps`). The keys live in the data directory, mode 0600.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use superapp_core::keys::SigningKey;
use superapp_core::package::{MAX_MANIFEST_BYTES, MAX_PACKAGE_BYTES};
use superapp_services::identity::Secrets;

/// The development publisher's key in the data directory.
pub const DEV_PUBLISHER_KEY: &str = "dev-publisher.pem";
/// The development auditor's key, trusted only with `dev-approve`.
pub const DEV_AUDITOR_KEY: &str = "dev-auditor.pem";

/// What the server configures about apps and their services.
#[derive(Debug, Clone)]
pub struct AppsConfig {
    /// How long a payment sheet waits for the user.
    pub order_ttl: std::time::Duration,
    /// How long a document disclosure sheet waits for the user.
    pub document_ttl: std::time::Duration,
    /// How many events run at once, and how many may wait for how long.
    pub scheduler: superapp_runtime::SchedulerConfig,
    /// What compiling one component may take.
    pub compile_budget: superapp_runtime::CompileBudget,
    /// The process components compile in, under `compile_budget`: the
    /// `superapp` binary sets its own; `None` compiles in this process,
    /// unbounded (tests that embed the host).
    pub compile_worker: Option<superapp_runtime::CompileWorker>,
    /// Launches and actions one user may start a second, sustained (a
    /// burst of five seconds' worth after a pause).
    pub events_per_user: std::num::NonZeroU32,
}

/// The default of [`AppsConfig::events_per_user`]: far above what a person
/// presses, far below what one account's script could make the host run.
pub const EVENTS_PER_USER: u32 = 20;

impl Default for AppsConfig {
    fn default() -> Self {
        AppsConfig {
            order_ttl: superapp_services::ledger::orders::DEFAULT_TTL,
            document_ttl: superapp_services::documents::requests::DEFAULT_TTL,
            scheduler: superapp_runtime::SchedulerConfig::default(),
            compile_budget: superapp_runtime::CompileBudget::default(),
            compile_worker: None,
            events_per_user: std::num::NonZeroU32::new(EVENTS_PER_USER).expect("not 0"),
        }
    }
}

/// One app directory's manifest and component, as read from disk.
pub struct AppSource {
    pub dir: PathBuf,
    pub manifest: Vec<u8>,
    pub component: Vec<u8>,
}

/// Every app directory under `dir`, in name order.
pub fn read_apps_dir(dir: &Path) -> anyhow::Result<Vec<AppSource>> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the apps directory {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    let mut out = Vec::new();
    for entry in entries.into_iter().filter(|e| e.path().is_dir()) {
        let app_dir = entry.path();
        out.push(read_one(&app_dir).with_context(|| format!("app {}", app_dir.display()))?);
    }
    Ok(out)
}

/// An app directory holds `plugin.toml` and exactly one `.wasm` component.
fn read_one(dir: &Path) -> anyhow::Result<AppSource> {
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
    let manifest_path = dir.join("plugin.toml");
    Ok(AppSource {
        dir: dir.to_path_buf(),
        manifest: superapp_core::files::read_at_most(&manifest_path, MAX_MANIFEST_BYTES as u64)
            .with_context(|| format!("cannot read {}", manifest_path.display()))?,
        component: superapp_core::files::read_at_most(component, MAX_PACKAGE_BYTES as u64)
            .with_context(|| format!("cannot read {}", component.display()))?,
    })
}

/// A development key of this host, created on first use.
pub fn dev_key(secrets: &Secrets, file: &str) -> anyhow::Result<SigningKey> {
    let pem = secrets.load_or_create(file, || Ok(SigningKey::generate()?.to_pem().into_bytes()))?;
    let name = secrets.describe(file);
    let text = String::from_utf8(pem).with_context(|| format!("{name} is not PEM"))?;
    Ok(SigningKey::from_pem(&text, &name)?)
}
