//! Hostile test fixture: spins forever in launch; the time limit must stop it

use superapp_sdk::prelude::*;

struct Spin;

impl App for Spin {
    fn launch(_ctx: &Context) -> Result<View, AppError> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

superapp_sdk::export_app!(Spin);
