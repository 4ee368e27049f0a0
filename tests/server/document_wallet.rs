//! The document-wallet mini-program end to end: a holder shows chosen
//! fields of an issued ID card to a verifier in front of them, bound to
//! the verifier's challenge with the holder's key; the verifier checks it
//! in the app and offline, and tampered, replayed and redirected
//! presentations are refused with the reason.

use serde_json::{json, Value};

use crate::apps::{serve, setup};
use crate::common::*;
use crate::documents::{cli, ok};
use crate::hospital::{badges, buttons, pairs, prompt, shows};

const WALLET: &str = "dev.superapp.document-wallet";

async fn act(c: &Client, name: &str, value: Option<&str>, fields: Value) -> Value {
    c.act(WALLET, name, value, fields).await
}

/// The text of the view's `code` paragraph (what a user copies).
fn code(view: &Value) -> String {
    fn find(node: &Value) -> Option<String> {
        if node["type"] == "text" && node["style"] == "code" {
            return node["text"].as_str().map(str::to_string);
        }
        node["children"].as_array()?.iter().find_map(find)
    }
    find(&view["view"]["body"]).unwrap_or_else(|| panic!("no code text in {view}"))
}

fn qr(view: &Value) -> Option<String> {
    fn find(node: &Value) -> Option<String> {
        if node["type"] == "qr-code" {
            return node["text"].as_str().map(str::to_string);
        }
        node["children"].as_array()?.iter().find_map(find)
    }
    find(&view["view"]["body"])
}

/// A verifier starts a check; the challenge they show the holder.
async fn challenge(verifier: &Client) -> String {
    let view = act(verifier, "verify-start", None, json!({})).await;
    let text = code(&view);
    assert_eq!(
        qr(&view).as_deref(),
        Some(text.as_str()),
        "the QR code holds the same challenge"
    );
    text
}

