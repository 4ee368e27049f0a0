//! The ledger: double-entry accounts in integer minor units. Every transfer
//! is one store transaction that writes both legs (a posting on each
//! account), the two balances and the transfer record, so a crash leaves
//! either all of it or none. User and merchant balances never go negative;
//! only the mint's does, by exactly what it has issued, so the balances of
//! each currency always sum to zero. Money enters only through the mint.
//!
//! Payment orders, which move money from a user to a publisher's merchant
//! account after the user confirms, live in [`orders`].

pub mod orders;

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use superapp_core::{new_id, now_secs};
use superapp_store::{txn_get, txn_put, Abort, Store, StoreError, Tree, Txn};

/// The trees one transfer touches.
pub const TREES: [Tree; 3] = [Tree::Accounts, Tree::Postings, Tree::Transfers];

/// The largest amount one transfer may move, in minor units: far above any
/// real payment, far below where sums could overflow.
pub const MAX_AMOUNT: u64 = 1_000_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccountKind {
    /// A user's wallet.
    User,
    /// A publisher's merchant account: where payments to its apps land.
    Merchant,
    /// Where money comes from: the only account whose balance is negative.
    Mint,
}

impl AccountKind {
    fn tag(self) -> &'static str {
        match self {
            AccountKind::User => "user",
            AccountKind::Merchant => "merchant",
            AccountKind::Mint => "mint",
        }
    }
}

/// Names one account: who holds it and in which currency.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AccountRef {
    pub kind: AccountKind,
    /// User id, publisher name, or `mint`.
    pub owner: String,
    pub currency: String,
}

impl AccountRef {
    pub fn user(user: &str, currency: &str) -> AccountRef {
        AccountRef {
            kind: AccountKind::User,
            owner: user.to_string(),
            currency: currency.to_string(),
        }
    }

    pub fn merchant(publisher: &str, currency: &str) -> AccountRef {
        AccountRef {
            kind: AccountKind::Merchant,
            owner: publisher.to_string(),
            currency: currency.to_string(),
        }
    }

    pub fn mint(currency: &str) -> AccountRef {
        AccountRef {
            kind: AccountKind::Mint,
            owner: "mint".to_string(),
            currency: currency.to_string(),
        }
    }

    /// `user alice EUR`: how a check names the account.
    fn label(&self) -> String {
        format!("{} {} {}", self.kind.tag(), self.owner, self.currency)
    }

    /// kind ‖ 0 ‖ owner ‖ 0 ‖ currency: an owner's accounts are one prefix.
    fn key(&self) -> Vec<u8> {
        owner_prefix(self.kind, &self.owner)
            .into_iter()
            .chain(self.currency.bytes())
            .collect()
    }
}

fn owner_prefix(kind: AccountKind, owner: &str) -> Vec<u8> {
    format!("{}\0{owner}\0", kind.tag()).into_bytes()
}

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    #[serde(flatten)]
    pub id: AccountRef,
    /// Minor units. Negative only for the mint.
    pub balance: i64,
    /// Postings so far; the next posting's seq.
    pub postings: u64,
    pub created_at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransferKind {
    /// Mint → user: money entering the system.
    Topup,
    /// User → merchant, for a confirmed order.
    Payment,
    /// Merchant → user, against a paid order.
    Refund,
    /// User → user.
    Transfer,
}

impl TransferKind {
    /// The kind in words.
    pub fn name(self) -> &'static str {
        match self {
            TransferKind::Topup => "top-up",
            TransferKind::Payment => "payment",
            TransferKind::Refund => "refund",
            TransferKind::Transfer => "transfer",
        }
    }
}

/// One transfer, both legs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub id: String,
    pub kind: TransferKind,
    pub from: AccountRef,
    pub to: AccountRef,
    pub amount: u64,
    pub currency: String,
    pub memo: String,
    /// The order a payment or refund belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    pub at: u64,
}

/// One leg of a transfer, as an account's history shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    pub seq: u64,
    pub transfer: String,
    pub kind: TransferKind,
    /// Positive for money in, negative for money out.
    pub amount: i64,
    pub balance_after: i64,
    pub counterparty: AccountRef,
    pub memo: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    pub at: u64,
}

/// What a transfer asks for.
#[derive(Debug, Clone)]
pub struct TransferRequest {
    pub kind: TransferKind,
    pub from: AccountRef,
    pub to: AccountRef,
    pub amount: u64,
    pub memo: String,
    pub order: Option<String>,
    /// (scope, key): the same key in the same scope with the same request
    /// returns the first transfer; with a different request it is an error.
    pub idempotency: Option<(String, String)>,
}

/// A stored idempotency key: which request it was used for, and the result.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyUse {
    request_sha256: String,
    transfer: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "insufficient funds: the balance is {}, {} is needed",
        superapp_core::money::format(*balance, currency),
        superapp_core::money::format(*needed as i64, currency)
    )]
    InsufficientFunds {
        balance: i64,
        needed: u64,
        currency: String,
    },
    #[error("this idempotency key was already used for a different request")]
    IdempotencyConflict,
    #[error(transparent)]
    Store(#[from] StoreError),
}

