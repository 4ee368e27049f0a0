//! The web shell: the end user's super-app in the browser. Plain ES
//! modules and CSS, embedded in the binary (no build step), served at `/`
//! under a strict Content-Security-Policy with Trusted Types: no inline
//! script, no `eval`, and any `innerHTML` assignment throws, so neither an
//! app's text nor anything else can become markup. The shell renders an
//! app's view with `createElement`/`textContent` only, and draws the host's
//! dialogs (consent, payment, documents) itself, marked with the user's
//! security phrase.

use axum::extract::Path;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The policy of every response: the shell's own files and nothing else;
/// images may be `data:` URLs (app images are checked to be raster).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'; \
    trusted-types 'none'";

/// The headers every response carries, unless a handler set its own. API
/// answers hold a user's data (their phrase, documents, money, chats): no
/// cache keeps them (the shell's own files say `no-cache` instead).
const SECURITY_HEADERS: [(&str, &str); 8] = [
    ("cache-control", "no-store"),
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    (
        "permissions-policy",
        "camera=(self), microphone=(), geolocation=(), payment=(), usb=()",
    ),
];

/// Add [`SECURITY_HEADERS`] to a response (a `map_response` middleware).
pub async fn security_headers<B>(mut response: axum::http::Response<B>) -> axum::http::Response<B> {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        let name = HeaderName::from_static(name);
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    response
}

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_str!(concat!("assets/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the shell.
const ASSETS: [Asset; 11] = [
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("render.js", JS),
    asset!("dialogs.js", JS),
    asset!("chats.js", JS),
    asset!("apps.js", JS),
    asset!("wallet.js", JS),
    asset!("privacy.js", JS),
    asset!("labels.js", JS),
];

const INDEX: &str = include_str!("assets/index.html");

macro_rules! image {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!("assets/images/", $name, ".svg")),
        )
    };
}

/// The host's images apps name as `asset:<name>`
/// ([`superapp_core::images::HOST_IMAGES`]), drawn by the host: plain
/// SVG paths, no script, no text, nothing fetched.
const IMAGES: [(&str, &str); 10] = [
    image!("calendar"),
    image!("check"),
    image!("clock"),
    image!("document"),
    image!("hospital"),
    image!("info"),
    image!("person"),
    image!("receipt"),
    image!("wallet"),
    image!("warning"),
];

/// `/`, `/shell/{file}` and `/shell/images/{name}.svg`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/shell/{file}", get(file))
        .route("/shell/images/{file}", get(host_image))
}

async fn host_image(Path(file): Path<String>) -> Response {
    let found = file
        .strip_suffix(".svg")
        .and_then(|name| IMAGES.iter().find(|(n, _)| *n == name));
    match found {
        Some((_, svg)) => (
            [
                (header::CONTENT_TYPE, "image/svg+xml"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *svg,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such image").into_response(),
    }
}

async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX,
    )
        .into_response()
}

async fn file(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            a.body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_shell_has_every_host_image_each_plain_shapes() {
        let names: Vec<&str> = super::IMAGES.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, superapp_core::images::HOST_IMAGES);
        for (name, svg) in super::IMAGES {
            assert!(
                svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
                "{name}"
            );
            // Only shapes: no script, link, text, embedded image or style.
            for tag in svg.split('<').skip(1) {
                let element = tag.split([' ', '>', '/']).next().unwrap_or_default();
                assert!(
                    ["svg", "path", "rect", "circle", ""].contains(&element),
                    "{name}: <{element}"
                );
            }
            for attribute in [" on", "href", "style", "url("] {
                assert!(!svg.contains(attribute), "{name}: {attribute}");
            }
        }
    }
}
