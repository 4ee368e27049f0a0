//! `notify`: messages from the app's service account into the user's chat
//! list, behind the user's consent.

use wasmtime::component::{HasSelf, Linker};

use super::HostState;
use crate::bindings::superapp::plugin::notify as wit;
use crate::bindings::superapp::plugin::types::{AppCard, Error};
use crate::contract::Capability;
use crate::messaging::Card;

/// Longest notification text, in bytes.
pub const MAX_TEXT: usize = 2000;
/// Notifications one event may send.
pub const MAX_PER_EVENT: u32 = 3;

pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

impl wit::Host for HostState {
    async fn send(&mut self, text: String) -> wasmtime::Result<Result<(), Error>> {
        if let Err(e) = self.require_with(Capability::Notify, Some(text.as_bytes())) {
            return Ok(Err(e));
        }
        if text.trim().is_empty() || text.len() > MAX_TEXT {
            return Ok(Err(Error::Invalid(format!(
                "text must be 1 to {MAX_TEXT} bytes"
            ))));
        }
        self.notifications += 1;
        if self.notifications > MAX_PER_EVENT {
            return Ok(Err(Error::QuotaExceeded(format!(
                "at most {MAX_PER_EVENT} notifications per event"
            ))));
        }
        let services = self.services.clone();
        Ok(services.notifier.send(&self.user, &self.app, &text).await)
    }

    async fn share_card(&mut self, card: AppCard) -> wasmtime::Result<Result<(), Error>> {
        if let Err(e) = self.require(Capability::Notify) {
            return Ok(Err(e));
        }
        let fields = [&card.app_id, &card.title, &card.description];
        if card.title.trim().is_empty()
            || fields.iter().any(|f| f.len() > 200)
            || card.params.len() > 16
        {
            return Ok(Err(Error::Invalid(
                "a card has a title, fields up to 200 bytes and at most 16 params".into(),
            )));
        }
        let card = Card {
            app_id: card.app_id,
            title: card.title,
            description: card.description,
            params: card.params,
        };
        let services = self.services.clone();
        Ok(services
            .notifier
            .share_card(&self.user, &self.app, card)
            .await)
    }
}
