//! The `http` capability against a real backend on a loopback port: what
//! is allowed gets through with the host's signed assertion, and every way
//! around the origin list, the address checks, the size cap and the time
//! limit is refused with its reason, in the audit and access logs too.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxStatus};
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::apps::{probe, texts};
use crate::common::*;

const PROBE: &str = "dev.superapp.testing.probe";

/// The assertion headers the backend saw, in order.
type Seen = Arc<Mutex<Vec<String>>>;

/// A provider's backend on a loopback port.
async fn backend() -> (u16, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let to = move |host: &str, path: &str| format!("http://{host}:{port}{path}");
    let (unlisted, sneaky) = (to("unlisted.test", "/hello"), to("sneaky.test", "/hello"));
    let app = axum::Router::new()
        .route(
            "/hello",
            get(|State(seen): State<Seen>, headers: HeaderMap| async move {
                let assertion = headers
                    .get("superapp-assertion")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                seen.lock().unwrap().push(assertion);
                let cookie = headers.contains_key("cookie");
                format!("hello cookie={cookie}")
            }),
        )
        .route("/to-hello", get(|| async { Redirect::to("/hello") }))
        .route(
            "/to-unlisted",
            get(move || async move { Redirect::to(&unlisted) }),
        )
        .route(
            "/to-sneaky",
            get(move || async move { Redirect::to(&sneaky) }),
        )
        .route("/big", get(|| async { "x".repeat(100 << 10) }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route(
            "/teapot",
            get(|| async {
                (
                    AxStatus::IM_A_TEAPOT,
                    [("set-cookie", "session=1")],
                    "short and stout",
                )
                    .into_response()
            }),
        )
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, seen)
}

/// The probe, listing the backend's origins (and its callback URL), on a
/// server whose operator lets `backend.test` (and only it) resolve to
/// loopback.
pub(crate) async fn start(port: u16) -> (Setup, Server) {
    start_with(port, |m| m, &[]).await
}

/// [`start`] with the probe's manifest changed by `edit` first, and more
/// of the server's configuration.
pub(crate) async fn start_with(
    port: u16,
    edit: impl Fn(String) -> String,
    extra: &[(&str, &str)],
) -> (Setup, Server) {
    let s = setup(&["testing/probe"]);
    let manifest = s.apps.join("probe/plugin.toml");
    let text = edit(std::fs::read_to_string(&manifest).unwrap()).replace(
        "origins = [\"https://backend.probe.test\"]",
        &format!(
            "origins = [\"http://backend.test:{port}\", \"http://sneaky.test:{port}\", \"http://mixed.test:{port}\", \"http://localhost:{port}\", \"http://noplain.test:{port}\"]"
        ),
    );
    let text = format!("{text}\n[callbacks]\nurl = \"http://backend.test:{port}/callbacks\"\n");
    std::fs::write(&manifest, text).unwrap();
    let plain = [
        "backend.test",
        "sneaky.test",
        "mixed.test",
        "localhost",
        "unlisted.test",
    ]
    .map(|h| format!("{h}:{port}"))
    .join(",");
    let hosts = [
        ("SUPERAPP_HTTP_PLAIN_ORIGINS", plain.as_str()),
        ("SUPERAPP_HTTP_PRIVATE_HOSTS", "backend.test,unlisted.test"),
        (
            "SUPERAPP_HTTP_HOSTS",
            "backend.test=127.0.0.1,sneaky.test=127.0.0.1,unlisted.test=127.0.0.1,noplain.test=127.0.0.1,mixed.test=93.184.216.34,mixed.test=127.0.0.1",
        ),
        ("SUPERAPP_HTTP_MAX_RESPONSE_BYTES", "65536"),
    ];
    let env: Vec<(&str, &str)> = hosts.iter().chain(extra).copied().collect();
    let server = serve_with(&s, &env);
    (s, server)
}

async fn fetch(client: &Client, url: &str, fields: Value) -> String {
    let v = client.act(PROBE, "http", Some(url), fields).await;
    texts(&v)[0].clone()
}

/// Allow the probe's `http` once, as the user would in the host's prompt.
async fn allow_http(client: &Client, url: &str) {
    assert!(
        fetch(client, url, json!({}))
            .await
            .starts_with("err: consent-required"),
        "the first request asks the user"
    );
    let (_, prompts) = client.get("/prompts").await;
    let prompt = prompts
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["capability"] == "http")
        .expect("an http prompt")
        .clone();
    client.approve(&prompt, json!({})).await;
}

