//! The host's own delays in host calls (waits on a loaded database) are
//! not the app's time: a slow store does not make an app breach its time
//! limit, an app cannot hide its own time in host calls (neither by making
//! many nor by making the host work for it), and a store slow past the
//! host's bound ends the event as the host's failure.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use superapp_core::Manifest;
use superapp_runtime::bindings::superapp::plugin::types::Error;
use superapp_runtime::capabilities::notify::Notifier;
use superapp_runtime::capabilities::{BoxFuture, ConsentGate, ConsentState};
use superapp_runtime::{Call, Limit, RunError, Runtime, RuntimeConfig, Services};
use superapp_services::messaging::Card;
use superapp_store::{waits, KvBackend, KvError, MemoryKv, Namespace, Quota, Usage};

use crate::common::*;

/// An app data store whose reads, listings and compare-and-swaps each take
/// `delay`, and which counts them: waiting, as on a loaded database, or
/// (`busy`) working, as the host does for a costly call.
struct SlowKv {
    inner: MemoryKv,
    delay: Duration,
    busy: bool,
    reads: AtomicUsize,
}

impl SlowKv {
    fn take_time(&self) {
        self.reads.fetch_add(1, Ordering::SeqCst);
        if self.busy {
            let until = std::time::Instant::now() + self.delay;
            while std::time::Instant::now() < until {
                std::hint::spin_loop();
            }
        } else {
            waits::waiting(|| std::thread::sleep(self.delay));
        }
    }
}

