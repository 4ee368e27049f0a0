//! `superapp plugin build`: compile a plugin crate for `wasm32-unknown-unknown`
//! and wrap the core module into a component with `wit-component`.
//!
//! Two toolchains work. A rustup toolchain with the `wasm32-unknown-unknown`
//! target (a developer laptop) is preferred. Otherwise Debian's `rustc-web`
//! packages (`/usr/bin/cargo`, `/usr/bin/rustc` and `rust-web-src`) build the
//! standard library for wasm32 themselves with `-Zbuild-std`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;

const TARGET: &str = "wasm32-unknown-unknown";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";

/// Which compiler builds the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Toolchain {
    /// `cargo` from rustup, with the wasm32 target installed.
    Rustup,
    /// Debian's rustc-web, building std from source.
    Debian,
}

impl Toolchain {
    /// Find a toolchain that can build wasm32, preferring rustup's.
    /// `SUPERAPP_WASM_TOOLCHAIN=rustup|debian` forces one.
    pub fn detect() -> anyhow::Result<Toolchain> {
        match std::env::var("SUPERAPP_WASM_TOOLCHAIN").ok().as_deref() {
            Some("rustup") => return Ok(Toolchain::Rustup),
            Some("debian") => return Ok(Toolchain::Debian),
            Some(other) if !other.is_empty() => {
                bail!("SUPERAPP_WASM_TOOLCHAIN must be `rustup` or `debian`, not `{other}`")
            }
            _ => {}
        }
        if rustup_has_wasm_target() {
            return Ok(Toolchain::Rustup);
        }
        if debian_toolchain_present() {
            return Ok(Toolchain::Debian);
        }
        bail!(
            "no Rust toolchain that can build {TARGET} was found. Install either:\n  \
             - rustup's target:   rustup target add {TARGET}\n  \
             - Debian's packages: apt-get install rustc-web cargo-web rust-web-src lld-22"
        )
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Toolchain::Rustup => "rustup (wasm32-unknown-unknown target)",
            Toolchain::Debian => "Debian rustc-web (std built from source)",
        }
    }

    fn command(&self) -> Command {
        let mut cmd = match self {
            Toolchain::Rustup => Command::new("cargo"),
            Toolchain::Debian => Command::new(DEBIAN_CARGO),
        };
        // When this runs under `cargo run` or `cargo test`, the outer
        // cargo's settings would leak into the plugin build; drop them.
        for var in [
            "RUSTC",
            "RUSTC_WRAPPER",
            "RUSTC_WORKSPACE_WRAPPER",
            "RUSTDOC",
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_BUILD_TARGET",
            "CARGO_MAKEFLAGS",
            "MAKEFLAGS",
            "MFLAGS",
            "CARGO_PRIMARY_PACKAGE",
        ] {
            cmd.env_remove(var);
        }
        // `cargo rustc --lib` so the link flags after `--` reach only the
        // plugin's own cdylib, never its dependencies (or a std built from
        // source), and a user's own rustflags still apply.
        cmd.arg("rustc")
            .arg("--lib")
            .arg("--release")
            .arg("--target")
            .arg(TARGET);
        // Reproducible components: cargo's trim-paths writes every source
        // path into the binary (panic locations) relative to its package
        // (`serde_json-1.0.x/src/read.rs`, `src/lib.rs`, `/rustc/<commit>/
        // library/…`), so where the crate, the SDK, cargo's home or the
        // toolchain sit on the builder's disk leaves no trace, and the same
        // source built with the same toolchain gives the same bytes on any
        // machine. trim-paths is a cargo feature not yet stable; only the
        // paths differ from a build without it.
        cmd.env("RUSTC_BOOTSTRAP", "1")
            .arg("-Ztrim-paths")
            .arg("--config")
            .arg("profile.release.trim-paths=\"all\"");
        if *self == Toolchain::Debian {
            cmd.env_remove("RUSTUP_TOOLCHAIN")
                .env("RUSTC", DEBIAN_RUSTC)
                .arg("-Zbuild-std=std,panic_abort");
        }
        cmd
    }
}

fn rustup_has_wasm_target() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.trim() == TARGET)
        })
        .unwrap_or(false)
}

fn debian_toolchain_present() -> bool {
    let sysroot = Command::new(DEBIAN_RUSTC)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    Path::new(DEBIAN_CARGO).exists()
        && sysroot.is_some_and(|s| {
            s.join("lib/rustlib/src/rust/library/std/Cargo.toml")
                .exists()
        })
}

#[derive(Deserialize)]
struct CargoToml {
    package: Option<Package>,
}

#[derive(Deserialize)]
struct Package {
    name: String,
}

/// One line of cargo's `--message-format=json` output (the parts we read).
#[derive(Deserialize)]
struct CargoMessage {
    reason: String,
    #[serde(default)]
    target: Option<Target>,
    #[serde(default)]
    filenames: Vec<PathBuf>,
    #[serde(default)]
    package_id: String,
}

#[derive(Deserialize)]
struct Target {
    name: String,
    crate_types: Vec<String>,
}

/// What `build` produced.
#[derive(Debug)]
pub struct Built {
    pub component: PathBuf,
    pub core_module: PathBuf,
    pub toolchain: Toolchain,
}

