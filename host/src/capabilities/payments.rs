//! `payments`: orders the user confirms in a host-drawn sheet. The call
//! only creates the order; money moves when the user confirms with their
//! password, and the app hears the outcome as a `payment` event.

use wasmtime::component::{HasSelf, Linker};

use super::{HostState, PaymentDesk};
use crate::bindings::superapp::plugin::payments::{self as wit, OrderStatus, PaymentRequest};
use crate::bindings::superapp::plugin::types::{Error, PaymentOutcome};
use crate::contract::Capability;
use crate::ledger::orders::{NewOrder, OrderError, OrderState, Orders};
use crate::ledger::LedgerError;
use crate::manifest::Manifest;

pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

impl wit::Host for HostState {
    async fn request(&mut self, req: PaymentRequest) -> wasmtime::Result<Result<String, Error>> {
        let args = serde_json::json!([req.amount, req.currency, req.description]).to_string();
        if let Err(e) = self.require_with(Capability::Payments, Some(args.as_bytes())) {
            return Ok(Err(e));
        }
        let order = NewOrder {
            amount: req.amount,
            currency: req.currency,
            description: req.description,
            idempotency_key: req.idempotency_key,
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
    ) -> wasmtime::Result<Result<(), Error>> {
        if let Err(e) = self.require(Capability::Payments) {
            return Ok(Err(e));
        }
        Ok(self.services.payments.refund(&self.app, &order_id, amount))
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

impl From<OrderError> for Error {
    fn from(e: OrderError) -> Self {
        match e {
            OrderError::Invalid(_)
            | OrderError::KeyReused
            | OrderError::NotPending
            | OrderError::NotPaid
            | OrderError::RefundTooLarge { .. } => Error::Invalid(e.to_string()),
            OrderError::NotFound => Error::NotFound(e.to_string()),
            OrderError::NotYours => Error::Denied(e.to_string()),
            OrderError::Ledger(LedgerError::InsufficientFunds { .. }) => {
                Error::Unavailable("the merchant account cannot cover this refund now".into())
            }
            OrderError::Ledger(e) => Error::Invalid(e.to_string()),
            OrderError::Store(e) => {
                tracing::error!(error = %e, "payment store failed");
                Error::Unavailable("payments are temporarily unavailable".into())
            }
        }
    }
}

impl PaymentDesk for Orders {
    fn request(&self, user: &str, app: &Manifest, order: NewOrder) -> Result<String, Error> {
        Ok(Orders::request(self, user, app, &order)?.id)
    }

    fn status(&self, app: &Manifest, order_id: &str) -> Result<OrderStatus, Error> {
        let order = self.status_for(&app.publisher, order_id)?;
        Ok(match outcome(&order.state) {
            None => OrderStatus::Pending,
            Some(_) if order.refunded > 0 => OrderStatus::Refunded(order.refunded),
            Some(o) => OrderStatus::Settled(o),
        })
    }

    fn refund(&self, app: &Manifest, order_id: &str, amount: u64) -> Result<(), Error> {
        Ok(Orders::refund(self, &app.publisher, order_id, amount).map(|_| ())?)
    }
}
