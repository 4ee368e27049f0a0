//! Typed wrappers over the capability imports, one module per capability.
//!
//! Using a module makes the component import that capability's interface,
//! and the host refuses a component whose imports are not all declared in
//! its `plugin.toml`. Every fallible call returns [`Error`](crate::Error),
//! which converts into [`AppError`](crate::AppError) with `?`.

use crate::Error;

fn decode_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::Invalid(format!("stored value is not valid JSON: {e}")))
}

fn encode_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value)
        .map_err(|e| Error::Invalid(format!("value cannot be encoded as JSON: {e}")))
}

/// Structured log lines, tagged by the host with app id and version.
pub mod log {
    use crate::bindings::superapp::plugin::log as raw;
    pub use crate::bindings::superapp::plugin::log::Level;

    /// Write one line with key-value fields.
    pub fn emit(level: Level, message: &str, fields: &[(String, String)]) {
        raw::emit(level, message, fields);
    }

    pub fn debug(message: &str) {
        emit(Level::Debug, message, &[]);
    }

    pub fn info(message: &str) {
        emit(Level::Info, message, &[]);
    }

    pub fn warn(message: &str) {
        emit(Level::Warn, message, &[]);
    }

    pub fn error(message: &str) {
        emit(Level::Error, message, &[]);
    }
}

/// The user's pseudonymous id for this app.
pub mod identity {
    use crate::bindings::superapp::plugin::identity as raw;
    use crate::Error;

    /// Stable for this user in this app; different in every other app.
    pub fn user_id() -> Result<String, Error> {
        raw::user_id()
    }
}

/// The user's display name and verification level (asks the user once).
pub mod profile {
    use crate::bindings::superapp::plugin::profile as raw;
    use crate::Error;
    pub use raw::{UserProfile, VerificationLevel};

    /// `Err(Error::ConsentRequired(_))` until the user agrees; the answer
    /// then arrives as [`Event::Consent`](crate::Event::Consent).
    pub fn get() -> Result<UserProfile, Error> {
        raw::get()
    }
}

/// Key-value storage private to this app and this user.
pub mod storage {
    use crate::bindings::superapp::plugin::storage as raw;
    use crate::Error;
    pub use raw::QuotaUsage;

