//! Payment orders: what the `payments` capability creates. A request makes
//! a pending order and, in the same transaction, the host-drawn sheet the
//! user answers (the prompt's id is the order id). Nothing moves until the
//! user confirms with their password; confirming writes the payment's two
//! legs, the order and the sheet in one transaction. Unanswered orders
//! expire. Refunds move money back from the publisher's merchant account,
//! never more in total than was paid.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    apply, check_amount, check_currency, AccountRef, LedgerError, TransferKind, TransferRequest,
};
use crate::audit::{self, Audit, Event};
use crate::callbacks;
use crate::prompts::{self, PaymentSheet, Prompt, PromptBody, PromptStatus};
use superapp_core::{now_secs, Capability, Manifest};
use superapp_store::{txn_get, txn_put, Abort, Store, StoreError, Tree, Txn};

/// How long a user has to answer a payment sheet, unless configured.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);
/// The shortest time an app may give a user to confirm.
pub const MIN_EXPIRES_IN: Duration = Duration::from_secs(60);
/// Longest description, in bytes.
pub const MAX_DESCRIPTION: usize = 200;
/// Longest idempotency key, in bytes.
pub const MAX_KEY: usize = 128;

/// The trees of a step of an order that moves no money (its audit entry's
/// are added by `audit::with`).
const ORDER_TREES: [Tree; 3] = [Tree::Orders, Tree::Prompts, Tree::PromptIndex];

/// The trees confirming or refunding an order touches.
const CONFIRM_TREES: [Tree; 7] = [
    Tree::Orders,
    Tree::Prompts,
    Tree::PromptIndex,
    Tree::Accounts,
    Tree::Postings,
    Tree::Transfers,
    Tree::Deliveries,
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "reason", rename_all = "kebab-case")]
pub enum OrderState {
    Pending,
    Paid,
    Declined,
    Expired,
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub app: String,
    pub app_version: String,
    /// Whose merchant account is paid.
    pub publisher: String,
    pub user: String,
    pub amount: u64,
    pub currency: String,
    pub description: String,
    pub idempotency_key: String,
    /// Binds the idempotency key to this request.
    pub request_sha256: String,
    #[serde(flatten)]
    pub state: OrderState,
    /// Refunded so far, in minor units.
    pub refunded: u64,
    pub created_at: u64,
    pub expires_at: u64,
    /// The payment transfer, once paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<String>,
    /// The app's callback URL when the payment was requested: settling and
    /// refunding it notify the provider's backend there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<String>,
}

/// What a mini-program asks to be paid.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub amount: u64,
    pub currency: String,
    pub description: String,
    pub idempotency_key: String,
    /// How long the user has to confirm, if the app wants less than the
    /// host's limit.
    pub expires_in: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("{0}")]
    Invalid(String),
    #[error("this idempotency key was already used for a different request")]
    KeyReused,
    #[error("no such order")]
    NotFound,
    #[error("this order was not paid to your publisher")]
    NotYours,
    #[error("the order is no longer pending")]
    NotPending,
    #[error("the order has not been paid")]
    NotPaid,
    #[error("refunds would exceed the amount paid ({paid}, refunded so far {refunded})")]
    RefundTooLarge { paid: u64, refunded: u64 },
    #[error(transparent)]
    Ledger(LedgerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<LedgerError> for OrderError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Store(e) => OrderError::Store(e),
            other => OrderError::Ledger(other),
        }
    }
}

impl From<Abort<OrderError>> for OrderError {
    fn from(e: Abort<OrderError>) -> Self {
        match e {
            Abort::User(e) => e,
            Abort::Store(e) => OrderError::Store(e),
        }
    }
}

fn order_key(id: &str) -> Vec<u8> {
    format!("o\0{id}").into_bytes()
}

/// An idempotency key: what a client names a request by, not text, but
/// shown in the audit log and sent on to the provider.
fn valid_key(key: &str) -> bool {
    superapp_core::text::valid_key(key, MAX_KEY)
}

/// A refund's idempotency key, per order.
fn refund_key(order: &str, key: &str) -> Vec<u8> {
    format!("f\0{order}\0{key}").into_bytes()
}

fn idempotency_key(app: &str, user: &str, key: &str) -> Vec<u8> {
    format!("k\0{app}\0{user}\0{key}").into_bytes()
}

/// The expiry index: pending orders by the time they expire.
fn expiry_key(expires_at: u64, id: &str) -> Vec<u8> {
    superapp_store::deadlines::deadline_key(expires_at, id)
}

fn load(txn: &dyn Txn, id: &str) -> Result<Order, Abort<OrderError>> {
    txn_get::<Order>(txn, Tree::Orders, &order_key(id))?.ok_or(Abort::User(OrderError::NotFound))
}

