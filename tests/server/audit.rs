//! `superapp audit verify-log` on a data directory whose log was tampered with.

use superapp_services::audit::{Audit, Entry, Event};
use superapp_store::{Store, Tree};

fn verify_log(dir: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_superapp"))
        .args(["audit", "verify-log", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap()
}

#[test]
fn verify_log_finds_an_entry_edited_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    write_log(data, &["granted", "allowed", "denied", "allowed"]);
    let ok = verify_log(data);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("4 entries"));

    // Turn the recorded denial into an approval, as someone covering their
    // tracks would, without being able to recompute the chain.
    {
        let store = Store::open(&data.join("store")).unwrap();
        let mut entry: Entry = store
            .get(Tree::Audit, &3u64.to_be_bytes())
            .unwrap()
            .unwrap();
        entry.event.outcome = "allowed".into();
        store.put(Tree::Audit, &3u64.to_be_bytes(), &entry).unwrap();
        store.close().unwrap();
    }
    let broken = verify_log(data);
    assert_eq!(broken.status.code(), Some(1));
    let err = String::from_utf8_lossy(&broken.stderr);
    assert!(err.contains("broken at entry 3"), "{err}");

    let missing = verify_log(&data.join("nothing-here"));
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("has no store"));
}

/// A log of `outcomes` written into a fresh store at `data`.
fn write_log(data: &std::path::Path, outcomes: &[&str]) {
    let store = Store::open(&data.join("store")).unwrap();
    let audit = Audit::open(store.clone()).unwrap();
    for outcome in outcomes {
        audit
            .append(Event {
                kind: "capability.call".into(),
                user: Some("u1".into()),
                app: Some("dev.superapp.hello".into()),
                capability: Some("profile".into()),
                outcome: outcome.to_string(),
                ..Event::default()
            })
            .unwrap();
    }
    store.close().unwrap();
}

/// Whoever can write the whole store can replace the log with another
/// history that verifies on its own; an auditor's checkpoint, kept apart
/// from the server, finds it.
#[test]
fn verify_log_with_a_checkpoint_finds_a_history_rewritten_since() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let kept = tmp.path().join("checkpoint.json");
    let verify = |checkpoint: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_superapp"));
        cmd.args(["audit", "verify-log", "--data-dir"]).arg(&data);
        if checkpoint {
            cmd.arg("--checkpoint").arg(&kept);
        }
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    write_log(&data, &["denied", "denied", "allowed"]);
    let (code, out) = verify(true);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("checkpoint: entry 3 recorded"), "{out}");
    write_log(&data, &["allowed"]);
    let (code, out) = verify(true);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("extends the checkpoint's entry 3"), "{out}");
    let recorded = std::fs::read(&kept).unwrap();

    // The denials turned into approvals, the chain and its head made anew.
    std::fs::remove_dir_all(&data).unwrap();
    write_log(&data, &["allowed", "allowed", "allowed", "allowed"]);
    let (code, out) = verify(false);
    assert_eq!(code, Some(0), "alone it verifies: {out}");
    let (code, out) = verify(true);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("broken at entry 4") && out.contains("rewritten"),
        "{out}"
    );
    assert_eq!(std::fs::read(&kept).unwrap(), recorded, "kept as it was");
    // Cut short to before the checkpoint.
    std::fs::remove_dir_all(&data).unwrap();
    write_log(&data, &["allowed", "allowed"]);
    let (code, out) = verify(true);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("before the checkpoint's entry 4"), "{out}");

    for bad in [
        "not a checkpoint",
        r#"{"seq": 0, "hash": "x"}"#,
        r#"{"seq": 2, "hash": "x"}"#,
        r#"{"seq": 2, "hash": "0000000000000000000000000000000000000000000000000000000000000000"}"#,
        r#"{"seq": 2, "hash": "ABCDEF0000000000000000000000000000000000000000000000000000000000"}"#,
    ] {
        std::fs::write(&kept, bad).unwrap();
        let (code, out) = verify(true);
        assert_eq!(code, Some(1), "{bad}: {out}");
        assert!(out.contains("holds no checkpoint"), "{bad}: {out}");
    }
    // An empty log's head is a checkpoint every log extends.
    let genesis = format!(
        r#"{{"seq": 0, "hash": "{}"}}"#,
        superapp_services::audit::GENESIS
    );
    std::fs::write(&kept, genesis).unwrap();
    let (code, out) = verify(true);
    assert_eq!(code, Some(0), "{out}");
}
