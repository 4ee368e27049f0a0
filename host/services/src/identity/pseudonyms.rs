//! Per-app pseudonymous user ids, like WeChat's openid: stable per user per
//! app, unlinkable across apps without the host secret.

use base64::Engine as _;
use ring::hmac;

/// HMAC-SHA256 under a host secret of (user id, app id), base64url.
pub struct Pseudonyms {
    key: hmac::Key,
}

impl Pseudonyms {
    pub fn new(secret: &[u8]) -> Self {
        Pseudonyms {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    pub fn for_app(&self, user: &str, app: &str) -> String {
        // Length-prefix the user id so ("ab", "c") and ("a", "bc") differ.
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(&(user.len() as u64).to_be_bytes());
        ctx.update(user.as_bytes());
        ctx.update(app.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(ctx.sign().as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_per_app_and_differ_across_apps() {
        let p = Pseudonyms::new(b"secret");
        assert_eq!(
            p.for_app("alice", "org.a.app"),
            p.for_app("alice", "org.a.app")
        );
        assert_ne!(
            p.for_app("alice", "org.a.app"),
            p.for_app("alice", "org.b.app")
        );
        assert_ne!(
            p.for_app("alice", "org.a.app"),
            p.for_app("bob", "org.a.app")
        );
        assert_ne!(p.for_app("ab", "c.x"), p.for_app("a", "bc.x"));
        assert_ne!(
            Pseudonyms::new(b"other").for_app("alice", "org.a.app"),
            p.for_app("alice", "org.a.app")
        );
        assert_eq!(p.for_app("alice", "org.a.app").len(), 43);
    }
}
