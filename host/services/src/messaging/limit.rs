//! How fast one user may send: a GCRA limit per user (governor's keyed
//! limiter), so a single account cannot flood a group or the store while
//! everyone else's sends go on.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use superapp_store::{Abort, Store, StoreError, Tree};

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

pub(super) struct SendLimit {
    rate: SendRate,
    users: DefaultKeyedRateLimiter<String>,
}

impl SendLimit {
    pub(super) fn new(rate: SendRate) -> SendLimit {
        let quota = Quota::per_second(rate.per_second).allow_burst(rate.burst);
        SendLimit {
            rate,
            users: RateLimiter::keyed(quota),
        }
    }

    /// Take one send from `user`'s allowance, or say how long until one
    /// is free.
    pub(super) fn take(&self, user: &str) -> Result<(), Duration> {
        self.users
            .check_key(&user.to_string())
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    pub(super) fn rate(&self) -> SendRate {
        self.rate
    }

    /// Forget users whose allowance is full again; how many are still
    /// tracked.
    pub(super) fn sweep(&self) -> usize {
        self.users.retain_recent();
        self.users.shrink_to_fit();
        self.users.len()
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
/// [`GROUPS_PER_HOUR`]): in this process's memory, or on a store several
/// host processes share in the store's rate windows, so that the limit
/// holds over all of them (as GCRA: one time per user, when the allowance
/// is next full).
pub(super) enum GroupLimit {
    Memory(DefaultKeyedRateLimiter<String>),
    Store(std::sync::Arc<Store>),
}

/// What refills the allowance: one group every this many milliseconds.
const GROUP_INTERVAL_MS: u64 = 3_600_000 / (GROUPS_PER_HOUR - GROUPS_AT_ONCE) as u64;
/// How far ahead of now a user's allowance may be spent.
const GROUP_TOLERANCE_MS: u64 = GROUP_INTERVAL_MS * (GROUPS_AT_ONCE as u64 - 1);

fn group_key(user: &str) -> Vec<u8> {
    format!("groups\0{user}").into_bytes()
}

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
    pub(super) fn new(store: &std::sync::Arc<Store>) -> GroupLimit {
        if store.shared() {
            return GroupLimit::Store(store.clone());
        }
        let per_hour = NonZeroU32::new(GROUPS_PER_HOUR - GROUPS_AT_ONCE).expect("not 0");
        let at_once = NonZeroU32::new(GROUPS_AT_ONCE).expect("not 0");
        GroupLimit::Memory(RateLimiter::keyed(
            Quota::per_hour(per_hour).allow_burst(at_once),
        ))
    }

    /// Take one group from `user`'s allowance, or say how long until one
    /// is free.
    pub(super) fn take(&self, user: &str) -> Result<Result<(), Duration>, StoreError> {
        match self {
            GroupLimit::Memory(users) => Ok(users
                .check_key(&user.to_string())
                .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))),
            GroupLimit::Store(store) => {
                let key = group_key(user);
                store
                    .transact(&[Tree::Windows], |t| {
                        let now = now_ms();
                        let full_at = stored_ms(t.get(Tree::Windows, &key)?)
                            .unwrap_or(now)
                            .max(now);
                        let ahead = full_at - now;
                        if ahead > GROUP_TOLERANCE_MS {
                            return Ok(Err(Duration::from_millis(ahead - GROUP_TOLERANCE_MS)));
                        }
                        let next = full_at + GROUP_INTERVAL_MS;
                        t.put(Tree::Windows, &key, &next.to_be_bytes())?;
                        Ok::<_, Abort<()>>(Ok(()))
                    })
                    .map_err(Abort::into_store)
            }
        }
    }

    /// As [`SendLimit::sweep`]; on a store, remove the users whose
    /// allowance is full again, and count none as tracked here.
    pub(super) fn sweep(&self) -> usize {
        match self {
            GroupLimit::Memory(users) => {
                users.retain_recent();
                users.shrink_to_fit();
                users.len()
            }
            GroupLimit::Store(store) => {
                let prefix = group_key("");
                let Ok(records) = store.scan(Tree::Windows, &prefix, None, usize::MAX, false)
                else {
                    return 0;
                };
                for (key, value) in records {
                    if stored_ms(Some(value)).is_some_and(|at| at > now_ms()) {
                        continue;
                    }
                    // Removed only if still spent inside the transaction.
                    let _ = store.transact(&[Tree::Windows], |t| {
                        if stored_ms(t.get(Tree::Windows, &key)?).is_none_or(|at| at <= now_ms()) {
                            t.delete(Tree::Windows, &key)?;
                        }
                        Ok::<_, Abort<()>>(())
                    });
                }
                0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_past_the_burst_waits_and_a_full_allowance_is_forgotten() {
        // One a second: a burst of five, then a wait of up to a second.
        let limit = SendLimit::new(SendRate::per_second(NonZeroU32::MIN));
        for _ in 0..5 {
            limit.take("a").unwrap();
        }
        let wait = limit.take("a").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        limit
            .take("b")
            .expect("another user has their own allowance");
        assert_eq!(limit.sweep(), 2, "both still have sends to win back");
        // Once a user's allowance is full again, the sweep forgets them.
        let quick = SendLimit::new(SendRate::per_second(NonZeroU32::new(1000).unwrap()));
        quick.take("a").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(quick.sweep(), 0);
    }

    /// The same allowance in one process and over processes that share a
    /// store: 20 at once, then one every 90 s, counted over all of them.
    #[test]
    fn groups_are_counted_over_every_process_sharing_the_store() {
        let backend: std::sync::Arc<dyn superapp_store::Backend> =
            std::sync::Arc::new(superapp_store::MemoryBackend::new());
        let (a, b) = (
            Store::with_backend(backend.clone()).unwrap(),
            Store::with_backend(backend).unwrap(),
        );
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
