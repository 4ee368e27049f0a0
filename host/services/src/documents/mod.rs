//! The document wallet: issuers (registered by an operator, each with an
//! Ed25519 key), credentials they issue into users' wallets, revocations,
//! and the host's own signing key for presentation bindings. The format and
//! its verification live in `superapp_sdk::credentials`, shared with
//! mini-programs and providers' backends; this module signs with ring.
//!
//! Disclosure requests from the `documents` capability live in [`requests`].

pub mod requests;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use superapp_sdk::credentials::{self as format, CredentialPayload, Signed, VerifyError, VERSION};

use crate::identity::{now_secs, User};
use superapp_store::{txn_get, txn_put, Abort, Store, StoreError, Tree};

/// A registered issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issuer {
    /// e.g. `gov.health-insurance`.
    pub id: String,
    /// Shown to users in document sheets.
    pub name: String,
    /// Ed25519, base64url.
    pub public_key: String,
    pub added_at: u64,
}

/// What an issuer hands over to put a credential in a wallet: the signed
/// credential, every disclosure, and the subject binding's opening (the
/// holder's username and salt), which only the wallet keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Issuance {
    pub credential: Signed,
    pub disclosures: Vec<String>,
    pub subject: Subject,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    pub username: String,
    pub salt: String,
}

/// A revocation, signed by the issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationPayload {
    pub v: u32,
    pub iss: String,
    pub revoke: String,
    pub iat: u64,
}

/// A credential in a user's wallet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub id: String,
    pub issuer: String,
    pub credential_type: String,
    pub credential: Signed,
    pub disclosures: Vec<String>,
    pub subject_salt: String,
    pub issued_at: u64,
    pub expires_at: u64,
    pub received_at: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("{0}")]
    Invalid(String),
    #[error("no issuer `{0}` is registered")]
    UnknownIssuer(String),
    #[error("issuer `{0}` is already registered")]
    IssuerExists(String),
    #[error(
        "issuer `{other}` is registered already, and `{id}` differs from it only in case, punctuation or letters that look alike"
    )]
    IssuerTwin { id: String, other: String },
    #[error("no user `{0}`")]
    UnknownUser(String),
    /// Its text includes the cause, so the cause is not also its source
    /// (which would print it twice in an error chain).
    #[error("the credential does not verify: {0}")]
    Verify(VerifyError),
    #[error(
        "this user holds another credential of this issuer with id `{0}`: an issuer gives each credential an id of its own"
    )]
    HeldAlready(String),
    #[error("no such request")]
    NotFound,
    #[error("the request is no longer pending")]
    NotPending,
    #[error(transparent)]
    Store(#[from] StoreError),
}

superapp_store::abort_into!(DocumentError);

impl From<VerifyError> for DocumentError {
    fn from(e: VerifyError) -> Self {
        DocumentError::Verify(e)
    }
}

fn issuer_key(id: &str) -> Vec<u8> {
    format!("i\0{id}").into_bytes()
}

fn revocation_key(issuer: &str, credential: &str) -> Vec<u8> {
    format!("r\0{issuer}\0{credential}").into_bytes()
}

/// A credential in `user`'s wallet, by its issuer and the id that issuer
/// gave it: ids are each issuer's own, so another's id tells nothing about
/// what a wallet holds.
fn held_key(user: &str, issuer: &str, credential: &str) -> Vec<u8> {
    format!("{user}\0{issuer}\0{credential}").into_bytes()
}

/// Where wallets kept a credential before its issuer was part of the key
/// (read, never written; a wallet's scan finds both).
fn legacy_held_key(user: &str, credential: &str) -> Vec<u8> {
    format!("{user}\0{credential}").into_bytes()
}

/// An identifier of ours: 1-64 of `a-z 0-9 . - _`.
pub fn check_name(what: &str, value: &str) -> Result<(), DocumentError> {
    // Not only punctuation: `.` and `..` would be path segments that
    // clients tidy away.
    let ok = value.len() <= 64
        && value.bytes().any(|b| b.is_ascii_alphanumeric())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(DocumentError::Invalid(format!(
            "{what} `{value}` must be 1-64 of a-z, 0-9, `.`, `-`, `_`, with a letter or digit"
        )))
    }
}

