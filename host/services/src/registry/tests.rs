//! The registry's rules, without HTTP: who may publish what, which
//! decisions count, and which version a user launches.

use std::sync::Arc;

use superapp_core::decision::{SignedDecision, Verdict};
use superapp_core::keys::SigningKey;
use superapp_core::{now_secs, Package};
use superapp_store::Store;

use super::policy::rollout_bucket;
use super::releases::Changed;
use super::*;
use crate::audit::Audit;

struct Fixture {
    _dir: tempfile::TempDir,
    registry: Registry,
    audit: Arc<Audit>,
    publisher: SigningKey,
    auditor: SigningKey,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let audit = Arc::new(Audit::open(store.clone()).unwrap());
    let registry = Registry::new(store, audit.clone(), Policy::default());
    let publisher = SigningKey::generate().unwrap();
    let auditor = SigningKey::generate().unwrap();
    registry
        .add_publisher(
            "Clinic Ltd",
            "Clinic",
            &[publisher.public_key()],
            &Actor::Operator,
        )
        .unwrap();
    registry
        .trust_auditor(&auditor.public_key(), "Ann Auditor", &Actor::Operator)
        .unwrap();
    Fixture {
        _dir: dir,
        registry,
        audit,
        publisher,
        auditor,
    }
}

fn package(version: &str, caps: &[&str], publisher: &str, key: &SigningKey) -> Package {
    let mut manifest = format!(
        "id = \"org.clinic.booking\"\nname = \"Booking\"\nversion = \"{version}\"\npublisher = \"{publisher}\"\ndescription = \"d\"\n"
    );
    for cap in caps {
        manifest.push_str(&format!("[capabilities.{cap}]\nreason = \"because\"\n"));
    }
    let mut p = Package::new(
        manifest.into_bytes(),
        format!("wasm {version}").into_bytes(),
    )
    .unwrap();
    p.sign(key);
    p
}

fn decide(
    f: &Fixture,
    key: &SigningKey,
    p: &Package,
    verdict: Verdict,
    at: u64,
) -> Result<Changed, RegistryError> {
    let m = p.manifest();
    let d = SignedDecision::sign(
        key,
        &m.id,
        &m.version.to_string(),
        &p.digest(),
        verdict,
        "reviewed",
        at,
    )
    .unwrap();
    f.registry.decide(&d)
}

#[test]
fn only_a_registered_publisher_with_its_own_key_publishes_its_own_apps() {
    let f = fixture();
    let stranger = SigningKey::generate().unwrap();
    let unknown = package("1.0.0", &[], "Nobody", &stranger);
    assert!(matches!(
        f.registry.submit(&unknown, &Actor::Operator),
        Err(RegistryError::UnknownPublisher(p)) if p == "Nobody"
    ));
    let wrong_key = package("1.0.0", &[], "Clinic Ltd", &stranger);
    assert!(matches!(
        f.registry.submit(&wrong_key, &Actor::Operator),
        Err(RegistryError::NotPublisherKey { .. })
    ));
    let unsigned = Package::new(wrong_key.manifest_bytes().to_vec(), b"wasm".to_vec()).unwrap();
    assert!(matches!(
        f.registry.submit(&unsigned, &Actor::Operator),
        Err(RegistryError::Package(
            superapp_core::PackageError::Unsigned
        ))
    ));
    let good = package("1.0.0", &[], "Clinic Ltd", &f.publisher);
    assert!(matches!(
        f.registry
            .submit(&good, &Actor::Publisher("Other Co".into())),
        Err(RegistryError::Forbidden(_))
    ));
    let first = f
        .registry
        .submit(&good, &Actor::Publisher("Clinic Ltd".into()))
        .unwrap();
    assert!(first.changed);
    // Another registered publisher cannot take over the app id.
    let other = SigningKey::generate().unwrap();
    f.registry
        .add_publisher("Other Co", "Other", &[other.public_key()], &Actor::Operator)
        .unwrap();
    let squat = package("2.0.0", &[], "Other Co", &other);
    assert!(matches!(
        f.registry.submit(&squat, &Actor::Publisher("Other Co".into())),
        Err(RegistryError::Forbidden(m)) if m.contains("belongs to publisher `Clinic Ltd`")
    ));
    // Nor can it publish an app of its own under a name users would take
    // for the clinic's; under a name of its own it can.
    let named = |id: &str, name: &str| {
        let manifest = format!(
            "id = \"{id}\"\nname = \"{name}\"\nversion = \"1.0.0\"\npublisher = \"Other Co\"\ndescription = \"d\"\n"
        );
        let mut p = Package::new(manifest.into_bytes(), b"wasm".to_vec()).unwrap();
        p.sign(&other);
        p
    };
    for twin in ["Booking", "BOOKING", "Bookíng", "B\u{43E}oking"] {
        assert!(
            matches!(
                f.registry.submit(&named("org.other.booking", twin), &Actor::Operator),
                Err(RegistryError::Conflict(m)) if m.contains("app `org.clinic.booking` of publisher `Clinic Ltd` is named `Booking`")
            ),
            "{twin}"
        );
    }
    f.registry
        .submit(
            &named("org.other.booking", "Other Booking"),
            &Actor::Operator,
        )
        .unwrap();
    // The clinic's next version keeps its name.
    f.registry
        .submit(
            &package("1.1.0", &[], "Clinic Ltd", &f.publisher),
            &Actor::Operator,
        )
        .unwrap();
}

