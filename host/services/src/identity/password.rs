//! Password hashing: PBKDF2-HMAC-SHA256 (ring) with a per-user random salt.

use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine as _;
use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;

/// A stored password: salt, iteration count and derived key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PasswordHash {
    salt: String,
    iterations: u32,
    hash: String,
}

impl PasswordHash {
    /// Derive a hash of `password` with a fresh salt. CPU-heavy: call it
    /// off the async executor.
    pub fn new(password: &str, iterations: NonZeroU32) -> PasswordHash {
        let mut salt = [0u8; SALT_LEN];
        // The OS generator failing leaves no safe way to continue.
        SystemRandom::new()
            .fill(&mut salt)
            .expect("system random number generator");
        let mut hash = [0u8; HASH_LEN];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iterations,
            &salt,
            password.as_bytes(),
            &mut hash,
        );
        PasswordHash {
            salt: B64.encode(salt),
            iterations: iterations.get(),
            hash: B64.encode(hash),
        }
    }

    /// Constant-time check of `password` against this hash.
    pub fn verify(&self, password: &str) -> bool {
        let (Ok(salt), Ok(hash), Some(iterations)) = (
            B64.decode(&self.salt),
            B64.decode(&self.hash),
            NonZeroU32::new(self.iterations),
        ) else {
            return false;
        };
        pbkdf2::verify(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iterations,
            &salt,
            password.as_bytes(),
            &hash,
        )
        .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_the_right_password_only() {
        let n = NonZeroU32::new(1_000).unwrap();
        let h = PasswordHash::new("correct horse", n);
        assert!(h.verify("correct horse"));
        assert!(!h.verify("correct horse "));
        assert!(!h.verify(""));
        let again = PasswordHash::new("correct horse", n);
        assert_ne!(h.salt, again.salt, "every hash gets its own salt");
    }
}
