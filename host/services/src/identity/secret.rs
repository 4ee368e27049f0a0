//! The host's private files: the host secret (32 random bytes generated on
//! first start; it keys the per-app pseudonymous user ids, so it must never
//! change or leak), the host's signing key, the operator's token and the
//! development keys.
//!
//! One host keeps them in its data directory, readable only by the host's
//! user (mode 0600). Host processes sharing one store keep them in that
//! store instead ([`Secrets::for_store`]), created once by whichever
//! process starts first: every node must derive the same pseudonyms, sign
//! with the same key and accept the same operator token, and a node's data
//! directory then holds nothing a replacement node would miss.

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _};
use ring::rand::{SecureRandom, SystemRandom};
use superapp_store::{Abort, Store, StoreError, Tree, Txn};

const SECRET_LEN: usize = 32;
pub const SECRET_FILE: &str = "host-secret";

/// Where the host's private files live; see the module's doc.
#[derive(Clone)]
pub struct Secrets {
    dir: PathBuf,
    /// The host's store: where the files live when it is shared; a single
    /// host's may hold those of a shared store it was restored from.
    store: Option<Arc<Store>>,
}

impl Secrets {
    /// Files in `dir`, for one host (and for offline tools).
    pub fn in_dir(dir: &Path) -> Secrets {
        Secrets {
            dir: dir.to_path_buf(),
            store: None,
        }
    }

