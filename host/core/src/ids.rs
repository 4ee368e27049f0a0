//! Identifiers and time, shared by every layer: random ids, content
//! digests and the Unix clock.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
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
