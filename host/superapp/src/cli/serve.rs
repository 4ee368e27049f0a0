//! `superapp serve`: run the host.

use std::path::PathBuf;
use std::process::ExitCode;

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
    let config = file.resolve()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(superapp_server::server::serve(config))?;
    Ok(ExitCode::SUCCESS)
}
