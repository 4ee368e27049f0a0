//! An auditor's decision on one package: approve or reject, with a note,
//! signed with the auditor's key and bound to the package's digest, so it
//! can neither be moved to other bytes nor have its note swapped. The
//! auditor's tool signs it; the registry checks it against its trusted
//! auditor keys and keeps it as evidence.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::ids::sha256_hex;
use crate::keys::{self, SigningKey};

/// The longest note, in bytes.
pub const MAX_NOTE: usize = 2_000;
const CONTEXT: &str = "superapp audit decision v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Approve,
    Reject,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Reject => "reject",
        }
    }
}

/// A decision as the auditor signs it and the registry stores it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedDecision {
    pub app: String,
    pub version: String,
    /// The package digest (`Package::digest`) the decision is about.
    pub digest: String,
    pub verdict: Verdict,
    pub note: String,
    /// When the auditor signed, in seconds since the epoch.
    pub signed_at: u64,
    /// The auditor's public key, base64url.
    pub auditor_key: String,
    /// Base64url Ed25519 signature over [`SignedDecision::message`].
    pub signature: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    #[error("the note is {0} bytes; the limit is {MAX_NOTE}")]
    NoteTooLong(usize),
    #[error("a decision needs a note saying why")]
    NoNote,
    #[error("the note has control or text-direction characters (only line breaks and tabs)")]
    NoteCharacters,
    #[error("the decision's signature does not verify under key {0}")]
    BadSignature(String),
}

impl SignedDecision {
    /// What the auditor's key signs: every field but the signature, the
    /// note by its digest so that any text is unambiguous.
    fn message(&self) -> Vec<u8> {
        format!(
            "{CONTEXT}\napp {}\nversion {}\ndigest {}\nverdict {}\nnote-sha256 {}\nsigned-at {}\nauditor {}\n",
            self.app,
            self.version,
            self.digest,
            self.verdict.name(),
            sha256_hex(self.note.as_bytes()),
            self.signed_at,
            self.auditor_key,
        )
        .into_bytes()
    }

    /// Sign `verdict` on the package `digest` of `app` at `version`.
    pub fn sign(
        key: &SigningKey,
        app: &str,
        version: &str,
        digest: &str,
        verdict: Verdict,
        note: &str,
        signed_at: u64,
    ) -> Result<SignedDecision, DecisionError> {
        let mut d = SignedDecision {
            app: app.into(),
            version: version.into(),
            digest: digest.into(),
            verdict,
            note: note.trim().into(),
            signed_at,
            auditor_key: key.public_key(),
            signature: String::new(),
        };
        d.check_note()?;
        d.signature = B64URL.encode(key.sign(&d.message()));
        Ok(d)
    }

    fn check_note(&self) -> Result<(), DecisionError> {
        if self.note.trim().is_empty() {
            return Err(DecisionError::NoNote);
        }
        if self.note.len() > MAX_NOTE {
            return Err(DecisionError::NoteTooLong(self.note.len()));
        }
        if self.note.chars().any(crate::text::disallowed_in_note) {
            return Err(DecisionError::NoteCharacters);
        }
        Ok(())
    }

    /// Whether the signature is the named key's over this decision as it
    /// reads (a stored decision is not held to the note rules of today).
    pub fn signed_by_its_key(&self) -> bool {
        B64URL
            .decode(&self.signature)
            .is_ok_and(|sig| keys::verify(&self.auditor_key, &self.message(), &sig))
    }

    /// Check the note and that the signature is the named key's. Whether
    /// that key is a trusted auditor's is the registry's question.
    pub fn verify(&self) -> Result<(), DecisionError> {
        self.check_note()?;
        if self.signed_by_its_key() {
            Ok(())
        } else {
            Err(DecisionError::BadSignature(self.auditor_key.clone()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_verifies_and_any_change_breaks_it() {
        let key = SigningKey::generate().unwrap();
        let d =
            SignedDecision::sign(&key, "org.a", "1.0.0", "ab", Verdict::Approve, "ok", 5).unwrap();
        assert_eq!(d.verify(), Ok(()));
        let changes: [fn(&mut SignedDecision); 6] = [
            |d| d.digest = "cd".into(),
            |d| d.verdict = Verdict::Reject,
            |d| d.note = "other".into(),
            |d| d.version = "1.0.1".into(),
            |d| d.signed_at = 6,
            |d| d.auditor_key = SigningKey::generate().unwrap().public_key(),
        ];
        for change in changes {
            let mut forged = d.clone();
            change(&mut forged);
            assert!(matches!(
                forged.verify(),
                Err(DecisionError::BadSignature(_))
            ));
        }
        assert_eq!(
            SignedDecision::sign(&key, "a", "1", "d", Verdict::Approve, "  ", 1),
            Err(DecisionError::NoNote)
        );
    }
}