/// A credential's id: 1-128 of base64url's characters and `.` (issuers
/// draw it at random; `superapp issuer issue` writes 22). Users and
/// verifiers read it, and it names a revocation.
pub fn check_credential_id(id: &str) -> Result<(), DocumentError> {
    let ok = (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(DocumentError::Invalid(
            "a credential id is 1-128 of A-Z, a-z, 0-9, `-`, `_`, `.`".into(),
        ))
    }
}

/// Longest claim value, in characters.
pub const MAX_CLAIM_VALUE: usize = 500;

/// What a credential's claims must be: at least one, each name an
/// identifier of ours (once), each value text people read in a document
/// sheet: something that shows, one line, no direction override.
pub fn check_claims<'a>(
    claims: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), DocumentError> {
    let mut seen = std::collections::HashSet::new();
    for (name, value) in claims {
        check_name("claim name", name)?;
        if !seen.insert(name) {
            return Err(DocumentError::Invalid(format!(
                "claim `{name}` appears twice"
            )));
        }
        if let Some(problem) = superapp_core::text::label_problem(value, MAX_CLAIM_VALUE) {
            return Err(DocumentError::Invalid(format!(
                "claim `{name}`'s value {problem}"
            )));
        }
    }
    if seen.is_empty() {
        return Err(DocumentError::Invalid(
            "a credential needs at least one claim".into(),
        ));
    }
    Ok(())
}

pub fn random_b64(len: usize) -> String {
    let mut b = vec![0u8; len];
    SystemRandom::new()
        .fill(&mut b)
        .expect("system random number generator");
    B64.encode(b)
}

/// Sign `payload` with an Ed25519 key pair.
pub fn sign<T: Serialize>(key: &Ed25519KeyPair, payload: &T) -> Signed {
    let payload = format::encode_payload(payload);
    let signature = B64.encode(key.sign(payload.as_bytes()).as_ref());
    Signed { payload, signature }
}

/// An issuer's key file: written by `superapp issuer keygen`, kept by the
/// issuer, never by the host.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerKeyFile {
    pub issuer: String,
    /// PKCS#8 v2, base64url.
    pub pkcs8: String,
    pub public_key: String,
}

impl IssuerKeyFile {
    pub fn generate(issuer: &str) -> anyhow::Result<IssuerKeyFile> {
        check_name("issuer id", issuer)?;
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| anyhow::anyhow!("cannot generate a key"))?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|_| anyhow::anyhow!("cannot read the generated key"))?;
        Ok(IssuerKeyFile {
            issuer: issuer.to_string(),
            pkcs8: B64.encode(pkcs8.as_ref()),
            public_key: B64.encode(pair.public_key().as_ref()),
        })
    }

    pub fn load(path: &Path) -> anyhow::Result<IssuerKeyFile> {
        let text = superapp_core::files::read_text_at_most(path, 64 << 10)
            .with_context(|| format!("cannot read the key file {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not an issuer key file", path.display()))
    }

    pub fn pair(&self) -> anyhow::Result<Ed25519KeyPair> {
        let pkcs8 = B64
            .decode(&self.pkcs8)
            .context("the key file's pkcs8 is not base64url")?;
        Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|_| anyhow::anyhow!("the key file does not hold an Ed25519 key"))
    }

    /// Issue a credential of `credential_type` with `claims` to the user
    /// named `username`, valid for `valid_secs` from now.
    pub fn issue(
        &self,
        username: &str,
        credential_type: &str,
        claims: &[(String, String)],
        valid_secs: u64,
    ) -> anyhow::Result<Issuance> {
        check_name("credential type", credential_type)?;
        if valid_secs == 0 {
            anyhow::bail!("a credential valid for no time is expired when issued");
        }
        check_claims(claims.iter().map(|(n, v)| (n.as_str(), v.as_str())))?;
        let disclosures: Vec<String> = claims
            .iter()
            .map(|(name, value)| format::disclosure(&random_b64(16), name, value))
            .collect();
        let mut digests: Vec<String> = disclosures.iter().map(|d| format::digest(d)).collect();
        digests.sort();
        let salt = random_b64(16);
        let now = now_secs();
        let payload = CredentialPayload {
            v: VERSION,
            id: random_b64(16),
            iss: self.issuer.clone(),
            credential_type: credential_type.to_string(),
            sub: format::subject_binding(username, &salt),
            iat: now,
            exp: now.saturating_add(valid_secs),
            digests,
        };
        Ok(Issuance {
            credential: sign(&self.pair()?, &payload),
            disclosures,
            subject: Subject {
                username: username.to_string(),
                salt,
            },
        })
    }

    pub fn revoke(&self, credential: &str) -> anyhow::Result<Signed> {
        let payload = RevocationPayload {
            v: VERSION,
            iss: self.issuer.clone(),
            revoke: credential.to_string(),
            iat: now_secs(),
        };
        Ok(sign(&self.pair()?, &payload))
    }
}

