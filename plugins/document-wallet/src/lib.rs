//! Document Wallet: a citizen's official documents, issued by registered
//! issuers and kept by the super-app.
//!
//! - **Holder**: list the documents you hold (after allowing it once),
//!   and show a verifier in front of you the fields you pick: the
//!   super-app asks you to confirm, then binds the presentation to the
//!   verifier's one-time challenge with your holder key, and the wallet
//!   shows it as a QR code and as text to copy.
//! - **Verifier**: start a check to get a challenge for the holder, then
//!   paste (or scan) their presentation and see the issuer, the disclosed
//!   fields and whether the issuer's signature, the holder binding and the
//!   freshness check out, and why not when they don't. Each challenge is
//!   accepted once.
//!
//! Verification runs here, offline, with the SDK's `credentials` module:
//! the same code a provider's backend or `superapp documents verify` runs.

mod verifier;

use superapp_sdk::documents::{DocumentRequest, HeldDocument};
use superapp_sdk::prelude::*;
use superapp_sdk::{ConsentAnswer, DocumentOutcome};

/// How a verifier's challenge is written, for the holder to paste.
const CHALLENGE_PREFIX: &str = "superapp-challenge:";
/// What a QR code can carry; longer presentations are shown as text only.
const QR_MAX: usize = 2048;

struct Wallet;

impl App for Wallet {
    fn launch(_ctx: &Context) -> Result<View, AppError> {
        home(None)
    }

    fn event(ctx: &Context, event: Event) -> Result<View, AppError> {
        match event {
            Event::Action(a) => {
                let value = a.value.as_deref().unwrap_or_default();
                match a.name.as_str() {
                    "home" => home(None),
                    "present" => choose_fields(value, None),
                    "make-presentation" => make_presentation(&a),
                    "verify-start" => verifier::start(),
                    "verify" => {
                        verifier::check(&ctx.app_id, a.field("presentation").unwrap_or_default())
                    }
                    other => Err(AppError::BadRequest(format!("unknown action `{other}`"))),
                }
            }
            Event::Document(outcome) => presented(outcome),
            Event::Consent(ConsentAnswer { granted, .. }) => {
                home((!granted).then_some("You did not allow the wallet to list your documents."))
            }
            other => Err(AppError::unexpected(&other)),
        }
    }
}

superapp_sdk::export_app!(Wallet);

fn home(note: Option<&str>) -> Result<View, AppError> {
    let mut view = View::new("Document Wallet").heading("My documents");
    if let Some(note) = note {
        view = view.styled(note, TextStyle::Emphasis);
    }
    view = match documents::held() {
        Ok(held) if held.is_empty() => view.styled("You hold no documents yet.", TextStyle::Muted),
        Ok(held) => held.iter().fold(view, |v, h| v.push(document_card(h))),
        Err(Error::ConsentRequired(_)) => view.text(
            "Allow the wallet to list which documents you hold in the dialog. It sees their kinds and field names, never the values.",
        ),
        Err(Error::Denied(_)) => view.styled(
            "The wallet may not list your documents. Allow it under Privacy to use it as a holder.",
            TextStyle::Muted,
        ),
        Err(e) => return Err(e.into()),
    };
    Ok(view
        .divider()
        .subheading("Check someone's document")
        .text("Start a check, let them scan or copy your challenge, then paste what they show you.")
        .button(Button::new("Start a check", "verify-start").style(ButtonStyle::Secondary)))
}

fn document_card(h: &HeldDocument) -> Element {
    Element::Column(vec![
        Element::Heading(2, title(&h.credential_type)),
        Element::details([
            ("Issued by", h.issuer_name.clone()),
            (
                "Valid until",
                clock::format_date((h.expires_at / 86_400) as i64),
            ),
            ("Fields", h.fields.join(", ")),
        ]),
        Element::Button(
            Button::new(
                format!(
                    "Show your {} to a verifier",
                    title(&h.credential_type).to_lowercase()
                ),
                "present",
            )
            .value(&h.credential_type),
        ),
    ])
}

/// `health-insurance` → `Health insurance`.
fn title(credential_type: &str) -> String {
    let words = credential_type.replace(['-', '_', '.'], " ");
    let mut chars = words.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
        .unwrap_or_default()
}

