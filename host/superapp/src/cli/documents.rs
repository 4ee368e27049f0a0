//! `superapp issuer …` and `superapp documents …`: tools for document
//! issuers, operators and providers' backends.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use superapp_sdk::credentials::{self as format, Expected, PresentationEnvelope, Trust};

use superapp_services::documents::{Documents, HostKey, IssuerKeyFile};
use superapp_services::identity::{find_user, now_secs};

#[derive(Debug, Subcommand)]
pub enum IssuerCommand {
    /// Create an issuer's Ed25519 key file (mode 0600) and print its public
    /// key, which an operator registers with `issuer add`.
    Keygen {
        /// The issuer's id, e.g. `gov.health-insurance`.
        #[arg(long)]
        id: String,
        /// Where to write the key file; an existing file is never replaced.
        #[arg(long)]
        out: PathBuf,
    },
    /// Register an issuer (operator), on a running server or a stopped
    /// one's data directory. Users see its name in document sheets.
    Add {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// The issuer's Ed25519 public key, base64url (from `issuer keygen`).
        /// Base64url may begin with `-`; it is still read as the value.
        #[arg(long, allow_hyphen_values = true)]
        public_key: String,
        #[command(flatten)]
        target: super::target::TargetArgs,
    },
    /// Issue a credential to a user. With --data-dir it goes straight into
    /// the user's wallet (server stopped); with --out it is written to a
    /// file to POST to a running server's /api/v1/credentials.
    Issue {
        /// The issuer's key file.
        #[arg(long)]
        key: PathBuf,
        /// The holder's username.
        #[arg(long)]
        user: String,
        /// The credential type, e.g. `insurance-card`.
        #[arg(long = "type")]
        credential_type: String,
        /// A JSON object of claims: {"policy-number": "P-123", …}.
        #[arg(long)]
        claims: PathBuf,
        /// Validity in days, up to 36 500 (a hundred years).
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u64).range(0..=36_500))]
        valid_days: u64,
        #[command(flatten)]
        target: Target,
    },
    /// Revoke a credential this issuer issued (by credential id).
    Revoke {
        #[arg(long)]
        key: PathBuf,
        /// Credential ids are base64url and may begin with `-`.
        #[arg(long, allow_hyphen_values = true)]
        credential: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Args)]
