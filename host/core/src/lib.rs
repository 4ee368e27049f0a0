//! What every layer of the host shares and none owns: the capability names
//! and consent levels, the manifest (`plugin.toml`), packages, the keys
//! that sign them, auditors' signed decisions and key-signed requests, and
//! ids and time. No storage, no wasm, no HTTP.

pub mod capability;
pub mod decision;
pub mod files;
pub mod ids;
pub mod images;
pub mod keys;
pub mod manifest;
pub mod money;
pub mod origin;
pub mod package;
pub mod signed_request;
pub mod text;

pub use capability::{compatible, Capability, ConsentLevel, PACKAGE, VERSION};
pub use ids::{new_id, now_secs, sha256_hex};
pub use manifest::{Limits, Manifest, ManifestError};
pub use origin::{Origin, Scheme, Target};
pub use package::{Package, PackageError};
