//! A citizen's account with the utility company: their bills and receipts,
//! kept as one record in shared storage under the pseudonymous id the host
//! gives this app, and changed only by compare-and-swap so that two
//! devices of one citizen cannot overwrite each other's payments.

use serde::{Deserialize, Serialize};
use superapp_sdk::prelude::*;

/// How many times a change is retried when another device changed the
/// account at the same moment.
const RETRIES: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The day the account was opened (days since 1970-01-01).
    pub opened: i64,
    pub bills: Vec<Bill>,
    pub receipts: Vec<Receipt>,
    /// Payment orders started and not settled yet.
    pub pending: Vec<Pending>,
    /// How many payments of each set of bills (ids joined by `+`) ended
    /// unpaid (declined, expired, failed): the next one is a new order.
    #[serde(default)]
    pub unpaid_attempts: std::collections::BTreeMap<String, u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bill {
    pub id: String,
    pub service: String,
    pub period: String,
    /// Minor units.
    pub amount: u64,
    pub due: i64,
    /// The order that paid it.
    pub paid_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub order: String,
    pub bills: Vec<String>,
    pub amount: u64,
    pub paid_at: u64,
    /// Refunded so far, by the utility company and at once (`returned`).
    pub refunded: u64,
    /// Given back at once because some of its bills had been paid by
    /// another payment already.
    #[serde(default)]
    pub returned: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub order: String,
    pub bills: Vec<String>,
    pub amount: u64,
}

/// Where a bill stands today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Due,
    Overdue,
    Paid,
    /// The company gave back some of the payment that settled it (a
    /// refund is of a payment, which may have settled several bills).
    PartlyRefunded,
    Refunded,
}

impl Account {
    pub fn bill(&self, id: &str) -> Option<&Bill> {
        self.bills.iter().find(|b| b.id == id)
    }

    pub fn receipt(&self, order: &str) -> Option<&Receipt> {
        self.receipts.iter().find(|r| r.order == order)
    }

    pub fn standing(&self, bill: &Bill, today: i64) -> Standing {
        match &bill.paid_by {
            // The company refunded (some of) the payment that settled it;
            // a double payment given back is not this bill's refund.
            Some(order) => match self.receipt(order) {
                Some(r) if r.refunded >= r.amount => Standing::Refunded,
                Some(r) if r.refunded > r.returned => Standing::PartlyRefunded,
                _ => Standing::Paid,
            },
            None if today > bill.due => Standing::Overdue,
            None => Standing::Due,
        }
    }

    pub fn open_bills(&self) -> impl Iterator<Item = &Bill> {
        self.bills.iter().filter(|b| b.paid_by.is_none())
    }
}

fn key(customer: &str) -> String {
    format!("account/{customer}")
}

fn encode(account: &Account) -> Result<Vec<u8>, AppError> {
    serde_json::to_vec(account)
        .map_err(|e| AppError::Failed(format!("cannot encode the account: {e}")))
}

fn decode(bytes: &[u8]) -> Result<Account, AppError> {
    serde_json::from_slice(bytes)
        .map_err(|e| AppError::Failed(format!("the account record does not read: {e}")))
}

/// The account of `customer`, opened with this period's bills on first use
/// (exactly once, however many devices open it at the same moment).
pub fn open(customer: &str, today: i64) -> Result<Account, AppError> {
    if let Some(bytes) = shared_storage::get(key(customer))? {
        return decode(&bytes);
    }
    let fresh = Account {
        opened: today,
        bills: crate::bills::first_bills(customer, today),
        receipts: Vec::new(),
        pending: Vec::new(),
        unpaid_attempts: Default::default(),
    };
    if shared_storage::compare_and_swap(key(customer), None, Some(&encode(&fresh)?))? {
        log::info("opened a customer account");
        return Ok(fresh);
    }
    let bytes = shared_storage::get(key(customer))?
        .ok_or_else(|| AppError::Failed("the account vanished while opening".into()))?;
    decode(&bytes)
}

/// Apply `change` to the account and store it, retrying on a concurrent
/// change. `change` returns what the caller wants back, or an error that
/// leaves the account as it was.
pub fn update<T>(
    customer: &str,
    mut change: impl FnMut(&mut Account) -> Result<T, AppError>,
) -> Result<(Account, T), AppError> {
    for _ in 0..RETRIES {
        let old = shared_storage::get(key(customer))?
            .ok_or_else(|| AppError::Failed("no account to change".into()))?;
        let mut account = decode(&old)?;
        let out = change(&mut account)?;
        let new = encode(&account)?;
        if new == old || shared_storage::compare_and_swap(key(customer), Some(&old), Some(&new))? {
            return Ok((account, out));
        }
    }
    Err(AppError::Failed(
        "the account keeps changing; try again".into(),
    ))
}
