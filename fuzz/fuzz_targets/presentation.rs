//! The presentation verifier: the fuzzer either hands it a whole envelope
//! as JSON, or takes a valid presentation (made here with fixed keys) and
//! replaces, adds or drops parts of it, so every step of the check (issuer
//! signature, disclosures, revocation, holder certificate, key binding,
//! audience, nonce, age) sees hostile input past the steps before it. The
//! verifier answers with a reason, never panics, and the step-by-step
//! `checks` agree with it.
#![no_main]

use arbitrary::{Result, Unstructured};
use ed25519_dalek::{Signer, SigningKey};
use libfuzzer_sys::fuzz_target;
use superapp_sdk::credentials::{
    self as format, checks, verify_presentation, CredentialPayload, Expected, HolderCert,
    KeyBinding, PresentationEnvelope, Signed, Trust, VERSION,
};

const NOW: u64 = 1_800_000_000;

fn sign(key: &SigningKey, payload: &str) -> Signed {
    Signed {
        payload: payload.to_string(),
        signature: format::encode_key(&key.sign(payload.as_bytes()).to_bytes()),
    }
}

fn keys() -> (SigningKey, SigningKey, SigningKey) {
    (
        SigningKey::from_bytes(&[1; 32]),
        SigningKey::from_bytes(&[2; 32]),
        SigningKey::from_bytes(&[3; 32]),
    )
}

/// A presentation that verifies: two claims issued, one shown.
fn valid() -> (PresentationEnvelope, Vec<String>) {
    let (issuer, host, holder) = keys();
    let disclosures: Vec<String> = [("given-name", "Alice"), ("birth-date", "1990-05-04")]
        .iter()
        .enumerate()
        .map(|(i, (n, v))| format::disclosure(&format!("salt{i}"), n, v))
        .collect();
    let mut digests: Vec<String> = disclosures.iter().map(|d| format::digest(d)).collect();
    digests.sort();
    let credential = sign(
        &issuer,
        &format::encode_payload(&CredentialPayload {
            v: VERSION,
            id: "cred-1".into(),
            iss: "gov.example".into(),
            credential_type: "id-card".into(),
            sub: format::subject_binding("alice", "wallet-salt"),
            iat: NOW - 60,
            exp: NOW + 86_400,
            digests,
        }),
    );
    let shown = vec![disclosures[0].clone()];
    let envelope = PresentationEnvelope {
        holder: sign(
            &host,
            &format::encode_payload(&HolderCert {
                v: VERSION,
                sub: format::subject_binding("alice", "wallet-salt"),
                key: format::encode_key(holder.verifying_key().as_bytes()),
                iat: NOW,
            }),
        ),
        binding: sign(
            &holder,
            &format::encode_payload(&KeyBinding {
                v: VERSION,
                aud: "org.example.verifier".into(),
                nonce: "n-1".into(),
                iat: NOW,
                sd_hash: format::sd_hash(&credential, &shown),
                user: None,
            }),
        ),
        credential,
        disclosures: shown,
    };
    (envelope, disclosures)
}

/// A replacement for one part: raw text, or base64url of JSON the fuzzer
/// chose (so it gets past decoding into the parsers behind it).
fn part(u: &mut Unstructured) -> Result<String> {
    Ok(if u.arbitrary()? {
        let json: String = u.arbitrary()?;
        format::encode_key(json.as_bytes())
    } else {
        u.arbitrary()?
    })
}

fn mutate(u: &mut Unstructured) -> Result<PresentationEnvelope> {
    let (mut p, all) = valid();
    for _ in 0..u.int_in_range(0..=3)? {
        match u.int_in_range(0..=8)? {
            0 => p.credential.payload = part(u)?,
            1 => p.credential.signature = part(u)?,
            2 => p.holder.payload = part(u)?,
            3 => p.holder.signature = part(u)?,
            4 => p.binding.payload = part(u)?,
            5 => p.binding.signature = part(u)?,
            6 => p.disclosures.push(part(u)?),
            7 => p.disclosures.push(all[1].clone()),
            _ => {
                p.disclosures.pop();
            }
        }
    }
    Ok(p)
}

fuzz_target!(|data: &[u8]| {
    let envelope = match serde_json::from_slice::<PresentationEnvelope>(data) {
        Ok(e) => e,
        Err(_) => match mutate(&mut Unstructured::new(data)) {
            Ok(e) => e,
            Err(_) => return,
        },
    };
    let (issuer, host, _) = keys();
    let trust = Trust {
        issuer_key: issuer.verifying_key().to_bytes(),
        host_key: host.verifying_key().to_bytes(),
        revoked: vec!["revoked-credential".into()],
    };
    let expected = Expected {
        audience: "org.example.verifier".into(),
        nonce: Some("n-1".into()),
        max_age_secs: 300,
    };
    let verified = verify_presentation(&envelope, &trust, &expected, NOW);
    let steps = checks(&envelope, &trust, &expected, NOW);
    assert_eq!(
        verified.is_ok(),
        steps.iter().all(|c| c.failure.is_none()),
        "the verifier and its checks disagree"
    );
});
