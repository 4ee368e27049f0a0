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
use superapp_server::host::{BackupManifest, BACKUP_FORMAT, FILES, MANIFEST, RESTORING, SNAPSHOT};
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
    let token = superapp_core::files::read_text_at_most(&args.token_file, super::TOKEN_LIMIT)
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
    check_whole(partial.path(), &manifest)?;
    partial
        .persist_noclobber(&args.out)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {}", args.out.display(), e.error))?;
    let entries: u64 = manifest.entries.values().sum();
    println!(
        "wrote {}: {entries} records ({} bytes, sha256 {}) and {} key files, from a server of superapp {}",
        args.out.display(),
        manifest.store_bytes,
        manifest.store_sha256,
        manifest.files.len(),
        manifest.host_version
    );
    Ok(ExitCode::SUCCESS)
}

/// Whether the downloaded `archive` is whole: its store snapshot of the
/// size and SHA-256 its manifest names, and every file the manifest lists.
/// A download cut short is never reported as a backup.
fn check_whole(archive: &Path, manifest: &BackupManifest) -> anyhow::Result<()> {
    let file = std::fs::File::open(archive)
        .with_context(|| format!("cannot read {}", archive.display()))?;
    let mut tar = tar::Archive::new(file);
    let mut snapshot = None;
    let mut files = std::collections::BTreeSet::new();
    let damaged = "the downloaded backup is damaged or cut short; nothing was written";
    for entry in tar.entries().context(damaged)? {
        let mut entry = entry.context(damaged)?;
        let path = entry.path().context(damaged)?.into_owned();
        if path == Path::new(SNAPSHOT) {
            snapshot = Some(superapp_store::check_snapshot(&mut entry).context(damaged)?);
        } else if let Ok(rel) = path.strip_prefix(FILES) {
            files.insert(rel.to_string_lossy().into_owned());
        }
    }
    match snapshot {
        Some(s) if s.bytes == manifest.store_bytes && s.sha256 == manifest.store_sha256 => {}
        _ => bail!("{damaged} (the store snapshot is not the one its manifest names)"),
    }
    if let Some(missing) = manifest.files.iter().find(|f| !files.contains(*f)) {
        bail!("{damaged} (it lacks {missing:?})");
    }
    Ok(())
}

fn read_manifest(archive: &Path) -> anyhow::Result<BackupManifest> {
    let file = std::fs::File::open(archive)
        .with_context(|| format!("cannot read {}", archive.display()))?;
    let mut tar = tar::Archive::new(file);
    let mut entries = tar.entries()?;
    let mut first = entries
        .next()
        .context("the archive is empty")?
        // tar's error quotes the bytes it could not read: name the file.
        .map_err(|_| {
            anyhow::anyhow!(
                "{} is not a superapp backup: it is not a tar archive",
                archive.display()
            )
        })?;
    if first.path()?.as_ref() != Path::new(MANIFEST) {
        bail!("not a superapp backup: it does not start with {MANIFEST}");
    }
    // The manifest is a few hundred bytes; read no more than a megabyte.
    let mut text = String::new();
    (&mut first).take(1 << 20).read_to_string(&mut text)?;
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
    // Until the marker goes, last, no host starts on the directory: an
    // interrupted restore leaves nothing a server would run on (with key
    // files missing, it would make new ones). The copy is unpacked and
    // checked in a folder inside it (the directory may be a mount point,
    // its parent not writable), then moved up.
    let marker = dir.join(RESTORING);
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&marker)
        .and_then(|f| f.sync_all())
        .and_then(|()| sync_dir(dir))
        .with_context(|| format!("cannot write in {}", dir.display()))
        .and_then(|()| unpack_into(&args.from, dir));
    let report = match result {
        Ok(report) => report,
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
            return Err(e);
        }
    };
    std::fs::remove_file(&marker)
        .and_then(|()| sync_dir(dir))
        .with_context(|| format!("cannot finish the restore in {}", dir.display()))?;
    println!(
        "restored {} records and {} key files into {}",
        report.records,
        report.files,
        dir.display()
    );
    println!(
        "audit log: {} entries, the chain verifies",
        report.audit_entries
    );
    println!("ledger: ok, it balances");
    Ok(ExitCode::SUCCESS)
}

