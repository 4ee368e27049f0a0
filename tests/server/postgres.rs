//! `serve --store postgres://…`: the host on a real PostgreSQL server this
//! test starts itself. Acknowledged writes survive `kill -9` of the host,
//! shared-storage bookings are decided by the database, and a store
//! setting that cannot work stops the start with a readable message.

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

use crate::apps::{serve_with, setup};
use crate::cable::Cable;
use crate::common::*;
use crate::durability::burst_kill_9_and_restart;
use crate::hospital::{buttons, shows, take, HOSPITAL};
use crate::pg_server;

#[tokio::test]
async fn on_postgres_kill_9_during_a_burst_loses_no_acknowledged_message() {
    let url = pg_server::shared().database();
    burst_kill_9_and_restart(&[("SUPERAPP_STORE", url.as_str())]).await;
}

#[tokio::test]
async fn on_postgres_twenty_patients_race_for_one_slot_and_exactly_one_holds_it() {
    let url = pg_server::shared().database();
    let s = setup(&["hospital-booking"]);
    let server = serve_with(&s, &[("SUPERAPP_STORE", url.as_str())]);
    let mut patients = Vec::new();
    for i in 0..20 {
        patients.push(Client::signed_up(&server, &format!("patient{i}")).await);
    }
    // Everyone opens the app at once: the schedule is seeded once.
    let launch = format!("/apps/{HOSPITAL}/launch");
    let launches = join_all(patients.iter().map(|p| p.post(&launch, json!({})))).await;
    for (status, view) in &launches {
        assert_eq!(*status, StatusCode::OK, "{view}");
    }
    let department = patients[0]
        .act(HOSPITAL, "department", Some("general"), json!({}))
        .await;
    let slot = buttons(&department, "take")[0].1.clone();
    let tries = join_all(patients.iter().map(|p| take(p, &slot))).await;
    let winners = tries
        .iter()
        .filter(|v| shows(v, "Confirm your appointment"))
        .count();
    assert_eq!(winners, 1, "exactly one patient holds the slot");
    let losers = tries
        .iter()
        .filter(|v| shows(v, "just taken by another patient"))
        .count();
    assert_eq!(losers, 19);
}

/// `serve` with `args`, which must fail at start: its stderr.
pub(crate) fn refused_start(env: &[(&str, &str)]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_superapp"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("data"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "the start was refused");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn a_store_that_cannot_work_stops_the_start_with_a_readable_message() {
    let err = refused_start(&[("SUPERAPP_STORE", "mysql://db.example/superapp")]);
    assert!(err.contains("expected a postgres:// URL"), "{err}");
    // Nothing listens on port 1 of loopback; the password is not echoed.
    let err = refused_start(&[(
        "SUPERAPP_STORE",
        "postgres://app:s3cret-word@127.0.0.1:1/superapp?connect_timeout=2",
    )]);
    assert!(err.contains("cannot open the PostgreSQL store"), "{err}");
    assert!(err.contains("refused"), "the cause is named: {err}");
    assert!(!err.contains("s3cret-word"), "{err}");
    let err = refused_start(&[("SUPERAPP_STORE", "postgres://")]);
    assert!(err.contains("PostgreSQL"), "{err}");
    // A URL that does not parse names the option at fault, never the URL.
    for (url, named) in [
        (
            "postgres://app:s3cret-word@127.0.0.1:notaport/superapp",
            "`port`",
        ),
        (
            "postgres://app:s3cret-word@127.0.0.1/superapp?sslmode=maybe",
            "`sslmode`",
        ),
        (
            "postgres://app:s3cret-word@127.0.0.1/superapp?colour=blue",
            "unknown option `colour`",
        ),
        ("postgres://app:s3cret-word@[::1/superapp", "`host`"),
        (
            "postgres://app%ff:s3cret-word@127.0.0.1:1/superapp",
            "expected postgres://user:password@host",
        ),
    ] {
        let err = refused_start(&[("SUPERAPP_STORE", url)]);
        assert!(err.contains("not a PostgreSQL URL"), "{err}");
        assert!(err.contains(named), "{url}: {err}");
        assert!(!err.contains("s3cret-word"), "{err}");
    }
    // The demo's hospital backend trusts a data directory's keys: refused
    // on a shared store before anything is built or written.
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_superapp"))
        .args(["serve", "--demo", "--hospital-backend", "--data-dir"])
        .arg(&data)
        .args(["--store", "postgres://app@127.0.0.1:1/superapp"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("start it without --store"), "{err}");
    assert!(!data.exists(), "nothing written");
}

/// The status of `call`, tried every 100 ms until it succeeds (for at most
/// 10 s): a host coming back after its database was away.
async fn until_answered<F, Fut>(mut call: F) -> StatusCode
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (StatusCode, serde_json::Value)>,
{
    let mut answered = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..100 {
        answered = call().await.0;
        if answered.is_success() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    answered
}

/// A host on a fresh database reached through a cable the test controls,
/// and alice's chat with bob on it.
async fn behind_a_cable() -> (Cable, Setup, Server, Client, String) {
    let pg = pg_server::shared();
    let database = pg.database();
    let name = database.rsplit('/').next().unwrap().to_string();
    let cable = Cable::to(pg.port).await;
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/{name}?connect_timeout=2",
        cable.port
    );
    let s = setup(&[]);
    let server = serve_with(&s, &[("SUPERAPP_STORE", url.as_str())]);
    let alice = Client::signed_up(&server, "alice").await;
    Client::signed_up(&server, "bob").await;
    let chat = alice.direct_with("bob").await;
    (cable, s, server, alice, chat)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_database_is_away_requests_get_503_and_the_host_recovers_when_it_is_back() {
    let (cable, _s, server, alice, chat) = behind_a_cable().await;
    let (status, _) = alice.send(&chat, "before", "before the outage").await;
    assert_eq!(status, StatusCode::CREATED);

    cable.cut();
    // Connections through the cable end within its 20 ms poll.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (status, body) = alice.send(&chat, "during", "during the outage").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "store-unavailable", "{body}");
    let (status, _) = alice.get("/conversations").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let ready = http_client()
        .get(server.base.replace("/api/v1", "/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    // Back: the pool reconnects by itself; the retried send lands once.
    cable.restore();
    let answered = until_answered(|| alice.send(&chat, "during", "during the outage")).await;
    assert_eq!(answered, StatusCode::CREATED);
    let texts: Vec<String> = alice
        .messages(&chat, 0)
        .await
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, ["before the outage", "during the outage"]);
}

/// A database that hangs (a frozen server, a partition that drops packets
/// without a reset) is answered as one that is away: a request gets `503`
/// within the store's wait, not never, and those after it at once; and
/// the host recovers when the database answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_database_hangs_requests_get_503_in_bounded_time() {
    let (cable, _s, server, alice, chat) = behind_a_cable().await;

    cable.stall();
    // Bounded by the test too, so a hang fails it rather than holding it.
    let bound = std::time::Duration::from_secs(60);
    let (status, body) =
        tokio::time::timeout(bound, alice.send(&chat, "stalled", "while it hangs"))
            .await
            .expect("a request waited for the hung database for good");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "store-unavailable", "{body}");
    // While nothing is answered, the next requests are answered at once
    // rather than each waiting its whole wait (10 s) behind the last.
    for _ in 0..3 {
        let (status, _) = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            alice.get("/conversations"),
        )
        .await
        .expect("the next request waited as long as the first");
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
    let ready = tokio::time::timeout(
        bound,
        http_client()
            .get(server.base.replace("/api/v1", "/readyz"))
            .send(),
    )
    .await
    .expect("the readiness probe waited for good")
    .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    cable.resume();
    let answered = until_answered(|| alice.send(&chat, "stalled", "while it hangs")).await;
    assert!(answered.is_success(), "{answered}");
    let texts: Vec<String> = alice
        .messages(&chat, 0)
        .await
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, ["while it hangs"], "stored once");
}

