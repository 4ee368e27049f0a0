//! The registry end to end, as its three kinds of users drive it: the
//! operator registers a publisher and trusts an auditor, the publisher
//! signs and publishes versions, the auditor inspects, approves, reports
//! and verifies the log — through the real CLI against a running server and
//! offline against its stopped data directory — while users launch whatever
//! version the registry gives them.

use std::path::{Path, PathBuf};
use std::process::Output;

use axum::response::IntoResponse as _;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use superapp_core::decision::{SignedDecision, Verdict};
use superapp_core::keys::SigningKey;
use superapp_core::{now_secs, signed_request};

use crate::common::install;
use crate::common::*;

pub(crate) const APP: &str = "org.clinic.hello";

pub(crate) fn cli(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_superapp"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

pub(crate) fn ok(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn refused(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

pub(crate) struct Files {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Files {
    pub(crate) fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }

    pub(crate) fn key(&self, name: &str) -> String {
        let path = self.path(name);
        ok(&cli(&["keys", "generate", "--out", &path]))
            .trim()
            .to_string()
    }

    /// hello's component with a manifest of this `version`, declaring
    /// `extra` capabilities too, packed and signed with `key` into `out`.
    pub(crate) fn package(
        &self,
        component: &Path,
        version: &str,
        extra: &[&str],
        key: &str,
        out: &str,
    ) {
        let dir = self.dir.join(format!("src-{version}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut manifest = format!(
            "id = \"{APP}\"\nname = \"Clinic hello\"\nversion = \"{version}\"\npublisher = \"clinic\"\ndescription = \"Greets patients.\"\n\
             [capabilities.log]\nreason = \"Diagnostics.\"\n[capabilities.identity]\nreason = \"To know you.\"\n[capabilities.storage]\nreason = \"To remember your name.\"\n"
        );
        for cap in extra {
            manifest.push_str(&format!(
                "[capabilities.{cap}]\nreason = \"To take the fee.\"\n"
            ));
        }
        std::fs::write(dir.join("plugin.toml"), manifest).unwrap();
        let (d, c) = (dir.to_str().unwrap(), component.to_str().unwrap());
        ok(&cli(&["plugin", "pack", d, "--component", c, "--out", out]));
        ok(&cli(&["plugin", "sign", out, "--key", key]));
    }
}

pub(crate) fn files() -> (Files, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    install(&dir.join("apps"), "hello");
    let component = dir.join("apps/hello/hello.wasm");
    (Files { _tmp: tmp, dir }, component)
}

/// The version of the app in a user's directory, if it is there.
pub(crate) async fn version_for(user: &Client) -> Option<String> {
    let (status, apps) = user.get("/apps").await;
    assert_eq!(status, StatusCode::OK, "{apps}");
    apps.as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == APP)
        .map(|a| a["version"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn publish_review_yank_and_rollout_through_the_cli_and_the_api() {
    let (f, component) = files();
    let server = Server::start_in(&f.dir.join("data"), &[]);
    let url = server.base.trim_end_matches("/api/v1").to_string();
    let token = server.data_dir.join("operator.token");
    let token = token.to_str().unwrap();
    let publisher = f.key("publisher.pem");
    let auditor = f.key("auditor.pem");
    f.key("stranger.pem");
    let (v1, v2) = (f.path("v1.pkg"), f.path("v2.pkg"));
    f.package(&component, "1.0.0", &[], &f.path("publisher.pem"), &v1);
    f.package(
        &component,
        "1.1.0",
        &["payments"],
        &f.path("publisher.pem"),
        &v2,
    );
    let publish = |file: &str, key: &str| {
        cli(&[
            "plugin",
            "publish",
            file,
            "--server",
            &url,
            "--key",
            &f.path(key),
        ])
    };
    let operator = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--server", &url, "--token-file", token]);
        cli(&all)
    };

    // An unknown publisher is refused; so is a key that is nobody's.
    assert!(refused(&publish(&v2, "publisher.pem")).contains("neither a registered publisher"));
    ok(&operator(&[
        "registry",
        "add-publisher",
        "--id",
        "clinic",
        "--name",
        "City Clinic",
        "--key",
        &publisher,
    ]));
    assert!(refused(&publish(&v2, "stranger.pem")).contains("neither a registered publisher"));
    // One key is one party: clinic's key can be nobody else's, publisher
    // or auditor.
    let taken = refused(&operator(&[
        "registry",
        "add-publisher",
        "--id",
        "copycat",
        "--name",
        "Copycat",
        "--key",
        &publisher,
    ]));
    assert!(
        taken.contains("already a key of publisher `clinic`"),
        "{taken}"
    );
    let taken = refused(&operator(&[
        "registry",
        "trust-auditor",
        "--key",
        &publisher,
        "--name",
        "Self Approver",
    ]));
    assert!(
        taken.contains("already a key of publisher `clinic`"),
        "{taken}"
    );
    // A key file given as the token file is named as the mistake it is.
    let wrong = refused(&cli(&[
        "registry",
        "list",
        "--server",
        &url,
        "--token-file",
        &f.path("publisher.pem"),
    ]));
    assert!(wrong.contains("does not hold an operator token"), "{wrong}");

    // A tampered manifest no longer matches its signature.
    let mut bytes = std::fs::read(&v2).unwrap();
    let at = bytes.windows(8).position(|w| w == b"Greets p").unwrap();
    bytes[at] = b'g';
    let tampered = f.path("tampered.pkg");
    std::fs::write(&tampered, &bytes).unwrap();
    assert!(refused(&publish(&tampered, "publisher.pem"))
        .contains("plugin.toml was changed after signing"));

    // The sensitive version first: nobody can open it yet, and the error says why.
    let out = ok(&publish(&v2, "publisher.pem"));
    assert!(
        out.contains("users cannot open it yet")
            && out.contains("trusted auditor (it declares payments)"),
        "{out}"
    );
    let alice = Client::signed_up(&server, "alice").await;
    let (status, err) = alice.post(&format!("/apps/{APP}/launch"), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    assert_eq!(err["error"]["code"], "not-approved");
    assert!(
        err["error"]["message"].as_str().unwrap().contains(
            "1.1.0 waits for an approval signed by a trusted auditor (it declares payments)"
        ),
        "{err}"
    );
    assert_eq!(version_for(&alice).await, None);

    // 1.0.0 asks for nothing sensitive: approved on publish; publishing it again changes nothing.
    assert!(ok(&publish(&v1, "publisher.pem")).contains("users can open it now"));
    assert!(ok(&publish(&v1, "publisher.pem")).contains("already published"));
    let (status, view) = alice.post(&format!("/apps/{APP}/launch"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(version_for(&alice).await.as_deref(), Some("1.0.0"));

    // The auditor compares the versions: payments is an escalation.
    let diff: Value =
        serde_json::from_str(&ok(&cli(&["audit", "diff", &v1, &v2, "--json"]))).unwrap();
    assert_eq!(diff["escalation"], true);
    assert_eq!(diff["capabilities"][0]["name"], "payments");

    // An untrusted key cannot approve; a trusted one cannot approve other bytes.
    let approve = |spec: &str| {
        cli(&[
            "audit",
            "approve",
            spec,
            "--key",
            &f.path("auditor.pem"),
            "--note",
            "fee handling reviewed",
            "--server",
            &url,
        ])
    };
    let spec = format!("{APP}@1.1.0");
    assert!(refused(&approve(&v2)).contains("not a trusted auditor key"));
    ok(&operator(&[
        "registry",
        "trust-auditor",
        "--key",
        &auditor,
        "--name",
        "Ann Auditor",
    ]));
    let key = SigningKey::load(&f.dir.join("auditor.pem")).unwrap();
    let v1_digest = superapp_core::Package::from_bytes(&std::fs::read(&v1).unwrap())
        .unwrap()
        .digest();
    let wrong = SignedDecision::sign(
        &key,
        APP,
        "1.1.0",
        &v1_digest,
        Verdict::Approve,
        "ok",
        now_secs(),
    )
    .unwrap();
    let (status, err) = Client::new(&server)
        .post(
            &format!("/registry/apps/{APP}/versions/1.1.0/decisions"),
            serde_json::to_value(&wrong).unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_eq!(version_for(&alice).await.as_deref(), Some("1.0.0"));

    // Approved: users get 1.1.0, and the directory says who approved it.
    assert!(ok(&approve(&spec)).contains("approved org.clinic.hello@1.1.0"));
    assert!(
        ok(&approve(&v2)).contains("nothing changed"),
        "approving the same digest again is a no-op"
    );
    let (_, apps) = alice.get("/apps").await;
    let listing = &apps.as_array().unwrap()[0];
    assert_eq!(
        (
            listing["version"].as_str(),
            listing["publisher"]["name"].as_str()
        ),
        (Some("1.1.0"), Some("City Clinic"))
    );
    assert_eq!(listing["approval"]["name"], "Ann Auditor");
    assert_eq!(listing["approval"]["note"], "fee handling reviewed");
    assert!(listing["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "payments" && c["reason"] == "To take the fee."));

    // What the auditor inspects from the registry is what was approved.
    let mut args = vec![
        "audit",
        "inspect",
        spec.as_str(),
        "--json",
        "--server",
        url.as_str(),
        "--key",
    ];
    let auditor_pem = f.path("auditor.pem");
    args.push(&auditor_pem);
    let inspected: Value = serde_json::from_str(&ok(&cli(&args))).unwrap();
    assert_eq!(inspected["digest"], listing["digest"]);
    assert_eq!(inspected["signature"]["status"], "valid");

    // Yanked: back to 1.0.0. Restored and rolled out to half: each user keeps one version.
    ok(&operator(&[
        "registry",
        "yank",
        &spec,
        "--note",
        "double charges",
    ]));
    assert_eq!(version_for(&alice).await.as_deref(), Some("1.0.0"));
    // The operator's takedown is not the publisher's to undo, and a note
    // cannot carry terminal escape codes.
    let undo = refused(&cli(&[
        "registry",
        "yank",
        &spec,
        "--undo",
        "--server",
        &url,
        "--key",
        &f.path("publisher.pem"),
    ]));
    assert!(undo.contains("only they can restore it"), "{undo}");
    let escape = refused(&operator(&[
        "registry",
        "yank",
        &spec,
        "--note",
        "fine\r\u{1b}[2Kall good",
    ]));
    assert!(escape.contains("control"), "{escape}");
    ok(&operator(&["registry", "yank", &spec, "--undo"]));
    let out = ok(&cli(&[
        "registry",
        "rollout",
        &spec,
        "--percent",
        "50",
        "--server",
        &url,
        "--key",
        &f.path("publisher.pem"),
    ]));
    assert!(out.contains("rollout 50%"), "{out}");
    let mut users = Vec::new();
    for i in 0..24 {
        users.push(Client::signed_up(&server, &format!("patient{i}")).await);
    }
    let mut seen = Vec::new();
    for u in &users {
        let first = version_for(u).await.unwrap();
        assert_eq!(
            version_for(u).await.unwrap(),
            first,
            "a user's version is stable"
        );
        seen.push(first);
    }
    assert!(
        seen.contains(&"1.0.0".to_string()) && seen.contains(&"1.1.0".to_string()),
        "{seen:?}"
    );

    // The report: both versions, the decision with its auditor and note, usage from the log.
    let auditor_args = ["--server", url.as_str(), "--key", &f.path("auditor.pem")];
    let mut args = vec!["audit", "report", "--app", APP, "--json"];
    args.extend(auditor_args);
    let report: Value = serde_json::from_str(&ok(&cli(&args))).unwrap();
    let versions = report["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["version"], "1.1.0");
    assert_eq!(versions[0]["decisions"][0]["name"], "Ann Auditor");
    assert_eq!(versions[0]["rollout"], 50);
    assert_eq!(versions[1]["launchable"], true);

    // The log verifies against the running server; a publisher may not read it.
    let mut args = vec!["audit", "verify-log"];
    args.extend(auditor_args);
    assert!(ok(&cli(&args)).contains("unbroken chain"));
    let kept = f.path("checkpoint.json");
    args.extend(["--checkpoint", &kept]);
    assert!(ok(&cli(&args)).contains("checkpoint: entry"));
    assert!(ok(&cli(&args)).contains("extends the checkpoint's entry"));
    let out = cli(&[
        "audit",
        "verify-log",
        "--server",
        &url,
        "--key",
        &f.path("publisher.pem"),
    ]);
    assert!(refused(&out).contains("only operators and auditors"));

    // Offline, on the stopped server's data: yank, then the restarted server honours it.
    let data = server.data_dir.clone();
    let data_arg = data.to_str().unwrap().to_string();
    assert!(tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap()
        .success());
    ok(&cli(&[
        "registry",
        "rollout",
        &spec,
        "--percent",
        "100",
        "--data-dir",
        &data_arg,
    ]));
    ok(&cli(&[
        "registry",
        "yank",
        &spec,
        "--note",
        "offline",
        "--data-dir",
        &data_arg,
    ]));
    assert!(ok(&cli(&["audit", "verify-log", "--data-dir", &data_arg])).contains("unbroken chain"));
    let listed = ok(&cli(&["registry", "list", "--data-dir", &data_arg]));
    assert!(
        listed.contains("YANKED (offline)") && listed.contains("City Clinic"),
        "{listed}"
    );
    let server = Server::start_in(&data, &[]);
    let alice = Client {
        base: server.base.clone(),
        ..alice
    };
    assert_eq!(version_for(&alice).await.as_deref(), Some("1.0.0"));
}

/// GET `url` with a signed request's `authorization` header.
async fn send_signed(url: String, header: String) -> StatusCode {
    crate::common::http_client()
        .get(url)
        .header("authorization", header)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn registry_routes_refuse_users_wrong_tokens_and_replayed_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(&dir.path().join("data"), &[]);
    let alice = Client::signed_up(&server, "alice").await;
    let (status, _) = alice.get("/registry/apps").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a user's session is no operator token"
    );
    let mut operator = Client::new(&server);
    operator.token = Some("not-the-token".into());
    let (status, _) = operator.get("/registry/publishers").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    operator.token = Some(std::fs::read_to_string(server.data_dir.join("operator.token")).unwrap());
    let key = SigningKey::generate().unwrap();
    let (status, body) = operator
        .post(
            "/registry/auditors",
            json!({"key": key.public_key(), "name": "Ann"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // A signed request is accepted once; replayed, or moved to another route, it is refused.
    let path = "/api/v1/registry/auditors";
    let header = signed_request::sign(&key, "GET", path, b"", now_secs());
    let send = |p: &str| {
        let header = header.clone();
        let url = format!("{}{}", server.base.trim_end_matches("/api/v1"), p);
        send_signed(url, header)
    };
    assert_eq!(
        send("/api/v1/registry/publishers").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(send(path).await, StatusCode::OK);
    assert_eq!(send(path).await, StatusCode::UNAUTHORIZED, "replayed");
    // Signed a minute before the host first started (so within the clock
    // skew allowed): whether an earlier version answered it is not known.
    let before = signed_request::sign(&key, "GET", path, b"", now_secs() - 60);
    let refused = crate::common::http_client()
        .get(format!("{}{path}", server.base.trim_end_matches("/api/v1")))
        .header("authorization", before)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let refused = refused.text().await.unwrap();
    assert!(
        refused.contains("signed before this host began remembering"),
        "{refused}"
    );
    // The store remembers it: replayed after a restart, it is refused too.
    let data = server.data_dir.clone();
    assert!(tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap()
        .success());
    let server = Server::start_in(&data, &[]);
    operator.base = server.base.clone();
    let url = format!("{}{path}", server.base.trim_end_matches("/api/v1"));
    assert_eq!(
        send_signed(url.clone(), header).await,
        StatusCode::UNAUTHORIZED,
        "replayed after a restart"
    );
    let fresh = signed_request::sign(&key, "GET", path, b"", now_secs());
    assert_eq!(send_signed(url, fresh.clone()).await, StatusCode::OK);
    // Nor after a crash right after the answer: a request that only read
    // has its nonce on disk before it is answered.
    tokio::task::spawn_blocking(move || server.kill9())
        .await
        .unwrap();
    let server = Server::start_in(&data, &[]);
    operator.base = server.base.clone();
    let url = format!("{}{path}", server.base.trim_end_matches("/api/v1"));
    assert_eq!(
        send_signed(url, fresh).await,
        StatusCode::UNAUTHORIZED,
        "replayed after kill -9"
    );
    // A stranger's key is refused before the server reads its body: a
    // request announcing an oversized upload gets 403, not 413. (Raw TCP:
    // the headers promise 40 MB, only a few bytes follow.)
    let stranger = SigningKey::generate().unwrap();
    let path = "/api/v1/registry/packages";
    let auth = signed_request::sign(&stranger, "POST", path, b"", now_secs());
    let addr = server
        .base
        .trim_start_matches("http://")
        .trim_end_matches("/api/v1")
        .to_string();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: {auth}\r\ncontent-length: 40000000\r\n\r\nustar");
    tokio::io::AsyncWriteExt::write_all(&mut tcp, head.as_bytes())
        .await
        .unwrap();
    let mut answer = vec![0u8; 64];
    let n = tokio::io::AsyncReadExt::read(&mut tcp, &mut answer)
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    // An auditor may not register publishers.
    let body = json!({"id": "x", "name": "X", "keys": [key.public_key()]}).to_string();
    let header = signed_request::sign(
        &key,
        "POST",
        "/api/v1/registry/publishers",
        body.as_bytes(),
        now_secs(),
    );
    let resp = operator
        .http
        .post(format!("{}/registry/publishers", server.base))
        .header("authorization", header)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // Bad input: a 4xx JSON error, never a half-written record.
    for (method, path, body) in [
        (
            Method::POST,
            "/registry/publishers",
            json!({"id": "", "name": "X", "keys": []}),
        ),
        (
            Method::POST,
            "/registry/auditors",
            json!({"key": "short", "name": "X"}),
        ),
        (
            Method::PUT,
            "/registry/apps/a.b/versions/1.0.0/rollout",
            json!({"percent": 5}),
        ),
        (
            Method::POST,
            "/registry/apps/a.b/versions/1.0.0/decisions",
            json!({"app": "a.b"}),
        ),
    ] {
        let (status, err) = operator.call(method, path, Some(body)).await;
        assert!(status.is_client_error(), "{path}: {status} {err}");
        assert!(err["error"]["code"].is_string(), "{err}");
    }
    // An error that quotes its input quotes a bounded part of it.
    let long = format!("a.{}", "x".repeat(6000));
    let (status, err) = operator
        .call(
            Method::PUT,
            &format!("/registry/apps/{long}/versions/1.0.0/rollout"),
            Some(json!({"percent": 5})),
        )
        .await;
    assert!(status.is_client_error(), "{status} {err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("a.xxxx"), "{message}");
    assert!(message.len() < 4096, "{} bytes", message.len());
    // Answered as every JSON route answers: a body not sent as JSON 415,
    // one that is not JSON 400, JSON that does not fit 422.
    let good = json!({"id": "x", "name": "X", "keys": [key.public_key()]}).to_string();
    for (content_type, body, expected) in [
        (
            "text/plain",
            good.as_str(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        ("application/json", "{not json", StatusCode::BAD_REQUEST),
        (
            "application/json",
            r#"{"zz": garbage"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "application/json",
            r#"{"id": 7}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let resp = operator
            .http
            .post(format!("{}/registry/publishers", server.base))
            .bearer_auth(operator.token.as_ref().unwrap())
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), expected, "{content_type} {body}");
        let err: Value = resp.json().await.unwrap();
        assert!(err["error"]["code"].is_string(), "{err}");
    }
    let (_, publishers) = operator.get("/registry/publishers").await;
    assert_eq!(publishers, json!([]));
}

#[tokio::test]
async fn the_report_counts_each_versions_calls_from_the_audit_log() {
    let s = crate::apps::setup(&["testing/probe"]);
    let server = crate::apps::serve(&s);
    let alice = Client::signed_up(&server, "alice").await;
    for _ in 0..2 {
        crate::apps::probe(&alice, "profile", None).await;
    }
    let url = server.base.trim_end_matches("/api/v1").to_string();
    let token = server.data_dir.join("operator.token");
    let out = ok(&cli(&[
        "audit",
        "report",
        "--app",
        "dev.superapp.testing.probe",
        "--json",
        "--server",
        &url,
        "--token-file",
        token.to_str().unwrap(),
    ]));
    let report: Value = serde_json::from_str(&out).unwrap();
    let v = &report["versions"][0];
    assert_eq!(v["version"], "0.1.0");
    // Approved by the development auditor key (`serve --apps` with dev-approve).
    assert_eq!(v["decisions"][0]["name"], "development auditor");
    assert_eq!(v["usage"]["consent_required"]["profile"], 2, "{v}");
    let text = ok(&cli(&[
        "audit",
        "report",
        "--app",
        "dev.superapp.testing.probe",
        "--server",
        &url,
        "--token-file",
        token.to_str().unwrap(),
    ]));
    assert!(text.contains("waiting for consent: profile 2"), "{text}");
}

/// The operator, and the key of publisher `clinic`, registered by them.
async fn clinic_publisher(server: &Server) -> (Client, SigningKey) {
    let key = SigningKey::generate().unwrap();
    let mut operator = Client::new(server);
    operator.token = Some(server.operator_token());
    let (status, _) = operator
        .post(
            "/registry/publishers",
            json!({"id": "clinic", "name": "Clinic", "keys": [key.public_key()]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    (operator, key)
}

/// Publish `body` with a request signed by `key`: the answer's status and text.
fn publish_signed(
    server: &Server,
    key: &SigningKey,
    body: Vec<u8>,
) -> impl std::future::Future<Output = (StatusCode, String)> {
    let path = "/api/v1/registry/packages";
    let header = signed_request::sign(key, "POST", path, &body, now_secs());
    let url = format!("{}{path}", server.base.trim_end_matches("/api/v1"));
    async move {
        let resp = crate::common::http_client()
            .post(url)
            .header("authorization", header)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.text().await.unwrap())
    }
}

#[tokio::test]
async fn publishing_refuses_malformed_truncated_and_oversized_packages_with_the_reason() {
    let server = Server::start(&[]);
    let (operator, key) = clinic_publisher(&server).await;
    let publish = |body: Vec<u8>| publish_signed(&server, &key, body);
    let mut valid = superapp_core::Package::new(
        b"id = \"org.clinic.x\"\nname = \"X\"\nversion = \"1.0.0\"\npublisher = \"clinic\"\ndescription = \"d\"\n".to_vec(),
        b"not wasm".to_vec(),
    )
    .unwrap();
    valid.sign(&key);
    let bytes = valid.to_bytes();
    for (body, expected) in [
        (b"garbage".to_vec(), "not a superapp package"),
        (bytes[..bytes.len() - 1024].to_vec(), "cut off"),
        (bytes.clone(), "fails the host's checks"),
    ] {
        let (status, text) = publish(body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        assert!(text.contains(expected), "{expected}: {text}");
    }
    let (status, _) = publish(vec![0; superapp_core::package::MAX_PACKAGE_BYTES + 1]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (_, apps) = operator.get("/registry/apps").await;
    assert_eq!(apps, json!([]), "nothing half-written");
}

/// A package whose component would take the compiler minutes is refused
/// once compiling it runs past the host's budget, with the reason; the
/// host answers others meanwhile and keeps nothing of it.
#[tokio::test]
async fn a_component_past_the_compile_budget_is_refused_and_the_host_carries_on() {
    let server = Server::start(&[("SUPERAPP_COMPILE_TIMEOUT_SECS", "2")]);
    let (operator, key) = clinic_publisher(&server).await;
    let mut package = superapp_core::Package::new(
        b"id = \"org.clinic.bomb\"\nname = \"Bomb\"\nversion = \"1.0.0\"\npublisher = \"clinic\"\ndescription = \"d\"\n".to_vec(),
        crate::bombs::nested_loops(400),
    )
    .unwrap();
    package.sign(&key);
    let bytes = package.to_bytes();
    let publishing = tokio::spawn(publish_signed(&server, &key, bytes.clone()));
    // While it compiles, the host answers.
    let alice = Client::signed_up(&server, "alice").await;
    assert_eq!(alice.get("/me").await.0, StatusCode::OK);
    let (status, text) = publishing.await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("longer than the host allows (2 s)"), "{text}");
    let refused = r#"superapp_components_prepared_total{outcome="refused"}"#;
    let remembered = r#"superapp_components_prepared_total{outcome="remembered"}"#;
    let metrics = server.metrics().await;
    assert_eq!(metric(&metrics, refused), Some(1.0), "{metrics}");
    assert_eq!(metric(&metrics, remembered), Some(0.0), "{metrics}");
    // Sent again, it is refused for the same reason: the host remembers
    // it rather than compiling it again.
    let (status, again) = publish_signed(&server, &key, bytes).await;
    assert_eq!((status, &again), (StatusCode::BAD_REQUEST, &text));
    let metrics = server.metrics().await;
    assert_eq!(metric(&metrics, refused), Some(1.0), "{metrics}");
    assert_eq!(metric(&metrics, remembered), Some(1.0), "{metrics}");
    assert!(
        metric(&metrics, "superapp_compile_seconds_sum").is_some_and(|s| s >= 2.0),
        "the refused compile's time is counted: {metrics}"
    );
    let (_, apps) = operator.get("/registry/apps").await;
    assert_eq!(apps, json!([]), "nothing kept");
    assert_eq!(alice.get("/me").await.0, StatusCode::OK);
}

/// A leaked publisher key is taken away by the operator: requests signed
/// with it are refused from then on, the publisher's other key still
/// works, the last key stays, and nobody but the operator removes keys.
#[tokio::test]
async fn the_operator_removes_a_leaked_publisher_key() {
    let server = Server::start(&[]);
    let (operator, leaked) = clinic_publisher(&server).await;
    let kept = SigningKey::generate().unwrap();
    let (status, body) = operator
        .post(
            "/registry/publishers/clinic/keys",
            json!({"key": kept.public_key()}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let root = server.base.trim_end_matches("/api/v1").to_string();
    let signed_get = |key: &SigningKey| {
        let path = "/api/v1/registry/apps";
        let header = signed_request::sign(key, "GET", path, b"", now_secs());
        send_signed(format!("{root}{path}"), header)
    };
    assert_eq!(signed_get(&leaked).await, StatusCode::OK);
    // The publisher cannot remove keys, not even with its other key.
    let path = format!(
        "/api/v1/registry/publishers/clinic/keys/{}",
        leaked.public_key()
    );
    let header = signed_request::sign(&kept, "DELETE", &path, b"", now_secs());
    let status = crate::common::http_client()
        .delete(format!("{root}{path}"))
        .header("authorization", header)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::FORBIDDEN);

    let token_file = server.data_dir.join("operator.token");
    let removed = ok(&cli(&[
        "registry",
        "remove-publisher-key",
        "clinic",
        &leaked.public_key(),
        "--server",
        &root,
        "--token-file",
        token_file.to_str().unwrap(),
    ]));
    assert!(
        removed.contains(&format!("now has keys {}", kept.public_key())),
        "{removed}"
    );
    assert_eq!(
        signed_get(&leaked).await,
        StatusCode::FORBIDDEN,
        "the leaked key"
    );
    assert_eq!(signed_get(&kept).await, StatusCode::OK, "the kept key");

    let delete = |key: String| {
        let operator = &operator;
        async move {
            operator
                .call(
                    Method::DELETE,
                    &format!("/registry/publishers/clinic/keys/{key}"),
                    None,
                )
                .await
        }
    };
    let (status, body) = delete(leaked.public_key()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = delete(kept.public_key()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (nobody, answer) = operator
        .call(
            Method::DELETE,
            &format!("/registry/publishers/nobody/keys/{}", kept.public_key()),
            None,
        )
        .await;
    assert_eq!(nobody, StatusCode::NOT_FOUND, "{answer}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("only key"),
        "{body}"
    );
    let (status, log) = operator.get("/audit/entries?limit=1000").await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let removals: Vec<&Value> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "registry.publisher.key" && e["outcome"] == "removed")
        .collect();
    assert_eq!(removals.len(), 1, "{log}");
    assert_eq!(removals[0]["details"]["key"], leaked.public_key());

    // A removed key never comes back: not to its publisher, not for a new
    // one, not as an auditor's.
    for (path, body) in [
        (
            "/registry/publishers/clinic/keys",
            json!({"key": leaked.public_key()}),
        ),
        (
            "/registry/publishers",
            json!({"id": "fresh", "name": "Fresh", "keys": [leaked.public_key()]}),
        ),
        (
            "/registry/auditors",
            json!({"key": leaked.public_key(), "name": "Eve"}),
        ),
    ] {
        let (status, body) = operator.post(path, body).await;
        assert_eq!(status, StatusCode::CONFLICT, "{path}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("never taken back"),
            "{body}"
        );
    }
    assert_eq!(signed_get(&leaked).await, StatusCode::FORBIDDEN);
    let (_, publishers) = operator.get("/registry/publishers").await;
    assert_eq!(publishers.as_array().unwrap().len(), 1, "{publishers}");
}

/// An operator who takes the development key from a publisher whose apps
/// `--apps` publishes keeps it taken: the next start serves what was
/// published, does not add the key back, and does not fail.
#[tokio::test]
async fn a_removed_development_key_stays_removed_across_starts_with_apps() {
    let s = crate::apps::setup(&["hello"]);
    let server = crate::apps::serve(&s);
    let mut operator = Client::new(&server);
    operator.token = Some(server.operator_token());
    let path = "/registry/publishers/superapp%20project/keys";
    let (_, publishers) = operator.get("/registry/publishers").await;
    let dev_key = publishers[0]["keys"][0].as_str().unwrap().to_string();
    let own = SigningKey::generate().unwrap().public_key();
    let (status, body) = operator.post(path, json!({"key": own})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = operator
        .call(Method::DELETE, &format!("{path}/{dev_key}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    drop(server);

    let server = crate::apps::serve(&s);
    let mut operator = Client::new(&server);
    operator.token = Some(server.operator_token());
    let (_, publishers) = operator.get("/registry/publishers").await;
    assert_eq!(publishers[0]["keys"], json!([own]), "{publishers}");
    let alice = Client::signed_up(&server, "alice").await;
    let (status, view) = alice
        .post("/apps/dev.superapp.hello/launch", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
}

/// A publisher the operator registered keeps the keys the operator gave
/// it: `--apps` with an app naming it publishes nothing for it and adds
/// no development key to it, and the host starts.
#[tokio::test]
async fn apps_from_a_directory_never_add_the_development_key_to_an_operators_publisher() {
    let s = crate::apps::setup(&["hello"]);
    let manifest = s.apps.join("hello/plugin.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("publisher = \"superapp project\"", "publisher = \"bank\""),
    )
    .unwrap();
    let own = SigningKey::generate().unwrap().public_key();
    {
        let server = Server::start_in(&s.data, &[]);
        let mut operator = Client::new(&server);
        operator.token = Some(server.operator_token());
        let (status, body) = operator
            .post(
                "/registry/publishers",
                json!({"id": "bank", "name": "Bank", "keys": [own]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let server = crate::apps::serve(&s);
    let mut operator = Client::new(&server);
    operator.token = Some(server.operator_token());
    let (_, publishers) = operator.get("/registry/publishers").await;
    assert_eq!(publishers[0]["keys"], json!([own]), "{publishers}");
    let (_, apps) = operator.get("/registry/apps").await;
    assert_eq!(apps, json!([]), "nothing published under bank");
}

/// A registry (or a proxy in front of it) that hands an auditor another
/// version's package than the one asked for is caught by the auditor's
/// tool before it shows, compares or signs anything.
#[tokio::test]
async fn an_auditor_tool_refuses_a_package_that_is_not_the_version_it_asked_for() {
    let (f, component) = files();
    let server = Server::start_in(&f.dir.join("data"), &[]);
    let url = server.base.trim_end_matches("/api/v1").to_string();
    let token = server.data_dir.join("operator.token");
    let token = token.to_str().unwrap().to_string();
    let publisher = f.key("publisher.pem");
    let auditor = f.key("auditor.pem");
    let operator = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--server", &url, "--token-file", &token]);
        cli(&all)
    };
    ok(&operator(&[
        "registry",
        "add-publisher",
        "--id",
        "clinic",
        "--name",
        "City Clinic",
        "--key",
        &publisher,
    ]));
    ok(&operator(&[
        "registry",
        "trust-auditor",
        "--key",
        &auditor,
        "--name",
        "Ann",
    ]));
    let (v1, v2) = (f.path("v1.pkg"), f.path("v2.pkg"));
    for (version, file) in [("1.0.0", &v1), ("1.0.1", &v2)] {
        f.package(&component, version, &[], &f.path("publisher.pem"), file);
        ok(&cli(&[
            "plugin",
            "publish",
            file,
            "--server",
            &url,
            "--key",
            &f.path("publisher.pem"),
        ]));
    }

    // Passes everything through, but answers 1.0.1's package with 1.0.0's.
    let swapped = std::fs::read(&v1).unwrap();
    let upstream = url.clone();
    let proxy = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (swapped, upstream) = (swapped.clone(), upstream.clone());
        async move {
            let path = req.uri().path_and_query().unwrap().to_string();
            if path.ends_with("/versions/1.0.1/package") {
                return (axum::http::StatusCode::OK, swapped).into_response();
            }
            let mut forward = crate::common::http_client()
                .request(req.method().clone(), format!("{upstream}{path}"));
            for (name, value) in req.headers() {
                if name != "host" {
                    forward = forward.header(name, value);
                }
            }
            let body = axum::body::to_bytes(req.into_body(), 1 << 26)
                .await
                .unwrap();
            let answer = forward.body(body).send().await.unwrap();
            let status = axum::http::StatusCode::from_u16(answer.status().as_u16()).unwrap();
            (status, answer.bytes().await.unwrap().to_vec()).into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, proxy).await.unwrap() });

    let auditor_key = f.path("auditor.pem");
    let through = |verb: &str, via: &str| {
        let (auditor_key, via) = (auditor_key.clone(), via.to_string());
        let verb = verb.to_string();
        tokio::task::spawn_blocking(move || {
            let mut args = vec!["audit", verb.as_str(), "org.clinic.hello@1.0.1"];
            if verb == "approve" {
                args.extend(["--note", "reviewed"]);
            }
            args.extend(["--key", &auditor_key, "--server", &via]);
            cli(&args)
        })
    };
    let inspected = through("inspect", &proxy_url).await.unwrap();
    let said = refused(&inspected);
    assert!(
        said.contains("the package it sent is org.clinic.hello@1.0.0")
            && said.contains("not what the registry records"),
        "{said}"
    );
    let approved = through("approve", &proxy_url).await.unwrap();
    assert!(refused(&approved).contains("not signing"));
    // Straight from the registry, the same commands work.
    assert!(ok(&through("inspect", &url).await.unwrap()).contains("org.clinic.hello 1.0.1"));
    ok(&through("approve", &url).await.unwrap());
}

/// A command that uses a route its server does not have (an earlier
/// version's host, stood in for by a server that knows no route) says so,
/// and one pointed at something that is no superapp host says that.
#[tokio::test]
async fn a_command_newer_than_its_server_or_pointed_elsewhere_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp
        .path()
        .join("publisher.pem")
        .to_str()
        .unwrap()
        .to_string();
    ok(&cli(&["keys", "generate", "--out", &key]));
    for (answer, expected) in [
        (
            json!({"error": {"code": "not-found", "message": "no such route"}}).to_string(),
            "it runs an earlier version of superapp than this command",
        ),
        (
            "<h1>Not Found</h1>".to_string(),
            "is --server the address of a superapp host?",
        ),
    ] {
        let stand_in = axum::Router::new().fallback(move || {
            let answer = answer.clone();
            async move { (axum::http::StatusCode::NOT_FOUND, answer).into_response() }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, stand_in).await.unwrap() });
        let key = key.clone();
        let out = tokio::task::spawn_blocking(move || {
            cli(&["merchant", "balance", "--server", &url, "--key", &key])
        })
        .await
        .unwrap();
        let err = refused(&out);
        assert!(err.contains(expected), "{err}");
    }
}

/// Something that is not a superapp host answering 2xx proves nothing: a
/// distrust or a publish it "accepts" is reported as not done, and an
/// answer without end is cut off rather than read into memory.
#[tokio::test]
async fn a_command_does_not_take_another_servers_success_or_endless_answer_for_its_own() {
    let (f, component) = files();
    let key = f.key("publisher.pem");
    let token = f.path("operator.token");
    std::fs::write(&token, "not-a-real-token").unwrap();
    let package = f.path("hello.pkg");
    f.package(&component, "1.0.0", &[], &f.path("publisher.pem"), &package);
    let stand_in = |answer: &'static str| async move {
        let router = axum::Router::new().fallback(move || async move {
            match answer {
                // About 100 MiB, a chunk at a time.
                "endless" => {
                    let chunk = bytes::Bytes::from(vec![b'x'; 1 << 20]);
                    let body = futures_util::stream::iter(
                        (0..100).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
                    );
                    axum::body::Body::from_stream(body).into_response()
                }
                page => (axum::http::StatusCode::OK, page).into_response(),
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        url
    };
    let run = |args: Vec<String>| async move {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cli(&args)
        })
        .await
        .unwrap()
    };
    let strings = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();

    let html = stand_in("<html><body>Welcome</body></html>").await;
    let out = run(strings(&[
        "registry",
        "distrust-auditor",
        &key,
        "--server",
        &html,
        "--token-file",
        &token,
    ]))
    .await;
    let err = refused(&out);
    assert!(err.contains("not what this tool expects"), "{err}");

    let json = stand_in(r#"{"hello":"world","changed":false}"#).await;
    let out = run(strings(&[
        "plugin",
        "publish",
        &package,
        "--server",
        &json,
        "--key",
        &f.path("publisher.pem"),
    ]))
    .await;
    let err = refused(&out);
    assert!(err.contains("not what this tool expects"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("users can open it"));

    let endless = stand_in("endless").await;
    let out = run(strings(&[
        "registry",
        "list",
        "--server",
        &endless,
        "--token-file",
        &token,
    ]))
    .await;
    let err = refused(&out);
    assert!(err.contains("larger than any answer"), "{err}");
}
