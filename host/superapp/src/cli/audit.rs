//! `superapp audit …`: the auditor's tools — inspect and compare packages,
//! sign decisions, report on an app, verify the audit log — on package
//! files, or on versions in a registry (a running server's with `--server`,
//! or a stopped server's data directory).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use superapp_core::decision::{SignedDecision, Verdict};
use superapp_core::keys::SigningKey;
use superapp_core::{now_secs, Package};
use superapp_services::audit::{ChainError, Head};
use superapp_services::registry::report::Report;

use super::registry::release_line;
use super::target::{app_at_version, Target, TargetArgs};
use crate::files::{create_atomically, write_atomically};

/// A registry to read from, as an auditor.
#[derive(Debug, Args)]
pub struct AuditorTarget {
    /// With --server: sign requests with this auditor key (or use
    /// --token-file for the operator's token).
    #[arg(long)]
    key: Option<PathBuf>,
    #[command(flatten)]
    target: TargetArgs,
}

impl AuditorTarget {
    fn open(&self) -> anyhow::Result<Target> {
        self.target
            .open(self.key.as_deref().map(SigningKey::load).transpose()?)
    }
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Inspect a package: app identity, publisher and signature validity,
    /// digests, sizes, limits, each declared capability with its reason and
    /// consent level, the component's real imports, and discrepancies
    /// (declared but unused: warning; used but undeclared: error). Exits 1
    /// when it finds an error.
    Inspect {
        /// A package file, or APP@VERSION from the registry.
        package: String,
        /// Print the report as JSON (stable field names).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        from: AuditorTarget,
    },
    /// Compare two versions of one app: capabilities and limits added or
    /// removed, changed reasons, changed imports; escalations (anything the
    /// new version asks for that the old one did not) are marked. Exits 1
    /// when either package's signature does not verify (an unsigned one is
    /// compared) or its component does not compile.
    Diff {
        /// A package file, or APP@VERSION from the registry.
        old: String,
        /// A package file, or APP@VERSION from the registry.
        new: String,
        /// Print the comparison as JSON (stable field names).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        from: AuditorTarget,
    },
    /// Rebuild a package's component from its source and compare: the
    /// component the source builds (with `superapp plugin build`) must be
    /// the package's byte for byte, and the source's plugin.toml its
    /// manifest. A rebuild matches with the same source, Cargo.lock, cargo
    /// features, toolchain and SDK path (README, Toolchains). Exits 1 when
    /// either differs.
    Rebuild {
        /// A package file, or APP@VERSION from the registry.
        package: String,
        /// The plugin crate the package was built from.
        #[arg(long)]
        source: PathBuf,
        /// Cargo features the package was built with (comma separated or
        /// repeated).
        #[arg(long, value_delimiter = ',')]
        features: Vec<String>,
        /// Print the comparison as JSON (stable field names).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        from: AuditorTarget,
    },
    /// Approve a package: sign a decision bound to its digest with your
    /// auditor key and record it in the registry (and its audit log). The
    /// same approval again changes nothing. The digest is of the bytes this
    /// tool read and checked (for APP@VERSION, the package the registry
    /// sends, which must match its record), and a package `inspect` finds
    /// an error in is not approved. `--out` never replaces a file.
    Approve(Decide),
    /// Reject a package: as `approve`, with the opposite verdict. A
    /// rejected version cannot be launched.
    Reject(Decide),
    /// Report on an app: its versions and their states, every decision with
    /// its auditor and note, and from the audit log the capability calls
    /// (allowed, denied, waiting for consent) and failures of each version.
    Report {
        #[arg(long)]
        app: String,
        /// Print the report as JSON (stable field names).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        from: AuditorTarget,
    },
    /// Check the hash chain of the audit log end to end and name the first
    /// broken entry. With --server, this tool fetches every entry and
    /// checks the chain itself; with --data-dir it reads a stopped server's
    /// store. Exits 1 if the chain is broken.
    VerifyLog {
        /// Print `{"ok", "entries", "head", "checkpoint", "broken_at",
        /// "reason"}` as JSON.
        #[arg(long)]
        json: bool,
        /// A file where this tool keeps the log's head between runs (kept
        /// apart from the server). If it exists, the log must still hold
        /// its entry unchanged, so a history rewritten or cut short since,
        /// even one consistent with itself, is found; a log that verifies
        /// records its new head there.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
        #[command(flatten)]
        from: AuditorTarget,
    },
}

