//! The host's assertion of who is calling, for a provider's backend.
//!
//! Every request a mini-program makes through the `http` capability carries
//! a `superapp-assertion` header: a token the host signs with its Ed25519
//! key (served at `/api/v1/host-key`), naming the app, the user's
//! pseudonymous id for that app, the origin it is addressed to and when it
//! was issued. A backend verifies it offline with [`verify`] and so knows
//! its user without a login of its own — the role of WeChat's
//! `code2Session` or Telegram's `initData` — and an app cannot forge it, as
//! the host refuses the header from apps.
//!
//! The token is `PAYLOAD.SIGNATURE`: base64url of the JSON payload, and
//! base64url of the signature over the payload string (as in JWS).

use serde::{Deserialize, Serialize};

use crate::credentials::{open_signed, Signed, VerifyError};

/// The header the host sets on every request of the `http` capability.
pub const HEADER: &str = "superapp-assertion";
/// The payload's type marker, so no other host-signed payload passes.
pub const TYPE: &str = "superapp-assertion";
/// How long an assertion is good for after it was issued, in seconds.
pub const LIFETIME_SECS: u64 = 60;
/// Clock skew tolerated between the host and the backend, in seconds.
pub const SKEW_SECS: u64 = 30;

/// What the host asserts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assertion {
    pub typ: String,
    /// The app making the request.
    pub app: String,
    /// The user's pseudonymous id for this app (what `identity` gives it).
    pub sub: String,
    /// The origin the request was sent to, e.g. `https://api.example.org`.
    pub aud: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: u64,
}

impl Assertion {
    /// An assertion issued at `now` for `LIFETIME_SECS`.
    pub fn new(app: &str, sub: &str, aud: &str, now: u64) -> Assertion {
        Assertion {
            typ: TYPE.into(),
            app: app.into(),
            sub: sub.into(),
            aud: aud.into(),
            iat: now,
            exp: now + LIFETIME_SECS,
        }
    }
}

/// Encode a signed assertion as the header's value.
pub fn encode(signed: &Signed) -> String {
    format!("{}.{}", signed.payload, signed.signature)
}

/// Check a `superapp-assertion` header: the host's signature (`host_key`,
/// 32 bytes), the type, that it is addressed to `audience` (this backend's
/// origin, as listed in the app's manifest), and that it is fresh at `now`.
pub fn verify(
    header: &str,
    host_key: &[u8; 32],
    audience: &str,
    now: u64,
) -> Result<Assertion, VerifyError> {
    let (payload, signature) = header
        .trim()
        .split_once('.')
        .ok_or_else(|| VerifyError::Malformed("an assertion is PAYLOAD.SIGNATURE".into()))?;
    let signed = Signed {
        payload: payload.into(),
        signature: signature.into(),
    };
    let assertion: Assertion = open_signed(&signed, host_key)?.ok_or(VerifyError::HostSignature)?;
    if assertion.typ != TYPE {
        return Err(VerifyError::Malformed(format!(
            "the payload is a `{}`, not an assertion",
            assertion.typ
        )));
    }
    if assertion.aud != audience.trim_end_matches('/') {
        return Err(VerifyError::WrongAudience(assertion.aud));
    }
    if assertion.iat > now + SKEW_SECS {
        return Err(VerifyError::NotYetValid);
    }
    if now > assertion.exp + SKEW_SECS || assertion.exp > assertion.iat + LIFETIME_SECS {
        return Err(VerifyError::Expired);
    }
    Ok(assertion)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::{encode_payload, Signed};
    use base64::Engine;
    use ed25519_dalek::{Signer, SigningKey};

    fn signed(key: &SigningKey, a: &Assertion) -> String {
        let payload = encode_payload(a);
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(key.sign(payload.as_bytes()).to_bytes());
        encode(&Signed { payload, signature })
    }

    #[test]
    fn an_assertion_verifies_only_for_its_origin_key_and_time() {
        let host = SigningKey::from_bytes(&[7; 32]);
        let public = host.verifying_key().to_bytes();
        let aud = "https://api.example.org";
        let a = Assertion::new("org.example.app", "pseudo-1", aud, 1_000);
        let header = signed(&host, &a);
        assert_eq!(verify(&header, &public, aud, 1_010).unwrap(), a);

        let other = SigningKey::from_bytes(&[8; 32]).verifying_key().to_bytes();
        assert!(matches!(
            verify(&header, &other, aud, 1_010),
            Err(VerifyError::HostSignature)
        ));
        assert!(matches!(
            verify(&header, &public, "https://evil.example", 1_010),
            Err(VerifyError::WrongAudience(_))
        ));
        assert!(matches!(
            verify(&header, &public, aud, 1_200),
            Err(VerifyError::Expired)
        ));
        assert!(matches!(
            verify(&header, &public, aud, 900),
            Err(VerifyError::NotYetValid)
        ));
        // A changed payload under the old signature fails.
        let (_, sig) = header.split_once('.').unwrap();
        let forged = Assertion {
            sub: "pseudo-2".into(),
            ..a.clone()
        };
        let forged = format!("{}.{sig}", encode_payload(&forged));
        assert!(verify(&forged, &public, aud, 1_010).is_err());
        // An assertion claiming a long life is refused.
        let long = Assertion {
            exp: a.iat + 3_600,
            ..a
        };
        assert!(matches!(
            verify(&signed(&host, &long), &public, aud, 1_010),
            Err(VerifyError::Expired)
        ));
        assert!(verify("junk", &public, aud, 1_010).is_err());
    }
}
