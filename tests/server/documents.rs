//! The document wallet: issuers' tools, field-by-field disclosure through a
//! host-drawn sheet, and offline verification of what an app receives.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::{json, Value};
use superapp_sdk::credentials::{
    self as format, Expected, PresentationEnvelope, ReplayGuard, Trust, VerifyError,
};

use crate::apps::{serve, serve_with, setup, texts};
use crate::common::*;

const PROBE: &str = "dev.superapp.testing.probe";

pub(crate) fn cli(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_superapp"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) fn ok(args: &[&str]) -> String {
    let (ok, out, err) = cli(args);
    assert!(ok, "{args:?}: {out}{err}");
    out
}

async fn action(client: &Client, name: &str, fields: Value) -> String {
    let (status, v) = client
        .post(
            &format!("/apps/{PROBE}/events"),
            json!({"name": name, "fields": fields}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    texts(&v)[0].clone()
}

async fn ask(client: &Client, fields: &str) -> String {
    let out = action(
        client,
        "documents",
        json!({"type": "insurance-card", "fields": fields, "purpose": "Book an appointment"}),
    )
    .await;
    out.strip_prefix("ok: \"")
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no request id in {out}"))
        .to_string()
}

fn verify(file: &Path, app: &str, issuer: &str, host: &str) -> (bool, String) {
    let (ok, out, err) = cli(&[
        "documents",
        "verify",
        file.to_str().unwrap(),
        "--app",
        app,
        "--issuer-key",
        issuer,
        "--host-key",
        host,
    ]);
    (ok, format!("{out}{err}"))
}

#[tokio::test]
async fn documents_are_disclosed_field_by_field_and_verify_offline() {
    let s = setup(&["testing/probe"]);
    let tmp = tempfile::tempdir().unwrap();
    let server = serve(&s);
    Client::signed_up(&server, "alice").await;
    Client::signed_up(&server, "bob").await;
    assert!(server.terminate().success());

    // The issuer makes a key; the operator registers it; the issuer issues.
    let data = s.data.to_str().unwrap();
    let key = tmp.path().join("issuer.json");
    let issuer_pk = ok(&[
        "issuer",
        "keygen",
        "--id",
        "gov.health",
        "--out",
        key.to_str().unwrap(),
    ]);
    let issuer_pk = issuer_pk.trim();
    let (again, _, err) = cli(&[
        "issuer",
        "keygen",
        "--id",
        "gov.health",
        "--out",
        key.to_str().unwrap(),
    ]);
    assert!(
        !again && err.contains("cannot create"),
        "a key file is never replaced: {err}"
    );
    let add = |public_key: &str| {
        cli(&[
            "issuer",
            "add",
            "--id",
            "gov.health",
            "--name",
            "Health Insurance Agency",
            "--public-key",
            public_key,
            "--data-dir",
            data,
        ])
    };
    let (added, _, err) = add("notakey");
    assert!(!added, "{err}");
    assert!(
        err.contains("not an Ed25519 public key") && err.matches("base64url").count() == 1,
        "{err}"
    );
    let (added, _, err) = add(issuer_pk);
    assert!(added, "{err}");
    let claims = tmp.path().join("claims.json");
    std::fs::write(
        &claims,
        r#"{"policy-number": "P-4711", "insurer": "AOK", "birth-date": "1990-01-01"}"#,
    )
    .unwrap();
    let key_s = key.to_str().unwrap();
    let claims_s = claims.to_str().unwrap();
    let to_alice = [
        "issuer",
        "issue",
        "--key",
        key_s,
        "--user",
        "alice",
        "--type",
        "insurance-card",
        "--claims",
        claims_s,
    ];
    ok(&[&to_alice[..], &["--data-dir", data]].concat());
    // An already expired credential is refused at issuance, nor written
    // to a file for later.
    let stillborn = tmp.path().join("expired.json");
    for target in [["--data-dir", data], ["--out", stillborn.to_str().unwrap()]] {
        let (issued, _, err) = cli(&[&to_alice[..], &["--valid-days", "0"], &target].concat());
        assert!(!issued && err.contains("expired"), "{err}");
    }
    assert!(!stillborn.exists());
    // Bob's credential goes through the API, signed by the issuer.
    let bobs = tmp.path().join("bob.json");
    ok(&[
        "issuer",
        "issue",
        "--key",
        key_s,
        "--user",
        "bob",
        "--type",
        "insurance-card",
        "--claims",
        claims_s,
        "--out",
        bobs.to_str().unwrap(),
    ]);

    let server = serve(&s);
    let mut alice = Client::new(&server);
    alice.token = Some(alice.login("alice", "alice-password").await);
    let anyone = Client::new(&server);
    let issuance: Value = serde_json::from_str(&std::fs::read_to_string(&bobs).unwrap()).unwrap();
    let mut stolen = issuance.clone();
    stolen["subject"]["username"] = json!("alice");
    let (status, body) = anyone.post("/credentials", stolen).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "bound to bob, not alice: {body}"
    );
    let (status, body) = anyone.post("/credentials", issuance).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let (_, wallet) = alice.get("/me/documents").await;
    let docs = wallet["documents"].as_array().unwrap();
    assert_eq!(docs.len(), 1, "{wallet}");
    assert_eq!(docs[0]["issuer_name"], "Health Insurance Agency");
    assert_eq!(docs[0]["claims"].as_array().unwrap().len(), 3);
    let credential_id = docs[0]["id"].as_str().unwrap().to_string();

    // The app asks for two fields; the sheet lists exactly those.
    let request = ask(&alice, "policy-number,birth-date").await;
    let (_, prompts) = alice.get("/prompts").await;
    let sheet = &prompts[0];
    assert_eq!(sheet["kind"], "document");
    assert_eq!(sheet["app_name"], "Capability probe");
    assert_eq!(
        sheet["document"]["fields"],
        json!(["policy-number", "birth-date"])
    );
    assert_eq!(sheet["document"]["purpose"], "Book an appointment");
    assert_eq!(sheet["document"]["issuer"], "Health Insurance Agency");
    assert!(
        !prompts.to_string().contains("P-4711"),
        "the sheet shows no values to anyone but its drawer"
    );

    // Fields outside the request cannot be approved.
    let (status, _) = alice
        .post(
            &format!("/prompts/{request}/approve"),
            json!({"fields": ["insurer"]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The user unticks the birth date.
    let (status, answer) = alice
        .post(
            &format!("/prompts/{request}/approve"),
            json!({"fields": ["policy-number"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["request"]["shared"], json!(["policy-number"]));
    let seen = action(&alice, "last-event", json!({})).await;
    assert!(seen.contains("P-4711"), "{seen}");
    for withheld in ["1990-01-01", "AOK"] {
        assert!(!seen.contains(withheld), "the app saw {withheld}: {seen}");
        assert!(!answer.to_string().contains(withheld));
    }
    let envelope = action(&alice, "last-envelope", json!({})).await;
    let envelope = envelope.strip_prefix("ok: ").unwrap().to_string();
    let parsed: PresentationEnvelope = serde_json::from_str(&envelope).unwrap();
    assert_eq!(parsed.disclosures.len(), 1);

    // A provider's backend verifies it offline with two public keys.
    let (_, host) = anyone.get("/host-key").await;
    let host_pk = host["public_key"].as_str().unwrap().to_string();
    let file = tmp.path().join("presentation.json");
    std::fs::write(&file, &envelope).unwrap();
    let (good, out) = verify(&file, PROBE, issuer_pk, &host_pk);
    assert!(good && out.contains("policy-number = P-4711"), "{out}");
    assert!(!out.contains("birth-date"), "{out}");

    // Attacks: a changed claim, the wrong issuer, another app.
    let claim = format::open(&parsed.disclosures[0]).unwrap();
    let mut forged = parsed.clone();
    forged.disclosures[0] = format::disclosure(&claim.salt, "policy-number", "P-9999");
    let forged_file = tmp.path().join("forged.json");
    std::fs::write(&forged_file, serde_json::to_string(&forged).unwrap()).unwrap();
    let (good, out) = verify(&forged_file, PROBE, issuer_pk, &host_pk);
    assert!(!good && out.contains("not one the issuer signed"), "{out}");
    let other_key = tmp.path().join("other.json");
    let other_pk = ok(&[
        "issuer",
        "keygen",
        "--id",
        "gov.other",
        "--out",
        other_key.to_str().unwrap(),
    ]);
    let (good, out) = verify(&file, PROBE, other_pk.trim(), &host_pk);
    assert!(!good && out.contains("issuer's signature"), "{out}");
    let (good, out) = verify(&file, "dev.superapp.hello", issuer_pk, &host_pk);
    assert!(
        !good && out.contains("made for `dev.superapp.testing.probe`"),
        "{out}"
    );
    // The host's key does not sign bindings: a binding re-signed by anyone
    // but the holder key the host certified is refused.
    let mut resigned = parsed.clone();
    resigned.binding.signature = parsed.holder.signature.clone();
    let resigned_file = tmp.path().join("resigned.json");
    std::fs::write(&resigned_file, serde_json::to_string(&resigned).unwrap()).unwrap();
    let (good, out) = verify(&resigned_file, PROBE, issuer_pk, &host_pk);
    assert!(
        !good && out.contains("key binding does not verify"),
        "{out}"
    );

    // A replay is caught by its nonce; a fresh presentation is not.
    let trust = Trust {
        issuer_key: format::public_key(issuer_pk).unwrap(),
        host_key: format::public_key(&host_pk).unwrap(),
        revoked: vec![],
    };
    let expected = Expected {
        audience: PROBE.into(),
        nonce: None,
        max_age_secs: 600,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Expired (a year and a day on) or on the issuer's status list: refused.
    assert_eq!(
        format::verify_presentation(&parsed, &trust, &expected, now + 366 * 86_400),
        Err(VerifyError::Expired)
    );
    let listed = Trust {
        revoked: vec![credential_id.clone()],
        ..trust.clone()
    };
    assert_eq!(
        format::verify_presentation(&parsed, &listed, &expected, now),
        Err(VerifyError::Revoked)
    );
    let mut guard = ReplayGuard::default();
    let first = format::verify_presentation(&parsed, &trust, &expected, now).unwrap();
    guard.admit(&first).unwrap();
    assert_eq!(guard.admit(&first), Err(VerifyError::Replayed));
    let second = ask(&alice, "policy-number").await;
    let (status, _) = alice
        .post(&format!("/prompts/{second}/approve"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let fresh: PresentationEnvelope = serde_json::from_str(
        action(&alice, "last-envelope", json!({}))
            .await
            .strip_prefix("ok: ")
            .unwrap(),
    )
    .unwrap();
    guard
        .admit(&format::verify_presentation(&fresh, &trust, &expected, now).unwrap())
        .unwrap();

    // Declining tells the app, and nothing is disclosed.
    let declined = ask(&alice, "insurer").await;
    let (status, _) = alice
        .post(&format!("/prompts/{declined}/deny"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let seen = action(&alice, "last-event", json!({})).await;
    assert!(seen.contains("Declined") && !seen.contains("AOK"), "{seen}");

    // The privacy report names the fields disclosed, never their values.
    let (_, log) = alice.get(&format!("/me/access-log?app={PROBE}")).await;
    let disclosed: Vec<&Value> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "document.disclose")
        .collect();
    assert_eq!(disclosed.len(), 2, "{log}");
    assert_eq!(
        disclosed.last().unwrap()["details"]["fields"],
        "policy-number"
    );
    assert!(!log.to_string().contains("P-4711"));

    // An app names verifiers only under its own id: the probe asking for a
    // presentation "for" the wallet's verifier gets one for
    // `PROBE#verifier-abc`, which that verifier refuses.
    let present = |audience: &'static str, nonce: &'static str| {
        let alice = alice.clone();
        async move {
            let fields = json!({"type": "insurance-card", "fields": "policy-number", "purpose": "Show it",
                "audience": audience, "nonce": nonce});
            action(&alice, "documents-present", fields).await
        }
    };
    assert!(present("", "n0nce-1234").await.starts_with("err: invalid"));
    assert!(present("verifier-abc", "short")
        .await
        .starts_with("err: invalid"));
    assert!(present("verifier-abc", "has space1")
        .await
        .starts_with("err: invalid"));
    let asked = present("verifier-abc", "n0nce-1234").await;
    let id = asked
        .strip_prefix("ok: \"")
        .and_then(|s| s.strip_suffix('"'))
        .unwrap();
    let (_, prompts) = alice.get("/prompts").await;
    assert_eq!(prompts[0]["document"]["verifier"], "verifier-abc");
    let (status, _) = alice
        .post(&format!("/prompts/{id}/approve"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let relayed = action(&alice, "last-envelope", json!({})).await;
    let relayed_file = tmp.path().join("relayed.json");
    std::fs::write(&relayed_file, relayed.strip_prefix("ok: ").unwrap()).unwrap();
    let check = |audience: &str, nonce: &str| {
        cli(&[
            "documents",
            "verify",
            relayed_file.to_str().unwrap(),
            "--audience",
            audience,
            "--nonce",
            nonce,
            "--issuer-key",
            issuer_pk,
            "--host-key",
            &host_pk,
        ])
    };
    let (good, _, err) = check("dev.superapp.document-wallet#verifier-abc", "n0nce-1234");
    assert!(
        !good && err.contains("made for `dev.superapp.testing.probe#verifier-abc`"),
        "{err}"
    );
    let (good, out, err) = check(&format!("{PROBE}#verifier-abc"), "n0nce-1234");
    assert!(good, "{out}{err}");
    assert!(
        !out.contains("user "),
        "a third-party verifier never learns the pseudonym: {out}"
    );
    let (good, _, err) = check(&format!("{PROBE}#verifier-abc"), "another-nonce");
    assert!(!good && err.contains("answers another challenge"), "{err}");

    // The issuer revokes: verification against the status list fails, and
    // the wallet no longer offers the credential.
    assert!(server.terminate().success());
    ok(&[
        "issuer",
        "revoke",
        "--key",
        key_s,
        "--credential",
        &credential_id,
        "--data-dir",
        data,
    ]);
    let (good, out, err) = cli(&[
        "documents",
        "verify",
        file.to_str().unwrap(),
        "--app",
        PROBE,
        "--data-dir",
        data,
    ]);
    assert!(!good && err.contains("revoked"), "{out}{err}");
    let server = serve(&s);
    let mut alice = Client::new(&server);
    alice.token = Some(alice.login("alice", "alice-password").await);
    let (_, revoked) = alice.get("/issuers/gov.health/revoked").await;
    assert_eq!(revoked["revoked"], json!([credential_id]));
    // The same, signed by the host as listed now: a verifier knows it came
    // from the host and how old it is; no other issuer's list passes as it.
    let (_, host) = alice.get("/host-key").await;
    let host_key = format::public_key(host["public_key"].as_str().unwrap()).unwrap();
    let signed: format::Signed = serde_json::from_value(revoked["signed"].clone()).unwrap();
    let now = revoked["at"].as_u64().unwrap();
    let list = format::verify_status_list(&signed, &host_key, "gov.health", now, 60).unwrap();
    assert_eq!(list.revoked, std::slice::from_ref(&credential_id));
    let other = format::verify_status_list(&signed, &host_key, "ins.other", now, 60);
    assert!(matches!(other, Err(VerifyError::Malformed(_))), "{other:?}");
    let later = format::verify_status_list(&signed, &host_key, "gov.health", now + 61, 60);
    assert_eq!(later.unwrap_err(), VerifyError::Stale);
    // The CLI takes the same list from a file: the presentation that
    // verified before is refused as revoked; a list someone changed, or
    // one of another host, is refused as such and nothing is printed ok.
    let host_pk = host["public_key"].as_str().unwrap();
    let with_list = |list: &Value, host_pk: &str| {
        let path = tmp.path().join("status-list.json");
        std::fs::write(&path, list.to_string()).unwrap();
        cli(&[
            "documents",
            "verify",
            file.to_str().unwrap(),
            "--app",
            PROBE,
            "--issuer-key",
            issuer_pk,
            "--host-key",
            host_pk,
            "--status-list",
            path.to_str().unwrap(),
        ])
    };
    let (good, out, err) = with_list(&revoked, host_pk);
    assert!(!good && err.contains("revoked"), "{out}{err}");
    let (good, out, err) = with_list(&revoked["signed"], host_pk);
    assert!(!good && err.contains("revoked"), "{out}{err}");
    let mut emptied = revoked.clone();
    let payload = emptied["signed"]["payload"].as_str().unwrap().to_string();
    emptied["signed"]["payload"] = json!(payload.replace('A', "B"));
    let (good, out, err) = with_list(&emptied, host_pk);
    assert!(!good && err.contains("status list"), "{out}{err}");
    let (good, out, err) = with_list(&revoked, issuer_pk);
    assert!(!good && err.contains("status list"), "{out}{err}");
    let (good, out, err) = with_list(&json!({"revoked": []}), host_pk);
    assert!(!good && err.contains("is not a status list"), "{out}{err}");
    let after = ask(&alice, "policy-number").await;
    let (_, prompts) = alice.get("/prompts").await;
    assert_eq!(prompts[0]["document"]["issuer"], Value::Null);
    let (status, _) = alice
        .post(&format!("/prompts/{after}/approve"), json!({}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_unanswered_document_sheet_expires_and_the_app_hears_it() {
    let s = setup(&["testing/probe"]);
    let server = serve_with(&s, &[("SUPERAPP_DOCUMENT_TTL_SECS", "2")]);
    let alice = Client::signed_up(&server, "alice").await;
    let request = ask(&alice, "policy-number").await;
    assert_eq!(alice.get("/prompts").await.1.as_array().unwrap().len(), 1);
    let mut seen = String::new();
    for _ in 0..100 {
        seen = action(&alice, "last-event", json!({})).await;
        if seen.contains("expired") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        seen.contains("Declined") && seen.contains("expired"),
        "{seen}"
    );
    assert!(alice.get("/prompts").await.1.as_array().unwrap().is_empty());
    let (status, body) = alice
        .post(&format!("/prompts/{request}/approve"), json!({}))
        .await;
    assert!(status.is_client_error(), "{status}: {body}");
    let (_, log) = alice.get(&format!("/me/access-log?app={PROBE}")).await;
    assert!(log.to_string().contains("document.expire"), "{log}");
}

/// Revoking an app's `documents` permission declines its document sheets
/// still open: the refusal now stops new ones, and a sheet drawn before it
/// can no longer disclose anything. The app hears why.
#[tokio::test]
async fn revoking_the_permission_declines_the_apps_open_document_sheets() {
    let s = setup(&["testing/probe"]);
    let server = serve(&s);
    let alice = Client::signed_up(&server, "alice").await;
    // Listing documents takes a standing grant; alice gives it.
    let asked = action(&alice, "documents-held", json!({})).await;
    assert!(asked.contains("consent-required"), "{asked}");
    let consent = crate::hospital::prompt(&alice, "consent").await;
    alice.approve(&consent, json!({})).await;
    let request = ask(&alice, "policy-number").await;
    let other = ask(&alice, "insurer").await;
    // One sheet answered before the revocation stays answered.
    let (status, body) = alice
        .post(&format!("/prompts/{other}/deny"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = alice
        .call(
            reqwest::Method::DELETE,
            &format!("/me/grants/{PROBE}/documents"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(alice.get("/prompts").await.1, json!([]));
    let (status, body) = alice
        .post(&format!("/prompts/{request}/approve"), json!({}))
        .await;
    assert!(status.is_client_error(), "{status}: {body}");
    let seen = action(&alice, "last-event", json!({})).await;
    assert!(seen.contains("withdrew the permission"), "{seen}");
    // New sheets are refused outright.
    let again = action(
        &alice,
        "documents",
        json!({"type": "insurance-card", "fields": "policy-number", "purpose": "again"}),
    )
    .await;
    assert!(again.contains("denied"), "{again}");
    let (_, log) = alice.get(&format!("/me/access-log?app={PROBE}")).await;
    let kinds: Vec<&str> = log["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("{log}"))
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    let revoked = kinds.iter().position(|k| *k == "consent.revoke").unwrap();
    let declined = kinds.iter().rposition(|k| *k == "document.decline");
    assert!(declined.is_some_and(|d| d > revoked), "{kinds:?}");
}
