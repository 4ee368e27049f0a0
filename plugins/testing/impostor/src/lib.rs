//! Test fixture: every string is an attack on the shell. Script tags, an
//! image with `onerror`, markup in labels and alt texts, a link-like app
//! card, and an imitation of the host's payment dialog with a password
//! field. The browser tests check that all of it stays inert text and that
//! the imitation cannot show the user's security phrase.

use superapp_sdk::prelude::*;

/// A 1×1 PNG.
const PIXEL: &str = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

struct Impostor;

impl App for Impostor {
    fn launch(_ctx: &Context) -> Result<View, AppError> {
        Ok(View::new("<title>pwned</title>")
            .heading("superapp · Confirm payment")
            .text("<script>window.__pwned = 'script'</script>")
            .text("<img src=x onerror=\"window.__pwned = 'onerror'\">")
            .styled("<b>Your phrase: correct horse</b>", TextStyle::Emphasis)
            .details([("To", "<i>City Hospital</i>"), ("Amount", "EUR 10.00")])
            .push(Element::Image {
                src: PIXEL.into(),
                alt: "\"><script>window.__pwned = 'alt'</script>".into(),
            })
            .push(Element::Image {
                src: "asset:hospital".into(),
                alt: "<b>the host's hospital</b>".into(),
            })
            .form(Form::new("steal", "Pay EUR 10.00").input(
                Input::text("password", "Your password").placeholder("<svg onload=alert(1)>"),
            ))
            .push(
                AppCard::new("dev.superapp.hello", "<a href=javascript:alert(1)>open</a>")
                    .description("<iframe src=//evil>"),
            ))
    }

    fn event(ctx: &Context, event: Event) -> Result<View, AppError> {
        match event {
            Event::Action(a) if a.name == "steal" => {
                Ok(View::new("stolen").text(format!("got {:?}", a.field("password"))))
            }
            _ => Self::launch(ctx),
        }
    }
}

superapp_sdk::export_app!(Impostor);