impl KvBackend for SlowKv {
    fn get(&self, ns: &Namespace, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        self.take_time();
        self.inner.get(ns, key)
    }
    fn set(&self, ns: &Namespace, key: &[u8], value: &[u8], quota: &Quota) -> Result<(), KvError> {
        self.inner.set(ns, key, value, quota)
    }
    fn delete(&self, ns: &Namespace, key: &[u8]) -> Result<bool, KvError> {
        self.inner.delete(ns, key)
    }
    fn list_keys(
        &self,
        ns: &Namespace,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, KvError> {
        self.take_time();
        self.inner.list_keys(ns, prefix, start_after, limit)
    }
    fn compare_and_swap(
        &self,
        ns: &Namespace,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        quota: &Quota,
    ) -> Result<bool, KvError> {
        self.take_time();
        self.inner.compare_and_swap(ns, key, expected, new, quota)
    }
    fn increment(
        &self,
        ns: &Namespace,
        key: &[u8],
        delta: i64,
        quota: &Quota,
    ) -> Result<i64, KvError> {
        self.inner.increment(ns, key, delta, quota)
    }
    fn usage(&self, ns: &Namespace) -> Result<Usage, KvError> {
        self.inner.usage(ns)
    }
}

/// A runtime whose apps get at most 100 ms, the host's delays bounded by
/// `host_delay`, and services whose store reads wait `delay` each.
fn slow_store(delay: Duration, host_delay: Duration) -> (Runtime, Arc<Services>, Arc<SlowKv>) {
    store_taking(delay, false, host_delay)
}

fn store_taking(
    delay: Duration,
    busy: bool,
    host_delay: Duration,
) -> (Runtime, Arc<Services>, Arc<SlowKv>) {
    let mut config = RuntimeConfig {
        host_delay,
        ..RuntimeConfig::default()
    };
    config.cap.time_ms = 100;
    let rt = Runtime::new(config).unwrap();
    let kv = Arc::new(SlowKv {
        inner: MemoryKv::new(),
        delay,
        busy,
        reads: AtomicUsize::new(0),
    });
    let mut services = Services::in_memory(Default::default());
    services.kv = kv.clone();
    (rt, Arc::new(services), kv)
}

fn reads(n: u32) -> Call {
    let n = n.to_string();
    action("storage-get-many", Some(&n), &[])
}

#[tokio::test]
async fn a_slow_store_does_not_count_against_the_apps_time_limit() {
    // Eight reads of 30 ms: 240 ms of store time against a 100 ms limit.
    let (rt, services, kv) = slow_store(Duration::from_millis(30), Duration::from_secs(10));
    let probe = load(&rt, "testing/probe");
    assert_eq!(probe.limits().time_ms, 100);
    let view = run(&rt, &probe, &services, "alice", reads(8))
        .await
        .expect("the host's slowness is not the app's time");
    assert_eq!(texts(&view), ["ok: 8"]);
    assert_eq!(kv.reads.load(Ordering::SeqCst), 8);
}

#[tokio::test]
async fn an_app_cannot_hide_its_time_in_host_calls() {
    // Each read takes 4 ms, of which the app pays 2: a loop of a thousand
    // reads (4 s) is stopped near its 100 ms limit, after about 50.
    let (rt, services, kv) = slow_store(Duration::from_millis(4), Duration::from_secs(10));
    let probe = load(&rt, "testing/probe");
    let err = run(&rt, &probe, &services, "alice", reads(1000))
        .await
        .unwrap_err();
    assert_eq!(err.limit(), Some(&Limit::Time { limit_ms: 100 }), "{err}");
    let made = kv.reads.load(Ordering::SeqCst);
    let most = (100 / superapp_runtime::HOST_CALL_CHARGE.as_millis()) as usize + 1;
    assert!(
        (1..=most).contains(&made),
        "{made} reads ran, at most {most} fit in the limit"
    );
}

#[tokio::test]
async fn work_the_host_does_for_an_app_is_the_apps_time() {
    // Reads that keep the host busy 30 ms each (not waiting): the fourth
    // passes the 100 ms limit, so a loop of twenty is stopped there.
    let (rt, services, kv) = store_taking(Duration::from_millis(30), true, Duration::from_secs(10));
    let probe = load(&rt, "testing/probe");
    let err = run(&rt, &probe, &services, "alice", reads(20))
        .await
        .unwrap_err();
    assert_eq!(err.limit(), Some(&Limit::Time { limit_ms: 100 }), "{err}");
    let made = kv.reads.load(Ordering::SeqCst);
    assert!((1..=4).contains(&made), "{made} reads ran");
}

#[tokio::test]
async fn a_store_slower_than_the_hosts_bound_ends_the_event_as_the_hosts_failure() {
    // Reads of 30 ms, of which 28 are the host's delay: past 150 ms of it
    // (the sixth read at the latest) the event ends, not as the app's
    // limit, and the host says to try again.
    let (rt, services, kv) = slow_store(Duration::from_millis(30), Duration::from_millis(150));
    let probe = load(&rt, "testing/probe");
    let err = run(&rt, &probe, &services, "alice", reads(20))
        .await
        .unwrap_err();
    let RunError::HostDelayed { waited, .. } = &err else {
        panic!("expected the host's failure, got {err:?}");
    };
    assert!(*waited > Duration::from_millis(150), "{waited:?}");
    assert_eq!(err.code(), "host-delayed");
    assert_eq!(err.limit(), None);
    assert!(err.to_string().contains("try again"), "{err}");
    let made = kv.reads.load(Ordering::SeqCst);
    assert!((1..=6).contains(&made), "{made} reads ran");
    // The runtime carries on.
    let view = run(&rt, &probe, &services, "alice", reads(1))
        .await
        .expect("a short event still runs");
    assert_eq!(texts(&view), ["ok: 1"]);
}

#[tokio::test]
async fn the_hosts_delays_an_event_may_have_are_bounded_by_its_limit_too() {
    // A round trip also holds work the app asked of the database, so the
    // excuse is at most four times the limit (400 ms here), whatever the
    // host's own bound (10 s): reads waiting 30 ms stop by the fifteenth.
    let (rt, services, kv) = slow_store(Duration::from_millis(30), Duration::from_secs(10));
    let probe = load(&rt, "testing/probe");
    let err = run(&rt, &probe, &services, "alice", reads(40))
        .await
        .unwrap_err();
    let RunError::HostDelayed { waited, .. } = &err else {
        panic!("expected the host's failure, got {err:?}");
    };
    let bound = Duration::from_millis(100) * superapp_runtime::HOST_DELAY_PER_LIMIT;
    assert!(*waited > bound, "{waited:?}");
    let made = kv.reads.load(Ordering::SeqCst);
    assert!((1..=15).contains(&made), "{made} reads ran");
}

#[tokio::test]
async fn waits_in_a_call_that_moves_much_data_are_the_apps_own() {
    // A 100 KiB value read back with waits of 30 ms: a large value is work
    // the app asked of the store, so the fourth read passes the limit.
    let (rt, services, kv) = slow_store(Duration::from_millis(30), Duration::from_secs(10));
    let probe = load(&rt, "testing/probe");
    let stored = run(
        &rt,
        &probe,
        &services,
        "alice",
        action("storage-set-size", Some("100000"), &[]),
    )
    .await
    .unwrap();
    assert_eq!(texts(&stored), ["ok: ()"]);
    let err = run(&rt, &probe, &services, "alice", reads(20))
        .await
        .unwrap_err();
    assert_eq!(err.limit(), Some(&Limit::Time { limit_ms: 100 }), "{err}");
    let made = kv.reads.load(Ordering::SeqCst);
    assert!((1..=4).contains(&made), "{made} reads ran");
}

#[tokio::test]
async fn listing_many_long_keys_and_swapping_large_values_are_the_apps_time() {
    // Waits of 30 ms each. Listing two keys of 256 bytes is light: eight
    // listings (240 ms of waits) still answer within the 100 ms limit. (The
    // host hands the app a list through the app's allocator, which grows
    // its memory: a host call inside the host call, which once took the
    // listing's waits out of the accounting and blamed them on the app.)
    let (rt, services, kv) = slow_store(Duration::from_millis(30), Duration::from_secs(10));
    let probe = load(&rt, "testing/probe");
    let fill = |n: &'static str| action("storage-fill", Some(n), &[]);
    let listings = || action("storage-list-many", Some("8"), &[]);
    let filled = run(&rt, &probe, &services, "bob", fill("2")).await;
    assert_eq!(texts(&filled.unwrap()), ["ok: ()"]);
    kv.reads.store(0, Ordering::SeqCst);
    let listed = run(&rt, &probe, &services, "bob", listings()).await;
    assert_eq!(texts(&listed.unwrap()), ["ok: 8"]);

    // Three hundred such keys are more than 64 KiB a listing: the app's
    // own work, so the fourth listing passes the limit.
    let filled = run(&rt, &probe, &services, "alice", fill("300")).await;
    assert_eq!(texts(&filled.unwrap()), ["ok: ()"]);
    kv.reads.store(0, Ordering::SeqCst);
    let err = run(&rt, &probe, &services, "alice", listings())
        .await
        .unwrap_err();
    assert_eq!(err.limit(), Some(&Limit::Time { limit_ms: 100 }), "{err}");
    let made = kv.reads.load(Ordering::SeqCst);
    assert!((1..=4).contains(&made), "{made} listings ran");

    // So is a compare-and-swap of a 100 KB value, whether it lands or not.
    kv.reads.store(0, Ordering::SeqCst);
    let swaps = action("shared-cas-many", Some("20"), &[("size", "100000")]);
    let err = run(&rt, &probe, &services, "alice", swaps)
        .await
        .unwrap_err();
    assert_eq!(err.limit(), Some(&Limit::Time { limit_ms: 100 }), "{err}");
    let made = kv.reads.load(Ordering::SeqCst);
    assert!((1..=4).contains(&made), "{made} swaps ran");
}

/// A notifier whose deliveries never finish, as a store that stopped
/// answering inside an awaited commit.
struct StalledNotifier;

impl Notifier for StalledNotifier {
    fn send<'a>(
        &'a self,
        _user: &'a str,
        _app: &'a Manifest,
        _text: &'a str,
        _card: Option<Card>,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(())
        })
    }
    fn share_card<'a>(
        &'a self,
        _user: &'a str,
        _app: &'a Manifest,
        _card: Card,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn an_event_stuck_waiting_on_the_host_ends_as_the_hosts_failure() {
    // The backstop ends an event held in a host call past its limit and
    // the host's bound (100 + 400 ms here): the host's delay, not the
    // app's time.
    let (rt, _, _) = slow_store(Duration::ZERO, Duration::from_secs(10));
    let mut services = Services::in_memory(Default::default());
    services.notifier = Arc::new(StalledNotifier);
    let services = Arc::new(services);
    let probe = load(&rt, "testing/probe");
    let started = std::time::Instant::now();
    let err = run(&rt, &probe, &services, "alice", action("notify", None, &[]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RunError::HostDelayed { .. }),
        "expected the host's failure, got {err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// The dev loop's consent (everything granted), counting its checks: each
/// is what the host records in the audit log.
#[derive(Default)]
struct CountingConsent {
    checks: AtomicUsize,
}

impl ConsentGate for CountingConsent {
    fn check(
        &self,
        _user: &str,
        _app: &Manifest,
        _capability: superapp_core::Capability,
        _level: superapp_core::ConsentLevel,
        _args: Option<&[u8]>,
    ) -> ConsentState {
        self.checks.fetch_add(1, Ordering::SeqCst);
        ConsentState::Granted
    }
}

#[tokio::test]
async fn calls_that_need_the_users_agreement_are_bounded_per_event() {
    // Each is checked and recorded: the same call again in one event is
    // neither, and distinct ones stop at the cap with a typed error the app
    // sees, not a full audit log.
    let rt = runtime();
    let probe = load(&rt, "testing/probe");
    let consent = Arc::new(CountingConsent::default());
    let mut services = Services::in_memory(Default::default());
    services.consent = consent.clone();
    let services = Arc::new(services);
    let act = |name: &'static str, value: &'static str| {
        let (rt, probe, services) = (&rt, &probe, &services);
        async move {
            let view = run(rt, probe, services, "alice", action(name, Some(value), &[]))
                .await
                .unwrap();
            texts(&view).join(" ")
        }
    };
    assert_eq!(act("profile-many", "1000").await, "1000 then ok: ()");
    assert_eq!(
        consent.checks.load(Ordering::SeqCst),
        1,
        "one check, one record"
    );

    let cap = superapp_runtime::capabilities::MAX_GATED_CALLS_PER_EVENT;
    assert_eq!(
        act("http-many", "1000").await,
        format!("{cap} then quota-exceeded")
    );
    assert_eq!(consent.checks.load(Ordering::SeqCst), 1 + cap as usize);
    // The next event has its own allowance, and is checked again.
    assert_eq!(act("profile-many", "3").await, "3 then ok: ()");
    assert_eq!(consent.checks.load(Ordering::SeqCst), 2 + cap as usize);
}
