//! Backups of a running host: a consistent snapshot of the store (writes
//! wait while it is taken, reads and requests in flight do not) and the
//! data directory's keys, in one tar archive. `superapp restore` unpacks it
//! into a new data directory and checks the audit chain and the ledger.

use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Host, HostError};

/// The archive's table of contents, `backup.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupManifest {
    /// The archive format.
    pub format: u32,
    pub created_at: u64,
    /// The host version that wrote it.
    pub host_version: String,
    /// Entries per store tree.
    pub entries: std::collections::BTreeMap<String, u64>,
    /// Hex SHA-256 of `store.snapshot`.
    pub store_sha256: String,
    pub store_bytes: u64,
    /// The data directory's files, relative paths (keys and tokens).
    pub files: Vec<String>,
}

pub const BACKUP_FORMAT: u32 = 1;
pub const MANIFEST: &str = "backup.json";
pub const SNAPSHOT: &str = "store.snapshot";
/// Where the data directory's files go inside the archive.
pub const FILES: &str = "files";
/// In a data directory while a restore fills it: a host does not start on
/// one (with some key files still missing, it would make new ones).
pub const RESTORING: &str = ".restore-incomplete";

/// What a backup leaves out: the store (it is in the snapshot), and what
/// the host rebuilds by itself (precompiled components, built demo apps).
const SKIP: [&str; 3] = ["store", "cache", "demo-apps"];

/// Whether `rel`, a file an archive lists, is one a backup carries: never
/// what the host rebuilds or keeps itself (above all its precompiled native
/// code, which it would load), nor the restore's own marker.
pub fn restorable(rel: &Path) -> bool {
    let top = rel.components().next().map(|c| c.as_os_str());
    !top.is_some_and(|top| SKIP.iter().any(|s| top == *s) || top == RESTORING)
}

/// Regular files under `dir`, relative, skipping [`SKIP`] at the top.
fn data_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        for entry in std::fs::read_dir(dir.join(&rel))? {
            let entry = entry?;
            let name = entry.file_name();
            if rel.as_os_str().is_empty() && SKIP.iter().any(|s| name == *s) {
                continue;
            }
            let kind = entry.file_type()?;
            let path = rel.join(&name);
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() && !name.to_string_lossy().starts_with(".tmp") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

impl Host {
    /// Write a backup archive to `out`. The store is snapshotted into a
    /// temporary file first (writes wait only for that), then archived.
    pub fn backup(&self, out: impl Write) -> Result<BackupManifest, HostError> {
        let io = |e: std::io::Error| HostError::Invalid(format!("cannot write the backup: {e}"));
        let mut snapshot = tempfile::tempfile_in(&self.data_dir).map_err(io)?;
        let info = self.store.snapshot(&mut snapshot)?;
        snapshot.rewind().map_err(io)?;
        let files = data_files(&self.data_dir).map_err(io)?;
        let manifest = BackupManifest {
            format: BACKUP_FORMAT,
            created_at: superapp_core::now_secs(),
            host_version: crate::VERSION.to_string(),
            entries: info.entries,
            store_sha256: info.sha256,
            store_bytes: info.bytes,
            files: files
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect(),
        };
        let mut tar = tar::Builder::new(out);
        tar.mode(tar::HeaderMode::Deterministic);
        let json = serde_json::to_vec_pretty(&manifest).expect("manifests serialize");
        let mut header = tar::Header::new_ustar();
        header.set_size(json.len() as u64);
        header.set_mode(0o600);
        tar.append_data(&mut header, MANIFEST, json.as_slice())
            .map_err(io)?;
        let mut header = tar::Header::new_ustar();
        header.set_size(info.bytes);
        header.set_mode(0o600);
        tar.append_data(&mut header, SNAPSHOT, &mut snapshot)
            .map_err(io)?;
        for rel in &files {
            let mut file = std::fs::File::open(self.data_dir.join(rel)).map_err(io)?;
            let len = file.metadata().map_err(io)?.len();
            let mut header = tar::Header::new_ustar();
            header.set_size(len);
            // Keys and tokens: readable by their owner only, restored so.
            header.set_mode(0o600);
            tar.append_data(&mut header, Path::new(FILES).join(rel), &mut file)
                .map_err(io)?;
        }
        tar.into_inner().and_then(|mut w| w.flush()).map_err(io)?;
        Ok(manifest)
    }
}
