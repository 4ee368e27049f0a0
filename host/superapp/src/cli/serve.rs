//! `superapp serve`: run the host.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Args;

use superapp_server::config::FileConfig;

/// Options of `superapp serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where all data lives (default: ./superapp-data).
    #[arg(long, env = "SUPERAPP_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on (default: 127.0.0.1:8080; port 0 picks a free one).
    #[arg(long, env = "SUPERAPP_LISTEN")]
    listen: Option<String>,
    /// For development: a directory with one subdirectory per app (its
    /// plugin.toml and one .wasm component). Each is packed, signed with
    /// the data directory's development publisher key and published to
    /// the registry at startup; the log says what happened to each.
    #[arg(long = "apps", env = "SUPERAPP_APPS_DIR")]
    apps_dir: Option<PathBuf>,
    /// For development: approve what --apps publishes with a development
    /// auditor key that this host then trusts. Never in production.
    #[arg(long)]
    dev_approve: bool,
    /// A TOML config file.
    #[arg(long, env = "SUPERAPP_CONFIG")]
    config: Option<PathBuf>,
    /// A complete demo on this data directory: build the bundled
    /// mini-programs from --plugins (when that folder is there), publish
    /// and approve them with development keys, seed demo users with money
    /// and official documents and their issuers (once: a second start seeds
    /// nothing twice), and print the URL and the logins. Never in
    /// production.
    #[arg(long, conflicts_with = "apps_dir")]
    demo: bool,
    /// With --demo: the bundled mini-programs' sources (the checkout's
    /// plugins/ folder).
    #[arg(long, default_value = "plugins", requires = "demo")]
    plugins: PathBuf,
}

/// The mini-programs `--demo` serves.
const DEMO_APPS: [&str; 3] = ["hospital-booking", "city-payments", "document-wallet"];

/// Build the demo's apps into `DATA_DIR/demo-apps` (one folder per app, as
/// `--apps` reads it). Without sources, apps built by an earlier start are
/// served again.
fn demo_apps(plugins: &Path, data_dir: &Path) -> anyhow::Result<PathBuf> {
    let apps = data_dir.join("demo-apps");
    for name in DEMO_APPS {
        let source = plugins.join(name);
        let target = apps.join(name);
        if source.join("Cargo.toml").exists() {
            eprintln!("building the demo app {name}");
            let built = crate::plugin_build::build(&source, None, std::io::stderr().is_terminal())?;
            std::fs::create_dir_all(&target)
                .with_context(|| format!("cannot create {}", target.display()))?;
            std::fs::copy(source.join("plugin.toml"), target.join("plugin.toml"))
                .with_context(|| format!("cannot copy {name}'s plugin.toml"))?;
            std::fs::copy(&built.component, target.join(format!("{name}.wasm")))
                .with_context(|| format!("cannot copy {name}'s component"))?;
        } else if !target.join("plugin.toml").exists() {
            bail!(
                "the demo needs the bundled mini-programs: run it from the checkout (or pass --plugins DIR), where {} is",
                source.display()
            );
        }
    }
    Ok(apps)
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    file.apply_env()?;
    if let Some(d) = args.data_dir {
        file.data_dir = Some(d);
    }
    if let Some(a) = args.apps_dir {
        file.apps_dir = Some(a);
    }
    if args.dev_approve {
        file.dev_approve = Some(true);
    }
    if let Some(l) = args.listen {
        file.listen = Some(l);
    }
    if args.demo {
        let data_dir = file
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("./superapp-data"));
        file.apps_dir = Some(demo_apps(&args.plugins, &data_dir)?);
        file.dev_approve = Some(true);
        file.demo = Some(true);
    }
    let config = file.resolve()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(superapp_server::server::serve(config))?;
    Ok(ExitCode::SUCCESS)
}
