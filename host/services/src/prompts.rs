//! Host prompts: the questions the host puts to a user (consent, a card to
//! share, a payment sheet, a document disclosure sheet), stored per user.
//! Consent, payments and document requests write them; only the host's own
//! UI answers them, so nothing a mini-program returns can create, alter or
//! answer one.

use serde::{Deserialize, Serialize};
use superapp_core::Capability;

use crate::messaging::Card;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PromptStatus {
    Pending,
    Approved,
    Denied,
    /// Nobody answered in time (payment sheets expire with their order).
    Expired,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PromptKind {
    /// May the app use `capability`?
    #[default]
    Consent,
    /// Share `card` into a chat the user picks (capability: notify).
    ShareCard,
    /// Pay `payment.amount` to the app's publisher (capability: payments).
    /// Approving needs the user's password; the prompt id is the order id.
    Payment,
    /// Disclose fields of a credential (capability: documents); the user
    /// may untick fields. The prompt id is the request id.
    Document,
}

/// What a document sheet shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentSheet {
    pub request_id: String,
    pub credential_type: String,
    /// The fields the app asks for, in its order.
    pub fields: Vec<String>,
    pub purpose: String,
    /// The issuer of the user's credential of this type, if the user has
    /// one; `None` means there is nothing to share (only declining works).
    pub issuer: Option<String>,
    /// Of `fields`, those the credential holds.
    pub available: Vec<String>,
}

/// What a payment sheet shows: everything the user agrees to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentSheet {
    pub order_id: String,
    /// The publisher whose merchant account receives the money.
    pub merchant: String,
    /// Minor units.
    pub amount: u64,
    pub currency: String,
    pub description: String,
    pub expires_at: u64,
}

/// A question the host puts to the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    #[serde(default)]
    pub kind: PromptKind,
    /// For a share-card prompt: the card the app wants shared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<Card>,
    /// For a payment prompt: the sheet the user confirms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<PaymentSheet>,
    /// For a document prompt: the fields asked for and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<DocumentSheet>,
    pub id: String,
    pub app: String,
    pub app_name: String,
    pub publisher: String,
    pub version: String,
    pub capability: Capability,
    /// The manifest's reason, shown to the user.
    pub reason: String,
    pub status: PromptStatus,
    pub created_at: u64,
}

/// Where a user's prompt is stored: for modules that write prompts inside
/// their own transactions (payment sheets).
pub fn prompt_key(user: &str, prompt_id: &str) -> Vec<u8> {
    [user.as_bytes(), b"\0", prompt_id.as_bytes()].concat()
}
