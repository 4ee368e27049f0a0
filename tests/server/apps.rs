//! Mini-programs served by `superapp serve --apps DIR` to signed-in users.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use reqwest::StatusCode;
use serde_json::{json, Value};
use superapp_host::capabilities::Pseudonyms;

use crate::common::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Build a bundled plugin with the real CLI (once per run) and install it
/// into `apps` as `apps/<name>/{plugin.toml, <name>.wasm}`.
fn install(apps: &Path, plugin: &str) {
    static BUILD: OnceLock<Mutex<()>> = OnceLock::new();
    let _one_build_at_a_time = BUILD
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let dir = repo().join("plugins").join(plugin);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_superapp"))
        .args(["plugin", "build", "--quiet"])
        .arg(&dir)
        .output()
        .unwrap();
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
    std::fs::copy(dir.join("plugin.toml"), target.join("plugin.toml")).unwrap();
    std::fs::copy(component, target.join(format!("{name}.wasm"))).unwrap();
}

fn texts(view: &Value) -> Vec<String> {
    fn walk(node: &Value, out: &mut Vec<String>) {
        if let Some(t) = node.get("text").and_then(Value::as_str) {
            out.push(t.to_string());
        }
        for child in node
            .get("children")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            walk(child, out);
        }
    }
    let mut out = Vec::new();
    walk(&view["view"]["body"], &mut out);
    out
}

struct Setup {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    apps: PathBuf,
}

fn setup(plugins: &[&str]) -> Setup {
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

fn serve(s: &Setup) -> Server {
    Server::start_in(&s.data, &[("SUPERAPP_APPS_DIR", s.apps.to_str().unwrap())])
}

#[tokio::test]
async fn hello_runs_per_user_and_its_storage_survives_a_restart() {
    let s = setup(&["hello"]);
    let server = serve(&s);
    let alice = Client::signed_up(&server, "alice").await;
    let bob = Client::signed_up(&server, "bob").await;

    let (status, apps) = alice.get("/apps").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(apps[0]["id"], "dev.superapp.hello");
    let caps: Vec<&str> = apps[0]["capabilities"]["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(caps, ["log", "identity", "storage"]);

    let (status, first) = alice
        .post("/apps/dev.superapp.hello/launch", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(texts(&first)[0], "Hello!");
    let (status, named) = alice
        .post(
            "/apps/dev.superapp.hello/events",
            json!({"name": "save-name", "fields": {"name": "Ada"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{named}");
    assert_eq!(texts(&named)[0], "Hello, Ada!");
    let (_, bobs) = bob.post("/apps/dev.superapp.hello/launch", json!({})).await;
    assert_eq!(
        texts(&bobs)[0],
        "Hello!",
        "bob does not see alice's storage"
    );

    let (_, ping) = alice
        .post("/apps/dev.superapp.hello/events", json!({"name": "ping"}))
        .await;
    let pseudonym = texts(&ping)[0].clone();
    let (_, me) = alice.get("/me").await;
    let secret = std::fs::read(s.data.join("host-secret")).unwrap();
    assert_eq!(
        pseudonym,
        Pseudonyms::new(&secret).for_app(me["id"].as_str().unwrap(), "dev.superapp.hello")
    );
    let (_, bob_ping) = bob
        .post("/apps/dev.superapp.hello/events", json!({"name": "ping"}))
        .await;
    assert_ne!(texts(&bob_ping)[0], pseudonym);

    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    assert!(status.success());
    let server = serve(&s);
    let mut alice = Client::new(&server);
    alice.token = Some(alice.login("alice", "alice-password").await);
    let (_, again) = alice
        .post("/apps/dev.superapp.hello/launch", json!({}))
        .await;
    let lines = texts(&again);
    assert_eq!(lines[0], "Hello, Ada!");
    assert_eq!(lines[1], "You have opened this app 2 times.");
    let (_, ping) = alice
        .post("/apps/dev.superapp.hello/events", json!({"name": "ping"}))
        .await;
    assert_eq!(
        texts(&ping)[0],
        pseudonym,
        "the pseudonym is stable across restarts"
    );
}

#[tokio::test]
async fn consent_gated_capabilities_wait_for_consent_and_storage_works() {
    let s = setup(&["testing/probe"]);
    let server = serve(&s);
    let alice = Client::signed_up(&server, "alice").await;
    let call = |name: &'static str, value: Option<&'static str>| {
        let alice = alice.clone();
        async move {
            let (status, v) = alice
                .post(
                    "/apps/dev.superapp.testing.probe/events",
                    json!({"name": name, "value": value, "fields": {"key": "k"}}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{v}");
            texts(&v)[0].clone()
        }
    };
    assert!(call("profile", None)
        .await
        .starts_with("err: consent-required"));
    assert!(call("notify", Some("hi"))
        .await
        .starts_with("err: consent-required"));
    assert_eq!(call("storage-set", Some("v")).await, "ok: ()");
    assert_eq!(
        call("storage-get", None).await,
        format!("ok: Some({:?})", b"v".to_vec())
    );
    assert_eq!(call("shared-increment", Some("2")).await, "ok: 2");
}

#[tokio::test]
async fn a_hostile_app_fails_alone_and_bad_requests_are_refused() {
    let s = setup(&["hello", "testing/memory-bomb"]);
    let server = serve(&s);
    let alice = Client::signed_up(&server, "alice").await;
    let (status, err) = alice
        .post("/apps/dev.superapp.testing.memory-bomb/launch", json!({}))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(err["error"]["code"], "limit-exceeded");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("memory limit"),
        "{err}"
    );
    let (status, _) = alice
        .post("/apps/dev.superapp.hello/launch", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, _) = alice.post("/apps/no.such.app/launch", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = alice
        .post(
            "/apps/dev.superapp.hello/events",
            json!({"name": "javascript:alert(1)"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = alice
        .post(
            "/apps/dev.superapp.hello/events",
            json!({"type": "consent", "capability": "profile"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "clients cannot send host events"
    );
    let (status, _) = Client::new(&server)
        .post("/apps/dev.superapp.hello/launch", json!({}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[test]
fn the_server_refuses_to_start_with_an_app_that_fails_its_check() {
    let s = setup(&["testing/undeclared-payments"]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_superapp"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&s.data)
        .arg("--apps")
        .arg(&s.apps)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("undeclared-payments") && err.contains("[capabilities.payments]"),
        "{err}"
    );
}
