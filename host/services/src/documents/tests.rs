//! The wallet's rules for what an issuer hands over and registers, without
//! HTTP: credentials made with any tool are held to what
//! `superapp issuer issue` makes, ids are one credential's, keys and names
//! one issuer's, and revocations are checked before they count.

use superapp_sdk::credentials::{self as format, CredentialPayload, VERSION};
use superapp_store::Store;

use super::*;
use crate::audit::Audit;

struct Fixture {
    _dir: tempfile::TempDir,
    documents: Documents,
    audit: Audit,
    key: IssuerKeyFile,
    bob: User,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let audit = Audit::open(store.clone()).unwrap();
    let documents = Documents::new(store);
    let key = IssuerKeyFile::generate("gov.test").unwrap();
    documents
        .add_issuer(
            &audit,
            "test",
            "gov.test",
            "Civil Registry",
            &key.public_key,
        )
        .unwrap();
    let bob = User {
        id: "u-bob".into(),
        username: "bob".into(),
        display_name: "Bob".into(),
        created_at: 0,
    };
    Fixture {
        _dir: dir,
        documents,
        audit,
        key,
        bob,
    }
}

/// An issuance signed by `key` as a tool other than ours might make it.
fn by_hand(key: &IssuerKeyFile, id: &str, kind: &str, claims: &[(&str, &str)]) -> Issuance {
    let disclosures: Vec<String> = claims
        .iter()
        .map(|(name, value)| format::disclosure(&random_b64(16), name, value))
        .collect();
    let salt = random_b64(16);
    let now = now_secs();
    let payload = CredentialPayload {
        v: VERSION,
        id: id.into(),
        iss: key.issuer.clone(),
        credential_type: kind.into(),
        sub: format::subject_binding("bob", &salt),
        iat: now,
        exp: now + 3600,
        digests: disclosures.iter().map(|d| format::digest(d)).collect(),
    };
    Issuance {
        credential: sign(&key.pair().unwrap(), &payload),
        disclosures,
        subject: Subject {
            username: "bob".into(),
            salt,
        },
    }
}

#[test]
fn a_credential_made_by_hand_is_held_to_what_the_issuer_tool_makes() {
    let f = fixture();
    let name = [("name", "Bob Example")];
    for (issuance, what) in [
        (by_hand(&f.key, "", "id-card", &name), "empty id"),
        (
            by_hand(&f.key, &"x".repeat(129), "id-card", &name),
            "long id",
        ),
        (
            by_hand(&f.key, "../\u{202e} x", "id-card", &name),
            "id with path and override",
        ),
        (by_hand(&f.key, "c1", "Id Card\u{202e}", &name), "type"),
        (
            by_hand(&f.key, "c1", "id-card", &[("A B", "x")]),
            "claim name",
        ),
        (
            by_hand(&f.key, "c1", "id-card", &[("name", "Bob\u{7}\u{202e}")]),
            "claim value",
        ),
        (
            by_hand(&f.key, "c1", "id-card", &[("name", "\u{200b}")]),
            "invisible value",
        ),
        (by_hand(&f.key, "c1", "id-card", &[]), "no claims"),
    ] {
        let refused = f.documents.accept(&issuance, &f.bob);
        assert!(
            matches!(refused, Err(DocumentError::Invalid(_))),
            "{what}: {refused:?}"
        );
    }
    assert!(f.documents.wallet(&f.bob.id).unwrap().is_empty());
    let good = by_hand(&f.key, "c1", "id-card", &name);
    f.documents.accept(&good, &f.bob).unwrap();
    assert_eq!(f.documents.wallet(&f.bob.id).unwrap().len(), 1);
}

#[test]
fn an_issuers_credential_id_names_one_credential_in_a_wallet() {
    let f = fixture();
    let first = by_hand(&f.key, "c1", "id-card", &[("name", "bob-1")]);
    let held = f.documents.accept(&first, &f.bob).unwrap();
    // The same credential again is no change.
    assert_eq!(f.documents.accept(&first, &f.bob).unwrap(), held);
    // Another credential of its issuer under its id is refused.
    let again = by_hand(&f.key, "c1", "id-card", &[("name", "bob-2")]);
    let refused = f.documents.accept(&again, &f.bob);
    assert!(
        matches!(refused, Err(DocumentError::HeldAlready(ref id)) if id == "c1"),
        "{refused:?}"
    );
    // Another issuer's ids are its own: its `c1` is another credential,
    // and its answer says nothing of what the wallet holds of others.
    let other = IssuerKeyFile::generate("gov.other").unwrap();
    f.documents
        .add_issuer(
            &f.audit,
            "test",
            "gov.other",
            "Tax Office",
            &other.public_key,
        )
        .unwrap();
    let theirs = by_hand(&other, "c1", "tax-card", &[("number", "7")]);
    let theirs = f.documents.accept(&theirs, &f.bob).unwrap();
    let mut wallet = f.documents.wallet(&f.bob.id).unwrap();
    wallet.sort_by(|a, b| a.issuer.cmp(&b.issuer));
    assert_eq!(wallet, [theirs, held]);
}

