//! A sliding window of events per key: failed logins per username or client
//! address, notifications per user and app.
//!
//! On one host process the window is kept in memory: a restart forgets it,
//! which only gives one more window. On a store shared by several host
//! processes it lives in the store's rate windows (one record per key, the
//! times of its last events), read and changed in transactions, so every
//! node counts the same events and a limit holds whichever node a request
//! reaches. Times are wall-clock milliseconds: the nodes' clocks are
//! assumed to be kept in step (NTP); a skew only lengthens or shortens a
//! window by as much.
//!
//! An attempt whose outcome is not known yet (a password being checked)
//! holds a place in the window while it runs ([`Throttle::begin`], then
//! [`Throttle::end`]): parallel attempts cannot all pass a check made before
//! any of them is counted. An attempt that finds the window full of others
//! still running waits for them (briefly) instead of being refused, so a
//! user's own burst of right passwords goes through; a place whose attempt
//! never ended (its process died) is freed after [`IN_FLIGHT_MAX`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use superapp_store::{Abort, Store, StoreError, Tree};

/// How long a running attempt may hold its place.
pub const IN_FLIGHT_MAX: Duration = Duration::from_secs(60);
/// How long an attempt waits for running ones to finish before it is
/// refused.
const WAIT_FOR_RUNNING: Duration = Duration::from_secs(10);
/// The top bit of a stored time marks an attempt still running.
const RUNNING: u64 = 1 << 63;

