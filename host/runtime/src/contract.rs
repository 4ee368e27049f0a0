//! The static check of a component against the contract: every import is a
//! `superapp:plugin` interface of this version, and every capability it
//! imports is declared in the manifest. The linker links exactly the
//! declared capabilities (`capabilities::registration`, an exhaustive match
//! over the same `Capability` enum), so the check and the linker cannot
//! disagree.

use serde::Serialize;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::Component;
use wasmtime::Engine;

use superapp_core::{Capability, ConsentLevel, Manifest, PACKAGE, VERSION};

use crate::capabilities;

/// The type-only interface; importing it grants nothing.
const TYPES_INTERFACE: &str = "types";

/// What the world has a mini-program export, and all the host ever calls.
pub const WORLD_EXPORTS: [&str; 2] = ["launch", "event"];

/// Why a component's imports are not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("the component imports `{interface}` but plugin.toml has no [capabilities.{capability}] (add it with a `reason`)")]
    Undeclared {
        interface: String,
        capability: Capability,
    },
    #[error("the component imports `{0}`, which is outside the superapp contract: mini-programs can use only `{PACKAGE}` interfaces (no WASI, no other packages)")]
    Foreign(String),
    #[error("the component imports `{0}`, which is not an interface of `{PACKAGE}` (known: {known})", known = Capability::known_names())]
    UnknownInterface(String),
    #[error("the component imports `{0}`, but this host implements `{PACKAGE}@{VERSION}`")]
    UnsupportedVersion(String),
    #[error("the component imports `{0}` as something other than an interface instance")]
    NotAnInstance(String),
    #[error("the component imports `{0}` with functions, but that interface holds only types")]
    TypesWithFunctions(String),
}

/// Map one import name to what it means in the contract: `Ok(None)` for the
/// type-only interface, `Ok(Some(cap))` for a capability.
fn classify(name: &str) -> Result<Option<Capability>, ImportError> {
    let Some(rest) = name.strip_prefix(PACKAGE).and_then(|r| r.strip_prefix('/')) else {
        return Err(ImportError::Foreign(name.to_string()));
    };
    let (interface, version) = match rest.split_once('@') {
        Some((i, v)) => (i, Some(v)),
        None => (rest, None),
    };
    if !version.is_some_and(superapp_core::compatible) {
        return Err(ImportError::UnsupportedVersion(name.to_string()));
    }
    if interface == TYPES_INTERFACE {
        return Ok(None);
    }
    Capability::from_name(interface)
        .map(Some)
        .ok_or_else(|| ImportError::UnknownInterface(name.to_string()))
}

/// What a component really imports, as capabilities, in table order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub imported: Vec<Capability>,
    /// Declared in the manifest but never imported: harmless, but an auditor
    /// may ask the publisher to drop them.
    pub declared_unused: Vec<Capability>,
    /// Exported beside the world's `launch` and `event`: never called by
    /// the host, but an auditor may ask what they are for.
    pub extra_exports: Vec<String>,
}

/// Everything the static check found: the capabilities the component
/// really imports, those declared but never imported, and every problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportAnalysis {
    pub imported: Vec<Capability>,
    pub declared_unused: Vec<Capability>,
    pub extra_exports: Vec<String>,
    /// The world's exports the component lacks: it cannot be loaded.
    pub missing_exports: Vec<&'static str>,
    pub errors: Vec<ImportError>,
}

