//! Hello: the tutorial mini-program. It remembers your name (`storage`),
//! counts your visits, shows the pseudonymous id the host gives this app
//! (`identity`) and logs what it does (`log`).

use superapp_sdk::prelude::*;

/// Longest name we accept, in characters.
const MAX_NAME: usize = 40;

struct Hello;

fn greeting() -> Result<View, AppError> {
    // Every event runs in a fresh instance, so state lives in storage.
    let name: Option<String> = storage::get_json("name")?;
    let visits = storage::get_json::<u64>("visits")?.unwrap_or(0);
    let view = View::new("Hello");
    Ok(match name {
        Some(name) => view
            .heading(format!("Hello, {name}!"))
            .text(format!("You have opened this app {visits} times."))
            .styled(
                format!("This app knows you as {}", identity::user_id()?),
                TextStyle::Muted,
            )
            .button(Button::new("Forget me", "forget").style(ButtonStyle::Danger)),
        None => view.heading("Hello!").form(
            Form::new("save-name", "Save")
                .input(Input::text("name", "What should we call you?").required())
                .note("Stored only for this app, only for you."),
        ),
    })
}

impl App for Hello {
    fn launch(_ctx: &Context) -> Result<View, AppError> {
        let visits = storage::get_json::<u64>("visits")?.unwrap_or(0);
        storage::set_json("visits", &(visits + 1))?;
        greeting()
    }

    fn event(_ctx: &Context, event: Event) -> Result<View, AppError> {
        let Event::Action(action) = event else {
            return Err(AppError::unexpected(&event));
        };
        match action.name.as_str() {
            "save-name" => {
                let name = action.field("name").unwrap_or("").trim();
                if name.is_empty() || name.chars().count() > MAX_NAME {
                    return Err(AppError::BadRequest(format!(
                        "a name is 1 to {MAX_NAME} characters"
                    )));
                }
                storage::set_json("name", &name)?;
                log::info("saved a name");
                greeting()
            }
            "forget" => {
                storage::delete("name")?;
                storage::delete("visits")?;
                log::info("forgot the user");
                greeting()
            }
            // One host call and a tiny view: the benchmark's round trip.
            "ping" => Ok(View::new("pong").text(identity::user_id()?)),
            _ => Err(AppError::unexpected(&Event::Action(action))),
        }
    }
}

superapp_sdk::export_app!(Hello);
