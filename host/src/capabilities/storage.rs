//! `storage`: key-value data private to one app and one user, within quota.

use wasmtime::component::{HasSelf, Linker};

use super::HostState;
use crate::bindings::superapp::plugin::storage::{self as wit, QuotaUsage};
use crate::bindings::superapp::plugin::types::Error;
use crate::contract::Capability;
use crate::store::Namespace;

/// Most keys one `list-keys` call returns.
pub const MAX_LIST: u32 = 1000;

pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

impl HostState {
    /// The caller's private namespace; `Err` if storage is not granted.
    fn user_space(&self) -> Result<Namespace, Error> {
        self.require(Capability::Storage)?;
        Ok(Namespace::User {
            app: self.app.id.clone(),
            user: self.user.clone(),
        })
    }
}

impl wit::Host for HostState {
    async fn get(&mut self, key: Vec<u8>) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        Ok(self
            .user_space()
            .and_then(|ns| Ok(self.services.kv.get(&ns, &key)?)))
    }

    async fn set(&mut self, key: Vec<u8>, value: Vec<u8>) -> wasmtime::Result<Result<(), Error>> {
        Ok(self
            .user_space()
            .and_then(|ns| Ok(self.services.kv.set(&ns, &key, &value, &self.quota())?)))
    }

    async fn delete(&mut self, key: Vec<u8>) -> wasmtime::Result<Result<bool, Error>> {
        Ok(self
            .user_space()
            .and_then(|ns| Ok(self.services.kv.delete(&ns, &key)?)))
    }

    async fn list_keys(
        &mut self,
        prefix: Vec<u8>,
        start_after: Option<Vec<u8>>,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<Vec<u8>>, Error>> {
        Ok(self.user_space().and_then(|ns| {
            let limit = limit.min(MAX_LIST) as usize;
            Ok(self
                .services
                .kv
                .list_keys(&ns, &prefix, start_after.as_deref(), limit)?)
        }))
    }

    async fn usage(&mut self) -> wasmtime::Result<Result<QuotaUsage, Error>> {
        Ok(self.user_space().and_then(|ns| {
            let u = self.services.kv.usage(&ns)?;
            Ok(QuotaUsage {
                bytes_used: u.bytes,
                bytes_quota: self.quota().total_bytes,
                keys: u.keys,
            })
        }))
    }
}
