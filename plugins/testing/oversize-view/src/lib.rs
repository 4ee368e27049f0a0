//! Hostile test fixture: returns a view far over the node limit; the host must refuse it

use superapp_sdk::prelude::*;

struct Oversize;

impl App for Oversize {
    fn launch(_ctx: &Context) -> Result<View, AppError> {
        let items = (0..10_000).map(|i| format!("row {i}"));
        Ok(View::new("too big").list(items))
    }
}

superapp_sdk::export_app!(Oversize);
