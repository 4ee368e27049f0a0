//! `superapp backup` and `superapp restore`: a consistent copy of a running
//! server's data (its store at one instant, and its keys), and bringing one
//! back into a new data directory, checked before it is declared good.

use std::io::{Read, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Args;

use super::target::{Credential, Remote};
use superapp_server::host::{BackupManifest, BACKUP_FORMAT, FILES, MANIFEST, SNAPSHOT};
use superapp_services::audit::{self, Audit};
use superapp_services::ledger::Ledger;
use superapp_store::Store;

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The running server's base URL, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "SUPERAPP_SERVER")]
    pub server: String,
    /// The operator token file (DATA_DIR/operator.token on the server).
    #[arg(long, env = "SUPERAPP_OPERATOR_TOKEN_FILE")]
    pub token_file: PathBuf,
    /// Where to write the archive; an existing file is never replaced. It
    /// holds the host's keys: keep it as safe as the data directory.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The archive `superapp backup` wrote.
    #[arg(long)]
    pub from: PathBuf,
    /// A new data directory (absent or empty) to restore into.
    #[arg(long)]
    pub data_dir: PathBuf,
}

pub fn backup(args: BackupArgs) -> anyhow::Result<ExitCode> {
    if args.out.exists() {
        bail!("{} exists; choose a new file", args.out.display());
    }
    let token = std::fs::read_to_string(&args.token_file)
        .with_context(|| format!("cannot read the token file {}", args.token_file.display()))?;
    let remote = Remote::new(&args.server, Credential::Token(token.trim().to_string()))?;
    // Written beside the target and renamed when complete: never a
    // half-written archive under the name asked for.
    let dir = args
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut partial = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    remote.download("/operator/backup", partial.as_file_mut())?;
    partial.as_file_mut().sync_all()?;
    let manifest = read_manifest(partial.path())?;
    partial
        .persist_noclobber(&args.out)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {}", args.out.display(), e.error))?;
    let entries: u64 = manifest.entries.values().sum();
    println!(
        "wrote {}: {entries} records ({} bytes, sha256 {}) and {} key files",
        args.out.display(),
        manifest.store_bytes,
        manifest.store_sha256,
        manifest.files.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn read_manifest(archive: &Path) -> anyhow::Result<BackupManifest> {
    let file = std::fs::File::open(archive)
        .with_context(|| format!("cannot read {}", archive.display()))?;
    let mut tar = tar::Archive::new(file);
    let mut entries = tar.entries()?;
    let mut first = entries
        .next()
        .context("the archive is empty")?
        .context("the archive is unreadable")?;
    if first.path()?.as_ref() != Path::new(MANIFEST) {
        bail!("not a superapp backup: it does not start with {MANIFEST}");
    }
    let mut text = String::new();
    first.read_to_string(&mut text)?;
    let manifest: BackupManifest =
        serde_json::from_str(&text).with_context(|| format!("{MANIFEST} is unreadable"))?;
    if manifest.format > BACKUP_FORMAT {
        bail!(
            "this backup has format {}, newer than this superapp understands ({BACKUP_FORMAT}); use a newer superapp",
            manifest.format
        );
    }
    Ok(manifest)
}

pub fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.data_dir;
    let created = match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} is not empty; restore into a new data directory",
                    dir.display()
                );
            }
            false
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            true
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    match unpack(&args.from, dir) {
        Ok(report) => Ok(report),
        Err(e) => {
            // Nothing half-restored is left behind.
            if created {
                let _ = std::fs::remove_dir_all(dir);
            } else if let Ok(entries) = std::fs::read_dir(dir) {
                for entry in entries.flatten() {
                    let _ = std::fs::remove_dir_all(entry.path())
                        .or_else(|_| std::fs::remove_file(entry.path()));
                }
            }
            Err(e)
        }
    }
}

/// A path inside the archive that stays inside the data directory.
fn safe(rel: &Path) -> anyhow::Result<&Path> {
    if rel.as_os_str().is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        bail!(
            "the archive names a path outside the data directory: {}",
            rel.display()
        );
    }
    Ok(rel)
}

fn unpack(archive: &Path, dir: &Path) -> anyhow::Result<ExitCode> {
    let manifest = read_manifest(archive)?;
    let file = std::fs::File::open(archive)
        .with_context(|| format!("cannot read {}", archive.display()))?;
    let mut tar = tar::Archive::new(file);
    let store = Store::open(&dir.join("store"))?;
    let mut restored = None;
    for entry in tar.entries()? {
        let mut entry = entry.context("the archive is damaged")?;
        let path = entry.path()?.into_owned();
        if path == Path::new(MANIFEST) {
            continue;
        }
        if path == Path::new(SNAPSHOT) {
            let info = store.restore(&mut entry)?;
            if info.sha256 != manifest.store_sha256 {
                bail!("the store snapshot does not match the archive's manifest");
            }
            restored = Some(info);
            continue;
        }
        let rel = safe(
            path.strip_prefix(FILES)
                .with_context(|| format!("unexpected entry {} in the archive", path.display()))?,
        )?;
        let target = dir.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)?;
        }
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&target)
            .with_context(|| format!("cannot write {}", target.display()))?;
        std::io::copy(&mut entry, &mut out)?;
        out.flush()?;
    }
    let info = restored.context("the archive holds no store snapshot")?;
    // The restored copy must hold together before it is declared good.
    let chain = audit::verify(&store, None);
    let audit = std::sync::Arc::new(Audit::open(store.clone())?);
    let ledger = Ledger::new(store.clone(), audit).check()?;
    store.close()?;
    let records: u64 = info.entries.values().sum();
    println!(
        "restored {records} records and {} key files into {}",
        manifest.files.len(),
        dir.display()
    );
    let mut good = true;
    match chain {
        Ok(head) => println!("audit log: {} entries, the chain verifies", head.seq),
        Err(e) => {
            good = false;
            eprintln!("error: the audit chain does not verify: {e}");
        }
    }
    if ledger.problems.is_empty() {
        println!("ledger: ok, it balances");
    } else {
        good = false;
        for p in &ledger.problems {
            eprintln!("error: ledger: {p}");
        }
    }
    if !good {
        // A copy that does not hold together is not left to be served.
        bail!("the restored copy does not hold together (see above); it was removed");
    }
    Ok(ExitCode::SUCCESS)
}