superapp_store::abort_into!(LedgerError);

/// A currency the ledger holds: an ISO 4217 code in use today, with two
/// decimals (amounts are counted in hundredths and shown so). Funds (BOV),
/// metals, test and "no currency" codes (XAU, XTS, XXX), superseded codes
/// (VES) and currencies with other minor units (JPY, KWD) are refused, as is
/// anything else of three letters (BTC).
pub fn check_currency(code: &str) -> Result<(), LedgerError> {
    use iso_currency::Currency;
    let Some(currency) = Currency::from_code(code) else {
        return Err(LedgerError::Invalid(format!(
            "`{code}` is not a currency code (an ISO 4217 code in upper case, e.g. EUR)"
        )));
    };
    let held = currency.exponent() == Some(2)
        && !currency.is_fund()
        && !currency.is_special()
        && currency.is_superseded().is_none();
    if held {
        Ok(())
    } else {
        Err(LedgerError::Invalid(format!(
            "`{code}` is not a currency the wallet holds: it holds currencies \
             in use with two decimals (cents), e.g. EUR, USD, GBP"
        )))
    }
}

pub fn check_amount(amount: u64) -> Result<(), LedgerError> {
    if (1..=MAX_AMOUNT).contains(&amount) {
        Ok(())
    } else {
        Err(LedgerError::Invalid(format!(
            "an amount is 1 to {MAX_AMOUNT} minor units"
        )))
    }
}

fn idempotency_key(scope: &str, key: &str) -> Vec<u8> {
    format!("k\0{scope}\0{key}").into_bytes()
}

fn transfer_key(id: &str) -> Vec<u8> {
    format!("t\0{id}").into_bytes()
}

fn posting_key(account: &AccountRef, seq: u64) -> Vec<u8> {
    let mut k = account.key();
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The digest an idempotency key is bound to: every field that changes
/// what the transfer does.
fn request_digest(req: &TransferRequest) -> String {
    let canonical =
        serde_json::json!([req.kind, req.from, req.to, req.amount, req.memo, req.order,]);
    crate::audit::digest_hex(canonical.to_string().as_bytes())
}

/// Apply one transfer inside the caller's transaction, which must include
/// [`TREES`]. Nothing is written unless everything checks out; the caller
/// commits both legs together with whatever else it writes.
pub fn apply(txn: &dyn Txn, req: &TransferRequest) -> Result<Transfer, Abort<LedgerError>> {
    let user = |e: LedgerError| Abort::User(e);
    check_amount(req.amount).map_err(user)?;
    check_currency(&req.from.currency).map_err(user)?;
    if req.from.currency != req.to.currency {
        return Err(user(LedgerError::Invalid(
            "both accounts of a transfer hold the same currency".into(),
        )));
    }
    if req.from == req.to {
        return Err(user(LedgerError::Invalid(
            "an account cannot pay itself".into(),
        )));
    }
    for owner in [&req.from.owner, &req.to.owner] {
        if owner.is_empty() || owner.contains('\0') {
            return Err(user(LedgerError::Invalid("a bad account owner".into())));
        }
    }
    if req.to.kind == AccountKind::Mint {
        return Err(user(LedgerError::Invalid(
            "money cannot be sent to the mint".into(),
        )));
    }
    let digest = request_digest(req);
    if let Some((scope, key)) = &req.idempotency {
        let k = idempotency_key(scope, key);
        if let Some(used) = txn_get::<KeyUse>(txn, Tree::Transfers, &k)? {
            if used.request_sha256 != digest {
                return Err(user(LedgerError::IdempotencyConflict));
            }
            return txn_get::<Transfer>(txn, Tree::Transfers, &transfer_key(&used.transfer))?
                .ok_or_else(|| {
                    Abort::Store(StoreError::Corrupt(
                        "an idempotency key names a missing transfer".into(),
                    ))
                });
        }
    }
    let now = now_secs();
    let amount = req.amount as i64;
    let load = |id: &AccountRef| -> Result<Account, StoreError> {
        Ok(
            txn_get::<Account>(txn, Tree::Accounts, &id.key())?.unwrap_or_else(|| Account {
                id: id.clone(),
                balance: 0,
                postings: 0,
                created_at: now,
            }),
        )
    };
    let mut from = load(&req.from)?;
    let mut to = load(&req.to)?;
    let from_after = match from.balance.checked_sub(amount) {
        Some(b) if b >= 0 || from.id.kind == AccountKind::Mint => b,
        _ => {
            return Err(user(LedgerError::InsufficientFunds {
                balance: from.balance,
                needed: req.amount,
                currency: req.from.currency.clone(),
            }))
        }
    };
    let Some(to_after) = to.balance.checked_add(amount) else {
        return Err(user(LedgerError::Invalid(
            "the receiving account cannot hold that much".into(),
        )));
    };
    let transfer = Transfer {
        id: new_id(),
        kind: req.kind,
        from: req.from.clone(),
        to: req.to.clone(),
        amount: req.amount,
        currency: req.from.currency.clone(),
        memo: req.memo.clone(),
        order: req.order.clone(),
        at: now,
    };
    for (account, delta, after, counterparty) in [
        (&mut from, -amount, from_after, &req.to),
        (&mut to, amount, to_after, &req.from),
    ] {
        let posting = Posting {
            seq: account.postings,
            transfer: transfer.id.clone(),
            kind: req.kind,
            amount: delta,
            balance_after: after,
            counterparty: counterparty.clone(),
            memo: req.memo.clone(),
            order: req.order.clone(),
            at: now,
        };
        txn_put(
            txn,
            Tree::Postings,
            &posting_key(&account.id, posting.seq),
            &posting,
        )?;
        account.balance = after;
        account.postings += 1;
        txn_put(txn, Tree::Accounts, &account.id.key(), &*account)?;
    }
    txn_put(txn, Tree::Transfers, &transfer_key(&transfer.id), &transfer)?;
    if let Some((scope, key)) = &req.idempotency {
        let used = KeyUse {
            request_sha256: digest,
            transfer: transfer.id.clone(),
        };
        txn_put(txn, Tree::Transfers, &idempotency_key(scope, key), &used)?;
    }
    Ok(transfer)
}

/// Per-currency totals from [`Ledger::check`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CurrencyTotals {
    /// What the mint has issued: minus its balance.
    pub issued: i64,
    /// The sum of every user and merchant balance.
    pub held: i64,
    pub accounts: u64,
}

