//! Packages: one file holding a mini-program's manifest and component, and
//! its publisher's signature over their digests. What providers publish,
//! auditors inspect and approve, and the registry stores.
//!
//! A package is a ustar archive written deterministically (fixed order,
//! times, owners and modes), so the same manifest and component always make
//! the same bytes: `plugin.toml`, then `component.wasm`, then, once signed,
//! `signature.json`. Reading is strict: anything else, in any other order,
//! a cut-off file or bytes after the end are refused with a message that
//! names the problem.

use std::io::Read as _;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::ids::sha256_hex;
use crate::keys::{self, SigningKey};
use crate::manifest::{Manifest, ManifestError};

/// The largest package accepted, in bytes.
pub const MAX_PACKAGE_BYTES: usize = 32 << 20;

/// What is wrong with `bytes` as a WebAssembly component, judged by its
/// first 8 bytes (the `\0asm` magic, a version, and the component layer:
/// 1; a core module's is 0), or `None`: the rest is checked where the
/// component is compiled. Worded to follow a file's name.
pub fn component_preamble_problem(bytes: &[u8]) -> Option<&'static str> {
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => None,
        Some([0, b'a', b's', b'm', _, _, 0, 0]) => Some(
            "is a core WebAssembly module, not a component: `superapp plugin build` makes the component",
        ),
        _ => Some("is not a WebAssembly component"),
    }
}
/// The largest manifest inside a package, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 64 << 10;
const MAX_SIGNATURE_BYTES: usize = 4 << 10;

const MANIFEST: &str = "plugin.toml";
const COMPONENT: &str = "component.wasm";
const SIGNATURE: &str = "signature.json";
const BLOCK: usize = 512;
/// What a package signature signs, before the two digests.
const SIGNED_CONTEXT: &str = "superapp package signature v1";

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("the package is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("the package is cut off: it ends before its end-of-archive marker")]
    Truncated,
    #[error("not a superapp package: {0}")]
    Malformed(String),
    #[error("the package has no {0}")]
    Missing(&'static str),
    /// Its text includes the cause, so the cause is not also its source
    /// (which would print it twice in an error chain).
    #[error("the package's plugin.toml is invalid: {0}")]
    Manifest(ManifestError),
    #[error("the package is not signed (sign it with `superapp plugin sign`)")]
    Unsigned,
    #[error("the signature is invalid: {0}")]
    BadSignature(String),
}

impl From<ManifestError> for PackageError {
    fn from(e: ManifestError) -> Self {
        PackageError::Manifest(e)
    }
}

/// The publisher's signature over the digests of the manifest and the
/// component, as stored in `signature.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// Always `ed25519`.
    pub algorithm: String,
    /// The signer's public key, base64url.
    pub public_key: String,
    pub manifest_sha256: String,
    pub component_sha256: String,
    /// Base64url of the 64-byte signature.
    pub signature: String,
}

impl Signature {
    /// The digest of the package this signature signs: what
    /// [`Package::digest`] gives for it.
    pub fn package_digest(&self) -> String {
        sha256_hex(&signed_message(
            &self.manifest_sha256,
            &self.component_sha256,
        ))
    }
}

/// A package in memory: the manifest exactly as written (its bytes are
/// what is signed), the parsed manifest, the component, the signature.
#[derive(Debug, Clone)]
pub struct Package {
    manifest_bytes: Vec<u8>,
    manifest: Manifest,
    component: Vec<u8>,
    signature: Option<Signature>,
}

/// The size of an archive of entries of these sizes: each a header block
/// and its data padded to whole blocks, then the two zero blocks that end it.
fn archive_len(sizes: impl IntoIterator<Item = usize>) -> usize {
    sizes
        .into_iter()
        .map(|size| BLOCK + size.div_ceil(BLOCK) * BLOCK)
        .sum::<usize>()
        + 2 * BLOCK
}