#[test]
fn publishing_is_idempotent_and_a_version_never_changes_its_bytes() {
    let f = fixture();
    let p = package("1.0.0", &[], "Clinic Ltd", &f.publisher);
    assert!(f.registry.submit(&p, &Actor::Operator).unwrap().changed);
    assert!(!f.registry.submit(&p, &Actor::Operator).unwrap().changed);
    let mut other = Package::new(p.manifest_bytes().to_vec(), b"other wasm".to_vec()).unwrap();
    other.sign(&f.publisher);
    assert!(matches!(
        f.registry.submit(&other, &Actor::Operator),
        Err(RegistryError::Conflict(m)) if m.contains("already published")
    ));
    let stored = f.registry.package_bytes(&p.digest()).unwrap().unwrap();
    assert_eq!(stored, p.to_bytes());
}

#[test]
fn sensitive_versions_wait_for_a_trusted_auditor_and_the_rest_are_auto_approved() {
    let f = fixture();
    let plain = package("1.0.0", &["storage"], "Clinic Ltd", &f.publisher);
    let released = f.registry.submit(&plain, &Actor::Operator).unwrap().release;
    assert_eq!(released.state, State::Approved);
    assert_eq!(
        f.registry
            .resolve("org.clinic.booking", || 0)
            .unwrap()
            .version,
        "1.0.0"
    );

    let paying = package(
        "1.1.0",
        &["storage", "payments"],
        "Clinic Ltd",
        &f.publisher,
    );
    assert_eq!(
        f.registry
            .submit(&paying, &Actor::Operator)
            .unwrap()
            .release
            .state,
        State::Submitted
    );
    // Users keep getting 1.0.0; 1.1.0 says what it misses.
    assert_eq!(
        f.registry
            .resolve("org.clinic.booking", || 0)
            .unwrap()
            .version,
        "1.0.0"
    );
    let why = f
        .registry
        .launchable(&f.registry.release("org.clinic.booking", "1.1.0").unwrap());
    assert!(why
        .unwrap_err()
        .contains("trusted auditor (it declares payments)"));

    let untrusted = SigningKey::generate().unwrap();
    assert!(matches!(
        decide(&f, &untrusted, &paying, Verdict::Approve, now_secs()),
        Err(RegistryError::UntrustedAuditor(_))
    ));
    // An approval of other bytes is refused.
    let d = SignedDecision::sign(
        &f.auditor,
        "org.clinic.booking",
        "1.1.0",
        &plain.digest(),
        Verdict::Approve,
        "ok",
        now_secs(),
    )
    .unwrap();
    assert!(
        matches!(f.registry.decide(&d), Err(RegistryError::Conflict(m)) if m.contains("not the package"))
    );

    let at = now_secs();
    assert!(
        decide(&f, &f.auditor, &paying, Verdict::Approve, at)
            .unwrap()
            .changed
    );
    assert!(
        !decide(&f, &f.auditor, &paying, Verdict::Approve, at + 1)
            .unwrap()
            .changed,
        "a second approval is a no-op"
    );
    assert_eq!(
        f.registry
            .resolve("org.clinic.booking", || 0)
            .unwrap()
            .version,
        "1.1.0"
    );

    // Distrusting the auditor pulls the approval: back to 1.0.0.
    f.registry
        .distrust_auditor(&f.auditor.public_key(), &Actor::Operator)
        .unwrap();
    assert_eq!(
        f.registry
            .resolve("org.clinic.booking", || 0)
            .unwrap()
            .version,
        "1.0.0"
    );
}

#[test]
fn with_auto_approve_never_everything_waits_and_future_decisions_are_refused() {
    let f = fixture();
    let registry = Registry::new(
        f.registry.store.clone(),
        f.audit.clone(),
        Policy {
            auto_approve: AutoApprove::Never,
            ..Policy::default()
        },
    );
    let plain = package("1.0.0", &["storage"], "Clinic Ltd", &f.publisher);
    let submitted = registry.submit(&plain, &Actor::Operator).unwrap().release;
    assert_eq!(submitted.state, State::Submitted);
    let err = registry
        .resolve("org.clinic.booking", || 0)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("1.0.0 waits for an auditor's approval"),
        "{err}"
    );
    let ahead = now_secs() + superapp_core::signed_request::MAX_SKEW_SECS + 60;
    let d = SignedDecision::sign(
        &f.auditor,
        "org.clinic.booking",
        "1.0.0",
        &plain.digest(),
        Verdict::Approve,
        "ok",
        ahead,
    )
    .unwrap();
    assert!(matches!(registry.decide(&d), Err(RegistryError::Invalid(m)) if m.contains("future")));
    assert_eq!(
        registry
            .release("org.clinic.booking", "1.0.0")
            .unwrap()
            .state,
        State::Submitted
    );
}

