//! Command-line interface: argument parsing and the commands' output. Errors
//! end here as a readable message and a non-zero exit code.

mod audit;
mod backup;
mod documents;
mod keys;
mod merchant;
mod package;
mod plugin;
mod registry;
mod serve;
mod target;
mod wallet;

use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

/// superapp: a super-app host that runs mini-programs in a WebAssembly sandbox.
#[derive(Debug, Parser)]
#[command(name = "superapp", version = superapp_server::VERSION, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The most a token file may hold: a token is one short line.
pub(crate) const TOKEN_LIMIT: u64 = 4 << 10;

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the host: HTTP API and WebSocket pushes, all data in one directory.
    ///
    /// Every option can also be set in the config file (kebab-case keys) or
    /// with a `SUPERAPP_*` environment variable (upper case, `_` for `-`);
    /// flags win over the environment, which wins over the file. Keys only
    /// the file and environment set: password-iterations,
    /// session-ttl-secs, login-max-failures-per-user (failed logins one
    /// client address may make at one account in login-window-secs, and
    /// wrong password confirmations one session may make; default 5), login-max-failures-per-account (from all addresses;
    /// default 50), login-max-failures-per-client (over all accounts;
    /// default 20; neither of the last two stops an account at an address
    /// it signed in from in the last 30 days), login-window-secs (default
    /// 900),
    /// password-hash-slots (password hashes that run at once, the rest
    /// waiting their turn; default half the cores), signups-per-client
    /// (sign-ups one client address may make an hour; default 100),
    /// max-body-bytes,
    /// request-timeout-secs, max-connections, max-connections-per-client,
    /// header-timeout-secs, idle-timeout-secs, max-message-bytes,
    /// chat-rate-per-user (messages one user may send a second, with
    /// bursts of five seconds' worth; default 10), app-events-per-user
    /// (app launches and actions one user may start a second, the same
    /// way; default 20),
    /// store-cache-mib (the store's page cache, default 128), ws-queue,
    /// max-live-connections-per-user (WebSockets one user may hold in one
    /// process; default 64),
    /// heartbeat-secs,
    /// cookie-secure (served over HTTPS: the session cookie is Secure and
    /// named __Host-superapp_session), payment-ttl-secs,
    /// document-ttl-secs, event-slots
    /// (events that execute at once; default the number of cores),
    /// event-instances (events alive at once, also while they wait on a
    /// host call: the sandbox's instance pool; default 64),
    /// event-instances-per-app (default 16),
    /// max-pending-events, max-pending-events-per-app, max-event-wait-ms
    /// (past these a user's event gets 503), compile-timeout-secs and
    /// compile-memory-mib (what compiling one component may take; default
    /// 25 s and 2048 MiB), sensitive-capabilities (the
    /// capabilities whose packages need a trusted auditor's approval;
    /// default payments, documents, profile, notify, http), auto-approve
    /// (`non-sensitive`, the default, or `never`); for apps' requests to
    /// their backends: http-plain-origins (HOST:PORT pairs reachable over
    /// plain http), http-private-hosts (hosts that may resolve to internal
    /// addresses), http-hosts (names resolved from a table, NAME=ADDRESS in
    /// the environment), http-max-request-bytes, http-max-response-bytes,
    /// http-timeout-ms, http-max-concurrent-per-app, http-rate-per-app.
    /// Each time and size has a range (session-ttl-secs up to 400 days,
    /// idle-timeout-secs up to a day, …); a value outside it stops the
    /// start with a message naming the key.
    /// `SUPERAPP_LOG_FORMAT=json`
    /// logs one JSON object per line. `SUPERAPP_CLOCK_OFFSET_SECS`
    /// shifts the host's clock, for tests and demonstrations only.
    Serve(serve::ServeArgs),
    /// Auditors' tools: inspect and compare packages, approve or reject
    /// them, report on an app, verify the audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Operators' registry tools: publishers, trusted auditor keys,
    /// versions, yanking and staged rollout.
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// Signing keys of publishers and auditors; the host's own, rotated.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Document issuers' tools: keys, registration, issuing, revoking.
    #[command(subcommand)]
    Issuer(documents::IssuerCommand),
    /// Verify document presentations offline.
    #[command(subcommand)]
    Documents(documents::DocumentsCommand),
    /// Operators' ledger tools: top up a wallet, check the ledger.
    #[command(subcommand)]
    Wallet(wallet::WalletCommand),
    /// Write, build, check, try, pack, sign and publish mini-programs.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Publishers' back office on a running server: merchant balances,
    /// orders and refunds.
    #[command(subcommand)]
    Merchant(merchant::MerchantCommand),
    /// Copy a running server's data (its store at one instant, and its
    /// keys) into one archive, over the operator API.
    Backup(backup::BackupArgs),
    /// Bring a backup back into a new data directory, then check its audit
    /// chain and ledger (exit 1 if either fails).
    Restore(backup::RestoreArgs),
    /// The host's compile worker: a component on stdin, its compiled form
    /// on stdout, within a budget (run by the host itself).
    #[command(hide = true)]
    CompileComponent {
        #[arg(long)]
        time_ms: u64,
        #[arg(long)]
        memory_mib: u64,
    },
}

