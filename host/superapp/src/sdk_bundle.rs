//! The SDK this binary was built with, carried inside it: its sources and
//! the WIT contract, installed on demand into a per-user folder named by the
//! contract version, so a provider's project builds without this checkout.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _};
use superapp_core::VERSION;

/// Every file of the SDK crate except its manifest, by path in the crate.
const FILES: [(&str, &str); 11] = [
    ("src/lib.rs", include_str!("../../../plugin-sdk/src/lib.rs")),
    (
        "src/assertion.rs",
        include_str!("../../../plugin-sdk/src/assertion.rs"),
    ),
    (
        "src/callbacks.rs",
        include_str!("../../../plugin-sdk/src/callbacks.rs"),
    ),
    (
        "src/bindings.rs",
        include_str!("../../../plugin-sdk/src/bindings.rs"),
    ),
    (
        "src/capabilities.rs",
        include_str!("../../../plugin-sdk/src/capabilities.rs"),
    ),
    (
        "src/credentials.rs",
        include_str!("../../../plugin-sdk/src/credentials.rs"),
    ),
    (
        "src/export.rs",
        include_str!("../../../plugin-sdk/src/export.rs"),
    ),
    (
        "src/view.rs",
        include_str!("../../../plugin-sdk/src/view.rs"),
    ),
    (
        "wit/world.wit",
        include_str!("../../../plugin-sdk/wit/world.wit"),
    ),
    (
        "wit/types.wit",
        include_str!("../../../plugin-sdk/wit/types.wit"),
    ),
    (
        "wit/capabilities.wit",
        include_str!("../../../plugin-sdk/wit/capabilities.wit"),
    ),
];

/// The SDK's manifest inherits from the workspace; the installed copy
/// stands alone, so the inherited keys are resolved from these two.
const SDK_MANIFEST: &str = include_str!("../../../plugin-sdk/Cargo.toml");
const WORKSPACE_MANIFEST: &str = include_str!("../../../Cargo.toml");

/// Where the SDK for this host's contract version is installed:
/// `$XDG_DATA_HOME/superapp/sdk/<version>`, else
/// `~/.local/share/superapp/sdk/<version>`.
pub fn install_dir() -> anyhow::Result<PathBuf> {
    let base = crate::files::user_dir("XDG_DATA_HOME", ".local/share")
        .ok_or_else(|| anyhow!("neither XDG_DATA_HOME nor HOME is set; pass --sdk PATH"))?;
    Ok(base.join("sdk").join(VERSION))
}

/// The SDK's manifest with every `workspace = true` key replaced by the
/// workspace's value.
pub fn standalone_manifest() -> anyhow::Result<String> {
    let mut sdk: toml::Table = toml::from_str(SDK_MANIFEST)?;
    let workspace: toml::Table = toml::from_str(WORKSPACE_MANIFEST)?;
    let ws = workspace
        .get("workspace")
        .and_then(|w| w.as_table())
        .ok_or_else(|| anyhow!("the workspace manifest has no [workspace]"))?;
    if let (Some(package), Some(from)) = (
        sdk.get_mut("package").and_then(|p| p.as_table_mut()),
        ws.get("package").and_then(|p| p.as_table()),
    ) {
        for (key, value) in package.iter_mut() {
            if inherits(value) {
                *value = from
                    .get(key)
                    .cloned()
                    .ok_or_else(|| anyhow!("the workspace does not set package.{key}"))?;
            }
        }
    }
    let from = ws
        .get("dependencies")
        .and_then(|d| d.as_table())
        .ok_or_else(|| anyhow!("the workspace has no [workspace.dependencies]"))?;
    if let Some(deps) = sdk.get_mut("dependencies").and_then(|d| d.as_table_mut()) {
        resolve_dependencies(deps, from)?;
    }
    // Target-specific dependencies (`[target.'cfg(…)'.dependencies]`).
    for (_, target) in sdk
        .get_mut("target")
        .and_then(|t| t.as_table_mut())
        .into_iter()
        .flatten()
    {
        if let Some(deps) = target
            .get_mut("dependencies")
            .and_then(|d| d.as_table_mut())
        {
            resolve_dependencies(deps, from)?;
        }
    }
    Ok(format!(
        "# superapp-sdk for contract superapp:plugin@{VERSION}, installed by `superapp`.\n{}",
        toml::to_string(&sdk)?
    ))
}