#[tokio::test]
async fn requests_reach_only_listed_public_origins_with_a_signed_assertion() {
    let (port, seen) = backend().await;
    let (_s, server) = start(port).await;
    let alice = Client::signed_up(&server, "alice").await;
    let at = |host: &str, path: &str| format!("http://{host}:{port}{path}");
    allow_http(&alice, &at("backend.test", "/hello")).await;

    // A 4xx is the backend's answer, not an error; its cookie is dropped
    // and never sent back.
    assert_eq!(
        fetch(&alice, &at("backend.test", "/teapot"), json!({})).await,
        "ok: \"418 short and stout\""
    );
    // Allowed: the listed origin, which the operator lets resolve to loopback.
    assert_eq!(
        fetch(&alice, &at("backend.test", "/hello"), json!({})).await,
        "ok: \"200 hello cookie=false\""
    );
    // A redirect inside the listed origin is followed.
    assert_eq!(
        fetch(&alice, &at("backend.test", "/to-hello"), json!({})).await,
        "ok: \"200 hello cookie=false\""
    );

    // The app can read where its backend is: the manifest's origins, in
    // order, with no prompt.
    assert_eq!(
        probe(&alice, "http-origins", None).await,
        format!(
            "ok: \"http://backend.test:{port} http://sneaky.test:{port} http://mixed.test:{port} http://localhost:{port} http://noplain.test:{port}\""
        )
    );

    // The assertion names the app, alice's pseudonym and the origin, and
    // verifies offline with the host's public key.
    let (_, key) = alice.get("/host-key").await;
    let key = superapp_sdk::credentials::public_key(key["public_key"].as_str().unwrap()).unwrap();
    let header = seen.lock().unwrap()[0].clone();
    let audience = format!("http://backend.test:{port}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claim = superapp_sdk::assertion::verify(&header, &key, &audience, now).unwrap();
    assert_eq!(claim.app, PROBE);
    assert_eq!(
        format!("ok: {:?}", claim.sub),
        probe(&alice, "identity", None).await
    );
    assert!(
        superapp_sdk::assertion::verify(&header, &key, &at("sneaky.test", ""), now).is_err(),
        "an assertion is good only for its own origin"
    );

    let refused = [
        (
            at("unlisted.test", "/hello"),
            "err: denied",
            "not under an origin listed",
        ),
        (
            at("sneaky.test", "/hello"),
            "err: denied",
            "127.0.0.1, a loopback address",
        ),
        (at("localhost", "/hello"), "err: denied", "loopback"),
        (at("mixed.test", "/hello"), "err: denied", "127.0.0.1"),
        (at("noplain.test", "/hello"), "err: denied", "plain http"),
        (
            at("backend.test", "/to-unlisted"),
            "err: denied",
            "unlisted.test",
        ),
        (at("backend.test", "/to-sneaky"), "err: denied", "loopback"),
        (
            at("backend.test", "/big"),
            "err: denied",
            "over the host's limit of 65536 bytes",
        ),
        (
            format!("http://127.0.0.1:{port}/hello"),
            "err: invalid",
            "not an IP address",
        ),
        ("file:///etc/passwd".to_string(), "err: invalid", "scheme"),
    ];
    for (url, kind, why) in &refused {
        let got = fetch(&alice, url, json!({})).await;
        assert!(got.starts_with(kind) && got.contains(why), "{url}: {got}");
    }
    // Headers the host owns cannot be set by the app.
    for header in [
        "cookie: session=stolen",
        "superapp-assertion: forged",
        "host: evil.test",
        "user-agent: superapp-host (another.app)",
    ] {
        let got = fetch(
            &alice,
            &at("backend.test", "/hello"),
            json!({"header": header}),
        )
        .await;
        assert!(got.starts_with("err: invalid"), "{header}: {got}");
    }
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "nothing refused reached the backend (only /hello and the redirect to it)"
    );

    // The user's access log names every origin contacted, refusals too.
    let (status, log) = alice
        .get(&format!("/me/access-log?app={PROBE}&limit=100"))
        .await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let requests: Vec<&Value> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "http.request")
        .collect();
    let contacted = |origin: &str, outcome: &str| {
        requests
            .iter()
            .any(|e| e["details"]["origin"] == origin && e["outcome"] == outcome)
    };
    assert!(contacted(&format!("http://backend.test:{port}"), "allowed"));
    assert!(contacted(&format!("http://sneaky.test:{port}"), "refused"));
    let big = requests
        .iter()
        .find(|e| e["details"]["path"] == "/big")
        .expect("the oversized response is logged");
    assert_eq!(big["details"]["status"], "200");
    assert!(big["details"]["reason"].as_str().unwrap().contains("limit"));
}

