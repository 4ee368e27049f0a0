//! Official documents: the credential format and offline verification of
//! presentations, for mini-programs and for providers' backends alike (this
//! module is plain Rust and needs no host).
//!
//! The format follows SD-JWT's selective disclosure. Each claim is a
//! *disclosure*, `base64url(JSON [salt, name, value])`; the issuer signs
//! (Ed25519) a payload holding the credential type, a subject binding,
//! issue and expiry times and the SHA-256 digest of every disclosure. A
//! holder shows some disclosures and withholds the rest: a verifier hashes
//! what it got, finds each digest in the signed list, and learns nothing of
//! the claims it did not get but that they exist.
//!
//! The host adds a *binding* it signs with its own key: which app asked,
//! the user's pseudonymous id for that app, the request, a fresh nonce, the
//! time, and digests of the credential and of the disclosed claims. A
//! presentation is therefore useful only to the app it was made for, and a
//! replay is recognisable by its nonce ([`ReplayGuard`]).

use std::collections::HashSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The format version this module reads and writes.
pub const VERSION: u32 = 1;

/// Signed JSON: `payload` is base64url of the JSON bytes, `signature` the
/// base64url Ed25519 signature over the payload *string* (as in JWS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    pub payload: String,
    pub signature: String,
}

/// What the issuer signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialPayload {
    pub v: u32,
    /// The credential's id: what a revocation names.
    pub id: String,
    /// The issuer's id.
    pub iss: String,
    #[serde(rename = "type")]
    pub credential_type: String,
    /// The subject binding: [`subject_binding`] of the holder's account
    /// name and a secret salt the holder's wallet keeps.
    pub sub: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at.
    pub exp: u64,
    /// SHA-256 (base64url) of every disclosure, sorted.
    pub digests: Vec<String>,
}

/// What the host signs when it presents a credential to an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    pub v: u32,
    /// The app the presentation was made for.
    pub app: String,
    /// The user's pseudonymous id for that app.
    pub user: String,
    /// The app's request id.
    pub request: String,
    /// Fresh per presentation.
    pub nonce: String,
    pub iat: u64,
    /// The credential's subject binding.
    pub sub: String,
    /// SHA-256 (base64url) of the credential's signed payload string.
    pub credential: String,
    /// The digests of the disclosed claims, sorted.
    pub disclosed: Vec<String>,
}

/// What an app receives and can pass on to its backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresentationEnvelope {
    pub credential: Signed,
    /// Only the claims the user approved.
    pub disclosures: Vec<String>,
    pub binding: Signed,
}

/// One claim, opened from its disclosure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub name: String,
    pub value: String,
    pub salt: String,
}

/// A presentation that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub credential: CredentialPayload,
    pub claims: Vec<Claim>,
    pub binding: Binding,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("the issuer's signature does not verify")]
    IssuerSignature,
    #[error("the host's signature on the binding does not verify")]
    HostSignature,
    #[error("the credential is not valid yet")]
    NotYetValid,
    #[error("the credential expired")]
    Expired,
    #[error("the credential was revoked by its issuer")]
    Revoked,
    #[error("claim `{0}` is not one the issuer signed")]
    UnsignedClaim(String),
    #[error("the binding does not match the credential: {0}")]
    BindingMismatch(&'static str),
    #[error("the presentation was made for app `{0}`")]
    WrongApp(String),
    #[error("the presentation is too old")]
    Stale,
    #[error("this presentation was seen before (nonce reused)")]
    Replayed,
}

fn b64_sha256(bytes: &[u8]) -> String {
    B64.encode(Sha256::digest(bytes))
}

/// `base64url(JSON [salt, name, value])`.
pub fn disclosure(salt: &str, name: &str, value: &str) -> String {
    let json = serde_json::to_string(&(salt, name, value)).expect("strings serialize");
    B64.encode(json)
}

/// The digest the issuer signs for a disclosure.
pub fn digest(disclosure: &str) -> String {
    b64_sha256(disclosure.as_bytes())
}

/// Open a disclosure.
pub fn open(disclosure: &str) -> Result<Claim, VerifyError> {
    let bytes = B64
        .decode(disclosure)
        .map_err(|_| VerifyError::Malformed("a disclosure is not base64url".into()))?;
    let (salt, name, value): (String, String, String) = serde_json::from_slice(&bytes)
        .map_err(|_| VerifyError::Malformed("a disclosure is not [salt, name, value]".into()))?;
    Ok(Claim { name, value, salt })
}

/// The subject binding of a holder: SHA-256 over a domain tag, the holder's
/// account name and a salt only the holder's wallet keeps, so it names
/// nobody to whoever lacks the salt.
pub fn subject_binding(account: &str, salt: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"superapp-subject\0");
    h.update((account.len() as u64).to_be_bytes());
    h.update(account.as_bytes());
    h.update(salt.as_bytes());
    B64.encode(h.finalize())
}

/// Encode `value` as the payload of a [`Signed`] (the signature is added by
/// whoever holds the key).
pub fn encode_payload<T: Serialize>(value: &T) -> String {
    B64.encode(serde_json::to_vec(value).expect("payloads serialize"))
}

