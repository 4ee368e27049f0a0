//! Where password hashes run: on the blocking pool, at most a set number at
//! once. A hash is deliberately slow (hundreds of milliseconds of CPU), so a
//! storm of sign-ups, logins or payment confirmations could otherwise take
//! every core from chat and mini-programs; past the slots, hashes wait their
//! turn, for at most [`HASH_WAIT`] (a request that gives up waiting costs
//! nothing), and a request that would wait longer is told the host is busy.
//!
//! Existing accounts' hashes (logins, confirmations, a changed password) go
//! ahead of new accounts' hashes: a free slot goes to a waiting one of them
//! first, so a storm of sign-ups (from however many addresses) cannot keep
//! users from signing in, nor a storm of logins (whoever knows a password
//! can make one) keep a user from changing theirs.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use superapp_store::StoreError;
use tokio::sync::Notify;

use super::IdentityError;

/// The longest a hash waits for a slot: well inside a request's timeout,
/// so a storm is answered "busy, try again" rather than left to time out.
pub const HASH_WAIT: Duration = Duration::from_secs(5);

/// Half the cores, at least one: the default number of hashes at once.
pub fn default_slots() -> NonZeroUsize {
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    NonZeroUsize::new(cores / 2).unwrap_or(NonZeroUsize::MIN)
}

/// Which hashes go first when slots are scarce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Turn {
    /// An existing account's: checking its password (a user signing in or
    /// confirming) or hashing the new one it changes to.
    Existing,
    /// Hashing a new account's password.
    NewAccount,
}

/// The slots: free ones, and checks waiting for one (new accounts' hashes
/// wait while any does).
struct Slots {
    state: Mutex<SlotState>,
    changed: Notify,
}

struct SlotState {
    free: usize,
    existing_waiting: usize,
}

/// A slot taken; freed on drop.
struct Slot(Arc<Slots>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.lock().free += 1;
        self.0.changed.notify_waiters();
    }
}

/// A check counted as waiting until it takes a slot or gives up.
struct Waiting<'a>(Option<&'a Arc<Slots>>);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(slots) = self.0 {
            slots.lock().existing_waiting -= 1;
            slots.changed.notify_waiters();
        }
    }
}

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn take(self: &Arc<Self>, turn: Turn) -> Slot {
        let mut waiting = Waiting(None);
        if turn == Turn::Existing {
            self.lock().existing_waiting += 1;
            waiting.0 = Some(self);
        }
        loop {
            // Registered before the state is read, so a slot freed between
            // the two still wakes this waiter.
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            {
                let mut state = self.lock();
                if state.free > 0 && (turn == Turn::Existing || state.existing_waiting == 0) {
                    state.free -= 1;
                    if waiting.0.take().is_some() {
                        state.existing_waiting -= 1;
                    }
                    return Slot(self.clone());
                }
            }
            changed.await;
        }
    }
}

pub(super) struct Hashing {
    slots: Arc<Slots>,
    wait: Duration,
    running: Arc<AtomicUsize>,
    /// The most hashes ever seen running at once.
    peak: Arc<AtomicUsize>,
}

impl Hashing {
    pub(super) fn new(slots: NonZeroUsize, wait: Duration) -> Hashing {
        Hashing {
            slots: Arc::new(Slots {
                state: Mutex::new(SlotState {
                    free: slots.get(),
                    existing_waiting: 0,
                }),
                changed: Notify::new(),
            }),
            wait,
            running: Arc::default(),
            peak: Arc::default(),
        }
    }

    /// Run `hash` on the blocking pool once a slot is free for its `turn`.
    /// The slot is held by the blocking task itself, so a caller that stops
    /// waiting does not free it before the hash is done.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        turn: Turn,
        hash: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, IdentityError> {
        let slot = tokio::time::timeout(self.wait, self.slots.take(turn))
            .await
            .map_err(|_| IdentityError::Busy)?;
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

    /// A hash of `turn` taking the only slot of `hashing` until the test
    /// sends on the returned channel; once this returns, it runs.
    async fn hold_the_slot(
        hashing: &Arc<Hashing>,
        turn: Turn,
    ) -> (
        std::sync::mpsc::Sender<()>,
        tokio::task::JoinHandle<Result<u32, IdentityError>>,
    ) {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started, running) = tokio::sync::oneshot::channel();
        let hashing = hashing.clone();
        let first = tokio::spawn(async move {
            hashing
                .run(turn, move || {
                    started.send(()).unwrap();
                    held.recv().unwrap();
                    1
                })
                .await
        });
        running.await.unwrap();
        (release, first)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hash_that_cannot_get_a_slot_in_time_is_refused_as_busy() {
        let hashing = Arc::new(Hashing::new(NonZeroUsize::MIN, Duration::from_millis(50)));
        let (release, first) = hold_the_slot(&hashing, Turn::Existing).await;
        assert!(matches!(
            hashing.run(Turn::Existing, || 2).await,
            Err(IdentityError::Busy)
        ));
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), 1);
        // The slot is free again, and the check that gave up waiting no
        // longer holds new accounts back.
        assert_eq!(hashing.run(Turn::NewAccount, || 3).await.unwrap(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_password_check_goes_ahead_of_new_accounts_queued_before_it() {
        let hashing = Arc::new(Hashing::new(NonZeroUsize::MIN, Duration::from_secs(30)));
        let (release, first) = hold_the_slot(&hashing, Turn::NewAccount).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let queue = |turn: Turn| {
            let (hashing, order) = (hashing.clone(), order.clone());
            tokio::spawn(async move {
                hashing
                    .run(turn, move || order.lock().unwrap().push(turn))
                    .await
            })
        };
        // Three sign-ups wait for the slot, then a login's check.
        let mut waiting = Vec::new();
        for _ in 0..3 {
            waiting.push(queue(Turn::NewAccount));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        waiting.push(queue(Turn::Existing));
        while hashing.slots.lock().existing_waiting == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        release.send(()).unwrap();
        first.await.unwrap().unwrap();
        for one in waiting {
            one.await.unwrap().unwrap();
        }
        let order = order.lock().unwrap().clone();
        assert_eq!(
            order,
            [
                Turn::Existing,
                Turn::NewAccount,
                Turn::NewAccount,
                Turn::NewAccount
            ]
        );
    }
}
