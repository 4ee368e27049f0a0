//! Which versions may run, and which one a user gets. The policy is host
//! configuration: the capabilities that need a trusted auditor's signed
//! approval, and what is approved on publish without one. It is evaluated
//! at launch, against the auditor keys trusted now, so distrusting a key
//! or adding a capability to the sensitive list takes effect at once.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use superapp_core::decision::Verdict;
use superapp_core::{sha256_hex, Capability, Manifest};

use super::{DecidedBy, Registry, RegistryError, Release};

/// What is approved when it is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AutoApprove {
    /// Packages that declare no sensitive capability.
    NonSensitive,
    /// Nothing: every package waits for an auditor.
    Never,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Capabilities whose packages need a trusted auditor's approval.
    pub sensitive: Vec<Capability>,
    pub auto_approve: AutoApprove,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            sensitive: vec![
                Capability::Payments,
                Capability::Documents,
                Capability::Profile,
                Capability::Notify,
                // Which origins an app talks to is for an auditor to approve.
                Capability::Http,
            ],
            auto_approve: AutoApprove::NonSensitive,
        }
    }
}

impl Policy {
    /// The sensitive capabilities a release declares.
    pub fn sensitive_in<'r>(&self, release: &'r Release) -> Vec<&'r str> {
        release
            .capabilities
            .iter()
            .map(|c| c.name.as_str())
            .filter(|name| self.sensitive.iter().any(|s| s.name() == *name))
            .collect()
    }

    /// The rule that approves `manifest` on publish, if one does.
    pub fn auto_approval(&self, manifest: &Manifest) -> Option<String> {
        let sensitive = manifest.capabilities().any(|c| self.sensitive.contains(&c));
        match self.auto_approve {
            AutoApprove::NonSensitive if !sensitive => {
                Some("auto-approve: declares no sensitive capability".into())
            }
            _ => None,
        }
    }
}

/// Which of 100 rollout buckets a user is in, from their pseudonymous id
/// for the app: stable, and independent across apps.
pub fn rollout_bucket(pseudonym: &str) -> u8 {
    let digest = sha256_hex(pseudonym.as_bytes());
    let n = u32::from_str_radix(&digest[..8], 16).unwrap_or(0);
    (n % 100) as u8
}

/// The release [`Registry::resolve`] found, read in place from the
/// registry's memory: a launch reads its digest without copying the whole
/// release (its capabilities, reasons and signed decisions).
#[derive(Debug, Clone)]
pub struct Resolved {
    releases: Arc<Vec<Release>>,
    index: usize,
}

impl std::ops::Deref for Resolved {
    type Target = Release;

    fn deref(&self) -> &Release {
        &self.releases[self.index]
    }
}

impl Registry {
    /// Why `release` may not be launched by anyone, or `Ok`.
    pub fn launchable(&self, release: &Release) -> Result<(), String> {
        if let Some(y) = &release.yanked {
            return Err(match y.note.as_str() {
                "" => format!("{} was yanked", release.version),
                note => format!("{} was yanked ({note})", release.version),
            });
        }
        let Some(last) = release.last_decision() else {
            let sensitive = self.policy.sensitive_in(release);
            return Err(if sensitive.is_empty() {
                format!("{} waits for an auditor's approval", release.version)
            } else {
                format!(
                    "{} waits for an approval signed by a trusted auditor (it declares {})",
                    release.version,
                    sensitive.join(", ")
                )
            });
        };
        if last.verdict == Verdict::Reject {
            return Err(format!(
                "{} was rejected by {}: {}",
                release.version,
                last.decider(),
                last.note
            ));
        }
        let sensitive = self.policy.sensitive_in(release);
        if sensitive.is_empty() {
            return Ok(());
        }
        let trusted = match &last.by {
            DecidedBy::Auditor { signed, .. } => {
                let trusted = self
                    .is_trusted(&signed.auditor_key)
                    .map_err(|e| e.to_string())?;
                if trusted && !self.decision_holds(release, last.verdict, signed) {
                    return Err(format!(
                        "{}'s approval by {} does not verify: it is not that auditor's signed approval of this package",
                        release.version,
                        last.decider()
                    ));
                }
                trusted
            }
            DecidedBy::Policy { .. } => false,
        };
        if trusted {
            Ok(())
        } else {
            Err(format!(
                "{} needs an approval signed by a trusted auditor (it declares {}); its approval by {} is not one",
                release.version,
                sensitive.join(", "),
                last.decider()
            ))
        }
    }

    /// The version of `app` a user in rollout bucket `bucket()` launches:
    /// the newest launchable one whose rollout includes the bucket. The
    /// bucket is asked for only when a staged rollout needs it (it costs a
    /// keyed hash). When there is no such version, the error says what each
    /// version is missing.
    pub fn resolve(
        &self,
        app: &str,
        bucket: impl FnOnce() -> u8,
    ) -> Result<Resolved, RegistryError> {
        let releases = self.cached_releases(app)?;
        if releases.is_empty() {
            return Err(RegistryError::UnknownApp(app.into()));
        }
        let bucket = std::cell::LazyCell::new(bucket);
        let mut reasons = Vec::new();
        for (index, release) in releases.iter().enumerate() {
            match self.launchable(release) {
                Ok(()) if release.rollout.is_none_or(|p| *bucket < p) => {
                    return Ok(Resolved {
                        releases: releases.clone(),
                        index,
                    })
                }
                Ok(()) => reasons.push(format!(
                    "{} reaches {}% of users so far, not yet this one",
                    release.version,
                    release.rollout.unwrap_or(100)
                )),
                Err(why) => reasons.push(why),
            }
        }
        Err(RegistryError::NotLaunchable(format!(
            "`{app}` has no version that may be opened: {}",
            reasons.join("; ")
        )))
    }

    /// The newest launchable version of every app, for a user's directory
    /// (`bucket_of` gives the user's rollout bucket per app).
    pub fn directory(&self, bucket_of: impl Fn(&str) -> u8) -> Result<Vec<Release>, RegistryError> {
        let mut out = Vec::new();
        for app in self.apps()? {
            match self.resolve(&app, || bucket_of(&app)) {
                Ok(release) => out.push(Release::clone(&release)),
                Err(RegistryError::NotLaunchable(_) | RegistryError::UnknownApp(_)) => {}
                // One unreadable record keeps its app out, not the others.
                Err(RegistryError::Store(superapp_store::StoreError::Corrupt(why))) => {
                    tracing::error!(app = %app, error = %why, "a release record does not read")
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}
