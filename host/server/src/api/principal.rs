//! Who calls the registry and audit routes, and the request body they
//! signed: the operator (`Authorization: Bearer` with the token from the
//! data directory's `operator.token`), or a publisher or auditor by a
//! request signed with their key (`superapp_core::signed_request`). A
//! signed request is used once: its nonce is remembered, in the store, for
//! as long as its time could pass the freshness check.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use superapp_core::now_secs;
use superapp_core::signed_request::{RequestSignature, MAX_SKEW_SECS, SCHEME};
use superapp_services::registry::Actor;
use superapp_store::{Abort, Store, StoreError, Tree};

use super::error::ApiError;
use super::AppState;

/// A caller of the registry routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Operator,
    /// A registered publisher, by id: the publishers the request's key
    /// belongs to. That is one, except for the host's development key
    /// (`--apps`, `--demo`), which stands for every publisher whose apps it
    /// published; a request with it acts as the publisher concerned.
    Publisher(Vec<String>),
    /// A trusted auditor, by key.
    Auditor(String),
}

impl Principal {
    pub fn actor(&self) -> Actor {
        match self {
            Principal::Operator => Actor::Operator,
            Principal::Publisher(ids) => Actor::Publisher(ids[0].clone()),
            Principal::Auditor(key) => Actor::Auditor(key.clone()),
        }
    }

    /// Whether this caller is publisher `publisher`.
    pub fn is_publisher(&self, publisher: &str) -> bool {
        matches!(self, Principal::Publisher(ids) if ids.iter().any(|id| id == publisher))
    }

    /// The actor of a change to publisher `publisher`'s things: that
    /// publisher when the caller's key is one of its keys. (Otherwise the
    /// caller's own, which the registry then refuses with the reason.)
    pub fn actor_for(&self, publisher: &str) -> Actor {
        if self.is_publisher(publisher) {
            Actor::Publisher(publisher.into())
        } else {
            self.actor()
        }
    }

    pub fn require_operator(&self) -> Result<(), ApiError> {
        match self {
            Principal::Operator => Ok(()),
            _ => Err(ApiError::forbidden("only the operator may do this")),
        }
    }

    /// The operator, an auditor, or the publisher `publisher`.
    pub fn require_reader_of(&self, publisher: &str) -> Result<(), ApiError> {
        match self {
            Principal::Publisher(_) if !self.is_publisher(publisher) => Err(ApiError::forbidden(
                "a publisher may only read its own apps",
            )),
            _ => Ok(()),
        }
    }
}

/// Nonces of signed requests already served, with when they expire: in
/// the store (its short-lived records, under `nonce`), so a request
/// replayed after a restart, or at another host process on the same
/// store, is refused too; and counted here, which bounds how many one
/// process adds before old ones expire.
pub struct Nonces {
    store: Arc<Store>,
    recent: Mutex<HashMap<String, u64>>,
    /// When host processes on this store began remembering nonces
    /// ([`KEPT_SINCE`]).
    kept_since: u64,
}

/// The store's record (in its meta records) of the first start of a host
/// that remembers nonces there. An earlier version kept them in memory
/// only, so a request it answered in its last minutes could be played
/// again after the upgrade; requests signed before this time are refused.
const KEPT_SINCE: &[u8] = b"signed-request-nonces-kept-since";

/// How many nonces one process takes at most within their lifetime;
/// beyond that signed requests are refused (503) until old ones expire.
const MAX_NONCES: usize = 200_000;

/// The short-lived records' name for nonces (the rate windows' tree).
const NONCE_RECORDS: &[u8] = b"nonce\0";

/// How long a nonce is remembered: past that, its request's time fails
/// the freshness check whatever the nonce.
const NONCE_LIFETIME: u64 = 2 * MAX_SKEW_SECS + 1;

/// How long the store keeps a nonce past its lifetime: for host processes
/// on one store whose clocks differ by up to this much.
const NONCE_GRACE: u64 = 60;

