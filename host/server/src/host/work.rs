//! Work that is due at a time rather than asked for by a request: payment
//! and document sheets that expire unanswered, provider callbacks waiting
//! in the outbox. Each piece is a [`Job`] with a stable id, so that on
//! several host processes (see `crate::work`) the processes can offer the
//! same due work and a queue keeps one copy; one process alone runs the
//! jobs itself, every second ([`Host::run_jobs`]).
//!
//! Whoever runs a job, the store decides its effect once: an order or
//! request is closed in a transaction that finds it still pending, and a
//! callback attempt is recorded only against the retry slot it was taken
//! from. A job run twice (a worker that died before it could say it was
//! done) changes nothing the second time, except that the app may be told
//! of the expiry again and the backend may get the delivery again — both
//! are told "at least once" and skip what they have seen.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use superapp_runtime::bindings::superapp::plugin::types::{DocumentOutcome, Event};
use superapp_services::documents::requests::RequestState;
use superapp_services::ledger::orders::OrderState;

use super::{Host, HostError};

/// How long one callback attempt may take.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(30);
/// Jobs one process runs at once.
pub const AT_ONCE: usize = 16;

/// One piece of due work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Job {
    /// Close payment order `id` (indexed as due at `at`) and tell its app.
    ExpireOrder { id: String, at: u64 },
    /// Close document request `id` (indexed as due at `at`) and tell its app.
    ExpireRequest { id: String, at: u64 },
    /// Send delivery `id` from the outbox slot it waits in (`next_at`).
    Callback { id: String, next_at: u64 },
}

impl Job {
    /// The job's identity: the same due work has the same id on every
    /// process; a callback's next attempt (a new slot) is new work.
    pub fn id(&self) -> String {
        match self {
            Job::ExpireOrder { id, .. } => format!("expire-order.{id}"),
            Job::ExpireRequest { id, .. } => format!("expire-request.{id}"),
            Job::Callback { id, next_at } => format!("callback.{id}.{next_at}"),
        }
    }
}

impl Host {
    /// The work due at `now`, oldest first within each kind, at most
    /// `limit` of each.
    pub fn due_work(&self, now: u64, limit: usize) -> Result<Vec<Job>, HostError> {
        let mut jobs = self.due_expiries(now, limit)?;
        jobs.extend(self.due_callbacks(now, limit)?);
        Ok(jobs)
    }

    /// The sheets due to expire at `now`, at most `limit` of each kind.
    pub fn due_expiries(&self, now: u64, limit: usize) -> Result<Vec<Job>, HostError> {
        let orders = self.orders.due(now, limit)?.into_iter();
        let requests = self.requests.due(now, limit)?.into_iter();
        Ok(orders
            .map(|(at, id)| Job::ExpireOrder { id, at })
            .chain(requests.map(|(at, id)| Job::ExpireRequest { id, at }))
            .collect())
    }

    /// The callbacks due at `now`, at most `limit`.
    pub fn due_callbacks(&self, now: u64, limit: usize) -> Result<Vec<Job>, HostError> {
        Ok(self
            .callbacks
            .due(now, limit)?
            .into_iter()
            .map(|d| Job::Callback {
                id: d.id,
                next_at: d.next_at,
            })
            .collect())
    }

    /// Run `jobs` in this process, [`AT_ONCE`] at a time (one host alone,
    /// with no queue between processes). Every job is tried; the first
    /// failure is returned after the others ran.
    pub async fn run_jobs(&self, jobs: &[Job]) -> Result<(), HostError> {
        let mut ran = Vec::with_capacity(jobs.len());
        for batch in jobs.chunks(AT_ONCE) {
            let runs = batch.iter().map(|job| self.run_job(job, false));
            ran.extend(futures_util::future::join_all(runs).await);
        }
        ran.into_iter().collect()
    }

    /// Run `job`. `again` says it may have run before (a queue delivering
    /// it once more): an expiry closed by that earlier run is told to its
    /// app again, since the earlier run may have died before telling it.
    ///
    /// A job is a hint, never an authority: what it names is checked
    /// against the store (an order expires only when pending and past its
    /// own deadline, a callback is sent only from the slot it waits in), so
    /// a job forged on the bus can at most make due work happen sooner
    /// than the next sweep would.
    pub async fn run_job(&self, job: &Job, again: bool) -> Result<(), HostError> {
        let now = superapp_core::now_secs();
        match job {
            Job::ExpireOrder { id, at } => {
                let closed = self.orders.expire(*at, id, now)?;
                self.flush().await?;
                let order = match closed {
                    Some(order) => Some(order),
                    None if again => self
                        .orders
                        .get(id)?
                        .filter(|o| o.state == OrderState::Expired),
                    None => None,
                };
                if let Some(order) = order {
                    self.tell_app(&order).await;
                    self.flush().await?;
                }
            }
            Job::ExpireRequest { id, at } => {
                let closed = self.requests.expire(*at, id, now)?;
                self.flush().await?;
                let request = match closed {
                    Some(request) => Some(request),
                    None if again => self
                        .requests
                        .get(id)?
                        .filter(|r| r.state == RequestState::Expired),
                    None => None,
                };
                if let Some(request) = request {
                    let outcome =
                        DocumentOutcome::Declined("the request expired unanswered".into());
                    self.deliver(&request.user, &request.app, Event::Document(outcome), false)
                        .await;
                    self.flush().await?;
                }
            }
            Job::Callback { id, next_at } => {
                let waiting = self
                    .callbacks
                    .get(id)?
                    .filter(|d| d.next_at == *next_at && d.next_at <= now);
                if let Some(d) = waiting {
                    let result = self.send_callback(&d, CALLBACK_TIMEOUT).await;
                    self.record_attempt(&d, result)?;
                    self.flush().await?;
                }
            }
        }
        Ok(())
    }
}