    pub fn get(key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, Error> {
        raw::get(key.as_ref())
    }

    pub fn set(key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<(), Error> {
        raw::set(key.as_ref(), value.as_ref())
    }

    /// Returns whether the key existed.
    pub fn delete(key: impl AsRef<[u8]>) -> Result<bool, Error> {
        raw::delete(key.as_ref())
    }

    /// Keys starting with `prefix` in byte order, after `start_after`, at most `limit`.
    pub fn list_keys(
        prefix: impl AsRef<[u8]>,
        start_after: Option<&[u8]>,
        limit: u32,
    ) -> Result<Vec<Vec<u8>>, Error> {
        raw::list_keys(prefix.as_ref(), start_after, limit)
    }

    pub fn usage() -> Result<QuotaUsage, Error> {
        raw::usage()
    }

    /// Read a JSON value.
    pub fn get_json<T: serde::de::DeserializeOwned>(
        key: impl AsRef<[u8]>,
    ) -> Result<Option<T>, Error> {
        get(key)?.map(|b| super::decode_json(&b)).transpose()
    }

    /// Write a value as JSON.
    pub fn set_json<T: serde::Serialize>(key: impl AsRef<[u8]>, value: &T) -> Result<(), Error> {
        set(key, super::encode_json(value)?)
    }
}

/// Key-value storage shared by all users of this app.
pub mod shared_storage {
    use crate::bindings::superapp::plugin::shared_storage as raw;
    use crate::Error;

    pub fn get(key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, Error> {
        raw::get(key.as_ref())
    }

    pub fn set(key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<(), Error> {
        raw::set(key.as_ref(), value.as_ref())
    }

    pub fn delete(key: impl AsRef<[u8]>) -> Result<bool, Error> {
        raw::delete(key.as_ref())
    }

    pub fn list_keys(
        prefix: impl AsRef<[u8]>,
        start_after: Option<&[u8]>,
        limit: u32,
    ) -> Result<Vec<Vec<u8>>, Error> {
        raw::list_keys(prefix.as_ref(), start_after, limit)
    }

    /// Set `key` to `new` (`None` deletes) only if it currently holds
    /// `expected` (`None`: absent). Returns whether the swap happened.
    pub fn compare_and_swap(
        key: impl AsRef<[u8]>,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, Error> {
        raw::compare_and_swap(key.as_ref(), expected, new)
    }

    /// Add `delta` to a counter (absent counts as 0); returns the new value.
    pub fn increment(key: impl AsRef<[u8]>, delta: i64) -> Result<i64, Error> {
        raw::increment(key.as_ref(), delta)
    }
}

/// Messages from the app's service account (asks the user once).
pub mod notify {
    use crate::bindings::superapp::plugin::notify as raw;
    use crate::{AppCard, Error};

    /// A message in the app's service chat.
    pub fn send(text: &str) -> Result<(), Error> {
        raw::send(text, None)
    }

    /// A message with a card the user can tap to open an app, e.g. this
    /// one at the appointment just booked.
    pub fn send_with_card(text: &str, card: AppCard) -> Result<(), Error> {
        raw::send(text, Some(&card.into_wit()))
    }

    /// Ask the user to share `card` into a chat; the answer arrives as
    /// [`Event::CardShared`](crate::Event::CardShared).
    pub fn share_card(card: AppCard) -> Result<(), Error> {
        raw::share_card(&card.into_wit())
    }
}

/// Payments confirmed by the user in a host-drawn sheet.
pub mod payments {
    use crate::bindings::superapp::plugin::payments as raw;
    use crate::Error;
    pub use raw::{OrderStatus, PaymentRequest};

    /// Create a pending order; the outcome arrives as
    /// [`Event::Payment`](crate::Event::Payment). Returns the order id.
    pub fn request(req: &PaymentRequest) -> Result<String, Error> {
        raw::request(req)
    }

    pub fn status(order_id: &str) -> Result<OrderStatus, Error> {
        raw::status(order_id)
    }

    pub fn refund(order_id: &str, amount: u64) -> Result<(), Error> {
        raw::refund(order_id, amount)
    }
}

/// Fields of official credentials, disclosed with the user's approval.
pub mod documents {
    use crate::bindings::superapp::plugin::documents as raw;
    use crate::Error;
    pub use raw::{DocumentRequest, HeldDocument, IssuerTrust};

    /// Ask for `fields` of a credential, for this app (and its backend);
    /// the answer arrives as [`Event::Document`](crate::Event::Document).
    /// Returns the request id.
    pub fn request(
        credential_type: &str,
        fields: &[String],
        purpose: &str,
    ) -> Result<String, Error> {
        raw::request(&DocumentRequest {
            credential_type: credential_type.to_string(),
            fields: fields.to_vec(),
            purpose: purpose.to_string(),
            audience: None,
            nonce: None,
        })
    }

    /// Ask for a presentation for a verifier the user is in front of,
    /// bound to the verifier's `nonce`. The host prefixes `audience` with
    /// this app's id and `#`.
    pub fn present(req: &DocumentRequest) -> Result<String, Error> {
        raw::request(req)
    }

    /// The user's credentials, without values (asks the user once).
    pub fn held() -> Result<Vec<HeldDocument>, Error> {
        raw::held()
    }

    /// What a verifier needs to check a presentation of `issuer_id`'s
    /// credential `credential_id` (see [`crate::credentials`]).
    pub fn trust(issuer_id: &str, credential_id: &str) -> Result<IssuerTrust, Error> {
        raw::trust(issuer_id, credential_id)
    }
}

/// Wall-clock time.
pub mod clock {
    use crate::bindings::superapp::plugin::clock as raw;
    pub use raw::Instant;

    pub fn now() -> Instant {
        raw::now()
    }

    /// Seconds since the Unix epoch.
    pub fn unix_seconds() -> u64 {
        raw::now().seconds
    }
}

/// Cryptographically secure randomness.
pub mod random {
    use crate::bindings::superapp::plugin::random as raw;

    /// `len` random bytes (the host caps one call at 4096).
    pub fn bytes(len: u32) -> Vec<u8> {
        raw::bytes(len)
    }

    pub fn next_u64() -> u64 {
        raw::next_u64()
    }
}