    /// The files of a host on `store`: in the store when it is shared
    /// between host processes, in `dir` otherwise.
    pub fn for_store(dir: &Path, store: &Arc<Store>) -> Secrets {
        Secrets {
            dir: dir.to_path_buf(),
            store: Some(store.clone()),
        }
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The host's store, when these are a host's files.
    pub fn store(&self) -> Option<&Arc<Store>> {
        self.store.as_ref()
    }

    /// Whether the files live in a shared store.
    pub fn shared(&self) -> bool {
        self.shared_store().is_some()
    }

    fn shared_store(&self) -> Option<&Arc<Store>> {
        self.store.as_ref().filter(|s| s.shared())
    }

    /// Where `file` is kept, for messages.
    pub fn describe(&self, file: &str) -> String {
        match self.shared_store() {
            Some(_) => format!("{file} (in the shared store)"),
            None => self.dir.join(file).display().to_string(),
        }
    }

    /// The contents of `file`, created with what `create` returns if
    /// missing. On a shared store, a host whose data directory already
    /// holds the file (one moving onto the shared store) contributes it if
    /// no node has yet; racing first starts keep exactly one value.
    pub fn load_or_create(
        &self,
        file: &str,
        create: impl FnOnce() -> anyhow::Result<Vec<u8>>,
    ) -> anyhow::Result<Vec<u8>> {
        let path = self.dir.join(file);
        let key = format!("private/{file}");
        let Some(store) = self.shared_store() else {
            // A single host on records restored from a shared store: the
            // files come along from the store, not made anew.
            if let (Some(own), false) = (&self.store, path.exists()) {
                if let Some(kept) = own.get_raw(Tree::Meta, key.as_bytes()).ok().flatten() {
                    return load_or_create_private(&path, || Ok(kept));
                }
            }
            return load_or_create_private(&path, create);
        };
        let read = |e: superapp_store::StoreError| {
            anyhow::anyhow!("cannot read {file} from the store: {e}")
        };
        if let Some(kept) = store.get_raw(Tree::Meta, key.as_bytes()).map_err(read)? {
            warn_if_different(&path, &kept, file);
            return Ok(kept);
        }
        let candidate = if path.exists() {
            read_private(&path)?
        } else {
            create()?
        };
        store
            .transact(&[Tree::Meta], |t| {
                if let Some(kept) = t.get(Tree::Meta, key.as_bytes())? {
                    return Ok(kept);
                }
                t.put(Tree::Meta, key.as_bytes(), &candidate)?;
                Ok(candidate.clone())
            })
            .map_err(|e: Abort<std::convert::Infallible>| match e {
                Abort::Store(e) => anyhow::anyhow!("cannot keep {file} in the store: {e}"),
                Abort::User(never) => match never {},
            })
            .inspect(|kept| warn_if_different(&path, kept, file))
    }

    /// [`Secrets::load_or_create`] for a file the host's records depend on
    /// (the host secret, the host signing key): a single host's store keeps
    /// the file's SHA-256 from its first start on, and a host whose file is
    /// missing, or is another than that, does not start. Made anew, it
    /// would silently change every user's ids in every app (or the key
    /// providers and holders check), which no later fix could undo. A store
    /// from before the fingerprints holding any user counts as made with
    /// the file too.
    pub fn load_or_create_kept(
        &self,
        file: &str,
        create: impl FnOnce() -> anyhow::Result<Vec<u8>>,
    ) -> anyhow::Result<Vec<u8>> {
        let Some(store) = self.store.as_ref().filter(|s| !s.shared()) else {
            return self.load_or_create(file, create);
        };
        let path = self.dir.join(file);
        let key = format!("fingerprint/{file}");
        let read = |e: superapp_store::StoreError| anyhow::anyhow!("cannot read the store: {e}");
        let recorded = store.get_raw(Tree::Meta, key.as_bytes()).map_err(read)?;
        let kept = store
            .get_raw(Tree::Meta, format!("private/{file}").as_bytes())
            .map_err(read)?;
        finish_replacement(&path, recorded.as_deref())?;
        let restored = kept.is_some();
        if let (Some(kept), true) = (&kept, path.exists()) {
            // Records restored from a shared store hold the file its nodes
            // used; a data directory's own copy that differs is another.
            if read_private(&path)? != *kept {
                bail!(
                    "{} is not the one this store's records were made with (the store holds its own copy, from the shared store it was restored from): remove the file, and the host writes the store's copy in its place",
                    path.display()
                );
            }
        }
        if !path.exists() && !restored {
            let used = recorded.is_some()
                || !store
                    .scan(Tree::Users, b"", None, 1, false)
                    .map_err(read)?
                    .is_empty();
            if used {
                bail!(
                    "{} is missing, but this data directory's store was made with it: made anew, it would change every user's ids in every app (or the host's signing key). Bring it back from a backup (`superapp restore` restores a whole data directory), or start over in a new data directory",
                    path.display()
                );
            }
        }
        let bytes = self.load_or_create(file, create)?;
        let fingerprint = ring::digest::digest(&ring::digest::SHA256, &bytes);
        match recorded {
            Some(recorded) if recorded != fingerprint.as_ref() => bail!(
                "{} is not the file this data directory's store was made with: with it, every user's ids in every app (or the host's signing key) would change. Put the original back (`superapp restore` restores a whole data directory)",
                path.display()
            ),
            Some(_) => {}
            None => store
                .put_raw(Tree::Meta, key.as_bytes(), fingerprint.as_ref())
                .map_err(|e| anyhow::anyhow!("cannot write the store: {e}"))?,
        }
        Ok(bytes)
    }

    /// The kept `file` as a host would load it, for offline tools: never
    /// made anew.
    pub fn load_kept(&self, file: &str) -> anyhow::Result<Vec<u8>> {
        let missing =
            || anyhow::anyhow!("there is no {file} yet: a host makes it at its first start");
        if let Some(store) = self.shared_store() {
            let key = format!("private/{file}");
            return store
                .get_raw(Tree::Meta, key.as_bytes())
                .map_err(|e| anyhow::anyhow!("cannot read the store: {e}"))?
                .ok_or_else(missing);
        }
        self.load_or_create_kept(file, || Err(missing()))
    }

    /// Replace the kept `file` (the host signing key, rotated), which holds
    /// `old`, with `new`, and write what `record` adds over `trees` in the
    /// same transaction.
    /// A shared store keeps the new file in place of the old one (each
    /// node uses it from its next start on). A single host's store records
    /// the new file's fingerprint; the file is written beside the old one
    /// first (`FILE.next`) and renamed over it once the store has
    /// committed, and a start in between finishes the rename, or drops a
    /// `FILE.next` the store never recorded.
    pub fn replace_kept(
        &self,
        file: &str,
        old: &[u8],
        new: &[u8],
        trees: &[Tree],
        record: impl Fn(&dyn Txn) -> Result<(), StoreError>,
    ) -> anyhow::Result<()> {
        let Some(store) = &self.store else {
            bail!("replacing {file} needs the host's store");
        };
        let private = format!("private/{file}");
        let mut trees = trees.to_vec();
        if !trees.contains(&Tree::Meta) {
            trees.push(Tree::Meta);
        }
        let commit = |body: &dyn Fn(&dyn Txn) -> Result<(), StoreError>| {
            store
                .transact(&trees, |t| {
                    Ok::<_, Abort<std::convert::Infallible>>(body(t)?)
                })
                .map_err(|e| match e {
                    Abort::Store(e) => anyhow::anyhow!("cannot write the store: {e}"),
                    Abort::User(never) => match never {},
                })?;
            store
                .flush_now()
                .map_err(|e| anyhow::anyhow!("cannot write the store: {e}"))
        };
        if store.shared() {
            return commit(&|t| {
                // Two rotations at once: the second finds the first's key.
                if t.get(Tree::Meta, private.as_bytes())?.as_deref() != Some(old) {
                    return Err(StoreError::Backend(format!(
                        "{file} changed meanwhile (another rotation?); nothing was changed"
                    )));
                }
                t.put(Tree::Meta, private.as_bytes(), new)?;
                record(t)
            });
        }
        let path = self.dir.join(file);
        let next = pending(&path);
        match std::fs::remove_file(&next) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", next.display()))
            }
            _ => {}
        }
        load_or_create_private(&next, || Ok(new.to_vec()))?;
        let fingerprint = ring::digest::digest(&ring::digest::SHA256, new);
        let restored = store
            .get_raw(Tree::Meta, private.as_bytes())
            .map_err(|e| anyhow::anyhow!("cannot read the store: {e}"))?
            .is_some();
        commit(&|t| {
            let key = format!("fingerprint/{file}");
            t.put(Tree::Meta, key.as_bytes(), fingerprint.as_ref())?;
            if restored {
                t.put(Tree::Meta, private.as_bytes(), new)?;
            }
            record(t)
        })?;
        finish_replacement(&path, Some(fingerprint.as_ref()))
    }

    /// The host secret, created on first start.
    pub fn host_secret(&self) -> anyhow::Result<[u8; SECRET_LEN]> {
        let bytes = self.load_or_create_kept(SECRET_FILE, || {
            let mut secret = [0u8; SECRET_LEN];
            SystemRandom::new()
                .fill(&mut secret)
                .map_err(|_| anyhow::anyhow!("system random number generator failed"))?;
            Ok(secret.to_vec())
        })?;
        <[u8; SECRET_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
            anyhow::anyhow!(
                "{} is not {SECRET_LEN} bytes long",
                self.describe(SECRET_FILE)
            )
        })
    }
}

