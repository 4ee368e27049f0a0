//! `notify`: messages from the app's service account into the user's chat
//! list, and app cards the user shares into a chat they pick, behind the
//! user's consent and two rate limits (per event, and per user per app per
//! hour).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use superapp_core::{Capability, ConsentLevel, Manifest};
use superapp_services::consent::Consent;
use superapp_services::identity::{Limited, Throttle};
use superapp_services::messaging::{Card, Messaging};
use superapp_store::Store;
use wasmtime::component::{HasSelf, Linker};

use super::{unavailable, BoxFuture, HostState, Registration};
use crate::bindings::superapp::plugin::notify as wit;
use crate::bindings::superapp::plugin::types::{AppCard, Error};

/// Longest notification text, in bytes.
pub const MAX_TEXT: usize = 2000;
/// Notifications one event may send.
pub const MAX_PER_EVENT: u32 = 3;
/// Notifications one app may send one user per hour.
pub const MAX_PER_HOUR: u32 = 10;

/// What `notify` counts during one event.
#[derive(Debug, Default)]
pub struct State {
    sent: u32,
}

/// Consent: the user is asked once per app (and again when a version adds
/// it).
pub const REGISTRATION: Registration = Registration {
    consent: ConsentLevel::OncePerApp,
    link: add_to_linker,
};

pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

impl wit::Host for HostState {
    async fn send(
        &mut self,
        text: String,
        card: Option<AppCard>,
    ) -> wasmtime::Result<Result<(), Error>> {
        if let Err(e) = self.require_with(Capability::Notify, Some(text.as_bytes())) {
            return Ok(Err(e));
        }
        if superapp_core::text::visible_chars(&text) == 0 || text.len() > MAX_TEXT {
            return Ok(Err(Error::Invalid(format!(
                "text must be 1 to {MAX_TEXT} bytes, some of it visible"
            ))));
        }
        // As any chat message.
        if text.chars().any(superapp_core::text::disallowed_in_message) {
            return Ok(Err(Error::Invalid(
                "text has control characters (but line breaks and tabs) or direction overrides"
                    .into(),
            )));
        }
        let card = match card.map(checked_card).transpose() {
            Ok(card) => card,
            Err(e) => return Ok(Err(e)),
        };
        self.notify.sent += 1;
        if self.notify.sent > MAX_PER_EVENT {
            return Ok(Err(Error::QuotaExceeded(format!(
                "at most {MAX_PER_EVENT} notifications per event"
            ))));
        }
        let services = self.services.clone();
        Ok(services
            .notifier
            .send(&self.user, &self.app, &text, card)
            .await)
    }

    async fn share_card(&mut self, card: AppCard) -> wasmtime::Result<Result<(), Error>> {
        if let Err(e) = self.require(Capability::Notify) {
            return Ok(Err(e));
        }
        let card = match checked_card(card) {
            Ok(card) => card,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = self.take_ask() {
            return Ok(Err(e));
        }
        let services = self.services.clone();
        Ok(services
            .notifier
            .share_card(&self.user, &self.app, card)
            .await)
    }
}

/// A card as the messaging service keeps it, if it is within bounds.
fn checked_card(card: AppCard) -> Result<Card, Error> {
    let fields = [&card.app_id, &card.title, &card.description];
    let params_ok = card.params.len() <= 16
        && card
            .params
            .iter()
            .all(|(k, v)| !k.is_empty() && k.len() <= 64 && v.len() <= 200);
    if superapp_core::text::visible_chars(&card.title) == 0
        || fields.iter().any(|f| f.len() > 200)
        || !params_ok
    {
        return Err(Error::Invalid(
            "a card has a visible title, fields up to 200 bytes and at most 16 params (names 1-64 bytes, values up to 200)".into(),
        ));
    }
    // The host draws the card, and its share sheet names it in a sentence.
    if fields
        .iter()
        .any(|f| f.chars().any(superapp_core::text::disallowed_in_label))
    {
        return Err(Error::Invalid(
            "a card's app id, title and description are one line each, without control or text-direction characters".into(),
        ));
    }
    Ok(Card {
        app_id: card.app_id,
        title: card.title,
        description: card.description,
        params: card.params,
    })
}

/// Delivers service-account messages into a user's chat list. The error is
/// what the mini-program sees.
pub trait Notifier: Send + Sync {
    fn send<'a>(
        &'a self,
        user: &'a str,
        app: &'a Manifest,
        text: &'a str,
        card: Option<Card>,
    ) -> BoxFuture<'a, Result<(), Error>>;
    /// Ask the user, in a host prompt, which chat to share `card` into.
    fn share_card<'a>(
        &'a self,
        user: &'a str,
        app: &'a Manifest,
        card: Card,
    ) -> BoxFuture<'a, Result<(), Error>>;
}

