//! The host secret: 32 random bytes generated on first start and kept in the
//! data directory, readable only by the host's user (mode 0600). It keys the
//! per-app pseudonymous user ids, so it must never change or leak.

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context as _};
use ring::rand::{SecureRandom, SystemRandom};

const SECRET_LEN: usize = 32;
pub const SECRET_FILE: &str = "host-secret";

pub fn load_or_create_secret(data_dir: &Path) -> anyhow::Result<[u8; SECRET_LEN]> {
    let path = data_dir.join(SECRET_FILE);
    let bytes = load_or_create_private(&path, || {
        let mut secret = [0u8; SECRET_LEN];
        SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| anyhow::anyhow!("system random number generator failed"))?;
        Ok(secret.to_vec())
    })?;
    <[u8; SECRET_LEN]>::try_from(bytes.as_slice())
        .map_err(|_| anyhow::anyhow!("{} is not {SECRET_LEN} bytes long", path.display()))
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
            Ok(bytes)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
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
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
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
}
