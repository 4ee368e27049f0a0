//! Looking names up for egress, without a thread per lookup.
//!
//! The host asks the DNS servers of the system's configuration
//! (`/etc/resolv.conf`, and `/etc/hosts` first) itself, with hickory's
//! asynchronous resolver: a name whose DNS servers stall on purpose costs a
//! timer and a socket, not a thread of the pool that also hashes passwords
//! and compiles. One lookup of a name runs at a time, its answer shared by
//! every request waiting for it; at most [`MAX_LOOKUPS`] run at once; each
//! is bounded by [`LOOKUP_TIMEOUT`]; and a lookup whose requests all
//! stopped waiting is called off, queued or under way.
//!
//! Where the system's configuration cannot be read, the host falls back to
//! the C library's resolver (and says so in its log), whose lookups each
//! hold a blocking thread until they return and cannot be called off: a
//! lookup's slot stays with its thread, so at most [`MAX_LOOKUPS`] threads
//! are ever held, also after their requests stopped waiting.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{watch, Semaphore};

/// Names resolving at once: well above what one app may have in flight
/// (`per_app_concurrency`), so one app's stalled names leave room for
/// the others'.
pub(crate) const MAX_LOOKUPS: usize = 64;

/// The longest one lookup may take, whatever the system's configuration
/// says about retries.
pub(crate) const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a lookup was called off: whoever asked for it stopped waiting.
const ABANDONED: &str = "no request waits for this lookup any more";

type Addresses = Result<Vec<SocketAddr>, String>;

/// One of the [`MAX_LOOKUPS`] places: held by a lookup until it is done
/// (by the blocking thread, where the lookup is one).
pub(crate) type Slot = tokio::sync::OwnedSemaphorePermit;

/// A lookup of a name's addresses, holding its slot.
pub(crate) type Resolve =
    Arc<dyn Fn(String, Slot) -> Pin<Box<dyn Future<Output = Addresses> + Send>> + Send + Sync>;

/// Lookups under way, each shared by the requests that wait for it.
pub(crate) struct Lookups {
    resolve: Resolve,
    /// By name: the lookup's answer, once there is one. Requests subscribe
    /// to it; the lookup is called off when none is left.
    inflight: Mutex<HashMap<String, Arc<watch::Sender<Option<Addresses>>>>>,
    slots: Arc<Semaphore>,
}

impl Lookups {
    pub(crate) fn new(resolve: Resolve, max: usize) -> Arc<Lookups> {
        Arc::new(Lookups {
            resolve,
            inflight: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(max)),
        })
    }

    /// The system's resolver, set up at the first lookup (no egress, no
    /// configuration read).
    pub(crate) fn system() -> Arc<Lookups> {
        let system: Arc<OnceLock<System>> = Arc::new(OnceLock::new());
        let resolve: Resolve = Arc::new(move |host: String, slot: Slot| {
            let system = system.clone();
            Box::pin(async move { system.get_or_init(System::new).lookup(host, slot).await })
        });
        Lookups::new(resolve, MAX_LOOKUPS)
    }

    fn inflight(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Arc<watch::Sender<Option<Addresses>>>>> {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `host`'s addresses: the answer of the lookup of it under way, or of
    /// one started now.
    pub(crate) async fn addresses(self: &Arc<Self>, host: &str) -> Addresses {
        let mut answer = {
            let mut inflight = self.inflight();
            match inflight.get(host) {
                Some(tell) => tell.subscribe(),
                None => {
                    let (tell, answer) = watch::channel(None);
                    let tell = Arc::new(tell);
                    inflight.insert(host.to_string(), tell.clone());
                    tokio::spawn(self.clone().look_up(host.to_string(), tell));
                    answer
                }
            }
        };
        loop {
            if let Some(result) = answer.borrow_and_update().clone() {
                return result;
            }
            if answer.changed().await.is_err() {
                return Err("the lookup was lost".into());
            }
        }
    }

    /// Look `host` up when a slot is free, and tell whoever still waits;
    /// called off as soon as no one does.
    async fn look_up(self: Arc<Self>, host: String, tell: Arc<watch::Sender<Option<Addresses>>>) {
        // Whatever ends this task (a panic too), its entry goes with it,
        // so later requests for the name start a lookup of their own.
        let _entry = Entry {
            lookups: &self,
            host: &host,
            tell: &tell,
        };
        let lookup = async {
            let slot = self
                .slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| "the resolver is shut down".to_string())?;
            tokio::time::timeout(LOOKUP_TIMEOUT, (self.resolve)(host.clone(), slot))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {} s", LOOKUP_TIMEOUT.as_secs())))
        };
        let mut lookup = std::pin::pin!(lookup);
        let result = loop {
            tokio::select! {
                // Asked first: a lookup nobody waits for does not start.
                biased;
                () = tell.closed() => {
                    // Requests subscribe under the map's lock: if none did
                    // since, none can now, and the lookup is dropped.
                    let mut inflight = self.inflight();
                    if tell.receiver_count() == 0 {
                        inflight.remove(&host);
                        tracing::debug!(%host, "{ABANDONED}");
                        return;
                    }
                }
                result = &mut lookup => break result,
            }
        };
        // Whoever waits gets the answer; the entry goes with `_entry`.
        let _ = tell.send(Some(result));
    }
}

/// A lookup's place in the map, given up when the lookup ends however it
/// ends, unless a newer lookup of the name took it since.
struct Entry<'a> {
    lookups: &'a Lookups,
    host: &'a str,
    tell: &'a Arc<watch::Sender<Option<Addresses>>>,
}

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        let mut inflight = self.lookups.inflight();
        if inflight
            .get(self.host)
            .is_some_and(|t| Arc::ptr_eq(t, self.tell))
        {
            inflight.remove(self.host);
        }
    }
}