#[test]
fn an_old_approval_cannot_be_replayed_over_a_rejection() {
    let f = fixture();
    let p = package("1.0.0", &["payments"], "Clinic Ltd", &f.publisher);
    f.registry.submit(&p, &Actor::Operator).unwrap();
    let at = now_secs() - 100;
    let m = p.manifest();
    let approval = SignedDecision::sign(
        &f.auditor,
        &m.id,
        "1.0.0",
        &p.digest(),
        Verdict::Approve,
        "fine",
        at,
    )
    .unwrap();
    f.registry.decide(&approval).unwrap();
    decide(&f, &f.auditor, &p, Verdict::Reject, at + 10).unwrap();
    assert!(
        matches!(f.registry.decide(&approval), Err(RegistryError::Conflict(m)) if m.contains("newer decision"))
    );
    let err = f.registry.resolve(&m.id, || 0).unwrap_err().to_string();
    assert!(err.contains("rejected by Ann Auditor"), "{err}");

    // An approval signed in the same second as the rejection, sent after
    // it, does not override it either; one signed later does.
    let tied = SignedDecision::sign(
        &f.auditor,
        &m.id,
        "1.0.0",
        &p.digest(),
        Verdict::Approve,
        "fine after all",
        at + 10,
    )
    .unwrap();
    assert!(
        matches!(f.registry.decide(&tied), Err(RegistryError::Conflict(m)) if m.contains("newer decision"))
    );
    assert!(f.registry.resolve(&m.id, || 0).is_err());
    decide(&f, &f.auditor, &p, Verdict::Approve, at + 11).unwrap();
    assert!(f.registry.resolve(&m.id, || 0).is_ok());

    // An approval dated ahead (within the allowed clock skew) stands as
    // made when the host got it: a colleague's rejection made after that
    // overrides it at once, and it cannot be sent again over the rejection.
    let colleague = SigningKey::generate().unwrap();
    f.registry
        .trust_auditor(&colleague.public_key(), "Cem Auditor", &Actor::Operator)
        .unwrap();
    let second = || std::thread::sleep(std::time::Duration::from_millis(1100));
    second();
    decide(&f, &colleague, &p, Verdict::Reject, now_secs()).unwrap();
    second();
    let ahead = decide(&f, &f.auditor, &p, Verdict::Approve, now_secs() + 250);
    assert!(matches!(ahead, Ok(c) if c.changed));
    second();
    decide(&f, &colleague, &p, Verdict::Reject, now_secs()).unwrap();
    let err = f.registry.resolve(&m.id, || 0).unwrap_err().to_string();
    assert!(err.contains("rejected by Cem Auditor"), "{err}");
}

/// Versions 1.0.0 and 1.1.0 of an app asking for no sensitive capability
/// (so approved at once); the app's id.
fn two_plain_versions(f: &Fixture) -> &'static str {
    for v in ["1.0.0", "1.1.0"] {
        f.registry
            .submit(
                &package(v, &[], "Clinic Ltd", &f.publisher),
                &Actor::Operator,
            )
            .unwrap();
    }
    "org.clinic.booking"
}

#[test]
fn yanking_rolls_users_back_and_rollout_picks_a_stable_share() {
    let f = fixture();
    let app = two_plain_versions(&f);
    assert_eq!(f.registry.resolve(app, || 0).unwrap().version, "1.1.0");
    f.registry
        .yank(
            app,
            "1.1.0",
            true,
            "crashes",
            &Actor::Publisher("Clinic Ltd".into()),
        )
        .unwrap();
    assert_eq!(f.registry.resolve(app, || 0).unwrap().version, "1.0.0");
    assert!(matches!(
        f.registry.yank(
            app,
            "1.1.0",
            false,
            "",
            &Actor::Publisher("Other Co".into())
        ),
        Err(RegistryError::Forbidden(_))
    ));
    // The operator's takedown of a version its publisher yanked takes the
    // yank over: the publisher can no longer restore it.
    let clinic = Actor::Publisher("Clinic Ltd".into());
    let taken = f
        .registry
        .yank(app, "1.1.0", true, "malware", &Actor::Operator)
        .unwrap();
    assert!(taken.changed);
    let yank = taken.release.yanked.unwrap();
    assert_eq!(
        (yank.by.as_str(), yank.note.as_str()),
        ("operator", "malware")
    );
    assert!(matches!(
        f.registry.yank(app, "1.1.0", false, "", &clinic),
        Err(RegistryError::Forbidden(m)) if m.contains("yanked by operator")
    ));
    assert!(
        !f.registry
            .yank(app, "1.1.0", true, "again", &Actor::Operator)
            .unwrap()
            .changed,
        "the operator's own yank stays as it was"
    );
    f.registry
        .yank(app, "1.1.0", false, "fixed", &Actor::Operator)
        .unwrap();

    f.registry
        .set_rollout(app, "1.1.0", 50, &Actor::Operator)
        .unwrap();
    let users: Vec<String> = (0..400).map(|i| format!("pseudonym-{i}")).collect();
    let versions = |r: &Registry| -> Vec<String> {
        users
            .iter()
            .map(|u| {
                r.resolve(app, || rollout_bucket(u))
                    .unwrap()
                    .version
                    .clone()
            })
            .collect()
    };
    let first = versions(&f.registry);
    assert_eq!(
        first,
        versions(&f.registry),
        "each user keeps their version"
    );
    let new = first.iter().filter(|v| *v == "1.1.0").count();
    assert!(
        (150..=250).contains(&new),
        "{new} of 400 got the new version at 50%"
    );
    // Widening the rollout only adds users.
    f.registry
        .set_rollout(app, "1.1.0", 80, &Actor::Operator)
        .unwrap();
    let wider = versions(&f.registry);
    assert!(first
        .iter()
        .zip(&wider)
        .all(|(a, b)| a != "1.1.0" || b == "1.1.0"));
    assert!(matches!(
        f.registry.set_rollout(app, "1.1.0", 101, &Actor::Operator),
        Err(RegistryError::Invalid(_))
    ));
}