/// The host secret of a data directory, created on first start.
pub fn load_or_create_secret(data_dir: &Path) -> anyhow::Result<[u8; SECRET_LEN]> {
    Secrets::in_dir(data_dir).host_secret()
}

/// Where [`Secrets::replace_kept`] writes the new copy of a file until
/// the store has recorded it.
fn pending(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".next");
    path.with_file_name(name)
}

/// Finish or drop a replacement of the file at `path` that a crash cut
/// short: its new copy takes the old one's place if the store recorded
/// its fingerprint, and goes otherwise.
fn finish_replacement(path: &Path, recorded: Option<&[u8]>) -> anyhow::Result<()> {
    let next = pending(path);
    if !next.exists() {
        return Ok(());
    }
    let candidate = read_private(&next)?;
    let fingerprint = ring::digest::digest(&ring::digest::SHA256, &candidate);
    if recorded != Some(fingerprint.as_ref()) {
        tracing::warn!(path = %next.display(), "dropping a replacement the store never recorded");
        return std::fs::remove_file(&next).with_context(|| format!("removing {}", next.display()));
    }
    std::fs::rename(&next, path)
        .with_context(|| format!("moving {} into place", next.display()))?;
    sync_parent(path)
}

/// Sync the directory holding `path`, so the file's name is on disk.
fn sync_parent(path: &Path) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// A data directory's own copy of a secret that the shared store holds
/// differently is not used: say so, since whatever it signed or derived
/// (pseudonyms, certificates, a token) no longer matches.
fn warn_if_different(path: &Path, kept: &[u8], file: &str) {
    if let Ok(own) = std::fs::read(path) {
        if own != kept {
            tracing::warn!(
                file,
                path = %path.display(),
                "this data directory holds its own copy of a secret that the shared store holds differently; the store's is used"
            );
        }
    }
}

/// A file only the host's user may read (mode 0600): created with what
/// `create` returns if missing, refused if others can read it.
pub fn load_or_create_private(
    path: &Path,
    create: impl FnOnce() -> anyhow::Result<Vec<u8>>,
) -> anyhow::Result<Vec<u8>> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            // Whatever fails from here leaves no empty or partial file
            // that a later start would take for the real one.
            let written = create().and_then(|bytes| {
                file.write_all(&bytes)
                    .and_then(|()| file.sync_all())
                    .with_context(|| format!("writing {}", path.display()))?;
                Ok(bytes)
            });
            let bytes = written.inspect_err(|_| {
                let _ = std::fs::remove_file(path);
            })?;
            // The file's name, too, is on disk before anything relies on it.
            sync_parent(path)?;
            Ok(bytes)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_private(path),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

