//! `plugin.toml`: a mini-program's identity, the capabilities it asks for
//! (each with a reason users and auditors read), and the limits it needs.
//! Parsing is strict: an unknown key or a bad value is an error naming it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::capability::Capability;
use crate::origin::{Origin, Target};

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("plugin.toml: {0}")]
    Syntax(String),
    #[error("plugin.toml: `{key}`: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    id: String,
    name: String,
    version: String,
    publisher: String,
    description: String,
    #[serde(default)]
    capabilities: BTreeMap<String, RawCapability>,
    #[serde(default)]
    limits: RawLimits,
    callbacks: Option<RawCallbacks>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCallbacks {
    url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapability {
    reason: String,
    /// Only for `http`: the origins the app may reach.
    origins: Option<Vec<String>>,
    /// Only for `documents`: who receives what a user shares, `app` (the
    /// default) or `backend` (the callback URL, never the app).
    deliver: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawLimits {
    memory_mib: Option<u64>,
    time_ms: Option<u64>,
    view_nodes: Option<u32>,
    view_bytes: Option<u64>,
    storage_mib: Option<u64>,
}

/// Limits a manifest asks for. The host caps each by its own policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Limits {
    /// Linear memory, in bytes.
    pub memory_bytes: u64,
    /// Wall time per event, in milliseconds, host calls included.
    pub time_ms: u64,
    /// Nodes in one view.
    pub view_nodes: u32,
    /// Total bytes of text in one view.
    pub view_bytes: u64,
    /// Storage quota per user (and for the app's shared storage), in bytes.
    pub storage_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 16 << 20,
            time_ms: 1_000,
            view_nodes: 500,
            view_bytes: 256 << 10,
            storage_bytes: 10 << 20,
        }
    }
}

impl Limits {
    /// The stricter of `self` and `cap`, field by field.
    pub fn capped_by(self, cap: Limits) -> Limits {
        Limits {
            memory_bytes: self.memory_bytes.min(cap.memory_bytes),
            time_ms: self.time_ms.min(cap.time_ms),
            view_nodes: self.view_nodes.min(cap.view_nodes),
            view_bytes: self.view_bytes.min(cap.view_bytes),
            storage_bytes: self.storage_bytes.min(cap.storage_bytes),
        }
    }
}

/// A declared capability with the reason shown to users and auditors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Declared {
    pub capability: Capability,
    pub reason: String,
    /// For `http`, the origins the app may reach (at least one); empty for
    /// every other capability.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<Origin>,
}

/// A validated manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Manifest {
    pub id: String,
    pub name: String,
    pub version: semver::Version,
    pub publisher: String,
    pub description: String,
    /// In table order.
    pub declared: Vec<Declared>,
    pub limits: Limits,
    /// Where the host notifies the provider's backend of this app's payments
    /// (`[callbacks] url`), if anywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback: Option<Callback>,
    /// `[capabilities.documents] deliver = "backend"`: what a user shares
    /// goes to the callback URL, signed by the host, and the app learns
    /// only that it was shared, never the fields.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub documents_to_backend: bool,
}

/// The provider's callback endpoint: an absolute URL under the same rules
/// as an origin (a DNS name, no IP literal, no user name), and the origin
/// it belongs to, which deliveries are checked against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Callback {
    pub url: String,
    #[serde(skip)]
    pub origin: Origin,
}

impl Callback {
    pub fn parse(text: &str) -> Result<Callback, ManifestError> {
        let key = "callbacks.url";
        let target = Target::parse(text).map_err(|e| invalid(key, e.to_string()))?;
        if target.url.query().is_some() || target.url.fragment().is_some() {
            return Err(invalid(key, "a callback URL has no query or fragment"));
        }
        let origin = Origin::parse(&format!("{}/", target.base()))
            .map_err(|e| invalid(key, e.to_string()))?;
        Ok(Callback {
            url: target.url.to_string(),
            origin,
        })
    }
}

const MAX_REASON: usize = 500;
const MAX_TEXT: usize = 200;
const MAX_DESCRIPTION: usize = 2_000;