fn signed_message(manifest_sha256: &str, component_sha256: &str) -> Vec<u8> {
    format!("{SIGNED_CONTEXT}\nmanifest-sha256 {manifest_sha256}\ncomponent-sha256 {component_sha256}\n")
        .into_bytes()
}

impl Package {
    /// An unsigned package of `manifest` (plugin.toml's bytes) and
    /// `component`, made now: its manifest must be publishable
    /// ([`Manifest::check_publishable`]).
    pub fn new(manifest: Vec<u8>, component: Vec<u8>) -> Result<Package, PackageError> {
        let package = Package::assemble(manifest, component)?;
        package.manifest.check_publishable()?;
        Ok(package)
    }

    /// A package of these parts, its manifest held to the rules every
    /// stored one was (not to those a host tightened since).
    fn assemble(manifest: Vec<u8>, component: Vec<u8>) -> Result<Package, PackageError> {
        if manifest.len() > MAX_MANIFEST_BYTES {
            return Err(PackageError::Malformed(format!(
                "plugin.toml is {} bytes; the limit is {MAX_MANIFEST_BYTES}",
                manifest.len()
            )));
        }
        let text = std::str::from_utf8(&manifest)
            .map_err(|_| PackageError::Malformed("plugin.toml is not UTF-8".into()))?;
        let parsed = Manifest::parse(text)?;
        let size = archive_len([manifest.len(), component.len()]);
        if size > MAX_PACKAGE_BYTES {
            return Err(PackageError::TooLarge {
                size,
                limit: MAX_PACKAGE_BYTES,
            });
        }
        Ok(Package {
            manifest_bytes: manifest,
            manifest: parsed,
            component,
            signature: None,
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn manifest_bytes(&self) -> &[u8] {
        &self.manifest_bytes
    }

    pub fn component(&self) -> &[u8] {
        &self.component
    }

    pub fn signature(&self) -> Option<&Signature> {
        self.signature.as_ref()
    }

    pub fn manifest_sha256(&self) -> String {
        sha256_hex(&self.manifest_bytes)
    }

    pub fn component_sha256(&self) -> String {
        sha256_hex(&self.component)
    }

    /// The package's identity, which approvals are bound to: the SHA-256 of
    /// the two digests the publisher signs (so signing does not change it).
    pub fn digest(&self) -> String {
        sha256_hex(&signed_message(
            &self.manifest_sha256(),
            &self.component_sha256(),
        ))
    }

    /// Sign (or re-sign) the package with the publisher's key.
    pub fn sign(&mut self, key: &SigningKey) {
        let (m, c) = (self.manifest_sha256(), self.component_sha256());
        let signature = key.sign(&signed_message(&m, &c));
        self.signature = Some(Signature {
            algorithm: "ed25519".into(),
            public_key: key.public_key(),
            manifest_sha256: m,
            component_sha256: c,
            signature: B64URL.encode(signature),
        });
    }

    /// Check the signature: it names the digests of this manifest and
    /// component, and it verifies under the key it names. Whether that key
    /// belongs to the publisher is the registry's question.
    pub fn verify(&self) -> Result<&Signature, PackageError> {
        self.check_signature(true)
    }

    /// [`Package::verify`], taking the component's digest from the
    /// signature instead of hashing the component: for a stored package
    /// that was verified whole when it was published, whose component is
    /// found in the precompile cache by that digest and checked against it
    /// whenever it is compiled.
    pub fn verify_but_component(&self) -> Result<&Signature, PackageError> {
        self.check_signature(false)
    }

    fn check_signature(&self, hash_component: bool) -> Result<&Signature, PackageError> {
        let sig = self.signature.as_ref().ok_or(PackageError::Unsigned)?;
        if sig.algorithm != "ed25519" {
            return Err(PackageError::BadSignature(format!(
                "unknown algorithm `{}`",
                sig.algorithm
            )));
        }
        if sig.manifest_sha256 != self.manifest_sha256() {
            return Err(PackageError::BadSignature(
                "plugin.toml was changed after signing".into(),
            ));
        }
        if hash_component && sig.component_sha256 != self.component_sha256() {
            return Err(PackageError::BadSignature(
                "the component was changed after signing".into(),
            ));
        }
        let raw = B64URL
            .decode(&sig.signature)
            .map_err(|_| PackageError::BadSignature("the signature is not base64url".into()))?;
        let message = signed_message(&sig.manifest_sha256, &sig.component_sha256);
        if !keys::verify(&sig.public_key, &message, &raw) {
            return Err(PackageError::BadSignature(format!(
                "it does not verify under key {}",
                sig.public_key
            )));
        }
        Ok(sig)
    }

    /// The package file: the same package always gives the same bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            header.set_size(data.len() as u64);
            // Entry names are short ASCII constants: setting them cannot fail.
            header.set_path(name).expect("entry name fits");
            header.set_cksum();
            builder.append(&header, data).expect("writing to memory");
        };
        add(MANIFEST, &self.manifest_bytes);
        add(COMPONENT, &self.component);
        if let Some(sig) = &self.signature {
            let json = serde_json::to_vec_pretty(sig).expect("signatures serialize");
            add(SIGNATURE, &json);
        }
        builder.into_inner().expect("writing to memory")
    }

    /// Whether `head`, the first block of a file, is that of a package
    /// file: a ustar header naming the manifest, as [`Package::to_bytes`]
    /// begins. A tool that writes packages replaces only such a file.
    pub fn looks_like_one(head: &[u8]) -> bool {
        head.len() >= BLOCK
            && head[257..262] == *b"ustar"
            && head[..100].split(|b| *b == 0).next() == Some(MANIFEST.as_bytes())
    }

    /// Read a package file strictly.
    pub fn from_bytes(bytes: &[u8]) -> Result<Package, PackageError> {
        if bytes.len() > MAX_PACKAGE_BYTES {
            return Err(PackageError::TooLarge {
                size: bytes.len(),
                limit: MAX_PACKAGE_BYTES,
            });
        }
        if bytes.len() < BLOCK || bytes[257..262] != *b"ustar" {
            return Err(PackageError::Malformed(
                "it does not start with a ustar archive header".into(),
            ));
        }
        let mut archive = tar::Archive::new(bytes);
        let entries = archive
            .entries()
            .map_err(|e| PackageError::Malformed(e.to_string()))?;
        let mut found: Vec<(String, Vec<u8>)> = Vec::new();
        for entry in entries {
            let mut entry = entry.map_err(|e| read_error(e, bytes))?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                return Err(PackageError::Malformed(
                    "it holds something other than plain files".into(),
                ));
            }
            let name = entry
                .path()
                .map_err(|e| PackageError::Malformed(e.to_string()))?
                .to_string_lossy()
                .into_owned();
            let order = [MANIFEST, COMPONENT, SIGNATURE];
            if found.len() >= order.len() || name != order[found.len()] {
                return Err(PackageError::Malformed(format!(
                    "unexpected entry {name:?} (a package holds {MANIFEST}, {COMPONENT} and, once signed, {SIGNATURE}, in that order)"
                )));
            }
            let size = entry.size() as usize;
            let limit = match name.as_str() {
                MANIFEST => MAX_MANIFEST_BYTES,
                SIGNATURE => MAX_SIGNATURE_BYTES,
                _ => MAX_PACKAGE_BYTES,
            };
            if size > limit {
                return Err(PackageError::Malformed(format!(
                    "{name} is {size} bytes; the limit is {limit}"
                )));
            }
            let mut data = Vec::with_capacity(size);
            entry
                .read_to_end(&mut data)
                .map_err(|e| read_error(e, bytes))?;
            if data.len() != size {
                return Err(PackageError::Truncated);
            }
            found.push((name, data));
        }
        let expected_len = archive_len(found.iter().map(|(_, data)| data.len()));
        // The archive must end exactly with its two zero blocks: a file cut
        // at a block boundary, or one with bytes after the end, is refused.
        if bytes.len() < expected_len {
            return Err(PackageError::Truncated);
        }
        if bytes.len() > expected_len {
            return Err(PackageError::Malformed(
                "there are bytes after the end of the archive".into(),
            ));
        }
        if bytes[expected_len - 2 * BLOCK..].iter().any(|b| *b != 0) {
            return Err(PackageError::Truncated);
        }
        let mut found = found.into_iter();
        let (_, manifest) = found.next().ok_or(PackageError::Missing(MANIFEST))?;
        let (_, component) = found.next().ok_or(PackageError::Missing(COMPONENT))?;
        let signature = match found.next() {
            Some((_, json)) => Some(serde_json::from_slice(&json).map_err(|e| {
                PackageError::Malformed(format!("{SIGNATURE} is not a signature: {e}"))
            })?),
            None => None,
        };
        // Read back as it was stored or sent: whether it may be published
        // is for the registry to say (`Manifest::check_publishable`).
        let mut package = Package::assemble(manifest, component)?;
        package.signature = signature;
        Ok(package)
    }
}

