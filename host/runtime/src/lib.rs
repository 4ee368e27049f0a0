//! The sandbox: mini-programs — WebAssembly components — checked against
//! their manifest, linked only to the capabilities they declare, and run in
//! a fresh instance per event under memory, table, time and view limits.
//!
//! Start at [`Runtime`]: it checks a component with
//! [`contract::check_imports`], links the declared [`capabilities`], and runs
//! every event in a fresh instance. Embedding it needs this crate alone: no
//! HTTP server and no CLI.

#[allow(unsafe_code)]
pub mod bindings;
mod cache;
pub mod capabilities;
mod compile;
pub mod contract;
mod error;
mod limits;
pub mod metrics;
mod sandbox;
pub mod scheduler;
pub mod view;

pub use cache::{sha256_hex, ComponentCache, Origin};
pub use capabilities::{HostState, Services};
pub use compile::{run_compile_worker, CompileBudget, CompileWorker, Urgency};
pub use error::{describe_app_error, describe_cap_error, Limit, LoadError, RunError};
pub use limits::{Breach, Meter};
pub use metrics::{Prepared, RuntimeMetrics};
pub use sandbox::{
    App, Call, Invocation, Runtime, RuntimeConfig, HOST_CALL_CHARGE, HOST_DELAY_PER_LIMIT,
};
pub use scheduler::{Load, Overload, Scheduler, SchedulerConfig};
