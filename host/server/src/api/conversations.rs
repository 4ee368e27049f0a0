//! Conversations and messages.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::auth::{page_limit, Auth, Json, Params};
use super::error::ApiError;
use super::AppState;
use superapp_services::identity::User;
use superapp_services::messaging::{Cursor, Kind, MessagingError, MAX_LIST_PAGE};

/// Most messages one sync page returns.
pub const MAX_PAGE: usize = 500;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    before: Option<String>,
    limit: Option<usize>,
}

/// Conversations in one page of the list when the request names no `limit`.
const DEFAULT_LIST_PAGE: usize = 100;

/// The caller's conversations, newest activity first, a page at a time (an
/// array; a `Link` header with `rel="next"` continues it). A direct
/// conversation says `with` whom.
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Params(q): Params<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = page_limit(q.limit, DEFAULT_LIST_PAGE, MAX_LIST_PAGE)?;
    let before = q.before.as_deref().map(str::parse::<Cursor>).transpose()?;
    let mut page = state
        .host
        .messaging
        .list(&auth.user, before.as_ref(), limit)?;
    for summary in &mut page.conversations {
        let c = &summary.conversation;
        if c.kind == Kind::Direct {
            if let Some(other) = c.members.iter().find(|m| **m != auth.user.id) {
                summary.with = state.host.identity.user(other)?;
            }
        }
    }
    let mut response = axum::Json(page.conversations).into_response();
    if let Some(next) = page.next_before {
        let link = format!("</api/v1/conversations?limit={limit}&before={next}>; rel=\"next\"");
        if let Ok(value) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    Ok(response)
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Create {
    Direct { with: String },
    Group { title: String, members: Vec<String> },
}

fn lookup(state: &AppState, username: &str) -> Result<User, ApiError> {
    state
        .host
        .identity
        .find_by_username(username)?
        .ok_or_else(|| MessagingError::UnknownUser(username.to_string()).into())
}

pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<Create>,
) -> Result<Response, ApiError> {
    let conversation = match body {
        Create::Direct { with } => {
            let other = lookup(&state, &with)?;
            state.host.messaging.direct(&auth.user, &other).await?
        }
        Create::Group { title, members } => {
            let others = members
                .iter()
                .map(|m| {
                    let user = lookup(&state, m)?;
                    let adds = state.host.identity.group_adds(&user.id)?;
                    Ok((user, adds))
                })
                .collect::<Result<Vec<_>, ApiError>>()?;
            state
                .host
                .messaging
                .group(&auth.user, &title, &others)
                .await?
        }
    };
    Ok((StatusCode::CREATED, axum::Json(conversation)).into_response())
}

pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(axum::Json(state.host.messaging.get(&auth.user, &id)?).into_response())
}

pub async fn members(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let conversation = state.host.messaging.get(&auth.user, &id)?;
    let mut users = Vec::with_capacity(conversation.members.len());
    for member in &conversation.members {
        if let Some(u) = state.host.identity.user(member)? {
            users.push(u);
        }
    }
    Ok(axum::Json(users).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    username: String,
}

/// Add someone to a group the caller is in; the group as it is now.
pub async fn add_member(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(body): Json<NewMember>,
) -> Result<Response, ApiError> {
    let user = lookup(&state, &body.username)?;
    let adds = state.host.identity.group_adds(&user.id)?;
    let conversation = state
        .host
        .messaging
        .add_member(&auth.user, &id, &user, adds)
        .await?;
    Ok(axum::Json(conversation).into_response())
}

/// Take a member out of a group: its owner may remove anyone, a member
/// themselves (leaving).
pub async fn remove_member(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let Some(user) = state.host.identity.user(&user)? else {
        // Only a member of the group learns that this is none of them.
        state.host.messaging.get(&auth.user, &id)?;
        return Err(MessagingError::NotAMember.into());
    };
    state
        .host
        .messaging
        .remove_member(&auth.user, &id, &user)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Send {
    client_id: String,
    text: String,
}

pub async fn send(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(body): Json<Send>,
) -> Result<Response, ApiError> {
    let (message, created) = state
        .host
        .messaging
        .send(&auth.user, &id, &body.client_id, &body.text)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(message)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncQuery {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

pub async fn sync(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Params(q): Params<SyncQuery>,
) -> Result<Response, ApiError> {
    let limit = page_limit(q.limit, 100, MAX_PAGE)?;
    let messages = state.host.messaging.sync(&auth.user, &id, q.after, limit)?;
    Ok(axum::Json(json!({ "messages": messages })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Read {
    seq: u64,
}

pub async fn read(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(body): Json<Read>,
) -> Result<Response, ApiError> {
    let read_seq = state
        .host
        .messaging
        .mark_read(&auth.user, &id, body.seq)
        .await?;
    Ok(axum::Json(json!({ "read_seq": read_seq })).into_response())
}
