//! Load fixture: `work` runs `value` thousand rounds of an integer mix,
//! `touch` writes `value` MiB of fresh memory, anything else returns at once.

use superapp_sdk::prelude::*;

struct Busy;

fn amount(action: &Action) -> u64 {
    action
        .value
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl App for Busy {
    fn launch(_ctx: &Context) -> Result<View, AppError> {
        Ok(View::new("busy").text("ready"))
    }

    fn event(_ctx: &Context, event: Event) -> Result<View, AppError> {
        let Event::Action(action) = event else {
            return Err(AppError::unexpected(&event));
        };
        let result = match action.name.as_str() {
            "work" => {
                let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
                for i in 0..amount(&action) * 1000 {
                    x = std::hint::black_box(x ^ (x << 13) ^ (x >> 7) ^ i);
                }
                x % 1000
            }
            "touch" => {
                let bytes = (amount(&action) as usize) << 20;
                let mut v = vec![0u8; bytes];
                for chunk in v.chunks_mut(4096) {
                    chunk[0] = 1;
                }
                std::hint::black_box(&v).iter().map(|b| *b as u64).sum()
            }
            _ => 0,
        };
        Ok(View::new("busy").text(format!("done {result}")))
    }
}

superapp_sdk::export_app!(Busy);