pub struct DataDir {
    /// The server's data directory (the server must be stopped).
    #[arg(long, env = "SUPERAPP_DATA_DIR", default_value = "./superapp-data")]
    data_dir: PathBuf,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// Send it to a running server (`POST /api/v1/credentials` or
    /// `/revocations`: the issuer's signature is the authority).
    #[arg(long, env = "SUPERAPP_SERVER")]
    server: Option<String>,
    /// Apply it to this data directory (the server must be stopped).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Write it as JSON to this file instead.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// POST a signed statement to a running server.
fn post_to(server: &str, path: &str, body: serde_json::Value) -> anyhow::Result<serde_json::Value> {
    let remote = super::target::Remote::new(server, super::target::Credential::None)?;
    remote.json(reqwest::Method::POST, path, Some(body))
}

#[derive(Debug, Subcommand)]
pub enum DocumentsCommand {
    /// Verify a presentation offline, as a provider's backend or a
    /// verifier does: the issuer's signature and validity, each disclosed
    /// claim, revocation, the host's certificate of the holder key, the
    /// holder's key binding over exactly these claims, its audience, nonce
    /// and age. Prints the claims; exits 1 if anything fails.
    Verify {
        /// The presentation envelope (JSON) the app received.
        file: PathBuf,
        /// Who the presentation must have been made for: an app id, or
        /// `APP#NAME` for a verifier that app named.
        #[arg(long, visible_alias = "app")]
        audience: String,
        /// The challenge the verifier gave; without it, any nonce is
        /// accepted (keep a record of nonces seen to refuse replays).
        #[arg(long, allow_hyphen_values = true)]
        nonce: Option<String>,
        /// Take the issuer key, host key and revocations from this data
        /// directory (server stopped) instead of the flags below.
        #[arg(long, conflicts_with_all = ["issuer_key", "host_key"])]
        data_dir: Option<PathBuf>,
        /// The issuer's Ed25519 public key, base64url.
        #[arg(long, requires = "host_key", allow_hyphen_values = true)]
        issuer_key: Option<String>,
        /// The host's public key (GET /api/v1/host-key).
        #[arg(long, requires = "issuer_key", allow_hyphen_values = true)]
        host_key: Option<String>,
        /// A revoked credential id (GET /api/v1/issuers/{id}/revoked); repeatable.
        #[arg(long, allow_hyphen_values = true)]
        revoked: Vec<String>,
        /// The issuer's revocations as the host signed them: a file with
        /// the answer of GET /api/v1/issuers/{id}/revoked (or its `signed`
        /// object), checked against --host-key, the credential's issuer
        /// and --status-list-max-age-secs before its ids count as revoked.
        #[arg(long, requires = "host_key")]
        status_list: Option<PathBuf>,
        /// Refuse a status list the host made longer ago than this.
        #[arg(long, default_value_t = 3600, requires = "status_list")]
        status_list_max_age_secs: u64,
        /// Reject presentations older than this.
        #[arg(long, default_value_t = 600)]
        max_age_secs: u64,
    },
}

fn write_new(path: &Path, text: &str, private: bool) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)
        .with_context(|| format!("cannot create {} (is it there already?)", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

fn read_claims(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = superapp_core::files::read_text_at_most(path, 1 << 20)
        .with_context(|| format!("cannot read the claims file {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let Some(object) = value.as_object() else {
        bail!("{} must hold a JSON object of claims", path.display());
    };
    object
        .iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k.clone(), s.clone())),
            serde_json::Value::Number(_) | serde_json::Value::Bool(_) => {
                Ok((k.clone(), v.to_string()))
            }
            _ => bail!("claim `{k}` must be a string, number or boolean"),
        })
        .collect()
}