/// The host's presentation-signing key: created on first start among the
/// host's private files (see [`Secrets`](crate::identity::Secrets)), its
/// public half served at `/api/v1/host-key`.
pub struct HostKey {
    pair: Ed25519KeyPair,
    /// The keys this one replaced, oldest first.
    retired: Vec<RetiredKey>,
}

pub const HOST_KEY_FILE: &str = "host-signing-key";

/// A key the host signed with until a rotation replaced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredKey {
    pub public_key: String,
    pub retired_at: u64,
}

/// The store's list of retired host keys (`Tree::Meta`).
const RETIRED_KEYS: &[u8] = b"host-key/retired";

fn generate_host_key() -> anyhow::Result<Vec<u8>> {
    Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map(|k| k.as_ref().to_vec())
        .map_err(|_| anyhow::anyhow!("cannot generate the host signing key"))
}

impl HostKey {
    pub fn load_or_create(secrets: &crate::identity::Secrets) -> anyhow::Result<HostKey> {
        let pkcs8 = secrets.load_or_create_kept(HOST_KEY_FILE, generate_host_key)?;
        let mut key = HostKey::parse(Path::new(&secrets.describe(HOST_KEY_FILE)), &pkcs8)?;
        if let Some(store) = secrets.store() {
            key.retired = store
                .get(Tree::Meta, RETIRED_KEYS)
                .map_err(|e| anyhow::anyhow!("cannot read the store: {e}"))?
                .unwrap_or_default();
        }
        Ok(key)
    }

    /// Replace the host's signing key with a new one, for a key that may
    /// have leaked or has served its time. The old public key is listed as
    /// retired and the change is in the audit log with `reason`; a host
    /// signs with the new key from its next start. Returns the old and the
    /// new public key.
    pub fn rotate(
        secrets: &crate::identity::Secrets,
        audit: &crate::audit::Audit,
        reason: &str,
    ) -> anyhow::Result<(String, String)> {
        let old_pkcs8 = secrets.load_kept(HOST_KEY_FILE)?;
        let old = HostKey::parse(Path::new(&secrets.describe(HOST_KEY_FILE)), &old_pkcs8)?;
        let pkcs8 = generate_host_key()?;
        let new = HostKey::parse(Path::new("(new)"), &pkcs8)?;
        let (old_key, new_key) = (old.public_key(), new.public_key());
        let retired_at = now_secs();
        let trees = crate::audit::with(&[Tree::Meta]);
        secrets.replace_kept(HOST_KEY_FILE, &old_pkcs8, &pkcs8, &trees, |t| {
            let mut retired: Vec<RetiredKey> =
                txn_get(t, Tree::Meta, RETIRED_KEYS)?.unwrap_or_default();
            retired.push(RetiredKey {
                public_key: old_key.clone(),
                retired_at,
            });
            txn_put(t, Tree::Meta, RETIRED_KEYS, &retired)?;
            let event = crate::audit::Event {
                kind: "host.key.rotate".into(),
                outcome: "rotated".into(),
                ..Default::default()
            }
            .with_detail("actor", "operator")
            .with_detail("old_key", old_key.clone())
            .with_detail("new_key", new_key.clone())
            .with_detail("reason", reason);
            audit.append_in(t, event)?;
            Ok(())
        })?;
        Ok((old_key, new_key))
    }

    /// The keys this one replaced, oldest first.
    pub fn retired(&self) -> &[RetiredKey] {
        &self.retired
    }

