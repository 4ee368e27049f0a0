//! `superapp plugin pack|sign`: the provider's package, and `superapp audit
//! inspect`: what an auditor sees of one before approving it.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use serde::Serialize;
use superapp_core::keys::SigningKey;
use superapp_core::{Limits, Package};
use superapp_runtime::contract::{analyze_imports, ImportAnalysis};
use superapp_runtime::{Runtime, RuntimeConfig};

use crate::plugin_build;

/// The most a package file may be.
const PACKAGE_LIMIT: u64 = superapp_core::package::MAX_PACKAGE_BYTES as u64;

/// Read a package file, refusing an oversized one (also one that is a
/// pipe or a device) without reading past the limit.
pub fn read(path: &Path) -> anyhow::Result<Package> {
    let bytes = read_file(path, PACKAGE_LIMIT)?;
    Package::from_bytes(&bytes).with_context(|| path.display().to_string())
}

/// The bytes of a file the user named, at most `limit` of them.
fn read_file(path: &Path, limit: u64) -> anyhow::Result<Vec<u8>> {
    superapp_core::files::read_at_most(path, limit)
        .with_context(|| format!("cannot read {}", path.display()))
}

/// The text of a file the user named, at most `limit` bytes of it.
pub(crate) fn read_text(path: &Path, limit: u64) -> anyhow::Result<String> {
    superapp_core::files::read_text_at_most(path, limit)
        .with_context(|| format!("cannot read {}", path.display()))
}

/// What `plugin pack` packs.
pub struct PackArgs<'a> {
    pub dir: &'a Path,
    /// A component to pack instead of building one.
    pub component: Option<&'a Path>,
    /// The manifest (default: the crate's plugin.toml).
    pub manifest: Option<&'a Path>,
    /// Cargo features to build with.
    pub features: &'a [String],
    pub out: &'a Path,
    pub quiet: bool,
}

/// `plugin pack`: build (unless a component is given) and pack.
pub fn pack(args: PackArgs<'_>) -> anyhow::Result<ExitCode> {
    let PackArgs {
        dir,
        component,
        manifest,
        features,
        out,
        quiet,
    } = args;
    let manifest_path = manifest.map_or_else(|| dir.join("plugin.toml"), Path::to_path_buf);
    let manifest = read_file(&manifest_path, PACKAGE_LIMIT)?;
    let component = match component {
        Some(path) => path.to_path_buf(),
        None => {
            let built = plugin_build::build_with(dir, None, !quiet, features)?.component;
            super::plugin::warn_on_contract_mismatch(&built);
            built
        }
    };
    let bytes = read_file(&component, PACKAGE_LIMIT)?;
    check_preamble(&component, &bytes)?;
    let package = Package::new(manifest, bytes)?;
    refuse_unloadable(&package)?;
    write_package(out, &package.to_bytes())?;
    let m = package.manifest();
    eprintln!("packed {} into {} (unsigned)", m.label(), out.display());
    println!("{}", package.digest());
    Ok(ExitCode::SUCCESS)
}

/// Write a package to `out`, replacing nothing but a package: a key, or
/// any other file given as `--out` by mistake, is left as it is.
fn write_package(out: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    crate::files::write_replacing_only(out, bytes, "a superapp package", Package::looks_like_one)
}

/// Refuse to pack what is not a WebAssembly component
/// ([`superapp_core::package::component_preamble_problem`]).
fn check_preamble(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    match superapp_core::package::component_preamble_problem(bytes) {
        None => Ok(()),
        Some(problem) => anyhow::bail!("{} {problem}", path.display()),
    }
}

