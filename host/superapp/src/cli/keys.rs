//! `superapp keys …`: signing keys of publishers and auditors.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use superapp_core::keys::SigningKey;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate an Ed25519 signing key: PKCS#8 PEM in a new file only you
    /// can read (mode 0600; an existing file is never overwritten). Prints
    /// the public key, which names the key to the host's operator.
    Generate {
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the public key of a key file.
    Public { key: PathBuf },
}

pub fn run(cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KeysCommand::Generate { out } => {
            let key = SigningKey::generate()?;
            key.write_new(&out)?;
            eprintln!("wrote {}", out.display());
            println!("{}", key.public_key());
        }
        KeysCommand::Public { key } => println!("{}", SigningKey::load(&key)?.public_key()),
    }
    Ok(ExitCode::SUCCESS)
}
