//! Hostile mini-programs are contained: each ends with a typed error naming
//! the limit or trap, and the host and other apps carry on.

use std::time::{Duration, Instant};

use superapp_runtime::bindings::superapp::plugin::types::{Action, Event};
use superapp_runtime::{Call, Limit, RunError, Runtime, RuntimeConfig, SchedulerConfig};

use crate::common::*;

/// A good app still works after a hostile one failed, in the same runtime.
async fn hello_still_works(rt: &superapp_runtime::Runtime) {
    let hello = load(rt, "hello");
    let view = run(rt, &hello, &services(&[]), "alice", Call::Launch)
        .await
        .expect("hello launches");
    assert_eq!(view.title, "Hello");
}

#[tokio::test]
async fn infinite_loop_is_stopped_at_the_time_limit() {
    let rt = runtime();
    let app = load(&rt, "testing/infinite-loop");
    assert_eq!(app.limits().time_ms, 200);
    let started = Instant::now();
    let err = run(&rt, &app, &services(&[]), "alice", Call::Launch)
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.limit(), Some(&Limit::Time { limit_ms: 200 }), "{err}");
    assert!(
        err.to_string()
            .contains("dev.superapp.testing.infinite-loop@0.1.0"),
        "{err}"
    );
    assert!(
        took >= Duration::from_millis(200),
        "stopped early: {took:?}"
    );
    assert!(
        took < Duration::from_millis(200 + 150),
        "stopped late: {took:?}"
    );
    hello_still_works(&rt).await;
}

#[tokio::test]
async fn the_epoch_ticker_sleeps_while_no_event_runs_and_limits_hold_after() {
    let rt = runtime();
    hello_still_works(&rt).await;
    // A tick under way as the event ended may still land; then nothing.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let idle = rt.epoch_ticks();
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(
        rt.epoch_ticks(),
        idle,
        "the ticker ticked with no event running"
    );
    // An event after the pause wakes it: its time limit still stops it.
    let app = load(&rt, "testing/infinite-loop");
    let err = run(&rt, &app, &services(&[]), "alice", Call::Launch)
        .await
        .unwrap_err();
    assert_eq!(err.limit(), Some(&Limit::Time { limit_ms: 200 }), "{err}");
    assert!(rt.epoch_ticks() > idle);
}

#[tokio::test(flavor = "current_thread")]
async fn a_spinning_app_does_not_block_others_on_the_same_thread() {
    // One executor thread: the looping guest must yield at epoch ticks so
    // that hello's event completes long before the loop's deadline.
    let rt = runtime();
    let spin = load(&rt, "testing/infinite-loop");
    let hello = load(&rt, "hello");
    let svc = services(&[]);
    let started = Instant::now();
    let spinning = run(&rt, &spin, &svc, "alice", Call::Launch);
    let greeting = async {
        let v = run(&rt, &hello, &svc, "bob", Call::Launch).await;
        (v, started.elapsed())
    };
    let (spun, (greeted, greeted_at)) = tokio::join!(spinning, greeting);
    assert!(matches!(
        spun.unwrap_err(),
        RunError::Limit {
            limit: Limit::Time { .. },
            ..
        }
    ));
    assert!(greeted.is_ok());
    assert!(
        greeted_at < Duration::from_millis(150),
        "hello waited for the loop: {greeted_at:?}"
    );
}

