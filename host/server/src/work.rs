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
use tokio::sync::{watch, Semaphore};

use crate::api::AppState;
use crate::host::{Job, AT_ONCE};

/// The streams holding the jobs: this, then the deployment's namespace.
pub const STREAM: &str = "SUPERAPP_WORK_";
/// The durable consumer every process pulls from.
pub const CONSUMER: &str = "workers";
/// How long the stream remembers an id it has taken. A job is offered again
/// every second while it is due, and runs long before this passes.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long a process may hold a job without word before it goes to
/// another one; a running job says it is in progress every third of it.
const ACK_WAIT: Duration = Duration::from_secs(60);
/// Deliveries of one job before the queue drops it (it is offered afresh
/// while it is still due).
const MAX_DELIVER: i64 = 20;
/// Jobs older than this leave the stream (ones still due are offered
/// again), so a stream nobody works on stays bounded.
const MAX_AGE: Duration = Duration::from_secs(3600);
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
                max_age: MAX_AGE,
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
                    max_deliver: MAX_DELIVER,
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

    /// Pull jobs and run them, [`AT_ONCE`] at a time, asking the queue
    /// only for as many as there are free slots (a job waiting in this
    /// process's buffer would run down its ack wait and go to another
    /// process while still here). On shutdown, stop pulling, give back what
    /// was pulled but not started, and let running jobs finish (up to 10 s).
    async fn work(&self, state: AppState) {
        let slots = Arc::new(Semaphore::new(AT_ONCE));
        let mut shutdown = state.shutdown.clone();
        while !*shutdown.borrow() {
            let first = tokio::select! {
                permit = slots.clone().acquire_owned() => permit.expect("the slots are never closed"),
                _ = shutdown.changed() => break,
            };
            let free = slots.available_permits() + 1;
            let pulled = self
                .consumer
                .fetch()
                .max_messages(free)
                .expires(Duration::from_secs(1))
                .messages()
                .await;
            let mut batch = match pulled {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot pull from the work queue");
                    drop(first);
                    if wait_or_stop(&mut shutdown).await {
                        break;
                    }
                    continue;
                }
            };
            let mut permit = Some(first);
            loop {
                let next = tokio::select! {
                    next = batch.next() => next,
                    _ = shutdown.changed() => break,
                };
                let message = match next {
                    Some(Ok(message)) => message,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "the work queue failed");
                        break;
                    }
                    None => break,
                };
                let slot = match permit.take() {
                    Some(slot) => slot,
                    None => slots
                        .clone()
                        .acquire_owned()
                        .await
                        .expect("the slots are never closed"),
                };
                let state = state.clone();
                tokio::spawn(async move {
                    run_one(&state, message).await;
                    drop(slot);
                });
            }
            if *shutdown.borrow() {
                // Pulled, not started: back to the queue at once.
                while let Ok(Some(Ok(message))) =
                    tokio::time::timeout(Duration::from_millis(100), batch.next()).await
                {
                    let _ = message.ack_with(AckKind::Nak(None)).await;
                }
            }
        }
        let running = slots.acquire_many(AT_ONCE as u32);
        if tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .is_err()
        {
            tracing::warn!(
                "jobs still running at shutdown go back to the queue after its ack wait"
            );
        }
    }
}

/// Run one delivered job and settle it with the queue: acknowledged when
/// it ran, refused with a growing delay when it failed (after
/// [`MAX_DELIVER`] tries the queue drops it, and the sweepers offer it
/// afresh while it is still due). While it runs, the queue is told it is
/// in progress, so a slow job is not given to another process.
async fn run_one(state: &AppState, message: jetstream::Message) {
    let delivered = message.info().map(|i| i.delivered).unwrap_or(2);
    let job: Job = match serde_json::from_slice(&message.payload) {
        Ok(job) => job,
        Err(e) => {
            // Not a job this host knows: dropped, never retried.
            tracing::error!(error = %e, "a message on the work queue is not a job");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    let in_progress = async {
        let mut tick = tokio::time::interval(ACK_WAIT / 3);
        tick.tick().await;
        loop {
            tick.tick().await;
            let _ = message.ack_with(AckKind::Progress).await;
        }
    };
    let ran = tokio::select! {
        ran = state.host.run_job(&job, delivered > 1) => ran,
        () = in_progress => unreachable!("the progress loop never ends"),
    };
    let settled = match ran {
        Ok(()) => message.ack().await,
        Err(e) => {
            tracing::warn!(error = %e, job = %job.id(), "a job failed; the queue gives it out again");
            let wait = Duration::from_secs(1u64 << delivered.clamp(1, 6));
            message.ack_with(AckKind::Nak(Some(wait))).await
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
