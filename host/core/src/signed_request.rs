//! Requests signed with a publisher's or auditor's key: how the CLI proves
//! to a server who is publishing or reviewing, without passwords. The
//! signature covers the method, the path with its query, the time, a
//! one-time nonce and the SHA-256 of the body, so a captured request cannot
//! be replayed later (the server remembers nonces for the allowed skew),
//! sent to another route, or given another body.
//!
//! Header: `Authorization: Superapp-Signature key=K,ts=T,nonce=N,sig=S`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;

use crate::ids::{random_bytes, sha256_hex};
use crate::keys::{self, SigningKey};

/// The `Authorization` scheme.
pub const SCHEME: &str = "Superapp-Signature";
/// How far a request's time may be from the server's, in seconds.
pub const MAX_SKEW_SECS: u64 = 300;
const CONTEXT: &str = "superapp signed request v1";

/// A parsed signature header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSignature {
    /// The signer's public key, base64url.
    pub key: String,
    pub ts: u64,
    pub nonce: String,
    signature: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignedRequestError {
    #[error("the Authorization header is not `{SCHEME} key=…,ts=…,nonce=…,sig=…`")]
    Malformed,
    #[error("the request was signed at {ts}, more than {MAX_SKEW_SECS} s from the server's clock ({now})")]
    Stale { ts: u64, now: u64 },
    #[error("the request signature does not verify under key {0}")]
    BadSignature(String),
}

fn message(method: &str, path_and_query: &str, ts: u64, nonce: &str, body: &[u8]) -> Vec<u8> {
    format!(
        "{CONTEXT}\n{method}\n{path_and_query}\n{ts}\n{nonce}\n{}\n",
        sha256_hex(body)
    )
    .into_bytes()
}

/// The `Authorization` header value for a request, signed now.
pub fn sign(key: &SigningKey, method: &str, path_and_query: &str, body: &[u8], ts: u64) -> String {
    let nonce = B64URL.encode(random_bytes::<16>());
    let sig = key.sign(&message(method, path_and_query, ts, &nonce, body));
    format!(
        "{SCHEME} key={},ts={ts},nonce={nonce},sig={}",
        key.public_key(),
        B64URL.encode(sig)
    )
}

impl RequestSignature {
    pub fn parse(header: &str) -> Result<RequestSignature, SignedRequestError> {
        let rest = header
            .strip_prefix(SCHEME)
            .and_then(|r| r.strip_prefix(' '))
            .ok_or(SignedRequestError::Malformed)?;
        let (mut key, mut ts, mut nonce, mut sig) = (None, None, None, None);
        for part in rest.split(',') {
            let (name, value) = part
                .trim()
                .split_once('=')
                .ok_or(SignedRequestError::Malformed)?;
            let slot = match name {
                "key" => &mut key,
                "ts" => &mut ts,
                "nonce" => &mut nonce,
                "sig" => &mut sig,
                _ => return Err(SignedRequestError::Malformed),
            };
            if slot.replace(value.to_string()).is_some() {
                return Err(SignedRequestError::Malformed);
            }
        }
        let (Some(key), Some(ts), Some(nonce), Some(sig)) = (key, ts, nonce, sig) else {
            return Err(SignedRequestError::Malformed);
        };
        let ok_nonce = (16..=64).contains(&nonce.len())
            && nonce
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok_nonce {
            return Err(SignedRequestError::Malformed);
        }
        Ok(RequestSignature {
            key,
            ts: ts.parse().map_err(|_| SignedRequestError::Malformed)?,
            nonce,
            signature: B64URL
                .decode(sig)
                .map_err(|_| SignedRequestError::Malformed)?,
        })
    }

    /// Check time and signature. The caller keeps the nonce until the
    /// request can no longer be fresh, and refuses it a second time.
    pub fn verify(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        now: u64,
    ) -> Result<(), SignedRequestError> {
        if self.ts.abs_diff(now) > MAX_SKEW_SECS {
            return Err(SignedRequestError::Stale { ts: self.ts, now });
        }
        let m = message(method, path_and_query, self.ts, &self.nonce, body);
        if keys::verify(&self.key, &m, &self.signature) {
            Ok(())
        } else {
            Err(SignedRequestError::BadSignature(self.key.clone()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_binds_method_path_body_and_time() {
        let key = SigningKey::generate().unwrap();
        let header = sign(&key, "POST", "/api/v1/x?a=1", b"body", 1000);
        let sig = RequestSignature::parse(&header).unwrap();
        assert_eq!(sig.key, key.public_key());
        assert_eq!(sig.verify("POST", "/api/v1/x?a=1", b"body", 1100), Ok(()));
        for (method, path, body) in [
            ("GET", "/api/v1/x?a=1", &b"body"[..]),
            ("POST", "/api/v1/x?a=2", b"body"),
            ("POST", "/api/v1/x?a=1", b"other"),
        ] {
            assert!(matches!(
                sig.verify(method, path, body, 1000),
                Err(SignedRequestError::BadSignature(_))
            ));
        }
        assert!(matches!(
            sig.verify("POST", "/api/v1/x?a=1", b"body", 1000 + MAX_SKEW_SECS + 1),
            Err(SignedRequestError::Stale { .. })
        ));
        for bad in [
            "Bearer x",
            "Superapp-Signature key=a",
            "Superapp-Signature key=a,ts=1,nonce=short,sig=AA",
            "Superapp-Signature key=a,key=b,ts=1,nonce=aaaaaaaaaaaaaaaaaaaa,sig=AA",
        ] {
            assert_eq!(
                RequestSignature::parse(bad),
                Err(SignedRequestError::Malformed)
            );
        }
    }
}
