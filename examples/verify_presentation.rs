//! A provider's backend verifying a document presentation offline, with
//! nothing but two public keys: the issuer's and the super-app host's.
//!
//! ```text
//! cargo run -p superapp-sdk --example verify-presentation
//! ```
//!
//! To stay runnable on its own, the first half plays the issuer, the host
//! and the holder's wallet and makes a presentation, as they would on their
//! side; the second half is all a backend needs (`verify`). Give it a real
//! presentation instead (the `envelope` an app received, or the text the
//! Document Wallet shows) with the keys from `GET /api/v1/issuers` and
//! `GET /api/v1/host-key`:
//!
//! ```text
//! cargo run -p superapp-sdk --example verify-presentation -- \
//!     presentation.json ISSUER_KEY HOST_KEY AUDIENCE [NONCE]
//! ```

use ed25519_dalek::{Signer, SigningKey};
use superapp_sdk::credentials::{
    self as format, CredentialPayload, Expected, HolderCert, KeyBinding, PresentationEnvelope,
    Signed, Trust, VERSION,
};

/// What a backend does: check the presentation against the two public
/// keys and what it expects (its audience, the nonce it handed out, age).
fn verify(presentation: &str, trust: &Trust, expected: &Expected, now: u64) -> Result<(), String> {
    let envelope: PresentationEnvelope =
        serde_json::from_str(presentation).map_err(|e| format!("not a presentation: {e}"))?;
    let verified =
        format::verify_presentation(&envelope, trust, expected, now).map_err(|e| e.to_string())?;
    println!(
        "  valid: {} from {}, for {}",
        verified.credential.credential_type, verified.credential.iss, verified.binding.aud
    );
    for claim in verified.claims {
        println!("  {} = {}", claim.name, claim.value);
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if let [file, issuer, host, audience, rest @ ..] = args.as_slice() {
        let trust = Trust {
            issuer_key: format::public_key(issuer).expect("an issuer key"),
            host_key: format::public_key(host).expect("a host key"),
            revoked: Vec::new(),
        };
        let expected = Expected {
            audience: audience.clone(),
            nonce: rest.first().cloned(),
            max_age_secs: 300,
        };
        let text = std::fs::read_to_string(file).expect("a readable presentation file");
        match verify(&text, &trust, &expected, now) {
            Ok(()) => {}
            Err(e) => {
                eprintln!("refused: {e}");
                std::process::exit(1);
            }
        }
        return;
    }

    // The issuer, the host and the holder's key (fixed seeds: a demo).
    let issuer = SigningKey::from_bytes(&[1; 32]);
    let host = SigningKey::from_bytes(&[2; 32]);
    let holder = SigningKey::from_bytes(&[3; 32]);
    let sign = |key: &SigningKey, payload: &str| Signed {
        payload: payload.to_string(),
        signature: format::encode_key(&key.sign(payload.as_bytes()).to_bytes()),
    };

    // The issuer signs the digests of salted claims (SD-JWT style).
    let claims = [("given-name", "Alice"), ("birth-date", "1990-05-04")];
    let disclosures: Vec<String> = claims
        .iter()
        .enumerate()
        .map(|(i, (name, value))| format::disclosure(&format!("salt{i}"), name, value))
        .collect();
    let mut digests: Vec<String> = disclosures.iter().map(|d| format::digest(d)).collect();
    digests.sort();
    let credential = sign(
        &issuer,
        &format::encode_payload(&CredentialPayload {
            v: VERSION,
            id: "cred-1".into(),
            iss: "gov.civil-registry".into(),
            credential_type: "id-card".into(),
            sub: format::subject_binding("alice", "wallet-salt"),
            iat: now - 60,
            exp: now + 86_400,
            digests,
        }),
    );

    // The holder shows one claim to a clinic's backend, which asked with
    // the nonce `n-42`: the host certifies the holder key, the holder key
    // signs the audience, the nonce, the time and exactly what is shown.
    let shown = vec![disclosures[0].clone()];
    let present = |audience: &str, nonce: &str| PresentationEnvelope {
        holder: sign(
            &host,
            &format::encode_payload(&HolderCert {
                v: VERSION,
                sub: format::subject_binding("alice", "wallet-salt"),
                key: format::encode_key(holder.verifying_key().as_bytes()),
                iat: now,
            }),
        ),
        binding: sign(
            &holder,
            &format::encode_payload(&KeyBinding {
                v: VERSION,
                aud: audience.into(),
                nonce: nonce.into(),
                iat: now,
                sd_hash: format::sd_hash(&credential, &shown),
                user: None,
            }),
        ),
        credential: credential.clone(),
        disclosures: shown.clone(),
    };

    // The backend: two public keys and what it expects.
    let trust = Trust {
        issuer_key: issuer.verifying_key().to_bytes(),
        host_key: host.verifying_key().to_bytes(),
        revoked: Vec::new(),
    };
    let expected = Expected {
        audience: "org.example.clinic".into(),
        nonce: Some("n-42".into()),
        max_age_secs: 300,
    };
    let good = serde_json::to_string(&present("org.example.clinic", "n-42")).unwrap();
    println!("the presentation made for this backend:");
    verify(&good, &trust, &expected, now).expect("it verifies");

    // The same presentation replayed elsewhere, or with a claim added, fails.
    let elsewhere = serde_json::to_string(&present("org.example.bank", "n-42")).unwrap();
    let mut padded = present("org.example.clinic", "n-42");
    padded.disclosures.push(disclosures[1].clone());
    let padded = serde_json::to_string(&padded).unwrap();
    for (what, text) in [
        ("made for a bank", elsewhere),
        ("with a claim slipped in", padded),
    ] {
        match verify(&text, &trust, &expected, now) {
            Ok(()) => panic!("{what}: accepted"),
            Err(e) => println!("{what}: refused ({e})"),
        }
    }
}
