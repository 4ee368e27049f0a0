//! `storage`: key-value data private to one app and one user, within quota.
//! [`Space`] holds the operations it shares with `shared-storage`; the two
//! differ only in which namespace a call reaches.

use superapp_core::{Capability, ConsentLevel};
use superapp_store::{Namespace, Quota};
use wasmtime::component::{HasSelf, Linker};

use super::{HostState, Registration};
use crate::bindings::superapp::plugin::storage::{self as wit, QuotaUsage};
use crate::bindings::superapp::plugin::types::Error;

/// Most keys one `list-keys` call returns.
pub const MAX_LIST: u32 = 1000;

/// Consent: declaring it in the manifest is enough.
pub const REGISTRATION: Registration = Registration {
    consent: ConsentLevel::None,
    link: add_to_linker,
};

pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

/// How fast one user's events may write app data, in KiB a second over
/// every app and both storage capabilities, and how much at once: the
/// quota bounds what a user keeps, this how fast they churn the host's
/// disk (rewriting one large value in a loop wrote tens of MiB a second).
pub const WRITE_KIB_PER_SECOND: u32 = 1024;
pub const WRITE_BURST_KIB: u32 = 16 * 1024;

/// Each user's allowance of app data writes ([`WRITE_KIB_PER_SECOND`]),
/// shared by all events in the process.
pub struct WriteBudgets {
    users: governor::DefaultKeyedRateLimiter<String>,
}

impl Default for WriteBudgets {
    fn default() -> Self {
        let per_second = std::num::NonZeroU32::new(WRITE_KIB_PER_SECOND).expect("not 0");
        let burst = std::num::NonZeroU32::new(WRITE_BURST_KIB).expect("not 0");
        WriteBudgets {
            users: governor::RateLimiter::keyed(
                governor::Quota::per_second(per_second).allow_burst(burst),
            ),
        }
    }
}

impl std::fmt::Debug for WriteBudgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBudgets").finish_non_exhaustive()
    }
}

impl WriteBudgets {
    /// Take a write of `bytes` from `user`'s allowance.
    fn take(&self, user: &str, bytes: usize) -> Result<(), Error> {
        let kib = u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        let kib = std::num::NonZeroU32::new(kib.min(WRITE_BURST_KIB)).expect("not 0");
        match self.users.check_key_n(&user.to_string(), kib) {
            Ok(Ok(())) => Ok(()),
            _ => Err(Error::QuotaExceeded(format!(
                "apps may write at most {WRITE_KIB_PER_SECOND} KiB a second of a user's data (after a pause, {WRITE_BURST_KIB} KiB at once); try again later"
            ))),
        }
    }

    /// Forget users whose allowance is full again.
    pub fn sweep(&self) {
        self.users.retain_recent();
        self.users.shrink_to_fit();
    }
}

/// One namespace of the storage capabilities, reached by a call that has
/// passed its capability check, under this app's quota.
pub(crate) struct Space<'a> {
    state: &'a HostState,
    ns: Namespace,
}

impl<'a> Space<'a> {
    pub(crate) fn new(state: &'a HostState, ns: Namespace) -> Self {
        Space { state, ns }
    }

    /// Mark this call heavy when it moves `bytes` or more (see
    /// [`HEAVY_BYTES`](super::HEAVY_BYTES)).
    fn moving(&self, bytes: usize) {
        if bytes > super::HEAVY_BYTES {
            self.state.heavy.set(true);
        }
    }

    /// A key that names nothing, refused as a write of it is (a longer key
    /// than writes allow may name a value stored before the limit).
    fn named(key: &[u8]) -> Result<&[u8], Error> {
        if key.is_empty() {
            return Err(Error::Invalid("keys must not be empty".into()));
        }
        Ok(key)
    }

    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        let value = self.state.services.kv.get(&self.ns, Self::named(key)?)?;
        self.moving(value.as_ref().map_or(0, Vec::len));
        Ok(value)
    }

    /// Take a write of `key` and `value` from the user's allowance.
    fn writing(&self, key: &[u8], value: &[u8]) -> Result<(), Error> {
        self.state
            .services
            .storage_writes
            .take(&self.state.user, key.len() + value.len())
    }

    pub(crate) fn set(&self, key: &[u8], value: &[u8]) -> Result<(), Error> {
        self.moving(value.len());
        self.writing(key, value)?;
        let quota = self.state.quota();
        Ok(self.state.services.kv.set(&self.ns, key, value, &quota)?)
    }

    pub(crate) fn delete(&self, key: &[u8]) -> Result<bool, Error> {
        Ok(self.state.services.kv.delete(&self.ns, Self::named(key)?)?)
    }

    pub(crate) fn list_keys(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: u32,
    ) -> Result<Vec<Vec<u8>>, Error> {
        let limit = limit.min(MAX_LIST) as usize;
        let keys = self
            .state
            .services
            .kv
            .list_keys(&self.ns, prefix, start_after, limit)?;
        self.moving(keys.iter().map(Vec::len).sum());
        Ok(keys)
    }

    pub(crate) fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, Error> {
        self.moving(expected.map_or(0, <[u8]>::len) + new.map_or(0, <[u8]>::len));
        self.writing(key, new.unwrap_or_default())?;
        let quota = self.state.quota();
        Ok(self
            .state
            .services
            .kv
            .compare_and_swap(&self.ns, key, expected, new, &quota)?)
    }

    pub(crate) fn increment(&self, key: &[u8], delta: i64) -> Result<i64, Error> {
        self.writing(key, &[])?;
        let quota = self.state.quota();
        Ok(self
            .state
            .services
            .kv
            .increment(&self.ns, key, delta, &quota)?)
    }

    pub(crate) fn usage(&self) -> Result<QuotaUsage, Error> {
        let u = self.state.services.kv.usage(&self.ns)?;
        Ok(QuotaUsage {
            bytes_used: u.bytes,
            bytes_quota: self.state.quota().total_bytes,
            keys: u.keys,
        })
    }
}

