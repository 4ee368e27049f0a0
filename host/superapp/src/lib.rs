//! The `superapp` binary's library: the command-line interface of operators,
//! providers and auditors, and the provider tooling (building and
//! scaffolding mini-programs). Everything else lives in the layered
//! crates below it: store → core → services → runtime → server.

pub mod cli;
pub mod files;
pub mod plugin_build;
pub mod scaffold;
pub mod sdk_bundle;
