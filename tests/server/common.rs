//! Start the real server and talk to it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

pub struct Server {
    child: Child,
    /// The server's stdout, kept open (the server prints more than its
    /// first line in some modes).
    stdout: BufReader<std::process::ChildStdout>,
    pub base: String,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// A server on a fresh data directory.
    pub fn start(env: &[(&str, &str)]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let mut s = Server::start_in(&dir, env);
        s._tmp = Some(tmp);
        s
    }

    /// A server on `data_dir` (kept by the caller), with fast password
    /// hashing and any extra `SUPERAPP_*` settings.
    pub fn start_in(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        Server::start_with(data_dir, &[], env)
    }

    /// [`Server::start_in`] with more `serve` arguments.
    pub fn start_with(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::spawn(data_dir, args, env, Stdio::inherit())
    }

    /// A server on a fresh data directory whose log goes to `log`.
    #[allow(dead_code)]
    pub fn start_logging_to(log: &Path, env: &[(&str, &str)]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(log).unwrap();
        let mut s = Server::spawn(&tmp.path().join("data"), &[], env, Stdio::from(file));
        s._tmp = Some(tmp);
        s
    }

    fn spawn(data_dir: &Path, args: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Server {
        Server::spawn_binary(
            Path::new(env!("CARGO_BIN_EXE_superapp")),
            data_dir,
            args,
            env,
            stderr,
        )
    }

    /// `binary serve` (this build's or another release's) on `data_dir`.
    pub fn spawn_binary(
        binary: &Path,
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Server {
        let mut cmd = Command::new(binary);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env("SUPERAPP_PASSWORD_ITERATIONS", "1000")
            // Tests and benches send (and sign up, all from one address) far
            // faster than people; each limit's own test sets it low again.
            .env("SUPERAPP_CHAT_RATE_PER_USER", "1000000")
            .env("SUPERAPP_SIGNUPS_PER_CLIENT", "1000000")
            .env("SUPERAPP_APP_EVENTS_PER_USER", "1000000")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Server {
            child,
            stdout,
            base: format!("{addr}/api/v1"),
            data_dir: data_dir.to_path_buf(),
            _tmp: None,
        }
    }

    /// The next line the server printed after its first.
    pub fn read_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line
    }

    /// The server's process id (the messaging benchmark reads its memory).
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn ws_url(&self) -> String {
        format!("{}/ws", self.base.replacen("http://", "ws://", 1))
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// The operator's bearer token, from the data directory.
    #[allow(dead_code)]
    pub fn operator_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("operator.token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// `/metrics` as the operator reads it.
    #[allow(dead_code)]
    pub async fn metrics(&self) -> String {
        let resp = http_client()
            .get(format!("{}/metrics", self.base.trim_end_matches("/api/v1")))
            .bearer_auth(self.operator_token())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.text().await.unwrap()
    }

    /// Wait up to `limit` for the server to stop by itself; its exit
    /// status, or `None` if it is still running.
    #[allow(dead_code)]
    pub fn exited_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client, optionally signed in.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
}

impl Client {
    pub fn new(server: &Server) -> Client {
        Client {
            http: http_client(),
            base: server.base.clone(),
            token: None,
        }
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        content_type: &str,
    ) -> reqwest::Response {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", content_type).body(b);
        }
        req.send().await.unwrap()
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let resp = self
            .raw(
                method,
                path,
                body.map(|b| serde_json::to_vec(&b).unwrap()),
                "application/json",
            )
            .await;
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        (status, value)
    }

    /// Send `app` a user action and return the view it drew (the action
    /// must succeed).
    pub async fn act(&self, app: &str, name: &str, value: Option<&str>, fields: Value) -> Value {
        let (status, v) = self
            .post(
                &format!("/apps/{app}/events"),
                json!({"name": name, "value": value, "fields": fields}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{app} {name}: {v}");
        v
    }

    /// Approve one of this user's host prompts (`body`: a password, the
    /// fields to share, …); the view its app drew on hearing the answer,
    /// shaped like an event's answer (`{"view": …}`).
    pub async fn approve(&self, prompt: &Value, body: Value) -> Value {
        let id = prompt["id"].as_str().expect("a prompt id");
        let (status, answer) = self.post(&format!("/prompts/{id}/approve"), body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        json!({ "view": answer["view"] })
    }

    /// How many rounds of the busy fixture's `work` take about `ms` on this
    /// machine, measured with one event (the busy app must be installed).
    #[allow(dead_code)]
    pub async fn busy_rounds(&self, ms: u64) -> String {
        let work = |rounds: u64| async move {
            let started = std::time::Instant::now();
            self.act(
                "dev.superapp.testing.busy",
                "work",
                Some(&rounds.to_string()),
                json!({}),
            )
            .await;
            started.elapsed()
        };
        // Warm up (the first event pays for more than the work), then grow
        // the measured run until it is long enough to time.
        work(1).await;
        let mut probe = 50u64;
        let per_round = loop {
            let took = work(probe).await;
            if took >= std::time::Duration::from_millis(30) {
                break took.as_secs_f64() / probe as f64;
            }
            probe *= 4;
        };
        ((ms as f64 / 1e3 / per_round) as u64).max(1).to_string()
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    /// Register `name` (password `name-password`) and sign in.
    pub async fn signed_up(server: &Server, name: &str) -> Client {
        let mut c = Client::new(server);
        let (s, body) = c
            .post("/accounts", json!({"username": name, "display_name": name.to_uppercase(), "password": format!("{name}-password")}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        c.token = Some(c.login(name, &format!("{name}-password")).await);
        c
    }

    pub async fn login(&self, name: &str, password: &str) -> String {
        let (s, body) = self
            .post("/sessions", json!({"username": name, "password": password}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        body["token"].as_str().unwrap().to_string()
    }

    pub async fn direct_with(&self, other: &str) -> String {
        let (s, body) = self
            .post("/conversations", json!({"kind": "direct", "with": other}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_string()
    }

    /// Ask for a group titled `title` with `members` (usernames): the
    /// answer's status and body.
    pub async fn group(&self, title: &str, members: &[&str]) -> (StatusCode, Value) {
        self.post(
            "/conversations",
            json!({"kind": "group", "title": title, "members": members}),
        )
        .await
    }

    pub async fn send(
        &self,
        conversation: &str,
        client_id: &str,
        text: &str,
    ) -> (StatusCode, Value) {
        self.post(
            &format!("/conversations/{conversation}/messages"),
            json!({"client_id": client_id, "text": text}),
        )
        .await
    }

    pub async fn messages(&self, conversation: &str, after: u64) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after = after;
        loop {
            let (s, body) = self
                .get(&format!(
                    "/conversations/{conversation}/messages?after={after}&limit=500"
                ))
                .await;
            assert_eq!(s, StatusCode::OK, "{body}");
            let page = body["messages"].as_array().unwrap().clone();
            let Some(last) = page.last() else { return all };
            after = last["seq"].as_u64().unwrap();
            all.extend(page);
        }
    }
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn ws_connect(server: &Server, token: &str) -> Ws {
    let mut req = server.ws_url().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws
}

/// A WebSocket handshake with `headers`: the live connection, or the
/// refusal's status and error code.
pub async fn ws_handshake(server: &Server, headers: &[(&str, String)]) -> Result<Ws, (u16, Value)> {
    let mut req = server.ws_url().into_client_request().unwrap();
    // Appended: a header named twice is sent twice.
    for (name, value) in headers {
        req.headers_mut().append(
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            // The body is what came with the headers, which may be none.
            let body: Value =
                serde_json::from_slice(r.body().as_deref().unwrap_or_default()).unwrap_or_default();
            Err((r.status().as_u16(), body["error"]["code"].clone()))
        }
        Err(e) => panic!("{e}"),
    }
}

/// The next pushed message frame (skipping pings), within `wait`.
pub async fn next_message(ws: &mut Ws, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, ws.next()).await.ok()?? {
            Ok(WsMessage::Text(t)) => return Some(serde_json::from_str(&t).unwrap()),
            Ok(WsMessage::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// The `Set-Cookie` of a login as `username` (password
/// `USERNAME-password`), and the cookie's `name=value`.
#[allow(dead_code)]
pub async fn login_cookie(server: &Server, username: &str) -> (String, String) {
    let body = json!({"username": username, "password": format!("{username}-password")});
    let resp = Client::new(server)
        .raw(
            Method::POST,
            "/sessions",
            Some(body.to_string().into_bytes()),
            "application/json",
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let set = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    let pair = set.split(';').next().unwrap().to_string();
    (set, pair)
}

/// An HTTP client for the tests (reqwest is built with rustls, which needs
/// the host's TLS provider installed first).
pub fn http_client() -> reqwest::Client {
    superapp_services::egress::install_tls();
    reqwest::Client::new()
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

/// Build a bundled plugin with the real CLI (once per run) and install it
/// into `apps` as `apps/<name>/{plugin.toml, <name>.wasm}`.
pub fn install(apps: &Path, plugin: &str) {
    install_build(apps, plugin, &[], "plugin.toml");
}

/// [`install`] built with cargo `features`, with `manifest` (a file in the
/// plugin's folder) as its plugin.toml.
pub fn install_build(apps: &Path, plugin: &str, features: &[&str], manifest: &str) {
    static BUILD: OnceLock<Mutex<()>> = OnceLock::new();
    let _one_build_at_a_time = BUILD
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let dir = repo().join("plugins").join(plugin);
    let mut build = std::process::Command::new(env!("CARGO_BIN_EXE_superapp"));
    build.args(["plugin", "build", "--quiet"]).arg(&dir);
    if !features.is_empty() {
        build.arg("--features").arg(features.join(","));
    }
    let out = build.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let component = PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap()
            .trim(),
    );
    let name = plugin.rsplit('/').next().unwrap();
    let target = apps.join(name);
    std::fs::create_dir_all(&target).unwrap();
    std::fs::copy(dir.join(manifest), target.join("plugin.toml")).unwrap();
    std::fs::copy(component, target.join(format!("{name}.wasm"))).unwrap();
}

pub struct Setup {
    _tmp: tempfile::TempDir,
    pub data: PathBuf,
    pub apps: PathBuf,
}

pub fn setup(plugins: &[&str]) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let (data, apps) = (tmp.path().join("data"), tmp.path().join("apps"));
    std::fs::create_dir_all(&apps).unwrap();
    for p in plugins {
        install(&apps, p);
    }
    Setup {
        _tmp: tmp,
        data,
        apps,
    }
}

pub fn serve(s: &Setup) -> Server {
    serve_with(s, &[])
}

pub fn serve_with(s: &Setup, extra: &[(&str, &str)]) -> Server {
    // Development mode: the apps directory is published and approved with
    // the data directory's development keys (a caller may turn that off).
    let mut env = vec![("SUPERAPP_DEV_APPROVE", "true")];
    env.extend_from_slice(extra);
    env.push(("SUPERAPP_APPS_DIR", s.apps.to_str().unwrap()));
    Server::start_in(&s.data, &env)
}

/// Run the `superapp` CLI with `args`: whether it succeeded, and its
/// standard output followed by its standard error.
pub fn superapp_cli<S: AsRef<std::ffi::OsStr>>(
    args: impl IntoIterator<Item = S>,
) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_superapp"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The value of the series whose line starts with `series` (name and
/// labels) in a `/metrics` text.
#[allow(dead_code)]
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// What `GET /readyz` of `server` answers (its body, whatever the status).
pub async fn readyz(server: &Server) -> Value {
    http_client()
        .get(format!(
            "{}/readyz",
            server.base.trim_end_matches("/api/v1")
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
