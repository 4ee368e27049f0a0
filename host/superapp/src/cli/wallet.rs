//! `superapp wallet …`: the operator's ledger tools, on a running server
//! (`--server`, with the operator token) or a stopped server's data
//! directory (`--data-dir`).

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use serde::Deserialize;
use serde_json::json;

use super::target::{Target, TargetArgs};
use superapp_services::identity::find_user;
use superapp_services::ledger::{AccountRef, Ledger};

#[derive(Debug, Subcommand)]
pub enum WalletCommand {
    /// Issue money from the mint into a user's wallet: the only way money
    /// enters the ledger. Recorded in the audit log.
    Topup {
        /// The user's username.
        user: String,
        /// The amount in minor units (cents): 1250 is 12.50.
        amount: u64,
        /// ISO 4217 code of a currency with two decimals (EUR, USD, GBP, …).
        #[arg(long, default_value = "EUR")]
        currency: String,
        /// Required: a retried top-up with the same key and request issues
        /// nothing twice (the same key with another request is refused).
        #[arg(long)]
        idempotency_key: String,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Check the ledger end to end: every balance equals its postings, no
    /// user or merchant balance is negative, and per currency the balances
    /// sum to what the mint issued. Exits 1 if anything is wrong.
    Check {
        #[command(flatten)]
        target: TargetArgs,
    },
}

/// What the server answers to a check (`GET /api/v1/operator/ledger`).
#[derive(Deserialize)]
struct RemoteCheck {
    currencies: std::collections::BTreeMap<String, Totals>,
    problems: Vec<String>,
}

#[derive(Deserialize)]
struct Totals {
    issued: i64,
    held: i64,
    accounts: u64,
}

#[derive(Deserialize)]
struct RemoteTopup {
    transfer: Transfer,
    balance: i64,
}

#[derive(Deserialize)]
struct Transfer {
    id: String,
}

pub fn run(cmd: WalletCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        WalletCommand::Topup {
            user,
            amount,
            currency,
            idempotency_key,
            target,
        } => {
            let (transfer, balance) = match target.open(None)? {
                Target::Remote(remote) => {
                    let done: RemoteTopup = remote.json(
                        reqwest::Method::POST,
                        "/operator/topups",
                        Some(json!({
                            "user": user,
                            "amount": amount,
                            "currency": currency,
                            "idempotency_key": idempotency_key,
                        })),
                    )?;
                    (done.transfer.id, done.balance)
                }
                Target::Local(local) => {
                    let account = find_user(&local.store, &user)?
                        .with_context(|| format!("no user `{user}` in this data directory"))?;
                    let ledger = Ledger::new(local.store.clone(), local.audit.clone());
                    let transfer = ledger.topup(
                        &account.id,
                        amount,
                        &currency,
                        &idempotency_key,
                        "operator",
                    )?;
                    let balance = ledger
                        .account(&AccountRef::user(&account.id, &currency))?
                        .map_or(0, |a| a.balance);
                    local.store.close()?;
                    (transfer.id, balance)
                }
            };
            let money = |minor: i64| superapp_core::money::format(minor, &currency);
            println!(
                "topped up {user} by {} (transfer {transfer}); balance {}",
                money(amount as i64),
                money(balance)
            );
            Ok(ExitCode::SUCCESS)
        }
        WalletCommand::Check { target } => {
            let report = match target.open(None)? {
                Target::Remote(remote) => {
                    let r: RemoteCheck =
                        remote.json(reqwest::Method::GET, "/operator/ledger", None)?;
                    r
                }
                Target::Local(local) => {
                    let report = Ledger::new(local.store.clone(), local.audit.clone()).check()?;
                    RemoteCheck {
                        currencies: report
                            .currencies
                            .into_iter()
                            .map(|(c, t)| {
                                (
                                    c,
                                    Totals {
                                        issued: t.issued,
                                        held: t.held,
                                        accounts: t.accounts,
                                    },
                                )
                            })
                            .collect(),
                        problems: report.problems,
                    }
                }
            };
            for (currency, t) in &report.currencies {
                println!(
                    "{currency}: issued {}, held {} across {} accounts",
                    t.issued, t.held, t.accounts
                );
            }
            if report.problems.is_empty() {
                println!("ok: the ledger balances");
                Ok(ExitCode::SUCCESS)
            } else {
                for p in &report.problems {
                    eprintln!("error: {p}");
                }
                Ok(ExitCode::FAILURE)
            }
        }
    }
}