/// Parse arguments, run the command, and turn any error into a message on
/// stderr and exit code 1 (2 for bad arguments, from clap).
pub fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches)
        .and_then(|cli| one_target(&matches).map(|()| cli))
        .unwrap_or_else(|e| e.exit());
    // The compile worker's standard error is its answer's reason: no log
    // lines there.
    if !matches!(cli.command, Command::CompileComponent { .. }) {
        init_tracing();
    }
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Audit(cmd) => audit::run(cmd),
        Command::Registry(cmd) => registry::run(cmd),
        Command::Keys(cmd) => keys::run(cmd),
        Command::Plugin(cmd) => plugin::run(cmd),
        Command::Wallet(cmd) => wallet::run(cmd),
        Command::Merchant(cmd) => merchant::run(cmd),
        Command::Issuer(cmd) => documents::run_issuer(cmd),
        Command::Documents(cmd) => documents::run_documents(cmd),
        Command::Backup(args) => backup::backup(args),
        Command::Restore(args) => backup::restore(args),
        Command::CompileComponent {
            time_ms,
            memory_mib,
        } => {
            let budget = superapp_runtime::CompileBudget {
                time: std::time::Duration::from_millis(time_ms),
                memory_bytes: memory_mib.saturating_mul(1 << 20),
            };
            let code = superapp_runtime::run_compile_worker(budget);
            return ExitCode::from(u8::try_from(code).unwrap_or(1));
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_text(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// A command given both `--server` and `--data-dir` (or `--store`) on its
/// command line is refused: which did its user mean? So is `--data-dir`
/// typed while `SUPERAPP_SERVER` is set, which would otherwise win. A
/// `--server` typed while `SUPERAPP_DATA_DIR` or `SUPERAPP_STORE` is set
/// wins without a word: those are also `serve`'s settings and may well be
/// set where the CLI runs.
fn one_target(matches: &ArgMatches) -> Result<(), clap::Error> {
    let mut command = matches;
    while let Some((_, sub)) = command.subcommand() {
        command = sub;
    }
    let source = |id: &str| match command.try_contains_id(id) {
        Ok(true) => command.value_source(id),
        _ => None,
    };
    let typed = Some(ValueSource::CommandLine);
    let server = source("server");
    for (id, flag) in [("data_dir", "--data-dir"), ("store", "--store")] {
        if source(id) != typed {
            continue;
        }
        let why = match server {
            Some(ValueSource::CommandLine) => format!(
                "--server works on a running server and {flag} on a store opened directly; give one of them"
            ),
            Some(ValueSource::EnvVariable) => format!(
                "SUPERAPP_SERVER is set, which sends this command to a running server; unset it to use {flag}"
            ),
            _ => continue,
        };
        return Err(Cli::command().error(clap::error::ErrorKind::ArgumentConflict, why));
    }
    Ok(())
}

/// The most of each line of an error message the CLI prints, in bytes.
const MAX_ERROR_LINE: usize = 1024;

/// `text` with control characters (but line breaks and tabs) escaped: an
/// error may quote what a hostile package or archive holds, and a
/// terminal must not take that as commands.
fn printable(text: &str) -> String {
    superapp_core::text::escape_controls(text, &['\n', '\t']).into_owned()
}

/// An error message, [`printable`]: it may quote what it was given (a
/// file's line, a server's answer), so enough of each line to see is
/// printed, not a megabyte.
fn error_text(text: &str) -> String {
    printable(&superapp_core::text::clip_lines(text, MAX_ERROR_LINE))
}

/// `superapp … | head` closes our stdout early. Rust ignores SIGPIPE, so
/// the next `println!` panics; exit quietly instead, with the status a
/// process killed by SIGPIPE has (128 + 13), as other command-line tools do.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

/// How this binary compiles components under `budget`: in a child
/// process of its own (`superapp compile-component`).
fn compile_worker(
    budget: superapp_runtime::CompileBudget,
) -> anyhow::Result<superapp_runtime::CompileWorker> {
    superapp_runtime::CompileWorker::this_program(&["compile-component"], budget)
        .map_err(|e| anyhow::anyhow!("cannot find this program to compile components with: {e}"))
}

/// The tools' compile budget: the host's default, or what
/// `SUPERAPP_COMPILE_TIMEOUT_SECS` and `SUPERAPP_COMPILE_MEMORY_MIB` say,
/// as for `serve`.
fn tools_compile_worker() -> anyhow::Result<superapp_runtime::CompileWorker> {
    let mut budget = superapp_runtime::CompileBudget::default();
    let setting = |key: &str| -> anyhow::Result<Option<u64>> {
        match std::env::var(key) {
            Ok(v) => match v.trim().parse::<u64>() {
                Ok(n) if n > 0 => Ok(Some(n)),
                _ => anyhow::bail!("{key} must be a positive whole number, not `{v}`"),
            },
            Err(_) => Ok(None),
        }
    };
    if let Some(secs) = setting("SUPERAPP_COMPILE_TIMEOUT_SECS")? {
        budget.time = std::time::Duration::from_secs(secs);
    }
    if let Some(mib) = setting("SUPERAPP_COMPILE_MEMORY_MIB")? {
        budget.memory_bytes = mib.saturating_mul(1 << 20);
    }
    compile_worker(budget)
}

/// Open the store of a server's data directory, for the offline tools.
fn open_store(data_dir: &std::path::Path) -> anyhow::Result<std::sync::Arc<superapp_store::Store>> {
    use anyhow::Context as _;
    let path = data_dir.join("store");
    if !path.exists() {
        anyhow::bail!(
            "{} has no store (is it a superapp data directory?)",
            data_dir.display()
        );
    }
    superapp_store::Store::open(&path)
        .with_context(|| format!("cannot use the data directory {}", data_dir.display()))
}

/// Log to stderr; `RUST_LOG` overrides the default (info, which includes
/// what mini-programs log at info and above). `SUPERAPP_LOG_FORMAT=json`
/// writes one JSON object per line, with the fields of the enclosing spans
/// (a request's method, path and `request_id`), for log collectors.
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,guest=info"));
    let json = std::env::var("SUPERAPP_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init()
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::Cli;

    /// Base64url keys and ids start with `-` one time in 64; they are values,
    /// never flags.
    #[test]
    fn keys_and_ids_that_begin_with_a_hyphen_are_values() {
        let key = "-d3a0kDftzYzFbizNAIlzAdHDXHPZCciKw3VpJEZtJQ";
        for args in [
            vec![
                "issuer",
                "add",
                "--id",
                "gov",
                "--name",
                "Gov",
                "--public-key",
                key,
            ],
            vec![
                "issuer",
                "revoke",
                "--key",
                "k.json",
                "--credential",
                key,
                "--out",
                "r.json",
            ],
            vec![
                "documents",
                "verify",
                "p.json",
                "--app",
                "a",
                "--issuer-key",
                key,
                "--host-key",
                key,
                "--revoked",
                key,
            ],
        ] {
            let parsed = Cli::try_parse_from(std::iter::once("superapp").chain(args.clone()));
            assert!(parsed.is_ok(), "{args:?}: {}", parsed.unwrap_err());
        }
    }
}
