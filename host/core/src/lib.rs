//! What every layer of the host shares and none owns: the capability names
//! and consent levels, the manifest (`plugin.toml`), packages and the keys
//! that sign them, and ids and time. No storage, no wasm, no HTTP.

pub mod capability;
pub mod ids;
pub mod keys;
pub mod manifest;
pub mod package;

pub use capability::{Capability, ConsentLevel, PACKAGE, VERSION};
pub use ids::{new_id, now_secs, sha256_hex};
pub use manifest::{Limits, Manifest, ManifestError};
pub use package::{Package, PackageError};
