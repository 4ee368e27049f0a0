//! Compiling a component in a process of its own, under a time and memory
//! budget. Cranelift's compile time is not bounded by a component's size: a
//! few kilobytes of deeply nested loops can take it minutes or hours and
//! gigabytes, and a compile cannot be interrupted in the process that runs
//! it. So the host hands the component to a child process (its own binary,
//! `superapp compile-component`), which compiles it with the host's engine
//! settings and writes wasmtime's serialized form back; the child stops
//! itself when it runs past its budget, even if the host is gone by then.
//! A component that cannot be compiled within the budget is refused like
//! one that does not compile at all.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasmtime::Engine;

/// The most a component may be: a package's limit, with room to spare.
const MAX_INPUT: u64 = 2 * superapp_core::package::MAX_PACKAGE_BYTES as u64;

/// Exit codes of the child that name the budget it ran out of.
const OUT_OF_TIME: i32 = 3;
const OUT_OF_MEMORY: i32 = 4;

/// Why a component was not compiled, and whether that would be so again:
/// the component's own doing (it does not compile, or not within the
/// budget), or a passing failure of the machinery (a process that could
/// not start).
#[derive(Debug)]
pub(crate) struct Uncompiled {
    pub why: String,
    pub lasting: bool,
}

impl Uncompiled {
    pub fn lasting(why: String) -> Uncompiled {
        Uncompiled { why, lasting: true }
    }

    pub fn passing(why: String) -> Uncompiled {
        Uncompiled {
            why,
            lasting: false,
        }
    }
}

/// What one compile may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileBudget {
    /// Wall-clock time, from the child's start.
    pub time: Duration,
    /// Resident memory of the child.
    pub memory_bytes: u64,
}

impl Default for CompileBudget {
    fn default() -> Self {
        CompileBudget {
            // Under the server's default request timeout (30 s), so a
            // publish is answered rather than timed out.
            time: Duration::from_secs(25),
            memory_bytes: 2 << 30,
        }
    }
}

/// How to start the child that compiles: `program` with `args`, then the
/// budget's flags (`--time-ms`, `--memory-mib`); it reads the component
/// on its standard input (see [`run_compile_worker`]).
#[derive(Debug, Clone)]
pub struct CompileWorker {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub budget: CompileBudget,
}

impl CompileWorker {
    /// This very program, as the `superapp` binary runs it:
    /// `/proc/self/exe` where there is one (the running binary, even if a
    /// newer one was installed over it since, whose code would not fit
    /// this engine), else the path it was started from.
    pub fn this_program(args: &[&str], budget: CompileBudget) -> std::io::Result<CompileWorker> {
        let proc_exe = PathBuf::from("/proc/self/exe");
        let program = if proc_exe.exists() {
            proc_exe
        } else {
            std::env::current_exe()?
        };
        Ok(CompileWorker {
            program,
            args: args.iter().map(OsString::from).collect(),
            budget,
        })
    }

    /// Compile `bytes` in a child: wasmtime's serialized form of the
    /// component, or why there is none. The child stops itself at its
    /// budget; one that does not (stopped, stuck in the kernel) is killed
    /// a little after.
    pub(crate) fn compile(&self, bytes: &[u8]) -> Result<Vec<u8>, Uncompiled> {
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .arg("--time-ms")
            .arg(self.budget.time.as_millis().to_string())
            .arg("--memory-mib")
            .arg((self.budget.memory_bytes >> 20).max(1).to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Uncompiled::passing(format!("cannot start the compiler process: {e}")))?;
        let (Some(mut stdin), Some(mut stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Uncompiled::passing(
                "the compiler process has no pipes".into(),
            ));
        };
        let deadline = Instant::now() + self.budget.time + KILL_GRACE;
        let (status, output, message) = std::thread::scope(|s| {
            // Each pipe on its own thread: none fills up waiting for another.
            s.spawn(move || stdin.write_all(bytes));
            let message = s.spawn(move || {
                let mut text = Vec::new();
                let _ = stderr.take(4096).read_to_end(&mut text);
                String::from_utf8_lossy(&text).into_owned()
            });
            let output = s.spawn(move || {
                let mut output = Vec::new();
                stdout.read_to_end(&mut output).map(|_| output)
            });
            let status = loop {
                match child.try_wait() {
                    Ok(Some(status)) => break Ok(status),
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Ok(None) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break Err(Uncompiled::lasting(format!(
                            "compiling took longer than the host allows ({} s)",
                            self.budget.time.as_secs_f64()
                        )));
                    }
                    Err(e) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break Err(Uncompiled::passing(format!(
                            "the compiler process was lost: {e}"
                        )));
                    }
                }
            };
            let output = output.join().unwrap_or_else(|_| Ok(Vec::new()));
            (status, output, message.join().unwrap_or_default())
        });
        let status = status?;
        let output = output
            .map_err(|e| Uncompiled::passing(format!("cannot read the compiled component: {e}")))?;
        if status.success() {
            return Ok(output);
        }
        let message = message.trim();
        // Killed by a signal (no code): the machine's doing, not the
        // component's, as far as the host can tell.
        let lasting = status.code().is_some();
        let why = match status.code() {
            _ if !message.is_empty() => message.to_string(),
            Some(OUT_OF_TIME) => format!(
                "compiling took longer than the host allows ({} s)",
                self.budget.time.as_secs_f64()
            ),
            Some(OUT_OF_MEMORY) => format!(
                "compiling needed more memory than the host allows ({} MiB)",
                self.budget.memory_bytes >> 20
            ),
            _ => format!("the compiler process failed ({status})"),
        };
        Err(Uncompiled { why, lasting })
    }
}

