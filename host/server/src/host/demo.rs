//! `serve --demo`: demo users with money and official documents, and the
//! issuers who issued them. Every step is idempotent (users by name,
//! top-ups by idempotency key, issuers by id, documents by type), so a
//! second start on the same data directory seeds nothing twice and a start
//! interrupted half-way finishes the job.

use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::Path;

use superapp_services::documents::{DocumentError, IssuerKeyFile};
use superapp_services::identity::{load_or_create_private, IdentityError, Secrets};

use super::{Host, HostError};

/// Every demo user's password.
pub const DEMO_PASSWORD: &str = "demo-password";

/// A demo user, for the logins `serve --demo` prints.
pub struct DemoUser {
    pub username: &'static str,
    pub display_name: &'static str,
    pub phrase: &'static str,
    /// EUR cents.
    pub balance: u64,
    /// (issuer id, credential type) of each document they hold.
    pub documents: &'static [(&'static str, &'static str)],
}

pub const DEMO_USERS: [DemoUser; 2] = [
    DemoUser {
        username: "alice",
        display_name: "Alice Martin",
        phrase: "sunny otter",
        balance: 20_000,
        documents: &[
            ("gov.civil-registry", "id-card"),
            ("ins.national-health", "health-insurance"),
        ],
    },
    DemoUser {
        username: "bob",
        display_name: "Bob Okoye",
        phrase: "quiet maple",
        balance: 10_000,
        documents: &[("gov.civil-registry", "id-card")],
    },
];

/// The demo's issuers: (id, name).
const ISSUERS: [(&str, &str); 2] = [
    ("gov.civil-registry", "Civil Registry"),
    (DEMO_INSURER, "National Health Insurance"),
];

/// The claims of a demo document.
fn claims(
    user: &DemoUser,
    credential_type: &str,
    today: &str,
    next_year: &str,
) -> Vec<(String, String)> {
    let (given, family) = user
        .display_name
        .split_once(' ')
        .unwrap_or((user.display_name, ""));
    let pairs: Vec<(&str, String)> = match credential_type {
        "id-card" => vec![
            ("given-name", given.to_string()),
            ("family-name", family.to_string()),
            (
                "birth-date",
                if user.username == "alice" {
                    "1990-05-04"
                } else {
                    "1985-11-12"
                }
                .to_string(),
            ),
            ("nationality", "FR".to_string()),
            ("issued-on", today.to_string()),
        ],
        _ => vec![
            ("insurer", "National Health Insurance".to_string()),
            (
                "policy-number",
                format!("NHI-{}-4711", user.username.to_uppercase()),
            ),
            ("valid-until", next_year.to_string()),
        ],
    };
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The demo's health insurer, whose policies the hospital's own booking
/// system accepts.
pub const DEMO_INSURER: &str = "ins.national-health";

/// The key of demo issuer `id`: made once and kept (0600) beside the data,
/// in `DATA_DIR/demo-issuers/ID.json` (a folder only the host's user may
/// open), where `superapp issuer issue --key` finds it. Host processes on
/// a shared store keep one key in the store, made by whichever starts
/// first, and each writes a copy of it there.
pub fn demo_issuer_key(secrets: &Secrets, id: &str) -> Result<IssuerKeyFile, HostError> {
    let issuers_dir = secrets.dir().join(DEMO_ISSUERS);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&issuers_dir)
        .map_err(|e| HostError::Invalid(format!("cannot create {}: {e}", issuers_dir.display())))?;
    // One made by an earlier version may be open to others (0755): closed
    // where the host's user may. Where it may not (another user owns the
    // folder) that is said, not fatal: the keys in it are 0600 each.
    let open_to_others = std::fs::metadata(&issuers_dir)
        .map(|m| m.permissions().mode() & 0o077 != 0)
        .unwrap_or(false);
    if open_to_others {
        if let Err(e) =
            std::fs::set_permissions(&issuers_dir, std::fs::Permissions::from_mode(0o700))
        {
            tracing::warn!(path = %issuers_dir.display(), error = %e, "other users may list the demo issuers' key folder; `chmod 700` it");
        }
    }
    let file = format!("{DEMO_ISSUERS}/{id}.json");
    let path = secrets.dir().join(&file);
    let invalid =
        |e: anyhow::Error| HostError::Invalid(format!("demo issuer key {}: {e:#}", path.display()));
    let bytes = secrets
        .load_or_create(&file, || {
            Ok(serde_json::to_vec_pretty(&IssuerKeyFile::generate(id)?)?)
        })
        .map_err(invalid)?;
    if secrets.shared() && std::fs::read(&path).ok().as_deref() != Some(bytes.as_slice()) {
        let _ = std::fs::remove_file(&path);
        load_or_create_private(&path, || Ok(bytes.clone())).map_err(invalid)?;
    }
    serde_json::from_slice(&bytes).map_err(|e| invalid(e.into()))
}

/// The folder of the demo issuers' keys in the data directory.
const DEMO_ISSUERS: &str = "demo-issuers";

impl Host {
    /// Seed the demo data; what already exists is left as it is.
    pub async fn seed_demo(&self, data_dir: &Path) -> Result<(), HostError> {
        let secrets = Secrets::for_store(data_dir, &self.store);
        let mut keys = Vec::new();
        for (id, name) in ISSUERS {
            let key = demo_issuer_key(&secrets, id)?;
            match self
                .documents
                .add_issuer(&self.audit, "demo", id, name, &key.public_key)
            {
                Ok(_) | Err(DocumentError::IssuerExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
            keys.push(key);
        }
        let now = superapp_core::now_secs();
        let today = superapp_sdk::clock::format_date((now / 86_400) as i64);
        let next_year = superapp_sdk::clock::format_date((now / 86_400) as i64 + 365);
        for user in &DEMO_USERS {
            let account = match self
                .identity
                .register(
                    user.username,
                    user.display_name,
                    DEMO_PASSWORD,
                    Some(user.phrase),
                )
                .await
            {
                Ok(account) => account,
                Err(IdentityError::UsernameTaken) => self
                    .identity
                    .find_by_username(user.username)?
                    .ok_or_else(|| HostError::NotFound(user.username.into()))?,
                Err(e) => return Err(e.into()),
            };
            self.ledger.topup(
                &account.id,
                user.balance,
                "EUR",
                &format!("demo-seed-{}", user.username),
                "demo",
            )?;
            let held = self.documents.wallet(&account.id)?;
            for (issuer, credential_type) in user.documents {
                if held
                    .iter()
                    .any(|h| h.issuer == *issuer && h.credential_type == *credential_type)
                {
                    continue;
                }
                let key = keys
                    .iter()
                    .find(|k| k.issuer == *issuer)
                    .expect("a demo issuer");
                let issuance = key
                    .issue(
                        user.username,
                        credential_type,
                        &claims(user, credential_type, &today, &next_year),
                        // The policy's own `valid-until` is a year ahead:
                        // its credential is good as long.
                        if *credential_type == "id-card" {
                            5 * 365
                        } else {
                            365
                        } * 86_400,
                    )
                    .map_err(|e| HostError::Invalid(e.to_string()))?;
                self.accept_credential(&issuance).await?;
            }
        }
        self.flush().await
    }
}
