//! Mini-programs for the signed-in user: the directory of approved apps,
//! launch, send an action.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::auth::{Auth, Json, Params};
use super::error::ApiError;
use super::AppState;
use superapp_core::Capability;
use superapp_runtime::bindings::superapp::plugin::types::Action;
use superapp_runtime::capabilities::consent_level;
use superapp_runtime::view::View;
use superapp_runtime::Invocation;
use superapp_services::registry::{rollout_bucket, DecidedBy, Publisher, Release};

/// One app in the directory: the version this user gets, who publishes
/// it, what it may do and why, and who approved it when. Field names are
/// stable (the web shell reads them).
#[derive(Serialize)]
struct Listing {
    id: String,
    name: String,
    version: String,
    description: String,
    digest: String,
    publisher: PublisherRef,
    capabilities: Vec<CapabilityListing>,
    approval: Option<Approval>,
}

#[derive(Serialize)]
struct PublisherRef {
    id: String,
    name: String,
}

#[derive(Serialize)]
struct CapabilityListing {
    name: String,
    reason: String,
    /// `none`, `once-per-app` or `every-use`.
    consent: &'static str,
}

#[derive(Serialize)]
struct Approval {
    /// `auditor` or `policy`.
    by: &'static str,
    /// The auditor's name, or the rule that approved it.
    name: String,
    /// The auditor's public key.
    key: Option<String>,
    at: u64,
    note: String,
}

fn listing(release: Release, publisher: Option<Publisher>) -> Listing {
    let approval = release.last_decision().map(|d| match &d.by {
        DecidedBy::Auditor { name, signed } => Approval {
            by: "auditor",
            name: name.clone(),
            key: Some(signed.auditor_key.clone()),
            at: d.at,
            note: d.note.clone(),
        },
        DecidedBy::Policy { rule } => Approval {
            by: "policy",
            name: rule.clone(),
            key: None,
            at: d.at,
            note: d.note.clone(),
        },
    });
    Listing {
        capabilities: release
            .capabilities
            .iter()
            .map(|c| CapabilityListing {
                name: c.name.clone(),
                reason: c.reason.clone(),
                consent: Capability::from_name(&c.name)
                    .map_or("none", |cap| consent_level(cap).name()),
            })
            .collect(),
        publisher: PublisherRef {
            name: publisher.map_or_else(|| release.publisher.clone(), |p| p.name),
            id: release.publisher,
        },
        id: release.app,
        name: release.name,
        version: release.version,
        description: release.description,
        digest: release.digest,
        approval,
    }
}

/// The directory: every app the signed-in user may open, in the version
/// they would get (not one whose stored package did not load: its record
/// may say what its package does not).
pub async fn list(State(state): State<AppState>, auth: Auth) -> Result<Response, ApiError> {
    let host = &state.host;
    let releases = host
        .registry
        .directory(|app| rollout_bucket(&host.services.pseudonyms.for_app(&auth.user.id, app)))?;
    let unavailable = host.unloadable();
    let mut apps = Vec::with_capacity(releases.len());
    for release in releases {
        if unavailable.contains(&release.label()) {
            continue;
        }
        let publisher = host.registry.publisher(&release.publisher)?;
        apps.push(listing(release, publisher));
    }
    Ok(axum::Json(apps).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Launch {
    #[serde(default)]
    locale: Option<String>,
    #[serde(default)]
    params: Vec<(String, String)>,
}

fn invocation(auth: &Auth, locale: Option<String>, params: Vec<(String, String)>) -> Invocation {
    Invocation {
        user: auth.user.id.clone(),
        locale: locale.unwrap_or_else(|| "en".into()),
        params,
        may_ask: true,
    }
}

/// `{"view": …}`, serialized straight from the view (not through a
/// `serde_json::Value` tree: a view's every node would be a map).
#[derive(Serialize)]
struct ViewBody {
    view: View,
}

fn view(view: View) -> Response {
    axum::Json(ViewBody { view }).into_response()
}

pub async fn launch(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(body): Json<Launch>,
) -> Result<Response, ApiError> {
    let invocation = invocation(&auth, body.locale, body.params);
    Ok(view(state.host.launch(&id, &invocation).await?))
}

/// A user action: the only event a client may send. Host events (consent
/// answers, payment results) come from the host itself.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    name: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    fields: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    locale: Option<String>,
}

pub async fn event(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(body): Json<ActionBody>,
) -> Result<Response, ApiError> {
    let action = Action {
        name: body.name,
        value: body.value,
        fields: body.fields.into_iter().collect(),
    };
    let invocation = invocation(&auth, body.locale, Vec::new());
    Ok(view(state.host.act(&id, &invocation, action).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QrQuery {
    text: String,
}

/// A QR code of `text` (a deep link the shell shows), drawn by the host as
/// module rows, like the QR codes in app views.
pub async fn qr(_auth: Auth, Params(q): Params<QrQuery>) -> Result<Response, ApiError> {
    if q.text.is_empty() || q.text.len() > superapp_runtime::view::MAX_QR_TEXT {
        return Err(ApiError::bad_request(format!(
            "a QR code holds 1 to {} bytes",
            superapp_runtime::view::MAX_QR_TEXT
        )));
    }
    let modules = superapp_runtime::view::qr_modules(&q.text)
        .ok_or_else(|| ApiError::bad_request("the text does not fit in a QR code"))?;
    Ok(axum::Json(serde_json::json!({ "modules": modules })).into_response())
}