/// Move a pending order to a final state, with its sheet and expiry entry.
fn close(txn: &dyn Txn, order: &mut Order, state: OrderState) -> Result<(), StoreError> {
    let status = match state {
        OrderState::Paid => PromptStatus::Approved,
        OrderState::Expired => PromptStatus::Expired,
        _ => PromptStatus::Denied,
    };
    order.state = state;
    txn_put(txn, Tree::Orders, &order_key(&order.id), &*order)?;
    txn.delete(Tree::Orders, &expiry_key(order.expires_at, &order.id))?;
    prompts::set_status(txn, &order.user, &order.id, status)
}

/// The audit entry of one step of an order.
fn event(kind: &str, order: &Order, outcome: &str, amount: u64) -> Event {
    Event::for_app(kind, &order.user, &order.app, &order.app_version, outcome)
        .with_capability(Capability::Payments)
        .with_detail("order", &order.id)
        .with_detail("amount", amount.to_string())
        .with_detail("currency", &order.currency)
        .with_detail("merchant", &order.publisher)
}

/// [`apply`], with the ledger's refusals as order errors.
fn transfer(t: &dyn Txn, req: &TransferRequest) -> Result<super::Transfer, Abort<OrderError>> {
    apply(t, req).map_err(|e| match e {
        Abort::User(e) => Abort::User(OrderError::from(e)),
        Abort::Store(e) => Abort::Store(e),
    })
}

pub struct Orders {
    store: Arc<Store>,
    audit: Arc<Audit>,
    ttl: Duration,
}

impl Orders {
    pub fn new(store: Arc<Store>, audit: Arc<Audit>, ttl: Duration) -> Orders {
        Orders { store, audit, ttl }
    }

    /// Audit one step of an order, in the step's own transaction `t`;
    /// `amount` is what this step moved.
    fn record_in(
        &self,
        t: &dyn Txn,
        kind: &str,
        order: &Order,
        outcome: &str,
        amount: u64,
    ) -> Result<(), StoreError> {
        self.audit
            .append_in(t, event(kind, order, outcome, amount))
            .map(|_| ())
    }

    pub fn get(&self, id: &str) -> Result<Option<Order>, OrderError> {
        Ok(self.store.get(Tree::Orders, &order_key(id))?)
    }

    /// Create a pending order and its payment sheet, or return the order an
    /// earlier request with the same idempotency key created.
    pub fn request(&self, user: &str, app: &Manifest, new: &NewOrder) -> Result<Order, OrderError> {
        check_amount(new.amount)?;
        check_currency(&new.currency)?;
        if superapp_core::text::visible_chars(&new.description) == 0
            || new.description.len() > MAX_DESCRIPTION
        {
            return Err(OrderError::Invalid(format!(
                "a description is 1 to {MAX_DESCRIPTION} bytes, some of it visible"
            )));
        }
        // The host's payment sheet shows it in a sentence of its own: it
        // may not change how that sentence reads.
        if new
            .description
            .chars()
            .any(superapp_core::text::disallowed_in_label)
            || superapp_core::text::stacks_marks(&new.description)
        {
            return Err(OrderError::Invalid(
                "a description is one line without control or text-direction characters, and stacks at most 4 marks on a character (more draw over the sheet's other lines)".into(),
            ));
        }
        if !valid_key(&new.idempotency_key) {
            return Err(OrderError::Invalid(format!(
                "an idempotency key is 1 to {MAX_KEY} bytes without control or invisible characters"
            )));
        }
        if new.expires_in.is_some_and(|t| t < MIN_EXPIRES_IN) {
            return Err(OrderError::Invalid(format!(
                "an order gives the user at least {} seconds to confirm",
                MIN_EXPIRES_IN.as_secs()
            )));
        }
        let digest = crate::audit::digest_hex(
            serde_json::json!([new.amount, new.currency, new.description])
                .to_string()
                .as_bytes(),
        );
        let now = now_secs();
        let fresh = Order {
            id: superapp_core::new_id(),
            app: app.id.clone(),
            app_version: app.version.to_string(),
            publisher: app.publisher.clone(),
            user: user.to_string(),
            amount: new.amount,
            currency: new.currency.clone(),
            description: new.description.clone(),
            idempotency_key: new.idempotency_key.clone(),
            request_sha256: digest,
            state: OrderState::Pending,
            refunded: 0,
            created_at: now,
            expires_at: now
                + new
                    .expires_in
                    .map_or(self.ttl, |t| t.min(self.ttl))
                    .as_secs(),
            transfer: None,
            callback: app.callback.as_ref().map(|c| c.url.clone()),
        };
        let sheet = PaymentSheet {
            order_id: fresh.id.clone(),
            merchant: fresh.publisher.clone(),
            amount: fresh.amount,
            currency: fresh.currency.clone(),
            description: fresh.description.clone(),
            expires_at: fresh.expires_at,
        };
        let prompt = Prompt::new(
            fresh.id.clone(),
            app,
            Capability::Payments,
            PromptBody::Payment(sheet),
            now,
        );
        let ik = idempotency_key(&app.id, user, &new.idempotency_key);
        let order = self.store.transact(&audit::with(&ORDER_TREES), |t| {
            if let Some(id) = t.get(Tree::Orders, &ik)? {
                let earlier = load(t, &String::from_utf8_lossy(&id))?;
                if earlier.request_sha256 != fresh.request_sha256 {
                    return Err(Abort::User(OrderError::KeyReused));
                }
                return Ok(earlier);
            }
            txn_put(t, Tree::Orders, &order_key(&fresh.id), &fresh)?;
            t.put(Tree::Orders, &ik, fresh.id.as_bytes())?;
            t.put(Tree::Orders, &expiry_key(fresh.expires_at, &fresh.id), b"")?;
            prompts::save(t, user, &prompt)?;
            self.record_in(t, "payment.request", &fresh, "pending", fresh.amount)?;
            Ok(fresh.clone())
        })?;
        Ok(order)
    }

