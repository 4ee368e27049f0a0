//! Provider callbacks: the outbox of notifications to apps' backends.
//!
//! A payment that settles or is refunded puts a [`Delivery`] in the outbox
//! in the same transaction that moves the money, so no settled payment can
//! go unannounced and no notification can announce money that did not
//! move. A document a user shares with an app whose manifest delivers
//! documents to its backend goes out the same way, in the transaction that
//! closes the request, instead of to the app. A sender (the server's)
//! takes what is due, signs and POSTs it, and removes it only when the
//! backend answered 2xx; a failure is retried with doubling waits (1 s up
//! to an hour) for a day, then abandoned. Every attempt is in the audit log. Delivery is at least once: a backend skips
//! an id it has already applied (`superapp_sdk::callbacks`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use superapp_core::{new_id, now_secs};
use superapp_store::deadlines::{deadline_key, due};
use superapp_store::{txn_get, txn_put, Abort, Store, StoreError, Tree, Txn};

use crate::audit::{self, Audit, Event};

/// How long a delivery is retried before it is abandoned.
pub const MAX_AGE_SECS: u64 = 24 * 3600;
/// The longest wait between two attempts.
pub const MAX_BACKOFF_SECS: u64 = 3600;

/// One notification on its way to a backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: String,
    /// `payment.settled`, `payment.refunded` or `document.presented`.
    pub kind: String,
    pub app: String,
    pub app_version: String,
    /// The host's user id; the sender turns it into the app's pseudonym.
    pub user: String,
    pub order: String,
    pub amount: u64,
    pub currency: String,
    pub refunded: u64,
    /// The app's idempotency key of the payment, or its document request id.
    pub reference: String,
    pub at: u64,
    /// The manifest's callback URL when the payment (or document) was
    /// requested.
    pub url: String,
    /// For `document.presented`: the presentation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presentation: Option<superapp_sdk::credentials::PresentationEnvelope>,
    pub attempts: u32,
    pub next_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

fn record_key(id: &str) -> Vec<u8> {
    [b"d\0".as_slice(), id.as_bytes()].concat()
}

/// The wait after `attempts` failed attempts.
pub fn backoff_secs(attempts: u32) -> u64 {
    1u64.checked_shl(attempts.min(31))
        .unwrap_or(u64::MAX)
        .min(MAX_BACKOFF_SECS)
}

/// Put `delivery` in the outbox inside the caller's transaction (which
/// must include [`Tree::Deliveries`]).
pub fn enqueue_in(t: &dyn Txn, delivery: &Delivery) -> Result<(), StoreError> {
    txn_put(t, Tree::Deliveries, &record_key(&delivery.id), delivery)?;
    t.put(
        Tree::Deliveries,
        &deadline_key(delivery.next_at, &delivery.id),
        b"",
    )
}

/// A new delivery of `kind` about `order` (`amount`: the payment, or this
/// refund), due now.
pub fn new_delivery(
    kind: &str,
    url: &str,
    order: &crate::ledger::orders::Order,
    amount: u64,
) -> Delivery {
    let now = now_secs();
    Delivery {
        id: new_id(),
        kind: kind.into(),
        app: order.app.clone(),
        app_version: order.app_version.clone(),
        user: order.user.clone(),
        order: order.id.clone(),
        amount,
        currency: order.currency.clone(),
        refunded: order.refunded,
        reference: order.idempotency_key.clone(),
        at: now,
        url: url.into(),
        presentation: None,
        attempts: 0,
        next_at: now,
        last_error: None,
    }
}

/// How long after a `document.presented` delivery is queued the periodic
/// sender may take it: the host sends it itself first, as the sheet is
/// answered, within this time.
pub const INLINE_SECS: u64 = 5;

/// A `document.presented` delivery of what the user shared for `request`,
/// left to the periodic sender only after [`INLINE_SECS`]. The payment
/// fields are empty; `reference` is the request id.
pub fn document_delivery(
    url: &str,
    request: &crate::documents::requests::DocRequest,
    envelope: &superapp_sdk::credentials::PresentationEnvelope,
) -> Delivery {
    let now = now_secs();
    Delivery {
        id: new_id(),
        kind: "document.presented".into(),
        app: request.app.clone(),
        app_version: request.app_version.clone(),
        user: request.user.clone(),
        order: String::new(),
        amount: 0,
        currency: String::new(),
        refunded: 0,
        reference: request.id.clone(),
        at: now,
        url: url.into(),
        presentation: Some(envelope.clone()),
        attempts: 0,
        next_at: now + INLINE_SECS,
        last_error: None,
    }
}

pub struct Callbacks {
    store: Arc<Store>,
    audit: Arc<Audit>,
}

impl Callbacks {
    pub fn new(store: Arc<Store>, audit: Arc<Audit>) -> Callbacks {
        Callbacks { store, audit }
    }

