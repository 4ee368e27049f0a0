//! `superapp wallet …`: the operator's ledger tools. They open the data
//! directory of a stopped server (a running server holds the store locked).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;

use superapp_services::identity::find_user;
use superapp_services::ledger::Ledger;

#[derive(Debug, Subcommand)]
pub enum WalletCommand {
    /// Issue money from the mint into a user's wallet: the only way money
    /// enters the ledger.
    Topup {
        /// The user's username.
        user: String,
        /// The amount in minor units (cents): 1250 is 12.50.
        amount: u64,
        /// ISO 4217 currency code.
        #[arg(long, default_value = "EUR")]
        currency: String,
        /// Makes a retried top-up (same key, same request) issue nothing twice.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// The server's data directory.
        #[arg(long, env = "SUPERAPP_DATA_DIR", default_value = "./superapp-data")]
        data_dir: PathBuf,
    },
    /// Check the ledger end to end: every balance equals its postings, no
    /// user or merchant balance is negative, and per currency the balances
    /// sum to what the mint issued. Exits 1 if anything is wrong.
    Check {
        /// The server's data directory.
        #[arg(long, env = "SUPERAPP_DATA_DIR", default_value = "./superapp-data")]
        data_dir: PathBuf,
    },
}

pub fn run(cmd: WalletCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        WalletCommand::Topup {
            user,
            amount,
            currency,
            idempotency_key,
            data_dir,
        } => {
            let store = super::open_store(&data_dir)?;
            let account = find_user(&store, &user)?
                .with_context(|| format!("no user `{user}` in {}", data_dir.display()))?;
            let ledger = Ledger::new(store.clone());
            let transfer = ledger.topup(&account.id, amount, &currency, idempotency_key)?;
            let balance = ledger.account(&transfer.to)?.map_or(0, |a| a.balance);
            store.close()?;
            println!(
                "topped up {user} by {amount} {currency} (transfer {}); balance {balance} {currency}",
                transfer.id
            );
            Ok(ExitCode::SUCCESS)
        }
        WalletCommand::Check { data_dir } => {
            let store = super::open_store(&data_dir)?;
            let report = Ledger::new(store).check()?;
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
