//! Fair scheduling of events onto a bounded number of run slots.
//!
//! At most [`SchedulerConfig::slots`] events execute at once (about one per
//! core). An event holds a slot while it instantiates, runs wasm and makes
//! host calls, and only that time counts against its time limit: waiting for
//! a core is not the app's fault (nor is the host's own delay in a host
//! call, which the sandbox takes off with [`Turn::excuse`]).
//!
//! A freed slot goes to the waiting app that holds the fewest slots (on a
//! tie, the one served least recently), and within an app to its oldest
//! event. An event that has run for a slice gives its slot up at the next
//! epoch tick when somebody else would be chosen before it (in practice:
//! another app that holds fewer slots), and queues to resume with its place
//! kept. So one app's burst runs its events oldest first on the cores the
//! others leave free, and a light app's event waits at most about a slice.
//!
//! An event also holds one of [`SchedulerConfig::instances`] instances
//! (the sandbox's pool slots) from its first slot to its end, also while it
//! waits for a host call or to resume; an app holds at most
//! [`SchedulerConfig::instances_per_app`] of them. A first slot goes only to
//! an event that can have an instance, while an event resuming has its own:
//! so the pool is never overcommitted, every event holding an instance can
//! always finish, and one app waiting on a slow backend keeps at most its
//! share of the instances from the others.
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
    /// Events alive at once (from their first slot to their end): the
    /// sandbox's pool size.
    pub instances: usize,
    /// Events of one app alive at once.
    pub instances_per_app: usize,
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
            instances: 64,
            instances_per_app: 16,
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
    /// Events holding an instance (running, or waiting on a host call or
    /// to resume).
    pub alive: usize,
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
    /// Instances no event holds.
    instances_free: usize,
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
    /// Events of this app holding an instance.
    instances: usize,
    last_grant: u64,
    /// Events waiting for their first slot (and an instance), by admission
    /// order.
    fresh: BTreeMap<u64, oneshot::Sender<Grant>>,
    /// Events that hold an instance and wait to run again; an event keeps
    /// its number when it resumes.
    resuming: BTreeMap<u64, oneshot::Sender<Grant>>,
}

impl AppQueue {
    fn idle(&self) -> bool {
        self.pending == 0 && self.running == 0 && self.instances == 0
    }
}

/// What a waiter is handed: a slot, and with a first slot its instance.
struct Grant {
    slot: Slot,
    instance: Option<Hold>,
}

impl Scheduler {
    pub fn new(config: SchedulerConfig) -> Scheduler {
        let instances = config.instances.max(1);
        let config = SchedulerConfig {
            slots: config.slots.max(1),
            instances,
            instances_per_app: config.instances_per_app.clamp(1, instances),
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
                    instances_free: config.instances,
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
            alive: self.inner.config.instances - state.instances_free,
        }
    }

