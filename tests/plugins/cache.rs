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
    // Stopped before the artifact is changed in place: a live runtime maps
    // it, and a mapped file cut short (as a rewrite does for a moment)
    // faults whatever reads it then (the unwinder reads every loaded
    // component's frame tables when any thread captures a backtrace).
    drop(app);
    drop(second);

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
        let mode = || std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(), 0o700, "cache directory mode {:o}", mode());
        // One left open to others (by hand, or an earlier version) is
        // closed at the next start.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        drop(runtime_with_cache(&dir));
        assert_eq!(mode(), 0o700, "cache directory mode {:o}", mode());
    }
    // A cache that cannot be made is named in the error.
    let blocked = cache.path().join("a-file");
    std::fs::write(&blocked, b"").unwrap();
    let err = Runtime::new(RuntimeConfig {
        cache_dir: Some(blocked.join("precompiled")),
        ..RuntimeConfig::default()
    })
    .err()
    .expect("no cache inside a file");
    assert!(format!("{err:#}").contains("a-file/precompiled"), "{err:#}");

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

/// A component loaded under a digest its caller already has (a verified
/// package's signature) is found precompiled by it; a digest that does not
/// match the bytes, or is not a digest at all, is refused before anything
/// is compiled or stored under it.
#[tokio::test]
async fn a_claimed_digest_finds_the_artifact_and_a_wrong_one_stores_nothing() {
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime_with_cache(cache.path());
    let manifest = superapp_core::Manifest::load(&manifest("hello")).unwrap();
    let bytes = std::fs::read(component("hello")).unwrap();
    let sha = superapp_runtime::sha256_hex(&bytes);
    let artifacts = || {
        std::fs::read_dir(cache.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "cwasm")
            })
            .count()
    };

    let wrong = "ab".repeat(32);
    let err = rt
        .load_digested(manifest.clone(), &bytes, &wrong)
        .err()
        .expect("a wrong digest is refused");
    assert!(
        matches!(&err, superapp_runtime::LoadError::Digest { claimed, actual }
            if *claimed == wrong && *actual == sha),
        "{err}"
    );
    for bad in ["../../escape", "", &"g".repeat(64)] {
        assert!(matches!(
            rt.load_digested(manifest.clone(), &bytes, bad),
            Err(superapp_runtime::LoadError::Digest { .. })
        ));
    }
    assert_eq!(artifacts(), 0, "nothing was compiled or stored");

    let app = rt
        .load_digested(manifest.clone(), &bytes, &sha.to_uppercase())
        .unwrap();
    assert_eq!(
        (app.origin(), app.sha256()),
        (Origin::Compiled, sha.as_str())
    );
    assert_eq!(artifacts(), 1);
    drop(rt);
    let restarted = runtime_with_cache(cache.path());
    let app = restarted.load_digested(manifest, &bytes, &sha).unwrap();
    assert_eq!(app.origin(), Origin::Cache);
    assert!(run(&restarted, &app, &services(&[]), "alice", Call::Launch)
        .await
        .is_ok());
}

/// Artifacts an earlier version compiled (another wasmtime, other settings:
/// another engine fingerprint in the name) are removed by a sweep; the
/// current ones and files the cache did not name stay.
#[tokio::test]
async fn a_sweep_removes_what_an_earlier_version_compiled_and_nothing_else() {
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime_with_cache(cache.path());
    assert_eq!(load(&rt, "hello").origin(), Origin::Compiled);
    let names = || -> std::collections::BTreeSet<String> {
        std::fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    };
    let current = names();
    let earlier = format!("{}-0123456789abcdef", "ab".repeat(32));
    for name in [
        format!("{earlier}.cwasm"),
        format!("{earlier}.cwasm.xxh3"),
        "notes.txt".to_string(),
        "short-0123456789abcdef.cwasm".to_string(),
    ] {
        std::fs::write(cache.path().join(name), b"x").unwrap();
    }
    assert_eq!(rt.sweep_cache(), 2);
    let mut expected = current.clone();
    expected.extend([
        "notes.txt".to_string(),
        "short-0123456789abcdef.cwasm".to_string(),
    ]);
    assert_eq!(names(), expected);
    assert_eq!(rt.sweep_cache(), 0);
    assert_eq!(load(&rt, "hello").origin(), Origin::Cache);
}