/// The holder picks fields and pastes the verifier's challenge.
fn choose_fields(credential_type: &str, note: Option<&str>) -> Result<View, AppError> {
    // Not allowed to list them (yet): the home screen says why, and the
    // host has asked the user where it can.
    let held = match documents::held() {
        Ok(held) => held,
        Err(Error::ConsentRequired(_) | Error::Denied(_)) => return home(None),
        Err(e) => return Err(e.into()),
    };
    let Some(h) = held.iter().find(|h| h.credential_type == credential_type) else {
        return home(Some("You do not hold that document."));
    };
    let mut form = Form::new("make-presentation", "Create presentation")
        .input(
            Input::select(
                "type",
                "Document",
                [(h.credential_type.as_str(), title(&h.credential_type))],
            )
            .value(&h.credential_type),
        )
        .note("Tick only what the verifier needs to see.");
    for field in &h.fields {
        form = form.input(Input::new(InputKind::Checkbox, field, field));
    }
    form = form.input(
        Input::text("challenge", "The verifier's challenge")
            .placeholder(format!("{CHALLENGE_PREFIX}…"))
            .required(),
    );
    let mut view = View::new("Show a document").heading(format!(
        "Show your {}",
        title(&h.credential_type).to_lowercase()
    ));
    if let Some(note) = note {
        view = view.styled(note, TextStyle::Error);
    }
    Ok(view
        .form(form)
        .styled(
            "The super-app will ask you to confirm, and binds what you show to this verifier's challenge: it cannot be reused anywhere else.",
            TextStyle::Muted,
        )
        .button(Button::new("Back", "home").style(ButtonStyle::Secondary)))
}

/// `superapp-challenge:VERIFIER:NONCE` → (verifier, nonce).
fn parse_challenge(text: &str) -> Option<(String, String)> {
    let rest = text.trim().strip_prefix(CHALLENGE_PREFIX)?;
    let (verifier, nonce) = rest.split_once(':')?;
    let ok = |s: &str, max: usize| {
        !s.is_empty()
            && s.len() <= max
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    (ok(verifier, 64) && ok(nonce, 128)).then(|| (verifier.to_string(), nonce.to_string()))
}

fn make_presentation(a: &Action) -> Result<View, AppError> {
    let credential_type = a.field("type").unwrap_or_default().to_string();
    let Some((verifier, nonce)) = parse_challenge(a.field("challenge").unwrap_or_default()) else {
        return choose_fields(
            &credential_type,
            Some("That is not a verifier's challenge. Copy it again from their screen."),
        );
    };
    let chosen: Vec<String> = a
        .fields
        .iter()
        .filter(|(name, v)| {
            !matches!(name.as_str(), "type" | "challenge")
                && matches!(v.as_str(), "true" | "on" | "1" | "yes")
        })
        .map(|(name, _)| name.clone())
        .collect();
    if chosen.is_empty() {
        return choose_fields(&credential_type, Some("Tick at least one field to show."));
    }
    let request = DocumentRequest {
        credential_type: credential_type.clone(),
        fields: chosen,
        purpose: format!("Show to the verifier {verifier}, who is in front of you"),
        audience: Some(verifier),
        nonce: Some(nonce),
    };
    match documents::present(&request) {
        Ok(_) => Ok(View::new("Confirm")
            .heading("Confirm in the dialog")
            .text("The super-app shows you exactly which fields go to the verifier.")),
        Err(e) => choose_fields(
            &credential_type,
            Some(&format!("The presentation could not be made: {e:?}")),
        ),
    }
}

fn presented(outcome: DocumentOutcome) -> Result<View, AppError> {
    let p = match outcome {
        DocumentOutcome::Shared(p) => p,
        DocumentOutcome::Declined(_) => return home(Some("Nothing was shown.")),
    };
    let fields: Vec<String> = p.claims.iter().map(|c| c.name.clone()).collect();
    let mut view = View::new("Show this to the verifier")
        .heading("Show this to the verifier")
        .push(Element::details([
            ("Document", title(&p.credential_type)),
            ("Fields shown", fields.join(", ")),
        ]));
    view = if p.envelope.len() <= QR_MAX {
        view.qr_code(&p.envelope, "Let the verifier scan this")
    } else {
        view.styled(
            "Too long for one QR code: let the verifier copy the text below.",
            TextStyle::Muted,
        )
    };
    Ok(view
        .code(&p.envelope)
        .styled(
            "It works once, for this verifier, for the next few minutes.",
            TextStyle::Muted,
        )
        .button(Button::new("Done", "home").style(ButtonStyle::Secondary)))
}
