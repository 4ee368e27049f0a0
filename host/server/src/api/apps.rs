//! Mini-programs for the signed-in user: list, launch, send an action.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::auth::{Auth, Json};
use super::error::ApiError;
use super::AppState;
use superapp_runtime::bindings::superapp::plugin::types::Action;
use superapp_runtime::contract::ImportSummary;
use superapp_runtime::view::View;
use superapp_runtime::Invocation;

#[derive(Serialize)]
struct Listing<'a> {
    id: &'a str,
    name: &'a str,
    version: String,
    publisher: &'a str,
    description: &'a str,
    capabilities: ImportSummary,
}

pub async fn list(State(state): State<AppState>, _auth: Auth) -> Response {
    let apps: Vec<Listing> = state
        .host
        .apps
        .all()
        .map(|app| {
            let m = app.manifest();
            Listing {
                id: &m.id,
                name: &m.name,
                version: m.version.to_string(),
                publisher: &m.publisher,
                description: &m.description,
                capabilities: ImportSummary::of(m, app.imports()),
            }
        })
        .collect();
    axum::Json(apps).into_response()
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
    }
}

fn view(view: View) -> Response {
    axum::Json(serde_json::json!({ "view": view })).into_response()
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