    /// The existing key of a stopped host (for offline tools, which must
    /// never create one): as its next start would load it, a rotation a
    /// crash cut short finished first.
    pub fn load(secrets: &crate::identity::Secrets) -> anyhow::Result<HostKey> {
        let pkcs8 = secrets.load_kept(HOST_KEY_FILE)?;
        HostKey::parse(Path::new(&secrets.describe(HOST_KEY_FILE)), &pkcs8)
    }

    /// A key that lives only as long as this process (the provider's dev
    /// loop signs its requests' assertions with one).
    pub fn ephemeral() -> anyhow::Result<HostKey> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| anyhow::anyhow!("cannot generate a signing key"))?;
        HostKey::parse(Path::new("(in memory)"), pkcs8.as_ref())
    }

    fn parse(path: &Path, pkcs8: &[u8]) -> anyhow::Result<HostKey> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|_| anyhow::anyhow!("{} is not an Ed25519 key", path.display()))?;
        Ok(HostKey {
            pair,
            retired: Vec::new(),
        })
    }

    pub fn public_key(&self) -> String {
        B64.encode(self.pair.public_key().as_ref())
    }

    pub fn sign<T: Serialize>(&self, payload: &T) -> Signed {
        sign(&self.pair, payload)
    }

    /// An Ed25519 signature over `bytes` (a provider callback's signing
    /// input, whose format keeps it apart from every signed payload).
    pub fn sign_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        self.pair.sign(bytes).as_ref().to_vec()
    }
}

/// Users' holder keys: the key each user's presentations are signed with,
/// derived from the host's secret and the user id (HMAC-SHA256 as the
/// Ed25519 seed), so it needs no record of its own and never leaves the
/// host. The host certifies it per credential; see
/// `superapp_sdk::credentials::HolderCert`.
pub struct HolderKeys {
    secret: ring::hmac::Key,
}

impl HolderKeys {
    /// Keys derived from the host's `secret` (through a subkey of their
    /// own, so no other use of the secret can produce one).
    pub fn new(secret: &[u8]) -> HolderKeys {
        let root = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let subkey = ring::hmac::sign(&root, b"superapp holder keys v1");
        HolderKeys {
            secret: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, subkey.as_ref()),
        }
    }

    /// `user`'s holder key pair.
    pub fn pair(&self, user: &str) -> Ed25519KeyPair {
        let seed = ring::hmac::sign(&self.secret, user.as_bytes());
        Ed25519KeyPair::from_seed_unchecked(seed.as_ref()).expect("a 32-byte seed")
    }
}

/// Issuers, revocations and wallets.
pub struct Documents {
    store: Arc<Store>,
}

impl Documents {
    pub fn new(store: Arc<Store>) -> Documents {
        Documents { store }
    }

