//! A publisher's back office: the balances of its merchant accounts, the
//! orders paid to it and refunds. The publisher calls with requests signed
//! by its key; the operator may act for a publisher it names.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use superapp_services::ledger::AccountKind;

use super::auth::Params;
use super::error::ApiError;
use super::principal::{Called, Principal};
use super::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForPublisher {
    /// The publisher the operator acts for (publishers act for themselves).
    publisher: Option<String>,
}

/// The publisher whose merchant side `call` may see (one the registry
/// knows, when the operator names it).
fn merchant(state: &AppState, call: &Called, query: &ForPublisher) -> Result<String, ApiError> {
    match (&call.principal, &query.publisher) {
        (Principal::Publisher(ids), None) => match ids.as_slice() {
            [id] => Ok(id.clone()),
            _ => Err(ApiError::bad_request(format!(
                "this key belongs to several publishers ({}); name the one to act as: ?publisher=ID",
                ids.join(", ")
            ))),
        },
        (p @ Principal::Publisher(_), Some(named)) if p.is_publisher(named) => Ok(named.clone()),
        (Principal::Publisher(_), Some(_)) => Err(ApiError::forbidden(
            "a publisher sees only its own merchant accounts",
        )),
        (Principal::Operator, Some(named)) => match state.host.registry.publisher(named) {
            Ok(Some(_)) => Ok(named.clone()),
            Ok(None) => Err(ApiError::not_found(format!(
                "no publisher `{named}` is registered"
            ))),
            Err(e) => Err(e.into()),
        },
        (Principal::Operator, None) => Err(ApiError::bad_request(
            "the operator names the publisher: ?publisher=ID",
        )),
        (Principal::Auditor(_), _) => Err(ApiError::forbidden(
            "auditors review packages; merchant accounts are the publisher's",
        )),
    }
}

/// The publisher's merchant balances, one per currency.
pub async fn accounts(
    State(state): State<AppState>,
    Params(query): Params<ForPublisher>,
    call: Called,
) -> Result<Response, ApiError> {
    let publisher = merchant(&state, &call, &query)?;
    let accounts: Vec<_> = state
        .host
        .ledger
        .accounts_of(AccountKind::Merchant, &publisher)?
        .into_iter()
        .map(|a| json!({ "currency": a.id.currency, "balance": a.balance }))
        .collect();
    Ok(axum::Json(json!({ "publisher": publisher, "accounts": accounts })).into_response())
}

/// One order paid to the publisher.
pub async fn order(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Params(query): Params<ForPublisher>,
    call: Called,
) -> Result<Response, ApiError> {
    let publisher = merchant(&state, &call, &query)?;
    let order = state.host.orders.status_for(&publisher, &id)?;
    Ok(axum::Json(order).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundBody {
    amount: u64,
    /// The same key with the same amount refunds once.
    idempotency_key: String,
}

/// Refund part or all of an order paid to the publisher.
pub async fn refund(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Params(query): Params<ForPublisher>,
    call: Called,
) -> Result<Response, ApiError> {
    let publisher = merchant(&state, &call, &query)?;
    let body: RefundBody = call.json()?;
    let order = state
        .host
        .refund_order(&publisher, &id, body.amount, &body.idempotency_key)
        .await?;
    Ok(axum::Json(order).into_response())
}
