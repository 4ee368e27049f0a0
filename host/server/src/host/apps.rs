//! Running mini-programs for users: launch, user actions, and host events
//! delivered after a prompt is answered or a sheet expires. Every failure
//! of an app is recorded in the audit log.

use superapp_runtime::bindings::superapp::plugin::types::{Action, Event};
use superapp_runtime::view::View;
use superapp_runtime::{App, Call, Invocation, RunError};
use superapp_services::audit::Event as AuditEvent;

use super::{Host, HostError};

/// Longest action name, in bytes.
pub const MAX_ACTION_NAME: usize = 64;

impl Host {
    /// Launch `app` for `invocation.user` and return its first view.
    pub async fn launch(&self, app: &str, invocation: &Invocation) -> Result<View, HostError> {
        self.take_event(&invocation.user)?;
        self.run(app, invocation, Call::Launch).await
    }

    /// Take one launch or action from `user`'s allowance
    /// (`app-events-per-user`): one account's script cannot make the host
    /// run its apps (and write their records) for everyone's share.
    fn take_event(&self, user: &str) -> Result<(), HostError> {
        use governor::clock::{Clock as _, DefaultClock};
        self.events
            .check_key(&user.to_string())
            .map_err(|not_until| {
                let retry_after = not_until.wait_time_from(DefaultClock::default().now());
                HostError::Throttled {
                    per_second: self.events_per_second.get(),
                    burst: not_until.quota().burst_size().get(),
                    retry_after,
                }
            })
    }

    /// Forget users whose allowance is full again.
    pub fn sweep_event_limits(&self) {
        self.events.retain_recent();
        self.events.shrink_to_fit();
        self.services.storage_writes.sweep();
    }

    /// Send `app` a user action, the only event a client may send; host
    /// events (consent answers, payment results) come from the host itself.
    pub async fn act(
        &self,
        app: &str,
        invocation: &Invocation,
        action: Action,
    ) -> Result<View, HostError> {
        let ok = !action.name.is_empty()
            && action.name.len() <= MAX_ACTION_NAME
            && action
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            return Err(HostError::Invalid(format!(
                "an action name is 1-{MAX_ACTION_NAME} letters, digits, `-`, `_` or `.`"
            )));
        }
        self.take_event(&invocation.user)?;
        self.run(app, invocation, Call::Event(Event::Action(action)))
            .await
    }

    /// Run one call; what the app stored (and a failure's audit record) is
    /// durable before this returns.
    async fn run(&self, app: &str, invocation: &Invocation, call: Call) -> Result<View, HostError> {
        let app = self.app_for(&invocation.user, app)?;
        let result = self
            .runtime
            .run(&app, &self.services, invocation, &call)
            .await;
        if let Err(e) = &result {
            self.record_failure(&invocation.user, &app, e)?;
        }
        self.flush().await?;
        Ok(result?)
    }

    /// Deliver a host event to `app` for `user` and return the view it
    /// draws. An app that fails is recorded and yields no view; a removed
    /// app yields none either. The caller flushes.
    pub(super) async fn deliver(
        &self,
        user: &str,
        app: &str,
        event: Event,
        may_ask: bool,
    ) -> Option<View> {
        let app = self.app_for(user, app).ok()?;
        let invocation = Invocation {
            may_ask,
            ..Invocation::new(user.to_string())
        };
        match self
            .runtime
            .run(&app, &self.services, &invocation, &Call::Event(event))
            .await
        {
            Ok(view) => Some(view),
            Err(e) => {
                if let Err(audit) = self.record_failure(user, &app, &e) {
                    tracing::error!(error = %audit, app = %app.manifest().id, "cannot record an app's failure");
                }
                None
            }
        }
    }

    /// Traps, timeouts and limit breaches go into the audit log. A refusal
    /// for overload is not the app's doing and ran nothing: not recorded.
    fn record_failure(&self, user: &str, app: &App, error: &RunError) -> Result<(), HostError> {
        if matches!(error, RunError::Overloaded { .. }) {
            return Ok(());
        }
        let m = app.manifest();
        let version = m.version.to_string();
        let mut event = AuditEvent::for_app("app.failed", user, &m.id, &version, "failed")
            .with_detail("error", error.code());
        if let Some(limit) = error.limit() {
            event = event.with_detail("limit", limit.to_string());
        }
        self.audit.append(event)?;
        Ok(())
    }
}
