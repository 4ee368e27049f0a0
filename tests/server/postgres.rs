//! `serve --store postgres://…`: the host on a real PostgreSQL server this
//! test starts itself. Acknowledged writes survive `kill -9` of the host,
//! shared-storage bookings are decided by the database, and a store
//! setting that cannot work stops the start with a readable message.

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

use crate::apps::{serve_with, setup};
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
    assert!(!err.contains("s3cret-word"), "{err}");
    let err = refused_start(&[("SUPERAPP_STORE", "postgres://")]);
    assert!(err.contains("PostgreSQL"), "{err}");
}
