//! Live delivery: every connected WebSocket session registers here, and new
//! messages are pushed to each member's sessions through bounded queues. A
//! session whose queue is full is dropped (it resyncs by seq on reconnect),
//! so one slow client never holds up anyone else.
//!
//! Host processes sharing one store also share a [`Relay`] (the server's
//! bus): a frame published here goes to this process's sessions and to the
//! relay, and what the relay brings from other processes is delivered to
//! this process's sessions only. The relay is told which users have
//! sessions here, so it need only bring their frames.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use tokio::sync::mpsc;

/// One frame, shared by every recipient.
pub type Frame = Arc<str>;

struct Conn {
    id: u64,
    tx: mpsc::Sender<Frame>,
    lagged: Arc<AtomicBool>,
}

/// A registered session: its queue, and whether the hub dropped it for
/// lagging. Dropping it unregisters the session, however the session ends.
pub struct Subscription {
    pub id: u64,
    pub rx: mpsc::Receiver<Frame>,
    pub lagged: Arc<AtomicBool>,
    user: String,
    hub: Weak<Hub>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.unsubscribe(&self.user, self.id);
        }
    }
}

/// Carries frames to and from the host's other processes. Its calls are
/// made with the hub's lock held, in order, so they must not wait.
pub trait Relay: Send + Sync {
    /// `frame` for `users`, published in this process.
    fn forward(&self, users: &[String], frame: &Frame);
    /// `user` has a session in this process now (their first).
    fn watch(&self, user: &str);
    /// `user`'s last session in this process has ended.
    fn unwatch(&self, user: &str);
    /// Whether notices of sessions ended in other processes reach this one
    /// now (the bus is connected).
    fn hears_other_processes(&self) -> bool {
        true
    }
}

pub struct Hub {
    queue: usize,
    next: AtomicU64,
    conns: Mutex<HashMap<String, Vec<Conn>>>,
    relay: OnceLock<Arc<dyn Relay>>,
}

impl Hub {
    /// `queue`: frames a session may have waiting before it is dropped.
    pub fn new(queue: usize) -> Hub {
        Hub {
            queue: queue.max(1),
            next: AtomicU64::new(1),
            conns: Mutex::new(HashMap::new()),
            relay: OnceLock::new(),
        }
    }

    /// Connect this hub to the host's other processes; once, before any
    /// session subscribes.
    pub fn set_relay(&self, relay: Arc<dyn Relay>) {
        let _ = self.relay.set(relay);
    }

    /// Whether this hub is connected to other processes (has a relay).
    pub fn relayed(&self) -> bool {
        self.relay.get().is_some()
    }

    /// Whether a session ended in another process would be heard of here
    /// now: always with no other process; with a bus, while it is up. When
    /// not, a live connection checks its session before each push.
    pub fn hears_ended_sessions(&self) -> bool {
        self.relay.get().is_none_or(|r| r.hears_other_processes())
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Conn>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A session with no limit on the user's sessions (the tests' shorthand).
    #[cfg(test)]
    pub fn subscribe(self: &Arc<Self>, user: &str) -> Subscription {
        self.subscribe_within(user, usize::MAX)
            .expect("no session limit")
    }

    /// Register a session for `user` unless they have `max` already.
    pub fn subscribe_within(self: &Arc<Self>, user: &str, max: usize) -> Option<Subscription> {
        let mut conns = self.conns();
        if conns.get(user).map_or(0, Vec::len) >= max {
            return None;
        }
        let (tx, rx) = mpsc::channel(self.queue);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let lagged = Arc::new(AtomicBool::new(false));
        let list = conns.entry(user.to_string()).or_default();
        if list.is_empty() {
            if let Some(relay) = self.relay.get() {
                relay.watch(user);
            }
        }
        list.push(Conn {
            id,
            tx,
            lagged: lagged.clone(),
        });
        Some(Subscription {
            id,
            rx,
            lagged,
            user: user.to_string(),
            hub: Arc::downgrade(self),
        })
    }

    /// `user`'s sessions in this process.
    pub fn sessions_of(&self, user: &str) -> usize {
        self.conns().get(user).map_or(0, Vec::len)
    }

    /// Unregister session `id` (what dropping its subscription does).
    pub fn unsubscribe(&self, user: &str, id: u64) {
        let mut conns = self.conns();
        if let Some(list) = conns.get_mut(user) {
            list.retain(|c| c.id != id);
            if list.is_empty() {
                conns.remove(user);
                if let Some(relay) = self.relay.get() {
                    relay.unwatch(user);
                }
            }
        }
    }

    /// Queue `frame` for every session of every user in `users`, here and
    /// (through the relay) in the host's other processes, never waiting.
    pub fn publish(&self, users: &[String], frame: &Frame) {
        self.publish_from(users, frame, None);
    }

    /// [`Hub::publish`], but the session `origin` (the one a message was
    /// sent through, which answers it with an acknowledgement) gets its
    /// turn to acknowledge ([`Hub::is_ack_turn`]) in the frame's place: at
    /// the point of its stream where the others get the message, so its
    /// acknowledgements and the messages pushed to it stay in seq order.
    pub fn publish_from(&self, users: &[String], frame: &Frame, origin: Option<u64>) {
        let mut conns = self.conns();
        if let Some(relay) = self.relay.get() {
            relay.forward(users, frame);
        }
        self.deliver_locked(&mut conns, users, frame, origin);
    }

    /// Whether `frame` is a session's turn to acknowledge its own send
    /// ([`Hub::publish_from`]) rather than a frame to pass on.
    pub fn is_ack_turn(frame: &Frame) -> bool {
        frame.is_empty()
    }

