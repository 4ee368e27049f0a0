//! Disclosure requests: what the `documents` capability creates. A request
//! names a credential type, fields and a purpose; the host shows them in a
//! sheet it draws, and the user approves all, unticks some, or declines.
//! On approval the host builds a presentation holding only the approved
//! claims, certifies the user's holder key for the credential, and signs a
//! key binding with that holder key over the audience (the app, or a
//! verifier the app named), the nonce, the time and exactly the disclosed
//! claims. Nothing about unapproved fields leaves the host, and whether the
//! user holds such a credential at all is not revealed to the app unless
//! the user shares it (or lets the app list their documents, see
//! [`Requests::held`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use superapp_sdk::credentials::{
    self as format, Claim, HolderCert, KeyBinding, PresentationEnvelope, VERSION,
};

use super::{check_name, random_b64, sign, DocumentError, Documents, HolderKeys, HostKey, Issuer};
use crate::audit::{Audit, Event};
use crate::prompts::{self, DocumentSheet, Prompt, PromptBody, PromptStatus};
use superapp_core::{new_id, now_secs, Capability, Manifest};
use superapp_store::{txn_get, txn_put, Abort, Store, StoreError, Tree, Txn};

/// Fields one request may name.
pub const MAX_FIELDS: usize = 32;
/// The trees a step of a request writes (its audit entry's come from
/// `audit::with`).
const TREES: [Tree; 4] = [
    Tree::DocRequests,
    Tree::Prompts,
    Tree::PromptIndex,
    Tree::Deliveries,
];
/// Longest purpose, in bytes.
pub const MAX_PURPOSE: usize = 300;
/// How long a disclosure sheet waits for the user, unless configured.
pub const DEFAULT_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// Longest verifier name an app may give, in bytes.
pub const MAX_VERIFIER: usize = 100;
/// Shortest and longest verifier nonce, in bytes.
pub const NONCE_BYTES: std::ops::RangeInclusive<usize> = 8..=128;

/// What an app asks for.
#[derive(Debug, Clone, Default)]
pub struct Ask {
    pub credential_type: String,
    pub fields: Vec<String>,
    pub purpose: String,
    /// A verifier the user is showing the presentation to, by the name the
    /// app gives it; `None`: the app itself.
    pub verifier: Option<String>,
    /// The verifier's challenge; `None`: the host picks one.
    pub nonce: Option<String>,
}

/// A credential the user holds, as an app may list it: no values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldSummary {
    pub credential_type: String,
    pub credential_id: String,
    pub issuer: Issuer,
    pub fields: Vec<String>,
    pub expires_at: u64,
}

/// What a verifier needs to check a presentation offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierTrust {
    pub issuer: Issuer,
    pub host_key: String,
    pub revoked: bool,
}

