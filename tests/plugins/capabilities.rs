//! Every capability through a real guest: an allowed case and a denied case
//! each. "Denied" is either the user's refusal (consent-gated capabilities)
//! or the manifest not declaring it, which the static check refuses before
//! anything runs.

use std::sync::Arc;

use superapp_core::Capability;
use superapp_core::Manifest;
use superapp_runtime::contract::ImportError;
use superapp_runtime::Services;
use superapp_runtime::{Call, LoadError, Runtime};

use crate::common::*;

const PROBE: &str = "testing/probe";

async fn probe(
    rt: &Runtime,
    svc: &Arc<Services>,
    user: &str,
    name: &str,
    value: Option<&str>,
    fields: &[(&str, &str)],
) -> String {
    let app = load(rt, PROBE);
    let view = run(rt, &app, svc, user, action(name, value, fields))
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    texts(&view).join("\n")
}

/// The probe's manifest without `[capabilities.<cap>]`.
fn probe_without(cap: Capability) -> Manifest {
    let text = std::fs::read_to_string(manifest(PROBE)).unwrap();
    let header = format!("[capabilities.{}]", cap.name());
    assert!(text.contains(&header));
    // Drop the table: its header and every line up to the next one.
    let mut kept = String::new();
    let mut skipping = false;
    for line in text.lines() {
        if line.starts_with('[') {
            skipping = line == header;
        }
        if !skipping {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    Manifest::parse(&kept).unwrap()
}

#[test]
fn every_capability_is_refused_at_load_when_undeclared() {
    let rt = runtime();
    let bytes = std::fs::read(component(PROBE)).unwrap();
    for cap in Capability::all() {
        match rt.load(probe_without(cap), &bytes) {
            Err(LoadError::Imports(errors)) => {
                assert_eq!(
                    errors,
                    vec![ImportError::Undeclared {
                        interface: cap.interface(),
                        capability: cap
                    }],
                    "{cap}"
                );
            }
            Err(other) => panic!("{cap}: unexpected error {other}"),
            Ok(_) => panic!("{cap}: loaded without being declared"),
        }
    }
}

#[tokio::test]
async fn log_clock_and_random_answer_when_declared() {
    let rt = runtime();
    let svc = services(&[]);
    assert_eq!(probe(&rt, &svc, "u", "log", None, &[]).await, "ok: logged");
    let now: u64 = probe(&rt, &svc, "u", "clock", None, &[])
        .await
        .trim_start_matches("ok: ")
        .parse()
        .unwrap();
    let host_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(host_now) < 5);
    assert_eq!(probe(&rt, &svc, "u", "random", None, &[]).await, "ok: 64");
}

#[tokio::test]
async fn identity_is_a_stable_per_app_pseudonym() {
    let rt = runtime();
    let svc = services(&[]);
    let first = probe(&rt, &svc, "alice", "identity", None, &[]).await;
    let again = probe(&rt, &svc, "alice", "identity", None, &[]).await;
    let bob = probe(&rt, &svc, "bob", "identity", None, &[]).await;
    let expected = svc
        .pseudonyms
        .for_app("alice", "dev.superapp.testing.probe");
    assert_eq!(first, format!("ok: {expected:?}"));
    assert_eq!(first, again);
    assert_ne!(first, bob);
    assert!(!first.contains("alice"), "the real user id leaked: {first}");
    // Another app sees another id for the same user.
    let hello = load(&rt, "hello");
    let view = run(&rt, &hello, &svc, "alice", action("ping", None, &[]))
        .await
        .unwrap();
    assert_eq!(
        texts(&view),
        vec![svc.pseudonyms.for_app("alice", "dev.superapp.hello")]
    );
    assert_ne!(texts(&view)[0], expected);
}

#[tokio::test]
async fn profile_needs_consent() {
    let rt = runtime();
    assert_eq!(
        probe(&rt, &services(&[]), "alice", "profile", None, &[]).await,
        "ok: \"alice\""
    );
    let refused = probe(
        &rt,
        &services(&[Capability::Profile]),
        "alice",
        "profile",
        None,
        &[],
    )
    .await;
    assert!(refused.starts_with("err: denied:"), "{refused}");
}

#[tokio::test]
async fn notify_needs_consent_and_is_bounded() {
    let rt = runtime();
    let svc = services(&[]);
    assert_eq!(
        probe(
            &rt,
            &svc,
            "alice",
            "notify",
            Some("your slot is booked"),
            &[]
        )
        .await,
        "ok: ()"
    );
    let refused = probe(
        &rt,
        &services(&[Capability::Notify]),
        "alice",
        "notify",
        Some("x"),
        &[],
    )
    .await;
    assert!(refused.starts_with("err: denied:"), "{refused}");
    let empty = probe(&rt, &svc, "alice", "notify", Some("  "), &[]).await;
    assert!(empty.starts_with("err: invalid:"), "{empty}");
}

#[tokio::test]
async fn storage_is_private_to_each_user() {
    let rt = runtime();
    let svc = services(&[]);
    assert_eq!(
        probe(
            &rt,
            &svc,
            "alice",
            "storage-set",
            Some("secret"),
            &[("key", "note")]
        )
        .await,
        "ok: ()"
    );
    let mine = probe(&rt, &svc, "alice", "storage-get", None, &[("key", "note")]).await;
    assert_eq!(mine, format!("ok: Some({:?})", b"secret".to_vec()));
    assert_eq!(
        probe(&rt, &svc, "bob", "storage-get", None, &[("key", "note")]).await,
        "ok: None"
    );
    assert_eq!(
        probe(&rt, &svc, "bob", "storage-list", None, &[("key", "")]).await,
        "ok: []"
    );
    // Another app's storage is another namespace, whatever the key.
    let hello = load(&rt, "hello");
    run(
        &rt,
        &hello,
        &svc,
        "alice",
        action("save-name", None, &[("name", "Ada")]),
    )
    .await
    .unwrap();
    assert_eq!(
        probe(&rt, &svc, "alice", "storage-get", None, &[("key", "name")]).await,
        "ok: None"
    );
    assert_eq!(
        probe(
            &rt,
            &svc,
            "alice",
            "storage-delete",
            None,
            &[("key", "note")]
        )
        .await,
        "ok: true"
    );
    assert_eq!(
        probe(&rt, &svc, "alice", "storage-get", None, &[("key", "note")]).await,
        "ok: None"
    );
}

#[tokio::test]
async fn storage_quota_refuses_oversize_values_and_writes_nothing() {
    let rt = runtime();
    let svc = services(&[]);
    let big = (1 << 20) + 1;
    let refused = probe(
        &rt,
        &svc,
        "alice",
        "storage-set-size",
        Some(&big.to_string()),
        &[("key", "big")],
    )
    .await;
    assert!(refused.starts_with("err: quota-exceeded:"), "{refused}");
    assert_eq!(
        probe(&rt, &svc, "alice", "storage-get", None, &[("key", "big")]).await,
        "ok: None"
    );
    assert_eq!(
        probe(&rt, &svc, "alice", "storage-usage", None, &[]).await,
        "ok: (0, 0)"
    );
    let empty_key = probe(&rt, &svc, "alice", "storage-set", Some("v"), &[("key", "")]).await;
    assert!(empty_key.starts_with("err: invalid:"), "{empty_key}");
}

#[tokio::test]
async fn shared_storage_is_shared_by_users_with_cas_and_increment() {
    let rt = runtime();
    let svc = services(&[]);
    let claim = |user: &'static str| {
        probe(
            &rt,
            &svc,
            user,
            "shared-cas",
            Some(user),
            &[("key", "slot-9am")],
        )
    };
    assert_eq!(claim("alice").await, "ok: true");
    assert_eq!(claim("bob").await, "ok: false");
    let holder = probe(&rt, &svc, "bob", "shared-get", None, &[("key", "slot-9am")]).await;
    assert_eq!(holder, format!("ok: Some({:?})", b"alice".to_vec()));
    assert_eq!(
        probe(
            &rt,
            &svc,
            "alice",
            "shared-increment",
            Some("2"),
            &[("key", "n")]
        )
        .await,
        "ok: 2"
    );
    assert_eq!(
        probe(
            &rt,
            &svc,
            "bob",
            "shared-increment",
            Some("3"),
            &[("key", "n")]
        )
        .await,
        "ok: 5"
    );
    // Shared storage and per-user storage never mix.
    assert_eq!(
        probe(&rt, &svc, "alice", "storage-get", None, &[("key", "n")]).await,
        "ok: None"
    );
}

