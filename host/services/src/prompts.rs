//! Host prompts: the questions the host puts to a user (consent, a card to
//! share, a payment sheet, a document disclosure sheet), stored per user.
//! Consent, payments and document requests write them; only the host's own
//! UI answers them, so nothing a mini-program returns can create, alter or
//! answer one.

use serde::{Deserialize, Serialize};
use superapp_core::{Capability, Manifest};
use superapp_store::{decode, txn_get, txn_put, Abort, Store, StoreError, Tree, Txn};

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
    /// Who will be able to check the presentation: the app itself
    /// (`None`), or a verifier the app named, shown as the app named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifier: Option<String>,
    /// Where what the user shares goes instead of the app: the provider's
    /// backend at this origin (`[capabilities.documents] deliver =
    /// "backend"`). `None`: to the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_to: Option<String>,
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

/// What a prompt asks, by kind: each kind carries exactly its own sheet, so
/// a payment prompt without a payment sheet cannot be represented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptBody {
    /// May the app use the prompt's capability?
    Consent,
    /// Share this card into a chat the user picks (capability: notify).
    ShareCard(Card),
    /// Pay what the sheet shows to the app's publisher (capability: payments).
    Payment(PaymentSheet),
    /// Disclose fields of a credential (capability: documents).
    Document(DocumentSheet),
}

impl PromptBody {
    pub fn kind(&self) -> PromptKind {
        match self {
            PromptBody::Consent => PromptKind::Consent,
            PromptBody::ShareCard(_) => PromptKind::ShareCard,
            PromptBody::Payment(_) => PromptKind::Payment,
            PromptBody::Document(_) => PromptKind::Document,
        }
    }
}

/// A question the host puts to the user. Stored and served as a flat JSON
/// object: `kind`, and for the kinds that have one, the sheet under `card`,
/// `payment` or `document`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "FlatPrompt", try_from = "FlatPrompt")]
pub struct Prompt {
    pub body: PromptBody,
    pub id: String,
    pub app: String,
    pub app_name: String,
    pub publisher: String,
    pub version: String,
    pub capability: Capability,
    /// The manifest's reason, shown to the user.
    pub reason: String,
    /// For `http`: the origins the app will contact, shown with the reason.
    pub origins: Vec<String>,
    pub status: PromptStatus,
    pub created_at: u64,
}

impl Prompt {
    /// A pending prompt `id` from `app` about `capability`, with the reason
    /// its manifest gives for it.
    pub fn new(
        id: String,
        app: &Manifest,
        capability: Capability,
        body: PromptBody,
        created_at: u64,
    ) -> Prompt {
        Prompt {
            body,
            id,
            app: app.id.clone(),
            app_name: app.name.clone(),
            publisher: app.publisher.clone(),
            version: app.version.to_string(),
            capability,
            reason: app.reason(capability),
            origins: match capability {
                Capability::Http => app.origins().iter().map(|o| o.to_string()).collect(),
                _ => Vec::new(),
            },
            status: PromptStatus::Pending,
            created_at,
        }
    }

    pub fn kind(&self) -> PromptKind {
        self.body.kind()
    }
}

/// The wire and storage shape of a prompt.
#[derive(Serialize, Deserialize)]
struct FlatPrompt {
    #[serde(default)]
    kind: PromptKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    card: Option<Card>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payment: Option<PaymentSheet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    document: Option<DocumentSheet>,
    id: String,
    app: String,
    app_name: String,
    publisher: String,
    version: String,
    capability: Capability,
    reason: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    origins: Vec<String>,
    status: PromptStatus,
    created_at: u64,
}

impl From<Prompt> for FlatPrompt {
    fn from(p: Prompt) -> Self {
        let kind = p.kind();
        let (mut card, mut payment, mut document) = (None, None, None);
        match p.body {
            PromptBody::Consent => {}
            PromptBody::ShareCard(c) => card = Some(c),
            PromptBody::Payment(s) => payment = Some(s),
            PromptBody::Document(s) => document = Some(s),
        }
        FlatPrompt {
            kind,
            card,
            payment,
            document,
            id: p.id,
            app: p.app,
            app_name: p.app_name,
            publisher: p.publisher,
            version: p.version,
            capability: p.capability,
            reason: p.reason,
            origins: p.origins,
            status: p.status,
            created_at: p.created_at,
        }
    }
}

