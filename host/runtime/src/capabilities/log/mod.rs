//! `log`: structured lines into the host's tracing, tagged with app and
//! version. Bounded per event so a chatty guest cannot flood the host log.

use wasmtime::component::{HasSelf, Linker};

use superapp_core::{Capability, ConsentLevel};

use super::{HostState, Registration};
use crate::bindings::superapp::plugin::log::{self as wit, Level};

/// Lines one event may write; later lines are dropped and counted.
pub const MAX_LINES_PER_EVENT: u32 = 100;
/// Longest message kept, in bytes; longer ones are cut.
pub const MAX_MESSAGE: usize = 4096;
const MAX_FIELDS: usize = 16;

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

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
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
                cut(&message, MAX_MESSAGE),
                cut(location, 200)
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
        let message = cut(&message, MAX_MESSAGE);
        let fields: Vec<String> = fields
            .iter()
            .take(MAX_FIELDS)
            .map(|(k, v)| format!("{}={}", cut(k, 64), cut(v, 256)))
            .collect();
        // An empty field list is left out of the line rather than shown as "".
        let fields = (!fields.is_empty()).then(|| fields.join(" "));
        let (app, version) = (&self.app.id, &self.app.version);
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
}
