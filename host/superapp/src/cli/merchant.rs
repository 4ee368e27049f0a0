//! `superapp merchant …`: a publisher's back office against a running
//! server. Requests are signed with the publisher's key; the operator may
//! act for a publisher with its token and `--publisher`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use superapp_core::keys::SigningKey;

use super::target::{Credential, Remote};

#[derive(Debug, Subcommand)]
pub enum MerchantCommand {
    /// The publisher's merchant balances, one per currency.
    Balance {
        #[command(flatten)]
        on: MerchantArgs,
    },
    /// One order paid to the publisher, as JSON.
    Order {
        /// The order id (from the app, or the payment's receipt).
        #[arg(allow_hyphen_values = true)]
        order: String,
        #[command(flatten)]
        on: MerchantArgs,
    },
    /// Refund part or all of an order paid to the publisher. The user sees
    /// the money back in their wallet, and the app sees it in the order's
    /// status.
    Refund {
        #[arg(allow_hyphen_values = true)]
        order: String,
        /// The amount in minor units (cents); refunds of one order never
        /// add up to more than was paid.
        #[arg(long)]
        amount: u64,
        /// Names this refund: running the command again with the same key
        /// and amount refunds nothing more.
        #[arg(long)]
        idempotency_key: String,
        #[command(flatten)]
        on: MerchantArgs,
    },
}

#[derive(Debug, Args)]
pub struct MerchantArgs {
    /// The running server's base URL, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "SUPERAPP_SERVER")]
    server: String,
    /// The publisher's key (from `superapp keys generate`), registered with
    /// the server.
    #[arg(long, required_unless_present = "token_file")]
    key: Option<PathBuf>,
    /// Act as the operator with this token file instead (needs --publisher).
    #[arg(long, conflicts_with = "key", requires = "publisher")]
    token_file: Option<PathBuf>,
    /// The publisher the operator acts for; with a key that several
    /// publishers share (a demo's development key), the one to act as.
    #[arg(long)]
    publisher: Option<String>,
}

impl MerchantArgs {
    fn remote(&self) -> anyhow::Result<Remote> {
        let credential = match (&self.key, &self.token_file) {
            (Some(key), _) => Credential::Key(SigningKey::load(key)?),
            (None, Some(file)) => Credential::Token(
                superapp_core::files::read_text_at_most(file, super::TOKEN_LIMIT)
                    .with_context(|| format!("cannot read the token file {}", file.display()))?
                    .trim()
                    .to_string(),
            ),
            (None, None) => bail!("give --key (the publisher's) or --token-file and --publisher"),
        };
        Remote::new(&self.server, credential)
    }

    /// `path` with the operator's `?publisher=` when acting for one.
    fn path(&self, path: &str) -> String {
        match &self.publisher {
            Some(p) => format!("{path}?publisher={}", encode(p)),
            None => path.to_string(),
        }
    }
}

/// Percent-encode a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn run(cmd: MerchantCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        MerchantCommand::Balance { on } => {
            let answer: Value =
                on.remote()?
                    .json(reqwest::Method::GET, &on.path("/merchant/accounts"), None)?;
            println!("{}", answer["publisher"].as_str().unwrap_or_default());
            for a in answer["accounts"].as_array().into_iter().flatten() {
                println!(
                    "{} {}",
                    a["currency"].as_str().unwrap_or_default(),
                    superapp_core::money::amount(a["balance"].as_i64().unwrap_or_default())
                );
            }
        }
        MerchantCommand::Order { order, on } => {
            let path = on.path(&format!("/merchant/orders/{}", encode(&order)));
            let answer: Value = on.remote()?.json(reqwest::Method::GET, &path, None)?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
        MerchantCommand::Refund {
            order,
            amount,
            idempotency_key,
            on,
        } => {
            let path = on.path(&format!("/merchant/orders/{}/refund", encode(&order)));
            let answer: Value = on.remote()?.json(
                reqwest::Method::POST,
                &path,
                Some(json!({ "amount": amount, "idempotency_key": idempotency_key })),
            )?;
            println!(
                "refund {idempotency_key} of {} on order {order} done; {} refunded in all",
                superapp_core::money::amount(amount as i64),
                superapp_core::money::amount(answer["refunded"].as_i64().unwrap_or_default())
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
