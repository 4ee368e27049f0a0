//! Precompiled components: a restart loads instead of compiling, and a
//! damaged cache entry is recompiled rather than trusted.

use superapp_runtime::{Call, Origin, Runtime, RuntimeConfig};

use crate::common::*;

fn runtime_with_cache(dir: &std::path::Path) -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: Some(dir.to_path_buf()),
        ..RuntimeConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn restart_loads_precompiled_and_tampering_forces_a_recompile() {
    let cache = tempfile::tempdir().unwrap();
    let first = runtime_with_cache(cache.path());
    assert_eq!(load(&first, "hello").origin(), Origin::Compiled);
    drop(first);

    // A new runtime (a restart) finds the artifact.
    let second = runtime_with_cache(cache.path());
    let app = load(&second, "hello");
    assert_eq!(app.origin(), Origin::Cache);
    assert!(run(&second, &app, &services(&[]), "alice", Call::Launch)
        .await
        .is_ok());

    // Flip a byte in the artifact: its checksum no longer matches.
    let artifact = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .expect("a .cwasm artifact");
    let mut bytes = std::fs::read(&artifact).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&artifact, bytes).unwrap();
    let third = runtime_with_cache(cache.path());
    let app = load(&third, "hello");
    assert_eq!(app.origin(), Origin::Compiled);
    assert!(run(&third, &app, &services(&[]), "alice", Call::Launch)
        .await
        .is_ok());
    assert_eq!(
        load(&third, "hello").origin(),
        Origin::Cache,
        "the recompiled artifact was stored again"
    );
}

/// An artifact cut short (a full disk, a copy that stopped) is recompiled,
/// and only the host may write the cache directory.
#[tokio::test]
async fn a_truncated_artifact_is_recompiled_and_the_cache_is_private() {
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("precompiled");
    let first = runtime_with_cache(&dir);
    assert_eq!(load(&first, "hello").origin(), Origin::Compiled);
    drop(first);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "cache directory mode {mode:o}");
    }

    let artifact = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .expect("a .cwasm artifact");
    let bytes = std::fs::read(&artifact).unwrap();
    std::fs::write(&artifact, &bytes[..bytes.len() / 3]).unwrap();
    let second = runtime_with_cache(&dir);
    let app = load(&second, "hello");
    assert_eq!(app.origin(), Origin::Compiled);
    assert!(run(&second, &app, &services(&[]), "alice", Call::Launch)
        .await
        .is_ok());
}
