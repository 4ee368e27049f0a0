//! `notify`: messages from the app's service account into the user's chat
//! list, behind the user's consent.

use wasmtime::component::{HasSelf, Linker};

use super::HostState;
use crate::bindings::superapp::plugin::notify as wit;
use crate::bindings::superapp::plugin::types::{AppCard, Error};
use crate::contract::Capability;

/// Longest notification text, in bytes.
pub const MAX_TEXT: usize = 2000;
/// Notifications one event may send.
pub const MAX_PER_EVENT: u32 = 3;

pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

impl wit::Host for HostState {
    async fn send(&mut self, text: String) -> wasmtime::Result<Result<(), Error>> {
        if let Err(e) = self.require(Capability::Notify) {
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

    async fn share_card(&mut self, _card: AppCard) -> wasmtime::Result<Result<(), Error>> {
        if let Err(e) = self.require(Capability::Notify) {
            return Ok(Err(e));
        }
        // The chat picker is drawn by the web shell, which this host does
        // not serve yet.
        Ok(Err(Error::Unavailable(
            "sharing cards needs the host's chat picker, which is not available here".into(),
        )))
    }
}
