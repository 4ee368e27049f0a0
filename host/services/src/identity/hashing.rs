//! Where password hashes run: on the blocking pool, at most a set number at
//! once. A hash is deliberately slow (hundreds of milliseconds of CPU), so a
//! storm of sign-ups, logins or payment confirmations could otherwise take
//! every core from chat and mini-programs; past the slots, hashes wait their
//! turn (and a request that gives up waiting costs nothing).

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use superapp_store::StoreError;
use tokio::sync::Semaphore;

/// Half the cores, at least one: the default number of hashes at once.
pub fn default_slots() -> NonZeroUsize {
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    NonZeroUsize::new(cores / 2).unwrap_or(NonZeroUsize::MIN)
}

pub(super) struct Hashing {
    slots: Arc<Semaphore>,
    running: Arc<AtomicUsize>,
    /// The most hashes ever seen running at once.
    peak: Arc<AtomicUsize>,
}

impl Hashing {
    pub(super) fn new(slots: NonZeroUsize) -> Hashing {
        Hashing {
            slots: Arc::new(Semaphore::new(slots.get())),
            running: Arc::default(),
            peak: Arc::default(),
        }
    }

    /// Run `hash` on the blocking pool once a slot is free. The slot is
    /// held by the blocking task itself, so a caller that stops waiting
    /// does not free it before the hash is done.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        hash: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| StoreError::Backend(format!("password hashing stopped: {e}")))?;
        let (running, peak) = (self.running.clone(), self.peak.clone());
        tokio::task::spawn_blocking(move || {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let out = hash();
            running.fetch_sub(1, Ordering::SeqCst);
            drop(slot);
            out
        })
        .await
        .map_err(|e| StoreError::Backend(format!("hashing task failed: {e}")))
    }

    #[cfg(test)]
    pub(super) fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}