#[tokio::test]
async fn a_presentation_verifies_once_for_its_verifier_and_every_tampering_is_named() {
    let s = setup(&["document-wallet"]);
    let server = serve(&s);
    for user in ["alice", "bob", "carol"] {
        Client::signed_up(&server, user).await;
    }
    assert!(server.terminate().success());
    // The civil registry issues alice an ID card.
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("registry.json");
    let key = key.to_str().unwrap();
    let issuer_pk = ok(&[
        "issuer",
        "keygen",
        "--id",
        "gov.civil-registry",
        "--out",
        key,
    ]);
    let data = s.data.to_str().unwrap();
    ok(&[
        "issuer",
        "add",
        "--id",
        "gov.civil-registry",
        "--name",
        "Civil Registry",
        "--public-key",
        issuer_pk.trim(),
        "--data-dir",
        data,
    ]);
    let claims = tmp.path().join("id.json");
    std::fs::write(
        &claims,
        r#"{"given-name": "Alice", "family-name": "Liddell", "birth-date": "1990-05-04", "nationality": "GB"}"#,
    )
    .unwrap();
    ok(&[
        "issuer",
        "issue",
        "--key",
        key,
        "--user",
        "alice",
        "--type",
        "id-card",
        "--claims",
        claims.to_str().unwrap(),
        "--data-dir",
        data,
    ]);
    let server = serve(&s);
    let login = |name: &'static str| {
        let server_base = Client::new(&server);
        async move {
            let mut c = server_base;
            c.token = Some(c.login(name, &format!("{name}-password")).await);
            c
        }
    };
    let (alice, bob, carol) = (
        login("alice").await,
        login("bob").await,
        login("carol").await,
    );

    // Alice lets the wallet list her documents (kinds and field names only).
    let (_, first) = alice
        .post(&format!("/apps/{WALLET}/launch"), json!({}))
        .await;
    assert!(shows(&first, "Allow the wallet to list"), "{first}");
    // Asking to show a document before that is allowed draws the same
    // screen, not an error.
    let early = act(&alice, "present", Some("id-card"), json!({})).await;
    assert!(shows(&early, "Allow the wallet to list"), "{early}");
    let consent = prompt(&alice, "consent").await;
    assert_eq!(consent["capability"], "documents");
    let home = alice.approve(&consent, json!({})).await;
    assert_eq!(pairs(&home)["Issued by"], "Civil Registry", "{home}");
    assert_eq!(
        pairs(&home)["Fields"],
        "birth-date, family-name, given-name, nationality"
    );
    assert!(
        !home.to_string().contains("Liddell"),
        "no values before a disclosure"
    );
    assert_eq!(buttons(&home, "present")[0].1, "id-card");

    // Bob, the verifier, gives alice his challenge; alice shows two fields.
    let bobs = challenge(&bob).await;
    let (verifier, nonce) = bobs
        .strip_prefix("superapp-challenge:")
        .unwrap()
        .split_once(':')
        .unwrap();
    let form = act(&alice, "present", Some("id-card"), json!({})).await;
    assert!(shows(&form, "The verifier's challenge"), "{form}");
    act(
        &alice,
        "make-presentation",
        None,
        json!({"type": "id-card", "given-name": "true", "birth-date": "true", "family-name": "false", "challenge": bobs}),
    )
    .await;
    let sheet = prompt(&alice, "document").await;
    assert_eq!(
        sheet["document"]["fields"],
        json!(["birth-date", "given-name"])
    );
    assert_eq!(
        sheet["document"]["verifier"], verifier,
        "the sheet names who will see it"
    );
    let shown = alice.approve(&sheet, json!({})).await;
    let presentation = code(&shown);
    assert_eq!(qr(&shown).as_deref(), Some(presentation.as_str()));
    assert!(
        !presentation.contains("Liddell"),
        "unticked fields stay home"
    );

    // Bob checks it: issuer, the two fields, three checks passed.
    let result = act(&bob, "verify", None, json!({"presentation": presentation})).await;
    assert_eq!(badges(&result), ["Valid"], "{result}");
    let fields = pairs(&result);
    assert_eq!(fields["Issuer"], "Civil Registry (gov.civil-registry)");
    assert_eq!(fields["given-name"], "Alice");
    assert_eq!(fields["birth-date"], "1990-05-04");
    assert!(!fields.contains_key("family-name"));
    for check in [
        "✓ issuer signature",
        "✓ holder binding",
        "✓ freshness and audience",
    ] {
        assert!(shows(&result, check), "{check}: {result}");
    }

    // The same presentation again: the challenge was used up.
    let replay = act(&bob, "verify", None, json!({"presentation": presentation})).await;
    assert_eq!(badges(&replay), ["Not valid"]);
    assert!(shows(&replay, "answers another challenge"), "{replay}");

    // Shown to another verifier: made for bob, not for carol.
    challenge(&carol).await;
    let elsewhere = act(
        &carol,
        "verify",
        None,
        json!({"presentation": presentation}),
    )
    .await;
    assert_eq!(badges(&elsewhere), ["Not valid"]);
    assert!(
        shows(&elsewhere, &format!("made for `{WALLET}#{verifier}`")),
        "{elsewhere}"
    );

    // A changed field: the issuer never signed it.
    let fresh = challenge(&bob).await;
    let mut envelope: Value = serde_json::from_str(&presentation).unwrap();
    let (_, fresh_nonce) = fresh.rsplit_once(':').unwrap();
    let forged = superapp_sdk::credentials::disclosure("salt", "birth-date", "2010-01-01");
    envelope["disclosures"][0] = json!(forged);
    let tampered = act(
        &bob,
        "verify",
        None,
        json!({"presentation": envelope.to_string()}),
    )
    .await;
    assert_eq!(badges(&tampered), ["Not valid"]);
    assert!(
        shows(
            &tampered,
            "✗ issuer signature: claim `birth-date` is not one the issuer signed"
        ),
        "{tampered}"
    );
    assert!(shows(&tampered, "✗ holder binding"), "{tampered}");
    // A document from an issuer nobody registered.
    let mut stranger: Value = serde_json::from_str(&presentation).unwrap();
    let signed: superapp_sdk::credentials::Signed =
        serde_json::from_value(stranger["credential"].clone()).unwrap();
    let mut claims: Value = superapp_sdk::credentials::peek(&signed).unwrap();
    claims["iss"] = json!("gov.nowhere");
    stranger["credential"]["payload"] = json!(superapp_sdk::credentials::encode_payload(&claims));
    let unknown = act(
        &bob,
        "verify",
        None,
        json!({"presentation": stranger.to_string()}),
    )
    .await;
    assert!(
        shows(&unknown, "`gov.nowhere` is not a registered issuer"),
        "{unknown}"
    );
    // Garbage is named as such.
    let junk = act(&bob, "verify", None, json!({"presentation": "hello"})).await;
    assert!(shows(&junk, "This is not a presentation"), "{junk}");
    // Carol will not let the wallet use documents: checking one then says
    // what to allow, where it failed with an app error.
    carol
        .post(&format!("/apps/{WALLET}/launch"), json!({}))
        .await;
    let asked = prompt(&carol, "consent").await;
    let (status, _) = carol
        .post(
            &format!("/prompts/{}/deny", asked["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let refused = act(
        &carol,
        "verify",
        None,
        json!({"presentation": presentation}),
    )
    .await;
    assert!(shows(&refused, "Cannot check yet"), "{refused}");

    // The offline verifier agrees: good for bob's audience and nonce, refused
    // for another nonce. The fresh challenge is still open in the app.
    let (_, host) = Client::new(&server).get("/host-key").await;
    let host_pk = host["public_key"].as_str().unwrap();
    let file = tmp.path().join("presentation.json");
    std::fs::write(&file, &presentation).unwrap();
    let audience = format!("{WALLET}#{verifier}");
    let verify = |nonce: &str| {
        cli(&[
            "documents",
            "verify",
            file.to_str().unwrap(),
            "--audience",
            &audience,
            "--nonce",
            nonce,
            "--issuer-key",
            issuer_pk.trim(),
            "--host-key",
            host_pk,
        ])
    };
    let (good, out, err) = verify(nonce);
    assert!(good && out.contains("given-name = Alice"), "{out}{err}");
    let (good, _, err) = verify(fresh_nonce);
    assert!(!good && err.contains("answers another challenge"), "{err}");
    drop(server);
}
