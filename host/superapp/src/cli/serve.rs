//! `superapp serve`: run the host.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Args;

use superapp_server::config::{FileConfig, StoreLocation};

/// Options of `superapp serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where all data lives (default: ./superapp-data).
    #[arg(long, env = "SUPERAPP_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Where the records live: a postgres:// URL for a PostgreSQL database
    /// that several host processes share (the schema is created or
    /// migrated at start). Default: the embedded store in the data
    /// directory.
    #[arg(long, env = "SUPERAPP_STORE", value_name = "URL")]
    store: Option<String>,
    /// The bus between host processes that share a store: nats:// URLs of
    /// NATS servers (with JetStream), separated by commas. Live pushes (a
    /// chat message to a member connected to another process) travel on
    /// it, and due work (payment-sheet expiry, provider callbacks) goes
    /// through its work queue so that one process does each; the records
    /// stay in the store. Default: none (one host process).
    #[arg(long, env = "SUPERAPP_BUS", value_name = "URLS")]
    bus: Option<String>,
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
    /// With --demo: also run City Hospital's own booking system (the
    /// hospital-backend example) on --hospital-backend-listen, and serve
    /// the hospital app built to book through it (`--features backend`,
    /// its plugin.backend.toml, version 1.1.2) instead of the one that
    /// keeps the schedule in shared storage. The host may reach it over
    /// plain http on loopback, and nothing else of the kind. On the
    /// embedded store only: it trusts this data directory's keys.
    #[arg(long, requires = "demo")]
    hospital_backend: bool,
    /// Where the demo's hospital backend listens: a loopback address with a
    /// fixed port (the app's manifest names it, so it must not change from
    /// one start to the next).
    #[arg(long, default_value = "127.0.0.1:8081", requires = "hospital_backend")]
    hospital_backend_listen: SocketAddr,
}

/// The name the demo's hospital app reaches its backend by (`.localhost`
/// names are loopback by definition); the operator's configuration maps
/// it to the backend's address.
const DEMO_BACKEND_HOST: &str = "booking.cityhospital.localhost";
/// The origin `plugin.backend.toml` lists, which the demo replaces.
const PUBLISHED_BACKEND_ORIGIN: &str = "https://booking.cityhospital.example";

/// The mini-programs `--demo` serves.
const DEMO_APPS: [&str; 3] = ["hospital-booking", "city-payments", "document-wallet"];