#[test]
fn the_rollout_bucket_is_drawn_once_and_only_for_a_staged_rollout() {
    let f = fixture();
    let app = two_plain_versions(&f);
    let drawn = std::cell::Cell::new(0);
    let drawn = &drawn;
    let bucket = |b: u8| {
        move || {
            drawn.set(drawn.get() + 1);
            b
        }
    };
    // No rollout: the newest version, without the bucket's keyed hash.
    assert_eq!(f.registry.resolve(app, bucket(0)).unwrap().version, "1.1.0");
    assert_eq!(drawn.get(), 0);
    f.registry
        .set_rollout(app, "1.1.0", 50, &Actor::Operator)
        .unwrap();
    assert_eq!(
        f.registry.resolve(app, bucket(10)).unwrap().version,
        "1.1.0"
    );
    assert_eq!(
        f.registry.resolve(app, bucket(90)).unwrap().version,
        "1.0.0"
    );
    assert_eq!(drawn.get(), 2);
    // Two staged versions, neither reaching this user: one draw for both.
    f.registry
        .set_rollout(app, "1.0.0", 95, &Actor::Operator)
        .unwrap();
    let err = f.registry.resolve(app, bucket(97)).unwrap_err().to_string();
    assert!(err.contains("95%"), "{err}");
    assert_eq!(drawn.get(), 3, "once per resolve");
}

#[test]
fn every_change_is_in_the_audit_log_with_its_actor() {
    let f = fixture();
    let p = package("1.0.0", &["payments"], "Clinic Ltd", &f.publisher);
    f.registry
        .submit(&p, &Actor::Publisher("Clinic Ltd".into()))
        .unwrap();
    decide(&f, &f.auditor, &p, Verdict::Approve, now_secs()).unwrap();
    f.registry
        .yank("org.clinic.booking", "1.0.0", true, "bad", &Actor::Operator)
        .unwrap();
    let kinds: Vec<(String, String)> = f
        .audit
        .entries(0, 100)
        .unwrap()
        .into_iter()
        .map(|e| {
            (
                e.event.kind,
                e.event.details.get("actor").cloned().unwrap_or_default(),
            )
        })
        .collect();
    let auditor = format!("auditor:{}", f.auditor.public_key());
    for expected in [
        ("registry.publisher.add", "operator"),
        ("registry.auditor.trust", "operator"),
        ("registry.publish", "publisher:Clinic Ltd"),
        ("registry.decision", auditor.as_str()),
        ("registry.yank", "operator"),
    ] {
        assert!(
            kinds
                .iter()
                .any(|(k, a)| k == expected.0 && a == expected.1),
            "{expected:?} missing from {kinds:?}"
        );
    }
    let report = f.registry.report("org.clinic.booking", &f.audit).unwrap();
    assert_eq!(report.versions[0].release.decisions.len(), 1);
    assert!(!report.versions[0].launchable);
}

