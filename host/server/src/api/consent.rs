//! Host prompts, the user's consent decisions, and their privacy report.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use std::net::IpAddr;

use super::auth::{page_limit, Auth, ClientAddr, Params};
use super::error::ApiError;
use super::AppState;
use crate::host::Answer;
use superapp_core::Capability;

/// The user's pending prompts, each with `publisher_name`: the name its
/// publisher is registered under, which the directory shows too (the
/// prompt keeps the publisher's id).
pub async fn prompts(State(state): State<AppState>, auth: Auth) -> Result<Response, ApiError> {
    let mut names = std::collections::HashMap::new();
    let mut out = Vec::new();
    for prompt in state.host.consent.pending(&auth.user.id)? {
        if !names.contains_key(&prompt.publisher) {
            let name = state
                .host
                .registry
                .publisher(&prompt.publisher)?
                .map_or_else(|| prompt.publisher.clone(), |p| p.name);
            names.insert(prompt.publisher.clone(), name);
        }
        let mut value = serde_json::to_value(&prompt).map_err(|e| ApiError::internal(&e))?;
        value["publisher_name"] = names[&prompt.publisher].clone().into();
        out.push(value);
    }
    Ok(axum::Json(out).into_response())
}

/// Answer a prompt of any kind; the body is an [`Answer`] (may be empty).
async fn answer(
    state: AppState,
    auth: Auth,
    client: IpAddr,
    id: String,
    approve: bool,
    body: Bytes,
) -> Result<Response, ApiError> {
    // Declining needs nothing, so whatever came with it is ignored.
    let answer: Answer = if body.is_empty() || !approve {
        Answer::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid-json", e.to_string()))?
    };
    let answered = state
        .host
        .answer_prompt(&auth.user, &auth.token, client, &id, approve, answer)
        .await?;
    Ok(axum::Json(answered).into_response())
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
    Ok(axum::Json(state.host.consent.grants(&auth.user.id)?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeQuery {
    /// Forget a grant instead of turning it into a refusal: the next use
    /// asks again.
    #[serde(default)]
    forget: bool,
}

pub async fn revoke(
    State(state): State<AppState>,
    auth: Auth,
    Path((app, capability)): Path<(String, String)>,
    Params(q): Params<RevokeQuery>,
) -> Result<Response, ApiError> {
    let capability = Capability::from_name(&capability)
        .ok_or_else(|| ApiError::not_found(format!("no capability `{capability}`")))?;
    state
        .host
        .revoke_grant(&auth.user, &app, capability, q.forget)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    app: Option<String>,
    before: Option<u64>,
    limit: Option<usize>,
}

/// The user's access log, newest first, a page at a time: what each app
/// asked for, when, and the answer. `next_before` continues it.
pub async fn access_log(
    State(state): State<AppState>,
    auth: Auth,
    Params(q): Params<LogQuery>,
) -> Result<Response, ApiError> {
    let page = state.host.audit.for_user(
        &auth.user.id,
        q.app.as_deref(),
        q.before,
        page_limit(q.limit, 200, superapp_services::audit::MAX_PAGE)?,
    )?;
    Ok(axum::Json(page).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    before: Option<String>,
    limit: Option<usize>,
}

/// The user's prompts, answered or not, newest first, a page at a time.
pub async fn prompt_history(
    State(state): State<AppState>,
    auth: Auth,
    Params(q): Params<HistoryQuery>,
) -> Result<Response, ApiError> {
    if let Some(before) = &q.before {
        let valid = before
            .split_once('-')
            .is_some_and(|(created, id)| created.parse::<u64>().is_ok() && !id.is_empty());
        if !valid {
            return Err(ApiError::bad_request(
                "`before` is a cursor from a page's `next_before`",
            ));
        }
    }
    let limit = page_limit(q.limit, 50, superapp_services::prompts::MAX_PAGE)?;
    let page = state
        .host
        .consent
        .history(&auth.user.id, q.before.as_deref(), limit)?;
    Ok(axum::Json(page).into_response())
}