/// The server's notifier: service-account messages through the messaging
/// path (pushes included), at most [`MAX_PER_HOUR`] per user per app, and
/// share prompts through consent.
pub struct ChatNotifier {
    messaging: Arc<Messaging>,
    consent: Arc<Consent>,
    window: Throttle,
}

impl ChatNotifier {
    /// The window lives in `store` when several host processes share it.
    pub fn new(messaging: Arc<Messaging>, consent: Arc<Consent>, store: &Arc<Store>) -> Self {
        ChatNotifier {
            messaging,
            consent,
            window: Throttle::for_store(store, "notify", MAX_PER_HOUR, Duration::from_secs(3600)),
        }
    }
}

impl Notifier for ChatNotifier {
    fn send<'a>(
        &'a self,
        user: &'a str,
        app: &'a Manifest,
        text: &'a str,
        card: Option<Card>,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let key = format!("{user}\0{}", app.id);
            match self.window.take(&key) {
                Ok(()) => {}
                Err(Limited::Wait(_)) => {
                    return Err(Error::QuotaExceeded(format!(
                        "at most {MAX_PER_HOUR} notifications per hour"
                    )))
                }
                Err(Limited::Store(e)) => return Err(unavailable("notifications", &e)),
            }
            self.messaging
                .notify(user, &app.id, &app.name, text, card)
                .await
                .map(|_| ())
                .map_err(|e| unavailable("notifications", &e))
        })
    }

    fn share_card<'a>(
        &'a self,
        user: &'a str,
        app: &'a Manifest,
        card: Card,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            self.consent
                .ask_share(user, app, card)
                .map_err(|e| unavailable("sharing", &e))
        })
    }
}

/// The dev loop's notifier: keeps messages and prints them to stderr.
#[derive(Default)]
pub struct DevNotifier {
    pub sent: Mutex<Vec<(String, String, String)>>,
}

impl Notifier for DevNotifier {
    fn send<'a>(
        &'a self,
        user: &'a str,
        app: &'a Manifest,
        text: &'a str,
        card: Option<Card>,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            match card {
                Some(card) => eprintln!(
                    "notify [{} -> {user}]: {text} [card: {} {:?}]",
                    app.label(),
                    card.title,
                    card.params
                ),
                None => eprintln!("notify [{} -> {user}]: {text}", app.label()),
            }
            self.sent.lock().unwrap_or_else(|p| p.into_inner()).push((
                user.to_string(),
                app.id.clone(),
                text.to_string(),
            ));
            Ok(())
        })
    }

    fn share_card<'a>(
        &'a self,
        user: &'a str,
        app: &'a Manifest,
        card: Card,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            eprintln!(
                "share card [{} -> {user}]: {} {:?}",
                app.label(),
                card.title,
                card.params
            );
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::testing::{services, state};

    #[tokio::test]
    async fn sending_is_bounded_per_event_and_checks_its_text() {
        let services = services(&[]);
        let mut s = state("alice", &[Capability::Notify], &services);
        let empty = wit::Host::send(&mut s, "  ".into(), None).await.unwrap();
        assert!(matches!(empty, Err(Error::Invalid(_))), "{empty:?}");
        for _ in 0..MAX_PER_EVENT {
            wit::Host::send(&mut s, "booked".into(), None)
                .await
                .unwrap()
                .unwrap();
        }
        let over = wit::Host::send(&mut s, "booked".into(), None)
            .await
            .unwrap();
        assert!(matches!(over, Err(Error::QuotaExceeded(_))), "{over:?}");
        // The next event starts counting again.
        let mut next = state("alice", &[Capability::Notify], &services);
        wit::Host::send(&mut next, "booked".into(), None)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn notify_is_refused_without_consent_or_declaration() {
        let refused = services(&[Capability::Notify]);
        let mut s = state("alice", &[Capability::Notify], &refused);
        let answer = wit::Host::send(&mut s, "hi".into(), None).await.unwrap();
        assert!(matches!(answer, Err(Error::Denied(_))), "{answer:?}");
        let mut s = state("alice", &[], &services(&[]));
        let answer = wit::Host::send(&mut s, "hi".into(), None).await.unwrap();
        assert!(matches!(answer, Err(Error::Denied(_))), "{answer:?}");
    }
}