/// Publisher and auditor names and ids are read beside what they sign:
/// nothing that draws as something else, and no id that passes for
/// another by case or reads as a path.
#[test]
fn party_names_that_draw_as_something_else_are_refused() {
    let f = fixture();
    let fresh = || SigningKey::generate().unwrap().public_key();
    for (id, name, why) in [
        (
            "Bank\u{202E}evil",
            "Bank",
            "a publisher id must not contain \\u{202e}",
        ),
        (
            "Pub\u{200B}A",
            "PubA",
            "a publisher id must not contain \\u{200b}",
        ),
        (
            "Pub\u{200D}A",
            "PubA",
            "a publisher id must not contain \\u{200d}",
        ),
        ("../../etc", "Etc", "must not contain `/`"),
        ("..", "Dots", "must not be only dots"),
        ("what?", "What", "must not contain `?`"),
        (
            "Fine Co",
            "line\u{2028}sep",
            "a publisher name must not contain \\u{2028}",
        ),
        (
            "Fine Co",
            " Fine",
            "a publisher name must not start or end with spaces",
        ),
    ] {
        let e = f
            .registry
            .add_publisher(id, name, &[fresh()], &Actor::Operator)
            .unwrap_err();
        assert!(
            matches!(&e, RegistryError::Invalid(m) if m.contains(why)),
            "{id:?} {name:?}: {e}"
        );
    }
    // Ids that differ only in case, spacing, punctuation or letters that
    // look alike pass for each other: a conflict with the one registered
    // first.
    for twin in [
        "CLINIC LTD",
        "clinic-ltd",
        "Clinic.Ltd",
        "\u{421}linic Ltd",
        "CIinic Ltd",
        "C1inic 1td",
        "\u{421}LINIC \u{4C0}TD",
    ] {
        let e = f
            .registry
            .add_publisher(twin, "Clinic", &[fresh()], &Actor::Operator)
            .unwrap_err();
        assert!(
            matches!(&e, RegistryError::Conflict(m) if m.contains("`Clinic Ltd` is registered already")),
            "{twin}: {e}"
        );
    }
    let e = f
        .registry
        .trust_auditor(&fresh(), "Ann\u{202E}Trusted\u{2066}", &Actor::Operator)
        .unwrap_err();
    assert!(matches!(e, RegistryError::Invalid(_)), "{e}");
    // A trusted key keeps its name: trusting it again under another is
    // refused, under the same one changes nothing.
    let ann = f.auditor.public_key();
    assert!(matches!(
        f.registry.trust_auditor(&ann, "Someone Else", &Actor::Operator),
        Err(RegistryError::Conflict(m)) if m.contains("as `Ann Auditor`")
    ));
    f.registry
        .trust_auditor(&ann, "Ann Auditor", &Actor::Operator)
        .unwrap();
    // Her next key may go by her name, as rotating needs; no key may go by
    // a name that only passes for it.
    f.registry
        .trust_auditor(&fresh(), "Ann Auditor", &Actor::Operator)
        .unwrap();
    for namesake in [
        "ANN AUDITOR",
        "\u{410}nn Auditor",
        "Ann Audítor",
        "Ann  Auditor",
    ] {
        let e = f
            .registry
            .trust_auditor(&fresh(), namesake, &Actor::Operator)
            .unwrap_err();
        assert!(
            matches!(&e, RegistryError::Conflict(m) if m.contains("named `Ann Auditor`")),
            "{namesake}: {e}"
        );
    }
    // Once her keys are distrusted, such a name is free for another.
    let bea = fresh();
    f.registry
        .trust_auditor(&bea, "Bea Auditor", &Actor::Operator)
        .unwrap();
    assert!(f.registry.distrust_auditor(&bea, &Actor::Operator).unwrap());
    f.registry
        .trust_auditor(&fresh(), "BEA AUDITOR", &Actor::Operator)
        .unwrap();
    // A name users would take for another publisher's is refused.
    for twin in ["Clinic", "CLINIC", "C1inic"] {
        let e = f
            .registry
            .add_publisher("impostor", twin, &[fresh()], &Actor::Operator)
            .unwrap_err();
        assert!(
            matches!(&e, RegistryError::Conflict(m) if m.contains("under the name `Clinic`")),
            "{twin}: {e}"
        );
    }
    // Names in other scripts, with the joiners they need, are fine.
    f.registry
        .add_publisher("مستشفى", "مستشفى المدينة", &[fresh()], &Actor::Operator)
        .unwrap();
    // Capitals of other scripts that draw as Latin ones are caught; words
    // that only share their letters' shapes loosely are not.
    f.registry
        .add_publisher("BANK", "Bank", &[fresh()], &Actor::Operator)
        .unwrap();
    let e = f
        .registry
        .add_publisher(
            "\u{412}\u{410}N\u{41A}",
            "Vank",
            &[fresh()],
            &Actor::Operator,
        )
        .unwrap_err();
    assert!(
        matches!(&e, RegistryError::Conflict(m) if m.contains("`BANK`")),
        "{e}"
    );
    for (id, name) in [("mail", "Mail"), ("mall", "Mall")] {
        f.registry
            .add_publisher(id, name, &[fresh()], &Actor::Operator)
            .unwrap();
    }
    assert_eq!(f.registry.publishers().unwrap().len(), 5);
}