impl Nonces {
    /// The nonces of `store`; the first host to open them records `now`
    /// as the time from which signed requests are remembered.
    pub fn open(store: Arc<Store>, now: u64) -> Result<Nonces, StoreError> {
        let kept_since = store
            .transact(&[Tree::Meta], |t| {
                let kept = t.get(Tree::Meta, KEPT_SINCE)?;
                // A record that does not read as a time is written again:
                // refusing what was signed before now is the safe side.
                if let Some(since) = kept.and_then(|v| v.try_into().ok().map(u64::from_be_bytes)) {
                    return Ok(since);
                }
                t.put(Tree::Meta, KEPT_SINCE, &now.to_be_bytes())?;
                Ok::<_, Abort<()>>(now)
            })
            .map_err(Abort::into_store)?;
        Ok(Nonces {
            store,
            recent: Mutex::new(HashMap::new()),
            kept_since,
        })
    }

    /// Refuse a request signed at `ts`, before nonces were kept: whether
    /// an earlier version answered it is not known.
    fn signed_while_kept(&self, ts: u64) -> Result<(), ApiError> {
        if ts < self.kept_since {
            return Err(ApiError::unauthenticated(
                "this request was signed before this host began remembering used requests (at its first start or upgrade); sign a new one",
            ));
        }
        Ok(())
    }

    /// Remember `nonce` of `key`; `false` if it was already used.
    fn first_use(&self, key: &str, nonce: &str, now: u64) -> Result<bool, ApiError> {
        let id = format!("{key}\0{nonce}");
        {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            if recent.len() >= MAX_NONCES {
                recent.retain(|_, expires| *expires > now);
                if recent.len() >= MAX_NONCES {
                    return Err(ApiError {
                        retry_after: Some(MAX_SKEW_SECS),
                        ..ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "busy",
                            "too many signed requests; try again later",
                        )
                    });
                }
            }
            if recent.get(&id).is_some_and(|expires| *expires > now) {
                return Ok(false);
            }
        }
        let record = [NONCE_RECORDS, id.as_bytes()].concat();
        let expires = now + NONCE_LIFETIME;
        let first = self
            .store
            .transact(&[Tree::Windows], |t| {
                let used = t
                    .get(Tree::Windows, &record)?
                    .and_then(|v| v.try_into().ok().map(u64::from_be_bytes))
                    .is_some_and(|until| until > now);
                if !used {
                    t.put(Tree::Windows, &record, &expires.to_be_bytes())?;
                }
                Ok::<_, Abort<()>>(!used)
            })
            .map_err(Abort::into_store)?;
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, expires);
        Ok(first)
    }

    /// Forget nonces whose requests can no longer pass the freshness check
    /// at any host process whose clock runs up to [`NONCE_GRACE`] behind
    /// this one's.
    pub fn sweep(&self, now: u64) -> Result<usize, StoreError> {
        let expired = |value: &[u8]| {
            value.try_into().map_or(true, |b| {
                u64::from_be_bytes(b).saturating_add(NONCE_GRACE) <= now
            })
        };
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, expires| *expires > now);
        self.store
            .remove_stale(Tree::Windows, NONCE_RECORDS, expired)
    }
}

/// An authenticated registry request and its raw body.
pub struct Called {
    pub principal: Principal,
    pub body: Bytes,
    /// Whether the body was sent as JSON (`application/json`, or
    /// `application/…+json`).
    json_content: bool,
}

impl Called {
    /// The body as JSON of `T`, answered as every other JSON route
    /// answers: 415 for a body not sent as JSON, 400 for one that is not
    /// JSON, 422 for JSON that does not fit.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        if !self.json_content {
            return Err(super::auth::not_sent_as_json());
        }
        super::auth::json_body(&self.body)
    }
}

