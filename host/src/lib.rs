//! The superapp host: runs mini-programs — WebAssembly components — in a
//! capability-gated sandbox, and the tools providers and auditors use.
//!
//! Start at [`runtime::Runtime`]: it checks a component against its
//! [`manifest::Manifest`] with [`contract::check_imports`], links only the
//! declared [`capabilities`], and runs every event in a fresh instance.

pub mod api;
pub mod apps;
pub mod audit;
#[allow(unsafe_code)]
pub mod bindings;
pub mod capabilities;
pub mod cli;
pub mod config;
pub mod consent;
pub mod contract;
pub mod documents;
pub mod identity;
pub mod ledger;
pub mod manifest;
pub mod messaging;
pub mod plugin_build;
pub mod runtime;
pub mod scaffold;
pub mod server;
pub mod store;
pub mod view;
