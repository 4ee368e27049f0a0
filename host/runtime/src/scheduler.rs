//! Fair scheduling of events onto a bounded number of run slots.
//!
//! At most [`SchedulerConfig::slots`] events execute at once (about one per
//! core). An event holds a slot while it instantiates, runs wasm and makes
//! host calls, and only that time counts against its time limit: waiting for
//! a core is not the app's fault.
//!
//! A freed slot goes to the waiting app that holds the fewest slots (on a
//! tie, the one served least recently), and within an app to its oldest
//! event. An event that has run for a slice gives its slot up at the next
//! epoch tick when somebody else would be chosen before it (in practice:
//! another app that holds fewer slots), and queues to resume with its place
//! kept. So one app's burst runs its events oldest first on the cores the
//! others leave free, and a light app's event waits at most about a slice.
//!
//! Admission is bounded: past [`SchedulerConfig::max_pending`] events in
//! all, or [`SchedulerConfig::max_pending_per_app`] for one app, or after
//! waiting [`SchedulerConfig::max_wait`] for a first slot, an event is
//! refused as [`Overload`] (HTTP 503 with `Retry-After`) instead of piling
//! up. Host events (a prompt's answer, a payment's result) are never
//! refused: they wait their turn, since the user already acted.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How many events run at once, how many may wait, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Events executing at once; about the number of cores.
    pub slots: usize,
    /// Events admitted (running or waiting) at once, over all apps.
    pub max_pending: usize,
    /// Events of one app admitted at once: its share of the queue.
    pub max_pending_per_app: usize,
    /// Longest wait for a first slot before the event is refused.
    pub max_wait: Duration,
    /// Running time after which an event yields to a waiting app.
    pub slice: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        SchedulerConfig {
            slots: cores,
            max_pending: 256,
            max_pending_per_app: 64,
            max_wait: Duration::from_secs(2),
            slice: Duration::from_millis(2),
        }
    }
}

/// Why an event was refused before it ran. Nothing of it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Overload {
    #[error("too many events are waiting")]
    Full,
    #[error("no core came free within {} ms", .0.as_millis())]
    Waited(Duration),
}

impl Overload {
    /// Seconds a client should wait before trying again.
    pub fn retry_after_secs(&self) -> u64 {
        1
    }
}

/// A snapshot for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    pub running: usize,
    pub waiting: usize,
    pub pending: usize,
}

#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

struct Inner {
    config: SchedulerConfig,
    /// Waiters over all apps, readable without the lock (checked every tick).
    waiting: AtomicUsize,
    state: Mutex<State>,
}

struct State {
    free: usize,
    next_seq: u64,
    /// Slots granted so far: orders apps by when they were last served.
    grants: u64,
    pending: usize,
    apps: HashMap<Arc<str>, AppQueue>,
}

#[derive(Default)]
struct AppQueue {
    running: usize,
    pending: usize,
    last_grant: u64,
    /// By admission order: an event keeps its number when it resumes.
    waiters: BTreeMap<u64, oneshot::Sender<Slot>>,
}

impl Scheduler {
    pub fn new(config: SchedulerConfig) -> Scheduler {
        let config = SchedulerConfig {
            slots: config.slots.max(1),
            max_pending: config.max_pending.max(1),
            max_pending_per_app: config.max_pending_per_app.max(1),
            ..config
        };
        Scheduler {
            inner: Arc::new(Inner {
                config,
                waiting: AtomicUsize::new(0),
                state: Mutex::new(State {
                    free: config.slots,
                    next_seq: 0,
                    grants: 0,
                    pending: 0,
                    apps: HashMap::new(),
                }),
            }),
        }
    }

    pub fn config(&self) -> SchedulerConfig {
        self.inner.config
    }

    pub fn load(&self) -> Load {
        let state = self.inner.lock();
        Load {
            running: self.inner.config.slots - state.free,
            waiting: self.inner.waiting.load(Ordering::Relaxed),
            pending: state.pending,
        }
    }

    /// Admit an event of `app` and wait for its first slot. A `patient`
    /// event (a host event) is admitted past the caps and waits as long as
    /// it takes.
    pub async fn start(&self, app: &str, patient: bool) -> Result<Arc<Turn>, Overload> {
        let ticket = self.admit(app, patient)?;
        let max_wait = (!patient).then_some(self.inner.config.max_wait);
        let slot = ticket.first_slot(max_wait).await?;
        Ok(Arc::new(Turn {
            slot: Mutex::new(Some(slot)),
            clock: Mutex::new(Clock {
                used: Duration::ZERO,
                since: Some(Instant::now()),
            }),
            ticket,
        }))
    }