impl Manifest {
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let limit = crate::package::MAX_MANIFEST_BYTES as u64;
        let text =
            crate::files::read_text_at_most(path, limit).map_err(|source| ManifestError::Read {
                path: path.display().to_string(),
                source,
            })?;
        Manifest::parse(&text)
    }

    /// Whether a package of this manifest may be made or published now,
    /// by rules stricter than those of a stored one read back (which a
    /// host that tightened them must still run):
    /// - its version carries no build metadata: `1.0.0+b1` and `1.0.0` are
    ///   equal in precedence, so another build under either could stand
    ///   for a version already published;
    /// - its name and its publisher's, which users read in the host's
    ///   dialogs, are one line with nothing that draws as something else
    ///   (`crate::text::name_problem`; the publisher as an id,
    ///   `crate::text::id_problem`), and its description and reasons hold
    ///   no text-direction controls.
    pub fn check_publishable(&self) -> Result<(), ManifestError> {
        if let Some(problem) = crate::text::name_problem(&self.name, MAX_TEXT) {
            return Err(invalid("name", problem));
        }
        if let Some(problem) = crate::text::id_problem(&self.publisher) {
            return Err(invalid("publisher", problem));
        }
        let texts = std::iter::once(("description".to_string(), &self.description)).chain(
            self.declared.iter().map(|d| {
                (
                    format!("capabilities.{}.reason", d.capability.name()),
                    &d.reason,
                )
            }),
        );
        for (key, text) in texts {
            if text.chars().any(crate::text::disallowed_in_note) {
                return Err(invalid(
                    &key,
                    "contains control or text-direction characters",
                ));
            }
        }
        let v = &self.version;
        if v.build.is_empty() {
            return Ok(());
        }
        Err(invalid(
            "version",
            format!(
                "`{v}` carries build metadata (after `+`), which no version is ordered by; a new build is a new version, e.g. {}.{}.{}",
                v.major,
                v.minor,
                v.patch + 1
            ),
        ))
    }

    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let raw: RawManifest = toml::from_str(text)
            .map_err(|e| ManifestError::Syntax(e.to_string().trim_end().to_string()))?;
        check_app_id(&raw.id)?;
        let version = semver::Version::parse(&raw.version).map_err(|e| {
            invalid(
                "version",
                format!("`{}` is not a semantic version: {e}", raw.version),
            )
        })?;
        check_text("name", &raw.name, MAX_TEXT)?;
        check_text("publisher", &raw.publisher, MAX_TEXT)?;
        check_text("description", &raw.description, MAX_DESCRIPTION)?;

        let mut declared = Vec::new();
        let mut documents_to_backend = false;
        for (name, cap) in raw.capabilities {
            let key = format!("capabilities.{name}");
            let capability = Capability::from_name(&name).ok_or_else(|| {
                invalid(
                    &key,
                    format!("unknown capability (known: {})", Capability::known_names()),
                )
            })?;
            check_text(&format!("{key}.reason"), &cap.reason, MAX_REASON)?;
            let origins = origins(&key, capability, cap.origins)?;
            match (capability, cap.deliver.as_deref()) {
                (_, None) | (Capability::Documents, Some("app")) => {}
                (Capability::Documents, Some("backend")) => documents_to_backend = true,
                (Capability::Documents, Some(_)) => {
                    return Err(invalid(
                        format!("{key}.deliver"),
                        "`app` (the default) or `backend`",
                    ))
                }
                (_, Some(_)) => {
                    return Err(invalid(
                        format!("{key}.deliver"),
                        "only the `documents` capability says where shared documents go",
                    ))
                }
            }
            declared.push(Declared {
                capability,
                reason: cap.reason.trim().to_string(),
                origins,
            });
        }
        declared.sort_by_key(|d| d.capability);

        let defaults = Limits::default();
        let limits = Limits {
            memory_bytes: positive("limits.memory-mib", raw.limits.memory_mib)?
                .map_or(defaults.memory_bytes, |mib| mib.saturating_mul(1 << 20)),
            time_ms: positive("limits.time-ms", raw.limits.time_ms)?.unwrap_or(defaults.time_ms),
            view_nodes: positive("limits.view-nodes", raw.limits.view_nodes.map(u64::from))?
                .map_or(defaults.view_nodes, |n| n as u32),
            view_bytes: positive("limits.view-bytes", raw.limits.view_bytes)?
                .unwrap_or(defaults.view_bytes),
            storage_bytes: positive("limits.storage-mib", raw.limits.storage_mib)?
                .map_or(defaults.storage_bytes, |mib| mib.saturating_mul(1 << 20)),
        };

        let callback = raw.callbacks.map(|c| Callback::parse(&c.url)).transpose()?;
        if documents_to_backend && callback.is_none() {
            return Err(invalid(
                "capabilities.documents.deliver",
                "delivering documents to the backend needs its [callbacks] url",
            ));
        }
        Ok(Manifest {
            callback,
            documents_to_backend,
            id: raw.id,
            name: raw.name.trim().to_string(),
            version,
            publisher: raw.publisher.trim().to_string(),
            description: raw.description.trim().to_string(),
            declared,
            limits,
        })
    }

    pub fn declares(&self, capability: Capability) -> bool {
        self.declared.iter().any(|d| d.capability == capability)
    }

    /// The reason the manifest gives for `capability` (empty if undeclared):
    /// what users and auditors are shown.
    pub fn reason(&self, capability: Capability) -> String {
        self.declared
            .iter()
            .find(|d| d.capability == capability)
            .map(|d| d.reason.clone())
            .unwrap_or_default()
    }

    /// Where shared documents go instead of the app: the callback endpoint,
    /// when the manifest says `deliver = "backend"`.
    pub fn documents_callback(&self) -> Option<&Callback> {
        self.callback.as_ref().filter(|_| self.documents_to_backend)
    }

    /// The origins the `http` capability may reach (none if undeclared).
    pub fn origins(&self) -> &[Origin] {
        self.declared
            .iter()
            .find(|d| d.capability == Capability::Http)
            .map_or(&[], |d| d.origins.as_slice())
    }

    pub fn capabilities(&self) -> impl Iterator<Item = Capability> + '_ {
        self.declared.iter().map(|d| d.capability)
    }

    /// `id@version`, the name used in logs and errors.
    pub fn label(&self) -> String {
        format!("{}@{}", self.id, self.version)
    }
}

