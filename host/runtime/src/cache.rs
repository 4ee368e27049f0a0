//! Precompiled components on disk, keyed by the SHA-256 of the component and
//! the engine's compatibility hash, so a restart loads instead of compiling.

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
        std::fs::create_dir_all(&dir)?;
        Ok(ComponentCache { dir })
    }

    fn paths(&self, engine: &Engine, component_sha: &str) -> (PathBuf, PathBuf) {
        let stem = format!("{component_sha}-{}", engine_fingerprint(engine));
        (
            self.dir.join(format!("{stem}.cwasm")),
            self.dir.join(format!("{stem}.cwasm.sha256")),
        )
    }

    /// Load the precompiled form of a component, or compile and store it.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        component_sha: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, Origin)> {
        let (artifact, check) = self.paths(engine, component_sha);
        if let Some(component) = load_verified(engine, &artifact, &check) {
            return Ok((component, Origin::Cache));
        }
        let component = Component::new(engine, bytes)?;
        let serialized = component.serialize()?;
        if let Err(e) = store(&self.dir, &artifact, &check, &serialized) {
            // A cache we cannot write only costs a recompile next time.
            tracing::warn!(path = %artifact.display(), error = %e, "cannot store precompiled component");
        }
        Ok((component, Origin::Compiled))
    }
}

/// Load an artifact whose SHA-256 matches its sidecar; anything missing,
/// torn or tampered with is ignored (and recompiled by the caller).
fn load_verified(engine: &Engine, artifact: &Path, check: &Path) -> Option<Component> {
    let expected = std::fs::read_to_string(check).ok()?;
    let bytes = std::fs::read(artifact).ok()?;
    if sha256_hex(&bytes) != expected.trim() {
        tracing::warn!(path = %artifact.display(), "precompiled component does not match its digest; recompiling");
        return None;
    }
    // SAFETY: `Component::deserialize` trusts its input to be wasmtime's own
    // output. These bytes are exactly what `Component::serialize` wrote into
    // the host's private cache directory (written atomically, then verified
    // against the SHA-256 stored beside them above), and the file name binds
    // them to this engine's compatibility hash.
    #[allow(unsafe_code)]
    let component = unsafe { Component::deserialize(engine, &bytes) };
    match component {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(path = %artifact.display(), error = %e, "cannot load precompiled component; recompiling");
            None
        }
    }
}

/// Write the artifact, then its digest, each atomically (temp file + rename),
/// so a crash leaves either a complete pair or nothing usable.
fn store(dir: &Path, artifact: &Path, check: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic(dir, artifact, bytes)?;
    write_atomic(dir, check, sha256_hex(bytes).as_bytes())
}

fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