impl HostState {
    /// The storage quota of this app: its manifest's, capped by the host's.
    pub(crate) fn quota(&self) -> Quota {
        let host = self.services.quota;
        Quota {
            total_bytes: self.app.limits.storage_bytes.min(host.total_bytes),
            ..host
        }
    }

    /// The caller's private namespace; `Err` if storage is not granted.
    fn user_space(&self) -> Result<Space<'_>, Error> {
        self.require(Capability::Storage)?;
        let ns = Namespace::User {
            app: self.app.id.clone(),
            user: self.user.clone(),
        };
        Ok(Space::new(self, ns))
    }
}

impl wit::Host for HostState {
    async fn get(&mut self, key: Vec<u8>) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        Ok(self.user_space().and_then(|s| s.get(&key)))
    }

    async fn set(&mut self, key: Vec<u8>, value: Vec<u8>) -> wasmtime::Result<Result<(), Error>> {
        Ok(self.user_space().and_then(|s| s.set(&key, &value)))
    }

    async fn delete(&mut self, key: Vec<u8>) -> wasmtime::Result<Result<bool, Error>> {
        Ok(self.user_space().and_then(|s| s.delete(&key)))
    }

    async fn list_keys(
        &mut self,
        prefix: Vec<u8>,
        start_after: Option<Vec<u8>>,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<Vec<u8>>, Error>> {
        Ok(self
            .user_space()
            .and_then(|s| s.list_keys(&prefix, start_after.as_deref(), limit)))
    }

    async fn usage(&mut self) -> wasmtime::Result<Result<QuotaUsage, Error>> {
        Ok(self.user_space().and_then(|s| s.usage()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::testing::{services, state};

    #[tokio::test]
    async fn each_user_has_a_private_namespace_within_quota() {
        let services = services(&[]);
        let mut alice = state("alice", &[Capability::Storage], &services);
        let mut bob = state("bob", &[Capability::Storage], &services);
        let k = b"slot".to_vec();
        wit::Host::set(&mut alice, k.clone(), b"alice's".to_vec())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            wit::Host::get(&mut alice, k.clone())
                .await
                .unwrap()
                .unwrap(),
            Some(b"alice's".to_vec())
        );
        assert_eq!(
            wit::Host::get(&mut bob, k.clone()).await.unwrap().unwrap(),
            None
        );
        let usage = wit::Host::usage(&mut alice).await.unwrap().unwrap();
        let entry = 11 + superapp_store::ENTRY_OVERHEAD;
        assert_eq!((usage.keys, usage.bytes_used), (1, entry));

        for refused in [
            wit::Host::get(&mut alice, Vec::new())
                .await
                .unwrap()
                .map(drop),
            wit::Host::delete(&mut alice, Vec::new())
                .await
                .unwrap()
                .map(drop),
            wit::Host::set(&mut alice, Vec::new(), b"v".to_vec())
                .await
                .unwrap(),
        ] {
            assert!(matches!(refused, Err(Error::Invalid(_))), "{refused:?}");
        }

        let too_big = vec![0; alice.quota().max_value_bytes + 1];
        let refused = wit::Host::set(&mut alice, b"big".to_vec(), too_big)
            .await
            .unwrap();
        assert!(
            matches!(refused, Err(Error::QuotaExceeded(_))),
            "{refused:?}"
        );
        assert_eq!(wit::Host::usage(&mut alice).await.unwrap().unwrap().keys, 1);
    }

    /// Sweeping forgets the users whose allowance has filled up again, and
    /// only them: a user who spent it is still refused after a sweep.
    #[test]
    fn a_sweep_forgets_only_users_whose_allowance_is_full_again() {
        let budgets = WriteBudgets::default();
        budgets.take("light", 1024).unwrap();
        budgets
            .take("heavy", WRITE_BURST_KIB as usize * 1024)
            .unwrap();
        assert_eq!(budgets.users.len(), 2);
        // 1 KiB comes back in a millisecond; 16 MiB in 16 seconds.
        std::thread::sleep(std::time::Duration::from_millis(50));
        budgets.sweep();
        assert_eq!(budgets.users.len(), 1);
        let refused = budgets.take("heavy", 1 << 20);
        assert!(
            matches!(refused, Err(Error::QuotaExceeded(_))),
            "{refused:?}"
        );
        budgets.take("light", 1 << 20).unwrap();
    }

    #[tokio::test]
    async fn storage_is_refused_when_undeclared() {
        let services = services(&[]);
        let mut s = state("alice", &[Capability::SharedStorage], &services);
        let refused = wit::Host::set(&mut s, b"k".to_vec(), b"v".to_vec())
            .await
            .unwrap();
        assert!(matches!(refused, Err(Error::Denied(_))), "{refused:?}");
    }
}
