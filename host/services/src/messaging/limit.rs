//! How fast one user may send: a GCRA limit per user (governor's keyed
//! limiter), so a single account cannot flood a group or the store while
//! everyone else's sends go on.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use superapp_store::{Abort, Store, StoreError, Tree, Txn};

/// A user's sends a second, sustained, and how many may come at once
/// after a pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendRate {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

impl SendRate {
    /// `per_second` sustained, with a burst of five seconds' worth.
    pub fn per_second(per_second: NonZeroU32) -> SendRate {
        SendRate {
            per_second,
            burst: per_second.saturating_mul(NonZeroU32::new(5).expect("5 is not 0")),
        }
    }
}

/// The send limit ([`Allowance`]).
pub(super) struct SendLimit {
    rate: SendRate,
    kept: Allowance,
}

impl SendLimit {
    pub(super) fn new(rate: SendRate, store: &Arc<Store>) -> SendLimit {
        let interval_ms = (1000 / u64::from(rate.per_second.get())).max(1);
        let kept = Allowance::new(
            store,
            Quota::per_second(rate.per_second).allow_burst(rate.burst),
            Window {
                prefix: "sends",
                interval_ms,
                tolerance_ms: interval_ms * (u64::from(rate.burst.get()) - 1),
            },
        );
        SendLimit { rate, kept }
    }

    /// Take one send from `user`'s allowance, or say how long until one
    /// is free.
    pub(super) fn take(&self, user: &str) -> Result<Result<(), Duration>, StoreError> {
        self.kept.take(user)
    }

    /// Take one send from this process's count alone (on a shared store,
    /// before the send's transaction takes it from the store's window).
    pub(super) fn take_here(&self, user: &str) -> Result<(), Duration> {
        self.kept.take_here(user)
    }

    /// The rate window a send takes its allowance from inside the
    /// transaction that stores it, on a shared store.
    pub(super) fn window(&self) -> Option<&Window> {
        self.kept.shared.as_ref().map(|(_, window)| window)
    }

    pub(super) fn rate(&self) -> SendRate {
        self.rate
    }

    /// Forget users whose allowance is full again; how many are still
    /// tracked in this process.
    pub(super) fn sweep(&self) -> usize {
        self.kept.sweep()
    }
}

/// A GCRA allowance per user, counted in this process's memory (governor's
/// keyed limiter) and, on a store several host processes share, in a
/// [`Window`] in the store too, so that it holds over all of them. There
/// the process's own count comes first: what it alone knows is too much
/// is turned away without asking the store, so a flood of refused
/// requests costs the database nothing.
pub(super) struct Allowance {
    here: DefaultKeyedRateLimiter<String>,
    shared: Option<(Arc<Store>, Window)>,
}

impl Allowance {
    /// `quota` in memory, and `window` on a shared store.
    fn new(store: &Arc<Store>, quota: Quota, window: Window) -> Allowance {
        Allowance {
            here: RateLimiter::keyed(quota),
            shared: store.shared().then(|| (store.clone(), window)),
        }
    }

    fn take_here(&self, user: &str) -> Result<(), Duration> {
        self.here
            .check_key(&user.to_string())
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    fn take(&self, user: &str) -> Result<Result<(), Duration>, StoreError> {
        if let Err(wait) = self.take_here(user) {
            return Ok(Err(wait));
        }
        match &self.shared {
            Some((store, window)) => window.take(store, user),
            None => Ok(Ok(())),
        }
    }

    /// Forget the users whose allowance is full again; how many this
    /// process still tracks.
    fn sweep(&self) -> usize {
        if let Some((store, window)) = &self.shared {
            window.sweep(store);
        }
        self.here.retain_recent();
        self.here.shrink_to_fit();
        self.here.len()
    }
}

/// A GCRA allowance per user in the store's rate windows: one time per
/// user, when the allowance is next full, read and moved on in a
/// transaction, so every process sharing the store counts the same.
pub(super) struct Window {
    /// What the records' keys start with: one window per limit.
    prefix: &'static str,
    /// One unit refills every this many milliseconds.
    interval_ms: u64,
    /// How far ahead of now a user's allowance may be spent (the burst
    /// less one, in refill time).
    tolerance_ms: u64,
}

impl Window {
    fn key(&self, user: &str) -> Vec<u8> {
        format!("{}\0{user}", self.prefix).into_bytes()
    }