#[derive(Debug, Args)]
pub struct Decide {
    /// A package file, or APP@VERSION from the registry.
    package: String,
    /// The auditor's key (from `superapp keys generate`).
    #[arg(long)]
    key: PathBuf,
    /// Why: kept with the decision and shown in reports.
    #[arg(long)]
    note: String,
    /// Write the signed decision here instead of sending it (to deliver
    /// later, e.g. from an offline machine).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the result as JSON (stable field names).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: TargetArgs,
}

/// What `audit rebuild` found.
#[derive(serde::Serialize)]
struct Rebuilt {
    ok: bool,
    app: String,
    version: String,
    digest: String,
    toolchain: &'static str,
    component: Compared,
    manifest: Compared,
}

#[derive(serde::Serialize)]
struct Compared {
    same: bool,
    package_sha256: String,
    source_sha256: String,
}

impl Compared {
    fn of(package: &[u8], source: &[u8]) -> Compared {
        Compared {
            same: package == source,
            package_sha256: superapp_core::ids::sha256_hex(package),
            source_sha256: superapp_core::ids::sha256_hex(source),
        }
    }
}

/// `audit rebuild`: build `source` and compare it with `package`.
fn rebuild(
    package: &Package,
    source: &Path,
    features: &[String],
    json: bool,
) -> anyhow::Result<ExitCode> {
    let manifest_path = source.join("plugin.toml");
    let manifest = superapp_core::files::read_at_most(
        &manifest_path,
        superapp_core::package::MAX_MANIFEST_BYTES as u64,
    )
    .with_context(|| format!("cannot read {}", manifest_path.display()))?;
    let built = crate::plugin_build::build_with(source, None, !json, features)?;
    let component = superapp_core::files::read_at_most(
        &built.component,
        superapp_core::package::MAX_PACKAGE_BYTES as u64,
    )
    .with_context(|| format!("cannot read {}", built.component.display()))?;
    let m = package.manifest();
    let component = Compared::of(package.component(), &component);
    let manifest = Compared::of(package.manifest_bytes(), &manifest);
    let report = Rebuilt {
        ok: component.same && manifest.same,
        app: m.id.clone(),
        version: m.version.to_string(),
        digest: package.digest(),
        toolchain: built.toolchain.describe(),
        component,
        manifest,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{} (digest {})", m.label(), report.digest);
        let line = |what: &str, c: &Compared, source: String| {
            if c.same {
                println!("{what}: the same as {source} (sha256 {})", c.package_sha256);
            } else {
                println!(
                    "{what}: differs: the package's sha256 is {}, {source} is {}",
                    c.package_sha256, c.source_sha256
                );
            }
        };
        line(
            "component",
            &report.component,
            format!("what {} builds", source.display()),
        );
        line(
            "manifest",
            &report.manifest,
            manifest_path.display().to_string(),
        );
        if !report.component.same {
            eprintln!(
                "a rebuild matches only with the same source, Cargo.lock, cargo features, toolchain ({}) and SDK path",
                report.toolchain
            );
        }
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A package from a file, or from the registry by APP@VERSION.
fn package(spec: &str, from: &AuditorTarget) -> anyhow::Result<Package> {
    if Path::new(spec).exists() {
        return super::package::read(Path::new(spec));
    }
    let (app, version) = app_at_version(spec)
        .ok_or_else(|| anyhow::anyhow!("`{spec}` is neither a package file nor APP@VERSION"))?;
    registry_package(&from.open()?, app, version)
}

/// APP@VERSION's package from the registry, checked against the
/// registry's record of that version: a server (or a proxy in between)
/// that hands out other bytes than it records, or another version's, is
/// caught here, before anyone reads, compares or signs them.
fn registry_package(target: &Target, app: &str, version: &str) -> anyhow::Result<Package> {
    let record = target.release(app, version)?;
    let bytes = target.package(app, version)?;
    let p = Package::from_bytes(&bytes)
        .with_context(|| format!("{app}@{version} from the registry"))?;
    let m = p.manifest();
    if p.digest() != record.digest || m.id != app || m.version.to_string() != version {
        anyhow::bail!(
            "the registry's {app}@{version} has digest {}, but the package it sent is {} with digest {}: not what the registry records",
            record.digest,
            m.label(),
            p.digest()
        );
    }
    Ok(p)
}

pub fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Inspect {
            package: spec,
            json,
            from,
        } => super::package::run_inspect(&package(&spec, &from)?, json),
        AuditCommand::Diff {
            old,
            new,
            json,
            from,
        } => super::package::run_diff(&package(&old, &from)?, &package(&new, &from)?, json),
        AuditCommand::Rebuild {
            package: spec,
            source,
            features,
            json,
            from,
        } => rebuild(&package(&spec, &from)?, &source, &features, json),
        AuditCommand::Approve(d) => decide(d, Verdict::Approve),
        AuditCommand::Reject(d) => decide(d, Verdict::Reject),
        AuditCommand::Report { app, json, from } => {
            let report = from.open()?.report(&app)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_report(&report);
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::VerifyLog {
            json,
            checkpoint,
            from,
        } => {
            let kept = checkpoint
                .as_deref()
                .map(read_checkpoint)
                .transpose()?
                .flatten();
            let since = kept.as_ref().map(|h| h.seq);
            let (head, broken) = match from.open()?.verify_log(kept)? {
                Ok(head) => (Some(head), None),
                Err(ChainError::Broken { seq, reason }) => (None, Some((seq, reason))),
                Err(ChainError::Store(e)) => return Err(e.into()),
            };
            if let (Some(path), Some(head)) = (&checkpoint, &head) {
                write_atomically(path, &serde_json::to_vec_pretty(head)?).with_context(|| {
                    format!("cannot record the checkpoint in {}", path.display())
                })?;
            }
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "ok": head.is_some(),
                        "entries": head.as_ref().map_or_else(|| broken.as_ref().map_or(0, |b| b.0 - 1), |h| h.seq),
                        "head": head,
                        "checkpoint": since,
                        "broken_at": broken.as_ref().map(|b| b.0),
                        "reason": broken.as_ref().map(|b| &b.1),
                    })
                );
            } else if let Some((seq, reason)) = &broken {
                eprintln!("error: the audit log is broken at entry {seq}: {reason}");
            } else if let Some(head) = &head {
                let extends = since.map_or(String::new(), |seq| {
                    format!(" and extends the checkpoint's entry {seq}")
                });
                println!(
                    "ok: the audit log's {} entries form an unbroken chain{extends}",
                    head.seq
                );
                if let Some(path) = &checkpoint {
                    println!(
                        "checkpoint: entry {} recorded in {}",
                        head.seq,
                        path.display()
                    );
                }
            }
            Ok(if head.is_some() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// The head an earlier `verify-log --checkpoint` recorded in `path`; none
/// if the file does not exist yet.
fn read_checkpoint(path: &Path) -> anyhow::Result<Option<Head>> {
    let bytes = match superapp_core::files::read_at_most(path, 64 << 10) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let not_one = || {
        format!(
            "{} holds no checkpoint of `superapp audit verify-log`",
            path.display()
        )
    };
    let head: Head = serde_json::from_slice(&bytes).with_context(not_one)?;
    // An entry's hash is 64 hex digits; an empty log's head is entry 0
    // with the genesis hash, and nothing else.
    let hex = head.hash.len() == 64
        && head
            .hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let genesis = head.hash == superapp_services::audit::GENESIS;
    if !hex || (head.seq == 0) != genesis {
        anyhow::bail!("{}: its hash is not that of entry {}", not_one(), head.seq);
    }
    Ok(Some(head))
}

fn decide(d: Decide, verdict: Verdict) -> anyhow::Result<ExitCode> {
    let key = SigningKey::load(&d.key)?;
    // The digest comes from the bytes the auditor looked at when a file is
    // given; otherwise from the registry's record of that version.
    let from_file = Path::new(&d.package).exists();
    let target = if from_file && d.out.is_some() {
        None
    } else {
        Some(d.target.open(Some(key.clone()))?)
    };
    // The decision is signed over the digest of bytes this tool read and
    // checked itself: a registry's record (or a server) that disagrees
    // with the package it hands out gets no approval.
    let p = if from_file {
        super::package::read(Path::new(&d.package))?
    } else {
        let (app, version) = app_at_version(&d.package).ok_or_else(|| {
            anyhow::anyhow!("`{}` is neither a package file nor APP@VERSION", d.package)
        })?;
        let target = target
            .as_ref()
            .context("a registry is needed to look up APP@VERSION")?;
        registry_package(target, app, version).context("not signing")?
    };
    let m = p.manifest();
    let (app, version, digest) = (m.id.clone(), m.version.to_string(), p.digest());
    if verdict == Verdict::Approve {
        // What `audit inspect` calls an error is never approved.
        let found = super::package::inspect(&super::package::inspecting_runtime()?, &p);
        if !found.errors.is_empty() {
            anyhow::bail!(
                "not approving {app}@{version}: {} (`superapp audit inspect` shows the package)",
                found.errors.join("; ")
            );
        }
    }
    let decision =
        SignedDecision::sign(&key, &app, &version, &digest, verdict, &d.note, now_secs())?;
    if let Some(out) = &d.out {
        create_atomically(out, serde_json::to_string_pretty(&decision)?.as_bytes())?;
        println!(
            "signed: {} {app}@{version} (digest {digest}) into {}",
            verdict.name(),
            out.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let target = target.context("a registry is needed to record the decision")?;
    let answer = target.decide(&decision)?;
    target.finish()?;
    if d.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "changed": answer.changed,
                "release": answer.release,
                "decision": decision,
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let done = if verdict == Verdict::Approve {
        "approved"
    } else {
        "rejected"
    };
    if answer.changed {
        println!(
            "{done} {app}@{version} (digest {digest}) as {}",
            key.public_key()
        );
    } else {
        println!("{app}@{version} was already {done} by this key; nothing changed");
    }
    println!("  {}", release_line(&answer.release));
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &Report) {
    match &r.publisher {
        Some(p) => println!("{} by {} ({})", r.app, p.name, p.id),
        None => println!("{}", r.app),
    }
    for v in &r.versions {
        println!("{}", release_line(&v.release));
        match &v.blocked_by {
            None => println!("  users can open it"),
            Some(why) => println!("  users cannot open it: {why}"),
        }
        for d in &v.release.decisions {
            println!(
                "  decision: {} by {} at {}: {}",
                d.verdict.name(),
                d.decider(),
                d.at,
                d.note
            );
        }
        let caps = v
            .release
            .capabilities
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>();
        println!(
            "  capabilities: {}",
            if caps.is_empty() {
                "none".into()
            } else {
                caps.join(", ")
            }
        );
        let counts = |m: &std::collections::BTreeMap<String, u64>| -> String {
            if m.is_empty() {
                return "none".into();
            }
            m.iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!("  calls allowed: {}", counts(&v.usage.allowed));
        println!("  calls denied: {}", counts(&v.usage.denied));
        println!(
            "  waiting for consent: {}",
            counts(&v.usage.consent_required)
        );
        println!("  failures: {}", counts(&v.usage.failures));
    }
    println!("({} audit log entries read)", r.entries_scanned);
}