    /// Register an issuer; `by` names who did, in the audit entry written
    /// in the same transaction.
    pub fn add_issuer(
        &self,
        audit: &crate::audit::Audit,
        by: &str,
        id: &str,
        name: &str,
        public_key: &str,
    ) -> Result<Issuer, DocumentError> {
        check_name("issuer id", id)?;
        if let Some(problem) = superapp_core::text::name_problem(name, 100) {
            return Err(DocumentError::Invalid(format!("an issuer name {problem}")));
        }
        // `gov.test` and `gov-test` would pass for each other. An issuer
        // registered again is told so first, whatever look-alikes earlier
        // rules let in beside it.
        let issuers = self.issuers()?;
        if issuers.iter().any(|i| i.id == id) {
            return Err(DocumentError::IssuerExists(id.to_string()));
        }
        if let Some(other) = issuers
            .into_iter()
            .find(|i| superapp_core::text::look_alike(&i.id, id))
        {
            return Err(DocumentError::IssuerTwin {
                id: id.to_string(),
                other: other.id,
            });
        }
        let raw = format::public_key(public_key).map_err(|_| {
            DocumentError::Invalid(
                "the public key is not an Ed25519 public key (32 bytes of base64url, as `superapp issuer keygen` prints)".into(),
            )
        })?;
        if superapp_core::keys::weak_public_key(&raw) {
            return Err(DocumentError::Invalid(
                "the public key is a weak or invalid Ed25519 key (off the curve, or one anyone could sign under): generate one with `superapp issuer keygen`".into(),
            ));
        }
        // Users tell issuers apart by name in document sheets, and a key
        // names one issuer: credentials it signs say which.
        let issuers = self.issuers()?;
        if let Some(other) = issuers
            .iter()
            .find(|i| superapp_core::text::look_alike(&i.name, name))
        {
            return Err(DocumentError::Invalid(format!(
                "issuer `{}` goes by the name `{}` already, which `{name}` would pass for",
                other.id, other.name
            )));
        }
        if let Some(other) = issuers
            .iter()
            .find(|i| format::public_key(&i.public_key).is_ok_and(|k| k == raw))
        {
            return Err(DocumentError::Invalid(format!(
                "this key is issuer `{}`'s: each issuer has a key of its own",
                other.id
            )));
        }
        let issuer = Issuer {
            id: id.to_string(),
            name: name.to_string(),
            public_key: public_key.trim().to_string(),
            added_at: now_secs(),
        };
        self.store
            .transact(&crate::audit::with(&[Tree::Issuers]), |t| {
                if t.get(Tree::Issuers, &issuer_key(id))?.is_some() {
                    return Err(Abort::User(DocumentError::IssuerExists(id.to_string())));
                }
                txn_put(t, Tree::Issuers, &issuer_key(id), &issuer)?;
                let event = crate::audit::Event {
                    kind: "documents.issuer.add".into(),
                    outcome: "added".into(),
                    ..Default::default()
                }
                .with_detail("issuer", id)
                .with_detail("key", issuer.public_key.as_str())
                .with_detail("by", by);
                audit.append_in(t, event)?;
                Ok(())
            })?;
        Ok(issuer)
    }

    pub fn issuer(&self, id: &str) -> Result<Option<Issuer>, DocumentError> {
        Ok(self.store.get(Tree::Issuers, &issuer_key(id))?)
    }

    pub fn issuers(&self) -> Result<Vec<Issuer>, DocumentError> {
        self.store
            .scan(Tree::Issuers, b"i\0", None, usize::MAX, false)?
            .iter()
            .map(|(_, v)| Ok(superapp_store::decode(Tree::Issuers, v)?))
            .collect()
    }

    fn issuer_public_key(&self, id: &str) -> Result<[u8; 32], DocumentError> {
        let issuer = self
            .issuer(id)?
            .ok_or_else(|| DocumentError::UnknownIssuer(id.to_string()))?;
        Ok(format::public_key(&issuer.public_key)?)
    }

    /// The credential ids `issuer` has revoked: its status list.
    pub fn revoked(&self, issuer: &str) -> Result<Vec<String>, DocumentError> {
        let prefix = format!("r\0{issuer}\0").into_bytes();
        Ok(self
            .store
            .scan(Tree::Issuers, &prefix, None, usize::MAX, false)?
            .into_iter()
            .map(|(k, _)| String::from_utf8_lossy(&k[prefix.len()..]).into_owned())
            .collect())
    }

    pub fn is_revoked(&self, issuer: &str, credential: &str) -> Result<bool, DocumentError> {
        Ok(self
            .store
            .get_raw(Tree::Issuers, &revocation_key(issuer, credential))?
            .is_some())
    }

    /// Accept an issuer-signed revocation.
    pub fn revoke(&self, signed: &Signed) -> Result<RevocationPayload, DocumentError> {
        let unverified: RevocationPayload = format::peek(signed)?;
        let issuer = self
            .issuer(&unverified.iss)?
            .ok_or_else(|| DocumentError::UnknownIssuer(unverified.iss.clone()))?;
        let key = format::public_key(&issuer.public_key)?;
        let payload: RevocationPayload = format::open_signed(signed, &key)
            .ok()
            .flatten()
            .ok_or_else(|| {
                DocumentError::Invalid(format!(
                    "the revocation does not verify under issuer `{}`'s key",
                    issuer.id
                ))
            })?;
        check_credential_id(&payload.revoke)?;
        let skew = superapp_core::signed_request::MAX_SKEW_SECS;
        if payload.iat > now_secs().saturating_add(skew) {
            return Err(DocumentError::Invalid(
                "the revocation is dated in the future: check the issuer's clock".into(),
            ));
        }
        if payload.iat.saturating_add(skew) < issuer.added_at {
            return Err(DocumentError::Invalid(
                "the revocation is dated before its issuer was registered".into(),
            ));
        }
        self.store.transact(&[Tree::Issuers], |t| {
            txn_put(
                t,
                Tree::Issuers,
                &revocation_key(&payload.iss, &payload.revoke),
                &payload.iat,
            )?;
            Ok::<_, Abort<DocumentError>>(())
        })?;
        Ok(payload)
    }