/// Waiting for a core is not running time. With one run slot, four heavy
/// events that each fit their 500 ms limit alone but not together all
/// finish, and a light app's event is served between them, not after them.
#[tokio::test]
async fn waiting_for_a_core_does_not_count_against_the_time_limit() {
    let rt = Runtime::new(RuntimeConfig {
        scheduler: SchedulerConfig {
            slots: 1,
            ..SchedulerConfig::default()
        },
        ..RuntimeConfig::default()
    })
    .unwrap();
    let busy = load(&rt, "testing/busy");
    assert_eq!(busy.limits().time_ms, 500);
    let hello = load(&rt, "hello");
    let svc = services(&[]);
    // Size the heavy event to about 150 ms alone on this machine: warm up
    // first (the first instance pays for more than the work), then grow the
    // measured run until it is long enough to time.
    let work = |rounds: u64| {
        let (rt, busy, svc) = (&rt, &busy, &svc);
        async move {
            let started = Instant::now();
            run(
                rt,
                busy,
                svc,
                "probe",
                action("work", Some(&rounds.to_string()), &[]),
            )
            .await
            .expect("the probe fits its limit");
            started.elapsed()
        }
    };
    work(1).await;
    let mut probe = 50u64;
    let per_round = loop {
        let took = work(probe).await;
        if took >= Duration::from_millis(30) {
            break took.as_secs_f64() / probe as f64;
        }
        probe *= 4;
    };
    let rounds = ((0.150 / per_round) as u64).max(1).to_string();

    let started = Instant::now();
    let heavy = |user: &'static str| {
        let (rt, busy, svc, rounds) = (&rt, &busy, &svc, rounds.clone());
        async move {
            let result = run(rt, busy, svc, user, action("work", Some(&rounds), &[])).await;
            (result, started.elapsed())
        }
    };
    let light = async {
        // Well inside the first heavy event's 150 ms.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let result = run(&rt, &hello, &svc, "light", Call::Launch).await;
        (result, started.elapsed())
    };
    let (a, b, c, d, (greeted, greeted_at)) =
        tokio::join!(heavy("a"), heavy("b"), heavy("c"), heavy("d"), light);
    let mut last_heavy = Duration::ZERO;
    for (result, at) in [a, b, c, d] {
        assert!(
            result.is_ok(),
            "a heavy event failed: {}",
            result.unwrap_err()
        );
        last_heavy = last_heavy.max(at);
    }
    assert!(greeted.is_ok(), "{}", greeted.unwrap_err());
    assert!(
        greeted_at < last_heavy,
        "the light event waited for the whole burst: {greeted_at:?} vs {last_heavy:?}"
    );
}

/// The pool is never overcommitted: with two instances and one core, six
/// events of two busy apps that step aside for each other mid-run (each
/// keeping its instance while it waits to resume) all finish; one that
/// would start a third instance waits for an event to end instead of
/// failing to instantiate.
#[tokio::test]
async fn more_events_than_instances_wait_for_one_and_all_finish() {
    let rt = Runtime::new(RuntimeConfig {
        scheduler: SchedulerConfig {
            slots: 1,
            instances: 2,
            instances_per_app: 2,
            ..SchedulerConfig::default()
        },
        ..RuntimeConfig::default()
    })
    .unwrap();
    let a = load(&rt, "testing/busy");
    let mut other = a.manifest().clone();
    other.id = "dev.superapp.testing.busy-twin".into();
    let bytes = std::fs::read(component("testing/busy")).unwrap();
    let b = rt.load(other, &bytes).unwrap();
    let svc = services(&[]);
    // Each event runs for several 2 ms slices, so they take turns.
    let event = |app, user| {
        let (rt, svc) = (&rt, &svc);
        async move { run(rt, app, svc, user, action("work", Some("10000"), &[])).await }
    };
    let results = tokio::join!(
        event(&a, "a1"),
        event(&b, "b1"),
        event(&a, "a2"),
        event(&b, "b2"),
        event(&a, "a3"),
        event(&b, "b3"),
    );
    for result in [
        results.0, results.1, results.2, results.3, results.4, results.5,
    ] {
        assert!(result.is_ok(), "an event failed: {}", result.unwrap_err());
    }
    let load = rt.scheduler().load();
    assert_eq!((load.alive, load.pending), (0, 0));
}

#[tokio::test]
async fn memory_bomb_is_stopped_at_the_memory_limit() {
    let rt = runtime();
    let app = load(&rt, "testing/memory-bomb");
    let err = run(&rt, &app, &services(&[]), "alice", Call::Launch)
        .await
        .unwrap_err();
    match err.limit() {
        Some(Limit::Memory {
            limit_bytes,
            requested_bytes,
        }) => {
            assert_eq!(*limit_bytes, 16 << 20);
            assert!(requested_bytes > limit_bytes);
        }
        other => panic!("expected a memory limit, got {other:?}: {err}"),
    }
    hello_still_works(&rt).await;
}

