//! Accounts and sessions: register, log in, log out, who am I.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::{session_cookie_name, Auth, ClientAddr, Json};
use super::error::ApiError;
use super::AppState;
use superapp_services::identity::{now_secs, GroupAdds};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Register {
    username: String,
    display_name: String,
    password: String,
    /// What the host's dialogs will show this user; one is suggested if
    /// absent.
    #[serde(default)]
    security_phrase: Option<String>,
}

pub async fn register(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Json(body): Json<Register>,
) -> Result<Response, ApiError> {
    let user = state
        .host
        .identity
        .sign_up(
            &body.username,
            &body.display_name,
            &body.password,
            body.security_phrase.as_deref(),
            client,
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(user)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    username: String,
    password: String,
}

/// The session cookie: `__Host-`-prefixed where it is `Secure`
/// ([`session_cookie_name`]), so always `Path=/` and without a `Domain`.
fn cookie(state: &AppState, value: &str, max_age: u64) -> Option<HeaderValue> {
    let secure = state.config.cookie_secure;
    let name = session_cookie_name(secure);
    let flag = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{flag}"
    ))
    .ok()
}

pub async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Json(body): Json<Login>,
) -> Result<Response, ApiError> {
    let session = state
        .host
        .identity
        .login(&body.username, &body.password, client)
        .await?;
    let max_age = session.expires_at.saturating_sub(now_secs());
    let mut response = (StatusCode::CREATED, axum::Json(&session)).into_response();
    if let Some(c) = cookie(&state, &session.token, max_age) {
        response.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(response)
}

pub async fn logout(State(state): State<AppState>, auth: Auth) -> Result<Response, ApiError> {
    state.host.identity.logout(&auth.token).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(c) = cookie(&state, "", 0) {
        response.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(response)
}

/// Who is signed in, with the security phrase the host's dialogs show
/// them (to this user only).
pub async fn me(State(state): State<AppState>, auth: Auth) -> Result<Response, ApiError> {
    let phrase = state.host.identity.security_phrase(&auth.user.id)?;
    let mut body = serde_json::to_value(&auth.user)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    body["security_phrase"] = serde_json::Value::String(phrase);
    body["group_adds"] = serde_json::json!(state.host.identity.group_adds(&auth.user.id)?);
    Ok(axum::Json(body).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupAddsBody {
    group_adds: GroupAdds,
}

/// Choose who may add you to groups: `everyone`, `contacts` (people you
/// have written to in a direct conversation) or `nobody`.
pub async fn set_group_adds(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<GroupAddsBody>,
) -> Result<Response, ApiError> {
    state
        .host
        .identity
        .set_group_adds(&auth.user.id, body.group_adds)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phrase {
    security_phrase: String,
}

/// Change the security phrase the host's dialogs show.
pub async fn set_phrase(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<Phrase>,
) -> Result<Response, ApiError> {
    state
        .host
        .identity
        .set_security_phrase(&auth.user.id, &body.security_phrase)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    current_password: String,
    new_password: String,
}

/// Change the password, proven by the current one: every other session of
/// the account ends (its live connections close); this one goes on.
pub async fn set_password(
    State(state): State<AppState>,
    auth: Auth,
    ClientAddr(client): ClientAddr,
    Json(body): Json<NewPassword>,
) -> Result<Response, ApiError> {
    let changed = state
        .host
        .identity
        .change_password(
            &auth.user,
            &auth.token,
            &body.current_password,
            &body.new_password,
            client,
        )
        .await;
    match changed {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        // Not 401: the session is fine, the password given is not.
        Err(superapp_services::identity::IdentityError::BadCredentials) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong-password",
            "the current password is wrong; nothing changed",
        )),
        Err(e) => Err(e.into()),
    }
}
