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
//! Presentations are bound to their holder, as SD-JWT's key binding does.
//! Each user has a *holder key* the host keeps for them; the host certifies
//! it for the credential's subject ([`HolderCert`], signed with the host's
//! key), and the holder key signs a [`KeyBinding`] over the audience (who
//! may accept the presentation), the verifier's nonce, the time and a hash
//! of exactly the disclosed parts. A copied presentation therefore fails
//! at any other verifier, with any other nonce, or with one claim more or
//! less; a verifier that lets the host pick the nonce catches replays with
//! a [`ReplayGuard`].

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

/// What the host signs: the holder key that speaks for a credential's
/// subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HolderCert {
    pub v: u32,
    /// The credential's subject binding.
    pub sub: String,
    /// The holder's Ed25519 public key, base64url.
    pub key: String,
    pub iat: u64,
}

/// What the host signs for an issuer's status list: the ids of the
/// credentials it revoked, as the host knew them at `iat`. A verifier that
/// checks the signature and the time knows the list came from the host and
/// how old it is: a cache or a path that hands it an old list cannot hide a
/// revocation for longer than the verifier allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusList {
    pub v: u32,
    /// Always [`STATUS_LIST`]: what this signature is of.
    pub typ: String,
    /// The issuer's id.
    pub iss: String,
    /// Revoked credential ids.
    pub revoked: Vec<String>,
    /// When the host listed them, seconds since the Unix epoch.
    pub iat: u64,
}

/// [`StatusList::typ`].
pub const STATUS_LIST: &str = "status-list";

/// Verify a status list the host signed (`signed` of the host's answer at
/// `/api/v1/issuers/{issuer}/revoked`): the host's signature, the issuer it
/// is of, and that it was made at most `max_age_secs` before `now` (and not
/// more than a minute after, for clocks apart).
pub fn verify_status_list(
    signed: &Signed,
    host_key: &[u8; 32],
    issuer: &str,
    now: u64,
    max_age_secs: u64,
) -> Result<StatusList, VerifyError> {
    let list: StatusList = open_signed(signed, host_key)?.ok_or(VerifyError::HostSignature)?;
    if list.v != VERSION || list.typ != STATUS_LIST {
        return Err(VerifyError::Malformed(format!(
            "not a status list of format {VERSION}"
        )));
    }
    if list.iss != issuer {
        return Err(VerifyError::Malformed(format!(
            "the status list is of `{}`, not of `{issuer}`",
            list.iss
        )));
    }
    if list.iat > now.saturating_add(60) || now.saturating_sub(list.iat) > max_age_secs {
        return Err(VerifyError::Stale);
    }
    Ok(list)
}

