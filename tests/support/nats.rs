//! A real NATS server for tests and benches: Debian's `nats-server`
//! (`scripts/service-deps.sh` installs it) on a free loopback port, with
//! JetStream on a temporary directory. Like the PostgreSQL harness, it runs
//! under a shell watcher that stops it and removes its directory once the
//! test process is gone.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub struct Nats {
    pub port: u16,
    dir: PathBuf,
    watcher: Child,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn program() -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin"] {
        let p = PathBuf::from(dir).join("nats-server");
        if p.exists() {
            return p;
        }
    }
    panic!(
        "nats-server was not found: run scripts/service-deps.sh (Debian's `nats-server` package)"
    )
}

impl Nats {
    /// A new server with JetStream, accepting connections.
    pub fn start() -> Nats {
        Nats::start_with(true)
    }

    /// A new server, with JetStream or without.
    pub fn start_with(jetstream: bool) -> Nats {
        let dir = tempfile::Builder::new()
            .prefix("superapp-nats-")
            .tempdir()
            .unwrap()
            .keep();
        let port = free_port();
        let script = r#"
            "$@" > "$DIR/log" 2>&1 &
            nats=$!
            echo "$nats" > "$DIR/pid"
            while kill -0 "$PARENT" 2>/dev/null && kill -0 "$nats" 2>/dev/null; do sleep 0.2; done
            kill -TERM "$nats" 2>/dev/null
            wait "$nats"
            rm -rf "$DIR"
        "#;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .arg("watcher")
            .arg(program())
            .args(["-a", "127.0.0.1", "-p", &port.to_string()]);
        if jetstream {
            cmd.arg("-js").arg("-sd").arg(dir.join("jetstream"));
        }
        let watcher = cmd
            .env("DIR", &dir)
            .env("PARENT", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let nats = Nats { port, dir, watcher };
        nats.wait_ready();
        nats
    }

    fn wait_ready(&self) {
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if started.elapsed() > Duration::from_secs(20) {
                let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
                panic!("nats-server did not start within 20 s:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        // Stop the server; the watcher then cleans up and exits.
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pid")) {
            let _ = Command::new("kill").args(["-TERM", pid.trim()]).status();
        }
        let _ = self.watcher.wait();
    }
}

/// One server for every test of this process: tests keep apart by using
/// their own database, and so their own deployment's namespace on the bus.
pub fn shared() -> &'static Nats {
    static SERVER: OnceLock<Nats> = OnceLock::new();
    SERVER.get_or_init(Nats::start)
}
