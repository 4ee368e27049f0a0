//! `superapp serve --demo`: the bundled apps published and approved, demo
//! users with money and documents, seeded once.

use reqwest::StatusCode;

use crate::common::*;
use crate::documents::cli;

fn demo(data: &std::path::Path) -> Server {
    let plugins = repo().join("plugins");
    Server::start_with(
        data,
        &["--demo", "--plugins", plugins.to_str().unwrap()],
        &[],
    )
}

async fn sign_in_alice(server: &Server) -> Client {
    let mut c = Client::new(server);
    c.token = Some(c.login("alice", "demo-password").await);
    c
}

#[tokio::test]
async fn the_demo_serves_three_approved_apps_to_seeded_users_and_seeds_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = demo(&data);
    let logins = [server.read_line(), server.read_line(), server.read_line()].concat();
    assert!(logins.contains("demo: open http://127.0.0.1:"), "{logins}");
    assert!(
        logins.contains("alice / demo-password (security phrase \"sunny otter\")"),
        "{logins}"
    );
    assert!(logins.contains("bob / demo-password"), "{logins}");

    let alice = sign_in_alice(&server).await;
    let (status, apps) = alice.get("/apps").await;
    assert_eq!(status, StatusCode::OK);
    let mut ids: Vec<&str> = apps
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "dev.superapp.city-payments",
            "dev.superapp.document-wallet",
            "dev.superapp.hospital-booking"
        ]
    );
    assert!(apps
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["approval"]["by"] == "auditor"));
    let (_, me) = alice.get("/me").await;
    assert_eq!(me["security_phrase"], "sunny otter");
    let check = |alice: Client| async move {
        let (_, wallet) = alice.get("/wallet").await;
        assert_eq!(wallet["accounts"][0]["balance"], 20_000, "{wallet}");
        let (_, docs) = alice.get("/me/documents").await;
        let mut kinds: Vec<String> = docs["documents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["type"].as_str().unwrap().to_string())
            .collect();
        kinds.sort();
        assert_eq!(kinds, ["health-insurance", "id-card"], "{docs}");
    };
    check(alice).await;

    // The development key stands for all three demo publishers: a request
    // signed with it acts as the publisher concerned, whichever comes first.
    let base = server.base.clone();
    let (data_dir, work) = (data.clone(), tmp.path().to_path_buf());
    tokio::task::spawn_blocking(move || dev_key_acts_for_each_publisher(&base, &data_dir, &work))
        .await
        .unwrap();

    // A second start on the same data seeds nothing twice, and closes the
    // issuers' key folder that an earlier version left open to others.
    assert!(server.terminate().success());
    use std::os::unix::fs::PermissionsExt as _;
    let keys = data.join("demo-issuers");
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&keys), 0o700);
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = demo(&data);
    check(sign_in_alice(&server).await).await;
    assert_eq!(mode(&keys), 0o700);

    // An app rebuilt with other bytes under the same version does not stop
    // the demo: the version published first is served, as the registry
    // never changes a published version.
    assert!(server.terminate().success());
    let apps = data.join("demo-apps");
    std::fs::copy(
        apps.join("city-payments/city-payments.wasm"),
        apps.join("hospital-booking/hospital-booking.wasm"),
    )
    .unwrap();
    let server = Server::start_with(&data, &["--demo", "--plugins", "no-such-folder"], &[]);
    let alice = sign_in_alice(&server).await;
    let (status, view) = alice
        .post(
            "/apps/dev.superapp.hospital-booking/launch",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert!(view.to_string().contains("General medicine"), "{view}");
    drop(server);
}

