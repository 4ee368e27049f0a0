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
    {
        let store = Store::open(&data.join("store")).unwrap();
        let audit = Audit::open(store.clone()).unwrap();
        for outcome in ["granted", "allowed", "denied", "allowed"] {
            audit
                .append(Event {
                    kind: "capability.call".into(),
                    user: Some("u1".into()),
                    app: Some("dev.superapp.hello".into()),
                    capability: Some("profile".into()),
                    outcome: outcome.into(),
                    ..Event::default()
                })
                .unwrap();
        }
        store.close().unwrap();
    }
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
