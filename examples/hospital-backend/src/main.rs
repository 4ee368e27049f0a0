//! City Hospital's booking backend, as a hospital would run it beside its
//! mini-program (see the crate's documentation for what it does).
//!
//! ```text
//! cargo run -p hospital-backend -- --listen 127.0.0.1:8081 \
//!     --origin http://localhost:8081 \
//!     --host-key "$(curl -s http://127.0.0.1:8080/api/v1/host-key | jq -r .public_key)"
//! ```

use std::sync::Arc;

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
    /// A consultation's fee, in minor units.
    #[arg(long, default_value_t = 4_500)]
    fee: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let host_key = superapp_sdk::credentials::public_key(&args.host_key)
        .map_err(|e| anyhow::anyhow!("--host-key: {e}"))?;
    let config = hospital_backend::Config {
        host_key,
        origin: args.origin.trim_end_matches('/').to_string(),
        fee: args.fee,
    };
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    let hospital = Arc::new(hospital_backend::Hospital::new(config, Box::new(now)));
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("hospital backend on http://{}", listener.local_addr()?);
    axum::serve(listener, hospital_backend::router(hospital)).await?;
    Ok(())
}
