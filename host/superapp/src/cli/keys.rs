//! `superapp keys …`: signing keys of publishers and auditors, and the
//! rotation of the host's own.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use superapp_core::keys::SigningKey;
use superapp_services::audit::Audit;
use superapp_services::documents::HostKey;
use superapp_services::identity::Secrets;

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
    /// Replace the host's signing key (presentations, assertions to
    /// providers' backends, callbacks) with a new one: for a key that may
    /// have leaked. Run it on a stopped host's data directory, or on the
    /// hosts' shared store (each host then signs with the new key from its
    /// next start). The old public key is listed as retired at
    /// /api/v1/host-key and the rotation is in the audit log; providers'
    /// backends must be given the new key. Prints the new public key.
    RotateHostKey {
        /// A stopped host's data directory.
        #[arg(long, env = "SUPERAPP_DATA_DIR", required_unless_present = "store")]
        data_dir: Option<PathBuf>,
        /// The hosts' shared PostgreSQL store (a postgres:// URL).
        #[arg(
            long,
            env = "SUPERAPP_STORE",
            value_name = "URL",
            conflicts_with = "data_dir"
        )]
        store: Option<String>,
        /// Why, for the audit log.
        #[arg(long)]
        reason: String,
    },
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
        KeysCommand::RotateHostKey {
            data_dir,
            store,
            reason,
        } => rotate_host_key(data_dir.as_deref(), store, &reason)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn rotate_host_key(
    data_dir: Option<&Path>,
    url: Option<String>,
    reason: &str,
) -> anyhow::Result<()> {
    if reason.trim().is_empty() || reason.len() > 500 {
        anyhow::bail!("--reason is 1 to 500 bytes, for the audit log");
    }
    if reason.chars().any(superapp_core::text::disallowed_in_note) {
        anyhow::bail!(
            "--reason has control or text-direction characters (only line breaks and tabs)"
        );
    }
    let (store, dir) = match (url, data_dir) {
        (Some(url), _) => {
            // The URL may hold a password: the message never repeats it.
            let store = superapp_store::Store::connect(&url, 2)
                .map_err(|e| anyhow::anyhow!("cannot open the PostgreSQL store: {e}"))?;
            (store, PathBuf::new())
        }
        (None, Some(dir)) => (super::open_store(dir)?, dir.to_path_buf()),
        (None, None) => anyhow::bail!("give --data-dir or --store"),
    };
    let audit = Audit::open(store.clone())?;
    let secrets = Secrets::for_store(&dir, &store);
    let (old, new) = HostKey::rotate(&secrets, &audit, reason)?;
    store.close()?;
    eprintln!("retired the host signing key {old}");
    if store.shared() {
        eprintln!(
            "every host on this store signs with the new key from its next start: restart them"
        );
    }
    eprintln!("give providers' backends the new key (GET /api/v1/host-key)");
    println!("{new}");
    Ok(())
}
