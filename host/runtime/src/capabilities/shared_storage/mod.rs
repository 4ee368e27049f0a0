//! `shared-storage`: key-value data shared by all users of one app, with
//! compare-and-swap and atomic increment for slots and counters. The
//! operations are `storage`'s [`Space`] over the app-wide namespace.

use superapp_core::{Capability, ConsentLevel};
use superapp_store::Namespace;
use wasmtime::component::{HasSelf, Linker};

use super::storage::Space;
use super::{HostState, Registration};
use crate::bindings::superapp::plugin::shared_storage as wit;
use crate::bindings::superapp::plugin::types::Error;

/// Consent: declaring it in the manifest is enough.
pub const REGISTRATION: Registration = Registration {
    consent: ConsentLevel::None,
    link: add_to_linker,
};

pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

impl HostState {
    /// The app-wide namespace; `Err` if shared storage is not granted.
    fn app_space(&self) -> Result<Space<'_>, Error> {
        self.require(Capability::SharedStorage)?;
        let ns = Namespace::App {
            app: self.app.id.clone(),
        };
        Ok(Space::new(self, ns))
    }
}

impl wit::Host for HostState {
    async fn get(&mut self, key: Vec<u8>) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        Ok(self.app_space().and_then(|s| s.get(&key)))
    }

    async fn set(&mut self, key: Vec<u8>, value: Vec<u8>) -> wasmtime::Result<Result<(), Error>> {
        Ok(self.app_space().and_then(|s| s.set(&key, &value)))
    }

    async fn delete(&mut self, key: Vec<u8>) -> wasmtime::Result<Result<bool, Error>> {
        Ok(self.app_space().and_then(|s| s.delete(&key)))
    }

    async fn list_keys(
        &mut self,
        prefix: Vec<u8>,
        start_after: Option<Vec<u8>>,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<Vec<u8>>, Error>> {
        Ok(self
            .app_space()
            .and_then(|s| s.list_keys(&prefix, start_after.as_deref(), limit)))
    }

    async fn compare_and_swap(
        &mut self,
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> wasmtime::Result<Result<bool, Error>> {
        Ok(self
            .app_space()
            .and_then(|s| s.compare_and_swap(&key, expected.as_deref(), new.as_deref())))
    }

    async fn increment(
        &mut self,
        key: Vec<u8>,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, Error>> {
        Ok(self.app_space().and_then(|s| s.increment(&key, delta)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::testing::{services, state};

    #[tokio::test]
    async fn users_share_one_namespace_and_compare_and_swap_takes_a_slot_once() {
        let services = services(&[]);
        let mut alice = state("alice", &[Capability::SharedStorage], &services);
        let mut bob = state("bob", &[Capability::SharedStorage], &services);
        let slot = b"slot-9:00".to_vec();
        let took = wit::Host::compare_and_swap(&mut alice, slot.clone(), None, Some(b"a".to_vec()))
            .await
            .unwrap()
            .unwrap();
        let also = wit::Host::compare_and_swap(&mut bob, slot.clone(), None, Some(b"b".to_vec()))
            .await
            .unwrap()
            .unwrap();
        assert!(took && !also, "one patient per slot");
        assert_eq!(
            wit::Host::get(&mut bob, slot).await.unwrap().unwrap(),
            Some(b"a".to_vec())
        );
        wit::Host::increment(&mut alice, b"n".to_vec(), 2)
            .await
            .unwrap()
            .unwrap();
        let n = wit::Host::increment(&mut bob, b"n".to_vec(), 3)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 5);
    }

    #[tokio::test]
    async fn shared_storage_is_refused_when_undeclared() {
        let services = services(&[]);
        let mut s = state("alice", &[Capability::Storage], &services);
        let refused = wit::Host::increment(&mut s, b"n".to_vec(), 1)
            .await
            .unwrap();
        assert!(matches!(refused, Err(Error::Denied(_))), "{refused:?}");
    }
}
