//! `superapp audit …`: the auditor's tools.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;

use crate::audit::{verify, ChainError};
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of the audit log end to end and name the first
    /// broken entry. Run it against a stopped server's data directory (the
    /// store is locked while the server runs).
    VerifyLog {
        /// The server's data directory.
        #[arg(long, env = "SUPERAPP_DATA_DIR", default_value = "./superapp-data")]
        data_dir: PathBuf,
    },
}

pub fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::VerifyLog { data_dir } => {
            let path = data_dir.join("store");
            if !path.exists() {
                anyhow::bail!(
                    "{} has no store (is it a superapp data directory?)",
                    data_dir.display()
                );
            }
            let store = Store::open(&path).with_context(|| {
                format!(
                    "cannot open the store in {} (a running server holds it locked)",
                    data_dir.display()
                )
            })?;
            match verify(&store) {
                Ok(count) => {
                    println!("ok: the audit log's {count} entries form an unbroken chain");
                    Ok(ExitCode::SUCCESS)
                }
                Err(ChainError::Broken { seq, reason }) => {
                    eprintln!("error: the audit log is broken at entry {seq}: {reason}");
                    Ok(ExitCode::FAILURE)
                }
                Err(ChainError::Store(e)) => Err(e.into()),
            }
        }
    }
}