    /// Whether `app` made an order for `user` under this idempotency key.
    pub fn has_key(&self, user: &str, app: &str, key: &str) -> Result<bool, OrderError> {
        Ok(self
            .store
            .get_raw(Tree::Orders, &idempotency_key(app, user, key))?
            .is_some())
    }

    /// The user confirmed (after step-up): pay, or find the order expired.
    /// Returns the order in its new state, `Paid` or `Expired`. Insufficient
    /// funds leave the order pending, so the user can top up and retry.
    pub fn confirm(&self, user: &str, id: &str) -> Result<Order, OrderError> {
        let now = now_secs();
        let result = self
            .store
            .transact(&audit::with(&CONFIRM_TREES), |t| {
                let mut order = load(t, id)?;
                if order.user != user {
                    return Err(Abort::User(OrderError::NotFound));
                }
                if order.state != OrderState::Pending {
                    return Err(Abort::User(OrderError::NotPending));
                }
                if now >= order.expires_at {
                    close(t, &mut order, OrderState::Expired)?;
                    self.record_in(t, "payment.expire", &order, "expired", order.amount)?;
                    return Ok(order);
                }
                let paid = transfer(
                    t,
                    &TransferRequest {
                        kind: TransferKind::Payment,
                        from: AccountRef::user(user, &order.currency),
                        to: AccountRef::merchant(&order.publisher, &order.currency),
                        amount: order.amount,
                        memo: order.description.clone(),
                        order: Some(order.id.clone()),
                        idempotency: Some(("order".into(), order.id.clone())),
                    },
                )?;
                order.transfer = Some(paid.id);
                close(t, &mut order, OrderState::Paid)?;
                self.record_in(t, "payment.confirm", &order, "paid", order.amount)?;
                if let Some(url) = &order.callback {
                    let d = callbacks::new_delivery("payment.settled", url, &order, order.amount);
                    callbacks::enqueue_in(t, &d)?;
                }
                Ok(order)
            })
            .map_err(OrderError::from);
        if let Err(OrderError::Ledger(LedgerError::InsufficientFunds { .. })) = &result {
            // Nothing moved; the attempt is recorded.
            if let Some(order) = self.get(id)? {
                self.audit.append(event(
                    "payment.confirm",
                    &order,
                    "insufficient-funds",
                    order.amount,
                ))?;
            }
        }
        result
    }

    /// The user's step-up failed: recorded, nothing else changes. An error
    /// means it could not be recorded.
    pub fn record_failed_step_up(&self, order: &Order) -> Result<(), OrderError> {
        self.audit.append(event(
            "payment.confirm",
            order,
            "wrong-password",
            order.amount,
        ))?;
        Ok(())
    }

    /// The user declined the sheet.
    pub fn decline(&self, user: &str, id: &str) -> Result<Order, OrderError> {
        let order = self.store.transact(&audit::with(&ORDER_TREES), |t| {
            let mut order = load(t, id)?;
            if order.user != user {
                return Err(Abort::User(OrderError::NotFound));
            }
            if order.state != OrderState::Pending {
                return Err(Abort::User(OrderError::NotPending));
            }
            close(t, &mut order, OrderState::Declined)?;
            self.record_in(t, "payment.decline", &order, "declined", order.amount)?;
            Ok(order)
        })?;
        Ok(order)
    }