#[tokio::test]
async fn payments_and_documents_are_unavailable_in_the_dev_loop_without_a_ledger_or_wallet() {
    let rt = runtime();
    let svc = services(&[]);
    let pay = probe(&rt, &svc, "alice", "payments", None, &[]).await;
    assert!(pay.starts_with("err: unavailable:"), "{pay}");
    let doc = probe(&rt, &svc, "alice", "documents", None, &[]).await;
    assert!(doc.starts_with("err: unavailable:"), "{doc}");
    // A user's standing refusal stops both before any sheet is drawn (the
    // allowed cases, with real sheets, are in the server tests).
    let refusing = services(&[Capability::Payments, Capability::Documents]);
    for cap in ["payments", "documents"] {
        let refused = probe(&rt, &refusing, "alice", cap, None, &[]).await;
        assert!(refused.starts_with("err: denied:"), "{cap}: {refused}");
    }
}

#[tokio::test]
async fn crafted_keys_stay_inside_their_namespace() {
    let rt = runtime();
    let svc = services(&[]);
    let hello = load(&rt, "hello");
    run(
        &rt,
        &hello,
        &svc,
        "alice",
        action("save-name", None, &[("name", "Ada")]),
    )
    .await
    .unwrap();
    // The probe (another app) writes keys shaped like paths, NULs and other
    // apps' names for the same user, and for another user's id.
    for key in [
        "name",
        "../name",
        "..\\name",
        "dev.superapp.hello/name",
        "name\0",
        "\0name",
        "alice/name",
    ] {
        assert_eq!(
            probe(
                &rt,
                &svc,
                "alice",
                "storage-set",
                Some("\"Mallory\""),
                &[("key", key)]
            )
            .await,
            "ok: ()",
            "{key:?}"
        );
        assert_eq!(
            probe(
                &rt,
                &svc,
                "bob",
                "storage-set",
                Some("\"Mallory\""),
                &[("key", key)]
            )
            .await,
            "ok: ()",
            "{key:?}"
        );
    }
    let view = run(&rt, &hello, &svc, "alice", Call::Launch).await.unwrap();
    assert_eq!(texts(&view)[0], "Hello, Ada!");
    let bobs = run(&rt, &hello, &svc, "bob", Call::Launch).await.unwrap();
    assert_eq!(texts(&bobs)[0], "Hello!");
    // A key over the host's limit is refused, and nothing is written.
    let long = "k".repeat(2000);
    let refused = probe(
        &rt,
        &svc,
        "alice",
        "storage-set",
        Some("v"),
        &[("key", &long)],
    )
    .await;
    assert!(refused.starts_with("err: invalid:"), "{refused}");
    assert_eq!(
        probe(&rt, &svc, "alice", "storage-get", None, &[("key", &long)]).await,
        "ok: None"
    );
}

