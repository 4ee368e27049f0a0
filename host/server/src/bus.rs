//! The bus between host processes that share one store (`serve --bus
//! nats://…`): NATS carries live pushes from the process where a message
//! was stored to the processes where its members are connected.
//!
//! Each user has a subject, `superapp.NAMESPACE.push.` + the user id in
//! hex, where the namespace is the deployment's (every process on one
//! store has the same, see `Host::bus_namespace`), so that deployments
//! sharing a NATS server keep apart (the namespace is no access control:
//! the bus is trusted, each deployment gets its own NATS account). A
//! process subscribes to the subjects of the users who have a WebSocket
//! session on it (the hub says when the first opens and the last closes),
//! and publishes each frame to the subjects of its recipients, so traffic
//! goes only where someone listens. The connection is made with `no_echo`:
//! a process never receives its own frames back, it has delivered them
//! locally already.
//!
//! The same subject carries notices that some of the user's sessions
//! ended (a logout, a password change), marked by a header, so that their
//! live connections on other processes close at once; each process checks
//! the store before it closes anything.
//!
//! The bus is a hint, never the record: a frame is published only after
//! the message is durable in the store, a frame lost on the way (the bus
//! restarting, a full outbox, a subscription not yet registered) costs
//! only its push, and clients catch up from the store by sequence number.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::Context as _;
use futures_util::StreamExt;
use superapp_services::identity::{Identity, SessionRelay};
use superapp_services::messaging::{Frame, Hub, Relay};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Frames waiting to be published before new ones are dropped.
const OUTBOX: usize = 16 * 1024;

/// How long the connection may be silent before the client pings the
/// server. The client gives a connection up after three unanswered pings,
/// so a bus that hangs (its process stopped, a partition that drops rather
/// than refuses) is "away" within about three of these, and live
/// connections check their sessions in the store until it is back. Any
/// traffic from the server counts as an answer, so a busy bus sends no
/// pings; an idle one sends one small frame per interval.
const PING_INTERVAL: Duration = Duration::from_secs(2);

/// The header that marks a message on a user's subject as a notice that
/// some of their sessions ended (its payload the notice), not a push.
const SESSION_ENDED: &str = "Superapp-Session-Ended";

/// The first byte of a notice's payload (see [`publish_all`]).
const NOT_TEXT: u8 = 0xFF;

/// What waits in the outbox.
enum Outgoing {
    /// A frame for each of these users' live connections.
    Push(Vec<String>, Frame),
    /// A notice that some of this user's sessions ended.
    Ended(String, bytes::Bytes),
}

/// The subject that carries `user`'s pushes in deployment `namespace`.
pub fn subject(namespace: &str, user: &str) -> String {
    format!("superapp.{namespace}.push.{}", hex::encode(user))
}

/// The hub's relay over NATS.
pub struct NatsRelay {
    client: async_nats::Client,
    namespace: Arc<str>,
    runtime: tokio::runtime::Handle,
    hub: Weak<Hub>,
    identity: Weak<Identity>,
    /// One subscription task per user with a session here.
    watches: Mutex<HashMap<String, JoinHandle<()>>>,
    outbox: mpsc::Sender<Outgoing>,
    /// Frames not published because the outbox was full.
    dropped: AtomicU64,
}

impl NatsRelay {
    /// Connect to the NATS servers at `urls` and attach to `hub` and to
    /// `identity`'s notices of ended sessions. Fails when none answers: a
    /// host meant to share a bus must not serve alone.
    pub async fn connect(
        urls: &[String],
        namespace: &str,
        hub: &Arc<Hub>,
        identity: &Arc<Identity>,
    ) -> anyhow::Result<Arc<NatsRelay>> {
        let client = async_nats::ConnectOptions::new()
            .no_echo()
            .name(format!("superapp {}", std::process::id()))
            .connection_timeout(Duration::from_secs(5))
            .ping_interval(PING_INTERVAL)
            .event_callback(|event| async move {
                tracing::info!(%event, "bus");
            })
            .connect(urls)
            .await
            // The error does not carry the URL, so no credentials leak.
            .context("cannot connect to the bus")?;
        let (outbox, pending) = mpsc::channel(OUTBOX);
        let namespace: Arc<str> = Arc::from(namespace);
        let relay = Arc::new(NatsRelay {
            namespace: namespace.clone(),
            runtime: tokio::runtime::Handle::current(),
            hub: Arc::downgrade(hub),
            identity: Arc::downgrade(identity),
            watches: Mutex::default(),
            outbox,
            dropped: AtomicU64::new(0),
            client: client.clone(),
        });
        tokio::spawn(publish_all(client, namespace, pending));
        hub.set_relay(relay.clone());
        identity.set_session_relay(relay.clone());
        Ok(relay)
    }

