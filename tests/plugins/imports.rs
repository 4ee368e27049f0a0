//! The static check on components that no SDK would produce: imports from
//! outside the contract, unknown interfaces, other contract versions.

use superapp_core::Manifest;
use superapp_runtime::contract::{analyze_imports, ImportError};
use superapp_runtime::LoadError;
use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::{ManglingAndAbi, Resolve};

use crate::common::*;

/// A component whose world is `packages` plus `world w { import <import>; }`.
fn component_importing(packages: &str, import: &str) -> Vec<u8> {
    let mut resolve = Resolve::default();
    let source = format!("package test:fixture;\n{packages}\nworld w {{ import {import}; }}\n");
    let package = resolve.push_str("fixture.wit", &source).unwrap();
    encode(resolve, package)
}

/// A component of the contract's own types whose world is `world w {
/// <body> }`: what an SDK would make of a world it does not ship.
fn component_of_world(body: &str) -> Vec<u8> {
    let mut resolve = Resolve::default();
    resolve
        .push_dir(repo().join("plugin-sdk").join("wit"))
        .unwrap();
    let source = format!("package test:fixture;\nworld w {{ {body} }}\n");
    let package = resolve.push_str("fixture.wit", &source).unwrap();
    encode(resolve, package)
}

/// The world `w` of `package`, as a component of a module that does
/// nothing.
fn encode(resolve: Resolve, package: wit_parser::PackageId) -> Vec<u8> {
    let world = resolve.select_world(&[package], Some("w")).unwrap();
    let mut module = wit_component::dummy_module(&resolve, world, ManglingAndAbi::Standard32);
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        StringEncoding::UTF8,
        false,
    )
    .unwrap();
    ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(true)
        .encode()
        .unwrap()
}

fn load_errors(bytes: &[u8]) -> Vec<ImportError> {
    let manifest =
        Manifest::parse(&std::fs::read_to_string(manifest("testing/probe")).unwrap()).unwrap();
    match runtime().load(manifest, bytes) {
        Err(LoadError::Imports(errors)) => errors,
        Err(other) => panic!("expected import errors, got {other}"),
        Ok(_) => panic!("the component loaded"),
    }
}

#[test]
fn wasi_imports_are_refused() {
    let bytes = component_importing(
        "package wasi:cli@0.2.0 { interface environment { get-arguments: func() -> list<string>; } }",
        "wasi:cli/environment@0.2.0",
    );
    assert_eq!(
        load_errors(&bytes),
        vec![ImportError::Foreign("wasi:cli/environment@0.2.0".into())]
    );
}

#[test]
fn unknown_contract_interfaces_are_refused() {
    let bytes = component_importing(
        "package superapp:plugin@0.2.0 { interface files { read: func(path: string) -> list<u8>; } }",
        "superapp:plugin/files@0.2.0",
    );
    assert_eq!(
        load_errors(&bytes),
        vec![ImportError::UnknownInterface(
            "superapp:plugin/files@0.2.0".into()
        )]
    );
}

#[test]
fn other_contract_versions_are_refused() {
    let bytes = component_importing(
        "package superapp:plugin@0.1.0 { interface log { emit: func(message: string); } }",
        "superapp:plugin/log@0.1.0",
    );
    assert_eq!(
        load_errors(&bytes),
        vec![ImportError::UnsupportedVersion(
            "superapp:plugin/log@0.1.0".into()
        )]
    );
}

#[test]
fn a_types_interface_with_functions_is_refused() {
    let bytes = component_importing(
        "package superapp:plugin@0.2.0 { interface types { smuggle: func() -> string; } }",
        "superapp:plugin/types@0.2.0",
    );
    assert_eq!(
        load_errors(&bytes),
        vec![ImportError::TypesWithFunctions(
            "superapp:plugin/types@0.2.0".into()
        )]
    );
}

#[test]
fn the_contract_version_a_component_speaks_is_read_from_the_component() {
    let other = component_importing(
        "package superapp:plugin@0.1.0 { interface log { emit: func(message: string); } }",
        "superapp:plugin/log@0.1.0",
    );
    assert_eq!(
        superapp_cli::sdk_bundle::contract_version_of(&other).as_deref(),
        Some("0.1.0")
    );
    let hello = std::fs::read(component("hello")).unwrap();
    assert_eq!(
        superapp_cli::sdk_bundle::contract_version_of(&hello).as_deref(),
        Some(superapp_core::VERSION)
    );
}

