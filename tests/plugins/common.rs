//! Shared helpers: building fixtures with the real `superapp plugin build`,
//! and a runtime with in-memory services.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, OnceLock};

use superapp_core::Capability;
use superapp_runtime::bindings::superapp::plugin::types::{Action, Event};
use superapp_runtime::view::{Node, View};
use superapp_runtime::Services;
use superapp_runtime::{App, Call, Invocation, RunError, Runtime, RuntimeConfig};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

pub fn superapp() -> Command {
    Command::new(env!("CARGO_BIN_EXE_superapp"))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The plugin crate directory of a bundled plugin (`hello`, `testing/panic`).
pub fn plugin_dir(name: &str) -> PathBuf {
    repo().join("plugins").join(name)
}

/// Build a bundled plugin with the real CLI, once per test run.
pub fn component(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(path) = built.get(name) {
        return path.clone();
    }
    let out = superapp()
        .args(["plugin", "build", "--quiet"])
        .arg(plugin_dir(name))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building {name} failed:\n{}",
        stderr(&out)
    );
    let path = PathBuf::from(
        stdout(&out)
            .lines()
            .last()
            .expect("path on the last line")
            .trim(),
    );
    assert!(path.exists(), "{} does not exist", path.display());
    built.insert(name.to_string(), path.clone());
    path
}

pub fn manifest(name: &str) -> PathBuf {
    plugin_dir(name).join("plugin.toml")
}

pub fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig::default()).unwrap()
}

pub fn load(rt: &Runtime, name: &str) -> App {
    rt.load_files(&manifest(name), &component(name))
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

pub fn services(denied: &[Capability]) -> Arc<Services> {
    Arc::new(Services::in_memory(
        denied.iter().copied().collect::<BTreeSet<_>>(),
    ))
}

pub fn action(name: &str, value: Option<&str>, fields: &[(&str, &str)]) -> Call {
    Call::Event(Event::Action(Action {
        name: name.to_string(),
        value: value.map(str::to_string),
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }))
}

pub async fn run(
    rt: &Runtime,
    app: &App,
    services: &Arc<Services>,
    user: &str,
    call: Call,
) -> Result<View, RunError> {
    rt.run(app, services, &Invocation::new(user), &call).await
}

/// All text in a view, in order, one string per text or heading node.
pub fn texts(view: &View) -> Vec<String> {
    fn walk(node: &Node, out: &mut Vec<String>) {
        match node {
            Node::Text { text, .. } | Node::Heading { text, .. } => out.push(text.clone()),
            Node::Column { children }
            | Node::Row { children }
            | Node::List { children }
            | Node::Form { children, .. } => children.iter().for_each(|c| walk(c, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&view.body, &mut out);
    out
}

/// `superapp plugin check` of hello's component with the manifest at `path`.
pub fn check_hello_with(path: &Path) -> Output {
    superapp()
        .args(["plugin", "check"])
        .arg(component("hello"))
        .arg("--manifest")
        .arg(path)
        .output()
        .unwrap()
}

/// What a publisher's own tools might make where `pack` and `sign` refuse
/// to (a component no host would load): the manifest at `manifest` with
/// `component`, signed with the key file `key` when given, written to `out`.
pub fn made_elsewhere(
    manifest: &Path,
    component: &[u8],
    out: &Path,
    key: Option<&Path>,
) -> Vec<u8> {
    let mut package =
        superapp_core::Package::new(std::fs::read(manifest).unwrap(), component.to_vec()).unwrap();
    if let Some(key) = key {
        package.sign(&superapp_core::keys::SigningKey::load(key).unwrap());
    }
    let bytes = package.to_bytes();
    std::fs::write(out, &bytes).unwrap();
    bytes
}
