//! `documents`: credential fields disclosed with the user's field-by-field
//! approval in a host-drawn sheet. The call only creates the request; the
//! app hears the answer as a `document` event holding the approved claims
//! and a presentation its backend can verify offline.

use wasmtime::component::{HasSelf, Linker};

use superapp_core::{Capability, ConsentLevel, Manifest};
use superapp_services::documents::requests::Requests;

use super::{HostState, Registration};
use crate::bindings::superapp::plugin::documents as wit;
use crate::bindings::superapp::plugin::types::Error;

/// Consent: every use is confirmed in its own host-drawn sheet, so no
/// standing grant is needed (a recorded refusal still blocks it).
pub const REGISTRATION: Registration = Registration {
    consent: ConsentLevel::EveryUse,
    link: add_to_linker,
};

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

/// Takes document disclosure requests for the `documents` capability.
pub trait DocumentDesk: Send + Sync {
    /// Put a sheet asking for `fields` of a `credential_type` credential in
    /// front of the user; returns the request id.
    fn request(
        &self,
        user: &str,
        app: &Manifest,
        credential_type: &str,
        fields: &[String],
        purpose: &str,
    ) -> Result<String, Error>;
}

/// Where no document wallet exists (the provider's dev loop).
pub struct NoDocuments;

impl DocumentDesk for NoDocuments {
    fn request(
        &self,
        _: &str,
        _: &Manifest,
        _: &str,
        _: &[String],
        _: &str,
    ) -> Result<String, Error> {
        Err(Error::Unavailable(
            "documents need the host's wallet: try them on `superapp serve`".into(),
        ))
    }
}

/// The server's desk: the wallet's document requests.
impl DocumentDesk for Requests {
    fn request(
        &self,
        user: &str,
        app: &Manifest,
        credential_type: &str,
        fields: &[String],
        purpose: &str,
    ) -> Result<String, Error> {
        Ok(Requests::request(
            self,
            user,
            app,
            credential_type,
            fields,
            purpose,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::testing::{services, state};

    async fn ask(s: &mut HostState) -> Result<String, Error> {
        let fields = vec!["policy-number".to_string()];
        wit::Host::request(s, "insurance".into(), fields, "the co-payment".into())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn without_a_wallet_a_request_is_unavailable() {
        let services = services(&[]);
        let mut s = state("alice", &[Capability::Documents], &services);
        let answer = ask(&mut s).await;
        assert!(matches!(answer, Err(Error::Unavailable(_))), "{answer:?}");
    }

    #[tokio::test]
    async fn documents_are_refused_when_undeclared_or_refused_by_the_user() {
        let mut s = state("alice", &[], &services(&[]));
        assert!(matches!(ask(&mut s).await, Err(Error::Denied(_))));
        let refused = services(&[Capability::Documents]);
        let mut s = state("alice", &[Capability::Documents], &refused);
        assert!(matches!(ask(&mut s).await, Err(Error::Denied(_))));
    }
}
