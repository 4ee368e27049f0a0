//! The registry's workflows that need the runtime: publishing (the
//! component is compiled and its imports checked against its manifest
//! before the registry takes it), choosing and loading the version a user
//! launches, and publishing a development apps directory at startup.

use std::path::Path;
use std::sync::Arc;

use superapp_core::decision::{SignedDecision, Verdict};
use superapp_core::{now_secs, Package};
use superapp_runtime::App;
use superapp_services::registry::{
    rollout_bucket, Actor, Changed, Registry, RegistryError, Release, State,
};
use superapp_store::blocking;

use super::{Host, HostError};
use superapp_services::identity::Secrets;

use crate::apps::{dev_key, read_apps_dir, DEV_AUDITOR_KEY, DEV_PUBLISHER_KEY};

impl Host {
    /// Publish a package file as `actor`: checked, stored, durable.
    /// Publish a package as the actor `actor_for` names for the package's
    /// publisher.
    pub async fn publish(
        &self,
        bytes: &[u8],
        actor_for: impl FnOnce(&str) -> Actor,
    ) -> Result<Changed, HostError> {
        let package = Package::from_bytes(bytes).map_err(RegistryError::Package)?;
        let actor = &actor_for(&package.manifest().publisher);
        // Compiling a large component takes a while: not on a worker that
        // other requests are waiting for.
        let changed = blocking(|| self.submit(&package, actor))?;
        self.flush().await?;
        Ok(changed)
    }

    /// Check a package's component against its manifest, then hand it to
    /// the registry; the prepared app is kept for launches.
    fn submit(&self, package: &Package, actor: &Actor) -> Result<Changed, HostError> {
        // Signature, publisher and manifest first: no compiling for
        // strangers, nor for what the registry would refuse anyway.
        let signature = package.verify().map_err(RegistryError::Package)?;
        package
            .manifest()
            .check_publishable()
            .map_err(|e| RegistryError::Invalid(e.to_string()))?;
        if self
            .registry
            .publisher(&package.manifest().publisher)?
            .is_none()
        {
            return Err(
                RegistryError::UnknownPublisher(package.manifest().publisher.clone()).into(),
            );
        }
        // The signature's digest of the component was just checked.
        let app = self
            .runtime
            .load_digested_as(
                package.manifest().clone(),
                package.component(),
                &signature.component_sha256,
                superapp_runtime::Urgency::Publish,
            )
            .map_err(|e| {
                HostError::Invalid(format!("the component fails the host's checks: {e}"))
            })?;
        let changed = self.registry.submit(package, actor)?;
        // The registry keeps a version's first bytes or refuses: these are they.
        self.loaded_apps()
            .entry(changed.release.digest.clone())
            .or_insert_with(|| Arc::new(app));
        Ok(changed)
    }

    /// Run a registry change and make it durable before returning.
    pub async fn change_registry<T>(
        &self,
        change: impl FnOnce(&Registry) -> Result<T, RegistryError>,
    ) -> Result<T, HostError> {
        let out = change(&self.registry)?;
        self.flush().await?;
        Ok(out)
    }

    /// The version of `app` that `user` launches (newest approved, not
    /// yanked, within its rollout), loaded and ready to run.
    pub fn app_for(&self, user: &str, app: &str) -> Result<Arc<App>, HostError> {
        let bucket = || rollout_bucket(&self.services.pseudonyms.for_app(user, app));
        let release = self.registry.resolve(app, bucket).map_err(|e| match e {
            RegistryError::UnknownApp(id) => HostError::NoApp(id),
            // The host's fault, as a package that does not load.
            RegistryError::Store(superapp_store::StoreError::Corrupt(why)) => {
                tracing::error!(app, error = %why, "a release record does not read");
                self.unloadable
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(app.to_string());
                HostError::AppUnavailable(app.to_string())
            }
            other => other.into(),
        })?;
        if let Some(app) = self.loaded_apps().get(&release.digest) {
            return Ok(app.clone());
        }
        blocking(|| self.load_release(&release))
    }

