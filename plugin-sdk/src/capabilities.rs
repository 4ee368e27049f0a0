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

    /// Refund `amount` of an order; a retry with the same key refunds once.
    pub fn refund(order_id: &str, amount: u64, idempotency_key: &str) -> Result<(), Error> {
        raw::refund(order_id, amount, idempotency_key)
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

/// Wall-clock time, and civil dates without a time-zone database.
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

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard
    /// Hinnant's algorithm). The month is 1-12, the day 1-31.
    pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let m = i64::from(month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// (year, month 1-12, day 1-31) of a day counted from 1970-01-01.
    pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        (yoe + era * 400 + i64::from(m <= 2), m, d)
    }

    /// `YYYY-MM-DD` of a day counted from 1970-01-01.
    pub fn format_date(days: i64) -> String {
        let (y, m, d) = civil_from_days(days);
        format!("{y:04}-{m:02}-{d:02}")
    }

    /// The day of `YYYY-MM-DD`, refusing dates that do not exist.
    pub fn parse_date(text: &str) -> Option<i64> {
        let mut parts = text.trim().splitn(3, '-');
        let y: i64 = parts.next()?.parse().ok()?;
        let m: u32 = parts.next()?.parse().ok()?;
        let d: u32 = parts.next()?.parse().ok()?;
        // Four-digit years: the calendar arithmetic stays far from overflow.
        if !(0..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
            return None;
        }
        let days = days_from_civil(y, m, d);
        (civil_from_days(days) == (y, m, d)).then_some(days)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn dates_round_trip_and_impossible_ones_are_refused() {
            assert_eq!(days_from_civil(1970, 1, 1), 0);
            assert_eq!(format_date(0), "1970-01-01");
            assert_eq!(parse_date("2026-11-25"), Some(20_782));
            assert_eq!(format_date(20_782), "2026-11-25");
            assert_eq!(
                parse_date("2024-02-29").map(format_date).as_deref(),
                Some("2024-02-29")
            );
            for bad in [
                "2026-02-29",
                "2026-13-01",
                "2026-04-31",
                "25.11.2026",
                "",
                "2026-1",
            ] {
                assert_eq!(parse_date(bad), None, "{bad}");
            }
            for days in [-1_000_000, -1, 0, 59, 60, 20_782, 1_000_000] {
                let (y, m, d) = civil_from_days(days);
                assert_eq!(days_from_civil(y, m, d), days);
            }
        }
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

/// Requests to the provider's own backend, to the origins the manifest
/// lists. The host checks every request (origin, addresses, redirects,
/// sizes, time) and signs a `superapp-assertion` header naming the app and
/// the user's pseudonymous id, which the backend verifies with
/// [`assertion::verify`](crate::assertion::verify).
pub mod http {
    use crate::bindings::superapp::plugin::http as raw;
    use crate::Error;
    pub use raw::{Method, Request, Response};

    /// Send `req` and wait for the whole response.
    pub fn fetch(req: &Request) -> Result<Response, Error> {
        raw::fetch(req)
    }

    /// The origins the manifest lists, in order, as written there: where
    /// this deployment's backend is, so one build serves any deployment.
    pub fn origins() -> Result<Vec<String>, Error> {
        raw::origins()
    }

    /// `GET url`.
    pub fn get(url: &str) -> Result<Response, Error> {
        fetch(&request(Method::Get, url, None))
    }

    /// `GET url`, the body read as JSON; a status other than 2xx is
    /// `unavailable` with the status and the start of the body.
    pub fn get_json<T: serde::de::DeserializeOwned>(url: &str) -> Result<T, Error> {
        json(get(url)?)
    }

    /// `POST url` with `body` as JSON; the answer read as JSON, as
    /// [`get_json`] does.
    pub fn post_json<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        url: &str,
        body: &B,
    ) -> Result<T, Error> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| Error::Invalid(format!("the request body does not serialize: {e}")))?;
        json(fetch(&request(Method::Post, url, Some(bytes)))?)
    }

    fn request(method: Method, url: &str, body: Option<Vec<u8>>) -> Request {
        let mut headers = vec![("accept".to_string(), "application/json".to_string())];
        if body.is_some() {
            headers.push(("content-type".into(), "application/json".into()));
        }
        Request {
            method,
            url: url.to_string(),
            headers,
            body,
            timeout_ms: None,
        }
    }

    impl Response {
        /// The value of header `name` (lowercase), if present.
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        }

        pub fn is_success(&self) -> bool {
            (200..300).contains(&self.status)
        }
    }

    fn json<T: serde::de::DeserializeOwned>(response: Response) -> Result<T, Error> {
        if !response.is_success() {
            let start: String = String::from_utf8_lossy(&response.body)
                .chars()
                .take(200)
                .collect();
            return Err(Error::Unavailable(format!(
                "the backend answered {}: {start}",
                response.status
            )));
        }
        serde_json::from_slice(&response.body).map_err(|e| {
            Error::Invalid(format!(
                "the backend's answer is not the JSON expected: {e}"
            ))
        })
    }
}