/// The audience of a presentation made for `app`: its id, or, for a
/// verifier it named, `APP#NAME`.
pub fn audience(app: &str, verifier: Option<&str>) -> String {
    match verifier {
        None => app.to_string(),
        Some(name) => format!("{app}#{name}"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RequestState {
    Pending,
    Shared,
    Declined,
    /// Nobody answered in time.
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocRequest {
    pub id: String,
    pub user: String,
    pub app: String,
    pub app_version: String,
    pub credential_type: String,
    pub fields: Vec<String>,
    pub purpose: String,
    pub state: RequestState,
    /// The fields disclosed, once shared.
    #[serde(default)]
    pub shared: Vec<String>,
    pub created_at: u64,
    /// Who may accept the presentation (see [`audience`]).
    #[serde(default)]
    pub audience: String,
    /// The verifier's challenge, if the app passed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The verifier's name, when the app named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifier: Option<String>,
    /// When the sheet stops accepting an answer (0: never, for requests
    /// stored before requests expired).
    #[serde(default)]
    pub expires_at: u64,
    /// The provider's callback URL that receives the presentation instead
    /// of the app, when the manifest said so at the time of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_to: Option<String>,
}

/// A presentation as the app receives it.
#[derive(Debug, Clone)]
pub struct Shared {
    pub issuer: String,
    pub claims: Vec<Claim>,
    pub envelope: PresentationEnvelope,
    /// The outbox delivery that hands the presentation to the provider's
    /// backend instead of the app, if the manifest asked for that.
    pub delivery: Option<String>,
}

pub struct Requests {
    store: Arc<Store>,
    audit: Arc<Audit>,
    documents: Arc<Documents>,
    host_key: Arc<HostKey>,
    holder_keys: HolderKeys,
    ttl: std::time::Duration,
}

fn request_key(id: &str) -> Vec<u8> {
    id.as_bytes().to_vec()
}

/// The expiry index: pending requests by when they expire. Request ids are
/// base64url, so no request key begins with the index's prefix.
fn expiry_key(expires_at: u64, id: &str) -> Vec<u8> {
    superapp_store::deadlines::deadline_key(expires_at, id)
}

impl Requests {
    pub fn new(
        store: Arc<Store>,
        audit: Arc<Audit>,
        documents: Arc<Documents>,
        host_key: Arc<HostKey>,
        holder_keys: HolderKeys,
        ttl: std::time::Duration,
    ) -> Requests {
        Requests {
            store,
            audit,
            documents,
            host_key,
            holder_keys,
            ttl,
        }
    }

    /// Audit a step inside its transaction, naming fields but never their
    /// values.
    fn record_in(
        &self,
        t: &dyn Txn,
        kind: &str,
        req: &DocRequest,
        outcome: &str,
        fields: &[String],
    ) -> Result<(), StoreError> {
        let event = Event::for_app(kind, &req.user, &req.app, &req.app_version, outcome)
            .with_capability(Capability::Documents)
            .with_detail("request", &req.id)
            .with_detail("type", &req.credential_type)
            .with_detail("fields", fields.join(","));
        self.audit.append_in(t, event).map(|_| ())
    }

    pub fn get(&self, id: &str) -> Result<Option<DocRequest>, DocumentError> {
        Ok(self.store.get(Tree::DocRequests, &request_key(id))?)
    }

    /// Create a request and its sheet; returns the request id.
    pub fn request(&self, user: &str, app: &Manifest, ask: &Ask) -> Result<String, DocumentError> {
        let Ask {
            credential_type,
            fields,
            purpose,
            ..
        } = ask;
        check_name("credential type", credential_type)?;
        if fields.is_empty() || fields.len() > MAX_FIELDS {
            return Err(DocumentError::Invalid(format!(
                "a request names 1 to {MAX_FIELDS} fields"
            )));
        }
        let mut unique = std::collections::HashSet::new();
        for f in fields {
            check_name("field", f)?;
            if !unique.insert(f) {
                return Err(DocumentError::Invalid(format!(
                    "field `{f}` is named twice"
                )));
            }
        }
        // The host's sheet shows both in sentences of its own: neither may
        // change how those read.
        if superapp_core::text::visible_chars(purpose) == 0
            || purpose.len() > MAX_PURPOSE
            || purpose
                .chars()
                .any(superapp_core::text::disallowed_in_message)
            || superapp_core::text::stacks_marks(purpose)
        {
            return Err(DocumentError::Invalid(format!(
                "a purpose is 1 to {MAX_PURPOSE} bytes, some of it visible, without control characters or direction overrides, and stacks at most 4 marks on a character"
            )));
        }
        if let Some(v) = &ask.verifier {
            if superapp_core::text::visible_chars(v) == 0
                || v.len() > MAX_VERIFIER
                || v.chars().any(superapp_core::text::disallowed_in_label)
                || superapp_core::text::stacks_marks(v)
            {
                return Err(DocumentError::Invalid(format!(
                    "a verifier name is 1 to {MAX_VERIFIER} bytes of one line, without control or text-direction characters, stacking at most 4 marks on a character"
                )));
            }
        }
        if let Some(n) = &ask.nonce {
            if !NONCE_BYTES.contains(&n.len()) || !n.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(DocumentError::Invalid(format!(
                    "a nonce is {} to {} printable ASCII characters",
                    NONCE_BYTES.start(),
                    NONCE_BYTES.end()
                )));
            }
        }
        // What the sheet can offer: the user's credential of that type.
        let held = self.documents.usable(user, credential_type)?;
        let (issuer, available) = match &held {
            Some(h) => {
                let names: Vec<String> = h
                    .disclosures
                    .iter()
                    .filter_map(|d| format::open(d).ok().map(|c| c.name))
                    .collect();
                let issuer = self
                    .documents
                    .issuer(&h.issuer)?
                    .map_or_else(|| h.issuer.clone(), |i| i.name);
                let available = fields
                    .iter()
                    .filter(|f| names.contains(f))
                    .cloned()
                    .collect();
                (Some(issuer), available)
            }
            None => (None, Vec::new()),
        };
        let req = DocRequest {
            id: new_id(),
            user: user.to_string(),
            app: app.id.clone(),
            app_version: app.version.to_string(),
            credential_type: credential_type.to_string(),
            fields: fields.to_vec(),
            purpose: purpose.to_string(),
            state: RequestState::Pending,
            shared: Vec::new(),
            created_at: now_secs(),
            audience: audience(&app.id, ask.verifier.as_deref()),
            nonce: ask.nonce.clone(),
            verifier: ask.verifier.clone(),
            expires_at: now_secs() + self.ttl.as_secs(),
            deliver_to: app.documents_callback().map(|c| c.url.clone()),
        };
        let sheet = DocumentSheet {
            request_id: req.id.clone(),
            credential_type: req.credential_type.clone(),
            fields: req.fields.clone(),
            purpose: req.purpose.clone(),
            issuer,
            available,
            verifier: req.verifier.clone(),
            deliver_to: app.documents_callback().map(|c| c.origin.to_string()),
        };
        let prompt = Prompt::new(
            req.id.clone(),
            app,
            Capability::Documents,
            PromptBody::Document(sheet),
            req.created_at,
        );
        self.store.transact(&crate::audit::with(&TREES), |t| {
            txn_put(t, Tree::DocRequests, &request_key(&req.id), &req)?;
            t.put(Tree::DocRequests, &expiry_key(req.expires_at, &req.id), b"")?;
            prompts::save(t, user, &prompt)?;
            self.record_in(t, "document.request", &req, "pending", &req.fields)?;
            Ok::<_, Abort<DocumentError>>(())
        })?;
        Ok(req.id)
    }

    /// Close a pending request of `user` with its sheet, and record it in
    /// the audit log in the same transaction.
    fn close(
        &self,
        user: &str,
        id: &str,
        state: RequestState,
        shared: &[String],
        delivery: Option<&crate::callbacks::Delivery>,
    ) -> Result<DocRequest, DocumentError> {
        let status = match state {
            RequestState::Shared => PromptStatus::Approved,
            RequestState::Expired => PromptStatus::Expired,
            _ => PromptStatus::Denied,
        };
        let now = now_secs();
        Ok(self.store.transact(&crate::audit::with(&TREES), |t| {
            let mut req = txn_get::<DocRequest>(t, Tree::DocRequests, &request_key(id))?
                .filter(|r| r.user == user)
                .ok_or(Abort::User(DocumentError::NotFound))?;
            if req.state != RequestState::Pending {
                return Err(Abort::User(DocumentError::NotPending));
            }
            // An answer after the deadline finds the request expired.
            if state != RequestState::Expired && req.expires_at != 0 && now >= req.expires_at {
                return Err(Abort::User(DocumentError::NotPending));
            }
            req.state = state;
            req.shared = shared.to_vec();
            txn_put(t, Tree::DocRequests, &request_key(id), &req)?;
            if let Some(d) = delivery {
                crate::callbacks::enqueue_in(t, d)?;
            }
            t.delete(Tree::DocRequests, &expiry_key(req.expires_at, id))?;
            prompts::set_status(t, user, id, status)?;
            match state {
                RequestState::Shared => {
                    self.record_in(t, "document.disclose", &req, "shared", shared)?
                }
                RequestState::Expired => {
                    self.record_in(t, "document.expire", &req, "expired", &req.fields)?
                }
                _ => self.record_in(t, "document.decline", &req, "declined", &req.fields)?,
            }
            Ok(req)
        })?)
    }

    /// The user approves `fields` (all requested fields if `None`) of a
    /// pending request. `pseudonym` is the user's id for the requesting app.
    pub fn approve(
        &self,
        user: &str,
        id: &str,
        fields: Option<Vec<String>>,
        pseudonym: &str,
    ) -> Result<(DocRequest, Shared), DocumentError> {
        let pending = self
            .get(id)?
            .filter(|r| r.user == user)
            .ok_or(DocumentError::NotFound)?;
        if pending.state != RequestState::Pending
            || (pending.expires_at != 0 && now_secs() >= pending.expires_at)
        {
            return Err(DocumentError::NotPending);
        }
        let selected = fields.unwrap_or_else(|| pending.fields.clone());
        if let Some(extra) = selected.iter().find(|f| !pending.fields.contains(f)) {
            return Err(DocumentError::Invalid(format!(
                "field `{extra}` was not requested"
            )));
        }
        let held = self
            .documents
            .usable(user, &pending.credential_type)?
            .ok_or_else(|| {
                DocumentError::Invalid(format!(
                    "you hold no valid `{}` credential; decline the request instead",
                    pending.credential_type
                ))
            })?;
        let mut disclosures = Vec::new();
        let mut claims = Vec::new();
        for d in &held.disclosures {
            let claim = format::open(d)?;
            if selected.contains(&claim.name) {
                disclosures.push(d.clone());
                claims.push(claim);
            }
        }
        if claims.is_empty() {
            return Err(DocumentError::Invalid(
                "approve at least one field the credential holds, or decline".into(),
            ));
        }
        // The wallet verified this credential when it accepted it.
        let credential_payload: format::CredentialPayload = format::peek(&held.credential)?;
        let now = now_secs();
        let holder_pair = self.holder_keys.pair(user);
        let holder = self.host_key.sign(&HolderCert {
            v: VERSION,
            sub: credential_payload.sub,
            key: format::encode_key(ring::signature::KeyPair::public_key(&holder_pair).as_ref()),
            iat: now,
        });
        let own_app = pending.verifier.is_none();
        let binding = KeyBinding {
            v: VERSION,
            aud: pending.audience.clone(),
            nonce: pending.nonce.clone().unwrap_or_else(|| random_b64(16)),
            iat: now,
            sd_hash: format::sd_hash(&held.credential, &disclosures),
            user: own_app.then(|| pseudonym.to_string()),
        };
        let envelope = PresentationEnvelope {
            binding: sign(&holder_pair, &binding),
            credential: held.credential.clone(),
            disclosures,
            holder,
        };
        let names: Vec<String> = claims.iter().map(|c| c.name.clone()).collect();
        // For a backend that asked for it, the presentation goes out in the
        // same transaction that closes the request: shared once, delivered
        // at least once, never to the app.
        let delivery = pending
            .deliver_to
            .as_deref()
            .map(|url| crate::callbacks::document_delivery(url, &pending, &envelope));
        let req = self.close(user, id, RequestState::Shared, &names, delivery.as_ref())?;
        Ok((
            req,
            Shared {
                issuer: held.issuer,
                claims,
                envelope,
                delivery: delivery.map(|d| d.id),
            },
        ))
    }

    /// The user's usable credentials (not expired, not revoked), without
    /// values. The capability asks the user once per app before this.
    pub fn held(&self, user: &str) -> Result<Vec<HeldSummary>, DocumentError> {
        let now = now_secs();
        let mut out = Vec::new();
        for h in self.documents.wallet(user)? {
            if now >= h.expires_at || self.documents.is_revoked(&h.issuer, &h.id)? {
                continue;
            }
            let Some(issuer) = self.documents.issuer(&h.issuer)? else {
                continue;
            };
            let fields = h
                .disclosures
                .iter()
                .filter_map(|d| format::open(d).ok().map(|c| c.name))
                .collect();
            out.push(HeldSummary {
                credential_type: h.credential_type,
                credential_id: h.id,
                issuer,
                fields,
                expires_at: h.expires_at,
            });
        }
        // A stable order, whatever order they arrived in.
        out.sort_by(|a, b| {
            (&a.credential_type, &a.issuer.id).cmp(&(&b.credential_type, &b.issuer.id))
        });
        Ok(out)
    }

    /// An issuer's key, the host's key, and whether `credential` is revoked.
    pub fn trust(&self, issuer: &str, credential: &str) -> Result<VerifierTrust, DocumentError> {
        let found = self
            .documents
            .issuer(issuer)?
            .ok_or_else(|| DocumentError::UnknownIssuer(issuer.to_string()))?;
        Ok(VerifierTrust {
            revoked: self.documents.is_revoked(issuer, credential)?,
            issuer: found,
            host_key: self.host_key.public_key(),
        })
    }

    /// Up to `limit` expiry index entries due at `now`, oldest first, as
    /// (deadline, request id); each is closed by [`Requests::expire`].
    pub fn due(&self, now: u64, limit: usize) -> Result<Vec<(u64, String)>, DocumentError> {
        Ok(superapp_store::deadlines::due(
            &self.store,
            Tree::DocRequests,
            now,
            limit,
        )?)
    }

    /// Expire request `id`, indexed as due at `at`, if it is still pending
    /// and its time is up at `now`; the request when this call closed it,
    /// `None` otherwise. One answered or gone, or indexed at another time
    /// than its own, has the stale entry dropped; one not yet due is left
    /// alone.
    pub fn expire(&self, at: u64, id: &str, now: u64) -> Result<Option<DocRequest>, DocumentError> {
        let pending = self.get(id)?.filter(|r| r.state == RequestState::Pending);
        let closed = match pending {
            Some(req) if req.expires_at > now => {
                if at == req.expires_at {
                    return Ok(None);
                }
                // Not the request's own entry: a stale one goes.
                None
            }
            Some(req) => match self.close(&req.user, id, RequestState::Expired, &[], None) {
                Ok(req) => Some(req),
                Err(DocumentError::NotPending) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        if closed.is_none() {
            // Answered meanwhile, gone, or indexed at another time than its
            // own: drop the stale entry.
            let entry = superapp_store::deadlines::deadline_key(at, id);
            self.store.transact(&[Tree::DocRequests], |t| {
                t.delete(Tree::DocRequests, &entry)?;
                Ok::<_, Abort<DocumentError>>(())
            })?;
        }
        Ok(closed)
    }

    pub fn decline(&self, user: &str, id: &str) -> Result<DocRequest, DocumentError> {
        self.close(user, id, RequestState::Declined, &[], None)
    }
}