#[tokio::test]
async fn the_manifest_storage_quota_applies_and_writes_nothing_over_it() {
    let rt = runtime();
    let svc = services(&[]);
    let text = std::fs::read_to_string(manifest(PROBE)).unwrap();
    let tight = Manifest::parse(&format!("{text}\n[limits]\nstorage-mib = 1\n")).unwrap();
    let app = rt
        .load(tight, &std::fs::read(component(PROBE)).unwrap())
        .unwrap();
    let write = |key: &'static str| {
        let (rt, app, svc) = (&rt, &app, &svc);
        async move {
            let view = run(
                rt,
                app,
                svc,
                "alice",
                action("storage-set-size", Some("600000"), &[("key", key)]),
            )
            .await
            .unwrap();
            texts(&view).join("")
        }
    };
    assert_eq!(write("a").await, "ok: ()");
    let refused = write("b").await;
    assert!(refused.starts_with("err: quota-exceeded"), "{refused}");
    let view = run(&rt, &app, &svc, "alice", action("storage-usage", None, &[]))
        .await
        .unwrap();
    let entry = 600_001 + superapp_store::ENTRY_OVERHEAD;
    assert_eq!(
        texts(&view).join(""),
        format!("ok: ({entry}, 1)"),
        "nothing of the refused write was kept"
    );
}

#[tokio::test]
async fn how_fast_a_users_apps_write_their_data_is_bounded() {
    // Rewriting one 1 MB value in a loop: the first 16 MiB go at once,
    // then writes are refused with a typed error until the allowance
    // refills (1 MiB a second); another user writes meanwhile.
    let rt = runtime();
    let probe = load(&rt, PROBE);
    let svc = services(&[]);
    let write = |user: &'static str| {
        let (rt, probe, svc) = (&rt, &probe, &svc);
        async move {
            let view = run(
                rt,
                probe,
                svc,
                user,
                action("storage-set-size", Some("1000000"), &[]),
            )
            .await
            .unwrap();
            texts(&view).join("")
        }
    };
    let burst = superapp_runtime::capabilities::storage::WRITE_BURST_KIB as usize / 977;
    for i in 0..burst {
        assert_eq!(write("alice").await, "ok: ()", "write {i}");
    }
    let mut refused = None;
    for _ in 0..4 {
        let answer = write("alice").await;
        if answer != "ok: ()" {
            refused = Some(answer);
            break;
        }
    }
    let refused = refused.expect("a write past the allowance is refused");
    assert!(refused.starts_with("err: quota-exceeded"), "{refused}");
    assert!(refused.contains("KiB a second"), "{refused}");
    assert_eq!(write("bob").await, "ok: ()");
}