    /// Queue `frame` for this process's sessions of `users` only: what the
    /// relay brings from another process.
    pub fn deliver(&self, users: &[String], frame: &Frame) {
        let mut conns = self.conns();
        self.deliver_locked(&mut conns, users, frame, None);
    }

    fn deliver_locked(
        &self,
        conns: &mut HashMap<String, Vec<Conn>>,
        users: &[String],
        frame: &Frame,
        origin: Option<u64>,
    ) {
        for user in users {
            let Some(list) = conns.get_mut(user) else {
                continue;
            };
            list.retain(|c| {
                let frame = if Some(c.id) == origin {
                    Frame::from("")
                } else {
                    frame.clone()
                };
                match c.tx.try_send(frame) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        // Dropping the sender ends the session's stream.
                        c.lagged.store(true, Ordering::Relaxed);
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                }
            });
            if list.is_empty() {
                conns.remove(user);
                if let Some(relay) = self.relay.get() {
                    relay.unwatch(user);
                }
            }
        }
    }

    /// Connected sessions, for metrics and tests.
    pub fn sessions(&self) -> usize {
        self.conns().values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_drops_only_that_session() {
        let hub = Arc::new(Hub::new(2));
        let mut slow = hub.subscribe("slow");
        let mut fast = hub.subscribe("fast");
        let users = vec!["slow".to_string(), "fast".to_string()];
        for i in 0..3 {
            let frame: Frame = Arc::from(format!("m{i}"));
            hub.publish(&users, &frame);
            assert_eq!(&*fast.rx.recv().await.unwrap(), format!("m{i}"));
        }
        assert!(slow.lagged.load(Ordering::Relaxed));
        assert_eq!(&*slow.rx.recv().await.unwrap(), "m0");
        assert_eq!(&*slow.rx.recv().await.unwrap(), "m1");
        assert!(
            slow.rx.recv().await.is_none(),
            "the lagging session's stream ends"
        );
        assert_eq!(hub.sessions(), 1);
    }

    #[tokio::test]
    async fn the_session_a_frame_came_from_gets_its_turn_instead() {
        let hub = Arc::new(Hub::new(4));
        let mut phone = hub.subscribe("a");
        let mut laptop = hub.subscribe("a");
        let mut other = hub.subscribe("b");
        let users = vec!["a".to_string(), "b".to_string()];
        hub.publish_from(&users, &Arc::from("m1"), Some(phone.id));
        assert_eq!(&*laptop.rx.recv().await.unwrap(), "m1");
        assert_eq!(&*other.rx.recv().await.unwrap(), "m1");
        let turn = phone.rx.try_recv().unwrap();
        assert!(Hub::is_ack_turn(&turn), "the origin got {turn:?}");
        assert!(phone.rx.try_recv().is_err(), "the origin got no echo");
        hub.publish(&users, &Arc::from("m2"));
        assert_eq!(&*phone.rx.recv().await.unwrap(), "m2");
        assert_eq!(hub.sessions(), 3);
    }

    /// A relay that records what it was told.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Relay for Recorder {
        fn forward(&self, users: &[String], frame: &Frame) {
            self.note(format!("forward {} {frame}", users.join(",")));
        }
        fn watch(&self, user: &str) {
            self.note(format!("watch {user}"));
        }
        fn unwatch(&self, user: &str) {
            self.note(format!("unwatch {user}"));
        }
    }

    impl Recorder {
        fn note(&self, what: String) {
            self.0.lock().unwrap().push(what);
        }
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    #[test]
    fn a_user_holds_at_most_the_sessions_allowed_and_a_dropped_one_frees_its_place() {
        let hub = Arc::new(Hub::new(1));
        let first = hub.subscribe_within("a", 2).unwrap();
        let second = hub.subscribe_within("a", 2).unwrap();
        assert!(hub.subscribe_within("a", 2).is_none());
        assert!(hub.subscribe_within("b", 2).is_some(), "per user");
        assert_eq!(hub.sessions_of("a"), 2);
        drop(first);
        assert_eq!(hub.sessions_of("a"), 1);
        let third = hub.subscribe_within("a", 2).expect("a place came free");
        drop((second, third));
        assert_eq!(hub.sessions(), 0);
    }

    #[tokio::test]
    async fn the_relay_watches_users_with_sessions_and_carries_published_frames_only() {
        let hub = Arc::new(Hub::new(1));
        let relay = Arc::new(Recorder::default());
        hub.set_relay(relay.clone());
        let a1 = hub.subscribe("a");
        let mut a2 = hub.subscribe("a");
        assert_eq!(
            relay.take(),
            ["watch a"],
            "one watch per user, not per session"
        );
        let users = vec!["a".to_string(), "b".to_string()];
        hub.publish(&users, &Arc::from("m1"));
        assert_eq!(relay.take(), ["forward a,b m1"]);
        // What the relay brings is delivered here and not sent back out.
        hub.unsubscribe("a", a1.id);
        assert!(relay.take().is_empty(), "a still has a session");
        assert_eq!(&*a2.rx.recv().await.unwrap(), "m1");
        hub.deliver(&users, &Arc::from("m2"));
        assert!(
            relay.take().is_empty(),
            "delivered frames are not forwarded"
        );
        assert_eq!(&*a2.rx.recv().await.unwrap(), "m2");
        // The last session dropped for lagging ends the watch too.
        hub.deliver(&users, &Arc::from("m3"));
        hub.deliver(&users, &Arc::from("m4"));
        assert_eq!(relay.take(), ["unwatch a"]);
        assert_eq!(hub.sessions(), 0);
    }
}
