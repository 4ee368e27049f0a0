//! Hostile test fixture: allocates until something stops it; the memory limit must

use superapp_sdk::prelude::*;

struct Bomb;

impl App for Bomb {
    fn launch(_ctx: &Context) -> Result<View, AppError> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // Touch every page so the allocation is real.
            hoard.push(std::hint::black_box(vec![0xAB; 1 << 20]));
        }
    }
}

superapp_sdk::export_app!(Bomb);
