//! Due work on several host processes (`serve --bus nats://…`): a
//! JetStream work queue, so that each payment-sheet expiry and each
//! provider-callback attempt is done by one process, not by every process
//! whose sweeper saw it due.
//!
//! Every process's sweeper reads what is due from the store each second
//! and offers it to the deployment's stream (`SUPERAPP_WORK_` + its
//! namespace, subjects `superapp.NAMESPACE.work.*`) with the job's id as the
//! message id: JetStream keeps one copy of an id within its duplicate
//! window, however many processes offer it. The stream is a work queue
//! with one durable consumer, `workers`, that every process pulls from, so
//! each job goes to one process; it is acknowledged after it ran (and its
//! effect is durable), and delivered again to some process if that one
//! died or failed first. The store still decides each effect once (see
//! `crate::host::work`), so a job delivered twice does no harm; the queue
//! is what keeps two processes from doing the same work at the same time.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, stream, AckKind};
use futures_util::StreamExt;
use tokio::sync::watch;

use crate::api::AppState;
use crate::host::Job;

/// The streams holding the jobs: this, then the deployment's namespace.
pub const STREAM: &str = "SUPERAPP_WORK_";
/// The durable consumer every process pulls from.
pub const CONSUMER: &str = "workers";
/// How long the stream remembers an id it has taken. A job is offered again
/// every second while it is due, and runs long before this passes.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long a process may hold a job before it goes to another one (a
/// callback attempt takes at most 30 s).
const ACK_WAIT: Duration = Duration::from_secs(60);
/// Jobs one process runs at once.
const AT_ONCE: usize = 16;
/// Jobs of each kind offered per sweep.
const OFFER: usize = 100;

/// The queue, set up on the bus.
pub struct WorkQueue {
    jetstream: jetstream::Context,
    /// `superapp.NAMESPACE.work`: jobs go under it, then their kind.
    subject: String,
    consumer: consumer::PullConsumer,
}

impl WorkQueue {
    /// Create the stream and its consumer where missing (every process
    /// does, the first one creates them).
    pub async fn open(client: async_nats::Client, namespace: &str) -> anyhow::Result<WorkQueue> {
        let jetstream = jetstream::new(client);
        let subject = format!("superapp.{namespace}.work");
        let stream = jetstream
            .get_or_create_stream(stream::Config {
                name: format!("{STREAM}{namespace}"),
                subjects: vec![format!("{subject}.>")],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                duplicate_window: DUPLICATE_WINDOW,
                ..Default::default()
            })
            .await
            .context("cannot set up the work queue on the bus (is JetStream enabled?)")?;
        let consumer = stream
            .get_or_create_consumer(
                CONSUMER,
                consumer::pull::Config {
                    durable_name: Some(CONSUMER.into()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    ..Default::default()
                },
            )
            .await
            .context("cannot set up the work queue's consumer")?;
        Ok(WorkQueue {
            jetstream,
            subject,
            consumer,
        })
    }

    /// Offer what is due and run what the queue hands this process, until
    /// shutdown.
    pub async fn run(self, state: AppState) {
        let queue = Arc::new(self);
        let offering = tokio::spawn(queue.clone().offer_due(state.clone()));
        queue.work(state).await;
        let _ = offering.await;
    }

    /// Each second, offer every due job.
    async fn offer_due(self: Arc<Self>, state: AppState) {
        crate::api::every_second(state, "offer due work", |s| {
            let queue = self.clone();
            async move {
                for job in s.host.due_work(superapp_core::now_secs(), OFFER)? {
                    if let Err(e) = queue.offer(&job).await {
                        tracing::warn!(error = %e, job = %job.id(), "cannot offer due work to the queue; offered again next second");
                        break;
                    }
                }
                Ok(())
            }
        })
        .await;
    }

    /// Put `job` on the queue, once per id, and wait for the stream to
    /// hold it.
    pub async fn offer(&self, job: &Job) -> anyhow::Result<()> {
        let kind = match job {
            Job::ExpireOrder { .. } => "expire-order",
            Job::ExpireRequest { .. } => "expire-request",
            Job::Callback { .. } => "callback",
        };
        let payload = serde_json::to_vec(job)?;
        let publish = jetstream::message::PublishMessage::build()
            .payload(payload.into())
            .message_id(job.id());
        self.jetstream
            .send_publish(format!("{}.{kind}", self.subject), publish)
            .await?
            .await?;
        Ok(())
    }

    /// Pull jobs and run them, [`AT_ONCE`] at a time; start again after a
    /// second when the bus goes away.
    async fn work(&self, state: AppState) {
        let mut shutdown = state.shutdown.clone();
        loop {
            let messages = match self
                .consumer
                .stream()
                .max_messages_per_batch(AT_ONCE)
                .messages()
                .await
            {
                Ok(messages) => messages,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot pull from the work queue");
                    if wait_or_stop(&mut shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            let running = messages.for_each_concurrent(AT_ONCE, |message| {
                let state = state.clone();
                async move {
                    match message {
                        Ok(message) => run_one(&state, message).await,
                        Err(e) => tracing::warn!(error = %e, "the work queue failed"),
                    }
                }
            });
            tokio::select! {
                _ = running => {}
                _ = shutdown.changed() => return,
            }
            if wait_or_stop(&mut shutdown).await {
                return;
            }
        }
    }
}

/// Run one delivered job and settle it with the queue.
async fn run_one(state: &AppState, message: jetstream::Message) {
    let again = message.info().map(|i| i.delivered > 1).unwrap_or(true);
    let job: Job = match serde_json::from_slice(&message.payload) {
        Ok(job) => job,
        Err(e) => {
            // Not a job this host knows: dropped, never retried.
            tracing::error!(error = %e, "a message on the work queue is not a job");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    let settled = match state.host.run_job(&job, again).await {
        Ok(()) => message.ack().await,
        Err(e) => {
            tracing::warn!(error = %e, job = %job.id(), "a job failed; the queue gives it out again");
            message
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await
        }
    };
    if let Err(e) = settled {
        // Unacknowledged, it goes out again after the ack wait.
        tracing::warn!(error = %e, job = %job.id(), "cannot acknowledge a job");
    }
}

/// Wait a second; whether shutdown came first.
async fn wait_or_stop(shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(1)) => false,
        _ = shutdown.changed() => true,
    }
}
