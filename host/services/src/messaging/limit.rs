//! How fast one user may send: a GCRA limit per user (governor's keyed
//! limiter), so a single account cannot flood a group or the store while
//! everyone else's sends go on.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

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
/// [`GROUPS_PER_HOUR`]).
pub(super) struct GroupLimit {
    users: DefaultKeyedRateLimiter<String>,
}

impl GroupLimit {
    pub(super) fn new() -> GroupLimit {
        let per_hour = NonZeroU32::new(GROUPS_PER_HOUR - GROUPS_AT_ONCE).expect("not 0");
        let at_once = NonZeroU32::new(GROUPS_AT_ONCE).expect("not 0");
        GroupLimit {
            users: RateLimiter::keyed(Quota::per_hour(per_hour).allow_burst(at_once)),
        }
    }

    /// Take one group from `user`'s allowance, or say how long until one
    /// is free.
    pub(super) fn take(&self, user: &str) -> Result<(), Duration> {
        self.users
            .check_key(&user.to_string())
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// As [`SendLimit::sweep`].
    pub(super) fn sweep(&self) -> usize {
        self.users.retain_recent();
        self.users.shrink_to_fit();
        self.users.len()
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
}
