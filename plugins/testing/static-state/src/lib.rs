//! Test fixture: counts launches in a static. If the host ever reused an
//! instance, the count would go past 1 and leak between events and users.

use std::sync::atomic::{AtomicU64, Ordering};

use superapp_sdk::prelude::*;

static LAUNCHES: AtomicU64 = AtomicU64::new(0);

struct StaticState;

impl App for StaticState {
    fn launch(_ctx: &Context) -> Result<View, AppError> {
        let n = LAUNCHES.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(View::new("static").text(format!("launches seen by this instance: {n}")))
    }
}

superapp_sdk::export_app!(StaticState);
