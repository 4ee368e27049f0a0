//! The static check on components that no SDK would produce: imports from
//! outside the contract, unknown interfaces, other contract versions.

use superapp_core::Manifest;
use superapp_runtime::contract::ImportError;
use superapp_runtime::LoadError;
use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::{ManglingAndAbi, Resolve};

use crate::common::*;

/// A component whose world is `packages` plus `world w { import <import>; }`.
fn component_importing(packages: &str, import: &str) -> Vec<u8> {
    let mut resolve = Resolve::default();
    let source = format!("package test:fixture;\n{packages}\nworld w {{ import {import}; }}\n");
    let package = resolve.push_str("fixture.wit", &source).unwrap();
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
