//! Mini-programs for the signed-in user: list, launch, send an action.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::auth::{Auth, Json};
use super::error::ApiError;
use super::AppState;
use superapp_runtime::bindings::superapp::plugin::types::{Action, Event};
use superapp_runtime::contract::ImportSummary;
use superapp_runtime::{App, Call, Invocation, RunError};

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

/// Traps, timeouts and limit breaches go into the audit log.
pub(super) fn record_failure(state: &AppState, user: &str, app: &App, error: &RunError) {
    let m = app.manifest();
    let mut details = std::collections::BTreeMap::new();
    details.insert("error".to_string(), error.code().to_string());
    if let Some(limit) = error.limit() {
        details.insert("limit".to_string(), limit.to_string());
    }
    let event = superapp_services::audit::Event {
        kind: "app.failed".into(),
        user: Some(user.to_string()),
        app: Some(m.id.clone()),
        version: Some(m.version.to_string()),
        outcome: "failed".into(),
        details,
        ..Default::default()
    };
    state.apps.audit.record(event);
}

/// Deliver a host event (consent answer, payment result, …) to `app` for
/// `user`, and return the view it draws; an app that fails is recorded and
/// yields no view. A removed app yields none either.
pub(super) async fn deliver(
    state: &AppState,
    user: &str,
    app: &str,
    event: Event,
) -> Option<serde_json::Value> {
    let app = state.apps.get(app)?;
    let invocation = Invocation::new(user.to_string());
    match state
        .apps
        .runtime
        .run(app, &state.apps.services, &invocation, &Call::Event(event))
        .await
    {
        Ok(view) => Some(serde_json::to_value(view).expect("views serialize")),
        Err(e) => {
            record_failure(state, user, app, &e);
            None
        }
    }
}

fn find<'a>(state: &'a AppState, id: &str) -> Result<&'a App, ApiError> {
    state
        .apps
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("no app `{id}`")))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Launch {
    #[serde(default)]
    locale: Option<String>,
    #[serde(default)]
    params: Vec<(String, String)>,
}

async fn run(
    state: &AppState,
    auth: &Auth,
    id: &str,
    locale: Option<String>,
    params: Vec<(String, String)>,
    call: Call,
) -> Result<Response, ApiError> {
    let app = find(state, id)?;
    let invocation = Invocation {
        user: auth.user.id.clone(),
        locale: locale.unwrap_or_else(|| "en".into()),
        params,
    };
    let view = match state
        .apps
        .runtime
        .run(app, &state.apps.services, &invocation, &call)
        .await
    {
        Ok(view) => view,
        Err(e) => {
            record_failure(state, &auth.user.id, app, &e);
            state.apps.store.durable().await?;
            return Err(e.into());
        }
    };
    // What the app stored during the event is durable before the answer.
    state.apps.store.durable().await?;
    Ok(axum::Json(serde_json::json!({ "view": view })).into_response())
}

pub async fn launch(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(body): Json<Launch>,
) -> Result<Response, ApiError> {
    run(&state, &auth, &id, body.locale, body.params, Call::Launch).await
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
    let ok = !body.name.is_empty()
        && body.name.len() <= 64
        && body
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(ApiError::bad_request(
            "an action name is 1-64 letters, digits, `-`, `_` or `.`",
        ));
    }
    let action = Action {
        name: body.name,
        value: body.value,
        fields: body.fields.into_iter().collect(),
    };
    run(
        &state,
        &auth,
        &id,
        body.locale,
        Vec::new(),
        Call::Event(Event::Action(action)),
    )
    .await
}
