//! `log`: structured lines into the host's tracing, tagged with app and
//! version. Bounded per event, and per app over time (all its users'
//! events together), so a chatty guest cannot flood the host's log or its
//! disk; control characters are escaped, so a line cannot forge others or
//! steer the terminal it is read on.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker};

use superapp_core::{Capability, ConsentLevel};

use super::{HostState, Registration};
use crate::bindings::superapp::plugin::log::{self as wit, Level};

/// Lines one event may write; later lines are dropped and counted.
pub const MAX_LINES_PER_EVENT: u32 = 100;
/// Longest message kept, in bytes; longer ones are cut.
pub const MAX_MESSAGE: usize = 4096;
const MAX_FIELDS: usize = 16;
/// What one app may write to the host's log, in bytes (a line counts its
/// message, fields, app, version and [`LINE_COST`]), over a minute: the
/// budget refills at this rate and holds at most this much.
pub const BYTES_PER_APP_MINUTE: f64 = (1 << 20) as f64;

/// What a line costs beside its text, app and version: its time, level
/// and the rest of its frame.
const LINE_COST: usize = 64;

/// Each app's log budget, shared by all its events in the process.
#[derive(Default)]
pub struct LogBudgets {
    apps: Mutex<HashMap<String, Budget>>,
}

struct Budget {
    left: f64,
    at: Instant,
    /// Lines dropped since the last warning about them, and when that was.
    dropped: u64,
    warned: Option<Instant>,
}

impl LogBudgets {
    /// Take `bytes` from `app`'s budget at `now`: `Ok` if the line may be
    /// written, `Err(dropped)` if not, with the lines dropped since the last
    /// warning when it is time to warn again (once a minute), else `Err(0)`.
    fn take(&self, app: &str, bytes: usize, now: Instant) -> Result<(), u64> {
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        let budget = apps.entry(app.to_string()).or_insert(Budget {
            left: BYTES_PER_APP_MINUTE,
            at: now,
            dropped: 0,
            warned: None,
        });
        let refill = now.duration_since(budget.at).as_secs_f64() / 60.0 * BYTES_PER_APP_MINUTE;
        budget.left = (budget.left + refill).min(BYTES_PER_APP_MINUTE);
        budget.at = now;
        if budget.left >= bytes as f64 {
            budget.left -= bytes as f64;
            return Ok(());
        }
        budget.dropped += 1;
        if budget
            .warned
            .is_some_and(|w| now.duration_since(w) < Duration::from_secs(60))
        {
            return Err(0);
        }
        budget.warned = Some(now);
        Err(std::mem::take(&mut budget.dropped))
    }
}

/// `text` with every control character escaped.
fn printable(text: &str) -> Cow<'_, str> {
    superapp_core::text::escape_controls(text, &[])
}

/// What `log` counts during one event.
#[derive(Debug, Default)]
pub struct State {
    lines: u32,
}

/// Consent: declaring it in the manifest is enough.
pub const REGISTRATION: Registration = Registration {
    consent: ConsentLevel::None,
    link: add_to_linker,
};

pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