    /// Put an issued credential into its holder's wallet, after checking
    /// the issuer is registered, its signature, validity, every disclosure,
    /// and that the subject binding opens to `holder`.
    pub fn accept(&self, issuance: &Issuance, holder: &User) -> Result<Held, DocumentError> {
        let unverified: CredentialPayload = format::peek(&issuance.credential)?;
        let key = self.issuer_public_key(&unverified.iss)?;
        let (payload, claims) = format::verify_credential(
            &issuance.credential,
            &issuance.disclosures,
            &key,
            now_secs(),
        )?;
        if claims.len() != payload.digests.len() {
            return Err(DocumentError::Invalid(
                "an issuance carries a disclosure for every signed digest".into(),
            ));
        }
        // What `superapp issuer issue` holds an issuer to, for a credential
        // made with any tool: the wallet and the host's sheets show it.
        check_credential_id(&payload.id)?;
        check_name("credential type", &payload.credential_type)?;
        check_claims(claims.iter().map(|c| (c.name.as_str(), c.value.as_str())))?;
        if issuance.subject.username != holder.username
            || format::subject_binding(&holder.username, &issuance.subject.salt) != payload.sub
        {
            return Err(DocumentError::Invalid(
                "the credential is not bound to this user".into(),
            ));
        }
        if self.is_revoked(&payload.iss, &payload.id)? {
            return Err(VerifyError::Revoked.into());
        }
        let held = Held {
            id: payload.id.clone(),
            issuer: payload.iss.clone(),
            credential_type: payload.credential_type.clone(),
            credential: issuance.credential.clone(),
            disclosures: issuance.disclosures.clone(),
            subject_salt: issuance.subject.salt.clone(),
            issued_at: payload.iat,
            expires_at: payload.exp,
            received_at: now_secs(),
        };
        let held = self.store.transact(&[Tree::Credentials], |t| {
            let k = held_key(&holder.id, &held.issuer, &held.id);
            let earlier = match txn_get::<Held>(t, Tree::Credentials, &k)? {
                Some(earlier) => Some(earlier),
                None => {
                    txn_get::<Held>(t, Tree::Credentials, &legacy_held_key(&holder.id, &held.id))?
                        .filter(|earlier| earlier.issuer == held.issuer)
                }
            };
            match earlier {
                None => {
                    txn_put(t, Tree::Credentials, &k, &held)?;
                    Ok(held.clone())
                }
                // The same credential handed over again.
                Some(earlier) if earlier.credential == held.credential => Ok(earlier),
                Some(_) => Err(Abort::User(DocumentError::HeldAlready(held.id.clone()))),
            }
        })?;
        Ok(held)
    }

    /// The user's credentials, oldest first.
    pub fn wallet(&self, user: &str) -> Result<Vec<Held>, DocumentError> {
        let prefix = format!("{user}\0").into_bytes();
        let mut held: Vec<Held> = self
            .store
            .scan(Tree::Credentials, &prefix, None, usize::MAX, false)?
            .iter()
            .map(|(_, v)| superapp_store::decode(Tree::Credentials, v))
            .collect::<Result<_, _>>()?;
        held.sort_by_key(|h| h.received_at);
        Ok(held)
    }

    /// The newest usable credential of a type: not expired, not revoked.
    pub fn usable(&self, user: &str, credential_type: &str) -> Result<Option<Held>, DocumentError> {
        let now = now_secs();
        let mut found = None;
        for h in self.wallet(user)? {
            if h.credential_type == credential_type
                && now < h.expires_at
                && !self.is_revoked(&h.issuer, &h.id)?
            {
                found = Some(h);
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests;
