//! Command-line interface: argument parsing and the commands' output. Errors
//! end here as a readable message and a non-zero exit code.

mod audit;
mod plugin;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// superapp: a super-app host that runs mini-programs in a WebAssembly sandbox.
#[derive(Debug, Parser)]
#[command(name = "superapp", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the host: HTTP API and WebSocket pushes, all data in one directory.
    ///
    /// Every option can also be set in the config file (kebab-case keys) or
    /// with a `SUPERAPP_*` environment variable (upper case, `_` for `-`);
    /// flags win over the environment, which wins over the file. Keys only
    /// the file and environment set: password-iterations,
    /// session-ttl-secs, login-max-failures-per-user,
    /// login-max-failures-per-client, login-window-secs, max-body-bytes,
    /// request-timeout-secs, max-message-bytes, ws-queue, heartbeat-secs,
    /// cookie-secure.
    Serve(serve::ServeArgs),
    /// Auditors' tools: verify the audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Write, build, check and try mini-programs.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
}

/// Parse arguments, run the command, and turn any error into a message on
/// stderr and exit code 1 (2 for bad arguments, from clap).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Audit(cmd) => audit::run(cmd),
        Command::Plugin(cmd) => plugin::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Log to stderr; `RUST_LOG` overrides the default (warnings, plus what
/// mini-programs log at info and above).
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,guest=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