/// What the holder key signs for one presentation (SD-JWT's key binding).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyBinding {
    pub v: u32,
    /// Who may accept it: an app id, or `APP#NAME` for a verifier that an
    /// app named (the host adds the app's id, so no app can speak for
    /// another's verifiers).
    pub aud: String,
    /// The verifier's challenge, or a fresh one the host picked.
    pub nonce: String,
    pub iat: u64,
    /// [`sd_hash`] of the credential and exactly the disclosed claims.
    pub sd_hash: String,
    /// The holder's pseudonymous id for the app, when the audience is the
    /// app itself (never shown to a third-party verifier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// What an app receives and can pass on to a verifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresentationEnvelope {
    pub credential: Signed,
    /// Only the claims the user approved.
    pub disclosures: Vec<String>,
    /// Signed by the host: the holder key for this credential.
    pub holder: Signed,
    /// Signed by the holder key.
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
    pub holder: HolderCert,
    pub binding: KeyBinding,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("the issuer's signature does not verify")]
    IssuerSignature,
    /// The host's signature (on a holder key's certificate, an assertion or
    /// a callback) does not verify under the host key given.
    #[error("the host's signature does not verify")]
    HostSignature,
    #[error("the holder's key binding does not verify")]
    HolderSignature,
    #[error("it is not valid yet")]
    NotYetValid,
    #[error("it has expired")]
    Expired,
    #[error("the credential was revoked by its issuer")]
    Revoked,
    #[error("claim `{0}` is not one the issuer signed")]
    UnsignedClaim(String),
    #[error("the binding does not match the credential: {0}")]
    BindingMismatch(&'static str),
    #[error("the presentation was made for `{0}`, not for this verifier")]
    WrongAudience(String),
    #[error("the presentation answers another challenge (its nonce is not the one asked for)")]
    WrongNonce,
    /// A presentation, or a status list, made longer ago than the
    /// verifier allows (or later than its clock, beyond a minute).
    #[error("it is too old, or dated in the future")]
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

/// Encode an Ed25519 public key as base64url.
pub fn encode_key(key: &[u8]) -> String {
    B64.encode(key)
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

/// The hash a key binding signs: SHA-256 over the credential's signed
/// payload and the disclosures, sorted, each after a `~`.
pub fn sd_hash(credential: &Signed, disclosures: &[String]) -> String {
    let mut sorted: Vec<&str> = disclosures.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let mut h = Sha256::new();
    h.update(credential.payload.as_bytes());
    for d in sorted {
        h.update(b"~");
        h.update(d.as_bytes());
    }
    B64.encode(h.finalize())
}

/// The keys a verifier trusts.
#[derive(Debug, Clone)]
pub struct Trust {
    /// The issuer's Ed25519 public key.
    pub issuer_key: [u8; 32],
    /// The host's Ed25519 public key (served at `/api/v1/host-key`), which
    /// certifies holder keys.
    pub host_key: [u8; 32],
    /// Credential ids the issuer has revoked (its status list).
    pub revoked: Vec<String>,
}

/// What one verifier expects of a presentation.
#[derive(Debug, Clone)]
pub struct Expected {
    /// The verifier's own audience: an app id, or `APP#NAME`.
    pub audience: String,
    /// The challenge this verifier gave the holder; `None` when the host
    /// picked it (then catch replays with a [`ReplayGuard`]).
    pub nonce: Option<String>,
    /// Reject presentations whose key binding is older than this, in seconds.
    pub max_age_secs: u64,
}

/// One check of [`checks`], passed or not, for a verifier screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub failure: Option<VerifyError>,
}

/// Verify a presentation end to end: the issuer's signature and validity,
/// each disclosed claim against the signed digests, revocation, the host's
/// certificate of the holder key, the holder's key binding over exactly
/// these disclosures, its audience, nonce and age.
pub fn verify_presentation(
    p: &PresentationEnvelope,
    trust: &Trust,
    expected: &Expected,
    now: u64,
) -> Result<Verified, VerifyError> {
    let (credential, claims) =
        verify_credential(&p.credential, &p.disclosures, &trust.issuer_key, now)?;
    if trust.revoked.contains(&credential.id) {
        return Err(VerifyError::Revoked);
    }
    let (holder, binding) = verify_binding(p, &credential, &trust.host_key)?;
    check_expected(&binding, expected, now)?;
    Ok(Verified {
        credential,
        claims,
        holder,
        binding,
    })
}

/// The host's certificate and the holder's signature over these exact
/// disclosures.
fn verify_binding(
    p: &PresentationEnvelope,
    credential: &CredentialPayload,
    host_key: &[u8; 32],
) -> Result<(HolderCert, KeyBinding), VerifyError> {
    let holder: HolderCert = open_signed(&p.holder, host_key)?.ok_or(VerifyError::HostSignature)?;
    if holder.sub != credential.sub {
        return Err(VerifyError::BindingMismatch("another subject"));
    }
    let binding: KeyBinding =
        open_signed(&p.binding, &public_key(&holder.key)?)?.ok_or(VerifyError::HolderSignature)?;
    if binding.sd_hash != sd_hash(&p.credential, &p.disclosures) {
        return Err(VerifyError::BindingMismatch("other claims"));
    }
    Ok((holder, binding))
}

fn check_expected(binding: &KeyBinding, expected: &Expected, now: u64) -> Result<(), VerifyError> {
    if binding.aud != expected.audience {
        return Err(VerifyError::WrongAudience(binding.aud.clone()));
    }
    if expected.nonce.as_ref().is_some_and(|n| *n != binding.nonce) {
        return Err(VerifyError::WrongNonce);
    }
    if binding.iat > now.saturating_add(60)
        || now.saturating_sub(binding.iat) > expected.max_age_secs
    {
        return Err(VerifyError::Stale);
    }
    Ok(())
}

/// The verifier's checklist: each of the three questions a person at a
/// counter asks (is the issuer's signature good, is the holder binding
/// good, is it fresh and for me), answered separately, with the reason
/// where one fails. A check that cannot be made because an earlier one
/// failed reports that failure too.
pub fn checks(
    p: &PresentationEnvelope,
    trust: &Trust,
    expected: &Expected,
    now: u64,
) -> Vec<Check> {
    let issuer = verify_credential(&p.credential, &p.disclosures, &trust.issuer_key, now).and_then(
        |(c, _)| {
            if trust.revoked.contains(&c.id) {
                Err(VerifyError::Revoked)
            } else {
                Ok(c)
            }
        },
    );
    let credential = peek::<CredentialPayload>(&p.credential);
    let binding = credential.and_then(|c| verify_binding(p, &c, &trust.host_key));
    let fresh = match &binding {
        Ok((_, b)) => check_expected(b, expected, now),
        Err(e) => Err(e.clone()),
    };
    vec![
        Check {
            name: "issuer signature",
            failure: issuer.err(),
        },
        Check {
            name: "holder binding",
            failure: binding.err(),
        },
        Check {
            name: "freshness and audience",
            failure: fresh.err(),
        },
    ]
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
