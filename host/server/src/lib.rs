//! The host as a network service: the use cases that cross services and the
//! runtime (`host`, which also builds and wires everything, once), the
//! HTTP and WebSocket API that calls them thinly, the web shell users open
//! in a browser, the installed apps, the configuration, the accept loop
//! with its connection caps and timeouts, and `serve`'s lifecycle.

/// This build: its version and the commit it was built from
/// (`0.1.0 (86d43c0 2026-12-04)`).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("SUPERAPP_BUILD"), ")");

pub mod api;
pub mod apps;
pub mod bus;
pub mod config;
pub mod host;
pub mod listener;
pub mod metrics;
pub mod proxies;
pub mod server;
pub mod shell;
pub mod work;
