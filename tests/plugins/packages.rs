//! Packages through the real CLI: keys, reproducible packing, signing, and
//! what `audit inspect` tells an auditor, including after tampering and for
//! files that are not whole packages.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;

use crate::common::{component, plugin_dir, stderr, stdout, superapp};

fn generate_key(path: &Path) -> String {
    let out = superapp()
        .args(["keys", "generate", "--out"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_string()
}

/// Pack `dir`'s plugin.toml with hello's component into `out`.
fn pack(dir: &Path, component: &Path, out: &Path) {
    let o = superapp()
        .args(["plugin", "pack"])
        .arg(dir)
        .arg("--component")
        .arg(component)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `audit inspect --json FILE`: whether it passed, and the report.
fn inspect(file: &Path) -> (bool, Value) {
    let out = superapp()
        .args(["audit", "inspect", "--json"])
        .arg(file)
        .output()
        .unwrap();
    let report = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("{e}: {} {}", stdout(&out), stderr(&out)));
    (out.status.success(), report)
}

#[test]
fn keys_generate_writes_a_private_pem_and_never_overwrites_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("publisher.pem");
    let public = generate_key(&path);
    assert_eq!(public.len(), 43, "{public}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----"));
    let before = std::fs::read(&path).unwrap();

    let again = superapp()
        .args(["keys", "generate", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("never overwritten"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);

    let shown = superapp()
        .args(["keys", "public"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(stdout(&shown).trim(), public);
    let folder = superapp()
        .args(["keys", "public"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(folder.status.code(), Some(1));
    assert!(
        stderr(&folder).contains("a directory, not a key file"),
        "{}",
        stderr(&folder)
    );
}

/// `plugin pack` packs only a WebAssembly component, and says once why it
/// cannot write where it was told to.
/// `--out` naming a pipe (or `/dev/stdout`, `/dev/null`) writes into it:
/// the package is streamed, and the pipe is still a pipe afterwards, not
/// replaced by a file (as root, renaming over `/dev/null` would replace
/// the device for the whole machine).
#[test]
fn pack_into_a_pipe_writes_through_it_and_leaves_it_a_pipe() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    pack(&plugin_dir("hello"), &component("hello"), &fifo);
    let still = std::fs::symlink_metadata(&fifo).unwrap().file_type();
    assert!(still.is_fifo(), "the pipe was replaced: {still:?}");
    let streamed = reader.join().unwrap();
    let file = dir.path().join("hello.pkg");
    pack(&plugin_dir("hello"), &component("hello"), &file);
    assert_eq!(
        streamed,
        std::fs::read(&file).unwrap(),
        "packing is reproducible"
    );
}

#[test]
fn pack_refuses_what_is_not_a_component_and_names_a_write_error_once() {
    let dir = tempfile::tempdir().unwrap();
    let random = dir.path().join("random.wasm");
    std::fs::write(&random, [7u8; 3000]).unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let out = dir.path().join("out.pkg");
    for (file, says) in [
        (&random, "is not a WebAssembly component"),
        (&core, "a core WebAssembly module, not a component"),
    ] {
        let packed = superapp()
            .args(["plugin", "pack", "--quiet", "--out"])
            .arg(&out)
            .arg("--component")
            .arg(file)
            .arg(plugin_dir("hello"))
            .output()
            .unwrap();
        assert_eq!(packed.status.code(), Some(1));
        assert!(stderr(&packed).contains(says), "{}", stderr(&packed));
        assert!(!out.exists(), "nothing is written");
    }
    let into_folder = superapp()
        .args(["plugin", "pack", "--quiet", "--out"])
        .arg(dir.path())
        .arg("--component")
        .arg(component("hello"))
        .arg(plugin_dir("hello"))
        .output()
        .unwrap();
    assert_eq!(into_folder.status.code(), Some(1));
    let err = stderr(&into_folder);
    assert_eq!(err.matches("is a directory").count(), 1, "{err}");
}

/// `plugin pack` and `plugin sign` replace a package, never another file:
/// a key given as `--out` by mistake stays as it was.
#[test]
fn pack_and_sign_replace_a_package_but_never_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("publisher.pem");
    generate_key(&key);
    let key_before = std::fs::read(&key).unwrap();
    let pkg = dir.path().join("hello.pkg");
    pack(&plugin_dir("hello"), &component("hello"), &pkg);
    pack(&plugin_dir("hello"), &component("hello"), &pkg);
    let packed = superapp()
        .args(["plugin", "pack", "--quiet", "--out"])
        .arg(&key)
        .arg("--component")
        .arg(component("hello"))
        .arg(plugin_dir("hello"))
        .output()
        .unwrap();
    let signed = superapp()
        .args(["plugin", "sign"])
        .arg(&pkg)
        .arg("--key")
        .arg(&key)
        .arg("--out")
        .arg(&key)
        .output()
        .unwrap();
    for refused in [packed, signed] {
        assert_eq!(refused.status.code(), Some(1));
        assert!(
            stderr(&refused).contains("is not a superapp package; it was left as it is"),
            "{}",
            stderr(&refused)
        );
    }
    assert_eq!(std::fs::read(&key).unwrap(), key_before);
    // Over the package itself (the default), it signs.
    let signed = superapp()
        .args(["plugin", "sign"])
        .arg(&pkg)
        .arg("--key")
        .arg(&key)
        .output()
        .unwrap();
    assert!(signed.status.success(), "{}", stderr(&signed));
}

#[test]
fn pack_is_byte_for_byte_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let built = component("hello");
    let (a, b, c) = (
        dir.path().join("a.pkg"),
        dir.path().join("b.pkg"),
        dir.path().join("c.pkg"),
    );
    pack(&plugin_dir("hello"), &built, &a);
    pack(&plugin_dir("hello"), &built, &b);
    // Without --component, pack builds the crate itself (a cached no-op).
    let o = superapp()
        .args(["plugin", "pack", "--quiet"])
        .arg(plugin_dir("hello"))
        .arg("--out")
        .arg(&c)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(&a).unwrap();
    assert_eq!(bytes, std::fs::read(&b).unwrap());
    assert_eq!(bytes, std::fs::read(&c).unwrap());
    assert!(bytes.len().is_multiple_of(512));
}

#[test]
fn a_signed_package_inspects_valid_and_any_tampering_invalidates_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("publisher.pem");
    let public = generate_key(&key);
    let pkg = dir.path().join("hello.pkg");
    pack(&plugin_dir("hello"), &component("hello"), &pkg);
    let (ok, report) = inspect(&pkg);
    assert!(!ok, "an unsigned package is an error for an auditor");
    assert_eq!(report["signature"]["status"], "unsigned");
    let digest = report["digest"].clone();

    let signed = superapp()
        .args(["plugin", "sign"])
        .arg(&pkg)
        .arg("--key")
        .arg(&key)
        .output()
        .unwrap();
    assert!(signed.status.success(), "{}", stderr(&signed));
    assert_eq!(stdout(&signed).trim(), digest.as_str().unwrap());
    let (ok, report) = inspect(&pkg);
    assert!(ok, "{report}");
    assert_eq!(report["signature"]["status"], "valid");
    assert_eq!(report["signature"]["public_key"], public.as_str());
    assert_eq!(report["digest"], digest, "signing keeps the identity");
    assert_eq!(report["app"], "dev.superapp.hello");
    assert_eq!(report["publisher"], "superapp project");
    assert_eq!(report["limits"]["time_ms"], 500);
    let storage = report["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "storage")
        .unwrap();
    assert_eq!(
        storage["reason"],
        "Remembers your name and how often you visited."
    );
    assert_eq!(storage["imported"], true);
    assert_eq!(report["errors"], serde_json::json!([]));

    // Change one byte of the manifest (the app's name), keeping the size.
    let bytes = std::fs::read(&pkg).unwrap();
    let at = bytes
        .windows(14)
        .position(|w| w == b"name = \"Hello\"")
        .unwrap();
    let mut renamed = bytes.clone();
    renamed[at + 8] = b'J';
    let tampered = dir.path().join("renamed.pkg");
    std::fs::write(&tampered, &renamed).unwrap();
    let (ok, report) = inspect(&tampered);
    assert!(!ok);
    assert_eq!(report["name"], "Jello");
    assert_eq!(report["signature"]["status"], "invalid");
    let detail = report["signature"]["detail"].as_str().unwrap();
    assert!(detail.contains("plugin.toml was changed"), "{detail}");

    // Change one byte inside the component.
    let wasm = bytes.windows(4).position(|w| w == b"\0asm").unwrap();
    let mut patched = bytes;
    patched[wasm + 200] ^= 0x01;
    let tampered = dir.path().join("patched.pkg");
    std::fs::write(&tampered, &patched).unwrap();
    let (ok, report) = inspect(&tampered);
    assert!(!ok);
    let detail = report["signature"]["detail"].as_str().unwrap();
    assert!(detail.contains("component was changed"), "{detail}");

    // Comparing against it says the comparison is worthless, and exits 1.
    let diff = superapp()
        .args(["audit", "diff"])
        .arg(&pkg)
        .arg(&tampered)
        .output()
        .unwrap();
    assert!(!diff.status.success());
    assert!(stdout(&diff).contains("ERROR new"), "{}", stdout(&diff));
    // An auditor's tool signs no approval of it, and writes nothing.
    let decision = dir.path().join("decision.json");
    let approve = |package: &Path| {
        superapp()
            .args(["audit", "approve"])
            .arg(package)
            .arg("--key")
            .arg(&key)
            .args(["--note", "Looked at it.", "--out"])
            .arg(&decision)
            .output()
            .unwrap()
    };
    let refused = approve(&tampered);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("not approving"),
        "{}",
        stderr(&refused)
    );
    assert!(!decision.exists());
    // The sound package is approved into the file, which is then never
    // replaced.
    let signed = approve(&pkg);
    assert!(signed.status.success(), "{}", stderr(&signed));
    let first = std::fs::read(&decision).unwrap();
    let again = approve(&pkg);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("exists already"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read(&decision).unwrap(), first);
}

#[test]
fn inspect_names_undeclared_imports_as_errors_and_unused_declarations_as_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    generate_key(&key);

    let pkg = dir.path().join("undeclared.pkg");
    crate::common::made_elsewhere(
        &plugin_dir("testing/undeclared-payments").join("plugin.toml"),
        &std::fs::read(component("testing/undeclared-payments")).unwrap(),
        &pkg,
        Some(&key),
    );
    let sign = |file: &Path| {
        let o = superapp()
            .args(["plugin", "sign"])
            .arg(file)
            .arg("--key")
            .arg(&key)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    };
    let (ok, report) = inspect(&pkg);
    assert!(!ok);
    assert_eq!(report["signature"]["status"], "valid");
    assert!(report["imports"]
        .as_array()
        .unwrap()
        .contains(&"payments".into()));
    let errors = report["errors"].to_string();
    assert!(errors.contains("[capabilities.payments]"), "{errors}");

    // hello's manifest with one more capability than the component uses.
    let extra = dir.path().join("extra");
    std::fs::create_dir(&extra).unwrap();
    let manifest = std::fs::read_to_string(plugin_dir("hello").join("plugin.toml")).unwrap();
    std::fs::write(
        extra.join("plugin.toml"),
        format!("{manifest}\n[capabilities.notify]\nreason = \"News.\"\n"),
    )
    .unwrap();
    let pkg = dir.path().join("extra.pkg");
    pack(&extra, &component("hello"), &pkg);
    sign(&pkg);
    let (ok, report) = inspect(&pkg);
    assert!(ok, "an unused declaration is only a warning: {report}");
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains("`notify` is declared"), "{warnings}");
}

