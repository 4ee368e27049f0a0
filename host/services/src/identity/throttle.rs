//! A sliding window of events per key: failed logins per username or client
//! address, notifications per user and app.
//!
//! On one host process the window is kept in memory: a restart forgets it,
//! which only gives one more window. On a store shared by several host
//! processes it lives in the store's rate windows (one record per key, the
//! times of its last events), read and changed in transactions, so every
//! node counts the same events and a limit holds whichever node a request
//! reaches. Times there are wall-clock milliseconds: the nodes' clocks are
//! assumed to be kept in step (NTP); a skew only lengthens or shortens a
//! window by as much.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use superapp_store::{Abort, Store, StoreError, Tree};

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
    Memory(Mutex<HashMap<String, VecDeque<Instant>>>),
    Store { store: Arc<Store>, name: String },
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
        match &self.place {
            Place::Memory(map) => {
                let now = Instant::now();
                let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
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
                match list.front() {
                    Some(oldest) if list.len() >= self.max => {
                        Err(self.wait(now.duration_since(*oldest)))
                    }
                    _ => Ok(()),
                }
            }
            Place::Store { store, name } => {
                let k = record_key(name, key);
                let raw = store.get_raw(Tree::Windows, &k)?;
                let now = now_ms();
                let times = self.live(raw.as_deref(), now);
                if raw.is_some() && times.is_empty() {
                    // Every event left the window: the record goes too.
                    store.remove(Tree::Windows, &k)?;
                }
                self.room(&times, now)
            }
        }
    }

    /// Count one event for `key`.
    pub fn record(&self, key: &str) -> Result<(), Limited> {
        self.count(key, false)
    }

    /// Count one event for `key` if the window has room for it, in one step
    /// (two nodes cannot both take the last place).
    pub fn take(&self, key: &str) -> Result<(), Limited> {
        self.count(key, true)
    }

    /// Forget `key`'s events (a successful login clears its failures).
    pub fn clear(&self, key: &str) -> Result<(), Limited> {
        match &self.place {
            Place::Memory(map) => {
                map.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
                Ok(())
            }
            Place::Store { store, name } => {
                Ok(store.remove(Tree::Windows, &record_key(name, key))?)
            }
        }
    }

    fn count(&self, key: &str, only_with_room: bool) -> Result<(), Limited> {
        match &self.place {
            Place::Memory(map) => {
                let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let list = map.entry(key.to_string()).or_default();
                while list
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    list.pop_front();
                }
                if only_with_room && list.len() >= self.max {
                    let oldest = list.front().map_or(Duration::ZERO, |t| now - *t);
                    return Err(self.wait(oldest));
                }
                list.push_back(now);
                // Never hold more entries than the limit needs.
                while list.len() > self.max {
                    list.pop_front();
                }
                Ok(())
            }
            Place::Store { store, name } => {
                let k = record_key(name, key);
                let counted = store.transact(&[Tree::Windows], |t| {
                    let now = now_ms();
                    let mut times = self.live(t.get(Tree::Windows, &k)?.as_deref(), now);
                    if only_with_room {
                        self.room(&times, now).map_err(Abort::User)?;
                    }
                    times.push(now);
                    let keep = times.len().saturating_sub(self.max);
                    t.put(Tree::Windows, &k, &encode_times(&times[keep..]))?;
                    Ok(())
                });
                counted.map_err(|e| match e {
                    Abort::User(limited) => limited,
                    Abort::Store(e) => Limited::Store(e),
                })
            }
        }
    }

    /// The times in a stored record still inside the window.
    fn live(&self, raw: Option<&[u8]>, now: u64) -> Vec<u64> {
        let window = self.window.as_millis() as u64;
        raw.unwrap_or_default()
            .chunks_exact(8)
            .filter_map(|c| c.try_into().ok().map(u64::from_be_bytes))
            .filter(|t| now.saturating_sub(*t) < window)
            .collect()
    }

    fn room(&self, times: &[u64], now: u64) -> Result<(), Limited> {
        match times.first() {
            Some(oldest) if times.len() >= self.max => {
                Err(self.wait(Duration::from_millis(now.saturating_sub(*oldest))))
            }
            _ => Ok(()),
        }
    }

    /// The wait until an event as old as `age` leaves the window.
    fn wait(&self, age: Duration) -> Limited {
        Limited::Wait(self.window.saturating_sub(age).as_secs().max(1))
    }
}

fn encode_times(times: &[u64]) -> Vec<u8> {
    times.iter().flat_map(|t| t.to_be_bytes()).collect()
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

    #[test]
    fn in_memory() {
        let t = Throttle::new(2, Duration::from_millis(200));
        blocks_after_the_limit_and_recovers_after_the_window(&t, &t);
    }

    #[test]
    fn on_a_shared_store_every_process_counts_the_same_events() {
        let backend: Arc<dyn superapp_store::Backend> =
            Arc::new(superapp_store::MemoryBackend::new());
        let a = Store::with_backend(backend.clone()).unwrap();
        let b = Store::with_backend(backend).unwrap();
        let window = Duration::from_millis(200);
        let on_a = Throttle::for_store(&a, "login", 2, window);
        let on_b = Throttle::for_store(&b, "login", 2, window);
        blocks_after_the_limit_and_recovers_after_the_window(&on_a, &on_b);
        // Another name is another window.
        assert!(Throttle::for_store(&a, "notify", 2, window)
            .check("u")
            .is_ok());
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
