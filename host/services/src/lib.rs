//! The host's domain services: accounts and sessions, messaging, consent
//! and prompts, the ledger and payment orders, the document wallet, the app
//! registry, the audit log, and egress (the one way out to providers'
//! backends). They know nothing of serving HTTP or of wasm: the server and
//! the runtime call them, never the other way round.

pub mod audit;
pub mod callbacks;
pub mod consent;
pub mod documents;
pub mod egress;
pub mod identity;
pub mod ledger;
pub mod messaging;
pub mod prompts;
pub mod registry;