pub fn run_issuer(cmd: IssuerCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        IssuerCommand::Keygen { id, out } => {
            let key = IssuerKeyFile::generate(&id)?;
            write_new(&out, &serde_json::to_string_pretty(&key)?, true)?;
            println!("{}", key.public_key);
        }
        IssuerCommand::Add {
            id,
            name,
            public_key,
            target,
        } => {
            match target.open(None)? {
                super::target::Target::Remote(remote) => {
                    let _: serde_json::Value = remote.json(
                        reqwest::Method::POST,
                        "/operator/issuers",
                        Some(serde_json::json!({"id": id, "name": name, "public_key": public_key})),
                    )?;
                }
                super::target::Target::Local(local) => {
                    Documents::new(local.store.clone()).add_issuer(
                        &local.audit,
                        "operator",
                        &id,
                        &name,
                        &public_key,
                    )?;
                    local.store.close()?;
                }
            }
            println!("registered issuer {id} ({name})");
        }
        IssuerCommand::Issue {
            key,
            user,
            credential_type,
            claims,
            valid_days,
            target,
        } => {
            let key = IssuerKeyFile::load(&key)?;
            let claims = read_claims(&claims)?;
            let issuance = key.issue(
                &user,
                &credential_type,
                &claims,
                valid_days.saturating_mul(86_400),
            )?;
            if let Some(out) = target.out {
                write_new(&out, &serde_json::to_string_pretty(&issuance)?, false)?;
                println!("wrote the credential to {}", out.display());
            } else if let Some(server) = target.server {
                let held = post_to(&server, "/credentials", serde_json::to_value(&issuance)?)?;
                println!(
                    "issued {credential_type} {} to {user}",
                    held["id"].as_str().unwrap_or_default()
                );
            } else if let Some(data_dir) = target.data_dir {
                let store = super::open_store(&data_dir)?;
                let holder = find_user(&store, &user)?
                    .with_context(|| format!("no user `{user}` in {}", data_dir.display()))?;
                let held = Documents::new(store.clone()).accept(&issuance, &holder)?;
                store.close()?;
                println!("issued {credential_type} {} to {user}", held.id);
            }
        }
        IssuerCommand::Revoke {
            key,
            credential,
            target,
        } => {
            let signed = IssuerKeyFile::load(&key)?.revoke(&credential)?;
            if let Some(out) = target.out {
                write_new(&out, &serde_json::to_string_pretty(&signed)?, false)?;
                println!("wrote the revocation to {}", out.display());
            } else if let Some(server) = target.server {
                post_to(&server, "/revocations", serde_json::to_value(&signed)?)?;
                println!("revoked {credential}");
            } else if let Some(data_dir) = target.data_dir {
                let store = super::open_store(&data_dir)?;
                Documents::new(store.clone()).revoke(&signed)?;
                store.close()?;
                println!("revoked {credential}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The status list in `path` (the host's answer, or its `signed` part),
/// verified as signed by `host_key` for `issuer` at most `max_age_secs` ago.
fn read_status_list(
    path: &Path,
    host_key: &[u8; 32],
    issuer: &str,
    max_age_secs: u64,
) -> anyhow::Result<format::StatusList> {
    let text = super::package::read_text(path, 16 << 20)?;
    let not_one = || {
        format!(
            "{} is not a status list: expected the answer of GET /api/v1/issuers/{issuer}/revoked (or its `signed` object)",
            path.display()
        )
    };
    let mut value: serde_json::Value = serde_json::from_str(&text).with_context(not_one)?;
    if let Some(signed) = value.get_mut("signed") {
        value = signed.take();
    }
    let signed: format::Signed = serde_json::from_value(value).with_context(not_one)?;
    format::verify_status_list(&signed, host_key, issuer, now_secs(), max_age_secs)
        .with_context(|| format!("the status list in {} does not verify", path.display()))
}

pub fn run_documents(cmd: DocumentsCommand) -> anyhow::Result<ExitCode> {
    let DocumentsCommand::Verify {
        file,
        audience,
        nonce,
        data_dir,
        issuer_key,
        host_key,
        mut revoked,
        status_list,
        status_list_max_age_secs,
        max_age_secs,
    } = cmd;
    let text = super::package::read_text(&file, 1 << 20)?;
    let envelope: PresentationEnvelope = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a presentation envelope", file.display()))?;
    let (issuer_key, host_key) = match (data_dir, issuer_key, host_key) {
        (Some(dir), _, _) => {
            let iss = format::peek::<format::CredentialPayload>(&envelope.credential)?.iss;
            let store = super::open_store(&dir)?;
            let secrets = superapp_services::identity::Secrets::for_store(&dir, &store);
            let host = HostKey::load(&secrets)?.public_key();
            let docs = Documents::new(store.clone());
            let issuer = docs
                .issuer(&iss)?
                .with_context(|| format!("issuer `{iss}` is not registered"))?;
            revoked.extend(docs.revoked(&iss)?);
            store.close()?;
            (issuer.public_key, host)
        }
        (None, Some(i), Some(h)) => (i, h),
        _ => bail!("give --data-dir, or both --issuer-key and --host-key"),
    };
    let host_key = format::public_key(&host_key)?;
    if let Some(path) = status_list {
        let iss = format::peek::<format::CredentialPayload>(&envelope.credential)?.iss;
        let list = read_status_list(&path, &host_key, &iss, status_list_max_age_secs)?;
        revoked.extend(list.revoked);
    }
    let trust = Trust {
        issuer_key: format::public_key(&issuer_key)?,
        host_key,
        revoked,
    };
    let expected = Expected {
        audience,
        nonce,
        max_age_secs,
    };
    match format::verify_presentation(&envelope, &trust, &expected, now_secs()) {
        Ok(v) => {
            let user = v
                .binding
                .user
                .as_deref()
                .map(|u| format!("user {u}, "))
                .unwrap_or_default();
            println!(
                "ok: {} from {} for {} ({user}nonce {})",
                v.credential.credential_type, v.credential.iss, v.binding.aud, v.binding.nonce
            );
            for c in &v.claims {
                println!("{} = {}", c.name, c.value);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: the presentation does not verify: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