/// Why an event may not happen now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Limited {
    /// The key used up its events; the window frees one in this many seconds.
    #[error("too many attempts; try again in {0} s")]
    Wait(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Throttle {
    max: usize,
    window: Duration,
    place: Place,
}

enum Place {
    Memory(Mutex<HashMap<String, Vec<u64>>>),
    Store { store: Arc<Store>, name: String },
}

/// What a change found and decided.
enum Room {
    Free,
    /// Full of finished events: the wait until one leaves.
    Full(Limited),
    /// Full, with attempts still running.
    Busy,
}

impl Throttle {
    /// A window of at most `max` events per `window`, in this process.
    pub fn new(max: u32, window: Duration) -> Self {
        Throttle {
            max: max.max(1) as usize,
            window,
            place: Place::Memory(Mutex::new(HashMap::new())),
        }
    }

    /// [`Throttle::new`], kept in `store` under `name` when the store is
    /// shared by several host processes.
    pub fn for_store(store: &Arc<Store>, name: &str, max: u32, window: Duration) -> Self {
        let mut throttle = Throttle::new(max, window);
        if store.shared() {
            throttle.place = Place::Store {
                store: store.clone(),
                name: name.to_string(),
            };
        }
        throttle
    }

    /// `Err(Limited::Wait(seconds))` if `key` has used up its events.
    pub fn check(&self, key: &str) -> Result<(), Limited> {
        let room = self.change(key, |times, now| (self.room(times, now), false))?;
        match room {
            Room::Free | Room::Busy => Ok(()),
            Room::Full(limited) => Err(limited),
        }
    }

    /// Count one event for `key`.
    pub fn record(&self, key: &str) -> Result<(), Limited> {
        self.change(key, |times, now| {
            times.push(now);
            (Room::Free, true)
        })?;
        Ok(())
    }

    /// Count one event for `key` if the window has room for it, in one step
    /// (two nodes cannot both take the last place).
    pub fn take(&self, key: &str) -> Result<(), Limited> {
        let room = self.change(key, |times, now| match self.room(times, now) {
            Room::Free => {
                times.push(now);
                (Room::Free, true)
            }
            other => (other, false),
        })?;
        match room {
            Room::Free => Ok(()),
            Room::Busy => Err(Limited::Wait(1)),
            Room::Full(limited) => Err(limited),
        }
    }

    /// Hold a place for an attempt whose outcome comes later; end it with
    /// [`Throttle::end`]. Waits (up to 10 s) while the window is full of
    /// attempts still running; refused when it is full of finished ones.
    pub async fn begin(&self, key: &str) -> Result<(), Limited> {
        let started = now_ms();
        loop {
            let room = self.change(key, |times, now| match self.room(times, now) {
                Room::Free => {
                    times.push(now | RUNNING);
                    (Room::Free, true)
                }
                other => (other, false),
            })?;
            match room {
                Room::Free => return Ok(()),
                Room::Full(limited) => return Err(limited),
                Room::Busy
                    if now_ms().saturating_sub(started) >= WAIT_FOR_RUNNING.as_millis() as u64 =>
                {
                    return Err(Limited::Wait(1));
                }
                Room::Busy => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// End an attempt begun with [`Throttle::begin`]: it counts as an event
    /// when `counted` (a failed login, a sign-up), and frees its place
    /// otherwise.
    pub fn end(&self, key: &str, counted: bool) -> Result<(), Limited> {
        self.change(key, |times, now| {
            if let Some(i) = times.iter().position(|t| t & RUNNING != 0) {
                times.remove(i);
            }
            if counted {
                times.push(now);
            }
            (Room::Free, true)
        })?;
        Ok(())
    }

    /// Forget `key`'s events (a successful login clears its failures).
    pub fn clear(&self, key: &str) -> Result<(), Limited> {
        self.change(key, |times, _| {
            // Attempts of others still running keep their places.
            times.retain(|t| t & RUNNING != 0);
            (Room::Free, true)
        })?;
        Ok(())
    }

    /// Remove the records of keys whose events all left the window (a key
    /// is otherwise removed only when it is next used, and keys such as
    /// guessed usernames may never be); how many went.
    pub fn sweep(&self) -> Result<usize, Limited> {
        match &self.place {
            Place::Memory(map) => {
                let now = now_ms();
                let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
                let before = map.len();
                map.retain(|_, times| {
                    self.prune(times, now);
                    !times.is_empty()
                });
                Ok(before - map.len())
            }
            Place::Store { store, name } => {
                let prefix = record_key(name, "");
                let mut after: Option<Vec<u8>> = None;
                let mut removed = 0;
                loop {
                    let page = store.scan(Tree::Windows, &prefix, after.as_deref(), 500, false)?;
                    let Some((last, _)) = page.last() else {
                        return Ok(removed);
                    };
                    after = Some(last.clone());
                    let now = now_ms();
                    for (k, v) in &page {
                        let mut times: Vec<u64> = v
                            .chunks_exact(8)
                            .filter_map(|c| c.try_into().ok().map(u64::from_be_bytes))
                            .collect();
                        self.prune(&mut times, now);
                        if times.is_empty() {
                            // Through `change`, which removes it only if it
                            // is still stale inside the transaction.
                            let key = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                            self.change(&key, |_, _| ((), false))?;
                            removed += 1;
                        }
                    }
                }
            }
        }
    }

    /// Whether `times` (live ones only) leaves room for another event.
    fn room(&self, times: &[u64], now: u64) -> Room {
        if times.len() < self.max {
            return Room::Free;
        }
        if times.iter().any(|t| t & RUNNING != 0) {
            return Room::Busy;
        }
        let oldest = times.iter().min().copied().unwrap_or(now);
        let age = Duration::from_millis(now.saturating_sub(oldest));
        Room::Full(Limited::Wait(
            self.window.saturating_sub(age).as_secs().max(1),
        ))
    }

    /// Run `change` on `key`'s live times (expired ones dropped), writing
    /// them back when it says so, atomically: under the lock in memory, in
    /// a transaction in the store. A key left without times is removed.
    fn change<R>(
        &self,
        key: &str,
        change: impl Fn(&mut Vec<u64>, u64) -> (R, bool),
    ) -> Result<R, Limited> {
        match &self.place {
            Place::Memory(map) => {
                let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
                let now = now_ms();
                let mut times = map.remove(key).unwrap_or_default();
                self.prune(&mut times, now);
                let (result, _) = change(&mut times, now);
                if !times.is_empty() {
                    map.insert(key.to_string(), times);
                }
                Ok(result)
            }
            Place::Store { store, name } => {
                let k = record_key(name, key);
                let changed = store.transact(&[Tree::Windows], |t| {
                    let now = now_ms();
                    let raw = t.get(Tree::Windows, &k)?;
                    let mut times: Vec<u64> = raw
                        .as_deref()
                        .unwrap_or_default()
                        .chunks_exact(8)
                        .filter_map(|c| c.try_into().ok().map(u64::from_be_bytes))
                        .collect();
                    let before = times.len();
                    self.prune(&mut times, now);
                    let (result, write) = change(&mut times, now);
                    if times.is_empty() {
                        if raw.is_some() {
                            t.delete(Tree::Windows, &k)?;
                        }
                    } else if write || times.len() != before {
                        let bytes: Vec<u8> = times.iter().flat_map(|t| t.to_be_bytes()).collect();
                        t.put(Tree::Windows, &k, &bytes)?;
                    }
                    Ok::<_, Abort<()>>(result)
                });
                changed.map_err(|e| Limited::Store(e.into_store()))
            }
        }
    }

    /// Drop finished events older than the window, running attempts older
    /// than [`IN_FLIGHT_MAX`], and finished events beyond what the limit
    /// needs.
    fn prune(&self, times: &mut Vec<u64>, now: u64) {
        let window = self.window.as_millis() as u64;
        let in_flight = IN_FLIGHT_MAX.as_millis() as u64;
        times.retain(|t| {
            let (at, running) = (t & !RUNNING, t & RUNNING != 0);
            let limit = if running { in_flight } else { window };
            now.saturating_sub(at) < limit
        });
        times.sort_unstable_by_key(|t| t & !RUNNING);
        let finished = times.iter().filter(|t| *t & RUNNING == 0).count();
        let mut extra = finished.saturating_sub(self.max);
        times.retain(|t| {
            if extra > 0 && t & RUNNING == 0 {
                extra -= 1;
                false
            } else {
                true
            }
        });
    }
}

fn record_key(name: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 1 + key.len());
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same contract in memory and on a store two processes share.
    fn blocks_after_the_limit_and_recovers_after_the_window(t: &Throttle, other: &Throttle) {
        assert!(t.check("u").is_ok());
        t.record("u").unwrap();
        assert!(other.check("u").is_ok());
        other.record("u").unwrap();
        assert!(matches!(t.check("u"), Err(Limited::Wait(_))));
        assert!(matches!(other.take("u"), Err(Limited::Wait(_))));
        assert!(t.check("other").is_ok());
        std::thread::sleep(Duration::from_millis(220));
        assert!(t.check("u").is_ok());
        t.take("u").unwrap();
        other.take("u").unwrap();
        assert!(t.take("u").is_err(), "the last place was taken");
        other.clear("u").unwrap();
        assert!(t.check("u").is_ok());
    }

    /// Running attempts hold places; ended, they count only when failed.
    async fn running_attempts_hold_places(t: &Throttle, other: &Throttle) {
        t.begin("k").await.unwrap();
        other.begin("k").await.unwrap();
        // Full of running attempts: a third waits, and is let through as
        // soon as one ends without failing.
        let third = async {
            other.begin("k").await.unwrap();
        };
        let ending = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            t.end("k", false).unwrap();
        };
        tokio::join!(third, ending);
        other.end("k", true).unwrap();
        other.end("k", true).unwrap();
        // Two failures: full of finished events, refused at once.
        assert!(matches!(t.begin("k").await, Err(Limited::Wait(_))));
    }

    #[tokio::test]
    async fn in_memory() {
        let t = Throttle::new(2, Duration::from_millis(200));
        blocks_after_the_limit_and_recovers_after_the_window(&t, &t);
        running_attempts_hold_places(&t, &t).await;
    }

    fn two_nodes(max: u32, window: Duration) -> (Throttle, Throttle) {
        let backend: Arc<dyn superapp_store::Backend> =
            Arc::new(superapp_store::MemoryBackend::new());
        let a = Store::with_backend(backend.clone()).unwrap();
        let b = Store::with_backend(backend).unwrap();
        (
            Throttle::for_store(&a, "login", max, window),
            Throttle::for_store(&b, "login", max, window),
        )
    }

    #[tokio::test]
    async fn on_a_shared_store_every_process_counts_the_same_events() {
        let (on_a, on_b) = two_nodes(2, Duration::from_millis(200));
        blocks_after_the_limit_and_recovers_after_the_window(&on_a, &on_b);
        running_attempts_hold_places(&on_a, &on_b).await;
    }

    #[tokio::test]
    async fn a_sweep_removes_only_the_keys_whose_events_all_left_the_window() {
        let (on_a, on_b) = two_nodes(3, Duration::from_millis(100));
        let memory = Throttle::new(3, Duration::from_millis(100));
        for t in [&on_a, &memory] {
            for i in 0..5 {
                t.record(&format!("guessed-{i}")).unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(150));
        for t in [&on_a, &memory] {
            t.record("recent").unwrap();
        }
        assert_eq!(on_b.sweep().unwrap(), 5);
        assert_eq!(memory.sweep().unwrap(), 5);
        assert!(
            matches!(on_a.take("recent"), Ok(())),
            "the recent key keeps its event"
        );
        assert_eq!(on_a.sweep().unwrap(), 0);
    }

    #[test]
    fn racing_takers_on_a_shared_store_never_exceed_the_limit() {
        let backend: Arc<dyn superapp_store::Backend> =
            Arc::new(superapp_store::MemoryBackend::new());
        let stores: Vec<_> = (0..4)
            .map(|_| Store::with_backend(backend.clone()).unwrap())
            .collect();
        let taken = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for store in &stores {
                let throttle = Throttle::for_store(store, "notify", 10, Duration::from_secs(60));
                let taken = &taken;
                s.spawn(move || {
                    for _ in 0..10 {
                        if throttle.take("user").is_ok() {
                            taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        assert_eq!(taken.into_inner(), 10);
    }
}
