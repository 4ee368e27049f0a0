//! `documents`: credential fields disclosed with the user's field-by-field
//! approval in a host-drawn sheet. The call only creates the request; the
//! app hears the answer as a `document` event holding the approved claims
//! and a presentation its backend can verify offline.

use wasmtime::component::{HasSelf, Linker};

use super::{DocumentDesk, HostState};
use crate::bindings::superapp::plugin::documents as wit;
use crate::bindings::superapp::plugin::types::Error;
use crate::contract::Capability;
use crate::documents::requests::Requests;
use crate::documents::DocumentError;
use crate::manifest::Manifest;

pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

impl wit::Host for HostState {
    async fn request(
        &mut self,
        credential_type: String,
        fields: Vec<String>,
        purpose: String,
    ) -> wasmtime::Result<Result<String, Error>> {
        let args = serde_json::json!([credential_type, fields, purpose]).to_string();
        if let Err(e) = self.require_with(Capability::Documents, Some(args.as_bytes())) {
            return Ok(Err(e));
        }
        Ok(self.services.documents.request(
            &self.user,
            &self.app,
            &credential_type,
            &fields,
            &purpose,
        ))
    }
}

impl DocumentDesk for Requests {
    fn request(
        &self,
        user: &str,
        app: &Manifest,
        credential_type: &str,
        fields: &[String],
        purpose: &str,
    ) -> Result<String, Error> {
        Requests::request(self, user, app, credential_type, fields, purpose).map_err(|e| match e {
            DocumentError::Store(e) => {
                tracing::error!(error = %e, "document store failed");
                Error::Unavailable("documents are temporarily unavailable".into())
            }
            other => Error::Invalid(other.to_string()),
        })
    }
}
