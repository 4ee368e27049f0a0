//! Hostile test fixture: panics in launch; the host must report the message

use superapp_sdk::prelude::*;

struct Panics;

impl App for Panics {
    fn launch(_ctx: &Context) -> Result<View, AppError> {
        panic!("the fixture panicked on purpose");
    }
}

superapp_sdk::export_app!(Panics);
