//! Documents: the user's wallet and answers to document sheets; issuers'
//! signed submissions (credentials, revocations); the public keys and
//! status lists a provider's backend needs to verify presentations offline.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use superapp_sdk::credentials::{self as format, Signed};

use super::auth::{Auth, Json};
use super::error::ApiError;
use super::AppState;
use superapp_runtime::bindings::superapp::plugin::types::{
    DisclosedClaim, DocumentOutcome, Event, Presentation,
};
use superapp_services::documents::{DocumentError, Issuance};

/// The fields the user leaves ticked; all requested fields if absent.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Approval {
    #[serde(default)]
    fields: Option<Vec<String>>,
}

/// Answer a document sheet and tell the app.
pub(super) async fn answer_document(
    state: &AppState,
    auth: &Auth,
    id: &str,
    approve: bool,
    body: &[u8],
) -> Result<Response, ApiError> {
    let requests = &state.apps.requests;
    let (request, event) = if approve {
        let approval: Approval = if body.is_empty() {
            Approval::default()
        } else {
            serde_json::from_slice(body).map_err(|_| {
                ApiError::bad_request("approving a document request takes {\"fields\": [...]}")
            })?
        };
        let app = requests
            .get(id)?
            .filter(|r| r.user == auth.user.id)
            .ok_or(DocumentError::NotFound)?
            .app;
        let pseudonym = state.apps.services.pseudonyms.for_app(&auth.user.id, &app);
        let (request, shared) = requests.approve(&auth.user.id, id, approval.fields, &pseudonym)?;
        let presentation = Presentation {
            request_id: request.id.clone(),
            credential_type: request.credential_type.clone(),
            issuer_id: shared.issuer,
            claims: shared
                .claims
                .into_iter()
                .map(|c| DisclosedClaim {
                    name: c.name,
                    value: c.value,
                    salt: c.salt,
                })
                .collect(),
            envelope: serde_json::to_string(&shared.envelope).expect("envelopes serialize"),
        };
        (request, DocumentOutcome::Shared(presentation))
    } else {
        let request = requests.decline(&auth.user.id, id)?;
        (
            request,
            DocumentOutcome::Declined("the user declined".into()),
        )
    };
    state.apps.store.durable().await?;
    let view =
        super::apps::deliver(state, &auth.user.id, &request.app, Event::Document(event)).await;
    state.apps.store.durable().await?;
    let prompt = state.apps.consent.prompt(&auth.user.id, id)?;
    Ok(axum::Json(json!({ "prompt": prompt, "request": request, "view": view })).into_response())
}

/// The user's own documents, with their claims.
pub async fn wallet(State(state): State<AppState>, auth: Auth) -> Result<Response, ApiError> {
    let docs = &state.apps.documents;
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
    let holder = state
        .identity
        .find_by_username(&issuance.subject.username)?
        .ok_or_else(|| DocumentError::UnknownUser(issuance.subject.username.clone()))?;
    let held = state.apps.documents.accept(&issuance, &holder)?;
    state.apps.store.durable().await?;
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
    let r = state.apps.documents.revoke(&signed)?;
    state.apps.store.durable().await?;
    Ok(axum::Json(json!({ "issuer": r.iss, "revoked": r.revoke })).into_response())
}

pub async fn issuers(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(axum::Json(json!({ "issuers": state.apps.documents.issuers()? })).into_response())
}

/// An issuer's status list: the credential ids it revoked.
pub async fn revoked(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if state.apps.documents.issuer(&id)?.is_none() {
        return Err(DocumentError::UnknownIssuer(id).into());
    }
    let revoked = state.apps.documents.revoked(&id)?;
    Ok(axum::Json(json!({ "issuer": id, "revoked": revoked })).into_response())
}

/// The public key presentations' bindings are signed with.
pub async fn host_key(State(state): State<AppState>) -> Response {
    axum::Json(json!({ "algorithm": "Ed25519", "public_key": state.apps.host_key.public_key() }))
        .into_response()
}
