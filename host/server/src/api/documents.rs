//! Documents: the user's wallet and answers to document sheets; issuers'
//! signed submissions (credentials, revocations); the public keys and
//! status lists a provider's backend needs to verify presentations offline.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use superapp_sdk::credentials::{self as format, Signed};

use super::auth::{Auth, Json};
use super::error::ApiError;
use super::AppState;
use superapp_services::documents::{DocumentError, Issuance};

/// The user's own documents, with their claims.
pub async fn wallet(State(state): State<AppState>, auth: Auth) -> Result<Response, ApiError> {
    let docs = &state.host.documents;
    let mut out = Vec::new();
    for held in docs.wallet(&auth.user.id)? {
        let claims: Vec<Value> = held
            .disclosures
            .iter()
            .filter_map(|d| format::open(d).ok())
            .map(|c| json!({ "name": c.name, "value": c.value }))
            .collect();
        let issuer_name = docs.issuer(&held.issuer)?.map(|i| i.name);
        out.push(json!({
            "id": held.id,
            "type": held.credential_type,
            "issuer": held.issuer,
            "issuer_name": issuer_name,
            "claims": claims,
            "issued_at": held.issued_at,
            "expires_at": held.expires_at,
            "revoked": docs.is_revoked(&held.issuer, &held.id)?,
        }));
    }
    Ok(axum::Json(json!({ "documents": out })).into_response())
}

/// An issuer delivers a credential; its signature is the authentication.
pub async fn submit_credential(
    State(state): State<AppState>,
    Json(issuance): Json<Issuance>,
) -> Result<Response, ApiError> {
    let held = state.host.accept_credential(&issuance).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "id": held.id, "type": held.credential_type, "issuer": held.issuer })),
    )
        .into_response())
}

/// An issuer revokes a credential, with a signed statement.
pub async fn submit_revocation(
    State(state): State<AppState>,
    Json(signed): Json<Signed>,
) -> Result<Response, ApiError> {
    let r = state.host.revoke_credential(&signed).await?;
    Ok(axum::Json(json!({ "issuer": r.iss, "revoked": r.revoke })).into_response())
}

pub async fn issuers(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(axum::Json(json!({ "issuers": state.host.documents.issuers()? })).into_response())
}

/// An issuer's status list: the credential ids it revoked, and the same
/// signed by the host with the time it was listed, so a verifier can tell
/// it came from the host and how old it is
/// (`superapp_sdk::credentials::verify_status_list`).
pub async fn revoked(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if state.host.documents.issuer(&id)?.is_none() {
        return Err(DocumentError::UnknownIssuer(id).into());
    }
    let revoked = state.host.documents.revoked(&id)?;
    let at = superapp_core::now_secs();
    let signed = state.host.host_key.sign(&format::StatusList {
        v: format::VERSION,
        typ: format::STATUS_LIST.into(),
        iss: id.clone(),
        revoked: revoked.clone(),
        iat: at,
    });
    let answer = json!({ "issuer": id, "revoked": revoked, "at": at, "signed": signed });
    let mut response = axum::Json(answer).into_response();
    // Each answer says when it was made: a cache must not hand it on.
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// The public key presentations' bindings are signed with.
pub async fn host_key(State(state): State<AppState>) -> Response {
    let key = &state.host.host_key;
    axum::Json(json!({
        "algorithm": "Ed25519",
        "public_key": key.public_key(),
        "retired": key.retired(),
    }))
    .into_response()
}
