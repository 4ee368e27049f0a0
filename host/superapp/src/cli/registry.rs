//! `superapp registry …`: the operator's registry tools — publishers and
//! their keys, trusted auditor keys, versions, yanking and staged rollout —
//! against a running server (`--server URL --token-file FILE`) or a stopped
//! one's data directory.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use superapp_core::keys::SigningKey;
use superapp_services::registry::Release;

use super::target::{app_at_version, ChangeAnswer, TargetArgs};

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Register a publisher: the id its manifests name as `publisher`, a
    /// display name, and the public keys (from `superapp keys public`) that
    /// may sign its packages and requests.
    AddPublisher {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// A public key (base64url); repeat for several.
        #[arg(long = "key", required = true, allow_hyphen_values = true)]
        keys: Vec<String>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Add a key to a registered publisher (key rotation).
    AddPublisherKey {
        id: String,
        #[arg(allow_hyphen_values = true)]
        key: String,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Take a key from a publisher (leaked or retired): requests signed
    /// with it are refused from now on; versions it signed stay (yank
    /// those that must go). A publisher keeps at least one key. This is
    /// for good: a removed key is never given a role again.
    RemovePublisherKey {
        id: String,
        #[arg(allow_hyphen_values = true)]
        key: String,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Trust an auditor's public key to approve packages.
    TrustAuditor {
        #[arg(long, allow_hyphen_values = true)]
        key: String,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Stop trusting an auditor key: its approvals no longer let sensitive
    /// versions launch.
    DistrustAuditor {
        #[arg(allow_hyphen_values = true)]
        key: String,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// List publishers, trusted auditors, and every app with its versions.
    List {
        /// Print JSON (stable field names).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Yank a version: users fall back to the newest approved version
    /// before it. `--undo` restores it.
    Yank {
        /// APP@VERSION
        spec: String,
        #[arg(long, default_value = "")]
        note: String,
        #[arg(long)]
        undo: bool,
        /// With --server: sign the request with this publisher key instead
        /// of using the operator token.
        #[arg(long)]
        key: Option<PathBuf>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Let a percentage of users (chosen stably by pseudonymous id) get a
    /// version while it is the newest approved one; 100 is everyone.
    Rollout {
        /// APP@VERSION
        spec: String,
        #[arg(long)]
        percent: u8,
        /// With --server: sign the request with this publisher key instead
        /// of using the operator token.
        #[arg(long)]
        key: Option<PathBuf>,
        #[command(flatten)]
        target: TargetArgs,
    },
}

fn load_key(path: Option<&Path>) -> anyhow::Result<Option<SigningKey>> {
    Ok(path.map(SigningKey::load).transpose()?)
}

fn spec(spec: &str) -> anyhow::Result<(&str, &str)> {
    app_at_version(spec).ok_or_else(|| anyhow::anyhow!("`{spec}` is not APP@VERSION"))
}

/// One line per release: version, state, yank, rollout, last decision.
pub fn release_line(r: &Release) -> String {
    let mut line = format!(
        "{:<10} {:<9}",
        r.version,
        format!("{:?}", r.state).to_lowercase()
    );
    if let Some(y) = &r.yanked {
        line.push_str(" YANKED");
        if !y.note.is_empty() {
            line.push_str(&format!(" ({})", y.note));
        }
    }
    if let Some(p) = r.rollout {
        line.push_str(&format!(" rollout {p}%"));
    }
    if let Some(d) = r.last_decision() {
        let decider = d.decider();
        line.push_str(&format!(" — {} by {decider}", d.verdict.name()));
        // A policy's note is its rule, named already.
        if !d.note.is_empty() && !decider.ends_with(&d.note) {
            line.push_str(&format!(": {}", d.note));
        }
    }
    line.push_str(&format!("  digest {}", r.digest));
    line
}

fn print_change(verb: &str, c: &ChangeAnswer) {
    if c.changed {
        println!("{verb} {}", c.release.label());
    } else {
        println!("{} was already so; nothing changed", c.release.label());
    }
    println!("  {}", release_line(&c.release));
}

pub fn run(cmd: RegistryCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RegistryCommand::AddPublisher {
            id,
            name,
            keys,
            target,
        } => {
            let t = target.open(None)?;
            let p = t.add_publisher(&id, &name, &keys)?;
            t.finish()?;
            println!(
                "publisher {} ({}) with keys {}",
                p.id,
                p.name,
                p.keys.join(", ")
            );
        }
        RegistryCommand::AddPublisherKey { id, key, target } => {
            let t = target.open(None)?;
            let p = t.add_publisher_key(&id, &key)?;
            t.finish()?;
            println!("publisher {} now has keys {}", p.id, p.keys.join(", "));
        }
        RegistryCommand::RemovePublisherKey { id, key, target } => {
            let t = target.open(None)?;
            let p = t.remove_publisher_key(&id, &key)?;
            t.finish()?;
            println!("publisher {} now has keys {}", p.id, p.keys.join(", "));
        }
        RegistryCommand::TrustAuditor { key, name, target } => {
            let t = target.open(None)?;
            let a = t.trust_auditor(&key, &name)?;
            t.finish()?;
            println!("trusted auditor {} ({})", a.name, a.key);
        }
        RegistryCommand::DistrustAuditor { key, target } => {
            let t = target.open(None)?;
            t.distrust_auditor(&key)?;
            t.finish()?;
            println!("no longer trusted: {key}");
        }
        RegistryCommand::List { json, target } => {
            let t = target.open(None)?;
            let publishers = t.publishers()?;
            let auditors = t.auditors()?;
            let mut apps = Vec::new();
            for app in t.apps()? {
                apps.push((app.clone(), t.releases(&app)?));
            }
            if json {
                let apps: Vec<_> = apps
                    .iter()
                    .map(|(app, versions)| serde_json::json!({ "app": app, "versions": versions }))
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "publishers": publishers, "auditors": auditors, "apps": apps
                    }))?
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!("publishers:");
            for p in &publishers {
                println!("  {} ({}): {}", p.id, p.name, p.keys.join(", "));
            }
            println!("trusted auditors:");
            for a in &auditors {
                println!("  {} ({})", a.name, a.key);
            }
            println!("apps:");
            for (app, versions) in &apps {
                println!("  {app}");
                for r in versions {
                    println!("    {}", release_line(r));
                }
            }
        }
        RegistryCommand::Yank {
            spec: s,
            note,
            undo,
            key,
            target,
        } => {
            let (app, version) = spec(&s)?;
            let t = target.open(load_key(key.as_deref())?)?;
            let c = t.yank(app, version, !undo, &note)?;
            t.finish()?;
            print_change(if undo { "restored" } else { "yanked" }, &c);
        }
        RegistryCommand::Rollout {
            spec: s,
            percent,
            key,
            target,
        } => {
            let (app, version) = spec(&s)?;
            let t = target.open(load_key(key.as_deref())?)?;
            let c = t.rollout(app, version, percent)?;
            t.finish()?;
            print_change(&format!("rolled out to {percent}% of users:"), &c);
        }
    }
    Ok(ExitCode::SUCCESS)
}
