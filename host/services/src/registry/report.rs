//! The auditor's report on one app: every version with its state, each
//! decision with its auditor and note, and what the versions did in the
//! field, counted from the audit log: capability calls allowed, denied or
//! waiting for consent, and failures (traps, limits) by code.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Publisher, Registry, RegistryError, Release};
use crate::audit::Audit;

/// What `audit report` prints with `--json`. Field names are stable.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub app: String,
    pub publisher: Option<Publisher>,
    /// Newest first.
    pub versions: Vec<VersionReport>,
    /// How many audit log entries were read to count usage.
    pub entries_scanned: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionReport {
    #[serde(flatten)]
    pub release: Release,
    /// Whether the policy lets users open this version now.
    pub launchable: bool,
    /// Why not, when it is not.
    pub blocked_by: Option<String>,
    pub usage: Usage,
}

/// Counts per capability name, from the audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub allowed: BTreeMap<String, u64>,
    pub denied: BTreeMap<String, u64>,
    pub consent_required: BTreeMap<String, u64>,
    /// Failures by error code (`trap`, `limit`, `invalid-view`, …).
    pub failures: BTreeMap<String, u64>,
}

impl Registry {
    /// Build the report of `app`, reading the whole audit log once.
    pub fn report(&self, app: &str, audit: &Audit) -> Result<Report, RegistryError> {
        let releases = self.releases(app)?;
        if releases.is_empty() {
            return Err(RegistryError::UnknownApp(app.into()));
        }
        let mut usage: BTreeMap<String, Usage> = BTreeMap::new();
        let mut scanned = 0u64;
        let mut after = 0;
        loop {
            let page = audit.entries(after, 1024)?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            scanned += page.len() as u64;
            for entry in page {
                let e = &entry.event;
                if e.app.as_deref() != Some(app) {
                    continue;
                }
                let Some(version) = &e.version else { continue };
                let u = usage.entry(version.clone()).or_default();
                let slot = match (e.kind.as_str(), e.outcome.as_str()) {
                    ("capability.call", "allowed") => &mut u.allowed,
                    ("capability.call", "denied") => &mut u.denied,
                    ("capability.call", "consent-required") => &mut u.consent_required,
                    ("app.failed", _) => {
                        let code = e.details.get("error").cloned().unwrap_or_default();
                        *u.failures.entry(code).or_default() += 1;
                        continue;
                    }
                    _ => continue,
                };
                if let Some(cap) = &e.capability {
                    *slot.entry(cap.clone()).or_default() += 1;
                }
            }
        }
        let publisher = self.publisher(&releases[0].publisher)?;
        let versions = releases
            .into_iter()
            .map(|release| {
                let blocked_by = self.launchable(&release).err();
                VersionReport {
                    usage: usage.remove(&release.version).unwrap_or_default(),
                    launchable: blocked_by.is_none(),
                    blocked_by,
                    release,
                }
            })
            .collect();
        Ok(Report {
            app: app.into(),
            publisher,
            versions,
            entries_scanned: scanned,
        })
    }
}