impl wit::Host for HostState {
    async fn emit(
        &mut self,
        level: Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        // The SDK's panic hook reports the panic message with a `panic`
        // field just before the instance aborts; keep it to explain the trap.
        if let Some((_, location)) = fields.iter().find(|(k, _)| k == "panic") {
            self.panic_message = Some(format!(
                "{} at {}",
                superapp_core::text::prefix(&message, MAX_MESSAGE),
                superapp_core::text::prefix(location, 200)
            ));
        }
        if self.require(Capability::Log).is_err() {
            return Ok(());
        }
        self.log.lines += 1;
        if self.log.lines > MAX_LINES_PER_EVENT {
            if self.log.lines == MAX_LINES_PER_EVENT + 1 {
                tracing::warn!(app = %self.app.id, version = %self.app.version, "log limit reached; dropping further lines of this event");
            }
            return Ok(());
        }
        let message = printable(superapp_core::text::prefix(&message, MAX_MESSAGE));
        let fields: Vec<String> = fields
            .iter()
            .take(MAX_FIELDS)
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    printable(superapp_core::text::prefix(k, 64)),
                    printable(superapp_core::text::prefix(v, 256))
                )
            })
            .collect();
        let (app, version) = (&self.app.id, &self.app.version);
        // A line the log would not keep costs nothing; one it keeps costs
        // what it writes: its text, and its time, level, app and version.
        let kept = match level {
            Level::Trace => tracing::enabled!(target: "guest", tracing::Level::TRACE),
            Level::Debug => tracing::enabled!(target: "guest", tracing::Level::DEBUG),
            Level::Info => tracing::enabled!(target: "guest", tracing::Level::INFO),
            Level::Warn => tracing::enabled!(target: "guest", tracing::Level::WARN),
            Level::Error => tracing::enabled!(target: "guest", tracing::Level::ERROR),
        };
        if !kept {
            return Ok(());
        }
        let size = LINE_COST
            + app.len()
            + version.to_string().len()
            + message.len()
            + fields.iter().map(String::len).sum::<usize>();
        match self.services.logs.take(app, size, Instant::now()) {
            Ok(()) => {}
            Err(0) => return Ok(()),
            Err(dropped) => {
                tracing::warn!(%app, %version, dropped, "this app's log budget for the minute is used up; dropping its lines");
                return Ok(());
            }
        }
        // An empty field list is left out of the line rather than shown as "".
        let fields = (!fields.is_empty()).then(|| fields.join(" "));
        match level {
            Level::Trace => {
                tracing::trace!(target: "guest", %app, %version, fields = fields.as_deref(), "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: "guest", %app, %version, fields = fields.as_deref(), "{message}")
            }
            Level::Info => {
                tracing::info!(target: "guest", %app, %version, fields = fields.as_deref(), "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "guest", %app, %version, fields = fields.as_deref(), "{message}")
            }
            Level::Error => {
                tracing::error!(target: "guest", %app, %version, fields = fields.as_deref(), "{message}")
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::testing::{services, state};

    #[tokio::test]
    async fn lines_are_counted_only_when_declared_and_a_panic_report_is_always_kept() {
        let services = services(&[]);
        let mut s = state("alice", &[Capability::Log], &services);
        wit::Host::emit(&mut s, Level::Info, "hello".into(), vec![])
            .await
            .unwrap();
        assert_eq!(s.log.lines, 1);

        let mut undeclared = state("alice", &[], &services);
        let long = "x".repeat(2 * MAX_MESSAGE);
        let panic = vec![("panic".to_string(), "src/lib.rs:1".to_string())];
        wit::Host::emit(&mut undeclared, Level::Error, long, panic)
            .await
            .unwrap();
        assert_eq!(undeclared.log.lines, 0, "an undeclared log writes nothing");
        let report = undeclared.panic_message.unwrap();
        assert!(report.ends_with(" at src/lib.rs:1") && report.len() < MAX_MESSAGE + 100);
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            printable("ok\n2026-12-06 ERROR host compromised\r\u{1b}[2J"),
            "ok\\n2026-12-06 ERROR host compromised\\r\\u{1b}[2J"
        );
        assert!(matches!(printable("plain text: é"), Cow::Borrowed(_)));
    }

    /// An app's lines over all its events stop at its budget for the
    /// minute, which refills with time; the warning about dropped lines
    /// comes once a minute, counting them; other apps are not affected.
    #[test]
    fn each_app_logs_within_its_budget_per_minute() {
        let budgets = LogBudgets::default();
        let start = Instant::now();
        let line = 4096;
        let fit = (BYTES_PER_APP_MINUTE as usize) / line;
        for _ in 0..fit {
            assert_eq!(budgets.take("chatty", line, start), Ok(()));
        }
        assert_eq!(
            budgets.take("chatty", line, start),
            Err(1),
            "the first drop warns"
        );
        assert_eq!(budgets.take("chatty", line, start), Err(0));
        assert_eq!(budgets.take("quiet", line, start), Ok(()));
        // Ten seconds refill a sixth of the budget.
        let later = start + Duration::from_secs(10);
        for _ in 0..fit / 6 {
            assert_eq!(budgets.take("chatty", line, later), Ok(()));
        }
        assert_eq!(
            budgets.take("chatty", line, later),
            Err(0),
            "warned under a minute ago"
        );
        // A minute after the warning, the next one counts every line
        // dropped since (a line larger than the whole budget among them).
        let next_minute = start + Duration::from_secs(61);
        let too_large = 2 * BYTES_PER_APP_MINUTE as usize;
        assert_eq!(budgets.take("chatty", too_large, next_minute), Err(3));
    }
}