/// A read error of the tar reader. A file that does not end in whole
/// blocks with the end-of-archive marker was cut off; anything else is
/// malformed.
fn read_error(e: std::io::Error, bytes: &[u8]) -> PackageError {
    let ends_whole = bytes.len().is_multiple_of(BLOCK)
        && bytes.len() >= 2 * BLOCK
        && bytes[bytes.len() - 2 * BLOCK..].iter().all(|b| *b == 0);
    if e.kind() == std::io::ErrorKind::UnexpectedEof || !ends_whole {
        PackageError::Truncated
    } else {
        PackageError::Malformed(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST_TEXT: &str = "id = \"org.example.hello\"\nname = \"Hello\"\nversion = \"1.0.0\"\npublisher = \"Example\"\ndescription = \"d\"\n";

    fn package() -> Package {
        Package::new(
            MANIFEST_TEXT.as_bytes().to_vec(),
            b"\0asm component".to_vec(),
        )
        .unwrap()
    }

    /// A signature anyone can make (under the neutral point, with the
    /// neutral point and s = 0) does not verify: an auditor's `inspect`
    /// says so, and nothing approves it.
    #[test]
    fn a_signature_under_a_weak_key_does_not_verify() {
        let mut p = package();
        let neutral = {
            let mut k = [0u8; 32];
            k[0] = 1;
            k
        };
        let mut forged = neutral.to_vec();
        forged.extend([0u8; 32]);
        p.signature = Some(Signature {
            algorithm: "ed25519".into(),
            public_key: B64URL.encode(neutral),
            manifest_sha256: p.manifest_sha256(),
            component_sha256: p.component_sha256(),
            signature: B64URL.encode(forged),
        });
        let read = Package::from_bytes(&p.to_bytes()).unwrap();
        assert!(matches!(read.verify(), Err(PackageError::BadSignature(_))));
        assert!(matches!(
            read.verify_but_component(),
            Err(PackageError::BadSignature(_))
        ));
    }

    /// A package stored under rules a host tightened since still reads
    /// back (its app keeps running); a new one is held to the new rules.
    #[test]
    fn stored_packages_read_back_under_the_rules_they_were_made_with() {
        let manifest = MANIFEST_TEXT.replace("name = \"Hello\"", "name = \"Hel\u{200B}lo\"");
        let made = || Package::new(manifest.as_bytes().to_vec(), b"\0asm component".to_vec());
        assert!(matches!(made(), Err(PackageError::Manifest(_))));
        let stored = Package::assemble(manifest.as_bytes().to_vec(), b"\0asm component".to_vec())
            .unwrap()
            .to_bytes();
        let read = Package::from_bytes(&stored).unwrap();
        assert_eq!(read.manifest().name, "Hel\u{200B}lo");
        assert!(read.manifest().check_publishable().is_err());
    }

    #[test]
    fn the_same_inputs_make_the_same_bytes_and_read_back() {
        let a = package().to_bytes();
        assert_eq!(a.len(), archive_len([MANIFEST_TEXT.len(), 14]));
        assert_eq!(a, package().to_bytes());
        let back = Package::from_bytes(&a).unwrap();
        assert_eq!(back.manifest().id, "org.example.hello");
        assert_eq!(back.component(), b"\0asm component");
        assert!(matches!(back.verify(), Err(PackageError::Unsigned)));
    }

    #[test]
    fn a_signature_covers_manifest_and_component() {
        let key = SigningKey::generate().unwrap();
        let mut p = package();
        let digest = p.digest();
        p.sign(&key);
        assert_eq!(p.digest(), digest, "signing does not change the identity");
        let bytes = p.to_bytes();
        let back = Package::from_bytes(&bytes).unwrap();
        assert_eq!(back.verify().unwrap().public_key, key.public_key());
        assert_eq!(
            back.to_bytes(),
            bytes,
            "signed packages are reproducible too"
        );

        let mut tampered = back.clone();
        tampered.component.push(0);
        let err = tampered.verify().unwrap_err().to_string();
        assert!(err.contains("component was changed"), "{err}");
        let mut tampered = back.clone();
        tampered.manifest_bytes.push(b'\n');
        let err = tampered.verify().unwrap_err().to_string();
        assert!(err.contains("plugin.toml was changed"), "{err}");
        let mut forged = back;
        let other = SigningKey::generate().unwrap();
        forged.signature.as_mut().unwrap().public_key = other.public_key();
        assert!(matches!(
            forged.verify(),
            Err(PackageError::BadSignature(_))
        ));
    }

    #[test]
    fn cut_padded_and_foreign_files_are_refused_with_their_reason() {
        let bytes = package().to_bytes();
        for cut in [bytes.len() - 1, bytes.len() - BLOCK, bytes.len() / 2, 700] {
            let err = Package::from_bytes(&bytes[..cut]).unwrap_err();
            assert!(
                matches!(err, PackageError::Truncated),
                "cut at {cut}: {err}"
            );
        }
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0; BLOCK]);
        assert!(matches!(
            Package::from_bytes(&padded),
            Err(PackageError::Malformed(_))
        ));
        assert!(matches!(
            Package::from_bytes(b"hello"),
            Err(PackageError::Malformed(_))
        ));
        let big_manifest = format!("{MANIFEST_TEXT}#{}\n", "x".repeat(MAX_MANIFEST_BYTES));
        assert!(matches!(
            Package::new(big_manifest.into_bytes(), vec![]),
            Err(PackageError::Malformed(_))
        ));
        assert!(matches!(
            Package::new(MANIFEST_TEXT.into(), vec![0; MAX_PACKAGE_BYTES]),
            Err(PackageError::TooLarge { .. })
        ));
        // Entries in another order, or of another name, are refused.
        let mut swapped = tar::Builder::new(Vec::new());
        for (name, data) in [
            (COMPONENT, &b"\0asm"[..]),
            (MANIFEST, MANIFEST_TEXT.as_bytes()),
        ] {
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_path(name).unwrap();
            header.set_cksum();
            swapped.append(&header, data).unwrap();
        }
        let err = Package::from_bytes(&swapped.into_inner().unwrap()).unwrap_err();
        assert!(
            err.to_string()
                .contains("unexpected entry \"component.wasm\""),
            "{err}"
        );
        let huge = vec![0; MAX_PACKAGE_BYTES + 1];
        assert!(matches!(
            Package::from_bytes(&huge),
            Err(PackageError::TooLarge { .. })
        ));
    }
}
