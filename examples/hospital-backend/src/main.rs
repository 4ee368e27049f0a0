//! City Hospital's booking backend, as a hospital would run it beside its
//! mini-program (see the crate's documentation for what it does).
//!
//! ```text
//! cargo run -p hospital-backend -- --listen 127.0.0.1:8081 \
//!     --origin http://localhost:8081 \
//!     --host-key "$(curl -s http://127.0.0.1:8080/api/v1/host-key | jq -r .public_key)" \
//!     --insurer gov.health="$(curl -s http://127.0.0.1:8080/api/v1/issuers | jq -r '.issuers[] | select(.id=="gov.health") | .public_key')" \
//!     --host http://127.0.0.1:8080
//! ```

use anyhow::Context as _;
use clap::Parser;

/// City Hospital's booking backend for its superapp mini-program.
#[derive(Parser)]
struct Args {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: String,
    /// This backend's origin as the app's manifest lists it: the audience
    /// of the host's assertions.
    #[arg(long)]
    origin: String,
    /// The super-app host's public key (base64url, from /api/v1/host-key).
    #[arg(long, allow_hyphen_values = true)]
    host_key: String,
    /// The mini-program's id, the audience of shared insurance policies.
    #[arg(long, default_value = "dev.superapp.hospital-booking")]
    app: String,
    /// An insurer whose policies are accepted, as ISSUER_ID=PUBLIC_KEY
    /// (base64url, as /api/v1/issuers lists it); repeat for several.
    #[arg(long = "insurer", value_name = "ID=KEY", allow_hyphen_values = true)]
    insurers: Vec<String>,
    /// The file the books are kept in: read at start (if it is there),
    /// written and synced after every change.
    #[arg(long, default_value = "hospital-books.json")]
    books: std::path::PathBuf,
    /// The super-app host's base URL, where the insurers' revocations are
    /// read (`/api/v1/issuers/{id}/revoked`): at start, which fails if the
    /// host cannot be read, and every --revocations-every seconds. Without
    /// it, a policy its insurer revoked still lowers a fee.
    #[arg(long, value_name = "URL")]
    host: Option<String>,
    /// Seconds between two reads of the revocations.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    revocations_every: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let host_key = superapp_sdk::credentials::public_key(&args.host_key)
        .map_err(|e| anyhow::anyhow!("--host-key: {e}"))?;
    let insurers = args
        .insurers
        .iter()
        .map(|text| {
            let (id, key) = text
                .split_once('=')
                .with_context(|| format!("--insurer {text}: expected ID=KEY"))?;
            let key = superapp_sdk::credentials::public_key(key)
                .map_err(|e| anyhow::anyhow!("--insurer {id}: {e}"))?;
            Ok((id.to_string(), key))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let config = hospital_backend::Config {
        host_key,
        origin: args.origin.trim_end_matches('/').to_string(),
        app: args.app,
        insurers,
        books: Some(args.books),
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let revocations = match args.host {
        Some(host) => {
            let url = reqwest::Url::parse(&host)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .with_context(|| {
                    format!("--host {host}: expected the host's URL, e.g. https://superapp.example")
                })?;
            // The lists are the host's word: over plain http anyone on the
            // way could leave a revocation out.
            let name = url.host_str().unwrap_or_default();
            let name = name.trim_start_matches('[').trim_end_matches(']');
            let loopback = name == "localhost"
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if url.scheme() == "http" && !loopback {
                anyhow::bail!("--host {host}: the revocations must come over https (plain http only from this machine)");
            }
            Some(hospital_backend::Revocations {
                host: url.as_str().trim_end_matches('/').to_string(),
                every: std::time::Duration::from_secs(args.revocations_every),
                host_starting: false,
            })
        }
        None => {
            eprintln!("no --host: policies are checked without their insurers' revocations");
            None
        }
    };
    println!("hospital backend on http://{}", listener.local_addr()?);
    hospital_backend::serve(listener, config, revocations).await?;
    Ok(())
}
