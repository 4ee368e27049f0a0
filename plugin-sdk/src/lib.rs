//! Write superapp mini-programs in Rust.
//!
//! A mini-program is a WebAssembly component that the superapp host runs in
//! a sandbox, one fresh instance per event. It draws screens as declarative
//! [`View`]s and reaches the world only through capabilities — one module of
//! this crate each — that its manifest (`plugin.toml`) declares with a reason.
//!
//! ```no_run
//! use superapp_sdk::prelude::*;
//!
//! struct Counter;
//!
//! impl App for Counter {
//!     fn launch(_ctx: &Context) -> Result<View, AppError> {
//!         let count = storage::get_json::<u64>("count")?.unwrap_or(0);
//!         Ok(View::new("Counter")
//!             .heading(format!("Pressed {count} times"))
//!             .button(Button::new("Press", "press")))
//!     }
//!
//!     fn event(ctx: &Context, event: Event) -> Result<View, AppError> {
//!         match event {
//!             Event::Action(action) if action.name == "press" => {
//!                 let count = storage::get_json::<u64>("count")?.unwrap_or(0);
//!                 storage::set_json("count", &(count + 1))?;
//!                 log::info(&format!("pressed, now {}", count + 1));
//!                 Self::launch(ctx)
//!             }
//!             other => Err(AppError::unexpected(&other)),
//!         }
//!     }
//! }
//!
//! superapp_sdk::export_app!(Counter);
//! ```
//!
//! Its manifest declares the two capabilities the code uses:
//!
//! ```toml
//! id = "org.example.counter"
//! name = "Counter"
//! version = "0.1.0"
//! publisher = "Example Org"
//! description = "Counts button presses."
//!
//! [capabilities.log]
//! reason = "Diagnostics and crash reports."
//!
//! [capabilities.storage]
//! reason = "Remembers your count."
//! ```
//!
//! Build it with `superapp plugin build`, try it with `superapp plugin run`.
//!
//! Every mini-program built with this crate imports `log`: the export macro
//! installs a panic hook that reports the panic message through it, so a
//! crash shows up in the host's logs with its cause.
//!
//! # Memory
//!
//! With the default `allocator` feature the SDK installs the global
//! allocator: dlmalloc, the allocator std itself uses on wasm32, in a
//! version that first takes the heap the linker leaves in the initial
//! memory. `superapp plugin build` links every mini-program with a
//! [`INITIAL_HEAP`]-byte initial heap, so an event that allocates less never
//! calls `memory.grow`. That matters for speed, not only for memory: the
//! host gives every event a fresh instance, and undoing a grown memory
//! between two instances means changing page protections, which on a
//! machine with several cores makes the kernel interrupt every core. Turn
//! the feature off (`default-features = false`) to bring your own allocator.

extern crate self as superapp_sdk;

/// The heap a mini-program built by `superapp plugin build` starts with, in
/// bytes, on top of its stack and static data. It counts against the app's
/// memory limit from the start.
pub const INITIAL_HEAP: usize = 512 << 10;

#[cfg(all(target_arch = "wasm32", feature = "allocator"))]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

pub mod assertion;
pub mod bindings;
pub mod callbacks;
pub mod capabilities;
pub mod credentials;
mod export;
pub mod view;

pub use capabilities::{
    clock, documents, http, identity, log, notify, payments, profile, random, shared_storage,
    storage,
};
pub use export::App;
pub use view::{
    AppCard, Button, ButtonStyle, Element, Form, Input, InputKind, TextStyle, Tone, View,
};

/// Why the app could not produce a view.
pub use bindings::superapp::plugin::types::AppError;
/// The launch context: which app, which version, the user's locale, and the
/// parameters the app was opened with.
pub use bindings::superapp::plugin::types::Context;
/// Why a capability call failed (`denied`, `consent-required`, …).
pub use bindings::superapp::plugin::types::Error;
/// Everything that can wake a mini-program after launch.
pub use bindings::superapp::plugin::types::{
    Action, ConsentAnswer, DisclosedClaim, DocumentOutcome, Event, PaymentOutcome, PaymentResult,
    Presentation,
};

/// Everything a typical mini-program needs, in one `use`.
pub mod prelude {
    pub use crate::{
        clock, documents, http, identity, log, notify, payments, profile, random, shared_storage,
        storage, Action, App, AppCard, AppError, Button, ButtonStyle, Context, Element, Error,
        Event, Form, Input, InputKind, TextStyle, Tone, View,
    };
}

impl Context {
    /// The value of launch parameter `name`, if the app was opened with it.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Action {
    /// The submitted value of form input `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Event {
    /// A short name for the event, for logs and error messages.
    pub fn describe(&self) -> String {
        match self {
            Event::Action(a) => format!("action `{}`", a.name),
            Event::Consent(c) => format!("consent answer for `{}`", c.capability),
            Event::Payment(p) => format!("payment result for order `{}`", p.order_id),
            Event::Document(_) => "document answer".to_string(),
            Event::CardShared(_) => "card-shared answer".to_string(),
        }
    }
}

impl AppError {
    /// The app received an event it does not handle.
    pub fn unexpected(event: &Event) -> Self {
        AppError::BadRequest(format!("unexpected {}", event.describe()))
    }
}

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        AppError::Capability(e)
    }
}

#[doc(hidden)]
pub mod __private {
    pub use crate::export::{run_event, run_launch};
    pub use wit_bindgen;
}