/// An existing private file, refused if others can read it.
fn read_private(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mode = file.metadata()?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "{} is readable by other users (mode {mode:o}); run `chmod 600` on it",
            path.display()
        );
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_with_mode_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_secret(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create_secret(dir.path()).unwrap(), first);
        std::fs::set_permissions(
            dir.path().join(SECRET_FILE),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert!(load_or_create_secret(dir.path()).is_err());
    }

    /// A rotated host key is the one the next start loads, the old one is
    /// listed as retired and the rotation is in the audit log; a crash
    /// between the store's commit and the file's rename is finished at the
    /// next start, and a new copy the store never recorded is dropped.
    #[test]
    fn a_rotated_host_key_replaces_the_old_one_even_across_a_crash() {
        use crate::audit::Audit;
        use crate::documents::{HostKey, HOST_KEY_FILE};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let secrets = Secrets::for_store(dir.path(), &store);
        let audit = Audit::open(store.clone()).unwrap();
        let none = HostKey::rotate(&secrets, &audit, "early").unwrap_err();
        assert!(
            none.to_string().contains("no host-signing-key yet"),
            "{none}"
        );
        assert!(!dir.path().join(HOST_KEY_FILE).exists(), "nothing made");
        let first = HostKey::load_or_create(&secrets).unwrap().public_key();

        let (old, new) = HostKey::rotate(&secrets, &audit, "the laptop was lost").unwrap();
        assert_eq!(old, first);
        let loaded = HostKey::load_or_create(&secrets).unwrap();
        assert_eq!(loaded.public_key(), new);
        assert_eq!(loaded.retired().len(), 1);
        assert_eq!(loaded.retired()[0].public_key, first);
        let entries = audit.entries(0, 10).unwrap();
        let logged = &entries.last().unwrap().event;
        assert_eq!(logged.kind, "host.key.rotate");
        assert_eq!(logged.details["old_key"], first);
        assert_eq!(logged.details["new_key"], new);
        assert_eq!(logged.details["reason"], "the laptop was lost");
        crate::audit::verify(&store, None).unwrap();

        // A crash after the commit, before the rename: the old file is in
        // place and the new one beside it. The next start finishes it.
        let path = dir.path().join(HOST_KEY_FILE);
        let next = pending(&path);
        let before = std::fs::read(&path).unwrap();
        let (_, newer) = HostKey::rotate(&secrets, &audit, "again").unwrap();
        std::fs::rename(&path, &next).unwrap();
        std::fs::write(&path, &before).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            HostKey::load_or_create(&secrets).unwrap().public_key(),
            newer
        );
        assert!(!next.exists());

        // A crash before the commit: the new copy was never recorded.
        let current = std::fs::read(&path).unwrap();
        std::fs::write(&next, b"not recorded").unwrap();
        std::fs::set_permissions(&next, std::fs::Permissions::from_mode(0o600)).unwrap();
        let loaded = HostKey::load_or_create(&secrets).unwrap();
        assert_eq!(loaded.public_key(), newer);
        assert_eq!(std::fs::read(&path).unwrap(), current);
        assert!(!next.exists());
        assert_eq!(loaded.retired().len(), 2);
    }

    /// On a shared store the rotated key replaces the store's copy, which
    /// every node loads, whatever its own data directory holds.
    #[test]
    fn a_rotated_key_on_a_shared_store_is_the_store_copy() {
        use crate::audit::Audit;
        use crate::documents::{HostKey, HOST_KEY_FILE};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::in_memory().unwrap();
        let node = Secrets::for_store(dir.path(), &store);
        let first = HostKey::load_or_create(&node).unwrap().public_key();
        let tool = Secrets::for_store(Path::new(""), &store);
        let audit = Audit::open(store.clone()).unwrap();
        let (old, new) = HostKey::rotate(&tool, &audit, "scheduled").unwrap();
        assert_eq!(old, first);
        let loaded = HostKey::load_or_create(&node).unwrap();
        assert_eq!(loaded.public_key(), new);
        assert_eq!(loaded.retired()[0].public_key, first);
        // A rotation from a key that is no longer the store's (two at
        // once) changes nothing.
        let stale = tool.replace_kept(HOST_KEY_FILE, b"stale", b"other", &[], |_| Ok(()));
        assert!(stale.unwrap_err().to_string().contains("changed meanwhile"));
        assert_eq!(HostKey::load_or_create(&node).unwrap().public_key(), new);
    }

    /// A host whose secret went missing, or was swapped, does not start on
    /// the store made with the original; the original back, it does.
    #[test]
    fn a_lost_or_swapped_secret_is_refused_not_made_anew() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let secrets = Secrets::for_store(dir.path(), &store);
        let first = secrets.host_secret().unwrap();
        let path = dir.path().join(SECRET_FILE);
        let original = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let lost = secrets.host_secret().unwrap_err().to_string();
        assert!(lost.contains("is missing"), "{lost}");
        assert!(!path.exists(), "nothing made anew");
        let other = tempfile::tempdir().unwrap();
        load_or_create_secret(other.path()).unwrap();
        std::fs::copy(other.path().join(SECRET_FILE), &path).unwrap();
        let swapped = secrets.host_secret().unwrap_err().to_string();
        assert!(swapped.contains("is not the file"), "{swapped}");
        std::fs::write(&path, &original).unwrap();
        assert_eq!(secrets.host_secret().unwrap(), first);

        // A store from before the fingerprints, holding a user.
        let old = tempfile::tempdir().unwrap();
        let store = Store::open(&old.path().join("store")).unwrap();
        store.put_raw(Tree::Users, b"u1", b"{}").unwrap();
        let err = Secrets::for_store(old.path(), &store)
            .host_secret()
            .unwrap_err();
        assert!(err.to_string().contains("is missing"), "{err}");
        // A fresh one starts.
        let fresh = tempfile::tempdir().unwrap();
        let store = Store::open(&fresh.path().join("store")).unwrap();
        Secrets::for_store(fresh.path(), &store)
            .host_secret()
            .unwrap();
    }

    #[test]
    fn on_a_shared_store_every_node_gets_the_first_nodes_secret() {
        let store = Store::in_memory().unwrap();
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let first = Secrets::for_store(a.path(), &store).host_secret().unwrap();
        let second = Secrets::for_store(b.path(), &store).host_secret().unwrap();
        assert_eq!(first, second);
        // Nothing was written into either node's data directory.
        assert!(!a.path().join(SECRET_FILE).exists());
        assert!(!b.path().join(SECRET_FILE).exists());
        // A different store is a different host.
        let other = Store::in_memory().unwrap();
        assert_ne!(
            Secrets::for_store(a.path(), &other).host_secret().unwrap(),
            first
        );
    }

    #[test]
    fn a_single_host_restored_from_a_shared_store_keeps_its_secret() {
        let backend: Arc<dyn superapp_store::Backend> =
            Arc::new(superapp_store::MemoryBackend::new());
        let shared = Store::with_backend(backend).unwrap();
        let on_shared = Secrets::for_store(tempfile::tempdir().unwrap().path(), &shared)
            .host_secret()
            .unwrap();
        // The shared store's records, restored into a single host's store.
        let single_dir = tempfile::tempdir().unwrap();
        let single = Store::open(&single_dir.path().join("store")).unwrap();
        let kept = shared
            .get_raw(Tree::Meta, format!("private/{SECRET_FILE}").as_bytes())
            .unwrap()
            .unwrap();
        single
            .put_raw(
                Tree::Meta,
                format!("private/{SECRET_FILE}").as_bytes(),
                &kept,
            )
            .unwrap();
        let secrets = Secrets::for_store(single_dir.path(), &single);
        assert!(!secrets.shared());
        assert_eq!(secrets.host_secret().unwrap(), on_shared);
        let path = single_dir.path().join(SECRET_FILE);
        assert!(path.exists(), "written out");
        // A copy of the data directory's own that is not the store's is
        // refused; without it, the store's is written out again.
        std::fs::write(&path, [7u8; SECRET_LEN]).unwrap();
        let err = secrets.host_secret().unwrap_err().to_string();
        assert!(err.contains("is not the one this store's records"), "{err}");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(secrets.host_secret().unwrap(), on_shared);
    }

    #[test]
    fn a_host_moving_onto_a_shared_store_brings_its_secret() {
        let dir = tempfile::tempdir().unwrap();
        let own = load_or_create_secret(dir.path()).unwrap();
        let store = Store::in_memory().unwrap();
        assert_eq!(
            Secrets::for_store(dir.path(), &store)
                .host_secret()
                .unwrap(),
            own
        );
        let joining = tempfile::tempdir().unwrap();
        assert_eq!(
            Secrets::for_store(joining.path(), &store)
                .host_secret()
                .unwrap(),
            own
        );
    }
}
