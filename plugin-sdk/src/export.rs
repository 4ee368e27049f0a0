//! The `App` trait and the `export_app!` macro that turn a Rust type into the
//! exports of the `mini-program` world.

use crate::bindings::superapp::plugin::types;
use crate::{AppError, Context, Event, View};

/// A mini-program. The host creates a fresh instance for every call, so an
/// implementation keeps nothing in memory between calls: state belongs in
/// [`crate::storage`] or [`crate::shared_storage`].
pub trait App {
    /// Draw the first screen.
    fn launch(ctx: &Context) -> Result<View, AppError>;

    /// React to a user action or a host event and return the next screen.
    /// The default refuses every event.
    fn event(ctx: &Context, event: Event) -> Result<View, AppError> {
        let _ = ctx;
        Err(AppError::unexpected(&event))
    }
}

/// Export `$app` (a type implementing [`App`]) as this component's
/// `launch` and `event` functions. Use it once, at the crate root.
#[macro_export]
macro_rules! export_app {
    ($app:ty) => {
        const _: () = {
            struct __SuperappGuest;

            impl $crate::bindings::Guest for __SuperappGuest {
                fn launch(
                    ctx: $crate::Context,
                ) -> ::core::result::Result<
                    $crate::bindings::superapp::plugin::types::View,
                    $crate::AppError,
                > {
                    $crate::__private::run_launch::<$app>(ctx)
                }

                fn event(
                    ctx: $crate::Context,
                    event: $crate::Event,
                ) -> ::core::result::Result<
                    $crate::bindings::superapp::plugin::types::View,
                    $crate::AppError,
                > {
                    $crate::__private::run_event::<$app>(ctx, event)
                }
            }

            $crate::bindings::__export_mini_program!(__SuperappGuest with_types_in $crate::bindings);
        };
    };
}

#[doc(hidden)]
pub fn run_launch<A: App>(ctx: Context) -> Result<types::View, AppError> {
    install_panic_hook();
    A::launch(&ctx).map(View::into_wit)
}

#[doc(hidden)]
pub fn run_event<A: App>(ctx: Context, event: Event) -> Result<types::View, AppError> {
    install_panic_hook();
    A::event(&ctx, event).map(View::into_wit)
}

/// Report panics through the `log` capability before the instance aborts,
/// so the host can say why the mini-program trapped.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = match info.payload().downcast_ref::<&str>() {
                Some(s) => (*s).to_string(),
                None => match info.payload().downcast_ref::<String>() {
                    Some(s) => s.clone(),
                    None => "panic with a non-string payload".to_string(),
                },
            };
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            crate::log::emit(
                crate::log::Level::Error,
                &message,
                &[("panic".to_string(), location)],
            );
        }));
    });
}