/// A wallet written when credentials were keyed by id alone still reads,
/// and its credentials still count for their issuer's ids.
#[test]
fn credentials_kept_under_the_earlier_key_still_count() {
    let f = fixture();
    let first = by_hand(&f.key, "c1", "id-card", &[("name", "bob-1")]);
    let held = f.documents.accept(&first, &f.bob).unwrap();
    let store = &f.documents.store;
    store
        .transact(&[Tree::Credentials], |t| {
            t.delete(Tree::Credentials, &held_key(&f.bob.id, "gov.test", "c1"))?;
            txn_put(
                t,
                Tree::Credentials,
                &legacy_held_key(&f.bob.id, "c1"),
                &held,
            )?;
            Ok::<_, Abort<()>>(())
        })
        .unwrap();
    assert_eq!(
        f.documents.wallet(&f.bob.id).unwrap(),
        std::slice::from_ref(&held)
    );
    assert_eq!(f.documents.accept(&first, &f.bob).unwrap(), held);
    let again = by_hand(&f.key, "c1", "id-card", &[("name", "bob-2")]);
    assert!(matches!(
        f.documents.accept(&again, &f.bob),
        Err(DocumentError::HeldAlready(_))
    ));
    assert_eq!(f.documents.wallet(&f.bob.id).unwrap(), [held]);
}

#[test]
fn an_issuer_is_registered_with_a_key_and_a_name_of_its_own() {
    let f = fixture();
    let add =
        |id: &str, name: &str, key: &str| f.documents.add_issuer(&f.audit, "test", id, name, key);
    let fresh = IssuerKeyFile::generate("gov.x").unwrap().public_key;
    for weak in [
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let refused = add("gov.weak", "Weak Office", weak)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("weak"), "{refused}");
    }
    let refused = add("gov.copy", "Other Office", &f.key.public_key)
        .unwrap_err()
        .to_string();
    assert!(refused.contains("issuer `gov.test`'s"), "{refused}");
    for look_alike in [
        "Civil Registry",
        "CIVIL  REGISTRY",
        "Civil Reg\u{456}stry",
        "Civil Regístry",
    ] {
        let refused = add("gov.fake", look_alike, &fresh).unwrap_err().to_string();
        assert!(
            refused.contains("goes by the name"),
            "{look_alike}: {refused}"
        );
    }
    add("gov.x", "Tax Office", &fresh).unwrap();
    assert_eq!(f.documents.issuers().unwrap().len(), 2);
}

#[test]
fn a_revocation_is_checked_before_it_counts() {
    let f = fixture();
    let revocation = |revoke: &str, iat: u64| {
        sign(
            &f.key.pair().unwrap(),
            &RevocationPayload {
                v: VERSION,
                iss: "gov.test".into(),
                revoke: revoke.into(),
                iat,
            },
        )
    };
    let now = now_secs();
    for (signed, why) in [
        (revocation("c1", 0), "before its issuer"),
        (revocation("c1", now + 10_000_000), "in the future"),
        (revocation("", now), "credential id"),
        (revocation(&"c".repeat(3000), now), "credential id"),
        (revocation("c\u{202e}1", now), "credential id"),
    ] {
        let refused = f.documents.revoke(&signed).unwrap_err().to_string();
        assert!(refused.contains(why), "{why}: {refused}");
    }
    let mut forged = revocation("c1", now);
    forged.signature = revocation("c2", now).signature;
    let refused = f.documents.revoke(&forged).unwrap_err().to_string();
    assert!(refused.contains("revocation does not verify"), "{refused}");
    assert!(f.documents.revoked("gov.test").unwrap().is_empty());
    f.documents.revoke(&revocation("c1", now)).unwrap();
    assert_eq!(f.documents.revoked("gov.test").unwrap(), ["c1"]);
}
