//! Where operator, publisher and auditor commands act: a running server
//! over its HTTP API (`--server URL`, authenticated with the operator
//! token or by signing each request with `--key`), or a stopped server's
//! data directory opened directly (`--data-dir`). Both give the same
//! answers through the same registry types.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _};
use clap::Args;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use superapp_core::decision::SignedDecision;
use superapp_core::keys::SigningKey;
use superapp_core::{now_secs, signed_request};
use superapp_services::audit::{Audit, ChainError, ChainVerifier, Entry, Head};
use superapp_services::registry::report::Report;
use superapp_services::registry::{Actor, Auditor, Changed, Policy, Publisher, Registry, Release};
use superapp_store::Store;

/// Where to act, and as whom.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// A running server's base URL, e.g. http://127.0.0.1:8080 (plain
    /// HTTP: reach a remote server through an HTTPS-terminating proxy or an
    /// SSH tunnel).
    #[arg(long, env = "SUPERAPP_SERVER")]
    pub server: Option<String>,
    /// With --server: the operator token file (the server writes it to
    /// DATA_DIR/operator.token, mode 0600).
    #[arg(long, env = "SUPERAPP_OPERATOR_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Without --server: a stopped server's data directory, opened directly.
    #[arg(long, env = "SUPERAPP_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Without --server: the hosts' shared PostgreSQL store (a postgres://
    /// URL), opened directly; the hosts may keep running.
    #[arg(
        long,
        env = "SUPERAPP_STORE",
        value_name = "URL",
        conflicts_with = "data_dir"
    )]
    pub store: Option<String>,
}

/// What a command runs against.
pub enum Target {
    Remote(Remote),
    Local(Local),
}

pub struct Local {
    pub store: Arc<Store>,
    pub audit: Arc<Audit>,
    pub registry: Registry,
}

/// How a remote request proves who sends it.
pub enum Credential {
    Token(String),
    Key(SigningKey),
    None,
}

pub struct Remote {
    base: String,
    credential: Credential,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl TargetArgs {
    /// Open the target. `key` signs remote requests when no operator token
    /// is given (auditors and publishers).
    pub fn open(&self, key: Option<SigningKey>) -> anyhow::Result<Target> {
        if let Some(server) = &self.server {
            let credential = match (&self.token_file, key) {
                (Some(path), _) => {
                    let token = superapp_core::files::read_text_at_most(path, super::TOKEN_LIMIT)
                        .with_context(|| format!("cannot read the token file {}", path.display()))?
                        .trim()
                        .to_string();
                    // A token is one line of printable ASCII: a key or some
                    // other file given by mistake is named as such.
                    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
                        anyhow::bail!(
                            "{} does not hold an operator token (DATA_DIR/operator.token)",
                            path.display()
                        );
                    }
                    Credential::Token(token)
                }
                (None, Some(key)) => Credential::Key(key),
                (None, None) => Credential::None,
            };
            return Ok(Target::Remote(Remote::new(server, credential)?));
        }
        use superapp_server::config::StoreLocation;
        if let StoreLocation::Postgres { url, .. } = StoreLocation::parse(self.store.clone(), None)?
        {
            // The URL may hold a password: the message never repeats it.
            let store = Store::connect(&url, 2)
                .map_err(|e| anyhow::anyhow!("cannot open the PostgreSQL store: {e}"))?;
            return Ok(Target::Local(Local::on(store)?));
        }
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("./superapp-data"));
        Ok(Target::Local(Local::open(&data_dir)?))
    }
}

impl Local {
    fn open(data_dir: &Path) -> anyhow::Result<Local> {
        let store = super::open_store(data_dir)
            .map_err(|e| anyhow::anyhow!("{e:#}; to act on a running server, pass --server URL"))?;
        Local::on(store)
    }

    fn on(store: Arc<Store>) -> anyhow::Result<Local> {
        let audit = Arc::new(Audit::open(store.clone())?);
        let registry = Registry::open(store.clone(), audit.clone(), Policy::default())?;
        Ok(Local {
            store,
            audit,
            registry,
        })
    }
}

/// The API's error body.
#[derive(Deserialize)]
struct ApiError {
    error: ApiErrorBody,
}

#[derive(Deserialize)]
struct ApiErrorBody {
    code: String,
    message: String,
}

/// A non-2xx answer as an error, in the server's words when it gave some.
/// A route the server does not have is one this command knows: the server
/// runs an earlier version, which is said, as is an answer that is no
/// superapp host's.
fn refusal(status: reqwest::StatusCode, body: &[u8]) -> anyhow::Error {
    let not_found = status == reqwest::StatusCode::NOT_FOUND;
    match serde_json::from_slice::<ApiError>(body) {
        Ok(e) if not_found && e.error.message == "no such route" => anyhow::anyhow!(
            "the server refused ({status}, {}): {}: it runs an earlier version of superapp than this command ({}); upgrade the server, or use the command of its version",
            e.error.code,
            e.error.message,
            superapp_server::VERSION,
        ),
        Ok(e) => anyhow::anyhow!(
            "the server refused ({status}, {}): {}",
            e.error.code,
            e.error.message
        ),
        Err(_) if not_found => anyhow::anyhow!(
            "the server answered {status} without a superapp error: is --server the address of a superapp host?"
        ),
        Err(_) => anyhow::anyhow!("the server answered {status}"),
    }
}

