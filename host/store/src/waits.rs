//! Time spent waiting on the store (a database round trip, a group commit
//! to disk; not the pauses between retries of conflicting transactions,
//! which the caller may have caused) by the task that asked, counted
//! inside [`counted`]: the
//! sandbox runs each event in one, so that it can tell the host's waits in
//! a host call from work the app asked for. Outside a counted scope
//! nothing is counted.

use std::cell::Cell;
use std::future::Future;
use std::time::{Duration, Instant};

tokio::task_local! {
    static WAITED: Cell<Duration>;
}

/// Run `work`, counting the store waits made while it is polled.
pub async fn counted<F: Future>(work: F) -> F::Output {
    WAITED.scope(Cell::new(Duration::ZERO), work).await
}

/// The store waits counted so far in the current [`counted`] scope; zero
/// outside one.
pub fn waited() -> Duration {
    WAITED.try_with(Cell::get).unwrap_or_default()
}

/// Run `wait`, which blocks the thread waiting on the store (not working),
/// off the async worker ([`crate::blocking`]), and count its time.
pub fn waiting<T>(wait: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = crate::blocking(wait);
    record(started.elapsed());
    out
}

/// Count `time` as waited on the store.
pub(crate) fn record(time: Duration) {
    let _ = WAITED.try_with(|w| w.set(w.get() + time));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_are_counted_inside_a_scope_and_not_outside() {
        waiting(|| std::thread::sleep(Duration::from_millis(5)));
        assert_eq!(waited(), Duration::ZERO, "outside a scope");
        let inside = counted(async {
            waiting(|| std::thread::sleep(Duration::from_millis(5)));
            tokio::task::yield_now().await;
            waiting(|| std::thread::sleep(Duration::from_millis(5)));
            waited()
        })
        .await;
        assert!(inside >= Duration::from_millis(10), "{inside:?}");
        // Each scope counts its own.
        assert_eq!(counted(async { waited() }).await, Duration::ZERO);
    }
}