#[test]
fn cut_foreign_and_oversized_files_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    generate_key(&key);
    let pkg = dir.path().join("hello.pkg");
    pack(&plugin_dir("hello"), &component("hello"), &pkg);
    let bytes = std::fs::read(&pkg).unwrap();

    let cut = dir.path().join("cut.pkg");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let foreign = dir.path().join("foreign.pkg");
    std::fs::write(&foreign, b"PK\x03\x04 this is a zip file").unwrap();
    let huge = dir.path().join("huge.pkg");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(33 << 20)
        .unwrap();
    for (file, says) in [
        (&cut, "cut off"),
        (&foreign, "not a superapp package"),
        (&huge, "the limit is"),
    ] {
        let before = std::fs::read(file).unwrap();
        for args in [vec!["audit", "inspect"], vec!["plugin", "sign"]] {
            let mut cmd = superapp();
            cmd.args(&args).arg(file);
            if args[0] == "plugin" {
                cmd.arg("--key").arg(&key);
            }
            let out = cmd.output().unwrap();
            assert_eq!(out.status.code(), Some(1), "{args:?} {}", file.display());
            assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        }
        assert_eq!(std::fs::read(file).unwrap(), before, "left untouched");
    }
    // A file without end (a device, a pipe from a download) is read up to
    // the limit, not until memory runs out.
    let hello = plugin_dir("hello").join("plugin.toml");
    let hello = hello.to_str().unwrap();
    let hello_component = component("hello");
    for args in [
        vec!["audit", "inspect", "/dev/zero"],
        vec!["plugin", "check", "/dev/zero", "--manifest", hello],
        vec![
            "plugin",
            "check",
            hello_component.to_str().unwrap(),
            "--manifest",
            "/dev/zero",
        ],
    ] {
        let out = superapp().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&out).contains("more than") && stderr(&out).contains("the limit"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    // A component that is not there, or is no WebAssembly at all, is
    // named as such in a line, whatever state the manifest is in.
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\x7fELF\x02\x01\x01".repeat(700)).unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let junk = junk.to_str().unwrap();
    let core = core.to_str().unwrap();
    for (args, says) in [
        (
            vec!["plugin", "check", "/nonexistent/app.wasm"],
            "/nonexistent/app.wasm: No such file",
        ),
        (
            vec!["plugin", "check", junk, "--manifest", hello],
            "junk.wasm is not a WebAssembly component",
        ),
        (
            vec!["plugin", "run", junk, "--manifest", hello],
            "junk.wasm is not a WebAssembly component",
        ),
        (
            vec!["plugin", "check", core, "--manifest", hello],
            "core.wasm is a core WebAssembly module",
        ),
    ] {
        let out = superapp()
            .args(&args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).lines().count() <= 2,
            "{args:?}: {}",
            stderr(&out)
        );
    }
    // An error that quotes the file quotes a bounded part of it.
    let manifest = dir.path().join("plugin.toml");
    let text = std::fs::read_to_string(hello).unwrap();
    let long = format!("description = [\"{}\"]", "x".repeat(50_000));
    std::fs::write(
        &manifest,
        text.replace(
            "description = \"Greets you by name and counts your visits.\"",
            &long,
        ),
    )
    .unwrap();
    let out = crate::common::check_hello_with(&manifest);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("xxxx"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("expected a string"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).len() < 8192, "{} bytes", stderr(&out).len());
}