/// Whether a manifest value is `{ workspace = true, … }`.
fn inherits(value: &toml::Value) -> bool {
    value
        .as_table()
        .and_then(|t| t.get("workspace"))
        .and_then(|w| w.as_bool())
        == Some(true)
}

/// Replace each `workspace = true` dependency in `deps` by the workspace's
/// entry, with the local keys (such as `optional` or extra features) merged
/// in.
fn resolve_dependencies(deps: &mut toml::Table, from: &toml::Table) -> anyhow::Result<()> {
    for (name, value) in deps.iter_mut() {
        if !inherits(value) {
            continue;
        }
        let base = from
            .get(name)
            .ok_or_else(|| anyhow!("the workspace has no dependency {name}"))?;
        // A plain version string becomes a table, so local keys can be
        // merged in.
        let mut merged = match base {
            toml::Value::String(v) => {
                let mut t = toml::Table::new();
                t.insert("version".into(), toml::Value::String(v.clone()));
                t
            }
            toml::Value::Table(t) => t.clone(),
            _ => {
                return Err(anyhow!(
                    "the workspace's {name} is neither a version nor a table"
                ))
            }
        };
        for (k, v) in value.as_table().into_iter().flatten() {
            if k != "workspace" {
                merged.insert(k.clone(), v.clone());
            }
        }
        *value = toml::Value::Table(merged);
    }
    Ok(())
}

/// Install (or bring up to date) the bundled SDK in `dir`: each file is
/// written only if it differs, whole or not at all, so a project never
/// sees half a file.
pub fn install(dir: &Path) -> anyhow::Result<()> {
    let manifest = standalone_manifest()?;
    let files = FILES
        .iter()
        .map(|(p, c)| (*p, c.to_string()))
        .chain([("Cargo.toml", manifest)]);
    for (rel, content) in files {
        let path = dir.join(rel);
        if std::fs::read_to_string(&path).is_ok_and(|old| old == content) {
            continue;
        }
        let parent = path.parent().expect("files are inside the SDK folder");
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        crate::files::write_atomically(&path, content.as_bytes())?;
    }
    Ok(())
}

/// The contract version a component was built against (from its imports
/// and exports of `superapp:plugin`), if it names one.
pub fn contract_version_of(component: &[u8]) -> Option<String> {
    let decoded = wit_component::decode(component).ok()?;
    let resolve = decoded.resolve();
    resolve
        .packages
        .iter()
        .map(|(_, p)| &p.name)
        .find(|n| n.namespace == "superapp" && n.name == "plugin")
        .and_then(|n| n.version.as_ref())
        .map(|v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file added to the SDK must be added to the bundle too.
    #[test]
    fn the_bundle_holds_every_file_of_the_sdk() {
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugin-sdk");
        let mut on_disk = Vec::new();
        for sub in ["src", "wit"] {
            for entry in std::fs::read_dir(sdk.join(sub)).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                on_disk.push(format!("{sub}/{name}"));
            }
        }
        on_disk.sort();
        let mut bundled: Vec<String> = FILES.iter().map(|(p, _)| p.to_string()).collect();
        bundled.sort();
        assert_eq!(bundled, on_disk);
    }

    #[test]
    fn the_installed_manifest_inherits_nothing_from_a_workspace() {
        let text = standalone_manifest().unwrap();
        assert!(!text.contains("workspace"), "{text}");
        let t: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(t["package"]["name"].as_str(), Some("superapp-sdk"));
        assert!(t["package"]["version"].is_str());
        assert!(t["dependencies"]["wit-bindgen"]["version"].is_str());
        // A target-specific dependency keeps its own keys.
        let alloc = &t["target"]["cfg(target_arch = \"wasm32\")"]["dependencies"]["dlmalloc"];
        assert!(alloc["version"].is_str(), "{text}");
        assert_eq!(alloc["optional"].as_bool(), Some(true), "{text}");
    }
}
