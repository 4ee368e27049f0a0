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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

    /// Whether the hash was made with fewer than `iterations` (a cost an
    /// earlier setting chose): made again at the next sign-in.
    pub fn cheaper_than(&self, iterations: NonZeroU32) -> bool {
        self.iterations < iterations.get()
    }

    /// The iterations a wrong password's check of this hash spends beyond
    /// its own to take as long as one at `iterations`: a hash of an
    /// earlier, lower cost is not told apart by how soon it says no.
    fn padding(&self, iterations: NonZeroU32) -> Option<NonZeroU32> {
        NonZeroU32::new(iterations.get().saturating_sub(self.iterations))
    }

    /// [`PasswordHash::verify`] taking at least as long as a check at
    /// `iterations` when the password is wrong.
    pub fn verify_at_cost(&self, password: &str, iterations: NonZeroU32) -> bool {
        let right = self.verify(password);
        if let (false, Some(extra)) = (right, self.padding(iterations)) {
            let mut spent = [0u8; HASH_LEN];
            pbkdf2::derive(
                pbkdf2::PBKDF2_HMAC_SHA256,
                extra,
                &[0u8; SALT_LEN],
                password.as_bytes(),
                &mut spent,
            );
            std::hint::black_box(spent);
        }
        right
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

    #[test]
    fn a_cheaper_hash_pads_a_wrong_passwords_check_to_the_current_cost() {
        let (old, now) = (
            NonZeroU32::new(1_000).unwrap(),
            NonZeroU32::new(5_000).unwrap(),
        );
        let h = PasswordHash::new("correct horse", old);
        assert!(h.cheaper_than(now));
        assert_eq!(h.padding(now), NonZeroU32::new(4_000));
        assert!(!h.cheaper_than(old));
        assert_eq!(h.padding(old), None, "nothing to add at its own cost");
        assert!(h.verify_at_cost("correct horse", now));
        assert!(!h.verify_at_cost("wrong horse", now));
    }
}