    /// Up to `limit` expiry index entries due at `now`, oldest first, as
    /// (deadline, order id); each is closed by [`Orders::expire`].
    pub fn due(&self, now: u64, limit: usize) -> Result<Vec<(u64, String)>, OrderError> {
        Ok(superapp_store::deadlines::due(
            &self.store,
            Tree::Orders,
            now,
            limit,
        )?)
    }

    /// Expire order `id`, indexed as due at `at`, if it is still pending
    /// and its time is up at `now`: the order, its sheet and its audit
    /// entry in one transaction, so however many sweepers race for it, one
    /// closes it. The order when this call closed it; `None` otherwise. An
    /// order settled or gone, or indexed at another time than its own, has
    /// the stale entry dropped; one not yet due is left alone (a job naming
    /// a wrong deadline changes nothing else).
    pub fn expire(&self, at: u64, id: &str, now: u64) -> Result<Option<Order>, OrderError> {
        Ok(self.store.transact(&audit::with(&ORDER_TREES), |t| {
            let order = txn_get::<Order>(t, Tree::Orders, &order_key(id))?;
            match order {
                Some(mut order) if order.state == OrderState::Pending => {
                    if order.expires_at > now {
                        if at != order.expires_at {
                            // Not the order's own entry: a stale one goes.
                            t.delete(Tree::Orders, &expiry_key(at, id))?;
                        }
                        return Ok(None);
                    }
                    close(t, &mut order, OrderState::Expired)?;
                    self.record_in(t, "payment.expire", &order, "expired", order.amount)?;
                    Ok(Some(order))
                }
                _ => {
                    t.delete(Tree::Orders, &expiry_key(at, id))?;
                    Ok::<_, Abort<OrderError>>(None)
                }
            }
        })?)
    }

    /// The status an app sees for one of its publisher's orders.
    pub fn status_for(&self, publisher: &str, id: &str) -> Result<Order, OrderError> {
        let order = self.get(id)?.ok_or(OrderError::NotFound)?;
        if order.publisher != publisher {
            return Err(OrderError::NotYours);
        }
        Ok(order)
    }

    /// Refund `amount` of a paid order from the publisher's merchant account
    /// to the user who paid. The total refunded never exceeds the payment.
    /// `key` makes a retry harmless: the same key with the same amount
    /// refunds once (the order comes back as it stands); with another
    /// amount it is refused.
    pub fn refund(
        &self,
        publisher: &str,
        id: &str,
        amount: u64,
        key: &str,
    ) -> Result<Order, OrderError> {
        check_amount(amount)?;
        if !valid_key(key) {
            return Err(OrderError::Invalid(format!(
                "a refund's idempotency key is 1 to {MAX_KEY} bytes without control or invisible characters"
            )));
        }
        let used_key = refund_key(id, key);
        let order = self.store.transact(&audit::with(&CONFIRM_TREES), |t| {
            let mut order = load(t, id)?;
            if order.publisher != publisher {
                return Err(Abort::User(OrderError::NotYours));
            }
            if let Some(earlier) = txn_get::<u64>(t, Tree::Orders, &used_key)? {
                if earlier != amount {
                    return Err(Abort::User(OrderError::KeyReused));
                }
                return Ok(order);
            }
            if order.state != OrderState::Paid {
                return Err(Abort::User(OrderError::NotPaid));
            }
            let total = order.refunded.saturating_add(amount);
            if total > order.amount {
                return Err(Abort::User(OrderError::RefundTooLarge {
                    paid: order.amount,
                    refunded: order.refunded,
                }));
            }
            transfer(
                t,
                &TransferRequest {
                    kind: TransferKind::Refund,
                    from: AccountRef::merchant(&order.publisher, &order.currency),
                    to: AccountRef::user(&order.user, &order.currency),
                    amount,
                    memo: format!("refund: {}", order.description),
                    order: Some(order.id.clone()),
                    idempotency: Some(("refund".into(), format!("{}\0{key}", order.id))),
                },
            )?;
            order.refunded = total;
            txn_put(t, Tree::Orders, &order_key(&order.id), &order)?;
            txn_put(t, Tree::Orders, &used_key, &amount)?;
            self.record_in(t, "payment.refund", &order, "refunded", amount)?;
            if let Some(url) = &order.callback {
                let d = callbacks::new_delivery("payment.refunded", url, &order, amount);
                callbacks::enqueue_in(t, &d)?;
            }
            Ok(order)
        })?;
        Ok(order)
    }
}
