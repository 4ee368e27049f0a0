//! `documents`: credential fields disclosed with the user's field-by-field
//! approval in a host-drawn sheet. The call only creates the request; the
//! app hears the answer as a `document` event holding the approved claims
//! and a presentation its backend can verify offline.

use wasmtime::component::{HasSelf, Linker};

use superapp_core::{Capability, ConsentLevel, Manifest};
use superapp_services::documents::requests::{Ask, Requests};

use super::{HostState, Registration};
use crate::bindings::superapp::plugin::documents::{
    self as wit, DocumentRequest, HeldDocument, IssuerTrust,
};
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
    async fn request(&mut self, req: DocumentRequest) -> wasmtime::Result<Result<String, Error>> {
        let args = serde_json::json!([
            req.credential_type,
            req.fields,
            req.purpose,
            req.audience,
            req.nonce
        ])
        .to_string();
        if let Err(e) = self.require_with(Capability::Documents, Some(args.as_bytes())) {
            return Ok(Err(e));
        }
        if let Err(e) = self.take_ask() {
            return Ok(Err(e));
        }
        let ask = Ask {
            credential_type: req.credential_type,
            fields: req.fields,
            purpose: req.purpose,
            verifier: req.audience,
            nonce: req.nonce,
        };
        Ok(self.services.documents.request(&self.user, &self.app, &ask))
    }

    async fn held(&mut self) -> wasmtime::Result<Result<Vec<HeldDocument>, Error>> {
        // Which documents a user holds says a lot about them: listing them
        // takes a standing grant, asked once per app.
        if let Err(e) = self.require_level(Capability::Documents, ConsentLevel::OncePerApp, None) {
            return Ok(Err(e));
        }
        Ok(self.services.documents.held(&self.user))
    }

    async fn trust(
        &mut self,
        issuer_id: String,
        credential_id: String,
    ) -> wasmtime::Result<Result<IssuerTrust, Error>> {
        if let Err(e) = self.require(Capability::Documents) {
            return Ok(Err(e));
        }
        Ok(self.services.documents.trust(&issuer_id, &credential_id))
    }
}

/// Takes document disclosure requests for the `documents` capability.
pub trait DocumentDesk: Send + Sync {
    /// Put a sheet asking for fields of a credential in front of the user;
    /// returns the request id.
    fn request(&self, user: &str, app: &Manifest, ask: &Ask) -> Result<String, Error>;
    /// The user's usable credentials, without values.
    fn held(&self, user: &str) -> Result<Vec<HeldDocument>, Error>;
    /// What a verifier needs to check a presentation of `issuer`'s `credential`.
    fn trust(&self, issuer: &str, credential: &str) -> Result<IssuerTrust, Error>;
}

/// Where no document wallet exists (the provider's dev loop).
pub struct NoDocuments;

fn no_wallet() -> Error {
    Error::Unavailable("documents need the host's wallet: try them on `superapp serve`".into())
}

impl DocumentDesk for NoDocuments {
    fn request(&self, _: &str, _: &Manifest, _: &Ask) -> Result<String, Error> {
        Err(no_wallet())
    }
    fn held(&self, _: &str) -> Result<Vec<HeldDocument>, Error> {
        Err(no_wallet())
    }
    fn trust(&self, _: &str, _: &str) -> Result<IssuerTrust, Error> {
        Err(no_wallet())
    }
}

/// The server's desk: the wallet's document requests.
impl DocumentDesk for Requests {
    fn request(&self, user: &str, app: &Manifest, ask: &Ask) -> Result<String, Error> {
        Ok(Requests::request(self, user, app, ask)?)
    }

    fn held(&self, user: &str) -> Result<Vec<HeldDocument>, Error> {
        Ok(Requests::held(self, user)?
            .into_iter()
            .map(|h| HeldDocument {
                credential_type: h.credential_type,
                credential_id: h.credential_id,
                issuer_id: h.issuer.id,
                issuer_name: h.issuer.name,
                fields: h.fields,
                expires_at: h.expires_at,
            })
            .collect())
    }

    fn trust(&self, issuer: &str, credential: &str) -> Result<IssuerTrust, Error> {
        let t = Requests::trust(self, issuer, credential)?;
        Ok(IssuerTrust {
            issuer_name: t.issuer.name,
            issuer_key: t.issuer.public_key,
            host_key: t.host_key,
            revoked: t.revoked,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::testing::{services, state};

    async fn ask(s: &mut HostState) -> Result<String, Error> {
        let req = DocumentRequest {
            credential_type: "insurance".into(),
            fields: vec!["policy-number".to_string()],
            purpose: "the co-payment".into(),
            audience: None,
            nonce: None,
        };
        wit::Host::request(s, req).await.unwrap()
    }

    #[tokio::test]
    async fn without_a_wallet_a_request_is_unavailable() {
        let services = services(&[]);
        let mut s = state("alice", &[Capability::Documents], &services);
        let answer = ask(&mut s).await;
        assert!(matches!(answer, Err(Error::Unavailable(_))), "{answer:?}");
        let listed = wit::Host::held(&mut s).await.unwrap();
        assert!(matches!(listed, Err(Error::Unavailable(_))), "{listed:?}");
    }

    #[tokio::test]
    async fn documents_are_refused_when_undeclared_or_refused_by_the_user() {
        let mut s = state("alice", &[], &services(&[]));
        assert!(matches!(ask(&mut s).await, Err(Error::Denied(_))));
        let held = wit::Host::held(&mut s).await.unwrap();
        assert!(matches!(held, Err(Error::Denied(_))), "{held:?}");
        let trust = wit::Host::trust(&mut s, "gov".into(), "c1".into())
            .await
            .unwrap();
        assert!(matches!(trust, Err(Error::Denied(_))), "{trust:?}");
        let refused = services(&[Capability::Documents]);
        let mut s = state("alice", &[Capability::Documents], &refused);
        assert!(matches!(ask(&mut s).await, Err(Error::Denied(_))));
        let held = wit::Host::held(&mut s).await.unwrap();
        assert!(matches!(held, Err(Error::Denied(_))), "{held:?}");
    }
}