#[test]
fn diff_marks_what_a_new_version_asks_for_as_an_escalation() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.pkg");
    pack(&plugin_dir("hello"), &component("hello"), &old);

    let next = dir.path().join("next");
    std::fs::create_dir(&next).unwrap();
    let manifest = std::fs::read_to_string(plugin_dir("hello").join("plugin.toml"))
        .unwrap()
        .replace("version = \"0.1.0\"", "version = \"0.2.0\"")
        .replace("memory-mib = 16", "memory-mib = 32")
        .replace("Remembers your name", "Keeps your name")
        .replace(
            "[limits]",
            "[capabilities.notify]\nreason = \"News.\"\n\n[limits]",
        );
    std::fs::write(next.join("plugin.toml"), manifest).unwrap();
    let new = dir.path().join("new.pkg");
    pack(&next, &component("hello"), &new);

    let up = audit_diff(&old, &new);
    assert_eq!(up["escalation"], true, "{up}");
    assert_eq!(
        (up["old_version"].as_str(), up["new_version"].as_str()),
        (Some("0.1.0"), Some("0.2.0"))
    );
    let caps = up["capabilities"].as_array().unwrap();
    let notify = caps.iter().find(|c| c["name"] == "notify").unwrap();
    assert_eq!(notify["change"], "added");
    assert_eq!(notify["escalation"], true);
    assert_eq!(notify["consent"], "once-per-app");
    let storage = caps.iter().find(|c| c["name"] == "storage").unwrap();
    assert_eq!(storage["change"], "reason-changed");
    assert_eq!(storage["escalation"], false);
    assert_eq!(up["limits"][0]["name"], "memory_bytes");
    assert_eq!(up["limits"][0]["escalation"], true);
    assert_eq!(up["imports_added"], serde_json::json!([]));

    let down = audit_diff(&new, &old);
    assert_eq!(down["escalation"], false, "{down}");
    assert!(down["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "notify" && c["change"] == "removed"));

    let text = superapp()
        .args(["audit", "diff"])
        .arg(&old)
        .arg(&new)
        .output()
        .unwrap();
    assert!(
        stdout(&text).contains("ESCALATION + capability notify"),
        "{}",
        stdout(&text)
    );

    let other = dir.path().join("other.pkg");
    crate::common::made_elsewhere(
        &plugin_dir("testing/undeclared-payments").join("plugin.toml"),
        &std::fs::read(component("testing/undeclared-payments")).unwrap(),
        &other,
        None,
    );
    let out = superapp()
        .args(["audit", "diff"])
        .arg(&old)
        .arg(&other)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("two different apps"),
        "{}",
        stderr(&out)
    );
}