impl FromRequest<AppState> for Called {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let json_content = super::auth::sent_as_json(&parts.headers);
        let method = parts.method.to_string();
        let path = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string());
        let authorization = super::auth::authorization(&parts.headers)?
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| {
                ApiError::unauthenticated(format!(
                    "this route needs the operator token (Bearer) or a request signed with a publisher's or auditor's key ({SCHEME})"
                ))
            })?;
        // Who is calling is settled before the body is read, so only the
        // operator and registered keys can make the server read a large one.
        let host = &state.host;
        let read_body =
            |parts: Parts, body| super::auth::read_body(Request::from_parts(parts, body), state);
        if let Some(token) = super::auth::bearer(&authorization) {
            if !host.is_operator_token(token) {
                return Err(ApiError::unauthenticated("the operator token is wrong"));
            }
            return Ok(Called {
                principal: Principal::Operator,
                body: read_body(parts, body).await?,
                json_content,
            });
        }
        let signature = RequestSignature::parse(&authorization)
            .map_err(|e| ApiError::unauthenticated(e.to_string()))?;
        // A removed key trusted again by an earlier version is no auditor's.
        let principal = if host.registry.is_trusted(&signature.key)? {
            Principal::Auditor(signature.key.clone())
        } else if let Some(ids) = host.registry.publishers_of_key(&signature.key)? {
            Principal::Publisher(ids)
        } else {
            return Err(ApiError::forbidden(format!(
                "key {} is neither a registered publisher's nor a trusted auditor's",
                signature.key
            )));
        };
        let body = read_body(parts, body).await?;
        let now = now_secs();
        signature
            .verify(&method, &path, &body, now)
            .map_err(|e| ApiError::unauthenticated(e.to_string()))?;
        state.nonces.signed_while_kept(signature.ts)?;
        if !state
            .nonces
            .first_use(&signature.key, &signature.nonce, now)?
        {
            return Err(ApiError::unauthenticated(
                "this signed request was already used; sign a new one",
            ));
        }
        // Its nonce is on disk before anything is answered, so a request
        // that only reads cannot be replayed after a crash either.
        state.host.store.durable().await?;
        Ok(Called {
            principal,
            body,
            json_content,
        })
    }
}

/// The operator, by bearer token, on a route that reads no body.
pub struct OperatorToken;

impl FromRequestParts<AppState> for OperatorToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = super::auth::authorization(&parts.headers)?
            .and_then(|v| v.to_str().ok())
            .and_then(super::auth::bearer)
            .ok_or_else(|| {
                ApiError::unauthenticated("this route needs the operator token (Bearer)")
            })?;
        if !state.host.is_operator_token(token) {
            return Err(ApiError::unauthenticated("the operator token is wrong"));
        }
        Ok(OperatorToken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two host processes on one store: a nonce one served, the other
    /// refuses; forgotten only once its request could no longer be fresh.
    #[test]
    fn a_nonce_is_used_once_across_processes_until_it_expires() {
        let backend: Arc<dyn superapp_store::Backend> =
            Arc::new(superapp_store::MemoryBackend::new());
        let now = 1_000_000;
        let a = Nonces::open(Store::with_backend(backend.clone()).unwrap(), now).unwrap();
        let b = Nonces::open(Store::with_backend(backend).unwrap(), now).unwrap();
        assert!(a.first_use("k", "n1", now).unwrap());
        assert!(!a.first_use("k", "n1", now).unwrap(), "replayed");
        assert!(!b.first_use("k", "n1", now + 1).unwrap(), "at the other");
        assert!(b.first_use("k2", "n1", now).unwrap(), "another key's");
        let gone = now + NONCE_LIFETIME + NONCE_GRACE;
        assert_eq!(a.sweep(gone - 1).unwrap(), 0, "kept for slower clocks");
        assert_eq!(b.sweep(gone).unwrap(), 2);
        assert_eq!(b.sweep(gone).unwrap(), 0);
    }

    /// Requests signed before the first host on a store remembered nonces
    /// are refused, at that host and at every later one, while those
    /// signed since pass; a record that does not read as a time is
    /// replaced by the opening host's.
    #[test]
    fn requests_signed_before_nonces_were_kept_are_refused() {
        let backend: Arc<dyn superapp_store::Backend> =
            Arc::new(superapp_store::MemoryBackend::new());
        let store = || Store::with_backend(backend.clone()).unwrap();
        let first = Nonces::open(store(), 5_000).unwrap();
        let later = Nonces::open(store(), 9_000).unwrap();
        for nonces in [&first, &later] {
            let refused = nonces.signed_while_kept(4_999).unwrap_err();
            assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
            assert!(
                refused.message.contains("sign a new one"),
                "{}",
                refused.message
            );
            assert!(nonces.signed_while_kept(5_000).is_ok());
        }
        store()
            .put_raw(Tree::Meta, KEPT_SINCE, b"not a time")
            .unwrap();
        let reopened = Nonces::open(store(), 7_000).unwrap();
        assert!(reopened.signed_while_kept(6_999).is_err());
        assert!(reopened.signed_while_kept(7_000).is_ok());
    }
}
