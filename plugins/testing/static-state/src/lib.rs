//! Test fixture: tries to carry state from one event to the next.
//!
//! - `launch` counts launches in a static: if the host ever reused an
//!   instance, the count would go past 1 and leak between events and users.
//! - the `mark` action writes a secret (derived from the action's value)
//!   into the heap and into a page it grows; `scan` derives the same secret and counts where it appears in
//!   the whole linear memory. A clean instance finds only its own copy;
//!   `mark-and-scan` does both in one event, to show the scan finds marks.

use std::sync::atomic::{AtomicU64, Ordering};

use superapp_sdk::prelude::*;

static LAUNCHES: AtomicU64 = AtomicU64::new(0);

const PAGE: usize = 64 * 1024;

struct StaticState;

/// The secret for `value`: its bytes turned inside out, so the copy of the
/// action's value the host lowered into this memory does not match.
fn secret(value: &str) -> Vec<u8> {
    value.bytes().map(|b| b ^ 0xA5).collect()
}

/// Write `secret` over 64 KiB of the heap and into one newly grown page.
/// Returns the heap copy, which must stay alive.
fn mark(secret: &[u8]) -> Vec<u8> {
    let heap: Vec<u8> = secret.iter().copied().cycle().take(PAGE).collect();
    #[cfg(target_arch = "wasm32")]
    {
        let grown = core::arch::wasm32::memory_grow(0, 1);
        if grown != usize::MAX {
            // SAFETY: the page `memory_grow` just added belongs to nobody
            // (the allocator never saw it) and holds the secret.
            unsafe {
                let page = (grown * PAGE) as *mut u8;
                core::ptr::copy_nonoverlapping(secret.as_ptr(), page, secret.len());
            }
        }
    }
    heap
}

/// How many places in the whole linear memory hold `secret`.
fn scan(secret: &[u8]) -> usize {
    #[cfg(target_arch = "wasm32")]
    {
        let len = core::arch::wasm32::memory_size(0) * PAGE;
        // SAFETY: every byte from 1 to `memory.size` is readable linear
        // memory (byte 0 is skipped: a slice may not start at null), and the
        // slice is only read.
        let memory = unsafe { core::slice::from_raw_parts(1 as *const u8, len - 1) };
        memory
            .windows(secret.len())
            .filter(|w| *w == secret)
            .count()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = secret;
        0
    }
}

impl App for StaticState {
    fn launch(_ctx: &Context) -> Result<View, AppError> {
        let n = LAUNCHES.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(View::new("static").text(format!("launches seen by this instance: {n}")))
    }

    fn event(_ctx: &Context, event: Event) -> Result<View, AppError> {
        let Event::Action(action) = event else {
            return Err(AppError::unexpected(&event));
        };
        let value = action.value.clone().unwrap_or_default();
        if value.len() < 16 {
            return Err(AppError::BadRequest(
                "the secret is at least 16 bytes".into(),
            ));
        }
        let secret = secret(&value);
        let found = match action.name.as_str() {
            "mark" => {
                let kept = mark(&secret);
                std::hint::black_box(&kept);
                0
            }
            "scan" => scan(&secret),
            "mark-and-scan" => {
                let kept = mark(&secret);
                let found = scan(&secret);
                std::hint::black_box(&kept);
                found
            }
            _ => return Err(AppError::unexpected(&Event::Action(action))),
        };
        Ok(View::new("static").text(format!("found: {found}")))
    }
}

superapp_sdk::export_app!(StaticState);
