//! Provider callbacks: what the host tells an app's backend directly, so
//! the provider's books match the ledger without trusting the app.
//!
//! When a payment to an app's publisher settles or is refunded, or a user
//! shares a document with an app whose manifest delivers documents to its
//! backend, the host POSTs a JSON [`Notification`] to the callback URL in
//! the app's manifest
//! (`[callbacks] url = "https://…"`). Each delivery is signed with the
//! host's Ed25519 key (served at `/api/v1/host-key`) over its id, its time
//! and the body's SHA-256, in the `superapp-signature` header:
//! `id=DELIVERY,t=SECONDS,sig=BASE64URL`. Deliveries are retried with
//! backoff until the backend answers 2xx, so one may arrive more than
//! once: a backend keeps the ids it has applied and skips a repeat.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::credentials::VerifyError;

/// The header carrying a delivery's signature.
pub const HEADER: &str = "superapp-signature";
/// How far a delivery's time may be from the backend's clock, in seconds.
pub const TOLERANCE_SECS: u64 = 300;

/// What the host tells a backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notification {
    /// The delivery id: the same on every retry of one notification.
    pub id: String,
    /// `payment.settled`, `payment.refunded` or `document.presented`.
    pub kind: String,
    pub app: String,
    /// The user's pseudonymous id for this app (what `identity` gives it
    /// and what a request's assertion names).
    pub user: String,
    pub order: String,
    /// Minor units: the payment, or this refund.
    pub amount: u64,
    pub currency: String,
    /// Total refunded so far on the order, in minor units.
    pub refunded: u64,
    /// The idempotency key the app gave its payment request; for a
    /// document, the app's document request id.
    pub reference: String,
    /// When the event happened, seconds since the Unix epoch.
    pub at: u64,
    /// `document.presented`: what the user shared, for an app whose
    /// manifest delivers documents to its backend. Verify it as any
    /// presentation ([`crate::credentials::verify_presentation`]); the app
    /// got only the request's outcome, never these fields. The payment
    /// fields are then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presentation: Option<crate::credentials::PresentationEnvelope>,
}

/// The bytes the host signs for delivery `id` at time `t` of `body`.
pub fn signing_input(id: &str, t: u64, body: &[u8]) -> Vec<u8> {
    format!(
        "superapp-callback\n{id}\n{t}\n{}",
        hex(&Sha256::digest(body))
    )
    .into_bytes()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The header's value for a signature over [`signing_input`].
pub fn header(id: &str, t: u64, signature: &[u8]) -> String {
    format!("id={id},t={t},sig={}", B64.encode(signature))
}

/// Check a delivery: the `superapp-signature` header against the body and
/// the host's public key (32 bytes), its time against `now`, and that the
/// body is a notification with the signed id. Returns the notification.
pub fn verify(
    header: &str,
    body: &[u8],
    host_key: &[u8; 32],
    now: u64,
) -> Result<Notification, VerifyError> {
    let mut id = None;
    let mut t = None;
    let mut sig = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("id", v)) => id = Some(v.to_string()),
            Some(("t", v)) => t = v.parse::<u64>().ok(),
            Some(("sig", v)) => sig = B64.decode(v).ok(),
            _ => {}
        }
    }
    let (Some(id), Some(t), Some(sig)) = (id, t, sig) else {
        return Err(VerifyError::Malformed(
            "the signature header is id=…,t=…,sig=…".into(),
        ));
    };
    let sig: [u8; 64] = sig
        .try_into()
        .map_err(|_| VerifyError::Malformed("a signature is 64 bytes".into()))?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(host_key)
        .map_err(|_| VerifyError::Malformed("not an Ed25519 public key".into()))?;
    key.verify_strict(
        &signing_input(&id, t, body),
        &ed25519_dalek::Signature::from_bytes(&sig),
    )
    .map_err(|_| VerifyError::HostSignature)?;
    if t > now + TOLERANCE_SECS {
        return Err(VerifyError::NotYetValid);
    }
    if now > t + TOLERANCE_SECS {
        return Err(VerifyError::Expired);
    }
    let notification: Notification = serde_json::from_slice(body)
        .map_err(|e| VerifyError::Malformed(format!("the body is not a notification: {e}")))?;
    if notification.id != id {
        return Err(VerifyError::Malformed(
            "the body's id is not the signed one".into(),
        ));
    }
    Ok(notification)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    #[test]
    fn a_delivery_verifies_only_as_signed_and_in_time() {
        let host = SigningKey::from_bytes(&[9; 32]);
        let public = host.verifying_key().to_bytes();
        let n = Notification {
            id: "d1".into(),
            kind: "payment.settled".into(),
            app: "org.example.app".into(),
            user: "pseudo".into(),
            order: "o1".into(),
            amount: 500,
            currency: "EUR".into(),
            refunded: 0,
            reference: "booking-1".into(),
            at: 1_000,
            presentation: None,
        };
        let body = serde_json::to_vec(&n).unwrap();
        let sig = host.sign(&signing_input("d1", 1_000, &body)).to_bytes();
        let h = header("d1", 1_000, &sig);
        assert_eq!(verify(&h, &body, &public, 1_010).unwrap(), n);

        let mut tampered = body.clone();
        tampered[10] ^= 1;
        assert!(verify(&h, &tampered, &public, 1_010).is_err());
        let other = SigningKey::from_bytes(&[1; 32]).verifying_key().to_bytes();
        assert!(matches!(
            verify(&h, &body, &other, 1_010),
            Err(VerifyError::HostSignature)
        ));
        assert!(matches!(
            verify(&h, &body, &public, 2_000),
            Err(VerifyError::Expired)
        ));
        // A signature moved to another delivery id fails.
        let moved = h.replace("id=d1", "id=d2");
        assert!(verify(&moved, &body, &public, 1_010).is_err());
        assert!(verify("junk", &body, &public, 1_010).is_err());
    }
}
