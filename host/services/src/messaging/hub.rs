//! Live delivery: every connected WebSocket session registers here, and new
//! messages are pushed to each member's sessions through bounded queues. A
//! session whose queue is full is dropped (it resyncs by seq on reconnect),
//! so one slow client never holds up anyone else.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

/// One frame, shared by every recipient.
pub type Frame = Arc<str>;

struct Conn {
    id: u64,
    tx: mpsc::Sender<Frame>,
    lagged: Arc<AtomicBool>,
}

/// A registered session: its queue, and whether the hub dropped it for lagging.
pub struct Subscription {
    pub id: u64,
    pub rx: mpsc::Receiver<Frame>,
    pub lagged: Arc<AtomicBool>,
}

pub struct Hub {
    queue: usize,
    next: AtomicU64,
    conns: Mutex<HashMap<String, Vec<Conn>>>,
}

impl Hub {
    /// `queue`: frames a session may have waiting before it is dropped.
    pub fn new(queue: usize) -> Hub {
        Hub {
            queue: queue.max(1),
            next: AtomicU64::new(1),
            conns: Mutex::new(HashMap::new()),
        }
    }

    pub fn subscribe(&self, user: &str) -> Subscription {
        let (tx, rx) = mpsc::channel(self.queue);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let lagged = Arc::new(AtomicBool::new(false));
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(user.to_string())
            .or_default()
            .push(Conn {
                id,
                tx,
                lagged: lagged.clone(),
            });
        Subscription { id, rx, lagged }
    }

    pub fn unsubscribe(&self, user: &str, id: u64) {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = conns.get_mut(user) {
            list.retain(|c| c.id != id);
            if list.is_empty() {
                conns.remove(user);
            }
        }
    }

    /// Queue `frame` for every session of every user in `users`, never waiting.
    pub fn publish(&self, users: &[String], frame: &Frame) {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        for user in users {
            let Some(list) = conns.get_mut(user) else {
                continue;
            };
            list.retain(|c| match c.tx.try_send(frame.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // Dropping the sender ends the session's stream.
                    c.lagged.store(true, Ordering::Relaxed);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
            if list.is_empty() {
                conns.remove(user);
            }
        }
    }

    /// Connected sessions, for metrics and tests.
    pub fn sessions(&self) -> usize {
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(Vec::len)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_drops_only_that_session() {
        let hub = Hub::new(2);
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
}
