//! Hostile test fixture: recurses without end; the stack limit must trap it

use superapp_sdk::prelude::*;

struct Deep;

fn dive(depth: u64, pad: [u64; 8]) -> u64 {
    // The padding and the work after the call keep the frames real.
    let next = std::hint::black_box(pad);
    dive(depth + 1, next) + next[0]
}

impl App for Deep {
    fn launch(_ctx: &Context) -> Result<View, AppError> {
        let n = dive(0, [1; 8]);
        Ok(View::new("unreachable").text(n.to_string()))
    }
}

superapp_sdk::export_app!(Deep);
