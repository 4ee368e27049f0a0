//! Extractors: the signed-in user (bearer token or session cookie), JSON
//! bodies and query strings whose rejections are API errors, and the client
//! address used for login throttling.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use serde::de::DeserializeOwned;

use super::error::{ApiError, BodyLimit};
use super::AppState;
use superapp_services::identity::User;

pub const SESSION_COOKIE: &str = "superapp_session";

/// The session token of a request, from `Authorization: Bearer` or the cookie.
pub fn session_token(parts: &Parts) -> Option<String> {
    if let Some(v) = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        // The scheme's name is case-insensitive (RFC 9110, 11.1).
        return v
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().to_string());
    }
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_string())
}

/// Whether a request signed in by the session cookie comes from a page of
/// another site: its `Origin` names a host other than the one it was sent
/// to (`Host`, or behind a proxy `X-Forwarded-Host`, which a page cannot
/// set). A browser sends a site's cookie with a WebSocket handshake whatever
/// page opens it (the same-origin policy does not cover WebSockets), so a
/// cookie-authenticated upgrade from such a page is refused. A request with
/// a bearer token, which no page gets without being given it, or without an
/// `Origin` (clients other than browsers), is not one.
pub fn cross_site_cookie(headers: &HeaderMap) -> bool {
    if headers.contains_key(header::AUTHORIZATION) {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let Some(origin) = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, authority)| authority.trim_end_matches('/'))
    else {
        // `Origin: null` (a sandboxed frame, a file) or not a URL.
        return true;
    };
    let named = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|h| h.trim().eq_ignore_ascii_case(origin))
    };
    !(named(header::HOST.as_str()) || named("x-forwarded-host"))
}

/// A signed-in user.
pub struct Auth {
    pub user: User,
    pub token: String,
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token =
            session_token(parts).ok_or_else(|| ApiError::unauthenticated("sign in first"))?;
        let user = state.host.identity.authenticate(&token)?;
        Ok(Auth { user, token })
    }
}

/// The client's address (unspecified when the server runs without one).
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        Ok(ClientAddr(ip))
    }
}

/// `axum::Json` with API-error rejections.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req.extensions().get::<BodyLimit>().copied();
        let axum::Json(value) = axum::Json::<T>::from_request(req, state)
            .await
            .map_err(|r| ApiError::from_json(r, limit))?;
        Ok(Json(value))
    }
}

/// `axum::extract::Query` with API-error rejections.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(value) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(Params(value))
    }
}
