//! The images the host draws for apps: a view names one as
//! `asset:<name>` (an icon beside a heading, a list entry, a receipt) and
//! the shell draws the host's own picture, so an app can show one without
//! carrying it and no app can make it say anything else.

/// Every name an `asset:` image may take.
pub const HOST_IMAGES: [&str; 10] = [
    "calendar", "check", "clock", "document", "hospital", "info", "person", "receipt", "wallet",
    "warning",
];

/// Whether `name` is one of [`HOST_IMAGES`].
pub fn is_host_image(name: &str) -> bool {
    HOST_IMAGES.contains(&name)
}