impl TryFrom<FlatPrompt> for Prompt {
    type Error = String;

    fn try_from(f: FlatPrompt) -> Result<Self, String> {
        let body = match (f.kind, f.card, f.payment, f.document) {
            (PromptKind::Consent, None, None, None) => PromptBody::Consent,
            (PromptKind::ShareCard, Some(c), None, None) => PromptBody::ShareCard(c),
            (PromptKind::Payment, None, Some(s), None) => PromptBody::Payment(s),
            (PromptKind::Document, None, None, Some(s)) => PromptBody::Document(s),
            (kind, ..) => {
                return Err(format!(
                    "a {kind:?} prompt must carry exactly its own sheet"
                ))
            }
        };
        Ok(Prompt {
            body,
            id: f.id,
            app: f.app,
            app_name: f.app_name,
            publisher: f.publisher,
            version: f.version,
            capability: f.capability,
            reason: f.reason,
            origins: f.origins,
            status: f.status,
            created_at: f.created_at,
        })
    }
}

/// Where a user's prompt is stored.
pub fn prompt_key(user: &str, prompt_id: &str) -> Vec<u8> {
    [user.as_bytes(), b"\0", prompt_id.as_bytes()].concat()
}

/// user ‖ created (big-endian) ‖ id: the order of both indexes.
fn time_key(user: &str, created_at: u64, id: &str) -> Vec<u8> {
    [
        user.as_bytes(),
        b"\0",
        &created_at.to_be_bytes(),
        id.as_bytes(),
    ]
    .concat()
}

const HISTORY: &[u8] = b"h\0";
const PENDING: &[u8] = b"p\0";

/// Most prompts one page of the history holds, and most pending prompts
/// listed at once.
pub const MAX_PAGE: usize = 200;

/// Write a user's prompt inside a transaction that names `Prompts` and
/// `PromptIndex`, keeping its place in the history and, while it is
/// pending, in the pending index. Every prompt is written through this.
pub fn save(t: &dyn Txn, user: &str, prompt: &Prompt) -> Result<(), StoreError> {
    txn_put(t, Tree::Prompts, &prompt_key(user, &prompt.id), prompt)?;
    let at = time_key(user, prompt.created_at, &prompt.id);
    t.put(Tree::PromptIndex, &[HISTORY, &at].concat(), b"")?;
    let pending = [PENDING, &at].concat();
    if prompt.status == PromptStatus::Pending {
        t.put(Tree::PromptIndex, &pending, b"")
    } else {
        t.delete(Tree::PromptIndex, &pending)
    }
}

/// Change the status of a user's prompt, if it exists.
pub fn set_status(
    t: &dyn Txn,
    user: &str,
    id: &str,
    status: PromptStatus,
) -> Result<(), StoreError> {
    if let Some(mut prompt) = txn_get::<Prompt>(t, Tree::Prompts, &prompt_key(user, id))? {
        prompt.status = status;
        save(t, user, &prompt)?;
    }
    Ok(())
}

/// The prompts an index page names, in its order.
fn load(
    store: &Store,
    user: &str,
    keys: &[Vec<u8>],
    skip: usize,
) -> Result<Vec<Prompt>, StoreError> {
    let mut out = Vec::new();
    for k in keys {
        // family ‖ user ‖ \0 ‖ created (8) ‖ id
        let Some(id) = k.get(skip + user.len() + 1 + 8..) else {
            continue;
        };
        let id = String::from_utf8_lossy(id);
        if let Some(p) = store.get::<Prompt>(Tree::Prompts, &prompt_key(user, &id))? {
            out.push(p);
        }
    }
    Ok(out)
}

/// A user's pending prompts, oldest first (at most [`MAX_PAGE`]).
pub fn pending(store: &Store, user: &str) -> Result<Vec<Prompt>, StoreError> {
    let prefix = [PENDING, user.as_bytes(), b"\0"].concat();
    let keys: Vec<Vec<u8>> = store
        .scan(Tree::PromptIndex, &prefix, None, MAX_PAGE, false)?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    Ok(load(store, user, &keys, PENDING.len())?
        .into_iter()
        .filter(|p| p.status == PromptStatus::Pending)
        .collect())
}

/// One page of a user's prompts, answered or not, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryPage {
    pub prompts: Vec<Prompt>,
    /// Pass as `before` for the next (older) page; `None` on the last.
    pub next_before: Option<String>,
}

