//! `superapp audit …`: the auditor's tools.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use superapp_services::audit::{verify, ChainError};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Inspect a package: app identity, publisher and signature validity,
    /// digests, sizes, limits, each declared capability with its reason and
    /// consent level, the component's real imports, and discrepancies
    /// (declared but unused: warning; used but undeclared: error). Exits 1
    /// when it finds an error.
    Inspect {
        /// A package file (from `superapp plugin pack`).
        file: PathBuf,
        /// Print the report as JSON (stable field names).
        #[arg(long)]
        json: bool,
    },
    /// Compare two versions of one app: capabilities and limits added or
    /// removed, changed reasons, changed imports; escalations (anything the
    /// new version asks for that the old one did not) are marked.
    Diff {
        old: PathBuf,
        new: PathBuf,
        /// Print the comparison as JSON (stable field names).
        #[arg(long)]
        json: bool,
    },
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
        AuditCommand::Inspect { file, json } => super::package::run_inspect(&file, json),
        AuditCommand::Diff { old, new, json } => super::package::run_diff(&old, &new, json),
        AuditCommand::VerifyLog { data_dir } => {
            let store = super::open_store(&data_dir)?;
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