    fn admit(&self, app: &str, patient: bool) -> Result<Ticket, Overload> {
        let config = self.inner.config;
        let mut state = self.inner.lock();
        let queue = state.apps.get(app);
        let app_pending = queue.map_or(0, |q| q.pending);
        if !patient
            && (state.pending >= config.max_pending || app_pending >= config.max_pending_per_app)
        {
            return Err(Overload::Full);
        }
        let key: Arc<str> = match state.apps.get_key_value(app) {
            Some((k, _)) => k.clone(),
            None => Arc::from(app),
        };
        let seq = state.next_seq;
        state.next_seq += 1;
        state.pending += 1;
        state.apps.entry(key.clone()).or_default().pending += 1;
        Ok(Ticket {
            inner: self.inner.clone(),
            app: key,
            seq,
        })
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is updated in small steps that cannot panic halfway.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Give a freed slot back: to the next waiter, or to the free count.
    fn release(self: &Arc<Self>, app: &Arc<str>) {
        let mut state = self.lock();
        if let Some(q) = state.apps.get_mut(app) {
            q.running -= 1;
        }
        state.free += 1;
        self.grant(&mut state);
    }

    /// Hand free slots to waiters: the app holding the fewest slots first,
    /// then the oldest event.
    fn grant(self: &Arc<Self>, state: &mut State) {
        while state.free > 0 {
            let Some((app, seq)) = pick(state, None) else {
                return;
            };
            state.grants += 1;
            let grants = state.grants;
            let Some(q) = state.apps.get_mut(&app) else {
                return;
            };
            let Some(tx) = q.waiters.remove(&seq) else {
                return;
            };
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            q.running += 1;
            q.last_grant = grants;
            state.free -= 1;
            let slot = Slot {
                inner: self.clone(),
                app: app.clone(),
                live: true,
            };
            if let Err(mut slot) = tx.send(slot) {
                // The waiter gave up; its slot goes to the next one.
                slot.live = false;
                if let Some(q) = state.apps.get_mut(&app) {
                    q.running -= 1;
                }
                state.free += 1;
            }
        }
    }
}

/// The waiter that goes next: of the app holding the fewest slots, then
/// the one served least recently, its oldest event. With `me`, as if that
/// running event had given its slot up and joined its app's queue.
fn pick(state: &State, me: Option<(&Arc<str>, u64)>) -> Option<(Arc<str>, u64)> {
    state
        .apps
        .iter()
        .filter_map(|(app, q)| {
            let mut running = q.running;
            let mut first = q.waiters.keys().next().copied();
            if let Some((my_app, my_seq)) = me {
                if my_app == app {
                    running = running.saturating_sub(1);
                    first = Some(first.map_or(my_seq, |seq| seq.min(my_seq)));
                }
            }
            first.map(|seq| (app, (running, q.last_grant, seq)))
        })
        .min_by_key(|(_, key)| *key)
        .map(|(app, (_, _, seq))| (app.clone(), seq))
}

/// An admitted event: counted against the caps until it ends.
struct Ticket {
    inner: Arc<Inner>,
    app: Arc<str>,
    seq: u64,
}

impl Ticket {
    async fn first_slot(&self, max_wait: Option<Duration>) -> Result<Slot, Overload> {
        let mut rx = {
            let mut state = self.inner.lock();
            if state.free > 0 {
                // Free slots and waiters never coexist (grant runs whenever
                // a slot frees), so nobody is passed over here.
                state.free -= 1;
                state.grants += 1;
                let grants = state.grants;
                if let Some(q) = state.apps.get_mut(&self.app) {
                    q.running += 1;
                    q.last_grant = grants;
                }
                return Ok(Slot {
                    inner: self.inner.clone(),
                    app: self.app.clone(),
                    live: true,
                });
            }
            self.enqueue(&mut state)
        };
        let Some(max_wait) = max_wait else {
            return Ok(self.received(rx.await).await);
        };
        match tokio::time::timeout(max_wait, &mut rx).await {
            Ok(got) => Ok(self.received(got).await),
            Err(_) => {
                self.withdraw();
                // A slot may have been handed over just before withdrawing.
                match rx.try_recv() {
                    Ok(slot) => Ok(slot),
                    Err(_) => Err(Overload::Waited(max_wait)),
                }
            }
        }
    }