/// The result of checking the ledger's invariants end to end.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    pub currencies: std::collections::BTreeMap<String, CurrencyTotals>,
    /// Every broken invariant, in words; empty when the ledger is sound.
    pub problems: Vec<String>,
}

/// The audit entry of a top-up.
const TOPUP_EVENT: &str = "ledger.topup";

/// The audit entry of a transfer between users.
const TRANSFER_EVENT: &str = "ledger.transfer";

/// Set once the audit log names every top-up and transfer between users
/// (see [`Ledger::audit_earlier_transfers`]).
const AUDITED_KEY: &[u8] = b"ledger-audited";

/// Whether a transfer of this kind has an audit entry of its own
/// ([`TOPUP_EVENT`], [`TRANSFER_EVENT`]); payments and refunds are
/// recorded by their orders' entries.
fn is_audited(kind: TransferKind) -> bool {
    matches!(kind, TransferKind::Topup | TransferKind::Transfer)
}

/// The audit entry of a top-up or a transfer between users, under the user
/// whose money it is: who received a top-up, who sent a transfer.
fn audited(t: &Transfer, outcome: &str) -> crate::audit::Event {
    let (kind, user) = match t.kind {
        TransferKind::Topup => (TOPUP_EVENT, &t.to.owner),
        _ => (TRANSFER_EVENT, &t.from.owner),
    };
    let event = crate::audit::Event {
        kind: kind.into(),
        user: Some(user.clone()),
        outcome: outcome.into(),
        ..Default::default()
    }
    .with_detail("amount", t.amount.to_string())
    .with_detail("currency", &t.currency)
    .with_detail("transfer", &t.id);
    match t.kind {
        TransferKind::Topup => event,
        _ => event.with_detail("to", &t.to.owner),
    }
}

pub struct Ledger {
    store: Arc<Store>,
    audit: Arc<crate::audit::Audit>,
}

/// Longest top-up idempotency key, in bytes.
pub const MAX_TOPUP_KEY: usize = 128;

