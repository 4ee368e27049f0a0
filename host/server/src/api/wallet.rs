//! The user's wallet: balances, history, transfers to other users, and the
//! answers to payment sheets. Anything that moves the user's money needs
//! the password again (step-up), under the login throttles.

use std::net::IpAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{Auth, ClientAddr, Json, Params};
use super::error::ApiError;
use super::AppState;
use superapp_runtime::bindings::superapp::plugin::types::{Event, PaymentResult};
use superapp_runtime::capabilities::payments::outcome;
use superapp_services::identity::{now_secs, IdentityError};
use superapp_services::ledger::orders::{Order, OrderError, OrderState};
use superapp_services::ledger::{AccountKind, AccountRef, TransferKind, TransferRequest};

/// Step-up: the password, entered again.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepUp {
    password: String,
}

/// The step-up's refusal as the API answers it.
fn refused(e: IdentityError) -> ApiError {
    match e {
        // Not 401: the session is fine, the confirmation is not.
        IdentityError::BadCredentials => ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong-password",
            "the password is wrong; no money moved",
        ),
        other => other.into(),
    }
}

/// Tell the order's app how it ended, and return the view it draws.
async fn tell_app(state: &AppState, order: &Order) -> Option<Value> {
    let outcome = outcome(&order.state)?;
    let event = Event::Payment(PaymentResult {
        order_id: order.id.clone(),
        outcome,
    });
    super::apps::deliver(state, &order.user, &order.app, event).await
}

/// Answer a payment sheet: approving needs `{"password": …}`.
pub(super) async fn answer_payment(
    state: &AppState,
    auth: &Auth,
    client: IpAddr,
    id: &str,
    approve: bool,
    body: &[u8],
) -> Result<Response, ApiError> {
    let orders = &state.apps.orders;
    let order = if approve {
        let step: StepUp = serde_json::from_slice(body).map_err(|_| {
            ApiError::bad_request("confirming a payment needs a body {\"password\": \"…\"}")
        })?;
        let pending = orders
            .get(id)?
            .filter(|o| o.user == auth.user.id)
            .ok_or_else(|| ApiError::not_found("no such order"))?;
        if pending.state != OrderState::Pending {
            return Err(OrderError::NotPending.into());
        }
        let confirmed = state
            .identity
            .confirm_password(&auth.user, &step.password, client)
            .await;
        if let Err(e) = confirmed {
            if matches!(e, IdentityError::BadCredentials) {
                orders.record_failed_step_up(&pending);
                state.apps.store.durable().await?;
            }
            return Err(refused(e));
        }
        orders.confirm(&auth.user.id, id)
    } else {
        orders.decline(&auth.user.id, id)
    };
    // A failed confirmation may still have left an audit record.
    state.apps.store.durable().await?;
    let order = order?;
    let view = tell_app(state, &order).await;
    state.apps.store.durable().await?;
    if order.state == OrderState::Expired {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "order-expired",
            "this payment request expired; nothing was paid",
        ));
    }
    let prompt = state.apps.consent.prompt(&auth.user.id, id)?;
    Ok(axum::Json(json!({ "prompt": prompt, "order": order, "view": view })).into_response())
}

/// Expire unanswered payment sheets every second and tell their apps,
/// until the server shuts down.
pub async fn expire_orders(state: AppState) {
    let mut shutdown = state.shutdown.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let expired = match state.apps.orders.expire_due(now_secs()) {
            Ok(expired) => expired,
            Err(e) => {
                tracing::error!(error = %e, "cannot expire payment orders");
                continue;
            }
        };
        if expired.is_empty() {
            continue;
        }
        if let Err(e) = state.apps.store.durable().await {
            tracing::error!(error = %e, "cannot flush expired orders");
            continue;
        }
        for order in &expired {
            tell_app(&state, order).await;
        }
        let _ = state.apps.store.durable().await;
    }
}

/// The user's balances, one per currency they hold.
pub async fn balances(State(state): State<AppState>, auth: Auth) -> Result<Response, ApiError> {
    let accounts = state
        .apps
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
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let account = AccountRef::user(&auth.user.id, &q.currency);
    let postings = state.apps.ledger.history(&account, q.before, limit)?;
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTransfer {
    /// The recipient's username.
    to: String,
    amount: u64,
    currency: String,
    #[serde(default)]
    memo: String,
    idempotency_key: String,
    password: String,
}

/// Send money to another user.
pub async fn transfer(
    State(state): State<AppState>,
    auth: Auth,
    ClientAddr(client): ClientAddr,
    Json(body): Json<NewTransfer>,
) -> Result<Response, ApiError> {
    if body.idempotency_key.is_empty() || body.idempotency_key.len() > 128 {
        return Err(ApiError::bad_request(
            "an idempotency_key is 1 to 128 bytes",
        ));
    }
    if body.memo.len() > 200 {
        return Err(ApiError::bad_request("a memo is at most 200 bytes"));
    }
    let to = state
        .identity
        .find_by_username(&body.to)?
        .ok_or_else(|| ApiError::not_found(format!("no user `{}`", body.to)))?;
    state
        .identity
        .confirm_password(&auth.user, &body.password, client)
        .await
        .map_err(refused)?;
    let transfer = state.apps.ledger.transfer(&TransferRequest {
        kind: TransferKind::Transfer,
        from: AccountRef::user(&auth.user.id, &body.currency),
        to: AccountRef::user(&to.id, &body.currency),
        amount: body.amount,
        memo: body.memo,
        order: None,
        idempotency: Some((format!("user:{}", auth.user.id), body.idempotency_key)),
    })?;
    state.apps.store.durable().await?;
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
