//! Precompiled components on disk, keyed by the SHA-256 of the component and
//! the engine's compatibility hash, so a restart loads instead of compiling.
//!
//! An artifact is mapped from the file, not read into the heap and copied,
//! and checked against the XXH3-128 checksum stored beside it. The checksum
//! guards against damage (a flipped bit, a file cut short), not against
//! someone who can write the cache directory: they could rewrite any digest
//! beside the artifact as well, so the directory itself is the host's
//! (mode 0700), and a new artifact is written whole, then renamed.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::component::Component;
use wasmtime::Engine;

/// Where a component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Loaded from the cache without compiling.
    Cache,
    /// Compiled now (and stored, if the cache is enabled).
    Compiled,
}

pub struct ComponentCache {
    dir: PathBuf,
}

/// Hex SHA-256 of `bytes`.
pub use superapp_core::sha256_hex;

fn engine_fingerprint(engine: &Engine) -> String {
    // The compatibility hash covers the wasmtime version, target and every
    // setting that changes compiled code. `DefaultHasher::new()` has fixed
    // keys, so the value is the same across runs of one host binary.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}

impl ComponentCache {
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        let at = |e: std::io::Error, what: &str| {
            std::io::Error::new(e.kind(), format!("cannot {what} {}: {e}", dir.display()))
        };
        std::fs::create_dir_all(&dir).map_err(|e| at(e, "create the precompile cache"))?;
        // Precompiled code runs as the host's own: only the host may write it.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dir)
                .map_err(|e| at(e, "read the precompile cache"))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(|e| at(e, "make private (chmod 700) the precompile cache"))?;
            }
        }
        Ok(ComponentCache { dir })
    }

    fn paths(&self, engine: &Engine, component_sha: &str) -> (PathBuf, PathBuf) {
        let stem = format!("{component_sha}-{}", engine_fingerprint(engine));
        (
            self.dir.join(format!("{stem}.cwasm")),
            self.dir.join(format!("{stem}.cwasm.xxh3")),
        )
    }

    /// The precompiled form of the component whose SHA-256 is
    /// `component_sha`, if the cache holds it whole.
    pub fn load(&self, engine: &Engine, component_sha: &str) -> Option<Component> {
        let (artifact, check) = self.paths(engine, component_sha);
        load_verified(engine, &artifact, &check)
    }

    /// Remove the artifacts no engine of this build loads: those compiled
    /// by another wasmtime or with other settings (an earlier version of
    /// the host), which would otherwise stay forever beside the current
    /// ones. Files the cache did not name are left alone. How many went.
    pub fn sweep(&self, engine: &Engine) -> usize {
        let current = engine_fingerprint(engine);
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let stem = name
                .strip_suffix(".cwasm.xxh3")
                .or_else(|| name.strip_suffix(".cwasm"));
            let Some((sha, fingerprint)) = stem.and_then(|s| s.split_once('-')) else {
                continue;
            };
            let ours = sha.len() == 64
                && fingerprint.len() == 16
                && (sha.bytes().chain(fingerprint.bytes())).all(|b| b.is_ascii_hexdigit());
            if ours && fingerprint != current && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// Keep `serialized`, the precompiled form for `engine` of the
    /// component whose SHA-256 is `component_sha`. A cache that cannot be
    /// written only costs a recompile next time: logged, not an error.
    pub fn store(&self, engine: &Engine, component_sha: &str, serialized: &[u8]) {
        let (artifact, check) = self.paths(engine, component_sha);
        if let Err(e) = store(&self.dir, &artifact, &check, serialized) {
            tracing::warn!(path = %artifact.display(), error = %e, "cannot store precompiled component");
        }
    }
}

/// The checksum of an artifact, as stored beside it.
fn checksum(bytes: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(bytes))
}

/// Load an artifact whose checksum matches its sidecar; anything missing,
/// torn or damaged is ignored (and recompiled by the caller).
fn load_verified(engine: &Engine, artifact: &Path, check: &Path) -> Option<Component> {
    let expected = std::fs::read_to_string(check).ok()?;
    let file = std::fs::File::open(artifact).ok()?;
    // SAFETY: the mapping is only read, here, to compute the checksum. The
    // host never changes an artifact in place (a new one is written to a
    // temporary file and renamed over it), so the mapped file does not
    // change under the read.
    #[allow(unsafe_code)]
    let mapped = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    if checksum(&mapped) != expected.trim() {
        tracing::warn!(path = %artifact.display(), "precompiled component does not match its checksum; recompiling");
        return None;
    }
    drop(mapped);
    // SAFETY: `Component::deserialize_file` trusts its input to be
    // wasmtime's own output. This file is exactly what `Component::serialize`
    // wrote into the host's private cache directory (written whole, then
    // renamed, and checked against the checksum stored beside it above),
    // and its name binds it to this engine's compatibility hash.
    #[allow(unsafe_code)]
    let component = unsafe { Component::deserialize_file(engine, artifact) };
    match component {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(path = %artifact.display(), error = %e, "cannot load precompiled component; recompiling");
            None
        }
    }
}

/// Write the artifact, then its checksum, each atomically (temp file + rename),
/// so a crash leaves either a complete pair or nothing usable.
fn store(dir: &Path, artifact: &Path, check: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic(dir, artifact, bytes)?;
    write_atomic(dir, check, checksum(bytes).as_bytes())
}

fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
