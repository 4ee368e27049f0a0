//! The registry and audit routes of operators, publishers and auditors:
//! publishers and trusted auditor keys, publishing a package, every
//! version with its review, decisions, yanking, rollout, the per-app
//! report, and the audit log's entries for verifying the chain.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use superapp_core::decision::SignedDecision;
use superapp_services::registry::{Actor, Changed, Registry, RegistryError};

use super::auth::{Json, Params};
use super::error::ApiError;
use super::principal::{Called, Principal};
use super::AppState;

/// The most audit entries one page returns.
pub const MAX_ENTRIES_PAGE: usize = 1_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPublisher {
    id: String,
    name: String,
    keys: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAuditor {
    key: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YankBody {
    yanked: bool,
    #[serde(default)]
    note: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RolloutBody {
    percent: u8,
}

/// `changed: false` when the request repeated what was already so.
fn changed(c: Changed) -> Response {
    axum::Json(json!({ "changed": c.changed, "release": c.release })).into_response()
}

pub async fn publishers(State(state): State<AppState>, call: Called) -> Result<Response, ApiError> {
    if let Principal::Publisher(_) = call.principal {
        return Err(ApiError::forbidden(
            "only operators and auditors list publishers",
        ));
    }
    Ok(axum::Json(state.host.registry.publishers()?).into_response())
}

pub async fn add_publisher(
    State(state): State<AppState>,
    call: Called,
) -> Result<Response, ApiError> {
    call.principal.require_operator()?;
    let body: NewPublisher = call.json()?;
    let actor = call.principal.actor();
    let p = state
        .host
        .change_registry(|r| r.add_publisher(&body.id, &body.name, &body.keys, &actor))
        .await?;
    Ok((StatusCode::CREATED, axum::Json(p)).into_response())
}

pub async fn add_publisher_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
    call: Called,
) -> Result<Response, ApiError> {
    call.principal.require_operator()?;
    let body: NewKey = call.json()?;
    let actor = call.principal.actor();
    let p = state
        .host
        .change_registry(|r| r.add_publisher_key(&id, &body.key, &actor))
        .await
        .map_err(no_such_publisher)?;
    Ok(axum::Json(p).into_response())
}

/// Take a key from a publisher: the operator's, as adding one is. Not
/// the publisher's own keys': whoever holds a leaked one could remove the
/// others with it.
pub async fn remove_publisher_key(
    State(state): State<AppState>,
    Path((id, key)): Path<(String, String)>,
    call: Called,
) -> Result<Response, ApiError> {
    call.principal.require_operator()?;
    let actor = call.principal.actor();
    let removed = state
        .host
        .change_registry(|r| r.remove_publisher_key(&id, &key, &actor))
        .await
        .map_err(no_such_publisher)?;
    match removed {
        Some(p) => Ok(axum::Json(p).into_response()),
        None => Err(ApiError::not_found(format!(
            "{key} is not a key of publisher `{id}`"
        ))),
    }
}

/// On a publisher's own route, a publisher that is not registered is not
/// found (elsewhere, a package naming one is refused: 403).
fn no_such_publisher(e: crate::host::HostError) -> ApiError {
    match e {
        crate::host::HostError::Registry(RegistryError::UnknownPublisher(id)) => {
            ApiError::not_found(format!("no publisher `{id}` is registered"))
        }
        other => other.into(),
    }
}

pub async fn auditors(State(state): State<AppState>, _call: Called) -> Result<Response, ApiError> {
    Ok(axum::Json(state.host.registry.auditors()?).into_response())
}

pub async fn trust_auditor(
    State(state): State<AppState>,
    call: Called,
) -> Result<Response, ApiError> {
    call.principal.require_operator()?;
    let body: NewAuditor = call.json()?;
    let actor = call.principal.actor();
    let a = state
        .host
        .change_registry(|r| r.trust_auditor(&body.key, &body.name, &actor))
        .await?;
    Ok((StatusCode::CREATED, axum::Json(a)).into_response())
}

pub async fn distrust_auditor(
    State(state): State<AppState>,
    Path(key): Path<String>,
    call: Called,
) -> Result<Response, ApiError> {
    call.principal.require_operator()?;
    let actor = call.principal.actor();
    let removed = state
        .host
        .change_registry(|r| r.distrust_auditor(&key, &actor))
        .await?;
    if !removed {
        return Err(ApiError::not_found(format!("key {key} is not trusted")));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Publish a package (the request body is the package file).
pub async fn publish(State(state): State<AppState>, call: Called) -> Result<Response, ApiError> {
    if let Principal::Auditor(_) = call.principal {
        return Err(ApiError::forbidden(
            "auditors review packages; publishers publish them",
        ));
    }
    let c = state
        .host
        .publish(&call.body, |publisher| call.principal.actor_for(publisher))
        .await?;
    let status = if c.changed {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let launchable = state.host.registry.launchable(&c.release).err();
    Ok((
        status,
        axum::Json(json!({ "changed": c.changed, "release": c.release, "blocked_by": launchable })),
    )
        .into_response())
}

pub async fn apps(State(state): State<AppState>, call: Called) -> Result<Response, ApiError> {
    let registry = &state.host.registry;
    let mut out = Vec::new();
    for app in registry.apps()? {
        let releases = registry.releases(&app)?;
        let publisher = releases
            .first()
            .map(|r| r.publisher.clone())
            .unwrap_or_default();
        if call.principal.require_reader_of(&publisher).is_err() {
            continue;
        }
        out.push(json!({ "app": app, "publisher": publisher, "versions": releases }));
    }
    Ok(axum::Json(out).into_response())
}

/// The releases of an app, after checking the caller may read them.
fn releases_for(
    registry: &Registry,
    app: &str,
    principal: &Principal,
) -> Result<Vec<superapp_services::registry::Release>, ApiError> {
    let releases = registry.releases(app)?;
    let first = releases
        .first()
        .ok_or_else(|| ApiError::not_found(format!("no app `{app}` in the registry")))?;
    principal.require_reader_of(&first.publisher)?;
    Ok(releases)
}

pub async fn app(
    State(state): State<AppState>,
    Path(app): Path<String>,
    call: Called,
) -> Result<Response, ApiError> {
    let releases = releases_for(&state.host.registry, &app, &call.principal)?;
    Ok(axum::Json(json!({ "app": app, "versions": releases })).into_response())
}

pub async fn report(
    State(state): State<AppState>,
    Path(app): Path<String>,
    call: Called,
) -> Result<Response, ApiError> {
    releases_for(&state.host.registry, &app, &call.principal)?;
    let report = state.host.registry.report(&app, &state.host.audit)?;
    Ok(axum::Json(report).into_response())
}

pub async fn release(
    State(state): State<AppState>,
    Path((app, version)): Path<(String, String)>,
    call: Called,
) -> Result<Response, ApiError> {
    let r = state.host.registry.release(&app, &version)?;
    call.principal.require_reader_of(&r.publisher)?;
    let blocked_by = state.host.registry.launchable(&r).err();
    Ok(axum::Json(json!({ "release": r, "blocked_by": blocked_by })).into_response())
}

/// The package file of a version, for auditors to inspect.
pub async fn package(
    State(state): State<AppState>,
    Path((app, version)): Path<(String, String)>,
    call: Called,
) -> Result<Response, ApiError> {
    let r = state.host.registry.release(&app, &version)?;
    call.principal.require_reader_of(&r.publisher)?;
    let bytes = state
        .host
        .registry
        .package_bytes(&r.digest)?
        .ok_or_else(|| ApiError::not_found(format!("the package of {} is missing", r.label())))?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

/// An auditor's signed decision: the signature is the authentication, so
/// any caller may deliver one (the auditor's tool, or the operator).
pub async fn decide(
    State(state): State<AppState>,
    Path((app, version)): Path<(String, String)>,
    Json(decision): Json<SignedDecision>,
) -> Result<Response, ApiError> {
    if decision.app != app || decision.version != version {
        return Err(ApiError::bad_request(format!(
            "the decision is about {}@{}, not {app}@{version}",
            decision.app, decision.version
        )));
    }
    let c = state.host.change_registry(|r| r.decide(&decision)).await?;
    Ok(changed(c))
}

/// The actor of a change to version `version` of `app`: the publisher of
/// that release, when the caller's key is one of its keys.
fn acting_on(
    state: &AppState,
    principal: &Principal,
    app: &str,
    version: &str,
) -> Result<Actor, ApiError> {
    Ok(match principal {
        Principal::Publisher(_) => {
            principal.actor_for(&state.host.registry.release(app, version)?.publisher)
        }
        _ => principal.actor(),
    })
}

pub async fn yank(
    State(state): State<AppState>,
    Path((app, version)): Path<(String, String)>,
    call: Called,
) -> Result<Response, ApiError> {
    let body: YankBody = call.json()?;
    let actor = acting_on(&state, &call.principal, &app, &version)?;
    let c = state
        .host
        .change_registry(|r| r.yank(&app, &version, body.yanked, &body.note, &actor))
        .await?;
    Ok(changed(c))
}

pub async fn rollout(
    State(state): State<AppState>,
    Path((app, version)): Path<(String, String)>,
    call: Called,
) -> Result<Response, ApiError> {
    let body: RolloutBody = call.json()?;
    let actor = acting_on(&state, &call.principal, &app, &version)?;
    let c = state
        .host
        .change_registry(|r| r.set_rollout(&app, &version, body.percent, &actor))
        .await?;
    Ok(changed(c))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntriesQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    limit: Option<usize>,
}

/// A page of the audit log, oldest first, for verifying the chain.
pub async fn audit_entries(
    State(state): State<AppState>,
    Params(q): Params<EntriesQuery>,
    call: Called,
) -> Result<Response, ApiError> {
    if let Principal::Publisher(_) = call.principal {
        return Err(ApiError::forbidden(
            "only operators and auditors read the audit log",
        ));
    }
    let limit = super::auth::page_limit(q.limit, MAX_ENTRIES_PAGE, MAX_ENTRIES_PAGE)?;
    let entries = state.host.audit.entries(q.after, limit)?;
    Ok(axum::Json(json!({ "entries": entries })).into_response())
}