/// Republish each demo app's package and read each publisher's merchant
/// balance with the demo's development key.
fn dev_key_acts_for_each_publisher(base: &str, data: &std::path::Path, work: &std::path::Path) {
    let key = data.join("dev-publisher.pem");
    let key = key.to_str().unwrap();
    for app in ["city-payments", "document-wallet", "hospital-booking"] {
        let package = work.join(format!("{app}.pkg"));
        let package = package.to_str().unwrap();
        let dir = data.join("demo-apps").join(app);
        let component = dir.join(format!("{app}.wasm"));
        let (ok, _, err) = cli(&[
            "plugin",
            "pack",
            dir.to_str().unwrap(),
            "--component",
            component.to_str().unwrap(),
            "--out",
            package,
        ]);
        assert!(ok, "{err}");
        let (ok, _, err) = cli(&["plugin", "sign", package, "--key", key]);
        assert!(ok, "{err}");
        // The same bytes as the demo published: accepted, nothing changed.
        let (ok, out, err) = cli(&["plugin", "publish", package, "--server", base, "--key", key]);
        assert!(ok, "{app}: {err}");
        assert!(out.contains("already published with these bytes"), "{out}");
        // Undoing a yank that was never made: allowed, nothing changes.
        let manifest = std::fs::read_to_string(dir.join("plugin.toml")).unwrap();
        let manifest = superapp_core::Manifest::parse(&manifest).unwrap();
        let spec = format!("{}@{}", manifest.id, manifest.version);
        let (ok, _, err) = cli(&[
            "registry", "yank", &spec, "--undo", "--server", base, "--key", key,
        ]);
        assert!(ok, "{spec}: {err}");
    }
    let balance = |publisher: Option<&str>| {
        let mut args = vec!["merchant", "balance", "--server", base, "--key", key];
        args.extend(publisher.iter().flat_map(|p| ["--publisher", p]));
        cli(&args)
    };
    let (ok, _, err) = balance(None);
    assert!(!ok && err.contains("several publishers"), "{err}");
    assert!(err.contains("City Utilities"), "{err}");
    for publisher in ["City Hospital", "City Utilities", "superapp project"] {
        let (ok, _, err) = balance(Some(publisher));
        assert!(ok, "{publisher}: {err}");
    }
    let (ok, _, err) = balance(Some("Another Company"));
    assert!(!ok && err.contains("403"), "{err}");
}

#[tokio::test]
async fn the_server_keeps_serving_when_whoever_started_it_closed_its_stdout() {
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let plugins = repo().join("plugins");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_superapp"))
        .args([
            "serve",
            "--demo",
            "--plugins",
            plugins.to_str().unwrap(),
            "--listen",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .env("SUPERAPP_PASSWORD_ITERATIONS", "1000")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Like `superapp serve --demo | head -0`: nobody reads the banner.
    drop(child.stdout.take());
    let url = format!("http://127.0.0.1:{port}/api/v1/openapi.json");
    let mut up = false;
    for _ in 0..600 {
        if http_client()
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
        {
            up = true;
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the server exited");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(up, "the server never answered");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the server exited after its banner"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// The demo's hospital system (`--hospital-backend`) reads the insurers'
/// revocations from the host it was started beside, once that answers; a
/// policy the insurer revoked is not handed over (the host's own check),
/// so it lowers no fee.
#[tokio::test]
async fn the_demos_hospital_system_follows_its_hosts_revocations() {
    use crate::hospital::{act, pairs, prompt, take, weber_slot, HOSPITAL};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let plugins = repo().join("plugins");
    let args = [
        "--demo",
        "--plugins",
        plugins.to_str().unwrap(),
        "--hospital-backend",
        "--hospital-backend-listen",
        &listen,
    ];

    // Alice's health insurance, revoked by its insurer while the host is
    // down, with the demo's insurer key.
    let server = Server::start_with(&data, &args, &[]);
    let alice = sign_in_alice(&server).await;
    let (_, docs) = alice.get("/me/documents").await;
    let policy = docs["documents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["type"] == "health-insurance")
        .expect("alice is insured")["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(server.terminate().success());
    let key = data.join("demo-issuers/ins.national-health.json");
    let (ok, out, err) = cli(&[
        "issuer",
        "revoke",
        "--key",
        key.to_str().unwrap(),
        "--credential",
        &policy,
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");

    // Back up: the hospital's system reads the insurer's list from this
    // host once it answers.
    let server = Server::start_with(&data, &args, &[]);
    let read = |text: &str| {
        text.lines().any(|l| {
            l.starts_with("superapp_http_requests_total{")
                && l.contains(r#"route="/api/v1/issuers/{id}/revoked""#)
                && l.contains(r#"status="200""#)
        })
    };
    let mut metrics = String::new();
    for _ in 0..40 {
        metrics = server.metrics().await;
        if read(&metrics) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(
        read(&metrics),
        "the hospital never read the list:\n{metrics}"
    );

    // She holds a time; asked for her policy, the host will not hand over
    // a revoked one, and the full fee stands.
    let alice = sign_in_alice(&server).await;
    alice
        .post(&format!("/apps/{HOSPITAL}/launch"), serde_json::json!({}))
        .await;
    let consent = prompt(&alice, "consent").await;
    alice.approve(&consent, serde_json::json!({})).await;
    let slot = weber_slot(&alice, 2).await;
    let held = take(&alice, &slot).await;
    let reference = pairs(&held)["Reference"].clone();
    assert_eq!(pairs(&held)["Fee"], "EUR 40.00", "{held}");
    act(&alice, "insurance", Some(&reference), serde_json::json!({})).await;
    let sheet = prompt(&alice, "document").await;
    let id = sheet["id"].as_str().unwrap();
    let (status, body) = alice
        .post(&format!("/prompts/{id}/approve"), serde_json::json!({}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no valid `health-insurance`")),
        "{body}"
    );
}
