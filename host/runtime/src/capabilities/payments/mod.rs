//! `payments`: orders the user confirms in a host-drawn sheet. The call
//! only creates the order; money moves when the user confirms with their
//! password, and the app hears the outcome as a `payment` event.

use wasmtime::component::{HasSelf, Linker};

use superapp_core::{Capability, ConsentLevel, Manifest};
use superapp_services::ledger::orders::{NewOrder, OrderState, Orders};

use super::{HostState, Registration};
use crate::bindings::superapp::plugin::payments::{self as wit, OrderStatus, PaymentRequest};
use crate::bindings::superapp::plugin::types::{Error, PaymentOutcome};

/// Consent: every use is confirmed in its own host-drawn sheet, so no
/// standing grant is needed (a recorded refusal still blocks it).
pub const REGISTRATION: Registration = Registration {
    consent: ConsentLevel::EveryUse,
    link: add_to_linker,
};

pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

impl wit::Host for HostState {
    async fn request(&mut self, req: PaymentRequest) -> wasmtime::Result<Result<String, Error>> {
        let args = serde_json::json!([req.amount, req.currency, req.description]).to_string();
        if let Err(e) = self.require_with(Capability::Payments, Some(args.as_bytes())) {
            return Ok(Err(e));
        }
        // Asking again for an order made already (its idempotency key)
        // opens no new sheet, so it takes none of the event's or the
        // user's room for them.
        let again = self
            .services
            .payments
            .has_order(&self.user, &self.app, &req.idempotency_key);
        if !again {
            if let Err(e) = self.take_ask() {
                return Ok(Err(e));
            }
        }
        let order = NewOrder {
            amount: req.amount,
            currency: req.currency,
            description: req.description,
            idempotency_key: req.idempotency_key,
            expires_in: req
                .expires_in
                .map(|s| std::time::Duration::from_secs(u64::from(s))),
        };
        Ok(self.services.payments.request(&self.user, &self.app, order))
    }

    async fn status(&mut self, order_id: String) -> wasmtime::Result<Result<OrderStatus, Error>> {
        if let Err(e) = self.require(Capability::Payments) {
            return Ok(Err(e));
        }
        Ok(self.services.payments.status(&self.app, &order_id))
    }

    async fn refund(
        &mut self,
        order_id: String,
        amount: u64,
        idempotency_key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        if let Err(e) = self.require(Capability::Payments) {
            return Ok(Err(e));
        }
        Ok(self
            .services
            .payments
            .refund(&self.app, &order_id, amount, &idempotency_key))
    }
}

/// The outcome of a settled order, as the WIT contract names it.
pub fn outcome(state: &OrderState) -> Option<PaymentOutcome> {
    match state {
        OrderState::Pending => None,
        OrderState::Paid => Some(PaymentOutcome::Paid),
        OrderState::Declined => Some(PaymentOutcome::Declined),
        OrderState::Expired => Some(PaymentOutcome::Expired),
        OrderState::Failed(reason) => Some(PaymentOutcome::Failed(reason.clone())),
    }
}

/// Takes payment orders for the `payments` capability. The error is what
/// the mini-program sees.
pub trait PaymentDesk: Send + Sync {
    /// Create a pending order and its payment sheet; returns the order id
    /// (of the order made earlier, with no new sheet, for a repeated
    /// request under the same idempotency key).
    fn request(&self, user: &str, app: &Manifest, order: NewOrder) -> Result<String, Error>;
    /// Whether `app` made an order for `user` under this idempotency key.
    fn has_order(&self, _user: &str, _app: &Manifest, _key: &str) -> bool {
        false
    }
    fn status(&self, app: &Manifest, order_id: &str) -> Result<OrderStatus, Error>;
    /// Refund once per idempotency key.
    fn refund(&self, app: &Manifest, order_id: &str, amount: u64, key: &str) -> Result<(), Error>;
}

/// Where no ledger exists (the provider's dev loop): every payment call
/// answers `unavailable`, so an app's handling of that can be tried.
pub struct NoPayments;

impl PaymentDesk for NoPayments {
    fn request(&self, _: &str, _: &Manifest, _: NewOrder) -> Result<String, Error> {
        Err(no_ledger())
    }
    fn status(&self, _: &Manifest, _: &str) -> Result<OrderStatus, Error> {
        Err(no_ledger())
    }
    fn refund(&self, _: &Manifest, _: &str, _: u64, _: &str) -> Result<(), Error> {
        Err(no_ledger())
    }
}

fn no_ledger() -> Error {
    Error::Unavailable("payments need the host's ledger: try them on `superapp serve`".into())
}

/// The server's desk: the ledger's payment orders.
impl PaymentDesk for Orders {
    fn request(&self, user: &str, app: &Manifest, order: NewOrder) -> Result<String, Error> {
        Ok(Orders::request(self, user, app, &order)?.id)
    }

    fn has_order(&self, user: &str, app: &Manifest, key: &str) -> bool {
        // A store error here is met again, and answered, by the request.
        self.has_key(user, &app.id, key).unwrap_or(false)
    }

    fn status(&self, app: &Manifest, order_id: &str) -> Result<OrderStatus, Error> {
        let order = self.status_for(&app.publisher, order_id)?;
        Ok(match outcome(&order.state) {
            None => OrderStatus::Pending,
            Some(_) if order.refunded > 0 => OrderStatus::Refunded(order.refunded),
            Some(o) => OrderStatus::Settled(o),
        })
    }

    fn refund(&self, app: &Manifest, order_id: &str, amount: u64, key: &str) -> Result<(), Error> {
        Ok(Orders::refund(self, &app.publisher, order_id, amount, key).map(|_| ())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::testing::{services, state};

    fn cup() -> PaymentRequest {
        PaymentRequest {
            amount: 300,
            currency: "EUR".into(),
            description: "a cup".into(),
            idempotency_key: "k1".into(),
            expires_in: None,
        }
    }

    #[tokio::test]
    async fn without_a_ledger_a_payment_is_unavailable_not_faked() {
        let services = services(&[]);
        let mut s = state("alice", &[Capability::Payments], &services);
        let answer = wit::Host::request(&mut s, cup()).await.unwrap();
        assert!(matches!(answer, Err(Error::Unavailable(_))), "{answer:?}");
    }

    #[tokio::test]
    async fn payments_are_refused_when_undeclared_or_refused_by_the_user() {
        let mut s = state("alice", &[], &services(&[]));
        let answer = wit::Host::request(&mut s, cup()).await.unwrap();
        assert!(matches!(answer, Err(Error::Denied(_))), "{answer:?}");
        let refused = services(&[Capability::Payments]);
        let mut s = state("alice", &[Capability::Payments], &refused);
        let answer = wit::Host::refund(&mut s, "o1".into(), 1, "k".into())
            .await
            .unwrap();
        assert!(matches!(answer, Err(Error::Denied(_))), "{answer:?}");
    }
}
