//! The host's domain services: accounts and sessions, messaging, consent
//! and prompts, the ledger and payment orders, the document wallet, the app
//! registry, and the audit log. They know nothing of HTTP or wasm: the server and the runtime
//! call them, never the other way round.

pub mod audit;
pub mod consent;
pub mod documents;
pub mod identity;
pub mod ledger;
pub mod messaging;
pub mod prompts;
pub mod registry;