    fn loaded_apps(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Arc<App>>> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A release's prepared app: from memory, else from its stored package
    /// (compiled once per process; the precompile cache makes that quick).
    pub fn load_release(&self, release: &Release) -> Result<Arc<App>, HostError> {
        if let Some(app) = self.loaded_apps().get(&release.digest) {
            return Ok(app.clone());
        }
        let unloadable = || self.unloadable.lock().unwrap_or_else(|p| p.into_inner());
        match self.load_stored(release) {
            Ok(app) => {
                unloadable().remove(&release.label());
                Ok(app)
            }
            Err(HostError::Store(e)) => Err(HostError::Store(e)),
            Err(e) => {
                tracing::error!(release = %release.label(), error = %e, "cannot load a stored release");
                unloadable().insert(release.label());
                Err(HostError::AppUnavailable(release.label()))
            }
        }
    }

    /// The releases whose stored package did not load when last tried.
    pub fn unloadable(&self) -> Vec<String> {
        self.unloadable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    fn load_stored(&self, release: &Release) -> Result<Arc<App>, HostError> {
        let bytes = self
            .registry
            .package_bytes(&release.digest)?
            .ok_or_else(|| {
                HostError::NotFound(format!("the package of {} is missing", release.label()))
            })?;
        let package = Package::from_bytes(&bytes).map_err(RegistryError::Package)?;
        release
            .check_package(&package)
            .map_err(|e| HostError::Invalid(format!("{}: {e}", release.label())))?;
        // A stored package was verified whole when it was published: its
        // signature's digest finds the precompiled component without hashing
        // it again (and is checked against the bytes if it must be compiled).
        let signature = package.signature().ok_or_else(|| {
            HostError::Invalid(format!(
                "{}: its stored package is unsigned",
                release.label()
            ))
        })?;
        let loaded = self.runtime.load_digested(
            package.manifest().clone(),
            package.component(),
            &signature.component_sha256,
        );
        let app = loaded.map_err(|e| HostError::Invalid(format!("{}: {e}", release.label())))?;
        let app = Arc::new(app);
        self.loaded_apps()
            .insert(release.digest.clone(), app.clone());
        Ok(app)
    }

    /// Prepare every launchable version now, so first launches are quick
    /// and a stored package the runtime no longer accepts shows at start.
    /// A server does this beside serving: a launch that comes first
    /// prepares its app itself (a component is compiled once either way).
    pub fn preload(&self) {
        let apps = match self.registry.apps() {
            Ok(apps) => apps,
            Err(e) => return tracing::error!(error = %e, "cannot list the registry"),
        };
        for app in apps {
            for release in self.registry.releases(&app).unwrap_or_default() {
                if self.registry.launchable(&release).is_ok() {
                    // One that does not load is in the log already.
                    let _ = self.load_release(&release);
                }
            }
        }
        let removed = self.runtime.sweep_cache();
        if removed > 0 {
            tracing::info!(
                files = removed,
                "removed precompiled code an earlier version left in the cache"
            );
        }
    }

    /// `serve --apps DIR`: pack each app directory, sign it with the host's
    /// development publisher key, publish it (registering its
    /// publisher with that key if needed) and, with `dev_approve`, approve
    /// it with the development auditor key. Says what it did in the log.
    /// An app whose version was published with other bytes stops the start,
    /// unless `keep_published` (the demo): then the earlier bytes are
    /// served and the log says so.
    pub(super) fn publish_dev_apps(
        &self,
        dir: &Path,
        secrets: &Secrets,
        dev_approve: bool,
        keep_published: bool,
    ) -> anyhow::Result<()> {
        let sources = read_apps_dir(dir)?;
        if sources.is_empty() {
            return Ok(());
        }
        let publisher_key = dev_key(secrets, DEV_PUBLISHER_KEY)?;
        let auditor_key = if dev_approve {
            let key = dev_key(secrets, DEV_AUDITOR_KEY)?;
            self.registry.trust_auditor(
                &key.public_key(),
                "development auditor",
                &Actor::Development,
            )?;
            tracing::warn!(key = %key.public_key(), "dev-approve is on: apps from --apps are approved with the development auditor key; never use this in production");
            Some(key)
        } else {
            None
        };
        for source in sources {
            let label = source.dir.display().to_string();
            let mut package = Package::new(source.manifest, source.component)
                .map_err(|e| anyhow::anyhow!("app {label}: {e}"))?;
            package.sign(&publisher_key);
            let m = package.manifest().clone();
            let publisher = &m.publisher;
            let registered = match self.registry.publisher(publisher)? {
                None => self
                    .registry
                    .add_publisher(
                        publisher,
                        publisher,
                        &[publisher_key.public_key()],
                        &Actor::Development,
                    )
                    .map(|_| ()),
                // One the operator registered keeps the keys the operator
                // gave it: the development key never joins them.
                Some(p) if !p.keys.contains(&publisher_key.public_key()) && !p.development => {
                    tracing::warn!(
                        %publisher,
                        "{label} is not published from the directory (versions published before stay as they are): its publisher was registered by the operator, and the development key is never added to such a publisher; publish it signed with the publisher's own key"
                    );
                    continue;
                }
                Some(p) if !p.keys.contains(&publisher_key.public_key()) => {
                    let added = self.registry.add_publisher_key(
                        publisher,
                        &publisher_key.public_key(),
                        &Actor::Development,
                    );
                    if added.is_ok() {
                        tracing::warn!(%publisher, "added the development publisher key to a registered publisher");
                    }
                    added.map(|_| ())
                }
                Some(_) => Ok(()),
            };
            match registered {
                Ok(()) => {}
                // The operator took the development key away: the apps it
                // would sign are not published from the directory.
                Err(RegistryError::RemovedKey {
                    publisher: from, ..
                }) => {
                    let fresh = if secrets.shared() {
                        String::new()
                    } else {
                        format!(
                            ", or delete {} for a new development key",
                            secrets.describe(DEV_PUBLISHER_KEY)
                        )
                    };
                    tracing::warn!(
                        %publisher,
                        "{label} is not published from the directory (versions published before stay as they are): the operator removed the development publisher key (from publisher `{from}`), and a removed key is never taken back; publish it signed with the publisher's own key{fresh}"
                    );
                    continue;
                }
                Err(e) => anyhow::bail!("app {label}: {e}"),
            }
            let submitted = self.submit(&package, &Actor::Development);
            if keep_published {
                if let Err(HostError::Registry(RegistryError::Conflict(m))) = &submitted {
                    tracing::warn!(reason = %m, "{label} changed but kept its version: serving the version published earlier (raise `version` in plugin.toml, or start on a fresh data directory, to serve the new code)");
                    continue;
                }
            }
            let changed = submitted
                .map_err(|e| match e {
                    HostError::Registry(RegistryError::Conflict(m)) => anyhow::anyhow!(
                        "app {label}: {m} (the registry never changes a published version: raise `version` in plugin.toml)"
                    ),
                    other => anyhow::anyhow!("app {label}: {other}"),
                })?;
            let release = changed.release;
            let verb = if changed.changed {
                "published"
            } else {
                "already published"
            };
            tracing::info!(app = %release.label(), digest = %release.digest, "{verb} from {label}");
            let pending =
                release.state != State::Rejected && self.registry.launchable(&release).is_err();
            if let (Some(key), true) = (&auditor_key, pending) {
                let decision = SignedDecision::sign(
                    key,
                    &release.app,
                    &release.version,
                    &release.digest,
                    Verdict::Approve,
                    "approved for development by `serve --apps` with dev-approve",
                    now_secs(),
                )?;
                match self.registry.decide(&decision) {
                    Ok(_) => {
                        tracing::info!(app = %release.label(), "approved with the development auditor key")
                    }
                    Err(e) => tracing::warn!(app = %release.label(), error = %e, "not approved"),
                }
            }
            let release = self.registry.release(&release.app, &release.version)?;
            if let Err(why) = self.registry.launchable(&release) {
                tracing::warn!(app = %release.label(), "users cannot open it yet: {why}");
            }
        }
        Ok(())
    }
}
