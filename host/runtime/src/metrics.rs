//! What the sandbox counts for `/metrics`: events by app and outcome, their
//! running time, how long they waited for a first slot, limit breaches by
//! kind, capability-call latency, the scheduler's queue, and components
//! prepared by outcome with their compile time. The server registers these
//! beside its own.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use superapp_core::Capability;

use crate::error::{Limit, RunError};
use crate::scheduler::Load;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub app: String,
    /// `ok`, or the run error's code (`limit-exceeded`, `overloaded`, …).
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BreachLabels {
    pub app: String,
    /// `memory`, `table`, `time` or `view`.
    pub limit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub capability: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CompileLabels {
    /// A [`Prepared`]'s name.
    pub outcome: String,
}

/// How a component was prepared to run, or why it was not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prepared {
    /// Its precompiled code was found in the cache.
    Cached,
    /// It was compiled.
    Compiled,
    /// It does not compile, or not within the compile budget.
    Refused,
    /// It was refused earlier in this process, and not tried again.
    Remembered,
    /// The compiler could not be run (it is tried again next time).
    Failed,
}

impl Prepared {
    pub const ALL: [Prepared; 5] = [
        Prepared::Cached,
        Prepared::Compiled,
        Prepared::Refused,
        Prepared::Remembered,
        Prepared::Failed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Prepared::Cached => "cached",
            Prepared::Compiled => "compiled",
            Prepared::Refused => "refused",
            Prepared::Remembered => "remembered",
            Prepared::Failed => "failed",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// `running` or `waiting`.
    pub state: String,
}

fn seconds() -> Histogram {
    // 10 µs to about 10 s.
    Histogram::new(exponential_buckets(1e-5, 4.0, 11))
}

#[derive(Debug)]
pub struct RuntimeMetrics {
    events: Family<EventLabels, Counter>,
    event_seconds: Histogram,
    waited: Histogram,
    breaches: Family<BreachLabels, Counter>,
    calls: Family<CallLabels, Histogram, fn() -> Histogram>,
    /// Each capability's series of `calls`, looked up once: a host call
    /// records its latency without building labels or hashing them.
    call_series: [Histogram; Capability::ALL.len()],
    queue: Family<QueueLabels, Gauge>,
    prepared: Family<CompileLabels, Counter>,
    compiling: Histogram,
}

impl Default for RuntimeMetrics {
    fn default() -> Self {
        let calls: Family<CallLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(seconds);
        let call_series = Capability::ALL.map(|c| {
            calls
                .get_or_create(&CallLabels {
                    capability: c.name().to_string(),
                })
                .clone()
        });
        // Every outcome shows from the start, at zero until it happens.
        let prepared: Family<CompileLabels, Counter> = Family::default();
        for outcome in Prepared::ALL {
            let _ = prepared.get_or_create(&CompileLabels {
                outcome: outcome.name().to_string(),
            });
        }
        RuntimeMetrics {
            events: Family::default(),
            event_seconds: seconds(),
            // Doubling from 10 µs to about 10 s: queueing is what a
            // latency objective of a few milliseconds is lost to.
            waited: Histogram::new(exponential_buckets(1e-5, 2.0, 21)),
            breaches: Family::default(),
            calls,
            call_series,
            queue: Family::default(),
            prepared,
            // 1 ms to about 70 minutes: past the longest compile budget
            // (`compile-timeout-secs` at most an hour).
            compiling: Histogram::new(exponential_buckets(1e-3, 4.0, 12)),
        }
    }
}

impl RuntimeMetrics {
    /// Add every series to `registry` (names get the registry's prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "events",
            "Events run, by app and outcome",
            self.events.clone(),
        );
        registry.register_with_unit(
            "event_running",
            "Time events held a run slot (what the time limit counts)",
            Unit::Seconds,
            self.event_seconds.clone(),
        );
        registry.register_with_unit(
            "event_waiting",
            "Time events waited for their first run slot and instance (refused ones not counted)",
            Unit::Seconds,
            self.waited.clone(),
        );
        registry.register(
            "limit_breaches",
            "Events stopped at a limit, by app and limit",
            self.breaches.clone(),
        );
        registry.register_with_unit(
            "host_call",
            "Latency of capability calls, by capability",
            Unit::Seconds,
            self.calls.clone(),
        );
        registry.register(
            "event_queue",
            "Events holding a run slot, waiting for one, and alive (holding an instance of the pool)",
            self.queue.clone(),
        );
        registry.register(
            "components_prepared",
            "Components prepared to run, by outcome (cached, compiled, refused, remembered: refused again without compiling, failed: the compiler could not run)",
            self.prepared.clone(),
        );
        registry.register_with_unit(
            "compile",
            "Time compiling a component took, whatever its outcome (a refused one counts up to the compile budget)",
            Unit::Seconds,
            self.compiling.clone(),
        );
    }

    /// A component was prepared (or not) as `outcome` says; `compiling`
    /// is the compile's time, where there was one.
    pub(crate) fn prepared(&self, outcome: Prepared, compiling: Option<Duration>) {
        self.prepared
            .get_or_create(&CompileLabels {
                outcome: outcome.name().to_string(),
            })
            .inc();
        if let Some(took) = compiling {
            self.compiling.observe(took.as_secs_f64());
        }
    }

    /// The counter of `app`'s successful events, for [`RuntimeMetrics::event`]:
    /// looked up once per loaded app rather than once per event.
    pub(crate) fn ok_events(&self, app: &str) -> Counter {
        self.events
            .get_or_create(&EventLabels {
                app: app.to_string(),
                outcome: "ok".to_string(),
            })
            .clone()
    }

    /// Count an event of `app` (whose [`RuntimeMetrics::ok_events`] counter
    /// is `ok`) and its running time.
    pub(crate) fn event(
        &self,
        app: &str,
        ok: &Counter,
        result: &Result<(), &RunError>,
        running: Duration,
    ) {
        match result {
            Ok(()) => {
                ok.inc();
            }
            Err(e) => {
                self.events
                    .get_or_create(&EventLabels {
                        app: app.to_string(),
                        outcome: e.code().to_string(),
                    })
                    .inc();
            }
        }
        if let Err(RunError::Limit { limit, .. }) = result {
            let kind = match limit {
                Limit::Memory { .. } => "memory",
                Limit::Table { .. } => "table",
                Limit::Time { .. } => "time",
                Limit::View { .. } => "view",
            };
            self.breaches
                .get_or_create(&BreachLabels {
                    app: app.to_string(),
                    limit: kind.to_string(),
                })
                .inc();
        }
        if !matches!(result, Err(RunError::Overloaded { .. })) {
            self.event_seconds.observe(running.as_secs_f64());
        }
    }

    /// An event waited `waited` for its first slot.
    pub(crate) fn waited(&self, waited: Duration) {
        self.waited.observe(waited.as_secs_f64());
    }

    pub(crate) fn host_call(&self, capability: Capability, took: Duration) {
        if let Some(i) = Capability::ALL.iter().position(|c| *c == capability) {
            self.call_series[i].observe(took.as_secs_f64());
        }
    }

    /// Refresh the queue gauges (called when metrics are read).
    pub fn set_queue(&self, load: Load) {
        for (state, n) in [
            ("running", load.running),
            ("waiting", load.waiting),
            ("alive", load.alive),
        ] {
            self.queue
                .get_or_create(&QueueLabels {
                    state: state.to_string(),
                })
                .set(n as i64);
        }
    }
}
