//! `http`: requests to the provider's own backend, to the origins the
//! manifest lists, through the host's egress (which enforces origins,
//! addresses, redirects, sizes, time and the app's rate). The user agrees
//! once per app; every request goes into the audit log, and so into the
//! user's access log as "contacted ORIGIN", refused ones included.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};

use superapp_core::{Capability, ConsentLevel, Manifest};
use superapp_sdk::assertion::{self, Assertion};
use superapp_services::audit::{Audit, Event};
use superapp_services::documents::HostKey;
use superapp_services::egress::{self, Egress, EgressError, Exchange};
use superapp_services::identity::Pseudonyms;

use super::{BoxFuture, HostState, Registration};
use crate::bindings::superapp::plugin::http::{self as wit, Method, Request, Response};
use crate::bindings::superapp::plugin::types::Error;

/// Consent: the user agrees once per app to its contacting the listed
/// origins (the prompt names them), and may revoke that.
pub const REGISTRATION: Registration = Registration {
    consent: ConsentLevel::OncePerApp,
    link: add_to_linker,
};

pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

impl wit::Host for HostState {
    async fn fetch(&mut self, req: Request) -> wasmtime::Result<Result<Response, Error>> {
        let args = format!("{:?} {}", req.method, req.url);
        if let Err(e) = self.require_with(Capability::Http, Some(args.as_bytes())) {
            return Ok(Err(e));
        }
        let request = egress::Request {
            method: match req.method {
                Method::Get => egress::Method::Get,
                Method::Head => egress::Method::Head,
                Method::Post => egress::Method::Post,
                Method::Put => egress::Method::Put,
                Method::Patch => egress::Method::Patch,
                Method::Delete => egress::Method::Delete,
            },
            url: req.url,
            headers: req.headers,
            body: req.body,
            timeout: req
                .timeout_ms
                .map(|ms| Duration::from_millis(u64::from(ms))),
        };
        let time_left = self.time_left();
        let http = self.services.http.clone();
        let fetch = http.fetch(&self.user, &self.app, request, time_left);
        // Waiting on the backend uses no core: give the run slot to others
        // meanwhile (the wait still counts against the event's time).
        let result = match self.deadline.as_ref().map(|(turn, _)| turn.clone()) {
            Some(turn) => turn.off_slot(fetch).await,
            None => fetch.await,
        };
        Ok(result.map(|r| Response {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }))
    }

    async fn origins(&mut self) -> wasmtime::Result<Result<Vec<String>, Error>> {
        // The app's own manifest, which its auditors and users already see:
        // declared is enough, nothing about the user is told.
        if let Err(e) = self.require_level(Capability::Http, ConsentLevel::None, None) {
            return Ok(Err(e));
        }
        Ok(Ok(self
            .app
            .origins()
            .iter()
            .map(|o| o.to_string())
            .collect()))
    }
}

/// Sends the `http` capability's requests. The error is what the
/// mini-program sees.
pub trait HttpGateway: Send + Sync {
    fn fetch<'a>(
        &'a self,
        user: &'a str,
        app: &'a Manifest,
        request: egress::Request,
        time_left: Duration,
    ) -> BoxFuture<'a, Result<egress::Response, Error>>;
}

/// Where the host has no egress (the provider's dev loop): every request
/// answers `unavailable`.
pub struct NoHttp;

impl HttpGateway for NoHttp {
    fn fetch<'a>(
        &'a self,
        _: &'a str,
        _: &'a Manifest,
        _: egress::Request,
        _: Duration,
    ) -> BoxFuture<'a, Result<egress::Response, Error>> {
        Box::pin(async {
            Err(Error::Unavailable(
                "http needs the host's egress: try it on `superapp serve`".into(),
            ))
        })
    }
}

/// The gateway: the egress, the host key that signs each request's
/// assertion, and the audit log every hop is written to (the server's), or
/// none (the provider's dev loop, which logs each hop instead).
pub struct Gateway {
    pub egress: Arc<Egress>,
    pub host_key: Arc<HostKey>,
    pub pseudonyms: Pseudonyms,
    pub audit: Option<Arc<Audit>>,
}

impl Gateway {
    fn record(&self, user: &str, app: &Manifest, exchange: &Exchange) -> Result<(), Error> {
        let Some(audit) = &self.audit else {
            for hop in &exchange.hops {
                tracing::info!(
                    origin = %hop.origin,
                    path = %hop.path,
                    status = ?hop.status,
                    refused = ?hop.refused,
                    "http request"
                );
            }
            return Ok(());
        };
        let version = app.version.to_string();
        for hop in &exchange.hops {
            let outcome = match (&hop.refused, hop.status) {
                (Some(_), _) => "refused",
                (None, Some(_)) => "allowed",
                (None, None) => "failed",
            };
            let mut event = Event::for_app("http.request", user, &app.id, &version, outcome)
                .with_capability(Capability::Http)
                .with_detail("origin", &hop.origin)
                .with_detail("path", &hop.path)
                .with_detail("method", format!("{:?}", hop.method).to_uppercase())
                .with_detail("sent", hop.sent.to_string())
                .with_detail("received", hop.received.to_string())
                .with_detail("ms", hop.elapsed.as_millis().to_string());
            if let Some(status) = hop.status {
                event = event.with_detail("status", status.to_string());
            }
            if let Some(reason) = &hop.refused {
                event = event.with_detail("reason", reason.chars().take(300).collect::<String>());
            }
            audit.append(event).map_err(|e| {
                tracing::error!(error = %e, "cannot record a request in the audit log");
                Error::Unavailable("the host cannot record this request right now".into())
            })?;
        }
        Ok(())
    }
}

impl HttpGateway for Gateway {
    fn fetch<'a>(
        &'a self,
        user: &'a str,
        app: &'a Manifest,
        request: egress::Request,
        time_left: Duration,
    ) -> BoxFuture<'a, Result<egress::Response, Error>> {
        Box::pin(async move {
            let sub = self.pseudonyms.for_app(user, &app.id);
            let sign = |audience: &str| {
                let claim = Assertion::new(&app.id, &sub, audience, superapp_core::now_secs());
                vec![(
                    egress::ASSERTION_HEADER,
                    assertion::encode(&self.host_key.sign(&claim)),
                )]
            };
            let exchange = self
                .egress
                .fetch(&app.id, app.origins(), request, time_left, &sign)
                .await;
            // The record comes first: a request the log cannot hold is not
            // handed to the app as if nothing happened.
            self.record(user, app, &exchange)?;
            exchange.result.map_err(|e| match e {
                EgressError::Denied(m) => Error::Denied(m),
                EgressError::Invalid(m) => Error::Invalid(m),
                EgressError::Limited(m) => Error::QuotaExceeded(m),
                EgressError::Unavailable(m) => Error::Unavailable(m),
            })
        })
    }
}