/// Most origins one app may list: a provider's few backends, not a crawler.
const MAX_ORIGINS: usize = 16;

fn origins(
    key: &str,
    capability: Capability,
    listed: Option<Vec<String>>,
) -> Result<Vec<Origin>, ManifestError> {
    let key = format!("{key}.origins");
    match (capability, listed) {
        (Capability::Http, None) => Err(invalid(
            key,
            "list the origins the app may reach, e.g. [\"https://api.example.org\"]",
        )),
        (Capability::Http, Some(list)) => {
            if list.is_empty() || list.len() > MAX_ORIGINS {
                return Err(invalid(key, format!("list 1 to {MAX_ORIGINS} origins")));
            }
            let mut parsed = Vec::new();
            for text in &list {
                let origin = Origin::parse(text).map_err(|e| invalid(&key, e.to_string()))?;
                if parsed.contains(&origin) {
                    return Err(invalid(&key, format!("`{origin}` is listed twice")));
                }
                parsed.push(origin);
            }
            // In the manifest's order: an app may read it (`http.origins`)
            // to find its backend, the first one first.
            Ok(parsed)
        }
        (_, Some(_)) => Err(invalid(key, "only the `http` capability lists origins")),
        (_, None) => Ok(Vec::new()),
    }
}

fn positive(key: &str, value: Option<u64>) -> Result<Option<u64>, ManifestError> {
    match value {
        Some(0) => Err(invalid(key, "must be greater than 0")),
        other => Ok(other),
    }
}

