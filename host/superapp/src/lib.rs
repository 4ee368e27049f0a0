//! The `superapp` binary's library: the command-line interface of operators,
//! providers and auditors, and the provider tooling (building and
//! scaffolding mini-programs). Everything else lives in the layered
//! crates below it: store → core → services → runtime → server.

/// The host's allocator, for the `superapp` binary and everything else that
/// links this library (the benchmarks and black-box tests): mimalloc, whose
/// per-thread free lists make the many short-lived allocations of an event
/// or a request (a store, its host state, the view, JSON buffers) cheaper
/// than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod cli;
pub mod files;
pub mod plugin_build;
pub mod scaffold;
pub mod sdk_bundle;
