//! Signing keys of publishers and auditors: Ed25519 (ring), kept as PKCS#8
//! in a PEM file only their owner may read, and named by their public key
//! (base64url, 43 characters) wherever they appear.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

const PEM_TAG: &str = "PRIVATE KEY";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{0} is not an Ed25519 private key in PKCS#8 PEM")]
    NotAKey(String),
    #[error("cannot generate a key: the system random source failed")]
    Random,
}

/// An Ed25519 key pair that signs packages or approvals.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    pkcs8: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private half.
        write!(f, "SigningKey({})", self.public_key())
    }
}

impl Clone for SigningKey {
    fn clone(&self) -> Self {
        // The PKCS#8 bytes were accepted when this key was made.
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&self.pkcs8)
            .expect("a key's own PKCS#8 parses");
        SigningKey {
            pair,
            pkcs8: self.pkcs8.clone(),
        }
    }
}

impl SigningKey {
    pub fn generate() -> Result<SigningKey, KeyError> {
        let pkcs8 =
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| KeyError::Random)?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| KeyError::Random)?;
        Ok(SigningKey {
            pair,
            pkcs8: pkcs8.as_ref().to_vec(),
        })
    }

    /// Read a PEM `PRIVATE KEY` (PKCS#8 v1 or v2, as ring or OpenSSL write it).
    pub fn from_pem(text: &str, name: &str) -> Result<SigningKey, KeyError> {
        let block = pem::parse(text).map_err(|_| KeyError::NotAKey(name.into()))?;
        if block.tag() != PEM_TAG {
            return Err(KeyError::NotAKey(name.into()));
        }
        let pkcs8 = block.contents().to_vec();
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8)
            .map_err(|_| KeyError::NotAKey(name.into()))?;
        Ok(SigningKey { pair, pkcs8 })
    }

    pub fn to_pem(&self) -> String {
        pem::encode(&pem::Pem::new(PEM_TAG, self.pkcs8.clone()))
    }

    /// Load a key file, refusing one that other users can read.
    pub fn load(path: &Path) -> Result<SigningKey, KeyError> {
        let file_error = |message: String| KeyError::File {
            path: path.display().to_string(),
            message,
        };
        let meta = std::fs::metadata(path).map_err(|e| file_error(e.to_string()))?;
        if meta.is_dir() {
            return Err(file_error("a directory, not a key file".into()));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(file_error(format!(
                "readable by other users (mode {mode:o}); run `chmod 600` on it"
            )));
        }
        // A PEM key is a few hundred bytes.
        let text = crate::files::read_text_at_most(path, 64 << 10)
            .map_err(|e| file_error(e.to_string()))?;
        SigningKey::from_pem(&text, &path.display().to_string())
    }

    /// Write the key to a new file with mode 0600; an existing file is
    /// never overwritten.
    pub fn write_new(&self, path: &Path) -> Result<(), KeyError> {
        let file_error = |e: std::io::Error| KeyError::File {
            path: path.display().to_string(),
            message: if e.kind() == std::io::ErrorKind::AlreadyExists {
                "already exists; keys are never overwritten".into()
            } else {
                e.to_string()
            },
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(file_error)?;
        file.write_all(self.to_pem().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(file_error)
    }

    /// The public key, base64url: how this key is named everywhere.
    pub fn public_key(&self) -> String {
        B64URL.encode(self.pair.public_key().as_ref())
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

/// Whether `signature` (raw bytes) is `public_key`'s signature of `message`.
/// A weak key ([`weak_public_key`]) verifies nothing.
pub fn verify(public_key: &str, message: &[u8], signature: &[u8]) -> bool {
    let Ok(key) = B64URL.decode(public_key) else {
        return false;
    };
    let Ok(raw) = <[u8; 32]>::try_from(key.as_slice()) else {
        return false;
    };
    !weak_public_key(&raw)
        && UnparsedPublicKey::new(&ED25519, raw)
            .verify(message, signature)
            .is_ok()
}

/// Whether a 32-byte Ed25519 public key is one no key pair has: not a
/// point of the curve, a point of small order (anyone can make signatures
/// that verify under it, whatever the message), or a coordinate written
/// past the field's modulus (no key pair encodes one so). Such a key is
/// refused wherever one is registered, and nothing verifies under it.
pub fn weak_public_key(key: &[u8; 32]) -> bool {
    let mut y = *key;
    y[31] &= 0x7f;
    // y ≥ p = 2^255 - 19: all ones above the lowest byte, which is ≥ 0xed.
    let past_modulus = y[0] >= 0xed && y[1..31].iter().all(|b| *b == 0xff) && y[31] == 0x7f;
    past_modulus || ed25519_dalek::VerifyingKey::from_bytes(key).map_or(true, |k| k.is_weak())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex32(hex: &str) -> [u8; 32] {
        hex::decode(hex).unwrap().try_into().unwrap()
    }

    #[test]
    fn small_order_and_past_modulus_keys_are_weak_and_real_ones_are_not() {
        for hex in [
            "0100000000000000000000000000000000000000000000000000000000000000",
            "0100000000000000000000000000000000000000000000000000000000000080",
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0000000000000000000000000000000000000000000000000000000000000080",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            // y = 2 is on no point of the curve.
            "0200000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert!(weak_public_key(&hex32(hex)), "{hex}");
        }
        // Under the neutral point, the neutral point and s = 0 make a
        // signature of any message: verify refuses the key, whatever ring
        // would say.
        let neutral = B64URL.encode(hex32(
            "0100000000000000000000000000000000000000000000000000000000000000",
        ));
        let mut forged =
            hex32("0100000000000000000000000000000000000000000000000000000000000000").to_vec();
        forged.extend([0u8; 32]);
        assert!(!verify(&neutral, b"approve com.evil 1.0.0", &forged));
        for _ in 0..32 {
            let key = SigningKey::generate().unwrap();
            let raw: [u8; 32] = B64URL.decode(key.public_key()).unwrap().try_into().unwrap();
            assert!(!weak_public_key(&raw));
        }
    }

    #[test]
    fn a_key_round_trips_through_its_file_and_signs_verifiably() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("publisher.pem");
        let key = SigningKey::generate().unwrap();
        key.write_new(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = SigningKey::load(&path).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        let sig = again.sign(b"message");
        assert!(verify(&key.public_key(), b"message", &sig));
        assert!(!verify(&key.public_key(), b"messagE", &sig));
        let other = SigningKey::generate().unwrap();
        assert!(!verify(&other.public_key(), b"message", &sig));
        assert!(!verify("not base64!", b"message", &sig));

        let refused = key.write_new(&path).unwrap_err();
        assert!(
            refused.to_string().contains("never overwritten"),
            "{refused}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = SigningKey::load(&path).unwrap_err();
        assert!(refused.to_string().contains("chmod 600"), "{refused}");
    }

    /// OpenSSL writes PKCS#8 v1 (no public key inside); the example key of
    /// RFC 8410, section 10.3, and its public key from section 10.1.
    #[test]
    fn an_openssl_style_pkcs8_v1_key_is_read() {
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";
        let key = SigningKey::from_pem(pem, "rfc8410").unwrap();
        let public =
            hex::decode("19bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1")
                .unwrap();
        assert_eq!(key.public_key(), B64URL.encode(public));
        assert!(verify(&key.public_key(), b"m", &key.sign(b"m")));
    }

    #[test]
    fn anything_but_a_pkcs8_ed25519_pem_is_refused() {
        for text in [
            "",
            "hello",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        ] {
            assert!(matches!(
                SigningKey::from_pem(text, "k"),
                Err(KeyError::NotAKey(_))
            ));
        }
    }
}
