//! Host prompts, the user's consent decisions, and their privacy report.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use std::net::IpAddr;

use super::auth::{Auth, ClientAddr, Params};
use super::error::ApiError;
use super::AppState;
use superapp_core::Capability;
use superapp_runtime::bindings::superapp::plugin::types::{ConsentAnswer, Event};
use superapp_services::consent::{PromptBody, PromptKind};

pub async fn prompts(State(state): State<AppState>, auth: Auth) -> Result<Response, ApiError> {
    Ok(axum::Json(state.apps.consent.pending(&auth.user.id)?).into_response())
}

/// The chat a share-card prompt is approved into.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Pick {
    conversation_id: String,
}

async fn answer(
    state: AppState,
    auth: Auth,
    client: IpAddr,
    id: String,
    approve: bool,
    body: Bytes,
) -> Result<Response, ApiError> {
    let pending = state.apps.consent.prompt(&auth.user.id, &id)?;
    match pending.kind() {
        PromptKind::Payment => {
            return super::wallet::answer_payment(&state, &auth, client, &id, approve, &body).await
        }
        PromptKind::Document => {
            return super::documents::answer_document(&state, &auth, &id, approve, &body).await
        }
        PromptKind::Consent | PromptKind::ShareCard => {}
    }
    // Approving a share names the chat, which must be one of the user's.
    let target = if pending.kind() == PromptKind::ShareCard && approve {
        let pick: Pick = serde_json::from_slice(&body).map_err(|_| {
            ApiError::bad_request("approving a share needs a body {\"conversation_id\": \"…\"}")
        })?;
        state.messaging.get(&auth.user, &pick.conversation_id)?;
        Some(pick.conversation_id)
    } else {
        None
    };
    let prompt = state.apps.consent.answer(&auth.user.id, &id, approve)?;
    if let (Some(conversation), PromptBody::ShareCard(card)) = (target, &prompt.body) {
        state
            .messaging
            .share_card(&auth.user, &conversation, card.clone())
            .await?;
    }
    state.apps.store.durable().await?;
    // The app hears the answer as an event and draws what follows.
    let event = match prompt.kind() {
        PromptKind::ShareCard => Event::CardShared(approve),
        _ => Event::Consent(ConsentAnswer {
            capability: prompt.capability.name().to_string(),
            granted: approve,
        }),
    };
    let view = super::apps::deliver(&state, &auth.user.id, &prompt.app, event).await;
    state.apps.store.durable().await?;
    Ok(axum::Json(json!({ "prompt": prompt, "view": view })).into_response())
}

pub async fn approve(
    State(state): State<AppState>,
    auth: Auth,
    ClientAddr(client): ClientAddr,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    answer(state, auth, client, id, true, body).await
}

pub async fn deny(
    State(state): State<AppState>,
    auth: Auth,
    ClientAddr(client): ClientAddr,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    answer(state, auth, client, id, false, body).await
}

pub async fn grants(State(state): State<AppState>, auth: Auth) -> Result<Response, ApiError> {
    Ok(axum::Json(state.apps.consent.grants(&auth.user.id)?).into_response())
}

pub async fn revoke(
    State(state): State<AppState>,
    auth: Auth,
    Path((app, capability)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let capability = Capability::from_name(&capability)
        .ok_or_else(|| ApiError::not_found(format!("no capability `{capability}`")))?;
    if state
        .apps
        .consent
        .revoke(&auth.user.id, &app, capability)?
        .is_none()
    {
        return Err(ApiError::not_found("no such grant"));
    }
    state.apps.store.durable().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    app: Option<String>,
    limit: Option<usize>,
}

/// The user's privacy report: what each app asked for, when, and the answer.
pub async fn access_log(
    State(state): State<AppState>,
    auth: Auth,
    Params(q): Params<LogQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(200).clamp(1, 1000);
    let mut entries = state.apps.audit.for_user(
        &auth.user.id,
        if q.app.is_some() { usize::MAX } else { limit },
    )?;
    if let Some(app) = &q.app {
        entries.retain(|e| e.event.app.as_deref() == Some(app.as_str()));
        entries.truncate(limit);
    }
    Ok(axum::Json(json!({ "entries": entries })).into_response())
}
