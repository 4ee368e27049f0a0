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
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut file) => {
            let mut secret = [0u8; SECRET_LEN];
            SystemRandom::new()
                .fill(&mut secret)
                .map_err(|_| anyhow::anyhow!("system random number generator failed"))?;
            file.write_all(&secret)
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(secret)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mut file = std::fs::File::open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            let mode = file.metadata()?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                bail!(
                    "{} is readable by other users (mode {mode:o}); run `chmod 600` on it",
                    path.display()
                );
            }
            let mut secret = [0u8; SECRET_LEN];
            let mut rest = Vec::new();
            file.read_exact(&mut secret).with_context(|| {
                format!("{} is shorter than {SECRET_LEN} bytes", path.display())
            })?;
            file.read_to_end(&mut rest)?;
            if !rest.is_empty() {
                bail!("{} is longer than {SECRET_LEN} bytes", path.display());
            }
            Ok(secret)
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
