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
use superapp_store::{Abort, Store, Tree};

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
            let bytes = create()?;
            file.write_all(&bytes)
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            // The file's name, too, is on disk before anything relies on it.
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("syncing {}", dir.display()))?;
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