/// Build the demo's apps into `DATA_DIR/demo-apps` (one folder per app, as
/// `--apps` reads it). Without sources, apps built by an earlier start are
/// served again. With `backend`, the hospital app is its backend build,
/// listing that origin.
fn demo_apps(plugins: &Path, data_dir: &Path, backend: Option<&str>) -> anyhow::Result<PathBuf> {
    let apps = data_dir.join("demo-apps");
    for name in DEMO_APPS {
        let source = plugins.join(name);
        let target = apps.join(name);
        if source.join("Cargo.toml").exists() {
            let (features, manifest) = match backend {
                Some(_) if name == "hospital-booking" => {
                    (vec!["backend".to_string()], "plugin.backend.toml")
                }
                _ => (Vec::new(), "plugin.toml"),
            };
            eprintln!("building the demo app {name}");
            let built = crate::plugin_build::build_with(
                &source,
                None,
                std::io::stderr().is_terminal(),
                &features,
            )?;
            std::fs::create_dir_all(&target)
                .with_context(|| format!("cannot create {}", target.display()))?;
            let text = std::fs::read_to_string(source.join(manifest))
                .with_context(|| format!("cannot read {name}'s {manifest}"))?;
            let text = match backend {
                Some(origin) => text.replace(PUBLISHED_BACKEND_ORIGIN, origin),
                None => text,
            };
            std::fs::write(target.join("plugin.toml"), text)
                .with_context(|| format!("cannot write {name}'s plugin.toml"))?;
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
    if let Some(s) = args.store {
        file.store = Some(s);
    }
    if let Some(b) = args.bus {
        file.bus = Some(b);
    }
    let mut backend = None;
    let shared = !matches!(
        StoreLocation::parse(file.store.clone(), None)?,
        StoreLocation::Embedded
    );
    if args.hospital_backend && shared {
        // It trusts the keys of this data directory, which a shared store
        // does not use; refused before anything is built or written.
        bail!("--hospital-backend runs beside one host on its own data directory: start it without --store");
    }
    if args.demo {
        let data_dir = file
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("./superapp-data"));
        // Made as the host makes it, before the demo puts anything in it.
        superapp_server::host::create_data_dir(&data_dir)?;
        if args.hospital_backend {
            let listen = args.hospital_backend_listen;
            if !listen.ip().is_loopback() || listen.port() == 0 {
                bail!("--hospital-backend-listen must be a loopback address with a port, like 127.0.0.1:8081, not {listen}");
            }
        }
        let origin = args.hospital_backend.then(|| {
            let listen = args.hospital_backend_listen;
            allow_demo_backend(&mut file, listen);
            format!("http://{DEMO_BACKEND_HOST}:{}", listen.port())
        });
        file.apps_dir = Some(demo_apps(&args.plugins, &data_dir, origin.as_deref())?);
        file.dev_approve = Some(true);
        file.demo = Some(true);
        if let Some(origin) = origin {
            backend = Some(demo_backend_config(&data_dir, origin)?);
        }
    }
    let mut config = file.resolve()?;
    config.apps.compile_worker = Some(super::compile_worker(config.apps.compile_budget)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let served = runtime.block_on(async {
        let serving = superapp_server::server::bind(&config).await?;
        if let Some(backend) = backend {
            let listen = args.hospital_backend_listen;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen} for the hospital backend"))?;
            eprintln!(
                "demo: City Hospital's booking system on http://{listen} ({})",
                backend.origin
            );
            // It reads the insurers' revocations from this host once it
            // answers, at the address it really listens on (`:0` is a port
            // the system picked).
            let host = match serving.local_addr()? {
                a if a.ip().is_unspecified() && a.is_ipv6() => format!("http://[::1]:{}", a.port()),
                a if a.ip().is_unspecified() => format!("http://127.0.0.1:{}", a.port()),
                a => format!("http://{a}"),
            };
            let revocations = hospital_backend::Revocations {
                host,
                every: std::time::Duration::from_secs(60),
                host_starting: true,
            };
            tokio::spawn(async move {
                if let Err(e) = hospital_backend::serve(listener, backend, Some(revocations)).await
                {
                    eprintln!("the demo's hospital backend stopped: {e}");
                }
            });
        }
        superapp_server::server::serve_on(serving, config).await
    });
    // The host has stopped and closed its store: blocking work still
    // running (a component compiling, which its worker bounds anyway) does
    // not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    served?;
    Ok(ExitCode::SUCCESS)
}

/// Let the host reach the demo's hospital backend, and only it, on
/// loopback over plain http.
fn allow_demo_backend(file: &mut FileConfig, listen: SocketAddr) {
    let origin = format!("{DEMO_BACKEND_HOST}:{}", listen.port());
    file.http_plain_origins
        .get_or_insert_with(Vec::new)
        .push(origin);
    file.http_private_hosts
        .get_or_insert_with(Vec::new)
        .push(DEMO_BACKEND_HOST.to_string());
    file.http_hosts
        .get_or_insert_with(Default::default)
        .insert(DEMO_BACKEND_HOST.to_string(), vec![listen.ip().to_string()]);
}

/// The demo hospital backend's trust: this host's key (made now if this is
/// the data directory's first start) and the demo's health insurer.
fn demo_backend_config(
    data_dir: &Path,
    origin: String,
) -> anyhow::Result<hospital_backend::Config> {
    let host_key = superapp_services::documents::HostKey::load_or_create(
        &superapp_services::identity::Secrets::in_dir(data_dir),
    )?;
    let insurer = superapp_server::host::demo_issuer_key(
        &superapp_services::identity::Secrets::in_dir(data_dir),
        superapp_server::host::DEMO_INSURER,
    )?;
    let key =
        |b64: &str| superapp_sdk::credentials::public_key(b64).map_err(|e| anyhow::anyhow!("{e}"));
    Ok(hospital_backend::Config {
        host_key: key(&host_key.public_key())?,
        origin,
        app: "dev.superapp.hospital-booking".into(),
        insurers: vec![(insurer.issuer.clone(), key(&insurer.public_key)?)],
        // Beside the host's own records: kept across restarts as they are.
        books: Some(data_dir.join("hospital-backend-books.json")),
    })
}