/// A store written by an earlier version indexed ids by the skeletons of
/// its day, or not at all: a look-alike of such a publisher is still
/// refused. And twin names raced in at once: one is registered.
#[test]
fn look_alikes_are_refused_against_old_records_and_in_a_race() {
    let f = fixture();
    let old = Publisher {
        id: "Metro Pay".into(),
        name: "Metro Payments".into(),
        keys: vec![SigningKey::generate().unwrap().public_key()],
        added_at: now_secs(),
        development: false,
    };
    f.registry
        .store
        .put(Tree::Registry, &publisher_key(&old.id), &old)
        .unwrap();
    let fresh = || SigningKey::generate().unwrap().public_key();
    let e = f
        .registry
        .add_publisher("MetroPay", "Other", &[fresh()], &Actor::Operator)
        .unwrap_err();
    assert!(
        matches!(&e, RegistryError::Conflict(m) if m.contains("`Metro Pay`")),
        "{e}"
    );
    let e = f
        .registry
        .add_publisher("other", "METRO PAYMENTS", &[fresh()], &Actor::Operator)
        .unwrap_err();
    assert!(
        matches!(&e, RegistryError::Conflict(m) if m.contains("`Metro Payments`")),
        "{e}"
    );

    let registry = &f.registry;
    let outcomes: Vec<bool> = std::thread::scope(|scope| {
        let racers: Vec<_> = ["Sun Clinic", "SUN CLINIC", "Sun-Clinic", "Sun.Clinic"]
            .into_iter()
            .enumerate()
            .map(|(i, name)| {
                let key = fresh();
                scope.spawn(move || {
                    registry
                        .add_publisher(&format!("racer-{i}"), name, &[key], &Actor::Operator)
                        .is_ok()
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_eq!(outcomes.iter().filter(|ok| **ok).count(), 1, "{outcomes:?}");
}

/// A removed key is remembered, and so is one removed by a version that
/// did not remember removals yet: its removal is in the audit log. So is
/// which publishers `serve --apps` registered.
#[test]
fn removed_keys_stay_removed_across_versions() {
    let f = fixture();
    let spare = SigningKey::generate().unwrap().public_key();
    f.registry
        .add_publisher_key("Clinic Ltd", &spare, &Actor::Operator)
        .unwrap();
    f.registry
        .remove_publisher_key("Clinic Ltd", &spare, &Actor::Operator)
        .unwrap()
        .unwrap();
    assert!(matches!(
        f.registry.add_publisher_key("Clinic Ltd", &spare, &Actor::Operator),
        Err(RegistryError::RemovedKey { publisher, .. }) if publisher == "Clinic Ltd"
    ));

    // As an earlier version left it: the removal in the log only.
    let earlier = SigningKey::generate().unwrap().public_key();
    f.audit
        .append(
            Event {
                kind: "registry.publisher.key".into(),
                outcome: "removed".into(),
                ..Default::default()
            }
            .with_detail("publisher", "Clinic Ltd")
            .with_detail("key", earlier.as_str()),
        )
        .unwrap();
    // A publisher `serve --apps` registered, as an earlier version kept it.
    let dev = Publisher {
        id: "Dev Co".into(),
        name: "Dev Co".into(),
        keys: vec![SigningKey::generate().unwrap().public_key()],
        added_at: now_secs(),
        development: false,
    };
    let store = f.registry.store.clone();
    store
        .put(Tree::Registry, &publisher_key(&dev.id), &dev)
        .unwrap();
    f.audit
        .append(
            Event {
                kind: "registry.publisher.add".into(),
                outcome: "added".into(),
                ..Default::default()
            }
            .with_detail("publisher", "Dev Co")
            .with_detail("actor", "host:development"),
        )
        .unwrap();
    let reopened = Registry::open(store.clone(), f.audit.clone(), Policy::default()).unwrap();
    assert!(reopened.publisher("Dev Co").unwrap().unwrap().development);
    assert!(
        !reopened
            .publisher("Clinic Ltd")
            .unwrap()
            .unwrap()
            .development
    );
    assert!(matches!(
        reopened.add_publisher(
            "New Co",
            "New Co",
            std::slice::from_ref(&earlier),
            &Actor::Operator
        ),
        Err(RegistryError::RemovedKey { .. })
    ));
    assert!(matches!(
        reopened.trust_auditor(&earlier, "Eve", &Actor::Operator),
        Err(RegistryError::RemovedKey { .. })
    ));
    // The key removed from now on and the publisher's own stay as they are.
    assert!(matches!(
        reopened.add_publisher_key("Clinic Ltd", &spare, &Actor::Operator),
        Err(RegistryError::RemovedKey { .. })
    ));
    let opened_again = Registry::open(store, f.audit.clone(), Policy::default()).unwrap();
    assert_eq!(
        opened_again.publisher("Clinic Ltd").unwrap().unwrap().keys,
        vec![f.publisher.public_key()]
    );
}

/// A host of an earlier format did not know which keys were removed and
/// could give one a role again (a downgrade): such a key verifies nothing,
/// as publisher key or auditor key, whoever holds it.
#[test]
fn a_removed_key_an_earlier_version_gave_back_verifies_nothing() {
    let f = fixture();
    let spare = SigningKey::generate().unwrap();
    let registry = &f.registry;
    registry
        .add_publisher_key("Clinic Ltd", &spare.public_key(), &Actor::Operator)
        .unwrap();
    let before = package("1.0.0", &[], "Clinic Ltd", &spare);
    registry.submit(&before, &Actor::Operator).unwrap();
    registry
        .remove_publisher_key("Clinic Ltd", &spare.public_key(), &Actor::Operator)
        .unwrap()
        .unwrap();
    // As the earlier host wrote it: the key back on the publisher, and
    // trusted as an auditor's.
    let store = registry.store.clone();
    let mut clinic = registry.publisher("Clinic Ltd").unwrap().unwrap();
    clinic.keys.push(spare.public_key());
    store
        .put(Tree::Registry, &publisher_key("Clinic Ltd"), &clinic)
        .unwrap();
    let auditor = Auditor {
        key: spare.public_key(),
        name: "Mallory".into(),
        added_at: now_secs(),
    };
    store
        .put(Tree::Registry, &auditor_key(&auditor.key), &auditor)
        .unwrap();
    let registry = Registry::open(store, f.audit.clone(), Policy::default()).unwrap();

    assert_eq!(
        registry.publishers_of_key(&spare.public_key()).unwrap(),
        None
    );
    let after = package("1.1.0", &[], "Clinic Ltd", &spare);
    assert!(matches!(
        registry.submit(&after, &Actor::Operator),
        Err(RegistryError::RemovedKey { publisher, .. }) if publisher == "Clinic Ltd"
    ));
    // What the API asks to let a signed request act as an auditor.
    assert!(!registry.is_trusted(&spare.public_key()).unwrap());
    let f = Fixture { registry, ..f };
    assert!(matches!(
        decide(&f, &spare, &before, Verdict::Approve, now_secs()),
        Err(RegistryError::UntrustedAuditor(_))
    ));
    // The publisher's own key and the trusted auditor still work.
    assert_eq!(
        f.registry
            .publishers_of_key(&f.publisher.public_key())
            .unwrap(),
        Some(vec!["Clinic Ltd".to_string()])
    );
    decide(&f, &f.auditor, &before, Verdict::Approve, now_secs()).unwrap();
}

/// An earlier `serve --apps` added the development key to a publisher the
/// operator registered when an app named it: opening the store with this
/// version takes it off again, once, and says so in the audit log; the
/// development key stays with the publishers `--apps` registered itself.
#[test]
fn the_development_key_an_earlier_version_gave_an_operators_publisher_is_taken_back() {
    let f = fixture();
    let dev = SigningKey::generate().unwrap().public_key();
    // As the earlier version did it, and a publisher `--apps` registered.
    f.registry
        .add_publisher_key("Clinic Ltd", &dev, &Actor::Development)
        .unwrap();
    f.registry
        .add_publisher(
            "Dev Co",
            "Dev Co",
            std::slice::from_ref(&dev),
            &Actor::Development,
        )
        .unwrap();
    let store = f.registry.store.clone();
    let registry = Registry::open(store.clone(), f.audit.clone(), Policy::default()).unwrap();
    let clinic = registry.publisher("Clinic Ltd").unwrap().unwrap();
    assert_eq!(clinic.keys, vec![f.publisher.public_key()]);
    assert_eq!(
        registry.publisher("Dev Co").unwrap().unwrap().keys,
        vec![dev.clone()]
    );
    let taken: Vec<_> = f
        .audit
        .entries(0, 1000)
        .unwrap()
        .into_iter()
        .filter(|e| e.event.kind == "registry.publisher.key" && e.event.outcome == "removed")
        .collect();
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert_eq!(
        taken[0].event.details.get("actor").map(String::as_str),
        Some("host:upgrade")
    );
    // Not a removed key: `--apps` keeps using it for its own publishers.
    // And the step runs once: a key added after it is left alone.
    registry
        .add_publisher_key("Clinic Ltd", &dev, &Actor::Development)
        .unwrap();
    let again = Registry::open(store, f.audit.clone(), Policy::default()).unwrap();
    assert!(again
        .publisher("Clinic Ltd")
        .unwrap()
        .unwrap()
        .keys
        .contains(&dev));
}

/// An auditor key the operator stopped trusting never becomes a
/// publisher's, as a trusted one cannot; nor does one distrusted by a
/// version that did not remember it (the log has it).
#[test]
fn a_distrusted_auditor_key_never_becomes_a_publishers() {
    let f = fixture();
    let ann = f.auditor.public_key();
    assert!(f.registry.distrust_auditor(&ann, &Actor::Operator).unwrap());
    assert!(matches!(
        f.registry.add_publisher_key("Clinic Ltd", &ann, &Actor::Operator),
        Err(RegistryError::Conflict(m)) if m.contains("was a trusted auditor key")
    ));
    assert!(matches!(
        f.registry.add_publisher(
            "New Co",
            "New Co",
            std::slice::from_ref(&ann),
            &Actor::Operator
        ),
        Err(RegistryError::Conflict(_))
    ));

    // As an earlier version left it: the distrust in the log only.
    let store = f.registry.store.clone();
    let earlier = SigningKey::generate().unwrap().public_key();
    f.audit
        .append(
            Event {
                kind: "registry.auditor.distrust".into(),
                outcome: "removed".into(),
                ..Default::default()
            }
            .with_detail("key", earlier.as_str()),
        )
        .unwrap();
    store
        .transact(&[Tree::Registry], |t| {
            t.delete(Tree::Registry, b"m\0distrusted-auditors-remembered")?;
            Ok::<_, Abort<RegistryError>>(())
        })
        .unwrap();
    let reopened = Registry::open(store, f.audit.clone(), Policy::default()).unwrap();
    assert!(matches!(
        reopened.add_publisher_key("Clinic Ltd", &earlier, &Actor::Operator),
        Err(RegistryError::Conflict(m)) if m.contains("was a trusted auditor key")
    ));
}

#[test]
fn a_release_record_is_checked_against_its_signed_package() {
    let f = fixture();
    let p = package(
        "1.0.0",
        &["storage", "payments"],
        "Clinic Ltd",
        &f.publisher,
    );
    let release = f.registry.submit(&p, &Actor::Operator).unwrap().release;
    assert_eq!(release.check_package(&p), Ok(()));
    let stored =
        Package::from_bytes(&f.registry.package_bytes(&release.digest).unwrap().unwrap()).unwrap();
    assert_eq!(release.check_package(&stored), Ok(()));

    type Edit = fn(&mut Release);
    let edits: [(&str, Edit); 8] = [
        ("name", |r| r.name = "Bank".into()),
        ("description", |r| r.description.push('!')),
        ("capabilities", |r| {
            r.capabilities[1].reason = "never".into()
        }),
        ("capabilities", |r| {
            r.capabilities.pop();
        }),
        ("limits", |r| r.limits.memory_bytes += 1),
        ("publisher", |r| r.publisher = "Other Ltd".into()),
        ("version", |r| r.version = "1.0.1".into()),
        ("signing key", |r| {
            r.signed_by = SigningKey::generate().unwrap().public_key()
        }),
    ];
    for (field, edit) in edits {
        let mut edited = release.clone();
        edit(&mut edited);
        let problem = edited.check_package(&p).unwrap_err();
        assert!(problem.ends_with(&format!("in: {field}")), "{problem}");
    }

    // Another version's package is not this record's, and a package whose
    // signature is gone fails, whatever its digest.
    let other = package(
        "1.0.1",
        &["storage", "payments"],
        "Clinic Ltd",
        &f.publisher,
    );
    assert!(release
        .check_package(&other)
        .unwrap_err()
        .contains("digest"));
    let mut unsigned = release.clone();
    unsigned.digest = other.digest();
    let unsigned_package =
        Package::new(other.manifest_bytes().to_vec(), b"wasm 1.0.1".to_vec()).unwrap();
    assert!(unsigned
        .check_package(&unsigned_package)
        .unwrap_err()
        .contains("signature"));
}

#[test]
fn a_weak_key_is_no_publishers_or_auditors() {
    let f = fixture();
    for weak in [
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "7P_______________________________________38",
        // y = 2: no point of the curve.
        "AgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let publisher =
            f.registry
                .add_publisher("Weak Ltd", "Weak", &[weak.to_string()], &Actor::Operator);
        assert!(
            matches!(&publisher, Err(RegistryError::Invalid(m)) if m.contains("weak")),
            "{weak}: {publisher:?}"
        );
        let auditor = f
            .registry
            .trust_auditor(weak, "Wanda Weak", &Actor::Operator);
        assert!(
            matches!(&auditor, Err(RegistryError::Invalid(m)) if m.contains("weak")),
            "{weak}: {auditor:?}"
        );
    }
    // Nor a key given twice.
    let key = SigningKey::generate().unwrap().public_key();
    let twice =
        f.registry
            .add_publisher("Twice Ltd", "Twice", &[key.clone(), key], &Actor::Operator);
    assert!(
        matches!(&twice, Err(RegistryError::Invalid(m)) if m.contains("twice")),
        "{twice:?}"
    );
}

/// An approval planted in the store (another release's signed decision, or
/// one with a made-up signature, under a trusted auditor's key) launches
/// nothing, and the record check names it.
#[test]
fn an_approval_planted_in_the_store_does_not_hold() {
    let f = fixture();
    let sensitive = package("1.0.0", &["payments"], "Clinic Ltd", &f.publisher);
    let approved = f
        .registry
        .submit(&sensitive, &Actor::Operator)
        .unwrap()
        .release;
    let approved_at = decide(&f, &f.auditor, &sensitive, Verdict::Approve, now_secs())
        .unwrap()
        .release;
    assert_eq!(f.registry.launchable(&approved_at), Ok(()));
    assert_eq!(approved_at.check_package(&sensitive), Ok(()));

    let next = package("1.0.1", &["payments"], "Clinic Ltd", &f.publisher);
    let waiting = f.registry.submit(&next, &Actor::Operator).unwrap().release;
    assert!(f.registry.launchable(&waiting).is_err());
    let planted = |edit: &dyn Fn(&mut SignedDecision)| {
        let mut forged = approved_at.clone();
        forged.version = waiting.version.clone();
        forged.digest = waiting.digest.clone();
        forged.size = waiting.size;
        forged.submitted_at = waiting.submitted_at;
        if let DecidedBy::Auditor { signed, .. } = &mut forged.decisions[0].by {
            edit(signed);
        }
        forged
    };
    type Edit<'a> = Box<dyn Fn(&mut SignedDecision) + 'a>;
    let cases: [(&str, Edit); 3] = [
        ("another release's decision", Box::new(|_| {})),
        (
            "a made-up signature",
            Box::new(|s| {
                s.version = "1.0.1".into();
                s.digest = next.digest();
                s.signature = "A".repeat(86);
            }),
        ),
        (
            "a signature of another decision",
            Box::new(|s| {
                s.version = "1.0.1".into();
                s.digest = next.digest();
            }),
        ),
    ];
    for (what, edit) in cases {
        let forged = planted(edit.as_ref());
        let refused = f.registry.launchable(&forged).unwrap_err();
        assert!(refused.contains("does not verify"), "{what}: {refused}");
        let problem = forged.check_package(&next).unwrap_err();
        assert!(problem.contains("decisions"), "{what}: {problem}");
    }
    // The genuine approval still holds (and is not held up by the others).
    assert_eq!(f.registry.launchable(&approved_at), Ok(()));
    let _ = approved;
}