#[tokio::test]
async fn deep_recursion_traps_as_stack_overflow() {
    let rt = runtime();
    let app = load(&rt, "testing/deep-recursion");
    let err = run(&rt, &app, &services(&[]), "alice", Call::Launch)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RunError::Trap { reason, .. } if reason.contains("stack overflow")),
        "{err}"
    );
    hello_still_works(&rt).await;
}

#[tokio::test]
async fn panic_traps_and_reports_its_message() {
    let rt = runtime();
    let app = load(&rt, "testing/panic");
    let err = run(&rt, &app, &services(&[]), "alice", Call::Launch)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RunError::Panic { message, .. } if message.contains("the fixture panicked on purpose")),
        "{err}"
    );
    assert_eq!(err.code(), "app-panicked");
    hello_still_works(&rt).await;
}

#[tokio::test]
async fn oversize_view_is_refused() {
    let rt = runtime();
    let app = load(&rt, "testing/oversize-view");
    let err = run(&rt, &app, &services(&[]), "alice", Call::Launch)
        .await
        .unwrap_err();
    assert!(
        matches!(err.limit(), Some(Limit::View { detail }) if detail.contains("10002 nodes")),
        "{err}"
    );
    hello_still_works(&rt).await;
}

#[tokio::test]
async fn every_event_gets_a_fresh_instance() {
    let rt = runtime();
    let app = load(&rt, "testing/static-state");
    let svc = services(&[]);
    for user in ["alice", "alice", "bob"] {
        let view = run(&rt, &app, &svc, user, Call::Launch).await.unwrap();
        assert_eq!(texts(&view), vec!["launches seen by this instance: 1"]);
    }
}

#[tokio::test]
async fn host_caps_limit_what_a_manifest_asks_for() {
    let mut config = superapp_runtime::RuntimeConfig::default();
    config.cap.time_ms = 50;
    let rt = superapp_runtime::Runtime::new(config).unwrap();
    let app = load(&rt, "testing/infinite-loop");
    assert_eq!(app.limits().time_ms, 50);
    let err = run(&rt, &app, &services(&[]), "alice", Call::Launch)
        .await
        .unwrap_err();
    assert_eq!(err.limit(), Some(&Limit::Time { limit_ms: 50 }));
}

/// What one event writes into its memory (heap and grown pages) is gone in
/// the next, for the same user and for another; the same scan finds the
/// marks within one event, so it would see them if they survived.
#[tokio::test]
async fn an_event_never_sees_the_memory_of_the_one_before() {
    let rt = runtime();
    let app = load(&rt, "testing/static-state");
    let svc = services(&[]);
    let secret = "a secret of the event before";
    let act = |name: &str| {
        Call::Event(Event::Action(Action {
            name: name.into(),
            value: Some(secret.into()),
            fields: Vec::new(),
        }))
    };
    let view = run(&rt, &app, &svc, "alice", act("mark-and-scan"))
        .await
        .unwrap();
    // Its own copy plus 64 KiB of marks in the heap and one in a new page.
    let found: usize = texts(&view)[0]
        .strip_prefix("found: ")
        .unwrap()
        .parse()
        .unwrap();
    assert!(found > 1000, "the scan found {found} marks it just wrote");
    for _ in 0..3 {
        run(&rt, &app, &svc, "alice", act("mark")).await.unwrap();
        for user in ["alice", "bob"] {
            let view = run(&rt, &app, &svc, user, act("scan")).await.unwrap();
            assert_eq!(texts(&view), vec!["found: 1"], "{user} saw the marks");
        }
    }
}

/// Where the instance pool cannot be reserved (here: more slots than the
/// address space holds), the host starts anyway, allocating instances on
/// demand, and apps run; with room, it pools.
#[tokio::test]
async fn without_room_for_the_pool_the_host_allocates_on_demand() {
    assert!(runtime().pooling());
    let rt = Runtime::new(RuntimeConfig {
        scheduler: SchedulerConfig {
            instances: 1 << 22,
            ..SchedulerConfig::default()
        },
        ..RuntimeConfig::default()
    })
    .expect("the host starts without its pool");
    assert!(!rt.pooling());
    hello_still_works(&rt).await;
}
