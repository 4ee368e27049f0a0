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
    /// component, or why there is none.
    pub(crate) fn compile(&self, bytes: &[u8]) -> Result<Vec<u8>, String> {
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
            .map_err(|e| format!("cannot start the compiler process: {e}"))?;
        let (Some(mut stdin), Some(mut stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err("the compiler process has no pipes".into());
        };
        let (output, message) = std::thread::scope(|s| {
            // Written while the output is read: neither pipe fills up
            // waiting for the other.
            s.spawn(move || stdin.write_all(bytes));
            let message = s.spawn(move || {
                let mut text = String::new();
                let _ = stderr.take(4096).read_to_string(&mut text);
                text
            });
            let mut output = Vec::new();
            let read = stdout.read_to_end(&mut output);
            (read.map(|_| output), message.join().unwrap_or_default())
        });
        let status = child
            .wait()
            .map_err(|e| format!("the compiler process was lost: {e}"))?;
        let output = output.map_err(|e| format!("cannot read the compiled component: {e}"))?;
        if status.success() {
            return Ok(output);
        }
        let message = message.trim();
        Err(match status.code() {
            Some(OUT_OF_TIME) | Some(OUT_OF_MEMORY) => message.to_string(),
            _ if !message.is_empty() => message.to_string(),
            _ => format!("the compiler process failed ({status})"),
        })
    }
}

/// The child's side: read a component from standard input, compile it
/// with the host's engine settings, and write wasmtime's serialized form to
/// standard output, all within `budget`, or exit with a message on
/// standard error (and code 3 for time, 4 for memory, 1 otherwise).
pub fn run_compile_worker(budget: CompileBudget) -> i32 {
    let started = Instant::now();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(10));
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