/// The origins `http` may reach are part of what an auditor reads, and a
/// new origin in a new version is an escalation.
#[test]
fn inspect_lists_http_origins_and_diff_marks_a_new_origin() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.pkg");
    pack(
        &plugin_dir("testing/probe"),
        &component("testing/probe"),
        &old,
    );
    let next = dir.path().join("next");
    std::fs::create_dir(&next).unwrap();
    let manifest = std::fs::read_to_string(plugin_dir("testing/probe").join("plugin.toml"))
        .unwrap()
        .replace("version = \"0.1.0\"", "version = \"0.1.1\"")
        .replace(
            "origins = [\"https://backend.probe.test\"]",
            "origins = [\"https://backend.probe.test\", \"https://tracker.example.net\"]",
        );
    std::fs::write(next.join("plugin.toml"), manifest).unwrap();
    let new = dir.path().join("new.pkg");
    pack(&next, &component("testing/probe"), &new);

    let out = superapp()
        .args(["audit", "inspect"])
        .arg(&new)
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(
        text.contains("may contact https://backend.probe.test")
            && text.contains("may contact https://tracker.example.net"),
        "{text}"
    );
    let diff = audit_diff(&old, &new);
    assert_eq!(diff["escalation"], true, "{diff}");
    assert_eq!(
        diff["origins"],
        serde_json::json!([{"origin": "https://tracker.example.net", "change": "added", "escalation": true}])
    );
}

