//! `superapp plugin new|build|check|run|pack|sign`: the service provider's tools.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use clap::Subcommand;
use serde::Serialize;

use crate::plugin_build;
use crate::scaffold;
use crate::sdk_bundle;
use superapp_core::{Capability, Limits};
use superapp_runtime::bindings::superapp::plugin::types::{Action, Event};
use superapp_runtime::capabilities::http::Gateway;
use superapp_runtime::capabilities::DEV_PSEUDONYM_SECRET;
use superapp_runtime::contract::ImportSummary;
use superapp_runtime::{Call, Invocation, LoadError, Runtime, RuntimeConfig, Services};
use superapp_services::documents::HostKey;
use superapp_services::egress::{Egress, EgressConfig};
use superapp_services::identity::Pseudonyms;

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Create a new plugin crate (Cargo.toml, plugin.toml, src/lib.rs) that
    /// builds and runs as generated.
    New {
        /// Crate name: lowercase letters, digits and hyphens.
        name: String,
        /// Directory to create (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Publisher shown to users.
        #[arg(long, default_value = "Example Publisher")]
        publisher: String,
        /// Path to superapp-sdk (default: the SDK bundled with this binary,
        /// installed for its contract version under
        /// $XDG_DATA_HOME/superapp/sdk/VERSION or ~/.local/share/superapp/sdk/VERSION).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build a plugin crate into a WebAssembly component. Prints the
    /// component's path as the last line of stdout.
    ///
    /// Uses rustup's wasm32-unknown-unknown target when installed, otherwise
    /// Debian's rustc-web toolchain (SUPERAPP_WASM_TOOLCHAIN=rustup|debian
    /// forces one).
    Build {
        /// The plugin crate (default: the current directory).
        dir: Option<PathBuf>,
        /// Where to write the component (default: next to the core module,
        /// under the crate's target directory). A file already there is
        /// replaced only if it is a component.
        #[arg(long)]
        out: Option<PathBuf>,
        /// No progress display.
        #[arg(long, short)]
        quiet: bool,
        /// Cargo features of the plugin crate to build with (comma
        /// separated or repeated), e.g. a build that talks to the
        /// provider's backend.
        #[arg(long, value_delimiter = ',')]
        features: Vec<String>,
    },
    /// Check a component against its manifest: every import must be a
    /// superapp:plugin interface declared under [capabilities.*].
    Check {
        component: PathBuf,
        #[arg(long, default_value = "plugin.toml")]
        manifest: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pack a plugin into one package file: its plugin.toml and its
    /// component (built first, unless --component is given). The same
    /// inputs always make the same bytes. Refuses a component no host
    /// would load (an import its manifest does not declare, a missing
    /// export). Prints the package digest.
    Pack {
        /// The plugin crate (default: the current directory).
        dir: Option<PathBuf>,
        /// Where to write the package. A file there that is not a package
        /// is never replaced.
        #[arg(long)]
        out: PathBuf,
        /// Pack this component instead of building one.
        #[arg(long)]
        component: Option<PathBuf>,
        /// The manifest to pack (default: DIR/plugin.toml), e.g. a build's
        /// own manifest such as plugin.backend.toml.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Cargo features to build with (comma separated or repeated).
        #[arg(long, value_delimiter = ',')]
        features: Vec<String>,
        /// No progress display.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Sign a package with the publisher's key (from `superapp keys
    /// generate`): an Ed25519 signature over the digests of its manifest
    /// and component. Replaces an earlier signature. Refuses, as pack does,
    /// a package no host would load. Prints the digest.
    Sign {
        file: PathBuf,
        #[arg(long)]
        key: PathBuf,
        /// Write the signed package here (default: over FILE). A file
        /// there that is not a package is never replaced.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Publish a signed package to a running server, authenticated as its
    /// publisher by a request signed with the publisher's key. The server
    /// checks the package's signature against the publisher's registered
    /// keys and the component's imports against its manifest; packages
    /// without sensitive capabilities may be approved at once, the rest wait
    /// for an auditor.
    Publish {
        file: PathBuf,
        /// The server's base URL, e.g. http://127.0.0.1:8080.
        #[arg(long, env = "SUPERAPP_SERVER")]
        server: String,
        /// The publisher's key (the one that signed the package, or another
        /// registered key of the same publisher).
        #[arg(long)]
        key: PathBuf,
    },
    /// Run `launch` (and then one event) with in-memory capability backends
    /// and print the resulting view as JSON.
    Run {
        component: PathBuf,
        #[arg(long, default_value = "plugin.toml")]
        manifest: PathBuf,
        /// After launch, send this action (a button or form event name).
        #[arg(long)]
        event: Option<String>,
        /// The action's payload: a JSON string (the button value) or an
        /// object of form fields.
        #[arg(long, requires = "event")]
        payload: Option<String>,
        /// The user to run as (each user gets their own storage and id).
        #[arg(long, default_value = "dev-user")]
        user: String,
        /// Act as if the user refused this capability (repeatable; one
        /// users are asked about: profile, notify, payments, documents, http).
        #[arg(long, value_name = "CAPABILITY")]
        deny: Vec<String>,
        /// Let `http` reach this HOST:PORT over plain http, as a server's
        /// operator may (repeatable). Otherwise https only.
        #[arg(long, value_name = "HOST:PORT")]
        http_plain: Vec<String>,
        /// Let this host name resolve to an internal address such as
        /// loopback, for a backend on this machine (repeatable).
        #[arg(long, value_name = "HOST")]
        http_private_host: Vec<String>,
        /// Where precompiled components are cached (default: the user cache
        /// directory).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
}

pub fn run(cmd: PluginCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PluginCommand::New {
            name,
            dir,
            publisher,
            sdk,
        } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            let sdk = match sdk {
                Some(s) => s,
                None => {
                    let dir = sdk_bundle::install_dir()?;
                    sdk_bundle::install(&dir)?;
                    dir
                }
            };
            scaffold::new_plugin(&dir, &name, &publisher, &sdk)?;
            println!("created {}", dir.display());
            println!("next: superapp plugin build {}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Build {
            dir,
            out,
            quiet,
            features,
        } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from("."));
            let built = plugin_build::build_with(&dir, out.as_deref(), !quiet, &features)?;
            warn_on_contract_mismatch(&built.component);
            let size = std::fs::metadata(&built.component)
                .map(|m| m.len())
                .unwrap_or(0);
            eprintln!(
                "built with {} ({} KiB)",
                built.toolchain.describe(),
                size.div_ceil(1024)
            );
            println!("{}", built.component.display());
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Check {
            component,
            manifest,
            json,
        } => check(&component, &manifest, json),
        PluginCommand::Pack {
            dir,
            out,
            component,
            manifest,
            features,
            quiet,
        } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from("."));
            super::package::pack(super::package::PackArgs {
                dir: &dir,
                component: component.as_deref(),
                manifest: manifest.as_deref(),
                features: &features,
                out: &out,
                quiet,
            })
        }
        PluginCommand::Sign { file, key, out } => super::package::sign(&file, &key, out.as_deref()),
        PluginCommand::Publish { file, server, key } => {
            super::package::publish(&file, &key, &server)
        }
        PluginCommand::Run {
            component,
            manifest,
            event,
            payload,
            user,
            deny,
            http_plain,
            http_private_host,
            cache_dir,
        } => {
            let denied = deny
                .iter()
                .map(|name| {
                    let capability = Capability::from_name(name).with_context(|| {
                        format!(
                            "--deny {name}: unknown capability (known: {})",
                            Capability::known_names()
                        )
                    })?;
                    // What a user is never asked about, a user cannot refuse.
                    if superapp_runtime::capabilities::consent_level(capability)
                        == superapp_core::ConsentLevel::None
                    {
                        anyhow::bail!(
                            "--deny {name}: users are not asked about {name}, so they cannot refuse it; a manifest that declares it has it"
                        );
                    }
                    Ok(capability)
                })
                .collect::<anyhow::Result<BTreeSet<_>>>()?;
            let event = match event {
                Some(name) => Some(action_event(name, payload.as_deref())?),
                None => None,
            };
            let cache_dir = cache_dir.or_else(default_cache_dir);
            if let Some(pair) = http_plain
                .iter()
                .find(|p| !superapp_services::egress::is_host_port(p))
            {
                bail!("--http-plain `{pair}` is not HOST:PORT (such as localhost:8081)");
            }
            let egress = EgressConfig {
                plain_http: http_plain.iter().map(|h| h.to_ascii_lowercase()).collect(),
                private_hosts: http_private_host
                    .iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
                ..EgressConfig::default()
            };
            let dev = DevLoop {
                user,
                denied,
                egress,
            };
            run_plugin(&component, &manifest, event, dev, cache_dir)
        }
    }
}

