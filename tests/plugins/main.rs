//! Black-box tests of mini-programs: the real `superapp` binary for the
//! provider's commands, and the host library's public API for the sandbox.
//! Plugins are built from source once per run (cached under plugins/target).

#[path = "../support/bombs.rs"]
mod bombs;
mod cache;
mod capabilities;
mod cli;
mod common;
mod containment;
mod host_delay;
mod imports;
mod packages;
