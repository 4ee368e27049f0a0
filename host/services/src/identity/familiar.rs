//! The client addresses each account signed in from lately: the
//! account-wide limit on failed logins does not reach them, so guesses
//! at an account from elsewhere cannot lock its user out of the places
//! they sign in from. Kept in the store's short-lived records (every host
//! process on a shared store sees the same), each for [`KEPT`] after the
//! last sign-in from it, and swept after that.

use std::sync::Arc;
use std::time::Duration;

use superapp_store::{Store, StoreError, Tree};

/// How long an address stays familiar after a sign-in from it.
pub const KEPT: Duration = Duration::from_secs(30 * 24 * 3600);

/// The short-lived records' name for familiar addresses.
const RECORDS: &[u8] = b"familiar\0";

pub struct Familiar {
    store: Arc<Store>,
}

impl Familiar {
    pub fn new(store: Arc<Store>) -> Familiar {
        Familiar { store }
    }

    fn record(username: &str, client: &str) -> Vec<u8> {
        [RECORDS, username.as_bytes(), b"\0", client.as_bytes()].concat()
    }

    /// Whether `username` signed in from `client` (a throttle's client
    /// key) within [`KEPT`] before `now` (seconds).
    pub fn contains(&self, username: &str, client: &str, now: u64) -> Result<bool, StoreError> {
        Ok(self
            .store
            .get_raw(Tree::Windows, &Self::record(username, client))?
            .and_then(|v| v.try_into().ok().map(u64::from_be_bytes))
            .is_some_and(|until| until > now))
    }

    /// Remember a sign-in of `username` from `client` at `now`.
    pub fn remember(&self, username: &str, client: &str, now: u64) -> Result<(), StoreError> {
        let until = now + KEPT.as_secs();
        self.store.put_raw(
            Tree::Windows,
            &Self::record(username, client),
            &until.to_be_bytes(),
        )
    }

    /// Forget the addresses no sign-in made familiar within [`KEPT`]; how
    /// many went.
    pub fn sweep(&self, now: u64) -> Result<usize, StoreError> {
        self.store.remove_stale(Tree::Windows, RECORDS, |value| {
            value
                .try_into()
                .map_or(true, |b| u64::from_be_bytes(b) <= now)
        })
    }
}