    /// The connection to the bus, for the work queue (`crate::work`).
    pub fn client(&self) -> async_nats::Client {
        self.client.clone()
    }

    /// Frames dropped because the outbox was full (each cost only its push).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn watches(&self) -> std::sync::MutexGuard<'_, HashMap<String, JoinHandle<()>>> {
        self.watches.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, outgoing: Outgoing) {
        if self.outbox.try_send(outgoing).is_err()
            && self
                .dropped
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(1024)
        {
            tracing::warn!(
                "the bus's outbox is full; pushes are dropped and clients catch up from the store"
            );
        }
    }
}

/// Publish what the hub and the identity service forward, in order, one
/// subject per recipient.
async fn publish_all(
    client: async_nats::Client,
    namespace: Arc<str>,
    mut pending: mpsc::Receiver<Outgoing>,
) {
    while let Some(outgoing) = pending.recv().await {
        let sent = match outgoing {
            Outgoing::Push(users, frame) => {
                let payload = bytes::Bytes::copy_from_slice(frame.as_bytes());
                let mut sent = Ok(());
                for user in &users {
                    let published = client
                        .publish(subject(&namespace, user), payload.clone())
                        .await;
                    sent = sent.and(published);
                }
                sent
            }
            Outgoing::Ended(user, notice) => {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(SESSION_ENDED, "1");
                // A first byte no UTF-8 text has: a process of an earlier
                // version, which knows no such header, drops it rather than
                // pushing it to the user as a frame.
                let payload = [&[NOT_TEXT][..], &notice].concat();
                client
                    .publish_with_headers(subject(&namespace, &user), headers, payload.into())
                    .await
            }
        };
        if let Err(e) = sent {
            tracing::warn!(error = %e, "cannot publish on the bus; clients catch up from the store");
        }
    }
}

impl SessionRelay for NatsRelay {
    fn ended(&self, user: &str, notice: &[u8]) {
        self.send(Outgoing::Ended(
            user.to_string(),
            bytes::Bytes::copy_from_slice(notice),
        ));
    }
}

impl Relay for NatsRelay {
    fn forward(&self, users: &[String], frame: &Frame) {
        self.send(Outgoing::Push(users.to_vec(), frame.clone()));
    }

    fn hears_other_processes(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    fn watch(&self, user: &str) {
        let (client, hub, who) = (self.client.clone(), self.hub.clone(), user.to_string());
        let identity = self.identity.clone();
        let subject = subject(&self.namespace, user);
        let task = self.runtime.spawn(async move {
            // Until it holds (the task ends with the user's last session):
            // pushes from other nodes meanwhile are missed, not the record.
            let mut wait = Duration::from_millis(100);
            let mut frames = loop {
                match client.subscribe(subject.clone()).await {
                    Ok(s) => break s,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot subscribe on the bus; retrying, and this user's pushes from other nodes are missed meanwhile");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(5));
                    }
                }
            };
            let to = [who];
            while let Some(message) = frames.next().await {
                let ended = message
                    .headers
                    .as_ref()
                    .is_some_and(|h| h.get(SESSION_ENDED).is_some());
                if ended {
                    let notice = message.payload.strip_prefix(&[NOT_TEXT]);
                    if let (Some(identity), Some(notice)) = (identity.upgrade(), notice) {
                        identity.ended_elsewhere(&to[0], Arc::from(notice));
                    }
                    continue;
                }
                let (Some(hub), Ok(text)) = (hub.upgrade(), std::str::from_utf8(&message.payload))
                else {
                    continue;
                };
                hub.deliver(&to, &Frame::from(text));
            }
        });
        if let Some(old) = self.watches().insert(user.to_string(), task) {
            old.abort();
        }
    }

    fn unwatch(&self, user: &str) {
        // Dropping the subscriber (with its task) unsubscribes.
        if let Some(task) = self.watches().remove(user) {
            task.abort();
        }
    }
}