/// The system's resolver: hickory's with the system's configuration, or
/// the C library's where that cannot be read.
enum System {
    Hickory(Box<hickory_resolver::TokioResolver>),
    Libc,
}

impl System {
    fn new() -> System {
        let built = hickory_resolver::TokioResolver::builder_tokio().and_then(|mut builder| {
            let options = builder.options_mut();
            // Both families, as the C library answers: every address of a
            // name is checked before one is connected to.
            options.ip_strategy = hickory_resolver::config::LookupIpStrategy::Ipv4AndIpv6;
            // Short enough per query that a retry, or the next server, fits
            // in the lookup's own bound.
            options.timeout = options.timeout.min(LOOKUP_TIMEOUT / 3);
            builder.build()
        });
        match built {
            Ok(resolver) => System::Hickory(Box::new(resolver)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the system's DNS configuration; looking names up with the C library, a blocking thread per lookup");
                System::Libc
            }
        }
    }

    async fn lookup(&self, host: String, slot: Slot) -> Addresses {
        match self {
            System::Hickory(resolver) => {
                let _slot = slot;
                let found = resolver
                    .lookup_ip(host.as_str())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(found.iter().map(|ip| SocketAddr::new(ip, 0)).collect())
            }
            // The thread keeps the slot until the C library returns, even
            // after the lookup was called off or timed out.
            System::Libc => tokio::task::spawn_blocking(move || {
                let _slot = slot;
                use std::net::ToSocketAddrs;
                (host.as_str(), 0)
                    .to_socket_addrs()
                    .map(|found| found.collect())
                    .map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| Err(format!("the lookup failed: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Counts the lookups it is dropped from, answered or not.
    struct Ended(Arc<AtomicUsize>);

    impl Drop for Ended {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Names whose DNS stalls: no more lookups than the limit run at once;
    /// many requests for one name share one lookup and its answer; a lookup
    /// every request gave up on is called off, whether it was queued or
    /// under way; and none of it holds a thread.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn stalled_lookups_are_bounded_shared_and_called_off() {
        const MAX: usize = 8;
        let (started, ended) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let release = Arc::new(tokio::sync::Notify::new());
        let lookups = {
            let (started, ended, release) = (started.clone(), ended.clone(), release.clone());
            let stalled: Resolve = Arc::new(move |_host: String, slot: Slot| {
                started.fetch_add(1, Ordering::SeqCst);
                let (ended, release) = (Ended(ended.clone()), release.clone());
                Box::pin(async move {
                    let (_ended, _slot) = (ended, slot);
                    release.notified().await;
                    Ok(vec!["93.184.216.34:0".parse().unwrap()])
                })
            });
            Lookups::new(stalled, MAX)
        };
        let running = || started.load(Ordering::SeqCst) - ended.load(Ordering::SeqCst);
        let give_up = |host: String| {
            let lookups = lookups.clone();
            tokio::spawn(async move {
                tokio::time::timeout(Duration::from_millis(300), lookups.addresses(&host)).await
            })
        };
        // Fifty requests for one name, and one for each of forty others;
        // all give up after a moment.
        let mut waits = Vec::new();
        for i in 0..90 {
            let host = if i < 50 {
                "slow.test".into()
            } else {
                format!("slow{i}.test")
            };
            waits.push(give_up(host));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            running(),
            MAX,
            "the limit, and one lookup for fifty requests"
        );
        assert_eq!(lookups.inflight().len(), 41, "one entry per name");
        for w in waits {
            assert!(w.await.unwrap().is_err(), "nothing answered yet");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(running(), 0, "every lookup given up on is dropped");
        assert_eq!(
            started.load(Ordering::SeqCst),
            MAX,
            "the queued never start"
        );
        assert!(lookups.inflight().is_empty());

        // Requests that wait share one answer.
        let waiting: Vec<_> = (0..5)
            .map(|_| {
                let lookups = lookups.clone();
                tokio::spawn(async move { lookups.addresses("slow.test").await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(running(), 1);
        release.notify_waiters();
        for w in waiting {
            assert_eq!(
                w.await.unwrap(),
                Ok(vec!["93.184.216.34:0".parse().unwrap()])
            );
        }
        assert_eq!(started.load(Ordering::SeqCst), MAX + 1);
        assert!(lookups.inflight().is_empty());

        // A lookup that never answers ends at the timeout.
        let late = {
            let lookups = lookups.clone();
            tokio::spawn(async move { lookups.addresses("silent.test").await })
        };
        tokio::time::sleep(LOOKUP_TIMEOUT + Duration::from_millis(10)).await;
        let e = late.await.unwrap().unwrap_err();
        assert!(e.contains("no answer within 5 s"), "{e}");
        assert_eq!(running(), 0);
    }

    /// The system's resolver answers `localhost` without asking a server,
    /// with the addresses of both families (which the host then checks
    /// one by one), as the C library does.
    #[tokio::test]
    async fn the_system_resolver_knows_localhost_in_both_families() {
        let found = Lookups::system().addresses("localhost").await.unwrap();
        assert!(
            !found.is_empty() && found.iter().all(|a| a.ip().is_loopback()),
            "{found:?}"
        );
        assert!(found.iter().any(SocketAddr::is_ipv4), "{found:?}");
        assert!(found.iter().any(SocketAddr::is_ipv6), "{found:?}");
    }
}