/// Where shared documents and payment news go is part of what an auditor
/// reads: a new callback URL, or documents that now reach the app's own
/// sandbox instead of only its backend, is an escalation.
#[test]
fn diff_marks_documents_moving_into_the_app_and_a_new_callback_url() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(plugin_dir("testing/probe").join("plugin.toml")).unwrap();
    let version = |v: &str, deliver: bool, url: &str| {
        let text = base.replace("version = \"0.1.0\"", &format!("version = \"{v}\""));
        let text = if deliver {
            text.replace(
                "[capabilities.documents]\n",
                "[capabilities.documents]\ndeliver = \"backend\"\n",
            )
        } else {
            text
        };
        let folder = dir.path().join(v);
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(
            folder.join("plugin.toml"),
            format!("{text}\n[callbacks]\nurl = \"{url}\"\n"),
        )
        .unwrap();
        let pkg = dir.path().join(format!("{v}.pkg"));
        pack(&folder, &component("testing/probe"), &pkg);
        pkg
    };
    let old = version("0.1.0", true, "https://backend.probe.test/cb");
    let new = version("0.1.1", false, "https://collector.example.net/cb");

    let out = superapp()
        .args(["audit", "inspect"])
        .arg(&old)
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(
        text.contains("shared documents go to https://backend.probe.test/cb, not to the app"),
        "{text}"
    );
    let diff = audit_diff(&old, &new);
    assert_eq!(diff["escalation"], true, "{diff}");
    assert_eq!(diff["documents_to_app"], true);
    assert_eq!(
        diff["callback"],
        serde_json::json!({"old": "https://backend.probe.test/cb", "new": "https://collector.example.net/cb", "escalation": true})
    );
    // Back the other way: nothing new leaves for the app.
    let back = audit_diff(&new, &old);
    assert_eq!(back["documents_to_app"], false, "{back}");
}

