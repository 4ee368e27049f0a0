//! `identity`: the user's pseudonymous id for this app.

use wasmtime::component::{HasSelf, Linker};

use superapp_core::{Capability, ConsentLevel};

use super::{HostState, Registration};
use crate::bindings::superapp::plugin::identity as wit;
use crate::bindings::superapp::plugin::types::Error;

/// Consent: declaring it in the manifest is enough.
pub const REGISTRATION: Registration = Registration {
    consent: ConsentLevel::None,
    link: add_to_linker,
};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::testing::{services, state};

    #[tokio::test]
    async fn the_pseudonym_is_stable_per_user_and_refused_when_undeclared() {
        let services = services(&[]);
        let mut alice = state("alice", &[Capability::Identity], &services);
        let first = wit::Host::user_id(&mut alice).await.unwrap().unwrap();
        assert_eq!(
            first,
            services.pseudonyms.for_app("alice", "org.example.test")
        );
        assert_ne!(first, "alice", "the host's user id never reaches the app");
        let mut bob = state("bob", &[Capability::Identity], &services);
        assert_ne!(wit::Host::user_id(&mut bob).await.unwrap().unwrap(), first);

        let mut undeclared = state("alice", &[], &services);
        let refused = wit::Host::user_id(&mut undeclared).await.unwrap();
        assert!(matches!(refused, Err(Error::Denied(_))), "{refused:?}");
    }
}