    /// Take one from `user`'s allowance inside `t`, or say how long until
    /// one is free.
    pub(super) fn take_in(
        &self,
        t: &dyn Txn,
        user: &str,
    ) -> Result<Result<(), Duration>, StoreError> {
        let key = self.key(user);
        let now = now_ms();
        let full_at = stored_ms(t.get(Tree::Windows, &key)?)
            .unwrap_or(now)
            .max(now);
        let ahead = full_at - now;
        if ahead > self.tolerance_ms {
            return Ok(Err(Duration::from_millis(ahead - self.tolerance_ms)));
        }
        let next = full_at + self.interval_ms;
        t.put(Tree::Windows, &key, &next.to_be_bytes())?;
        Ok(Ok(()))
    }

    /// [`Window::take_in`] in a transaction of its own.
    fn take(&self, store: &Store, user: &str) -> Result<Result<(), Duration>, StoreError> {
        store
            .transact(&[Tree::Windows], |t| {
                Ok::<_, Abort<()>>(self.take_in(t, user)?)
            })
            .map_err(Abort::into_store)
    }

    /// Remove the records of users whose allowance is full again, each
    /// only if still so inside the transaction that removes it.
    fn sweep(&self, store: &Store) {
        let prefix = self.key("");
        let Ok(records) = store.scan(Tree::Windows, &prefix, None, usize::MAX, false) else {
            return;
        };
        for (key, value) in records {
            if stored_ms(Some(value)).is_some_and(|at| at > now_ms()) {
                continue;
            }
            let _ = store.transact(&[Tree::Windows], |t| {
                if stored_ms(t.get(Tree::Windows, &key)?).is_none_or(|at| at <= now_ms()) {
                    t.delete(Tree::Windows, &key)?;
                }
                Ok::<_, Abort<()>>(())
            });
        }
    }
}

/// Groups one user may create at once after a pause, and in any hour:
/// each notifies every member, so a flood of groups would fill others'
/// lists faster than messages fill a conversation. After the burst the
/// allowance refills by the rest of the hour's (40 an hour, one every 90
/// s), so a burst and an hour's refill together stay within the hour's.
pub const GROUPS_AT_ONCE: u32 = 20;
pub const GROUPS_PER_HOUR: u32 = 60;

/// How many groups each user may still create ([`GROUPS_AT_ONCE`],
/// [`GROUPS_PER_HOUR`]), an [`Allowance`].
pub(super) struct GroupLimit(Allowance);

/// What refills the allowance: one group every this many milliseconds.
const GROUP_INTERVAL_MS: u64 = 3_600_000 / (GROUPS_PER_HOUR - GROUPS_AT_ONCE) as u64;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn stored_ms(value: Option<Vec<u8>>) -> Option<u64> {
    value
        .and_then(|v| <[u8; 8]>::try_from(v).ok())
        .map(u64::from_be_bytes)
}

impl GroupLimit {
    pub(super) fn new(store: &Arc<Store>) -> GroupLimit {
        let per_hour = NonZeroU32::new(GROUPS_PER_HOUR - GROUPS_AT_ONCE).expect("not 0");
        let at_once = NonZeroU32::new(GROUPS_AT_ONCE).expect("not 0");
        GroupLimit(Allowance::new(
            store,
            Quota::per_hour(per_hour).allow_burst(at_once),
            Window {
                prefix: "groups",
                interval_ms: GROUP_INTERVAL_MS,
                tolerance_ms: GROUP_INTERVAL_MS * (GROUPS_AT_ONCE as u64 - 1),
            },
        ))
    }