/// The cursor of a prompt in the history: `CREATED-ID`.
fn cursor(p: &Prompt) -> String {
    format!("{}-{}", p.created_at, p.id)
}

/// A page of a user's prompt history, older than the `before` cursor.
pub fn history(
    store: &Store,
    user: &str,
    before: Option<&str>,
    limit: usize,
) -> Result<HistoryPage, StoreError> {
    let limit = limit.clamp(1, MAX_PAGE);
    let prefix = [HISTORY, user.as_bytes(), b"\0"].concat();
    let after = match before {
        Some(c) => {
            let (created, id) = c.split_once('-').unwrap_or((c, ""));
            let created: u64 = created.parse().unwrap_or(u64::MAX);
            Some([HISTORY, &time_key(user, created, id)].concat())
        }
        None => None,
    };
    let keys: Vec<Vec<u8>> = store
        .scan(
            Tree::PromptIndex,
            &prefix,
            after.as_deref(),
            limit + 1,
            true,
        )?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let more = keys.len() > limit;
    let prompts = load(store, user, &keys[..keys.len().min(limit)], HISTORY.len())?;
    let next_before = if more {
        prompts.last().map(cursor)
    } else {
        None
    };
    Ok(HistoryPage {
        prompts,
        next_before,
    })
}

/// Index the prompts written before the indexes existed (once per store).
pub fn index_existing(store: &Store) -> Result<(), StoreError> {
    const DONE: &[u8] = b"prompt-index";
    if store.get::<bool>(Tree::Meta, DONE)?.is_some() {
        return Ok(());
    }
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.scan(Tree::Prompts, b"", after.as_deref(), 512, false)?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        store
            .transact(&[Tree::Prompts, Tree::PromptIndex], |t| {
                for (k, v) in &page {
                    let Some(split) = k.iter().position(|b| *b == 0) else {
                        continue;
                    };
                    let user = String::from_utf8_lossy(&k[..split]);
                    let prompt: Prompt = decode(Tree::Prompts, v)?;
                    save(t, &user, &prompt)?;
                }
                Ok::<_, Abort<()>>(())
            })
            .map_err(Abort::into_store)?;
    }
    store
        .transact(&[Tree::Meta], |t| {
            Ok::<_, Abort<()>>(txn_put(t, Tree::Meta, DONE, &true)?)
        })
        .map_err(Abort::into_store)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest::parse(
            "id = \"org.example.shop\"\nname = \"Shop\"\nversion = \"1.0.0\"\npublisher = \"Example\"\ndescription = \"d\"\n[capabilities.payments]\nreason = \"to sell\"\n",
        )
        .unwrap()
    }

    #[test]
    fn a_prompt_keeps_its_flat_json_shape_and_round_trips() {
        let sheet = PaymentSheet {
            order_id: "o1".into(),
            merchant: "Example".into(),
            amount: 500,
            currency: "EUR".into(),
            description: "a cup".into(),
            expires_at: 10,
        };
        let prompt = Prompt::new(
            "o1".into(),
            &manifest(),
            Capability::Payments,
            PromptBody::Payment(sheet),
            1,
        );
        let json = serde_json::to_value(&prompt).unwrap();
        assert_eq!(json["kind"], "payment");
        assert_eq!(json["payment"]["amount"], 500);
        assert_eq!(json["reason"], "to sell");
        assert!(json.get("card").is_none() && json.get("document").is_none());
        let back: Prompt = serde_json::from_value(json).unwrap();
        assert_eq!(back, prompt);
    }

    #[test]
    fn a_stored_prompt_without_its_sheet_is_refused() {
        let prompt = Prompt::new(
            "p1".into(),
            &manifest(),
            Capability::Payments,
            PromptBody::Consent,
            1,
        );
        let mut json = serde_json::to_value(&prompt).unwrap();
        json["kind"] = "payment".into();
        let err = serde_json::from_value::<Prompt>(json).unwrap_err();
        assert!(err.to_string().contains("its own sheet"), "{err}");
        // Records written before prompts had kinds are consent prompts.
        let mut old = serde_json::to_value(&prompt).unwrap();
        old.as_object_mut().unwrap().remove("kind");
        let back: Prompt = serde_json::from_value(old).unwrap();
        assert_eq!(back.kind(), PromptKind::Consent);
    }
}
