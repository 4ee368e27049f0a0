//! Files the tools write for the user: whole-or-nothing writes, and the
//! per-user folders of the XDG base-directory convention.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Write `bytes` to `path` whole or not at all (a synced temporary file
/// renamed into place), so a failed write never leaves half a file. A path
/// that is no regular file (`/dev/stdout`, `/dev/null`, a pipe) is written
/// into: a rename would put a file in the device's or pipe's place.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if is_pipe_or_device(path) {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        return std::io::Write::write_all(&mut file, bytes)
            .with_context(|| format!("cannot write {}", path.display()));
    }
    // The error's own text and its source are the same: name it once.
    staged(path, bytes)?
        .persist(path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {}", path.display(), e.error))?;
    Ok(())
}

/// [`write_atomically`], replacing nothing but a file of the same kind
/// (`kind`, which `looks_like` tells from its first 512 bytes) or an empty
/// one: a key, a source file or anything else given as an output by
/// mistake is left as it is, and so is a directory.
pub fn write_replacing_only(
    path: &Path,
    bytes: &[u8],
    kind: &str,
    looks_like: fn(&[u8]) -> bool,
) -> anyhow::Result<()> {
    use std::io::Read as _;
    // A pipe or a device (`/dev/stdout`) is written into, not read first:
    // opening a pipe to read would wait for a writer.
    if is_pipe_or_device(path) {
        return write_atomically(path, bytes);
    }
    if path.is_dir() {
        anyhow::bail!(
            "{} is a directory; give the file to write {kind} to",
            path.display()
        );
    }
    match std::fs::File::open(path) {
        Ok(file) => {
            let mut head = Vec::with_capacity(512);
            file.take(512)
                .read_to_end(&mut head)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if !head.is_empty() && !looks_like(&head) {
                anyhow::bail!(
                    "{} exists and is not {kind}; it was left as it is (choose another --out, or remove it first)",
                    path.display()
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    write_atomically(path, bytes)
}

/// The same, for a file that must not exist yet: one already there (a
/// decision signed before, say) is never replaced.
pub fn create_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    staged(path, bytes)?.persist_noclobber(path).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!("{} exists already; it was left as it is", path.display())
        } else {
            anyhow::anyhow!("cannot write {}: {}", path.display(), e.error)
        }
    })?;
    Ok(())
}

/// Whether `path` is there and is neither a regular file nor a folder: a
/// pipe, a socket or a device such as `/dev/stdout`.
pub fn is_pipe_or_device(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

/// `bytes` in a synced temporary file beside `path`, to be moved there.
fn staged(path: &Path, bytes: &[u8]) -> anyhow::Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write into {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.as_file().sync_all()?;
    Ok(tmp)
}

/// `$<xdg_var>/superapp` when that variable holds an absolute path, else
/// `~/<home_fallback>/superapp`.
pub fn user_dir(xdg_var: &str, home_fallback: &str) -> Option<PathBuf> {
    let base = std::env::var_os(xdg_var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(home_fallback)))?;
    Some(base.join("superapp"))
}