    fn enqueue(&self, state: &mut State) -> oneshot::Receiver<Slot> {
        let (tx, rx) = oneshot::channel();
        if let Some(q) = state.apps.get_mut(&self.app) {
            q.waiters.insert(self.seq, tx);
            self.inner.waiting.fetch_add(1, Ordering::Relaxed);
        }
        rx
    }

    /// Take our waiter out of the queue, if it is still there.
    fn withdraw(&self) {
        let mut state = self.inner.lock();
        if let Some(q) = state.apps.get_mut(&self.app) {
            if q.waiters.remove(&self.seq).is_some() {
                self.inner.waiting.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// The slot a waiter was sent. The sender is only ever dropped after a
    /// send or by `withdraw`, which this waiter has not called: should that
    /// change, queue again rather than run without a slot.
    async fn received(&self, got: Result<Slot, oneshot::error::RecvError>) -> Slot {
        let mut got = got;
        loop {
            match got {
                Ok(slot) => return slot,
                Err(_) => {
                    let rx = {
                        let mut state = self.inner.lock();
                        self.enqueue(&mut state)
                    };
                    got = rx.await;
                }
            }
        }
    }

    /// Would a waiter be chosen before this event if it gave its slot up?
    fn others_first(&self) -> bool {
        if self.inner.waiting.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let state = self.inner.lock();
        pick(&state, Some((&self.app, self.seq))).is_some_and(|next| next.1 != self.seq)
    }

    /// Queue for a slot again, keeping this event's place (after its slot
    /// was dropped while it waited on something else).
    async fn reacquire(&self) -> Slot {
        let rx = {
            let mut state = self.inner.lock();
            let rx = self.enqueue(&mut state);
            self.inner.grant(&mut state);
            rx
        };
        self.received(rx.await).await
    }

    /// Give `slot` up and queue to resume, keeping this event's place.
    async fn resume(&self, mut slot: Slot) -> Slot {
        let rx = {
            let mut state = self.inner.lock();
            slot.live = false;
            if let Some(q) = state.apps.get_mut(&self.app) {
                q.running -= 1;
            }
            state.free += 1;
            let rx = self.enqueue(&mut state);
            self.inner.grant(&mut state);
            rx
        };
        self.received(rx.await).await
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        state.pending -= 1;
        let idle = match state.apps.get_mut(&self.app) {
            Some(q) => {
                if q.waiters.remove(&self.seq).is_some() {
                    self.inner.waiting.fetch_sub(1, Ordering::Relaxed);
                }
                q.pending -= 1;
                q.pending == 0
            }
            None => false,
        };
        if idle {
            state.apps.remove(&self.app);
        }
    }
}

/// The right to execute: one of the slots. Dropping it frees the slot.
pub struct Slot {
    inner: Arc<Inner>,
    app: Arc<str>,
    live: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.live {
            self.inner.release(&self.app);
        }
    }
}

struct Clock {
    used: Duration,
    /// When the current slot was granted; `None` while waiting to resume.
    since: Option<Instant>,
}

/// One admitted event's place in the schedule and its running time.
pub struct Turn {
    // Declared first so the slot is freed before the ticket is retired.
    slot: Mutex<Option<Slot>>,
    clock: Mutex<Clock>,
    ticket: Ticket,
}

impl Turn {
    /// Time spent holding a slot: what the time limit counts.
    pub fn used(&self) -> Duration {
        let clock = self.clock.lock().unwrap_or_else(|p| p.into_inner());
        clock.used + clock.since.map_or(Duration::ZERO, |s| s.elapsed())
    }

    /// Has this event run for a slice while another should go first?
    pub fn should_yield(&self) -> bool {
        let held = {
            let clock = self.clock.lock().unwrap_or_else(|p| p.into_inner());
            clock.since.map_or(Duration::ZERO, |s| s.elapsed())
        };
        held >= self.ticket.inner.config.slice && self.ticket.others_first()
    }

    /// Run `work`, a host call that waits on the network, without holding
    /// a run slot, so that other events use the core meanwhile: an app
    /// whose backend is slow cannot take the host's cores by waiting. The
    /// wait still counts against this event's time limit, as if the slot
    /// were held; queueing for a slot afterwards (keeping this event's
    /// place) does not.
    pub async fn off_slot<T>(self: Arc<Self>, work: impl std::future::Future<Output = T>) -> T {
        let slot = self.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(slot) = slot else {
            return work.await;
        };
        drop(slot);
        let out = work.await;
        self.stop_clock();
        self.hold(self.ticket.reacquire().await);
        out
    }

    /// Give the slot up, wait to be scheduled again, and carry on.
    pub async fn yield_slot(self: Arc<Self>) {
        let slot = self.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(slot) = slot else { return };
        self.stop_clock();
        self.hold(self.ticket.resume(slot).await);
    }

    /// Stop counting running time (while this event waits for a slot).
    fn stop_clock(&self) {
        let mut clock = self.clock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(since) = clock.since.take() {
            clock.used += since.elapsed();
        }
    }

    /// Hold `slot` again, counting running time from now.
    fn hold(&self, slot: Slot) {
        self.clock.lock().unwrap_or_else(|p| p.into_inner()).since = Some(Instant::now());
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(slots: usize) -> SchedulerConfig {
        SchedulerConfig {
            slots,
            max_pending: 8,
            max_pending_per_app: 4,
            max_wait: Duration::from_millis(200),
            slice: Duration::ZERO,
        }
    }

    #[tokio::test]
    async fn slots_are_bounded_and_caps_refuse() {
        let s = Scheduler::new(config(2));
        let a = s.start("a", false).await.unwrap();
        let b = s.start("a", false).await.unwrap();
        assert_eq!(s.load().running, 2);
        // A third waits for a slot and gives up after max_wait.
        assert_eq!(
            s.start("a", false).await.err(),
            Some(Overload::Waited(Duration::from_millis(200)))
        );
        assert_eq!(s.load().waiting, 0);
        // The app's share of the queue: 4 admitted at once.
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.start("a", false).await.map(|_| ()) })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(s.start("a", false).await.err(), Some(Overload::Full));
        // A patient (host) event is admitted anyway.
        let patient = {
            let s = s.clone();
            tokio::spawn(async move { s.start("a", true).await.map(|_| ()) })
        };
        drop(a);
        drop(b);
        for w in waiting {
            w.await.unwrap().unwrap();
        }
        patient.await.unwrap().unwrap();
        let load = s.load();
        assert_eq!((load.running, load.waiting, load.pending), (0, 0, 0));
        assert!(s.inner.lock().apps.is_empty());
    }

    #[tokio::test]
    async fn waiting_on_the_network_frees_the_slot_but_counts_as_time() {
        let s = Scheduler::new(config(1));
        let slow = s.start("slow", false).await.unwrap();
        let waiting = {
            let slow = slow.clone();
            tokio::spawn(async move {
                slow.off_slot(tokio::time::sleep(Duration::from_millis(150)))
                    .await
            })
        };
        // Another app gets the one slot while the slow event still lives
        // (without the release it would wait out `max_wait` and fail).
        let other = s.start("other", false).await.unwrap();
        assert_eq!(s.load().running, 1);
        // The slow event's wait is over; it queues for the slot, and that
        // queueing is not its running time.
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(!waiting.is_finished(), "it waits for the slot");
        let queued = slow.used();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(slow.used(), queued, "queueing for the slot does not count");
        assert!(
            queued >= Duration::from_millis(150),
            "the network wait counts: {queued:?}"
        );
        drop(other);
        waiting.await.unwrap();
        assert_eq!(s.load().running, 1, "it holds the slot again");
        drop(slow);
        assert_eq!(s.load().running, 0);
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_app_holding_fewest() {
        let s = Scheduler::new(config(1));
        let heavy = s.start("heavy", false).await.unwrap();
        let (order_tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for (app, delay) in [("heavy", 0), ("heavy", 5), ("light", 10)] {
            let s = s.clone();
            let order_tx = order_tx.clone();
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                let turn = s.start(app, false).await.unwrap();
                order_tx.send(app).unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
                drop(turn);
            }));
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        // The running heavy event should step aside for the light app, not
        // for its own later events.
        assert!(heavy.should_yield());
        heavy.clone().yield_slot().await;
        assert_eq!(order.recv().await, Some("light"));
        drop(heavy);
        assert_eq!(order.recv().await, Some("heavy"));
        assert_eq!(order.recv().await, Some("heavy"));
        for t in tasks {
            t.await.unwrap();
        }
    }

    #[tokio::test]
    async fn waiting_time_is_not_running_time() {
        let s = Scheduler::new(config(1));
        let first = s.start("a", false).await.unwrap();
        let second = {
            let s = s.clone();
            tokio::spawn(async move { s.start("b", false).await.unwrap() })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(first);
        let second = second.await.unwrap();
        assert!(
            second.used() < Duration::from_millis(40),
            "{:?}",
            second.used()
        );
        // Alone, it never yields.
        assert!(!second.should_yield());
    }
}
