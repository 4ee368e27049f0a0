//! The host as a network service: the HTTP and WebSocket API, its
//! configuration, and the one place where the store, the services and the
//! runtime are built and wired together (`server.rs`, `apps.rs`).

pub mod api;
pub mod apps;
pub mod config;
pub mod server;