/// Build the plugin crate in `dir`; write the component to `out` (default:
/// `<name>.component.wasm` next to the core module under `target/`).
pub fn build(dir: &Path, out: Option<&Path>, progress: bool) -> anyhow::Result<Built> {
    build_with(dir, out, progress, &[])
}

/// [`build`] with the crate's cargo `features` on (the default output is
/// then `<name>+<features>.component.wasm`, so builds of one crate with
/// different features do not overwrite each other).
pub fn build_with(
    dir: &Path,
    out: Option<&Path>,
    progress: bool,
    features: &[String],
) -> anyhow::Result<Built> {
    // Cargo's rule: a letter, digit or `_` first, then those, `-` or `+`.
    let valid = |f: &str| {
        f.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && f.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_+".contains(c))
    };
    if let Some(bad) = features.iter().find(|f| !valid(f)) {
        bail!("`{bad}` is not a cargo feature name");
    }
    let manifest_path = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest_path).with_context(|| {
        format!(
            "{} is not a plugin crate: cannot read {}",
            dir.display(),
            manifest_path.display()
        )
    })?;
    let package = toml::from_str::<CargoToml>(&text)
        .with_context(|| format!("cannot parse {}", manifest_path.display()))?
        .package
        .ok_or_else(|| anyhow!("{} has no [package]", manifest_path.display()))?;
    let lib_name = package.name.replace('-', "_");

    let toolchain = Toolchain::detect()?;
    let bar = if progress {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}").expect("static template"),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar.set_message(format!(
        "building {} with {}",
        package.name,
        toolchain.describe()
    ));

    let mut child = toolchain
        .command()
        .arg("--manifest-path")
        .arg(&manifest_path)
        .arg("--message-format=json-render-diagnostics")
        .args(if features.is_empty() {
            Vec::new()
        } else {
            vec!["--features".to_string(), features.join(",")]
        })
        // The initial heap the SDK's allocator takes before it grows memory.
        .arg("--")
        .arg("-C")
        .arg(format!(
            "link-arg=--initial-heap={}",
            superapp_sdk::INITIAL_HEAP
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run cargo ({})", toolchain.describe()))?;

    // Cargo's human output (errors, warnings) is relayed above the spinner.
    let stderr = child.stderr.take().expect("piped stderr");
    let relay_bar = bar.clone();
    let relay = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let trimmed = line.trim_start();
            if trimmed.starts_with("Compiling") || trimmed.starts_with("Blocking") {
                relay_bar.set_message(trimmed.to_string());
            } else if !trimmed.starts_with("Finished") && !trimmed.is_empty() {
                relay_bar.suspend(|| eprintln!("{line}"));
            }
            lines.push(line);
        }
        lines
    });

    let mut core_module = None;
    let stdout = child.stdout.take().expect("piped stdout");
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let Ok(msg) = serde_json::from_str::<CargoMessage>(&line) else {
            continue;
        };
        if msg.reason != "compiler-artifact" {
            continue;
        }
        let Some(target) = msg.target else { continue };
        bar.set_message(format!("compiled {}", target.name));
        let ours =
            target.name.replace('-', "_") == lib_name && msg.package_id.contains(&package.name);
        if ours && target.crate_types.iter().any(|t| t == "cdylib") {
            core_module = msg
                .filenames
                .into_iter()
                .find(|f| f.extension().is_some_and(|e| e == "wasm"));
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    let _ = relay.join();
    if !status.success() {
        bar.finish_and_clear();
        bail!(
            "cargo build failed for {} ({})",
            package.name,
            toolchain.describe()
        );
    }
    let core_module = core_module.ok_or_else(|| {
        anyhow!("cargo built no wasm library for `{}`: does its Cargo.toml have [lib] crate-type = [\"cdylib\"]?", package.name)
    })?;

    bar.set_message("making a component");
    let component = match out {
        Some(p) => p.to_path_buf(),
        None if features.is_empty() => {
            core_module.with_file_name(format!("{lib_name}.component.wasm"))
        }
        None => {
            core_module.with_file_name(format!("{lib_name}+{}.component.wasm", features.join("+")))
        }
    };
    let encoded = encode_component(&core_module)?;
    if let Some(parent) = component.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    if out.is_some() {
        // A path the user gave: replace a component there, nothing else.
        crate::files::write_replacing_only(
            &component,
            &encoded,
            "a WebAssembly component",
            |head| superapp_core::package::component_preamble_problem(head).is_none(),
        )?;
    } else {
        crate::files::write_atomically(&component, &encoded)?;
    }
    bar.finish_and_clear();
    Ok(Built {
        component,
        core_module,
        toolchain,
    })
}

/// Wrap a core module (with the component-type section wit-bindgen put in
/// it) into a component: made anew each build (a few milliseconds), so
/// what a build reports is always what it built.
pub fn encode_component(core_module: &Path) -> anyhow::Result<Vec<u8>> {
    let core = std::fs::read(core_module)
        .with_context(|| format!("cannot read {}", core_module.display()))?;
    wit_component::ComponentEncoder::default()
        .module(&core)
        .and_then(|e| e.validate(true).encode())
        .with_context(|| {
            format!(
                "cannot make a component of {}: was it built with superapp-sdk (which embeds the WIT contract)?",
                core_module.display()
            )
        })
}
