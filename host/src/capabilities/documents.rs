//! `documents`: credential fields disclosed with the user's field-by-field
//! approval. The document wallet is not part of this host yet, so every call
//! that passes the manifest check answers `unavailable`.

use wasmtime::component::{HasSelf, Linker};

use super::HostState;
use crate::bindings::superapp::plugin::documents as wit;
use crate::bindings::superapp::plugin::types::Error;
use crate::contract::Capability;

pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

impl wit::Host for HostState {
    async fn request(
        &mut self,
        _credential_type: String,
        _fields: Vec<String>,
        _purpose: String,
    ) -> wasmtime::Result<Result<String, Error>> {
        Ok(self
            .require(Capability::Documents)
            .and(Err(Error::Unavailable(
                "the document wallet is not available on this host".into(),
            ))))
    }
}
