//! `identity`: the user's pseudonymous id for this app.

use wasmtime::component::{HasSelf, Linker};

use superapp_core::Capability;

use super::HostState;
use crate::bindings::superapp::plugin::identity as wit;
use crate::bindings::superapp::plugin::types::Error;

pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

impl wit::Host for HostState {
    async fn user_id(&mut self) -> wasmtime::Result<Result<String, Error>> {
        Ok(self
            .require(Capability::Identity)
            .map(|()| self.services.pseudonyms.for_app(&self.user, &self.app.id)))
    }
}
