//! What an operator runs the host with: liveness and readiness probes,
//! Prometheus metrics, JSON logs with request ids, and a shutdown that lets
//! events in flight finish.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;

fn root(server: &Server) -> String {
    server.base.trim_end_matches("/api/v1").to_string()
}

async fn scrape(server: &Server, token: Option<&str>) -> (StatusCode, String, String) {
    let mut req = crate::common::http_client().get(format!("{}/metrics", root(server)));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let kind = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, kind, resp.text().await.unwrap())
}

/// The commit of the checkout the tests run in, as a build names it
/// (`86d43c0 2026-12-04`), or `unknown` outside a git checkout.
pub(crate) fn build_of_checkout() -> String {
    std::process::Command::new("git")
        .args(["log", "-1", "--format=%h %cs"])
        .current_dir(repo())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8(out.stdout).unwrap().trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// `--version` names the build, so two builds of one version tell
/// themselves apart (so do `/metrics` and a backup's manifest).
#[test]
fn the_version_names_the_commit_it_was_built_from() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_superapp"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!(
            "superapp {} ({})",
            env!("CARGO_PKG_VERSION"),
            build_of_checkout()
        )
    );
}

#[tokio::test]
async fn probes_and_metrics() {
    let s = setup(&["hello", "testing/memory-bomb"]);
    let server = serve(&s);
    let http = crate::common::http_client();
    let live = http
        .get(format!("{}/healthz", root(&server)))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(live.json::<Value>().await.unwrap()["status"], "live");
    // Ready once the stored apps are prepared, which happens beside
    // serving (here quickly: they were compiled when published).
    let mut ready = Value::Null;
    for _ in 0..200 {
        let answer = http
            .get(format!("{}/readyz", root(&server)))
            .send()
            .await
            .unwrap();
        let status = answer.status();
        ready = answer.json::<Value>().await.unwrap();
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
        assert_eq!(ready["error"]["code"], "not-ready", "{ready}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(ready["status"], "ready", "{ready}");

    // Metrics are the operator's.
    let (status, _, body) = scrape(&server, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains(r#""code":"unauthenticated""#), "{body}");
    let alice = Client::signed_up(&server, "alice").await;
    let (status, _, _) = scrape(&server, alice.token.as_deref()).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a user's token is not the operator's"
    );

    let token = server.operator_token();
    let (_, _, before) = scrape(&server, Some(&token)).await;
    let hello_ok = r#"superapp_events_total{app="dev.superapp.hello",outcome="ok"}"#;
    let launches = metric(&before, hello_ok).unwrap_or(0.0);
    for _ in 0..3 {
        let (status, _) = alice
            .post("/apps/dev.superapp.hello/launch", json!({}))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _) = alice
        .post("/apps/dev.superapp.testing.memory-bomb/launch", json!({}))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let bob = Client::signed_up(&server, "bob").await;
    let chat = alice.direct_with("bob").await;
    alice.send(&chat, "m-1", "hello bob").await;
    let token_b = bob.token.clone().unwrap();
    let _ws = ws_connect(&server, &token_b).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let (status, kind, text) = scrape(&server, Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    assert_eq!(metric(&text, hello_ok), Some(launches + 3.0), "{text}");
    let build = build_of_checkout();
    assert_eq!(
        metric(
            &text,
            &format!(
                r#"superapp_build_info{{version="{}",commit="{build}"}}"#,
                env!("CARGO_PKG_VERSION")
            )
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            r#"superapp_events_total{app="dev.superapp.testing.memory-bomb",outcome="limit-exceeded"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            r#"superapp_limit_breaches_total{app="dev.superapp.testing.memory-bomb",limit="memory"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        metric(
            &text,
            r#"superapp_host_call_seconds_count{capability="storage"}"#
        )
        .is_some_and(|n| n >= 3.0),
        "hello's storage calls are timed: {text}"
    );
    assert_eq!(
        metric(
            &text,
            r#"superapp_http_requests_total{method="POST",route="/api/v1/apps/{app}/launch",status="200"}"#
        ),
        Some(3.0),
        "{text}"
    );
    assert!(
        metric(&text, "superapp_messages_total").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        metric(&text, "superapp_store_flush_seconds_count").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert_eq!(metric(&text, "superapp_websockets "), Some(1.0), "{text}");
    assert!(
        metric(&text, "superapp_connections ").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    // No event runs or is alive (holds an instance) between requests.
    for state in ["running", "alive"] {
        assert_eq!(
            metric(
                &text,
                &format!(r#"superapp_event_queue{{state="{state}"}}"#)
            ),
            Some(0.0),
            "{state}: {text}"
        );
    }
    assert!(
        text.contains("superapp_event_running_seconds_bucket"),
        "{text}"
    );
    // Every event that ran waited for its slot, however briefly.
    assert!(
        metric(&text, "superapp_event_waiting_seconds_count").is_some_and(|n| n >= 3.0),
        "{text}"
    );
    // Request latencies are bucketed finely enough to read a 10 ms
    // objective: bounds at 6.4 and 12.8 ms, not only 3.2 and 12.8.
    for le in ["0.0064", "0.0128"] {
        assert!(
            text.contains(&format!(
                r#"superapp_http_request_seconds_bucket{{le="{le}",route="/healthz"}}"#
            )),
            "{le}: {text}"
        );
    }
}

#[tokio::test]
async fn made_up_methods_share_one_metrics_series() {
    let s = setup(&[]);
    let server = serve(&s);
    let http = crate::common::http_client();
    // Each request names a method of its own on a route that exists: were
    // methods labels by name, every one would add a series for good.
    for i in 0..20 {
        let method = reqwest::Method::from_bytes(format!("BREW{i}").as_bytes()).unwrap();
        let resp = http
            .request(method, format!("{}/healthz", root(&server)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
    let (status, _, text) = scrape(&server, Some(&server.operator_token())).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!text.contains("BREW"), "{text}");
    assert_eq!(
        metric(
            &text,
            r#"superapp_http_requests_total{method="other",route="/healthz",status="405"}"#
        ),
        Some(20.0),
        "{text}"
    );
}

#[tokio::test]
async fn json_logs_carry_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let server = Server::start_logging_to(
        &log,
        &[
            ("SUPERAPP_LOG_FORMAT", "json"),
            ("RUST_LOG", "info,tower_http=debug"),
        ],
    );
    let resp = crate::common::http_client()
        .get(format!("{}/me", server.base))
        .header("x-request-id", "req-7f3a")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["x-request-id"], "req-7f3a");
    drop(server);
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("req-7f3a"))
        .unwrap_or_else(|| panic!("no log line names the request: {text}"));
    let entry: Value = serde_json::from_str(line).expect("each log line is JSON");
    assert_eq!(entry["span"]["request_id"], "req-7f3a", "{entry}");
    assert_eq!(entry["span"]["path"], "/api/v1/me", "{entry}");
}

/// SIGTERM while an event runs: the event finishes and is answered, then
/// the server exits cleanly.
#[tokio::test]
async fn shutdown_lets_an_event_in_flight_finish() {
    let s = setup(&["testing/busy"]);
    let server = serve(&s);
    let alice = Client::signed_up(&server, "alice").await;
    let busy = "dev.superapp.testing.busy";
    // One event of about 300 ms on this machine.
    let rounds = alice.busy_rounds(300).await;
    let in_flight = {
        let alice = alice.clone();
        tokio::spawn(async move {
            alice
                .post(
                    &format!("/apps/{busy}/events"),
                    json!({"name": "work", "value": rounds}),
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(60)).await;
    let exit = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    let (status, view) = in_flight.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{view}");
    assert!(view["view"].to_string().contains("done"), "{view}");
    assert!(exit.success(), "{exit:?}");
}
