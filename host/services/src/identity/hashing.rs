//! Where password hashes run: on the blocking pool, at most a set number at
//! once. A hash is deliberately slow (hundreds of milliseconds of CPU), so a
//! storm of sign-ups, logins or payment confirmations could otherwise take
//! every core from chat and mini-programs; past the slots, hashes wait their
//! turn, for at most [`HASH_WAIT`] (a request that gives up waiting costs
//! nothing), and a request that would wait longer is told the host is busy.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use superapp_store::StoreError;
use tokio::sync::Semaphore;

use super::IdentityError;

/// The longest a hash waits for a slot: well inside a request's timeout,
/// so a storm is answered "busy, try again" rather than left to time out.
pub const HASH_WAIT: Duration = Duration::from_secs(5);

/// Half the cores, at least one: the default number of hashes at once.
pub fn default_slots() -> NonZeroUsize {
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    NonZeroUsize::new(cores / 2).unwrap_or(NonZeroUsize::MIN)
}

pub(super) struct Hashing {
    slots: Arc<Semaphore>,
    wait: Duration,
    running: Arc<AtomicUsize>,
    /// The most hashes ever seen running at once.
    peak: Arc<AtomicUsize>,
}

impl Hashing {
    pub(super) fn new(slots: NonZeroUsize, wait: Duration) -> Hashing {
        Hashing {
            slots: Arc::new(Semaphore::new(slots.get())),
            wait,
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
    ) -> Result<T, IdentityError> {
        let slot = tokio::time::timeout(self.wait, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| IdentityError::Busy)?
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
        .map_err(|e| StoreError::Backend(format!("hashing task failed: {e}")).into())
    }

    #[cfg(test)]
    pub(super) fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hash_that_cannot_get_a_slot_in_time_is_refused_as_busy() {
        let hashing = Arc::new(Hashing::new(NonZeroUsize::MIN, Duration::from_millis(50)));
        // The only slot, held until the test lets go.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started, running) = tokio::sync::oneshot::channel();
        let first = {
            let hashing = hashing.clone();
            tokio::spawn(async move {
                hashing
                    .run(move || {
                        started.send(()).unwrap();
                        held.recv().unwrap();
                        1
                    })
                    .await
            })
        };
        running.await.unwrap();
        assert!(matches!(hashing.run(|| 2).await, Err(IdentityError::Busy)));
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), 1);
        // The slot is free again.
        assert_eq!(hashing.run(|| 3).await.unwrap(), 3);
    }
}