/// A read stuck behind a lock another client of the database holds (a
/// wallet's accounts, a scan) is answered `503` within the store's wait and leaves nothing waiting
/// in the database (it is cancelled there), so such requests cannot fill
/// the database's connection slots; and the host serves again when the
/// lock goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_stuck_behind_a_lock_is_cancelled_in_the_database_and_answered_503() {
    let pg = pg_server::shared();
    let url = pg.database();
    let name = url.rsplit('/').next().unwrap().to_string();
    let s = setup(&[]);
    let server = serve_with(&s, &[("SUPERAPP_STORE", url.as_str())]);
    let alice = Client::signed_up(&server, "alice").await;
    let count = |sql: &str| {
        let out = pg.psql(&name).args(["-c", sql]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u32>()
            .unwrap()
    };
    let mut holder = pg
        .psql(&name)
        .args([
            "-c",
            "BEGIN; LOCK TABLE superapp_ledger_accounts IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(300);",
        ])
        .spawn()
        .unwrap();
    let held = "SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND relation = 'superapp_ledger_accounts'::regclass";
    while count(held) == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let bound = std::time::Duration::from_secs(60);
    let (status, body) = tokio::time::timeout(bound, alice.get("/wallet"))
        .await
        .expect("a request waited for the lock for good");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "store-unavailable", "{body}");
    let waiting = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}' AND wait_event_type = 'Lock'"
    );
    let mut left = count(&waiting);
    for _ in 0..100 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        left = count(&waiting);
    }
    assert_eq!(
        left, 0,
        "statements the host gave up on still wait for the lock"
    );

    // Its client gone, the holder's session would sleep on with the lock.
    count(&format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid() AND query LIKE '%pg_sleep%'"
    ));
    holder.kill().unwrap();
    holder.wait().unwrap();
    let answered = until_answered(|| alice.get("/wallet")).await;
    assert_eq!(answered, StatusCode::OK);
}

/// A host on a shared store without a bus serves, and says at start that
/// it must then run alone (a node whose bus setting went missing would
/// serve without the others' pushes).
#[tokio::test]
async fn a_shared_store_without_a_bus_warns_at_start() {
    let url = pg_server::shared().database();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let server = Server::start_logging_to(&log, &[("SUPERAPP_STORE", url.as_str())]);
    Client::signed_up(&server, "alice").await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("no bus is set"), "{text}");
}
