//! Money and documents that arrive from outside an app: transfers between
//! users (with the password again, under the login throttles), and the
//! credentials and revocations issuers submit, signed.

use std::net::IpAddr;

use serde::Deserialize;
use superapp_sdk::credentials::Signed;
use superapp_services::documents::{DocumentError, Held, Issuance, RevocationPayload};
use superapp_services::identity::User;
use superapp_services::ledger::{
    AccountRef, Transfer as LedgerTransfer, TransferKind, TransferRequest,
};

use super::{Host, HostError};

/// Longest idempotency key and memo of a transfer, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;
pub const MAX_MEMO: usize = 200;

/// A user's transfer to another user.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    /// The recipient's username.
    pub to: String,
    pub amount: u64,
    pub currency: String,
    #[serde(default)]
    pub memo: String,
    pub idempotency_key: String,
    /// The sender's password again.
    pub password: String,
}

/// A transfer made, and to whom.
#[derive(Debug)]
pub struct TransferDone {
    pub transfer: LedgerTransfer,
    pub to: User,
}

impl Host {
    /// Move money from `user` to another user. Repeating a request with the
    /// same idempotency key returns the first transfer.
    pub async fn transfer(
        &self,
        user: &User,
        session: &str,
        client: IpAddr,
        t: Transfer,
    ) -> Result<TransferDone, HostError> {
        if !superapp_core::text::valid_key(&t.idempotency_key, MAX_IDEMPOTENCY_KEY) {
            return Err(HostError::Invalid(format!(
                "an idempotency_key is 1 to {MAX_IDEMPOTENCY_KEY} bytes without control or invisible characters"
            )));
        }
        if t.memo.len() > MAX_MEMO || t.memo.chars().any(superapp_core::text::disallowed_in_label) {
            return Err(HostError::Invalid(format!(
                "a memo is at most {MAX_MEMO} bytes, without control or text-direction characters"
            )));
        }
        let to = self
            .identity
            .find_by_username(&t.to)?
            .ok_or_else(|| HostError::NotFound(format!("no user `{}`", t.to)))?;
        self.identity
            .confirm_password(user, session, &t.password, client)
            .await?;
        let transfer = self.ledger.transfer(&TransferRequest {
            kind: TransferKind::Transfer,
            from: AccountRef::user(&user.id, &t.currency),
            to: AccountRef::user(&to.id, &t.currency),
            amount: t.amount,
            memo: t.memo,
            order: None,
            idempotency: Some((format!("user:{}", user.id), t.idempotency_key)),
        })?;
        self.flush().await?;
        Ok(TransferDone { transfer, to })
    }

    /// An issuer delivers a credential for the user it names; the issuer's
    /// signature is the authentication.
    pub async fn accept_credential(&self, issuance: &Issuance) -> Result<Held, HostError> {
        let username = &issuance.subject.username;
        let holder = self
            .identity
            .find_by_username(username)?
            .ok_or_else(|| DocumentError::UnknownUser(username.clone()))?;
        let held = self.documents.accept(issuance, &holder)?;
        self.flush().await?;
        Ok(held)
    }

    /// An issuer revokes a credential, with a signed statement.
    pub async fn revoke_credential(&self, signed: &Signed) -> Result<RevocationPayload, HostError> {
        let revoked = self.documents.revoke(signed)?;
        self.flush().await?;
        Ok(revoked)
    }
}

impl Host {
    /// A publisher refunds `amount` of an order paid to it, from its back
    /// office: the money goes back to the user who paid, who sees it in
    /// their wallet, and the app sees it in the order's status.
    pub async fn refund_order(
        &self,
        publisher: &str,
        order: &str,
        amount: u64,
        idempotency_key: &str,
    ) -> Result<superapp_services::ledger::orders::Order, HostError> {
        let refunded = self
            .orders
            .refund(publisher, order, amount, idempotency_key);
        self.flush().await?;
        Ok(refunded?)
    }
}
