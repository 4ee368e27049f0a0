//! Command-line interface: argument parsing and the commands' output. Errors
//! end here as a readable message and a non-zero exit code.

mod plugin;

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
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,guest=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