/// Unpack and check `archive` in a folder inside `dir`, then move what it
/// holds up into `dir`.
fn unpack_into(archive: &Path, dir: &Path) -> anyhow::Result<Restored> {
    let staging = tempfile::Builder::new()
        .prefix(".superapp-restore-")
        .tempdir_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    let report = unpack(archive, staging.path())?;
    sync_dir(staging.path())?;
    for entry in std::fs::read_dir(staging.path())? {
        let entry = entry?;
        let target = dir.join(entry.file_name());
        std::fs::rename(entry.path(), &target)
            .with_context(|| format!("cannot move the restored copy to {}", target.display()))?;
    }
    sync_dir(dir)?;
    Ok(report)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// What a restore brought back, once it holds together.
struct Restored {
    records: u64,
    files: usize,
    audit_entries: u64,
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

fn unpack(archive: &Path, dir: &Path) -> anyhow::Result<Restored> {
    let manifest = read_manifest(archive)?;
    let file = std::fs::File::open(archive)
        .with_context(|| format!("cannot read {}", archive.display()))?;
    let mut tar = tar::Archive::new(file);
    let store = Store::open(&dir.join("store"))?;
    let mut restored = None;
    let mut files = std::collections::BTreeSet::new();
    for entry in tar.entries()? {
        let mut entry = entry.context("the archive is damaged")?;
        let path = entry.path()?.into_owned();
        if path == Path::new(MANIFEST) {
            continue;
        }
        if path == Path::new(SNAPSHOT) {
            if restored.is_some() {
                bail!("the archive holds two store snapshots");
            }
            let info = store.restore(&mut entry)?;
            if info.sha256 != manifest.store_sha256 {
                bail!("the store snapshot does not match the archive's manifest");
            }
            restored = Some(info);
            continue;
        }
        let rel = safe(path.strip_prefix(FILES).with_context(|| {
            format!(
                "unexpected entry {:?} in the archive",
                path.display().to_string()
            )
        })?)?;
        if !superapp_server::host::restorable(rel) {
            bail!(
                "the archive holds {:?}, which no backup carries (the host makes it itself)",
                rel.display().to_string()
            );
        }
        if !manifest.files.iter().any(|f| Path::new(f) == rel) {
            bail!(
                "the archive holds {:?}, which its manifest does not list",
                rel.display().to_string()
            );
        }
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
        out.sync_all()?;
        files.insert(rel.to_path_buf());
    }
    let info = restored.context("the archive holds no store snapshot")?;
    if let Some(missing) = manifest
        .files
        .iter()
        .find(|f| !files.contains(Path::new(f.as_str())))
    {
        bail!("the archive lacks {missing:?}, which its manifest lists");
    }
    // The host's keys are whole and the ones its records were made with.
    let secrets = superapp_services::identity::Secrets::for_store(dir, &store);
    secrets.host_secret()?;
    superapp_services::documents::HostKey::load_or_create(&secrets)?;
    let token = dir.join(superapp_server::host::OPERATOR_TOKEN);
    if std::fs::read_to_string(&token).is_ok_and(|t| t.trim().is_empty()) {
        bail!(
            "the archive's {} is empty",
            superapp_server::host::OPERATOR_TOKEN
        );
    }
    // The restored copy must hold together before it is declared good.
    let chain = audit::verify(&store, None);
    let audit = std::sync::Arc::new(Audit::open(store.clone())?);
    let ledger = Ledger::new(store.clone(), audit).check()?;
    store.close()?;
    let mut problems = Vec::new();
    let audit_entries = match chain {
        Ok(head) => head.seq,
        Err(e) => {
            problems.push(format!("the audit chain does not verify: {e}"));
            0
        }
    };
    problems.extend(ledger.problems.iter().map(|p| format!("ledger: {p}")));
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("error: {p}");
        }
        // A copy that does not hold together is not left to be served.
        bail!("the restored copy does not hold together (see above); nothing was restored");
    }
    Ok(Restored {
        records: info.entries.values().sum(),
        files: files.len(),
        audit_entries,
    })
}
