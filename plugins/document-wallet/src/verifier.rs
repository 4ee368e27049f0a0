//! Verifier mode: a one-time challenge for the holder, and the check of
//! what they show, with the SDK's offline verifier.

use superapp_sdk::credentials::{
    self as format, Expected, KeyBinding, PresentationEnvelope, Trust,
};
use superapp_sdk::prelude::*;

use crate::CHALLENGE_PREFIX;

/// How old a presentation may be, in seconds.
const MAX_AGE_SECS: u64 = 300;
/// How long a challenge stays open, in seconds.
const CHALLENGE_TTL_SECS: u64 = 15 * 60;
/// Longest presentation accepted, in bytes.
const MAX_PRESENTATION: usize = 16 << 10;

/// This user's name as a verifier: the holder's presentation is bound to
/// it. It comes from the pseudonymous id, so it names nobody.
fn my_name() -> Result<String, AppError> {
    let id = identity::user_id()?;
    let short: String = id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    Ok(format!("verifier-{short}"))
}

fn challenge_key(nonce: &str) -> String {
    format!("challenge/{nonce}")
}

pub fn start() -> Result<View, AppError> {
    let nonce: String = random::bytes(16)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    storage::set_json(challenge_key(&nonce), &clock::unix_seconds())?;
    let challenge = format!("{CHALLENGE_PREFIX}{}:{nonce}", my_name()?);
    Ok(View::new("Check a document")
        .heading("Check a document")
        .text("Let the holder scan or copy this challenge into their wallet:")
        .qr_code(&challenge, "Challenge for the holder")
        .code(&challenge)
        .form(
            Form::new("verify", "Check")
                .input(
                    Input::new(
                        InputKind::Multiline,
                        "presentation",
                        "What the holder shows you",
                    )
                    .required(),
                )
                .note("Paste the text, or scan their QR code where your device can."),
        )
        .button(Button::new("Back", "home").style(ButtonStyle::Secondary)))
}

/// The open challenge a presentation answers, if it answers one of ours
/// that has not expired.
fn open_challenge(nonce: &str, now: u64) -> Result<Option<String>, AppError> {
    if nonce.is_empty() || nonce.len() > 128 {
        return Ok(None);
    }
    match storage::get_json::<u64>(challenge_key(nonce))? {
        Some(created) if now.saturating_sub(created) <= CHALLENGE_TTL_SECS => {
            Ok(Some(nonce.to_string()))
        }
        _ => Ok(None),
    }
}

fn not_valid(why: &str) -> View {
    View::new("Check result")
        .heading("Not valid")
        .push(Element::Badge("Not valid".into(), Tone::Danger))
        .styled(why, TextStyle::Error)
        .button(Button::new("Start another check", "verify-start"))
}

/// Check a presentation made for this verifier, `app` being this app's id.
pub fn check(app: &str, text: &str) -> Result<View, AppError> {
    if text.len() > MAX_PRESENTATION {
        return Ok(not_valid("This is far too long to be a presentation."));
    }
    let Ok(p) = serde_json::from_str::<PresentationEnvelope>(text.trim()) else {
        return Ok(not_valid(
            "This is not a presentation. Copy the whole text from the holder's screen.",
        ));
    };
    // Read (not trust) who issued it and which challenge it answers, to
    // know which keys and nonce to check it against.
    let Ok(credential) = format::peek::<format::CredentialPayload>(&p.credential) else {
        return Ok(not_valid("The document inside does not read."));
    };
    let claimed_nonce = format::peek::<KeyBinding>(&p.binding)
        .map(|b| b.nonce)
        .unwrap_or_default();
    let now = clock::unix_seconds();
    let trust = match documents::trust(&credential.iss, &credential.id) {
        Ok(t) => t,
        Err(Error::NotFound(_)) => {
            return Ok(not_valid(&format!(
                "`{}` is not a registered issuer.",
                credential.iss
            )));
        }
        // The host reads issuers' keys for the wallet under its documents
        // permission: without it, the check cannot be made, and the user
        // is told where to allow it.
        Err(Error::ConsentRequired(_) | Error::Denied(_)) => {
            return Ok(View::new("Check result")
                .heading("Cannot check yet")
                .text("Allow the wallet to use documents (under Privacy, or in the dialog) to check what others show you.")
                .button(Button::new("Start another check", "verify-start")));
        }
        Err(e) => return Err(e.into()),
    };
    let keys = match (
        format::public_key(&trust.issuer_key),
        format::public_key(&trust.host_key),
    ) {
        (Ok(issuer), Ok(host)) => Trust {
            issuer_key: issuer,
            host_key: host,
            revoked: if trust.revoked {
                vec![credential.id.clone()]
            } else {
                Vec::new()
            },
        },
        _ => return Err(AppError::Failed("the host's trust keys do not read".into())),
    };
    // A nonce this verifier did not hand out (or already used) is checked
    // against a fresh one, so the check reports it as a wrong challenge.
    let nonce =
        open_challenge(&claimed_nonce, now)?.unwrap_or_else(|| "no open challenge".to_string());
    let expected = Expected {
        audience: format!("{app}#{}", my_name()?),
        nonce: Some(nonce.clone()),
        max_age_secs: MAX_AGE_SECS,
    };
    let checks = format::checks(&p, &keys, &expected, now);
    let passed = checks.iter().all(|c| c.failure.is_none());
    let mut view = View::new("Check result");
    view = if passed {
        storage::delete(challenge_key(&nonce))?;
        view.heading("Valid")
            .push(Element::Badge("Valid".into(), Tone::Success))
    } else {
        view.heading("Not valid")
            .push(Element::Badge("Not valid".into(), Tone::Danger))
    };
    let mut rows = vec![(
        "Issuer".to_string(),
        format!("{} ({})", trust.issuer_name, credential.iss),
    )];
    rows.push(("Document".to_string(), credential.credential_type.clone()));
    rows.push((
        "Valid until".to_string(),
        clock::format_date((credential.exp / 86_400) as i64),
    ));
    view = view.details(rows).subheading("Checks");
    for c in &checks {
        let line = match &c.failure {
            None => format!("✓ {}", c.name),
            Some(e) => format!("✗ {}: {e}", c.name),
        };
        let style = if c.failure.is_none() {
            TextStyle::Body
        } else {
            TextStyle::Error
        };
        view = view.styled(line, style);
    }
    if passed {
        let verified = format::verify_presentation(&p, &keys, &expected, now).map_err(|e| {
            AppError::Failed(format!("checks passed but verification did not: {e}"))
        })?;
        view = view
            .subheading("Disclosed fields")
            .details(verified.claims.into_iter().map(|c| (c.name, c.value)));
    }
    Ok(view.button(Button::new("Start another check", "verify-start")))
}