#[test]
fn the_bundled_apps_ask_for_nothing_they_do_not_use() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    generate_key(&key);
    for app in [
        "hospital-booking",
        "city-payments",
        "document-wallet",
        "hello",
    ] {
        let pkg = dir.path().join(format!("{app}.pkg"));
        pack(&plugin_dir(app), &component(app), &pkg);
        let signed = superapp()
            .args(["plugin", "sign"])
            .arg(&pkg)
            .arg("--key")
            .arg(&key)
            .output()
            .unwrap();
        assert!(signed.status.success(), "{}", stderr(&signed));
        let (ok, report) = inspect(&pkg);
        assert!(ok, "{app}: {report}");
        assert_eq!(report["errors"], Value::Array(vec![]), "{app}: {report}");
        assert_eq!(report["warnings"], Value::Array(vec![]), "{app}: {report}");
        // Every capability comes with a reason a user can read: a sentence.
        for capability in report["capabilities"].as_array().unwrap() {
            let reason = capability["reason"].as_str().unwrap();
            assert!(
                reason.len() >= 30 && reason.ends_with('.'),
                "{app}: `{}` needs a real reason, not {reason:?}",
                capability["name"]
            );
        }
    }
}

/// `audit diff --json OLD NEW`, which must succeed.
fn audit_diff(old: &Path, new: &Path) -> Value {
    let out = superapp()
        .args(["audit", "diff", "--json"])
        .arg(old)
        .arg(new)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

/// Limits past what the host allows are shown as the host applies them,
/// with a warning naming what the manifest asked for.
#[test]
fn inspect_shows_the_limits_the_host_applies() {
    let dir = tempfile::tempdir().unwrap();
    let greedy = dir.path().join("greedy");
    std::fs::create_dir(&greedy).unwrap();
    let manifest = std::fs::read_to_string(plugin_dir("hello").join("plugin.toml"))
        .unwrap()
        .replace("memory-mib = 16", "memory-mib = 99999999")
        .replace("time-ms = 500", "time-ms = 999999999999");
    std::fs::write(greedy.join("plugin.toml"), manifest).unwrap();
    let pkg = dir.path().join("greedy.pkg");
    pack(&greedy, &component("hello"), &pkg);
    let (_, report) = inspect(&pkg);
    assert_eq!(
        report["limits"]["memory_bytes"],
        99_999_999u64 << 20,
        "{report}"
    );
    assert_eq!(
        report["applied_limits"]["memory_bytes"],
        64u64 << 20,
        "{report}"
    );
    assert_eq!(report["applied_limits"]["time_ms"], 10_000, "{report}");
    let warnings: Vec<&str> = report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w.as_str().filter(|w| w.starts_with("limits:")))
        .collect();
    assert_eq!(
        warnings,
        [
            format!(
                "limits: memory_bytes asks for {}; the host runs it with at most {}",
                99_999_999u64 << 20,
                64u64 << 20
            ),
            "limits: time_ms asks for 999999999999; the host runs it with at most 10000".into(),
        ],
        "{report}"
    );
    let (_, hello) = inspect(&{
        let pkg = dir.path().join("hello.pkg");
        pack(&plugin_dir("hello"), &component("hello"), &pkg);
        pkg
    });
    assert_eq!(hello["applied_limits"], hello["limits"], "within the caps");
}
