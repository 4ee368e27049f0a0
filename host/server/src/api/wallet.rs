//! The user's wallet: balances, history, transfers to other users, and the
//! answers to payment sheets. Anything that moves the user's money needs
//! the password again (step-up), under the login throttles.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{page_limit, Auth, ClientAddr, Json, Params};
use super::error::ApiError;
use super::AppState;
use crate::host::{Transfer, TransferDone, AT_ONCE};
use superapp_services::ledger::{AccountKind, AccountRef};

/// Run `work` every second until the server shuts down, logging what
/// fails (the next second tries again).
pub(crate) async fn every_second<F, Fut>(state: AppState, what: &str, work: F)
where
    F: Fn(AppState) -> Fut,
    Fut: std::future::Future<Output = Result<(), crate::host::HostError>>,
{
    every(state, Duration::from_secs(1), what, work).await;
}

/// Run `work` every `period` until the server shuts down, logging what
/// fails (the next period tries again).
pub(crate) async fn every<F, Fut>(state: AppState, period: Duration, what: &str, work: F)
where
    F: Fn(AppState) -> Fut,
    Fut: std::future::Future<Output = Result<(), crate::host::HostError>>,
{
    let mut shutdown = state.shutdown.clone();
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if let Err(e) = work(state.clone()).await {
            tracing::error!(error = %e, "cannot {what}");
        }
    }
}

/// Each minute, forget the login throttles' keys with no recent failures
/// and the send limit's users whose allowance is full again.
pub async fn sweep_throttles(state: AppState) {
    every(
        state,
        Duration::from_secs(60),
        "sweep the login throttles",
        |s| async move {
            s.host.messaging.sweep_send_limits();
            s.host.sweep_event_limits();
            // Each sweep on its own: one failing leaves the others to run.
            if let Err(e) = s.nonces.sweep(superapp_core::now_secs()) {
                tracing::warn!(error = %e, "cannot sweep the used nonces of signed requests");
            }
            s.host
                .identity
                .sweep_throttles()
                .map(drop)
                .map_err(crate::host::HostError::Identity)
        },
    )
    .await;
}

/// Expire unanswered payment and document sheets and tell their apps
/// (one host alone; several share the bus's work queue instead).
pub async fn expire_orders(state: AppState) {
    every_second(state, "expire payment orders", |s| async move {
        let jobs = s.host.due_expiries(superapp_core::now_secs(), 100)?;
        s.host.run_jobs(&jobs).await
    })
    .await;
}

/// Send provider callbacks that are due (a failed one waits for its retry
/// time in the outbox, not here).
pub async fn deliver_callbacks(state: AppState) {
    every_second(state, "send provider callbacks", |s| async move {
        let jobs = s.host.due_callbacks(superapp_core::now_secs(), AT_ONCE)?;
        s.host.run_jobs(&jobs).await
    })
    .await;
}

/// The user's balances, one per currency they hold.
pub async fn balances(State(state): State<AppState>, auth: Auth) -> Result<Response, ApiError> {
    let accounts = state
        .host
        .ledger
        .accounts_of(AccountKind::User, &auth.user.id)?;
    let accounts: Vec<Value> = accounts
        .iter()
        .map(|a| json!({ "currency": a.id.currency, "balance": a.balance }))
        .collect();
    Ok(axum::Json(json!({ "accounts": accounts })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    currency: String,
    before: Option<u64>,
    limit: Option<usize>,
}

/// Who is on the other side of a posting, as the user may see it.
fn counterparty(state: &AppState, account: &AccountRef) -> Value {
    match account.kind {
        AccountKind::User => {
            let name = state
                .host
                .identity
                .user(&account.owner)
                .ok()
                .flatten()
                .map(|u| u.username);
            json!({ "kind": "user", "name": name })
        }
        AccountKind::Merchant => json!({ "kind": "merchant", "name": account.owner }),
        AccountKind::Mint => json!({ "kind": "top-up", "name": null }),
    }
}

/// One currency's history, newest first; page with `before`.
pub async fn transactions(
    State(state): State<AppState>,
    auth: Auth,
    Params(q): Params<HistoryQuery>,
) -> Result<Response, ApiError> {
    superapp_services::ledger::check_currency(&q.currency)?;
    let limit = page_limit(q.limit, 50, 200)?;
    let account = AccountRef::user(&auth.user.id, &q.currency);
    let postings = state.host.ledger.history(&account, q.before, limit)?;
    let next = (postings.len() == limit)
        .then(|| postings.last().map(|p| p.seq))
        .flatten();
    let items: Vec<Value> = postings
        .iter()
        .map(|p| {
            json!({
                "seq": p.seq,
                "transfer": p.transfer,
                "kind": p.kind,
                "amount": p.amount,
                "balance_after": p.balance_after,
                "counterparty": counterparty(&state, &p.counterparty),
                "memo": p.memo,
                "order": p.order,
                "at": p.at,
            })
        })
        .collect();
    Ok(axum::Json(json!({ "transactions": items, "next_before": next })).into_response())
}

/// Send money to another user.
pub async fn transfer(
    State(state): State<AppState>,
    auth: Auth,
    ClientAddr(client): ClientAddr,
    Json(body): Json<Transfer>,
) -> Result<Response, ApiError> {
    let TransferDone { transfer, to } = state
        .host
        .transfer(&auth.user, &auth.token, client, body)
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "transfer": transfer.id,
            "amount": transfer.amount,
            "currency": transfer.currency,
            "to": to.username,
            "at": transfer.at,
        })),
    )
        .into_response())
}