/// Classify every import of `component` against the contract and
/// `manifest`, collecting every problem rather than stopping at the first,
/// and compare its exports with the world's: what auditors inspect, and
/// what [`check_imports`] decides on.
pub fn analyze_imports(
    engine: &Engine,
    component: &Component,
    manifest: &Manifest,
) -> ImportAnalysis {
    let mut errors = Vec::new();
    let mut imported = Vec::new();
    for (name, item) in component.component_type().imports(engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            errors.push(ImportError::NotAnInstance(name.to_string()));
            continue;
        };
        match classify(name) {
            Ok(None) => {
                let has_funcs = instance
                    .exports(engine)
                    .any(|(_, item)| matches!(item.ty, ComponentItem::ComponentFunc(_)));
                if has_funcs {
                    errors.push(ImportError::TypesWithFunctions(name.to_string()));
                }
            }
            Ok(Some(capability)) => {
                if !manifest.declares(capability) {
                    errors.push(ImportError::Undeclared {
                        interface: name.to_string(),
                        capability,
                    });
                }
                imported.push(capability);
            }
            Err(e) => errors.push(e),
        }
    }
    imported.sort();
    imported.dedup();
    let declared_unused = manifest
        .capabilities()
        .filter(|c| !imported.contains(c))
        .collect();
    let mut exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    exports.sort();
    let missing_exports = WORLD_EXPORTS
        .into_iter()
        .filter(|name| !exports.iter().any(|e| e == name))
        .collect();
    let extra_exports = exports
        .into_iter()
        .filter(|name| !WORLD_EXPORTS.contains(&name.as_str()))
        .collect();
    ImportAnalysis {
        imported,
        declared_unused,
        extra_exports,
        missing_exports,
        errors,
    }
}

/// The static check: every import is a contract interface and every
/// capability imported is declared in the manifest. Returns every problem,
/// not just the first, so a provider can fix them in one go.
pub fn check_imports(
    engine: &Engine,
    component: &Component,
    manifest: &Manifest,
) -> Result<ImportReport, Vec<ImportError>> {
    let analysis = analyze_imports(engine, component, manifest);
    if !analysis.errors.is_empty() {
        return Err(analysis.errors);
    }
    Ok(ImportReport {
        imported: analysis.imported,
        declared_unused: analysis.declared_unused,
        extra_exports: analysis.extra_exports,
    })
}

/// One row of what auditors and providers see: a declared capability with
/// its reason, and whether the component really imports it.
#[derive(Debug, Clone, Serialize)]
pub struct CapabilitySummary {
    pub name: &'static str,
    pub consent: ConsentLevel,
    pub reason: String,
    pub imported: bool,
}

/// Declared capabilities side by side with the component's real imports,
/// and what it exports beyond the world.
#[derive(Debug, Clone, Serialize)]
pub struct ImportSummary {
    pub capabilities: Vec<CapabilitySummary>,
    pub extra_exports: Vec<String>,
}

impl ImportSummary {
    pub fn of(manifest: &Manifest, report: &ImportReport) -> ImportSummary {
        let capabilities = manifest
            .declared
            .iter()
            .map(|d| CapabilitySummary {
                name: d.capability.name(),
                consent: capabilities::consent_level(d.capability),
                reason: d.reason.clone(),
                imported: report.imported.contains(&d.capability),
            })
            .collect();
        ImportSummary {
            capabilities,
            extra_exports: report.extra_exports.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_maps_names_to_capabilities() {
        use ImportError::*;
        type Expected = Result<Option<Capability>, fn(String) -> ImportError>;
        let cases: [(&str, Expected); 8] = [
            (
                "superapp:plugin/storage@0.2.0",
                Ok(Some(Capability::Storage)),
            ),
            (
                "superapp:plugin/shared-storage@0.2.0",
                Ok(Some(Capability::SharedStorage)),
            ),
            ("superapp:plugin/types@0.2.0", Ok(None)),
            ("wasi:cli/environment@0.2.0", Err(Foreign)),
            ("superapp:pluginx/log@0.2.0", Err(Foreign)),
            ("superapp:plugin/log@0.1.0", Err(UnsupportedVersion)),
            ("superapp:plugin/log", Err(UnsupportedVersion)),
            ("superapp:plugin/files@0.2.0", Err(UnknownInterface)),
        ];
        for (name, expected) in cases {
            assert_eq!(
                classify(name),
                expected.map_err(|make| make(name.to_string())),
                "{name}"
            );
        }
    }
}
