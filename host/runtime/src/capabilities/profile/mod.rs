//! `profile`: display name and verification level, behind the user's consent.

use wasmtime::component::{HasSelf, Linker};

use superapp_core::{Capability, ConsentLevel};
use superapp_services::identity::Identity;

use super::{HostState, Registration};
use crate::bindings::superapp::plugin::profile::{self as wit, UserProfile, VerificationLevel};
use crate::bindings::superapp::plugin::types::Error;

/// Consent: the user is asked once per app (and again when a version adds
/// it).
pub const REGISTRATION: Registration = Registration {
    consent: ConsentLevel::OncePerApp,
    link: add_to_linker,
};

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

/// What the host knows about a user's public profile.
pub struct ProfileInfo {
    pub display_name: String,
    /// 0 none, 1 phone, 2 government id.
    pub verification: u8,
}

pub trait ProfileDirectory: Send + Sync {
    fn profile(&self, user: &str) -> Option<ProfileInfo>;
}

/// The dev loop's users: the display name is the user name.
pub struct DevProfiles;

impl ProfileDirectory for DevProfiles {
    fn profile(&self, user: &str) -> Option<ProfileInfo> {
        Some(ProfileInfo {
            display_name: user.to_string(),
            verification: 0,
        })
    }
}

/// The server's directory: display names from the account store.
impl ProfileDirectory for Identity {
    fn profile(&self, user: &str) -> Option<ProfileInfo> {
        let user = self.user(user).ok().flatten()?;
        Some(ProfileInfo {
            display_name: user.display_name,
            verification: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::testing::{services, state};

    #[tokio::test]
    async fn the_profile_needs_the_declaration_and_the_users_consent() {
        let allowed = services(&[]);
        let mut s = state("alice", &[Capability::Profile], &allowed);
        let profile = wit::Host::get(&mut s).await.unwrap().unwrap();
        assert_eq!(profile.display_name, "alice");

        let refused = services(&[Capability::Profile]);
        let mut s = state("alice", &[Capability::Profile], &refused);
        let answer = wit::Host::get(&mut s).await.unwrap();
        assert!(matches!(answer, Err(Error::Denied(_))), "{answer:?}");

        let mut s = state("alice", &[], &allowed);
        let answer = wit::Host::get(&mut s).await.unwrap();
        assert!(matches!(answer, Err(Error::Denied(_))), "{answer:?}");
    }
}
