//! The operator's routes on a running server (`Authorization: Bearer` with
//! the operator token): top up a wallet, register an issuer, check the
//! ledger, take a backup. The CLI's `--server` mode calls these, so none of
//! it needs the server stopped.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::auth::Json;
use super::error::ApiError;
use super::principal::OperatorToken;
use super::AppState;
use superapp_services::ledger::AccountRef;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTopup {
    /// The user's username.
    user: String,
    amount: u64,
    #[serde(default = "euro")]
    currency: String,
    idempotency_key: String,
}

fn euro() -> String {
    "EUR".into()
}

/// Issue money from the mint to a user, once per idempotency key.
pub async fn topup(
    State(state): State<AppState>,
    _operator: OperatorToken,
    Json(body): Json<NewTopup>,
) -> Result<Response, ApiError> {
    let host = &state.host;
    let account = host
        .identity
        .find_by_username(&body.user)?
        .ok_or_else(|| ApiError::not_found(format!("no user `{}`", body.user)))?;
    let transfer = host.ledger.topup(
        &account.id,
        body.amount,
        &body.currency,
        &body.idempotency_key,
        "operator",
    )?;
    host.store.durable().await?;
    let balance = host
        .ledger
        .account(&AccountRef::user(&account.id, &body.currency))?
        .map_or(0, |a| a.balance);
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "transfer": transfer, "balance": balance })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewIssuer {
    id: String,
    name: String,
    public_key: String,
}

/// Register a document issuer.
pub async fn add_issuer(
    State(state): State<AppState>,
    _operator: OperatorToken,
    Json(body): Json<NewIssuer>,
) -> Result<Response, ApiError> {
    let host = &state.host;
    let issuer = host.documents.add_issuer(
        &host.audit,
        "operator",
        &body.id,
        &body.name,
        &body.public_key,
    )?;
    host.store.durable().await?;
    Ok((StatusCode::CREATED, axum::Json(issuer)).into_response())
}

/// Check the ledger end to end, as `superapp wallet check` does.
pub async fn ledger(
    State(state): State<AppState>,
    _operator: OperatorToken,
) -> Result<Response, ApiError> {
    let ledger = state.host.ledger.clone();
    let report = tokio::task::spawn_blocking(move || ledger.check())
        .await
        .map_err(|e| ApiError::internal(&e))??;
    let currencies: serde_json::Map<String, serde_json::Value> = report
        .currencies
        .iter()
        .map(|(c, t)| {
            (
                c.clone(),
                json!({ "issued": t.issued, "held": t.held, "accounts": t.accounts }),
            )
        })
        .collect();
    Ok(axum::Json(json!({
        "ok": report.problems.is_empty(),
        "currencies": currencies,
        "problems": report.problems,
    }))
    .into_response())
}

/// A consistent backup of the store and the data directory's keys, as a
/// tar archive. It holds the host's secrets: keep it like the data
/// directory itself.
pub async fn backup(
    State(state): State<AppState>,
    _operator: OperatorToken,
) -> Result<Response, ApiError> {
    let task = state.clone();
    let (file, manifest) = tokio::task::spawn_blocking(move || {
        let mut file =
            tempfile::tempfile_in(&task.host.data_dir).map_err(|e| ApiError::internal(&e))?;
        let manifest = task.host.backup(&mut file)?;
        use std::io::Seek as _;
        file.rewind().map_err(|e| ApiError::internal(&e))?;
        Ok::<_, ApiError>((file, manifest))
    })
    .await
    .map_err(|e| ApiError::internal(&e))??;
    tracing::info!(
        store_bytes = manifest.store_bytes,
        files = manifest.files.len(),
        "backup taken"
    );
    let file = tokio::fs::File::from_std(file);
    let stream = futures_util::stream::unfold(Some(file), |file| async move {
        use tokio::io::AsyncReadExt as _;
        let mut file = file?;
        let mut buf = vec![0u8; 64 << 10];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), Some(file)))
            }
            // End the body with the error; nothing more is read.
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"superapp-backup.tar\"",
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