/// Tell the provider when their SDK speaks another contract version than
/// this host: the component would be refused at load.
pub fn warn_on_contract_mismatch(component: &Path) {
    let limit = superapp_core::package::MAX_PACKAGE_BYTES as u64;
    let Ok(bytes) = superapp_core::files::read_at_most(component, limit) else {
        return;
    };
    if let Some(theirs) = sdk_bundle::contract_version_of(&bytes) {
        if theirs != superapp_core::VERSION {
            eprintln!(
                "warning: this plugin's superapp-sdk speaks contract superapp:plugin@{theirs}, but this host implements @{}; \
                 point its Cargo.toml at the SDK `superapp plugin new` installs ({})",
                superapp_core::VERSION,
                sdk_bundle::install_dir()
                    .map(|d| d.display().to_string())
                    .unwrap_or_else(|_| "see --help".into())
            );
        }
    }
}

/// `$XDG_CACHE_HOME/superapp/components`, else `~/.cache/superapp/components`.
fn default_cache_dir() -> Option<PathBuf> {
    Some(crate::files::user_dir("XDG_CACHE_HOME", ".cache")?.join("components"))
}

fn action_event(name: String, payload: Option<&str>) -> anyhow::Result<Event> {
    let mut action = Action {
        name,
        value: None,
        fields: Vec::new(),
    };
    if let Some(text) = payload {
        let value: serde_json::Value = serde_json::from_str(text).with_context(|| {
            let shown: String = text.chars().take(200).collect();
            let more = if shown.len() < text.len() { "…" } else { "" };
            format!("--payload is not valid JSON: {shown}{more}")
        })?;
        match value {
            serde_json::Value::String(s) => action.value = Some(s),
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let v = match v {
                        serde_json::Value::String(s) => s,
                        serde_json::Value::Number(_) | serde_json::Value::Bool(_) => v.to_string(),
                        _ => bail!("--payload field `{k}` must be a string, number or boolean"),
                    };
                    action.fields.push((k, v));
                }
            }
            _ => bail!("--payload must be a JSON string (button value) or object (form fields)"),
        }
    }
    Ok(Event::Action(action))
}