/// How long past its budget a child that has not stopped itself is killed.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// The child's side: read a component from standard input, compile it
/// with the host's engine settings, and write wasmtime's serialized form to
/// standard output, all within `budget`, or exit with a message on
/// standard error (and code 3 for time, 4 for memory, 1 otherwise).
pub fn run_compile_worker(budget: CompileBudget) -> i32 {
    let started = Instant::now();
    // A host that is gone wants nothing compiled: its child is handed to
    // another parent, and stops.
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(10));
        if std::os::unix::process::parent_id() != parent {
            std::process::exit(1);
        }
        if started.elapsed() > budget.time {
            eprintln!(
                "compiling took longer than the host allows ({} s)",
                budget.time.as_secs_f64()
            );
            std::process::exit(OUT_OF_TIME);
        }
        if resident_bytes().is_some_and(|rss| rss > budget.memory_bytes) {
            eprintln!(
                "compiling needed more memory than the host allows ({} MiB)",
                budget.memory_bytes >> 20
            );
            std::process::exit(OUT_OF_MEMORY);
        }
    });
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin().take(MAX_INPUT + 1).read_to_end(&mut bytes) {
        eprintln!("cannot read the component: {e}");
        return 1;
    }
    if bytes.len() as u64 > MAX_INPUT {
        eprintln!("the component is larger than {MAX_INPUT} bytes");
        return 1;
    }
    let compiled = Engine::new(&crate::sandbox::Runtime::wasm_config())
        .and_then(|engine| engine.precompile_component(&bytes));
    match compiled {
        Ok(serialized) => {
            let mut out = std::io::stdout().lock();
            match out.write_all(&serialized).and_then(|()| out.flush()) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("cannot write the compiled component: {e}");
                    1
                }
            }
        }
        Err(e) => {
            eprintln!("{e:#}");
            1
        }
    }
}

/// This process's resident memory, where Linux tells it.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib << 10)
}

/// Who waits for a compile: a user launching an app that is approved
/// already, or a provider publishing (or a tool checking) a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    Launch,
    Publish,
}

/// One compile at a time (each may take its whole budget of memory), and
/// launches before publishes: a publisher sending one package after
/// another keeps users waiting for at most the compile under way, not for
/// every package queued before theirs.
#[derive(Debug, Default)]
pub(crate) struct CompileQueue {
    state: std::sync::Mutex<QueueState>,
    turn: std::sync::Condvar,
}

#[derive(Debug, Default)]
struct QueueState {
    busy: bool,
    /// Launches waiting for their turn.
    launches: usize,
    /// Everyone waiting for their turn.
    waiting: usize,
}

/// A compile's turn; the next one's begins when it is dropped.
pub(crate) struct Turn<'a>(&'a CompileQueue);

impl CompileQueue {
    fn state(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait for this compile's turn.
    pub fn enter(&self, urgency: Urgency) -> Turn<'_> {
        let mut state = self.state();
        let launch = urgency == Urgency::Launch;
        state.waiting += 1;
        if launch {
            state.launches += 1;
        }
        while state.busy || (!launch && state.launches > 0) {
            state = self.turn.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.waiting -= 1;
        if launch {
            state.launches -= 1;
        }
        state.busy = true;
        Turn(self)
    }

    /// How many wait for their turn, and how many of them are launches.
    #[cfg(test)]
    fn waiting(&self) -> (usize, usize) {
        let state = self.state();
        (state.waiting, state.launches)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.state().busy = false;
        self.0.turn.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A launch that comes after a queued publish still goes before it,
    /// once the compile under way is done; no two compiles run at once.
    #[test]
    fn launches_go_before_queued_publishes() {
        let queue = std::sync::Arc::new(CompileQueue::default());
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let first = queue.enter(Urgency::Publish);
        let wait_for = |want: (usize, usize)| {
            while queue.waiting() != want {
                std::thread::yield_now();
            }
        };
        let spawn = |name: &'static str, urgency: Urgency| {
            let (queue, order) = (queue.clone(), order.clone());
            std::thread::spawn(move || {
                let _turn = queue.enter(urgency);
                order.lock().unwrap().push(name);
            })
        };
        let publish = spawn("publish", Urgency::Publish);
        wait_for((1, 0));
        let launch = spawn("launch", Urgency::Launch);
        wait_for((2, 1));
        drop(first);
        publish.join().unwrap();
        launch.join().unwrap();
        assert_eq!(*order.lock().unwrap(), ["launch", "publish"]);
        assert_eq!(queue.waiting(), (0, 0));
        drop(queue.enter(Urgency::Publish));
    }
}
