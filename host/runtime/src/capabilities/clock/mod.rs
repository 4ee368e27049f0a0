//! `clock`: wall-clock time, the host's (see `superapp_core::ids::now`).

use superapp_core::ConsentLevel;
use wasmtime::component::{HasSelf, Linker};

use super::{HostState, Registration};
use crate::bindings::superapp::plugin::clock::{self as wit, Instant};

/// Consent: declaring it in the manifest is enough.
pub const REGISTRATION: Registration = Registration {
    consent: ConsentLevel::None,
    link: add_to_linker,
};

pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

impl wit::Host for HostState {
    async fn now(&mut self) -> wasmtime::Result<Instant> {
        // A clock before 1970 is a broken host; it reads as the epoch.
        let d = superapp_core::ids::now();
        Ok(Instant {
            seconds: d.as_secs(),
            nanoseconds: d.subsec_nanos(),
        })
    }
}