#[derive(Serialize)]
struct CheckReport<'a> {
    ok: bool,
    app: Option<&'a str>,
    version: Option<String>,
    sha256: Option<&'a str>,
    imports: Option<ImportSummary>,
    limits: Option<Limits>,
    errors: Vec<String>,
}

fn check(component: &Path, manifest: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let runtime = super::package::inspecting_runtime()?;
    // What `plugin pack` and the registry hold a new package to, besides
    // what the host loads.
    let result = runtime.load_files(manifest, component).and_then(|app| {
        match app.manifest().check_publishable() {
            Ok(()) => Ok(app),
            Err(e) => Err(LoadError::Manifest(e)),
        }
    });
    let report = match &result {
        Ok(app) => CheckReport {
            ok: true,
            app: Some(&app.manifest().id),
            version: Some(app.manifest().version.to_string()),
            sha256: Some(app.sha256()),
            imports: Some(ImportSummary::of(app.manifest(), app.imports())),
            limits: Some(app.limits()),
            errors: Vec::new(),
        },
        Err(e) => CheckReport {
            ok: false,
            app: None,
            version: None,
            sha256: None,
            imports: None,
            limits: None,
            errors: match e {
                LoadError::Imports(list) => list.iter().map(|e| e.to_string()).collect(),
                other => vec![other.to_string()],
            },
        },
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if let Ok(app) = &result {
        let m = app.manifest();
        let summary = ImportSummary::of(m, app.imports());
        println!("ok: {} ({}) by {}", m.label(), m.name, m.publisher);
        println!("sha256: {}", app.sha256());
        for cap in &summary.capabilities {
            let used = if cap.imported {
                "imported"
            } else {
                "declared, not imported"
            };
            println!("  {:<15} {:<24} {}", cap.name, used, cap.reason);
        }
        for name in &summary.extra_exports {
            println!("warning: the component exports `{name}` beside `launch` and `event`; the host never calls it");
        }
        let l = app.limits();
        println!(
            "limits: memory {} MiB, {} ms per event, {} view nodes, {} view bytes, storage {} MiB",
            l.memory_bytes >> 20,
            l.time_ms,
            l.view_nodes,
            l.view_bytes,
            l.storage_bytes >> 20
        );
    } else {
        for e in &report.errors {
            eprintln!("error: {}", super::error_text(e));
        }
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Who `plugin run` acts as and what it lets the app do.
struct DevLoop {
    user: String,
    denied: BTreeSet<Capability>,
    egress: EgressConfig,
}

fn run_plugin(
    component: &Path,
    manifest: &Path,
    event: Option<Event>,
    dev: DevLoop,
    cache_dir: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let user = dev.user.as_str();
    let config = RuntimeConfig {
        pooling: false,
        cache_dir,
        compile_worker: Some(super::tools_compile_worker()?),
        ..RuntimeConfig::default()
    };
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    tokio.block_on(async {
        let runtime = Runtime::new(config)?;
        let app = runtime.load_files(manifest, component)?;
        let mut services = Services::in_memory(dev.denied);
        if app.manifest().declares(Capability::Http) {
            // The same egress and checks as a server, with a key of this
            // run's own for the assertions (printed, for the backend).
            let host_key = Arc::new(HostKey::ephemeral()?);
            eprintln!(
                "http: requests carry assertions signed with this run's key {}",
                host_key.public_key()
            );
            services.http = Arc::new(Gateway {
                egress: Arc::new(Egress::new(dev.egress)?),
                host_key,
                pseudonyms: Pseudonyms::new(DEV_PSEUDONYM_SECRET),
                audit: None,
            });
        }
        let services = Arc::new(services);
        let invocation = Invocation::new(user);
        let mut view = runtime
            .run(&app, &services, &invocation, &Call::Launch)
            .await;
        if let (Ok(_), Some(event)) = (&view, event) {
            view = runtime
                .run(&app, &services, &invocation, &Call::Event(event))
                .await;
        }
        match view {
            Ok(view) => {
                println!("{}", serde_json::to_string_pretty(&view)?);
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                // The message may be the app's own words.
                eprintln!("error[{}]: {}", e.code(), super::error_text(&e.to_string()));
                Ok(ExitCode::FAILURE)
            }
        }
    })
}
