//! A sliding window of events per key: failed logins per username or client
//! address, notifications per user and app. Kept in memory: a restart
//! forgets it, which only gives one more window.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Throttle {
    max_failures: usize,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Throttle {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Throttle {
            max_failures: max_failures.max(1) as usize,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds to wait)` if `key` has used up its failures.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let Some(list) = map.get_mut(key) else {
            return Ok(());
        };
        while list
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            list.pop_front();
        }
        if list.is_empty() {
            map.remove(key);
            return Ok(());
        }
        if list.len() >= self.max_failures {
            let oldest = *list.front().expect("not empty");
            let wait = self.window.saturating_sub(now.duration_since(oldest));
            return Err(wait.as_secs().max(1));
        }
        Ok(())
    }

    pub fn record(&self, key: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let list = map.entry(key.to_string()).or_default();
        list.push_back(Instant::now());
        // Never hold more entries than the limit needs.
        while list.len() > self.max_failures {
            list.pop_front();
        }
    }

    pub fn clear(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_and_recovers_after_the_window() {
        let t = Throttle::new(2, Duration::from_millis(50));
        assert!(t.check("u").is_ok());
        t.record("u");
        assert!(t.check("u").is_ok());
        t.record("u");
        assert!(t.check("u").is_err());
        assert!(t.check("other").is_ok());
        std::thread::sleep(Duration::from_millis(60));
        assert!(t.check("u").is_ok());
        t.record("u");
        t.record("u");
        t.clear("u");
        assert!(t.check("u").is_ok());
    }
}