/// Check `signed` against an Ed25519 public key and decode its payload.
pub fn open_signed<T: serde::de::DeserializeOwned>(
    signed: &Signed,
    public_key: &[u8; 32],
) -> Result<Option<T>, VerifyError> {
    let key = ed25519_dalek::VerifyingKey::from_bytes(public_key)
        .map_err(|_| VerifyError::Malformed("not an Ed25519 public key".into()))?;
    let sig: [u8; 64] = B64
        .decode(&signed.signature)
        .ok()
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| VerifyError::Malformed("a signature is not 64 bytes of base64url".into()))?;
    let sig = ed25519_dalek::Signature::from_bytes(&sig);
    if key.verify_strict(signed.payload.as_bytes(), &sig).is_err() {
        return Ok(None);
    }
    peek(signed).map(Some)
}

/// Decode the payload of `signed` *without* checking its signature: only to
/// learn whose key to check it with (the issuer id), never to trust it.
pub fn peek<T: serde::de::DeserializeOwned>(signed: &Signed) -> Result<T, VerifyError> {
    let bytes = B64
        .decode(&signed.payload)
        .map_err(|_| VerifyError::Malformed("a payload is not base64url".into()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| VerifyError::Malformed(format!("a payload does not parse: {e}")))
}

/// Decode a base64url Ed25519 public key.
pub fn public_key(b64: &str) -> Result<[u8; 32], VerifyError> {
    B64.decode(b64.trim())
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| VerifyError::Malformed("a public key is 32 bytes of base64url".into()))
}

/// Verify a credential as issued (signature, validity at `now`, every
/// disclosure signed) and open its claims.
pub fn verify_credential(
    credential: &Signed,
    disclosures: &[String],
    issuer_key: &[u8; 32],
    now: u64,
) -> Result<(CredentialPayload, Vec<Claim>), VerifyError> {
    let payload: CredentialPayload =
        open_signed(credential, issuer_key)?.ok_or(VerifyError::IssuerSignature)?;
    if payload.v != VERSION {
        return Err(VerifyError::Malformed(format!(
            "format version {} is not {VERSION}",
            payload.v
        )));
    }
    if now < payload.iat {
        return Err(VerifyError::NotYetValid);
    }
    if now >= payload.exp {
        return Err(VerifyError::Expired);
    }
    let signed: HashSet<&str> = payload.digests.iter().map(String::as_str).collect();
    let mut names = HashSet::new();
    let mut claims = Vec::new();
    for d in disclosures {
        let claim = open(d)?;
        if !signed.contains(digest(d).as_str()) {
            return Err(VerifyError::UnsignedClaim(claim.name));
        }
        if !names.insert(claim.name.clone()) {
            return Err(VerifyError::Malformed(format!(
                "claim `{}` is disclosed twice",
                claim.name
            )));
        }
        claims.push(claim);
    }
    Ok((payload, claims))
}

/// Keys and policy for verifying presentations.
#[derive(Debug, Clone)]
pub struct Trust {
    /// The issuer's Ed25519 public key.
    pub issuer_key: [u8; 32],
    /// The host's Ed25519 public key (served at `/api/v1/host-key`).
    pub host_key: [u8; 32],
    /// The app the presentation must have been made for.
    pub app: String,
    /// Reject presentations whose binding is older than this, in seconds.
    pub max_age_secs: u64,
    /// Credential ids the issuer has revoked (its status list).
    pub revoked: Vec<String>,
}

/// Verify a presentation end to end: the issuer's signature and validity,
/// each disclosed claim against the signed digests, the host's binding
/// (signature, credential, subject, disclosed set), the app it was made for
/// and its age. Replays are the caller's to catch with a [`ReplayGuard`].
pub fn verify_presentation(
    p: &PresentationEnvelope,
    trust: &Trust,
    now: u64,
) -> Result<Verified, VerifyError> {
    let (credential, claims) =
        verify_credential(&p.credential, &p.disclosures, &trust.issuer_key, now)?;
    if trust.revoked.contains(&credential.id) {
        return Err(VerifyError::Revoked);
    }
    let binding: Binding =
        open_signed(&p.binding, &trust.host_key)?.ok_or(VerifyError::HostSignature)?;
    if binding.credential != b64_sha256(p.credential.payload.as_bytes()) {
        return Err(VerifyError::BindingMismatch("another credential"));
    }
    if binding.sub != credential.sub {
        return Err(VerifyError::BindingMismatch("another subject"));
    }
    let mut disclosed: Vec<String> = p.disclosures.iter().map(|d| digest(d)).collect();
    disclosed.sort();
    if binding.disclosed != disclosed {
        return Err(VerifyError::BindingMismatch("other claims"));
    }
    if binding.app != trust.app {
        return Err(VerifyError::WrongApp(binding.app));
    }
    if binding.iat > now.saturating_add(60) || now.saturating_sub(binding.iat) > trust.max_age_secs
    {
        return Err(VerifyError::Stale);
    }
    Ok(Verified {
        credential,
        claims,
        binding,
    })
}

/// Remembers the nonces of presentations already accepted, so the same
/// presentation is accepted once. A backend keeps this durable, for at
/// least `Trust::max_age_secs`.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: HashSet<String>,
}

impl ReplayGuard {
    /// Accept `verified` once.
    pub fn admit(&mut self, verified: &Verified) -> Result<(), VerifyError> {
        if self.seen.insert(verified.binding.nonce.clone()) {
            Ok(())
        } else {
            Err(VerifyError::Replayed)
        }
    }
}