fn check_text(key: &str, value: &str, max: usize) -> Result<(), ManifestError> {
    if value.trim().is_empty() {
        return Err(invalid(key, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(invalid(key, format!("longer than {max} characters")));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(invalid(key, "contains control characters"));
    }
    Ok(())
}

/// Whether `id` is a well-formed app id (see `check_app_id`).
pub fn valid_app_id(id: &str) -> bool {
    check_app_id(id).is_ok()
}

/// Reverse-DNS: at least two dot-separated labels of lowercase ASCII
/// letters, digits and hyphens, each starting with a letter.
fn check_app_id(id: &str) -> Result<(), ManifestError> {
    let labels: Vec<&str> = id.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && l.starts_with(|c: char| c.is_ascii_lowercase())
            && !l.ends_with('-')
            && l.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if id.len() > 255 || labels.len() < 2 || !labels.iter().all(label_ok) {
        return Err(invalid(
            "id",
            format!("`{id}` is not a reverse-DNS id like `org.example.app` (lowercase letters, digits, hyphens)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
id = "org.example.hello"
name = "Hello"
version = "1.2.3"
publisher = "Example Org"
description = "Says hello."

[capabilities.storage]
reason = "Remembers your name."

[capabilities.log]
reason = "Diagnostics."

[limits]
memory-mib = 8
time-ms = 250
"#;

    #[test]
    fn parses_a_good_manifest() {
        let m = Manifest::parse(GOOD).unwrap();
        assert_eq!(m.id, "org.example.hello");
        assert_eq!(m.version, semver::Version::new(1, 2, 3));
        assert_eq!(
            m.capabilities().collect::<Vec<_>>(),
            vec![Capability::Log, Capability::Storage]
        );
        assert_eq!(m.limits.memory_bytes, 8 << 20);
        assert_eq!(m.limits.time_ms, 250);
        assert_eq!(m.limits.view_nodes, Limits::default().view_nodes);
    }

    fn error_of(text: &str) -> String {
        Manifest::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn names_users_read_in_dialogs_refuse_what_draws_as_something_else() {
        // TOML escapes, so the file holds the characters themselves.
        for (from, to, key) in [
            ("name = \"Hello\"", r#"name = "Bank\u202e evil""#, "name"),
            (
                "publisher = \"Example Org\"",
                r#"publisher = "Example\u200bOrg""#,
                "publisher",
            ),
            ("name = \"Hello\"", r#"name = "Two\nlines""#, "name"),
        ] {
            assert!(GOOD.contains(from), "{from}");
            let e = publishable_error(&GOOD.replace(from, to));
            assert!(
                e.contains(key) && e.contains("must not contain"),
                "{to}: {e}"
            );
        }
        let e = publishable_error(
            &GOOD.replace("description = \"", r#"description = "\u2066hidden\u2069 "#),
        );
        assert!(e.contains("text-direction"), "{e}");
        let e = publishable_error(&GOOD.replace("Example Org", "Example/Org"));
        assert!(e.contains("publisher") && e.contains("`/`"), "{e}");
        // Read back, a stored package's manifest is held to the rules it
        // was published under, which did not refuse these.
        let stored = Manifest::parse(&GOOD.replace(r#"name = "Hello""#, r#"name = "Two\nlines""#));
        assert_eq!(stored.unwrap().name, "Two\nlines");
    }

    /// Why a manifest that parses may not be published.
    fn publishable_error(text: &str) -> String {
        Manifest::parse(text)
            .unwrap()
            .check_publishable()
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = error_of(&format!("{GOOD}\nhomepage = \"x\""));
        // A top-level key after a table lands in that table.
        assert!(e.contains("homepage"), "{e}");
        let e = error_of(&GOOD.replace("memory-mib = 8", "memory = 8"));
        assert!(e.contains("memory"), "{e}");
        let e = error_of(&GOOD.replace("reason = \"Diagnostics.\"", "reason = \"d\"\nwhy = \"x\""));
        assert!(e.contains("why"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        assert!(error_of(&GOOD.replace("1.2.3", "1.2")).contains("`version`"));
        let built = Manifest::parse(&GOOD.replace("1.2.3", "1.2.3+build1")).unwrap();
        let e = built.check_publishable().unwrap_err().to_string();
        assert!(
            e.contains("`version`") && e.contains("build metadata"),
            "{e}"
        );
        assert!(Manifest::parse(GOOD).unwrap().check_publishable().is_ok());
        // A pre-release is a version of its own, before the release.
        assert!(Manifest::parse(&GOOD.replace("1.2.3", "1.2.3-rc.1")).is_ok());
        assert!(error_of(&GOOD.replace("org.example.hello", "Hello")).contains("`id`"));
        assert!(
            error_of(&GOOD.replace("[capabilities.log]", "[capabilities.files]"))
                .contains("capabilities.files")
        );
        assert!(error_of(&GOOD.replace("Diagnostics.", " ")).contains("capabilities.log.reason"));
        assert!(error_of(&GOOD.replace("time-ms = 250", "time-ms = 0")).contains("limits.time-ms"));
        assert!(error_of(&GOOD.replace("time-ms = 250", "time-ms = \"fast\"")).contains("time-ms"));
        assert!(error_of(&GOOD.replace("publisher = \"Example Org\"\n", "")).contains("publisher"));
    }

    #[test]
    fn http_lists_its_origins_and_only_http_does() {
        let with = |extra: &str| format!("{GOOD}\n{extra}");
        let m = Manifest::parse(&with(
            "[capabilities.http]\nreason = \"Bookings.\"\norigins = [\"https://b.example.org/api/\", \"https://a.example.org\"]",
        ))
        .unwrap();
        let listed: Vec<String> = m.origins().iter().map(|o| o.to_string()).collect();
        assert_eq!(
            listed,
            ["https://b.example.org/api/", "https://a.example.org"],
            "in the manifest's order"
        );
        assert!(Manifest::parse(GOOD).unwrap().origins().is_empty());

        let e = error_of(&with("[capabilities.http]\nreason = \"r\""));
        assert!(e.contains("capabilities.http.origins"), "{e}");
        let e = error_of(&with(
            "[capabilities.http]\nreason = \"r\"\norigins = [\"https://10.0.0.1\"]",
        ));
        assert!(e.contains("not an IP address"), "{e}");
        let e = error_of(&with("[capabilities.http]\nreason = \"r\"\norigins = []"));
        assert!(e.contains("1 to 16"), "{e}");
        let e = error_of(&GOOD.replace(
            "reason = \"Diagnostics.\"",
            "reason = \"d\"\norigins = [\"https://a.example.org\"]",
        ));
        assert!(e.contains("only the `http` capability"), "{e}");
    }

    #[test]
    fn documents_go_to_the_backend_only_when_asked_and_there_is_one() {
        let docs = "[capabilities.documents]\nreason = \"Insurance.\"\n";
        let callbacks = "[callbacks]\nurl = \"https://api.example.org/cb\"\n";
        let parse = |extra: &str| Manifest::parse(&format!("{GOOD}\n{extra}"));
        assert!(!parse(docs).unwrap().documents_to_backend);
        let to_backend = format!("{docs}deliver = \"backend\"\n{callbacks}");
        assert!(parse(&to_backend).unwrap().documents_to_backend);
        let e = error_of(&format!("{GOOD}\n{docs}deliver = \"backend\"\n"));
        assert!(e.contains("needs its [callbacks] url"), "{e}");
        let e = error_of(&format!("{GOOD}\n{docs}deliver = \"elsewhere\"\n"));
        assert!(e.contains("capabilities.documents.deliver"), "{e}");
        let e = error_of(&GOOD.replace("Diagnostics.\"", "Diagnostics.\"\ndeliver = \"backend\""));
        assert!(e.contains("only the `documents` capability"), "{e}");
    }

    #[test]
    fn a_callback_url_follows_the_origin_rules() {
        let m = Manifest::parse(&format!(
            "{GOOD}\n[callbacks]\nurl = \"https://api.example.org:8443/superapp/events\""
        ))
        .unwrap();
        let c = m.callback.unwrap();
        assert_eq!(c.url, "https://api.example.org:8443/superapp/events");
        assert_eq!(c.origin.base(), "https://api.example.org:8443");
        for bad in [
            "https://10.0.0.1/cb",
            "ftp://api.example.org/",
            "https://a.example.org/cb?x=1",
        ] {
            let e = error_of(&format!("{GOOD}\n[callbacks]\nurl = \"{bad}\""));
            assert!(e.contains("callbacks.url"), "{bad}: {e}");
        }
    }

    #[test]
    fn limits_are_capped_field_by_field() {
        let asked = Limits {
            memory_bytes: 64 << 20,
            time_ms: 100,
            view_nodes: 10,
            view_bytes: 1 << 30,
            storage_bytes: 1 << 20,
        };
        let cap = Limits {
            memory_bytes: 32 << 20,
            time_ms: 5_000,
            view_nodes: 1_000,
            view_bytes: 1 << 20,
            storage_bytes: 10 << 20,
        };
        assert_eq!(
            asked.capped_by(cap),
            Limits {
                memory_bytes: 32 << 20,
                time_ms: 100,
                view_nodes: 10,
                view_bytes: 1 << 20,
                storage_bytes: 1 << 20,
            }
        );
    }
}
