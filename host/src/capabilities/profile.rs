//! `profile`: display name and verification level, behind the user's consent.

use wasmtime::component::{HasSelf, Linker};

use super::HostState;
use crate::bindings::superapp::plugin::profile::{self as wit, UserProfile, VerificationLevel};
use crate::bindings::superapp::plugin::types::Error;
use crate::contract::Capability;

pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

impl wit::Host for HostState {
    async fn get(&mut self) -> wasmtime::Result<Result<UserProfile, Error>> {
        if let Err(e) = self.require(Capability::Profile) {
            return Ok(Err(e));
        }
        Ok(match self.services.profiles.profile(&self.user) {
            Some(p) => Ok(UserProfile {
                display_name: p.display_name,
                verification: match p.verification {
                    0 => VerificationLevel::None,
                    1 => VerificationLevel::Phone,
                    _ => VerificationLevel::GovernmentId,
                },
            }),
            None => Err(Error::NotFound("the user has no profile".into())),
        })
    }
}
