//! Sending provider callbacks: what is due in the outbox is signed with the
//! host key and POSTed through the egress (the same origin, address and
//! size checks as an app's own requests), then marked delivered or left to
//! be retried. See `superapp_services::callbacks`.

use std::time::Duration;

use superapp_sdk::callbacks::{self as wire, Notification};
use superapp_services::callbacks::Delivery;
use superapp_services::egress::{Method, Request};

use super::{Host, HostError};

impl Host {
    /// Send delivery `id` now, if it is still in the outbox, waiting at
    /// most `timeout`; whether the backend took it (otherwise it is
    /// retried as usual, the attempt on record).
    pub async fn deliver_callback(&self, id: &str, timeout: Duration) -> Result<bool, HostError> {
        let Some(d) = self.callbacks.get(id)? else {
            return Ok(false);
        };
        let result = self.send_callback(&d, timeout).await;
        let delivered = self.record_attempt(&d, result)?;
        self.flush().await?;
        Ok(delivered)
    }

    /// Mark an attempt delivered or failed; whether it was delivered.
    pub(super) fn record_attempt(
        &self,
        d: &Delivery,
        result: Result<u16, (String, Option<u16>)>,
    ) -> Result<bool, HostError> {
        match result {
            Ok(status) => {
                self.callbacks.delivered(d, status)?;
                Ok(true)
            }
            Err((error, status)) => {
                tracing::warn!(delivery = %d.id, url = %d.url, error = %error, "a provider callback failed; it will be retried");
                self.callbacks.failed(d, &error, status)?;
                Ok(false)
            }
        }
    }

    /// One attempt: the backend's status when it took the delivery (2xx).
    pub(super) async fn send_callback(
        &self,
        d: &Delivery,
        timeout: Duration,
    ) -> Result<u16, (String, Option<u16>)> {
        let callback =
            superapp_core::manifest::Callback::parse(&d.url).map_err(|e| (e.to_string(), None))?;
        let notification = Notification {
            id: d.id.clone(),
            kind: d.kind.clone(),
            app: d.app.clone(),
            user: self.services.pseudonyms.for_app(&d.user, &d.app),
            order: d.order.clone(),
            amount: d.amount,
            currency: d.currency.clone(),
            refunded: d.refunded,
            reference: d.reference.clone(),
            at: d.at,
            presentation: d.presentation.clone(),
        };
        let body = serde_json::to_vec(&notification).map_err(|e| (e.to_string(), None))?;
        let t = superapp_core::now_secs();
        let signature = self
            .host_key
            .sign_bytes(&wire::signing_input(&d.id, t, &body));
        let header = wire::header(&d.id, t, &signature);
        let request = Request {
            method: Method::Post,
            url: callback.url.clone(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: Some(body),
            timeout: None,
        };
        let sign = |_: &str| vec![(wire::HEADER, header.clone())];
        let exchange = self
            .egress
            .fetch(
                &format!("{}#callbacks", d.app),
                std::slice::from_ref(&callback.origin),
                request,
                timeout,
                &sign,
            )
            .await;
        match exchange.result {
            Ok(r) if (200..300).contains(&r.status) => Ok(r.status),
            Ok(r) => Err((format!("the backend answered {}", r.status), Some(r.status))),
            Err(e) => Err((e.to_string(), None)),
        }
    }
}
