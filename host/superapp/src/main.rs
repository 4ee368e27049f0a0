//! The `superapp` binary: the host and its command-line tools.

fn main() -> std::process::ExitCode {
    superapp_cli::cli::main()
}
