//! Embed the sandbox in your own program: load a mini-program, launch it,
//! and send it one event.
//!
//! Build the hello plugin first, then run this example with its paths:
//!
//! ```text
//! cargo run -p superapp-runtime --example embed-runtime -- \
//!     "$(cargo run -q -p superapp -- plugin build plugins/hello | tail -n 1)" \
//!     plugins/hello/plugin.toml
//! ```

use std::sync::Arc;

use superapp_runtime::bindings::superapp::plugin::types::{Action, Event};
use superapp_runtime::Services;
use superapp_runtime::{Call, Invocation, Runtime, RuntimeConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(component), Some(manifest)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: embed-runtime COMPONENT PLUGIN_TOML");
    };

    // One runtime per process: it owns the engine and the epoch ticker.
    let runtime = Runtime::new(RuntimeConfig::default())?;

    // Loading checks the component's imports against the manifest and links
    // only the capabilities the manifest declares.
    let app = runtime.load_files(manifest.as_ref(), component.as_ref())?;

    // The services behind the capabilities; here all in memory.
    let services = Arc::new(Services::in_memory(Default::default()));

    // Every call below runs in a fresh instance, for this user.
    let user = Invocation::new("example-user");
    let first = runtime.run(&app, &services, &user, &Call::Launch).await?;
    println!("launch -> {}", serde_json::to_string(&first)?);

    // A form submission, as the shell would send it.
    let submit = Call::Event(Event::Action(Action {
        name: "save-name".into(),
        value: None,
        fields: vec![("name".into(), "Grace".into())],
    }));
    let second = runtime.run(&app, &services, &user, &submit).await?;
    println!("save-name -> {}", serde_json::to_string(&second)?);
    Ok(())
}