    /// Admit an event of `app` and wait for its first slot. A `patient`
    /// event (a host event) is admitted past the caps and waits as long as
    /// it takes.
    pub async fn start(&self, app: &str, patient: bool) -> Result<Arc<Turn>, Overload> {
        let ticket = self.admit(app, patient)?;
        let max_wait = (!patient).then_some(self.inner.config.max_wait);
        let grant = ticket.first_slot(max_wait).await?;
        Ok(Arc::new(Turn {
            slot: Mutex::new(Some(grant.slot)),
            _instance: grant.instance,
            clock: Mutex::new(Clock {
                used: Duration::ZERO,
                since: Some(Instant::now()),
                excused: Duration::ZERO,
                in_host: None,
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

    /// A slot or instance, counted as taken by the caller, held for `app`.
    fn hold(self: &Arc<Self>, app: &Arc<str>, what: Resource) -> Hold {
        Hold {
            inner: self.clone(),
            app: app.clone(),
            what,
            live: true,
        }
    }

    /// Give a freed slot or instance back; either may let a waiter run.
    fn release(self: &Arc<Self>, app: &Arc<str>, what: Resource) {
        let mut state = self.lock();
        let q = state.apps.get_mut(app);
        match what {
            Resource::Slot => {
                if let Some(q) = q {
                    q.running = q.running.saturating_sub(1);
                }
                state.free += 1;
            }
            Resource::Instance => {
                if let Some(q) = q {
                    q.instances = q.instances.saturating_sub(1);
                }
                state.instances_free += 1;
            }
        }
        retire_if_idle(&mut state, app);
        self.grant(&mut state);
    }

    /// Hand free slots to waiters that can run: the app holding the fewest
    /// slots first, then the oldest event.
    fn grant(self: &Arc<Self>, state: &mut State) {
        let per_app = self.config.instances_per_app;
        while state.free > 0 {
            let Some((app, seq, fresh)) = pick(state, per_app, None) else {
                return;
            };
            state.grants += 1;
            let grants = state.grants;
            let Some(q) = state.apps.get_mut(&app) else {
                return;
            };
            let waiters = if fresh { &mut q.fresh } else { &mut q.resuming };
            let Some(tx) = waiters.remove(&seq) else {
                return;
            };
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            q.running += 1;
            q.last_grant = grants;
            state.free -= 1;
            if fresh {
                q.instances += 1;
                state.instances_free -= 1;
            }
            let grant = Grant {
                slot: self.hold(&app, Resource::Slot),
                instance: fresh.then(|| self.hold(&app, Resource::Instance)),
            };
            if let Err(mut grant) = tx.send(grant) {
                // The waiter gave up; its slot (and instance) go to the next.
                grant.slot.live = false;
                state.free += 1;
                let q = state.apps.get_mut(&app);
                if let Some(instance) = &mut grant.instance {
                    instance.live = false;
                    state.instances_free += 1;
                }
                if let Some(q) = q {
                    q.running -= 1;
                    if grant.instance.is_some() {
                        q.instances -= 1;
                    }
                }
            }
        }
    }
}

/// Forget an app nothing of which is admitted, running or alive.
fn retire_if_idle(state: &mut State, app: &Arc<str>) {
    if state.apps.get(app).is_some_and(AppQueue::idle) {
        state.apps.remove(app);
    }
}

/// The waiter that goes next, of those that can run (one resuming, or one
/// starting while an instance is free and its app is under its share): of
/// the app holding the fewest slots, then the one served least recently,
/// its oldest event. With `me`, as if that running event had given its
/// slot up and joined its app's queue. The flag: whether it is starting.
fn pick(
    state: &State,
    per_app: usize,
    me: Option<(&Arc<str>, u64)>,
) -> Option<(Arc<str>, u64, bool)> {
    state
        .apps
        .iter()
        .filter_map(|(app, q)| {
            let mut running = q.running;
            let mut first = q.resuming.keys().next().map(|&seq| (seq, false));
            if state.instances_free > 0 && q.instances < per_app {
                if let Some(&seq) = q.fresh.keys().next() {
                    first = Some(first.map_or((seq, true), |f| f.min((seq, true))));
                }
            }
            if let Some((my_app, my_seq)) = me {
                if my_app == app {
                    running = running.saturating_sub(1);
                    first = Some(first.map_or((my_seq, false), |f| f.min((my_seq, false))));
                }
            }
            first.map(|(seq, fresh)| (app, (running, q.last_grant, seq), fresh))
        })
        .min_by_key(|(_, key, _)| *key)
        .map(|(app, (_, _, seq), fresh)| (app.clone(), seq, fresh))
}

/// An admitted event: counted against the caps until it ends.
struct Ticket {
    inner: Arc<Inner>,
    app: Arc<str>,
    seq: u64,
}

impl Ticket {
    async fn first_slot(&self, max_wait: Option<Duration>) -> Result<Grant, Overload> {
        let mut rx = {
            let mut state = self.inner.lock();
            let app_instances = state.apps.get(&self.app).map_or(0, |q| q.instances);
            if state.free > 0
                && state.instances_free > 0
                && app_instances < self.inner.config.instances_per_app
            {
                // A free slot and a waiter that could take it never coexist
                // (grant runs whenever a slot or an instance frees), so
                // nobody is passed over here.
                state.free -= 1;
                state.instances_free -= 1;
                state.grants += 1;
                let grants = state.grants;
                if let Some(q) = state.apps.get_mut(&self.app) {
                    q.running += 1;
                    q.instances += 1;
                    q.last_grant = grants;
                }
                return Ok(Grant {
                    slot: self.inner.hold(&self.app, Resource::Slot),
                    instance: Some(self.inner.hold(&self.app, Resource::Instance)),
                });
            }
            self.enqueue(&mut state, true)
        };
        let Some(max_wait) = max_wait else {
            return Ok(self.received(rx.await, true).await);
        };
        match tokio::time::timeout(max_wait, &mut rx).await {
            Ok(got) => Ok(self.received(got, true).await),
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

    /// Wait for a slot: a `fresh` event for its first one (and an
    /// instance), otherwise to run again.
    fn enqueue(&self, state: &mut State, fresh: bool) -> oneshot::Receiver<Grant> {
        let (tx, rx) = oneshot::channel();
        if let Some(q) = state.apps.get_mut(&self.app) {
            if fresh {
                q.fresh.insert(self.seq, tx);
            } else {
                q.resuming.insert(self.seq, tx);
            }
            self.inner.waiting.fetch_add(1, Ordering::Relaxed);
        }
        rx
    }

    /// Take our waiter for a first slot out of the queue, if it is still there.
    fn withdraw(&self) {
        let mut state = self.inner.lock();
        if let Some(q) = state.apps.get_mut(&self.app) {
            if q.fresh.remove(&self.seq).is_some() {
                self.inner.waiting.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// What a waiter was sent. The sender is only ever dropped after a
    /// send or by `withdraw`, which this waiter has not called: should that
    /// change, queue again rather than run without a slot.
    async fn received(&self, got: Result<Grant, oneshot::error::RecvError>, fresh: bool) -> Grant {
        let mut got = got;
        loop {
            match got {
                Ok(grant) => return grant,
                Err(_) => {
                    let rx = {
                        let mut state = self.inner.lock();
                        let rx = self.enqueue(&mut state, fresh);
                        self.inner.grant(&mut state);
                        rx
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
        pick(
            &state,
            self.inner.config.instances_per_app,
            Some((&self.app, self.seq)),
        )
        .is_some_and(|next| next.1 != self.seq)
    }

    /// Queue for a slot again, keeping this event's place (after its slot
    /// was dropped while it waited on something else).
    async fn reacquire(&self) -> Slot {
        let rx = {
            let mut state = self.inner.lock();
            let rx = self.enqueue(&mut state, false);
            self.inner.grant(&mut state);
            rx
        };
        self.received(rx.await, false).await.slot
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
            let rx = self.enqueue(&mut state, false);
            self.inner.grant(&mut state);
            rx
        };
        self.received(rx.await, false).await.slot
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        state.pending -= 1;
        if let Some(q) = state.apps.get_mut(&self.app) {
            if q.fresh.remove(&self.seq).is_some() || q.resuming.remove(&self.seq).is_some() {
                self.inner.waiting.fetch_sub(1, Ordering::Relaxed);
            }
            q.pending -= 1;
        }
        retire_if_idle(&mut state, &self.app);
    }
}

/// What an event holds of the host's: a run slot (the right to execute),
/// or an instance (from its first slot to its end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resource {
    Slot,
    Instance,
}

/// One slot or instance held by an event of `app`. Dropping it gives it
/// back.
struct Hold {
    inner: Arc<Inner>,
    app: Arc<str>,
    what: Resource,
    live: bool,
}

/// A held run slot.
type Slot = Hold;

impl Drop for Hold {
    fn drop(&mut self) {
        if self.live {
            self.inner.release(&self.app, self.what);
        }
    }
}

struct Clock {
    used: Duration,
    /// When the current slot was granted; `None` while waiting to resume.
    since: Option<Instant>,
    /// Slot time that was the host's, not the app's: see [`Turn::excuse`].
    excused: Duration,
    /// When the host call under way began: see [`Turn::in_host`].
    in_host: Option<Instant>,
}

/// One admitted event's place in the schedule and its running time.
pub struct Turn {
    // Declared first so the slot and the instance are freed before the
    // ticket is retired. The instance is held as long as the turn: the
    // sandbox drops the event's store before its turn.
    slot: Mutex<Option<Slot>>,
    _instance: Option<Hold>,
    clock: Mutex<Clock>,
    ticket: Ticket,
}

impl Turn {
    /// Time spent holding a slot: what the time limit counts.
    pub fn used(&self) -> Duration {
        let clock = self.clock.lock().unwrap_or_else(|p| p.into_inner());
        (clock.used + clock.since.map_or(Duration::ZERO, |s| s.elapsed()))
            .saturating_sub(clock.excused)
    }

    /// Take `time` of the slot time counted so far off the time limit's
    /// count: the part of a host call that was the host's own delay (a
    /// loaded database), not work the app asked for.
    pub fn excuse(&self, time: Duration) {
        self.clock.lock().unwrap_or_else(|p| p.into_inner()).excused += time;
    }

    /// Mark the event as in a host call since `since`, or (`None`) back in
    /// the app.
    pub fn in_host(&self, since: Option<Instant>) {
        self.clock.lock().unwrap_or_else(|p| p.into_inner()).in_host = since;
    }

    /// Since when the event has been in a host call, if it is in one.
    pub fn in_host_since(&self) -> Option<Instant> {
        self.clock.lock().unwrap_or_else(|p| p.into_inner()).in_host
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
            instances: 8,
            instances_per_app: 8,
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

    /// Start an event of `app` and park it in a host call until `release`
    /// fires: it holds an instance but no slot meanwhile.
    async fn parked(
        s: &Scheduler,
        app: &str,
    ) -> (Arc<Turn>, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let turn = s.start(app, false).await.unwrap();
        let (release, wait) = oneshot::channel::<()>();
        let call = tokio::spawn(turn.clone().off_slot(async {
            let _ = wait.await;
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
        (turn, release, call)
    }

    /// Start an event of `app` in a task that ends once it has a slot.
    fn starting(
        s: &Scheduler,
        app: &'static str,
        patient: bool,
    ) -> tokio::task::JoinHandle<Result<(), Overload>> {
        let s = s.clone();
        tokio::spawn(async move { s.start(app, patient).await.map(|_| ()) })
    }

    #[tokio::test]
    async fn no_more_events_are_alive_than_instances() {
        let s = Scheduler::new(SchedulerConfig {
            instances: 2,
            instances_per_app: 2,
            ..config(2)
        });
        let (a, release_a, call_a) = parked(&s, "a").await;
        let (b, release_b, call_b) = parked(&s, "b").await;
        let load = s.load();
        assert_eq!((load.running, load.alive), (0, 2));
        // Both slots are free, but no instance is: a new event waits, a
        // host event too (it is never refused, but it cannot overcommit).
        let user = starting(&s, "c", false);
        let host = starting(&s, "c", true);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!user.is_finished() && !host.is_finished());
        assert_eq!(s.load().alive, 2);
        // An event that holds an instance still runs again (it is not
        // stuck behind those that wait for one) and, ending, lets one in.
        release_a.send(()).unwrap();
        call_a.await.unwrap();
        assert_eq!(s.load().running, 1);
        drop(a);
        let started = tokio::time::timeout(Duration::from_secs(5), async {
            tokio::select! {
                r = &mut { user } => r.unwrap(),
                r = &mut { host } => r.unwrap(),
            }
        });
        started
            .await
            .expect("an event starts once an instance frees")
            .unwrap();
        release_b.send(()).unwrap();
        call_b.await.unwrap();
        drop(b);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let load = s.load();
        assert_eq!((load.running, load.alive, load.pending), (0, 0, 0));
        assert!(s.inner.lock().apps.is_empty());
    }

    #[tokio::test]
    async fn an_app_waiting_on_its_backend_keeps_only_its_share_of_instances() {
        let s = Scheduler::new(SchedulerConfig {
            instances: 4,
            instances_per_app: 2,
            ..config(1)
        });
        let (h1, release_h1, call_h1) = parked(&s, "heavy").await;
        let (_h2, _release_h2, _call_h2) = parked(&s, "heavy").await;
        let third = starting(&s, "heavy", false);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!third.is_finished(), "the heavy app is at its share");
        // Another app starts at once, on the instances left.
        let light = tokio::time::timeout(Duration::from_millis(100), s.start("light", false))
            .await
            .expect("the light app is not held up")
            .unwrap();
        assert_eq!(s.load().alive, 3);
        drop(light);
        // When one of the heavy app's events ends, its next starts.
        release_h1.send(()).unwrap();
        call_h1.await.unwrap();
        drop(h1);
        third.await.unwrap().unwrap();
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
