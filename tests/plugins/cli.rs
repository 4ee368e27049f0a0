//! The provider's commands, run as a provider would: `superapp plugin
//! new/build/check/run`.

use std::path::{Path, PathBuf};

use crate::common::*;

#[test]
fn hello_checks_and_runs_an_event() {
    let hello = component("hello");
    let check = superapp()
        .args(["plugin", "check"])
        .arg(&hello)
        .arg("--manifest")
        .arg(manifest("hello"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    let report = stdout(&check);
    assert!(
        report.starts_with("ok: dev.superapp.hello@0.1.0"),
        "{report}"
    );
    for cap in ["log", "identity", "storage"] {
        assert!(
            report
                .lines()
                .any(|l| l.trim_start().starts_with(cap) && l.contains("imported")),
            "{report}"
        );
    }

    let run = superapp()
        .args(["plugin", "run"])
        .arg(&hello)
        .arg("--manifest")
        .arg(manifest("hello"))
        .args(["--event", "save-name", "--payload", r#"{"name":"Ada"}"#])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    let view: serde_json::Value = serde_json::from_str(&stdout(&run)).expect("the view is JSON");
    assert_eq!(view["title"], "Hello");
    assert_eq!(view["body"]["children"][0]["text"], "Hello, Ada!");
}

#[test]
fn check_json_reports_declared_capabilities_against_imports() {
    let out = superapp()
        .args(["plugin", "check", "--json"])
        .arg(component("testing/probe"))
        .arg("--manifest")
        .arg(manifest("testing/probe"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["ok"], true);
    let caps = report["imports"]["capabilities"].as_array().unwrap();
    assert_eq!(caps.len(), 11);
    let payments = caps.iter().find(|c| c["name"] == "payments").unwrap();
    assert_eq!(payments["consent"], "every-use");
    assert_eq!(payments["imported"], true);
    assert_eq!(payments["reason"], "Probe.");
}

#[test]
fn undeclared_import_is_rejected_by_check_and_by_run() {
    let sneaky = component("testing/undeclared-payments");
    for verb in ["check", "run"] {
        let out = superapp()
            .args(["plugin", verb])
            .arg(&sneaky)
            .arg("--manifest")
            .arg(manifest("testing/undeclared-payments"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{verb}");
        let err = stderr(&out);
        assert!(
            err.contains("superapp:plugin/payments@0.2.2")
                && err.contains("[capabilities.payments]"),
            "{verb}: {err}"
        );
        assert!(stdout(&out).is_empty(), "{verb} printed a view");
    }
}

/// `plugin run` sends `http` through the same egress as a server: a
/// backend on loopback over plain http is refused until the provider allows
/// exactly that, and then answers.
#[test]
fn plugin_run_reaches_a_local_backend_only_when_allowed() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            let asserted = String::from_utf8_lossy(&buf[..n])
                .to_ascii_lowercase()
                .contains("superapp-assertion: ");
            let body = format!("asserted={asserted}");
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("plugin.toml");
    let text = std::fs::read_to_string(manifest("testing/probe"))
        .unwrap()
        .replace(
            "origins = [\"https://backend.probe.test\"]",
            &format!("origins = [\"http://localhost:{port}\"]"),
        );
    std::fs::write(&local, text).unwrap();
    let url = format!("\"http://localhost:{port}/slots\"");
    let run = |flags: &[String]| {
        let out = superapp()
            .args(["plugin", "run"])
            .arg(component("testing/probe"))
            .arg("--manifest")
            .arg(&local)
            .args(["--event", "http", "--payload", &url])
            .args(flags)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let refused = run(&[]);
    assert!(
        refused.contains("err: denied") && refused.contains("plain http"),
        "{refused}"
    );
    let refused = run(&["--http-plain".into(), format!("localhost:{port}")]);
    assert!(refused.contains("loopback"), "{refused}");
    let allowed = run(&[
        "--http-plain".into(),
        format!("localhost:{port}"),
        "--http-private-host".into(),
        "localhost".into(),
    ]);
    assert!(allowed.contains("200 asserted=true"), "{allowed}");
}

/// A component built against contract 0.2.0, before `http` was added,
/// still passes the check and runs: later 0.2 versions only add.
#[test]
fn a_component_for_the_previous_contract_version_still_runs() {
    let dir = repo().join("tests/fixtures/contract-0.2.0/hello");
    let component = dir.join("hello.wasm");
    let manifest = dir.join("plugin.toml");
    let out = superapp()
        .args(["plugin", "check", "--json"])
        .arg(&component)
        .arg("--manifest")
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = superapp()
        .args(["plugin", "run"])
        .arg(&component)
        .arg("--manifest")
        .arg(&manifest)
        .args(["--event", "save-name", "--payload", r#"{"name":"Ada"}"#])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Hello, Ada!"), "{}", stdout(&out));
}

#[test]
fn manifest_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(manifest("hello")).unwrap();
    let cases = [
        (
            original.replace("time-ms = 500", "time-ms = 500\ncpu = 3"),
            "cpu",
        ),
        (
            original.replace("version = \"0.1.0\"", "version = \"one\""),
            "version",
        ),
        (
            original.replace("[capabilities.log]", "[capabilities.camera]"),
            "capabilities.camera",
        ),
        (
            original.replace(
                "reason = \"Remembers your name and how often you visited.\"",
                "",
            ),
            "reason",
        ),
    ];
    for (text, key) in cases {
        let path = dir.path().join("plugin.toml");
        std::fs::write(&path, &text).unwrap();
        let out = superapp()
            .args(["plugin", "check"])
            .arg(component("hello"))
            .arg("--manifest")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains(key),
            "expected `{key}` in: {}",
            stderr(&out)
        );
    }
}

#[test]
fn run_reports_limits_and_bad_input_with_nonzero_exit() {
    let out = superapp()
        .args(["plugin", "run"])
        .arg(component("testing/memory-bomb"))
        .arg("--manifest")
        .arg(manifest("testing/memory-bomb"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("error[limit-exceeded]") && stderr(&out).contains("memory limit"),
        "{}",
        stderr(&out)
    );

    // Bad input is named, briefly: a long payload is not echoed whole.
    let long = format!("{{not json {}", "x".repeat(60_000));
    for (args, says) in [
        (
            vec!["--event", "save-name", "--payload", long.as_str()],
            "--payload is not valid JSON",
        ),
        (
            vec!["--http-plain", "http://localhost:8081"],
            "is not HOST:PORT",
        ),
        (vec!["--http-plain", "localhost"], "is not HOST:PORT"),
        (vec!["--http-plain", "localhost:0"], "is not HOST:PORT"),
    ] {
        let bad = superapp()
            .args(["plugin", "run"])
            .arg(component("hello"))
            .arg("--manifest")
            .arg(manifest("hello"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(bad.status.code(), Some(1), "{args:?}");
        let err = stderr(&bad);
        assert!(err.contains(says) && err.len() < 2_000, "{args:?}: {err}");
    }

    // Only what users are asked about can be refused.
    let unaskable = superapp()
        .args(["plugin", "run"])
        .arg(component("hello"))
        .arg("--manifest")
        .arg(manifest("hello"))
        .args(["--deny", "storage"])
        .output()
        .unwrap();
    assert_eq!(unaskable.status.code(), Some(1));
    assert!(
        stderr(&unaskable).contains("users are not asked about storage"),
        "{}",
        stderr(&unaskable)
    );

    let missing = superapp()
        .args(["plugin", "run", "/nonexistent.wasm", "--manifest"])
        .arg(manifest("hello"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("/nonexistent.wasm"),
        "{}",
        stderr(&missing)
    );
}

/// A rebuild with nothing changed writes the same component to the same
/// place (atomically: a test reading it meanwhile sees one or the other).
#[test]
fn rebuild_without_changes_writes_the_same_component() {
    let first = component("hello");
    let before = std::fs::read(&first).unwrap();
    let out = superapp()
        .args(["plugin", "build", "--quiet"])
        .arg(plugin_dir("hello"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let again = PathBuf::from(stdout(&out).lines().last().unwrap().trim());
    assert_eq!(again, first);
    assert!(
        std::fs::read(&again).unwrap() == before,
        "another component"
    );
}

#[test]
fn build_refuses_an_unknown_toolchain_choice() {
    let out = superapp()
        .args(["plugin", "build", "--quiet"])
        .arg(plugin_dir("hello"))
        .env("SUPERAPP_WASM_TOOLCHAIN", "gcc")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("SUPERAPP_WASM_TOOLCHAIN must be `rustup` or `debian`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_feature_name_cargo_would_not_take_is_refused_before_building() {
    let out = superapp()
        .args([
            "plugin",
            "build",
            "--quiet",
            "--features",
            "backend,--offline",
        ])
        .arg(plugin_dir("hello"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("`--offline` is not a cargo feature name"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_demo_backend_must_listen_on_loopback_with_a_port() {
    let dir = tempfile::tempdir().unwrap();
    for listen in ["0.0.0.0:8081", "127.0.0.1:0"] {
        let out = superapp()
            .args([
                "serve",
                "--demo",
                "--hospital-backend",
                "--hospital-backend-listen",
                listen,
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{listen}");
        assert!(
            stderr(&out).contains("must be a loopback address with a port"),
            "{listen}: {}",
            stderr(&out)
        );
    }
    assert!(
        !dir.path().join("demo-apps").exists(),
        "refused before anything was built"
    );
}

/// Where a provider's crate, the SDK and cargo's home sit leaves no trace
/// in the component, and the same source with the same SDK builds to the
/// same bytes in another folder (so a component can be rebuilt from its
/// source and compared).
#[test]
fn a_plugin_builds_to_the_same_bytes_wherever_it_sits() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut built = Vec::new();
    for (at, out) in [
        ("a", "first.wasm"),
        ("somewhere/much/deeper", "second.wasm"),
    ] {
        let root = dir.path().join(at);
        let crate_dir = root.join("clinic");
        let new = superapp()
            .args(["plugin", "new", "clinic", "--dir"])
            .arg(&crate_dir)
            .env("XDG_DATA_HOME", &data)
            .output()
            .unwrap();
        assert!(new.status.success(), "{}", stderr(&new));
        let out = dir.path().join(out);
        // The bundled plugins' target directory, so std is built once.
        let build = superapp()
            .args(["plugin", "build", "--quiet", "--out"])
            .arg(&out)
            .arg(&crate_dir)
            .env("CARGO_TARGET_DIR", repo().join("plugins/target"))
            .output()
            .unwrap();
        assert!(build.status.success(), "{}", stderr(&build));
        built.push(std::fs::read(&out).unwrap());
    }
    let contains = |haystack: &[u8], needle: &str| {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    };
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    for (i, bytes) in built.iter().enumerate() {
        for path in [dir.path().display().to_string(), home.clone()] {
            assert!(!contains(bytes, &path), "build {i} names {path}");
        }
        // Panic locations are kept, relative to their package.
        assert!(contains(bytes, "src/"), "build {i} has no source locations");
    }
    assert!(
        built[0] == built[1],
        "two folders, two different components"
    );

    // `--out` replaces a component (never skipping the write because the
    // file there is newer), and nothing else: not a source file, not a
    // directory.
    let crate_dir = dir.path().join("a/clinic");
    let build_to = |out: &Path| {
        superapp()
            .args(["plugin", "build", "--quiet", "--out"])
            .arg(out)
            .arg(&crate_dir)
            .env("CARGO_TARGET_DIR", repo().join("plugins/target"))
            .output()
            .unwrap()
    };
    let stale = dir.path().join("stale.wasm");
    let mut other = built[0][..8].to_vec();
    other.extend_from_slice(b"another component's bytes");
    std::fs::write(&stale, &other).unwrap();
    let out = build_to(&stale);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        std::fs::read(&stale).unwrap() == built[0],
        "the stale file stayed"
    );
    let source = crate_dir.join("src/lib.rs");
    let before = std::fs::read(&source).unwrap();
    for (target, says) in [
        (
            source.clone(),
            "is not a WebAssembly component; it was left as it is",
        ),
        (dir.path().join("a"), "is a directory"),
    ] {
        let out = build_to(&target);
        assert_eq!(out.status.code(), Some(1), "{}", target.display());
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
    }
    assert_eq!(
        std::fs::read(&source).unwrap(),
        before,
        "the source was kept"
    );

    // An auditor rebuilds a package from its source: the same source in
    // another folder reproduces it; a changed line or manifest does not.
    let package = dir.path().join("clinic.pkg");
    let packed = superapp()
        .args(["plugin", "pack", "--quiet", "--out"])
        .arg(&package)
        .arg("--component")
        .arg(dir.path().join("first.wasm"))
        .arg(&crate_dir)
        .output()
        .unwrap();
    assert!(packed.status.success(), "{}", stderr(&packed));
    let elsewhere = dir.path().join("somewhere/much/deeper/clinic");
    let rebuild = |json: bool| {
        superapp()
            .args(["audit", "rebuild", "--source"])
            .arg(&elsewhere)
            .args(json.then_some("--json"))
            .arg(&package)
            .env("CARGO_TARGET_DIR", repo().join("plugins/target"))
            .output()
            .unwrap()
    };
    let same = rebuild(false);
    assert!(same.status.success(), "{}", stderr(&same));
    assert!(
        stdout(&same).contains("component: the same as what"),
        "{}",
        stdout(&same)
    );
    let lib = elsewhere.join("src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    assert!(text.contains("pressed"), "{text}");
    std::fs::write(&lib, text.replace("pressed", "pushed")).unwrap();
    let manifest = elsewhere.join("plugin.toml");
    let declared = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, format!("{declared}\n")).unwrap();
    let changed = rebuild(true);
    assert_eq!(changed.status.code(), Some(1), "{}", stderr(&changed));
    let report: serde_json::Value = serde_json::from_str(&stdout(&changed)).unwrap();
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["component"]["same"], false, "{report}");
    assert_eq!(report["manifest"]["same"], false, "{report}");
    assert_eq!(
        report["component"]["package_sha256"],
        superapp_core::sha256_hex(&built[0]).as_str(),
        "{report}"
    );
}

#[test]
fn new_plugin_builds_and_runs_as_generated() {
    let dir = tempfile::tempdir().unwrap();
    let crate_dir = dir.path().join("my-clinic");
    // The SDK comes from the binary, installed per user: nothing of this
    // checkout's paths ends up in the provider's project.
    let data = dir.path().join("data");
    let new = superapp()
        .args(["plugin", "new", "my-clinic", "--dir"])
        .arg(&crate_dir)
        .env("XDG_DATA_HOME", &data)
        .output()
        .unwrap();
    assert!(new.status.success(), "{}", stderr(&new));
    let sdk = data.join("superapp/sdk").join(superapp_core::VERSION);
    let cargo_toml = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
    assert!(
        cargo_toml.contains(&sdk.display().to_string()),
        "{cargo_toml}"
    );
    assert!(
        !cargo_toml.contains(&repo().display().to_string()),
        "{cargo_toml}"
    );
    for file in ["Cargo.toml", "src/lib.rs", "wit/world.wit"] {
        assert!(sdk.join(file).exists(), "{file} installed");
    }
    // Reuse the bundled plugins' target directory so std is built once.
    let build = superapp()
        .args(["plugin", "build", "--quiet"])
        .arg(&crate_dir)
        .env("CARGO_TARGET_DIR", repo().join("plugins/target"))
        .output()
        .unwrap();
    assert!(build.status.success(), "{}", stderr(&build));
    let component = PathBuf::from(stdout(&build).lines().last().unwrap().trim());
    let run = superapp()
        .args(["plugin", "run"])
        .arg(&component)
        .arg("--manifest")
        .arg(crate_dir.join("plugin.toml"))
        .args(["--event", "press"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        stdout(&run).contains("The button was pressed 1 times."),
        "{}",
        stdout(&run)
    );

    let again = superapp()
        .args(["plugin", "new", "my-clinic", "--dir"])
        .arg(&crate_dir)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("already exists"));
    let bad = superapp()
        .args(["plugin", "new", "My Clinic"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("not a valid plugin name"));
    // Nor a crate Cargo could not tell from the SDK's, nor a publisher the
    // registry would refuse; nothing is made for either.
    for (args, says) in [
        (&["superapp-sdk"][..], "crate every plugin builds with"),
        (&["serde-json"][..], "crate every plugin builds with"),
        (
            &["clinic", "--publisher", "City\u{202E}Hospital"][..],
            "--publisher",
        ),
        (&["clinic", "--publisher", ""][..], "--publisher"),
    ] {
        let refused = superapp()
            .args(["plugin", "new"])
            .args(args)
            .current_dir(dir.path())
            .env("XDG_DATA_HOME", &data)
            .output()
            .unwrap();
        assert_eq!(refused.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&refused).contains(says),
            "{args:?}: {}",
            stderr(&refused)
        );
        assert!(!dir.path().join(args[0]).exists(), "{args:?}");
    }
}

#[test]
fn a_closed_stdout_ends_a_command_quietly_not_with_a_panic() {
    // `superapp plugin check … --json | head -0`: the reader is gone before
    // the report is written.
    let mut child = superapp()
        .args(["plugin", "check"])
        .arg(component("hello"))
        .arg("--manifest")
        .arg(manifest("hello"))
        .arg("--json")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(141), "{err}");
}

/// A component that would take the compiler minutes (or hours) is refused
/// once it runs past the compile budget, in time or in memory, with the
/// reason: the tools compile in a worker process that stops itself.
#[test]
fn a_component_past_the_compile_budget_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = dir.path().join("bomb.wasm");
    std::fs::write(&bomb, crate::bombs::nested_loops(300)).unwrap();
    let check = |env: &[(&str, &str)]| {
        superapp()
            .args(["plugin", "check"])
            .arg(&bomb)
            .arg("--manifest")
            .arg(manifest("hello"))
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    let slow = check(&[("SUPERAPP_COMPILE_TIMEOUT_SECS", "1")]);
    assert!(!slow.status.success());
    let report = format!("{}{}", stdout(&slow), stderr(&slow));
    assert!(
        report.contains("compiling took longer than the host allows (1 s)"),
        "{report}"
    );
    let big = check(&[
        ("SUPERAPP_COMPILE_TIMEOUT_SECS", "600"),
        ("SUPERAPP_COMPILE_MEMORY_MIB", "64"),
    ]);
    assert!(!big.status.success());
    let report = format!("{}{}", stdout(&big), stderr(&big));
    assert!(
        report.contains("more memory than the host allows (64 MiB)"),
        "{report}"
    );
    let bad = check(&[("SUPERAPP_COMPILE_TIMEOUT_SECS", "soon")]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("SUPERAPP_COMPILE_TIMEOUT_SECS"),
        "{}",
        stderr(&bad)
    );
}
