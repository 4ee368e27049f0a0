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
    /// Installed mini-programs: one subdirectory per app, each with its
    /// plugin.toml and one .wasm component.
    #[arg(long = "apps", env = "SUPERAPP_APPS_DIR")]
    apps_dir: Option<PathBuf>,
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