/// Exports beside the world's are never called, but auditors see them;
/// a component without the world's exports cannot load, and inspecting it
/// says so.
#[test]
fn extra_exports_are_reported_and_missing_ones_refused() {
    let types = format!(
        "use superapp:plugin/types@{}.{{context, view, event, app-error}};",
        superapp_core::VERSION
    );
    let with_extra = component_of_world(&format!(
        "{types}
         export launch: func(ctx: context) -> result<view, app-error>;
         export event: func(ctx: context, event: event) -> result<view, app-error>;
         export backdoor: func(code: string) -> u32;"
    ));
    let manifest =
        Manifest::parse(&std::fs::read_to_string(manifest("testing/probe")).unwrap()).unwrap();
    let rt = runtime();
    let app = rt.load(manifest.clone(), &with_extra).unwrap();
    assert_eq!(app.imports().extra_exports, vec!["backdoor".to_string()]);
    let hello = load(&rt, "hello");
    assert!(hello.imports().extra_exports.is_empty());

    let (component, _) = rt.compile(&with_extra).unwrap();
    let analysis = analyze_imports(rt.engine(), &component, &manifest);
    assert!(analysis.missing_exports.is_empty(), "{analysis:?}");
    let only_launch = component_of_world(&format!(
        "{types} export launch: func(ctx: context) -> result<view, app-error>;"
    ));
    let (component, _) = rt.compile(&only_launch).unwrap();
    let analysis = analyze_imports(rt.engine(), &component, &manifest);
    assert_eq!(analysis.missing_exports, vec!["event"]);
    assert!(analysis.extra_exports.is_empty(), "{analysis:?}");
    assert!(
        matches!(rt.load(manifest, &only_launch), Err(LoadError::Link(ref why)) if why.contains("`event`")),
        "a component without `event` does not load"
    );

    // What `plugin check` and `audit inspect` tell a provider and an auditor.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("extra.wasm");
    std::fs::write(&file, &with_extra).unwrap();
    let check = superapp()
        .args(["plugin", "check"])
        .arg(&file)
        .arg("--manifest")
        .arg(crate::common::manifest("testing/probe"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    assert!(
        stdout(&check).contains("exports `backdoor` beside `launch` and `event`"),
        "{}",
        stdout(&check)
    );
    for (name, bytes, errors) in [("extra", &with_extra, 0), ("half", &only_launch, 1)] {
        let folder = dir.path().join(name);
        std::fs::create_dir(&folder).unwrap();
        std::fs::copy(
            crate::common::manifest("testing/probe"),
            folder.join("plugin.toml"),
        )
        .unwrap();
        let wasm = dir.path().join(format!("{name}.wasm"));
        std::fs::write(&wasm, bytes).unwrap();
        let pkg = dir.path().join(format!("{name}.pkg"));
        let packed = superapp()
            .args(["plugin", "pack"])
            .arg(&folder)
            .arg("--component")
            .arg(&wasm)
            .arg("--out")
            .arg(&pkg)
            .output()
            .unwrap();
        if errors > 0 {
            // No host would load it, so the provider's tool packs nothing;
            // an auditor may still be sent one made by other means.
            assert!(!packed.status.success());
            assert!(
                stderr(&packed).contains("does not export `event`"),
                "{}",
                stderr(&packed)
            );
            assert!(!pkg.exists());
            made_elsewhere(&folder.join("plugin.toml"), bytes, &pkg, None);
        } else {
            assert!(packed.status.success(), "{}", stderr(&packed));
        }
        let out = superapp()
            .args(["audit", "inspect", "--json"])
            .arg(&pkg)
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        let said = |field: &str, what: &str| {
            report[field]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e.as_str().unwrap().contains(what))
                .count()
        };
        assert_eq!(
            said("warnings", "exports `backdoor`"),
            1 - errors,
            "{report}"
        );
        assert_eq!(
            said("errors", "does not export `event`"),
            errors,
            "{report}"
        );
    }
}

/// The provider's tools hold a package to what the host and the registry
/// will: `pack` and `sign` refuse a component that imports what its
/// manifest does not offer (here WASI), `check` a manifest the registry
/// would refuse (a direction override in the name).
#[test]
fn the_provider_tools_refuse_what_no_host_would_take() {
    let dir = tempfile::tempdir().unwrap();
    let wasi = dir.path().join("wasi.wasm");
    std::fs::write(
        &wasi,
        component_importing(
            "package wasi:cli@0.2.0 { interface environment { get-arguments: func() -> list<string>; } }",
            "wasi:cli/environment@0.2.0",
        ),
    )
    .unwrap();
    let pkg = dir.path().join("wasi.pkg");
    let packed = superapp()
        .args(["plugin", "pack", "--quiet", "--component"])
        .arg(&wasi)
        .arg("--out")
        .arg(&pkg)
        .arg(plugin_dir("hello"))
        .output()
        .unwrap();
    assert_eq!(packed.status.code(), Some(1));
    assert!(
        stderr(&packed).contains("wasi:cli/environment"),
        "{}",
        stderr(&packed)
    );
    assert!(!pkg.exists());

    // One made by other means is not signed either.
    let made = made_elsewhere(
        &manifest("hello"),
        &std::fs::read(&wasi).unwrap(),
        &pkg,
        None,
    );
    let key = dir.path().join("key.pem");
    let generated = superapp()
        .args(["keys", "generate", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(generated.status.success(), "{}", stderr(&generated));
    let signed = superapp()
        .args(["plugin", "sign"])
        .arg(&pkg)
        .arg("--key")
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(signed.status.code(), Some(1));
    assert!(
        stderr(&signed).contains("wasi:cli/environment"),
        "{}",
        stderr(&signed)
    );
    assert_eq!(std::fs::read(&pkg).unwrap(), made, "left as it was");

    let turned = dir.path().join("plugin.toml");
    let text = std::fs::read_to_string(manifest("hello")).unwrap();
    std::fs::write(
        &turned,
        text.replacen("name = \"Hello\"", "name = \"Hel\u{202E}lo\"", 1),
    )
    .unwrap();
    let checked = check_hello_with(&turned);
    assert_eq!(checked.status.code(), Some(1), "{}", stdout(&checked));
}
