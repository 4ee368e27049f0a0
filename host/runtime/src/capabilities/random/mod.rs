//! `random`: cryptographically secure random bytes from the OS.

use ring::rand::{SecureRandom, SystemRandom};
use superapp_core::ConsentLevel;
use wasmtime::component::{HasSelf, Linker};

use super::{HostState, Registration};
use crate::bindings::superapp::plugin::random as wit;

/// Most bytes one call returns.
pub const MAX_BYTES: u32 = 4096;

/// Consent: declaring it in the manifest is enough.
pub const REGISTRATION: Registration = Registration {
    consent: ConsentLevel::None,
    link: add_to_linker,
};

pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

fn fill(buf: &mut [u8]) -> wasmtime::Result<()> {
    // The OS generator failing is a broken host, not a guest error.
    SystemRandom::new()
        .fill(buf)
        .map_err(|_| wasmtime::Error::msg("the system random number generator failed"))
}

impl wit::Host for HostState {
    async fn bytes(&mut self, len: u32) -> wasmtime::Result<Vec<u8>> {
        let mut buf = vec![0; len.min(MAX_BYTES) as usize];
        fill(&mut buf)?;
        Ok(buf)
    }

    async fn next_u64(&mut self) -> wasmtime::Result<u64> {
        let mut buf = [0; 8];
        fill(&mut buf)?;
        Ok(u64::from_le_bytes(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::testing::{services, state};

    #[tokio::test]
    async fn bytes_are_capped_and_fresh() {
        let mut s = state("alice", &[], &services(&[]));
        let a = wit::Host::bytes(&mut s, u32::MAX).await.unwrap();
        let b = wit::Host::bytes(&mut s, 32).await.unwrap();
        assert_eq!((a.len(), b.len()), (MAX_BYTES as usize, 32));
        assert_ne!(b, wit::Host::bytes(&mut s, 32).await.unwrap());
    }
}