/// Longest wait for a connection to the server.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Longest wait for the next bytes of an answer.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Longest wait for a whole answer, but a download's.
const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
/// The largest answer read into memory: a package (at most 32 MiB) with
/// room to spare.
const MAX_ANSWER: usize = 64 << 20;

/// Why `url` gave no answer, in words.
fn unreachable(url: &str, e: reqwest::Error) -> anyhow::Error {
    if e.is_timeout() {
        anyhow::anyhow!(
            "{url} did not answer in time: is the server running and is --server its address?"
        )
    } else {
        anyhow::Error::new(e).context(format!("cannot reach {url}"))
    }
}

/// A publish as the server answered it.
#[derive(Debug, Deserialize)]
pub struct Published {
    /// Whether the package was new (`false`: published before, the same bytes).
    pub changed: bool,
    pub release: Release,
    /// Why users cannot open it yet, if they cannot.
    pub blocked_by: Option<String>,
}

impl Remote {
    pub fn new(server: &str, credential: Credential) -> anyhow::Result<Remote> {
        let base = server.trim_end_matches('/');
        if !base.starts_with("http://") && !base.starts_with("https://") {
            bail!("--server must be a URL like http://127.0.0.1:8080, not `{server}`");
        }
        let base = base.trim_end_matches("/api/v1").to_string();
        superapp_services::egress::install_tls();
        Ok(Remote {
            base,
            credential,
            // A server that stops answering is given up on, not waited for:
            // each read waits at most READ_TIMEOUT; a request other than a
            // download also has ANSWER_TIMEOUT in all.
            client: reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(READ_TIMEOUT)
                .build()?,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        })
    }