/// An event waiting on its backend holds no core: on a host with one run
/// slot, another user's event runs to the end while the request waits.
#[tokio::test]
async fn a_request_waiting_on_a_slow_backend_leaves_the_core_to_others() {
    let (port, _seen) = backend().await;
    let (_s, server) = start_with(port, |m| m, &[("SUPERAPP_EVENT_SLOTS", "1")]).await;
    let alice = Client::signed_up(&server, "alice").await;
    let bob = Client::signed_up(&server, "bob").await;
    let at = |path: &str| format!("http://backend.test:{port}{path}");
    allow_http(&alice, &at("/hello")).await;
    let slow = {
        let url = at("/slow");
        tokio::spawn(async move { fetch(&alice, &url, json!({})).await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(!slow.is_finished());
    let quick = probe(&bob, "clock", None).await;
    assert!(quick.starts_with("ok: "), "{quick}");
    assert!(
        !slow.is_finished(),
        "bob's event ran while alice's request was still waiting"
    );
    let got = slow.await.unwrap();
    assert!(got.contains("did not answer"), "{got}");
}

#[tokio::test]
async fn a_slow_backend_runs_into_the_events_time_limit_and_consent_is_the_users() {
    let (port, seen) = backend().await;
    let (_s, server) = start(port).await;
    let alice = Client::signed_up(&server, "alice").await;
    let bob = Client::signed_up(&server, "bob").await;
    let at = |path: &str| format!("http://backend.test:{port}{path}");
    allow_http(&alice, &at("/hello")).await;

    // The probe's limit is the default second: the request is cut off
    // within it and the event still draws its view.
    let started = std::time::Instant::now();
    let got = fetch(&alice, &at("/slow"), json!({})).await;
    assert!(
        got.starts_with("err: unavailable") && got.contains("did not answer"),
        "{got}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // An app's own shorter timeout is kept.
    let got = fetch(&alice, &at("/slow"), json!({"timeout-ms": "100"})).await;
    assert!(got.contains("within 100 ms"), "{got}");

    // Bob has not agreed; his refusal sticks and sends nothing.
    assert!(fetch(&bob, &at("/hello"), json!({}))
        .await
        .starts_with("err: consent-required"));
    let (_, prompts) = bob.get("/prompts").await;
    let id = prompts[0]["id"].as_str().unwrap().to_string();
    let (status, _) = bob.post(&format!("/prompts/{id}/deny"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let before = seen.lock().unwrap().len();
    assert!(fetch(&bob, &at("/hello"), json!({}))
        .await
        .starts_with("err: denied"));
    // Alice revokes: her next request is denied too.
    let grant = format!("/me/grants/{PROBE}/http");
    let (status, _) = alice.call(reqwest::Method::DELETE, &grant, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(fetch(&alice, &at("/hello"), json!({}))
        .await
        .starts_with("err: denied"));
    assert_eq!(
        seen.lock().unwrap().len(),
        before,
        "nothing reached the backend"
    );
}

#[tokio::test]
async fn an_app_that_imports_http_without_declaring_it_is_refused() {
    let s = setup(&["testing/probe"]);
    let manifest = s.apps.join("probe/plugin.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let stripped = text
        .split("[capabilities.http]")
        .next()
        .unwrap()
        .to_string();
    std::fs::write(&manifest, stripped).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_superapp"))
        .args(["plugin", "check"])
        .arg(s.apps.join("probe/probe.wasm"))
        .arg("--manifest")
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("superapp:plugin/http") && err.contains("[capabilities.http]"),
        "{err}"
    );
}