/// `plugin publish`: upload a signed package to a running server, signing
/// the request with the publisher's key.
pub fn publish(file: &Path, key: &Path, server: &str) -> anyhow::Result<ExitCode> {
    let package = read(file)?;
    package
        .verify()
        .with_context(|| format!("{} cannot be published", file.display()))?;
    let key = SigningKey::load(key)?;
    let target = super::target::TargetArgs {
        server: Some(server.to_string()),
        token_file: None,
        data_dir: None,
        store: None,
    }
    .open(Some(key))?;
    let answer = target.publish(package.to_bytes())?;
    let label = package.manifest().label();
    let stored = &answer.release;
    if stored.digest != package.digest() || stored.label() != label {
        anyhow::bail!(
            "the server answered for {} (digest {}), not for {label} (digest {}): is --server the address of a superapp host?",
            stored.label(),
            stored.digest,
            package.digest()
        );
    }
    if answer.changed {
        println!("published {label} (digest {})", package.digest());
    } else {
        println!("{label} was already published with these bytes; nothing changed");
    }
    match answer.blocked_by.as_deref() {
        None => println!("users can open it now"),
        Some(why) => println!("users cannot open it yet: {why}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `plugin sign`: add (or replace) the publisher's signature.
pub fn sign(file: &Path, key: &Path, out: Option<&Path>) -> anyhow::Result<ExitCode> {
    let mut package = read(file)?;
    check_preamble(file, package.component())?;
    refuse_unloadable(&package)?;
    let key = SigningKey::load(key)?;
    package.sign(&key);
    let out = out.unwrap_or(file);
    write_package(out, &package.to_bytes())?;
    eprintln!(
        "signed {} with key {} into {}",
        package.manifest().label(),
        key.public_key(),
        out.display()
    );
    println!("{}", package.digest());
    Ok(ExitCode::SUCCESS)
}

/// What `audit inspect --json` prints. Field names are stable.
#[derive(Debug, Serialize)]
pub struct Inspection {
    pub app: String,
    pub name: String,
    pub version: String,
    pub publisher: String,
    pub description: String,
    /// The package's identity, which approvals are bound to.
    pub digest: String,
    pub manifest_sha256: String,
    pub component_sha256: String,
    pub manifest_bytes: usize,
    pub component_bytes: usize,
    pub signature: SignatureCheck,
    pub limits: Limits,
    /// What the host runs it with: the declared limits within the host's
    /// caps.
    pub applied_limits: Limits,
    pub capabilities: Vec<CapabilityRow>,
    /// Capabilities the component imports, whether declared or not.
    pub imports: Vec<String>,
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct SignatureCheck {
    /// `valid`, `invalid` or `unsigned`.
    pub status: &'static str,
    pub public_key: Option<String>,
    pub detail: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CapabilityRow {
    pub name: &'static str,
    pub consent: superapp_core::ConsentLevel,
    pub reason: String,
    pub imported: bool,
    /// For `http`: the origins the app may reach.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<String>,
    /// For `documents` delivered to the provider's backend: its callback
    /// URL, which receives what users share instead of the app.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_to: Option<String>,
}

/// A runtime that compiles components to look at them (in a compile
/// worker, under the host's default budget), never runs them.
pub(crate) fn inspecting_runtime() -> anyhow::Result<Runtime> {
    Runtime::new(RuntimeConfig {
        pooling: false,
        compile_worker: Some(super::tools_compile_worker()?),
        ..RuntimeConfig::default()
    })
}

/// The component's imports against its manifest, or why it does not compile.
fn analyze(runtime: &Runtime, package: &Package) -> Result<ImportAnalysis, String> {
    let (component, _) = runtime
        .compile(package.component())
        .map_err(|e| e.to_string())?;
    Ok(analyze_imports(
        runtime.engine(),
        &component,
        package.manifest(),
    ))
}

/// Refuse to pack or sign what no host would load: a component that
/// does not compile, imports what its manifest does not declare (or what
/// the contract does not offer), or lacks an export every mini-program
/// has. Every problem is named at once.
fn refuse_unloadable(package: &Package) -> anyhow::Result<()> {
    let runtime = inspecting_runtime()?;
    let analysis = analyze(&runtime, package).map_err(|e| anyhow::anyhow!(e))?;
    let mut problems: Vec<String> = analysis.errors.iter().map(|e| e.to_string()).collect();
    problems.extend(analysis.missing_exports.iter().map(|name| {
        format!("the component does not export `{name}`, which every mini-program must")
    }));
    if problems.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "no host would load {}: {}",
        package.manifest().label(),
        problems.join("; ")
    )
}

pub fn inspect(runtime: &Runtime, package: &Package) -> Inspection {
    let m = package.manifest();
    let signature = match package.verify() {
        Ok(sig) => SignatureCheck {
            status: "valid",
            public_key: Some(sig.public_key.clone()),
            detail: None,
        },
        Err(superapp_core::PackageError::Unsigned) => SignatureCheck {
            status: "unsigned",
            public_key: None,
            detail: None,
        },
        Err(e) => SignatureCheck {
            status: "invalid",
            public_key: package.signature().map(|s| s.public_key.clone()),
            detail: Some(e.to_string()),
        },
    };
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let analysis = match analyze(runtime, package) {
        Ok(analysis) => Some(analysis),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let imported = analysis
        .as_ref()
        .map(|a| a.imported.clone())
        .unwrap_or_default();
    if let Some(a) = &analysis {
        errors.extend(a.errors.iter().map(|e| e.to_string()));
        errors.extend(a.missing_exports.iter().map(|name| {
            format!("the component does not export `{name}`, which every mini-program must")
        }));
        warnings.extend(a.declared_unused.iter().map(|c| {
            format!("`{c}` is declared but the component never imports it; it can be dropped")
        }));
        warnings.extend(a.extra_exports.iter().map(|name| {
            format!("the component exports `{name}` beside `launch` and `event`; the host never calls it")
        }));
    }
    if let Err(e) = m.check_publishable() {
        errors.push(e.to_string());
    }
    let applied = m.limits.capped_by(RuntimeConfig::default().cap);
    for ((name, asked), (_, runs)) in limits_of(&m.limits).into_iter().zip(limits_of(&applied)) {
        if asked > runs {
            warnings.push(format!(
                "limits: {name} asks for {asked}; the host runs it with at most {runs}"
            ));
        }
    }
    if let Some(detail) = &signature.detail {
        errors.push(format!("signature: {detail}"));
    } else if signature.status == "unsigned" {
        errors.push("the package is not signed".into());
    }
    Inspection {
        app: m.id.clone(),
        name: m.name.clone(),
        version: m.version.to_string(),
        publisher: m.publisher.clone(),
        description: m.description.clone(),
        digest: package.digest(),
        manifest_sha256: package.manifest_sha256(),
        component_sha256: package.component_sha256(),
        manifest_bytes: package.manifest_bytes().len(),
        component_bytes: package.component().len(),
        signature,
        limits: m.limits,
        applied_limits: applied,
        capabilities: m
            .declared
            .iter()
            .map(|d| CapabilityRow {
                name: d.capability.name(),
                consent: superapp_runtime::capabilities::consent_level(d.capability),
                reason: d.reason.clone(),
                imported: imported.contains(&d.capability),
                origins: d.origins.iter().map(|o| o.to_string()).collect(),
                delivered_to: m
                    .documents_callback()
                    .filter(|_| d.capability == superapp_core::Capability::Documents)
                    .map(|c| c.url.clone()),
            })
            .collect(),
        imports: imported.iter().map(|c| c.name().to_string()).collect(),
        warnings,
        errors,
    }
}

/// `audit inspect`: print the inspection; exit 1 if it found errors.
pub fn run_inspect(package: &Package, json: bool) -> anyhow::Result<ExitCode> {
    let report = inspect(&inspecting_runtime()?, package);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_inspection(&report);
    }
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_inspection(r: &Inspection) {
    // What the publisher wrote, as text: nothing in it acts on the terminal.
    let text = |s: &str| super::printable(s);
    println!(
        "{} {} ({}) by {}",
        r.app,
        r.version,
        text(&r.name),
        text(&r.publisher)
    );
    println!("  {}", text(&r.description));
    println!("digest     {}", r.digest);
    println!(
        "manifest   {} bytes, sha256 {}",
        r.manifest_bytes, r.manifest_sha256
    );
    println!(
        "component  {} bytes, sha256 {}",
        r.component_bytes, r.component_sha256
    );
    match (&r.signature.public_key, r.signature.status) {
        (Some(key), "valid") => println!("signature  valid, key {key}"),
        (_, "unsigned") => println!("signature  none"),
        (key, _) => println!(
            "signature  INVALID ({}), key {}",
            r.signature.detail.as_deref().unwrap_or("?"),
            key.as_deref().unwrap_or("?")
        ),
    }
    let l = &r.applied_limits;
    println!(
        "limits     memory {} MiB, time {} ms, view {} nodes / {} KiB, storage {} MiB{}",
        l.memory_bytes >> 20,
        l.time_ms,
        l.view_nodes,
        l.view_bytes >> 10,
        l.storage_bytes >> 20,
        if r.applied_limits == r.limits {
            ""
        } else {
            " (within the host's caps: the manifest asks for more)"
        }
    );
    println!("capabilities (declared, with the reason users see):");
    if r.capabilities.is_empty() {
        println!("  none");
    }
    for c in &r.capabilities {
        let used = if c.imported {
            "imported"
        } else {
            "NOT imported"
        };
        println!(
            "  {:<15} {:<13} {:<12} {}",
            c.name,
            c.consent.name(),
            used,
            text(&c.reason)
        );
        for origin in &c.origins {
            println!("  {:<15} may contact {origin}", "");
        }
        if let Some(url) = &c.delivered_to {
            println!("  {:<15} shared documents go to {url}, not to the app", "");
        }
    }
    println!(
        "imports    {}",
        if r.imports.is_empty() {
            "none".to_string()
        } else {
            r.imports.join(", ")
        }
    );
    for w in &r.warnings {
        println!("warning: {}", text(w));
    }
    for e in &r.errors {
        println!("error: {}", text(e));
    }
}

/// What `audit diff --json` prints. Field names are stable.
#[derive(Debug, Serialize)]
pub struct Diff {
    pub app: String,
    pub old_version: String,
    pub new_version: String,
    pub old_digest: String,
    pub new_digest: String,
    /// Whether the new version asks for anything the old one did not.
    pub escalation: bool,
    pub capabilities: Vec<CapabilityChange>,
    /// Origins `http` may reach that were added or removed; a new one is an
    /// escalation.
    pub origins: Vec<OriginChange>,
    /// Where the backend is told of payments and receives shared documents
    /// (`[callbacks] url`), when it changed: a new destination for users'
    /// data is an escalation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback: Option<CallbackChange>,
    /// Shared documents now go into the app's sandbox instead of only to
    /// its backend (`deliver = "backend"` dropped): an escalation.
    pub documents_to_app: bool,
    pub limits: Vec<LimitChange>,
    /// What makes either package unfit to compare at all (a signature that
    /// does not verify, a component that does not compile): the diff of
    /// such a package says nothing about what would run. Unsigned packages
    /// are compared.
    pub errors: Vec<String>,
    pub imports_added: Vec<String>,
    pub imports_removed: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct CallbackChange {
    pub old: Option<String>,
    pub new: Option<String>,
    pub escalation: bool,
}

#[derive(Debug, Serialize)]
pub struct CapabilityChange {
    pub name: &'static str,
    /// `added`, `removed` or `reason-changed`.
    pub change: &'static str,
    pub consent: superapp_core::ConsentLevel,
    /// An added capability; users who consented to the old version are
    /// asked again where the capability needs consent.
    pub escalation: bool,
    pub old_reason: Option<String>,
    pub new_reason: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct OriginChange {
    pub origin: String,
    /// `added` or `removed`.
    pub change: &'static str,
    pub escalation: bool,
}

#[derive(Debug, Serialize)]
pub struct LimitChange {
    pub name: &'static str,
    pub old: u64,
    pub new: u64,
    /// The new version may use more.
    pub escalation: bool,
}

fn limits_of(l: &Limits) -> [(&'static str, u64); 5] {
    [
        ("memory_bytes", l.memory_bytes),
        ("time_ms", l.time_ms),
        ("view_nodes", u64::from(l.view_nodes)),
        ("view_bytes", l.view_bytes),
        ("storage_bytes", l.storage_bytes),
    ]
}

/// Compare two versions of one app as an auditor would.
pub fn diff(old: &Package, new: &Package) -> anyhow::Result<Diff> {
    let (o, n) = (old.manifest(), new.manifest());
    if o.id != n.id {
        anyhow::bail!(
            "these are two different apps ({} and {}); diff compares versions of one app",
            o.id,
            n.id
        );
    }
    let mut capabilities = Vec::new();
    for cap in superapp_core::Capability::all() {
        let change = match (o.declares(cap), n.declares(cap)) {
            (false, true) => "added",
            (true, false) => "removed",
            (true, true) if o.reason(cap) != n.reason(cap) => "reason-changed",
            _ => continue,
        };
        capabilities.push(CapabilityChange {
            name: cap.name(),
            change,
            consent: superapp_runtime::capabilities::consent_level(cap),
            escalation: change == "added",
            old_reason: o.declares(cap).then(|| o.reason(cap)),
            new_reason: n.declares(cap).then(|| n.reason(cap)),
        });
    }
    let limits = limits_of(&o.limits)
        .into_iter()
        .zip(limits_of(&n.limits))
        .filter(|((_, a), (_, b))| a != b)
        .map(|((name, a), (_, b))| LimitChange {
            name,
            old: a,
            new: b,
            escalation: b > a,
        })
        .collect::<Vec<_>>();
    let runtime = inspecting_runtime()?;
    let mut errors = Vec::new();
    let mut imports = |which: &str, p: &Package| -> Vec<String> {
        let version = &p.manifest().version;
        // An unsigned package (a build being prepared) can be compared; one
        // whose signature does not verify was changed after signing.
        match p.verify() {
            Ok(_) | Err(superapp_core::PackageError::Unsigned) => {}
            Err(e) => errors.push(format!("{which} ({version}): signature: {e}")),
        }
        match analyze(&runtime, p) {
            Ok(a) => a.imported.iter().map(|c| c.name().to_string()).collect(),
            Err(e) => {
                errors.push(format!(
                    "{which} ({version}): the component does not compile: {e}"
                ));
                Vec::new()
            }
        }
    };
    let (old_imports, new_imports) = (imports("old", old), imports("new", new));
    let mut origins: Vec<OriginChange> = n
        .origins()
        .iter()
        .filter(|x| !o.origins().contains(x))
        .map(|x| OriginChange {
            origin: x.to_string(),
            change: "added",
            escalation: true,
        })
        .collect();
    origins.extend(
        o.origins()
            .iter()
            .filter(|x| !n.origins().contains(x))
            .map(|x| OriginChange {
                origin: x.to_string(),
                change: "removed",
                escalation: false,
            }),
    );
    let url = |m: &superapp_core::Manifest| m.callback.as_ref().map(|c| c.url.clone());
    let callback = (url(o) != url(n)).then(|| CallbackChange {
        old: url(o),
        new: url(n),
        // Removing it sends nothing anywhere; a new URL is a new recipient.
        escalation: url(n).is_some(),
    });
    let documents_to_app = o.documents_to_backend
        && !n.documents_to_backend
        && n.declares(superapp_core::Capability::Documents);
    let escalation = capabilities.iter().any(|c| c.escalation)
        || origins.iter().any(|c| c.escalation)
        || limits.iter().any(|l| l.escalation)
        || callback.as_ref().is_some_and(|c| c.escalation)
        || documents_to_app;
    Ok(Diff {
        app: n.id.clone(),
        old_version: o.version.to_string(),
        new_version: n.version.to_string(),
        old_digest: old.digest(),
        new_digest: new.digest(),
        escalation,
        capabilities,
        origins,
        callback,
        documents_to_app,
        limits,
        imports_added: new_imports
            .iter()
            .filter(|i| !old_imports.contains(i))
            .cloned()
            .collect(),
        imports_removed: old_imports
            .iter()
            .filter(|i| !new_imports.contains(i))
            .cloned()
            .collect(),
        errors,
    })
}

/// `audit diff OLD NEW`: print what changed, escalations marked.
pub fn run_diff(old: &Package, new: &Package, json: bool) -> anyhow::Result<ExitCode> {
    let d = diff(old, new)?;
    let status = if d.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&d)?);
        return Ok(status);
    }
    for e in &d.errors {
        println!("ERROR {e}");
    }
    println!("{} {} -> {}", d.app, d.old_version, d.new_version);
    if d.old_digest == d.new_digest {
        println!("identical packages");
    }
    for c in &d.capabilities {
        let mark = if c.escalation { "ESCALATION " } else { "" };
        let consent = c.consent.name();
        match c.change {
            "added" => println!(
                "{mark}+ capability {} (consent: {consent}): {}",
                c.name,
                c.new_reason.as_deref().unwrap_or("")
            ),
            "removed" => println!("- capability {}", c.name),
            _ => println!(
                "~ capability {} reason: {:?} -> {:?}",
                c.name,
                c.old_reason.as_deref().unwrap_or(""),
                c.new_reason.as_deref().unwrap_or("")
            ),
        }
    }
    for c in &d.origins {
        let mark = if c.escalation { "ESCALATION " } else { "" };
        let sign = if c.change == "added" { '+' } else { '-' };
        println!("{mark}{sign} origin {}", c.origin);
    }
    if let Some(c) = &d.callback {
        let mark = if c.escalation { "ESCALATION " } else { "" };
        println!(
            "{mark}~ callbacks url: {} -> {}",
            c.old.as_deref().unwrap_or("none"),
            c.new.as_deref().unwrap_or("none")
        );
    }
    if d.documents_to_app {
        println!("ESCALATION ~ documents: shared fields now go to the app itself, no longer only to its backend");
    }
    for l in &d.limits {
        let mark = if l.escalation { "ESCALATION " } else { "" };
        println!("{mark}~ limit {}: {} -> {}", l.name, l.old, l.new);
    }
    for i in &d.imports_added {
        println!("+ import {i}");
    }
    for i in &d.imports_removed {
        println!("- import {i}");
    }
    println!(
        "{}",
        if d.escalation {
            "the new version asks for more: users are asked again for added consent-gated capabilities"
        } else {
            "no escalation"
        }
    );
    Ok(status)
}
