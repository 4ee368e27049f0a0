//! `superapp plugin new NAME`: a plugin crate that builds and runs as generated.

use std::path::Path;

use anyhow::{bail, Context as _};

/// A crate name is also the last label of the default app id.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!("`{name}` is not a valid plugin name: use lowercase letters, digits and hyphens, starting with a letter");
    }
    Ok(())
}

/// A crate may not be named as the SDK or one of its dependencies: Cargo
/// could not tell the two apart.
fn refuse_sdk_names(name: &str, sdk_manifest: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(sdk_manifest)
        .with_context(|| format!("cannot read {}", sdk_manifest.display()))?;
    let sdk: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not a Cargo manifest", sdk_manifest.display()))?;
    let package = sdk
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str());
    let dependencies = sdk
        .get("dependencies")
        .and_then(|d| d.as_table())
        .into_iter()
        .flat_map(|d| d.keys().map(String::as_str));
    let same = |taken: &str| taken.replace('_', "-") == name.replace('_', "-");
    if let Some(taken) = package.into_iter().chain(dependencies).find(|t| same(t)) {
        bail!("`{name}` is the name of a crate every plugin builds with (`{taken}`): choose another name");
    }
    Ok(())
}

fn toml_string(s: &str) -> String {
    // A TOML basic string; serde's JSON escaping is a valid subset.
    serde_json::to_string(s).expect("strings always serialize")
}

/// Create `dir` (named `name`) with Cargo.toml, plugin.toml, src/lib.rs.
pub fn new_plugin(dir: &Path, name: &str, publisher: &str, sdk: &Path) -> anyhow::Result<()> {
    check_name(name)?;
    if dir.exists() {
        bail!(
            "{} already exists; choose another name or directory",
            dir.display()
        );
    }
    if !sdk.join("Cargo.toml").exists() {
        bail!(
            "{} does not look like superapp-sdk (no Cargo.toml); pass --sdk PATH",
            sdk.display()
        );
    }
    refuse_sdk_names(name, &sdk.join("Cargo.toml"))?;
    let cargo_toml = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

# A mini-program is a wasm library; `superapp plugin build` makes it a component.
[lib]
crate-type = ["cdylib"]

[dependencies]
superapp-sdk = {{ path = {sdk} }}

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
panic = "abort"

# Standalone: not part of any enclosing workspace.
[workspace]
"#,
        sdk = toml_string(&sdk.display().to_string())
    );
    let plugin_toml = format!(
        r#"# Who this mini-program is, what it may do and why. Users and auditors
# read every reason; the host refuses imports that are not declared here.
id = "com.example.{lib_id}"
name = {title}
version = "0.1.0"
publisher = {publisher}
description = "A new superapp mini-program."

[capabilities.log]
reason = "Records what happened when something goes wrong."

[capabilities.storage]
reason = "Remembers how many times you pressed the button."

[limits]
memory-mib = 16
time-ms = 500
"#,
        lib_id = name.replace('_', "-"),
        title = toml_string(name),
        publisher = toml_string(publisher),
    );
    // What `plugin pack` and the registry will hold it to, said now.
    superapp_core::Manifest::parse(&plugin_toml)
        .map_err(anyhow::Error::from)
        .and_then(|m| m.check_publishable().map_err(anyhow::Error::from))
        .context(
            "the plugin.toml this would write is not one the registry takes (check --publisher)",
        )?;
    let lib_rs = r#"//! A superapp mini-program. Build it with `superapp plugin build`, try it
//! with `superapp plugin run`.

use superapp_sdk::prelude::*;

struct Plugin;

fn screen() -> Result<View, AppError> {
    // Each event runs in a fresh instance: keep state in storage.
    let presses = storage::get_json::<u64>("presses")?.unwrap_or(0);
    Ok(View::new("My mini-program")
        .heading("Hello from a mini-program")
        .text(format!("The button was pressed {presses} times."))
        .button(Button::new("Press me", "press")))
}

impl App for Plugin {
    fn launch(_ctx: &Context) -> Result<View, AppError> {
        screen()
    }

    fn event(_ctx: &Context, event: Event) -> Result<View, AppError> {
        match event {
            Event::Action(action) if action.name == "press" => {
                let presses = storage::get_json::<u64>("presses")?.unwrap_or(0);
                storage::set_json("presses", &(presses + 1))?;
                log::info("button pressed");
                screen()
            }
            other => Err(AppError::unexpected(&other)),
        }
    }
}

superapp_sdk::export_app!(Plugin);
"#;
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let write = |rel: &str, text: &str| {
        let path = dir.join(rel);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    write("Cargo.toml", &cargo_toml)?;
    write("plugin.toml", &plugin_toml)?;
    write("src/lib.rs", lib_rs)?;
    write(".gitignore", "/target\n")?;
    Ok(())
}
