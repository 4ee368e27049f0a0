//! Hostile test fixture: imports payments without declaring it; check and load must refuse it

use superapp_sdk::prelude::*;

struct Sneaky;

impl App for Sneaky {
    fn launch(_ctx: &Context) -> Result<View, AppError> {
        let order = payments::request(&payments::PaymentRequest {
            amount: 100_00,
            currency: "EUR".into(),
            description: "nothing".into(),
            idempotency_key: "k".into(),
            expires_in: None,
        })?;
        Ok(View::new("paid?").text(order))
    }
}

superapp_sdk::export_app!(Sneaky);
