//! Identifiers and time, shared by every layer: random ids, content
//! digests and the Unix clock.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};

/// The environment variable that shifts the clock of every superapp
/// process that reads it (see [`clock_offset_secs`]).
pub const CLOCK_OFFSET_ENV: &str = "SUPERAPP_CLOCK_OFFSET_SECS";

/// How many seconds this process's clock runs ahead (or, negative, behind)
/// the system's: `SUPERAPP_CLOCK_OFFSET_SECS`, read once. It exists for
/// tests and demonstrations of what happens later (an appointment on its
/// day, a hold that ran out), and moves everything the host dates at once:
/// sessions, payment sheets, holds, the apps' `clock`. Never set it in
/// production; `serve` warns when it is set.
pub fn clock_offset_secs() -> i64 {
    static OFFSET: OnceLock<i64> = OnceLock::new();
    *OFFSET.get_or_init(|| {
        std::env::var(CLOCK_OFFSET_ENV)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    })
}

/// Time since the Unix epoch, shifted by [`clock_offset_secs`].
pub fn now() -> Duration {
    let real = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let offset = Duration::from_secs(clock_offset_secs().unsigned_abs());
    if clock_offset_secs() >= 0 {
        real.saturating_add(offset)
    } else {
        real.saturating_sub(offset)
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    now().as_secs()
}

/// `N` bytes from the operating system's secure random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS random source failing is not something a host can run without.
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random source works");
    bytes
}

/// A fresh random id: 128 bits, base64url.
pub fn new_id() -> String {
    B64URL.encode(random_bytes::<16>())
}

/// A bearer secret: 256 bits, base64url.
pub fn random_token() -> String {
    B64URL.encode(random_bytes::<32>())
}

/// Hex SHA-256 of `bytes`: how components, packages and call arguments are
/// named by content.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(digest(&SHA256, bytes))
}