    /// Take one group from `user`'s allowance, or say how long until one
    /// is free.
    pub(super) fn take(&self, user: &str) -> Result<Result<(), Duration>, StoreError> {
        self.0.take(user)
    }

    /// As [`SendLimit::sweep`].
    pub(super) fn sweep(&self) -> usize {
        self.0.sweep()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_past_the_burst_waits_and_a_full_allowance_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // One a second: a burst of five, then a wait of up to a second.
        let limit = SendLimit::new(SendRate::per_second(NonZeroU32::MIN), &store);
        for _ in 0..5 {
            limit.take("a").unwrap().unwrap();
        }
        let wait = limit.take("a").unwrap().unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        limit
            .take("b")
            .unwrap()
            .expect("another user has their own allowance");
        assert_eq!(limit.sweep(), 2, "both still have sends to win back");
        // Once a user's allowance is full again, the sweep forgets them.
        let quick = SendLimit::new(SendRate::per_second(NonZeroU32::new(1000).unwrap()), &store);
        quick.take("a").unwrap().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(quick.sweep(), 0);
    }

    /// Two stores on one memory engine, as two processes sharing a
    /// database (the paths PostgreSQL takes).
    fn two_processes() -> (Arc<Store>, Arc<Store>) {
        let backend: Arc<dyn superapp_store::Backend> =
            Arc::new(superapp_store::MemoryBackend::new());
        (
            Store::with_backend(backend.clone()).unwrap(),
            Store::with_backend(backend).unwrap(),
        )
    }

    /// Sends over processes that share a store are counted together: the
    /// burst is the same whichever process each send reaches.
    #[test]
    fn sends_are_counted_over_every_process_sharing_the_store() {
        let (a, b) = two_processes();
        let rate = SendRate::per_second(NonZeroU32::new(2).unwrap());
        let (on_a, on_b) = (SendLimit::new(rate, &a), SendLimit::new(rate, &b));
        for i in 0..10 {
            let limit = if i % 2 == 0 { &on_a } else { &on_b };
            assert_eq!(limit.take("carol").unwrap(), Ok(()), "send {i}");
        }
        for limit in [&on_a, &on_b] {
            let wait = limit.take("carol").unwrap().unwrap_err();
            assert!(
                wait > Duration::ZERO && wait <= Duration::from_millis(500),
                "{wait:?}"
            );
        }
        assert_eq!(on_b.take("dan").unwrap(), Ok(()), "their own");
    }

    /// The same allowance in one process and over processes that share a
    /// store: 20 at once, then one every 90 s, counted over all of them.
    #[test]
    fn groups_are_counted_over_every_process_sharing_the_store() {
        let (a, b) = two_processes();
        assert!(a.shared());
        let (on_a, on_b) = (GroupLimit::new(&a), GroupLimit::new(&b));
        let dir = tempfile::tempdir().unwrap();
        let alone = GroupLimit::new(&Store::open(dir.path()).unwrap());
        for (first, second) in [(&on_a, &on_b), (&alone, &alone)] {
            for i in 0..GROUPS_AT_ONCE {
                let limit = if i % 2 == 0 { first } else { second };
                assert_eq!(limit.take("carol").unwrap(), Ok(()), "group {i}");
            }
            for limit in [first, second] {
                let wait = limit.take("carol").unwrap().unwrap_err();
                assert!(
                    wait > Duration::from_secs(85) && wait <= Duration::from_secs(90),
                    "{wait:?}"
                );
            }
            assert_eq!(second.take("dan").unwrap(), Ok(()), "their own");
        }
        // Spent allowances stay; the sweep leaves them.
        on_a.sweep();
        assert!(on_b.take("carol").unwrap().is_err());
    }
}
