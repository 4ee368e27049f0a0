//! Extractors: the signed-in user (bearer token or session cookie), JSON
//! bodies and query strings whose rejections are API errors, and the client
//! address used for login throttling.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use serde::de::DeserializeOwned;

use super::error::{ApiError, BodyLimit};
use super::AppState;
use superapp_services::identity::User;

pub const SESSION_COOKIE: &str = "superapp_session";

/// The session cookie's name where it is `Secure` (`cookie-secure`): with
/// the `__Host-` prefix a browser takes it only from this host, over
/// HTTPS, for every path and without a `Domain`, so a page of a sibling
/// subdomain cannot set one of that name for this host ("cookie tossing",
/// which would sign a user in as somebody else).
pub const SECURE_SESSION_COOKIE: &str = "__Host-superapp_session";

/// The session cookie's name for a server whose cookie is `secure` or not.
pub fn session_cookie_name(secure: bool) -> &'static str {
    if secure {
        SECURE_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    }
}

/// The token of an `Authorization: Bearer …` value (the scheme's name is
/// case-insensitive, RFC 9110 11.1).
pub fn bearer(authorization: &str) -> Option<&str> {
    authorization
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

/// The request's one `Authorization` header, if it has one. Two are
/// refused: a proxy in front may act on the other one than this server
/// would.
pub fn authorization(headers: &HeaderMap) -> Result<Option<&HeaderValue>, ApiError> {
    let mut all = headers.get_all(header::AUTHORIZATION).iter();
    let first = all.next();
    if all.next().is_some() {
        return Err(ApiError::bad_request(
            "the request has more than one Authorization header",
        ));
    }
    Ok(first)
}

/// The session token of a request: from `Authorization: Bearer` when the
/// request has that header (whatever it holds), else from the session
/// cookie named for a `secure` server or not ([`session_cookie_name`];
/// the other name is not read). Two such cookies are refused: one of them
/// was set by someone else (a sibling subdomain's page can set one for a
/// server whose cookie has no `__Host-` prefix), and taking either could
/// sign the user in as another.
pub fn session_token(parts: &Parts, secure: bool) -> Result<Option<String>, ApiError> {
    if let Some(v) = authorization(&parts.headers)? {
        return Ok(v.to_str().ok().and_then(bearer).map(str::to_string));
    }
    let name = session_cookie_name(secure);
    let mut found = parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, value)| value);
    let first = found.next();
    if found.next().is_some() {
        return Err(ApiError::bad_request(format!(
            "the request has more than one {name} cookie; sign out, or clear this site's cookies, and sign in again"
        )));
    }
    Ok(first.map(str::to_string))
}

/// `host[:port]` as a lower-case host and a port, `default` when none is
/// written (IPv6 hosts in brackets).
fn host_port(authority: &str, default: u16) -> Option<(String, u16)> {
    let authority = authority.trim().trim_end_matches('/');
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], Some(&authority[i + 1..])),
        _ => (authority, None),
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default,
    };
    (!host.is_empty()).then(|| (host.to_ascii_lowercase(), port))
}

/// Whether a request signed in by the session cookie comes from a page of
/// another origin: its `Origin` names a host or port other than the one it
/// was sent to (`Host`, or, when the request came `from_proxy`, a trusted
/// one, its `X-Forwarded-Host`; a port left out is the default of the
/// Origin's scheme), or it carries more than one `Origin`. The
/// cookie is `SameSite=Strict`, so a browser does not send it from another
/// site's page; this keeps out what that leaves: pages of the same site on
/// another port or a sibling subdomain, and browsers without SameSite. A
/// request with an `Authorization` header is never signed in by the cookie,
/// and one without an `Origin` (clients other than browsers) is not checked.
pub fn cross_site_cookie(headers: &HeaderMap, from_proxy: bool) -> bool {
    if headers.contains_key(header::AUTHORIZATION) {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    if headers.get_all(header::ORIGIN).iter().count() > 1 {
        return true;
    }
    let origin = origin.to_str().ok().and_then(|o| o.split_once("://"));
    let Some((scheme, authority)) = origin else {
        // `Origin: null` (a sandboxed frame, a file) or not a URL.
        return true;
    };
    let default = if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    };
    let Some(origin) = host_port(authority, default) else {
        return true;
    };
    // The last host named: the one the nearest hop set (a proxy that
    // appends to what its client sent puts its own last).
    let named = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .next_back()
            .is_some_and(|h| host_port(h, default).as_ref() == Some(&origin))
    };
    !(named(header::HOST.as_str()) || (from_proxy && named("x-forwarded-host")))
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
        let token = session_token(parts, state.config.cookie_secure)?
            .ok_or_else(|| ApiError::unauthenticated("sign in first"))?;
        let user = state.host.identity.authenticate(&token)?;
        Ok(Auth { user, token })
    }
}

/// The client's address: the peer's, or behind a trusted proxy the one it
/// names (see [`crate::proxies`]); unspecified when the server runs
/// without either.
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ip = match parts.extensions.get::<crate::proxies::ClientIp>() {
            Some(client) => client.0,
            None => parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip()),
        };
        Ok(ClientAddr(ip))
    }
}

/// `axum::Json` with API-error rejections.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !sent_as_json(req.headers()) {
            return Err(not_sent_as_json());
        }
        json_body(&read_body(req, state).await?).map(Json)
    }
}