    /// Up to `limit` deliveries due at `now`, oldest first.
    pub fn due(&self, now: u64, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let mut out = Vec::new();
        for (_, id) in due(&self.store, Tree::Deliveries, now, limit)? {
            if let Some(d) = self
                .store
                .get::<Delivery>(Tree::Deliveries, &record_key(&id))?
            {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Delivery `id`, while it is in the outbox.
    pub fn get(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        self.store
            .get::<Delivery>(Tree::Deliveries, &record_key(id))
    }

    /// The backend took it: out of the outbox, with its audit entry.
    pub fn delivered(&self, d: &Delivery, status: u16) -> Result<(), StoreError> {
        self.finish(d, None, |t, current| {
            t.delete(Tree::Deliveries, &record_key(&current.id))?;
            Ok(("delivered", Some(status)))
        })
    }

    /// The attempt failed: retried later, or abandoned after a day.
    pub fn failed(&self, d: &Delivery, error: &str, status: Option<u16>) -> Result<(), StoreError> {
        let now = now_secs();
        // Why, in the audit entry too: bounded, then one line.
        let cut = superapp_core::text::clip(error, 600);
        let why = superapp_core::text::escape_controls(&cut, &[]).into_owned();
        self.finish(d, Some(&why), |t, current| {
            let mut next = current.clone();
            next.attempts += 1;
            next.last_error = Some(why.clone());
            if now.saturating_sub(current.at) >= MAX_AGE_SECS {
                t.delete(Tree::Deliveries, &record_key(&current.id))?;
                return Ok(("abandoned", status));
            }
            next.next_at = now + backoff_secs(current.attempts);
            enqueue_in(t, &next)?;
            Ok(("failed, will retry", status))
        })
    }

    /// Take `d` off its current index slot and apply `change`, with the
    /// attempt's audit entry (and the `error` that failed it), in one
    /// transaction. A delivery another sender
    /// already finished is left alone.
    fn finish(
        &self,
        d: &Delivery,
        error: Option<&str>,
        change: impl Fn(&dyn Txn, &Delivery) -> Result<(&'static str, Option<u16>), StoreError>,
    ) -> Result<(), StoreError> {
        let trees = audit::with(&[Tree::Deliveries]);
        self.store
            .transact(&trees, |t| {
                let Some(current) = txn_get::<Delivery>(t, Tree::Deliveries, &record_key(&d.id))?
                else {
                    return Ok(());
                };
                if current.next_at != d.next_at {
                    return Ok(());
                }
                t.delete(
                    Tree::Deliveries,
                    &deadline_key(current.next_at, &current.id),
                )?;
                let (outcome, status) = change(t, &current)?;
                let mut event = Event::for_app(
                    "callback.deliver",
                    &current.user,
                    &current.app,
                    &current.app_version,
                    outcome,
                )
                .with_detail("delivery", &current.id)
                .with_detail("kind", &current.kind)
                .with_detail("order", &current.order)
                .with_detail("url", &current.url)
                .with_detail("attempt", (current.attempts + 1).to_string());
                if let Some(status) = status {
                    event = event.with_detail("status", status.to_string());
                }
                if let Some(error) = error {
                    event = event.with_detail("error", error);
                }
                self.audit.append_in(t, event)?;
                Ok::<_, Abort<()>>(())
            })
            .map_err(Abort::into_store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(at: u64, next_at: u64) -> Delivery {
        Delivery {
            id: new_id(),
            kind: "payment.settled".into(),
            app: "org.example.app".into(),
            app_version: "1.0.0".into(),
            user: "u".into(),
            order: "o".into(),
            amount: 100,
            currency: "EUR".into(),
            refunded: 0,
            reference: "r".into(),
            at,
            url: "https://api.example.org/cb".into(),
            presentation: None,
            attempts: 0,
            next_at,
            last_error: None,
        }
    }

    #[test]
    fn a_failed_delivery_is_retried_later_and_abandoned_after_a_day() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let audit = Arc::new(Audit::open(store.clone()).unwrap());
        let callbacks = Callbacks::new(store.clone(), audit.clone());
        let now = now_secs();
        let fresh = delivery(now, now);
        let stale = delivery(now - MAX_AGE_SECS - 1, now);
        store
            .transact(&[Tree::Deliveries], |t| {
                enqueue_in(t, &fresh)?;
                enqueue_in(t, &stale)?;
                Ok::<_, Abort<()>>(())
            })
            .unwrap();
        assert_eq!(callbacks.due(now, 10).unwrap().len(), 2);
        callbacks.failed(&fresh, "503", Some(503)).unwrap();
        callbacks.failed(&stale, "503", Some(503)).unwrap();
        // The fresh one waits for its retry; the stale one is gone.
        assert!(callbacks.due(now, 10).unwrap().is_empty());
        let later = callbacks.due(now + backoff_secs(0), 10).unwrap();
        assert_eq!(later.len(), 1);
        assert_eq!(
            (later[0].id.as_str(), later[0].attempts),
            (fresh.id.as_str(), 1)
        );
        let outcomes: Vec<String> = audit
            .for_user("u", None, None, 10)
            .unwrap()
            .entries
            .into_iter()
            .map(|e| e.event.outcome)
            .collect();
        assert!(outcomes.contains(&"abandoned".to_string()), "{outcomes:?}");
        let errors: Vec<Option<String>> = audit
            .for_user("u", None, None, 10)
            .unwrap()
            .entries
            .into_iter()
            .map(|e| e.event.details.get("error").cloned())
            .collect();
        assert_eq!(errors, [Some("503".to_string()), Some("503".to_string())]);
        assert!(
            outcomes.contains(&"failed, will retry".to_string()),
            "{outcomes:?}"
        );
        // A second sender finishing the same attempt changes nothing.
        callbacks.delivered(&fresh, 200).unwrap();
        assert_eq!(callbacks.due(now + 10, 10).unwrap().len(), 1);
    }

    #[test]
    fn waits_double_up_to_an_hour() {
        assert_eq!(
            (0..5).map(backoff_secs).collect::<Vec<_>>(),
            [1, 2, 4, 8, 16]
        );
        assert_eq!(backoff_secs(12), MAX_BACKOFF_SECS);
        assert_eq!(backoff_secs(u32::MAX), MAX_BACKOFF_SECS);
    }
}