    /// Send a request and return the body of a 2xx answer; any other
    /// answer becomes an error with the server's message.
    pub fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> anyhow::Result<Vec<u8>> {
        let path = format!("/api/v1{path}");
        let url = format!("{}{path}", self.base);
        let mut request = self
            .client
            .request(method.clone(), &url)
            .header(reqwest::header::CONTENT_TYPE, content_type);
        match &self.credential {
            Credential::Token(token) => {
                request = request.bearer_auth(token);
            }
            Credential::Key(key) => {
                let header = signed_request::sign(key, method.as_str(), &path, &body, now_secs());
                request = request.header(reqwest::header::AUTHORIZATION, header);
            }
            Credential::None => {}
        }
        let response = self.runtime.block_on(async {
            let mut response = request
                .timeout(ANSWER_TIMEOUT)
                .body(body)
                .send()
                .await
                .map_err(|e| unreachable(&url, e))?;
            let status = response.status();
            // Read no more than an answer of this API can be: a server that
            // streams without end gets an error, not all of this machine's
            // memory; one that says it will send more is not read at all.
            let too_large = || {
                anyhow::anyhow!("the answer of {url} is larger than any answer of a superapp host ({} MiB): is --server the address of a superapp host?", MAX_ANSWER >> 20)
            };
            if response
                .content_length()
                .is_some_and(|n| n > MAX_ANSWER as u64)
            {
                return Err(too_large());
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| unreachable(&url, e))?
            {
                if bytes.len() + chunk.len() > MAX_ANSWER {
                    return Err(too_large());
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok((status, bytes))
        });
        let (status, bytes) = response?;
        if status.is_success() {
            return Ok(bytes);
        }
        Err(refusal(status, &bytes))
    }

    pub fn json<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<T> {
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let bytes = self.send(method, path, body, "application/json")?;
        serde_json::from_slice(&bytes).context("the server's answer is not what this tool expects")
    }

    /// GET `path` and stream a 2xx body into `out`.
    pub fn download(&self, path: &str, out: &mut std::fs::File) -> anyhow::Result<u64> {
        use std::io::Write as _;
        let url = format!("{}/api/v1{path}", self.base);
        let mut request = self.client.get(&url);
        if let Credential::Token(token) = &self.credential {
            request = request.bearer_auth(token);
        }
        self.runtime.block_on(async {
            let mut response = request.send().await.map_err(|e| unreachable(&url, e))?;
            let status = response.status();
            if !status.is_success() {
                let bytes = response.bytes().await.unwrap_or_default();
                return Err(refusal(status, &bytes));
            }
            let mut written = 0u64;
            while let Some(chunk) = response.chunk().await.context("the download was cut off")? {
                out.write_all(&chunk)?;
                written += chunk.len() as u64;
            }
            Ok(written)
        })
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.json(reqwest::Method::GET, path, None)
    }
}

/// An answer to a change: whether it changed anything, and the release.
#[derive(Deserialize)]
pub struct ChangeAnswer {
    pub changed: bool,
    pub release: Release,
}

impl From<Changed> for ChangeAnswer {
    fn from(c: Changed) -> Self {
        ChangeAnswer {
            changed: c.changed,
            release: c.release,
        }
    }
}

#[derive(Deserialize)]
struct AppVersions {
    versions: Vec<Release>,
}

#[derive(Deserialize)]
struct Entries {
    entries: Vec<Entry>,
}

/// Percent-encode one path segment (app ids, versions and keys are plain
/// ASCII; anything else is escaped).
fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn version_path(app: &str, version: &str) -> String {
    format!("/registry/apps/{}/versions/{}", seg(app), seg(version))
}

impl Target {
    /// Make what a local change wrote durable; remote changes are durable
    /// when the server answers.
    pub fn finish(&self) -> anyhow::Result<()> {
        if let Target::Local(l) = self {
            l.store.flush_now()?;
        }
        Ok(())
    }

    pub fn add_publisher(
        &self,
        id: &str,
        name: &str,
        keys: &[String],
    ) -> anyhow::Result<Publisher> {
        match self {
            Target::Remote(r) => r.json(
                reqwest::Method::POST,
                "/registry/publishers",
                Some(json!({ "id": id, "name": name, "keys": keys })),
            ),
            Target::Local(l) => Ok(l.registry.add_publisher(id, name, keys, &Actor::Operator)?),
        }
    }

    pub fn add_publisher_key(&self, id: &str, key: &str) -> anyhow::Result<Publisher> {
        match self {
            Target::Remote(r) => r.json(
                reqwest::Method::POST,
                &format!("/registry/publishers/{}/keys", seg(id)),
                Some(json!({ "key": key })),
            ),
            Target::Local(l) => Ok(l.registry.add_publisher_key(id, key, &Actor::Operator)?),
        }
    }

    pub fn remove_publisher_key(&self, id: &str, key: &str) -> anyhow::Result<Publisher> {
        match self {
            Target::Remote(r) => r.json(
                reqwest::Method::DELETE,
                &format!("/registry/publishers/{}/keys/{}", seg(id), seg(key)),
                None,
            ),
            Target::Local(l) => l
                .registry
                .remove_publisher_key(id, key, &Actor::Operator)?
                .ok_or_else(|| anyhow::anyhow!("{key} is not a key of publisher `{id}`")),
        }
    }

    pub fn publishers(&self) -> anyhow::Result<Vec<Publisher>> {
        match self {
            Target::Remote(r) => r.get("/registry/publishers"),
            Target::Local(l) => Ok(l.registry.publishers()?),
        }
    }

    pub fn trust_auditor(&self, key: &str, name: &str) -> anyhow::Result<Auditor> {
        match self {
            Target::Remote(r) => r.json(
                reqwest::Method::POST,
                "/registry/auditors",
                Some(json!({ "key": key, "name": name })),
            ),
            Target::Local(l) => Ok(l.registry.trust_auditor(key, name, &Actor::Operator)?),
        }
    }

    pub fn distrust_auditor(&self, key: &str) -> anyhow::Result<()> {
        match self {
            Target::Remote(r) => {
                let answer = r.send(
                    reqwest::Method::DELETE,
                    &format!("/registry/auditors/{}", seg(key)),
                    Vec::new(),
                    "application/json",
                )?;
                // A superapp host answers 204 with nothing: a page or other
                // JSON is something else answering, and proves nothing.
                if !answer.is_empty() {
                    bail!("the server's answer is not what this tool expects: is --server the address of a superapp host? Nothing is known to have changed");
                }
                Ok(())
            }
            Target::Local(l) => {
                if !l.registry.distrust_auditor(key, &Actor::Operator)? {
                    bail!("key {key} is not trusted");
                }
                Ok(())
            }
        }
    }

    pub fn auditors(&self) -> anyhow::Result<Vec<Auditor>> {
        match self {
            Target::Remote(r) => r.get("/registry/auditors"),
            Target::Local(l) => Ok(l.registry.auditors()?),
        }
    }

    /// Every version of `app`, newest first.
    pub fn releases(&self, app: &str) -> anyhow::Result<Vec<Release>> {
        match self {
            Target::Remote(r) => Ok(r
                .get::<AppVersions>(&format!("/registry/apps/{}", seg(app)))?
                .versions),
            Target::Local(l) => {
                let releases = l.registry.releases(app)?;
                if releases.is_empty() {
                    bail!("no app `{app}` in the registry");
                }
                Ok(releases)
            }
        }
    }

    /// Every app id in the registry.
    pub fn apps(&self) -> anyhow::Result<Vec<String>> {
        match self {
            Target::Remote(r) => Ok(r
                .get::<Vec<Value>>("/registry/apps")?
                .iter()
                .filter_map(|a| a["app"].as_str().map(str::to_string))
                .collect()),
            Target::Local(l) => Ok(l.registry.apps()?),
        }
    }

    pub fn release(&self, app: &str, version: &str) -> anyhow::Result<Release> {
        match self {
            Target::Remote(r) => {
                #[derive(Deserialize)]
                struct One {
                    release: Release,
                }
                Ok(r.get::<One>(&version_path(app, version))?.release)
            }
            Target::Local(l) => Ok(l.registry.release(app, version)?),
        }
    }

    /// The package file of a version.
    pub fn package(&self, app: &str, version: &str) -> anyhow::Result<Vec<u8>> {
        match self {
            Target::Remote(r) => r.send(
                reqwest::Method::GET,
                &format!("{}/package", version_path(app, version)),
                Vec::new(),
                "application/json",
            ),
            Target::Local(l) => {
                let release = l.registry.release(app, version)?;
                l.registry
                    .package_bytes(&release.digest)?
                    .with_context(|| format!("the package of {} is missing", release.label()))
            }
        }
    }

    pub fn decide(&self, decision: &SignedDecision) -> anyhow::Result<ChangeAnswer> {
        match self {
            Target::Remote(r) => r.json(
                reqwest::Method::POST,
                &format!(
                    "{}/decisions",
                    version_path(&decision.app, &decision.version)
                ),
                Some(serde_json::to_value(decision)?),
            ),
            Target::Local(l) => Ok(l.registry.decide(decision)?.into()),
        }
    }

    pub fn yank(
        &self,
        app: &str,
        version: &str,
        yanked: bool,
        note: &str,
    ) -> anyhow::Result<ChangeAnswer> {
        match self {
            Target::Remote(r) => r.json(
                reqwest::Method::POST,
                &format!("{}/yank", version_path(app, version)),
                Some(json!({ "yanked": yanked, "note": note })),
            ),
            Target::Local(l) => Ok(l
                .registry
                .yank(app, version, yanked, note, &Actor::Operator)?
                .into()),
        }
    }

    pub fn rollout(&self, app: &str, version: &str, percent: u8) -> anyhow::Result<ChangeAnswer> {
        match self {
            Target::Remote(r) => r.json(
                reqwest::Method::PUT,
                &format!("{}/rollout", version_path(app, version)),
                Some(json!({ "percent": percent })),
            ),
            Target::Local(l) => Ok(l
                .registry
                .set_rollout(app, version, percent, &Actor::Operator)?
                .into()),
        }
    }

    pub fn report(&self, app: &str) -> anyhow::Result<Report> {
        match self {
            Target::Remote(r) => r.get(&format!("/registry/apps/{}/report", seg(app))),
            Target::Local(l) => Ok(l.registry.report(app, &l.audit)?),
        }
    }

    /// Check the audit log's chain end to end, here: a remote server's
    /// entries are fetched page by page and verified by this tool, so the
    /// answer does not rest on the server's word. With a `checkpoint`, the
    /// chain must also extend it. The chain's head, or its first break.
    pub fn verify_log(&self, checkpoint: Option<Head>) -> anyhow::Result<Result<Head, ChainError>> {
        match self {
            Target::Remote(r) => {
                let mut chain = ChainVerifier::extending(checkpoint);
                loop {
                    let page: Entries =
                        r.get(&format!("/audit/entries?after={}", chain.checked()))?;
                    if page.entries.is_empty() {
                        return Ok(chain.finish());
                    }
                    for entry in &page.entries {
                        if let Err(e) = chain.push(entry) {
                            return Ok(Err(e));
                        }
                    }
                }
            }
            Target::Local(l) => Ok(superapp_services::audit::verify(&l.store, checkpoint)),
        }
    }

    /// Publish a package file (remote only: a publisher publishes to a
    /// running server).
    pub fn publish(&self, bytes: Vec<u8>) -> anyhow::Result<Published> {
        match self {
            Target::Remote(r) => {
                let answer = r.send(
                    reqwest::Method::POST,
                    "/registry/packages",
                    bytes,
                    "application/octet-stream",
                )?;
                serde_json::from_slice(&answer)
                    .context("the server's answer is not what this tool expects")
            }
            Target::Local(_) => bail!("publish to a running server: pass --server URL"),
        }
    }
}

/// `APP@VERSION`, split.
pub fn app_at_version(spec: &str) -> Option<(&str, &str)> {
    let (app, version) = spec.split_once('@')?;
    (!app.is_empty() && !version.is_empty()).then_some((app, version))
}