impl Ledger {
    pub fn new(store: Arc<Store>, audit: Arc<crate::audit::Audit>) -> Ledger {
        Ledger { store, audit }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// One transfer, in its own transaction.
    ///
    /// A transfer between users is recorded in the audit log in the same
    /// transaction (a repeat records nothing again), as a top-up is: the
    /// chain covers every movement of money, and [`Ledger::check`] holds
    /// the ledger's records to it.
    pub fn transfer(&self, req: &TransferRequest) -> Result<Transfer, LedgerError> {
        let trees = crate::audit::with(&TREES);
        Ok(self.store.transact(&trees, |t| {
            let replay = match &req.idempotency {
                Some((scope, key)) => t
                    .get(Tree::Transfers, &idempotency_key(scope, key))?
                    .is_some(),
                None => false,
            };
            let done = apply(t, req)?;
            if !replay && req.kind == TransferKind::Transfer {
                self.audit.append_in(t, audited(&done, "sent"))?;
            }
            Ok(done)
        })?)
    }

    /// Record in the audit log the top-ups and transfers between users made
    /// before the log covered them (by an earlier version), once per store:
    /// after this, [`Ledger::check`] finds any such transfer the log does
    /// not name. Their entries say `recorded` and carry the transfer's own
    /// time. Returns how many were recorded.
    pub fn audit_earlier_transfers(&self) -> Result<usize, LedgerError> {
        if self.store.get::<bool>(Tree::Meta, AUDITED_KEY)?.is_some() {
            return Ok(0);
        }
        let named = self.audited_transfers()?;
        let mut earlier = Vec::new();
        for (_, v) in self
            .store
            .scan(Tree::Transfers, b"t\0", None, usize::MAX, false)?
        {
            let t: Transfer = superapp_store::decode(Tree::Transfers, &v)?;
            if is_audited(t.kind) && !named.contains_key(&t.id) {
                earlier.push(t);
            }
        }
        earlier.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
        let trees = crate::audit::with(&[]);
        Ok(self.store.transact(&trees, |t| {
            // Another process of this store did it first.
            if txn_get::<bool>(t, Tree::Meta, AUDITED_KEY)?.is_some() {
                return Ok::<_, Abort<LedgerError>>(0);
            }
            for transfer in &earlier {
                let event =
                    audited(transfer, "recorded").with_detail("made_at", transfer.at.to_string());
                self.audit.append_in(t, event)?;
            }
            txn_put(t, Tree::Meta, AUDITED_KEY, &true)?;
            Ok(earlier.len())
        })?)
    }

    /// The transfers the audit log's ledger entries name, with each
    /// naming entry's seq and event.
    fn audited_transfers(
        &self,
    ) -> Result<HashMap<String, Vec<(u64, crate::audit::Event)>>, LedgerError> {
        let mut named: HashMap<String, Vec<(u64, crate::audit::Event)>> = HashMap::new();
        let mut after = 0;
        loop {
            let page = self.audit.entries(after, 1024)?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for entry in page {
                if !matches!(entry.event.kind.as_str(), TOPUP_EVENT | TRANSFER_EVENT) {
                    continue;
                }
                let id = entry.event.details.get("transfer").cloned();
                named
                    .entry(id.unwrap_or_default())
                    .or_default()
                    .push((entry.seq, entry.event));
            }
        }
        Ok(named)
    }

    /// Issue `amount` from the mint to a user: the only way money enters.
    /// `key` makes a retry harmless (the same key and request issue once;
    /// another request under it is refused); `by` names who asked. The
    /// top-up and its audit entry are one transaction.
    pub fn topup(
        &self,
        user: &str,
        amount: u64,
        currency: &str,
        key: &str,
        by: &str,
    ) -> Result<Transfer, LedgerError> {
        if !superapp_core::text::valid_key(key, MAX_TOPUP_KEY) {
            return Err(LedgerError::Invalid(format!(
                "a top-up needs an idempotency key of 1 to {MAX_TOPUP_KEY} bytes without control or invisible characters, so that a retry issues nothing twice"
            )));
        }
        let req = TransferRequest {
            kind: TransferKind::Topup,
            from: AccountRef::mint(currency),
            to: AccountRef::user(user, currency),
            amount,
            memo: "top-up".into(),
            order: None,
            idempotency: Some(("topup".to_string(), key.to_string())),
        };
        let trees = crate::audit::with(&TREES);
        Ok(self.store.transact(&trees, |t| {
            let replay = t
                .get(Tree::Transfers, &idempotency_key("topup", key))?
                .is_some();
            let done = apply(t, &req)?;
            if !replay {
                self.audit
                    .append_in(t, audited(&done, "issued").with_detail("by", by))?;
            }
            Ok(done)
        })?)
    }

    pub fn account(&self, id: &AccountRef) -> Result<Option<Account>, LedgerError> {
        Ok(self.store.get(Tree::Accounts, &id.key())?)
    }

    /// Every account of one owner (one per currency), by currency.
    pub fn accounts_of(&self, kind: AccountKind, owner: &str) -> Result<Vec<Account>, LedgerError> {
        let prefix = owner_prefix(kind, owner);
        self.store
            .scan(Tree::Accounts, &prefix, None, usize::MAX, false)?
            .iter()
            .map(|(_, v)| Ok(superapp_store::decode(Tree::Accounts, v)?))
            .collect()
    }

    /// An account's postings, newest first, older than `before` (a seq).
    pub fn history(
        &self,
        id: &AccountRef,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Posting>, LedgerError> {
        let mut prefix = id.key();
        prefix.push(0);
        let entries = match before {
            // A reverse scan starts after the given key; seq `before`'s own
            // key bounds it, exclusive.
            Some(seq) => self.store.scan(
                Tree::Postings,
                &prefix,
                Some(&posting_key(id, seq)),
                limit,
                true,
            )?,
            None => self
                .store
                .scan(Tree::Postings, &prefix, None, limit, true)?,
        };
        entries
            .iter()
            .map(|(_, v)| Ok(superapp_store::decode(Tree::Postings, v)?))
            .collect()
    }

    /// Check every invariant: each account's balance is the sum of its
    /// postings and matches its last posting; no user or merchant balance
    /// is negative; per currency, what accounts hold equals what the mint
    /// issued. Reads everything: an operator's tool, not a request path.
    pub fn check(&self) -> Result<CheckReport, LedgerError> {
        let mut report = CheckReport::default();
        // Each posting's transfer, account, amount and counterparty: every
        // transfer must have its two, and every posting its transfer.
        let mut legs: HashMap<String, Vec<(AccountRef, i64, AccountRef)>> = HashMap::new();
        for (_, v) in self
            .store
            .scan(Tree::Accounts, b"", None, usize::MAX, false)?
        {
            let account: Account = superapp_store::decode(Tree::Accounts, &v)?;
            let name = account.id.label();
            let mut prefix = account.id.key();
            prefix.push(0);
            let postings = self
                .store
                .scan(Tree::Postings, &prefix, None, usize::MAX, false)?;
            let mut sum: i64 = 0;
            for (i, (_, p)) in postings.iter().enumerate() {
                let p: Posting = superapp_store::decode(Tree::Postings, p)?;
                legs.entry(p.transfer.clone()).or_default().push((
                    account.id.clone(),
                    p.amount,
                    p.counterparty.clone(),
                ));
                sum += p.amount;
                if p.seq != i as u64 || p.balance_after != sum {
                    report.problems.push(format!(
                        "{name}: posting {i} does not follow from the ones before"
                    ));
                    break;
                }
            }
            if postings.len() as u64 != account.postings || sum != account.balance {
                report.problems.push(format!(
                    "{name}: the balance {} does not match its {} postings (sum {sum})",
                    account.balance,
                    postings.len()
                ));
            }
            let totals = report
                .currencies
                .entry(account.id.currency.clone())
                .or_default();
            totals.accounts += 1;
            if account.id.kind == AccountKind::Mint {
                totals.issued -= account.balance;
            } else {
                if account.balance < 0 {
                    report
                        .problems
                        .push(format!("{name}: negative balance {}", account.balance));
                }
                totals.held += account.balance;
            }
        }
        for (currency, totals) in &report.currencies {
            if totals.issued != totals.held {
                report.problems.push(format!(
                    "{currency}: accounts hold {} but the mint issued {}",
                    totals.held, totals.issued
                ));
            }
        }
        self.check_records(legs, &mut report)?;
        Ok(report)
    }

    /// The records beside the postings: each transfer has exactly its two
    /// legs (out of the payer, into the payee, for its amount), each
    /// posting a transfer, each idempotency key a transfer, and each
    /// top-up its key (without it, a retry would issue the money again).
    fn check_records(
        &self,
        mut legs: HashMap<String, Vec<(AccountRef, i64, AccountRef)>>,
        report: &mut CheckReport,
    ) -> Result<(), LedgerError> {
        let mut topups = std::collections::BTreeSet::new();
        let mut recorded = HashMap::new();
        for (_, v) in self
            .store
            .scan(Tree::Transfers, b"t\0", None, usize::MAX, false)?
        {
            let t: Transfer = superapp_store::decode(Tree::Transfers, &v)?;
            let amount = t.amount as i64;
            let mut expected = vec![
                (t.from.clone(), -amount, t.to.clone()),
                (t.to.clone(), amount, t.from.clone()),
            ];
            let mut found = legs.remove(&t.id).unwrap_or_default();
            expected.sort();
            found.sort();
            if t.currency != t.from.currency || t.currency != t.to.currency {
                report.problems.push(format!(
                    "transfer {}: in {} between accounts of {} and {}",
                    t.id, t.currency, t.from.currency, t.to.currency
                ));
            }
            if found != expected {
                report.problems.push(format!(
                    "transfer {}: its postings are not one out of {} and one into {} for {}",
                    t.id,
                    t.from.label(),
                    t.to.label(),
                    t.amount
                ));
            }
            if t.kind == TransferKind::Topup {
                topups.insert(t.id.clone());
            }
            recorded.insert(t.id.clone(), t);
        }
        for id in legs.keys() {
            report.problems.push(format!(
                "postings name transfer {id}, which is not recorded"
            ));
        }
        for (k, v) in self
            .store
            .scan(Tree::Transfers, b"k\0", None, usize::MAX, false)?
        {
            let used: KeyUse = superapp_store::decode(Tree::Transfers, &v)?;
            if !recorded.contains_key(&used.transfer) {
                report.problems.push(format!(
                    "idempotency key {} names transfer {}, which is not recorded",
                    String::from_utf8_lossy(&k[2..]).replace('\0', "/"),
                    used.transfer
                ));
            }
            topups.remove(&used.transfer);
        }
        for id in topups {
            report.problems.push(format!(
                "top-up {id} has no idempotency key: a retry of it would issue the money again"
            ));
        }
        self.check_audited(&recorded, report)
    }

    /// Top-ups and transfers between users against the audit log: each
    /// named by exactly one entry that says what it moved, and each such
    /// entry naming one (a transfer erased whole, its postings and balances
    /// too, leaves its entry, which the chain keeps).
    fn check_audited(
        &self,
        recorded: &HashMap<String, Transfer>,
        report: &mut CheckReport,
    ) -> Result<(), LedgerError> {
        // Transfers made before the log covered them are named once the
        // store has been opened by a host that records them.
        let covered = self.store.get::<bool>(Tree::Meta, AUDITED_KEY)?.is_some();
        let mut named = self.audited_transfers()?;
        let mut ids: Vec<&String> = recorded.keys().collect();
        ids.sort();
        for id in ids {
            let t = &recorded[id];
            if !is_audited(t.kind) {
                continue;
            }
            let Some(entries) = named.remove(id) else {
                if covered {
                    report
                        .problems
                        .push(format!("transfer {id} is not in the audit log"));
                }
                continue;
            };
            if entries.len() > 1 {
                let seqs: Vec<String> = entries.iter().map(|(seq, _)| seq.to_string()).collect();
                report.problems.push(format!(
                    "transfer {id} is named by {} audit entries ({})",
                    entries.len(),
                    seqs.join(", ")
                ));
            }
            let want = audited(t, "");
            for (seq, event) in &entries {
                let same = event.kind == want.kind
                    && event.user == want.user
                    && want
                        .details
                        .iter()
                        .all(|(k, v)| event.details.get(k) == Some(v));
                if !same {
                    report.problems.push(format!(
                        "audit entry {seq} does not say what transfer {id} moved"
                    ));
                }
            }
        }
        let mut left: Vec<(u64, String)> = named
            .into_iter()
            .flat_map(|(id, entries)| entries.into_iter().map(move |(seq, _)| (seq, id.clone())))
            .collect();
        left.sort();
        for (seq, id) in left {
            report.problems.push(match recorded.get(&id) {
                Some(t) => format!(
                    "audit entry {seq} names transfer {id}, which is a {}",
                    t.kind.name()
                ),
                None => format!("audit entry {seq} names transfer {id}, which is not recorded"),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let audit = Arc::new(crate::audit::Audit::open(store.clone()).unwrap());
        (dir, Ledger::new(store, audit))
    }

    fn pay(from: &str, to: &str, amount: u64, key: Option<&str>) -> TransferRequest {
        TransferRequest {
            kind: TransferKind::Transfer,
            from: AccountRef::user(from, "EUR"),
            to: AccountRef::user(to, "EUR"),
            amount,
            memo: "lunch".into(),
            order: None,
            idempotency: key.map(|k| (from.to_string(), k.to_string())),
        }
    }

    fn balance(l: &Ledger, user: &str) -> i64 {
        l.account(&AccountRef::user(user, "EUR"))
            .unwrap()
            .map_or(0, |a| a.balance)
    }

    #[test]
    fn a_transfer_writes_both_legs_and_never_overdraws() {
        let (_d, l) = ledger();
        l.topup("alice", 1000, "EUR", "t-alice", "test").unwrap();
        l.transfer(&pay("alice", "bob", 300, None)).unwrap();
        assert_eq!((balance(&l, "alice"), balance(&l, "bob")), (700, 300));
        let err = l.transfer(&pay("alice", "bob", 701, None)).unwrap_err();
        assert!(matches!(
            err,
            LedgerError::InsufficientFunds { balance: 700, .. }
        ));
        assert_eq!((balance(&l, "alice"), balance(&l, "bob")), (700, 300));
        assert!(matches!(
            l.transfer(&pay("carol", "bob", 1, None)),
            Err(LedgerError::InsufficientFunds { balance: 0, .. })
        ));
        let history = l
            .history(&AccountRef::user("alice", "EUR"), None, 10)
            .unwrap();
        assert_eq!(
            history.iter().map(|p| p.amount).collect::<Vec<_>>(),
            [-300, 1000]
        );
        assert_eq!(history[0].counterparty, AccountRef::user("bob", "EUR"));
        let older = l
            .history(&AccountRef::user("alice", "EUR"), Some(1), 10)
            .unwrap();
        assert_eq!(older.len(), 1);
        assert_eq!(older[0].seq, 0);
        let report = l.check().unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.currencies["EUR"].issued, 1000);
        assert_eq!(report.currencies["EUR"].held, 1000);
    }

    #[test]
    fn an_idempotency_key_pays_once_and_refuses_a_different_request() {
        let (_d, l) = ledger();
        l.topup("alice", 1000, "EUR", "t1", "test").unwrap();
        l.topup("alice", 1000, "EUR", "t1", "test").unwrap();
        assert_eq!(balance(&l, "alice"), 1000, "the retried top-up is one");
        let first = l.transfer(&pay("alice", "bob", 100, Some("k"))).unwrap();
        let again = l.transfer(&pay("alice", "bob", 100, Some("k"))).unwrap();
        assert_eq!(first, again);
        assert_eq!(balance(&l, "bob"), 100);
        assert_eq!(
            l.transfer(&pay("alice", "bob", 200, Some("k"))),
            Err(LedgerError::IdempotencyConflict)
        );
        assert_eq!(balance(&l, "bob"), 100);
    }

    #[test]
    fn bad_requests_are_refused_before_anything_is_written() {
        let (_d, l) = ledger();
        l.topup("alice", 10, "EUR", "t-alice", "test").unwrap();
        for (req, what) in [
            (pay("alice", "bob", 0, None), "zero"),
            (pay("alice", "bob", MAX_AMOUNT + 1, None), "too large"),
            (pay("alice", "alice", 1, None), "self"),
            (
                TransferRequest {
                    to: AccountRef::user("bob", "USD"),
                    ..pay("alice", "bob", 1, None)
                },
                "currency mismatch",
            ),
            (
                TransferRequest {
                    to: AccountRef::mint("EUR"),
                    ..pay("alice", "bob", 1, None)
                },
                "to the mint",
            ),
            (
                TransferRequest {
                    from: AccountRef::user("alice", "eur"),
                    to: AccountRef::user("bob", "eur"),
                    ..pay("alice", "bob", 1, None)
                },
                "lower-case currency",
            ),
            (
                TransferRequest {
                    from: AccountRef::user("alice", "JPY"),
                    to: AccountRef::user("bob", "JPY"),
                    ..pay("alice", "bob", 1, None)
                },
                "no decimals",
            ),
        ] {
            assert!(
                matches!(l.transfer(&req), Err(LedgerError::Invalid(_))),
                "{what}"
            );
        }
        assert!(l.check().unwrap().problems.is_empty());
        assert_eq!(balance(&l, "alice"), 10);
    }

    #[test]
    fn the_ledger_holds_iso_currencies_with_two_decimals() {
        for held in ["EUR", "USD", "GBP", "CHF", "SEK", "VED"] {
            assert_eq!(check_currency(held), Ok(()), "{held}");
        }
        for (refused, why) in [
            ("eur", "not a currency code"),
            ("EU", "not a currency code"),
            ("EURO", "not a currency code"),
            ("BTC", "not a currency code"),
            ("XXX", "not a currency the wallet holds"),
            ("XAU", "not a currency the wallet holds"),
            ("XTS", "not a currency the wallet holds"),
            ("BOV", "not a currency the wallet holds"),
            ("VES", "not a currency the wallet holds"),
            ("JPY", "not a currency the wallet holds"),
            ("KWD", "not a currency the wallet holds"),
        ] {
            match check_currency(refused) {
                Err(LedgerError::Invalid(message)) => {
                    assert!(message.contains(why), "{refused}: {message}")
                }
                other => panic!("{refused}: {other:?}"),
            }
        }
    }

    /// Records removed offline while every sum still agrees are found: a
    /// transfer's record, a top-up's idempotency key (a retry would issue
    /// the money again), a key whose transfer is gone.
    #[test]
    fn the_check_finds_records_removed_while_the_sums_agree() {
        let tampered = |remove: &dyn Fn(&Ledger, &Transfer, &Transfer), says: &str| {
            let (_d, l) = ledger();
            let topup = l.topup("alice", 100, "EUR", "t-alice", "test").unwrap();
            let lunch = l.transfer(&pay("alice", "bob", 30, Some("k1"))).unwrap();
            assert!(l.check().unwrap().problems.is_empty());
            remove(&l, &topup, &lunch);
            let problems = l.check().unwrap().problems;
            assert!(
                problems.iter().any(|p| p.contains(says)),
                "{says}: {problems:?}"
            );
        };
        let delete = |l: &Ledger, key: Vec<u8>| {
            l.store
                .transact(&[Tree::Transfers], |t| {
                    t.delete(Tree::Transfers, &key)?;
                    Ok::<_, Abort<()>>(())
                })
                .unwrap();
        };
        tampered(
            &|l, _, lunch| delete(l, transfer_key(&lunch.id)),
            "which is not recorded",
        );
        tampered(
            &|l, _, _| delete(l, idempotency_key("topup", "t-alice")),
            "has no idempotency key",
        );
        let rewrite = |l: &Ledger, changed: &Transfer| {
            l.store
                .transact(&[Tree::Transfers], |t| {
                    txn_put(t, Tree::Transfers, &transfer_key(&changed.id), changed)?;
                    Ok::<_, Abort<()>>(())
                })
                .unwrap();
        };
        tampered(
            &|l, topup, _| {
                rewrite(
                    l,
                    &Transfer {
                        amount: 1,
                        ..topup.clone()
                    },
                )
            },
            "its postings are not one out of mint mint EUR and one into user alice EUR for 1",
        );
        tampered(
            &|l, _, lunch| {
                rewrite(
                    l,
                    &Transfer {
                        currency: "USD".into(),
                        ..lunch.clone()
                    },
                )
            },
            "in USD between accounts of EUR and EUR",
        );
    }

    /// The ledger entries of the audit log, as (kind, user, outcome, details).
    fn ledger_entries(l: &Ledger) -> Vec<crate::audit::Event> {
        l.audit
            .entries(0, 1000)
            .unwrap()
            .into_iter()
            .map(|e| e.event)
            .filter(|e| e.kind.starts_with("ledger."))
            .collect()
    }

    /// A transfer written straight into the store, as an earlier version
    /// (or someone editing the store offline) would: no audit entry.
    fn unaudited(l: &Ledger, req: &TransferRequest) -> Transfer {
        l.store.transact(&TREES, |t| apply(t, req)).unwrap()
    }

    #[test]
    fn a_transfer_between_users_is_in_the_audit_log_once() {
        let (_d, l) = ledger();
        l.topup("alice", 100, "EUR", "t-alice", "test").unwrap();
        let lunch = l.transfer(&pay("alice", "bob", 30, Some("k1"))).unwrap();
        assert_eq!(
            l.transfer(&pay("alice", "bob", 30, Some("k1"))).unwrap(),
            lunch
        );
        let entries = ledger_entries(&l);
        assert_eq!(entries.len(), 2, "{entries:?}");
        let sent = &entries[1];
        assert_eq!(
            (
                sent.kind.as_str(),
                sent.user.as_deref(),
                sent.outcome.as_str()
            ),
            ("ledger.transfer", Some("alice"), "sent")
        );
        for (k, v) in [("amount", "30"), ("currency", "EUR"), ("to", "bob")] {
            assert_eq!(sent.details.get(k).map(String::as_str), Some(v), "{k}");
        }
        assert_eq!(sent.details["transfer"], lunch.id);
        // A refused transfer records nothing.
        assert!(l.transfer(&pay("alice", "bob", 500, None)).is_err());
        assert_eq!(ledger_entries(&l).len(), 2);
    }

    #[test]
    fn the_check_finds_a_transfer_erased_whole_or_made_beside_the_log() {
        let setup = || {
            let (d, l) = ledger();
            l.audit_earlier_transfers().unwrap();
            l.topup("alice", 100, "EUR", "t-alice", "test").unwrap();
            let lunch = l.transfer(&pay("alice", "bob", 30, Some("k1"))).unwrap();
            assert_eq!(l.check().unwrap().problems, Vec::<String>::new());
            (d, l, lunch)
        };
        // Erased with everything it wrote: its record, its key, both
        // postings, and both balances and posting counts put back.
        let (_d, l, lunch) = setup();
        l.store
            .transact(&TREES, |t| {
                t.delete(Tree::Transfers, &transfer_key(&lunch.id))?;
                t.delete(Tree::Transfers, &idempotency_key("alice", "k1"))?;
                for (who, balance) in [("alice", 100), ("bob", 0)] {
                    let id = AccountRef::user(who, "EUR");
                    let mut account: Account = txn_get(t, Tree::Accounts, &id.key())?.unwrap();
                    account.postings -= 1;
                    t.delete(Tree::Postings, &posting_key(&id, account.postings))?;
                    account.balance = balance;
                    if account.postings == 0 {
                        t.delete(Tree::Accounts, &id.key())?;
                    } else {
                        txn_put(t, Tree::Accounts, &id.key(), &account)?;
                    }
                }
                Ok::<_, Abort<()>>(())
            })
            .unwrap();
        let problems = l.check().unwrap().problems;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].ends_with(&format!(
                "names transfer {}, which is not recorded",
                lunch.id
            )),
            "{problems:?}"
        );
        // Made beside the log: balances and postings agree, no entry.
        let (_d, l, _) = setup();
        let forged = unaudited(&l, &pay("alice", "mallory", 70, None));
        let problems = l.check().unwrap().problems;
        assert_eq!(
            problems,
            vec![format!("transfer {} is not in the audit log", forged.id)]
        );
    }

    #[test]
    fn transfers_made_before_the_log_covered_them_are_recorded_once() {
        let (_d, l) = ledger();
        let mint = |amount| TransferRequest {
            kind: TransferKind::Topup,
            from: AccountRef::mint("EUR"),
            to: AccountRef::user("alice", "EUR"),
            amount,
            memo: "top-up".into(),
            order: None,
            idempotency: Some(("topup".into(), format!("old-{amount}"))),
        };
        let earlier = [
            unaudited(&l, &mint(100)),
            unaudited(&l, &pay("alice", "bob", 40, None)),
        ];
        // Not yet covered: nothing to hold them to.
        assert_eq!(l.check().unwrap().problems, Vec::<String>::new());
        assert_eq!(l.audit_earlier_transfers().unwrap(), 2);
        assert_eq!(l.audit_earlier_transfers().unwrap(), 0);
        let entries = ledger_entries(&l);
        assert_eq!(entries.len(), 2);
        for t in &earlier {
            let entry = entries
                .iter()
                .find(|e| e.details["transfer"] == t.id)
                .unwrap();
            assert_eq!(entry.outcome, "recorded");
            assert_eq!(entry.details["made_at"], t.at.to_string());
        }
        assert_eq!(l.check().unwrap().problems, Vec::<String>::new());
        // From now on one made beside the log is found.
        let forged = unaudited(&l, &pay("alice", "bob", 1, None));
        assert_eq!(
            l.check().unwrap().problems,
            vec![format!("transfer {} is not in the audit log", forged.id)]
        );
    }

    #[test]
    fn concurrent_transfers_keep_the_sum_and_no_balance_goes_negative() {
        let (_d, l) = ledger();
        let l = Arc::new(l);
        let users: Vec<String> = (0..8).map(|i| format!("u{i}")).collect();
        for u in &users {
            l.topup(u, 500, "EUR", &format!("t-{u}"), "test").unwrap();
        }
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (l, users) = (l.clone(), users.clone());
                std::thread::spawn(move || {
                    for i in 0..50usize {
                        let from = &users[(t + i) % users.len()];
                        let to = &users[(t * 3 + i * 7 + 1) % users.len()];
                        if from != to {
                            let _ = l.transfer(&pay(from, to, 1 + (i as u64 * 37) % 300, None));
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let report = l.check().unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let held: i64 = users.iter().map(|u| balance(&l, u)).sum();
        assert_eq!(held, 4000);
    }
}