/// A request's whole body, within the route's limit (413 past it).
pub async fn read_body<S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<axum::body::Bytes, ApiError> {
    let limit = req.extensions().get::<BodyLimit>().copied();
    axum::body::Bytes::from_request(req, state)
        .await
        .map_err(|e| match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(limit),
            status => ApiError::new(
                status,
                "invalid-request",
                "the request body could not be read",
            ),
        })
}

/// A request body as JSON of `T`: 400 for one that is not JSON, 422 for
/// JSON that does not fit. (serde stops at the first unknown field, so a
/// body broken after one is checked as JSON alone before it is called
/// one that does not fit.)
pub fn json_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    use axum::extract::rejection::JsonRejection;
    match axum::Json::<T>::from_bytes(bytes) {
        Ok(axum::Json(value)) => Ok(value),
        Err(JsonRejection::JsonDataError(data)) => {
            match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Err(syntax) => Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid-json",
                    format!("the request body is not valid JSON: {syntax}"),
                )),
                Ok(_) => Err(ApiError::from_json(
                    JsonRejection::JsonDataError(data),
                    None,
                )),
            }
        }
        Err(other) => Err(ApiError::from_json(other, None)),
    }
}

/// The answer to a body not sent as JSON.
pub fn not_sent_as_json() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
        "send the body as JSON, with `Content-Type: application/json`",
    )
}

/// Whether `headers` say the body is JSON (`application/json`, or
/// `application/…+json`), by the rule axum's `Json` uses.
pub fn sent_as_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence
        .strip_prefix("application/")
        .is_some_and(|sub| sub == "json" || sub.ends_with("+json"))
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

/// A page size from the query: `default` when it is absent, else 1 to
/// `max`; anything else is refused (not quietly clamped), so a client
/// learns its page is not the size it asked for.
pub fn page_limit(limit: Option<usize>, default: usize, max: usize) -> Result<usize, ApiError> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!(
            "`limit` is 1 to {max}, not {n}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_limit_outside_its_range_is_refused() {
        assert_eq!(page_limit(None, 50, 200).unwrap(), 50);
        assert_eq!(page_limit(Some(1), 50, 200).unwrap(), 1);
        assert_eq!(page_limit(Some(200), 50, 200).unwrap(), 200);
        for bad in [0, 201, usize::MAX] {
            let e = page_limit(Some(bad), 50, 200).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, value.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_cookie_handshake_must_come_from_the_host_and_port_it_was_sent_to() {
        let cross = |pairs: &[(&'static str, &str)]| cross_site_cookie(&headers(pairs), true);
        // The host's own pages, however the default port is written.
        assert!(!cross(&[
            ("host", "chat.example"),
            ("origin", "https://chat.example")
        ]));
        assert!(!cross(&[
            ("host", "chat.example:443"),
            ("origin", "https://chat.example")
        ]));
        assert!(!cross(&[
            ("host", "Chat.Example:80"),
            ("origin", "http://chat.example")
        ]));
        assert!(!cross(&[
            ("host", "[::1]:8080"),
            ("origin", "http://[::1]:8080")
        ]));
        assert!(!cross(&[
            ("host", "10.0.0.5:8080"),
            ("origin", "https://chat.example"),
            ("x-forwarded-host", "chat.example")
        ]));
        // Other origins: another port, scheme's port, subdomain, or none.
        assert!(cross(&[
            ("host", "chat.example"),
            ("origin", "https://chat.example:8443")
        ]));
        assert!(cross(&[
            ("host", "chat.example:443"),
            ("origin", "http://chat.example")
        ]));
        assert!(cross(&[
            ("host", "chat.example"),
            ("origin", "https://evil.chat.example")
        ]));
        assert!(cross(&[
            ("host", "[::1]:8080"),
            ("origin", "http://[::1]:9090")
        ]));
        assert!(cross(&[("host", "chat.example"), ("origin", "null")]));
        // Not signed in by the cookie, or not from a browser: not checked.
        assert!(!cross(&[
            ("host", "chat.example"),
            ("origin", "https://evil.example"),
            ("authorization", "Bearer t")
        ]));
        assert!(!cross(&[("host", "chat.example")]));
        // Not from a trusted proxy, X-Forwarded-Host is the client's word.
        let direct = |pairs: &[(&'static str, &str)]| cross_site_cookie(&headers(pairs), false);
        assert!(direct(&[
            ("host", "10.0.0.5:8080"),
            ("origin", "https://evil.example"),
            ("x-forwarded-host", "evil.example")
        ]));
        assert!(!direct(&[
            ("host", "chat.example"),
            ("origin", "https://chat.example")
        ]));
        // Behind a proxy that appends, what the client put first is its own.
        assert!(cross(&[
            ("host", "10.0.0.5:8080"),
            ("origin", "https://evil.example"),
            ("x-forwarded-host", "evil.example, chat.example")
        ]));
        assert!(cross(&[
            ("host", "10.0.0.5:8080"),
            ("origin", "https://evil.example"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-host", "chat.example")
        ]));
        // Two Origins: which page sent it cannot be told.
        assert!(cross(&[
            ("host", "chat.example"),
            ("origin", "https://chat.example"),
            ("origin", "https://evil.example")
        ]));
    }

    #[test]
    fn the_bearer_scheme_is_matched_without_regard_to_case() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("BEARER abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearerabc"), None);
    }
}
